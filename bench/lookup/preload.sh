#!/usr/bin/env bash
# Lookup latency: getsockopt(SO_ORIGINAL_DST) through the preload library (against a C
# responder and against Tests/preload/fake_daemon.py) and the kernel's own on an
# iptables-REDIRECTed connection, one and several threads. Root: runs in the harness's
# namespace (shape "single"), removed afterwards with everything started in it.
#
#   make preload-bench [LOOKUP_BENCH_ARGS=CALLS]   (default 20000)
# Run by hand too: the harness package is found through PYTHONPATH, as make sets it.
export PYTHONPATH="${PYTHONPATH:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)/Tests}"
set -eu

lib=${NFQR_PRELOAD_LIB:?set NFQR_PRELOAD_LIB}
bin=${NFQR_BENCH_BIN:?set NFQR_BENCH_BIN}/preload_lookup
fake_daemon=${NFQR_FAKE_DAEMON:?set NFQR_FAKE_DAEMON to Tests/preload/fake_daemon.py}
calls=${1:-20000}
threads=4
[ "$(id -u)" = 0 ] || { echo "preload.sh: run as root (it uses a network namespace)"; exit 1; }
if [ -z "${NFQR_RUN_DIR:-}" ]; then
    exec /usr/bin/python3 -m harness.netns run --tag "nfqr-plb-$$" --shape single -- "$0" "$@"
fi

work=$NFQR_RUN_DIR namespace=$NFQR_NS_ROUTER
in_ns() { ip netns exec "$namespace" "$@"; }
# The responders run in the namespace too, so the harness stops them with it.
in_ns "$bin" responder "$work/responder.sock" >"$work/responder.log" &
in_ns /usr/bin/python3 "$fake_daemon" "$work/fake.sock" >"$work/fake.log" 2>&1 &
/usr/bin/python3 -m harness.netns wait-socket "$work/responder.sock" --log "$work/responder.log"
/usr/bin/python3 -m harness.netns wait-socket "$work/fake.sock" --log "$work/fake.log"
/usr/bin/python3 - "$work/fake.sock" <<'PY'
import socket, sys
s = socket.socket(socket.AF_UNIX); s.connect(sys.argv[1]); s.sendall(b"SCRIPT ok 203.0.113.5 443\n"); s.recv(16)
PY
in_ns iptables -t nat -A OUTPUT -p tcp --dport 9999 -j REDIRECT --to-ports 7777

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
