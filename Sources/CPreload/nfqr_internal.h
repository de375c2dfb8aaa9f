/*
 * Internal interfaces shared by the client library and the preload library.
 *
 * Everything declared here is async-signal-careful: no malloc, no stdio, no locale, no locks
 * that a signal handler on the same thread could find held (see README.md).
 */
#ifndef NFQR_INTERNAL_H
#define NFQR_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/un.h>

#include "nfq_redirect.h"

#define NFQR_HIDDEN __attribute__((visibility("hidden")))

/* ---- addresses (address_text.c) ---------------------------------------------------------- */

/* An IP address and port; IPv4 (and IPv4-mapped IPv6) is held as 4 bytes in addr[0..3]. */
typedef struct nfqr_endpoint {
    uint8_t addr[16];
    uint16_t port; /* host byte order */
    bool is_v4;
} nfqr_endpoint;

/* Longest text nfqr_format_address writes, without a terminator ("ffff:...:ffff"). */
#define NFQR_ADDRESS_TEXT_MAX 39

/* Dotted quad for IPv4, RFC 5952 text for IPv6 (lower case, longest zero run as "::", no
 * dotted tail). Returns the length written; out needs NFQR_ADDRESS_TEXT_MAX bytes. */
NFQR_HIDDEN size_t nfqr_format_address(const nfqr_endpoint *endpoint, char *out);

/* Parses IPv4 dotted-quad or IPv6 text (any valid form, dotted tail included; the same
 * language as inet_pton). A v4-mapped IPv6 address becomes IPv4. */
NFQR_HIDDEN bool nfqr_parse_address(const char *text, size_t length, nfqr_endpoint *out);

/* Decimal 1..65535 without sign or leading zeros. */
NFQR_HIDDEN bool nfqr_parse_port(const char *text, size_t length, uint16_t *out);

/* AF_INET / AF_INET6 socket address -> endpoint (v4-mapped -> IPv4). */
NFQR_HIDDEN bool nfqr_endpoint_from_sockaddr(const struct sockaddr *address, socklen_t length, nfqr_endpoint *out);

/* ---- protocol lines (lookup_protocol.c) -------------------------------------------------- */

/* "LOOKUP udp " + 2 x (39 + 1 + 5 + 1) + '\n' fits easily. */
#define NFQR_REQUEST_MAX 128
/* Answers longer than this are not the protocol ("ERR BADREQUEST <why>" stays short). */
#define NFQR_REPLY_MAX 512

/* Writes "LOOKUP <proto> <client-ip> <client-port> <local-ip> <local-port>\n"; returns its
 * length. protocol is IPPROTO_TCP or IPPROTO_UDP. */
NFQR_HIDDEN size_t nfqr_format_lookup(char out[NFQR_REQUEST_MAX], int protocol, const nfqr_endpoint *client,
                                      const nfqr_endpoint *local);

/* Parses one answer line (without '\n'). On NFQR_FOUND, *original is set. Anything outside
 * the protocol is NFQR_BAD_REPLY. */
NFQR_HIDDEN nfqr_answer nfqr_parse_reply(const char *line, size_t length, nfqr_endpoint *original);

/* ---- configuration (client_config.c) ----------------------------------------------------- */

typedef struct nfqr_config {
    struct sockaddr_un address;
    socklen_t address_length; /* 0 when the path is unusable: every lookup is NFQR_UNAVAILABLE */
    int address_error; /* errno for an unusable path (ENAMETOOLONG) */
    int timeout_ms;
    int busy_poll_us; /* NFQ_REDIRECT_BUSY_POLL_US: poll this long for an answer before sleeping */
    bool preload_uses_lookupfd; /* NFQ_REDIRECT_LOOKUP=fd: the preload asks with LOOKUPFD */
    bool debug; /* NFQ_REDIRECT_DEBUG=1: the preload says why each call went where */
    bool has_journal_stream; /* JOURNAL_STREAM=<dev>:<inode> was set (stderr is systemd's journal) */
    unsigned long long journal_device, journal_inode;
} nfqr_config;

/* Filled once by a load-time constructor; read-only afterwards. */
NFQR_HIDDEN extern nfqr_config nfqr_settings;

/* ---- the daemon connection (daemon_connection.c) ----------------------------------------- */

typedef enum nfqr_transfer {
    NFQR_TRANSFER_OK, /* reply holds one answer line */
    NFQR_TRANSFER_UNAVAILABLE, /* errno says why: ENOENT/ECONNREFUSED/ETIMEDOUT/EPIPE/... */
    NFQR_TRANSFER_BAD_REPLY /* the daemon sent a line longer than NFQR_REPLY_MAX */
} nfqr_transfer;

