#!/usr/bin/python3
"""A small SOCKS5 server (RFC 1928: no authentication, CONNECT only): redsocks' upstream.

    socks5.py --listen 127.0.0.1:1080

It runs in the router namespace R next to redsocks. For each CONNECT it logs
    connect 203.0.113.10:7001 for 127.0.0.1:40000 ok
which tells the tests what destination redsocks asked for, i.e. what redsocks learned
from SO_ORIGINAL_DST. Then it relays both ways until each side closes. Prints "ready"
once listening.
"""

import argparse
import socket
import struct
import sys
import threading

from harness import peers
from harness.endpoints import family_of, format_endpoint, parse_endpoint, socket_endpoint

VERSION = 5
NO_AUTHENTICATION, NO_ACCEPTABLE_METHOD = 0, 0xFF
CONNECT = 1
IPV4, DOMAIN, IPV6 = 1, 3, 4
SUCCEEDED, GENERAL_FAILURE, COMMAND_NOT_SUPPORTED, ADDRESS_NOT_SUPPORTED = 0, 1, 7, 8
CONNECT_TIMEOUT = 5.0
IDLE_TIMEOUT = 60.0
CHUNK = 64 * 1024

log_lock = threading.Lock()


def log(line):
    with log_lock:
        print(line, flush=True)


class Refused(Exception):
    def __init__(self, reply_code, why):
        super().__init__(why)
        self.reply_code = reply_code


def receive_exactly(conn, size):
    data = b""
    while len(data) < size:
        chunk = conn.recv(size - len(data))
        if not chunk:
            raise ConnectionError("client closed during the SOCKS handshake")
        data += chunk
    return data


def read_request(conn):
    """Negotiates "no authentication" and returns the CONNECT destination as (host, port)."""
    version, method_count = receive_exactly(conn, 2)
    methods = receive_exactly(conn, method_count)
    if version != VERSION or NO_AUTHENTICATION not in methods:
        conn.sendall(bytes([VERSION, NO_ACCEPTABLE_METHOD]))
        raise ConnectionError("client offers no acceptable SOCKS5 method")
    conn.sendall(bytes([VERSION, NO_AUTHENTICATION]))
    version, command, _, address_type = receive_exactly(conn, 4)
    if address_type == IPV4:
        host = socket.inet_ntop(socket.AF_INET, receive_exactly(conn, 4))
    elif address_type == IPV6:
        host = socket.inet_ntop(socket.AF_INET6, receive_exactly(conn, 16))
    elif address_type == DOMAIN:
        host = receive_exactly(conn, receive_exactly(conn, 1)[0]).decode("ascii", "replace")
    else:
        raise Refused(ADDRESS_NOT_SUPPORTED, f"address type {address_type}")
    port, = struct.unpack("!H", receive_exactly(conn, 2))
    if version != VERSION or command != CONNECT:
        raise Refused(COMMAND_NOT_SUPPORTED, f"command {command}")
    return host, port


def reply(conn, code, bound=("0.0.0.0", 0)):
    family = family_of(bound[0])
    kind = IPV6 if family == socket.AF_INET6 else IPV4
    conn.sendall(bytes([VERSION, code, 0, kind]) + socket.inet_pton(family, bound[0])
                 + struct.pack("!H", bound[1]))


def pump(source, sink):
    peers.pump(source, sink, CHUNK)


def handle(conn):
    with conn:
        conn.settimeout(IDLE_TIMEOUT)
        client = format_endpoint(*socket_endpoint(conn.getpeername()))
        try:
            host, port = read_request(conn)
        except Refused as refusal:
            log(f"request from {client} refused: {refusal}")
            reply(conn, refusal.reply_code)
            return
        except (OSError, ValueError) as error:
            log(f"request from {client} failed: {error}")
            return
        destination = format_endpoint(host, port)
        try:
            upstream = socket.create_connection((host, port), timeout=CONNECT_TIMEOUT)
        except OSError as error:
            log(f"connect {destination} for {client} failed: {error}")
            reply(conn, GENERAL_FAILURE)
            return
        log(f"connect {destination} for {client} ok")
        with upstream:
            upstream.settimeout(IDLE_TIMEOUT)
            reply(conn, SUCCEEDED, socket_endpoint(upstream.getsockname()))
            back = threading.Thread(target=pump, args=(upstream, conn), daemon=True)
            back.start()
            pump(conn, upstream)
            back.join()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--listen", required=True, metavar="ENDPOINT")
    args = parser.parse_args()
    ip, port = parse_endpoint(args.listen)
    listener = socket.socket(family_of(ip), socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind((ip, port))
    listener.listen(256)
    print("ready", flush=True)
    while True:
        conn, _ = listener.accept()
        threading.Thread(target=handle, args=(conn,), daemon=True).start()


if __name__ == "__main__":
    sys.exit(main())
