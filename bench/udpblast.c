/*
 * udpblast: the bench's UDP load, fast enough that the redirect (not Python) is the limit.
 *
 *   udpblast send  --to ADDR --port P --seconds S [--rate PPS] [--size BYTES]
 *       One flow: a connected UDP socket (IPv4 or IPv6), sendmmsg batches, as fast as it goes
 *       or paced at PPS.
 *   udpblast spread --source-base A.B.C.D --to ADDR --port P --flows N [--rate PPS] [--seconds S]
 *       N distinct IPv4 flows through a raw socket: flow i comes from
 *       (source-base + i / 60000, 1024 + i % 60000). Without --seconds each flow is sent once
 *       (fills a flow table); with --seconds the N flows are cycled until S seconds pass
 *       (a fixed load over a fixed set of flows).
 *   udpblast drain --port P --seconds S
 *       Reads and discards every datagram sent to [::]:P (IPv4 too) for at most S seconds,
 *       so datagrams are delivered rather than answered with port unreachable.
 *
 * send and spread print one JSON line: {"sent": N, "seconds": S}. Every loop ends by its
 * deadline or its count. Exit status 2 for bad arguments, 1 for a failed system call.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <netinet/in.h>
#include <netinet/ip.h>
#include <netinet/udp.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define BATCH 64
#define MAX_PAYLOAD 1400
#define PORTS_PER_SOURCE 60000
#define FIRST_SOURCE_PORT 1024

struct options {
    const char *to;
    const char *source_base;
    int port;
    double seconds;
    double rate;
    int size;
    long flows;
};

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void sleep_until(double when) {
    double left = when - now();
    if (left <= 0)
        return;
    struct timespec ts = {(time_t)left, (long)((left - (double)(time_t)left) * 1e9)};
    nanosleep(&ts, NULL);
}

static int fail(const char *what) {
    fprintf(stderr, "udpblast: %s: %s\n", what, strerror(errno));
    return 1;
}

static int usage(const char *problem) {
    fprintf(stderr,
            "udpblast: %s\n"
            "usage: udpblast send --to ADDR --port P --seconds S [--rate PPS] [--size BYTES]\n"
            "       udpblast spread --source-base A.B.C.D --to ADDR --port P --flows N [--rate PPS] [--seconds S]\n"
            "       udpblast drain --port P --seconds S\n",
            problem);
    return 2;
}

/* How many datagrams may go now: all of `want` when unpaced, else what the rate allows by now
 * (sleeping a little when nothing is due yet). */
static int due(const struct options *o, double start, uint64_t sent, int want) {
    if (o->rate <= 0)
        return want;
    double next = start + (double)sent / o->rate;
    sleep_until(next);
    uint64_t allowed = (uint64_t)((now() - start) * o->rate) + 1;
    if (allowed <= sent)
        return 1;
    uint64_t room = allowed - sent;
    return room < (uint64_t)want ? (int)room : want;
}

static void report(uint64_t sent, double seconds) {
    printf("{\"sent\": %llu, \"seconds\": %.6f}\n", (unsigned long long)sent, seconds);
}

