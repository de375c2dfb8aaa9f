#!/usr/bin/python3
"""nfq-redirect against the kernel's own REDIRECT, measured in the same run.

For each figure, N rounds; in each round the kernel, the daemon and the daemon in kernel-nat
mode take turns (kernel, daemon, knat, kernel, daemon, knat, ...) on the same namespaces and
listeners, each with a fresh redirector and an empty conntrack table. "knat" (shown as
"kernel-nat") is nfq-redirectd with --datapath kernel-nat: only each flow's first packet goes
through NFQUEUE, the kernel's NAT carries the rest (--no-knat leaves it out). New connections (every figure with --nohook) has a
third side, "nohook": the daemon with --no-getsockopt-hook. The figure is the median of each
side's samples.
Topology: stage.py. Figures and goals: figures.py. How each is measured: workloads.py and
docs/performance.md.

Usage (root, through bench/run.sh): benchmark.py [--quick] [--only kernel|daemon|knat|floor|nohook]
[--no-knat] [--floor] [--nohook] [--live-table] [--out FILE]
The daemon runs with --no-state (a fresh table per sample) unless --live-table is given.
"""

import argparse
import datetime
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)

import workloads
from accounting import cpu_shares, machine_cpu_ticks
from figures import rows_for
from modes import DaemonMode, FloorMode, KernelMode, KernelNatMode, reset_router
from peers import Listeners, build_program
from harness.processes import CommandFailed, Programs
from harness.redirectors import ruleset
from harness.report import STOP_SIGNALS, Interrupted, TimedOut, on_alarm, on_stop_signal
from report import summarise, table, write_json
from stage import Stage

RUN_MARKER = "NFQR_BENCH_RUN"   # in the environment of every process the bench starts
FIGURE_KEYS = ("bulk", "conn", "rr", "udp", "cpu", "flows")
DAEMON_SIDES = workloads.DAEMON_SIDES   # the sides where nfq-redirectd runs
DAEMON_TIMEOUTS_CONFIG = "[timeouts]\n# Pre-filled flows are idle, unreplied UDP: keep them for the whole sample.\nudp_unreplied = 3600\n"


class Measurement:
    """One kind of sample, run for each variant, alternating the modes within each round.
    `key` names it for --figures. `always` are sides measured whenever the daemon is, even
    without their option (new connections always has the daemon without its getsockopt hook
    beside it: the hook's map entry per flow is a per-connection cost)."""

    def __init__(self, key, title, run, variants, modes=("kernel", "daemon", "knat", "nohook", "floor"), always=()):
        self.key, self.title, self.run, self.variants, self.modes = key, title, run, variants, modes
        self.always = always

    def sides(self, options):
        return [mode for mode in self.modes
                if mode in options.modes or (mode in self.always and "daemon" in options.modes)]

    def label(self, variant):
        if variant is None:
            return self.title
        if isinstance(variant, tuple):
            family, streams = variant
            return f"{self.title} {family} x{streams}"
        return f"{self.title} {variant}"


def measurements(options):
    every = [
        Measurement("bulk", "bulk TCP", workloads.bulk_tcp, [("v4", 1), ("v4", 4), ("v6", 1), ("v6", 4)]),
        Measurement("conn", "new connections", workloads.new_connections, [None], always=("nohook",)),
        Measurement("rr", "request/response", workloads.request_response, [None]),
        Measurement("udp", "UDP rate", workloads.udp_rate, ["v4", "v6"]),
        Measurement("cpu", "daemon CPU per packet", workloads.daemon_cpu_per_packet, [0], modes=("daemon", "knat")),
        Measurement("flows", "flow table", workloads.daemon_cpu_per_packet, options.flow_sizes,
                    modes=("daemon", "knat")),
    ]
    return [measurement for measurement in every if measurement.key in options.figures]


