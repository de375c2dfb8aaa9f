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
#include <linux/netfilter/nfnetlink_conntrack.h>

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

/* An IPCTNL_MSG_CT_GET request's netlink and nfnetlink headers, at the start of buffer. */
static struct nlmsghdr *put_get_header(void *buffer, uint16_t flags, uint32_t sequence, uint8_t family) {
    struct nlmsghdr *header = mnl_nlmsg_put_header(buffer);
    header->nlmsg_type = (NFNL_SUBSYS_CTNETLINK << 8) | IPCTNL_MSG_CT_GET;
    header->nlmsg_flags = flags;
    header->nlmsg_seq = sequence;
    struct nfgenmsg *message = mnl_nlmsg_put_extra_header(header, sizeof(struct nfgenmsg));
    message->nfgen_family = family;
    message->version = NFNETLINK_V0;
    message->res_id = 0;
    return header;
}

int nfqr_conntrack_get_request(void *buffer, size_t size, uint32_t sequence, int ipv6, uint8_t protocol,
                               const uint8_t *source, const uint8_t *destination, uint16_t source_port,
                               uint16_t destination_port) {
    if (size < 256) {
        errno = ENOBUFS;
        return -1;
    }
    /* Built with libmnl: libnetfilter_conntrack's builder always emits an ORIGINAL tuple, and
     * the kernel looks an entry up by the ORIGINAL tuple when there is one. The REPLY tuple
     * names the client as the proxy sees it (the NAT may have given it another port). */
    struct nlmsghdr *header = put_get_header(buffer, NLM_F_REQUEST | NLM_F_ACK, sequence, ipv6 ? AF_INET6 : AF_INET);
    struct nlattr *tuple = mnl_attr_nest_start(header, CTA_TUPLE_REPLY);
    struct nlattr *ip = mnl_attr_nest_start(header, CTA_TUPLE_IP);
    if (ipv6) {
        mnl_attr_put(header, CTA_IP_V6_SRC, 16, source);
        mnl_attr_put(header, CTA_IP_V6_DST, 16, destination);
    } else {
        mnl_attr_put(header, CTA_IP_V4_SRC, 4, source);
        mnl_attr_put(header, CTA_IP_V4_DST, 4, destination);
    }
    mnl_attr_nest_end(header, ip);
    struct nlattr *proto = mnl_attr_nest_start(header, CTA_TUPLE_PROTO);
    mnl_attr_put_u8(header, CTA_PROTO_NUM, protocol);
    mnl_attr_put_u16(header, CTA_PROTO_SRC_PORT, htons(source_port));
    mnl_attr_put_u16(header, CTA_PROTO_DST_PORT, htons(destination_port));
    mnl_attr_nest_end(header, proto);
    mnl_attr_nest_end(header, tuple);
    return (int)header->nlmsg_len;
}

int nfqr_conntrack_dump_request(void *buffer, size_t size, uint32_t sequence, uint32_t value, uint32_t mask) {
    /* nlmsghdr 16 + nfgenmsg 4 + CTA_MARK 8 + CTA_MARK_MASK 8, with room to spare. */
    if (size < 64) {
        errno = ENOBUFS;
        return -1;
    }
    struct nlmsghdr *header = put_get_header(buffer, NLM_F_REQUEST | NLM_F_DUMP, sequence, AF_UNSPEC); /* v4 and v6 */

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
