"""The two things that can redirect in router namespace R, with the same redirect plan.

- `DaemonRedirect` runs nfq-redirectd (the product under test).
- `KernelRedirect` installs the kernel's own `-t nat ... -j REDIRECT` rules: the baseline the
  daemon is compared with, and the proof that the harness itself is right.
"""

import os
import shlex
import socket
import time

from harness.processes import CommandFailed, run_command

# The redirect plan, shared by both redirectors, the proxies and the tests.
TCP_PORTS = (80, 443)
TCP_PROXY_PORT = 8080
UDP_PORT = 53
UDP_RELAY_PORT = 5353
LOCAL_PORT = 9000          # connections opened by programs in R ...
LOCAL_PROXY_PORT = 8090    # ... go to 127.0.0.1 / ::1 on this port
EXCLUDE_MARK = 0x1         # the local proxy marks its upstream sockets with this: never redirected
EXAMPLE_PORT = 81          # daemon mode only: tcp 81 goes to examples/transparent_proxy.py (LOOKUPFD)
EXAMPLE_PROXY_PORT = 8081
UDP_REFUSED_PORT = 54      # udp 54 goes to udp_connected.py, which answers from connected sockets
UDP_CONNECTED_PORT = 5354
UDP_CLOSED_PORT = 55       # udp 55 goes to 5355, where nothing listens: R's stack answers port unreachable
UDP_NO_PROXY_PORT = 5355
UDP_TIMEOUT = 3            # daemon mode: short UDP timeouts, so an expired flow can be seen

PORT_LIST = ",".join(map(str, TCP_PORTS))


def kernel_nat():
    """Whether the daemons of this run use the kernel-nat datapath (NFQR_DATAPATH)."""
    return os.environ.get("NFQR_DATAPATH") == "kernel-nat"


def use_kernel_timeouts(ns):
    """Kernel-nat mode: the kernel's conntrack times the flows, so the short UDP timeout the
    daemon's config gives in the userspace mode is set on the namespace's conntrack instead."""
    for name in ("nf_conntrack_udp_timeout", "nf_conntrack_udp_timeout_stream"):
        run_command(["sysctl", "-q", "-w", f"net.netfilter.{name}={UDP_TIMEOUT}"], ns=ns)


class KernelRedirect:
    name = "kernel"

    RULES = f"""*nat
:NFQR_BASELINE - [0:0]
:NFQR_BASELINE_LOCAL - [0:0]
-A PREROUTING -j NFQR_BASELINE
-A OUTPUT -j NFQR_BASELINE_LOCAL
-A NFQR_BASELINE -p tcp -m multiport --dports {PORT_LIST} -j REDIRECT --to-ports {TCP_PROXY_PORT}
-A NFQR_BASELINE -p udp --dport {UDP_PORT} -j REDIRECT --to-ports {UDP_RELAY_PORT}
-A NFQR_BASELINE -p udp --dport {UDP_REFUSED_PORT} -j REDIRECT --to-ports {UDP_CONNECTED_PORT}
-A NFQR_BASELINE -p udp --dport {UDP_CLOSED_PORT} -j REDIRECT --to-ports {UDP_NO_PROXY_PORT}
-A NFQR_BASELINE_LOCAL -m mark --mark {EXCLUDE_MARK:#x} -j RETURN
-A NFQR_BASELINE_LOCAL -p tcp --dport {LOCAL_PORT} -j REDIRECT --to-ports {LOCAL_PROXY_PORT}
COMMIT
"""

    origin = "kernel"   # how the proxies learn original destinations
    socket_path = None

    def start(self, programs, ns):
        for restore in ("iptables-restore", "ip6tables-restore"):
            run_command([restore, "--noflush"], ns=ns, input=self.RULES)

    def stop(self):
        return 0  # the rules go with the namespace


