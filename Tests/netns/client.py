#!/usr/bin/python3
"""The client side of the netns suite: one action per run, one JSON object on stdout.

    client.py tcp-id ENDPOINT                  "ID" -> the server's identification line
    client.py tcp-sink ENDPOINT BYTES          uploads random bytes, compares the server's sha256
    client.py tcp-source ENDPOINT BYTES        downloads, compares with the server's sha256
    client.py tcp-many ENDPOINT[,ENDPOINT...] COUNT BYTES
                                               COUNT connections open at once, each a SINK
    client.py tcp-probe ENDPOINT SECONDS       connected | refused | timeout
    client.py udp-echo ENDPOINT PAYLOAD        one datagram; where the answer came from
    client.py udp-refused ENDPOINT             one datagram from a connected socket: refused | timeout | answered

"local" in an answer is this socket's own endpoint, which the proxy logs as "client".
On failure: {"error": "..."} and exit status 2. Every socket has a timeout.
"""

import hashlib
import json
import os
import socket
import struct
import sys
import threading
import time

from harness.endpoints import connect_from_own_port, family_of, format_endpoint, parse_endpoint, socket_endpoint

TIMEOUT = 20.0
CHUNK = 256 * 1024


def connect(endpoint, timeout=TIMEOUT):
    return connect_from_own_port(*parse_endpoint(endpoint), timeout)


def local_of(sock):
    return format_endpoint(*socket_endpoint(sock.getsockname()))


def read_line(sock, limit=512):
    line = b""
    while not line.endswith(b"\n"):
        data = sock.recv(1)
        if not data:
            break
        line += data
        if len(line) > limit:
            raise ValueError(f"line longer than {limit} bytes: {line[:80]!r}...")
    return line.decode("utf-8", "replace").rstrip("\n")


def upload(sock, size):
    """Sends SINK + `size` random bytes; returns (our sha256, the server's answer line)."""
    digest = hashlib.sha256()
    sock.sendall(f"SINK {size}\n".encode())
    remaining = size
    while remaining:
        data = os.urandom(min(CHUNK, remaining))
        digest.update(data)
        sock.sendall(data)
        remaining -= len(data)
    return digest.hexdigest(), read_line(sock)


def tcp_id(endpoint):
    with connect(endpoint) as sock:
        sock.sendall(b"ID\n")
        return {"local": local_of(sock), "reply": read_line(sock)}


def tcp_id_port_reused(first, second):
    """ID over `first`, aborted (RST: the port is free at once), then at once ID over `second`
    from the same local port: both redirect to the same proxy port, so the second flow's reply
    tuple (proxy -> client) is the first one's, whose entry is still closing."""
    answers = []
    with connect(first) as sock:
        sock.sendall(b"ID\n")
        answers.append({"local": local_of(sock), "reply": read_line(sock)})
        port = sock.getsockname()[1]
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    ip, target_port = parse_endpoint(second)
    with socket.socket(family_of(ip), socket.SOCK_STREAM) as sock:
        sock.settimeout(TIMEOUT)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("::" if ":" in ip else "0.0.0.0", port))
        sock.connect((ip, target_port))
        sock.sendall(b"ID\n")
        answers.append({"local": local_of(sock), "reply": read_line(sock)})
    return {"answers": answers}


def tcp_sink(endpoint, size):
    started = time.monotonic()
    with connect(endpoint) as sock:
        sent, answer = upload(sock, int(size))
        return {"local": local_of(sock), "sha256": sent, "answer": answer,
                "seconds": round(time.monotonic() - started, 3)}


def tcp_source(endpoint, size):
    size = int(size)
    started = time.monotonic()
    digest = hashlib.sha256()
    with connect(endpoint) as sock:
        sock.sendall(f"SOURCE {size}\n".encode())
        received = 0
        try:
            while received < size:
                data = sock.recv(min(CHUNK, size - received))
                if not data:
                    break
                digest.update(data)
                received += len(data)
            answer = read_line(sock)
        except TimeoutError:
            # A stall: say how far it got (the caller's size check fails with the figure).
            answer = f"(stalled: nothing for {TIMEOUT:.0f} s)"
        return {"local": local_of(sock), "received": received, "sha256": digest.hexdigest(),
                "answer": answer, "seconds": round(time.monotonic() - started, 3)}


