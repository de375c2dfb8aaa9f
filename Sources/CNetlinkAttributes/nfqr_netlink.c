#include "nfqr_netlink.h"

#include <string.h>
#include <arpa/inet.h>
#include <linux/netlink.h>
#include <linux/netfilter/nfnetlink_queue.h>
#include <linux/rtnetlink.h>
#include <linux/if_addr.h>

// Calls `visit` for each attribute wholly inside [start, start + length). Returns
// NFQR_PARSE_MALFORMED_ATTRIBUTE at the first attribute that does not fit, or whatever
// non-OK code `visit` returns.
typedef int (*nfqr_attribute_visitor)(uint16_t type, const uint8_t *data, uint32_t length, void *context);

static int nfqr_walk_attributes(const uint8_t *start, size_t length, nfqr_attribute_visitor visit, void *context) {
    size_t offset = 0;
    while (length - offset >= NLA_HDRLEN) {
        struct nlattr header;
        memcpy(&header, start + offset, sizeof header); // the buffer may be unaligned
        if (header.nla_len < NLA_HDRLEN || header.nla_len > length - offset)
            return NFQR_PARSE_MALFORMED_ATTRIBUTE;
        int status =
            visit(header.nla_type & NLA_TYPE_MASK, start + offset + NLA_HDRLEN, header.nla_len - NLA_HDRLEN, context);
        if (status != NFQR_PARSE_OK)
            return status;
        size_t step = NLA_ALIGN((size_t)header.nla_len);
        if (step >= length - offset)
            break;
        offset += step;
    }
    return NFQR_PARSE_OK;
}

static uint32_t nfqr_load_be32(const uint8_t *data) {
    uint32_t value;
    memcpy(&value, data, sizeof value);
    return ntohl(value);
}

static uint32_t nfqr_load_u32(const uint8_t *data) {
    uint32_t value;
    memcpy(&value, data, sizeof value);
    return value;
}

static int nfqr_visit_packet_attribute(uint16_t type, const uint8_t *data, uint32_t length, void *context) {
    struct nfqr_packet_fields *out = context;
    switch (type) {
    case NFQA_PACKET_HDR:
        if (length < sizeof(struct nfqnl_msg_packet_hdr))
            return NFQR_PARSE_MALFORMED_ATTRIBUTE;
        out->packet_id = nfqr_load_be32(data);
        out->hw_protocol = (uint16_t)((data[4] << 8) | data[5]);
        out->hook = data[6];
        out->has_packet_header = 1;
        break;
    case NFQA_MARK:
    case NFQA_IFINDEX_INDEV:
    case NFQA_IFINDEX_OUTDEV:
    case NFQA_SKB_INFO:
    case NFQA_CAP_LEN:
        if (length != sizeof(uint32_t))
            return NFQR_PARSE_MALFORMED_ATTRIBUTE;
        uint32_t value = nfqr_load_be32(data);
        if (type == NFQA_MARK)
            out->mark = value;
        else if (type == NFQA_IFINDEX_INDEV)
            out->input_interface = value;
        else if (type == NFQA_IFINDEX_OUTDEV)
            out->output_interface = value;
        else if (type == NFQA_SKB_INFO)
            out->skb_info = value;
        else
            out->captured_length = value;
        break;
    case NFQA_PAYLOAD:
        out->payload = data;
        out->payload_length = length;
        break;
    default: break; // attributes the daemon does not use (timestamps, hardware address, ...)
    }
    return NFQR_PARSE_OK;
}

int nfqr_parse_packet_attributes(const void *attributes, size_t length, struct nfqr_packet_fields *out) {
    memset(out, 0, sizeof *out);
    int status = nfqr_walk_attributes(attributes, length, nfqr_visit_packet_attribute, out);
    if (status != NFQR_PARSE_OK)
        return status;
    if (!out->has_packet_header)
        return NFQR_PARSE_MISSING_PACKET_HEADER;
    if (out->payload == NULL)
        return NFQR_PARSE_MISSING_PAYLOAD;
    return NFQR_PARSE_OK;
}

struct nfqr_address_context {
    struct nfqr_interface_address *out;
    int has_local;
};

static int nfqr_visit_address_attribute(uint16_t type, const uint8_t *data, uint32_t length, void *context) {
    struct nfqr_address_context *state = context;
    struct nfqr_interface_address *out = state->out;
    size_t address_length = out->family == 2 /* AF_INET */ ? 4 : 16;
    switch (type) {
    case IFA_LOCAL:
    case IFA_ADDRESS:
        if (length != address_length)
            return NFQR_PARSE_MALFORMED_ATTRIBUTE;
        // IFA_LOCAL is the local end; IFA_ADDRESS is the peer on point-to-point links, and
        // the address itself otherwise (always for IPv6 without a peer).
        if (type == IFA_ADDRESS && state->has_local)
            break;
        memcpy(out->address, data, address_length);
        out->has_address = 1;
        if (type == IFA_LOCAL)
            state->has_local = 1;
        break;
    case IFA_FLAGS:
        if (length != sizeof(uint32_t))
            return NFQR_PARSE_MALFORMED_ATTRIBUTE;
        out->flags = nfqr_load_u32(data); // host order, like ifa_flags
        break;
    default: break;
    }
    return NFQR_PARSE_OK;
}

int nfqr_parse_interface_address(const void *payload, size_t length, struct nfqr_interface_address *out) {
    memset(out, 0, sizeof *out);
    if (length < sizeof(struct ifaddrmsg))
        return NFQR_PARSE_MALFORMED_ATTRIBUTE;
    struct ifaddrmsg header;
    memcpy(&header, payload, sizeof header);
    if (header.ifa_family != 2 /* AF_INET */ && header.ifa_family != 10 /* AF_INET6 */)
        return NFQR_PARSE_MALFORMED_ATTRIBUTE;
    out->family = header.ifa_family;
    out->prefix_length = header.ifa_prefixlen;
    out->scope = header.ifa_scope;
    out->interface_index = header.ifa_index;
    out->flags = header.ifa_flags;
    struct nfqr_address_context state = {out, 0};
    size_t offset = NLMSG_ALIGN(sizeof(struct ifaddrmsg));
    if (offset > length)
        return NFQR_PARSE_MALFORMED_ATTRIBUTE;
    return nfqr_walk_attributes((const uint8_t *)payload + offset, length - offset, nfqr_visit_address_attribute,
                                &state);
}
