#!/usr/bin/python3
"""The "remote" servers of the netns suite; they run in the server namespace S.

TCP (every --tcp-port, on 0.0.0.0 and ::): one command line per connection, then
    ID          -> "SERVER <local-endpoint> PEER <peer-endpoint>\n"   (who reached whom)
    SINK <n>    -> reads n bytes, answers "SHA256 <hex>\n"             (upload check)
    SOURCE <n>  -> sends n random bytes, then "SHA256 <hex>\n"         (download check)
    ECHO        -> "ECHO\n", then echoes every byte until the peer closes (long-lived flows)
UDP (every --udp endpoint, bound to exactly that address): each datagram is echoed
as "FROM <local-endpoint> <payload>", so the sender learns which address it reached.

Prints "ready" once every socket is bound.
"""

import argparse
import hashlib
import os
import socket
import sys

from harness.peers import accept_forever, serve_until_killed, tcp_listener
from harness.endpoints import family_of, format_endpoint, parse_endpoint, socket_endpoint

CHUNK = 256 * 1024
MAX_TRANSFER = 1 << 31
IDLE_TIMEOUT = 60.0


def read_command(conn):
    line = b""
    while not line.endswith(b"\n"):
        data = conn.recv(1)
        if not data or len(line) > 200:
            raise ConnectionError("no command line")
        line += data
    return line.decode("ascii", "replace").split()


def serve_sink(conn, size):
    digest = hashlib.sha256()
    remaining = size
    while remaining:
        data = conn.recv(min(CHUNK, remaining))
        if not data:
            raise ConnectionError(f"peer closed with {remaining} bytes still to come")
        digest.update(data)
        remaining -= len(data)
    conn.sendall(f"SHA256 {digest.hexdigest()}\n".encode())


def serve_source(conn, size):
    digest = hashlib.sha256()
    remaining = size
    while remaining:
        data = os.urandom(min(CHUNK, remaining))
        digest.update(data)
        conn.sendall(data)
        remaining -= len(data)
    conn.sendall(f"SHA256 {digest.hexdigest()}\n".encode())


def serve_echo(conn):
    conn.sendall(b"ECHO\n")
    while data := conn.recv(CHUNK):
        conn.sendall(data)


def serve_tcp_connection(conn):
    with conn:
        conn.settimeout(IDLE_TIMEOUT)
        try:
            words = read_command(conn)
            if words == ["ID"]:
                local = format_endpoint(*socket_endpoint(conn.getsockname()))
                peer = format_endpoint(*socket_endpoint(conn.getpeername()))
                conn.sendall(f"SERVER {local} PEER {peer}\n".encode())
            elif words == ["ECHO"]:
                serve_echo(conn)
            elif len(words) == 2 and words[0] in ("SINK", "SOURCE") and words[1].isdigit() \
                    and int(words[1]) <= MAX_TRANSFER:
                (serve_sink if words[0] == "SINK" else serve_source)(conn, int(words[1]))
            else:
                conn.sendall(b"ERROR unknown command\n")
        except OSError as error:
            print(f"tcp connection failed: {error}", flush=True)


def echo_forever(sock, local):
    while True:
        payload, peer = sock.recvfrom(65535)
        sock.sendto(f"FROM {local} ".encode() + payload, peer)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tcp-port", type=int, action="append", default=[])
    parser.add_argument("--udp", action="append", default=[], metavar="ENDPOINT")
    args = parser.parse_args()

    workers = []
    for port in args.tcp_port:
        for family in (socket.AF_INET, socket.AF_INET6):
            workers.append((accept_forever, (tcp_listener(family, port), serve_tcp_connection)))
    for text in args.udp:
        ip, port = parse_endpoint(text)
        sock = socket.socket(family_of(ip), socket.SOCK_DGRAM)
        sock.bind((ip, port))
        workers.append((echo_forever, (sock, format_endpoint(ip, port))))

    serve_until_killed(workers)


if __name__ == "__main__":
    sys.exit(main())
