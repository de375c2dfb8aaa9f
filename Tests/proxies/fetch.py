#!/usr/bin/python3
"""The client of the proxies suite, run in the client namespace C; one JSON object on stdout.

    fetch.py get ENDPOINT                 one HTTP GET of http://ENDPOINT/
    fetch.py get-many ENDPOINT[,...]      one GET per endpoint, all connected at the same moment
    fetch.py transfer-many SIZE ENDPOINT[,...]   per endpoint, at the same time: an upload of
                                          SIZE random bytes (POST /sha256) and a download of
                                          SIZE bytes (GET /bytes/SIZE), both hashed end to end

Each GET carries `Host: ENDPOINT` (what an intercepting HTTP proxy checks against the
original destination) and `Connection: close`. A result is
    {"target": ..., "local": <this socket's endpoint>, "status": 200, "body": "..."}
or {"target": ..., "error": "..."}; get-many answers {"results": [...]}. Every socket has a
timeout; the exit status is 0 when every GET got an answer.
"""

import hashlib
import json
import os
import socket
import sys
import threading

from harness.endpoints import bind_own_port, family_of, format_endpoint, parse_endpoint, socket_endpoint

TIMEOUT = 15.0
RESPONSE_LIMIT = 64 * 1024


def request(endpoint):
    return (f"GET / HTTP/1.1\r\nHost: {endpoint}\r\nUser-Agent: nfqr-proxies-suite\r\n"
            "Accept: */*\r\nConnection: close\r\n\r\n").encode()


def read_response(sock):
    response = b""
    while len(response) <= RESPONSE_LIMIT:
        data = sock.recv(16384)
        if not data:
            break
        response += data
    head, separator, body = response.partition(b"\r\n\r\n")
    if not separator:
        raise ValueError(f"no complete HTTP response: {response[:200]!r}")
    status_line = head.split(b"\r\n", 1)[0].decode("latin-1")
    words = status_line.split()
    if len(words) < 2 or not words[0].startswith("HTTP/") or not words[1].isdigit():
        raise ValueError(f"not an HTTP status line: {status_line!r}")
    return int(words[1]), body.decode("utf-8", "replace").rstrip("\n")


def get(endpoint, connected=None):
    """One GET; `connected` (a barrier) is waited on right after the connection opens."""
    ip, port = parse_endpoint(endpoint)
    try:
        with socket.socket(family_of(ip), socket.SOCK_STREAM) as sock:
            sock.settimeout(TIMEOUT)
            bind_own_port(sock, ip)
            try:
                sock.connect((ip, port))
            finally:
                if connected is not None:
                    # The first to connect waits for the last, whose own connect may take up to
                    # TIMEOUT after its thread started: waiting only TIMEOUT broke the barrier
                    # under load while every connection was still on its way.
                    connected.wait(2 * TIMEOUT)
            local = format_endpoint(*socket_endpoint(sock.getsockname()))
            sock.sendall(request(endpoint))
            status, body = read_response(sock)
            return {"target": endpoint, "local": local, "status": status, "body": body}
    except (OSError, ValueError, threading.BrokenBarrierError) as error:
        return {"target": endpoint, "error": f"{type(error).__name__}: {error}"}


def get_many(endpoints):
    targets = endpoints.split(",")
    barrier = threading.Barrier(len(targets))
    results = [None] * len(targets)

    def one(index):
        results[index] = get(targets[index], barrier)

    threads = [threading.Thread(target=one, args=(index,), daemon=True) for index in range(len(targets))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(3 * TIMEOUT)
    return {"results": [result or {"target": target, "error": "hung"}
                        for target, result in zip(targets, results)]}


def exchange(endpoint, head, body=b""):
    """One request on a connection of its own; (headers, body) of the answer."""
    ip, port = parse_endpoint(endpoint)
    with socket.socket(family_of(ip), socket.SOCK_STREAM) as sock:
        sock.settimeout(TIMEOUT)
        bind_own_port(sock, ip)
        sock.connect((ip, port))
        sock.sendall(head.encode() + body)
        response = b""
        while True:
            data = sock.recv(1 << 20)
            if not data:
                break
            response += data
    head, _, content = response.partition(b"\r\n\r\n")
    return head.decode("latin-1"), content


def transfer(endpoint, size):
    """An upload and a download of `size` bytes through the proxy, each hashed at both ends."""
    try:
        upload = os.urandom(size)
        _, answer = exchange(endpoint, f"POST /sha256 HTTP/1.1\r\nHost: {endpoint}\r\nContent-Length: {size}\r\n"
                                       "Connection: close\r\n\r\n", upload)
        if answer.decode().strip() != hashlib.sha256(upload).hexdigest():
            return {"target": endpoint, "error": f"upload hash mismatch: origin saw {answer[:80]!r}"}
        head, download = exchange(endpoint, f"GET /bytes/{size} HTTP/1.1\r\nHost: {endpoint}\r\nConnection: close\r\n\r\n")
        sent = next((line.split(":", 1)[1].strip() for line in head.split("\r\n") if line.lower().startswith("x-sha256:")), None)
        if len(download) != size or hashlib.sha256(download).hexdigest() != sent:
            return {"target": endpoint, "error": f"download of {len(download)} bytes does not match the origin's hash"}
        return {"target": endpoint, "bytes": 2 * size}
    except (OSError, ValueError) as error:
        return {"target": endpoint, "error": f"{type(error).__name__}: {error}"}


def transfer_many(size, endpoints):
    targets = endpoints.split(",")
    results = [None] * len(targets)

    def one(index):
        results[index] = transfer(targets[index], size)

    threads = [threading.Thread(target=one, args=(index,), daemon=True) for index in range(len(targets))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(6 * TIMEOUT)
    return {"results": [result or {"target": target, "error": "hung"} for target, result in zip(targets, results)]}


def main():
    if len(sys.argv) == 4 and sys.argv[1] == "transfer-many":
        answer = transfer_many(int(sys.argv[2]), sys.argv[3])
        print(json.dumps(answer))
        return 0 if all("error" not in result for result in answer["results"]) else 2
    if len(sys.argv) != 3 or sys.argv[1] not in ("get", "get-many"):
        print(__doc__, file=sys.stderr)
        return 64
    answer = get(sys.argv[2]) if sys.argv[1] == "get" else get_many(sys.argv[2])
    print(json.dumps(answer))
    results = answer.get("results", [answer])
    return 0 if all("error" not in result for result in results) else 2


if __name__ == "__main__":
    sys.exit(main())
