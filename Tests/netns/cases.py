"""The tests of the netns suite. Each takes the Stage (stage.py); a failure raises TestFailure.

A test may return a short note (a timing) that the runner prints after PASS.
"""

import random
import re
import time

from harness.endpoints import format_endpoint, parse_endpoint
from harness.checks import expect, expect_equal
from lookup_cases import CASES as LOOKUP_CASES
from harness.origdst import LookupClient
from harness.processes import run_command
from harness.redirectors import (LOCAL_PORT, TCP_PROXY_PORT, UDP_PORT, UDP_RELAY_PORT, LOCAL_PROXY_PORT, UDP_REFUSED_PORT,
                         UDP_CONNECTED_PORT, UDP_CLOSED_PORT, ruleset)
from harness.topology import (REMOTE_V4, REMOTE_V6, ROUTER_CLIENT_SIDE_V4, ROUTER_CLIENT_SIDE_V6,
                      ROUTER_SERVER_SIDE_V4, ROUTER_SERVER_SIDE_V6, FAR_CLIENT_V4, FAR_CLIENT_V6, NARROW_MTU)

MiB = 1024 * 1024


def remote(v6):
    return REMOTE_V6 if v6 else REMOTE_V4


def expect_reached_through_router(reply, target, v6):
    """The server saw `target` as its own address and R (the proxy's upstream) as its peer."""
    words = reply.split()
    router = ROUTER_SERVER_SIDE_V6 if v6 else ROUTER_SERVER_SIDE_V4
    peer = parse_endpoint(words[3])[0] if len(words) == 4 else None
    expect(words[:3] == ["SERVER", target, "PEER"] and peer == router,
           f"SERVER {target} PEER {format_endpoint(router, '<port>')}", repr(reply))


def expect_proxy_logged(env, proxy, client, target, proto):
    expect_equal(f"{proxy} log line", f"client {client} wanted {target} (via {env.via(proto)})",
                 env.proxy_line(proxy, client))


# --- redirected TCP, UDP and local connections ------------------------------------------------

def tcp_redirect(v6, port):
    def test(env):
        target = format_endpoint(remote(v6), port)
        answer = env.client("tcp-id", target)
        expect_reached_through_router(answer["reply"], target, v6)
        expect_proxy_logged(env, "tcp-proxy", answer["local"], target, "tcp")
    return test


def tcp_port_reused(v6):
    """One client port to remote:80, reset, then at once to remote:443: the same proxy port, so
    the same reply tuple as a connection whose entry is still closing. Both are redirected and
    answered, as with the kernel's REDIRECT (whose NAT may show the proxy another client port,
    as it does in kernel-nat mode: the proxy's log is matched by the client's address)."""
    def test(env):
        first, second = format_endpoint(remote(v6), 80), format_endpoint(remote(v6), 443)
        answers = env.client("tcp-id-port-reused", first, second)["answers"]
        expect_equal("the second connection's local endpoint", answers[0]["local"], answers[1]["local"])
        for answer, target in zip(answers, (first, second)):
            expect_reached_through_router(answer["reply"], target, v6)
        client_ip = answers[0]["local"].rsplit(":", 1)[0]
        wanted = re.compile(rf"client {re.escape(client_ip)}:\d+ wanted {re.escape(second)} \(via {env.via('tcp')}\)")
        deadline = time.monotonic() + 3
        while not any(wanted.fullmatch(line) for line in env.proxies["tcp-proxy"].log().splitlines()):
            expect(time.monotonic() < deadline, f"a tcp-proxy line: client {client_ip}:<port> wanted {second}",
                   env.proxies["tcp-proxy"].log()[-400:])
            time.sleep(0.05)
    return test


