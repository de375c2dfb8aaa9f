// System calls the Swift Glibc module does not export, or exports only through GNU-only
// structs (recvmmsg's struct mmsghdr).
#ifndef NFQR_IO_H
#define NFQR_IO_H

#include <stdint.h>
#include <sys/uio.h>

/// The most datagrams one nfqr_receive_datagrams call takes (its mmsghdr array is on the stack).
#define NFQR_RECEIVE_BATCH_MAX 256

/// recvmmsg(2) into `count` single-buffer datagrams, never blocking (MSG_DONTWAIT).
/// Writes each received datagram's length and msg_flags (MSG_TRUNC...). Returns the number
/// received, or -1 with errno set (EAGAIN when nothing was ready). `count` is capped at
/// NFQR_RECEIVE_BATCH_MAX.
int nfqr_receive_datagrams(int fd, const struct iovec *buffers, uint32_t *lengths, int32_t *flags, unsigned int count);

/// eventfd(2) with EFD_NONBLOCK | EFD_CLOEXEC: the wake-up channel of a blocked receive.
int nfqr_eventfd(void);

/// setns(2) into the network namespace `fd` refers to, for the calling thread only.
int nfqr_enter_network_namespace(int fd);

/// pipe2(2) with O_CLOEXEC, so a program spawned meanwhile from another thread does not inherit it.
int nfqr_pipe_cloexec(int fds[2]);

#endif
