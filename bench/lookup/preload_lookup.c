/*
 * Latency of getsockopt(SO_ORIGINAL_DST): through the preload library against a lookup
 * responder, and the kernel's own on a kernel-redirected connection. bench.sh runs it.
 *
 *   preload_lookup responder PATH           answer every LOOKUP/LOOKUPFD line with a fixed OK
 *   preload_lookup preload CALLS THREADS    getsockopt via LD_PRELOAD (NFQ_REDIRECT_SOCKET=PATH)
 *   preload_lookup kernel CALLS THREADS     raw getsockopt on connections to 127.0.0.2:9999,
 *                                         REDIRECTed by iptables to 7777 (run in a namespace)
 *   preload_lookup passthrough CALLS        an unrelated getsockopt (SO_TYPE): preload vs syscall
 *   preload_lookup connect-per-call CALLS   what a lookup costs with a new connection each time
 *   preload_lookup persistent CALLS         ... and on one kept connection (no library involved)
 *
 * Each thread has its own connection; latency is per call, percentiles over all threads.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
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

#define ORIGINAL_DST 80

static double now_ns(void) {
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return now.tv_sec * 1e9 + now.tv_nsec;
}

static void die(const char *what) {
    perror(what);
    exit(1);
}

/* ---- the responder ------------------------------------------------------------------------- */

static void *answer_connection(void *argument) {
    int fd = (int)(long)argument;
    static const char answer[] = "OK 203.0.113.5 443\n";
    char buffer[4096];
    union {
        char space[CMSG_SPACE(16 * sizeof(int))];
        struct cmsghdr align;
    } control;
    for (;;) {
        struct iovec part = {buffer, sizeof buffer};
        struct msghdr message = {
            .msg_iov = &part, .msg_iovlen = 1, .msg_control = control.space, .msg_controllen = sizeof control.space};
        ssize_t count = recvmsg(fd, &message, MSG_CMSG_CLOEXEC);
        if (count <= 0)
            break;
        for (struct cmsghdr *header = CMSG_FIRSTHDR(&message); header; header = CMSG_NXTHDR(&message, header))
            if (header->cmsg_level == SOL_SOCKET && header->cmsg_type == SCM_RIGHTS) {
                int passed_count = (int)((header->cmsg_len - CMSG_LEN(0)) / sizeof(int));
                for (int i = 0; i < passed_count; i++) {
                    int passed;
                    memcpy(&passed, CMSG_DATA(header) + i * sizeof(int), sizeof passed);
                    close(passed);
                }
            }
        for (ssize_t i = 0; i < count; i++)
            if (buffer[i] == '\n' && send(fd, answer, sizeof answer - 1, MSG_NOSIGNAL) < 0)
                goto done;
    }
done:
    close(fd);
    return NULL;
}

static _Noreturn void responder(const char *path) {
    int listener = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_un address = {.sun_family = AF_UNIX};
    strncpy(address.sun_path, path, sizeof address.sun_path - 1);
    unlink(path);
    if (bind(listener, (struct sockaddr *)&address, sizeof address) != 0 || listen(listener, 1024) != 0)
        die("responder");
    printf("ready\n");
    fflush(stdout);
    for (;;) {
        int fd = accept4(listener, NULL, NULL, SOCK_CLOEXEC);
        if (fd < 0)
            continue;
        pthread_t thread;
        pthread_create(&thread, NULL, answer_connection, (void *)(long)fd);
        pthread_detach(thread);
    }
}

/* ---- connections to look up ------------------------------------------------------------------ */

static int listener_fd;
static struct sockaddr_in connect_to;

static void prepare_listener(bool kernel_redirect) {
    listener_fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int on = 1;
    setsockopt(listener_fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof on);
    struct sockaddr_in address = {.sin_family = AF_INET,
                                  .sin_addr.s_addr = htonl(INADDR_LOOPBACK),
                                  .sin_port = htons(kernel_redirect ? 7777 : 0)};
    if (bind(listener_fd, (struct sockaddr *)&address, sizeof address) != 0 || listen(listener_fd, 128) != 0)
        die("listener");
    socklen_t length = sizeof address;
    getsockname(listener_fd, (struct sockaddr *)&address, &length);
    connect_to = address;
    if (kernel_redirect) { /* REDIRECTed to 127.0.0.1:7777 by the namespace's iptables rule */
        connect_to.sin_port = htons(9999);
        inet_pton(AF_INET, "127.0.0.2", &connect_to.sin_addr);
    }
}

static pthread_mutex_t accept_lock = PTHREAD_MUTEX_INITIALIZER;

static int accepted_connection(int *client) {
    pthread_mutex_lock(&accept_lock);
    *client = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (connect(*client, (struct sockaddr *)&connect_to, sizeof connect_to) != 0)
        die("connect");
    int server = accept4(listener_fd, NULL, NULL, SOCK_CLOEXEC);
    pthread_mutex_unlock(&accept_lock);
    if (server < 0)
        die("accept");
    return server;
}

/* ---- timing -------------------------------------------------------------------------------- */

typedef struct run {
    bool raw_syscall;
    int calls;
    double *latencies; /* this thread's slice */
    double started, finished;
} run;

static pthread_barrier_t start_line;

