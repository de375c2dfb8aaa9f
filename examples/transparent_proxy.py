#!/usr/bin/python3
"""A transparent TCP proxy that asks nfq-redirectd where each connection was really going.

    transparent_proxy.py --listen 0.0.0.0:8081 --listen [::]:8081 \\
                         [--socket /run/nfq-redirect/lookup.sock] [--lookup fd|line] [--mark 0x1]

Point a redirect at it (`nfq-redirectd --redirect tcp:80:8081`). For every accepted connection
it asks the daemon's lookup socket (docs/lookup-protocol.md) for the original destination:

- `--lookup fd` (default): `LOOKUPFD`, with the accepted socket passed as SCM_RIGHTS. The
  daemon reads the tuple from the socket itself, so the proxy proves it holds the connection.
- `--lookup line`: `LOOKUP tcp <client-ip> <client-port> <local-ip> <local-port>`, built from
  getpeername() / getsockname().

It logs one line per connection,
    client 192.0.2.2:40000 wanted 203.0.113.10:80 (via LOOKUPFD)
or  client 192.0.2.2:40001 not relayed: ERR NOTREDIRECTED
connects to the original destination (with SO_MARK when --mark is given, so the daemon's
`--exclude-mark` keeps the proxy's own connections from being redirected back to it) and relays
both ways until each side has closed. A connection the daemon does not know (someone dialled
the proxy's port directly, or a proxy connecting to itself in a loop) is closed, not relayed.

A lookup connection closed or reset before any byte of the answer (a daemon that died after
accepting it) is replaced and the lookup asked once more: the next daemon answers it.

Only the Python standard library is used; one lookup connection is kept per thread.
"""

import argparse
import socket
import sys
import threading

DEFAULT_SOCKET = "/run/nfq-redirect/lookup.sock"
CHUNK = 256 * 1024


class NoOriginalDestination(Exception):
    """The daemon gave no original destination; the message is its answer (ERR ...)."""


class DaemonGone(OSError):
    """The lookup connection was closed or reset before any byte of the answer: a daemon that
    died after accepting it (a crash, a watchdog abort), or a kept connection a restart closed.
    A new connection reaches the daemon running now (docs/lookup-protocol.md)."""


class Lookup:
    """One connection to the daemon's lookup socket; answers come back in request order."""

    def __init__(self, path):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(5.0)
        self.sock.connect(path)
        self.buffer = b""

    def original_destination(self, conn, by_descriptor):
        try:
            if by_descriptor:
                socket.send_fds(self.sock, [b"LOOKUPFD\n"], [conn.fileno()])
            else:
                client, local = conn.getpeername(), conn.getsockname()
                self.sock.sendall(f"LOOKUP tcp {client[0]} {client[1]} {local[0]} {local[1]}\n".encode())
            answer = self.read_line()
        except (BrokenPipeError, ConnectionResetError) as error:
            if self.buffer:
                raise
            raise DaemonGone(f"the daemon's lookup connection is gone: {error.strerror}") from None
        words = answer.split()
        if len(words) == 3 and words[0] == "OK":
            return words[1], int(words[2])
        raise NoOriginalDestination(answer)

    def read_line(self):
        while b"\n" not in self.buffer:
            data = self.sock.recv(4096)
            if not data:
                raise (OSError if self.buffer else DaemonGone)("the daemon closed the lookup connection")
            self.buffer += data
        line, _, self.buffer = self.buffer.partition(b"\n")
        return line.decode()


def endpoint_text(address):
    host, port = address[0], address[1]
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def parse_endpoint(text):
    host, _, port = text.rpartition(":")
    return host.strip("[]"), int(port)


class Proxy:
    def __init__(self, socket_path, by_descriptor, mark):
        self.socket_path = socket_path
        self.by_descriptor = by_descriptor
        self.mark = mark
        self.local = threading.local()
        self.log_lock = threading.Lock()

    def log(self, line):
        with self.log_lock:
            print(line, flush=True)

    def lookup(self):
        if getattr(self.local, "lookup", None) is None:
            self.local.lookup = Lookup(self.socket_path)
        return self.local.lookup

    def original_destination(self, conn):
        """Asked on this thread's lookup connection; asked once more on a new one when that one
        is gone before answering, as the preload library does (a lookup is idempotent)."""
        try:
            return self.lookup().original_destination(conn, self.by_descriptor)
        except DaemonGone:
            self.local.lookup = None
            return self.lookup().original_destination(conn, self.by_descriptor)

    def handle(self, conn):
        client = endpoint_text(conn.getpeername())
        with conn:
            try:
                original = self.original_destination(conn)
            except NoOriginalDestination as refusal:
                self.log(f"client {client} not relayed: {refusal}")
                return
            except OSError as error:
                self.local.lookup = None   # reconnect next time
                self.log(f"client {client} not relayed: lookup socket: {error}")
                return
            via = "LOOKUPFD" if self.by_descriptor else "LOOKUP"
            self.log(f"client {client} wanted {endpoint_text(original)} (via {via})")
            try:
                upstream = socket.socket(socket.AF_INET6 if ":" in original[0] else socket.AF_INET)
                if self.mark is not None:
                    upstream.setsockopt(socket.SOL_SOCKET, socket.SO_MARK, self.mark)
                upstream.settimeout(10.0)
                upstream.connect(original)
                upstream.settimeout(None)
            except OSError as error:
                self.log(f"client {client} upstream {endpoint_text(original)} failed: {error}")
                return
            with upstream:
                back = threading.Thread(target=relay, args=(upstream, conn), daemon=True)
                back.start()
                relay(conn, upstream)
                back.join()

    def serve(self, listener):
        while True:
            conn, _ = listener.accept()
            threading.Thread(target=self.handle, args=(conn,), daemon=True).start()


def relay(source, sink):
    """Copies until source's end of file, then passes the end of file on."""
    try:
        while data := source.recv(CHUNK):
            sink.sendall(data)
    except OSError:
        pass
    try:
        sink.shutdown(socket.SHUT_WR)
    except OSError:
        pass


def main():
    parser = argparse.ArgumentParser(description="transparent TCP proxy using the nfq-redirect lookup protocol")
    parser.add_argument("--listen", action="append", required=True, help="address:port, [v6]:port; repeatable")
    parser.add_argument("--socket", default=DEFAULT_SOCKET, help=f"lookup socket (default {DEFAULT_SOCKET})")
    parser.add_argument("--lookup", choices=("fd", "line"), default="fd", help="LOOKUPFD (default) or LOOKUP")
    parser.add_argument("--mark", type=lambda text: int(text, 0), help="SO_MARK for upstream connections")
    args = parser.parse_args()
    proxy = Proxy(args.socket, args.lookup == "fd", args.mark)
    listeners = []
    for text in args.listen:
        host, port = parse_endpoint(text)
        listener = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if listener.family == socket.AF_INET6:
            listener.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        listener.bind((host, port))
        listener.listen(128)
        listeners.append(listener)
    for listener in listeners[1:]:
        threading.Thread(target=proxy.serve, args=(listener,), daemon=True).start()
    print("ready", flush=True)
    proxy.serve(listeners[0])


if __name__ == "__main__":
    sys.exit(main())
