#!/usr/bin/env bash
# `make demo` as a newcomer sees it: within a minute it shows a redirected connection, the
# original destination an unmodified Go proxy got from the kernel, and `nfq-redirect list`, then
# the same in kernel-nat mode (the daemon sees the first packet only); and it leaves no
# namespace, process or host rule behind. A PASS or FAIL line per check; make runs it under the
# harness's reporter (Tests/harness/report.py), whose summary line ends the output.
set -uo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
bin_dir="${NFQR_BIN_DIR:-$repo/.build/release}"
output="$(mktemp "${TMPDIR:-/tmp}/nfqr-demo-test.XXXXXX")"
trap 'rm -f "$output"' EXIT
passed=0 failed=0

check() {  # check NAME COMMAND...
    local name="$1"; shift
    if "$@"; then passed=$((passed + 1)); echo "PASS  $name"
    else failed=$((failed + 1)); echo "FAIL  $name"; sed 's/^/      /' "$output"; fi
}

rules() { iptables-save | grep -v '^#'; ip6tables-save | grep -v '^#'; }
hooks() { bpftool cgroup tree 2>/dev/null | grep -c nfqr_origdst; }
rules_before="$(rules)"
hooks_before="$(hooks)"
started=$(date +%s)
NFQR_BIN_DIR="$bin_dir" timeout 60 "$repo/scripts/demo.sh" >"$output" 2>&1
status=$?
seconds=$(( $(date +%s) - started ))

check "demo exits 0 within a minute (took ${seconds} s)" [ "$status" = 0 ]
check "shows the redirected connection reaching the server" grep -q "the server answered:  SERVER 203.0.113.10:80 PEER 198.51.100.1:" "$output"
check "shows the getsockopt hook attached" grep -q "getsockopt hook: attached" "$output"
check "shows the original destination v2ray got from its own getsockopt" grep -Eq "v2ray logged: +192.0.2.2:[0-9]+ accepted tcp:203.0.113.10:80" "$output"
check "shows nfq-redirect list with the flow" grep -Eq "^  tcp .*192.0.2.2.*203.0.113.10.*80" "$output"
check "kernel-nat: the redirected connection reaches the server again" \
    test "$(grep -c "the server answered:  SERVER 203.0.113.10:80 PEER 198.51.100.1:" "$output")" = 2
check "kernel-nat: the daemon saw the first packet only" grep -q "packets the daemon saw: 1 (the SYN" "$output"
check "kernel-nat: the flow listed with its state from conntrack" grep -Eq "^    tcp .*192.0.2.2.*203.0.113.10.*80" "$output"
# Only the demo's own names: other suites may be creating namespaces at the same time.
check "leaves no namespace behind" bash -c "! ip netns list | grep -q '^nfqr-demo-'"
check "leaves no host rule behind" [ "$(rules)" = "$rules_before" ]
check "leaves no getsockopt hook behind (bpftool cgroup tree)" [ "$(hooks)" = "$hooks_before" ]
# [n]: the pattern must not match this very command line
check "leaves no demo process behind" bash -c "! pgrep -f '[n]fqr-demo-[0-9]*[.]' >/dev/null"
[ "$failed" = 0 ]
