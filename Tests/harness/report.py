"""The one reporter: every suite prints a line per test and ends with the same summary line,

    PASS  <name> (<seconds> s)
    FAIL  <name> (<seconds> s)          followed by the reason, indented
    SKIP  <name> (<why>)
    <suite>: N passed, M failed, K skipped (T s)

Python suites use `Report`. Suites written in bash or C run under the command line, which
counts their PASS / FAIL / SKIP lines (and the `RESULT <passed> <failed>` lines of the C test
programs, Tests/preload/check.h) and prints the summary line:

    python3 -m harness.report SUITE -- COMMAND [ARG...]

The exit status is non-zero when a test failed or COMMAND exited non-zero (which then counts
as one failure, so a crash never reads as a pass).
"""

import signal
import subprocess
import sys
import time

from harness.checks import TestFailure
from harness.processes import CommandFailed

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


class TimedOut(Exception):
    pass


class Interrupted(Exception):
    pass


def on_alarm(signum, frame):
    raise TimedOut()


def on_stop_signal(signum, frame):
    # The first Ctrl-C / SIGTERM / SIGHUP starts the clean-up; later ones must not cut it short.
    for stop in STOP_SIGNALS:
        signal.signal(stop, signal.SIG_IGN)
    raise Interrupted(signal.Signals(signum).name)


def with_time_limit(seconds, function, *args):
    signal.signal(signal.SIGALRM, on_alarm)
    signal.alarm(seconds)
    try:
        return function(*args)
    finally:
        signal.alarm(0)


def summary_line(suite, passed, failed, skipped, seconds):
    return f"{suite}: {passed} passed, {failed} failed, {skipped} skipped ({seconds:.1f} s)"


class Report:
    def __init__(self, suite):
        self.suite = suite
        self.started = time.monotonic()
        self.passed = 0
        self.failed = 0
        self.skipped = 0

    def run(self, name, seconds, function, *args):
        """Runs one test with a time limit; a TestFailure, CommandFailed or OS error fails it."""
        started = time.monotonic()
        try:
            note = with_time_limit(seconds, function, *args)
        except TimedOut:
            self.fail(name, started, f"did not finish within {seconds} s")
        except (TestFailure, CommandFailed) as error:
            self.fail(name, started, str(error))
        except (OSError, ValueError, KeyError) as error:
            self.fail(name, started, f"{type(error).__name__}: {error}")
        else:
            self.passed += 1
            print(f"PASS  {name} ({time.monotonic() - started:.1f} s){f'  [{note}]' if note else ''}", flush=True)

    def not_run(self, name, why):
        self.failed += 1
        print(f"FAIL  {name} (not run: {why})", flush=True)

    def skip(self, name, why):
        self.skipped += 1
        print(f"SKIP  {name} ({why})", flush=True)

    def fail(self, name, started, message):
        self.failed += 1
        print(f"FAIL  {name} ({time.monotonic() - started:.1f} s)", flush=True)
        for line in message.splitlines():
            print(f"      {line}", flush=True)

    def summary(self):
        return summary_line(self.suite, self.passed, self.failed, self.skipped, time.monotonic() - self.started)

    def finish(self):
        """Prints the summary line; returns the exit status (1 on any failure)."""
        print(self.summary(), flush=True)
        return 1 if self.failed else 0


def count_line(line, counts):
    """Adds what one output line says to counts = [passed, failed, skipped]; returns the line
    to show (a C program's tally is shown in words)."""
    words = line.split()
    if line.startswith("PASS"):
        counts[0] += 1
    elif line.startswith("FAIL"):
        counts[1] += 1
    elif line.startswith("SKIP"):
        counts[2] += 1
    elif len(words) >= 3 and words[0] == "RESULT" and words[1].isdigit() and words[2].isdigit():
        counts[0] += int(words[1])
        counts[1] += int(words[2])
        return f"      ({' '.join(words[3:]) or 'a C test program'}: {words[1]} checks passed, {words[2]} failed)\n"
    return line


def main(argv):
    if len(argv) < 3 or argv[1] != "--":
        print("usage: python3 -m harness.report SUITE -- COMMAND [ARG...]", file=sys.stderr)
        return 2
    suite, command = argv[0], argv[2:]
    started = time.monotonic()
    counts = [0, 0, 0]
    child = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                             errors="replace")
    for stop in STOP_SIGNALS:  # the command gets the signal too (same process group) and ends
        signal.signal(stop, signal.SIG_IGN)
    for line in child.stdout:
        sys.stdout.write(count_line(line, counts))
        sys.stdout.flush()
    status = child.wait()
    if status != 0 and counts[1] == 0:
        counts[1] += 1
        print(f"FAIL  {' '.join(command)} exited with status {status}")
    print(summary_line(suite, *counts, time.monotonic() - started), flush=True)
    return 1 if counts[1] or status else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
