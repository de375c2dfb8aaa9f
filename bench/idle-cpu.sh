#!/usr/bin/env bash
# nfq-redirectd's CPU time with no traffic: bench/idle-cpu.sh [--seconds 60] [--rounds 2]
# [--variant "--busy-poll 200" ...] (as root). The daemon alone in the bench's namespaces,
# user + system seconds from /proc/PID/stat over the idle window; see docs/performance.md.
export PYTHONPATH="${PYTHONPATH:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/Tests}"
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
exec /usr/bin/python3 -m harness.netns guard --tag "nfqri-$$" -- /usr/bin/python3 "$here/idle_cpu.py" --tag "nfqri-$$" "$@"
