// What a socket server thread (the lookup service's) needs from libc that the Glibc module
// does not export: epoll, accept4, SO_PEERCRED's struct ucred (GNU-only declarations) and
// pthread_setname_np.
#ifndef NFQR_SERVER_H
#define NFQR_SERVER_H

#include <stdint.h>
#include <pthread.h>
#include <sys/types.h>

// epoll events, re-exported under our prefix.
#define NFQR_EPOLLIN 0x001u
#define NFQR_EPOLLOUT 0x004u
#define NFQR_EPOLLERR 0x008u
#define NFQR_EPOLLHUP 0x010u
#define NFQR_EPOLLRDHUP 0x2000u

// epoll_create1(EPOLL_CLOEXEC).
int nfqr_epoll_create(void);
// Adds, modifies or (events < 0) removes `fd` with `events`; the event's data is the fd.
int nfqr_epoll_control(int epoll_fd, int fd, int64_t events);
// Waits up to `timeout_ms`; fills fds[i] and events[i] for each ready descriptor.
int nfqr_epoll_wait(int epoll_fd, int *fds, uint32_t *events, int capacity, int timeout_ms);
// accept4(SOCK_NONBLOCK | SOCK_CLOEXEC).
int nfqr_accept_nonblocking(int listen_fd);
// SO_PEERCRED of a connected Unix socket.
int nfqr_peer_credentials(int fd, pid_t *pid, uid_t *uid, gid_t *gid);

// pthread_setname_np (GNU): names shown by top -H and in crash reports.
int nfqr_set_thread_name(pthread_t thread, const char *name);

#endif
