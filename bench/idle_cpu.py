#!/usr/bin/python3
"""CPU time nfq-redirectd spends with no traffic at all: the idle cost of its settings.

Builds the bench's namespaces (stage.py), starts the daemon in the router namespace exactly
as the bench does (same rules, --no-state), waits until it is ready, then reads its user +
system time (/proc/PID/stat, every thread) at the start and at the end of a quiet window.
Each daemon variant (one per --variant, a space-separated list of daemon flags; "" is the
defaults) runs --rounds times, one after the other, and the table gives every round.

Usage (root, through bench/idle-cpu.sh): idle_cpu.py [--seconds 60] [--rounds 2]
    [--variant "" --variant "--busy-poll 200" ...]
"""

import argparse
import os
import shlex
import signal
import sys
import tempfile
import time

from accounting import process_cpu_seconds
from modes import DaemonMode
from harness.processes import CommandFailed, Programs
from harness.report import STOP_SIGNALS, Interrupted, on_stop_signal
from stage import Stage

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)


def parse_options(argv):
    parser = argparse.ArgumentParser(description="nfq-redirectd's CPU time over an idle window (root only).")
    parser.add_argument("--seconds", type=float, default=60, help="length of the idle window (default 60)")
    parser.add_argument("--rounds", type=int, default=2, help="windows per variant (default 2)")
    parser.add_argument("--variant", action="append", default=None,
                        help='daemon flags of one variant, e.g. "--busy-poll 200" (repeatable; default: '
                             'the defaults only)')
    parser.add_argument("--queue", type=int, default=0, help="the daemon's first NFQUEUE number")
    parser.add_argument("--tag", default=f"nfqri-{os.getpid()}", help="names the namespaces")
    options = parser.parse_args(argv)
    options.variant = options.variant or [""]
    options.ready_timeout = float(os.environ.get("NFQR_READY_TIMEOUT", "15"))
    options.bin_dir = os.environ.get("NFQR_BIN_DIR", os.path.join(REPO, ".build", "release"))
    options.daemon_log_level = None
    options.table_limit = 2_000_000
    options.live_table = False
    return options


def main(argv):
    options = parse_options(argv)
    if os.geteuid() != 0:
        print("bench/idle-cpu.sh: must be run as root (it creates network namespaces)", file=sys.stderr)
        return 2
    for stop in STOP_SIGNALS:
        signal.signal(stop, on_stop_signal)
    run_dir = tempfile.mkdtemp(prefix=f"{options.tag}.")
    stage = Stage(options.tag)
    programs = Programs(run_dir)
    results = []
    try:
        stage.create()
        for variant in options.variant:
            options.daemon_arg = shlex.split(variant)
            for round_number in range(options.rounds):
                daemon = DaemonMode(stage.router, programs, options.bin_dir, run_dir, options)
                daemon.start()
                pid = daemon.pid
                time.sleep(1)   # past the start-up work
                before = process_cpu_seconds(pid)
                time.sleep(options.seconds)
                after = process_cpu_seconds(pid)
                daemon.stop()
                results.append((variant or "(defaults)", round_number + 1, after - before))
                print(f"{variant or '(defaults)'}: round {round_number + 1}: {after - before:.2f} CPU s "
                      f"over {options.seconds:g} s idle", flush=True)
    except Interrupted as error:
        print(f"idle-cpu: interrupted ({error})", file=sys.stderr)
        return 130
    except (CommandFailed, OSError) as error:
        print(f"idle-cpu: failed: {error}", file=sys.stderr)
        return 1
    finally:
        programs.stop_all()
        stage.destroy()
    print()
    print(f"{'daemon flags':30} {'round':>5} {'CPU s / ' + format(options.seconds, 'g') + ' s idle':>20}")
    for variant, round_number, seconds in results:
        print(f"{variant:30} {round_number:>5} {seconds:>20.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
