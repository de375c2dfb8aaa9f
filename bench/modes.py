"""The redirectors the bench compares, in router namespace R, with one redirect plan.

- `KernelMode`: the kernel's own `iptables -t nat -A PREROUTING ... -j REDIRECT` (and ip6tables).
- `DaemonMode`: nfq-redirectd with `--redirect`, which installs its own rules in R. As side
  "nohook" (new connections always, every figure with `--nohook`) the same daemon with
  `--no-getsockopt-hook`: without the cgroup/getsockopt program and the map entry (one bpf()
  call) at each TCP flow's start and end.
- `KernelNatMode` (side "knat", shown as "kernel-nat", on by default): the same daemon with
  `--datapath kernel-nat`. Only each flow's first packet goes through NFQUEUE; the daemon's
  verdict marks it and the daemon's own nat-table chains REDIRECT on that mark, so the
  kernel's NAT carries every packet of the flow.
- `FloorMode` (`--floor`): the kernel's REDIRECT plus `nfqfloor`, a C program that takes every
  packet of the redirected ports through the daemon's queues and hooks and answers a plain
  accept, one packet per system call: the cost of the trip through userspace alone.

Each is switched on for one sample and off after it; `reset_router` then puts R back to
no rules and an empty conntrack table, so no sample inherits the previous one's state.
"""

import os
import re

from harness.processes import CommandFailed, run_command
from harness.redirectors import DaemonRedirect, ruleset

# Remote port the client dials -> local port of the listener in R.
BULK_PORT, BULK_LISTEN_PORT = 5001, 5201       # iperf3
HTTP_PORT, HTTP_LISTEN_PORT = 80, 8080         # nginx
UDP_PORT, UDP_LISTEN_PORT = 4000, 4001         # udpblast drain
PLAN = (("tcp", BULK_PORT, BULK_LISTEN_PORT),
        ("tcp", HTTP_PORT, HTTP_LISTEN_PORT),
        ("udp", UDP_PORT, UDP_LISTEN_PORT))

KERNEL_CHAIN = "NFQR_BENCH"


class KernelMode:
    name = "kernel"
    pid = None          # no process does the work: the kernel's cost is not attributable

    def __init__(self, ns):
        self.ns = ns

    def start(self):
        lines = ["*nat", f":{KERNEL_CHAIN} - [0:0]", f"-A PREROUTING -j {KERNEL_CHAIN}"]
        lines += [f"-A {KERNEL_CHAIN} -p {proto} --dport {port} -j REDIRECT --to-ports {to_port}"
                  for proto, port, to_port in PLAN]
        text = "\n".join(lines + ["COMMIT", ""])
        for restore in ("iptables-restore", "ip6tables-restore"):
            run_command([restore, "--noflush"], ns=self.ns, input=text)

    def stop(self):
        for tool in ("iptables", "ip6tables"):
            run_command([tool, "-t", "nat", "-D", "PREROUTING", "-j", KERNEL_CHAIN], ns=self.ns, check=False)
            run_command([tool, "-t", "nat", "-F", KERNEL_CHAIN], ns=self.ns, check=False)
            run_command([tool, "-t", "nat", "-X", KERNEL_CHAIN], ns=self.ns, check=False)


