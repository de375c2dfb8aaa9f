#!/usr/bin/python3
"""nfq-redirect on the real kernel, in throwaway network namespaces.

    client ns C                    router ns R                          server ns S
  +----------------+        +--------------------------------+        +---------------------+
  | client.py      |        | nfq-redirectd (--mode daemon)  |        | servers.py          |
  |                |        |  or nat REDIRECT (--mode kernel)|        |  tcp 80 443 9000    |
  | 192.0.2.2/24   |  veth  | 192.0.2.1        198.51.100.1  |  veth  |  udp 53             |
  | 2001:db8:1::2  |--------| 2001:db8:1::1    2001:db8:2::1 |--------| 198.51.100.2/24     |
  | default via R  |        | tcp-proxy   :8080 (all addrs)  |        | 2001:db8:2::2/64    |
  +----------------+        | udp-relay   :5353 (all addrs)  |        | lo: 203.0.113.10/32 |
                            | local-proxy 127.0.0.1/::1:8090 |        |   2001:db8:3::10/128|
                            |   (upstream SO_MARK=1)         |        |   ("remote")        |
                            +--------------------------------+        +---------------------+

  far client ns F     router ns A           router ns B          (R, another link)
  +--------------+     +-------------+       +-------------+      +---------------+
  | 203.0.113.74 |-----| .73     .70 |=======| .69     .66 |------| .65  (R)      |
  | 2001:db8:6::2|     |             | 1280  |             |      | 2001:db8:4::1 |
  +--------------+     +-------------+ bytes +-------------+      +---------------+

The narrow path F - A - B - R: the A-B link is 1280 bytes, so R's 1500-byte replies to F need
path MTU discovery, whose errors B sends to the replies' (original destination) source.

The client dials the remote addresses on S; R redirects tcp 80,443 -> 8080 and udp 53 -> 5353
(traffic from C) and tcp 9000 -> 8090 (programs in R itself). Each proxy learns the original
destination (daemon lookup socket, or SO_ORIGINAL_DST / conntrack in kernel mode), logs it and
relays there, so a client's answer from S proves the whole path.

Usage (root): runner.py [--mode daemon|kernel] [--only TEXT ...]. The last line is `N passed, N failed`; the
exit status is non-zero on any failure. Nothing is left behind: a final test asserts it.
"""

import argparse
import os
import signal
import sys
import time

from cases import CASES
from robust_cases import ROBUST_CASES, SOAK_CASES
from service_cases import CASES as SERVICE_CASES
from harness import Harness, TestFailure, expect, expect_equal, host_links, processes_marked
from processes import CommandFailed
from redirectors import ruleset
from topology import existing_namespaces

REPO = os.path.abspath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
SET_UP_TIMEOUT = 120
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


class Report:
    def __init__(self):
        self.passed = 0
        self.failed = 0

    def run(self, name, seconds, function, *args):
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

    def fail(self, name, started, message):
        self.failed += 1
        print(f"FAIL  {name} ({time.monotonic() - started:.1f} s)", flush=True)
        for line in message.splitlines():
            print(f"      {line}", flush=True)


def nothing_left_behind(harness, host_rules_before):
    namespaces = [ns for ns in harness.topology.namespaces if ns in existing_namespaces()]
    expect_equal("namespaces of this run still present", [], namespaces)
    listing = host_links()
    links = [link for link in harness.topology.links if f" {link}@" in listing or f" {link}:" in listing]
    expect_equal("veth links of this run in the host namespace", [], links)
    alive = [pid for pid in harness.programs.pids() if os.path.exists(f"/proc/{pid}")]
    expect_equal("started programs still running", [], alive)
    expect_equal("processes carrying this run's marker", [], processes_marked(harness.tag))
    expect(not os.path.exists(harness.run_dir), f"{harness.run_dir} removed", "it still exists")
    expect_equal("host iptables/ip6tables rules changed", [],
                 sorted(set(ruleset()) ^ set(host_rules_before)))


