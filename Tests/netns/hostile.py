#!/usr/bin/python3
"""Hostile packets for the robustness suite, sent by scapy from the client namespace C.

    hostile.py IFACE ROUTER_MAC          then "NAME [SOURCE-PORT]" lines on stdin;
                                         answers "sent <name> <count>" per line.

Frames are built whole (Ethernet included) and sent with sendp, so no kernel on the sending
side repairs a lie (a raw IP socket would fix the IPv4 length and checksum). Every packet is
addressed to a redirected port on the remote addresses, so it reaches R's NFQUEUE rules
unless R's own IP layer refuses it first. `EXPECTED` says where each category must be
counted: by the daemon (a `nfqr_...` stats key prefix) or by R's kernel (`snmp:<Group>.<Name>`);
any one of the alternatives counting every packet sent passes.
"""

import random
import struct
import sys

from scapy.all import (ICMP, IP, IPv6, TCP, UDP, Ether, ICMPv6DestUnreach, ICMPv6PacketTooBig, IPv6ExtHdrDestOpt,
                       IPv6ExtHdrFragment, IPv6ExtHdrHopByHop, IPv6ExtHdrRouting, Raw, conf, sendp)

from harness.topology import CLIENT_V4, CLIENT_V6, REMOTE_V4, REMOTE_V6

conf.verb = 0
COPIES = 20   # of each category, with varying source ports

def reason(label):
    return f"nfqr_packet_errors_total{{reason={label},"


REWRITTEN = "nfqr_rewrites_total{direction=original}"
# Synthetic: IPv6 packets R received that went nowhere (neither forwarded nor delivered).
SWALLOWED_V6 = "snmp:Ip6.swallowed"
UNTRACKED = "nfqr_untracked_packets_total"


def v4(**fields):
    return IP(src=CLIENT_V4, dst=REMOTE_V4, **fields)


def v6(**fields):
    return IPv6(src=CLIENT_V6, dst=REMOTE_V6, **fields)


def syn(port, **fields):
    return TCP(sport=port, dport=80, flags="S", seq=random.getrandbits(32), **fields)


def raw_tcp(port, offset_words, flags=0x02, extra=b""):
    """A TCP header by hand, so the data offset can lie (checksum left to the IP layer: 0)."""
    return struct.pack("!HHIIBBHHH", port, 80, random.getrandbits(32), 0, offset_words << 4, flags, 65535, 0, 0) + extra


def bytes_of(packet):
    return bytes(packet)


def patch(data, offset, value_bytes):
    return data[:offset] + value_bytes + data[offset + len(value_bytes):]


BLIND_RESET = "tcp-rst-out-of-window"
# ICMP errors quoting the established flow's port: the flow must not notice either.
FORGED_ERRORS = ("icmp-frag-needed-forged-about-the-flow", "icmp-error-quoting-the-flow-the-wrong-way")
TRANSLATED = "nfqr_icmp_errors_total{result=translated}"
UNMATCHED = "nfqr_icmp_errors_total{result=unmatched}"


def reply_quote(port, proto=6, v6_quote=False):
    """A packet the client could have got from the remote (remote:80 -> client:port), as an
    error would quote it: the IP header and `length` bytes of transport."""
    if v6_quote:
        return bytes(IPv6(src=REMOTE_V6, dst=CLIENT_V6) / TCP(sport=80, dport=port, flags="A",
                                                                 seq=random.getrandbits(32)))
    transport = TCP(sport=80, dport=port, flags="A", seq=random.getrandbits(32)) if proto == 6 \
        else UDP(sport=53, dport=port)
    return bytes(IP(src=REMOTE_V4, dst=CLIENT_V4) / transport / Raw(b"r" * 32))


def icmp4(quote, kind=3, code=4):
    """An ICMP error from the client to the remote address: R queues it in raw PREROUTING."""
    return bytes_of(v4() / ICMP(type=kind, code=code, nexthopmtu=1280) / Raw(quote))

