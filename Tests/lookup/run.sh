#!/usr/bin/env bash
# Hostile lookup clients against the real daemon, in the harness's "pair" namespaces: R runs the
# daemon and the clients; C (over a veth) makes the redirected transfers that measure the datapath.
#
#   make lookup-test      (NFQR_BIN_DIR=.build/release PYTHONPATH=Tests Tests/lookup/run.sh)
#
# Root only. The harness creates the namespaces and the run directory, runs the rest of this
# script in them, removes everything afterwards and prints the summary line.
# Run by hand too: the harness package is found through PYTHONPATH, as make sets it.
export PYTHONPATH="${PYTHONPATH:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)/Tests}"
set -eu

here=$(cd "$(dirname "$0")" && pwd)
bin_dir=${NFQR_BIN_DIR:?set NFQR_BIN_DIR to the folder with nfq-redirectd}
[ "$(id -u)" = 0 ] || { echo "run.sh: run as root (it uses a network namespace)"; exit 1; }
if [ -z "${NFQR_RUN_DIR:-}" ]; then
    # NFQR_DATAPATH=kernel-nat: the same clients against the daemon's kernel-nat datapath.
    exec /usr/bin/python3 -m harness.report "lookup${NFQR_DATAPATH:+ ($NFQR_DATAPATH)}" -- \
        /usr/bin/python3 -m harness.netns run --tag "nfqr-lk-$$" --shape pair -- "$0" "$@"
fi

# Inside the harness: $NFQR_NS_ROUTER, $NFQR_NS_CLIENT, $NFQR_RUN_DIR (mode 0711: a peer of
# another uid must reach the socket to be refused by the daemon).
work=$NFQR_RUN_DIR
cat >"$work/config.toml" <<TOML
[lookup]
socket = "$work/lookup.sock"
mode = "0666"
allow_users = ["root"]
max_clients = 1000
TOML

# C's transfers to R's address, port 9999, go to :7778; R's own connections to 127.0.0.2:9998 to :7777.
ip netns exec "$NFQR_NS_ROUTER" "$bin_dir/nfq-redirectd" --config "$work/config.toml" --state-file "$work/state" \
    --redirect tcp:9999:7778 --redirect-local tcp:9998:7777 ${NFQR_DATAPATH:+--datapath "$NFQR_DATAPATH"} >"$work/daemon.log" 2>&1 &
daemon=$!   # `ip netns exec` execs the daemon, so this is its own pid
/usr/bin/python3 -m harness.netns wait-socket "$work/lookup.sock" --pid "$daemon" --log "$work/daemon.log"

status=0
ip netns exec "$NFQR_NS_ROUTER" timeout 240 /usr/bin/python3 "$here/hostile_clients.py" "$work/lookup.sock" "$NFQR_NS_CLIENT" || status=$?
if ! kill -0 "$daemon" 2>/dev/null; then
    echo "FAIL  the daemon survived: it exited; its log:"; cat "$work/daemon.log"; exit 1
fi
echo "PASS  the daemon survived every hostile client"
[ "$status" = 0 ] || { echo "daemon log (last lines):"; tail -20 "$work/daemon.log"; }
exit $status