def main():
    parser = argparse.ArgumentParser(description="nfq-redirect network-namespace suite (root only)")
    parser.add_argument("--mode", choices=("daemon", "kernel"), default="daemon",
                        help="daemon: nfq-redirectd redirects (default, CI); "
                             "kernel: the kernel's nat REDIRECT, the baseline")
    parser.add_argument("--tag", default=f"nfqr-{os.getpid()}",
                        help="unique per run; names the namespaces (default nfqr-<pid>)")
    parser.add_argument("--queue", type=int, default=0, help="first NFQUEUE number for the daemon")
    parser.add_argument("--daemon-log-level", help="passed to nfq-redirectd as --log-level")
    parser.add_argument("--suite", choices=("main", "robust", "soak", "service"), default="main",
                        help="main: the redirect cases (default); robust: hostile packets, SYN flood, "
                             "queue overflow; soak: NFQR_SOAK_SECONDS of traffic and churn; service: restarts, "
                             "stops, kills, reload, watchdog, notify protocol, metrics (daemon mode only)")
    parser.add_argument("--only", action="append", metavar="TEXT",
                        help="run only the tests whose name contains TEXT (repeatable; any matches); "
                             "the clean-up check always runs")
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("run.sh: must be run as root (it creates network namespaces)", file=sys.stderr)
        return 2

    bin_dir = os.environ.get("NFQR_BIN_DIR", os.path.join(REPO, ".build", "debug"))
    ready_timeout = float(os.environ.get("NFQR_READY_TIMEOUT", "15"))
    suite = {"main": CASES, "robust": ROBUST_CASES, "soak": SOAK_CASES, "service": SERVICE_CASES}[args.suite]
    cases_run = [(name, test, seconds) for name, test, seconds, modes in suite if args.mode in modes]
    only = os.environ.get("NFQR_ONLY") or os.environ.get("NFQR_CASES")  # a substring of case names: run just those (development)
    if only:
        cases_run = [case for case in cases_run if only in case[0]]
    left_out = [name for name, _, _, modes in suite if args.mode not in modes]
    if args.only:
        cases_run = [case for case in cases_run if any(text in case[0] for text in args.only)]
        left_out = [name for name in left_out if any(text in name for text in args.only)]
        if not cases_run:
            print(f"runner.py: no test of the {args.suite} suite in {args.mode} mode matches {args.only}", file=sys.stderr)
            return 2
    print(f"nfq-redirect netns suite {args.suite}, mode {args.mode}: {len(cases_run) + 1} tests"
          + (f" (daemon binaries from {bin_dir})" if args.mode == "daemon" else ""))
    for name in left_out:
        print(f"  not applicable in {args.mode} mode: {name}")

    for stop in STOP_SIGNALS:  # set explicitly: a wrapper's background job starts with SIGINT ignored
        signal.signal(stop, on_stop_signal)
    host_rules_before = ruleset()
    harness = Harness(args.tag, args.mode, bin_dir, args.queue, args.daemon_log_level, ready_timeout)
    report = Report()
    interrupted = None
    try:
        if set_up(harness):
            for name, test, seconds in cases_run:
                report.run(name, seconds, test, harness)
        else:
            for name, _, _ in cases_run:
                report.not_run(name, "set-up failed")
        if report.failed:
            print("program logs (last lines):\n" + harness.log_tails(), flush=True)
    except Interrupted as error:
        interrupted = error
        print(f"\ninterrupted ({error}): cleaning up", flush=True)
    finally:
        signal.alarm(0)
        for stop in STOP_SIGNALS:  # the clean-up is short and bounded: let it finish
            signal.signal(stop, signal.SIG_IGN)
        harness.tear_down()

    if interrupted:  # never a silent skip: what did not run counts as failed
        report.failed += len(cases_run) - report.passed - report.failed
    report.run("nothing left behind: namespaces, veths, processes, run dir, host rules", 30,
               nothing_left_behind, harness, host_rules_before)
    print(f"{report.passed} passed, {report.failed} failed")
    return 130 if interrupted else (1 if report.failed else 0)


def set_up(harness):
    started = time.monotonic()
    try:
        with_time_limit(SET_UP_TIMEOUT, harness.set_up)
    except (TimedOut, CommandFailed, TestFailure, OSError) as error:
        message = f"did not finish within {SET_UP_TIMEOUT} s" if isinstance(error, TimedOut) else str(error)
        print(f"set-up failed: {message}", flush=True)
        return False
    print(f"set-up: {', '.join(harness.topology.namespaces)} and {harness.redirect.name} redirect "
          f"ready in {time.monotonic() - started:.1f} s", flush=True)
    return True


if __name__ == "__main__":
    sys.exit(main())
