#!/usr/bin/env bash
# Hostile lookup clients against the real daemon, in a throwaway network namespace.
#
#   NFQR_BIN_DIR=.build/release Tests/lookup/run.sh
#
# Root only. The last line is `N passed, N failed`; leaves no namespace, process or file behind.
set -eu

here=$(cd "$(dirname "$0")" && pwd)
bin_dir=${NFQR_BIN_DIR:?set NFQR_BIN_DIR to the folder with nfq-redirectd}
[ "$(id -u)" = 0 ] || { echo "run.sh: run as root (it uses a network namespace)"; exit 1; }

work=$(mktemp -d /tmp/nfqr-lookup-test.XXXXXX)
chmod 0711 "$work"   # a peer of another uid must reach the socket to be refused by the daemon
namespace=nfqr-lk-test-$$
daemon=
cleanup() {
    if [ -n "$daemon" ]; then kill "$daemon" 2>/dev/null && wait "$daemon" 2>/dev/null || true; fi
    ip netns del "$namespace" 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT
in_ns() { ip netns exec "$namespace" "$@"; }

cat >"$work/config.toml" <<TOML
[lookup]
socket = "$work/lookup.sock"
mode = "0666"
allow_users = ["root"]
max_clients = 1000
TOML

ip netns add "$namespace"
in_ns ip link set lo up
in_ns "$bin_dir/nfq-redirectd" --config "$work/config.toml" --state-file "$work/state" \
    --redirect-local tcp:9999:7777 >"$work/daemon.log" 2>&1 &
daemon=$!
accepts() { /usr/bin/python3 -c 'import socket,sys; socket.socket(socket.AF_UNIX).connect(sys.argv[1])' "$1" 2>/dev/null; }
for _ in $(seq 200); do accepts "$work/lookup.sock" && break; sleep 0.05; done
accepts "$work/lookup.sock" || { echo "run.sh: the daemon did not start:"; cat "$work/daemon.log"; exit 1; }

status=0
in_ns timeout 240 /usr/bin/python3 "$here/hostile_clients.py" "$work/lookup.sock" || status=$?
if ! kill -0 "$daemon" 2>/dev/null; then
    echo "FAIL  the daemon survived: it exited; its log:"; cat "$work/daemon.log"; exit 1
fi
echo "PASS  the daemon survived every hostile client"
exit $status