class FloorMode(KernelMode):
    """Kernel REDIRECT does the NAT; nfqfloor only makes each packet visit userspace, on the
    same hooks and queues as nfq-redirectd (raw PREROUTING for the client's packets, mangle
    OUTPUT for the listener's replies, one thread per queue)."""

    name = "floor"
    CHAIN_IN, CHAIN_OUT = "NFQR_FLOOR_IN", "NFQR_FLOOR_OUT"

    def __init__(self, ns, programs, binary, queue):
        super().__init__(ns)
        self.programs = programs
        self.binary = binary
        self.queue = queue
        self.program = None
        self.starts = 0

    @property
    def pid(self):
        return self.program.pid if self.program and self.program.running() else None

    def rules_text(self):
        original, reply = self.queue, self.queue + 1
        lines = ["*raw", f":{self.CHAIN_IN} - [0:0]", f"-A PREROUTING -j {self.CHAIN_IN}"]
        lines += [f"-A {self.CHAIN_IN} -p {proto} --dport {port} -j NFQUEUE --queue-num {original}"
                  for proto, port, _ in PLAN]
        lines += ["COMMIT", "*mangle", f":{self.CHAIN_OUT} - [0:0]", f"-A OUTPUT -j {self.CHAIN_OUT}"]
        lines += [f"-A {self.CHAIN_OUT} -p {proto} --sport {to_port} -j NFQUEUE --queue-num {reply}"
                  for proto, _, to_port in PLAN]
        return "\n".join(lines + ["COMMIT", ""])

    def start(self):
        # The program first, so no packet meets a queue nobody reads.
        self.starts += 1
        self.program = self.programs.start(f"nfqfloor-{self.starts}", self.ns, [self.binary, str(self.queue), "2"])
        self.program.wait_for_log(lambda text: "ready" in text, 10, "ready")
        super().start()
        text = self.rules_text()
        for restore in ("iptables-restore", "ip6tables-restore"):
            run_command([restore, "--noflush"], ns=self.ns, input=text)

    def stop(self):
        for tool in ("iptables", "ip6tables"):
            for table, hook, chain in (("raw", "PREROUTING", self.CHAIN_IN), ("mangle", "OUTPUT", self.CHAIN_OUT)):
                run_command([tool, "-t", table, "-D", hook, "-j", chain], ns=self.ns, check=False)
                run_command([tool, "-t", table, "-F", chain], ns=self.ns, check=False)
                run_command([tool, "-t", table, "-X", chain], ns=self.ns, check=False)
        super().stop()
        program, self.program = self.program, None
        status = program.stop(timeout=5.0) if program else 0
        # A floor that saw no packet measured the kernel alone: its rules missed.
        handled = re.search(rf"^queue {self.queue}: (\d+) packets", program.log(), re.M) if program else None
        if program and (not handled or int(handled.group(1)) == 0):
            raise CommandFailed(f"nfqfloor handled no packet on queue {self.queue}: {program.log_tail(4)}")
        return status


class DaemonMode(DaemonRedirect):
    """nfq-redirectd started fresh for each sample (an empty flow table, no saved state).
    `name` "nohook" with `extra` ["--no-getsockopt-hook"] is the same daemon without the hook."""

    HOOK_LINE = re.compile(r"getsockopt hook[^\n]*")

    def __init__(self, ns, programs, bin_dir, run_dir, options, name="daemon", extra=()):
        super().__init__(bin_dir, run_dir, options.queue, options.daemon_log_level, options.ready_timeout)
        self.name = name
        self.ns = ns
        self.programs = programs
        self.control = os.path.join(bin_dir, "nfq-redirect")
        self.config_file = None
        self.table_limit = options.table_limit
        self.extra_args = list(options.daemon_arg) + list(extra)
        # Off by default (a fresh table per sample); --live-table keeps it as the shipped config
        # does, in this run's directory (a stop for good removes it, so no sample adopts another's).
        self.state_args = (["--state-file", os.path.join(run_dir, "flows.state"),
                            "--table-file", os.path.join(run_dir, "flows.table")]
                           if getattr(options, "live_table", False) else ["--no-state"])
        self.starts = 0
        self.stale_sockets = 0
        self.hook = None   # the daemon's log line about its getsockopt hook, from the last start

    @property
    def pid(self):
        return self.program.pid if self.program and self.program.running() else None

    def use_config(self, path):
        self.config_file = path

    def argv(self):
        argv = [self.binary, "--queue", str(self.queue), "--socket", self.socket_path, *self.state_args,
                "--table-limit", str(self.table_limit)]
        if self.config_file:
            argv += ["--config", self.config_file]
        for proto, port, to_port in PLAN:
            argv += ["--redirect", f"{proto}:{port}:{to_port}"]
        if self.log_level:
            argv += ["--log-level", self.log_level]
        return argv + self.extra_args

    def check_config(self):
        """Runs `--check-config` with this argv: (True, "") or (False, the daemon's complaint)."""
        try:
            run_command(self.argv() + ["--check-config"], ns=self.ns, timeout=20)
            return True, ""
        except CommandFailed as error:
            return False, str(error)

    def start(self):
        # One log per start, so a failing sample's daemon output is kept for the report.
        self.starts += 1
        if not os.access(self.binary, os.X_OK):
            raise CommandFailed(f"no daemon at {self.binary}: build it (swift build -c release), "
                                f"or point NFQR_BIN_DIR at it")
        if os.path.exists(self.socket_path):  # left by a daemon that did not stop cleanly
            os.unlink(self.socket_path)
            self.stale_sockets += 1
        suffix = "" if self.name == "daemon" else f"-{self.name}"
        self.program = self.programs.start(f"nfq-redirectd{suffix}-{self.starts}", self.ns, self.argv())
        self.wait_until_ready()
        found = self.HOOK_LINE.search(self.program.log())
        # Without the program id, which changes at each start: one note per state, not per sample.
        self.hook = re.sub(r" \(BPF program id \d+\)", "", found.group(0)) if found else None

    def stop(self):
        status = super().stop()
        self.program = None
        return status


