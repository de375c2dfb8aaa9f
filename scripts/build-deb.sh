#!/usr/bin/env bash
# `make deb`: a Debian binary package of nfq-redirect, .build-static/nfq-redirect_<version>-1_<arch>.deb.
#
# The Swift programs are built a second time with the Swift standard library linked in
# (--static-swift-stdlib, into .build-static), so the package needs no Swift toolchain on the
# host: only Debian's libnetfilter-queue, libnetfilter-conntrack, libmnl, libnfnetlink, libc and
# iptables, which the Depends line lists from what the binaries load (dpkg -S). The files are
# `make install DESTDIR=... PREFIX=/usr LIBDIR=/usr/lib/<multiarch triplet>`, laid out as debhelper would
# (man pages and docs compressed, programs stripped, copyright in the machine-readable format,
# md5sums); packaging/deb holds the control template, the maintainer scripts and the lintian
# overrides (each with its reason). `lintian` reports no error or warning (Tests/service/deb_test.sh).
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"
static=.build-static
upstream="$(sed -n 's/.*static let current = "\(.*\)".*/\1/p' Sources/Daemon/Support/DaemonVersion.swift)"
version="$upstream-1"
arch="$(dpkg --print-architecture)"
triplet="$(dpkg-architecture -qDEB_HOST_MULTIARCH)"
out="$static/nfq-redirect_${version}_${arch}.deb"
# The project publishes no contact address (.invalid says so); a distributor sets theirs.
maintainer="${DEB_MAINTAINER:-The nfq-redirect authors <maintainers@nfq-redirect.invalid>}"
# Reproducible: every date in the package is the last commit's.
export SOURCE_DATE_EPOCH="${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct 2>/dev/null || date +%s)}"

swift build -c release --static-swift-stdlib --scratch-path "$static"
stage="$(mktemp -d "${TMPDIR:-/tmp}/nfqr-deb.XXXXXX")"
trap 'rm -rf "$stage"' EXIT
make --no-print-directory install DESTDIR="$stage" PREFIX=/usr LIBDIR="/usr/lib/$triplet" \
    RELEASE_DIR="$static/release" >/dev/null
doc="$stage/usr/share/doc/nfq-redirect"
# As Debian ships programs: without symbols and debug sections (208 MB installed down to 133:
# 65 MB a program remains, Foundation and its ICU data linked in).
strip --strip-unneeded --remove-section=.comment --remove-section=.note \
    "$stage/usr/sbin/nfq-redirectd" "$stage/usr/bin/nfq-redirect" "$stage/usr/lib/$triplet/libnfq-redirect-preload.so"
strip --strip-debug --enable-deterministic-archives "$stage/usr/lib/$triplet/libnfq-redirect-client.a"
# Debian's layout: the license in copyright, the upstream changelog as changelog.gz beside
# the package's changelog.Debian.gz, man pages and long docs compressed.
rm "$doc/LICENSE"
sed -e "s|@YEAR@|$(date -u -d "@$SOURCE_DATE_EPOCH" +%Y)|" packaging/deb/copyright.in >"$doc/copyright"
sed -n '/^Permission is hereby granted/,$p' LICENSE | sed -e 's/^$/./' -e 's/^/ /' >>"$doc/copyright"
mv "$doc/CHANGELOG.md" "$doc/changelog"
sed -e "s|@VERSION@|$version|" -e "s|@UPSTREAM@|$upstream|" \
    -e "s|@DATE@|$(date -u -R -d "@$SOURCE_DATE_EPOCH")|" -e "s|@MAINTAINER@|$maintainer|" \
    packaging/deb/changelog.in >"$doc/changelog.Debian"
gzip -9n "$doc/changelog" "$doc/changelog.Debian" "$doc/operations.md" "$doc/lookup-protocol.md"
find "$stage/usr/share/man" -type f -exec gzip -9n {} +
install -d "$stage/usr/share/lintian/overrides"
install -m 0644 packaging/deb/lintian-overrides "$stage/usr/share/lintian/overrides/nfq-redirect"
chmod -R u=rwX,go=rX "$stage/usr"

# Depends: the Debian package of every shared library the programs load, iptables, and
# adduser (postinst creates the lookup clients' group with addgroup).
libraries="$(for program in "$stage/usr/sbin/nfq-redirectd" "$stage/usr/bin/nfq-redirect" \
        "$stage/usr/lib/$triplet/libnfq-redirect-preload.so"; do
    ldd "$program" | awk '$2 == "=>" && $3 ~ /^\// { print $3 }'
done | sort -u)"
if grep -q swift <<<"$libraries"; then
    echo "build-deb.sh: the programs still load the Swift runtime:" $libraries >&2
    exit 1
fi
packages="$(for library in $libraries; do
    dpkg -S "$(readlink -f "$library")" 2>/dev/null || dpkg -S "$library"
done | cut -d: -f1 | sort -u)"
depends="$(echo $packages iptables adduser | tr ' ' '\n' | sort -u | paste -sd, | sed 's/,/, /g')"

install -d "$stage/DEBIAN"
install -m 0755 packaging/deb/postinst packaging/deb/prerm packaging/deb/postrm "$stage/DEBIAN/"
echo /etc/nfq-redirect/nfq-redirect.toml >"$stage/DEBIAN/conffiles"
chmod 0644 "$stage/DEBIAN/conffiles"
size="$(du -sk --exclude=DEBIAN "$stage" | cut -f1)"
sed -e "s|@VERSION@|$version|" -e "s|@ARCH@|$arch|" -e "s|@SIZE@|$size|" -e "s|@DEPENDS@|$depends|" \
    -e "s|@MAINTAINER@|$maintainer|" packaging/deb/control.in >"$stage/DEBIAN/control"
(cd "$stage" && find usr -type f -print0 | sort -z | xargs -0 md5sum) >"$stage/DEBIAN/md5sums"
chmod 0644 "$stage/DEBIAN/md5sums" "$stage/DEBIAN/control"
find "$stage" -newermt "@$SOURCE_DATE_EPOCH" -exec touch --no-dereference --date="@$SOURCE_DATE_EPOCH" {} +
# xz -6, Debian's default: 34 MB in 80 s here; DEB_COMPRESS="-Zxz -z1" (the test's): 40 MB in 13 s.
dpkg-deb --root-owner-group ${DEB_COMPRESS:--Zxz -z6} --build "$stage" "$out" >/dev/null
echo "$out"
