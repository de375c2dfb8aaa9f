#!/usr/bin/env bash
# Real transparent proxies behind nfq-redirect: Tests/proxies/run.sh [--mode daemon|preload|kernel]
# (as root; make proxies-test sets PYTHONPATH to Tests/ for the harness package).
# The Python suite cleans up after itself; the harness's guard is the safety net for when it
# cannot (killed hard): it removes this run's namespaces and processes.
# Run by hand too: the harness package is found through PYTHONPATH, as make sets it.
export PYTHONPATH="${PYTHONPATH:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)/Tests}"
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
exec /usr/bin/python3 -m harness.netns guard --tag "nfqp-$$" -- /usr/bin/python3 "$here/suite.py" --tag "nfqp-$$" "$@"
