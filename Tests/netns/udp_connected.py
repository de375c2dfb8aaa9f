#!/usr/bin/python3
"""A UDP proxy that answers each client from its own connected socket, in the router namespace R.

For every datagram on a --listen socket it opens a socket bound to exactly the address the
datagram reached (the redirect target) and connected to the client, answers "HELLO <payload>"
from it, and after --wait seconds (the client has closed its socket by then) sends "AGAIN": the
client's host answers that with an ICMP/ICMPv6 port unreachable about the reply as the client
saw it (from the original destination). Behind the kernel's REDIRECT, and behind nfq-redirect's
related-traffic translation, that error reaches this connected socket, whose next receive fails
with ECONNREFUSED. Logs one line per client:
    client <endpoint> refused           (ECONNREFUSED, as it should be)
    client <endpoint> no error: <what>  (the error never arrived, or another one did)
Prints "ready" once every socket is bound.
"""

import argparse
import errno
import socket
import sys
import threading
import time

from harness.peers import serve_until_killed
from harness.endpoints import format_endpoint, parse_endpoint, socket_endpoint

IP_PKTINFO = getattr(socket, "IP_PKTINFO", 8)


def log(line):
    print(line, flush=True)


def local_address(family, ancillary):
    for level, kind, data in ancillary:
        if family == socket.AF_INET and (level, kind) == (socket.IPPROTO_IP, IP_PKTINFO):
            return socket.inet_ntop(socket.AF_INET, data[8:12])
        if family == socket.AF_INET6 and (level, kind) == (socket.IPPROTO_IPV6, socket.IPV6_PKTINFO):
            return socket.inet_ntop(socket.AF_INET6, data[0:16])
    raise OSError("datagram without packet info")


def answer(family, local, client, payload, wait):
    client_text = format_endpoint(*client)
    try:
        with socket.socket(family, socket.SOCK_DGRAM) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(local)
            sock.connect(client)
            sock.settimeout(wait + 5.0)
            sock.send(b"HELLO " + payload)
            time.sleep(wait)
            sock.send(b"AGAIN")
            try:
                data = sock.recv(65535)
                log(f"client {client_text} no error: received {data[:40]!r}")
            except socket.timeout:
                log(f"client {client_text} no error: timed out")
    except OSError as error:
        if error.errno == errno.ECONNREFUSED:
            log(f"client {client_text} refused")
        else:
            log(f"client {client_text} no error: {error!r}")


def serve(sock, wait):
    family = sock.family
    if family == socket.AF_INET6:
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_RECVPKTINFO, 1)
    else:
        sock.setsockopt(socket.IPPROTO_IP, IP_PKTINFO, 1)
    port = sock.getsockname()[1]
    while True:
        payload, ancillary, _, peer = sock.recvmsg(65535, socket.CMSG_SPACE(32))
        local = (local_address(family, ancillary), port)
        threading.Thread(target=answer, args=(family, local, socket_endpoint(peer), payload, wait),
                         daemon=True).start()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--listen", action="append", required=True, metavar="ENDPOINT")
    parser.add_argument("--wait", type=float, default=1.0)
    args = parser.parse_args()
    sockets = []
    for text in args.listen:
        ip, port = parse_endpoint(text)
        family = socket.AF_INET6 if ":" in ip else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_DGRAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.bind((ip, port))
        sockets.append(sock)
    serve_until_killed([(serve, (sock, args.wait)) for sock in sockets])


if __name__ == "__main__":
    sys.exit(main())
