/*
 * Lookups against the real nfq-redirectd, next to the kernel's own getsockopt(SO_ORIGINAL_DST),
 * in one run. bench.sh sets the stage (a namespace, the daemon with a local redirect
 * 127.0.0.2:9999 -> 127.0.0.1:7777, the kernel's nat REDIRECT 127.0.0.2:9998 -> 127.0.0.1:7778)
 * and runs
 *
 *   daemon_lookup FLOWS CALLS THREADS      (NFQ_REDIRECT_SOCKET names the daemon's socket)
 *   daemon_lookup --kernel-only FLOWS CALLS (no daemon yet: the kernel's getsockopt alone)
 *
 * With NFQR_BENCH_V6=1 the same pairs are also opened over IPv6: dialled to fd00:6e66::2
 * (an address bench.sh puts on lo), listened for on ::1.
 *
 * FLOWS connections of each kind are opened and accepted first; every measurement then asks
 * about them in turn and checks each answer (a wrong or missing one fails the run):
 *   kernel     getsockopt(SO_ORIGINAL_DST) on a kernel-redirected connection (raw syscall)
 *   hook       the same raw getsockopt on a daemon-redirected connection: answered by the
 *              daemon's cgroup/getsockopt BPF program (skipped, with a line saying so, when no
 *              hook answers: a daemon run with --no-getsockopt-hook or built without it; the
 *              kernel alone then answers ENOENT or, as here, where conntrack saw the flow
 *              already rewritten, the listener's own address)
 *   LOOKUP     nfqr_original_dst(): one request, one answer, on the thread's kept connection
 *   LOOKUPFD   nfqr_original_dst_fd(): the same with the socket passed as SCM_RIGHTS
 *   pipelined  LOOKUP lines written in batches of PIPELINE per write, answers read back
 * each over one connection (one thread) and over THREADS (one connection per thread).
 * Before those, what the hook costs the daemon per TCP flow (no lookup): CALLS bpf() inserts
 * into a map like the hook's, then CALLS deletes (map_write_costs).
 * Latency is per call (per batch / PIPELINE for pipelined), percentiles and mean over all
 * threads. kernel and hook (and their IPv6 rows) are measured ROUNDS times in turn, single
 * threaded, before the rest: the getsockopt pair of figures is the median of each side's rounds.
 * The last line is a JSON object with every figure.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <linux/bpf.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "nfq_redirect.h"
#include "../../Sources/CNativeAnswers/include/nfqr_origdst_map.h"

#define ORIGINAL_DST 80
#define PIPELINE 64
#define MAX_FIGURES 64
#define ROUNDS 5
#define V6_TARGET "fd00:6e66::2"

static double now_ns(void) {
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return now.tv_sec * 1e9 + now.tv_nsec;
}

static _Noreturn void die(const char *what) {
    perror(what);
    exit(1);
}

static _Noreturn void wrong(const char *what, const char *detail) {
    fprintf(stderr, "daemon_lookup: %s: %s\n", what, detail);
    exit(1);
}

/* ---- the connections asked about ------------------------------------------------------------- */

typedef struct flows {
    int count;
    int family; /* AF_INET or AF_INET6 */
    int *accepted; /* the proxy's side: what is looked up */
    int *dialled; /* the client's side, kept open so the flow stays alive */
    struct sockaddr_storage expected;
} flows;

