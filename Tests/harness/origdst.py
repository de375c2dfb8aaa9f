"""Where was a redirected flow really going? Three ways to ask.

- `LookupClient`: the daemon's lookup socket (CONTRACT.md, "Lookup protocol").
- `kernel_tcp_original_dst`: getsockopt(SO_ORIGINAL_DST) after the kernel's REDIRECT.
- `conntrack_original_dst`: the kernel's conntrack table over ctnetlink, for UDP after
  the kernel's REDIRECT (SO_ORIGINAL_DST answers TCP/SCTP sockets only).
The last two form the kernel baseline the daemon is measured against.
"""

import os
import socket
import struct

SO_ORIGINAL_DST = 80  # also IP6T_SO_ORIGINAL_DST, at level SOL_IPV6 (= IPPROTO_IPV6)


class OriginUnknown(Exception):
    """The original destination could not be learned; the message says why."""


class LookupPeerGone(OriginUnknown):
    """The daemon closed or reset the connection before any byte of the answer.

    A daemon that dies after accepting (a watchdog abort, a SIGKILL) does this; the preload
    library then asks once more on a new connection, which the successor answers from the
    kept listener's backlog (docs/lookup-protocol.md). Clients here do the same.
    """


class LookupClient:
    """One connection to the daemon's lookup socket; requests are answered in order."""

    def __init__(self, path, timeout=5.0):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        # A blocking connect waits for room in a busy daemon's backlog (a socket in timeout
        # mode would fail at once with EAGAIN); SO_SNDTIMEO still bounds the wait.
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO,
                             struct.pack("=qq", int(timeout), int(timeout % 1 * 1e6)))
        try:
            self.sock.connect(path)
        except OSError:
            self.sock.close()
            raise
        self.sock.settimeout(timeout)
        self.buffer = b""

    def close(self):
        self.sock.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def request(self, line):
        """Sends one raw line (a newline is added) and returns the answer line without it."""
        try:
            self.sock.sendall(line.encode() + b"\n")
        except (ConnectionResetError, BrokenPipeError) as error:
            raise LookupPeerGone(f"lookup socket lost before answering: {error.strerror}") from None
        return self.read_line()

    def read_line(self):
        while b"\n" not in self.buffer:
            try:
                data = self.sock.recv(4096)
            except ConnectionResetError as error:
                if self.buffer:
                    raise OriginUnknown(f"lookup socket lost mid-answer: {error.strerror}") from None
                raise LookupPeerGone(f"lookup socket lost before answering: {error.strerror}") from None
            if not data:
                if self.buffer:
                    raise OriginUnknown("lookup socket closed mid-answer")
                raise LookupPeerGone("lookup socket closed before answering")
            if len(self.buffer) > 4096:
                raise OriginUnknown("lookup answer too long")
            self.buffer += data
        line, _, self.buffer = self.buffer.partition(b"\n")
        return line.decode("utf-8", "replace")

    def lookup(self, proto, client, local):
        """(ip, port) of the original destination, or OriginUnknown carrying the ERR line."""
        answer = self.request(f"LOOKUP {proto} {client[0]} {client[1]} {local[0]} {local[1]}")
        words = answer.split()
        if len(words) == 3 and words[0] == "OK" and words[2].isdigit():
            return words[1], int(words[2])
        raise OriginUnknown(answer)


def kernel_tcp_original_dst(sock):
    """getsockopt(SO_ORIGINAL_DST) on an accepted TCP socket, as (ip, port)."""
    try:
        if sock.family == socket.AF_INET6:
            raw = sock.getsockopt(socket.IPPROTO_IPV6, SO_ORIGINAL_DST, 28)  # sockaddr_in6
            port, = struct.unpack_from("!H", raw, 2)
            return socket.inet_ntop(socket.AF_INET6, raw[8:24]), port
        raw = sock.getsockopt(socket.SOL_IP, SO_ORIGINAL_DST, 16)  # sockaddr_in
        port, = struct.unpack_from("!H", raw, 2)
        return socket.inet_ntop(socket.AF_INET, raw[4:8]), port
    except OSError as error:
        raise OriginUnknown(f"SO_ORIGINAL_DST: {error.strerror}") from None


