"""The redirect plan of the proxies suite, and the two things that carry it out in R.

Each proxy gets its own block of remote ports. The first eight of a block are redirected by
whichever redirector is under test (nfq-redirectd, or the kernel's nat REDIRECT); the ninth
is always redirected by the kernel's nat REDIRECT, so in daemon mode the same proxy process
serves flows of both kinds and each proxy must get the kernel's own answer for those.

Three redirectors: the kernel's (the baseline), nfq-redirectd with its getsockopt hook (the
default: proxies run unmodified and the kernel answers SO_ORIGINAL_DST for the daemon's flows
too), and nfq-redirectd with the hook off and the preload library in the proxies (the fallback).
"""

import os

from harness.processes import CommandFailed, run_command
from harness.redirectors import DaemonRedirect


class PortBlock:
    def __init__(self, first, listen_port, ipv6):
        self.redirected = tuple(range(first, first + 8))  # by the redirector under test
        self.kernel_only = first + 8                      # by the kernel's nat REDIRECT, always
        self.listen_port = listen_port
        self.ipv6 = ipv6                                  # whether the proxy relays IPv6 at all

    @property
    def all_ports(self):
        return (*self.redirected, self.kernel_only)

    @property
    def families(self):
        return (False, True) if self.ipv6 else (False,)


# redsocks 0.5, haproxy and v2ray 4.34 (for SO_ORIGINAL_DST: it asks at SOL_IP only, behind the
# kernel's REDIRECT too) are IPv4-only; squid and goproxy (Go, built static in the run)
# intercept both families.
PORTS = {
    "redsocks": PortBlock(7001, listen_port=12345, ipv6=False),
    "squid": PortBlock(7101, listen_port=3129, ipv6=True),
    "haproxy": PortBlock(7201, listen_port=12346, ipv6=False),
    "goproxy": PortBlock(7301, listen_port=12348, ipv6=True),
    "v2ray": PortBlock(7401, listen_port=12349, ipv6=False),
}

SOCKS_ENDPOINT = "127.0.0.1:1080"           # redsocks' upstream, in R
SQUID_FORWARD_ENDPOINT = "127.0.0.1:3128"   # squid wants one plain forward-proxy port too
PROXY_GROUP = "proxy"                       # squid drops root for this user and group

CHAIN = "NFQR_PROXIES"


def nat_rules(blocks, ipv6):
    """iptables-restore input: REDIRECT each block's ports (`blocks`: name -> ports) in R."""
    lines = ["*nat", f":{CHAIN} - [0:0]", f"-A PREROUTING -j {CHAIN}"]
    for name, ports in blocks:
        if ipv6 and not PORTS[name].ipv6:
            continue
        port_list = ",".join(map(str, ports))
        lines.append(f"-A {CHAIN} -p tcp -m multiport --dports {port_list} "
                     f"-j REDIRECT --to-ports {PORTS[name].listen_port}")
    return "\n".join([*lines, "COMMIT", ""])


def install_nat_rules(ns, blocks):
    for restore, ipv6 in (("iptables-restore", False), ("ip6tables-restore", True)):
        run_command([restore, "--noflush"], ns=ns, input=nat_rules(blocks, ipv6))


class KernelRedirects:
    """The baseline: the kernel's nat REDIRECT for every port; proxies run without preload."""

    name = "kernel"
    preload = None
    socket_path = None

    def start(self, programs, ns):
        install_nat_rules(ns, [(name, block.all_ports) for name, block in PORTS.items()])

    def stop(self):
        return 0  # the rules go with the namespace


class DaemonRedirects(DaemonRedirect):
    """nfq-redirectd redirects each block's first ports; the kernel keeps the last port of each.

    `preload`: the getsockopt hook off and the proxies started with the preload library (the
    fallback for hosts without the hook); otherwise the proxies run as shipped.

    The lookup socket belongs to the `proxy` group (mode 0660), because squid asks as the
    unprivileged `proxy` user; redsocks and haproxy ask as root.
    """

    def __init__(self, bin_dir, run_dir, queue, log_level, ready_timeout, preload=False):
        super().__init__(bin_dir, run_dir, queue, log_level, ready_timeout)
        self.name = "preload" if preload else "daemon"
        self.preload = os.path.join(bin_dir, "libnfq-redirect-preload.so") if preload else None
        self.config_path = os.path.join(run_dir, "nfq-redirectd.toml")

    def argv(self):
        argv = [self.binary, "--config", self.config_path, "--queue", str(self.queue),
                "--socket", self.socket_path, "--state-file", self.state_file]
        for block in PORTS.values():
            ports = f"{block.redirected[0]}-{block.redirected[-1]}"
            argv += ["--redirect", f"tcp:{ports}:{block.listen_port}"]
        if self.preload:
            argv.append("--no-getsockopt-hook")
        return argv + (["--log-level", self.log_level] if self.log_level else [])

    def start(self, programs, ns):
        if self.preload and not os.access(self.preload, os.R_OK):
            raise CommandFailed(f"no preload library at {self.preload}: build it (make), "
                                    "or point NFQR_BIN_DIR at it")
        with open(self.config_path, "w", encoding="utf-8") as config:
            config.write(f'[lookup]\nmode = "0660"\ngroup = "{PROXY_GROUP}"\n')
        install_nat_rules(ns, [(name, (block.kernel_only,)) for name, block in PORTS.items()])
        super().start(programs, ns)
