#!/usr/bin/python3
"""The "remote" HTTP origin of the proxies suite; it runs in the server namespace S.

    origin.py --port 7001 --port 7002 ...        (each on 0.0.0.0 and ::)

Answers every request with 200 and the one-line body
    SERVER <local-endpoint> PEER <peer-endpoint> VIA <Via header or ->
so a client learns which address:port its connection really reached, who connected
(the proxy in R, not the client itself) and whether an HTTP proxy added a Via header.
Two more, for transfers verified end to end:
    GET /bytes/<n>      n pseudo-random bytes, their SHA-256 in the X-Sha256 header
    POST /sha256        the SHA-256 of the request body (Content-Length, at most 64 MiB)
The request line and headers are read up to the blank line; a request that does not end
its headers within 8 KiB or 20 s is dropped. Prints "ready" once every port is bound.
"""

import argparse
import hashlib
import random
import socket
import sys

from harness.peers import accept_forever, serve_until_killed, tcp_listener
from harness.endpoints import format_endpoint, socket_endpoint

HEADER_LIMIT = 8192
IDLE_TIMEOUT = 20.0
BODY_LIMIT = 64 << 20


def read_head(conn):
    """The request line and headers, and whatever of the body came with them."""
    head = b""
    while b"\r\n\r\n" not in head:
        data = conn.recv(65536)
        if not data or len(head) > HEADER_LIMIT:
            raise ConnectionError("request without a complete header")
        head += data
    head, rest = head.split(b"\r\n\r\n", 1)
    return head.decode("latin-1"), rest


def respond(conn, body, extra=""):
    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nCache-Control: no-store\r\n"
                 + f"{extra}Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode() + body)


def transfer(conn, method, path, head, rest):
    """The two transfer requests; False for any other."""
    if method == "GET" and path.startswith("/bytes/") and path[7:].isdigit() and int(path[7:]) <= BODY_LIMIT:
        data = random.Random(path).randbytes(int(path[7:]))
        respond(conn, data, f"X-Sha256: {hashlib.sha256(data).hexdigest()}\r\n")
        return True
    if method == "POST" and path == "/sha256":
        length = int(header(head, "content-length") or "0")
        if length > BODY_LIMIT:
            raise ConnectionError("body too large")
        digest = hashlib.sha256(rest)
        received = len(rest)
        while received < length:
            data = conn.recv(min(1 << 20, length - received))
            if not data:
                raise ConnectionError("body cut short")
            digest.update(data)
            received += len(data)
        respond(conn, (digest.hexdigest() + "\n").encode())
        return True
    return False


def header(head, name):
    for line in head.split("\r\n")[1:]:
        key, sep, value = line.partition(":")
        if sep and key.strip().lower() == name:
            return value.strip()
    return None


def serve(conn):
    with conn:
        conn.settimeout(IDLE_TIMEOUT)
        try:
            head, rest = read_head(conn)
            words = head.split("\r\n", 1)[0].split()
            if len(words) >= 2 and transfer(conn, words[0], words[1], head, rest):
                return
            local = format_endpoint(*socket_endpoint(conn.getsockname()))
            peer = format_endpoint(*socket_endpoint(conn.getpeername()))
            body = f"SERVER {local} PEER {peer} VIA {header(head, 'via') or '-'}\n".encode()
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nCache-Control: no-store\r\n"
                         + f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode() + body)
        except OSError as error:
            print(f"connection failed: {error}", flush=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, action="append", required=True)
    args = parser.parse_args()
    sockets = [tcp_listener(family, port) for port in args.port for family in (socket.AF_INET, socket.AF_INET6)]
    serve_until_killed([(accept_forever, (sock, serve)) for sock in sockets])


if __name__ == "__main__":
    sys.exit(main())
