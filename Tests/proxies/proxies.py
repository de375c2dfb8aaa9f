"""The unmodified Debian proxies under test, each configured for transparent interception.

- redsocks (SOCKS5 upstream: socks5.py in R)   IPv4
- squid    (`http_port ... intercept`)        IPv4 and IPv6
- haproxy  (`server ... 0.0.0.0:0`)           IPv4 (haproxy asks SO_ORIGINAL_DST for IPv4 only)
- goproxy  (goproxy/main.go, built static)    IPv4 and IPv6 on one dual-stack socket
- v2ray    (dokodemo-door, followRedirect)    IPv4 (Go: raw getsockopt, no libc; SOL_IP only)

Each writes its configuration into the run directory, is started in the router namespace R
through `Stage.launch` (which adds the preload library in preload mode), and can show from
its own log that it relayed a given client to a given original destination (`evidence`).
"""

import json
import os
import shutil
import tempfile

from harness.endpoints import format_endpoint, parse_endpoint
from harness.checks import TestFailure
from plan import PORTS, PROXY_GROUP, SOCKS_ENDPOINT, SQUID_FORWARD_ENDPOINT
from harness.processes import run_command

HERE = os.path.dirname(os.path.abspath(__file__))
PYTHON = "/usr/bin/python3"
LOG_WAIT = 5.0  # seconds a proxy may take to log a finished connection



def squid_test_settings(directory):
    """What every squid of the suite adds: its core dumps in its directory, no DNS, ICP, HTCP or
    pinger, and no grace period at shutdown (a test stops it at once)."""
    return f"""coredump_dir {directory}
dns_nameservers 127.0.0.1
icp_port 0
htcp_port 0
pinger_enable off
shutdown_lifetime 0 seconds
"""

class Redsocks:
    name = "redsocks"
    via_header = None  # a TCP relay: the origin sees no Via header

    def __init__(self):
        self.block = PORTS[self.name]
        self.program = None
        self.socks = None

    def start(self, stage):
        self.socks = stage.programs.start("socks5", stage.topology.router,
                                          [PYTHON, os.path.join(HERE, "socks5.py"), "--listen", SOCKS_ENDPOINT])
        self.socks.wait_for_log(lambda text: "ready" in text, 10, "ready line")
        socks_ip, socks_port = parse_endpoint(SOCKS_ENDPOINT)
        config = stage.write_file("redsocks.conf", f"""base {{
    log_debug = off;
    log_info = on;
    log = stderr;
    daemon = off;
    redirector = iptables;
}}
redsocks {{
    local_ip = 0.0.0.0;
    local_port = {self.block.listen_port};
    ip = {socks_ip};
    port = {socks_port};
    type = socks5;
}}
""")
        self.program = stage.launch(self.name, ["redsocks", "-c", config])
        stage.wait_listening(self.program, self.block.listen_port)

    def evidence(self, stage, client, target):
        stage.wait_for_line(self.program, f"[{client}->{target}]: accepted", LOG_WAIT)
        stage.wait_for_line(self.socks, f"connect {target} for ", LOG_WAIT)


class Squid:
    name = "squid"
    via_header = "(squid/"  # part of the Via header squid adds

    def __init__(self):
        self.block = PORTS[self.name]
        self.program = None
        self.access_log = None

    def start(self, stage):
        # Squid drops root for the `proxy` user: its files live in a directory that user owns.
        directory = os.path.join(stage.run_dir, "squid")
        os.mkdir(directory, 0o750)
        shutil.chown(directory, PROXY_GROUP, PROXY_GROUP)
        self.access_log = os.path.join(directory, "access.log")
        cache_log = os.path.join(directory, "cache.log")
        config = stage.write_file("squid.conf", f"""http_port {SQUID_FORWARD_ENDPOINT}
http_port {self.block.listen_port} intercept
http_access allow all
cache deny all
host_verify_strict off
visible_hostname nfqr-proxies-suite
cache_effective_user {PROXY_GROUP}
pid_filename {directory}/squid.pid
cache_log {cache_log}
logformat nfqr %>a %>p %Sh/%<a %<p %ru
access_log stdio:{self.access_log} nfqr
{squid_test_settings(directory)}""")
        self.program = stage.launch(self.name, ["squid", "-N", "-f", config])
        stage.wait_listening(self.program, self.block.listen_port)

    def evidence(self, stage, client, target):
        client_ip, client_port = parse_endpoint(client)
        target_ip, target_port = parse_endpoint(target)
        stage.wait_for_line(self.access_log, f"{client_ip} {client_port} ORIGINAL_DST/{target_ip} "
                                             f"{target_port} http://{target}/", LOG_WAIT)


