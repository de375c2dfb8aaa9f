/*
 * Lookups against the real nfq-redirectd, next to the kernel's own getsockopt(SO_ORIGINAL_DST),
 * in one run. bench.sh sets the stage (a namespace, the daemon with a local redirect
 * 127.0.0.2:9999 -> 127.0.0.1:7777, the kernel's nat REDIRECT 127.0.0.2:9998 -> 127.0.0.1:7778)
 * and runs
 *
 *   lookup_bench FLOWS CALLS THREADS      (NFQ_REDIRECT_SOCKET names the daemon's socket)
 *
 * FLOWS connections of each kind are opened and accepted first; every measurement then asks
 * about them in turn and checks each answer (a wrong or missing one fails the run):
 *   kernel     getsockopt(SO_ORIGINAL_DST) on a kernel-redirected connection (raw syscall)
 *   LOOKUP     nfqr_original_dst(): one request, one answer, on the thread's kept connection
 *   LOOKUPFD   nfqr_original_dst_fd(): the same with the socket passed as SCM_RIGHTS
 *   pipelined  LOOKUP lines written in batches of PIPELINE per write, answers read back
 * each over one connection (one thread) and over THREADS (one connection per thread).
 * Latency is per call (per batch / PIPELINE for pipelined), percentiles over all threads.
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
#include <sys/syscall.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "nfq_redirect.h"

#define ORIGINAL_DST 80
#define PIPELINE 64
#define MAX_FIGURES 16

static double now_ns(void)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return now.tv_sec * 1e9 + now.tv_nsec;
}

static _Noreturn void die(const char *what)
{
    perror(what);
    exit(1);
}

static _Noreturn void wrong(const char *what, const char *detail)
{
    fprintf(stderr, "lookup_bench: %s: %s\n", what, detail);
    exit(1);
}

/* ---- the connections asked about ------------------------------------------------------------- */

typedef struct flows {
    int count;
    int *accepted;   /* the proxy's side: what is looked up */
    int *dialled;    /* the client's side, kept open so the flow stays alive */
    struct sockaddr_in expected;
} flows;

static void open_flows(flows *set, int count, int listen_port, int dial_port)
{
    int listener = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int on = 1;
    setsockopt(listener, SOL_SOCKET, SO_REUSEADDR, &on, sizeof on);
    struct sockaddr_in address = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK),
                                   .sin_port = htons((uint16_t)listen_port) };
    if (bind(listener, (struct sockaddr *)&address, sizeof address) != 0 || listen(listener, 1024) != 0)
        die("listener");
    struct sockaddr_in target = { .sin_family = AF_INET, .sin_port = htons((uint16_t)dial_port) };
    inet_pton(AF_INET, "127.0.0.2", &target.sin_addr);
    *set = (flows){ .count = count, .accepted = calloc((size_t)count, sizeof(int)),
                    .dialled = calloc((size_t)count, sizeof(int)), .expected = target };
    for (int i = 0; i < count; i++) {
        set->dialled[i] = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (connect(set->dialled[i], (struct sockaddr *)&target, sizeof target) != 0)
            die("connect to 127.0.0.2 (is the redirect in place?)");
        set->accepted[i] = accept4(listener, NULL, NULL, SOCK_CLOEXEC);
        if (set->accepted[i] < 0)
            die("accept");
    }
    close(listener);
}

static void check_original(const struct sockaddr_in *got, const flows *set, const char *what)
{
    if (got->sin_family != AF_INET || got->sin_port != set->expected.sin_port
        || got->sin_addr.s_addr != set->expected.sin_addr.s_addr)
        wrong(what, "answer is not 127.0.0.2 and the dialled port");
}

/* ---- one measurement --------------------------------------------------------------------------- */

/* PINGPONG is no lookup at all: a request-sized line over a Unix socket to a thread that answers
 * an answer-sized line, the least any one-at-a-time request/answer protocol can cost here. */
typedef enum method { KERNEL, LOOKUP, LOOKUPFD, PIPELINED, PINGPONG } method;
static const char *const method_names[] = { "kernel getsockopt(SO_ORIGINAL_DST)", "daemon LOOKUP (nfqr_original_dst)",
                                            "daemon LOOKUPFD (nfqr_original_dst_fd)", "daemon LOOKUP pipelined x64",
                                            "Unix socket ping-pong, no daemon (floor)" };
static const char *const method_keys[] = { "kernel", "lookup", "lookupfd", "pipelined", "pingpong" };

typedef struct worker {
    method how;
    const flows *set;
    int calls;
    int first_flow;
    double *latencies;
    double started, finished;
} worker;

static pthread_barrier_t start_line;

static void ask_one(const worker *w, int fd)
{
    struct sockaddr_storage original;
    socklen_t length = sizeof original;
    nfqr_answer answer = NFQR_FOUND;
    switch (w->how) {
    case KERNEL:
        length = sizeof(struct sockaddr_in);
        if (syscall(SYS_getsockopt, fd, SOL_IP, ORIGINAL_DST, &original, &length) != 0)
            die("getsockopt(SO_ORIGINAL_DST)");
        break;
    case LOOKUP:
        answer = nfqr_original_dst(fd, &original, &length);
        break;
    default:
        answer = nfqr_original_dst_fd(fd, &original, &length);
        break;
    }
    if (answer != NFQR_FOUND)
        wrong(method_names[w->how], nfqr_answer_name(answer));
    check_original((struct sockaddr_in *)&original, w->set, method_names[w->how]);
}

