#!/usr/bin/env bash
# `make install` / `make uninstall` into a throwaway DESTDIR: the exact file list, programs that
# run, a preload library without the Swift runtime, the unit accepted by `systemd-analyze
# verify`, a changed config kept on reinstall and uninstall, nothing else left behind.
# Prints a PASS or FAIL line per check; make runs it under the harness's reporter (Tests/harness/report.py),
# whose summary line ends the output. Exit status non-zero on any failure.
set -uo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$repo"
root="$(mktemp -d "${TMPDIR:-/tmp}/nfqr-install.XXXXXX")"
log="$(mktemp "${TMPDIR:-/tmp}/nfqr-install-log.XXXXXX")"
trap 'rm -rf "$root" "$log"; getent group "nfqr-install-$$" >/dev/null && groupdel "nfqr-install-$$"' EXIT
# shellcheck source=../harness/check.sh
source "$repo/Tests/harness/check.sh"

files() { (cd "$root" && find . -type f -o -type l | sed 's|^\./|/|' | sort); }

expected="/etc/nfq-redirect/nfq-redirect.toml
/usr/bin/nfq-redirect
/usr/include/nfq_redirect.h
/usr/lib/libnfq-redirect-client.a
/usr/lib/libnfq-redirect-preload.so
/usr/lib/systemd/system/nfq-redirect-gave-up.service
/usr/lib/systemd/system/nfq-redirect.service
/usr/sbin/nfq-redirectd
/usr/share/bash-completion/completions/nfq-redirect
/usr/share/bash-completion/completions/nfq-redirectd
/usr/share/doc/nfq-redirect/CHANGELOG.md
/usr/share/doc/nfq-redirect/LICENSE
/usr/share/doc/nfq-redirect/lookup-protocol.md
/usr/share/doc/nfq-redirect/nfq-redirect.toml
/usr/share/doc/nfq-redirect/operations.md
/usr/share/fish/vendor_completions.d/nfq-redirect.fish
/usr/share/fish/vendor_completions.d/nfq-redirectd.fish
/usr/share/man/man3/libnfq-redirect.3
/usr/share/man/man5/nfq-redirect.toml.5
/usr/share/man/man8/nfq-redirect.8
/usr/share/man/man8/nfq-redirectd.8
/usr/share/zsh/vendor-completions/_nfq-redirect
/usr/share/zsh/vendor-completions/_nfq-redirectd"

