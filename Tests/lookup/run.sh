#!/usr/bin/env bash
# Hostile lookup clients against the real daemon, in throwaway network namespaces: R runs the
# daemon and the clients; C (over a veth) makes the redirected transfers that measure the datapath.
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
namespace=nfqr-lk-r-$$ client_ns=nfqr-lk-c-$$
daemon=
cleanup() {
    if [ -n "$daemon" ]; then kill "$daemon" 2>/dev/null && wait "$daemon" 2>/dev/null || true; fi
    ip netns del "$namespace" 2>/dev/null || true
    ip netns del "$client_ns" 2>/dev/null || true
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
ip netns add "$client_ns"
ip link add nfqrlk$$ netns "$namespace" type veth peer name nfqrlk$$ netns "$client_ns"
in_ns ip link set lo up
in_ns ip addr add 198.18.0.1/24 dev nfqrlk$$
in_ns ip link set nfqrlk$$ up
ip netns exec "$client_ns" ip addr add 198.18.0.2/24 dev nfqrlk$$
ip netns exec "$client_ns" ip link set nfqrlk$$ up
# C's transfers to 198.18.0.1:9999 go to :7778, R's own connections to 127.0.0.2:9998 to :7777.
ip netns exec "$namespace" "$bin_dir/nfq-redirectd" --config "$work/config.toml" --state-file "$work/state" \
    --redirect tcp:9999:7778 --redirect-local tcp:9998:7777 >"$work/daemon.log" 2>&1 &
daemon=$!   # `ip netns exec` execs the daemon, so this is its own pid
accepts() { /usr/bin/python3 -c 'import socket,sys; socket.socket(socket.AF_UNIX).connect(sys.argv[1])' "$1" 2>/dev/null; }
for _ in $(seq 200); do accepts "$work/lookup.sock" && break; sleep 0.05; done
accepts "$work/lookup.sock" || { echo "run.sh: the daemon did not start:"; cat "$work/daemon.log"; exit 1; }

status=0
in_ns timeout 240 /usr/bin/python3 "$here/hostile_clients.py" "$work/lookup.sock" "$client_ns" || status=$?
if ! kill -0 "$daemon" 2>/dev/null; then
    echo "FAIL  the daemon survived: it exited; its log:"; cat "$work/daemon.log"; exit 1
fi
echo "PASS  the daemon survived every hostile client"
[ "$status" = 0 ] || { echo "daemon log (last lines):"; tail -20 "$work/daemon.log"; }
exit $status
