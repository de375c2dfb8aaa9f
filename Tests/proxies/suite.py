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

Usage (root): suite.py [--mode daemon|preload|kernel]. The last line is `N passed, N failed`; the
exit status is non-zero on any failure. Nothing is left behind: a final test asserts it.
"""

import argparse
import os
import signal
import sys

import netns_path  # noqa: F401  (makes the netns modules importable)
from checks import tests_for
from recipes import RecipeStage, recipe_cases
from redirectors import ruleset
from runner import (STOP_SIGNALS, Interrupted, Report, nothing_left_behind, on_stop_signal,
                    set_up)
from stage import Stage

REPO = os.path.abspath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
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
    parser.add_argument("--tag", default=f"nfqp-{os.getpid()}",
                        help="unique per run; names the namespaces (default nfqp-<pid>)")
    parser.add_argument("--queue", type=int, default=0, help="first NFQUEUE number for the daemon")
    parser.add_argument("--daemon-log-level", help="passed to nfq-redirectd as --log-level")
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("run.sh: must be run as root (it creates network namespaces)", file=sys.stderr)
        return 2

    bin_dir = os.environ.get("NFQR_BIN_DIR", os.path.join(REPO, ".build", "debug"))
    ready_timeout = float(os.environ.get("NFQR_READY_TIMEOUT", "15"))
    for stop in STOP_SIGNALS:  # set explicitly: a wrapper's background job starts with SIGINT ignored
        signal.signal(stop, on_stop_signal)
    host_rules_before = ruleset()
    if args.mode == "recipes":
        stage = RecipeStage(args.tag, bin_dir, args.queue, args.daemon_log_level, ready_timeout)
        cases = recipe_cases()
    else:
        stage = Stage(args.tag, args.mode, bin_dir, args.queue, args.daemon_log_level, ready_timeout)
        cases = [case for proxy in stage.proxies for case in tests_for(proxy, args.mode)]
    print(f"nfq-redirect proxies suite, mode {args.mode}: {len(cases) + 1} tests"
          + (f" (daemon and preload library from {bin_dir})" if args.mode != "kernel" else ""), flush=True)

    report = Report()
    interrupted = None
    try:
        missing = missing_programs()
        if missing:
            print(f"set-up failed: not installed: {', '.join(missing)} "
                  "(Debian packages redsocks squid haproxy v2ray golang-go strace iproute2 mitmproxy socat)", flush=True)
            ready = False
        else:
            ready = set_up(stage)
        for name, test, seconds in cases:
            if ready:
                report.run(name, seconds, test, stage)
            else:
                report.not_run(name, "set-up failed")
        if report.failed:
            print("program logs (last lines):\n" + stage.log_tails(), flush=True)
    except Interrupted as error:
        interrupted = error
        print(f"\ninterrupted ({error}): cleaning up", flush=True)
    finally:
        signal.alarm(0)
        for stop in STOP_SIGNALS:  # the clean-up is short and bounded: let it finish
            signal.signal(stop, signal.SIG_IGN)
        stage.tear_down()

    if interrupted:  # never a silent skip: what did not run counts as failed
        report.failed += len(cases) - report.passed - report.failed
    report.run("nothing left behind: namespaces, veths, processes, run dir, host rules", 30,
               nothing_left_behind, stage, host_rules_before)
    print(f"{report.passed} passed, {report.failed} failed")
    return 130 if interrupted else (1 if report.failed else 0)


if __name__ == "__main__":
    sys.exit(main())
