#define _GNU_SOURCE
#include "nfqr_server.h"

#include <pthread.h>
#include <stddef.h>
#include <sys/epoll.h>
#include <sys/socket.h>

int nfqr_epoll_create(void) { return epoll_create1(EPOLL_CLOEXEC); }

int nfqr_epoll_control(int epoll_fd, int fd, int64_t events) {
    if (events < 0)
        return epoll_ctl(epoll_fd, EPOLL_CTL_DEL, fd, NULL);
    struct epoll_event event = {.events = (uint32_t)events, .data = {.fd = fd}};
    if (epoll_ctl(epoll_fd, EPOLL_CTL_MOD, fd, &event) == 0)
        return 0;
    return epoll_ctl(epoll_fd, EPOLL_CTL_ADD, fd, &event);
}

int nfqr_epoll_wait(int epoll_fd, int *fds, uint32_t *events, int capacity, int timeout_ms) {
    struct epoll_event ready[64];
    if (capacity > 64)
        capacity = 64;
    int count = epoll_wait(epoll_fd, ready, capacity, timeout_ms);
    for (int i = 0; i < count; i++) {
        fds[i] = ready[i].data.fd;
        events[i] = ready[i].events;
    }
    return count;
}

int nfqr_accept_nonblocking(int listen_fd) { return accept4(listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC); }

int nfqr_peer_credentials(int fd, pid_t *pid, uid_t *uid, gid_t *gid) {
    struct ucred credentials;
    socklen_t length = sizeof credentials;
    if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &credentials, &length) != 0)
        return -1;
    *pid = credentials.pid;
    *uid = credentials.uid;
    *gid = credentials.gid;
    return 0;
}

int nfqr_set_thread_name(pthread_t thread, const char *name) { return pthread_setname_np(thread, name); }