static void open_flows(flows *set, int count, int family, int listen_port, int dial_port) {
    int listener = socket(family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int on = 1;
    setsockopt(listener, SOL_SOCKET, SO_REUSEADDR, &on, sizeof on);
    struct sockaddr_storage address = {0}, target = {0};
    socklen_t length;
    if (family == AF_INET) {
        struct sockaddr_in *listen_at = (struct sockaddr_in *)&address, *dial = (struct sockaddr_in *)&target;
        *listen_at = (struct sockaddr_in){
            .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK), .sin_port = htons((uint16_t)listen_port)};
        *dial = (struct sockaddr_in){.sin_family = AF_INET, .sin_port = htons((uint16_t)dial_port)};
        inet_pton(AF_INET, "127.0.0.2", &dial->sin_addr);
        length = sizeof(struct sockaddr_in);
    } else {
        struct sockaddr_in6 *listen_at = (struct sockaddr_in6 *)&address, *dial = (struct sockaddr_in6 *)&target;
        *listen_at = (struct sockaddr_in6){
            .sin6_family = AF_INET6, .sin6_addr = IN6ADDR_LOOPBACK_INIT, .sin6_port = htons((uint16_t)listen_port)};
        *dial = (struct sockaddr_in6){.sin6_family = AF_INET6, .sin6_port = htons((uint16_t)dial_port)};
        inet_pton(AF_INET6, V6_TARGET, &dial->sin6_addr);
        setsockopt(listener, IPPROTO_IPV6, IPV6_V6ONLY, &on, sizeof on);
        length = sizeof(struct sockaddr_in6);
    }
    if (bind(listener, (struct sockaddr *)&address, length) != 0 || listen(listener, 1024) != 0)
        die("listener");
    *set = (flows){.count = count,
                   .family = family,
                   .accepted = calloc((size_t)count, sizeof(int)),
                   .dialled = calloc((size_t)count, sizeof(int)),
                   .expected = target};
    for (int i = 0; i < count; i++) {
        set->dialled[i] = socket(family, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (connect(set->dialled[i], (struct sockaddr *)&target, length) != 0)
            die(family == AF_INET ? "connect to 127.0.0.2 (is the redirect in place?)"
                                  : "connect to " V6_TARGET " (is the redirect in place?)");
        set->accepted[i] = accept4(listener, NULL, NULL, SOCK_CLOEXEC);
        if (set->accepted[i] < 0)
            die("accept");
    }
    close(listener);
}

static void check_original(const struct sockaddr_storage *got, const flows *set, const char *what) {
    if (set->family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)got,
                                 *want = (const struct sockaddr_in *)&set->expected;
        if (in->sin_family != AF_INET || in->sin_port != want->sin_port || in->sin_addr.s_addr != want->sin_addr.s_addr)
            wrong(what, "answer is not 127.0.0.2 and the dialled port");
    } else {
        const struct sockaddr_in6 *in = (const struct sockaddr_in6 *)got,
                                  *want = (const struct sockaddr_in6 *)&set->expected;
        if (in->sin6_family != AF_INET6 || in->sin6_port != want->sin6_port ||
            memcmp(&in->sin6_addr, &want->sin6_addr, sizeof in->sin6_addr) != 0)
            wrong(what, "answer is not " V6_TARGET " and the dialled port");
    }
}

/* ---- one measurement --------------------------------------------------------------------------- */

/* PINGPONG is no lookup at all: a request-sized line over a Unix socket to a thread that answers
 * an answer-sized line, the least any one-at-a-time request/answer protocol can cost here. */
/* KERNEL and HOOK ask with the socket's own family (SOL_IP for IPv4, SOL_IPV6 for IPv6). */
/* MAP_INSERT and MAP_DELETE are no lookup: what the hook costs the daemon per TCP flow, one
 * bpf() call at its start and one at its end, on a map like the hook's (map_write_costs). */
typedef enum method { KERNEL, HOOK, LOOKUP, LOOKUPFD, PIPELINED, PINGPONG, MAP_INSERT, MAP_DELETE, MAP_BATCH } method;
static const char *const method_names[] = {"kernel getsockopt(SO_ORIGINAL_DST)",
                                           "hook getsockopt(SO_ORIGINAL_DST)",
                                           "daemon LOOKUP (nfqr_original_dst)",
                                           "daemon LOOKUPFD (nfqr_original_dst_fd)",
                                           "daemon LOOKUP pipelined x64",
                                           "Unix socket ping-pong, no daemon (floor)",
                                           "hook map insert, bpf() (a flow starts)",
                                           "hook map delete, bpf() (a flow ends)",
                                           "hook map insert, UPDATE_BATCH of one"};
