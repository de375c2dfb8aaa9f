#!/usr/bin/env bash
# Lookup latency: getsockopt(SO_ORIGINAL_DST) through the preload library (against a C
# responder and against fake_daemon.py) and the kernel's own on an iptables-REDIRECTed
# connection, one and several threads. Root: runs in a throwaway network namespace.
#
#   NFQR_PRELOAD_LIB=... NFQR_TEST_BIN=... bench.sh [CALLS]
set -eu

here=$(cd "$(dirname "$0")" && pwd)
lib=${NFQR_PRELOAD_LIB:?set NFQR_PRELOAD_LIB}
bin=${NFQR_TEST_BIN:?set NFQR_TEST_BIN}/bench_lookup
calls=${1:-20000}
threads=4
[ "$(id -u)" = 0 ] || { echo "bench.sh: run as root (it uses a network namespace)"; exit 1; }

work=$(mktemp -d /tmp/nfqr-preload-bench.XXXXXX)
namespace=nfqr-pl-bench-$$-$RANDOM
pids=()
cleanup() {
    ip netns del "$namespace" 2>/dev/null || true
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    rm -rf "$work"
}
trap cleanup EXIT

"$bin" responder "$work/responder.sock" >"$work/responder.log" & pids+=($!)
/usr/bin/python3 "$here/fake_daemon.py" "$work/fake.sock" >"$work/fake.log" 2>&1 & pids+=($!)
for _ in $(seq 100); do
    grep -q ready "$work/responder.log" 2>/dev/null && grep -q ready "$work/fake.log" 2>/dev/null && break
    sleep 0.05
done
/usr/bin/python3 - "$work/fake.sock" <<'PY'
import socket, sys
s = socket.socket(socket.AF_UNIX); s.connect(sys.argv[1]); s.sendall(b"SCRIPT ok 203.0.113.5 443\n"); s.recv(16)
PY

ip netns add "$namespace"
ip netns exec "$namespace" sh -ec '
    ip link set lo up
    iptables -t nat -A OUTPUT -p tcp --dport 9999 -j REDIRECT --to-ports 7777'
in_ns() { ip netns exec "$namespace" "$@"; }

echo "getsockopt(SO_ORIGINAL_DST), $calls calls per thread, $(nproc) cores"
for n in 1 $threads; do
    in_ns "$bin" kernel "$calls" "$n"
    in_ns env LD_PRELOAD="$lib" NFQ_REDIRECT_SOCKET="$work/responder.sock" "$bin" preload "$calls" "$n"
    in_ns env LD_PRELOAD="$lib" NFQ_REDIRECT_SOCKET="$work/responder.sock" NFQ_REDIRECT_LOOKUP=fd \
        "$bin" preload "$calls" "$n"
done
echo "against fake_daemon.py (Python, one thread per connection):"
in_ns env LD_PRELOAD="$lib" NFQ_REDIRECT_SOCKET="$work/fake.sock" "$bin" preload $((calls / 4)) 1
echo "connection strategy (the same LOOKUP line, no library):"
NFQ_REDIRECT_SOCKET="$work/responder.sock" "$bin" persistent "$calls"
NFQ_REDIRECT_SOCKET="$work/responder.sock" "$bin" connect-per-call "$calls"
echo "pass-through cost for every other getsockopt:"
LD_PRELOAD="$lib" "$bin" passthrough 2000000
