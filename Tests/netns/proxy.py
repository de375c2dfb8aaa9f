#!/usr/bin/python3
"""The transparent proxies of the netns suite; they run in the router namespace R.

    proxy.py tcp --listen 0.0.0.0:8080 --listen [::]:8080 --origin daemon --socket PATH
    proxy.py udp --listen 0.0.0.0:5353 --listen [::]:5353 --origin kernel
    proxy.py tcp --listen 127.0.0.1:8090 --listen [::1]:8090 --origin daemon --socket PATH --mark 1

For each accepted connection (tcp) or datagram (udp) the proxy learns the original
destination (--origin daemon: the daemon's lookup socket; --origin kernel: the kernel's
SO_ORIGINAL_DST / conntrack, the baseline), logs
    client 192.0.2.2:40000 wanted 203.0.113.10:80 (via lookup)
and relays to that destination: TCP both ways until each side closes, UDP one answer per
datagram, sent back from exactly the address the datagram was sent to. When the origin is
unknown it logs `client ... lookup failed: <why>` and answers "PROXY-ERROR <why>\n".
--mark sets SO_MARK on upstream sockets, so a redirect that excludes that mark does not
loop the proxy's own connections back to it. Prints "ready" once listening.
"""

import argparse
import socket
import struct
import sys
import threading
import time

from harness import peers
from harness.endpoints import family_of, format_endpoint, parse_endpoint, socket_endpoint
from harness.origdst import LookupClient, LookupPeerGone, OriginUnknown, conntrack_original_dst, kernel_tcp_original_dst

CHUNK = 256 * 1024
IDLE_TIMEOUT = 60.0
UPSTREAM_TIMEOUT = 5.0
RESTART_PATIENCE = 5.0  # seconds a lookup waits for a restarting daemon
IP_PKTINFO = getattr(socket, "IP_PKTINFO", 8)  # Linux value; Python 3.11 lacks the name

log_lock = threading.Lock()


def log(line):
    with log_lock:
        print(line, flush=True)


class Origins:
    """Answers "where was this really going?" from the daemon or from the kernel."""

    def __init__(self, source, socket_path):
        self.source = source
        self.socket_path = socket_path

    def tcp(self, conn):
        client = socket_endpoint(conn.getpeername())
        local = socket_endpoint(conn.getsockname())
        if self.source == "daemon":
            return self._ask_daemon("tcp", client, local), "lookup"
        return self._not_self(kernel_tcp_original_dst(conn), local), "SO_ORIGINAL_DST"

    def udp(self, client, local):
        if self.source == "daemon":
            return self._ask_daemon("udp", client, local), "lookup"
        return self._not_self(conntrack_original_dst("udp", client, local), local), "conntrack"

    def _ask_daemon(self, proto, client, local):
        # A daemon killed and started again (the service suite's crash cases) leaves the socket
        # refusing, missing or closing for a moment: ask again for up to RESTART_PATIENCE seconds,
        # as a proxy meant to ride out a daemon restart does.
        deadline = time.monotonic() + RESTART_PATIENCE
        while True:
            try:
                with LookupClient(self.socket_path) as lookup:
                    return lookup.lookup(proto, client, local)
            except (ConnectionRefusedError, FileNotFoundError, ConnectionResetError, BrokenPipeError) as error:
                if time.monotonic() >= deadline:
                    raise OriginUnknown(f"lookup socket: {error}") from None
            except LookupPeerGone:
                if time.monotonic() >= deadline:
                    raise
            except OSError as error:
                raise OriginUnknown(f"lookup socket: {error}") from None
            time.sleep(0.05)

    @staticmethod
    def _not_self(original, local):
        # Without NAT the kernel answers with the socket's own address: relaying there would loop.
        if original == local:
            raise OriginUnknown("not redirected (the original destination is this proxy)")
        return original


def listening_socket(endpoint, kind):
    ip, port = parse_endpoint(endpoint)
    sock = socket.socket(family_of(ip), kind)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if sock.family == socket.AF_INET6:
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
    sock.bind((ip, port))
    if kind == socket.SOCK_STREAM:
        sock.listen(512)
    return sock


def pump(source, sink):
    peers.pump(source, sink, CHUNK)


