"""The service suite: nfq-redirectd as an operator runs it, on the real kernel.

Restarts keep established flows (SIGUSR2, and SIGTERM with --keep-rules-on-exit as the systemd
unit runs it), a stop for good leaves R as it was, SIGKILL is fail-closed or fail-open as
configured and `nfq-redirect rules --remove` cleans up by hand, a corrupt state file gives a
clean start, SIGHUP reloads (new rules for new flows, old flows kept, atomic rule swap, broken
configs refused), the sd_notify protocol against a fake NOTIFY_SOCKET, the watchdog withheld
while a datapath thread is hung, and the Prometheus endpoint. Under a fake service manager
(service_manager.py: descriptor store, Restart=on-failure, WatchdogSec): packets wait in the
kernel's queue while a killed or hung daemon is away, and its successor adopts the sockets.

Long-lived connections are made by this process itself: a socket created while the thread
is inside the client namespace C stays there, so the flows outlive any daemon restart.
Every test leaves the daemon running with its standard command line (harness.py).
"""

import ctypes
import hashlib
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import threading
import time
import urllib.request

from harness.endpoints import connect_from_own_port, format_endpoint, socket_endpoint
from harness.checks import TestFailure, expect, expect_equal
from harness.origdst import LookupClient, LookupPeerGone
from harness.processes import in_namespace, in_private_mounts, run_command
from harness.redirectors import TCP_PROXY_PORT, UDP_PORT, UDP_RELAY_PORT, kernel_nat, ruleset
from harness.suite import kernel_nat_only, userspace_only
from harness.topology import (CLIENT_V4, CLIENT_V6, REMOTE_V4, REMOTE_V6, ROUTER_CLIENT_SIDE_V4,
                      ROUTER_CLIENT_SIDE_V6, ROUTER_SERVER_SIDE_V4, ROUTER_SERVER_SIDE_V6, Topology)

LIBC = ctypes.CDLL(None, use_errno=True)
CLONE_NEWNET = 0x40000000
PTRACE_DETACH, PTRACE_SEIZE, PTRACE_INTERRUPT = 17, 0x4206, 0x4207
WAIT_ALL_THREADS = 0x40000000  # __WALL: waitpid for a thread that is not a child process
METRICS_PORT = 9109
RESTART_BUDGET = 3.0  # seconds from the old daemon's exit to the new one answering lookups
REPAIR_BUDGET = 1.5   # seconds from a firewall flush to the daemon's rules back (1 s check + restore)
SHIPPED_CONFIG = os.path.abspath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..",
                                              "config", "nfq-redirect.toml"))


class InNamespace:
    """The calling thread enters network namespace `ns` and comes back on exit."""

    def __init__(self, ns):
        self.ns = ns

    def __enter__(self):
        self.home = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
        target = os.open(f"/run/netns/{self.ns}", os.O_RDONLY)
        try:
            if LIBC.setns(target, CLONE_NEWNET) != 0:
                raise OSError(ctypes.get_errno(), f"setns into {self.ns}")
        finally:
            os.close(target)

    def __exit__(self, *exc):
        LIBC.setns(self.home, CLONE_NEWNET)
        os.close(self.home)


def remote(v6):
    return REMOTE_V6 if v6 else REMOTE_V4


def proxy_side(v6):
    return ROUTER_CLIENT_SIDE_V6 if v6 else ROUTER_CLIENT_SIDE_V4


def family(v6):
    return socket.AF_INET6 if v6 else socket.AF_INET


class EchoFlow:
    """A TCP connection from C to remote:port, redirected to the proxy, relayed to S's echo."""

    def __init__(self, env, v6, port=80):
        self.v6 = v6
        self.target = (remote(v6), port)
        with InNamespace(env.topology.client):
            self.sock = socket.socket(family(v6), socket.SOCK_STREAM)
        self.sock.settimeout(15.0)
        self.sock.connect(self.target)
        self.sock.sendall(b"ECHO\n")
        expect_equal(f"greeting of the echo service through {format_endpoint(*self.target)}",
                     b"ECHO\n", self.read(5))
        self.client = socket_endpoint(self.sock.getsockname())

    def read(self, count):
        data = b""
        while len(data) < count:
            chunk = self.sock.recv(count - len(data))
            if not chunk:
                raise TestFailure(f"flow {format_endpoint(*self.client)} closed by the peer")
            data += chunk
        return data

    def send(self, data):
        self.sock.sendall(data)

    def expect_echo(self, data):
        expect_equal(f"echo on flow {format_endpoint(*self.client)}", data, self.read(len(data)))

    def round_trip(self, data):
        self.send(data)
        self.expect_echo(data)

    def lookup(self, env):
        return lookup(env, "tcp", self.client, (proxy_side(self.v6), TCP_PROXY_PORT))

    def close(self):
        self.sock.close()


class UdpFlow:
    """A UDP flow from one client socket in C to remote:53, relayed and answered."""

    def __init__(self, env, v6):
        self.v6 = v6
        self.target = (remote(v6), UDP_PORT)
        with InNamespace(env.topology.client):
            self.sock = socket.socket(family(v6), socket.SOCK_DGRAM)
        self.sock.bind((CLIENT_V6 if v6 else CLIENT_V4, 0))
        self.client = socket_endpoint(self.sock.getsockname())

    def exchange(self, payload, patience=10.0, retry=0.5):
        """Sends until the answer comes (an application's own retransmission); returns the tries."""
        expected = f"FROM {format_endpoint(*self.target)} {payload}".encode()
        deadline = time.monotonic() + patience
        tries = 0
        while time.monotonic() < deadline:
            self.sock.sendto(payload.encode(), self.target)
            tries += 1
            self.sock.settimeout(retry)
            try:
                while True:
                    answer, sender = self.sock.recvfrom(65535)
                    if answer == expected and socket_endpoint(sender) == self.target:
                        return tries
            except socket.timeout:
                continue
        raise TestFailure(f"no answer to {payload!r} on UDP flow {format_endpoint(*self.client)} "
                          f"within {patience} s ({tries} tries)")

    def lookup(self, env):
        return lookup(env, "udp", self.client, (proxy_side(self.v6), UDP_RELAY_PORT))

    def close(self):
        self.sock.close()


def lookup(env, proto, client, local):
    with LookupClient(env.redirect.socket_path) as client_socket:
        return client_socket.request(f"LOOKUP {proto} {client[0]} {client[1]} {local[0]} {local[1]}")


def our_rules(env):
    return sorted(set(ruleset(env.topology.router)) - set(env.rules_before_redirect))


def cli(env, *arguments, environment=None, check=True):
    argv = [os.path.join(os.path.dirname(env.redirect.binary), "nfq-redirect"), *arguments]
    if environment:
        argv = ["env", *[f"{key}={value}" for key, value in environment.items()], *argv]
    return run_command(argv, ns=env.topology.router, check=check)


_generation = [0]


def start_daemon(env, argv=None, environment=None):
    """Starts a daemon (the standard command line unless `argv`); its log is its own file."""
    _generation[0] += 1
    env.redirect.start(env.programs, env.topology.router, name=f"nfq-redirectd-{_generation[0]}",
                       argv=argv, environment=environment)
    return env.redirect.program


def stop_daemon(env, sig):
    """Signals the running daemon and waits for it to exit; returns its status."""
    return env.redirect.program.stop(sig=sig, timeout=10.0)


def back_to_standard(env):
    """Whatever state a test left, the standard daemon runs again (rules fresh, no flows)."""
    if env.redirect.program and env.redirect.program.running():
        stop_daemon(env, signal.SIGTERM)
    start_daemon(env)


def expect_redirected(env, v6=False, port=80):
    """A new connection to remote:port reaches S through the proxy (R is the server's peer)."""
    target = format_endpoint(remote(v6), port)
    reply = env.client("tcp-id", target)["reply"].split()
    router = ROUTER_SERVER_SIDE_V6 if v6 else ROUTER_SERVER_SIDE_V4
    expect(reply[:3] == ["SERVER", target, "PEER"] and reply[3].startswith(f"[{router}]" if v6 else f"{router}:"),
           f"SERVER {target} PEER <{router}>", " ".join(reply))


def expect_not_redirected(env, v6=False, port=80):
    """A new connection to remote:port reaches S directly: S's peer is the client itself."""
    target = format_endpoint(remote(v6), port)
    answer = env.client("tcp-id", target)
    expect_equal("server's answer to an unredirected connection",
                 f"SERVER {target} PEER {answer['local']}", answer["reply"])


def log_of(program):
    return program.log()


# --- restarts keep flows -------------------------------------------------------------------------

def restart_keeps_flows(stop_signal, extra):
    def test(env):
        if extra:  # the daemon must run with these flags before the flows exist
            stop_daemon(env, signal.SIGUSR2)
            start_daemon(env, argv=env.redirect.argv(extra))
        tcp = [EchoFlow(env, False), EchoFlow(env, True)]
        udp = [UdpFlow(env, False), UdpFlow(env, True)]
        try:
            for flow in tcp:
                flow.round_trip(b"before the restart\n")
            for flow in udp:
                flow.exchange("before")
            originals = {flow_key(flow): flow.lookup(env) for flow in tcp + udp}
            for flow in tcp + udp:
                expect_equal(f"lookup of {format_endpoint(*flow.client)} before",
                             f"OK {flow.target[0]} {flow.target[1]}", originals[flow_key(flow)])
            rules = our_rules(env)

            expect_equal(f"exit status after {stop_signal.name}", 0, stop_daemon(env, stop_signal))
            stopped = time.monotonic()
            expect_equal("our rules while no daemon runs", rules, our_rules(env))
            expect(os.path.exists(env.redirect.state_file), "the flow table saved", "no state file")
            for flow in tcp:  # in the gap: the kernel holds nothing (fail-closed), TCP retransmits
                flow.send(b"sent during the gap\n")
            for flow in udp:
                flow.sock.sendto(b"lost in the gap", flow.target)

            daemon = start_daemon(env, argv=env.redirect.argv(extra))
            gap = time.monotonic() - stopped
            expect(gap < RESTART_BUDGET, f"answering lookups again within {RESTART_BUDGET} s", f"{gap:.2f} s")
            for flow in tcp:
                flow.expect_echo(b"sent during the gap\n")
                flow.round_trip(b"after the restart\n")
            for flow in udp:
                flow.exchange("after")
            for flow in tcp + udp:
                expect_equal(f"lookup of {format_endpoint(*flow.client)} after the restart",
                             originals[flow_key(flow)], flow.lookup(env))
            restored = re.search(r"restored (\d+) of (\d+) saved flows", log_of(daemon))
            expect(restored and int(restored.group(1)) >= 4 and restored.group(1) == restored.group(2),
                   "'restored N of N saved flows' with N >= 4", restored.group(0) if restored else log_of(daemon))
            expect_equal("our rules after the restart", rules, our_rules(env))
            return f"down {gap:.2f} s, {restored.group(1)} flows restored"
        finally:
            for flow in tcp + udp:
                flow.close()
            if extra:
                back_to_standard(env)
    return test


# --- stops --------------------------------------------------------------------------------------

def stop_for_good(env):
    """SIGTERM: every rule removed, no saved table left, redirected ports pass (no black hole)."""
    flow = EchoFlow(env, False)
    try:
        flow.round_trip(b"x\n")
        expect_equal("exit status after SIGTERM", 0, stop_daemon(env, signal.SIGTERM))
    finally:
        flow.close()
    expect_equal("rules of the daemon left in R", [], our_rules(env))
    expect(not os.path.exists(env.redirect.state_file), "no saved flow table after a stop for good",
           f"{env.redirect.state_file} exists")
    expect(not os.path.exists(live_table(env)), "no live table file after a stop for good", f"{live_table(env)} exists")
    expect_not_redirected(env, v6=False)
    expect_not_redirected(env, v6=True)
    start_daemon(env)
    expect_redirected(env)