def parse_options(argv):
    parser = argparse.ArgumentParser(
        prog="bench/run.sh",
        description="Kernel REDIRECT vs nfq-redirectd (userspace and kernel-nat datapaths) in throwaway "
                    "namespaces (root only).")
    parser.add_argument("--only", choices=("kernel", "daemon", "knat", "floor", "nohook"),
                        help="measure one side only (kernel needs no daemon at all; knat is the daemon "
                             "with --datapath kernel-nat)")
    parser.add_argument("--no-knat", action="store_true",
                        help="leave out the kernel-nat side (the daemon with --datapath kernel-nat), "
                             "e.g. with a daemon built before that mode existed")
    parser.add_argument("--floor", action="store_true",
                        help="also measure the NFQUEUE floor: kernel REDIRECT plus a C program that "
                             "only takes each packet through the daemon's queues (bench/nfqfloor.c)")
    parser.add_argument("--nohook", action="store_true",
                        help="also measure the daemon with --no-getsockopt-hook (side 'nohook') in every "
                             "figure: what the getsockopt hook costs (its map entry per TCP flow) next to the "
                             "daemon with it (new connections always has this side)")
    parser.add_argument("--live-table", action="store_true",
                        help="run the daemon with its live flow table (a shared mapping of a file in the run "
                             "directory, as shipped) instead of --no-state: what the crash-proof table costs")
    parser.add_argument("--quick", action="store_true",
                        help="2 s samples, 2 rounds, flow sizes 10k and 100k: about 2 minutes")
    parser.add_argument("--rounds", type=int, help="samples per side per figure (default 3; --quick 2)")
    parser.add_argument("--seconds", type=float, help="length of each sample (default 5; --quick 2)")
    parser.add_argument("--flow-sizes", help="comma list of table sizes, smallest first "
                                             "(default 10000,100000,1000000; --quick 10000,100000)")
    parser.add_argument("--out", default=os.path.join(tempfile.gettempdir(), "nfq-redirect-bench.json"),
                        help="where to write the JSON results (default %(default)s)")
    parser.add_argument("--connections", type=int, default=16, help="wrk connections for new conn/s (default 16)")
    parser.add_argument("--load-rate", type=int, default=50_000,
                        help="datagrams/s of the fixed load for CPU per packet (default 50000)")
    parser.add_argument("--prefill-rate", type=int, default=100_000,
                        help="datagrams/s when filling the flow table (default 100000)")
    parser.add_argument("--table-limit", type=int, default=2_000_000, help="passed to nfq-redirectd")
    parser.add_argument("--queue", type=int, default=0, help="the daemon's first NFQUEUE number")
    parser.add_argument("--daemon-log-level", help="passed to nfq-redirectd as --log-level")
    parser.add_argument("--daemon-arg", action="append", default=[], metavar="ARG",
                        help="one more argument for nfq-redirectd (repeatable), e.g. --daemon-arg=--queues=2")
    parser.add_argument("--figures", default=",".join(FIGURE_KEYS),
                        help="comma list of what to measure, of: %(default)s")
    parser.add_argument("--gso", choices=("on", "off"),
                        help="the daemon's [queue] gso setting (default: the daemon's own default)")
    parser.add_argument("--max-minutes", type=float, default=30, help="stop and clean up after this long")
    parser.add_argument("--tag", default=f"nfqrb-{os.getpid()}", help="names the namespaces")
    options = parser.parse_args(argv)
    options.rounds = options.rounds or (2 if options.quick else 3)
    options.seconds = options.seconds or (2 if options.quick else 5)
    sizes = options.flow_sizes or ("10000,100000" if options.quick else "10000,100000,1000000")
    try:
        options.flow_sizes = sorted({int(size) for size in sizes.split(",")})
    except ValueError:
        parser.error(f"--flow-sizes: not a comma list of numbers: {sizes}")
    if not 1 <= options.rounds <= 50 or not 0.5 <= options.seconds <= 120:
        parser.error("--rounds must be 1-50 and --seconds 0.5-120")
    if any(size < 1000 or size > 5_000_000 for size in options.flow_sizes):
        parser.error("--flow-sizes must be between 1000 and 5000000")
    options.figures = options.figures.split(",")
    if not set(options.figures) <= set(FIGURE_KEYS):
        parser.error(f"--figures: not a comma list of {','.join(FIGURE_KEYS)}: {','.join(options.figures)}")
    if options.only and options.no_knat:
        parser.error("--no-knat and --only do not go together")
    options.modes = (options.only,) if options.only else (
        ("kernel", "daemon") + (() if options.no_knat else ("knat",))
        + (("nohook",) if options.nohook else ()) + (("floor",) if options.floor else ()))
    options.ready_timeout = float(os.environ.get("NFQR_READY_TIMEOUT", "15"))
    options.bin_dir = os.environ.get("NFQR_BIN_DIR", os.path.join(REPO, ".build", "release"))
    return options


