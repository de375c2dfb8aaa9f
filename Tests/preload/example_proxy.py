"""examples/transparent_proxy.py, a Python client of the lookup protocol, against the fake
daemon: a lookup the daemon dies on after accepting it (SCRIPT close-then) is asked again on a
new connection and answered, with LOOKUPFD and with LOOKUP. Prints one PASS or FAIL line per
way of asking.

    example_proxy.py FAKE_DAEMON_SOCKET EXAMPLE_PROXY
"""

import socket
import subprocess
import sys
import threading
import time

ORIGINAL = "192.0.2.11:11"


def control(path, line):
    with socket.socket(socket.AF_UNIX) as daemon:
        daemon.connect(path)
        daemon.sendall(line.encode() + b"\n")
        return daemon.recv(256).decode().strip()


def lookups(path):
    return int(control(path, "COUNT").split()[1])


def free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def asks_again(path, proxy, way):
    """Why the proxy failed to ask again with `--lookup way`, or None."""
    port = free_port()
    program = subprocess.Popen([sys.executable, proxy, "--listen", f"127.0.0.1:{port}", "--socket", path,
                                "--lookup", way], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    stuck = threading.Timer(10, program.kill)   # a proxy that stops talking ends the reads below
    stuck.start()
    try:
        if program.stdout.readline().strip() != "ready":
            return "the proxy did not start"
        if control(path, f"SCRIPT close-then ok {ORIGINAL.replace(':', ' ')}") != "OK":
            return "the fake daemon refused the script"
        before = lookups(path)
        with socket.create_connection(("127.0.0.1", port), timeout=5) as client:
            wanted = f"client 127.0.0.1:{client.getsockname()[1]} wanted {ORIGINAL} (via "
            deadline = time.monotonic() + 5
            said = []
            while not (said and said[-1].startswith(wanted)) and time.monotonic() < deadline:
                line = program.stdout.readline()
                if not line:
                    break
                said.append(line.strip())
        if not (said and said[-1].startswith(wanted)):
            return f"no line '{wanted}...' from the proxy; it said {said}"
        asked = lookups(path) - before
        if asked != 2:
            return f"{asked} lookups reached the daemon, expected 2 (the one it died on, then the retry)"
        return None
    finally:
        stuck.cancel()
        program.kill()
        program.wait()


def main():
    path, proxy = sys.argv[1], sys.argv[2]
    for way in ("fd", "line"):
        problem = asks_again(path, proxy, way)
        what = f"example proxy (--lookup {way}): a daemon that died after accepting is asked again, answered"
        print(f"PASS  {what}" if problem is None else f"FAIL  {what}\n      {problem}", flush=True)


if __name__ == "__main__":
    main()
