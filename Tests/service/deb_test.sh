#!/usr/bin/env bash
# `make deb-test` (part of `make svc-test`, root): builds the Debian package
# (scripts/build-deb.sh), runs lintian on it, installs it on this machine with dpkg, checks
# what it installed, then purges it and checks that nothing is left. On the way: the programs
# run with the Swift toolchain hidden, the lookup clients' group gives a proxy's user the socket
# and keeps others out, a group missing on the host is refused with exit status 2.
# The package is purged, and the test's daemon, namespace and group removed, on any exit.
# Prints a PASS or FAIL line per check; make runs it under the harness's reporter
# (Tests/harness/report.py), whose summary line ends the output. Exit status non-zero on any failure.
# The daemon runs in the harness's namespace (shape "single"): the script runs itself again
# under `python3 -m harness.netns run`, which creates it and removes it on any exit.
set -uo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$repo"
[ "$(id -u)" = 0 ] || { echo "deb_test.sh: run as root (it installs the package with dpkg)"; exit 1; }
export PYTHONPATH="${PYTHONPATH:-$repo/Tests}"
if [ -z "${NFQR_NS_ROUTER:-}" ]; then
    exec /usr/bin/python3 -m harness.netns run --tag "nfqr-deb-$$" --shape single -- "$0" "$@"
fi
work="$(mktemp -d "${TMPDIR:-/tmp}/nfqr-deb-test.XXXXXX")"
chmod 0755 "$work"   # the unprivileged clients below reach the socket in it
log="$work/log"
netns="$NFQR_NS_ROUTER"
daemon=""
group_before="$(getent group nfq-redirect || true)"
installed_by_us=""

