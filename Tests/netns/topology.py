"""Three throwaway network namespaces joined by two veth pairs (drawn in runner.py).

Only documentation address ranges are used (RFC 5737, RFC 3849). Everything lives inside
the namespaces, so deleting them removes the links, addresses, routes and rules with them;
the host's own network configuration is never touched.
"""

import time

from processes import CommandFailed, run_command

CLIENT_V4, CLIENT_V6 = "192.0.2.2", "2001:db8:1::2"
ROUTER_CLIENT_SIDE_V4, ROUTER_CLIENT_SIDE_V6 = "192.0.2.1", "2001:db8:1::1"
ROUTER_SERVER_SIDE_V4, ROUTER_SERVER_SIDE_V6 = "198.51.100.1", "2001:db8:2::1"
SERVER_V4, SERVER_V6 = "198.51.100.2", "2001:db8:2::2"
REMOTE_V4, REMOTE_V6 = "203.0.113.10", "2001:db8:3::10"  # what the client dials; on S's lo


class Topology:
    def __init__(self, tag):
        """`tag` is unique per run (nfqr-<pid>); veth names are kept within 15 characters."""
        self.client, self.router, self.server = f"{tag}-c", f"{tag}-r", f"{tag}-s"
        short = "nfqr" + "".join(ch for ch in tag if ch.isdigit())[-7:]
        self.client_link, self.router_client_link = f"{short}c", f"{short}rc"
        self.router_server_link, self.server_link = f"{short}rs", f"{short}s"

    @property
    def namespaces(self):
        return [self.client, self.router, self.server]

    @property
    def links(self):
        return [self.client_link, self.router_client_link, self.router_server_link, self.server_link]

    def create(self):
        for ns in self.namespaces:
            run_command(["ip", "netns", "add", ns])
            # No duplicate address detection: addresses are usable at once, link-local ones too.
            set_sysctl(ns, "net/ipv6/conf/all/accept_dad", 0)
            set_sysctl(ns, "net/ipv6/conf/default/accept_dad", 0)
            run_command(["ip", "-n", ns, "link", "set", "lo", "up"])
        # Each pair is created inside R with its peer born in C or S: never in the host's namespace.
        run_command(["ip", "-n", self.router, "link", "add", self.router_client_link, "type", "veth",
                     "peer", "name", self.client_link, "netns", self.client])
        run_command(["ip", "-n", self.router, "link", "add", self.router_server_link, "type", "veth",
                     "peer", "name", self.server_link, "netns", self.server])

        self._address(self.client, self.client_link, f"{CLIENT_V4}/24", f"{CLIENT_V6}/64")
        self._address(self.router, self.router_client_link,
                      f"{ROUTER_CLIENT_SIDE_V4}/24", f"{ROUTER_CLIENT_SIDE_V6}/64")
        self._address(self.router, self.router_server_link,
                      f"{ROUTER_SERVER_SIDE_V4}/24", f"{ROUTER_SERVER_SIDE_V6}/64")
        self._address(self.server, self.server_link, f"{SERVER_V4}/24", f"{SERVER_V6}/64")
        self._address(self.server, "lo", f"{REMOTE_V4}/32", f"{REMOTE_V6}/128")

        set_sysctl(self.router, "net/ipv4/ip_forward", 1)
        set_sysctl(self.router, "net/ipv6/conf/all/forwarding", 1)

        self._route(self.client, "default", ROUTER_CLIENT_SIDE_V4)
        self._route(self.client, "default", ROUTER_CLIENT_SIDE_V6, v6=True)
        self._route(self.router, f"{REMOTE_V4}/32", SERVER_V4)
        self._route(self.router, f"{REMOTE_V6}/128", SERVER_V6, v6=True)
        self._route(self.server, "192.0.2.0/24", ROUTER_SERVER_SIDE_V4)
        self._route(self.server, "2001:db8:1::/64", ROUTER_SERVER_SIDE_V6, v6=True)

    def destroy(self):
        """Deletes whichever of our namespaces exist (their links and rules go with them)."""
        for ns in self.namespaces:
            if ns in existing_namespaces():
                run_command(["ip", "netns", "del", ns], check=False)

    def wait_for_neighbours(self, timeout=10.0):
        """Until every link peer is resolved (not INCOMPLETE/FAILED) in both families."""
        pairs = [(self.client, self.client_link, ROUTER_CLIENT_SIDE_V4, ROUTER_CLIENT_SIDE_V6),
                 (self.router, self.router_client_link, CLIENT_V4, CLIENT_V6),
                 (self.router, self.router_server_link, SERVER_V4, SERVER_V6),
                 (self.server, self.server_link, ROUTER_SERVER_SIDE_V4, ROUTER_SERVER_SIDE_V6)]
        deadline = time.monotonic() + timeout
        missing = []
        while time.monotonic() < deadline:
            missing = [f"{peer} on {link} in {ns}" for ns, link, v4, v6 in pairs for peer in (v4, v6)
                       if not neighbour_resolved(ns, link, peer)]
            if not missing:
                return
            time.sleep(0.1)
        raise CommandFailed(f"neighbours not resolved within {timeout} s: {', '.join(missing)}")

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