def signals_right_after_start(env):
    """SIGHUP and SIGTERM sent the moment the daemon's rules appear, before it has finished
    starting (no lookup socket, no READY=1 yet): the reload happens and the stop removes the
    rules, where the default action used to kill it (a `systemctl reload` just after start)."""
    # A stop for good first: rules left by a restart-stop would look like the new daemon's.
    stop_daemon(env, signal.SIGTERM)
    expect_equal("rules before the first start", [], our_rules(env))
    outcomes = []
    try:
        for sig, rounds in ((signal.SIGHUP, 3), (signal.SIGTERM, 3)):
            for _ in range(rounds):
                _generation[0] += 1
                program = env.programs.start(f"nfq-redirectd-{_generation[0]}", env.topology.router, env.redirect.argv())
                deadline = time.monotonic() + 15
                while not our_rules(env):
                    expect(program.running() and time.monotonic() < deadline, "the daemon installs its rules",
                           program.log_tail())
                os.kill(program.pid, sig)
                if sig == signal.SIGHUP:
                    program.wait_for_log(lambda log: "reloaded:" in log or "reload refused" in log, 10, "reload line")
                    expect(program.running(), "the daemon alive after an early SIGHUP", program.log_tail())
                status = program.stop(sig=signal.SIGTERM, timeout=10.0)  # after an early SIGTERM: waits
                expect_equal(f"exit status after an early {sig.name}", 0, status)
                expect_equal(f"rules left after an early {sig.name} and a stop", [], our_rules(env))
                outcomes.append(sig.name)
    finally:
        back_to_standard(env)
    return f"{outcomes.count('SIGHUP')} early SIGHUPs reloaded, {outcomes.count('SIGTERM')} early SIGTERMs stopped cleanly"


def systemd_stop_post(env):
    """The unit's way: the daemon keeps its rules on SIGTERM, ExecStopPost decides."""
    options = env.redirect.argv(["--keep-rules-on-exit"])[1:]
    stop_daemon(env, signal.SIGUSR2)
    start_daemon(env, argv=env.redirect.argv(["--keep-rules-on-exit"]))
    try:
        rules = our_rules(env)
        expect_equal("exit status after SIGTERM", 0, stop_daemon(env, signal.SIGTERM))
        expect_equal("rules kept by a daemon run with --keep-rules-on-exit", rules, our_rules(env))
        expect(os.path.exists(env.redirect.state_file), "the flow table saved", "no state file")
        # No systemd here: no job can be pending, so $SERVICE_RESULT decides (the unit's table).
        output = cli(env, "rules", "--remove", "--unless-restarting", "nfq-redirect.service", *options,
                     environment={"SERVICE_RESULT": "watchdog"})
        expect("rules kept" in output, "'rules kept' after a watchdog kill (Restart= brings it back)", output)
        expect_equal("rules after ExecStopPost following a watchdog kill", rules, our_rules(env))
        output = cli(env, "rules", "--remove", "--unless-restarting", "nfq-redirect.service", *options,
                     environment={"SERVICE_RESULT": "success"})
        expect("rules removed" in output, "'rules removed' after a clean stop", output)
        expect_equal("rules after ExecStopPost following a clean stop", [], our_rules(env))
        expect(not os.path.exists(env.redirect.state_file), "the saved table discarded with the rules",
               f"{env.redirect.state_file} exists")
        expect(not os.path.exists(live_table(env)), "the live table discarded with the rules",
               f"{live_table(env)} exists")
        expect_not_redirected(env)
    finally:
        back_to_standard(env)
    expect_redirected(env)


# --- killed ------------------------------------------------------------------------------------

def killed_fail_closed(env):
    expect_equal("status of a SIGKILLed daemon", -signal.SIGKILL, stop_daemon(env, signal.SIGKILL))
    expect(our_rules(env) != [], "rules still in place after SIGKILL", "none")
    expect_equal("new connection to a redirected port while the daemon is dead (fail-closed: it waits)",
                 "timeout", env.client("tcp-probe", format_endpoint(REMOTE_V4, 80), 1.5)["result"])
    # ICMP errors are queued too (related traffic), but their rules always bypass: R's own port
    # unreachable (sent through NFQR-REPLY) still reaches the client while no daemon reads the queue.
    for router in (ROUTER_CLIENT_SIDE_V4, ROUTER_CLIENT_SIDE_V6):
        expect_equal(f"an ICMP error R sends while the daemon is dead ({router}: bypassed, not dropped)",
                     "refused", env.client("udp-refused", format_endpoint(router, 9))["result"])
    start_daemon(env)
    expect_redirected(env)  # starting again recovers

    stop_daemon(env, signal.SIGKILL)
    expect(os.path.exists(live_table(env)), "the live table file kept by a SIGKILL", "missing")
    output = cli(env, "rules", "--remove", "--socket", env.redirect.socket_path)
    expect("rules removed" in output, "'rules removed'", output)
    expect(not os.path.exists(live_table(env)), "the live table removed by rules --remove", f"{live_table(env)} exists")
    expect_equal("rules after `nfq-redirect rules --remove`", [], our_rules(env))
    expect_not_redirected(env)
    start_daemon(env)
    expect_redirected(env)


def killed_fail_open(env):
    stop_daemon(env, signal.SIGUSR2)
    argv = env.redirect.argv(["--fail-open"])
    start_daemon(env, argv=argv)
    try:
        expect_redirected(env)
        expect_equal("status of a SIGKILLed daemon", -signal.SIGKILL, stop_daemon(env, signal.SIGKILL))
        expect(any("--queue-bypass" in rule for rule in our_rules(env)), "rules with --queue-bypass kept",
               our_rules(env))
        expect_not_redirected(env, v6=False)  # fail-open: passes, unredirected
        expect_not_redirected(env, v6=True)
        start_daemon(env, argv=argv)
        expect_redirected(env)
    finally:
        back_to_standard(env)