def udp_redirect(v6):
    def test(env):
        target = format_endpoint(remote(v6), UDP_PORT)
        nonce = f"ping-{random.getrandbits(32):08x}"
        answer = env.client("udp-echo", target, nonce)
        # The client only ever sees the original destination as the source of the answer.
        expect_equal("source of the answer", target, answer["reply_from"])
        expect_equal("answer", f"FROM {target} {nonce}", answer["reply"])
        expect_proxy_logged(env, "udp-relay", answer["local"], target, "udp")
    return test


def local_redirect(v6):
    def test(env):
        target = format_endpoint(remote(v6), LOCAL_PORT)
        before = env.wanted_count("local-proxy")
        answer = env.client("tcp-id", target, ns=env.topology.router)
        expect_reached_through_router(answer["reply"], target, v6)
        expect_proxy_logged(env, "local-proxy", answer["local"], target, "tcp")
        # A loop would show the proxy's own marked upstream connection redirected back to it.
        expect_equal("connections the local proxy accepted", 1, env.wanted_count("local-proxy") - before)
    return test


# --- volume --------------------------------------------------------------------------------------

def transfer(v6, size=64 * MiB, local=False):
    """Through the tcp-proxy from C, or (`local`) from a program in R through the local proxy
    over loopback, whose 65536-byte MTU makes segments larger than NFQUEUE copies unless the
    handshake's MSS is clamped."""
    def test(env):
        target = format_endpoint(remote(v6), LOCAL_PORT if local else 80)
        ns = env.topology.router if local else None
        up = env.client("tcp-sink", target, size, ns=ns, timeout=240)
        expect_equal("server's sha256 of the upload", f"SHA256 {up['sha256']}", up["answer"])
        down = env.client("tcp-source", target, size, ns=ns, timeout=240)
        expect_equal("bytes downloaded", size, down["received"])
        expect_equal("sha256 of the download", down["answer"], f"SHA256 {down['sha256']}")
        expect_proxy_logged(env, "local-proxy" if local else "tcp-proxy", up["local"], target, "tcp")
        rate = lambda result: size * 8 / result["seconds"] / 1e6
        return (f"{size // MiB} MiB up {up['seconds']} s ({rate(up):.0f} Mbit/s), "
                f"down {down['seconds']} s ({rate(down):.0f} Mbit/s)")
    return test


# --- related traffic: ICMP errors about redirected flows -----------------------------------------

def narrow_path_download(v6, size=8 * MiB):
    """The far client F downloads through the proxy over A-B's 1280-byte link. The proxy's
    1500-byte segments leave R from the original destination; B answers them with
    "fragmentation needed" / "packet too big" to that address, routed back through R. Only if
    R maps the error to the proxy's connection (the kernel's NAT for RELATED traffic, or the
    daemon's translation) does the proxy's kernel lower its path MTU; otherwise the download
    stalls until the client's 20-second receive timeout."""
    def test(env):
        target = format_endpoint(remote(v6), 80)
        far = FAR_CLIENT_V6 if v6 else FAR_CLIENT_V4
        down = env.client("tcp-source", target, size, ns=env.topology.far_client, timeout=60)
        expect_equal("bytes downloaded", size, down["received"])
        expect_equal("sha256 of the download", down["answer"], f"SHA256 {down['sha256']}")
        expect_proxy_logged(env, "tcp-proxy", down["local"], target, "tcp")
        route = run_command(["ip", *(["-6"] if v6 else []), "route", "get", far], ns=env.topology.router)
        expect(f"mtu {NARROW_MTU}" in route, f"R's route to {far} with the learned path MTU {NARROW_MTU}",
               route.strip())
        return f"{size // MiB} MiB in {down['seconds']} s, R's path MTU to F {NARROW_MTU}"
    return test


