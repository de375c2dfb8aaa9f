"""The listeners in R (nginx, the UDP drain, one-off iperf3 servers) and the bench's C tool."""

import os
import time

from modes import BULK_LISTEN_PORT, HTTP_LISTEN_PORT, UDP_LISTEN_PORT
from harness.processes import CommandFailed, run_command

HERE = os.path.dirname(os.path.abspath(__file__))
WRK_SCRIPT = os.path.join(HERE, "wrk-report.lua")

NGINX_CONF = """\
# Written by bench/peers.py: one worker, no logs, a tiny static answer.
worker_processes 1;
daemon off;
user root;
pid {run}/nginx.pid;
error_log {run}/nginx-error.log warn;
events {{ worker_connections 8192; }}
http {{
    access_log off;
    client_body_temp_path {run}/nginx-body;
    proxy_temp_path {run}/nginx-proxy;
    fastcgi_temp_path {run}/nginx-fastcgi;
    uwsgi_temp_path {run}/nginx-uwsgi;
    scgi_temp_path {run}/nginx-scgi;
    # One keep-alive connection carries the whole request/response sample.
    keepalive_requests 1000000000;
    keepalive_timeout 120s;
    server {{
        listen 0.0.0.0:{port} backlog=4096;
        listen [::]:{port} ipv6only=on backlog=4096;
        location / {{ return 200 "ok\\n"; }}
    }}
}}
"""


def build_program(run_dir, name, libraries=()):
    """Compiles bench/<name>.c into the run directory, linked with `libraries`; returns its path."""
    binary = os.path.join(run_dir, name)
    run_command(["cc", "-O2", "-Wall", "-o", binary, os.path.join(HERE, f"{name}.c"),
                 *[f"-l{library}" for library in libraries]], timeout=60)
    return binary


def wait_listening(ns, proto, port, program, timeout=10.0):
    """Until a socket in `ns` listens on `port` (TCP) or is bound to it (UDP)."""
    flag = "-Hltn" if proto == "tcp" else "-Hlun"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if run_command(["ss", flag, f"sport = :{port}"], ns=ns).strip():
            return
        if not program.running():
            raise CommandFailed(f"{program.name} exited with status {program.popen.returncode}; "
                                f"its output:\n{program.log_tail()}")
        time.sleep(0.05)
    raise CommandFailed(f"nothing listens on {proto} port {port} in {ns} within {timeout} s")


class Listeners:
    """nginx and the UDP drain live for the whole run; iperf3 servers for one sample each."""

    def __init__(self, ns, programs, run_dir, udpblast, run_seconds):
        self.ns = ns
        self.programs = programs
        self.run_dir = run_dir
        self.udpblast = udpblast
        self.run_seconds = run_seconds
        self.iperf3_servers = 0

    def start(self):
        conf = os.path.join(self.run_dir, "nginx.conf")
        with open(conf, "w") as out:
            out.write(NGINX_CONF.format(run=self.run_dir, port=HTTP_LISTEN_PORT))
        nginx = self.programs.start("nginx", self.ns, ["nginx", "-p", self.run_dir, "-c", conf,
                                                       "-e", os.path.join(self.run_dir, "nginx-error.log")])
        wait_listening(self.ns, "tcp", HTTP_LISTEN_PORT, nginx)
        drain = self.programs.start("udp-drain", self.ns, [self.udpblast, "drain", "--port", str(UDP_LISTEN_PORT),
                                                           "--seconds", str(self.run_seconds)])
        wait_listening(self.ns, "udp", UDP_LISTEN_PORT, drain)

    def iperf3_server(self):
        """A one-off iperf3 server (exits after one test), listening when this returns."""
        self.iperf3_servers += 1
        server = self.programs.start(f"iperf3-server-{self.iperf3_servers}", self.ns,
                                     ["iperf3", "--server", "--one-off", "--port", str(BULK_LISTEN_PORT)])
        wait_listening(self.ns, "tcp", BULK_LISTEN_PORT, server)
        return server
