"""The namespaces of every suite, the bench and `make demo`, described once.

    shape "single": R alone (loopback up), for tests that need only a private network stack
    shape "pair":   C - R                  (the bench: R has no route out)
    shape "three":  C - R - S              (`make demo`, the lookup suite)
    shape "full":   C - R - S and the narrow path F - A - B - R (the netns and proxies suites;
                    drawn in Tests/netns/runner.py)

Only documentation address ranges are used (RFC 5737, RFC 3849). Everything lives inside
the namespaces, so deleting them removes the links, addresses, routes and rules with them;
the host's own network configuration is never touched.
"""

import time

from harness.processes import CommandFailed, run_command

CLIENT_V4, CLIENT_V6 = "192.0.2.2", "2001:db8:1::2"
ROUTER_CLIENT_SIDE_V4, ROUTER_CLIENT_SIDE_V6 = "192.0.2.1", "2001:db8:1::1"
ROUTER_SERVER_SIDE_V4, ROUTER_SERVER_SIDE_V6 = "198.51.100.1", "2001:db8:2::1"
SERVER_V4, SERVER_V6 = "198.51.100.2", "2001:db8:2::2"
REMOTE_V4, REMOTE_V6 = "203.0.113.10", "2001:db8:3::10"  # what the client dials; on S's lo

# The narrow path: a far client F two routers (A, B) away from R, with a 1280-byte link between
# A and B, on the way back to F. Small blocks of the documentation ranges, none overlapping
# the ones above (REMOTE_V4 is a /32 elsewhere in 203.0.113.0/24).
NARROW_MTU = 1280
ROUTER_NARROW_SIDE_V4, ROUTER_NARROW_SIDE_V6 = "203.0.113.65", "2001:db8:4::1"   # R on the R-B link
B_ROUTER_SIDE_V4, B_ROUTER_SIDE_V6 = "203.0.113.66", "2001:db8:4::2"
B_NARROW_V4, B_NARROW_V6 = "203.0.113.69", "2001:db8:5::1"                       # B on the narrow link
A_NARROW_V4, A_NARROW_V6 = "203.0.113.70", "2001:db8:5::2"
A_CLIENT_SIDE_V4, A_CLIENT_SIDE_V6 = "203.0.113.73", "2001:db8:6::1"
FAR_CLIENT_V4, FAR_CLIENT_V6 = "203.0.113.74", "2001:db8:6::2"

SHAPES = ("single", "pair", "three", "full")
PYTHON = "/usr/bin/python3"
NUDGE = ("import socket, sys; a = sys.argv[1]; "
         "socket.socket(socket.AF_INET6 if ':' in a else socket.AF_INET, socket.SOCK_DGRAM).sendto(b'', (a, 9))")