class TcpProxy:
    def __init__(self, origins, mark):
        self.origins = origins
        self.mark = mark

    def serve(self, listener):
        while True:
            conn, _ = listener.accept()
            threading.Thread(target=self.handle, args=(conn,), daemon=True).start()

    def handle(self, conn):
        with conn:
            conn.settimeout(IDLE_TIMEOUT)
            client = format_endpoint(*socket_endpoint(conn.getpeername()))
            try:
                original, via = self.origins.tcp(conn)
            except OriginUnknown as why:
                log(f"client {client} lookup failed: {why}")
                conn.sendall(f"PROXY-ERROR {why}\n".encode())
                return
            log(f"client {client} wanted {format_endpoint(*original)} (via {via})")
            try:
                upstream = self.connect(original)
            except OSError as error:
                log(f"client {client} upstream {format_endpoint(*original)} failed: {error}")
                return
            with upstream:
                back = threading.Thread(target=pump, args=(upstream, conn), daemon=True)
                back.start()
                pump(conn, upstream)
                back.join()

    def connect(self, original):
        upstream = socket.socket(family_of(original[0]), socket.SOCK_STREAM)
        try:
            if self.mark is not None:
                upstream.setsockopt(socket.SOL_SOCKET, socket.SO_MARK, self.mark)
            upstream.settimeout(UPSTREAM_TIMEOUT)
            upstream.connect(original)
            upstream.settimeout(IDLE_TIMEOUT)
            return upstream
        except OSError:
            upstream.close()
            raise


class UdpRelay:
    def __init__(self, origins, mark):
        self.origins = origins
        self.mark = mark

    def serve(self, sock):
        if sock.family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_RECVPKTINFO, 1)
        else:
            sock.setsockopt(socket.IPPROTO_IP, IP_PKTINFO, 1)
        port = sock.getsockname()[1]
        while True:
            payload, ancillary, _, peer = sock.recvmsg(65535, socket.CMSG_SPACE(32))
            local = (self.destination_address(sock.family, ancillary), port)
            threading.Thread(target=self.handle, args=(sock, payload, socket_endpoint(peer), local),
                             daemon=True).start()

    @staticmethod
    def destination_address(family, ancillary):
        """The address the datagram was sent to (after any redirect), from its packet info."""
        for level, kind, data in ancillary:
            if family == socket.AF_INET and (level, kind) == (socket.IPPROTO_IP, IP_PKTINFO):
                return socket.inet_ntop(socket.AF_INET, data[8:12])  # in_pktinfo.ipi_addr
            if family == socket.AF_INET6 and (level, kind) == (socket.IPPROTO_IPV6, socket.IPV6_PKTINFO):
                return socket.inet_ntop(socket.AF_INET6, data[0:16])  # in6_pktinfo.ipi6_addr
        raise OriginUnknown("datagram without packet info")

    def handle(self, sock, payload, client, local):
        client_text = format_endpoint(*client)
        try:
            original, via = self.origins.udp(client, local)
        except OriginUnknown as why:
            log(f"client {client_text} lookup failed: {why}")
            self.reply(sock, f"PROXY-ERROR {why}".encode(), client, local)
            return
        log(f"client {client_text} wanted {format_endpoint(*original)} (via {via})")
        try:
            with socket.socket(family_of(original[0]), socket.SOCK_DGRAM) as upstream:
                if self.mark is not None:
                    upstream.setsockopt(socket.SOL_SOCKET, socket.SO_MARK, self.mark)
                upstream.settimeout(UPSTREAM_TIMEOUT)
                upstream.connect(original)
                upstream.send(payload)
                answer = upstream.recv(65535)
        except OSError as error:
            log(f"client {client_text} upstream {format_endpoint(*original)} failed: {error}")
            return
        self.reply(sock, answer, client, local)

    @staticmethod
    def reply(sock, payload, client, local):
        """Sends from exactly `local`, so the redirect can map the answer back to the original."""
        if sock.family == socket.AF_INET6:
            info = (socket.IPPROTO_IPV6, socket.IPV6_PKTINFO,
                    socket.inet_pton(socket.AF_INET6, local[0]) + struct.pack("=i", 0))
        else:
            info = (socket.IPPROTO_IP, IP_PKTINFO,
                    struct.pack("=i", 0) + socket.inet_pton(socket.AF_INET, local[0]) + bytes(4))
        try:
            sock.sendmsg([payload], [info], 0, client)
        except OSError as error:
            log(f"client {format_endpoint(*client)} reply failed: {error}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("kind", choices=("tcp", "udp"))
    parser.add_argument("--listen", action="append", required=True, metavar="ENDPOINT")
    parser.add_argument("--origin", choices=("daemon", "kernel"), required=True)
    parser.add_argument("--socket", help="the daemon's lookup socket (--origin daemon)")
    parser.add_argument("--mark", type=lambda text: int(text, 0), help="SO_MARK for upstream sockets")
    args = parser.parse_args()
    if args.origin == "daemon" and not args.socket:
        parser.error("--origin daemon needs --socket")

    origins = Origins(args.origin, args.socket)
    if args.kind == "tcp":
        server, kind = TcpProxy(origins, args.mark), socket.SOCK_STREAM
    else:
        server, kind = UdpRelay(origins, args.mark), socket.SOCK_DGRAM
    sockets = [listening_socket(endpoint, kind) for endpoint in args.listen]
    peers.serve_until_killed([(server.serve, (sock,)) for sock in sockets])


if __name__ == "__main__":
    sys.exit(main())
