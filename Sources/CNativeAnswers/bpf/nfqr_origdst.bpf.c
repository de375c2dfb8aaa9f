// SPDX-License-Identifier: (GPL-2.0-only OR Apache-2.0)
/*
 * nfqr_origdst: the kernel answers getsockopt(SO_ORIGINAL_DST) for flows nfq-redirectd
 * redirected, to every process, with nothing preloaded.
 *
 * Attached as a cgroup/getsockopt program (Documentation/bpf/prog_cgroup_sockopt.rst) with
 * BPF_F_ALLOW_MULTI, so it runs after the kernel's own getsockopt and after or beside other
 * programs. For SOL_IP/SO_ORIGINAL_DST and SOL_IPV6/IP6T_SO_ORIGINAL_DST on a TCP socket of
 * the daemon's network namespace whose (local, peer) pair is in the answers map, it writes the
 * original destination into the caller's buffer and turns the kernel's error into success.
 * Everything else is returned exactly as the kernel answered it:
 *   - other levels and options, other protocols (the kernel's ENOPROTOOPT), other namespaces;
 *   - a buffer shorter than the sockaddr (the kernel's EINVAL, checked before its lookup);
 *   - SOL_IP on an IPv6 flow or SOL_IPV6 on an IPv4 one (the kernel looks up the other
 *     family's conntrack there and finds nothing);
 *   - any pair the daemon did not redirect (kernel-NATed flows keep the kernel's answer).
 * Like the kernel's getorigdst, it leaves *optlen as the caller passed it.
 *
 * The map is written only by the daemon (no fd is handed out, nothing is pinned): an entry
 * is there before the verdict for the SYN that creates its flow, and leaves with the flow.
 */
#include <linux/bpf.h>
#include <linux/in.h>
#include <linux/in6.h>
#include <linux/socket.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#include "../include/nfqr_origdst_map.h"

#define SOL_IP 0
#define SOL_IPV6 41
#define AF_INET 2
#define AF_INET6 10
/* The kernel's temporary buffer is at most a page; a longer optlen must be shrunk to count. */
#define SOCKOPT_BUFFER_MAX 4096

char LICENSE[] SEC("license") = "Dual BSD/GPL";

/* Set by the daemon before the program is loaded: the namespace whose flows it answers for.
 * The daemon that finds this program attached reads it back to know the program is its own. */
const volatile __u64 owner_netns_cookie = 0;

struct {
    __uint(type, BPF_MAP_TYPE_HASH);
    __uint(map_flags, BPF_F_NO_PREALLOC);
    __uint(max_entries, 262144); /* set to the daemon's table limit before loading */
    __type(key, struct nfqr_origdst_key);
    __type(value, struct nfqr_origdst_value);
} nfqr_answers SEC(".maps");

static __always_inline void map_ipv4(__u32 address[4], __u32 ipv4) {
    address[0] = 0;
    address[1] = 0;
    address[2] = bpf_htonl(0x0000ffff);
    address[3] = ipv4;
}

static __always_inline int is_ipv4_mapped(const __u32 address[4]) {
    return address[0] == 0 && address[1] == 0 && address[2] == bpf_htonl(0x0000ffff);
}

SEC("cgroup/getsockopt")
int nfqr_origdst(struct bpf_sockopt *ctx) {
    if (ctx->optname != NFQR_SO_ORIGINAL_DST)
        return 1;
    int level = ctx->level;
    if (level != SOL_IP && level != SOL_IPV6)
        return 1;
    struct bpf_sock *sk = ctx->sk;
    if (!sk || sk->protocol != IPPROTO_TCP)
        return 1;
    __u64 cookie = bpf_get_netns_cookie(ctx);
    if (cookie != owner_netns_cookie)
        return 1;

    struct nfqr_origdst_key key = {};
    key.netns_cookie = cookie;
    __u32 family = sk->family;
    if (family == AF_INET) {
        if (level != SOL_IP)
            return 1;
        map_ipv4(key.local_addr, sk->src_ip4);
        map_ipv4(key.peer_addr, sk->dst_ip4);
    } else if (family == AF_INET6) {
        key.local_addr[0] = sk->src_ip6[0];
        key.local_addr[1] = sk->src_ip6[1];
        key.local_addr[2] = sk->src_ip6[2];
        key.local_addr[3] = sk->src_ip6[3];
        key.peer_addr[0] = sk->dst_ip6[0];
        key.peer_addr[1] = sk->dst_ip6[1];
        key.peer_addr[2] = sk->dst_ip6[2];
        key.peer_addr[3] = sk->dst_ip6[3];
        /* SOL_IP on a dual-stack socket answers for its IPv4-mapped flows only, SOL_IPV6 for
         * its real IPv6 ones: the kernel's getorigdst / ipv6_getorigdst do the same. */
        if ((level == SOL_IP) != is_ipv4_mapped(key.local_addr))
            return 1;
    } else {
        return 1;
    }
    key.local_port = (__u16)sk->src_port;
    key.peer_port = bpf_ntohs((__u16)sk->dst_port);

    struct nfqr_origdst_value *answer = bpf_map_lookup_elem(&nfqr_answers, &key);
    if (!answer)
        return 1;

    void *optval = ctx->optval;
    void *end = ctx->optval_end;
    __u32 written;
    if (level == SOL_IP) {
        if (answer->family != NFQR_FAMILY_INET)
            return 1;
        struct sockaddr_in *sin = optval;
        if ((void *)(sin + 1) > end)
            return 1; /* shorter than a sockaddr_in: the kernel's EINVAL stands */
        sin->sin_family = AF_INET;
        sin->sin_port = answer->port;
        sin->sin_addr.s_addr = answer->addr[3];
        __builtin_memset(sin->__pad, 0, sizeof(sin->__pad));
        written = sizeof(*sin);
    } else {
        if (answer->family != NFQR_FAMILY_INET6)
            return 1;
        struct sockaddr_in6 *sin6 = optval;
        if ((void *)(sin6 + 1) > end)
            return 1; /* shorter than a sockaddr_in6: the kernel's EINVAL stands */
        sin6->sin6_family = AF_INET6;
        sin6->sin6_port = answer->port;
        sin6->sin6_flowinfo = 0;
        sin6->sin6_addr.in6_u.u6_addr32[0] = answer->addr[0];
        sin6->sin6_addr.in6_u.u6_addr32[1] = answer->addr[1];
        sin6->sin6_addr.in6_u.u6_addr32[2] = answer->addr[2];
        sin6->sin6_addr.in6_u.u6_addr32[3] = answer->addr[3];
        /* The kernel's ipv6_iface_scope_id: link-local (fe80::/10) and multicast addresses
         * carry the socket's bound interface, others none. */
        __u32 first = bpf_ntohl(answer->addr[0]);
        int scoped = (first & 0xffc00000) == 0xfe800000 || (first & 0xff000000) == 0xff000000;
        sin6->sin6_scope_id = scoped ? sk->bound_dev_if : 0;
        written = sizeof(*sin6);
    }
    /* A caller's length beyond the kernel's page-sized buffer would make the kernel discard
     * this answer; only then is *optlen shortened to the sockaddr. */
    if (ctx->optlen > SOCKOPT_BUFFER_MAX)
        ctx->optlen = written;
    /* Kept apart from the store above: merged into one 8-byte store the verifier rejects it. */
    asm volatile("" ::: "memory");
    ctx->retval = 0;
    return 1;
}