install_into_root() { make --no-print-directory install DESTDIR="$root" PREFIX=/usr; }
uninstall_from_root() { make --no-print-directory uninstall DESTDIR="$root" PREFIX=/usr; }
file_list_is_expected() { diff <(echo "$expected") <(files); }
no_placeholders_left() { ! grep -n '@[A-Z]*@' "$root"/usr/lib/systemd/system/nfq-redirect*.service; }
unit_names_installed_paths() {
    local unit="$root/usr/lib/systemd/system/nfq-redirect.service"
    grep -qx 'ExecStart=/usr/sbin/nfq-redirectd --config /etc/nfq-redirect/nfq-redirect.toml --keep-rules-on-exit' "$unit" &&
    grep -qx 'ExecStartPre=/usr/sbin/nfq-redirectd --config /etc/nfq-redirect/nfq-redirect.toml --check-config' "$unit" &&
    grep -qx 'RestartPreventExitStatus=2' "$unit" && grep -qx 'OnFailure=nfq-redirect-gave-up.service' "$unit" &&
    grep -qx 'ExecStart=/usr/bin/nfq-redirect rules --remove --gave-up nfq-redirect.service --config /etc/nfq-redirect/nfq-redirect.toml' \
        "$root/usr/lib/systemd/system/nfq-redirect-gave-up.service"
}
# systemd-analyze checks that every Exec path exists and every man: page opens, so the copy it
# verifies points into the DESTDIR; nothing else in it changes.
unit_verifies() {
    local dir output status
    dir="$(mktemp -d "${TMPDIR:-/tmp}/nfqr-unit.XXXXXX")"
    for unit in nfq-redirect.service nfq-redirect-gave-up.service; do
        sed -e "s|/usr/sbin/nfq|$root/usr/sbin/nfq|g" -e "s|/usr/bin/nfq|$root/usr/bin/nfq|g" \
            "$root/usr/lib/systemd/system/$unit" >"$dir/$unit"
    done
    output="$(MANPATH="$root/usr/share/man" systemd-analyze verify "$dir/nfq-redirect.service" "$dir/nfq-redirect-gave-up.service" 2>&1)"; status=$?
    rm -rf "$dir"
    echo "$output"
    [ "$status" = 0 ] && [ -z "$output" ]
}
# systemd's own exposure score of the sandbox (0 best, 10 worst): 2.1 now; 2.5 is the bar.
unit_sandbox_scores_well() {
    local dir status
    dir="$(mktemp -d "${TMPDIR:-/tmp}/nfqr-unit.XXXXXX")"
    cp "$root/usr/lib/systemd/system/nfq-redirect.service" "$dir/"
    systemd-analyze security --offline=true --threshold=25 "$dir/nfq-redirect.service" | tail -n 1; status=${PIPESTATUS[0]}
    rm -rf "$dir"
    [ "$status" = 0 ]
}
programs_run() {
    "$root/usr/bin/nfq-redirect" --help | grep -q 'rules'
}
# Both print the one version, the CHANGELOG's newest heading, and exit 0.
versions_agree() {
    local daemon cli changelog
    daemon="$("$root/usr/sbin/nfq-redirectd" --version)" && cli="$("$root/usr/bin/nfq-redirect" --version)" || return 1
    changelog="$(grep -m1 '^## \[' CHANGELOG.md | sed 's/^## \[\([^]]*\)\].*/\1/')"
    echo "nfq-redirectd $daemon, nfq-redirect $cli, CHANGELOG.md $changelog"
    [ -n "$daemon" ] && [ "$daemon" = "$cli" ] && [ "$daemon" = "$changelog" ]
}
# The shipped config redirects nothing: the check (the unit's ExecStartPre) refuses it with one
# line and exit status 2, which the unit does not restart.
installed_config_redirects_nothing() {
    local output status
    output="$("$root/usr/sbin/nfq-redirectd" --config "$root/etc/nfq-redirect/nfq-redirect.toml" --check-config 2>&1)"; status=$?
    echo "$output"
    [ "$status" = 2 ] && [ "$(wc -l <<<"$output")" = 1 ] && grep -q 'nothing to redirect' <<<"$output"
}
preload_has_no_swift_runtime() { ! ldd "$root/usr/lib/libnfq-redirect-preload.so" | grep -i swift; }
man_pages_open() {
    local page text section
    for page in 8:nfq-redirectd 8:nfq-redirect 5:nfq-redirect.toml 3:libnfq-redirect; do
        text="$(MANPATH="$root/usr/share/man" MANWIDTH=100 man -P cat "${page%%:*}" "${page#*:}")" || return 1
        # A file format has no exit status; a library's is its return value.
        for section in NAME SYNOPSIS DESCRIPTION FILES "$([ "${page%%:*}" = 5 ] && echo NAME || echo 'EXIT STATUS|RETURN VALUE')" \
                EXAMPLES 'SEE ALSO'; do
            grep -qE "^($section)\$" <<<"$text" || { echo "${page#*:}(${page%%:*}) lacks $section"; return 1; }
        done
    done
    text="$(MANPATH="$root/usr/share/man" man -P cat 8 nfq-redirectd)" &&
    grep -q -- '--keep-rules-on-exit' <<<"$text" && grep -q '^SIGNALS' <<<"$text" && grep -q '^ENVIRONMENT' <<<"$text" &&
    grep -q "nfq-redirect $(sed -n 's/.*static let current = "\(.*\)".*/\1/p' Sources/Daemon/Support/DaemonVersion.swift)" <<<"$text"
}
# argument-parser's scripts: the bash one loads and completes a subcommand; zsh's and fish's
# name the program.
completions_work() {
    local words
    words="$(bash -c 'source "$1" && complete -p nfq-redirect >&2 &&
        COMP_WORDS=(nfq-redirect ru) COMP_CWORD=1 COMP_LINE="nfq-redirect ru" COMP_POINT=15 &&
        func="$(complete -p nfq-redirect | sed -n "s/.*-F \([^ ]*\) .*/\1/p")" && "$func" nfq-redirect ru nfq-redirect &&
        printf "%s\n" "${COMPREPLY[@]}"' bash "$root/usr/share/bash-completion/completions/nfq-redirect")" || return 1
    echo "completes 'nfq-redirect ru' to: $words"
    grep -qx rules <<<"$words" &&
    grep -q '^#compdef nfq-redirectd' "$root/usr/share/zsh/vendor-completions/_nfq-redirectd" &&
    grep -q "^complete -c 'nfq-redirect'" "$root/usr/share/fish/vendor_completions.d/nfq-redirect.fish"
}
# A DESTDIR install is a staging tree: it creates no group on the host, and says nothing of one.
destdir_install_leaves_groups_alone() {
    local before; before="$(getent group | md5sum)"
    install_into_root | tee /dev/stderr | grep -qi 'group' && return 1
    [ "$(getent group | md5sum)" = "$before" ]
}
changed_config_kept_on_reinstall() {
    echo "# changed by the operator" >>"$root/etc/nfq-redirect/nfq-redirect.toml"
    local output
    output="$(install_into_root)" && echo "$output" &&
    grep -q "kept $root/etc/nfq-redirect/nfq-redirect.toml" <<<"$output" &&
    grep -q "changed by the operator" "$root/etc/nfq-redirect/nfq-redirect.toml"
}
uninstall_keeps_only_the_changed_config() {
    uninstall_from_root && [ "$(files)" = "/etc/nfq-redirect/nfq-redirect.toml" ]
}
# Without DESTDIR, as root, make install creates the lookup clients' group (a throwaway name
# here, and PREFIX/SYSCONFDIR in a temporary directory, so the host gets nothing else), says
# so, and a second install finds it; uninstall keeps it and says so.
test_group="nfqr-install-$$"
group_created_without_destdir() {
    local prefix output
    [ "$(id -u)" = 0 ] || { echo "needs root"; return 1; }
    prefix="$(mktemp -d "${TMPDIR:-/tmp}/nfqr-prefix.XXXXXX")"
    output="$(make --no-print-directory install PREFIX="$prefix" SYSCONFDIR="$prefix/etc" NFQR_GROUP="$test_group" &&
              make --no-print-directory install PREFIX="$prefix" SYSCONFDIR="$prefix/etc" NFQR_GROUP="$test_group" &&
              make --no-print-directory uninstall PREFIX="$prefix" SYSCONFDIR="$prefix/etc" NFQR_GROUP="$test_group")"
    local status=$?
    rm -rf "$prefix"
    echo "$output" | grep -i group
    [ "$status" = 0 ] && getent group "$test_group" && grep -q "created system group $test_group" <<<"$output" &&
    grep -q "group $test_group exists" <<<"$output" && grep -q "kept group $test_group" <<<"$output" &&
    [ "$(getent group "$test_group" | cut -d: -f3)" -lt 1000 ]   # a system group
}

