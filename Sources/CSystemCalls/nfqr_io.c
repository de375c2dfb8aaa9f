#define _GNU_SOURCE
#include "nfqr_io.h"

#include <fcntl.h>
#include <sched.h>
#include <unistd.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>

int nfqr_receive_datagrams(int fd, const struct iovec *buffers, uint32_t *lengths, int32_t *flags, unsigned int count) {
    if (count > NFQR_RECEIVE_BATCH_MAX)
        count = NFQR_RECEIVE_BATCH_MAX;
    struct mmsghdr messages[NFQR_RECEIVE_BATCH_MAX];
    memset(messages, 0, sizeof(struct mmsghdr) * count);
    for (unsigned int i = 0; i < count; i++) {
        // recvmmsg does not write through msg_iov, so dropping const here is safe.
        messages[i].msg_hdr.msg_iov = (struct iovec *)&buffers[i];
        messages[i].msg_hdr.msg_iovlen = 1;
    }
    int received = recvmmsg(fd, messages, count, MSG_DONTWAIT, NULL);
    for (int i = 0; i < received; i++) {
        lengths[i] = messages[i].msg_len;
        flags[i] = messages[i].msg_hdr.msg_flags;
    }
    return received;
}

int nfqr_eventfd(void) { return eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC); }

int nfqr_enter_network_namespace(int fd) { return setns(fd, CLONE_NEWNET); }

int nfqr_pipe_cloexec(int fds[2]) { return pipe2(fds, O_CLOEXEC); }