cleanup() {
    [ -n "$daemon" ] && kill "$daemon" 2>/dev/null && wait "$daemon" 2>/dev/null
    if [ -n "$installed_by_us" ] && dpkg-query -W -f='${Status}' nfq-redirect 2>/dev/null | grep -q installed; then
        dpkg --purge nfq-redirect >/dev/null 2>&1
    fi
    # The package keeps its group on purge (Debian's rule for system accounts); the test does not.
    if [ -n "$installed_by_us" ] && [ -z "$group_before" ] && getent group nfq-redirect >/dev/null; then
        groupdel nfq-redirect
    fi
    rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# shellcheck source=../harness/check.sh
source "$repo/Tests/harness/check.sh"

upstream="$(sed -n 's/.*static let current = "\(.*\)".*/\1/p' Sources/Daemon/Support/DaemonVersion.swift)"
triplet="$(dpkg-architecture -qDEB_HOST_MULTIARCH)"
deb=""
builds() {
    local began=$SECONDS
    # The fastest xz: the contents are the same, the package 6 MB bigger, the test 70 s shorter.
    deb="$(DEB_COMPRESS="-Zxz -z1" scripts/build-deb.sh | tail -n 1)" && [ -f "$deb" ] && echo "$deb in $((SECONDS - began)) s"
}
# No error and no warning; the overrides in packaging/deb/lintian-overrides say why each is one.
lintian_clean() {
    local output; output="$(lintian --fail-on error,warning --display-level '>=warning' "$deb" 2>&1)"; local status=$?
    echo "$output"; [ "$status" = 0 ] && ! grep -q '^[EW]:' <<<"$output"
}
control_fields() {
    local info; info="$(dpkg-deb --info "$deb")" && echo "$info" &&
    grep -qx " Package: nfq-redirect" <<<"$info" && grep -qx " Version: $upstream-1" <<<"$info" &&
    grep -q "^ Depends: .*iptables" <<<"$info" && grep -q "^ Depends: .*libnetfilter-queue1" <<<"$info" &&
    grep -q "^ Depends: .*libnetfilter-conntrack3" <<<"$info" &&
    grep -q "^ Depends: .*adduser" <<<"$info" &&
    ! grep -qi "swift" <<<"$(grep '^ Depends:' <<<"$info")" &&
    [ "$(sed -n 's/^ Installed-Size: //p' <<<"$info")" -lt 150000 ]   # KiB: stripped (208 MB unstripped)
}
# Nothing of ours may be on this machine: the test installs and purges the package for real.
machine_is_clean() {
    ! dpkg-query -W nfq-redirect 2>/dev/null && [ ! -e /etc/nfq-redirect ] && [ ! -e /run/nfq-redirect ] &&
    [ ! -e /var/lib/nfq-redirect ] && [ ! -e /usr/sbin/nfq-redirectd ]
}
installs() { installed_by_us=1; dpkg -i "$deb"; }
files_in_place() {
    local path
    for path in /usr/sbin/nfq-redirectd /usr/bin/nfq-redirect /usr/lib/$triplet/libnfq-redirect-preload.so \
            /usr/lib/$triplet/libnfq-redirect-client.a /usr/include/nfq_redirect.h \
            /usr/lib/systemd/system/nfq-redirect.service /usr/lib/systemd/system/nfq-redirect-gave-up.service \
            /etc/nfq-redirect/nfq-redirect.toml /usr/share/doc/nfq-redirect/copyright \
            /usr/share/doc/nfq-redirect/changelog.Debian.gz /usr/share/doc/nfq-redirect/changelog.gz \
            /usr/share/bash-completion/completions/nfq-redirect /usr/share/bash-completion/completions/nfq-redirectd \
            /usr/share/zsh/vendor-completions/_nfq-redirect /usr/share/fish/vendor_completions.d/nfq-redirect.fish; do
        [ -f "$path" ] || { echo "missing $path"; return 1; }
    done
    [ ! -e /usr/lib/libnfq-redirect-preload.so ] || { echo "preload library outside the multiarch directory"; return 1; }
}
versions() {
    local daemon_version cli_version
    daemon_version="$(/usr/sbin/nfq-redirectd --version)" && cli_version="$(/usr/bin/nfq-redirect --version)" || return 1
    echo "nfq-redirectd $daemon_version, nfq-redirect $cli_version"
    [ "$daemon_version" = "$upstream" ] && [ "$cli_version" = "$upstream" ]
}
toolchain="$(dirname "$(dirname "$(readlink -f "$(command -v swift)")")")"
no_toolchain_in_ldd() {
    local program output
    for program in /usr/sbin/nfq-redirectd /usr/bin/nfq-redirect /usr/lib/$triplet/libnfq-redirect-preload.so; do
        output="$(ldd "$program")" || return 1
        echo "$program:"; echo "$output"
        grep -qiE "swift|not found|$toolchain" <<<"$output" && return 1
    done
    return 0
}
# The harness's private mount namespace, where the Swift toolchain's directory is an empty tmpfs.
runs_without_toolchain() {
    TOOLCHAIN="$toolchain" /usr/bin/python3 -m harness.netns mounts --script 'mount -t tmpfs tmpfs "$TOOLCHAIN"' -- \
        sh -c '/usr/sbin/nfq-redirectd --version && /usr/bin/nfq-redirect --version' | tee /dev/stderr | [ "$(sort -u)" = "$upstream" ]
}
conffile() { dpkg-query -W -f='${Conffiles}\n' nfq-redirect | tee /dev/stderr | grep -q '^ /etc/nfq-redirect/nfq-redirect.toml [0-9a-f]\{32\}$'; }
group_created() { getent group nfq-redirect; }
units_verify() {
    local output; output="$(systemd-analyze verify /usr/lib/systemd/system/nfq-redirect.service /usr/lib/systemd/system/nfq-redirect-gave-up.service 2>&1)"
    local status=$?; echo "$output"; [ "$status" = 0 ] && [ -z "$output" ]
}
man_pages_open() {
    local page text
    for page in 8:nfq-redirectd 8:nfq-redirect 5:nfq-redirect.toml 3:libnfq-redirect; do
        text="$(MANWIDTH=100 man -P cat "${page%%:*}" "${page#*:}" 2>&1)" || { echo "$page: $text"; return 1; }
        grep -qE "^($([ "${page%%:*}" = 5 ] && echo FILES || echo 'EXIT STATUS|RETURN VALUE'))\$" <<<"$text" &&
            grep -q '^SEE ALSO' <<<"$text" || { echo "$page lacks sections"; return 1; }
    done
}
# The installed bash completion loads and completes the subcommands (bash-completion's loader
# is not needed: argument-parser's script stands alone).
bash_completion_works() {
    local words
    words="$(bash -c 'source /usr/share/bash-completion/completions/nfq-redirect && complete -p nfq-redirect >&2 &&
        COMP_WORDS=(nfq-redirect do) COMP_CWORD=1 COMP_LINE="nfq-redirect do" COMP_POINT=15 &&
        func="$(complete -p nfq-redirect | sed -n "s/.*-F \([^ ]*\) .*/\1/p")" && "$func" nfq-redirect do nfq-redirect &&
        printf "%s\n" "${COMPREPLY[@]}"')" || return 1
    echo "completes 'nfq-redirect do' to: $words"
    grep -qx doctor <<<"$words" &&
    bash -c 'source /usr/share/bash-completion/completions/nfq-redirectd && complete -p nfq-redirectd'
}
nothing_enabled_or_started() {
    local link exe
    for link in /etc/systemd/system/*.wants/nfq-redirect*; do
        [ -e "$link" ] && { echo "enabled: $link"; return 1; }
    done
    for exe in /proc/[0-9]*/exe; do
        [ "$(readlink "$exe" 2>/dev/null)" = /usr/sbin/nfq-redirectd ] && { echo "running: $exe"; return 1; }
    done
    [ ! -e /run/nfq-redirect ]
}
# The installed daemon in a namespace of its own, on the installed config (socket group
# nfq-redirect) plus a local redirect, its socket in the test's directory.
socket="$work/lookup.sock"
config="$work/nfq-redirect.toml"
start_daemon() {
    sed -e "s|^socket = .*|socket = \"$socket\"|" /etc/nfq-redirect/nfq-redirect.toml >"$config" &&
    printf '\n[[redirect]]\nproto = "tcp"\nports = "9000"\nto_port = 8090\nscope = "local"\n' >>"$config" || return 1
    # As the unit runs it: its CapabilityBoundingSet= (no CAP_CHOWN) and SupplementaryGroups=.
    local unit=/usr/lib/systemd/system/nfq-redirect.service caps groups
    caps="$(sed -n 's/^CapabilityBoundingSet=//p' "$unit" | tr 'A-Z ' 'a-z\n' | sed -n 's/^cap_\(.*\)/+\1/p' | paste -sd,)"
    groups="$(for name in $(sed -n 's/^SupplementaryGroups=//p' "$unit"); do getent group "$name" | cut -d: -f3; done | paste -sd,)"
    echo "bounding set -all,$caps; groups $groups"
    [ -n "$caps" ] && [ -n "$groups" ] || return 1
    ip netns exec "$netns" setpriv --bounding-set "-all,$caps" --groups "$groups" \
        /usr/sbin/nfq-redirectd --config "$config" --no-state --no-getsockopt-hook >"$work/daemon.log" 2>&1 &
    daemon=$!
    # Ready once it logs "started:" (after the socket's bind, chown, chmod and listen; the file
    # alone appears at bind). 60 s: a loaded machine.
    local tries=0
    until grep -q 'started: ' "$work/daemon.log"; do
        tries=$((tries + 1)); [ "$tries" -lt 1200 ] && kill -0 "$daemon" 2>/dev/null || { cat "$work/daemon.log"; return 1; }
        sleep 0.05
    done
    [ -S "$socket" ]
}
socket_mode_and_group() { stat -c '%a %U %G' "$socket" | tee /dev/stderr | grep -qx '660 root nfq-redirect'; }
# A proxy's connection redirected by the daemon; a user in the group asks for its original
# destination and gets it, one outside the group is refused by the socket's permissions.
group_member_gets_answers() {
    local gid; gid="$(getent group nfq-redirect | cut -d: -f3)"
    ip netns exec "$netns" python3 - "$socket" "$gid" <<'PY'
import socket, subprocess, sys
path, gid = sys.argv[1], sys.argv[2]
listener = socket.socket(); listener.bind(("127.0.0.1", 8090)); listener.listen(1)
client = socket.create_connection(("127.0.0.1", 9000), timeout=5)
conn, _ = listener.accept()
peer, local = conn.getpeername(), conn.getsockname()
ask = ["/usr/bin/nfq-redirect", "lookup", "--socket", path, "tcp", peer[0], str(peer[1]), local[0], str(local[1])]
def run(groups):
    done = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", groups, *ask], capture_output=True, text=True)
    print(groups, done.returncode, done.stdout.strip(), done.stderr.strip())
    return done
member, outsider = run(f"--groups={gid}"), run("--clear-groups")
ok = member.returncode == 0 and member.stdout.strip() == "127.0.0.1:9000"
ok = ok and outsider.returncode != 0 and "ermission denied" in (outsider.stdout + outsider.stderr)
sys.exit(0 if ok else 1)
PY
}
stop_daemon() { kill "$daemon" && wait "$daemon"; local status=$?; daemon=""; [ "$status" = 0 ]; }
# A group the host lacks: one line and exit status 2, from the check and from the daemon, in
# the harness's namespace, after the test's daemon has stopped.
missing_group_refused() {
    local missing="nfqr-missing-$$" extra output status
    sed -e "s|^group = .*|group = \"$missing\"|" "$config" >"$work/missing.toml"
    for extra in --check-config --no-state; do
        output="$(timeout 20 ip netns exec "$netns" /usr/sbin/nfq-redirectd --config "$work/missing.toml" --no-getsockopt-hook $extra 2>&1)"; status=$?
        echo "$extra: exit $status: $output"
        [ "$status" = 2 ] && [ "$(wc -l <<<"$output")" = 1 ] && grep -q "lookup.group: no group named '$missing'" <<<"$output" || return 1
    done
}
package_files=""
purges() { package_files="$(dpkg-query -L nfq-redirect)" && dpkg --purge nfq-redirect; }
nothing_left() {
    local path left=0
    while read -r path; do
        [ -f "$path" ] || [ -L "$path" ] && { echo "left: $path"; left=1; }
    done <<<"$package_files"
    for path in /etc/nfq-redirect /run/nfq-redirect /var/lib/nfq-redirect /usr/share/doc/nfq-redirect \
            /usr/lib/$triplet/libnfq-redirect-preload.so; do
        [ -e "$path" ] && { echo "left: $path"; left=1; }
    done
    ! dpkg-query -W nfq-redirect 2>/dev/null && [ "$left" = 0 ]
}
group_kept_on_purge() { getent group nfq-redirect; }

check "scripts/build-deb.sh builds the package" builds
[ -n "$deb" ] || exit 1
check "lintian: no error, no warning" lintian_clean
check "control: nfq-redirect $upstream-1, Depends names iptables, libnetfilter-queue1, libnetfilter-conntrack3, adduser, no Swift" control_fields
check "nothing of nfq-redirect installed on this machine before" machine_is_clean
[ "$failed" = 0 ] || exit 1
check "dpkg -i installs it" installs
check "files: programs, multiarch libraries, header, both units, config, docs, completions" files_in_place
check "--version of both is $upstream" versions
check "ldd: no Swift runtime, no toolchain path" no_toolchain_in_ldd
check "both run with the Swift toolchain hidden" runs_without_toolchain
check "the config is a conffile" conffile
check "the group nfq-redirect exists" group_created
check "systemd-analyze verify of the installed units is silent" units_verify
check "man pages 8, 8, 5, 3 open, with EXIT STATUS (RETURN VALUE, FILES) and SEE ALSO" man_pages_open
check "bash completion loads and completes 'do' to doctor" bash_completion_works
check "nothing enabled or started" nothing_enabled_or_started
check "the installed daemon starts on the installed config plus a redirect, with the unit's capabilities and groups" start_daemon
check "its socket is 0660 root:nfq-redirect" socket_mode_and_group
check "a user in nfq-redirect gets the original destination; one outside is refused" group_member_gets_answers
check "the daemon stops cleanly" stop_daemon
check "a [lookup] group missing on the host: one line, exit status 2 (check and start)" missing_group_refused
check "dpkg --purge purges it" purges
check "nothing left: package files, /etc, /run, /var/lib" nothing_left
check "the group stays after purge (Debian's rule for system accounts; the test removes it)" group_kept_on_purge
[ "$failed" = 0 ]
