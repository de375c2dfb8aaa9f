#!/usr/bin/python3
"""Asks the daemon's lookup socket from inside a namespace (the tests run it in R).

    ask.py SOCKET line REQUEST              one request line; prints the answer line
    ask.py SOCKET udp-fd LOCAL CLIENT       a UDP socket bound to LOCAL (SO_REUSEADDR, beside the
                                            relay's) and connected to CLIENT, passed with LOOKUPFD;
                                            prints the answer line

On failure the answer line is `FAILED <why>`. Exit status 0 either way: the tests judge the line.
"""

import socket
import sys

from harness.endpoints import family_of, parse_endpoint
from harness.origdst import LookupClient, OriginUnknown


def ask_line(path, request):
    with LookupClient(path) as lookup:
        return lookup.request(request)


def ask_udp_descriptor(path, local, client):
    local_ip, local_port = parse_endpoint(local)
    with socket.socket(family_of(local_ip), socket.SOCK_DGRAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((local_ip, local_port))
        sock.connect(parse_endpoint(client))
        with LookupClient(path) as lookup:
            socket.send_fds(lookup.sock, [b"LOOKUPFD\n"], [sock.fileno()])
            return lookup.read_line()


def main():
    path, action, *arguments = sys.argv[1:]
    try:
        answer = ask_line(path, *arguments) if action == "line" else ask_udp_descriptor(path, *arguments)
    except (OSError, OriginUnknown) as error:
        answer = f"FAILED {error!r}"
    print(answer)
    return 0


if __name__ == "__main__":
    sys.exit(main())