static int run_send(const struct options *o) {
    struct sockaddr_storage target;
    socklen_t target_length;
    memset(&target, 0, sizeof target);
    struct sockaddr_in *v4 = (struct sockaddr_in *)&target;
    struct sockaddr_in6 *v6 = (struct sockaddr_in6 *)&target;
    if (inet_pton(AF_INET, o->to, &v4->sin_addr) == 1) {
        v4->sin_family = AF_INET;
        v4->sin_port = htons((uint16_t)o->port);
        target_length = sizeof *v4;
    } else if (inet_pton(AF_INET6, o->to, &v6->sin6_addr) == 1) {
        v6->sin6_family = AF_INET6;
        v6->sin6_port = htons((uint16_t)o->port);
        target_length = sizeof *v6;
    } else {
        return usage("--to is not an IP address");
    }
    int fd = socket(target.ss_family, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return fail("socket");
    if (connect(fd, (struct sockaddr *)&target, target_length) < 0)
        return fail("connect");

    static char payload[MAX_PAYLOAD];
    memset(payload, 'u', sizeof payload);
    struct iovec iov = {payload, (size_t)o->size};
    struct mmsghdr messages[BATCH];
    memset(messages, 0, sizeof messages);
    for (int i = 0; i < BATCH; i++) {
        messages[i].msg_hdr.msg_iov = &iov;
        messages[i].msg_hdr.msg_iovlen = 1;
    }
    uint64_t sent = 0;
    double start = now(), deadline = start + o->seconds;
    while (now() < deadline) {
        int count = due(o, start, sent, BATCH);
        int done = sendmmsg(fd, messages, (unsigned)count, 0);
        if (done < 0) {
            /* A full socket or qdisc queue is back-pressure, not failure: try again. */
            if (errno == ENOBUFS || errno == EAGAIN || errno == EINTR || errno == ECONNREFUSED)
                continue;
            return fail("sendmmsg");
        }
        sent += (uint64_t)done;
    }
    report(sent, now() - start);
    close(fd);
    return 0;
}

static uint32_t sum_words(const void *data, size_t length) {
    const uint8_t *bytes = data;
    uint32_t sum = 0;
    for (size_t i = 0; i + 1 < length; i += 2)
        sum += (uint32_t)(bytes[i] << 8 | bytes[i + 1]);
    if (length & 1)
        sum += (uint32_t)(bytes[length - 1] << 8);
    return sum;
}

static uint16_t fold(uint32_t sum) {
    while (sum >> 16)
        sum = (sum & 0xffff) + (sum >> 16);
    return (uint16_t)~sum;
}

/* One IPv4/UDP datagram from (source, sport) with a correct UDP checksum; the kernel fills the
 * IP header checksum and id of a raw IPPROTO_RAW socket's packets. */
static size_t build_datagram(uint8_t *buffer, uint32_t source, uint16_t sport, uint32_t destination, uint16_t dport,
                             int payload_size) {
    struct iphdr *ip = (struct iphdr *)buffer;
    struct udphdr *udp = (struct udphdr *)(buffer + sizeof *ip);
    size_t udp_length = sizeof *udp + (size_t)payload_size;
    memset(ip, 0, sizeof *ip);
    ip->version = 4;
    ip->ihl = 5;
    ip->ttl = 64;
    ip->protocol = IPPROTO_UDP;
    ip->tot_len = htons((uint16_t)(sizeof *ip + udp_length));
    ip->saddr = source;
    ip->daddr = destination;
    udp->source = htons(sport);
    udp->dest = htons(dport);
    udp->len = htons((uint16_t)udp_length);
    udp->check = 0;
    memset(buffer + sizeof *ip + sizeof *udp, 'f', (size_t)payload_size);
    uint8_t pseudo[12];
    memcpy(pseudo, &source, 4);
    memcpy(pseudo + 4, &destination, 4);
    pseudo[8] = 0;
    pseudo[9] = IPPROTO_UDP;
    pseudo[10] = (uint8_t)(udp_length >> 8);
    pseudo[11] = (uint8_t)udp_length;
    uint16_t check = fold(sum_words(pseudo, sizeof pseudo) + sum_words(udp, udp_length));
    udp->check = htons(check == 0 ? 0xffff : check);
    return sizeof *ip + udp_length;
}

static int run_spread(const struct options *o) {
    struct in_addr base, destination;
    if (!o->source_base || inet_pton(AF_INET, o->source_base, &base) != 1)
        return usage("--source-base must be an IPv4 address");
    if (inet_pton(AF_INET, o->to, &destination) != 1)
        return usage("spread sends IPv4: --to must be an IPv4 address");
    if (o->flows <= 0)
        return usage("--flows must be positive");
    long sources = (o->flows + PORTS_PER_SOURCE - 1) / PORTS_PER_SOURCE;
    if ((ntohl(base.s_addr) & 0xff) + (uint32_t)sources > 255)
        return usage("--flows needs more source addresses than the base's /24 has");

    int fd = socket(AF_INET, SOCK_RAW | SOCK_CLOEXEC, IPPROTO_RAW);
    if (fd < 0)
        return fail("raw socket (needs CAP_NET_RAW)");
    struct sockaddr_in target = {.sin_family = AF_INET, .sin_addr = destination};

    static uint8_t packets[BATCH][sizeof(struct iphdr) + sizeof(struct udphdr) + MAX_PAYLOAD];
    struct iovec iovs[BATCH];
    struct mmsghdr messages[BATCH];
    memset(messages, 0, sizeof messages);
    for (int i = 0; i < BATCH; i++) {
        iovs[i].iov_base = packets[i];
        messages[i].msg_hdr.msg_iov = &iovs[i];
        messages[i].msg_hdr.msg_iovlen = 1;
        messages[i].msg_hdr.msg_name = &target;
        messages[i].msg_hdr.msg_namelen = sizeof target;
    }
    int cycling = o->seconds > 0;
    uint64_t sent = 0;
    double start = now(), deadline = start + o->seconds;
    /* Prefill: each flow once, but never longer than 10 minutes whatever the rate. */
    double limit = cycling ? deadline : start + 600;
    while (now() < limit && (cycling || sent < (uint64_t)o->flows)) {
        int count = due(o, start, sent, BATCH);
        if (!cycling && (uint64_t)count > (uint64_t)o->flows - sent)
            count = (int)((uint64_t)o->flows - sent);
        for (int i = 0; i < count; i++) {
            uint64_t flow = (sent + (uint64_t)i) % (uint64_t)o->flows;
            uint32_t source = htonl(ntohl(base.s_addr) + (uint32_t)(flow / PORTS_PER_SOURCE));
            uint16_t sport = (uint16_t)(FIRST_SOURCE_PORT + flow % PORTS_PER_SOURCE);
            iovs[i].iov_len = build_datagram(packets[i], source, sport, destination.s_addr, (uint16_t)o->port, o->size);
        }
        int done = sendmmsg(fd, messages, (unsigned)count, 0);
        if (done < 0) {
            if (errno == ENOBUFS || errno == EAGAIN || errno == EINTR)
                continue;
            return fail("sendmmsg");
        }
        sent += (uint64_t)done;
    }
    report(sent, now() - start);
    close(fd);
    return 0;
}

static int run_drain(const struct options *o) {
    int fd = socket(AF_INET6, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return fail("socket");
    int off = 0, buffer = 32 << 20;
    setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &off, sizeof off);
    /* As root, force a large buffer past rmem_max so bursts are not lost at the socket. */
    if (setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &buffer, sizeof buffer) < 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &buffer, sizeof buffer);
    struct sockaddr_in6 any = {
        .sin6_family = AF_INET6, .sin6_port = htons((uint16_t)o->port), .sin6_addr = IN6ADDR_ANY_INIT};
    if (bind(fd, (struct sockaddr *)&any, sizeof any) < 0)
        return fail("bind");
    printf("draining [::]:%d\n", o->port);
    fflush(stdout);

    static char buffers[BATCH][2048];
    struct iovec iovs[BATCH];
    struct mmsghdr messages[BATCH];
    memset(messages, 0, sizeof messages);
    for (int i = 0; i < BATCH; i++) {
        iovs[i] = (struct iovec){buffers[i], sizeof buffers[i]};
        messages[i].msg_hdr.msg_iov = &iovs[i];
        messages[i].msg_hdr.msg_iovlen = 1;
    }
    double deadline = now() + o->seconds;
    while (now() < deadline) {
        struct pollfd ready = {fd, POLLIN, 0};
        if (poll(&ready, 1, 200) <= 0)
            continue;
        while (recvmmsg(fd, messages, BATCH, MSG_DONTWAIT, NULL) > 0) {}
    }
    close(fd);
    return 0;
}