class Haproxy:
    name = "haproxy"
    via_header = None

    def __init__(self):
        self.block = PORTS[self.name]
        self.program = None

    def start(self, stage):
        config = stage.write_file("haproxy.cfg", f"""global
    log stderr format raw local0 info
defaults
    mode tcp
    log global
    log-format "client %ci:%cp frontend %fi:%fp server %si:%sp"
    timeout connect 5s
    timeout client 30s
    timeout server 30s
frontend intercept
    bind 0.0.0.0:{self.block.listen_port}
    default_backend original_destination
backend original_destination
    # Address 0.0.0.0 and port 0: connect to the address and port the client asked for.
    server original 0.0.0.0:0
""")
        self.program = stage.launch(self.name, ["haproxy", "-db", "-f", config])
        stage.wait_listening(self.program, self.block.listen_port)

    def evidence(self, stage, client, target):
        stage.wait_for_line(self.program, f"client {client} frontend {target} server {target}", LOG_WAIT)


class GoProxy:
    """A static Go program (CGO_ENABLED=0), built here from goproxy/main.go with Debian's Go."""

    name = "goproxy"
    via_header = None

    def __init__(self):
        self.block = PORTS[self.name]
        self.program = None
        self.binary = None

    def build(self, stage):
        cache = tempfile.mkdtemp(prefix="go-", dir=stage.run_dir)
        self.binary = os.path.join(stage.run_dir, "goproxy")
        run_command(["env", f"GOCACHE={cache}", f"GOPATH={cache}", "GOPROXY=off", "GOFLAGS=-mod=mod",
                     "CGO_ENABLED=0", "go", "build", "-o", self.binary, os.path.join(HERE, "goproxy", "main.go")],
                    timeout=300)
        shutil.rmtree(cache, ignore_errors=True)

    def start(self, stage):
        self.build(stage)
        self.program = stage.launch(self.name, [self.binary, "-listen", f":{self.block.listen_port}"])
        stage.wait_listening(self.program, self.block.listen_port)

    def evidence(self, stage, client, target):
        stage.wait_for_line(self.program, f"relay {client} -> {target}", LOG_WAIT)


class V2Ray:
    """Debian's v2ray: a dokodemo-door inbound with followRedirect, a freedom outbound."""

    name = "v2ray"
    via_header = None

    def __init__(self):
        self.block = PORTS[self.name]
        self.program = None
        self.access_log = None

    def start(self, stage):
        self.access_log = os.path.join(stage.run_dir, "v2ray-access.log")
        config = stage.write_file("v2ray.json", json.dumps({
            "log": {"access": self.access_log, "loglevel": "warning"},
            "inbounds": [{
                "listen": "0.0.0.0", "port": self.block.listen_port, "protocol": "dokodemo-door",
                "settings": {"network": "tcp", "followRedirect": True},
                "streamSettings": {"sockopt": {"tproxy": "redirect"}},
            }],
            "outbounds": [{"protocol": "freedom", "settings": {}}],
        }, indent=2))
        self.program = stage.launch(self.name, ["v2ray", "-config", config])
        stage.wait_listening(self.program, self.block.listen_port)

    def evidence(self, stage, client, target):
        # v2ray logs "<client> accepted tcp:<original destination>"
        stage.wait_for_line(self.access_log, f" {client} accepted tcp:{target}", LOG_WAIT)


def all_proxies(mode):
    """The proxies a mode can serve: Go proxies make raw system calls, which no preload
    library sees, so they need the kernel's answer (kernel mode, or the daemon's hook)."""
    proxies = [Redsocks(), Squid(), Haproxy()]
    return proxies if mode == "preload" else [*proxies, GoProxy(), V2Ray()]


def check_body(proxy, body, target, router):
    """The origin's answer says: reached at `target`, from `router` (R), through `proxy`."""
    words = body.split(" ", 5)
    peer_ip = parse_endpoint(words[3])[0] if len(words) >= 4 and ":" in words[3] else None
    via = words[5] if len(words) == 6 else ""
    via_ok = (via == "-") if proxy.via_header is None else (proxy.via_header in via)
    if words[:3] != ["SERVER", target, "PEER"] or peer_ip != router or words[4:5] != ["VIA"] or not via_ok:
        raise TestFailure(f"expected: SERVER {target} PEER {format_endpoint(router, '<port>')} VIA "
                          f"{'-' if proxy.via_header is None else '...' + proxy.via_header + '...'}\n"
                          f"     got: {body!r}")