def udp_port_unreachable(v6):
    """The far client sends one datagram to remote:54 and closes its socket; udp_connected.py
    in R answers from a socket connected to the client, then sends again. F's port unreachable
    about that datagram (as F saw it: from the original destination) must reach the connected
    socket as ECONNREFUSED, as it does behind the kernel's REDIRECT."""
    def test(env):
        target = format_endpoint(remote(v6), UDP_REFUSED_PORT)
        nonce = f"ping-{random.getrandbits(32):08x}"
        answer = env.client("udp-echo", target, nonce, ns=env.topology.far_client)
        expect_equal("source of the answer", target, answer["reply_from"])
        expect_equal("answer", f"HELLO {nonce}", answer["reply"])
        expect_equal("udp-connected log line", f"client {answer['local']} refused",
                     env.proxy_line("udp-connected", answer["local"], timeout=10.0))
    return test


def udp_no_proxy(v6):
    """The reply direction: nothing listens on the redirect target, so R's own stack answers the
    client's datagram with a port unreachable quoting client -> proxy address. The client's
    connected socket gets ECONNREFUSED only if the error reaches it as one about client ->
    original destination, from the original destination."""
    def test(env):
        answer = env.client("udp-refused", format_endpoint(remote(v6), UDP_CLOSED_PORT))
        expect_equal("the connected client socket's receive", "refused", answer["result"])
    return test


def concurrent_connections(env, count=100, size=128 * 1024):
    targets = ",".join(format_endpoint(remote(v6), port) for v6 in (False, True) for port in (80, 443))
    answer = env.client("tcp-many", targets, count, size, timeout=90)
    expect(answer["succeeded"] == count,
           f"all {count} connections (open at once) to carry correct data",
           f"{answer['succeeded']} did; {answer['hung']} hung; first failures: {answer['failures']}")
    return f"{count} connections in {answer['seconds']} s"


# --- a stateful firewall in R ------------------------------------------------------------------

def firewall_rules(v6):
    # Neighbour discovery only: ICMP errors must come in as RELATED, or be dropped.
    icmp = ("-A NFQR_FIREWALL -p ipv6-icmp --icmpv6-type neighbour-solicitation -j ACCEPT\n"
            "-A NFQR_FIREWALL -p ipv6-icmp --icmpv6-type neighbour-advertisement -j ACCEPT\n") if v6 else ""
    return (
        "*filter\n"
        ":INPUT DROP [0:0]\n"
        ":NFQR_FIREWALL - [0:0]\n"
        "-A INPUT -j NFQR_FIREWALL\n"
        "-A NFQR_FIREWALL -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT\n"
        "-A NFQR_FIREWALL -m conntrack --ctstate INVALID -j DROP\n"
        f"{icmp}"
        f"-A NFQR_FIREWALL -p tcp -m multiport --dports {TCP_PROXY_PORT},{LOCAL_PROXY_PORT} -j ACCEPT\n"
        f"-A NFQR_FIREWALL -p udp -m multiport --dports {UDP_RELAY_PORT},{UDP_CONNECTED_PORT} -j ACCEPT\n"
        "COMMIT\n")


def remove_firewall(ns):
    for tool in ("iptables", "ip6tables"):
        run_command([tool, "-P", "INPUT", "ACCEPT"], ns=ns, check=False)
        run_command([tool, "-D", "INPUT", "-j", "NFQR_FIREWALL"], ns=ns, check=False)
        run_command([tool, "-F", "NFQR_FIREWALL"], ns=ns, check=False)
        run_command([tool, "-X", "NFQR_FIREWALL"], ns=ns, check=False)


def stateful_firewall(env):
    router = env.topology.router
    closed_port = format_endpoint(ROUTER_CLIENT_SIDE_V4, 7)
    expect_equal("probe of a closed port without the firewall", "refused",
                 env.client("tcp-probe", closed_port, 1.5)["result"])
    for restore, v6 in (("iptables-restore", False), ("ip6tables-restore", True)):
        run_command([restore, "--noflush"], ns=router, input=firewall_rules(v6))
    try:
        expect_equal("probe of a closed port behind the firewall (policy DROP)", "timeout",
                     env.client("tcp-probe", closed_port, 1.5)["result"])
        for v6 in (False, True):
            tcp_redirect(v6, 80)(env)
            tcp_redirect(v6, 443)(env)
            udp_redirect(v6)(env)
            local_redirect(v6)(env)
            # Related traffic: the errors reach the proxies as RELATED to the kernel's entry of
            # the (rewritten) flow, through policy DROP. The path MTU R learned before is forgotten first.
            run_command(["ip", *(["-6"] if v6 else []), "route", "flush", "cache"], ns=router)
            narrow_path_download(v6, size=2 * MiB)(env)
            udp_port_unreachable(v6)(env)
    finally:
        remove_firewall(router)