int main(int argc, char **argv) {
    if (argc < 2)
        return usage("which mode: send, spread or drain?");
    const char *mode = argv[1];
    if (strcmp(mode, "send") != 0 && strcmp(mode, "spread") != 0 && strcmp(mode, "drain") != 0)
        return usage("mode must be send, spread or drain");
    struct options o = {.size = 18, .seconds = 0, .rate = 0, .flows = 0, .port = 0};
    static const struct option longs[] = {
        {"to", required_argument, 0, 't'},          {"port", required_argument, 0, 'p'},
        {"seconds", required_argument, 0, 's'},     {"rate", required_argument, 0, 'r'},
        {"size", required_argument, 0, 'z'},        {"flows", required_argument, 0, 'f'},
        {"source-base", required_argument, 0, 'b'}, {0, 0, 0, 0}};
    optind = 2;
    int option;
    while ((option = getopt_long(argc, argv, "", longs, NULL)) != -1) {
        switch (option) {
        case 't': o.to = optarg; break;
        case 'p': o.port = atoi(optarg); break;
        case 's': o.seconds = atof(optarg); break;
        case 'r': o.rate = atof(optarg); break;
        case 'z': o.size = atoi(optarg); break;
        case 'f': o.flows = atol(optarg); break;
        case 'b': o.source_base = optarg; break;
        default: return usage("unknown option");
        }
    }
    if (o.port <= 0 || o.port > 65535)
        return usage("--port must be 1-65535");
    if (o.size < 1 || o.size > MAX_PAYLOAD)
        return usage("--size must be 1-1400");
    if (o.seconds < 0 || o.seconds > 3600)
        return usage("--seconds must be 0-3600");
    if (o.rate < 0)
        return usage("--rate must not be negative");
    if (strcmp(mode, "drain") == 0) {
        if (o.seconds <= 0)
            return usage("drain needs --seconds");
        return run_drain(&o);
    }
    if (!o.to)
        return usage("--to is required");
    if (strcmp(mode, "send") == 0) {
        if (o.seconds <= 0)
            return usage("send needs --seconds");
        return run_send(&o);
    }
    return run_spread(&o);
}