static const char *const method_keys[] = {"kernel",   "hook",       "lookup",     "lookupfd",        "pipelined",
                                          "pingpong", "map_insert", "map_delete", "map_batch_insert"};

typedef struct worker {
    method how;
    const flows *set;
    int calls;
    int first_flow;
    double *latencies;
    double started, finished;
} worker;

static pthread_barrier_t start_line;

/* What a Go proxy does: the raw system call, SOL_IP or SOL_IPV6 after the socket's family. */
static int raw_original_dst(int fd, int family, struct sockaddr_storage *original) {
    socklen_t length = family == AF_INET ? sizeof(struct sockaddr_in) : sizeof(struct sockaddr_in6);
    return (int)syscall(SYS_getsockopt, fd, family == AF_INET ? SOL_IP : SOL_IPV6, ORIGINAL_DST, original, &length);
}

static void ask_one(const worker *w, int fd) {
    struct sockaddr_storage original;
    socklen_t length = sizeof original;
    nfqr_answer answer = NFQR_FOUND;
    switch (w->how) {
    case KERNEL:
    case HOOK:
        if (raw_original_dst(fd, w->set->family, &original) != 0)
            die(w->how == KERNEL ? "getsockopt(SO_ORIGINAL_DST), kernel" : "getsockopt(SO_ORIGINAL_DST), hook");
        break;
    case LOOKUP: answer = nfqr_original_dst(fd, &original, &length); break;
    default: answer = nfqr_original_dst_fd(fd, &original, &length); break;
    }
    if (answer != NFQR_FOUND)
        wrong(method_names[w->how], nfqr_answer_name(answer));
    check_original(&original, w->set, method_names[w->how]);
}

static int connect_daemon(void) {
    const char *path = getenv("NFQ_REDIRECT_SOCKET");
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_un address = {.sun_family = AF_UNIX};
    strncpy(address.sun_path, path ? path : "", sizeof address.sun_path - 1);
    if (connect(fd, (struct sockaddr *)&address, sizeof address) != 0)
        die("connect to the lookup socket");
    return fd;
}

/* The LOOKUP line of an accepted socket, written into line; returns its length. */
static int lookup_line(int fd, char *line, size_t size) {
    struct sockaddr_in peer, local;
    socklen_t peer_length = sizeof peer, local_length = sizeof local;
    getpeername(fd, (struct sockaddr *)&peer, &peer_length);
    getsockname(fd, (struct sockaddr *)&local, &local_length);
    char peer_text[INET_ADDRSTRLEN], local_text[INET_ADDRSTRLEN];
    inet_ntop(AF_INET, &peer.sin_addr, peer_text, sizeof peer_text);
    inet_ntop(AF_INET, &local.sin_addr, local_text, sizeof local_text);
    return snprintf(line, size, "LOOKUP tcp %s %u %s %u\n", peer_text, ntohs(peer.sin_port), local_text,
                    ntohs(local.sin_port));
}

/* Batches of PIPELINE requests in one write; every answer must be the expected OK line. */
static void pipelined_calls(worker *w) {
    int daemon = connect_daemon();
    char expected[64];
    int expected_length = snprintf(expected, sizeof expected, "OK 127.0.0.2 %u\n",
                                   ntohs(((const struct sockaddr_in *)&w->set->expected)->sin_port));
    char batch[PIPELINE * 128], answers[PIPELINE * 64];
    int length = 0; /* one batch, asked again and again: what is timed is the daemon */
    for (int i = 0; i < PIPELINE; i++)
        length += lookup_line(w->set->accepted[(w->first_flow + i) % w->set->count], batch + length,
                              sizeof batch - (size_t)length);
    int batches = w->calls / PIPELINE;
    for (int b = 0; b < batches; b++) {
        double before = now_ns();
        if (send(daemon, batch, (size_t)length, MSG_NOSIGNAL) != length)
            die("send batch");
        int want = PIPELINE * expected_length, have = 0;
        while (have < want) {
            ssize_t got = recv(daemon, answers + have, sizeof answers - (size_t)have, 0);
            if (got <= 0)
                die("recv answers");
            have += (int)got;
        }
        double each = (now_ns() - before) / PIPELINE;
        for (int i = 0; i < PIPELINE; i++) {
            if (memcmp(answers + i * expected_length, expected, (size_t)expected_length) != 0)
                wrong(method_names[PIPELINED], "an answer is not the expected OK line");
            w->latencies[b * PIPELINE + i] = each;
        }
    }
    close(daemon);
}

