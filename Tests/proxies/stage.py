"""Sets the stage (namespaces, origin server, redirector, proxies) and tears it down.

The namespaces, process handling and addresses are the test harness's (Tests/harness); this
suite adds an HTTP origin in S, real proxies in R instead of the netns suite's own, and in
preload mode starts those proxies with the preload library.
"""

import json
import os
import shutil
import tempfile
import time

from harness.endpoints import format_endpoint
from harness.checks import TestFailure
from harness.cleanup import RUN_MARKER
from plan import PORTS, DaemonRedirects, KernelRedirects
from harness.processes import CommandFailed, Program, Programs, run_command
from proxies import all_proxies
from harness.topology import CLIENT_V4, CLIENT_V6, REMOTE_V4, REMOTE_V6, Topology

HERE = os.path.dirname(os.path.abspath(__file__))
PYTHON = "/usr/bin/python3"


class Stage:
    def __init__(self, tag, mode, bin_dir, queue, log_level, ready_timeout):
        self.tag = tag
        self.mode = mode
        os.environ[RUN_MARKER] = tag  # inherited by everything started; the last test looks for it
        self.run_dir = tempfile.mkdtemp(prefix=f"{tag}.")
        os.chmod(self.run_dir, 0o711)  # squid, no longer root, must reach its own directory in it
        self.topology = Topology(tag)
        self.programs = Programs(self.run_dir)
        if mode in ("daemon", "preload"):
            self.redirect = DaemonRedirects(bin_dir, self.run_dir, queue, log_level, ready_timeout,
                                            preload=mode == "preload")
        else:
            self.redirect = KernelRedirects()
        self.proxies = all_proxies(mode)

    def origin_ports(self):
        """The ports the origin in S listens on: every block's."""
        return sorted(port for block in PORTS.values() for port in block.all_ports)

    def set_up(self):
        self.start_origin()
        self.redirect.start(self.programs, self.topology.router)
        for proxy in self.proxies:
            proxy.start(self)

    def start_origin(self):
        """The namespaces, the HTTP origin in S, and plain forwarding C -> S checked."""
        self.topology.create()
        ports = self.origin_ports()
        origin = self.programs.start("origin", self.topology.server,
                                     [PYTHON, os.path.join(HERE, "origin.py"), *[f"--port={p}" for p in ports]])
        origin.wait_for_log(lambda text: "ready" in text, 10, "ready line")
        for remote, client in ((REMOTE_V4, CLIENT_V4), (REMOTE_V6, CLIENT_V6)):
            self.check_plain_forwarding(format_endpoint(remote, ports[0]), client)
        self.topology.wait_for_neighbours()

    def check_plain_forwarding(self, target, client, timeout=10.0):
        """Before any redirect, C reaches the origin itself through R (and neighbours resolve)."""
        deadline = time.monotonic() + timeout
        while True:
            answer = self.fetch("get", target, check=False)
            if answer.get("body", "").startswith(f"SERVER {target} PEER {format_endpoint(client, '')}"):
                return
            if time.monotonic() > deadline:
                raise CommandFailed(f"plain forwarding C -> {target} does not work: {answer}")
            time.sleep(0.2)

    def launch(self, name, argv):
        """Starts a proxy in R; in preload mode with the preload library and the lookup socket."""
        if self.redirect.preload:
            argv = ["env", f"LD_PRELOAD={self.redirect.preload}",
                    f"NFQ_REDIRECT_SOCKET={self.redirect.socket_path}", *argv]
        return self.programs.start(name, self.topology.router, argv)

    def write_file(self, name, text):
        path = os.path.join(self.run_dir, name)
        with open(path, "w", encoding="utf-8") as file:
            file.write(text)
        os.chmod(path, 0o644)
        return path

    def wait_listening(self, program, port, timeout=20.0):
        """Until something in R listens on TCP `port`; fails early if `program` exits."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if run_command(["ss", "-Hltn", f"sport = :{port}"], ns=self.topology.router).strip():
                return
            if not program.running():
                raise CommandFailed(f"{program.name} exited with status {program.popen.returncode} "
                                    f"before listening on port {port}; its output:\n{program.log_tail()}")
            time.sleep(0.1)
        raise CommandFailed(f"{program.name}: not listening on port {port} within {timeout} s; "
                            f"its output:\n{program.log_tail()}")

    @staticmethod
    def wait_for_line(source, needle, timeout):
        """Until a line of `source` (a Program's log, or a file path) contains `needle`."""
        deadline = time.monotonic() + timeout
        while True:
            text = source.log() if isinstance(source, Program) else read_text(source)
            if any(needle in line for line in text.splitlines()):
                return
            if time.monotonic() > deadline:
                name = source.name if isinstance(source, Program) else os.path.basename(source)
                tail = "\n".join(text.splitlines()[-5:])
                raise TestFailure(f"expected: a line in the {name} log containing {needle!r}\n"
                                  f"     got: (last lines)\n{tail}")
            time.sleep(0.05)

    def fetch(self, action, targets, check=True, timeout=60, size=None):
        """Runs fetch.py in the client namespace C and returns its JSON answer."""
        argv = [PYTHON, os.path.join(HERE, "fetch.py"), action, *([str(size)] if size else []), targets]
        output = run_command(argv, ns=self.topology.client, timeout=timeout, check=False)
        try:
            answer = json.loads(output)
        except ValueError:
            raise TestFailure(f"fetch.py {action} {targets} printed no JSON: {output!r}") from None
        if check and "error" in answer:
            raise TestFailure(f"fetch.py {action} {targets} failed: {answer['error']}")
        return answer

    def log_tails(self):
        tails = [f"--- {program.name} (pid {program.pid}) ---\n{program.log_tail()}"
                 for program in self.programs.started]
        squid_dir = os.path.join(self.run_dir, "squid")
        for name in ("cache.log", "access.log"):
            lines = read_text(os.path.join(squid_dir, name)).splitlines()[-15:]
            tails.append(f"--- squid {name} ---\n" + "\n".join(lines))
        return "\n".join(tails)

    def tear_down(self):
        """Stops every program by its pid, deletes the namespaces and the run directory."""
        self.programs.stop_all()
        self.topology.destroy()
        shutil.rmtree(self.run_dir, ignore_errors=True)


def read_text(path):
    try:
        with open(path, encoding="utf-8", errors="replace") as file:
            return file.read()
    except OSError:
        return ""
