/*
 * nfq_redirect.h — C client of the nfq-redirect lookup socket.
 *
 * Asks the daemon where a redirected connection was really going, the userspace twin of
 * getsockopt(SO_ORIGINAL_DST). Plain C and libc only: link libnfq-redirect-client.a (or
 * LD_PRELOAD libnfq-redirect-preload.so to make getsockopt itself answer from the daemon).
 *
 * Configuration is read once, when the library is loaded:
 *   NFQ_REDIRECT_SOCKET      lookup socket path (default /run/nfq-redirect/lookup.sock)
 *   NFQ_REDIRECT_TIMEOUT_MS  budget for one lookup, connect + request + answer (default 1000)
 *
 * Every function is thread-safe and may be called from a signal handler (see README.md in
 * this folder for the exact guarantee). Each thread keeps its own connection to the daemon;
 * a forked child opens its own.
 */
#ifndef NFQ_REDIRECT_H
#define NFQ_REDIRECT_H

#include <sys/socket.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Exported even when built with -fvisibility=hidden (a shared object linking the archive). */
#if defined(__GNUC__)
#define NFQR_API __attribute__((visibility("default")))
#else
#define NFQR_API
#endif

/* The daemon's answer to one lookup, or why there is none. */
typedef enum nfqr_answer {
    NFQR_FOUND = 0, /* OK: the original destination was written to *out */
    NFQR_NOT_REDIRECTED, /* ERR NOTREDIRECTED: the flow is tracked but was not redirected */
    NFQR_NOT_FOUND, /* ERR NOTFOUND: no tracked flow with that tuple */
    NFQR_EXPIRED, /* ERR EXPIRED: the flow was tracked but has expired or closed */
    NFQR_DENIED, /* ERR DENIED: this process may not ask */
    NFQR_BAD_REQUEST, /* ERR BADREQUEST <why>: the daemon refused the request line */
    NFQR_UNAVAILABLE, /* no answer: no daemon, connection lost or timed out (errno says which) */
    NFQR_BAD_REPLY, /* the daemon answered outside the protocol */
    NFQR_BAD_SOCKET /* not a connected TCP/UDP IPv4/IPv6 socket or tuple (errno says why) */
} nfqr_answer;

/* A short lower-case English name for an answer ("found", "daemon unavailable", ...). */
NFQR_API const char *nfqr_answer_name(nfqr_answer answer);

/*
 * The original destination of the accepted (or connected) socket fd, asked with
 *     LOOKUP <tcp|udp> <getpeername(fd)> <getsockname(fd)>
 * On NFQR_FOUND, *out holds a sockaddr_in for an AF_INET socket and a sockaddr_in6 for an
 * AF_INET6 one (an IPv4 flow on a dual-stack socket comes back v4-mapped), filled the way
 * the kernel fills SO_ORIGINAL_DST / IP6T_SO_ORIGINAL_DST; *outlen (if not NULL) is set to
 * its size. On any other answer *out and *outlen are left as they were.
 */
NFQR_API nfqr_answer nfqr_original_dst(int fd, struct sockaddr_storage *out, socklen_t *outlen);

/*
 * The same, asked with `LOOKUPFD` and fd itself attached (SCM_RIGHTS): the daemon reads the
 * tuple from the socket, which also proves that the caller holds the connection.
 */
NFQR_API nfqr_answer nfqr_original_dst_fd(int fd, struct sockaddr_storage *out, socklen_t *outlen);

/*
 * The original destination of an explicit tuple, for UDP proxies that learn the local address
 * per datagram (IP_PKTINFO / IPV6_RECVPKTINFO). protocol is IPPROTO_TCP or IPPROTO_UDP;
 * client and local are sockaddr_in or sockaddr_in6 of one family (v4-mapped counts as IPv4).
 * The answer has local's family.
 */
NFQR_API nfqr_answer nfqr_lookup(int protocol, const struct sockaddr *client, const struct sockaddr *local,
                                 struct sockaddr_storage *out, socklen_t *outlen);

#ifdef __cplusplus
}
#endif

#endif /* NFQ_REDIRECT_H */
