#!/usr/bin/env bash
# nfq-redirect bench: bench/run.sh [--quick] [--only kernel|daemon|knat] [--no-knat] [--out FILE] ...
# (as root; make bench sets PYTHONPATH to Tests/ for the harness package).
# The kernel's REDIRECT and nfq-redirectd in both datapath modes (userspace, kernel-nat),
# measured in the same run; see docs/performance.md.
# The Python bench cleans up after itself; the harness's guard is the safety net for when it
# cannot (killed hard): it removes this run's namespaces and processes.
# Run by hand too: the harness package is found through PYTHONPATH, as make sets it.
export PYTHONPATH="${PYTHONPATH:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/Tests}"
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
exec /usr/bin/python3 -m harness.netns guard --tag "nfqrb-$$" -- /usr/bin/python3 "$here/benchmark.py" --tag "nfqrb-$$" "$@"