class KernelNatMode(DaemonMode):
    """nfq-redirectd with `--datapath kernel-nat`. There the kernel's conntrack, not the
    daemon's table, times the flows: while this side runs, R's conntrack keeps idle UDP flows
    as long as the bench's daemon config keeps them in the userspace mode (pre-filled flows
    stay for the whole sample); the previous timeouts come back when it stops."""

    UDP_TIMEOUTS = {"nf_conntrack_udp_timeout": 3600, "nf_conntrack_udp_timeout_stream": 3600}

    def __init__(self, ns, programs, bin_dir, run_dir, options):
        super().__init__(ns, programs, bin_dir, run_dir, options, name="knat",
                         extra=["--datapath", "kernel-nat"])
        self.saved_timeouts = {}

    def conntrack_limit(self):
        """The kernel's conntrack table limit as R sees it (nf_conntrack_max), or None."""
        text = run_command(["cat", "/proc/sys/net/netfilter/nf_conntrack_max"], ns=self.ns, check=False).strip()
        return int(text) if text.isdigit() else None

    def start(self):
        for name, seconds in self.UDP_TIMEOUTS.items():
            current = run_command(["cat", f"/proc/sys/net/netfilter/{name}"], ns=self.ns, check=False).strip()
            if current.isdigit():
                self.saved_timeouts[name] = current
                run_command(["sysctl", "-q", "-w", f"net.netfilter.{name}={seconds}"], ns=self.ns)
        super().start()

    def stop(self):
        try:
            return super().stop()
        finally:
            for name, value in self.saved_timeouts.items():
                run_command(["sysctl", "-q", "-w", f"net.netfilter.{name}={value}"], ns=self.ns, check=False)
            self.saved_timeouts = {}


def reset_router(ns, rules_before):
    """Back to the rules R had before any redirect and an empty conntrack table.

    Returns a warning when something was left behind (it is removed either way)."""
    warning = None
    left = sorted(set(ruleset(ns)) - set(rules_before))
    if left:
        warning = f"rules left in R after the redirector stopped (removed): {left[:4]}"
        for tool in ("iptables", "ip6tables"):
            for table in ("raw", "mangle", "nat", "filter"):
                run_command([tool, "-t", table, "-F"], ns=ns, check=False)
                run_command([tool, "-t", table, "-X"], ns=ns, check=False)
    # Entries (with their NAT bindings) of the last sample must not steer the next one.
    run_command(["conntrack", "-F"], ns=ns, check=False)
    return warning
