#!/usr/bin/python3
"""Writes the seed corpora in Corpus/<target>/ (committed; rerun after changing a seed).

Seeds are small, valid inputs of each kind, so the fuzzers start from inputs that reach deep
into each parser instead of spending their first hours discovering an IPv4 header.
"""

import os
import struct

HERE = os.path.dirname(os.path.abspath(__file__))


def checksum(data):
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def tcp(flags=0x02, options=b"", payload=b"", sport=40000, dport=80):
    offset = (20 + len(options)) // 4
    return struct.pack("!HHIIBBHHH", sport, dport, 1, 0, offset << 4, flags, 65535, 0, 0) + options + payload


def udp(payload=b"hello", sport=40000, dport=53):
    return struct.pack("!HHHH", sport, dport, 8 + len(payload), 0) + payload


def with_l4_checksum(segment, offset, pseudo):
    value = checksum(pseudo + segment) or (0xFFFF if offset == 6 else 0)
    return segment[:offset] + struct.pack("!H", value) + segment[offset + 2:]


def ipv4(proto, segment, options=b"", src=bytes([192, 0, 2, 2]), dst=bytes([203, 0, 113, 10])):
    ihl = (20 + len(options)) // 4
    pseudo = src + dst + struct.pack("!BBH", 0, proto, len(segment))
    segment = with_l4_checksum(segment, 16 if proto == 6 else 6, pseudo)
    header = struct.pack("!BBHHHBBH4s4s", 0x40 | ihl, 0, 4 * ihl + len(segment), 1, 0x4000, 64, proto, 0, src, dst) + options
    header = header[:10] + struct.pack("!H", checksum(header)) + header[12:]
    return header + segment


def ipv6(proto, segment, extensions=b"", first=None):
    src = bytes.fromhex("20010db8000100000000000000000002")
    dst = bytes.fromhex("20010db8000300000000000000000010")
    pseudo = src + dst + struct.pack("!IxxxB", len(segment), proto)
    segment = with_l4_checksum(segment, 16 if proto == 6 else 6, pseudo)
    next_header = proto if first is None else first
    return struct.pack("!IHBB", 0x60000000, len(extensions) + len(segment), next_header, 64) + src + dst + extensions + segment


def hop_by_hop(next_header):
    return struct.pack("!BB", next_header, 0) + b"\x01\x04\0\0\0\0"  # PadN


def icmp_error(family, kind, code, quoted, rest=b"\0\0\x05\0", router=None):
    """An ICMP (IPv4) or ICMPv6 error quoting `quoted`, outer addresses: a router -> the quoted
    packet's source, so it reaches the daemon's related-traffic translation."""
    message = struct.pack("!BBH", kind, code, 0) + rest + quoted
    if family == 4:
        src, dst = bytes([198, 51, 100, 7]), quoted[12:16]
        message = message[:2] + struct.pack("!H", checksum(message)) + message[4:]
        header = struct.pack("!BBHHHBBH4s4s", 0x45, 0xc0, 20 + len(message), 1, 0, 64, 1, 0, src, dst)
        return header[:10] + struct.pack("!H", checksum(header)) + header[12:] + message
    src, dst = bytes.fromhex("20010db8000900000000000000000007"), quoted[8:24]
    pseudo = src + dst + struct.pack("!IxxxB", len(message), 58)
    message = message[:2] + struct.pack("!H", checksum(pseudo + message)) + message[4:]
    return struct.pack("!IHBB", 0x60000000, len(message), 58, 64) + src + dst + message


def reply_v4(segment, proto):
    """A proxy's reply as the client saw it: 203.0.113.10 -> 192.0.2.2."""
    return ipv4(proto, segment, src=bytes([203, 0, 113, 10]), dst=bytes([192, 0, 2, 2]))


