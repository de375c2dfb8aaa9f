#!/usr/bin/python3
"""Hostile lookup clients against the real nfq-redirectd; run.sh runs this inside a throwaway
network namespace R with the daemon already started (`--redirect tcp:9999:7778` for the
client namespace's transfers to R's address (ROUTER_CLIENT_SIDE_V4), received by a sink process of their own;
`--redirect-local tcp:9998:7777` for R's own connection to 127.0.0.2, the one the clients
ask about; max_clients 1000, allow_users root).

    hostile_clients.py SOCKET CLIENT_NAMESPACE

A well-behaved client asks about a real redirected connection every millisecond from start to
end, and a redirected transfer measures the datapath, alone and again while the lookup socket
is under attack: a thousand idle connections (the ones beyond max_clients get `ERR BUSY` and
are closed), byte-at-a-time writers, oversized lines, binary garbage, half-closed connections,
a client that never reads, a peer not on the allow list. Each attack's answers are checked,
the good client must get every answer right with bounded latency, and the datapath must keep
its speed. Prints one PASS or FAIL line per check; run.sh's reporter adds the summary line.
"""

import os
import random
import resource
import socket
import subprocess
import sys
import threading
import time

from harness.topology import ROUTER_CLIENT_SIDE_V4

MAX_CLIENTS = 1000
EXPECTED = "OK 127.0.0.2 9998"   # where the held connection was going
TRANSFER = 16 * 1024 * 1024
TRANSFERS = 5
GOOD_P99_LIMIT_MS = 10.0
SLOW_LINES = 10       # per byte-at-a-time writer: about a second, across the transfers
DATAPATH_KEPT = 0.6   # of the quiet throughput, at least, while under attack

passed = failed = 0
# The attacks run in threads, and print() writes a line's text and its newline separately:
# two checks at once could share one line, and the reporter, which counts lines, would miss
# one (seen: "...refused]PASS  1 MiB line..."). One write per line, under a lock.
output_lock = threading.Lock()


def check(what, ok, detail=""):
    global passed, failed
    line = f"PASS  {what}{f'  [{detail}]' if detail else ''}" if ok else f"FAIL  {what}: {detail}"
    with output_lock:
        if ok:
            passed += 1
        else:
            failed += 1
        sys.stdout.write(line + "\n")
        sys.stdout.flush()


