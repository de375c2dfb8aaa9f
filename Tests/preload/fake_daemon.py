#!/usr/bin/python3
"""A scripted stand-in for nfq-redirectd's lookup socket, for the preload and client tests.

    fake_daemon.py SOCKET_PATH

Answers LOOKUP and LOOKUPFD lines (pipelined, one thread per connection) the way the
current script says. Tests change the script and inspect what arrived over the same socket:

    SCRIPT ok <ip> <port>      -> OK <ip> <port>
    SCRIPT echo-client         -> OK <client-ip> <client-port> (the asker's own peer)
    SCRIPT err <TOKEN...>      -> ERR <TOKEN...>
    SCRIPT raw <text>          -> <text> verbatim, Python escapes decoded (\\n, \\x00, ...)
    SCRIPT silent              -> no answer at all
    SCRIPT close               -> the connection is closed without an answer
    SCRIPT close-then <script> -> closed without an answer once (a daemon that died after
                                  accepting), then <script> for every later lookup
    SCRIPT delay <ms> <script> -> <script>'s answer after <ms> milliseconds
    LAST                       -> LAST <the last lookup, LOOKUPFD shown with the tuple it read>
    COUNT                      -> COUNT <lookups> <connections accepted> <connections open>
    DROPALL                    -> closes every other connection (a daemon restart, seen by clients)
Control commands answer "OK" (SCRIPT, DROPALL) on their own line.
"""
import array
import os
import socket
import sys
import threading
import time

lock = threading.Lock()
script = ["err", "NOTFOUND"]
last_lookup = ""
lookups = 0
accepted = 0
open_connections = set()


def address_text(address):
    """Plain text of a socket address, v4-mapped IPv6 written as IPv4 (as the daemon does)."""
    host = address[0]
    if host.startswith("::ffff:") and "." in host:
        host = host[len("::ffff:"):]
    return host, address[1]


def answer_for(words, client):
    kind = words[0]
    if kind == "ok":
        return ("OK %s %s\n" % (words[1], words[2])).encode()
    if kind == "echo-client":
        return ("OK %s %d\n" % client).encode()
    if kind == "err":
        return ("ERR %s\n" % " ".join(words[1:])).encode()
    if kind == "raw":
        return " ".join(words[1:]).encode().decode("unicode_escape").encode("latin-1")
    if kind == "silent":
        return b""
    if kind == "close":
        return None
    if kind == "delay":
        time.sleep(int(words[1]) / 1000.0)
        return answer_for(words[2:], client)
    return b"ERR BADREQUEST unknown script\n"


def lookup(connection, line, descriptors):
    """Records the lookup and returns the bytes to answer (None: close the connection)."""
    global last_lookup, lookups
    words = line.split(" ")
    client = None
    if words[0] == "LOOKUP" and len(words) == 6:
        client = (words[2], int(words[3]))
        recorded = line
    elif words[0] == "LOOKUPFD" and len(words) == 1:
        if len(descriptors) != 1:
            recorded = "LOOKUPFD without a descriptor"
        else:
            with socket.socket(fileno=descriptors.pop()) as passed:
                proto = "tcp" if passed.type == socket.SOCK_STREAM else "udp"
                client = address_text(passed.getpeername())
                local = address_text(passed.getsockname())
                recorded = "LOOKUPFD %s %s %d %s %d" % ((proto,) + client + local)
    else:
        recorded = "BAD " + line
    global script
    with lock:
        last_lookup = recorded
        lookups += 1
        current = list(script)
        if current[0] == "close-then":
            script = current[1:]
            current = ["close"]
    if client is None:
        return b"ERR BADREQUEST malformed\n"
    return answer_for(current, client)


def control(line):
    global script
    words = line.split(" ")
    if words[0] == "SCRIPT":
        with lock:
            script = words[1:]
        return b"OK\n"
    if words[0] == "LAST":
        with lock:
            return ("LAST %s\n" % last_lookup).encode()
    if words[0] == "COUNT":
        with lock:
            return ("COUNT %d %d %d\n" % (lookups, accepted, len(open_connections))).encode()
    return None


def drop_all(except_connection):
    with lock:
        victims = [c for c in open_connections if c is not except_connection]
    for victim in victims:
        try:
            victim.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass


def serve(connection):
    buffered = b""
    descriptors = []
    try:
        while True:
            data, ancillary, _, _ = connection.recvmsg(4096, socket.CMSG_SPACE(16 * 4))
            for level, kind, payload in ancillary:
                if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                    fds = array.array("i")
                    fds.frombytes(payload[: len(payload) - len(payload) % fds.itemsize])
                    descriptors.extend(fds)
            if not data:
                return
            buffered += data
            while b"\n" in buffered:
                raw, buffered = buffered.split(b"\n", 1)
                line = raw.decode("utf-8", "replace")
                if line == "DROPALL":
                    drop_all(connection)
                    reply = b"OK\n"
                else:
                    reply = control(line)
                    if reply is None:
                        reply = lookup(connection, line, descriptors)
                if reply is None:
                    return
                if reply:
                    connection.sendall(reply)
    except OSError:
        pass
    finally:
        for fd in descriptors:
            os.close(fd)
        with lock:
            open_connections.discard(connection)
        connection.close()


def main():
    global accepted
    path = sys.argv[1]
    if os.path.exists(path):
        os.unlink(path)
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen(512)
    print("ready", flush=True)
    while True:
        connection, _ = listener.accept()
        with lock:
            accepted += 1
            open_connections.add(connection)
        threading.Thread(target=serve, args=(connection,), daemon=True).start()


if __name__ == "__main__":
    main()