class Bench:
    """Everything a sample needs: the stage, the listeners, the tools, the redirectors."""

    def __init__(self, options):
        self.options = options
        os.environ[RUN_MARKER] = options.tag
        self.run_dir = tempfile.mkdtemp(prefix=f"{options.tag}.")
        self.stage = Stage(options.tag)
        self.programs = Programs(self.run_dir)
        self.udpblast = None
        self.listeners = None
        self.rules_before = []
        self.kernel = KernelMode(self.stage.router)
        self.daemon = DaemonMode(self.stage.router, self.programs, options.bin_dir, self.run_dir, options)
        self.nohook = DaemonMode(self.stage.router, self.programs, options.bin_dir, self.run_dir, options,
                                 name="nohook", extra=["--no-getsockopt-hook"])
        self.knat = KernelNatMode(self.stage.router, self.programs, options.bin_dir, self.run_dir, options)
        self.floor = FloorMode(self.stage.router, self.programs, None, options.queue)
        self.notes = []
        self.samples = {}
        self.records = []
        self.cpu_busy = {}   # row key -> mode -> percent of all CPUs busy, one per sample
        self.failures = 0

    def set_up(self):
        self.udpblast = build_program(self.run_dir, "udpblast")
        if "floor" in self.options.modes:
            self.floor.binary = build_program(self.run_dir, "nfqfloor", ("mnl", "netfilter_queue", "pthread"))
        self.stage.create()
        self.stage.wait_for_neighbours()
        self.listeners = Listeners(self.stage.router, self.programs, self.run_dir, self.udpblast,
                                   run_seconds=int(self.options.max_minutes * 60) + 60)
        self.listeners.start()
        self.rules_before = ruleset(self.stage.router)
        if set(DAEMON_SIDES) & set(self.options.modes):
            self.configure_daemon()   # every daemon side: new connections always measures nohook too

    def configure_daemon(self):
        """A long UDP timeout keeps pre-filled flows alive; if this daemon refuses the config
        key, it runs without it (flows then keep its default timeout) and a note says so."""
        path = os.path.join(self.run_dir, "daemon.toml")
        with open(path, "w") as out:
            out.write(DAEMON_TIMEOUTS_CONFIG)
            if self.options.gso:
                out.write(f"[queue]\ngso = {'true' if self.options.gso == 'on' else 'false'}\n")
        modes = self.options.modes
        daemons = ([self.daemon] if "daemon" in modes else []) + \
                  ([self.nohook] if {"daemon", "nohook"} & set(modes) else []) + \
                  ([self.knat] if "knat" in modes else [])
        for daemon in daemons:
            daemon.use_config(path)
        # Each side checked with its own flags: kernel-nat may refuse what the userspace mode takes.
        for daemon in daemons:
            accepted, why = daemon.check_config()
            if accepted:
                continue
            daemon.use_config(None)
            fine, why_plain = daemon.check_config()
            if not fine:
                raise CommandFailed(f"nfq-redirectd --check-config refuses the {daemon.name} side's flags: {why_plain}")
            self.note(f"{daemon.name}: the daemon refused the bench's config ({why.splitlines()[-1][:160]}): "
                      f"pre-filled flows keep its default UDP timeout")

    def note(self, text):
        if text not in self.notes:
            self.notes.append(text)
            print(f"note: {text}", flush=True)

    def mode(self, name):
        return {"kernel": self.kernel, "daemon": self.daemon, "nohook": self.nohook, "knat": self.knat,
                "floor": self.floor}[name]

    def sample(self, measurement, variant, mode_name):
        """Runs one sample with `mode_name` switched on; always switches it off again.
        Returns the figures, their details and how busy the CPUs were meanwhile."""
        mode = self.mode(mode_name)
        try:
            mode.start()
            if mode_name in DAEMON_SIDES:
                # The hook's state, as the daemon logged it: "attached ..." for daemon, "off" for nohook.
                self.note(f"{mode_name}: {mode.hook or 'no getsockopt hook line in the log'}")
            ticks = machine_cpu_ticks()
            values, details = measurement.run(self, mode, variant)
            return values, details, cpu_shares(ticks, machine_cpu_ticks())
        finally:
            status = mode.stop()
            if mode_name in ("floor", *DAEMON_SIDES) and status not in (0, None):
                self.note(f"{mode_name}: the program exited with status {status} on SIGTERM")
            warning = reset_router(self.stage.router, self.rules_before)
            if warning:
                self.note(warning)

    def tear_down(self):
        self.programs.stop_all()
        self.stage.destroy()
        shutil.rmtree(self.run_dir, ignore_errors=True)


