/*
 * libnfq-redirect-preload.so: getsockopt(SO_ORIGINAL_DST / IP6T_SO_ORIGINAL_DST) answered by
 * the nfq-redirect daemon for the flows it redirected, and by the kernel for every other.
 *
 * The daemon is asked first: the kernel's conntrack sees a daemon-redirected flow as
 * client -> proxy, so the kernel would answer with the proxy's own address. Whenever the
 * daemon has no answer (not found, not redirected, expired, denied, bad request, no daemon)
 * the call goes to the real getsockopt, so kernel-NATed flows keep working and every error
 * (ENOPROTOOPT, EINVAL, ENOENT, EOPNOTSUPP, EFAULT) and *optlen come from the kernel itself.
 *
 * Which calls are answered from the daemon, following the kernel (README.md has the table):
 *   SOL_IP   on AF_INET                      -> sockaddr_in
 *   SOL_IP   on AF_INET6 with an IPv4 peer   -> sockaddr_in  (the kernel does the same)
 *   SOL_IPV6 on AF_INET6                     -> sockaddr_in6 (v4-mapped for an IPv4 peer,
 *                                               where the kernel says ENOENT)
 * only for connected TCP sockets with *optlen at least the sockaddr's size; success leaves
 * *optlen and errno as they were, like the kernel.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "nfqr_internal.h"

/* linux/netfilter_ipv4.h SO_ORIGINAL_DST and linux/netfilter_ipv6/ip6_tables.h
 * IP6T_SO_ORIGINAL_DST (those headers clash with glibc's netinet ones). */
#define ORIGINAL_DST_OPTION 80

static _Atomic(nfqr_getsockopt_fn) next_getsockopt;

/* What glibc's getsockopt does, for the one case where no later getsockopt can be found. */
static int getsockopt_syscall(int fd, int level, int name, void *value, socklen_t *length) {
    return (int)syscall(SYS_getsockopt, fd, level, name, value, length);
}

nfqr_getsockopt_fn nfqr_real_getsockopt(void) {
    nfqr_getsockopt_fn next = atomic_load_explicit(&next_getsockopt, memory_order_acquire);
    if (next != NULL)
        return next;
    /* Only reached before the constructor below has run (a call from another library's
     * constructor); racing threads store the same pointer. */
    next = (nfqr_getsockopt_fn)dlsym(RTLD_NEXT, "getsockopt");
    if (next == NULL)
        next = getsockopt_syscall;
    atomic_store_explicit(&next_getsockopt, next, memory_order_release);
    return next;
}

__attribute__((constructor)) static void nfqr_resolve_getsockopt(void) { (void)nfqr_real_getsockopt(); }

/* Writes the daemon's answer into value and returns true, or returns false for the kernel.
 * Reports where each call went (nfqr_preload_report: silent unless refused or debugging). */
static bool answered_by_daemon(int fd, int level, void *value, socklen_t length) {
    /* The kernel checks the length after the protocol: leave a short buffer to it, so that
     * UDP still gets ENOPROTOOPT and TCP EINVAL. A negative int length is short too. */
    int size = level == SOL_IP ? (int)sizeof(struct sockaddr_in) : (int)sizeof(struct sockaddr_in6);
    if ((int)length < size) {
        nfqr_preload_report(fd, level, NFQR_ROUTE_SHORT_BUFFER, NULL, NFQR_BAD_SOCKET, 0);
        return false;
    }

    nfqr_socket socket_view;
    if (nfqr_inspect_socket(fd, &socket_view) != NFQR_FOUND || socket_view.protocol != IPPROTO_TCP ||
        (level == SOL_IP ? !socket_view.local.is_v4 : socket_view.family != AF_INET6)) {
        nfqr_preload_report(fd, level, NFQR_ROUTE_NOT_TCP, NULL, NFQR_BAD_SOCKET, 0);
        return false;
    }

    nfqr_endpoint original;
    nfqr_answer answer = nfqr_settings.preload_uses_lookupfd
                             ? nfqr_lookup_descriptor(fd, socket_view.local.is_v4, &original)
                             : nfqr_lookup_tuple(IPPROTO_TCP, &socket_view.peer, &socket_view.local, &original);
    if (answer != NFQR_FOUND) {
        nfqr_preload_report(fd, level, NFQR_ROUTE_DAEMON_SAID_NO, &socket_view, answer, errno);
        return false;
    }

    struct sockaddr_storage address;
    if (level == SOL_IP) {
        nfqr_shape_original(AF_INET, &original, 0, 0, &address);
    } else {
        uint32_t flowinfo, scope_id;
        nfqr_kernel_sin6_fields(fd, &original, &flowinfo, &scope_id);
        nfqr_shape_original(AF_INET6, &original, flowinfo, scope_id, &address);
    }
    memcpy(value, &address, (size_t)size);
    if (nfqr_settings.debug)
        nfqr_preload_report(fd, level, NFQR_ROUTE_DAEMON, &socket_view, NFQR_FOUND, 0);
    return true;
}

__attribute__((visibility("default"))) int getsockopt(int fd, int level, int name, void *restrict value,
                                                      socklen_t *restrict length) {
    if (name == ORIGINAL_DST_OPTION && (level == SOL_IP || level == SOL_IPV6) && value != NULL && length != NULL) {
        int saved_errno = errno;
        bool answered = answered_by_daemon(fd, level, value, *length);
        errno = saved_errno;
        if (answered)
            return 0;
    }
    return nfqr_real_getsockopt()(fd, level, name, value, length);
}