uninstall_of_unchanged_leaves_nothing() {
    install_into_root && uninstall_from_root && [ -z "$(files)" ]
}

check "make install DESTDIR PREFIX=/usr" install_into_root
check "installed files are exactly the expected list" file_list_is_expected
check "unit: no @placeholder@ left" no_placeholders_left
check "units: ExecStart/ExecStartPre/OnFailure name the installed programs and config; exit 2 not restarted" unit_names_installed_paths
check "unit: systemd-analyze verify is silent and succeeds" unit_verifies
check "unit: systemd-analyze security exposure at most 2.5" unit_sandbox_scores_well
check "installed programs run" programs_run
check "--version: daemon, CLI and CHANGELOG.md agree" versions_agree
check "the installed config redirects nothing: --check-config says so in one line, exit status 2" installed_config_redirects_nothing
check "installed preload library does not load the Swift runtime" preload_has_no_swift_runtime
check "man pages (8, 8, 5, 3) open with their sections and the version" man_pages_open
check "completions: bash completes a subcommand; zsh and fish scripts installed" completions_work
check "a DESTDIR install touches no group on the host" destdir_install_leaves_groups_alone
check "a changed config is kept by make install" changed_config_kept_on_reinstall
check "make uninstall removes everything but the changed config" uninstall_keeps_only_the_changed_config
rm -f "$root/etc/nfq-redirect/nfq-redirect.toml"
check "install + uninstall of an unchanged config leaves no file" uninstall_of_unchanged_leaves_nothing
check "make install without DESTDIR, as root: creates the system group, finds it again, uninstall keeps it" group_created_without_destdir
[ "$failed" = 0 ]
