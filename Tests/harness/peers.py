"""Building blocks of the small programs the suites run inside namespaces (servers, proxies,
relays): a dual-stack listener, the accept loop, a one-way pump, and the "ready" hand-shake."""

import socket
import threading

CHUNK = 65536


def tcp_listener(family, port, backlog=256):
    """A TCP listener on every address of `family` (IPv6 only for AF_INET6)."""
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if family == socket.AF_INET6:
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
    sock.bind(("::" if family == socket.AF_INET6 else "0.0.0.0", port))
    sock.listen(backlog)
    return sock


def accept_forever(listener, handle):
    """Serves each accepted connection with `handle(conn)` in a thread of its own."""
    while True:
        conn, _ = listener.accept()
        threading.Thread(target=handle, args=(conn,), daemon=True).start()


def pump(source, sink, chunk=CHUNK):
    """Copies `source` to `sink` until end of stream, then half-closes `sink`."""
    try:
        while True:
            data = source.recv(chunk)
            if not data:
                break
            sink.sendall(data)
    except OSError:
        pass
    finally:
        try:
            sink.shutdown(socket.SHUT_WR)
        except OSError:
            pass


def serve_until_killed(workers):
    """Starts a thread per (function, args), prints the "ready" line the stage waits for, and
    runs until the program is stopped."""
    threads = [threading.Thread(target=function, args=args, daemon=True) for function, args in workers]
    for thread in threads:
        thread.start()
    print("ready", flush=True)
    for thread in threads:
        thread.join()
