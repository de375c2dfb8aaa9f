#!/usr/bin/env bash
# `make demo`: nfq-redirect doing its main job, in throwaway network namespaces (run as root).
#
#   client (ns C)  ---veth---  router (ns R)                        ---veth---  server (ns S)
#   192.0.2.2                  192.0.2.1 | 198.51.100.1                          198.51.100.2
#   dials 203.0.113.10:80      nfq-redirectd: tcp 80 -> 8080                     203.0.113.10 on lo
#                              Debian's v2ray on :8080, unmodified, nothing preloaded:
#                              its own getsockopt(SO_ORIGINAL_DST) gets the answer
#
# Builds nothing: the binaries come from NFQR_BIN_DIR (default <repo>/.build/debug); make demo
# sets PYTHONPATH for the test harness (Tests/harness), which sets up the namespaces.
# Leaves no namespace, rule or process behind: everything lives in the namespaces, which the
# harness deletes with everything still running in them on exit, failure or Ctrl-C.
# Run by hand too: the harness package is found through PYTHONPATH, as make sets it.
export PYTHONPATH="${PYTHONPATH:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/Tests}"
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bin_dir="${NFQR_BIN_DIR:-$repo/.build/debug}"
helpers="$repo/Tests/netns"
python=/usr/bin/python3

if [ -z "${NFQR_RUN_DIR:-}" ]; then
    if [ "$(id -u)" != 0 ]; then echo "demo: run me as root (I create network namespaces)" >&2; exit 2; fi
    for binary in nfq-redirectd nfq-redirect; do
        [ -x "$bin_dir/$binary" ] || { echo "demo: no $bin_dir/$binary (build first, or set NFQR_BIN_DIR)" >&2; exit 2; }
    done
    echo "Setting up three namespaces: client, router, server ..."
    # The harness (Tests/harness, shape "three") creates them, runs the rest of this script in
    # them, then stops what is left in them and deletes them, on failure and Ctrl-C too.
    tag="nfqr-demo-$$"
    "$python" -m harness.netns run --tag "$tag" --shape three -- "$0" "$@" || exit $?
    for ns in "$tag-c" "$tag-r" "$tag-s"; do
        [ ! -e "/run/netns/$ns" ] || { echo "demo: namespace $ns is still there" >&2; exit 1; }
    done
    echo "Cleaned up: no namespace, rule or process left behind."
    exit 0
fi

c="$NFQR_NS_CLIENT" r="$NFQR_NS_ROUTER" s="$NFQR_NS_SERVER"
work="$NFQR_RUN_DIR"
socket_path="$work/lookup.sock"

fail() { echo "demo: $1" >&2; [ -n "${2:-}" ] && sed 's/^/    /' "$2" >&2; exit 1; }

# Starts a program in a namespace in the background; `ip netns exec` execs it, so $! is its pid.
start() { local ns="$1" log="$2"; shift 2; ip netns exec "$ns" "$@" >"$log" 2>&1 & last=$!; }

wait_for() {  # wait_for WHAT LOG PID COMMAND...: polls COMMAND for up to 15 s
    local what="$1" log="$2" pid="$3"; shift 3
    for _ in $(seq 150); do
        "$@" >/dev/null 2>&1 && return 0
        kill -0 "$pid" 2>/dev/null || fail "$what exited early; its output:" "$log"
        sleep 0.1
    done
    fail "$what not ready within 15 s; its output:" "$log"
}

start "$s" "$work/server.log" "$python" "$helpers/servers.py" --tcp-port 80
wait_for "the server" "$work/server.log" "$last" grep -q ready "$work/server.log"

start "$r" "$work/daemon.log" "$bin_dir/nfq-redirectd" --queue 0 --socket "$socket_path" \
    --state-file "$work/state" --redirect tcp:80,443:8080
daemon=$last
"$python" -m harness.netns wait-socket "$socket_path" --pid "$daemon" --log "$work/daemon.log" || exit 1
echo "nfq-redirectd is running in the router (tcp 80,443 -> 8080)."
echo "  $(ip netns exec "$r" "$bin_dir/nfq-redirect" hook 2>&1)"