def tcp_many(endpoints, count, size):
    """`count` connections, all open at the same moment (a barrier), each uploading `size` bytes."""
    targets = endpoints.split(",")
    count, size = int(count), int(size)
    barrier = threading.Barrier(count)
    failures = []

    def one(index):
        target = targets[index % len(targets)]
        sock = None
        try:
            try:
                sock = connect(target)
            finally:
                barrier.wait(timeout=TIMEOUT)
            sent, answer = upload(sock, size)
            if answer != f"SHA256 {sent}":
                failures.append(f"#{index} {target}: sent sha256 {sent}, server said {answer!r}")
        except (OSError, threading.BrokenBarrierError) as error:
            failures.append(f"#{index} {target}: {error!r}")
        finally:
            if sock is not None:
                sock.close()

    started = time.monotonic()
    threads = [threading.Thread(target=one, args=(i,), daemon=True) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(2 * TIMEOUT + 10)
    hung = sum(thread.is_alive() for thread in threads)
    return {"connections": count, "succeeded": count - len(failures) - hung, "hung": hung,
            "failures": failures[:5], "seconds": round(time.monotonic() - started, 3)}


def tcp_probe(endpoint, seconds):
    try:
        with connect(endpoint, timeout=float(seconds)):
            return {"result": "connected"}
    except ConnectionRefusedError:
        return {"result": "refused"}
    except socket.timeout:
        return {"result": "timeout"}


def tcp_steady(endpoint, seconds):
    """One connection uploading at a steady pace (~2 MB/s) for `seconds`, checked end to end."""
    chunk, interval = 64 * 1024, 0.03
    chunks = int(float(seconds) / interval)
    digest = hashlib.sha256()
    started = time.monotonic()
    with connect(endpoint) as sock:
        sock.settimeout(4 * TIMEOUT)
        local = local_of(sock)
        sock.sendall(f"SINK {chunks * chunk}\n".encode())
        for index in range(chunks):
            data = os.urandom(chunk)
            digest.update(data)
            sock.sendall(data)
            time.sleep(max(0.0, started + (index + 1) * interval - time.monotonic()))
        answer = read_line(sock)
    return {"local": local, "sent": chunks * chunk, "sha256": digest.hexdigest(), "answer": answer,
            "seconds": round(time.monotonic() - started, 3)}


def udp_echo(endpoint, payload):
    ip, port = parse_endpoint(endpoint)
    with socket.socket(family_of(ip), socket.SOCK_DGRAM) as sock:
        sock.settimeout(5.0)
        # Not connected (that would hide an answer from any other source), but bound to the
        # source address routing picks, so "local" names what the relay sees as the client.
        with socket.socket(family_of(ip), socket.SOCK_DGRAM) as probe:
            probe.connect((ip, port))
            sock.bind((probe.getsockname()[0], 0))
        sock.sendto(payload.encode(), (ip, port))
        answer, sender = sock.recvfrom(65535)
        return {"local": local_of(sock), "reply_from": format_endpoint(*socket_endpoint(sender)),
                "reply": answer.decode("utf-8", "replace")}


def udp_refused(endpoint):
    """One datagram from a socket connected to ENDPOINT, then a receive: "refused" when an ICMP
    port unreachable about exactly that tuple came back (ECONNREFUSED), else "timeout" or "answered"."""
    ip, port = parse_endpoint(endpoint)
    with socket.socket(family_of(ip), socket.SOCK_DGRAM) as sock:
        sock.settimeout(3.0)
        sock.connect((ip, port))
        sock.send(b"anyone?")
        try:
            sock.recv(65535)
            result = "answered"
        except ConnectionRefusedError:
            result = "refused"
        except TimeoutError:
            result = "timeout"
        return {"local": local_of(sock), "result": result}


ACTIONS = {"tcp-id": tcp_id, "tcp-id-port-reused": tcp_id_port_reused, "tcp-sink": tcp_sink, "tcp-source": tcp_source, "tcp-many": tcp_many,
           "tcp-probe": tcp_probe, "tcp-steady": tcp_steady, "udp-echo": udp_echo,
           "udp-refused": udp_refused}


def main():
    if len(sys.argv) < 2 or sys.argv[1] not in ACTIONS:
        print(__doc__, file=sys.stderr)
        return 64
    try:
        result = ACTIONS[sys.argv[1]](*sys.argv[2:])
    except (OSError, ValueError, TypeError) as error:
        print(json.dumps({"error": f"{sys.argv[1]}: {error!r}"}))
        return 2
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