class Topology:
    def __init__(self, tag, shape="full"):
        """`tag` is unique per run (e.g. nfqr-<pid>); veth names are kept within 15 characters."""
        if shape not in SHAPES:
            raise ValueError(f"unknown shape {shape!r} (one of {', '.join(SHAPES)})")
        self.tag, self.shape = tag, shape
        self.client, self.router, self.server = f"{tag}-c", f"{tag}-r", f"{tag}-s"
        short = "nfqr" + "".join(ch for ch in tag if ch.isdigit())[-7:]
        self.client_link, self.router_client_link = f"{short}c", f"{short}rc"
        self.router_server_link, self.server_link = f"{short}rs", f"{short}s"
        # The narrow path: F - A - (1280 bytes) - B - R.
        self.far_client, self.router_a, self.router_b = f"{tag}-f", f"{tag}-a", f"{tag}-b"
        self.router_b_link, self.b_router_link = f"{short}rb", f"{short}br"
        self.b_narrow_link, self.a_narrow_link = f"{short}ba", f"{short}ab"
        self.a_client_link, self.far_client_link = f"{short}af", f"{short}f"

    @property
    def namespaces(self):
        return {"single": [self.router],
                "pair": [self.client, self.router],
                "three": [self.client, self.router, self.server],
                "full": [self.client, self.router, self.server, self.far_client, self.router_a,
                         self.router_b]}[self.shape]

    @property
    def links(self):
        return {"single": [],
                "pair": [self.client_link, self.router_client_link],
                "three": [self.client_link, self.router_client_link, self.router_server_link,
                          self.server_link],
                "full": [self.client_link, self.router_client_link, self.router_server_link,
                         self.server_link, self.router_b_link, self.b_router_link, self.b_narrow_link,
                         self.a_narrow_link, self.a_client_link, self.far_client_link]}[self.shape]

    def create(self):
        for ns in self.namespaces:
            run_command(["ip", "netns", "add", ns])
            # No duplicate address detection: addresses are usable at once, link-local ones too.
            set_sysctl(ns, "net/ipv6/conf/all/accept_dad", 0)
            set_sysctl(ns, "net/ipv6/conf/default/accept_dad", 0)
            run_command(["ip", "-n", ns, "link", "set", "lo", "up"])
        if self.shape == "single":
            return
        # Each pair is created inside R with its peer born in C or S: never in the host's namespace.
        run_command(["ip", "-n", self.router, "link", "add", self.router_client_link, "type", "veth",
                     "peer", "name", self.client_link, "netns", self.client])
        self._address(self.client, self.client_link, f"{CLIENT_V4}/24", f"{CLIENT_V6}/64")
        self._address(self.router, self.router_client_link,
                      f"{ROUTER_CLIENT_SIDE_V4}/24", f"{ROUTER_CLIENT_SIDE_V6}/64")
        self._route(self.client, "default", ROUTER_CLIENT_SIDE_V4)
        self._route(self.client, "default", ROUTER_CLIENT_SIDE_V6, v6=True)
        if self.shape == "pair":
            return
        run_command(["ip", "-n", self.router, "link", "add", self.router_server_link, "type", "veth",
                     "peer", "name", self.server_link, "netns", self.server])
        self._address(self.router, self.router_server_link,
                      f"{ROUTER_SERVER_SIDE_V4}/24", f"{ROUTER_SERVER_SIDE_V6}/64")
        self._address(self.server, self.server_link, f"{SERVER_V4}/24", f"{SERVER_V6}/64")
        self._address(self.server, "lo", f"{REMOTE_V4}/32", f"{REMOTE_V6}/128")

        set_sysctl(self.router, "net/ipv4/ip_forward", 1)
        set_sysctl(self.router, "net/ipv6/conf/all/forwarding", 1)

        self._route(self.router, f"{REMOTE_V4}/32", SERVER_V4)
        self._route(self.router, f"{REMOTE_V6}/128", SERVER_V6, v6=True)
        self._route(self.server, "192.0.2.0/24", ROUTER_SERVER_SIDE_V4)
        self._route(self.server, "2001:db8:1::/64", ROUTER_SERVER_SIDE_V6, v6=True)
        if self.shape == "full":
            self._create_narrow_path()

    def _create_narrow_path(self):
        """F - A - B - R, the A-B link 1280 bytes (the IPv6 minimum) both ways: R's replies to F
        (1500-byte segments) must be shrunk by path MTU discovery, whose "fragmentation needed" /
        "packet too big" B sends to the replies' source address."""
        run_command(["ip", "-n", self.router, "link", "add", self.router_b_link, "type", "veth",
                     "peer", "name", self.b_router_link, "netns", self.router_b])
        run_command(["ip", "-n", self.router_b, "link", "add", self.b_narrow_link, "mtu", str(NARROW_MTU),
                     "type", "veth", "peer", "name", self.a_narrow_link, "mtu", str(NARROW_MTU),
                     "netns", self.router_a])
        run_command(["ip", "-n", self.router_a, "link", "add", self.a_client_link, "type", "veth",
                     "peer", "name", self.far_client_link, "netns", self.far_client])
        self._address(self.router, self.router_b_link, f"{ROUTER_NARROW_SIDE_V4}/30", f"{ROUTER_NARROW_SIDE_V6}/64")
        self._address(self.router_b, self.b_router_link, f"{B_ROUTER_SIDE_V4}/30", f"{B_ROUTER_SIDE_V6}/64")
        self._address(self.router_b, self.b_narrow_link, f"{B_NARROW_V4}/30", f"{B_NARROW_V6}/64")
        self._address(self.router_a, self.a_narrow_link, f"{A_NARROW_V4}/30", f"{A_NARROW_V6}/64")
        self._address(self.router_a, self.a_client_link, f"{A_CLIENT_SIDE_V4}/30", f"{A_CLIENT_SIDE_V6}/64")
        self._address(self.far_client, self.far_client_link, f"{FAR_CLIENT_V4}/30", f"{FAR_CLIENT_V6}/64")
        for ns in (self.router_a, self.router_b):
            set_sysctl(ns, "net/ipv4/ip_forward", 1)
            set_sysctl(ns, "net/ipv6/conf/all/forwarding", 1)
        self._route(self.far_client, "default", A_CLIENT_SIDE_V4)
        self._route(self.far_client, "default", A_CLIENT_SIDE_V6, v6=True)
        self._route(self.router_a, "default", B_NARROW_V4)
        self._route(self.router_a, "default", B_NARROW_V6, v6=True)
        self._route(self.router_b, "default", ROUTER_NARROW_SIDE_V4)
        self._route(self.router_b, "default", ROUTER_NARROW_SIDE_V6, v6=True)
        self._route(self.router_b, f"{FAR_CLIENT_V4}/32", A_NARROW_V4)
        self._route(self.router_b, "2001:db8:6::/64", A_NARROW_V6, v6=True)
        for prefix_v4, prefix_v6 in (("203.0.113.68/30", "2001:db8:5::/64"), ("203.0.113.72/30", "2001:db8:6::/64")):
            self._route(self.router, prefix_v4, B_ROUTER_SIDE_V4)
            self._route(self.router, prefix_v6, B_ROUTER_SIDE_V6, v6=True)

    def destroy(self):
        """Deletes whichever of our namespaces exist (their links and rules go with them)."""
        for ns in self.namespaces:
            if ns in existing_namespaces():
                run_command(["ip", "netns", "del", ns], check=False)

    def wait_for_neighbours(self, timeout=10.0):
        """Until every link peer is resolved (not INCOMPLETE/FAILED) in both families; a datagram
        to the discard port nudges the kernel into resolving a peer still missing."""
        pairs = [(self.client, self.client_link, ROUTER_CLIENT_SIDE_V4, ROUTER_CLIENT_SIDE_V6),
                 (self.router, self.router_client_link, CLIENT_V4, CLIENT_V6),
                 (self.router, self.router_server_link, SERVER_V4, SERVER_V6),
                 (self.server, self.server_link, ROUTER_SERVER_SIDE_V4, ROUTER_SERVER_SIDE_V6)]
        pairs = [pair for pair in pairs if pair[0] in self.namespaces and pair[1] in self.links]
        deadline = time.monotonic() + timeout
        while True:
            missing = [(ns, link, peer) for ns, link, v4, v6 in pairs for peer in (v4, v6)
                       if not neighbour_resolved(ns, link, peer)]
            if not missing:
                return
            if time.monotonic() > deadline:
                raise CommandFailed("neighbours not resolved within {} s: {}".format(
                    timeout, ", ".join(f"{peer} on {link} in {ns}" for ns, link, peer in missing)))
            for ns, _, peer in missing:
                run_command([PYTHON, "-c", NUDGE, peer], ns=ns)
            time.sleep(0.1)

    def _address(self, ns, link, v4, v6):
        run_command(["ip", "-n", ns, "addr", "add", v4, "dev", link])
        run_command(["ip", "-n", ns, "-6", "addr", "add", v6, "dev", link, "nodad"])
        run_command(["ip", "-n", ns, "link", "set", link, "up"])

    @staticmethod
    def _route(ns, destination, via, v6=False):
        run_command(["ip", "-n", ns, *(["-6"] if v6 else []), "route", "add", destination, "via", via])


def set_sysctl(ns, key, value):
    # /proc/sys/net shows the namespace of the process reading it: this only changes `ns`.
    run_command(["sh", "-c", f"echo {value} > /proc/sys/{key}"], ns=ns)


def existing_namespaces():
    return [line.split()[0] for line in run_command(["ip", "netns", "list"]).splitlines() if line.strip()]


def neighbour_resolved(ns, link, address):
    states = run_command(["ip", "-n", ns, "neigh", "show", "to", address, "dev", link], check=False)
    return bool(states.strip()) and not any(bad in states for bad in ("INCOMPLETE", "FAILED"))
