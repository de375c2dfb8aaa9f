#!/usr/bin/env bash
# Runs the preload and client-library tests; the last line is "N passed, M failed".
#
#   NFQR_PRELOAD_LIB=.../libnfq-redirect-preload.so NFQR_TEST_BIN=.../nfqr-preload-tests run.sh [--netns-only]
#
# (make -f Sources/CPreload/preload.mk preload-test sets both.) The network-namespace part
# needs root; without it, it is reported as skipped. Every namespace is deleted on exit.
set -u

here=$(cd "$(dirname "$0")" && pwd)
lib=${NFQR_PRELOAD_LIB:?set NFQR_PRELOAD_LIB}
bin=${NFQR_TEST_BIN:?set NFQR_TEST_BIN}
python=/usr/bin/python3
netns_only=false
[ "${1:-}" = --netns-only ] && netns_only=true

work=$(mktemp -d /tmp/nfqr-preload-test.XXXXXX)
socket_path=$work/lookup.sock
daemon_pid=
namespace=

cleanup() {
    [ -n "$namespace" ] && ip netns del "$namespace" 2>/dev/null
    [ -n "$daemon_pid" ] && kill "$daemon_pid" 2>/dev/null && wait "$daemon_pid" 2>/dev/null
    rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

passed=0
failed=0

# Runs one test program; adds up its "RESULT <passed> <failed>" line (none: one failure).
run() {
    local output
    output=$(timeout 120 "$@" 2>&1)
    local status=$?
    printf '%s\n' "$output" | grep -v '^RESULT '
    local result
    result=$(printf '%s\n' "$output" | grep '^RESULT ' | tail -1)
    if [ -z "$result" ]; then
        echo "FAIL: $* ended with status $status and no result"
        failed=$((failed + 1))
        return
    fi
    set -- $result
    passed=$((passed + $2))
    failed=$((failed + $3))
}

check() {   # check "description" command...
    local what=$1
    shift
    if "$@"; then
        passed=$((passed + 1))
    else
        echo "FAIL: $what"
        failed=$((failed + 1))
    fi
}

no_swift_runtime() { ! ldd "$lib" | grep -qi swift; }
exports_only_getsockopt() {
    [ "$(nm -D --defined-only "$lib" | awk '{print $3}' | sort | tr '\n' ' ')" = "getsockopt " ]
}
client_archive_has_no_swift() { ! nm "$bin/../libnfq-redirect-client.a" 2>/dev/null | grep -q swift_; }

start_daemon() {
    "$python" "$here/fake_daemon.py" "$socket_path" >"$work/daemon.log" 2>&1 &
    daemon_pid=$!
    for _ in $(seq 100); do
        [ -S "$socket_path" ] && grep -q ready "$work/daemon.log" && return 0
        sleep 0.05
    done
    echo "FAIL: fake daemon did not start"; cat "$work/daemon.log"
    exit 1
}

run_netns() {
    if [ "$(id -u)" != 0 ]; then
        echo "network-namespace tests skipped: not root"
        return
    fi
    namespace=nfqr-pl-$$-$RANDOM
    ip netns add "$namespace" || { echo "FAIL: ip netns add"; failed=$((failed + 1)); return; }
    # Kernel REDIRECT inside the namespace only; flow-label reflection so flowinfo is non-zero.
    if ! ip netns exec "$namespace" sh -ec '
            ip link set lo up
            sysctl -qw net.ipv6.flowlabel_reflect=1
            iptables  -t nat -A OUTPUT -p tcp --dport 9999 -j REDIRECT --to-ports 7777
            iptables  -t nat -A OUTPUT -p tcp --dport 9998 -j REDIRECT --to-ports 7778
            ip6tables -t nat -A OUTPUT -p tcp --dport 9999 -j REDIRECT --to-ports 7777'; then
        echo "FAIL: namespace set-up"; failed=$((failed + 1)); return
    fi
    run ip netns exec "$namespace" env LD_PRELOAD="$lib" NFQ_REDIRECT_SOCKET="$socket_path" \
        "$bin/preload_tests" --netns
    run ip netns exec "$namespace" env LD_PRELOAD="$lib" NFQ_REDIRECT_SOCKET="$work/absent.sock" \
        "$bin/preload_tests" --netns-absent
    ip netns del "$namespace"
    namespace=
}

start_daemon

if ! $netns_only; then
    check "ldd shows no Swift runtime in the preload library" no_swift_runtime
    check "the preload library exports getsockopt alone" exports_only_getsockopt
    check "the client archive has no Swift symbols" client_archive_has_no_swift

    run "$bin/unit_tests"

    run env NFQ_REDIRECT_SOCKET="$socket_path" NFQ_REDIRECT_TIMEOUT_MS=300 "$bin/client_tests"
    run env NFQ_REDIRECT_SOCKET="$work/absent.sock" "$bin/client_tests" --absent ENOENT
    run env NFQ_REDIRECT_SOCKET="$work/$(printf 'x%.0s' $(seq 120))" "$bin/client_tests" --absent ENAMETOOLONG

    run env LD_PRELOAD="$lib" NFQ_REDIRECT_SOCKET="$socket_path" NFQ_REDIRECT_TIMEOUT_MS=250 \
        "$bin/preload_tests"
    run env LD_PRELOAD="$lib" NFQ_REDIRECT_SOCKET="$socket_path" NFQ_REDIRECT_LOOKUP=fd \
        "$bin/preload_tests" --lookupfd
    run env LD_PRELOAD="$lib" NFQ_REDIRECT_SOCKET="$socket_path" NFQ_REDIRECT_BUSY_POLL_US=200 NFQ_REDIRECT_TIMEOUT_MS=250 \
        "$bin/preload_tests" --busy-poll
    run env LD_PRELOAD="$lib" NFQ_REDIRECT_SOCKET="$work/absent.sock" "$bin/preload_tests" --absent
    run env NFQ_REDIRECT_SOCKET="$socket_path" "$bin/preload_tests" --no-preload
fi

run_netns

echo "$passed passed, $failed failed"
[ "$failed" = 0 ]