#define PING "LOOKUP tcp 127.0.0.1 40000 127.0.0.1 7777\n"
#define PONG "OK 127.0.0.2 9999\n"

static void *answer_pings(void *argument) {
    int fd = *(int *)argument;
    char line[64];
    while (recv(fd, line, sizeof line, 0) > 0)
        if (send(fd, PONG, sizeof PONG - 1, MSG_NOSIGNAL) != (ssize_t)(sizeof PONG - 1))
            break;
    close(fd);
    return NULL;
}

/* One ping, one pong, as the C client does a LOOKUP: wait for readability, then read. */
static void pingpong_calls(worker *w) {
    int pair[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, pair) != 0)
        die("socketpair");
    pthread_t answerer;
    pthread_create(&answerer, NULL, answer_pings, &pair[1]);
    char line[64];
    for (int i = 0; i < w->calls; i++) {
        double before = now_ns();
        if (send(pair[0], PING, sizeof PING - 1, MSG_NOSIGNAL) != (ssize_t)(sizeof PING - 1))
            die("send ping");
        struct pollfd ready = {.fd = pair[0], .events = POLLIN};
        if (poll(&ready, 1, -1) != 1 || recv(pair[0], line, sizeof line, 0) != (ssize_t)(sizeof PONG - 1))
            die("recv pong");
        w->latencies[i] = now_ns() - before;
    }
    close(pair[0]);
    pthread_join(answerer, NULL);
}

static void *run_worker(void *argument) {
    worker *w = argument;
    if (w->how == LOOKUP || w->how == LOOKUPFD)
        ask_one(w, w->set->accepted[w->first_flow]); /* the library connects on first use */
    pthread_barrier_wait(&start_line);
    w->started = now_ns();
    if (w->how == PIPELINED) {
        pipelined_calls(w);
    } else if (w->how == PINGPONG) {
        pingpong_calls(w);
    } else {
        for (int i = 0; i < w->calls; i++) {
            double before = now_ns();
            ask_one(w, w->set->accepted[(w->first_flow + i) % w->set->count]);
            w->latencies[i] = now_ns() - before;
        }
    }
    w->finished = now_ns();
    return NULL;
}