static int connect_daemon(void)
{
    const char *path = getenv("NFQ_REDIRECT_SOCKET");
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_un address = { .sun_family = AF_UNIX };
    strncpy(address.sun_path, path ? path : "", sizeof address.sun_path - 1);
    if (connect(fd, (struct sockaddr *)&address, sizeof address) != 0)
        die("connect to the lookup socket");
    return fd;
}

/* The LOOKUP line of an accepted socket, written into line; returns its length. */
static int lookup_line(int fd, char *line, size_t size)
{
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
static void pipelined_calls(worker *w)
{
    int daemon = connect_daemon();
    char expected[64];
    int expected_length = snprintf(expected, sizeof expected, "OK 127.0.0.2 %u\n", ntohs(w->set->expected.sin_port));
    char batch[PIPELINE * 128], answers[PIPELINE * 64];
    int length = 0;   /* one batch, asked again and again: what is timed is the daemon */
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

static void *answer_pings(void *argument)
{
    int fd = *(int *)argument;
    char line[64];
    while (recv(fd, line, sizeof line, 0) > 0)
        if (send(fd, PONG, sizeof PONG - 1, MSG_NOSIGNAL) != (ssize_t)(sizeof PONG - 1))
            break;
    close(fd);
    return NULL;
}

/* One ping, one pong, as the C client does a LOOKUP: wait for readability, then read. */
static void pingpong_calls(worker *w)
{
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
        struct pollfd ready = { .fd = pair[0], .events = POLLIN };
        if (poll(&ready, 1, -1) != 1 || recv(pair[0], line, sizeof line, 0) != (ssize_t)(sizeof PONG - 1))
            die("recv pong");
        w->latencies[i] = now_ns() - before;
    }
    close(pair[0]);
    pthread_join(answerer, NULL);
}

static void *run_worker(void *argument)
{
    worker *w = argument;
    if (w->how == LOOKUP || w->how == LOOKUPFD)
        ask_one(w, w->set->accepted[w->first_flow]);   /* the library connects on first use */
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

static int compare_doubles(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

typedef struct figure {
    method how;
    int threads;
    double p50_us, p99_us, per_second;
} figure;

static figure figures[MAX_FIGURES];
static int figure_count;

static void measure(method how, const flows *set, int calls, int threads)
{
    calls -= calls % PIPELINE;
    double *latencies = malloc(sizeof(double) * (size_t)calls * (size_t)threads);
    worker *workers = calloc((size_t)threads, sizeof *workers);
    pthread_t *ids = calloc((size_t)threads, sizeof *ids);
    pthread_barrier_init(&start_line, NULL, (unsigned)threads);
    for (int t = 0; t < threads; t++) {
        workers[t] = (worker){ .how = how, .set = set, .calls = calls, .first_flow = t * set->count / threads,
                               .latencies = latencies + (size_t)t * (size_t)calls };
        pthread_create(&ids[t], NULL, run_worker, &workers[t]);
    }
    double first = 1e300, last = 0;
    for (int t = 0; t < threads; t++) {
        pthread_join(ids[t], NULL);
        first = workers[t].started < first ? workers[t].started : first;
        last = workers[t].finished > last ? workers[t].finished : last;
    }
    size_t total = (size_t)calls * (size_t)threads;
    qsort(latencies, total, sizeof *latencies, compare_doubles);
    figure f = { how, threads, latencies[total / 2] / 1e3, latencies[total * 99 / 100] / 1e3,
                 (double)total / ((last - first) / 1e9) };
    printf("%-42s %2d conn  p50 %7.2f us  p99 %7.2f us  %9.0f lookups/s\n", method_names[how], threads,
           f.p50_us, f.p99_us, f.per_second);
    fflush(stdout);
    if (figure_count < MAX_FIGURES)
        figures[figure_count++] = f;
    pthread_barrier_destroy(&start_line);
    free(latencies);
    free(workers);
    free(ids);
}

int main(int argc, char **argv)
{
    if (argc != 4) {
        fprintf(stderr, "usage: lookup_bench FLOWS CALLS THREADS (see the comment at the top)\n");
        return 2;
    }
    int flow_count = atoi(argv[1]), calls = atoi(argv[2]), threads = atoi(argv[3]);
    if (flow_count < 1 || calls < PIPELINE || threads < 1)
        wrong("arguments", "FLOWS >= 1, CALLS >= 64, THREADS >= 1");
    flows daemon_flows, kernel_flows;
    open_flows(&daemon_flows, flow_count, 7777, 9999);
    open_flows(&kernel_flows, flow_count, 7778, 9998);
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    printf("%d flows of each kind, %d calls per connection, %ld cores\n", flow_count, calls, cores);
    for (int n = 1; n <= threads; n = n == 1 ? threads : threads + 1) {
        measure(KERNEL, &kernel_flows, calls, n);
        measure(LOOKUP, &daemon_flows, calls, n);
        measure(LOOKUPFD, &daemon_flows, calls, n);
        measure(PIPELINED, &daemon_flows, calls, n);
        measure(PINGPONG, &daemon_flows, calls, n);
    }
    printf("{\"cores\": %ld, \"flows\": %d, \"calls\": %d, \"results\": [", cores, flow_count, calls);
    for (int i = 0; i < figure_count; i++)
        printf("%s{\"method\": \"%s\", \"connections\": %d, \"p50_us\": %.2f, \"p99_us\": %.2f, \"per_second\": %.0f}",
               i ? ", " : "", method_keys[figures[i].how], figures[i].threads, figures[i].p50_us, figures[i].p99_us,
               figures[i].per_second);
    printf("]}\n");
    return 0;
}
