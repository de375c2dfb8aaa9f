#!/usr/bin/env bash
# Runs the preload and client-library tests under the harness's reporter, whose last line is
# "preload: N passed, M failed, K skipped (T s)".
#
#   NFQR_PRELOAD_LIB=.../libnfq-redirect-preload.so NFQR_TEST_BIN=.../nfqr-preload-tests run.sh [--netns-only]
#
# (make preload-test sets both, and PYTHONPATH for the harness.) The network-namespace part
# needs root and runs in the harness's namespace (shape "single"); without root it is reported
# as skipped.
# Run by hand too: the harness package is found through PYTHONPATH, as make sets it.
export PYTHONPATH="${PYTHONPATH:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)/Tests}"
set -u

here=$(cd "$(dirname "$0")" && pwd)
lib=${NFQR_PRELOAD_LIB:?set NFQR_PRELOAD_LIB}
bin=${NFQR_TEST_BIN:?set NFQR_TEST_BIN}
python=/usr/bin/python3

# Runs one test program, whose "RESULT <passed> <failed>" line the reporter adds up; a program
# that ends without one (a crash, a REQUIRE) is one failure.
run() {
    local output status
    output=$(timeout 120 "$@" 2>&1)
    status=$?
    printf '%s\n' "$output"
    printf '%s\n' "$output" | grep -q '^RESULT ' || echo "FAIL  $* ended with status $status and no result"
}

check() {   # check "description" command...
    local what=$1
    shift
    if "$@"; then echo "PASS  $what"; else echo "FAIL  $what"; fi
}

# The namespace part: the harness runs this script again inside its namespace.
if [ "${1:-}" = --in-namespace ]; then
    socket_path=$2
    # Kernel REDIRECT inside the namespace only; flow-label reflection so flowinfo is non-zero.
    ip netns exec "$NFQR_NS_ROUTER" sh -ec '
        sysctl -qw net.ipv6.flowlabel_reflect=1
        iptables  -t nat -A OUTPUT -p tcp --dport 9999 -j REDIRECT --to-ports 7777
        iptables  -t nat -A OUTPUT -p tcp --dport 9998 -j REDIRECT --to-ports 7778
        ip6tables -t nat -A OUTPUT -p tcp --dport 9999 -j REDIRECT --to-ports 7777' \
        || { echo "FAIL  namespace set-up"; exit 1; }
    run ip netns exec "$NFQR_NS_ROUTER" env LD_PRELOAD="$lib" NFQ_REDIRECT_SOCKET="$socket_path" \
        "$bin/preload_tests" --netns
    run ip netns exec "$NFQR_NS_ROUTER" env LD_PRELOAD="$lib" NFQ_REDIRECT_SOCKET="$NFQR_RUN_DIR/absent.sock" \
        "$bin/preload_tests" --netns-absent
    exit 0
fi
if [ -z "${NFQR_REPORTER:-}" ]; then
    exec env NFQR_REPORTER=1 "$python" -m harness.report preload -- "$0" "$@"
fi
netns_only=false
[ "${1:-}" = --netns-only ] && netns_only=true

work=$(mktemp -d /tmp/nfqr-preload-test.XXXXXX)
socket_path=$work/lookup.sock
daemon_pid=

cleanup() {
    [ -n "$daemon_pid" ] && kill "$daemon_pid" 2>/dev/null && wait "$daemon_pid" 2>/dev/null
    rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

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
    echo "FAIL  fake daemon did not start"; cat "$work/daemon.log"
    exit 1
}

run_netns() {
    if [ "$(id -u)" != 0 ]; then
        echo "SKIP  network-namespace tests (not root)"
        return
    fi
    "$python" -m harness.netns run --tag "nfqr-pl-$$" --shape single -- "$0" --in-namespace "$socket_path" \
        || echo "FAIL  the network-namespace tests (harness exit status $?)"
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
