#!/usr/bin/python3
"""Unmodified Debian transparent proxies behind nfq-redirect, in throwaway network namespaces.

    client ns C                 router ns R                                  server ns S
  +-------------+      +----------------------------------------+      +-----------------------+
  | fetch.py    | veth | nfq-redirectd (--mode daemon)           | veth | origin.py (HTTP)      |
  | 192.0.2.2   |------|  or nat REDIRECT (--mode kernel)        |------| ports 7001-7009,      |
  | 2001:db8:1::2      | redsocks :12345 -> socks5.py :1080      |      |  7101-7109, 7201-7209 |
  +-------------+      | squid    :3129 intercept (v4 + v6)      |      | lo: 203.0.113.10      |
                       | haproxy  :12346 (server 0.0.0.0:0)      |      |     2001:db8:3::10    |
                       +----------------------------------------+      +-----------------------+

The client fetches http://<remote>:<port>/ from S; R redirects each proxy's block of ports to
that proxy (7001-7008 redsocks, 7101-7108 squid, 7201-7208 haproxy, 7301-7308 goproxy,
7401-7408 v2ray; by nfq-redirectd in daemon and preload mode, by the kernel in kernel mode) and
the kernel's nat REDIRECT always takes the ninth port of each block (7009, 7109, ...). The origin answers with the address:port it was reached on
and who connected, so an answer proves the proxy learned the original destination. In daemon
and kernel mode the proxies run as shipped (in daemon mode the daemon's getsockopt hook makes
the kernel answer for its flows); in preload mode the hook is off and they run with
LD_PRELOAD=libnfq-redirect-preload.so and NFQ_REDIRECT_SOCKET.

Usage (root): suite.py [--mode daemon|preload|kernel]. The last line is the harness's
summary (`proxies (daemon): N passed, N failed, N skipped (T s)`); the exit status is non-zero on any failure. Nothing is left behind: a final test asserts it.
"""

import argparse
import os
import sys

from checks import tests_for
from harness.report import Report
from harness.suite import add_stage_arguments, catch_stop_signals, run_suite, stage_settings, suite_title, use_datapath
from recipes import RecipeStage, recipe_cases
from stage import Stage

PROGRAMS = ("redsocks", "squid", "haproxy", "v2ray", "go", "strace", "ss", "mitmdump", "socat")


def missing_programs():
    path = os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin").split(os.pathsep)
    return [name for name in PROGRAMS
            if not any(os.access(os.path.join(folder, name), os.X_OK) for folder in path)]


def main():
    parser = argparse.ArgumentParser(description="real transparent proxies behind nfq-redirect (root only)")
    parser.add_argument("--mode", choices=("daemon", "preload", "kernel", "recipes"), default="daemon",
                        help="daemon: nfq-redirectd redirects and its getsockopt hook answers, proxies "
                             "as shipped (default, CI); preload: the hook off, proxies run with the "
                             "preload library (CI); kernel: the kernel's nat REDIRECT, proxies as shipped; "
                             "recipes: each recipe of docs/recipes.md run as written (CI)")
    add_stage_arguments(parser, "nfqp")
    args = parser.parse_args()
    use_datapath(args.datapath)
    bin_dir, ready_timeout = stage_settings()
    host_rules_before = catch_stop_signals()
    if args.mode == "recipes":
        stage = RecipeStage(args.tag, bin_dir, args.queue, args.daemon_log_level, ready_timeout)
        cases = recipe_cases()
    else:
        stage = Stage(args.tag, args.mode, bin_dir, args.queue, args.daemon_log_level, ready_timeout)
        cases = [case for proxy in stage.proxies for case in tests_for(proxy, args.mode)]
    print(f"nfq-redirect proxies suite, mode {args.mode}: {len(cases) + 1} tests"
          + (f" (daemon and preload library from {bin_dir})" if args.mode != "kernel" else ""), flush=True)
    missing = missing_programs()
    cannot_start = (f"not installed: {', '.join(missing)} (Debian packages redsocks squid haproxy v2ray "
                    "golang-go strace iproute2 mitmproxy socat)") if missing else None
    return run_suite(Report(suite_title("proxies", args.mode)), stage, cases, host_rules_before, cannot_start)


if __name__ == "__main__":
    sys.exit(main())
