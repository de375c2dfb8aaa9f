/*
 * Answers written as the kernel's getorigdst / ipv6_getorigdst write them
 * (net/netfilter/nf_conntrack_proto.c), so that a proxy cannot tell the daemon's answer
 * from the kernel's.
 */
#include <netinet/in.h>
#include <linux/in6.h>
#include <string.h>

#include "nfqr_internal.h"

/* include/net/ipv6.h IPV6_FLOWINFO_MASK: traffic class and flow label, network order. */
#define FLOWINFO_MASK 0x0FFFFFFFu

bool nfqr_needs_scope_id(const nfqr_endpoint *address) {
    if (address->is_v4)
        return false;
    const uint8_t *a = address->addr;
    bool link_local_unicast = a[0] == 0xfe && (a[1] & 0xc0) == 0x80;
    /* Multicast of interface-local (1) or link-local (2) scope. */
    bool local_multicast = a[0] == 0xff && ((a[1] & 0x0f) == 1 || (a[1] & 0x0f) == 2);
    return link_local_unicast || local_multicast;
}

socklen_t nfqr_shape_original(int family, const nfqr_endpoint *original, uint32_t flowinfo, uint32_t scope_id,
                              struct sockaddr_storage *out) {
    if (family == AF_INET) {
        struct sockaddr_in sin;
        memset(&sin, 0, sizeof sin);
        sin.sin_family = AF_INET;
        sin.sin_port = htons(original->port);
        memcpy(&sin.sin_addr, original->addr, 4);
        memcpy(out, &sin, sizeof sin);
        return sizeof sin;
    }
    struct sockaddr_in6 sin6;
    memset(&sin6, 0, sizeof sin6);
    sin6.sin6_family = AF_INET6;
    sin6.sin6_port = htons(original->port);
    sin6.sin6_flowinfo = flowinfo;
    sin6.sin6_scope_id = scope_id;
    if (original->is_v4) {
        sin6.sin6_addr.s6_addr[10] = 0xff;
        sin6.sin6_addr.s6_addr[11] = 0xff;
        memcpy(&sin6.sin6_addr.s6_addr[12], original->addr, 4);
    } else {
        memcpy(&sin6.sin6_addr, original->addr, 16);
    }
    memcpy(out, &sin6, sizeof sin6);
    return sizeof sin6;
}

void nfqr_kernel_sin6_fields(int fd, const nfqr_endpoint *original, uint32_t *flowinfo, uint32_t *scope_id) {
    nfqr_getsockopt_fn real_getsockopt = nfqr_real_getsockopt();

    /* The kernel copies the socket's own flow label (np->flow_label), which is non-zero on an
     * accepted socket that reflects its peer's label (net.ipv6.flowlabel_reflect or
     * IPV6_FL_F_REFLECT). IPV6_FLOWLABEL_MGR's GET reads that same field; ENOENT means none. */
    struct in6_flowlabel_req request;
    memset(&request, 0, sizeof request);
    request.flr_action = IPV6_FL_A_GET;
    socklen_t length = sizeof request;
    *flowinfo = 0;
    if (real_getsockopt(fd, IPPROTO_IPV6, IPV6_FLOWLABEL_MGR, &request, &length) == 0)
        *flowinfo = request.flr_label & htonl(FLOWINFO_MASK);

    /* ipv6_iface_scope_id(): the bound interface, for addresses that need a scope only. */
    *scope_id = 0;
    if (nfqr_needs_scope_id(original)) {
        int bound = 0;
        length = sizeof bound;
        if (real_getsockopt(fd, SOL_SOCKET, SO_BINDTOIFINDEX, &bound, &length) == 0 && bound > 0)
            *scope_id = (uint32_t)bound;
    }
}
