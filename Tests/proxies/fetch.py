#!/usr/bin/python3
"""The client of the proxies suite, run in the client namespace C; one JSON object on stdout.

    fetch.py get ENDPOINT                 one HTTP GET of http://ENDPOINT/
    fetch.py get-many ENDPOINT[,...]      one GET per endpoint, all connected at the same moment

Each GET carries `Host: ENDPOINT` (what an intercepting HTTP proxy checks against the
original destination) and `Connection: close`. A result is
    {"target": ..., "local": <this socket's endpoint>, "status": 200, "body": "..."}
or {"target": ..., "error": "..."}; get-many answers {"results": [...]}. Every socket has a
timeout; the exit status is 0 when every GET got an answer.
"""

import json
import socket
import sys
import threading

import netns_path  # noqa: F401  (makes the netns modules importable)
from endpoints import bind_own_port, family_of, format_endpoint, parse_endpoint, socket_endpoint

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
                    connected.wait(TIMEOUT)
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


def main():
    if len(sys.argv) != 3 or sys.argv[1] not in ("get", "get-many"):
        print(__doc__, file=sys.stderr)
        return 64
    answer = get(sys.argv[2]) if sys.argv[1] == "get" else get_many(sys.argv[2])
    print(json.dumps(answer))
    results = answer.get("results", [answer])
    return 0 if all("error" not in result for result in results) else 2


if __name__ == "__main__":
    sys.exit(main())
