// The system headers the Kernel module reads conntrack events with: libnetfilter_conntrack
// (its BPF socket filter generator, nfct_filter_*, and its dump-request filter,
// nfct_filter_dump_*) and libmnl to build the dump request around it. The events themselves
// are parsed in Swift (Sources/Kernel/Conntrack/ConntrackMessages.swift): the library's
// parser exit()s the process on an attribute of unexpected size. <netinet/in.h> comes first
// so linux/libc-compat.h leaves glibc's in_addr / in6_addr alone. The kernel's UAPI headers
// come before the library's: libnfnetlink and libnetfilter_conntrack bundle older copies
// under the same include guards, and the Kernel module also imports CNetfilterQueue, whose
// definitions (the kernel's) must be the same ones.
#ifndef NFQR_CCONNTRACK_H
#define NFQR_CCONNTRACK_H

#include <stdint.h>
#include <sys/types.h>
#include <sys/socket.h>
#include <netinet/in.h>
#include <libmnl/libmnl.h>
#include <linux/netlink.h>
#include <linux/netfilter.h>
#include <linux/netfilter/nfnetlink.h>
#include <linux/netfilter/nfnetlink_conntrack.h>
#include <linux/netfilter/nf_conntrack_common.h>
#include <libnetfilter_conntrack/libnetfilter_conntrack.h>

#endif
