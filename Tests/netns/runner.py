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

Usage (root): runner.py [--mode daemon|kernel] [--only TEXT ...]. The last line is the harness's
summary (`netns main (daemon): N passed, N failed, N skipped (T s)`); the exit status is non-zero on any failure. Nothing is left behind: a final test asserts it.
"""

import argparse
import os
import sys

from cases import CASES
from robust_cases import ROBUST_CASES, SOAK_CASES
from service_cases import CASES as SERVICE_CASES
from harness.report import Report
from harness.suite import add_stage_arguments, catch_stop_signals, run_suite, stage_settings, split_by_datapath, suite_title, use_datapath
from stage import Stage

def main():
    parser = argparse.ArgumentParser(description="nfq-redirect network-namespace suite (root only)")
    parser.add_argument("--mode", choices=("daemon", "kernel"), default="daemon",
                        help="daemon: nfq-redirectd redirects (default, CI); "
                             "kernel: the kernel's nat REDIRECT, the baseline")
    add_stage_arguments(parser, "nfqr")
    parser.add_argument("--suite", choices=("main", "robust", "soak", "service"), default="main",
                        help="main: the redirect cases (default); robust: hostile packets, SYN flood, "
                             "queue overflow; soak: NFQR_SOAK_SECONDS of traffic and churn; service: restarts, "
                             "stops, kills, reload, watchdog, notify protocol, metrics (daemon mode only)")
    parser.add_argument("--only", action="append", metavar="TEXT",
                        help="run only the tests whose name contains TEXT (repeatable; any matches); "
                             "the clean-up check always runs")
    args = parser.parse_args()
    use_datapath(args.datapath)
    bin_dir, ready_timeout = stage_settings()
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
    cases_run, other_datapath = split_by_datapath(cases_run)
    print(f"nfq-redirect netns suite {args.suite}, mode {args.mode}: {len(cases_run) + 1} tests"
          + (f" (daemon binaries from {bin_dir})" if args.mode == "daemon" else ""))
    report = Report(suite_title(f"netns {args.suite}", args.mode))
    for name in left_out:
        report.skip(name, f"not applicable in {args.mode} mode")
    for name, why in other_datapath:
        report.skip(name, why)

    host_rules_before = catch_stop_signals()
    stage = Stage(args.tag, args.mode, bin_dir, args.queue, args.daemon_log_level, ready_timeout)
    return run_suite(report, stage, cases_run, host_rules_before)


if __name__ == "__main__":
    sys.exit(main())