static int compare_doubles(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

typedef struct figure {
    method how;
    int family;
    int threads;
    double p50_us, p99_us, mean_us, per_second;
} figure;

static figure figures[MAX_FIGURES];
static int figure_count;

/* Sorts `latencies` (ns), prints the line and keeps the figure. */
static void record(method how, int family, int threads, double *latencies, size_t total, double elapsed_ns) {
    double sum = 0;
    for (size_t i = 0; i < total; i++)
        sum += latencies[i];
    qsort(latencies, total, sizeof *latencies, compare_doubles);
    figure f = {how,
                family,
                threads,
                latencies[total / 2] / 1e3,
                latencies[total * 99 / 100] / 1e3,
                sum / (double)total / 1e3,
                (double)total / (elapsed_ns / 1e9)};
    char name[64];
    snprintf(name, sizeof name, "%s%s", method_names[how], family == AF_INET6 ? " v6" : "");
    const char *unit = how >= MAP_INSERT ? "calls/s" : "lookups/s";
    printf("%-42s %2d conn  p50 %7.2f us  p99 %7.2f us  mean %7.2f us  %9.0f %s\n", name, threads, f.p50_us, f.p99_us,
           f.mean_us, f.per_second, unit);
    fflush(stdout);
    if (figure_count < MAX_FIGURES)
        figures[figure_count++] = f;
}

static void measure(method how, const flows *set, int calls, int threads) {
    calls -= calls % PIPELINE;
    double *latencies = malloc(sizeof(double) * (size_t)calls * (size_t)threads);
    worker *workers = calloc((size_t)threads, sizeof *workers);
    pthread_t *ids = calloc((size_t)threads, sizeof *ids);
    pthread_barrier_init(&start_line, NULL, (unsigned)threads);
    for (int t = 0; t < threads; t++) {
        workers[t] = (worker){.how = how,
                              .set = set,
                              .calls = calls,
                              .first_flow = t * set->count / threads,
                              .latencies = latencies + (size_t)t * (size_t)calls};
        pthread_create(&ids[t], NULL, run_worker, &workers[t]);
    }
    double first = 1e300, last = 0;
    for (int t = 0; t < threads; t++) {
        pthread_join(ids[t], NULL);
        first = workers[t].started < first ? workers[t].started : first;
        last = workers[t].finished > last ? workers[t].finished : last;
    }
    record(how, set->family, threads, latencies, (size_t)calls * (size_t)threads, last - first);
    pthread_barrier_destroy(&start_line);
    free(latencies);
    free(workers);
    free(ids);
}

static long bpf_call(int command, union bpf_attr *attribute) {
    return syscall(SYS_bpf, command, attribute, sizeof *attribute);
}

/* The daemon's side of the hook: a map like the program's (hash, 48-byte key, 20-byte value,
 * not preallocated), CALLS entries inserted one bpf(BPF_MAP_UPDATE_ELEM) at a time as flows
 * start, then deleted as they end, each call timed. Flows differ by client address and port. */
static void map_write_costs(int calls) {
    union bpf_attr create = {.map_type = BPF_MAP_TYPE_HASH,
                             .key_size = sizeof(struct nfqr_origdst_key),
                             .value_size = sizeof(struct nfqr_origdst_value),
                             .max_entries = 262144,
                             .map_flags = BPF_F_NO_PREALLOC};
    int map = (int)bpf_call(BPF_MAP_CREATE, &create);
    if (map < 0) {
        printf("hook map insert/delete: no BPF map (%s): skipped\n", strerror(errno));
        return;
    }
    struct nfqr_origdst_key *keys = calloc((size_t)calls, sizeof *keys);
    double *latencies = malloc(sizeof(double) * (size_t)calls);
    struct nfqr_origdst_value value = {
        .addr = {0, 0, htonl(0xffff), htonl(0x7f000002)}, .port = htons(9999), .family = NFQR_FAMILY_INET};
    for (int i = 0; i < calls; i++)
        keys[i] = (struct nfqr_origdst_key){.netns_cookie = 4096,
                                            .local_addr = {0, 0, htonl(0xffff), htonl(0x7f000001)},
                                            .peer_addr = {0, 0, htonl(0xffff), htonl(0x0a000000 + (uint32_t)(i >> 14))},
                                            .local_port = 7777,
                                            .peer_port = (uint16_t)(32768 + (i & 0x3fff))};
    /* Inserts one element per call (BPF_MAP_UPDATE_ELEM), deletes them, then inserts them again
     * one per BPF_MAP_UPDATE_BATCH call (a receive batch that created one flow) and deletes them
     * untimed. */
    for (method how = MAP_INSERT; how <= MAP_BATCH; how++) {
        double first = now_ns();
        for (int i = 0; i < calls; i++) {
            union bpf_attr element = {.map_fd = (uint32_t)map, .key = (uint64_t)(uintptr_t)&keys[i]};
            if (how == MAP_INSERT) { /* a delete refuses any field past the key */
                element.value = (uint64_t)(uintptr_t)&value;
                element.flags = BPF_ANY;
            } else if (how == MAP_BATCH) {
                element = (union bpf_attr){.batch = {.map_fd = (uint32_t)map,
                                                     .keys = (uint64_t)(uintptr_t)&keys[i],
                                                     .values = (uint64_t)(uintptr_t)&value,
                                                     .count = 1,
                                                     .elem_flags = BPF_ANY}};
            }
            int command = how == MAP_INSERT   ? BPF_MAP_UPDATE_ELEM
                          : how == MAP_DELETE ? BPF_MAP_DELETE_ELEM
                                              : BPF_MAP_UPDATE_BATCH;
            double before = now_ns();
            if (bpf_call(command, &element) != 0)
                die(how == MAP_DELETE ? "bpf(BPF_MAP_DELETE_ELEM)" : "bpf(BPF_MAP_UPDATE_ELEM / _BATCH)");
            latencies[i] = now_ns() - before;
        }
        record(how, AF_INET, 1, latencies, (size_t)calls, now_ns() - first);
    }
    for (int i = 0; i < calls; i++) {
        union bpf_attr element = {.map_fd = (uint32_t)map, .key = (uint64_t)(uintptr_t)&keys[i]};
        bpf_call(BPF_MAP_DELETE_ELEM, &element);
    }
    close(map);
    free(keys);
    free(latencies);
}

/* Whether the hook answers for the daemon's flows. Without it the kernel answers ENOENT, or,
 * where conntrack saw the flow already rewritten, the listener's own address: either means no
 * hook. A wrong answer while the hook is on shows in the measurement, which checks each one. */
static bool hook_answers(const flows *set, bool quiet) {
    struct sockaddr_storage original = {0};
    if (raw_original_dst(set->accepted[0], set->family, &original) != 0) {
        if (errno != ENOENT)
            die("getsockopt(SO_ORIGINAL_DST) on a daemon-redirected connection");
        if (!quiet)
            printf("hook getsockopt(SO_ORIGINAL_DST) %s: ENOENT for the daemon's flows: no hook answers\n",
                   set->family == AF_INET ? "IPv4" : "IPv6");
        return false;
    }
    char text[INET6_ADDRSTRLEN] = "?";
    int port;
    if (original.ss_family == AF_INET6) {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)&original;
        inet_ntop(AF_INET6, &in6->sin6_addr, text, sizeof text);
        port = ntohs(in6->sin6_port);
    } else {
        const struct sockaddr_in *in = (const struct sockaddr_in *)&original;
        inet_ntop(AF_INET, &in->sin_addr, text, sizeof text);
        port = ntohs(in->sin_port);
    }
    const struct sockaddr_in *want4 = (const struct sockaddr_in *)&set->expected;
    const struct sockaddr_in6 *want6 = (const struct sockaddr_in6 *)&set->expected;
    bool right =
        set->family == AF_INET
            ? original.ss_family == AF_INET && ((struct sockaddr_in *)&original)->sin_port == want4->sin_port &&
                  ((struct sockaddr_in *)&original)->sin_addr.s_addr == want4->sin_addr.s_addr
            : original.ss_family == AF_INET6 && ((struct sockaddr_in6 *)&original)->sin6_port == want6->sin6_port &&
                  memcmp(&((struct sockaddr_in6 *)&original)->sin6_addr, &want6->sin6_addr, sizeof want6->sin6_addr) ==
                      0;
    if (!right && !quiet)
        printf("hook getsockopt(SO_ORIGINAL_DST) %s: the kernel's own answer for the daemon's flows, %s port %d "
               "(conntrack saw them rewritten): no hook answers\n",
               set->family == AF_INET ? "IPv4" : "IPv6", text, port);
    return right;
}