/* Sends one request line (with pass_fd attached as SCM_RIGHTS when pass_fd >= 0) and reads
 * one answer line into reply (NUL-terminated, '\n' removed), within the configured timeout. */
NFQR_HIDDEN nfqr_transfer nfqr_transact(const char *request, size_t request_length, int pass_fd,
                                        char reply[NFQR_REPLY_MAX], size_t *reply_length);

/* ---- lookups (lookup_client.c) ----------------------------------------------------------- */

/* The real getsockopt: the preload library's points past itself (RTLD_NEXT); the client
 * library's is libc's. */
typedef int (*nfqr_getsockopt_fn)(int, int, int, void *, socklen_t *);
NFQR_HIDDEN nfqr_getsockopt_fn nfqr_real_getsockopt(void);

/* What a lookup needs to know about a socket. */
typedef struct nfqr_socket {
    int family; /* AF_INET or AF_INET6 */
    int protocol; /* IPPROTO_TCP or IPPROTO_UDP */
    nfqr_endpoint local; /* getsockname, v4-mapped held as IPv4 */
    nfqr_endpoint peer; /* getpeername, likewise; both of one family */
} nfqr_socket;

/* NFQR_FOUND for a connected TCP/UDP IPv4/IPv6 socket; otherwise NFQR_BAD_SOCKET with errno
 * from getsockname/getpeername (EBADF, ENOTSOCK, ENOTCONN), EAFNOSUPPORT or EPROTONOSUPPORT. */
NFQR_HIDDEN nfqr_answer nfqr_inspect_socket(int fd, nfqr_socket *out);

/* LOOKUP of a tuple; an answer of the other family than the query is NFQR_BAD_REPLY. */
NFQR_HIDDEN nfqr_answer nfqr_lookup_tuple(int protocol, const nfqr_endpoint *client, const nfqr_endpoint *local,
                                          nfqr_endpoint *original);

/* LOOKUPFD with fd attached; want_v4 is the family the answer must have. */
NFQR_HIDDEN nfqr_answer nfqr_lookup_descriptor(int fd, bool want_v4, nfqr_endpoint *original);

/* ---- what the preload library says (preload_diagnostics.c) ------------------------------ */

/* Why a getsockopt(SO_ORIGINAL_DST) went to the kernel, or that the daemon answered it. */
typedef enum nfqr_route {
    NFQR_ROUTE_DAEMON, /* answered from the daemon */
    NFQR_ROUTE_SHORT_BUFFER, /* *optlen shorter than the address: the kernel's EINVAL/ENOPROTOOPT */
    NFQR_ROUTE_NOT_TCP, /* not a connected TCP socket of the level's family */
    NFQR_ROUTE_DAEMON_SAID_NO /* the daemon did not answer OK (answer, errno say why) */
} nfqr_route;

/* Called by the preload for each SO_ORIGINAL_DST call it sees (view may be NULL before the
 * socket was inspected); error is errno after the lookup. Says once per process, when the
 * daemon's socket refused it (EACCES/EPERM on connect, ERR DENIED), why and how to fix it;
 * with NFQ_REDIRECT_DEBUG=1 says where every call went. Async-signal-safe, errno kept. */
NFQR_HIDDEN void nfqr_preload_report(int fd, int level, nfqr_route route, const nfqr_socket *view, nfqr_answer answer,
                                     int error);

/* ---- answers as socket addresses (kernel_sockaddr.c) ------------------------------------- */

/* The original destination as family's socket address: a sockaddr_in (which needs an IPv4
 * answer) or a sockaddr_in6 (v4-mapped for an IPv4 answer). Returns the size written. */
NFQR_HIDDEN socklen_t nfqr_shape_original(int family, const nfqr_endpoint *original, uint32_t flowinfo,
                                          uint32_t scope_id, struct sockaddr_storage *out);

/* sin6_flowinfo and sin6_scope_id as the kernel's ipv6_getorigdst fills them for socket fd:
 * the socket's flow label (set when it reflects the peer's) and, for a link-local original
 * address, the interface the socket is bound to. */
NFQR_HIDDEN void nfqr_kernel_sin6_fields(int fd, const nfqr_endpoint *original, uint32_t *flowinfo, uint32_t *scope_id);

/* True for addresses whose sockaddr_in6 carries a scope id (kernel's ipv6_addr_needs_scope_id). */
NFQR_HIDDEN bool nfqr_needs_scope_id(const nfqr_endpoint *address);

#endif /* NFQR_INTERNAL_H */
