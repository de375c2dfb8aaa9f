#!/usr/bin/env bash
# Runs the preload and client-library tests (and the example proxy's, as a client of the same
# fake daemon) under the harness's reporter, whose last line is
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
    [ -n "${notice_daemon_pid:-}" ] && kill "$notice_daemon_pid" 2>/dev/null
    [ -n "${notice_dir:-}" ] && rm -rf "$notice_dir"
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

# The preload library says once per process why it fell back when the daemon's socket refused
# it (EACCES on connect; ERR DENIED), says nothing for ordinary fallbacks, and says every
# fallback with NFQ_REDIRECT_DEBUG=1. The stand-in proxy asks 3 times; stderr is a file.
notice_daemon_pid=
notice_dir=
stop_notice_daemon() {
    [ -n "$notice_daemon_pid" ] && kill "$notice_daemon_pid" 2>/dev/null && wait "$notice_daemon_pid" 2>/dev/null
    notice_daemon_pid=
}
lines_matching() { grep -c -- "$2" "$1" 2>/dev/null || true; }
expect_lines() {   # expect_lines "description" FILE PATTERN COUNT
    local count
    count=$(lines_matching "$2" "$3")
    if [ "$count" = "$4" ]; then
        echo "PASS  $1"
    else
        echo "FAIL  $1: $count lines matching '$3', expected $4; stderr was:"
        cat "$2"
    fi
}
run_fallback_notice() {
    # A directory another user can enter (the checkout and $work may be root's alone).
    notice_dir=$(mktemp -d /tmp/nfqr-preload-notice.XXXXXX)
    chmod 0755 "$notice_dir"
    cp "$lib" "$bin/fallback_notice" "$notice_dir/"
    local notice_lib=$notice_dir/$(basename "$lib") proxy=$notice_dir/fallback_notice
    local sock=$notice_dir/lookup.sock out=$notice_dir/stderr
    "$python" "$here/fake_daemon.py" "$sock" >"$notice_dir/daemon.log" 2>&1 &
    notice_daemon_pid=$!
    for _ in $(seq 100); do
        [ -S "$sock" ] && grep -q ready "$notice_dir/daemon.log" && break
        sleep 0.05
    done

    # ERR DENIED: the allow list.
    "$python" - "$sock" <<'PY'
import socket, sys
s = socket.socket(socket.AF_UNIX); s.connect(sys.argv[1]); s.sendall(b"SCRIPT err DENIED\n"); s.recv(16)
PY
    env LD_PRELOAD="$notice_lib" NFQ_REDIRECT_SOCKET="$sock" "$proxy" 3 2>"$out"
    expect_lines "ERR DENIED: said once for 3 calls" "$out" "answered ERR DENIED" 1
    expect_lines "ERR DENIED: the line names the socket and the fix" "$out" "socket $sock answered ERR DENIED.*Fix: add this program's user to the socket's group" 1
    env LD_PRELOAD="$notice_lib" NFQ_REDIRECT_SOCKET="$sock" NFQ_REDIRECT_DEBUG=1 "$proxy" 3 2>"$out"
    expect_lines "NFQ_REDIRECT_DEBUG=1: each of 3 fallbacks said, with the tuple" "$out" "SO_ORIGINAL_DST) tcp 127.0.0.1:[0-9]* -> 127.0.0.1:[0-9]*: the daemon at $sock: denied; to the kernel" 3

    # Ordinary fallbacks (the daemon has no such flow; no daemon at all) stay quiet.
    "$python" - "$sock" <<'PY'
import socket, sys
s = socket.socket(socket.AF_UNIX); s.connect(sys.argv[1]); s.sendall(b"SCRIPT err NOTFOUND\n"); s.recv(16)
PY
    env LD_PRELOAD="$notice_lib" NFQ_REDIRECT_SOCKET="$sock" "$proxy" 3 2>"$out"
    expect_lines "ERR NOTFOUND: nothing said" "$out" "nfq-redirect-preload" 0
    env LD_PRELOAD="$notice_lib" NFQ_REDIRECT_SOCKET="$notice_dir/absent.sock" "$proxy" 3 2>"$out"
    expect_lines "no daemon: nothing said" "$out" "nfq-redirect-preload" 0
    env LD_PRELOAD="$notice_lib" NFQ_REDIRECT_SOCKET="$notice_dir/absent.sock" NFQ_REDIRECT_DEBUG=1 "$proxy" 2 2>"$out"
    expect_lines "no daemon, NFQ_REDIRECT_DEBUG=1: why, twice" "$out" "daemon unavailable, ENOENT" 2

    # EACCES: the socket is there, the user may not connect (root's, mode 0600; as root the
    # stand-in proxy runs as nobody, as another user it runs as itself with mode 0000).
    local as_user=()
    if [ "$(id -u)" = 0 ]; then
        chmod 0600 "$sock"
        as_user=(setpriv --reuid=65534 --regid=65534 --clear-groups)
    else
        chmod 0000 "$sock"
    fi
    "${as_user[@]}" env LD_PRELOAD="$notice_lib" NFQ_REDIRECT_SOCKET="$sock" "$proxy" 3 2>"$out"
    expect_lines "EACCES: said once for 3 calls" "$out" "refused the connection: EACCES" 1
    expect_lines "EACCES: the line names the socket, its owner and the fix" "$out" "socket $sock refused the connection: EACCES (permission denied); the socket is owned by uid [0-9]*, group gid [0-9]*, mode 0[0-7]*\..*usermod -aG" 1
    # stderr /dev/null (a daemonised proxy): the notice goes to syslog instead, once. Needs a
    # mount namespace to point /dev/log at the test's own socket: root only.
    if [ "$(id -u)" = 0 ]; then
        run "$python" -m harness.netns mounts -- "$python" "$here/syslog_notice.py" "$notice_lib" "$proxy" "$sock"
    fi
    stop_notice_daemon
    rm -rf "$notice_dir"
    notice_dir=
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
    "$python" "$here/example_proxy.py" "$socket_path" "$here/../../examples/transparent_proxy.py"
    run_fallback_notice
fi

run_netns
