#!/usr/bin/env bash
# `make deb`: a Debian binary package of nfq-redirect, .build-static/nfq-redirect_<version>_<arch>.deb.
#
# The Swift programs are built a second time with the Swift standard library linked in
# (--static-swift-stdlib, into .build-static), so the package needs no Swift toolchain on the
# host: only Debian's libnetfilter-queue, libmnl, libnfnetlink, libc and iptables, which the
# Depends line lists from what the binaries load (dpkg -S). The files are `make install
# DESTDIR=... PREFIX=/usr`; packaging/deb holds the control template and maintainer scripts.
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"
static=.build-static
version="$(sed -n 's/.*static let current = "\(.*\)".*/\1/p' Sources/Daemon/Support/DaemonVersion.swift)"
arch="$(dpkg --print-architecture)"
out="$static/nfq-redirect_${version}_${arch}.deb"

swift build -c release --static-swift-stdlib --scratch-path "$static"
stage="$(mktemp -d "${TMPDIR:-/tmp}/nfqr-deb.XXXXXX")"
trap 'rm -rf "$stage"' EXIT
make --no-print-directory install DESTDIR="$stage" PREFIX=/usr RELEASE_DIR="$static/release" >/dev/null
cp LICENSE "$stage/usr/share/doc/nfq-redirect/copyright"
# As Debian ships programs: without symbols and debug sections (208 MB installed down to 133:
# 65 MB a program remains, Foundation and its ICU data linked in).
strip --strip-unneeded "$stage/usr/sbin/nfq-redirectd" "$stage/usr/bin/nfq-redirect" "$stage/usr/lib/libnfq-redirect-preload.so"

# Depends: the Debian package of every shared library the programs load, and iptables.
libraries="$(for program in "$stage/usr/sbin/nfq-redirectd" "$stage/usr/bin/nfq-redirect" \
        "$stage/usr/lib/libnfq-redirect-preload.so"; do
    ldd "$program" | awk '$2 == "=>" && $3 ~ /^\// { print $3 }'
done | sort -u)"
if grep -q swift <<<"$libraries"; then
    echo "build-deb.sh: the programs still load the Swift runtime:" $libraries >&2
    exit 1
fi
packages="$(for library in $libraries; do
    dpkg -S "$(readlink -f "$library")" 2>/dev/null || dpkg -S "$library"
done | cut -d: -f1 | sort -u)"
depends="$(echo $packages iptables | tr ' ' '\n' | sort -u | paste -sd, | sed 's/,/, /g')"

install -d "$stage/DEBIAN"
install -m 0755 packaging/deb/postinst packaging/deb/prerm packaging/deb/postrm "$stage/DEBIAN/"
echo /etc/nfq-redirect/nfq-redirect.toml >"$stage/DEBIAN/conffiles"
size="$(du -sk --exclude=DEBIAN "$stage" | cut -f1)"
sed -e "s|@VERSION@|$version|" -e "s|@ARCH@|$arch|" -e "s|@SIZE@|$size|" -e "s|@DEPENDS@|$depends|" \
    packaging/deb/control.in >"$stage/DEBIAN/control"
dpkg-deb --root-owner-group --build "$stage" "$out" >/dev/null
echo "$out"
