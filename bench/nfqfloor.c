/*
 * nfqfloor: the trip through NFQUEUE with no work per packet. It binds the queues
 * nfq-redirectd would use, copies every packet out (as a rewrite must) and answers each with
 * a plain NF_ACCEPT, carrying no payload back, doing no parsing, no table, no rewrite; one
 * recv and one send per packet, the textbook loop. The bench runs it beside the kernel's own
 * REDIRECT (which does the actual NAT), so the difference between "kernel" and "floor" is
 * what the trip alone costs: with one packet in flight at a time (request/response), the
 * bound under every daemon built on NFQUEUE; under load, batching daemons can beat it
 * (docs/performance.md, "--floor").
 *
 * usage: nfqfloor FIRST_QUEUE COUNT      (one thread per queue; SIGTERM/SIGINT stop it)
 * Prints "ready" once every queue is bound, and the packets handled per queue on exit.
 * Built by the bench with: cc -O2 nfqfloor.c -lmnl -lnetfilter_queue -lpthread
 */
#include <arpa/inet.h>
#include <errno.h>
#include <libmnl/libmnl.h>
#include <libnetfilter_queue/libnetfilter_queue.h>
#include <linux/netfilter.h>
#include <linux/netfilter/nfnetlink_queue.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* A GSO packet is up to 64 KiB; the netlink and queue headers come on top. */
#define RECEIVE_BUFFER (0xffff + 4096)

struct queue_thread {
    pthread_t thread;
    struct mnl_socket *socket;
    uint16_t number;
    unsigned long long packets;
    int error;
};

static volatile sig_atomic_t stopping;

static void on_signal(int signo) {
    (void)signo;
    stopping = 1;
}

static int send_config(struct mnl_socket *socket, uint16_t queue, uint8_t command, int with_params) {
    char buffer[MNL_SOCKET_BUFFER_SIZE];
    struct nlmsghdr *header = nfq_nlmsg_put(buffer, NFQNL_MSG_CONFIG, queue);
    nfq_nlmsg_cfg_put_cmd(header, AF_INET, command);
    if (with_params) {
        nfq_nlmsg_cfg_put_params(header, NFQNL_COPY_PACKET, 0xffff);
        /* Whole GSO packets, as nfq-redirectd takes them by default (queue.gso = true). */
        mnl_attr_put_u32(header, NFQA_CFG_FLAGS, htonl(NFQA_CFG_F_GSO));
        mnl_attr_put_u32(header, NFQA_CFG_MASK, htonl(NFQA_CFG_F_GSO));
        mnl_attr_put_u32(header, NFQA_CFG_QUEUE_MAXLEN, htonl(4096));
    }
    return mnl_socket_sendto(socket, header, header->nlmsg_len) < 0 ? -1 : 0;
}

static int accept_packet(const struct nlmsghdr *message, void *context) {
    struct queue_thread *queue = context;
    struct nlattr *attributes[NFQA_MAX + 1] = {0};
    if (nfq_nlmsg_parse(message, attributes) < 0 || !attributes[NFQA_PACKET_HDR])
        return MNL_CB_OK;
    const struct nfqnl_msg_packet_hdr *packet = mnl_attr_get_payload(attributes[NFQA_PACKET_HDR]);
    char buffer[MNL_SOCKET_BUFFER_SIZE];
    struct nlmsghdr *verdict = nfq_nlmsg_put(buffer, NFQNL_MSG_VERDICT, queue->number);
    nfq_nlmsg_verdict_put(verdict, ntohl(packet->packet_id), NF_ACCEPT);
    if (mnl_socket_sendto(queue->socket, verdict, verdict->nlmsg_len) < 0)
        queue->error = errno;
    queue->packets++;
    return MNL_CB_OK;
}

static void *serve(void *context) {
    struct queue_thread *queue = context;
    char *buffer = malloc(RECEIVE_BUFFER);
    if (!buffer) {
        queue->error = ENOMEM;
        return NULL;
    }
    while (!stopping) {
        ssize_t length = mnl_socket_recvfrom(queue->socket, buffer, RECEIVE_BUFFER);
        if (length < 0) {
            if (errno == EINTR || errno == EAGAIN || errno == ENOBUFS)
                continue;
            queue->error = errno;
            break;
        }
        mnl_cb_run(buffer, (size_t)length, 0, 0, accept_packet, queue);
    }
    free(buffer);
    return NULL;
}

int main(int argc, char **argv) {
    if (argc != 3) {
        fprintf(stderr, "usage: %s FIRST_QUEUE COUNT\n", argv[0]);
        return 2;
    }
    int first = atoi(argv[1]), count = atoi(argv[2]);
    if (first < 0 || count < 1 || count > 64 || first + count > 65536) {
        fprintf(stderr, "nfqfloor: bad queue range %s %s\n", argv[1], argv[2]);
        return 2;
    }
    struct queue_thread *queues = calloc((size_t)count, sizeof *queues);
    for (int i = 0; i < count; i++) {
        queues[i].number = (uint16_t)(first + i);
        queues[i].socket = mnl_socket_open(NETLINK_NETFILTER);
        if (!queues[i].socket || mnl_socket_bind(queues[i].socket, 0, MNL_SOCKET_AUTOPID) < 0 ||
            send_config(queues[i].socket, queues[i].number, NFQNL_CFG_CMD_BIND, 1) < 0) {
            fprintf(stderr, "nfqfloor: queue %d: %s\n", first + i, strerror(errno));
            return 1;
        }
        /* Without this, recvfrom would sleep through SIGTERM (SA_RESTART is not set below,
         * but a timeout also bounds the wait if the signal lands on another thread). */
        struct timeval tick = {.tv_sec = 0, .tv_usec = 200000};
        setsockopt(mnl_socket_get_fd(queues[i].socket), SOL_SOCKET, SO_RCVTIMEO, &tick, sizeof tick);
    }
    struct sigaction action = {.sa_handler = on_signal};
    sigaction(SIGTERM, &action, NULL);
    sigaction(SIGINT, &action, NULL);
    for (int i = 0; i < count; i++)
        pthread_create(&queues[i].thread, NULL, serve, &queues[i]);
    printf("ready\n");
    fflush(stdout);
    int status = 0;
    for (int i = 0; i < count; i++) {
        pthread_join(queues[i].thread, NULL);
        send_config(queues[i].socket, queues[i].number, NFQNL_CFG_CMD_UNBIND, 0);
        mnl_socket_close(queues[i].socket);
        printf("queue %u: %llu packets%s%s\n", queues[i].number, queues[i].packets,
               queues[i].error ? ", last error: " : "", queues[i].error ? strerror(queues[i].error) : "");
        if (queues[i].error && queues[i].error != EINTR)
            status = 1;
    }
    free(queues);
    return status;
}