static double median_of(double *values, int count) {
    qsort(values, (size_t)count, sizeof *values, compare_doubles);
    return count % 2 ? values[count / 2] : (values[count / 2 - 1] + values[count / 2]) / 2;
}

/* kernel and hook in turn, ROUNDS times, one thread; then the median of each side's rounds. */
static void getsockopt_rounds(const flows *kernel_flows, const flows *daemon_flows, int calls) {
    bool hook = daemon_flows && hook_answers(daemon_flows, false);
    const char *family = kernel_flows->family == AF_INET ? "IPv4" : "IPv6";
    int first = figure_count;
    for (int round = 0; round < ROUNDS; round++) {
        measure(KERNEL, kernel_flows, calls, 1);
        if (hook)
            measure(HOOK, daemon_flows, calls, 1);
    }
    for (method how = KERNEL; how <= (hook ? HOOK : KERNEL); how++) {
        double p50[ROUNDS], p99[ROUNDS], mean[ROUNDS];
        int n = 0;
        for (int i = first; i < figure_count; i++)
            if (figures[i].how == how) {
                p50[n] = figures[i].p50_us, p99[n] = figures[i].p99_us, mean[n] = figures[i].mean_us;
                n++;
            }
        if (n == 0)
            continue;
        printf("median of %d rounds, %s %-34s p50 %7.2f us  p99 %7.2f us  mean %7.2f us\n", n, family,
               method_names[how], median_of(p50, n), median_of(p99, n), median_of(mean, n));
    }
    fflush(stdout);
}

