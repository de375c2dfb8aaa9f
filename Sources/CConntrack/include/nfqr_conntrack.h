// libnetfilter_conntrack behind two plain functions, for Sources/Kernel/Conntrack.
//
// Why a shim and not a system-library module: the library's headers pull in libnfnetlink's
// and glibc's socket headers, and a second Clang module holding those beside CNetfilterQueue
// makes Swift lose glibc's MSG_* constants when the Kernel module is compiled with a cold
// module cache (every clean build). This header exposes only stdint types, so Swift never
// imports the library's headers; the .c file includes them as plain C.
#ifndef NFQR_CONNTRACK_H
#define NFQR_CONNTRACK_H

#include <stddef.h>
#include <stdint.h>

/// Attaches libnetfilter_conntrack's classic BPF socket filter (NFCT_FILTER_MARK) to the
/// ctnetlink event socket `fd`: the kernel then queues only the events of entries whose
/// `ctmark & mask == value` (CTA_MARK absent counts as 0), or with `negate` those whose
/// `ctmark & mask != value` (value 0: any bit of the mask set). Returns 0, or -1 with errno set.
int nfqr_conntrack_attach_mark_filter(int fd, uint32_t value, uint32_t mask, int negate);

/// Writes into `buffer` an IPCTNL_MSG_CT_GET dump request for both address families,
/// filtered by the kernel on `ctmark & mask == value` (CTA_MARK + CTA_MARK_MASK, as
/// NFCT_FILTER_DUMP_MARK builds them), with sequence number `sequence`. Returns the request's
/// length, or -1 with errno set (ENOBUFS: `size` is too small; it needs 64 bytes).
int nfqr_conntrack_dump_request(void *buffer, size_t size, uint32_t sequence, uint32_t value, uint32_t mask);

/// Writes into `buffer` an IPCTNL_MSG_CT_GET request (with NLM_F_ACK) for the one entry whose
/// REPLY tuple is `source`:`source_port` -> `destination`:`destination_port` of `protocol`;
/// `ipv6` says whether the addresses are 16 bytes (else 4), network order; ports host order.
/// Returns the request's length, or -1 with errno set (ENOBUFS: it needs 256 bytes).
int nfqr_conntrack_get_request(void *buffer, size_t size, uint32_t sequence, int ipv6, uint8_t protocol,
                               const uint8_t *source, const uint8_t *destination, uint16_t source_port,
                               uint16_t destination_port);

#endif
