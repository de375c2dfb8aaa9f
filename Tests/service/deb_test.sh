#!/usr/bin/env bash
# `make deb-test`: builds the Debian package (scripts/build-deb.sh) and checks it without
# installing it: its control fields, its file list, programs that load no Swift runtime and run
# with the toolchain hidden, the shipped config refused, the maintainer scripts' syntax.
# Prints a PASS or FAIL line per check; make runs it under the harness's reporter (Tests/harness/report.py),
# whose summary line ends the output. Exit status non-zero on any failure.
set -uo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$repo"
work="$(mktemp -d "${TMPDIR:-/tmp}/nfqr-deb-test.XXXXXX")"
log="$work/log"
trap 'rm -rf "$work"' EXIT
passed=0 failed=0

check() {  # check NAME COMMAND...: PASS when COMMAND succeeds
    local name="$1"; shift
    if "$@" >>"$log" 2>&1; then
        passed=$((passed + 1)); echo "PASS  $name"
    else
        failed=$((failed + 1)); echo "FAIL  $name"; tail -n 15 "$log" | sed 's/^/      /'
    fi
}

version="$(sed -n 's/.*static let current = "\(.*\)".*/\1/p' Sources/Daemon/Support/DaemonVersion.swift)"
deb=""
builds() { deb="$(scripts/build-deb.sh | tail -n 1)" && [ -f "$deb" ] && echo "$deb"; }
control_fields() {
    local info; info="$(dpkg-deb --info "$deb")" && echo "$info" &&
    grep -qx " Package: nfq-redirect" <<<"$info" && grep -qx " Version: $version" <<<"$info" &&
    grep -q "^ Depends: .*iptables" <<<"$info" && grep -q "^ Depends: .*libnetfilter-queue1" <<<"$info" &&
    ! grep -qi "swift" <<<"$(grep '^ Depends:' <<<"$info")" &&
    [ "$(sed -n 's/^ Installed-Size: //p' <<<"$info")" -lt 150000 ]   # KiB: stripped (208 MB unstripped)
}
file_list() {
    local files; files="$(dpkg-deb --contents "$deb" | awk '{print $6}' | sed 's|^\.||')" || return 1
    for path in /usr/sbin/nfq-redirectd /usr/bin/nfq-redirect /usr/lib/libnfq-redirect-preload.so \
            /usr/lib/systemd/system/nfq-redirect.service /usr/lib/systemd/system/nfq-redirect-gave-up.service \
            /etc/nfq-redirect/nfq-redirect.toml /usr/share/doc/nfq-redirect/copyright /usr/share/man/man8/nfq-redirectd.8; do
        grep -qx "$path" <<<"$files" || { echo "missing $path"; return 1; }
    done
    [ "$(dpkg-deb --ctrl-tarfile "$deb" | tar -xO ./conffiles)" = /etc/nfq-redirect/nfq-redirect.toml ]
}
extract() { dpkg-deb -x "$deb" "$work/root"; }
no_swift_runtime() {
    local program
    for program in usr/sbin/nfq-redirectd usr/bin/nfq-redirect; do
        ldd "$work/root/$program" | tee /dev/stderr | grep -qiE "swift|not found" && return 1
    done
    return 0
}
# A private mount namespace where the Swift toolchain's directory is an empty tmpfs.
runs_without_toolchain() {
    local toolchain; toolchain="$(dirname "$(dirname "$(readlink -f "$(command -v swift)")")")"
    unshare --mount --propagation private sh -c 'mount -t tmpfs tmpfs "$1" && "$2" --version && "$3" --version' \
        sh "$toolchain" "$work/root/usr/sbin/nfq-redirectd" "$work/root/usr/bin/nfq-redirect" | tee /dev/stderr |
        [ "$(sort -u)" = "$version" ]
}
shipped_config_refused() {
    local output status
    output="$("$work/root/usr/sbin/nfq-redirectd" --config "$work/root/etc/nfq-redirect/nfq-redirect.toml" --check-config 2>&1)"; status=$?
    echo "$output"; [ "$status" = 2 ] && grep -q "nothing to redirect" <<<"$output"
}
scripts_parse() { for script in postinst prerm postrm; do sh -n "packaging/deb/$script" || return 1; done; }

check "scripts/build-deb.sh builds the package" builds
check "control: nfq-redirect $version, Depends names iptables and libnetfilter-queue1, no Swift" control_fields
check "files: programs, preload library, both units, config (a conffile), copyright, man page" file_list
check "extracts" extract
check "the programs load no Swift runtime" no_swift_runtime
check "--version of both runs with the Swift toolchain hidden" runs_without_toolchain
check "the packaged config redirects nothing (exit status 2)" shipped_config_refused
check "maintainer scripts parse (sh -n)" scripts_parse
[ "$failed" = 0 ]
