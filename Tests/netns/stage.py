"""Sets the stage for the tests (namespaces, servers, redirector, proxies) and tears it down.

The tests talk to it through `client(...)` (run client.py in a namespace), `proxy_line(...)`
(what a proxy logged about a client) and the fixed addresses in harness/topology.py.
"""

import os
import shutil
import tempfile
import time

from harness.checks import TestFailure, expect, parse_json_answer
from harness.cleanup import RUN_MARKER
from harness.endpoints import format_endpoint
from harness.processes import CommandFailed, Programs, run_command
from harness.redirectors import (DaemonRedirect, KernelRedirect, EXAMPLE_PORT, EXAMPLE_PROXY_PORT, LOCAL_PORT,
                         LOCAL_PROXY_PORT, TCP_PORTS, TCP_PROXY_PORT, UDP_PORT, UDP_RELAY_PORT, EXCLUDE_MARK,
                         UDP_CONNECTED_PORT,
                         ruleset)
from harness.topology import REMOTE_V4, REMOTE_V6, Topology
from harness.unprivileged import stage_unprivileged

HERE = os.path.dirname(os.path.abspath(__file__))
EXAMPLE_PROXY = os.path.join(HERE, "..", "..", "examples", "transparent_proxy.py")
PYTHON = "/usr/bin/python3"


