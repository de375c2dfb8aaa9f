/* SYN flood sender for the robustness suite, run in the client namespace C:
 *
 *     synflood DST_IPV4 DST_PORT COUNT
 *
 * Sends COUNT TCP SYNs to DST from random sources in 198.18.0.0/15 (RFC 2544, benchmarking)
 * with random ports, as fast as one thread can (raw socket, sendmmsg batches), then prints
 * {"sent": N, "seconds": S, "rate": R} on stdout. Checksums are correct, so every SYN is one the
 * router would forward and the daemon must track. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/ip.h>
#include <netinet/tcp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

enum { BATCH = 256, PACKET = 40 };

static uint64_t state = 0x9e3779b97f4a7c15ull;

static uint32_t next_random(void) {
    state ^= state << 13;
    state ^= state >> 7;
    state ^= state << 17;
    return (uint32_t)(state >> 16);
}

static uint16_t fold(uint32_t sum) {
    while (sum >> 16)
        sum = (sum & 0xffff) + (sum >> 16);
    return (uint16_t)~sum;
}

static uint32_t sum_words(const void *data, size_t length) {
    const uint8_t *bytes = data;
    uint32_t sum = 0;
    for (size_t i = 0; i + 1 < length; i += 2)
        sum += (uint32_t)bytes[i] << 8 | bytes[i + 1];
    return sum;
}

static void build(uint8_t *packet, uint32_t destination, uint16_t port) {
    struct iphdr *ip = (struct iphdr *)packet;
    struct tcphdr *tcp = (struct tcphdr *)(packet + sizeof *ip);
    uint32_t source = htonl(0xc6120000u | (next_random() & 0x1ffff)); /* 198.18.0.0/15 */
    memset(packet, 0, PACKET);
    ip->version = 4;
    ip->ihl = 5;
    ip->tot_len = htons(PACKET);
    ip->ttl = 64;
    ip->protocol = IPPROTO_TCP;
    ip->saddr = source;
    ip->daddr = destination;
    ip->check = htons(fold(sum_words(ip, sizeof *ip)));
    tcp->source = htons((uint16_t)(1024 + next_random() % 64000));
    tcp->dest = htons(port);
    tcp->seq = htonl(next_random());
    tcp->doff = 5;
    tcp->syn = 1;
    tcp->window = htons(65535);
    uint8_t pseudo[12];
    memcpy(pseudo, &ip->saddr, 4);
    memcpy(pseudo + 4, &ip->daddr, 4);
    pseudo[8] = 0;
    pseudo[9] = IPPROTO_TCP;
    pseudo[10] = 0;
    pseudo[11] = 20;
    tcp->check = htons(fold(sum_words(pseudo, sizeof pseudo) + sum_words(tcp, 20)));
}

int main(int argc, char **argv) {
    if (argc != 4) {
        fprintf(stderr, "usage: synflood DST_IPV4 DST_PORT COUNT\n");
        return 2;
    }
    struct sockaddr_in to = {.sin_family = AF_INET};
    if (inet_pton(AF_INET, argv[1], &to.sin_addr) != 1) {
        fprintf(stderr, "synflood: bad address %s\n", argv[1]);
        return 2;
    }
    uint16_t port = (uint16_t)atoi(argv[2]);
    long count = atol(argv[3]);
    state ^= (uint64_t)getpid() << 32 | (uint64_t)time(NULL);
    int fd = socket(AF_INET, SOCK_RAW, IPPROTO_RAW);
    if (fd < 0) {
        perror("synflood: socket");
        return 1;
    }
    static uint8_t packets[BATCH][PACKET];
    struct iovec iov[BATCH];
    struct mmsghdr messages[BATCH];
    struct timespec start, end;
    clock_gettime(CLOCK_MONOTONIC, &start);
    long sent = 0;
    while (sent < count) {
        int batch = count - sent < BATCH ? (int)(count - sent) : BATCH;
        for (int i = 0; i < batch; i++) {
            build(packets[i], to.sin_addr.s_addr, port);
            iov[i] = (struct iovec){packets[i], PACKET};
            messages[i] = (struct mmsghdr){
                .msg_hdr = {.msg_name = &to, .msg_namelen = sizeof to, .msg_iov = &iov[i], .msg_iovlen = 1}};
        }
        int done = sendmmsg(fd, messages, (unsigned)batch, 0);
        if (done < 0) {
            if (errno == ENOBUFS || errno == EAGAIN || errno == EINTR)
                continue; /* the qdisc is full: retry */
            perror("synflood: sendmmsg");
            return 1;
        }
        sent += done;
    }
    clock_gettime(CLOCK_MONOTONIC, &end);
    double seconds = (double)(end.tv_sec - start.tv_sec) + (double)(end.tv_nsec - start.tv_nsec) / 1e9;
    printf("{\"sent\": %ld, \"seconds\": %.3f, \"rate\": %.0f}\n", sent, seconds, (double)sent / seconds);
    close(fd);
    return 0;
}