PACKETS = {
    "ipv4-tcp-syn": ipv4(6, tcp(options=b"\x02\x04\x05\xb4\x01\x03\x03\x07")),
    "ipv4-tcp-data": ipv4(6, tcp(flags=0x18, payload=b"GET / HTTP/1.0\r\n\r\n")),
    "ipv4-options-udp": ipv4(17, udp(), options=b"\x01\x01\x01\x00"),
    "ipv4-udp-nochecksum": ipv4(17, udp())[:26] + b"\0\0" + ipv4(17, udp())[28:],
    "ipv6-tcp-syn": ipv6(6, tcp()),
    "ipv6-udp": ipv6(17, udp()),
    "ipv6-hbh-tcp": ipv6(6, tcp(), hop_by_hop(6), first=0),
    "ipv6-dstopts-udp": ipv6(17, udp(), hop_by_hop(17), first=60),
}
# Related traffic: errors quoting the packets above (RFC 792 8 bytes, more, all of it).
PACKETS.update({
    "icmp-frag-needed-tcp8": icmp_error(4, 3, 4, reply_v4(tcp(flags=0x10, sport=80, dport=40000, payload=b"x" * 40), 6)[:28]),
    "icmp-port-unreachable-udp": icmp_error(4, 3, 3, reply_v4(udp(sport=53, dport=40000), 17)),
    "icmp-time-exceeded-tcp": icmp_error(4, 11, 0, PACKETS["ipv4-tcp-data"], rest=b"\0" * 4),
    "icmpv6-packet-too-big-tcp": icmp_error(6, 2, 0, PACKETS["ipv6-tcp-syn"], rest=struct.pack("!I", 1280)),
    "icmpv6-port-unreachable-udp": icmp_error(6, 1, 4, PACKETS["ipv6-dstopts-udp"][:56]),
})


def netlink_packet_message(payload, packet_id=1):
    """One NFQNL_MSG_PACKET message: nlmsghdr, nfgenmsg, PACKET_HDR, MARK, IFINDEX_INDEV, PAYLOAD."""
    def attribute(kind, value):
        data = struct.pack("=HH", 4 + len(value), kind) + value
        return data + b"\0" * (-len(data) % 4)
    body = struct.pack("!BBH", 2, 0, 0)
    body += attribute(1, struct.pack("!IHB", packet_id, 0x0800, 0))  # NFQA_PACKET_HDR
    body += attribute(3, struct.pack("!I", 7))                         # NFQA_MARK
    body += attribute(5, struct.pack("!I", 3))                         # NFQA_IFINDEX_INDEV
    body += attribute(10, payload)                                     # NFQA_PAYLOAD
    return struct.pack("=IHHII", 16 + len(body), 3 << 8, 0, 0, 0) + body


def netlink_error(code):
    return struct.pack("=IHHIIi", 36, 2, 0, 0, 0, code) + b"\0" * 16


LOOKUP_LINES = [
    "LOOKUP tcp 192.0.2.2 40000 192.0.2.1 8080\n", "LOOKUP udp 2001:db8:1::2 5353 2001:db8:1::1 5353\n",
    "LOOKUPFD\n", "LIST JSON\n", "STATS\n", "EVENTS JSON\n", "VERSION\n",
    "OK 203.0.113.10 80\n", "ERR NOTFOUND\n", "ERR BADREQUEST bad port\n",
]


def write(target, name, data):
    folder = os.path.join(HERE, "Corpus", target)
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, name), "wb") as seed:
        seed.write(data)


def main():
    for name, packet in PACKETS.items():
        write("FuzzPacketParse", name, packet)
        # Choices for the rewrite: mode byte, port, then 16 address bytes (IPv4 uses the first 4).
        choices = bytes([0, 0x1f, 0x90]) + bytes([192, 0, 2, 1]) + bytes(12)
        if packet[0] >> 4 == 6:
            choices = bytes([1, 0x1f, 0x90]) + bytes.fromhex("20010db8000100000000000000000001")
        write("FuzzPacketRewrite", name, choices + packet)
    write("FuzzQueueMessages", "one-packet", b"\0" + netlink_packet_message(PACKETS["ipv4-tcp-syn"]))
    write("FuzzQueueMessages", "two-packets-and-ack", b"\0" + netlink_packet_message(PACKETS["ipv6-udp"], 2)
          + netlink_error(0) + netlink_packet_message(PACKETS["ipv4-tcp-data"], 3))
    write("FuzzQueueMessages", "rejected-verdict", b"\0" + netlink_error(-2))
    for index, line in enumerate(LOOKUP_LINES):
        write("FuzzLookupCodec", f"line-{index}", line.encode())
    with open(os.path.join(HERE, "..", "config", "nfq-redirect.toml"), "rb") as shipped:
        write("FuzzConfiguration", "shipped", shipped.read())
    write("FuzzConfiguration", "minimal", b'[[redirect]]\nproto = "udp"\nports = "53,5000-5010"\nto_port = 5353\n')


if __name__ == "__main__":
    main()
