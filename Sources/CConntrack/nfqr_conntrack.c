/*
 * The two calls the Kernel module makes into libnetfilter_conntrack (see nfqr_conntrack.h
 * for why they sit behind a shim). Both run at set-up or resync time, never per event.
 *
 * Contract: no allocation survives a call (the library's filter objects are created and
 * destroyed inside it); errno is set on every -1; nothing here reads a kernel message (the
 * events are parsed in Swift, with bounds checks: the library's parser exit()s the process
 * on an attribute of unexpected size).
 */
#include "nfqr_conntrack.h"

#include <arpa/inet.h>
#include <errno.h>
#include <string.h>
#include <sys/socket.h>
#include <netinet/in.h>
#include <libmnl/libmnl.h>
#include <libnetfilter_conntrack/libnetfilter_conntrack.h>

int nfqr_conntrack_attach_mark_filter(int fd, uint32_t value, uint32_t mask, int negate) {
    struct nfct_filter *filter = nfct_filter_create();
    if (filter == NULL)
        return -1;
    struct nfct_filter_dump_mark mark = {.val = value, .mask = mask};
    nfct_filter_add_attr(filter, NFCT_FILTER_MARK, &mark);
    if (negate && nfct_filter_set_logic(filter, NFCT_FILTER_MARK, NFCT_FILTER_LOGIC_NEGATIVE) != 0) {
        int saved = errno;
        nfct_filter_destroy(filter);
        errno = saved;
        return -1;
    }
    int result = nfct_filter_attach(fd, filter);
    int saved = errno;
    nfct_filter_destroy(filter);
    errno = saved;
    return result == 0 ? 0 : -1;
}

int nfqr_conntrack_get_request(void *buffer, size_t size, uint32_t sequence, int ipv6, uint8_t protocol,
                               const uint8_t *source, const uint8_t *destination, uint16_t source_port,
                               uint16_t destination_port) {
    if (size < 256) {
        errno = ENOBUFS;
        return -1;
    }
    struct nf_conntrack *ct = nfct_new();
    if (ct == NULL)
        return -1;
    nfct_set_attr_u8(ct, ATTR_L3PROTO, ipv6 ? AF_INET6 : AF_INET);
    if (ipv6) {
        nfct_set_attr(ct, ATTR_IPV6_SRC, source);
        nfct_set_attr(ct, ATTR_IPV6_DST, destination);
    } else {
        uint32_t from, to;
        memcpy(&from, source, 4);
        memcpy(&to, destination, 4);
        nfct_set_attr_u32(ct, ATTR_IPV4_SRC, from);
        nfct_set_attr_u32(ct, ATTR_IPV4_DST, to);
    }
    nfct_set_attr_u8(ct, ATTR_L4PROTO, protocol);
    nfct_set_attr_u16(ct, ATTR_PORT_SRC, htons(source_port));
    nfct_set_attr_u16(ct, ATTR_PORT_DST, htons(destination_port));

    struct nlmsghdr *header = mnl_nlmsg_put_header(buffer);
    header->nlmsg_type = (NFNL_SUBSYS_CTNETLINK << 8) | IPCTNL_MSG_CT_GET;
    header->nlmsg_flags = NLM_F_REQUEST | NLM_F_ACK;
    header->nlmsg_seq = sequence;
    struct nfgenmsg *family = mnl_nlmsg_put_extra_header(header, sizeof(struct nfgenmsg));
    family->nfgen_family = ipv6 ? AF_INET6 : AF_INET;
    family->version = NFNETLINK_V0;
    family->res_id = 0;
    int result = nfct_nlmsg_build(header, ct);
    int saved = errno;
    nfct_destroy(ct);
    errno = saved;
    return result == 0 ? (int)header->nlmsg_len : -1;
}

int nfqr_conntrack_dump_request(void *buffer, size_t size, uint32_t sequence, uint32_t value, uint32_t mask) {
    /* nlmsghdr 16 + nfgenmsg 4 + CTA_MARK 8 + CTA_MARK_MASK 8, with room to spare. */
    if (size < 64) {
        errno = ENOBUFS;
        return -1;
    }
    struct nlmsghdr *header = mnl_nlmsg_put_header(buffer);
    header->nlmsg_type = (NFNL_SUBSYS_CTNETLINK << 8) | IPCTNL_MSG_CT_GET;
    header->nlmsg_flags = NLM_F_REQUEST | NLM_F_DUMP;
    header->nlmsg_seq = sequence;
    struct nfgenmsg *family = mnl_nlmsg_put_extra_header(header, sizeof(struct nfgenmsg));
    family->nfgen_family = AF_UNSPEC; /* IPv4 and IPv6 entries */
    family->version = NFNETLINK_V0;
    family->res_id = 0;

    struct nfct_filter_dump *filter = nfct_filter_dump_create();
    if (filter == NULL)
        return -1;
    struct nfct_filter_dump_mark mark = {.val = value, .mask = mask};
    nfct_filter_dump_set_attr(filter, NFCT_FILTER_DUMP_MARK, &mark);
    int result = nfct_nlmsg_build_filter(header, filter);
    int saved = errno;
    nfct_filter_dump_destroy(filter);
    errno = saved;
    return result == 0 ? (int)header->nlmsg_len : -1;
}