# name -> (frame builder taking a source port, where it must be counted)
CORPUS = {
    # Sent with the port of an established flow (a forged reset): the flow must not notice.
    BLIND_RESET: (lambda p: bytes_of(v4() / TCP(sport=p, dport=80, flags="R", seq=random.getrandbits(32))),
                  ["nfqr_flows_blind_resets_total"]),
    # --- IPv4 header lies: R's ip_rcv refuses them before any hook ---------------------------
    "ipv4-truncated-header": (lambda p: bytes_of(v4() / syn(p))[:12],
                              ["snmp:Ip.InHdrErrors", "snmp:Ip.InTruncatedPkts", reason("truncated")]),
    "ipv4-ihl-below-5": (lambda p: patch(bytes_of(v4() / syn(p)), 0, b"\x43"),
                         ["snmp:Ip.InHdrErrors", reason("bad_ihl")]),
    "ipv4-total-length-beyond-frame": (lambda p: patch(bytes_of(v4() / syn(p)), 2, struct.pack("!H", 1400)),
                                       ["snmp:Ip.InTruncatedPkts", "snmp:Ip.InHdrErrors", reason("truncated")]),
    "ipv4-total-length-below-header": (lambda p: patch(bytes_of(v4() / syn(p)), 2, struct.pack("!H", 12)),
                                       ["snmp:Ip.InHdrErrors", reason("length_mismatch")]),
    "ipv4-bad-header-checksum": (lambda p: bytes_of(v4(chksum=0x1234) / syn(p)),
                                 ["snmp:Ip.InCsumErrors", "snmp:Ip.InHdrErrors"]),
    "ipv4-stray-first-fragment": (lambda p: bytes_of(v4(flags="MF", id=p) / syn(p) / Raw(b"x" * 64)),
                                  ["snmp:Ip.ReasmReqds", reason("fragment")]),
    # No ports, so the rules' tcp match (and the kernel's REDIRECT) cannot take it: forwarded as is,
    # unless conntrack's defragmentation holds it.
    "ipv4-stray-later-fragment": (lambda p: bytes_of(v4(frag=100, id=p, proto=6) / Raw(b"y" * 64)),
                                  ["snmp:Ip.ReasmReqds", reason("fragment"), "snmp:Ip.ForwDatagrams"]),
    # --- transport lies: past R's IP layer, the daemon's parser refuses them ------------------
    "tcp-header-truncated": (lambda p: bytes_of(v4(proto=6) / Raw(raw_tcp(p, 5)[:10])),
                             [reason("transport_truncated")]),
    "tcp-data-offset-below-5": (lambda p: bytes_of(v4(proto=6) / Raw(raw_tcp(p, 3))),
                                [reason("bad_tcp_data_offset")]),
    "tcp-data-offset-beyond-segment": (lambda p: bytes_of(v4(proto=6) / Raw(raw_tcp(p, 15))),
                                       [reason("bad_tcp_data_offset")]),
    "udp-length-beyond-payload": (lambda p: bytes_of(v4() / UDP(sport=p, dport=53, len=200) / Raw(b"q" * 8)),
                                  [reason("bad_udp_length")]),
    "udp-length-below-header": (lambda p: bytes_of(v4() / UDP(sport=p, dport=53, len=4) / Raw(b"q" * 8)),
                                [reason("bad_udp_length")]),
    "ipv6-tcp-header-truncated": (lambda p: bytes_of(v6(nh=6) / Raw(raw_tcp(p, 5)[:12])),
                                  [reason("transport_truncated")]),
    # --- IPv6 extension headers: chains, misplaced and truncated headers, fragments ----------
    "ipv6-extension-chain-too-long": (lambda p: bytes_of(v6() / _chain(12) / syn(p)),
                                      [reason("ipv6_extension_chain_too_long")]),
    # ip6tables' `-p tcp` cannot walk past it and drops the packet while matching (hotdrop),
    # before any queue, counted by no kernel counter: received, then neither forwarded nor delivered.
    "ipv6-extension-truncated": (lambda p: bytes_of(v6() / IPv6ExtHdrDestOpt(nh=6, len=200, autopad=0) / syn(p)),
                                 [reason("ipv6_extension_truncated"), "snmp:Ip6.Ip6InHdrErrors", SWALLOWED_V6]),
    "ipv6-hop-by-hop-misplaced": (lambda p: bytes_of(v6() / IPv6ExtHdrDestOpt() / IPv6ExtHdrHopByHop() / syn(p)),
                                  [reason("ipv6_hop_by_hop_misplaced")]),
    "ipv6-stray-fragment": (lambda p: bytes_of(v6() / IPv6ExtHdrFragment(m=1, id=p) / syn(p) / Raw(b"z" * 64)),
                            ["snmp:Ip6.Ip6ReasmReqds", reason("fragment")]),
    "ipv6-routing-in-progress": (lambda p: bytes_of(v6() / IPv6ExtHdrRouting(addresses=["2001:db8:2::2"], segleft=1)
                                                    / syn(p)),
                                 [reason("ipv6_routing_in_progress"), "snmp:Ip6.Ip6InHdrErrors"]),
    "ipv6-payload-length-beyond-frame": (lambda p: bytes_of(v6(plen=1200) / syn(p)),
                                         ["snmp:Ip6.Ip6InTruncatedPkts", "snmp:Ip6.Ip6InHdrErrors"]),
    "ipv6-mapped-source": (lambda p: bytes_of(IPv6(src="::ffff:192.0.2.2", dst=REMOTE_V6) / syn(p)),
                           [reason("mapped_address_in_ipv6"), "snmp:Ip6.Ip6InAddrErrors", "snmp:Ip6.Ip6InHdrErrors"]),
    # --- related traffic: ICMP errors, malformed, forged, or of no flow ------------------------
    # Errors from the client about a reply of the established flow (the client may send one):
    # translated to the proxy, whose kernel ignores a quoted sequence number it never sent.
    FORGED_ERRORS[0]: (lambda p: icmp4(reply_quote(p)[:48]), [TRANSLATED]),
    # The flow's own original tuple quoted from the client's side: no flow is that way round.
    FORGED_ERRORS[1]: (lambda p: icmp4(bytes(IP(src=CLIENT_V4, dst=REMOTE_V4) / TCP(sport=p, dport=80))[:28]),
                       [UNMATCHED]),
    "icmp-error-of-no-flow": (lambda p: icmp4(reply_quote(p, proto=17)[:28], code=3), [UNMATCHED]),
    "icmp-error-quote-truncated": (lambda p: icmp4(reply_quote(p)[:27]), [reason("icmp_truncated")]),
    "icmp-error-quote-other-family": (lambda p: icmp4(reply_quote(p, v6_quote=True)[:48]), [reason("icmp_bad_quote")]),
    "icmp-error-quote-ihl-below-5": (lambda p: icmp4(patch(reply_quote(p)[:28], 0, b"\x44")), [reason("icmp_bad_quote")]),
    "icmpv6-packet-too-big-quote-truncated": (
        lambda p: bytes_of(v6() / ICMPv6PacketTooBig(mtu=1280) / Raw(reply_quote(p, v6_quote=True)[:47])),
        [reason("icmp_truncated")]),
    "icmpv6-error-of-no-flow": (
        lambda p: bytes_of(v6() / ICMPv6DestUnreach(code=4) / Raw(reply_quote(p, v6_quote=True))), [UNMATCHED]),
    # --- well-formed but odd TCP: the daemon tracks or ignores them, and survives -------------
    "tcp-option-garbage": (lambda p: bytes_of(v4() / syn(p, options=[(2, b""), (3, b"\xff" * 3), (255, b"\x00" * 30)])),
                           [REWRITTEN]),
    "tcp-option-length-lies": (lambda p: bytes_of(v4() / TCP(sport=p, dport=80, flags="S", dataofs=8)
                                                  / Raw(b"\x02\x00\x08\xff\x05\x01\x00\x00\x13\x02\x00\x00")),
                               [REWRITTEN]),
    "tcp-syn-fin": (lambda p: bytes_of(v4() / TCP(sport=p, dport=80, flags="SF")), [UNTRACKED]),
    "tcp-rst-without-flow": (lambda p: bytes_of(v4() / TCP(sport=p, dport=80, flags="R")), [UNTRACKED]),
    "tcp-ack-without-flow": (lambda p: bytes_of(v4() / TCP(sport=p, dport=80, flags="A") / Raw(b"data")), [UNTRACKED]),
    "tcp-no-flags": (lambda p: bytes_of(v6() / TCP(sport=p, dport=80, flags="")), [UNTRACKED]),
}


def _chain(count):
    chain = IPv6ExtHdrDestOpt()
    for _ in range(count - 1):
        chain = chain / IPv6ExtHdrDestOpt()
    return chain


def main():
    iface, router_mac = sys.argv[1], sys.argv[2]
    for line in sys.stdin:
        words = line.split()   # NAME [SOURCE-PORT]
        if not words:
            continue
        name = words[0]
        build, _ = CORPUS[name]
        frames = []
        for _ in range(COPIES):
            payload = build(int(words[1]) if len(words) > 1 else 20000 + random.randrange(40000))
            ethertype = 0x86DD if payload[0] >> 4 == 6 else 0x0800
            frames.append(Ether(dst=router_mac, type=ethertype) / Raw(payload))
        sendp(frames, iface=iface)
        print(f"sent {name} {len(frames)}", flush=True)


if __name__ == "__main__":
    main()
