#!/usr/bin/env bash
# `make svc-man-test`: the hand-written man pages (man/) against what they describe, so they
# cannot drift: every option the programs' --help lists (each subcommand's too), every key the
# config reader accepts, every function and answer of nfq_redirect.h and every environment
# variable the C libraries read appears in its page; each page has the sections the
# conventions ask for, and groff -ww / man --warnings have nothing to say about it.
# NFQR_BIN_DIR: the built programs. Last line: "N passed, M failed"; non-zero on any failure.
set -uo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$repo"
bin="${NFQR_BIN_DIR:-$repo/.build/release}"
log="$(mktemp "${TMPDIR:-/tmp}/nfqr-man-log.XXXXXX")"
trap 'rm -f "$log"' EXIT
# shellcheck source=../harness/check.sh
source "$repo/Tests/harness/check.sh"

# The page's text as written, roff's \- as -, fonts dropped: what a reader can search for.
source_text() { sed -e 's/\\-/-/g' -e 's/\\f[BIRP]//g' -e 's/\\(dq/"/g' "man/$1"; }
# Every NAME in stdin must appear in page $1 as a whole word; prints the ones that do not.
all_in_page() {
    local page="$1" text name missing=0
    text="$(source_text "$page")"
    while read -r name; do
        [ -n "$name" ] || continue
        grep -qE -- "(^|[^a-zA-Z0-9_-])$name([^a-zA-Z0-9_-]|\$)" <<<"$text" || { echo "$page lacks $name"; missing=1; }
    done
    return "$missing"
}
options_of() { "$@" --help 2>&1 | grep -oE -- '(^|[ ,])--[a-z][a-z0-9-]*' | sed 's/^[ ,]*//' | sort -u; }
subcommands() {
    "$bin/nfq-redirect" --help | sed -n '/^SUBCOMMANDS:/,/^$/p' | awk '/^  [a-z][a-z-]* / { print $1 }'
}

daemon_options() { options_of "$bin/nfq-redirectd" | tee /dev/stderr | all_in_page nfq-redirectd.8; }
cli_subcommands() {
    local names; names="$(subcommands)"; echo "$names"
    [ "$(wc -l <<<"$names")" -ge 8 ] && all_in_page nfq-redirect.8 <<<"$names"
}
cli_options() {
    local sub all
    all="$( (options_of "$bin/nfq-redirect"; for sub in $(subcommands); do options_of "$bin/nfq-redirect" "$sub"; done) | sort -u)"
    echo "$all"; all_in_page nfq-redirect.8 <<<"$all"
}
config_keys() {
    local keys
    keys="$( (grep -o 'allowed: \[[^]]*\]' Sources/Daemon/Configuration/ConfigurationFile.swift | grep -oE '"[a-z_]+"'
              grep -oE '\("[a-z_]+", \\\.' Sources/Daemon/Configuration/FlowTimeouts+Configuration.swift | grep -oE '"[a-z_]+"') |
             tr -d '"' | sort -u)"
    echo "$keys"; [ "$(wc -l <<<"$keys")" -ge 40 ] && all_in_page nfq-redirect.toml.5 <<<"$keys"
}
c_api() {
    local names
    names="$( (grep -E '^NFQR_API ' Sources/CPreload/include/nfq_redirect.h | grep -oE '[a-z_]+\(' | tr -d '('
               sed -n '/typedef enum nfqr_answer/,/}/p' Sources/CPreload/include/nfq_redirect.h | grep -oE '^ *NFQR_[A-Z_]+' | tr -d ' ') | sort -u)"
    echo "$names"; [ "$(wc -l <<<"$names")" -ge 12 ] && all_in_page libnfq-redirect.3 <<<"$names"
}
environment() {
    local names; names="$(grep -rhoE 'getenv\("NFQ_REDIRECT_[A-Z_]+"\)' Sources/CPreload | grep -oE 'NFQ_REDIRECT_[A-Z_]+' | sort -u)"
    echo "$names"; [ -n "$names" ] && all_in_page libnfq-redirect.3 <<<"$names" &&
    all_in_page nfq-redirect.8 <<<NFQ_REDIRECT_SOCKET
}
sections() {
    local page section missing=0 wanted
    for page in nfq-redirectd.8 nfq-redirect.8 nfq-redirect.toml.5 libnfq-redirect.3; do
        wanted="NAME SYNOPSIS DESCRIPTION FILES EXAMPLES SEE_ALSO"
        case "$page" in
            nfq-redirectd.8) wanted="$wanted OPTIONS SIGNALS ENVIRONMENT EXIT_STATUS" ;;
            nfq-redirect.8) wanted="$wanted OPTIONS ENVIRONMENT EXIT_STATUS" ;;
            libnfq-redirect.3) wanted="$wanted ENVIRONMENT RETURN_VALUE" ;;
        esac
        for section in $wanted; do
            grep -qE "^\.SH \"?${section//_/ }\"?\$" "man/$page" || { echo "$page lacks $section"; missing=1; }
        done
    done
    return "$missing"
}
lint() {
    local page output bad=0
    for page in man/*.[0-9]; do
        output="$(sed 's/@VERSION@/0/' "$page" | LC_ALL=C.UTF-8 groff -ww -man -z 2>&1
                  sed 's/@VERSION@/0/' "$page" >"$log.page" && LC_ALL=C.UTF-8 MANWIDTH=80 man --warnings -l "$log.page" 2>&1 >/dev/null)"
        [ -z "$output" ] || { echo "$page: $output"; bad=1; }
    done
    rm -f "$log.page"
    return "$bad"
}

check "nfq-redirectd(8) names every option of nfq-redirectd --help" daemon_options
check "nfq-redirect(8) names every subcommand" cli_subcommands
check "nfq-redirect(8) names every option of every subcommand's --help" cli_options
check "nfq-redirect.toml(5) names every key the config reader accepts" config_keys
check "libnfq-redirect(3) names every function and answer of nfq_redirect.h" c_api
check "libnfq-redirect(3) names every NFQ_REDIRECT_* variable the C libraries read" environment
check "every page has the sections its kind needs" sections
check "groff -ww and man --warnings: no warning" lint
[ "$failed" = 0 ]