static void *time_calls(void *argument) {
    run *r = argument;
    int client;
    int server = accepted_connection(&client);
    pthread_barrier_wait(&start_line);
    r->started = now_ns();
    for (int i = 0; i < r->calls; i++) {
        struct sockaddr_in original;
        socklen_t length = sizeof original;
        double before = now_ns();
        int result = r->raw_syscall ? (int)syscall(SYS_getsockopt, server, SOL_IP, ORIGINAL_DST, &original, &length)
                                    : getsockopt(server, SOL_IP, ORIGINAL_DST, &original, &length);
        r->latencies[i] = now_ns() - before;
        if (result != 0)
            die("getsockopt(SO_ORIGINAL_DST)");
    }
    r->finished = now_ns();
    close(server);
    close(client);
    return NULL;
}

static int compare_doubles(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static void report(const char *label, double *latencies, size_t count, double seconds) {
    qsort(latencies, count, sizeof *latencies, compare_doubles);
    double sum = 0;
    for (size_t i = 0; i < count; i++)
        sum += latencies[i];
    printf("%-44s p50 %8.2f us  p99 %8.2f us  mean %8.2f us  %9.0f calls/s\n", label, latencies[count / 2] / 1e3,
           latencies[count * 99 / 100] / 1e3, sum / count / 1e3, count / seconds);
}

static void time_lookups(const char *label, bool raw_syscall, int calls, int threads) {
    double *latencies = malloc(sizeof(double) * (size_t)calls * (size_t)threads);
    run *runs = calloc((size_t)threads, sizeof *runs);
    pthread_t *ids = calloc((size_t)threads, sizeof *ids);
    pthread_barrier_init(&start_line, NULL, (unsigned)threads);
    for (int t = 0; t < threads; t++) {
        runs[t] = (run){.raw_syscall = raw_syscall, .calls = calls, .latencies = latencies + (size_t)t * calls};
        pthread_create(&ids[t], NULL, time_calls, &runs[t]);
    }
    double first = 1e300, last = 0;
    for (int t = 0; t < threads; t++) {
        pthread_join(ids[t], NULL);
        first = runs[t].started < first ? runs[t].started : first;
        last = runs[t].finished > last ? runs[t].finished : last;
    }
    char full_label[128];
    snprintf(full_label, sizeof full_label, "%s, %d thread%s", label, threads, threads == 1 ? "" : "s");
    report(full_label, latencies, (size_t)calls * threads, (last - first) / 1e9);
    pthread_barrier_destroy(&start_line);
    free(latencies);
    free(runs);
    free(ids);
}

/* ---- pass-through and the connection-strategy comparison ----------------------------------- */

static void time_passthrough(int calls) {
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    for (int through_preload = 1; through_preload >= 0; through_preload--) {
        double start = now_ns();
        for (int i = 0; i < calls; i++) {
            int type;
            socklen_t length = sizeof type;
            if (through_preload)
                getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &length);
            else
                syscall(SYS_getsockopt, fd, SOL_SOCKET, SO_TYPE, &type, &length);
        }
        printf("%-44s %8.1f ns/call\n",
               through_preload ? "getsockopt(SO_TYPE) through the preload" : "getsockopt(SO_TYPE) as a raw syscall",
               (now_ns() - start) / calls);
    }
    close(fd);
}

static int connect_unix(const char *path) {
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_un address = {.sun_family = AF_UNIX};
    strncpy(address.sun_path, path, sizeof address.sun_path - 1);
    if (connect(fd, (struct sockaddr *)&address, sizeof address) != 0)
        die("connect responder");
    return fd;
}

static void ask(int fd) {
    static const char line[] = "LOOKUP tcp 127.0.0.1 40000 127.0.0.1 7777\n";
    char answer[64];
    if (send(fd, line, sizeof line - 1, MSG_NOSIGNAL) < 0 || recv(fd, answer, sizeof answer, 0) <= 0)
        die("exchange");
}

static void time_connection_strategy(int calls, bool per_call) {
    const char *path = getenv("NFQ_REDIRECT_SOCKET");
    double *latencies = malloc(sizeof(double) * (size_t)calls);
    int kept = per_call ? -1 : connect_unix(path);
    double start = now_ns();
    for (int i = 0; i < calls; i++) {
        double before = now_ns();
        int fd = per_call ? connect_unix(path) : kept;
        ask(fd);
        if (per_call)
            close(fd);
        latencies[i] = now_ns() - before;
    }
    double seconds = (now_ns() - start) / 1e9;
    report(per_call ? "raw exchange, new connection per call" : "raw exchange, one kept connection", latencies,
           (size_t)calls, seconds);
    if (!per_call)
        close(kept);
    free(latencies);
}

int main(int argc, char **argv) {
    if (argc == 3 && strcmp(argv[1], "responder") == 0)
        responder(argv[2]);
    if (argc < 3) {
        fprintf(stderr, "usage: see the comment at the top of preload_lookup.c\n");
        return 2;
    }
    int calls = atoi(argv[2]);
    int threads = argc > 3 ? atoi(argv[3]) : 1;
    if (strcmp(argv[1], "preload") == 0) {
        prepare_listener(false);
        time_lookups(getenv("NFQ_REDIRECT_LOOKUP") ? "preload, LOOKUPFD" : "preload, LOOKUP", false, calls, threads);
    } else if (strcmp(argv[1], "kernel") == 0) {
        prepare_listener(true);
        time_lookups("kernel SO_ORIGINAL_DST (iptables REDIRECT)", true, calls, threads);
    } else if (strcmp(argv[1], "passthrough") == 0) {
        time_passthrough(calls);
    } else if (strcmp(argv[1], "connect-per-call") == 0 || strcmp(argv[1], "persistent") == 0) {
        time_connection_strategy(calls, strcmp(argv[1], "connect-per-call") == 0);
    } else {
        fprintf(stderr, "unknown mode %s\n", argv[1]);
        return 2;
    }
    return 0;
}
