#!/usr/bin/env bash
# nfq-redirect bench: bench/run.sh [--quick] [--only kernel|daemon] [--out FILE] ... (as root).
# The kernel's REDIRECT and nfq-redirectd, measured in the same run; see docs/performance.md.
# The Python bench cleans up after itself and is told to stop on Ctrl-C / SIGTERM / SIGHUP.
# The EXIT trap is the safety net for when it cannot (killed hard): it removes this run's
# namespaces, killing by pid the processes still inside them.
set -u
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
tag="nfqrb-$$"

if [ "$(id -u)" != 0 ]; then
    echo "bench/run.sh: must be run as root (it creates network namespaces)" >&2
    exit 2
fi

cleanup() {
    local ns pid
    for ns in "$tag-c" "$tag-r"; do
        [ -e "/run/netns/$ns" ] || continue
        for pid in $(ip netns pids "$ns" 2>/dev/null); do kill -9 "$pid" 2>/dev/null; done
        ip netns del "$ns" 2>/dev/null
        echo "bench/run.sh: removed leftover namespace $ns" >&2
    done
    rm -rf "${TMPDIR:-/tmp}/$tag".*   # the bench's run directory, if it could not remove it
}
trap cleanup EXIT

/usr/bin/python3 "$here/benchmark.py" --tag "$tag" "$@" &
bench=$!
trap 'kill -TERM "$bench" 2>/dev/null' INT TERM HUP
while :; do
    wait "$bench"
    status=$?
    kill -0 "$bench" 2>/dev/null || break   # `wait` returned for a signal: keep waiting
done
exit "$status"