# --- the lookup protocol, daemon only ----------------------------------------------------------

def not_redirected(v6):
    def test(env):
        proxy_address = ROUTER_CLIENT_SIDE_V6 if v6 else ROUTER_CLIENT_SIDE_V4
        answer = env.client("tcp-id", format_endpoint(proxy_address, TCP_PROXY_PORT))
        expect_equal("proxy's answer to a connection made to it directly",
                     "PROXY-ERROR ERR NOTREDIRECTED", answer["reply"])
        expect_equal("tcp-proxy log line", f"client {answer['local']} lookup failed: ERR NOTREDIRECTED",
                     env.proxy_line("tcp-proxy", answer["local"]))
    return test


def lookup_not_found(env):
    requests = [f"LOOKUP tcp 192.0.2.99 40000 {ROUTER_CLIENT_SIDE_V4} {TCP_PROXY_PORT}",
                f"LOOKUP udp 192.0.2.99 40000 {ROUTER_CLIENT_SIDE_V4} {UDP_RELAY_PORT}",
                f"LOOKUP tcp 2001:db8:1::99 40000 {ROUTER_CLIENT_SIDE_V6} {TCP_PROXY_PORT}"]
    with LookupClient(env.redirect.socket_path) as lookup:
        for request in requests:
            expect_equal(f"answer to {request!r}", "ERR NOTFOUND", lookup.request(request))


def lookup_bad_requests(env):
    malformed = ["HELLO", "LOOKUP tcp", "LOOKUP sctp 192.0.2.2 40000 192.0.2.1 8080",
                 "LOOKUP tcp 192.0.2.2 99999 192.0.2.1 8080", "LOOKUP tcp not-an-ip 40000 192.0.2.1 8080"]
    for request in malformed:
        with LookupClient(env.redirect.socket_path) as lookup:
            answer = lookup.request(request)
            expect(answer.startswith("ERR BADREQUEST "), f"ERR BADREQUEST <why> for {request!r}", repr(answer))


def lookup_pipelined(env):
    """Many requests on one connection, written at once, are answered in order."""
    found_none = f"LOOKUP tcp 192.0.2.99 40000 {ROUTER_CLIENT_SIDE_V4} {TCP_PROXY_PORT}"
    with LookupClient(env.redirect.socket_path) as lookup:
        lookup.sock.sendall(f"{found_none}\nNONSENSE\n{found_none}\n".encode())
        answers = [lookup.read_line() for _ in range(3)]
    expect(answers[0] == "ERR NOTFOUND" and answers[1].startswith("ERR BADREQUEST ")
           and answers[2] == "ERR NOTFOUND",
           "['ERR NOTFOUND', 'ERR BADREQUEST <why>', 'ERR NOTFOUND']", answers)


def daemon_stops_cleanly(env):
    """SIGTERM: the daemon exits 0 and takes every rule it installed with it."""
    status = env.redirect.stop()
    expect_equal("nfq-redirectd exit status after SIGTERM", 0, status)
    left = sorted(set(ruleset(env.topology.router)) - set(env.rules_before_redirect))
    expect_equal("rules left in R by the daemon", [], left)