class Stage:
    def __init__(self, tag, mode, bin_dir, queue, log_level, ready_timeout):
        self.tag = tag
        self.mode = mode
        os.environ[RUN_MARKER] = tag
        self.run_dir = tempfile.mkdtemp(prefix=f"{tag}.")
        os.chmod(self.run_dir, 0o711)  # a peer of another uid reaches the lookup socket, to be refused
        self.unprivileged_dir = None
        self.topology = Topology(tag)
        self.programs = Programs(self.run_dir)
        if mode == "daemon":
            self.redirect = DaemonRedirect(bin_dir, self.run_dir, queue, log_level, ready_timeout)
        else:
            self.redirect = KernelRedirect()
        self.proxies = {}
        self.rules_before_redirect = []

    # How the proxies report learning an original destination, per protocol.
    def via(self, proto):
        if self.mode == "daemon":
            return "lookup"
        return "SO_ORIGINAL_DST" if proto == "tcp" else "conntrack"

    def set_up(self):
        if self.mode == "daemon":
            self.stage_unprivileged()
        self.topology.create()
        servers = self.programs.start("servers", self.topology.server, [
            PYTHON, os.path.join(HERE, "servers.py"),
            *[f"--tcp-port={port}" for port in (*TCP_PORTS, LOCAL_PORT, EXAMPLE_PORT)],
            f"--udp={format_endpoint(REMOTE_V4, UDP_PORT)}", f"--udp={format_endpoint(REMOTE_V6, UDP_PORT)}"])
        servers.wait_for_log(lambda text: "ready" in text, 10, "ready line")
        self.check_plain_forwarding()
        self.topology.wait_for_neighbours()
        self.rules_before_redirect = ruleset(self.topology.router)
        self.redirect.start(self.programs, self.topology.router)
        self.start_proxy("tcp-proxy", "tcp", ["0.0.0.0", "::"], TCP_PROXY_PORT)
        self.start_proxy("udp-relay", "udp", ["0.0.0.0", "::"], UDP_RELAY_PORT)
        self.start_proxy("local-proxy", "tcp", ["127.0.0.1", "::1"], LOCAL_PROXY_PORT, mark=EXCLUDE_MARK)
        self.start_udp_connected()
        if self.mode == "daemon":
            self.start_example_proxy()

    # What the tests run as uid 65534 (ask.py with the harness package, the nfq-redirect CLI),
    # copied world-readable into the run directory (harness/unprivileged.py says why).
    def stage_unprivileged(self):
        self.unprivileged_dir = stage_unprivileged(self.run_dir, [os.path.join(HERE, "ask.py")],
                                                   [self.redirect.cli])

    def unprivileged(self, name):
        """The world-readable copy of `name` (a file of UNPRIVILEGED_FILES, or nfq-redirect)."""
        return os.path.join(self.unprivileged_dir, name)

    def check_plain_forwarding(self, timeout=10.0):
        """Before any redirect, C reaches S's remote addresses through R (and neighbours resolve)."""
        deadline = time.monotonic() + timeout
        for remote in (REMOTE_V4, REMOTE_V6):
            target = format_endpoint(remote, TCP_PORTS[0])
            while True:
                try:
                    answer = self.client("tcp-id", target, timeout=5)
                    expect(answer["reply"].startswith(f"SERVER {target} PEER "),
                           f"SERVER {target} PEER <client>", answer["reply"])
                    break
                except (TestFailure, CommandFailed) as error:
                    if time.monotonic() > deadline:
                        raise CommandFailed(f"plain forwarding C -> {target} does not work: {error}") from None
                    time.sleep(0.2)

    def start_proxy(self, name, kind, addresses, port, mark=None):
        argv = [PYTHON, os.path.join(HERE, "proxy.py"), kind, "--origin", self.redirect.origin,
                *[f"--listen={format_endpoint(address, port)}" for address in addresses]]
        if self.redirect.socket_path:
            argv += ["--socket", self.redirect.socket_path]
        if mark is not None:
            argv += ["--mark", f"{mark:#x}"]
        proxy = self.programs.start(name, self.topology.router, argv)
        proxy.wait_for_log(lambda text: "ready" in text, 10, "ready line")
        self.proxies[name] = proxy

    def start_udp_connected(self):
        """udp_connected.py: answers each client from a connected socket and logs whether the
        client's port unreachable came back to it (ECONNREFUSED)."""
        argv = [PYTHON, os.path.join(HERE, "udp_connected.py"),
                *[f"--listen={format_endpoint(address, UDP_CONNECTED_PORT)}" for address in ("0.0.0.0", "::")]]
        proxy = self.programs.start("udp-connected", self.topology.router, argv)
        proxy.wait_for_log(lambda text: "ready" in text, 10, "ready line")
        self.proxies["udp-connected"] = proxy

    def start_example_proxy(self):
        """examples/transparent_proxy.py, asking with LOOKUPFD, on the EXAMPLE_PROXY_PORT redirect."""
        argv = [PYTHON, EXAMPLE_PROXY, "--socket", self.redirect.socket_path, "--lookup", "fd",
                *[f"--listen={format_endpoint(address, EXAMPLE_PROXY_PORT)}" for address in ("0.0.0.0", "::")]]
        proxy = self.programs.start("example-proxy", self.topology.router, argv)
        proxy.wait_for_log(lambda text: "ready" in text, 10, "ready line")
        self.proxies["example-proxy"] = proxy

    def client(self, action, *args, ns=None, timeout=30):
        """Runs client.py in `ns` (default: the client namespace C) and returns its JSON answer."""
        argv = [PYTHON, os.path.join(HERE, "client.py"), action, *map(str, args)]
        output = run_command(argv, ns=ns or self.topology.client, timeout=timeout, check=False)
        return parse_json_answer(output, f"client.py {' '.join(map(str, (action, *args)))}")

    def proxy_line(self, proxy, client_endpoint, timeout=3.0):
        """The line `proxy` logged about the connection or datagram from `client_endpoint`: the
        newest, since an earlier case's connection may have had the same client port (the
        proxies log it before they relay, so the caller's own line is there once its client
        has its answer)."""
        prefix = f"client {client_endpoint} "
        deadline = time.monotonic() + timeout
        while True:
            lines = [line for line in self.proxies[proxy].log().splitlines() if line.startswith(prefix)]
            if lines or time.monotonic() > deadline:
                return lines[-1] if lines else f"(no line for {client_endpoint} in the {proxy} log)"
            time.sleep(0.05)

    def wanted_count(self, proxy):
        return sum(" wanted " in line for line in self.proxies[proxy].log().splitlines())

    def log_tails(self):
        return "\n".join(f"--- {program.name} (pid {program.pid}) ---\n{program.log_tail()}"
                         for program in self.programs.started)

    def tear_down(self):
        """Stops every program by its pid, deletes the namespaces and the run directory."""
        self.programs.stop_all()
        self.topology.destroy()
        shutil.rmtree(self.run_dir, ignore_errors=True)
