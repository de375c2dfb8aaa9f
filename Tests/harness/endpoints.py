"""Text forms of socket endpoints shared by the suite's programs.

An endpoint is written `192.0.2.2:40000` or `[2001:db8:1::2]:40000`, the form the
proxies log and the tests search for.
"""

import socket


def family_of(ip):
    return socket.AF_INET6 if ":" in ip else socket.AF_INET


def bind_own_port(sock, ip):
    """Gives `sock`, about to connect to `ip`, a source port no other socket has. connect() alone
    may give two sockets to different destinations the same one, and after a redirect to one
    proxy port both would be one client -> proxy connection (refused as tuple_in_use,
    docs/operations.md)."""
    sock.bind(("::" if family_of(ip) == socket.AF_INET6 else "0.0.0.0", 0))


def connect_from_own_port(ip, port, timeout):
    """A TCP socket connected to (ip, port) from a source port of its own (see bind_own_port)."""
    sock = socket.socket(family_of(ip), socket.SOCK_STREAM)
    sock.settimeout(timeout)
    try:
        bind_own_port(sock, ip)
        sock.connect((ip, port))
    except OSError:
        sock.close()
        raise
    return sock


def format_endpoint(ip, port):
    return f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"


def parse_endpoint(text):
    """`1.2.3.4:80` or `[::1]:80` -> ("1.2.3.4", 80)."""
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit():
        raise ValueError(f"not an endpoint: {text!r}")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    return host, int(port)


def socket_endpoint(address):
    """The (ip, port) of a socket address tuple of either family (drops flowinfo/scope)."""
    return address[0], address[1]
