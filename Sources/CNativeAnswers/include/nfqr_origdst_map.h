/*
 * The contract between nfq-redirectd and its cgroup/getsockopt program: the layout of one
 * entry of the answers map. Included by the BPF program (bpf/nfqr_origdst.bpf.c), the
 * loader (nfqr_native_answers.c) and, through the module map, Swift.
 *
 * Key: the proxy's connected socket as the kernel sees it, in the network namespace it
 * lives in. `local` is the socket's own end (the redirect target the daemon wrote as the
 * client's destination), `peer` the client. IPv4 addresses are stored IPv4-mapped
 * (::ffff:a.b.c.d) so that an IPv4 flow accepted on a dual-stack IPv6 socket finds the same
 * entry as one accepted on an IPv4 socket. Ports are in host order.
 *
 * Value: the original destination, as the kernel's getorigdst would return it. An IPv4
 * original destination is stored IPv4-mapped too; `family` says which sockaddr to build.
 * The port is in network order, ready for sin_port / sin6_port.
 *
 * Every field has a fixed size and explicit padding, so the C compiler of the BPF target and
 * of the host lay it out identically (checked by the _Static_asserts below).
 */
#ifndef NFQR_ORIGDST_MAP_H
#define NFQR_ORIGDST_MAP_H

#ifdef __bpf__
#include <linux/types.h>
typedef __u8 nfqr_u8;
typedef __u16 nfqr_u16;
typedef __u32 nfqr_u32;
typedef __u64 nfqr_u64;
#else
#include <stdint.h>
typedef uint8_t nfqr_u8;
typedef uint16_t nfqr_u16;
typedef uint32_t nfqr_u32;
typedef uint64_t nfqr_u64;
#endif

/* The socket option both levels use (SO_ORIGINAL_DST == IP6T_SO_ORIGINAL_DST == 80). */
#define NFQR_SO_ORIGINAL_DST 80

/* Family tags of nfqr_origdst_value.family (the kernel's AF_INET / AF_INET6). */
#define NFQR_FAMILY_INET 2
#define NFQR_FAMILY_INET6 10

struct nfqr_origdst_key {
    nfqr_u64 netns_cookie; /* SO_NETNS_COOKIE of the namespace the flow lives in */
    nfqr_u32 local_addr[4]; /* the proxy's end, network byte order, IPv4-mapped for IPv4 */
    nfqr_u32 peer_addr[4]; /* the client */
    nfqr_u16 local_port; /* host order */
    nfqr_u16 peer_port; /* host order */
    nfqr_u32 padding; /* always zero: part of the hashed key */
};

struct nfqr_origdst_value {
    nfqr_u32 addr[4]; /* network byte order, IPv4-mapped for IPv4 */
    nfqr_u16 port; /* network order */
    nfqr_u8 family; /* NFQR_FAMILY_INET or NFQR_FAMILY_INET6 */
    nfqr_u8 padding;
};

_Static_assert(sizeof(struct nfqr_origdst_key) == 48, "key layout");
_Static_assert(sizeof(struct nfqr_origdst_value) == 20, "value layout");

/* The program's name as the kernel lists it (BPF_OBJ_NAME_LEN is 16 with the NUL): how the
 * daemon finds a program an earlier run of it left attached. */
#define NFQR_ORIGDST_PROGRAM_NAME "nfqr_origdst"

#endif
