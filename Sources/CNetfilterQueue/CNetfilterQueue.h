// The system headers the Kernel module talks to the kernel with: libmnl, the libmnl-based
// (nfq_nlmsg_*) half of libnetfilter_queue, and the UAPI netlink headers for NFQUEUE and
// rtnetlink. Order matters: libnetfilter_queue's bundled copy of nfnetlink_queue.h is guarded
// by the same include guard as the kernel's, so the kernel's (newer) one is included first;
// and <netinet/in.h> comes before any linux/ header so linux/libc-compat.h leaves glibc's
// in_addr / in6_addr definitions alone (Swift's Glibc module has them too).
#ifndef NFQR_CNETFILTERQUEUE_H
#define NFQR_CNETFILTERQUEUE_H

#include <stdint.h>
#include <sys/types.h>
#include <sys/socket.h>
#include <netinet/in.h>
#include <libmnl/libmnl.h>
#include <linux/netlink.h>
#include <linux/netfilter.h>
#include <linux/netfilter/nfnetlink.h>
#include <linux/netfilter/nfnetlink_queue.h>
#include <libnetfilter_queue/libnetfilter_queue.h>
#include <linux/rtnetlink.h>
#include <linux/if_addr.h>

#endif