def corrupt_state_file(env):
    flow = EchoFlow(env, False)
    try:
        stop_daemon(env, signal.SIGUSR2)
    finally:
        flow.close()
    path = env.redirect.state_file
    with open(path, "r+b") as state:
        state.seek(max(0, os.path.getsize(path) // 2))
        state.write(b"\xde\xad\xbe\xef" * 4)
    daemon = start_daemon(env)
    line = next((line for line in log_of(daemon).splitlines() if "not used" in line), None)
    expect(line is not None and f"{path}.corrupt" in line and "starting empty" in line,
           "a log line: saved flow table ... not used (why); moved to ....corrupt, starting empty", log_of(daemon))
    expect(os.path.exists(f"{path}.corrupt"), "the corrupt file kept aside", "missing")
    os.unlink(f"{path}.corrupt")
    expect_redirected(env)
    return line.split(": ", 1)[-1][:90]


# --- crash: the live table ------------------------------------------------------------------------

def live_table(env):
    """The daemon's live table file: flows.table beside the lookup socket (the default)."""
    return os.path.join(os.path.dirname(env.redirect.socket_path), "flows.table")


class Transfer(threading.Thread):
    """Echo traffic on one TCP flow until told to stop: random chunks, each read back whole;
    the sha256 of everything sent and everything received are compared at the end."""

    def __init__(self, flow, seed):
        super().__init__(daemon=True)
        self.flow = flow
        self.random = random.Random(seed)
        self.halt = threading.Event()
        self.sent = hashlib.sha256()
        self.received = hashlib.sha256()
        self.bytes = 0
        self.error = None

    def run(self):
        try:
            while not self.halt.is_set():
                chunk = self.random.randbytes(self.random.randint(1, 4096))
                self.flow.send(chunk)
                self.sent.update(chunk)
                self.received.update(self.flow.read(len(chunk)))
                self.bytes += len(chunk)
                time.sleep(0.01)
        except Exception as error:  # a reset, a timeout, a closed flow: the flow broke
            self.error = f"{type(error).__name__}: {error}"

    def finish(self):
        """Stops the traffic; returns why the flow broke, or None when it carried every byte."""
        self.halt.set()
        self.join(30)
        if self.is_alive():
            return "still running after 30 s"
        if self.error:
            return self.error
        if self.sent.digest() != self.received.digest():
            return f"echo differs from what was sent ({self.bytes} bytes)"
        return None


def flow_key(flow):
    """A flow's key among TCP and UDP flows: a TCP and a UDP socket may have the same port."""
    return (type(flow).__name__, flow.client)


def broken_transfers(transfers):
    problems = []
    for transfer in transfers:
        problem = transfer.finish()
        if problem:
            problems.append(f"{format_endpoint(*transfer.flow.client)}: {problem}")
    return problems


def adopted_line(daemon):
    return re.search(r"adopted (\d+) of (\d+) flows from the live table", log_of(daemon))


def killed_keeps_flows(env):
    """SIGKILL while 100 redirected TCP transfers (v4 and v6) run and 4 UDP flows are open, then
    started again at once: the new daemon adopts the live table; every transfer carries on byte
    for byte (no reset), the UDP flows answer, and the lookups answer as before the kill."""
    flows, udp, transfers = [], [], []
    try:
        flows = [EchoFlow(env, v6=i % 2 == 1) for i in range(100)]
        udp = [UdpFlow(env, v6=i % 2 == 1) for i in range(4)]
        for flow in udp:
            flow.exchange("before")
        originals = {flow_key(flow): flow.lookup(env) for flow in flows + udp}
        for flow in flows + udp:
            expect_equal(f"lookup of {format_endpoint(*flow.client)} before", f"OK {flow.target[0]} {flow.target[1]}",
                         originals[flow_key(flow)])
        transfers = [Transfer(flow, seed) for seed, flow in enumerate(flows)]
        for transfer in transfers:
            transfer.start()
        time.sleep(1.0)
        expect(os.path.exists(live_table(env)), "the live table file", "missing")
        mode = os.stat(live_table(env)).st_mode & 0o777
        expect_equal("live table file mode", "0o600", oct(mode))

        expect_equal("status of a SIGKILLed daemon", -signal.SIGKILL, stop_daemon(env, signal.SIGKILL))
        killed = time.monotonic()
        at_kill = [transfer.bytes for transfer in transfers]
        daemon = start_daemon(env)
        gap = time.monotonic() - killed
        expect(gap < RESTART_BUDGET, f"answering lookups again within {RESTART_BUDGET} s", f"{gap:.2f} s")
        time.sleep(3.0)
        for flow in udp:
            flow.exchange("after")
        for flow in flows + udp:
            expect_equal(f"lookup of {format_endpoint(*flow.client)} after the kill", originals[flow_key(flow)],
                         flow.lookup(env))
        stalled = [transfer for transfer, before in zip(transfers, at_kill) if transfer.bytes <= before]
        problems = broken_transfers(transfers)
        expect(not problems, "every transfer carried on after the kill", "; ".join(problems[:5]))
        expect(not stalled, "every transfer moved data after the restart", f"{len(stalled)} stalled")
        adopted = adopted_line(daemon)
        expect(adopted and int(adopted.group(1)) >= 104, "'adopted N of M flows from the live table' with N >= 104",
               adopted.group(0) if adopted else log_of(daemon))
        moved = sum(transfer.bytes for transfer in transfers)
        return f"down {gap:.2f} s, {adopted.group(1)} flows adopted, 100 transfers intact ({moved >> 10} KiB echoed)"
    finally:
        for transfer in transfers:
            transfer.halt.set()
        for flow in flows + udp:
            flow.close()


def kills_during_churn(env, kills=20):
    """SIGKILL at random instants while new connections open every few ms and 20 transfers run;
    started again each time: no established flow breaks, every new connection completes."""
    long_lived, transfers, churners = [], [], []
    halt = threading.Event()
    counts = {"opened": 0, "failed": 0}
    failures = []
    lock = threading.Lock()

    def churn(v6):
        while not halt.is_set():
            try:
                flow = EchoFlow(env, v6)
                try:
                    flow.round_trip(b"churn\n")
                finally:
                    flow.close()
                with lock:
                    counts["opened"] += 1
            except Exception as error:
                with lock:
                    counts["failed"] += 1
                    failures.append(f"{type(error).__name__}: {error}")
            time.sleep(0.003)

    try:
        long_lived = [EchoFlow(env, v6=i % 2 == 1) for i in range(20)]
        transfers = [Transfer(flow, seed) for seed, flow in enumerate(long_lived)]
        churners = [threading.Thread(target=churn, args=(i % 2 == 1,), daemon=True) for i in range(4)]
        for thread in transfers + churners:
            thread.start()
        rng = random.Random(11)
        gaps = []
        adopted = []
        for _ in range(kills):
            time.sleep(rng.uniform(0.1, 0.8))
            expect_equal("status of a SIGKILLed daemon", -signal.SIGKILL, stop_daemon(env, signal.SIGKILL))
            killed = time.monotonic()
            daemon = start_daemon(env)
            gaps.append(time.monotonic() - killed)
            line = adopted_line(daemon)
            adopted.append(int(line.group(1)) if line else 0)
        time.sleep(2.0)
        halt.set()
        for thread in churners:
            thread.join(40)
        problems = broken_transfers(transfers)
        expect(not problems, f"every long-lived transfer intact across {kills} kills", "; ".join(problems[:5]))
        expect(counts["failed"] == 0 and counts["opened"] > 0, "every churned connection completed",
               f"{counts['failed']} failed of {counts['opened'] + counts['failed']}: {failures[:3]}")
        for flow in long_lived:
            expect_equal(f"lookup of {format_endpoint(*flow.client)} after {kills} kills",
                         f"OK {flow.target[0]} {flow.target[1]}", flow.lookup(env))
        return (f"{kills} kills, down {min(gaps):.2f}-{max(gaps):.2f} s, {counts['opened']} connections churned, "
                f"{min(adopted)}-{max(adopted)} flows adopted per start, 20 transfers intact")
    finally:
        halt.set()
        for transfer in transfers:
            transfer.halt.set()
        for flow in long_lived:
            flow.close()


def untrusted_live_table(env):
    """A live table others could have written (mode 0644) or with a torn header is not believed:
    one log line, set aside as .corrupt, a clean start that redirects."""
    outcomes = []
    for name, spoil in (("mode 0644", lambda path: os.chmod(path, 0o644)),
                        ("bad magic", lambda path: open(path, "r+b").write(b"\0" * 8))):
        flow = EchoFlow(env, False)
        try:
            flow.round_trip(b"x\n")
            expect_equal("status of a SIGKILLed daemon", -signal.SIGKILL, stop_daemon(env, signal.SIGKILL))
        finally:
            flow.close()
        path = live_table(env)
        spoil(path)
        daemon = start_daemon(env)
        line = next((line for line in log_of(daemon).splitlines() if "live table at" in line), None)
        expect(line is not None and f"{path}.corrupt" in line and "not used" in line,
               f"a log line: live table at ... not used (why); moved to ....corrupt ({name})", log_of(daemon))
        expect(os.path.exists(f"{path}.corrupt"), "the untrusted table kept aside", "missing")
        os.unlink(f"{path}.corrupt")
        expect(adopted_line(daemon) is None, f"nothing adopted from a table with {name}", log_of(daemon))
        expect_equal("mode of the new live table", "0o600", oct(os.stat(path).st_mode & 0o777))
        expect_redirected(env)
        outcomes.append(line.split("(", 1)[-1].split(");")[0][:60])
    return "; ".join(outcomes)


# --- reload --------------------------------------------------------------------------------------

def reload_configuration(env, ports, extra=""):
    return (f"[queue]\nfirst = {env.redirect.queue}\n"
            f"[lookup]\nsocket = \"{env.redirect.socket_path}\"\n"
            f"[state]\nfile = \"{env.redirect.state_file}\"\n"
            f"[exclude]\nmarks = [\"0x1\"]\n"
            f"[[redirect]]\nproto = \"tcp\"\nports = \"{ports}\"\nto_port = {TCP_PROXY_PORT}\n"
            f"[[redirect]]\nproto = \"udp\"\nports = \"{UDP_PORT}\"\nto_port = {UDP_RELAY_PORT}\n" + extra)


def reload_with(env, daemon, path, text, outcome):
    """Writes the config, sends SIGHUP and waits for the daemon's `outcome` log line."""
    with open(path, "w") as config:
        config.write(text)
    before = log_of(daemon).count(outcome)
    os.kill(daemon.pid, signal.SIGHUP)
    daemon.wait_for_log(lambda log: log.count(outcome) > before, 10, f"'{outcome}' line")
    return [line for line in log_of(daemon).splitlines() if outcome in line][-1]


def reload_semantics(env):
    path = os.path.join(env.run_dir, "reload.toml")
    with open(path, "w") as config:
        config.write(reload_configuration(env, "80,443"))
    stop_daemon(env, signal.SIGUSR2)
    daemon = start_daemon(env, argv=[env.redirect.binary, "--config", path])
    flow = EchoFlow(env, False, port=80)
    try:
        flow.round_trip(b"before\n")
        reload_with(env, daemon, path, reload_configuration(env, "443"), "reloaded:")
        flow.round_trip(b"established flow after the reload\n")  # keeps its mapping
        expect_equal("lookup of the established flow", f"OK {REMOTE_V4} 80", flow.lookup(env))
        expect_not_redirected(env, port=80)   # new rules for new flows
        expect_redirected(env, port=443)
        rules = our_rules(env)
        # 443 queued for new flows; the old 80,443 rule stays queued, retired, while its flow lives.
        expect(any("--dport 443 " in rule for rule in rules) and any("80,443" in rule for rule in rules),
               "the kernel's rules queue 443, and 80,443 for the established flow", rules)

        broken = reload_with(env, daemon, path, reload_configuration(env, "443") + "[[redirect]]\nproto = \"sctp\"\n",
                             "reload refused")
        expect("redirect[2].proto" in broken and "sctp" in broken, "the refusal names the field", broken)
        needs_restart = reload_with(env, daemon, path, reload_configuration(env, "443").replace(
            f"first = {env.redirect.queue}", f"first = {env.redirect.queue + 10}"), "reload refused")
        expect("queue settings" in needs_restart, "a queue change refused: it needs a restart", needs_restart)
        expect_equal("rules after refused reloads", rules, our_rules(env))
        stats = cli(env, "stats", "--socket", env.redirect.socket_path).splitlines()
        expect('nfqr_reloads_total{result="refused"} 2' in stats and 'nfqr_reloads_total{result="applied"} 1' in stats,
               "nfqr_reloads_total: 1 applied, 2 refused", [line for line in stats if "reloads" in line])
        expect(daemon.running(), "the daemon still running after refused reloads", "it exited")
        expect_redirected(env, port=443)
        flow.round_trip(b"still\n")
        return swap_is_atomic(env, daemon, path)
    finally:
        flow.close()
        back_to_standard(env)


def swap_is_atomic(env, daemon, path, reloads=12):
    """While the rules are swapped back and forth, every new connection to a port both sets
    redirect is redirected: no moment exists where the old rules are gone and the new absent."""
    results, stop = [], threading.Event()

    def connect_in_a_loop():
        with InNamespace(env.topology.client):
            while not stop.is_set():
                try:
                    with connect_from_own_port(REMOTE_V4, 443, timeout=5) as sock:
                        sock.sendall(b"ID\n")
                        results.append(sock.recv(200).decode().split()[3:4])
                except OSError as error:
                    results.append([f"error {error} at {time.monotonic() - began:.2f} s"])

    began = time.monotonic()
    reloaded_at = []
    worker = threading.Thread(target=connect_in_a_loop, daemon=True)
    worker.start()
    try:
        for index in range(reloads):
            reload_with(env, daemon, path, reload_configuration(env, "443,80" if index % 2 else "443,8443"), "reloaded:")
            reloaded_at.append(round(time.monotonic() - began, 2))
    finally:
        stop.set()
        worker.join(10)
    routed = [peer for peer in results if peer and peer[0].startswith(f"{ROUTER_SERVER_SIDE_V4}:")]
    expect(len(results) >= reloads and len(routed) == len(results),
           f"every connection during {reloads} reloads redirected", f"{len(routed)} of {len(results)}: "
           f"{[r for r in results if r not in routed][:3]}; reloads done at {reloaded_at} s; daemon counters: "
           + " ".join(line for line in cli(env, "stats", "--socket", env.redirect.socket_path).splitlines()
                      if ("drop" in line or "refused" in line or "error" in line) and not line.endswith(" 0")))
    return f"{len(results)} connections during {reloads} rule swaps, all redirected"


# --- the unit's sandbox ---------------------------------------------------------------------------

CAP_NET_ADMIN, CAP_NET_RAW, CAP_SYS_ADMIN, CAP_BPF = 12, 13, 21, 39


def status_field(pid, key):
    with open(f"/proc/{pid}/status") as status:
        return next(line.split(":", 1)[1].strip() for line in status if line.startswith(f"{key}:"))


def sandboxed_like_the_unit(env):
    """The restrictions of systemd/nfq-redirect.service.in that can be had without systemd: a
    read-only file system but for the daemon's own directory (ProtectSystem=strict with
    RuntimeDirectory/StateDirectory), only CAP_NET_ADMIN, CAP_NET_RAW, CAP_BPF and CAP_SYS_ADMIN
    (CapabilityBoundingSet), NoNewPrivileges. iptables-restore and the getsockopt hook must
    work under them."""
    run_dir = env.run_dir
    read_only = " ".join(["/", "/run", "/tmp", "/var", "/etc", "/usr", "/home", "/root"])
    script = (f"mount --bind {run_dir} {run_dir} && "
              f"for m in {read_only}; do if mountpoint -q $m; then mount -o remount,bind,ro $m || exit 1; fi; done; "
              "if touch /var/nfqr-sandbox-probe 2>/dev/null; then echo 'sandbox: /var is writable'; exit 1; fi; "
              "exec setpriv --bounding-set -all,+net_admin,+net_raw,+bpf,+sys_admin --no-new-privs \"$@\"")
    argv = [*in_private_mounts(script, "sandbox"), *env.redirect.argv()]
    stop_daemon(env, signal.SIGTERM)
    try:
        daemon = start_daemon(env, argv=argv)
        expect_equal("capability bounding set of the sandboxed daemon",
                     f"{(1 << CAP_NET_ADMIN) | (1 << CAP_NET_RAW) | (1 << CAP_BPF) | (1 << CAP_SYS_ADMIN):016x}",
                     status_field(daemon.pid, "CapBnd"))
        hook_line = "getsockopt hook not needed in kernel-nat mode" if kernel_nat() else "getsockopt hook attached"
        expect(hook_line in log_of(daemon), f"'{hook_line}' in the sandbox", log_of(daemon))
        expect_equal("NoNewPrivs of the sandboxed daemon", "1", status_field(daemon.pid, "NoNewPrivs"))
        expect(our_rules(env) != [], "rules installed by iptables-restore inside the sandbox", "none")
        expect_redirected(env)
        expect_redirected(env, v6=True)
        expect_equal("exit status after SIGTERM", 0, stop_daemon(env, signal.SIGTERM))
        expect_equal("rules left after a sandboxed stop for good", [], our_rules(env))
        expect(not hook_attached(env), "no hook attached after a sandboxed stop for good", "still attached")
    finally:
        back_to_standard(env)


# --- day one: the shipped config, rules that stay put, giving up ---------------------------------

def run_in_router(env, argv, environment=None):
    """Runs `argv` in R to completion; returns (exit status, stdout, stderr)."""
    full = in_namespace(env.topology.router, argv)
    done = subprocess.run(full, capture_output=True, text=True, timeout=20, stdin=subprocess.DEVNULL,
                          env={**os.environ, **(environment or {})})
    return done.returncode, done.stdout, done.stderr


def shipped_config_redirects_nothing(env):
    """config/nfq-redirect.toml as shipped: the daemon and its check (the unit's ExecStartPre)
    refuse it with one line and exit status 2 (not restarted by the unit), nothing on the host
    changes, and traffic to the example ports passes unredirected."""
    stop_daemon(env, signal.SIGTERM)
    try:
        expect_equal("rules before", [], our_rules(env))
        said = []
        for extra in ([], ["--check-config"]):
            status, out, err = run_in_router(env, [env.redirect.binary, "--config", SHIPPED_CONFIG, *extra])
            lines = [line for line in err.splitlines() if line.strip()]
            expect(status == 2 and len(lines) == 1 and "nothing to redirect" in lines[0] and not out.strip(),
                   f"`nfq-redirectd --config <shipped> {' '.join(extra)}`: exit 2, one line 'nothing to redirect'",
                   (status, out, err))
            said.append(lines[0])
        expect_equal("rules after starting with the shipped config", [], our_rules(env))
        expect_not_redirected(env, port=80)
        expect_not_redirected(env, v6=True, port=443)
    finally:
        back_to_standard(env)
    return said[0].split(": ", 1)[-1][:70]


def flush_rules(env, how):
    if how == "nft":
        run_command(["nft", "flush", "ruleset"], ns=env.topology.router)
        return
    for tool in ("iptables", "ip6tables"):
        for table in ("raw", "mangle"):
            run_command([tool, "-w", "-t", table, "-F"], ns=env.topology.router)


def wait_for_rules(env, rules, budget):
    """Seconds until R's rules of the daemon are `rules` again; fails after `budget` * 2."""
    began = time.monotonic()
    while our_rules(env) != rules:
        expect(time.monotonic() - began < budget * 2, f"the daemon's rules back within {budget} s",
               our_rules(env))
        time.sleep(0.02)
    return time.monotonic() - began


def rules_stay_put(env):
    """A firewall reload removes the daemon's rules under traffic (`iptables -t raw -F` and
    `-t mangle -F` in both families, then `nft flush ruleset`): within a second they are back,
    counted and logged once per event; an established flow carries on; new connections are
    redirected again."""
    stop_daemon(env, signal.SIGUSR2)
    daemon = start_daemon(env)  # its own log: the restore lines below are this run's
    flow = EchoFlow(env, False)
    results, stop = [], threading.Event()

    def traffic():
        with InNamespace(env.topology.client):
            while not stop.is_set():
                try:
                    with connect_from_own_port(REMOTE_V4, 443, timeout=3) as sock:
                        sock.sendall(b"ID\n")
                        results.append(sock.recv(200).decode().split()[3:4])
                except OSError as error:
                    results.append([f"error {error}"])
                time.sleep(0.01)

    worker = threading.Thread(target=traffic, daemon=True)
    worker.start()
    try:
        flow.round_trip(b"before the flush\n")
        rules = our_rules(env)
        ways = ["iptables -F"] + (["nft"] if shutil.which("nft") else [])
        repairs = []
        for index, how in enumerate(ways):
            time.sleep(0.5)
            flush_rules(env, how)
            expect(our_rules(env) != rules, f"rules gone after {how}", "unchanged")
            repairs.append(wait_for_rules(env, rules, REPAIR_BUDGET))
            expect(repairs[-1] <= REPAIR_BUDGET, f"rules back within {REPAIR_BUDGET} s of {how}", f"{repairs[-1]:.2f} s")
            daemon.wait_for_log(lambda log: log.count("firewall rules restored") >= index + 1, 5,
                                "'firewall rules restored' line")
            flow.round_trip(f"after {how}\n".encode())
            expect_equal(f"lookup of the established flow after {how}", f"OK {REMOTE_V4} 80", flow.lookup(env))
            expect_redirected(env)
            expect_redirected(env, v6=True)
        time.sleep(1.2)  # a later check finds everything in place: no further line
        restored_lines = [line for line in log_of(daemon).splitlines() if "firewall rules restored" in line]
        expect_equal("'firewall rules restored' lines, one per event", len(ways), len(restored_lines))
        stats = cli(env, "stats", "--socket", env.redirect.socket_path)
        expect(f"nfqr_rules_restored_total {len(ways)}" in stats,
               f"nfqr_rules_restored_total {len(ways)} in `nfq-redirect stats`",
               [line for line in stats.splitlines() if "rules" in line])
    finally:
        stop.set()
        worker.join(10)
        flow.close()
        back_to_standard(env)
    routed = sum(1 for peer in results if peer and peer[0].startswith(f"{ROUTER_SERVER_SIDE_V4}:"))
    return (f"repaired in {', '.join(f'{t:.2f}' for t in repairs)} s ({', '.join(ways)}); "
            f"{routed} of {len(results)} connections during the test redirected")


def rules_not_managed(env):
    """[rules] manage = false: the daemon installs nothing and only warns (rate-limited) while
    the rules are missing; the operator loads what `nfq-redirect rules` prints and traffic is
    redirected; the unit's ExecStopPost and a stop for good leave those rules alone."""
    path = os.path.join(env.run_dir, "unmanaged.toml")
    stop_daemon(env, signal.SIGTERM)
    try:
        with open(path, "w") as config:
            config.write(env.redirect.config() + "[rules]\nmanage = false\n")
        argv = env.redirect.argv()
        argv[argv.index("--config") + 1] = path
        daemon = start_daemon(env, argv=argv)
        expect_equal("rules installed by a daemon with manage = false", [], our_rules(env))
        daemon.wait_for_log(lambda log: "firewall rules missing" in log, 3, "'firewall rules missing' warning")
        time.sleep(2.5)
        warnings = log_of(daemon).count("firewall rules missing")
        expect_equal("'firewall rules missing' warnings in 3.5 s (at most one a minute)", 1, warnings)
        expect_not_redirected(env)

        sections = {}  # `# iptables-restore --noflush` / `# ip6tables-restore --noflush`, then its input
        for line in cli(env, "rules", *argv[1:]).splitlines(keepends=True):
            if line.startswith("# "):
                restore = line.split()[1]
                sections[restore] = ""
            else:
                sections[restore] += line
        expect_equal("sections printed by `nfq-redirect rules`", ["ip6tables-restore", "iptables-restore"], sorted(sections))
        for restore, section in sections.items():
            run_command([restore, "--noflush"], ns=env.topology.router, input=section)
        rules = our_rules(env)
        expect(rules != [], "rules loaded from `nfq-redirect rules`", "none")
        expect_redirected(env)
        expect_redirected(env, v6=True)
        expect_equal("exit status after SIGTERM", 0, stop_daemon(env, signal.SIGTERM))
        expect_equal("the operator's rules after a stop for good of an unmanaging daemon", rules, our_rules(env))
        output = cli(env, "rules", "--remove", "--unless-restarting", "nfq-redirect.service", "--config", path,
                     environment={"SERVICE_RESULT": "success"})
        expect("left alone" in output, "ExecStopPost: 'left alone'", output)
        expect_equal("the operator's rules after ExecStopPost", rules, our_rules(env))
        cli(env, "rules", "--remove")
        expect_equal("rules after `nfq-redirect rules --remove` by hand", [], our_rules(env))
    finally:
        back_to_standard(env)
    return "1 warning, operator's rules redirect and survive the stop"


def give_up_removes_rules(env):
    """systemd's side, step by step as the unit runs it (no systemd as PID 1 here): the daemon
    (--keep-rules-on-exit) crashes; ExecStopPost keeps the rules for the restart; the restart's
    ExecStartPre refuses the now-broken config (exit 2) until the start limit is hit; the
    OnFailure= unit then removes the rules with one line, and traffic passes unredirected.
    A daemon that exits 2 itself gets its rules removed by ExecStopPost at once. With
    [rules] on_give_up = "keep" the rules stay (fail-closed)."""
    broken = os.path.join(env.run_dir, "broken.toml")
    keep = os.path.join(env.run_dir, "keep.toml")
    stop_daemon(env, signal.SIGUSR2)
    argv = env.redirect.argv(["--keep-rules-on-exit"])
    options = argv[1:]
    try:
        start_daemon(env, argv=argv)
        rules = our_rules(env)
        expect_equal("status of a crashed daemon", -signal.SIGKILL, stop_daemon(env, signal.SIGKILL))
        output = cli(env, "rules", "--remove", "--unless-restarting", "nfq-redirect.service", *options,
                     environment={"SERVICE_RESULT": "signal", "EXIT_CODE": "killed", "EXIT_STATUS": "KILL"})
        expect("rules kept" in output, "ExecStopPost after a crash: 'rules kept' (Restart= comes)", output)
        with open(broken, "w") as config:
            config.write(env.redirect.config() + "[[redirect]]\nproto = \"sctp\"\n")
        status, _, err = run_in_router(env, [env.redirect.binary, "--config", broken, "--check-config"])
        expect(status == 2 and "sctp" in err, "ExecStartPre on the broken config: exit 2 naming the field", (status, err))
        output = cli(env, "rules", "--remove", "--unless-restarting", "nfq-redirect.service", "--config", broken,
                     environment={"SERVICE_RESULT": "exit-code"})
        expect("rules kept" in output, "ExecStopPost after a failed ExecStartPre: kept (Restart= tries again)", output)
        expect_equal("rules while systemd still restarts", rules, our_rules(env))
        expect_equal("fail-closed meanwhile: a new connection waits", "timeout",
                     env.client("tcp-probe", format_endpoint(REMOTE_V4, 80), 1.5)["result"])

        output = cli(env, "rules", "--remove", "--gave-up", "nfq-redirect.service", "--config", broken,
                     environment={"MONITOR_SERVICE_RESULT": "start-limit-hit"})
        # One line about the rules; the getsockopt hook, which goes with them, has its own.
        lines = [line for line in output.strip().splitlines() if "getsockopt hook" not in line]
        expect(len(lines) == 1 and "gave up (start-limit-hit)" in lines[0] and "passes unredirected" in lines[0],
               "OnFailure=: one line 'gave up (start-limit-hit); rules removed: ... passes unredirected'", output)
        expect_equal("rules after the OnFailure= unit", [], our_rules(env))
        expect_not_redirected(env)
        expect_not_redirected(env, v6=True)
        said = lines[0]
        output = cli(env, "rules", "--remove", "--gave-up", "nfq-redirect.service", "--config", broken,
                     environment={"MONITOR_SERVICE_RESULT": "exit-code"})
        expect("none of its rules are in place" in output, "OnFailure= with nothing left: says so", output)

        # The daemon itself exits 2 (RestartPreventExitStatus=2): ExecStopPost removes at once.
        start_daemon(env, argv=argv)
        stop_daemon(env, signal.SIGKILL)
        output = cli(env, "rules", "--remove", "--unless-restarting", "nfq-redirect.service", *options,
                     environment={"SERVICE_RESULT": "exit-code", "EXIT_CODE": "exited", "EXIT_STATUS": "2"})
        expect("exit status 2" in output and "rules removed" in output, "ExecStopPost after exit status 2: removed",
               output)
        expect_equal("rules after exit status 2", [], our_rules(env))

        # Fail-closed even then: on_give_up = "keep".
        with open(keep, "w") as config:
            config.write(env.redirect.config() + "[rules]\non_give_up = \"keep\"\n")
        keep_argv = list(argv)
        keep_argv[keep_argv.index("--config") + 1] = keep
        start_daemon(env, argv=keep_argv)
        stop_daemon(env, signal.SIGKILL)
        output = cli(env, "rules", "--remove", "--gave-up", "nfq-redirect.service", *keep_argv[1:],
                     environment={"MONITOR_SERVICE_RESULT": "start-limit-hit"})
        expect("rules kept" in output and "on_give_up = keep" in output, "on_give_up = keep: 'rules kept'", output)
        expect_equal("rules kept by on_give_up = keep", rules, our_rules(env))
        expect_equal("fail-closed after giving up: a new connection waits", "timeout",
                     env.client("tcp-probe", format_endpoint(REMOTE_V4, 80), 1.5)["result"])
        cli(env, "rules", "--remove")
    finally:
        back_to_standard(env)
    return said.split(": ", 1)[-1]


def doctor(env):
    """`nfq-redirect doctor` with the daemon's own flags: all ok while it runs (exit 0); after a
    SIGKILL, FAIL for the unbound queues behind rules still in place and for the lookup socket
    (exit 1); after a firewall flush too, the rules are reported missing."""
    argv = [env.redirect.cli, "doctor", *env.redirect.argv()[1:]]
    status, out, err = run_in_router(env, argv)
    levels = {line.split()[1].rstrip(":"): line.split()[0] for line in out.splitlines() if len(line.split()) > 1}
    expect(status == 0 and all(levels.get(check) == "ok" for check in ("config", "firewall", "rules", "queues", "lookup"))
           and "FAIL" not in out, "doctor with the daemon running: config, tools, rules, queues, socket ok; exit 0",
           (status, out, err))
    expect(any(line.split(":")[0].split(None, 1)[-1] == "getsockopt hook" for line in out.splitlines())
           and any(" exclusions:" in line for line in out.splitlines()),
           "doctor also reports the getsockopt hook and the exclusions", out)
    status, out, err = run_in_router(env, [*argv, "--user", "root"])
    expect(status == 0 and any(line.startswith("ok    lookup socket for root:") for line in out.splitlines()),
           "doctor --user root: may connect and is answered; exit 0", (status, out, err))
    status, out, err = run_in_router(env, [*argv, "--user", "nobody"])
    nobody = next((line for line in out.splitlines() if "lookup socket for nobody" in line), "")
    # The suite's socket is world-writable behind an allow list: nobody may connect but is denied.
    expect(status == 1 and nobody.startswith("FAIL") and any(why in nobody for why in ("EACCES", "cannot enter", "ERR DENIED")),
           "doctor --user nobody (not allowed): FAIL with the reason and the fix; exit 1", (status, out, err))
    try:
        stop_daemon(env, signal.SIGKILL)
        status, out, _ = run_in_router(env, argv)
        queues = next((line for line in out.splitlines() if " queues:" in line), "")
        expect(status == 1 and queues.startswith("FAIL") and "fail-closed" in queues
               and any(line.startswith("FAIL  lookup socket") for line in out.splitlines()),
               "doctor after SIGKILL: FAIL queues (rules in place, fail-closed), FAIL lookup socket; exit 1", out)
        flush_rules(env, "iptables -F")
        status, out, _ = run_in_router(env, argv)
        expect(status == 1 and any(line.startswith("warn  rules: not installed") for line in out.splitlines()),
               "doctor after a flush with no daemon: 'warn rules: not installed'", out)
    finally:
        back_to_standard(env)
    return queues.split(": ", 1)[-1][:90]


# --- the service manager's descriptor store and watchdog (service_manager.py) --------------------

def kernel_queues(env):
    """/proc/net/netfilter/nfnetlink_queue in R: {queue: {portid, total, queue_dropped, user_dropped, id}}."""
    lines = run_command(["cat", "/proc/net/netfilter/nfnetlink_queue"], ns=env.topology.router).splitlines()
    result = {}
    for line in lines:
        fields = line.split()
        if len(fields) >= 8:
            result[int(fields[0])] = dict(portid=int(fields[1]), total=int(fields[2]), queue_dropped=int(fields[5]),
                                          user_dropped=int(fields[6]), id=int(fields[7]))
    return result


class Attempt(threading.Thread):
    """Something a client starts while the daemon is away (a new connection, a lookup); it
    records when it finished and how."""

    def __init__(self, work):
        super().__init__(daemon=True)
        self.work = work
        self.started = time.monotonic()
        self.finished = None
        self.result = None
        self.error = None
        self.start()

    def run(self):
        try:
            self.result = self.work()
        except Exception as error:
            self.error = f"{type(error).__name__}: {error}"
        self.finished = time.monotonic()

    def outcome(self, timeout=30.0):
        self.join(timeout)
        if self.is_alive():
            return None, f"still waiting after {timeout} s"
        return self.result, self.error


def new_echo_flow(env, v6, payload):
    flow = EchoFlow(env, v6=v6)
    try:
        flow.round_trip(payload)
        return flow.lookup(env)
    finally:
        flow.close()


def first_progress(transfers, since, budget=30.0):
    """Polls until some transfer has moved data past `since` (their byte counts); returns when."""
    deadline = time.monotonic() + budget
    while time.monotonic() < deadline:
        if any(transfer.bytes > before for transfer, before in zip(transfers, since)):
            return time.monotonic()
        time.sleep(0.005)
    return None


def managed_daemon(env, name, extra=(), **settings):
    """The daemon as the unit runs it (--keep-rules-on-exit) under the fake manager."""
    from service_manager import FakeServiceManager
    manager = FakeServiceManager(env, env.redirect.argv(["--keep-rules-on-exit", *extra]), name, **settings)
    return manager, manager.start()


TRANSFERS = 100   # echo transfers through an outage, v4 and v6 alternating


def outage_with_flows(env, manager, daemon, interrupt, label):
    """Shared by the fd store and watchdog tests: 100 transfers (v4+v6) and 4 UDP flows through the
    managed daemon; `interrupt(daemon)` takes it away; while it is away new connections and
    lookups are started; the successor must adopt the queues, the listener and the table and
    every flow must complete. Returns (figures, successor)."""
    flows, udp, transfers, attempts = [], [], [], []
    try:
        flows = [EchoFlow(env, v6=i % 2 == 1) for i in range(TRANSFERS)]
        udp = [UdpFlow(env, v6=i % 2 == 1) for i in range(4)]
        for flow in udp:
            flow.exchange("before")
        originals = {flow_key(flow): flow.lookup(env) for flow in flows + udp}
        for flow in flows + udp:
            expect(originals[flow_key(flow)].startswith("OK "), f"lookup of {format_endpoint(*flow.client)} before",
                   originals[flow_key(flow)])
        stored = manager.stored_names()
        queues = sorted(int(name.split("-")[1]) for name in stored if name.startswith("nfqueue-"))
        bound = kernel_queues(env)
        expect(queues and "lookup" in stored and set(queues) <= set(bound),
               "the lookup listener and every bound queue in the manager's store",
               f"stored {stored}, kernel queues {sorted(bound)}")
        transfers = [Transfer(flow, seed) for seed, flow in enumerate(flows)]
        for transfer in transfers:
            transfer.start()
        time.sleep(1.0)

        for flow in udp:   # fresh, so that they outlive the outage (3 s UDP timeouts here)
            flow.exchange("just before")
        before = kernel_queues(env)
        gone_at = interrupt(daemon)
        time.sleep(0.05)   # a chunk whose echo was already through completes; later ones need a daemon
        at_kill = [transfer.bytes for transfer in transfers]
        # While it is away: new connections (v4, v6) and a lookup of an old flow.
        time.sleep(0.15)
        attempts = [Attempt(lambda v6=v6: new_echo_flow(env, v6, b"during the outage\n")) for v6 in (False, True)]
        old = flows[0]
        lookup_connections = []

        def patient_lookup():
            # Waits in the kept listener's backlog, then for the answer. The dying daemon may
            # still accept it (a watchdog SIGABRT runs the Swift runtime's crash handler while
            # other threads go on for a moment) and die unanswered, the connection closed or reset
            # (unread request) at its death: asked once more then, as the preload library does, on
            # a new connection the successor answers.
            for attempt in (1, 2):
                lookup_connections.append(attempt)
                try:
                    with LookupClient(env.redirect.socket_path, timeout=30.0) as client:
                        return client.request(f"LOOKUP tcp {old.client[0]} {old.client[1]} {proxy_side(old.v6)} {TCP_PROXY_PORT}")
                except LookupPeerGone:
                    if attempt == 2:
                        raise
        attempts.append(Attempt(patient_lookup))
        time.sleep(0.4)
        held = kernel_queues(env)
        if manager.main.pid == daemon.pid:   # still away: the queue holds what arrives
            for queue in queues:
                expect(queue in held and held[queue]["portid"] == before[queue]["portid"],
                       f"NFQUEUE {queue} still bound to the same socket while the daemon is away",
                       f"before {before.get(queue)}, now {held.get(queue)}")
            waiting = sum(held[queue]["total"] for queue in queues)
            expect(waiting > 0, "packets waiting in the kernel queue while the daemon is away", held)
        else:
            waiting = None
        progress_at = first_progress(transfers, at_kill)
        successor = manager.wait_next_start(daemon.pid, timeout=30)
        ready_at = manager.ready[successor.pid]
        expect(progress_at is not None, "transfers moving again after the outage", "none moved within 30 s")

        outcomes = [attempt.outcome() for attempt in attempts]
        for (result, error), what in zip(outcomes, ["new v4 connection", "new v6 connection", "lookup of an old flow"]):
            expect(error is None and result and result.startswith("OK "), f"{what} started while the daemon was away",
                   error or result)
        expect_equal("lookup answer started while the daemon was away", originals[flow_key(old)], outcomes[2][0])
        for flow in udp:
            flow.exchange("after")
        for flow in flows + udp:
            expect_equal(f"lookup of {format_endpoint(*flow.client)} after {label}", originals[flow_key(flow)],
                         flow.lookup(env))
        problems = broken_transfers(transfers)
        expect(not problems, f"every transfer carried on after {label}, byte for byte, no reset", "; ".join(problems[:5]))
        log = log_of(successor)
        adopted_queues = re.findall(r"NFQUEUE (\d+): adopted the bound socket from the descriptor store", log)
        expect_equal("queues adopted from the descriptor store", queues, sorted(int(q) for q in adopted_queues))
        expect("adopted the listening socket from the descriptor store" in log, "the lookup listener adopted",
               log[-2000:])
        adopted = adopted_line(successor)
        expect(adopted and int(adopted.group(1)) >= TRANSFERS, f"the live table adopted (every TCP flow: >= {TRANSFERS})",
               adopted.group(0) if adopted else log[-2000:])
        after = kernel_queues(env)
        for queue in queues:
            expect_equal(f"NFQUEUE {queue}'s socket after {label} (port id)", before[queue]["portid"],
                         after.get(queue, {}).get("portid"))
            lost = (after[queue]["queue_dropped"] - before[queue]["queue_dropped"],
                    after[queue]["user_dropped"] - before[queue]["user_dropped"])
            expect_equal(f"NFQUEUE {queue}: packets the kernel dropped (queue full, socket full) during {label}",
                         (0, 0), lost)
        expect_equal("stored descriptors after the restart", stored, manager.stored_names())
        connect_times = [attempt.finished - attempt.started for attempt in attempts[:2]]
        figures = (f"away {ready_at - gone_at:.2f} s to the successor's READY, first echo {progress_at - gone_at:.2f} s "
                   f"after, {waiting if waiting is not None else '?'} packets held in the queue, new connections "
                   f"took {max(connect_times):.2f} s, the waiting lookup answered on connection "
                   f"{len(lookup_connections)}, {adopted.group(0)}, {TRANSFERS} transfers intact "
                   f"({sum(t.bytes for t in transfers) >> 10} KiB)")
        return figures, successor
    finally:
        for transfer in transfers:
            transfer.halt.set()
        for attempt in attempts:
            attempt.join(20)
        for flow in flows + udp:
            flow.close()


def fd_store_keeps_packets(env):
    """FileDescriptorStoreMax=: SIGKILL the daemon under the fake manager, restart held for 1 s
    (RestartSec=1s). The queues stay bound to the sockets the manager keeps, so packets wait;
    the successor adopts the sockets, the listener and the live table, and everything completes.
    Without the store (FileDescriptorStoreMax=0) the queues are unbound while the daemon is away:
    fail-closed drops, fail-open passes (killed_fail_closed / killed_fail_open)."""
    stop_daemon(env, signal.SIGUSR2)
    manager = None
    try:
        manager, daemon = managed_daemon(env, "fdstore", restart_sec=1.0)

        def kill(program):
            os.kill(program.pid, signal.SIGKILL)
            return time.monotonic()

        figures, successor = outage_with_flows(env, manager, daemon, kill, "a SIGKILL")
        expect_equal("status of the killed daemon", -signal.SIGKILL, manager.exits[daemon.pid])
        queues = [name for name in manager.stored_names() if name.startswith("nfqueue-")]
        manager.stop()
        expect_equal("the store after a stop for good", [], manager.stored_names())
        unbound = [name for name in queues if int(name.split("-")[1]) in kernel_queues(env)]
        expect_equal("queues still bound after a stop for good", [], unbound)
        manager.close()

        # The same kill without a store: nothing holds the queues while the daemon is away.
        manager, daemon = managed_daemon(env, "nostore", restart_sec=1.0, fd_store_max=0)
        expect_equal("stored descriptors with FileDescriptorStoreMax=0", [], manager.stored_names())
        os.kill(daemon.pid, signal.SIGKILL)
        time.sleep(0.5)
        away = kernel_queues(env)
        expect(not any(queue in away for queue in (int(name.split("-")[1]) for name in queues)),
               "without the store, the queues are unbound while the daemon is away", away)
        manager.wait_next_start(daemon.pid)
        manager.close()

        # Fail-open (--queue-bypass) with the store: the queues stay bound, so nothing passes
        # unredirected while the daemon is away; connections made then wait and are redirected.
        manager, daemon = managed_daemon(env, "failopen", extra=["--fail-open"], restart_sec=1.0)
        expect(any("--queue-bypass" in rule for rule in our_rules(env)), "fail-open rules (--queue-bypass)",
               our_rules(env))
        os.kill(daemon.pid, signal.SIGKILL)
        time.sleep(0.1)
        attempts = [Attempt(lambda v6=v6: new_echo_flow(env, v6, b"fail-open outage\n")) for v6 in (False, True)]
        manager.wait_next_start(daemon.pid)
        for (result, error), v6 in zip([attempt.outcome() for attempt in attempts], (False, True)):
            expect(error is None and result and result.startswith("OK "),
                   f"fail-open with the store: a {'v6' if v6 else 'v4'} connection made while the daemon was away "
                   "waited and was redirected (lookup OK), not passed", error or result)
        return figures + ("; without the store the queues were unbound during the outage; fail-open with the store: "
                          "connections made during the outage redirected, none passed")
    finally:
        if manager:
            manager.close()
        back_to_standard(env)


def fd_store_refuses_wrong_descriptors(env):
    """A stored descriptor that is not what its name says is closed with one log line, removed
    from the store (FDSTOREREMOVE), and the normal path runs: a NETLINK_ROUTE socket passed as
    a queue's, a listener bound elsewhere passed as the lookup socket."""
    stop_daemon(env, signal.SIGUSR2)
    manager = None
    impostors = []
    try:
        # Kernel-nat mode has no reply queue: two original queues give the two to tell apart.
        manager, daemon = managed_daemon(env, "fdcheck", extra=["--queues", "2"] if kernel_nat() else [], restart_sec=0.2)
        stored = manager.stored_names()
        queues = [name for name in stored if name.startswith("nfqueue-")]
        expect(len(queues) >= 2, "two stored queues", stored)
        wrong_queue, kept_queue = queues[-1], queues[0]
        route = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 0)
        elsewhere = os.path.join(env.run_dir, "elsewhere.sock")
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        listener.bind(elsewhere)
        listener.listen(4)
        impostors = [route, listener]
        manager.replace(wrong_queue, route.fileno())
        manager.replace("lookup", listener.fileno())
        os.kill(daemon.pid, signal.SIGKILL)
        successor = manager.wait_next_start(daemon.pid)
        log = log_of(successor)
        lines = [
            f"stored descriptor {wrong_queue} not used (a netlink socket of protocol 0, not NETLINK_NETFILTER): "
            "closed, starting it afresh",
            f"stored descriptor lookup not used (bound to {elsewhere}, not {env.redirect.socket_path}): "
            "closed, starting it afresh",
            f"NFQUEUE {kept_queue.split('-')[1]}: adopted the bound socket from the descriptor store",
        ]
        for line in lines:
            expect_equal(f"log lines '{line[:40]}...'", 1, log.count(line))
        removed = [text for _, pid, text in manager.events if pid == successor.pid and text.startswith("FDSTOREREMOVE")]
        expect_equal("stored descriptors removed by the successor", sorted([f"FDSTOREREMOVE {wrong_queue}",
                                                                              "FDSTOREREMOVE lookup"]), sorted(removed))
        expect_equal("the store after the successor started", stored, manager.stored_names())
        for v6 in (False, True):
            expect_redirected(env, v6=v6)
        answer = new_echo_flow(env, False, b"after the refusals\n")
        expect(answer.startswith("OK "), "a lookup through the freshly bound lookup socket", answer)
        return f"{wrong_queue} and lookup refused with one line each, bound afresh; {kept_queue} adopted; redirects work"
    finally:
        for sock in impostors:
            sock.close()
        if manager:
            manager.close()
        back_to_standard(env)


def fd_store_follows_queue_changes(env):
    """The configuration's queues changed between two starts (a restart with a new config):
    stored queues it no longer has are closed and removed from the store, so they unbind; the
    new ones are bound afresh and stored; the listener is adopted."""
    stop_daemon(env, signal.SIGUSR2)
    manager = None
    try:
        manager, daemon = managed_daemon(env, "fdqueues", restart_sec=0.2)
        old = sorted(int(name.split("-")[1]) for name in manager.stored_names() if name.startswith("nfqueue-"))
        argv = list(manager.argv)
        at = argv.index("--queue") + 1
        argv[at] = str(int(argv[at]) + 20)
        manager.argv = argv
        os.kill(daemon.pid, signal.SIGKILL)
        successor = manager.wait_next_start(daemon.pid)
        new = sorted(queue + 20 for queue in old)
        log = log_of(successor)
        for queue in old:
            expect_equal(f"log line for the stored nfqueue-{queue}", 1,
                         log.count(f"stored descriptor nfqueue-{queue} closed: not wanted by this configuration"))
        expect("adopted the listening socket from the descriptor store" in log, "the listener adopted", log[-1500:])
        expect_equal("the store after the change", sorted([f"nfqueue-{queue}" for queue in new] + ["lookup"]),
                     manager.stored_names())
        deadline = time.monotonic() + 5
        while any(queue in kernel_queues(env) for queue in old) and time.monotonic() < deadline:
            time.sleep(0.05)
        bound = kernel_queues(env)
        expect_equal("queues bound in the kernel after the change", new, sorted(queue for queue in bound if queue in old + new))
        expect_redirected(env)
        expect_redirected(env, v6=True)
        return f"queues {old} closed and removed from the store, {new} bound and stored, listener adopted"
    finally:
        if manager:
            manager.close()
        back_to_standard(env)


def watchdog_restarts_hung_daemon(env):
    """WatchdogSec=: SIGSTOP the daemon while transfers run; the manager's watchdog fires
    (SIGABRT + SIGCONT, SIGKILL after TimeoutAbortSec), starts it again with the stored
    descriptors; the successor adopts them and the live table; every connection completes."""
    stop_daemon(env, signal.SIGUSR2)
    manager = None
    try:
        manager, daemon = managed_daemon(env, "watchdog", watchdog_sec=3.0, timeout_abort_sec=2.0, restart_sec=0.2)

        stopped = []

        def hang(program):
            os.kill(program.pid, signal.SIGSTOP)
            stopped.append(time.monotonic())
            return stopped[0]

        figures, successor = outage_with_flows(env, manager, daemon, hang, "a hang and a watchdog kill")
        fired = [text for _, pid, text in manager.events if pid == daemon.pid and text.startswith("watchdog timeout")]
        expect(len(fired) == 1, "the watchdog fired once for the hung daemon", manager.events)
        status = manager.exits[daemon.pid]
        expect(status in (-signal.SIGABRT, -signal.SIGKILL), "the hung daemon died of SIGABRT (or SIGKILL after "
               "TimeoutAbortSec)", status)
        fired_at = next(at for at, pid, text in manager.events if pid == daemon.pid and text.startswith("watchdog timeout"))
        died_at = next(at for at, pid, text in manager.events if pid == daemon.pid and text.startswith("exited"))
        report = "crash report in its log" if "crashed" in log_of(daemon) else "no crash report in its log"
        return (f"{figures}; watchdog fired {fired_at - stopped[0]:.2f} s after SIGSTOP, the daemon died of "
                f"{signal.Signals(-status).name} {died_at - fired_at:.2f} s after the SIGABRT ({report})")
    finally:
        if manager:
            manager.close()
        back_to_standard(env)


# --- sd_notify, watchdog, metrics ----------------------------------------------------------------

def datapath_thread(pid, name):
    for tid in os.listdir(f"/proc/{pid}/task"):
        with open(f"/proc/{pid}/task/{tid}/comm") as comm:
            if comm.read().strip() == name:
                return int(tid)
    raise TestFailure(f"no thread named {name} in nfq-redirectd {pid}")


def hang_thread(tid):
    """Stops one thread (not the process: no SIGSTOP) with ptrace; returns once it is stopped."""
    for request in (PTRACE_SEIZE, PTRACE_INTERRUPT):
        if LIBC.ptrace(request, tid, None, None) != 0:
            raise OSError(ctypes.get_errno(), f"ptrace {request:#x} {tid}")
    os.waitpid(tid, WAIT_ALL_THREADS)


def release_thread(tid):
    if LIBC.ptrace(PTRACE_DETACH, tid, None, 0) != 0:
        raise OSError(ctypes.get_errno(), f"ptrace detach {tid}")


def notify_protocol_and_watchdog(env):
    from service_manager import NotifySocket
    notify = NotifySocket(os.path.join(env.run_dir, "notify.sock"))
    stop_daemon(env, signal.SIGUSR2)
    try:
        daemon = start_daemon(env, argv=env.redirect.argv(["--metrics", f"127.0.0.1:{METRICS_PORT}"]),
                              environment={"NOTIFY_SOCKET": notify.path, "WATCHDOG_USEC": "4000000"})
        notify.collect(3.2)
        # The queue sockets and the lookup listener go to the descriptor store before READY=1
        # (FakeServiceManager keeps them; here only the text is read).
        texts = [text for _, _, text in notify.messages]
        stored = [text for text in texts if text.startswith("FDSTORE=1")]
        expect(len(stored) >= (2 if kernel_nat() else 3) and "FDSTORE=1\nFDNAME=lookup" in stored
               and all(re.fullmatch(r"FDSTORE=1\nFDNAME=(nfqueue-\d+|lookup)", text) for text in stored),
               "FDSTORE=1 + FDNAME for each queue and the lookup listener", stored)
        first = texts[len(stored)] if len(texts) > len(stored) else ""
        expect(texts[:len(stored)] == stored and first.startswith("READY=1\nSTATUS=redirecting: tcp:80,443:8080"),
               "the descriptors first, then READY=1 and a STATUS line", texts[:len(stored) + 1])
        pings = notify.since(0).count("WATCHDOG=1")
        expect(pings >= 2, "a WATCHDOG=1 ping a second while the datapath is healthy", notify.messages)

        tid = datapath_thread(daemon.pid, "nfqr-q0")
        hang_thread(tid)
        hung_at = time.monotonic()
        try:
            notify.collect(4.0)
            late = notify.since(hung_at + 1.2).count("WATCHDOG=1")
            expect_equal("WATCHDOG=1 pings more than 1.2 s after a datapath thread hung", 0, late)
            expect("made no progress" in log_of(daemon), "a log line naming the stuck thread", log_of(daemon)[-300:])
        finally:
            release_thread(tid)
        released_at = time.monotonic()
        notify.collect(2.5)
        expect(notify.since(released_at).count("WATCHDOG=1") >= 1, "pings again once the thread moves",
               notify.since(released_at))
        expect_redirected(env)

        reloading_at = time.monotonic()
        os.kill(daemon.pid, signal.SIGHUP)
        notify.collect(2.0)
        reload_messages = [text for text in notify.since(reloading_at) if text != "WATCHDOG=1"]
        expect(len(reload_messages) >= 2 and re.fullmatch(r"RELOADING=1\nMONOTONIC_USEC=\d+", reload_messages[0])
               and reload_messages[1].startswith("READY=1\nSTATUS=redirecting"),
               "RELOADING=1 + MONOTONIC_USEC, then READY=1 + STATUS", reload_messages)
        stamp = int(reload_messages[0].split("=")[-1])
        expect(abs(stamp / 1e6 - reloading_at) < 2.0, "MONOTONIC_USEC near CLOCK_MONOTONIC now",
               f"{stamp / 1e6} vs {reloading_at}")

        metrics_families(env)
        stopping_at = time.monotonic()
        stop_daemon(env, signal.SIGUSR2)
        notify.collect(0.5)
        expect("STOPPING=1" in notify.since(stopping_at), "STOPPING=1 on the way out", notify.since(stopping_at))
    finally:
        notify.close()
        back_to_standard(env)
    return f"{pings} pings in 3 s healthy, 0 while hung"


REQUIRED_SERIES = [
    'nfqr_packets_total', 'nfqr_bytes_total',
    'nfqr_verdicts_total{verdict="accept"}', 'nfqr_verdicts_total{verdict="rewrite"}', 'nfqr_verdicts_total{verdict="drop"}',
    'nfqr_verdict_bytes_total{verdict="rewrite"}', 'nfqr_verdict_bytes_total{verdict="accept"}',
    'nfqr_rewrites_total{direction="original"}', 'nfqr_rewrites_total{direction="reply"}',
    'nfqr_flows', 'nfqr_flows_limit', 'nfqr_flows_destroyed_total{reason="evicted"}',
    'nfqr_flows_refused_total{reason="table_full"}', 'nfqr_queue_enobufs_total',
    'nfqr_kernel_queue_dropped_total{queue="0"}', 'nfqr_kernel_user_dropped_total{queue="1"}',
    'nfqr_kernel_queue_length{queue="0"}',
    'nfqr_lookups_total{answer="ok"}', 'nfqr_lookups_total{answer="notfound"}',
    'nfqr_datapath_batch_seconds_count', 'nfqr_datapath_batch_seconds_bucket{le="+Inf"}',
    'nfqr_lookup_seconds_count', 'nfqr_lookup_seconds_sum',
]
MUST_HAVE_COUNTED = ['nfqr_packets_total', 'nfqr_verdicts_total{verdict="rewrite"}',
                     'nfqr_verdict_bytes_total{verdict="rewrite"}', 'nfqr_rewrites_total{direction="reply"}',
                     'nfqr_lookups_total{answer="ok"}', 'nfqr_datapath_batch_seconds_count', 'nfqr_lookup_seconds_count']
def expected_series():
    """(series that must be exported, series that must have counted) in this run's datapath mode.
    Kernel-nat mode: first packets are marked, not rewritten; there is no reply queue; the
    conntrack thread's series are there."""
    if not kernel_nat():
        return REQUIRED_SERIES, MUST_HAVE_COUNTED
    required = [series.replace('{queue="1"}', '{queue="0"}') for series in REQUIRED_SERIES] + [
        'nfqr_datapath_mode{mode="kernel-nat"}', 'nfqr_verdicts_total{verdict="mark"}',
        'nfqr_conntrack_events_total{kind="new"}', 'nfqr_conntrack_resyncs_total{reason="start"}',
        'nfqr_kernel_conntrack_entries', 'nfqr_kernel_conntrack_limit']
    counted = ['nfqr_packets_total', 'nfqr_verdicts_total{verdict="mark"}', 'nfqr_verdict_bytes_total{verdict="mark"}',
               'nfqr_conntrack_events_total{kind="new"}', 'nfqr_conntrack_resyncs_total{reason="start"}',
               'nfqr_lookups_total{answer="ok"}', 'nfqr_datapath_batch_seconds_count', 'nfqr_lookup_seconds_count']
    return required, counted


def metrics_families(env):
    """The Prometheus endpoint of the running daemon: format, the issue's families, counts."""
    env.client("udp-echo", format_endpoint(REMOTE_V4, UDP_PORT), "metrics")
    lookup(env, "tcp", ("192.0.2.99", 4000), (ROUTER_CLIENT_SIDE_V4, TCP_PROXY_PORT))
    with InNamespace(env.topology.router):
        with urllib.request.urlopen(f"http://127.0.0.1:{METRICS_PORT}/metrics", timeout=5) as response:
            content_type = response.headers["Content-Type"]
            text = response.read().decode()
    expect(content_type.startswith("text/plain; version=0.0.4"), "the Prometheus text content type", content_type)
    samples, typed = {}, {}
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split()
            typed[name] = kind
        elif line and not line.startswith("#"):
            series, value = line.rsplit(" ", 1)
            samples[series] = float(value)
    untyped = sorted({series.split("{")[0] for series in samples}
                     - {name + suffix for name in typed for suffix in ("", "_bucket", "_sum", "_count")})
    expect_equal("samples without a # TYPE line for their family", [], untyped)
    required, counted = expected_series()
    missing = [series for series in required if series not in samples]
    expect_equal("series missing from /metrics", [], missing)
    zero = [series for series in counted if samples[series] <= 0]
    expect_equal("series still zero after redirected traffic and lookups", [], zero)
    expect_equal("nfqr_flows_limit", 262144.0, samples["nfqr_flows_limit"])
    # contrib/: every name the alert rules and the dashboard use is one this daemon serves.
    served = {name + suffix for name in typed for suffix in ("", "_bucket", "_sum", "_count")}
    contrib = os.path.join(os.path.dirname(SHIPPED_CONFIG), "..", "contrib")
    used = set()
    for path in ("prometheus/alerts.yml", "grafana/nfq-redirect.json"):
        with open(os.path.join(contrib, path)) as file:
            used |= set(re.findall(r"\bnfqr_[a-z0-9_]+", file.read()))
    expect_equal("names in contrib/ alerts and dashboard not on /metrics", [], sorted(used - served))
    version = run_command([env.redirect.binary, "--version"]).strip()
    expect_equal(f'nfqr_build_info{{version="{version}"}} (the version `nfq-redirectd --version` prints)', 1.0,
                 samples.get(f'nfqr_build_info{{version="{version}"}}'))
    expect_equal("histogram +Inf bucket = count", samples["nfqr_lookup_seconds_count"],
                 samples['nfqr_lookup_seconds_bucket{le="+Inf"}'])


# --- the getsockopt hook: the kernel answers SO_ORIGINAL_DST for the daemon's flows -------------

SO_ORIGINAL_DST = 80
SYS_PIDFD_GETFD = 438


def proxy_socket(env, flow):
    """A duplicate of the proxy's accepted socket of `flow` (pidfd_getfd from the proxy
    process in R), so that this process can ask the kernel what the proxy would get."""
    port = flow.client[1]
    listing = run_command(["ss", "-Htnp", "state", "established", f"( sport = :{TCP_PROXY_PORT} and dport = :{port} )"],
                          ns=env.topology.router)
    found = re.search(r"pid=(\d+),fd=(\d+)", listing)
    expect(found is not None, f"the proxy's socket for client port {port} in R", listing)
    pidfd = os.pidfd_open(int(found.group(1)))
    try:
        fd = LIBC.syscall(SYS_PIDFD_GETFD, pidfd, int(found.group(2)), 0)
        if fd < 0:
            raise OSError(ctypes.get_errno(), "pidfd_getfd")
    finally:
        os.close(pidfd)
    return socket.socket(fileno=fd)


def native_answer(env, flow):
    """What getsockopt(SO_ORIGINAL_DST) on the proxy's socket of `flow` returns: ip:port or the error."""
    with proxy_socket(env, flow) as sock:
        level = socket.IPPROTO_IPV6 if flow.v6 else socket.IPPROTO_IP
        try:
            raw = sock.getsockopt(level, SO_ORIGINAL_DST, 128)
        except OSError as error:
            return f"error {errno_name(error.errno)}"
    port = int.from_bytes(raw[2:4], "big")
    address = socket.inet_ntop(socket.AF_INET6, raw[8:24]) if flow.v6 else socket.inet_ntop(socket.AF_INET, raw[4:8])
    return format_endpoint(address, port)


def errno_name(number):
    import errno
    return errno.errorcode.get(number, str(number))


def hook_attached(env, ns=None):
    """`nfq-redirect hook` in `ns` (default R): True when its daemon's hook is attached."""
    output = run_command([env.redirect.cli, "hook"], ns=ns or env.topology.router, check=False)
    return "attached (" in output


@userspace_only("the kernel's NAT answers SO_ORIGINAL_DST itself, no hook is attached")
def getsockopt_hook_across_restart(env):
    """The proxy's own getsockopt(SO_ORIGINAL_DST) answers for the daemon's flows, before a
    restart (SIGUSR2), in the gap with no daemon running, and after; a stop for good detaches
    the hook, and `rules --remove` takes it off after a SIGKILL."""
    flows = [EchoFlow(env, False), EchoFlow(env, True)]
    try:
        wanted = {flow.client: format_endpoint(*flow.target) for flow in flows}
        for flow in flows:
            flow.round_trip(b"before\n")
            expect_equal(f"native answer for {format_endpoint(*flow.client)}", wanted[flow.client], native_answer(env, flow))
        expect_equal("exit status after SIGUSR2", 0, stop_daemon(env, signal.SIGUSR2))
        expect(hook_attached(env), "the hook still attached while no daemon runs", "not attached")
        for flow in flows:
            expect_equal(f"native answer for {format_endpoint(*flow.client)} with no daemon running",
                         wanted[flow.client], native_answer(env, flow))
        daemon = start_daemon(env)
        expect("getsockopt hook adopted from the previous run" in log_of(daemon), "'getsockopt hook adopted'",
               log_of(daemon))
        for flow in flows:
            flow.round_trip(b"after\n")
            expect_equal(f"native answer for {format_endpoint(*flow.client)} after the restart",
                         wanted[flow.client], native_answer(env, flow))
    finally:
        for flow in flows:
            flow.close()
    expect_equal("exit status after SIGTERM", 0, stop_daemon(env, signal.SIGTERM))
    expect(not hook_attached(env), "no hook attached after a stop for good", "still attached")
    start_daemon(env)
    expect(hook_attached(env), "the hook attached again by a new daemon", "not attached")
    stop_daemon(env, signal.SIGKILL)
    expect(hook_attached(env), "the hook still attached after SIGKILL", "not attached")
    output = cli(env, "rules", "--remove")
    expect("getsockopt hook removed" in output, "'getsockopt hook removed'", output)
    expect(not hook_attached(env), "no hook attached after `rules --remove`", "still attached")
    start_daemon(env)
    expect_redirected(env)
    return "answers before, during and after a restart; detached by a stop for good and by rules --remove"


@kernel_nat_only
def kernel_nat_native_answers(env):
    """Kernel-nat mode: the proxy's own getsockopt(SO_ORIGINAL_DST) is the kernel's NAT answering,
    with no hook attached, before a restart, with no daemon running, and after; the daemon's
    lookup answers the same."""
    flows = [EchoFlow(env, False), EchoFlow(env, True)]
    try:
        expect(not hook_attached(env), "no getsockopt hook in kernel-nat mode", "attached")
        wanted = {flow.client: format_endpoint(*flow.target) for flow in flows}
        for flow in flows:
            flow.round_trip(b"before\n")
            expect_equal(f"native answer for {format_endpoint(*flow.client)}", wanted[flow.client], native_answer(env, flow))
            expect_equal(f"lookup of {format_endpoint(*flow.client)}", f"OK {flow.target[0]} {flow.target[1]}", flow.lookup(env))
        expect_equal("exit status after SIGUSR2", 0, stop_daemon(env, signal.SIGUSR2))
        for flow in flows:
            flow.round_trip(b"away\n")
            expect_equal(f"native answer for {format_endpoint(*flow.client)} with no daemon running",
                         wanted[flow.client], native_answer(env, flow))
        start_daemon(env)
        for flow in flows:
            flow.round_trip(b"after\n")
            expect_equal(f"native answer for {format_endpoint(*flow.client)} after the restart",
                         wanted[flow.client], native_answer(env, flow))
            expect_equal(f"lookup of {format_endpoint(*flow.client)} after the restart",
                         f"OK {flow.target[0]} {flow.target[1]}", flow.lookup(env))
    finally:
        for flow in flows:
            flow.close()
    return "the kernel's NAT answers before, during and after a restart, no hook attached"


TWIN_LISTEN, TWIN_PORT, TWIN_DESTINATION = 18090, 19000, "127.0.0.5"


def local_redirected_pair(ns_path):
    """In namespace `ns_path`: a listener on 127.0.0.1:TWIN_LISTEN and a connection to TWIN_DESTINATION:TWIN_PORT
    (which that namespace's daemon redirects there); returns (accepted, client, listener)."""
    with InNamespace(ns_path):
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", TWIN_LISTEN))
        listener.listen()
        client = socket.create_connection((TWIN_DESTINATION, TWIN_PORT), timeout=10)
    accepted, _ = listener.accept()
    return accepted, client, listener


def ipv4_answer(sock):
    try:
        raw = sock.getsockopt(socket.IPPROTO_IP, SO_ORIGINAL_DST, 16)
    except OSError as error:
        return f"error {errno_name(error.errno)}"
    return format_endpoint(socket.inet_ntop(socket.AF_INET, raw[4:8]), int.from_bytes(raw[2:4], "big"))


@userspace_only("the kernel's NAT answers SO_ORIGINAL_DST itself, no hook is attached")
def two_daemons_two_namespaces(env):
    """A second daemon in a namespace of its own: each answers for its own flows only (the key
    carries the namespace), a flow with the same socket pair in R that R's daemon did not
    redirect keeps the kernel's answer, and stopping one leaves the other's hook alone."""
    twin_topology = Topology(f"{env.tag}-twin", shape="single")  # the guard removes it if this run is killed hard
    twin = twin_topology.router
    twin_topology.create()
    sockets = []
    program = None
    try:
        run_command(["ip", "link", "set", "lo", "up"], ns=twin)
        program = env.programs.start("nfq-redirectd-twin", twin, [
            env.redirect.binary, "--redirect-local", f"tcp:{TWIN_PORT}:{TWIN_LISTEN}", "--no-state",
            "--socket", os.path.join(env.run_dir, "twin.sock"), "--queue", "0"])
        deadline = time.monotonic() + 15
        while not os.path.exists(os.path.join(env.run_dir, "twin.sock")):
            expect(program.running() and time.monotonic() < deadline, "the twin daemon starts", program.log_tail())
            time.sleep(0.05)
        accepted, client, listener = local_redirected_pair(twin)
        sockets += [accepted, client, listener]
        expect_equal("native answer in the twin namespace", f"{TWIN_DESTINATION}:{TWIN_PORT}", ipv4_answer(accepted))
        # The same socket pair in R, connected directly: R's daemon never redirected it.
        with InNamespace(env.topology.router):
            plain = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            plain.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            plain.bind(("127.0.0.1", TWIN_LISTEN))
            plain.listen()
            direct = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            direct.bind(("127.0.0.1", client.getsockname()[1]))
            direct.connect(("127.0.0.1", TWIN_LISTEN))
        sockets += [plain, direct]
        same_pair, _ = plain.accept()
        sockets.append(same_pair)
        expect_equal("socket pair in R", accepted.getpeername(), same_pair.getpeername())
        answer = ipv4_answer(same_pair)
        expect(answer.startswith("error ") or answer == f"127.0.0.1:{TWIN_LISTEN}",
               "the kernel's own answer for the same pair in R (an error or the socket's own address)", answer)
        flow = EchoFlow(env, False)
        try:
            expect_equal("native answer in R while the twin runs", format_endpoint(*flow.target), native_answer(env, flow))
        finally:
            flow.close()
        expect(hook_attached(env, twin) and hook_attached(env), "both namespaces' hooks attached", "one missing")
        expect_equal("twin daemon's exit status after SIGTERM", 0, program.stop(sig=signal.SIGTERM, timeout=10.0))
        expect(not hook_attached(env, twin), "the twin's hook gone with its daemon", "still attached")
        expect(hook_attached(env), "R's hook still attached", "gone")
        expect_redirected(env)
        return "each daemon answers its own namespace; the same pair elsewhere keeps the kernel's answer"
    finally:
        for sock in sockets:
            sock.close()
        if program and program.running():
            program.stop(sig=signal.SIGKILL, timeout=5.0)
        twin_topology.destroy()


# --- the suite, in order -------------------------------------------------------------------------
DAEMON = ("daemon",)
CASES = [
    ("restart (SIGUSR2, start again): TCP+UDP v4/v6 flows carry on, gap data arrives, lookups answer",
     restart_keeps_flows(signal.SIGUSR2, []), 90, DAEMON),
    ("restart as systemd does it (SIGTERM with --keep-rules-on-exit): flows carry on",
     restart_keeps_flows(signal.SIGTERM, ["--keep-rules-on-exit"]), 90, DAEMON),
    ("stop for good (SIGTERM): no rule left, no saved table, ports pass unredirected", stop_for_good, 60, DAEMON),
    ("systemd ExecStopPost: rules kept for a restart after a failure, removed after a clean stop",
     systemd_stop_post, 60, DAEMON),
    ("SIGKILL, fail-closed: redirected ports wait, ICMP errors pass; start again recovers; rules --remove cleans up",
     killed_fail_closed, 60, DAEMON),
    ("SIGKILL, fail-open: redirected ports pass unredirected; start again recovers", killed_fail_open, 60, DAEMON),
    ("SIGKILL with 100 TCP transfers (v4+v6) and 4 UDP flows, started again at once: the live table is adopted, "
     "every transfer intact, lookups answer", killed_keeps_flows, 120, DAEMON),
    ("20 SIGKILLs at random instants during connection churn: no established flow breaks, every new one completes",
     kills_during_churn, 180, DAEMON),
    ("corrupt state file: a clear log line, set aside, clean start", corrupt_state_file, 60, DAEMON),
    ("untrusted live table (mode 0644, bad magic): a clear log line, set aside, clean start",
     untrusted_live_table, 60, DAEMON),
    ("getsockopt hook: the proxy's own SO_ORIGINAL_DST answers before, during and after a restart; "
     "stop for good and rules --remove detach it", getsockopt_hook_across_restart, 90, DAEMON),
    ("getsockopt hook: two daemons in two namespaces each answer only their own flows",
     two_daemons_two_namespaces, 60, DAEMON),
    ("kernel-nat: the proxy's own SO_ORIGINAL_DST is the kernel's NAT's answer, no hook, across a restart",
     kernel_nat_native_answers, 60, DAEMON),
    ("reload (SIGHUP): new rules for new flows, old flows kept, broken configs refused, atomic swap",
     reload_semantics, 120, DAEMON),
    ("signals right after start (before READY): SIGHUP reloads, SIGTERM stops and removes the rules",
     signals_right_after_start, 90, DAEMON),
    ("the unit's sandbox (read-only fs, CAP_NET_ADMIN+NET_RAW+BPF+SYS_ADMIN only, no new privileges): rules, hook and "
     "redirects work", sandboxed_like_the_unit, 60, DAEMON),
    ("the shipped config redirects nothing: exit status 2 and one line, nothing changed, traffic unredirected",
     shipped_config_redirects_nothing, 60, DAEMON),
    ("rules stay put: a firewall flush under traffic is repaired within a second, counted, logged once; "
     "an established flow carries on", rules_stay_put, 90, DAEMON),
    ("[rules] manage = false: nothing installed, one warning, the operator's rules redirect and are left alone",
     rules_not_managed, 60, DAEMON),
    ("giving up (systemd's steps: crash, ExecStartPre exit 2, start limit, OnFailure=): rules removed, traffic "
     "passes; on_give_up = keep stays fail-closed", give_up_removes_rules, 90, DAEMON),
    ("nfq-redirect doctor: all ok while the daemon runs; unbound queues, dead socket and missing rules "
     "reported after a SIGKILL and a flush", doctor, 60, DAEMON),
    ("descriptor store (fake service manager): SIGKILL, restart held 1 s: packets and connections wait in the "
     "queue, the successor adopts queues, listener and table; v4+v6 transfers intact, no reset", fd_store_keeps_packets,
     120, DAEMON),
    ("descriptor store: a queue's name on a NETLINK_ROUTE socket and a listener bound elsewhere are refused with one "
     "line each, removed from the store, bound afresh", fd_store_refuses_wrong_descriptors, 60, DAEMON),
    ("descriptor store: queues the new configuration does not have are closed, removed from the store and unbound",
     fd_store_follows_queue_changes, 60, DAEMON),
    ("watchdog (fake service manager): SIGSTOP under traffic, SIGABRT + SIGCONT after WatchdogSec, restarted with "
     "the stored descriptors; every transfer intact", watchdog_restarts_hung_daemon, 120, DAEMON),
    ("sd_notify (fake NOTIFY_SOCKET): READY/STATUS, WATCHDOG withheld while a thread hangs, "
     "RELOADING, STOPPING; /metrics", notify_protocol_and_watchdog, 90, DAEMON),
]