class DaemonRedirect:
    name = "daemon"
    origin = "daemon"

    def __init__(self, bin_dir, run_dir, queue, log_level, ready_timeout):
        self.binary = os.path.join(bin_dir, "nfq-redirectd")
        self.socket_path = os.path.join(run_dir, "lookup.sock")
        self.state_file = os.path.join(run_dir, "state")
        self.queue = queue
        self.log_level = log_level
        self.ready_timeout = ready_timeout
        self.program = None
        self.extra_args = []   # per-test additions (the robustness suite's limits and queue files)

    @property
    def cli(self):
        return os.path.join(os.path.dirname(self.binary), "nfq-redirect")

    def config(self):
        """Lookup access for the denied-peer tests (root only may ask; anyone may connect) and
        UDP timeouts short enough to watch a flow expire."""
        return (f'[lookup]\nmode = "0666"\nallow_users = ["root"]\n'
                f"[timeouts]\nudp_unreplied = {UDP_TIMEOUT}\nudp_replied = {UDP_TIMEOUT}\n")

    def argv(self, extra=()):
        config_path = os.path.join(os.path.dirname(self.socket_path), "nfq-redirectd.toml")
        with open(config_path, "w") as config:
            config.write(self.config())
        argv = [self.binary, *extra, "--config", config_path, "--queue", str(self.queue), "--socket", self.socket_path,
                "--state-file", self.state_file,
                "--redirect", f"tcp:{PORT_LIST}:{TCP_PROXY_PORT}",
                "--redirect", f"tcp:{EXAMPLE_PORT}:{EXAMPLE_PROXY_PORT}",
                "--redirect", f"udp:{UDP_PORT}:{UDP_RELAY_PORT}",
                "--redirect", f"udp:{UDP_REFUSED_PORT}:{UDP_CONNECTED_PORT}",
                "--redirect", f"udp:{UDP_CLOSED_PORT}:{UDP_NO_PROXY_PORT}",
                "--redirect-local", f"tcp:{LOCAL_PORT}:{LOCAL_PROXY_PORT}",
                "--exclude-mark", f"{EXCLUDE_MARK:#x}"]
        # NFQR_DAEMON_ARGS: extra flags for a variant run, e.g. "--queues 2 --busy-poll 200
        # --lookup-busy-poll 200" (several queues sharing one flow table; datapath and lookup
        # threads that poll before they sleep).
        argv += shlex.split(os.environ.get("NFQR_DAEMON_ARGS", ""))
        # NFQR_DATAPATH (the suites' --datapath): the whole suite in the other datapath mode.
        if kernel_nat():
            argv += ["--datapath", "kernel-nat"]
        return argv + (["--log-level", self.log_level] if self.log_level else []) + self.extra_args

    def start(self, programs, ns, name="nfq-redirectd", argv=None, environment=None):
        """Starts the daemon (by default with `argv()`), `environment` added to ours."""
        if not os.access(self.binary, os.X_OK):
            raise CommandFailed(f"no daemon at {self.binary}: build it, or point NFQR_BIN_DIR at it")
        argv = argv or self.argv()
        if kernel_nat():
            use_kernel_timeouts(ns)
        if environment:  # `env` execs the daemon, so the pid stays the daemon's
            argv = ["env", *[f"{key}={value}" for key, value in environment.items()], *argv]
        self.program = programs.start(name, ns, argv)
        self.wait_until_ready()

    def wait_until_ready(self):
        """Ready means the lookup socket accepts connections (CONTRACT.md)."""
        deadline = time.monotonic() + self.ready_timeout
        while time.monotonic() < deadline:
            if not self.program.running():
                raise CommandFailed(f"nfq-redirectd exited early with status {self.program.popen.returncode}; "
                                    f"its output:\n{self.program.log_tail()}")
            try:
                with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
                    probe.settimeout(1.0)
                    probe.connect(self.socket_path)
                    return
            except OSError:
                time.sleep(0.05)
        raise CommandFailed(f"nfq-redirectd not ready (lookup socket {self.socket_path} refuses) "
                            f"within {self.ready_timeout} s; its output:\n{self.program.log_tail()}")

    def stop(self):
        return self.program.stop(timeout=10.0) if self.program else 0


def ruleset(ns=None):
    """Rules and user chains of every iptables/ip6tables table, without counters, sorted."""
    found = []
    for save in ("iptables-save", "ip6tables-save"):
        table = "?"
        for line in run_command([save], ns=ns).splitlines():
            if line.startswith("*"):
                table = line[1:]
            elif line.startswith("-A "):
                found.append(f"{save} {table} {line}")
            elif line.startswith(":") and line.split()[1:2] == ["-"]:
                found.append(f"{save} {table} chain {line.split()[0][1:]}")
    return sorted(found)