# ctnetlink (include/uapi/linux/netfilter/nfnetlink_conntrack.h)
NETLINK_NETFILTER = 12
NFNL_SUBSYS_CTNETLINK = 1
IPCTNL_MSG_CT_GET = 1
NLM_F_REQUEST = 1
NLMSG_ERROR = 2
NLA_F_NESTED = 0x8000
NLA_TYPE_MASK = 0x3FFF
CTA_TUPLE_ORIG, CTA_TUPLE_REPLY = 1, 2
CTA_TUPLE_IP, CTA_TUPLE_PROTO = 1, 2
CTA_IP_V4_SRC, CTA_IP_V4_DST, CTA_IP_V6_SRC, CTA_IP_V6_DST = 1, 2, 3, 4
CTA_PROTO_NUM, CTA_PROTO_SRC_PORT, CTA_PROTO_DST_PORT = 1, 2, 3


def _attribute(kind, payload):
    length = 4 + len(payload)
    return struct.pack("=HH", length, kind) + payload + b"\0" * (-length % 4)


def _attributes(data):
    found = {}
    offset = 0
    while offset + 4 <= len(data):
        length, kind = struct.unpack_from("=HH", data, offset)
        if length < 4:
            break
        found[kind & NLA_TYPE_MASK] = data[offset + 4:offset + length]
        offset += (length + 3) & ~3
    return found


def conntrack_original_dst(proto, client, local):
    """The ORIGINAL destination of the conntrack entry whose REPLY tuple is local -> client."""
    family = socket.AF_INET6 if ":" in local[0] else socket.AF_INET
    src_kind, dst_kind = (CTA_IP_V6_SRC, CTA_IP_V6_DST) if family == socket.AF_INET6 \
        else (CTA_IP_V4_SRC, CTA_IP_V4_DST)
    addresses = _attribute(src_kind, socket.inet_pton(family, local[0])) \
        + _attribute(dst_kind, socket.inet_pton(family, client[0]))
    ports = _attribute(CTA_PROTO_NUM, bytes([socket.getprotobyname(proto)])) \
        + _attribute(CTA_PROTO_SRC_PORT, struct.pack("!H", local[1])) \
        + _attribute(CTA_PROTO_DST_PORT, struct.pack("!H", client[1]))
    reply_tuple = _attribute(CTA_TUPLE_IP | NLA_F_NESTED, addresses) \
        + _attribute(CTA_TUPLE_PROTO | NLA_F_NESTED, ports)
    body = struct.pack("=BBH", family, 0, 0) + _attribute(CTA_TUPLE_REPLY | NLA_F_NESTED, reply_tuple)
    message_type = (NFNL_SUBSYS_CTNETLINK << 8) | IPCTNL_MSG_CT_GET
    message = struct.pack("=IHHII", 16 + len(body), message_type, NLM_F_REQUEST, 1, 0) + body

    with socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_NETFILTER) as sock:
        sock.settimeout(2.0)
        sock.bind((0, 0))
        sock.send(message)
        answer = sock.recv(65536)
    length, kind = struct.unpack_from("=IH", answer)
    if kind == NLMSG_ERROR:
        code, = struct.unpack_from("=i", answer, 16)
        raise OriginUnknown(f"conntrack: {os.strerror(-code) if code else 'no entry'}")
    original = _attributes(_attributes(answer[20:length]).get(CTA_TUPLE_ORIG, b""))
    ip = _attributes(original.get(CTA_TUPLE_IP, b"")).get(
        CTA_IP_V6_DST if family == socket.AF_INET6 else CTA_IP_V4_DST)
    port = _attributes(original.get(CTA_TUPLE_PROTO, b"")).get(CTA_PROTO_DST_PORT)
    if ip is None or port is None:
        raise OriginUnknown("conntrack: answer without an original destination")
    return socket.inet_ntop(family, ip), struct.unpack("!H", port)[0]