# --- the suite, in order -------------------------------------------------------------------------
# (name, test, timeout in seconds, modes it applies to)
BOTH, DAEMON = ("daemon", "kernel"), ("daemon",)
CASES = [
    ("tcp ipv4 remote:80 redirected to the proxy, relayed to S", tcp_redirect(False, 80), 30, BOTH),
    ("tcp ipv4 remote:443 redirected to the proxy, relayed to S", tcp_redirect(False, 443), 30, BOTH),
    ("tcp ipv6 remote:80 redirected to the proxy, relayed to S", tcp_redirect(True, 80), 30, BOTH),
    ("tcp ipv6 remote:443 redirected to the proxy, relayed to S", tcp_redirect(True, 443), 30, BOTH),
    ("tcp ipv4: one client port to :80, then at once to :443 (the same reply tuple), both redirected",
     tcp_port_reused(False), 60, BOTH),
    ("tcp ipv6: one client port to :80, then at once to :443 (the same reply tuple), both redirected",
     tcp_port_reused(True), 60, BOTH),
    ("udp ipv4 remote:53 relayed, answer from the original address", udp_redirect(False), 30, BOTH),
    ("udp ipv6 remote:53 relayed, answer from the original address", udp_redirect(True), 30, BOTH),
    ("local ipv4 R -> remote:9000 via 127.0.0.1:8090, marked upstream, no loop", local_redirect(False), 30, BOTH),
    ("local ipv6 R -> remote:9000 via [::1]:8090, marked upstream, no loop", local_redirect(True), 30, BOTH),
    ("lookup: direct connection to the proxy -> ERR NOTREDIRECTED (ipv4)", not_redirected(False), 30, DAEMON),
    ("lookup: direct connection to the proxy -> ERR NOTREDIRECTED (ipv6)", not_redirected(True), 30, DAEMON),
    ("lookup: made-up tuples -> ERR NOTFOUND", lookup_not_found, 30, DAEMON),
    ("lookup: malformed lines -> ERR BADREQUEST", lookup_bad_requests, 30, DAEMON),
    ("lookup: pipelined requests answered in order", lookup_pipelined, 30, DAEMON),
    ("related ipv4: 8 MiB download over a 1280-byte link, frag needed reaches the proxy, sha256 matches",
     narrow_path_download(False), 90, BOTH),
    ("related ipv6: 8 MiB download over a 1280-byte link, packet too big reaches the proxy, sha256 matches",
     narrow_path_download(True), 90, BOTH),
    ("related ipv4: the client's port unreachable reaches the UDP proxy's connected socket (ECONNREFUSED)",
     udp_port_unreachable(False), 30, BOTH),
    ("related ipv6: the client's port unreachable reaches the UDP proxy's connected socket (ECONNREFUSED)",
     udp_port_unreachable(True), 30, BOTH),
    ("related ipv4: R's port unreachable about a client's datagram reaches the client's connected socket",
     udp_no_proxy(False), 30, BOTH),
    ("related ipv6: R's port unreachable about a client's datagram reaches the client's connected socket",
     udp_no_proxy(True), 30, BOTH),
    ("100 concurrent connections, v4+v6, :80+:443, correct data", concurrent_connections, 120, BOTH),
    ("transfer ipv4: 64 MiB each way, sha256 matches", transfer(False), 520, BOTH),
    ("transfer ipv6: 64 MiB each way, sha256 matches", transfer(True), 520, BOTH),
    ("local transfer ipv4 over loopback: 16 MiB each way, sha256 matches", transfer(False, 16 * MiB, local=True), 240, BOTH),
    ("local transfer ipv6 over loopback: 16 MiB each way, sha256 matches", transfer(True, 16 * MiB, local=True), 240, BOTH),
    ("stateful firewall in R (policy DROP, ct state): all redirected flows pass, ICMP errors as RELATED",
     stateful_firewall, 120, BOTH),
    *LOOKUP_CASES,
    ("daemon stops on SIGTERM with status 0 and removes its rules", daemon_stops_cleanly, 30, DAEMON),
]
