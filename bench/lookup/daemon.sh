#!/usr/bin/env bash
# The lookup benchmark: the real nfq-redirectd answering LOOKUP / LOOKUPFD about connections it
# redirected, and its getsockopt hook answering SO_ORIGINAL_DST, next to the kernel's
# getsockopt(SO_ORIGINAL_DST) on connections the kernel's nat REDIRECT redirected, in one
# throwaway network namespace, in one run, IPv4 and IPv6 (the getsockopt pair).
#
#   make lookup-bench [LOOKUP_BENCH_ARGS="FLOWS CALLS THREADS"]   (default 64 50000 4)
#
# First the kernel's getsockopt alone, before the daemon (and its cgroup/getsockopt program)
# starts; then, with the daemon, the kernel's and the hook's in turn; then the lookup socket.
# NFQR_DAEMON_ARGS: more daemon arguments, e.g. --no-getsockopt-hook (the hook rows are then
# skipped). The machine's load and how busy its CPUs were are printed at the end.
#
# NFQR_BUSY_POLL_US=N polls for N microseconds before sleeping on both ends: the daemon's
# lookup thread (--lookup-busy-poll) and the C client (NFQ_REDIRECT_BUSY_POLL_US).
#
# Root only. The harness creates the namespace (shape "single") and the run directory, runs the
# rest of this script in them and removes everything afterwards.
# Run by hand too: the harness package is found through PYTHONPATH, as make sets it.
export PYTHONPATH="${PYTHONPATH:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)/Tests}"
set -eu

bin_dir=${NFQR_BIN_DIR:?set NFQR_BIN_DIR to the folder with nfq-redirectd}
bench=${NFQR_BENCH_BIN:?set NFQR_BENCH_BIN}/daemon_lookup
flows=${1:-64} calls=${2:-50000} threads=${3:-4} busy_poll=${NFQR_BUSY_POLL_US:-0}
[ "$(id -u)" = 0 ] || { echo "daemon.sh: run as root (it uses a network namespace)"; exit 1; }
if [ -z "${NFQR_RUN_DIR:-}" ]; then
    exec /usr/bin/python3 -m harness.netns run --tag "nfqr-lkb-$$" --shape single -- "$0" "$@"
fi

work=$NFQR_RUN_DIR namespace=$NFQR_NS_ROUTER
in_ns() { ip netns exec "$namespace" "$@"; }
in_ns ip -6 addr add fd00:6e66::2/128 dev lo   # IPv6 flows dial it (daemon_lookup's V6_TARGET)
in_ns iptables -t nat -A OUTPUT -p tcp -d 127.0.0.2 --dport 9998 -j REDIRECT --to-ports 7778
in_ns ip6tables -t nat -A OUTPUT -p tcp -d fd00:6e66::2 --dport 9998 -j REDIRECT --to-ports 7778

# How busy the machine is: the load at the start, and the share of all CPUs busy over the run.
cpu_busy() { awk '/^cpu / { print $2 + $3 + $4 + $7 + $8, $2 + $3 + $4 + $5 + $6 + $7 + $8 }' /proc/stat; }
load_at_start=$(cut -d' ' -f1 /proc/loadavg) busy_before=$(cpu_busy)
# cgroup/getsockopt programs attached on the machine: every one runs on every getsockopt, so
# another daemon's hook (a test running beside the bench) slows the kernel's own answer too.
hooks_attached() {
    command -v bpftool >/dev/null || { echo "? (no bpftool)"; return; }
    bpftool -j cgroup tree 2>/dev/null | /usr/bin/python3 -c 'import json, sys
print(sum(p.get("attach_type") == "cgroup_getsockopt" for c in json.load(sys.stdin) for p in c.get("programs", [])))'
}
echo "== the kernel alone, before the daemon starts (cgroup/getsockopt programs attached: $(hooks_attached))"
in_ns env NFQR_BENCH_V6=1 "$bench" --kernel-only "$flows" "$calls"

ip netns exec "$namespace" "$bin_dir/nfq-redirectd" --socket "$work/lookup.sock" --state-file "$work/state" \
    --redirect-local tcp:9999:7777 --lookup-busy-poll "$busy_poll" --log-level warning ${NFQR_DAEMON_ARGS:-} \
    >"$work/daemon.log" 2>&1 &
daemon=$!   # `ip netns exec` execs the daemon, so this is its own pid
/usr/bin/python3 -m harness.netns wait-socket "$work/lookup.sock" --pid "$daemon" --log "$work/daemon.log"

# The daemon's own CPU time per request: what the lookup path costs it, apart from the
# round trip's context switches and the client.
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$daemon/stat"; }
requests() {
    /usr/bin/python3 - "$work/lookup.sock" <<'PY'
import socket, sys
s = socket.socket(socket.AF_UNIX); s.connect(sys.argv[1]); s.sendall(b"STATS\n"); data = b""
while not data.endswith(b"END\n"): data += s.recv(65536)
print(next(l.split()[1] for l in data.decode().splitlines() if l.startswith("nfqr_lookup_requests_total ")))
PY
}
ticks_before=$(cpu_ticks) requests_before=$(requests)
echo "== with the daemon${NFQR_DAEMON_ARGS:+ ($NFQR_DAEMON_ARGS)} (cgroup/getsockopt programs attached: $(hooks_attached))"
in_ns env NFQ_REDIRECT_SOCKET="$work/lookup.sock" NFQ_REDIRECT_BUSY_POLL_US="$busy_poll" NFQR_BENCH_V6=1 \
    "$bench" "$flows" "$calls" "$threads"
kill -0 "$daemon" || { echo "daemon.sh: the daemon died:"; cat "$work/daemon.log"; exit 1; }
ticks=$(( $(cpu_ticks) - ticks_before )) served=$(( $(requests) - requests_before - 1 ))
awk -v t="$ticks" -v hz="$(getconf CLK_TCK)" -v n="$served" 'BEGIN {
    printf "daemon CPU: %.2f s for %d requests = %.2f us per request (lookup thread, all included)\n", t / hz, n, t / hz / n * 1e6 }'
read -r busy_after total_after <<<"$(cpu_busy)"
read -r busy_start total_start <<<"$busy_before"
awk -v b=$((busy_after - busy_start)) -v t=$((total_after - total_start)) -v l="$load_at_start" \
    -v e="$(cut -d' ' -f1 /proc/loadavg)" -v n="$(nproc)" 'BEGIN {
    printf "machine: %d CPUs, %.0f%% of them busy over the run; load average %s at the start, %s at the end\n",
        n, t ? 100 * b / t : 0, l, e }'