def connect(path, timeout=5.0):
    """A client of the lookup socket. With a timeout Python connects without blocking, and a
    Unix socket then answers EAGAIN (not EINPROGRESS) while the listener's backlog is full:
    the daemon has not accepted the previous ones yet. A blocking client would wait there, so
    this one retries until `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(timeout)
        try:
            sock.connect(path)
            return sock
        except BlockingIOError:
            sock.close()
            if time.monotonic() > deadline:
                raise
            time.sleep(0.005)


def read_lines(sock, count):
    data = b""
    while data.count(b"\n") < count:
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    return data.decode("utf-8", "replace").splitlines()


class HeldConnection:
    """A connection redirected to 127.0.0.1:7777 and kept open: what every client asks about."""

    def __init__(self):
        self.listener = socket.socket()
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", 7777))
        self.listener.listen(1)
        self.held_client = socket.create_connection(("127.0.0.2", 9998))
        self.held, _ = self.listener.accept()

    def lookup_line(self):
        peer, local = self.held.getpeername(), self.held.getsockname()
        return f"LOOKUP tcp {peer[0]} {peer[1]} {local[0]} {local[1]}\n".encode()


UPLOAD = """
import socket, sys, time
payload = bytes(1 << 20)
started = time.monotonic()
with socket.create_connection((sys.argv[2], 9999), timeout=30) as conn:
    for _ in range(int(sys.argv[1]) // len(payload)):
        conn.sendall(payload)
    conn.shutdown(socket.SHUT_WR)
    conn.recv(1)   # the sink closes once it has read everything
print(int(sys.argv[1]) * 8 / (time.monotonic() - started) / 1e6)
"""


SINK = """
import socket
listener = socket.socket()
listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
listener.bind(("0.0.0.0", 7778))
listener.listen(8)
print("ready", flush=True)
while True:
    conn, _ = listener.accept()
    with conn:
        try:
            while conn.recv(1 << 20):
                pass
        except OSError:
            pass
"""


def transfer_rate(client_namespace):
    """Mbit/s of one TCP upload of TRANSFER bytes from the client namespace, redirected by the daemon."""
    done = subprocess.run(["ip", "netns", "exec", client_namespace, sys.executable, "-c", UPLOAD, str(TRANSFER), ROUTER_CLIENT_SIDE_V4],
                          capture_output=True, text=True, timeout=60)
    if done.returncode != 0:
        raise OSError(f"redirected transfer failed: {done.stderr.strip()[-300:]}")
    return float(done.stdout)


class GoodClient(threading.Thread):
    def __init__(self, path, line):
        super().__init__(daemon=True)
        self.sock = connect(path)
        self.line = line
        self.latencies = []
        self.wrong = []
        self.stopping = threading.Event()

    def run(self):
        while not self.stopping.is_set():
            before = time.perf_counter()
            try:
                self.sock.sendall(self.line)
                answer = read_lines(self.sock, 1)
            except OSError as error:
                self.wrong.append(repr(error))
                return
            self.latencies.append((time.perf_counter() - before) * 1e3)
            if answer != [EXPECTED]:
                self.wrong.append(answer)
            time.sleep(0.001)

    def summary(self):
        ordered = sorted(self.latencies)
        return len(ordered), ordered[len(ordered) // 2], ordered[len(ordered) * 99 // 100], ordered[-1]


def slow_writer(path, line, results):
    try:
        with connect(path, timeout=30) as sock:
            for _ in range(SLOW_LINES):
                for byte in line:
                    sock.send(bytes([byte]))
                    time.sleep(0.002)
                results.append(read_lines(sock, 1))
    except OSError as error:
        results.append([repr(error)])


def idle_flood(path):
    """Connections up to max_clients are held; beyond it each gets ERR BUSY and is closed."""
    held = []
    for _ in range(MAX_CLIENTS - 1):   # the good client holds one slot
        held.append(connect(path))
    refused = []
    for _ in range(5):
        with connect(path) as extra:
            refused.append(read_lines(extra, 2))
    check(f"{len(held)} idle connections held, the next 5 get ERR BUSY and are closed",
          refused == [["ERR BUSY"]] * 5, repr(refused[:2]))
    with held[-1] as probe:   # the last one admitted is served
        probe.sendall(b"VERSION\n")
        answer = read_lines(probe, 1)
    check("the last admitted idle connection is served", answer[:1] and answer[0].startswith("OK nfq-redirect"), answer)
    # 900 stay idle through the rest; the others make room for the attacks that follow.
    for sock in held[900:-1]:
        sock.close()
    return held[:900]


def oversized(path, line):
    with connect(path) as sock:
        sock.sendall(b"A" * (1 << 20))
        sock.sendall(b"\n" + line)
        answers = read_lines(sock, 2)
    check("1 MiB line: one ERR BADREQUEST, then the next request answered",
          answers == ["ERR BADREQUEST line longer than 512 bytes", EXPECTED], repr(answers))


def binary_garbage(path, line):
    noise = bytes(random.getrandbits(8) for _ in range(64 * 1024))
    with connect(path) as sock:
        sock.sendall(noise + b"\n" + line)
        lines = noise.count(b"\n") + 2
        answers = read_lines(sock, lines)
    errors = answers[:-1]
    check("64 KiB of random bytes: each line refused with a reason, then a request answered",
          answers[-1:] == [EXPECTED] and all(a.startswith("ERR BADREQUEST ") for a in errors),
          f"{len(errors)} garbage lines refused")


def half_closed(path, line):
    with connect(path) as sock:
        sock.sendall(line * 3)
        sock.shutdown(socket.SHUT_WR)
        answers = read_lines(sock, 4)
        rest = sock.recv(16)
    check("half-closed after 3 requests: 3 answers, then the daemon closes",
          answers == [EXPECTED] * 3 and rest == b"", repr(answers))


def never_reads(path):
    """Pipelines requests without reading: cut off once its unread answers pass 1 MiB."""
    sock = connect(path, timeout=10)
    cut_off = False
    try:
        batch = b"VERSION\n" * 8192
        for _ in range(100):
            sock.sendall(batch)
    except OSError:
        cut_off = True
    if not cut_off:
        sock.settimeout(10)
        try:
            while sock.recv(1 << 20):
                pass
            cut_off = True
        except OSError:
            cut_off = True
    sock.close()
    check("a client that never reads is disconnected (output bound 1 MiB)", cut_off)


def denied_peer(path, line):
    """A peer not on the allow list (uid nobody) gets ERR DENIED to everything."""
    read_end, write_end = os.pipe()
    child = os.fork()
    if child == 0:
        os.close(read_end)
        try:
            os.setgroups([])
            os.setgid(65534)
            os.setuid(65534)
            with connect(path) as sock:
                sock.sendall(line + b"VERSION\nLIST\n")
                os.write(write_end, "|".join(read_lines(sock, 3)).encode())
        except OSError as error:
            os.write(write_end, repr(error).encode())
        os._exit(0)
    os.close(write_end)
    answer = os.read(read_end, 4096).decode()
    os.close(read_end)
    os.waitpid(child, 0)
    check("a peer not on the allow list (uid 65534): ERR DENIED to every request",
          answer == "ERR DENIED|ERR DENIED|ERR DENIED", answer)


def main():
    path, client_namespace = sys.argv[1:3]
    resource.setrlimit(resource.RLIMIT_NOFILE, (8192, 8192))
    line = HeldConnection().lookup_line()
    # The transfers' receiver is a process of its own, so the attackers here cannot slow it.
    sink = subprocess.Popen([sys.executable, "-c", SINK], stdout=subprocess.PIPE, text=True)
    sink.stdout.readline()
    good = GoodClient(path, line)
    good.start()

    # Best of several: other tenants of the machine only ever make a transfer slower.
    quiet = max(transfer_rate(client_namespace) for _ in range(TRANSFERS))
    held = idle_flood(path)
    slow_answers = []
    writers = [threading.Thread(target=slow_writer, args=(path, line, slow_answers)) for _ in range(10)]
    for writer in writers:
        writer.start()
    attacks = [threading.Thread(target=attack, args=args) for attack, args in
               ((oversized, (path, line)), (binary_garbage, (path, line)), (half_closed, (path, line)),
                (never_reads, (path,)), (denied_peer, (path, line)))]
    for attack in attacks:
        attack.start()
    busy = max(transfer_rate(client_namespace) for _ in range(TRANSFERS))
    for thread in writers + attacks:
        thread.join(60)
    check("10 byte-at-a-time writers: every answer right",
          slow_answers == [[EXPECTED]] * (10 * SLOW_LINES), f"{len(slow_answers)} answers")
    check(f"datapath under attack keeps >= {DATAPATH_KEPT:.0%} of its quiet throughput",
          busy >= DATAPATH_KEPT * quiet, f"quiet {quiet:.0f} Mbit/s, under attack {busy:.0f} Mbit/s")
    for sock in held:
        sock.close()
    sink.kill()
    sink.wait()

    good.stopping.set()
    good.join(5)
    count, p50, p99, worst = good.summary()
    check("the well-behaved client got every answer right", not good.wrong and count > 100,
          f"{count} lookups" if not good.wrong else repr(good.wrong[:3]))
    check(f"its latency stayed bounded (p99 < {GOOD_P99_LIMIT_MS} ms)", p99 < GOOD_P99_LIMIT_MS,
          f"p50 {p50:.3f} ms, p99 {p99:.3f} ms, max {worst:.1f} ms")
    with connect(path) as sock:
        sock.sendall(b"STATS\n")
        data = b""
        while not data.endswith(b"END\n"):
            data += sock.recv(65536)
        stats = dict(l.split(" ", 1) for l in data.decode().splitlines() if " " in l)
    print("daemon counters: " + ", ".join(f"{k} {v}" for k, v in sorted(stats.items()) if k.startswith("nfqr_lookup")))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