def run(bench, options):
    """Every sample, kept in bench.samples (row -> mode -> values) and bench.records as they come,
    so an interrupted run still reports what it measured."""
    samples, records = bench.samples, bench.records
    for measurement in measurements(options):
        modes = measurement.sides(options)
        if not modes:
            print(f"[{measurement.title}] skipped: needs the daemon", flush=True)
            continue
        for round_number in range(1, options.rounds + 1):
            # The sides take turns at going first: a machine that slows down or speeds up
            # during a run then weighs on every side alike, not on the one always measured last.
            turn = (round_number - 1) % len(modes)
            for variant in measurement.variants:
                for mode in modes[turn:] + modes[:turn]:
                    label = f"[{measurement.label(variant)}] round {round_number}/{options.rounds} {mode}"
                    started = time.monotonic()
                    record = {"figure": measurement.label(variant), "round": round_number, "mode": mode}
                    try:
                        values, details, cpu = bench.sample(measurement, variant, mode)
                    except workloads.SampleSkipped as why:
                        record["skipped"] = str(why)
                        bench.note(str(why))
                        print(f"{label}: skipped", flush=True)
                    except (workloads.SampleFailed, CommandFailed, OSError, ValueError, KeyError) as error:
                        bench.failures += 1
                        record["error"] = str(error)
                        print(f"{label}: FAILED: {error}", flush=True)
                        daemon = bench.mode(mode) if mode in DAEMON_SIDES else None
                        tails = daemon.program.log_tail(10) if daemon and daemon.program else ""
                        if tails:
                            print("  daemon log tail:\n    " + tails.replace("\n", "\n    "), flush=True)
                    else:
                        record.update(values=values, details=details, cpu=cpu)
                        for key, value in values.items():
                            samples.setdefault(key, {}).setdefault(mode, []).append(value)
                            if cpu:
                                bench.cpu_busy.setdefault(key, {}).setdefault(mode, []).append(cpu["busy"])
                        shown = ", ".join(f"{key} {value:,.2f}" for key, value in values.items())
                        busy = f", CPUs {cpu['busy']:.0f}% busy ({cpu['kernel']:.0f}% kernel)" if cpu else ""
                        print(f"{label}: {shown}  ({time.monotonic() - started:.1f} s{busy})", flush=True)
                    records.append(record)


def machine_description(options):
    def first_line(argv):
        try:
            done = subprocess.run(argv, capture_output=True, text=True, timeout=10)
            return (done.stdout or done.stderr).strip().splitlines()[0]
        except (OSError, IndexError, subprocess.TimeoutExpired):
            return None

    model = None
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            model = next((line.split(":", 1)[1].strip() for line in cpuinfo if line.startswith("model name")), None)
    except OSError:
        pass
    return {
        "kernel": platform.release(), "cpus": os.cpu_count(), "cpu_model": model,
        "link": "veth pair between two network namespaces, MTU 1500, default offloads",
        "iperf3": first_line(["iperf3", "--version"]), "wrk": first_line(["wrk", "--version"]),
        "nginx": first_line(["nginx", "-v"]),
        "daemon": os.path.join(options.bin_dir, "nfq-redirectd") if set(DAEMON_SIDES) & set(options.modes) else None,
        "commit": first_line(["git", "-C", REPO, "rev-parse", "--short", "HEAD"]),
    }


