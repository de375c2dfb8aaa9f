// Attribute walks for the two netlink families the daemon reads: NFQUEUE packet messages and
// rtnetlink address messages. Plain C with bounds checks and no library calls, so this
// target links without libmnl.
#ifndef NFQR_NETLINK_H
#define NFQR_NETLINK_H

#include <stddef.h>
#include <stdint.h>

#define NFQR_PARSE_OK 0
/// An attribute's length runs past the message, or a fixed-size attribute has the wrong size.
#define NFQR_PARSE_MALFORMED_ATTRIBUTE 1
/// No NFQA_PACKET_HDR: the packet cannot be given a verdict.
#define NFQR_PARSE_MISSING_PACKET_HEADER 2
/// No NFQA_PAYLOAD (the queue is not in copy-packet mode).
#define NFQR_PARSE_MISSING_PAYLOAD 3

/// What an NFQNL_MSG_PACKET message says about its packet. Integers are in host order.
struct nfqr_packet_fields {
    /// Nonzero when NFQA_PACKET_HDR was read (even if a later attribute was malformed).
    uint8_t has_packet_header;
    uint8_t hook;
    uint16_t hw_protocol;
    uint32_t packet_id;
    uint32_t mark;
    uint32_t input_interface;
    uint32_t output_interface;
    /// NFQA_SKB_INFO flags (NFQA_SKB_CSUMNOTREADY, NFQA_SKB_GSO, ...); 0 when absent.
    uint32_t skb_info;
    /// NFQA_CAP_LEN: the packet's real length when the payload was cut to the copy range;
    /// 0 when absent (the payload is the whole packet).
    uint32_t captured_length;
    /// Points into the caller's buffer (no copy); NULL when absent.
    const uint8_t *payload;
    uint32_t payload_length;
};

/// Parses the attributes of an NFQNL_MSG_PACKET message: `attributes` points just past the
/// nfgenmsg header and `length` bytes of it are readable. Returns an NFQR_PARSE_ code.
int nfqr_parse_packet_attributes(const void *attributes, size_t length, struct nfqr_packet_fields *out);

/// One RTM_NEWADDR / RTM_DELADDR message.
struct nfqr_interface_address {
    uint8_t family;
    uint8_t prefix_length;
    uint8_t scope;
    /// Nonzero when an address attribute (IFA_LOCAL, else IFA_ADDRESS) was present.
    uint8_t has_address;
    uint32_t interface_index;
    /// IFA_FLAGS when present (it carries the flags above bit 7), else ifa_flags.
    uint32_t flags;
    /// 4 bytes (AF_INET) or 16 (AF_INET6), network order.
    uint8_t address[16];
};

/// Parses an rtnetlink address message's payload (struct ifaddrmsg and its attributes).
/// Returns NFQR_PARSE_OK or NFQR_PARSE_MALFORMED_ATTRIBUTE.
int nfqr_parse_interface_address(const void *payload, size_t length, struct nfqr_interface_address *out);

#endif
