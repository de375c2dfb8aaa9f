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
out, so nothing can leave the two namespaces. The addresses are the harness's
documentation-range ones (Tests/harness/topology.py, shape "pair").
"""

from harness.topology import (CLIENT_V4, CLIENT_V6, REMOTE_V4, REMOTE_V6, ROUTER_CLIENT_SIDE_V4,
                              ROUTER_CLIENT_SIDE_V6, Topology, set_sysctl)

__all__ = ["Stage", "REMOTE_V4", "REMOTE_V6", "CLIENT_V4", "CLIENT_V6", "ROUTER_V4", "ROUTER_V6"]

ROUTER_V4, ROUTER_V6 = ROUTER_CLIENT_SIDE_V4, ROUTER_CLIENT_SIDE_V6


class Stage(Topology):
    """The harness's "pair" shape, with the client's port range widened."""

    def __init__(self, tag):
        super().__init__(tag, shape="pair")

    def create(self):
        super().create()
        # Many short connections from one client: use the whole port range, and let connect()
        # reuse a port whose old connection waits in TIME_WAIT (timestamps tell them apart).
        # Without reuse, three sides at ~15,000 connections/s fill connect()'s half of the
        # range (the even ports) within 60 s, and each connect() then scans them all: the
        # third round fell to ~120 connections/s for every side.
        set_sysctl(self.client, "net/ipv4/ip_local_port_range", "1024 65535")  # echo joins the words
        set_sysctl(self.client, "net/ipv4/tcp_tw_reuse", "1")