def main(argv):
    options = parse_options(argv)
    if os.geteuid() != 0:
        print("bench/run.sh: must be run as root (it creates network namespaces)", file=sys.stderr)
        return 2
    if set(DAEMON_SIDES) & set(options.modes) and not os.access(os.path.join(options.bin_dir, "nfq-redirectd"), os.X_OK):
        print(f"bench: no nfq-redirectd in {options.bin_dir}: build it (swift build -c release), "
              f"set NFQR_BIN_DIR, or measure the kernel alone with --only kernel", file=sys.stderr)
        return 2
    missing = [tool for tool in ("iperf3", "wrk", "nginx", "cc", "conntrack", "ss", "iptables-restore")
               if not shutil.which(tool)]
    if missing:
        print(f"bench: missing {', '.join(missing)} (Debian: iperf3 wrk nginx-light gcc conntrack iproute2 iptables)",
              file=sys.stderr)
        return 2

    started = datetime.datetime.now(datetime.timezone.utc)
    also = ("; new connections also nohook (the daemon with --no-getsockopt-hook)"
            if "conn" in options.figures and "daemon" in options.modes and "nohook" not in options.modes else "")
    print(f"nfq-redirect bench: {' vs '.join(options.modes)}{also}, {options.rounds} rounds of {options.seconds:g} s, "
          f"flow sizes {','.join(map(str, options.flow_sizes))}; results to {options.out}", flush=True)
    for stop in STOP_SIGNALS:
        signal.signal(stop, on_stop_signal)
    signal.signal(signal.SIGALRM, on_alarm)
    signal.alarm(int(options.max_minutes * 60))
    bench = Bench(options)
    load_at_start = os.getloadavg()
    if load_at_start[0] > 0.5:
        bench.note(f"the machine was busy at start (load average {load_at_start[0]:.2f} over 1 min): "
                   f"other work shares the CPUs, so figures are noisier and lower")
    stopped = None
    try:
        bench.set_up()
        run(bench, options)
    except Interrupted as error:
        stopped = f"interrupted ({error})"
    except TimedOut:
        stopped = f"stopped after --max-minutes {options.max_minutes:g}"
    except (CommandFailed, OSError) as error:
        stopped = f"set-up failed: {error}"
    finally:
        signal.alarm(0)
        for stop in STOP_SIGNALS:
            signal.signal(stop, signal.SIG_IGN)
        bench.tear_down()
    if stopped:
        print(f"bench: {stopped}; cleaned up", file=sys.stderr, flush=True)
        if not bench.records:
            return 130 if stopped.startswith("interrupted") else 1

    rows = rows_for(options.flow_sizes)
    summary = summarise(rows, bench.samples, bench.cpu_busy)
    print()
    print(table(rows, summary, floor="floor" in options.modes,
                nohook=any(entry["nohook"] is not None for entry in summary), knat="knat" in options.modes))
    for text in bench.notes:
        print(f"note: {text}")
    document = {
        "started": started.isoformat(timespec="seconds"),
        "finished": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "command": "bench/run.sh " + " ".join(argv),
        "machine": {**machine_description(options),
                    "load_average_at_start": load_at_start[0], "load_average_at_end": os.getloadavg()[0]},
        "options": {"modes": list(options.modes), "rounds": options.rounds, "seconds": options.seconds,
                    "flow_sizes": options.flow_sizes, "connections": options.connections,
                    "load_rate": options.load_rate, "prefill_rate": options.prefill_rate,
                    "daemon_args": options.daemon_arg},
        "figures": summary, "samples": bench.records, "notes": bench.notes,
        "failed_samples": bench.failures, "stopped": stopped,
    }
    write_json(options.out, document)
    print(f"results: {options.out}")
    if stopped:
        return 130 if stopped.startswith("interrupted") else 1
    return 1 if bench.failures else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
