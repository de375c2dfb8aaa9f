"""The loop of a namespace suite (Tests/netns, Tests/proxies): set the stage up within a time
limit, run each case with its own, tear down whatever happened (Ctrl-C included), then check
that nothing is left behind, and end with the reporter's summary line.

A stage has set_up(), tear_down(), log_tails(), and .topology, .programs, .redirect, .tag,
.run_dir.
"""

import os
import signal
import sys
import time

from harness.cleanup import NOTHING_LEFT_BEHIND, nothing_left_behind
from harness.checks import TestFailure
from harness.processes import CommandFailed
from harness.redirectors import ruleset
from harness.report import STOP_SIGNALS, Interrupted, TimedOut, on_stop_signal, with_time_limit

SET_UP_TIMEOUT = 120
REPO = os.path.abspath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))


def add_stage_arguments(parser, tag_prefix):
    """The options every namespace suite takes: --tag, --queue, --daemon-log-level."""
    parser.add_argument("--tag", default=f"{tag_prefix}-{os.getpid()}",
                        help=f"unique per run; names the namespaces (default {tag_prefix}-<pid>)")
    parser.add_argument("--queue", type=int, default=0, help="first NFQUEUE number for the daemon")
    parser.add_argument("--daemon-log-level", help="passed to nfq-redirectd as --log-level")
    parser.add_argument("--datapath", choices=DATAPATHS, default=datapath(),
                        help="the daemon's datapath mode (default: NFQR_DATAPATH, else userspace); "
                             "kernel-nat runs every case that applies to it with --datapath kernel-nat")


DATAPATHS = ("userspace", "kernel-nat")


def datapath():
    """The datapath mode the daemon of this run uses: NFQR_DATAPATH, else userspace."""
    return os.environ.get("NFQR_DATAPATH") or "userspace"


def use_datapath(mode):
    """Makes `mode` the daemon's datapath for this process and every program it starts (the
    service manager and helper scripts start daemons too)."""
    os.environ["NFQR_DATAPATH"] = mode


def userspace_only(reason):
    """Marks a case that does not apply to the kernel-nat datapath; the report says why."""
    def mark(test):
        test.datapaths, test.why_not = ("userspace",), f"userspace datapath only: {reason}"
        return test
    return mark


def kernel_nat_only(test):
    """Marks a case of the kernel-nat datapath only."""
    test.datapaths, test.why_not = ("kernel-nat",), "kernel-nat datapath only (run with --datapath kernel-nat)"
    return test


def split_by_datapath(cases):
    """(cases for this run's datapath, [(name, why not) of the others]); a case is a tuple whose
    second item is its test function."""
    run, left_out = [], []
    for case in cases:
        test = case[1]
        if datapath() in getattr(test, "datapaths", DATAPATHS):
            run.append(case)
        else:
            left_out.append((case[0], test.why_not))
    return run, left_out


def suite_title(name, mode):
    """A suite's report name: `netns main (daemon)`, `netns main (daemon, kernel-nat)`."""
    return f"{name} ({mode})" if datapath() == "userspace" else f"{name} ({mode}, {datapath()})"


def stage_settings():
    """(bin_dir, ready_timeout) from NFQR_BIN_DIR and NFQR_READY_TIMEOUT; exits 2 unless root."""
    if os.geteuid() != 0:
        print("run.sh: must be run as root (it creates network namespaces)", file=sys.stderr)
        sys.exit(2)
    return (os.environ.get("NFQR_BIN_DIR", os.path.join(REPO, ".build", "debug")),
            float(os.environ.get("NFQR_READY_TIMEOUT", "15")))


def catch_stop_signals():
    """Ctrl-C, SIGTERM and SIGHUP raise Interrupted (set explicitly: a wrapper's background job
    starts with SIGINT ignored). Call before creating the stage; returns the host's rules."""
    for stop in STOP_SIGNALS:
        signal.signal(stop, on_stop_signal)
    return ruleset()


def set_up(stage):
    started = time.monotonic()
    try:
        with_time_limit(SET_UP_TIMEOUT, stage.set_up)
    except (TimedOut, CommandFailed, TestFailure, OSError) as error:
        message = f"did not finish within {SET_UP_TIMEOUT} s" if isinstance(error, TimedOut) else str(error)
        print(f"set-up failed: {message}", flush=True)
        return False
    print(f"set-up: {', '.join(stage.topology.namespaces)} and {stage.redirect.name} redirect "
          f"ready in {time.monotonic() - started:.1f} s", flush=True)
    return True


def run_suite(report, stage, cases, host_rules_before, cannot_start=None):
    """Runs `cases` [(name, test, seconds)] against `stage`; returns the exit status.

    `cannot_start`: why the stage cannot be set up (e.g. a missing program), or None. Every case
    that does not run counts as failed: never a silent skip."""
    interrupted = None
    try:
        if cannot_start:
            print(f"set-up failed: {cannot_start}", flush=True)
        ready = not cannot_start and set_up(stage)
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

    if interrupted:
        report.failed += len(cases) - report.passed - report.failed
    report.run(NOTHING_LEFT_BEHIND, 30, nothing_left_behind, stage, host_rules_before)
    status = report.finish()
    return 130 if interrupted else status
