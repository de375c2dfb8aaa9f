"""The bench's network: client namespace C and router namespace R joined by one veth pair.

    client ns C                           router ns R
  +-------------------+        +--------------------------------------+
  | iperf3 -c, wrk,   |  veth  | 192.0.2.1      2001:db8:1::1          |
  | udpblast          |--------| iperf3 -s :5201, nginx :8080,         |
  | 192.0.2.2/24      |        | udpblast drain :4001                  |
  | 2001:db8:1::2/64  |        | kernel REDIRECT or nfq-redirectd      |
  | default via R     |        +--------------------------------------+
  +-------------------+

C dials the "remote" addresses 203.0.113.10 / 2001:db8:3::10, which exist nowhere: R's
redirect (kernel or daemon) is the only reason a packet reaches a listener. R has no route
out, so nothing can leave the two namespaces. The addresses are the netns suite's
documentation-range ones (Tests/netns/topology.py).
"""

import time

from processes import CommandFailed, run_command
from topology import (CLIENT_V4, CLIENT_V6, REMOTE_V4, REMOTE_V6, ROUTER_CLIENT_SIDE_V4,
                      ROUTER_CLIENT_SIDE_V6, existing_namespaces, neighbour_resolved, set_sysctl)

__all__ = ["Stage", "REMOTE_V4", "REMOTE_V6", "CLIENT_V4", "ROUTER_V4", "ROUTER_V6"]

ROUTER_V4, ROUTER_V6 = ROUTER_CLIENT_SIDE_V4, ROUTER_CLIENT_SIDE_V6
PYTHON = "/usr/bin/python3"
NUDGE = ("import socket, sys; a = sys.argv[1]; "
         "socket.socket(socket.AF_INET6 if ':' in a else socket.AF_INET, socket.SOCK_DGRAM).sendto(b'', (a, 9))")


class Stage:
    def __init__(self, tag):
        """`tag` is unique per run (nfqrb-<pid>); veth names are kept within 15 characters."""
        self.client, self.router = f"{tag}-c", f"{tag}-r"
        short = "nfqrb" + "".join(ch for ch in tag if ch.isdigit())[-7:]
        self.client_link, self.router_link = f"{short}c", f"{short}r"

    @property
    def namespaces(self):
        return [self.client, self.router]

    def create(self):
        for ns in self.namespaces:
            run_command(["ip", "netns", "add", ns])
            set_sysctl(ns, "net/ipv6/conf/all/accept_dad", 0)
            set_sysctl(ns, "net/ipv6/conf/default/accept_dad", 0)
            run_command(["ip", "-n", ns, "link", "set", "lo", "up"])
        # The pair is created inside R with its peer born in C: never in the host's namespace.
        run_command(["ip", "-n", self.router, "link", "add", self.router_link, "type", "veth",
                     "peer", "name", self.client_link, "netns", self.client])
        self._address(self.client, self.client_link, f"{CLIENT_V4}/24", f"{CLIENT_V6}/64")
        self._address(self.router, self.router_link, f"{ROUTER_V4}/24", f"{ROUTER_V6}/64")
        run_command(["ip", "-n", self.client, "route", "add", "default", "via", ROUTER_V4])
        run_command(["ip", "-n", self.client, "-6", "route", "add", "default", "via", ROUTER_V6])
        # Many short connections from one client: use the whole port range, and let connect()
        # reuse a port whose old connection waits in TIME_WAIT (timestamps tell them apart).
        # Without reuse, three sides at ~15,000 connections/s fill connect()'s half of the
        # range (the even ports) within 60 s, and each connect() then scans them all: the
        # third round fell to ~120 connections/s for every side.
        set_sysctl(self.client, "net/ipv4/ip_local_port_range", "1024 65535")  # echo joins the words
        set_sysctl(self.client, "net/ipv4/tcp_tw_reuse", "1")

    def wait_for_neighbours(self, timeout=10.0):
        """Resolves each side's peer in both families, so the first sample does not pay for it."""
        checks = [(self.client, self.client_link, ROUTER_V4), (self.client, self.client_link, ROUTER_V6),
                  (self.router, self.router_link, CLIENT_V4), (self.router, self.router_link, CLIENT_V6)]
        deadline = time.monotonic() + timeout
        while True:
            missing = [(ns, link, peer) for ns, link, peer in checks if not neighbour_resolved(ns, link, peer)]
            if not missing:
                return
            if time.monotonic() > deadline:
                raise CommandFailed(f"neighbours not resolved within {timeout} s: {missing}")
            for ns, _, peer in missing:
                # A datagram to the discard port makes the kernel resolve the peer's address.
                run_command([PYTHON, "-c", NUDGE, peer], ns=ns)
            time.sleep(0.1)

    def destroy(self):
        """Deletes whichever of our namespaces exist; links, addresses and rules go with them."""
        present = existing_namespaces()
        for ns in self.namespaces:
            if ns in present:
                run_command(["ip", "netns", "del", ns], check=False)

    @staticmethod
    def _address(ns, link, v4, v6):
        run_command(["ip", "-n", ns, "addr", "add", v4, "dev", link])
        run_command(["ip", "-n", ns, "-6", "addr", "add", v6, "dev", link, "nodad"])
        run_command(["ip", "-n", ns, "link", "set", link, "up"])