static void print_json(long cores, int flow_count, int calls) {
    printf("{\"cores\": %ld, \"flows\": %d, \"calls\": %d, \"results\": [", cores, flow_count, calls);
    for (int i = 0; i < figure_count; i++)
        printf("%s{\"method\": \"%s\", \"family\": \"%s\", \"connections\": %d, \"p50_us\": %.2f, "
               "\"p99_us\": %.2f, \"mean_us\": %.3f, \"per_second\": %.0f}",
               i ? ", " : "", method_keys[figures[i].how], figures[i].family == AF_INET ? "v4" : "v6",
               figures[i].threads, figures[i].p50_us, figures[i].p99_us, figures[i].mean_us, figures[i].per_second);
    printf("]}\n");
}

int main(int argc, char **argv) {
    bool kernel_only = argc > 1 && strcmp(argv[1], "--kernel-only") == 0;
    if (kernel_only) {
        argc--;
        argv++;
    }
    if (argc != (kernel_only ? 3 : 4)) {
        fprintf(stderr,
                "usage: daemon_lookup FLOWS CALLS THREADS | --kernel-only FLOWS CALLS (see the comment at the top)\n");
        return 2;
    }
    int flow_count = atoi(argv[1]), calls = atoi(argv[2]), threads = kernel_only ? 1 : atoi(argv[3]);
    if (flow_count < 1 || calls < PIPELINE || threads < 1)
        wrong("arguments", "FLOWS >= 1, CALLS >= 64, THREADS >= 1");
    const char *v6_setting = getenv("NFQR_BENCH_V6");
    bool v6 = v6_setting && strcmp(v6_setting, "1") == 0;
    flows daemon_flows, kernel_flows, daemon_flows6, kernel_flows6;
    if (!kernel_only)
        open_flows(&daemon_flows, flow_count, AF_INET, 7777, 9999);
    open_flows(&kernel_flows, flow_count, AF_INET, 7778, 9998);
    if (v6) {
        if (!kernel_only)
            open_flows(&daemon_flows6, flow_count, AF_INET6, 7777, 9999);
        open_flows(&kernel_flows6, flow_count, AF_INET6, 7778, 9998);
    }
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    printf("%d flows of each kind, %d calls per connection, %ld cores\n", flow_count, calls, cores);
    getsockopt_rounds(&kernel_flows, kernel_only ? NULL : &daemon_flows, calls);
    if (v6)
        getsockopt_rounds(&kernel_flows6, kernel_only ? NULL : &daemon_flows6, calls);
    if (!kernel_only) {
        map_write_costs(calls);
        bool hook = hook_answers(&daemon_flows, true);
        for (int n = 1; n <= threads; n = n == 1 ? threads : threads + 1) {
            measure(KERNEL, &kernel_flows, calls, n);
            if (hook)
                measure(HOOK, &daemon_flows, calls, n);
            measure(LOOKUP, &daemon_flows, calls, n);
            measure(LOOKUPFD, &daemon_flows, calls, n);
            measure(PIPELINED, &daemon_flows, calls, n);
            measure(PINGPONG, &daemon_flows, calls, n);
        }
    }
    print_json(cores, flow_count, calls);
    return 0;
}