# A Go proxy as shipped: dokodemo-door with followRedirect asks the kernel with a raw
# getsockopt(SO_ORIGINAL_DST) system call, which no preload library could intercept.
command -v v2ray >/dev/null || fail "no v2ray (Debian package v2ray; make deps installs it)"
cat >"$work/v2ray.json" <<JSON
{"log": {"access": "$work/access.log", "loglevel": "warning"},
 "inbounds": [{"listen": "0.0.0.0", "port": 8080, "protocol": "dokodemo-door",
               "settings": {"network": "tcp", "followRedirect": true},
               "streamSettings": {"sockopt": {"tproxy": "redirect"}}}],
 "outbounds": [{"protocol": "freedom", "settings": {}}]}
JSON
start "$r" "$work/proxy.log" v2ray -config "$work/v2ray.json"
wait_for "v2ray" "$work/proxy.log" "$last" ip netns exec "$r" sh -c 'ss -Hltn "sport = :8080" | grep -q .'
echo "Debian's v2ray listens on :8080 in the router, as shipped: no LD_PRELOAD, no lookup client."

echo
echo "The client connects to $NFQR_REMOTE_V4:80 ..."
answer="$(timeout 10 ip netns exec "$c" bash -c \
    "exec 3<>/dev/tcp/$NFQR_REMOTE_V4/80 && echo ID >&3 && head -n1 <&3")" \
    || fail "the client's connection failed; the proxy and daemon said:" <(cat "$work/proxy.log" "$work/daemon.log")
echo "  the server answered:  $answer"
for _ in $(seq 50); do grep -q ' accepted ' "$work/access.log" 2>/dev/null && break; sleep 0.1; done
line="$(grep -m1 ' accepted ' "$work/access.log" | cut -d' ' -f3-)" \
    || fail "v2ray logged no original destination:" "$work/proxy.log"
echo "  v2ray logged:         $line   (what its getsockopt returned)"

echo
echo "nfq-redirect list:"
if ! timeout 10 "$bin_dir/nfq-redirect" list --socket "$socket_path" >"$work/list.out" 2>&1; then
    echo "  (nfq-redirect list failed; its output follows)"
fi
sed 's/^/  /' "$work/list.out"

echo

# The kernel fast path: the same redirect with --datapath kernel-nat. Only a flow's first
# packet reaches the daemon; the kernel's NAT carries the rest, and conntrack's events keep the
# daemon's table (and lookups) current.
kill -TERM "$daemon" && wait "$daemon" 2>/dev/null
echo "Again with --datapath kernel-nat: the daemon decides each flow's first packet, the kernel's NAT"
echo "carries the rest (and answers v2ray's getsockopt itself)."
start "$r" "$work/daemon-knat.log" "$bin_dir/nfq-redirectd" --queue 0 --socket "$socket_path" \
    --state-file "$work/state" --redirect tcp:80,443:8080 --datapath kernel-nat
daemon=$last
"$python" -m harness.netns wait-socket "$socket_path" --pid "$daemon" --log "$work/daemon-knat.log" || exit 1
answer="$(timeout 10 ip netns exec "$c" bash -c \
    "exec 3<>/dev/tcp/$NFQR_REMOTE_V4/80 && echo ID >&3 && head -n1 <&3")" \
    || fail "the client's connection failed in kernel-nat mode; the proxy and daemon said:" \
        <(cat "$work/proxy.log" "$work/daemon-knat.log")
echo "  the server answered:  $answer"
packets="$(timeout 10 "$bin_dir/nfq-redirect" stats --json --socket "$socket_path" | "$python" -c \
    'import json, sys; print(int(sum(m["value"] for m in json.load(sys.stdin)["metrics"] if m["name"] == "nfqr_packets_total")))')"
echo "  packets the daemon saw: $packets (the SYN; every later packet, both ways, went through the kernel's NAT)"
echo "  nfq-redirect list (state from conntrack's events):"
for _ in $(seq 50); do
    timeout 10 "$bin_dir/nfq-redirect" list --socket "$socket_path" >"$work/list-knat.out" 2>&1
    grep -Eq "TIME_WAIT|CLOSE|FIN_WAIT|ESTABLISHED" "$work/list-knat.out" && break
    sleep 0.1
done
sed 's/^/    /' "$work/list-knat.out"
echo
