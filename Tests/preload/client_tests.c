/*
 * The client API (nfq_redirect.h) against fake_daemon.py, over real loopback connections.
 *
 *     client_tests                  the daemon at NFQ_REDIRECT_SOCKET, NFQ_REDIRECT_TIMEOUT_MS=300
 *     client_tests --absent ERRNO   no daemon there: every lookup is unavailable with ERRNO
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>

#include "fake_daemon_control.h"
#include "nfq_redirect.h"

static double now_ms(void) {
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return now.tv_sec * 1e3 + now.tv_nsec / 1e6;
}

static bool is_sockaddr_in(const struct sockaddr_storage *out, const char *ip, uint16_t port) {
    const struct sockaddr_in *sin = (const struct sockaddr_in *)out;
    struct in_addr expected;
    inet_pton(AF_INET, ip, &expected);
    static const char zeros[8] = {0};
    return sin->sin_family == AF_INET && ntohs(sin->sin_port) == port && sin->sin_addr.s_addr == expected.s_addr &&
           memcmp(sin->sin_zero, zeros, 8) == 0;
}

static bool is_sockaddr_in6(const struct sockaddr_storage *out, const char *ip, uint16_t port) {
    const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)out;
    struct in6_addr expected;
    inet_pton(AF_INET6, ip, &expected);
    return sin6->sin6_family == AF_INET6 && ntohs(sin6->sin6_port) == port &&
           memcmp(&sin6->sin6_addr, &expected, 16) == 0 && sin6->sin6_flowinfo == 0 && sin6->sin6_scope_id == 0;
}

/* The accepted socket's peer, which echo-client answers with. */
static bool is_own_peer(int fd, const struct sockaddr_storage *out) {
    struct sockaddr_storage peer;
    socklen_t length = sizeof peer;
    getpeername(fd, (struct sockaddr *)&peer, &length);
    return memcmp(&peer, out, length) == 0;
}

static void check_last(const char *expected, const char *what) {
    char last[600];
    daemon_last(last, sizeof last);
    CHECK(strcmp(last, expected) == 0, "%s: daemon saw \"%s\", expected \"%s\"", what, last, expected);
}

static void test_found(void) {
    struct sockaddr_storage out;
    socklen_t length = 0;
    char expected[200];

    daemon_script("ok 203.0.113.5 443");
    tcp_pair pair = tcp_pair_open(PAIR_V4);
    CHECK(nfqr_original_dst(pair.server, &out, &length) == NFQR_FOUND, "v4 found");
    CHECK(length == sizeof(struct sockaddr_in) && is_sockaddr_in(&out, "203.0.113.5", 443), "v4 sockaddr_in");
    expected_lookup(pair.server, "LOOKUP", expected, sizeof expected);
    check_last(expected, "v4 tuple");
    tcp_pair_close(&pair);

    daemon_script("ok 2001:db8::5 8443");
    pair = tcp_pair_open(PAIR_V6);
    CHECK(nfqr_original_dst(pair.server, &out, &length) == NFQR_FOUND, "v6 found");
    CHECK(length == sizeof(struct sockaddr_in6) && is_sockaddr_in6(&out, "2001:db8::5", 8443), "v6 sockaddr_in6");
    expected_lookup(pair.server, "LOOKUP", expected, sizeof expected);
    check_last(expected, "v6 tuple");
    CHECK(strstr(expected, "::1 ") != NULL, "v6 written plain: %s", expected);
    tcp_pair_close(&pair);

    /* An IPv4 client on a dual-stack socket: asked as IPv4, answered v4-mapped. */
    daemon_script("ok 203.0.113.5 443");
    pair = tcp_pair_open(PAIR_MAPPED);
    CHECK(nfqr_original_dst(pair.server, &out, &length) == NFQR_FOUND, "mapped found");
    CHECK(length == sizeof(struct sockaddr_in6) && is_sockaddr_in6(&out, "::ffff:203.0.113.5", 443), "mapped answer");
    expected_lookup(pair.server, "LOOKUP", expected, sizeof expected);
    check_last(expected, "mapped tuple");
    CHECK(strncmp(expected, "LOOKUP tcp 127.0.0.1 ", 21) == 0, "mapped asked as IPv4: %s", expected);
    daemon_script("ok ::ffff:203.0.113.6 444");
    CHECK(nfqr_original_dst(pair.server, &out, &length) == NFQR_FOUND &&
              is_sockaddr_in6(&out, "::ffff:203.0.113.6", 444),
          "a v4-mapped answer text counts as IPv4");
    tcp_pair_close(&pair);

    /* An answer of the other family is outside the protocol. */
    pair = tcp_pair_open(PAIR_V4);
    daemon_script("ok 2001:db8::5 443");
    CHECK(nfqr_original_dst(pair.server, &out, &length) == NFQR_BAD_REPLY, "IPv6 answer to an IPv4 query");
    tcp_pair_close(&pair);
    pair = tcp_pair_open(PAIR_V6);
    daemon_script("ok 203.0.113.5 443");
    CHECK(nfqr_original_dst(pair.server, &out, &length) == NFQR_BAD_REPLY, "IPv4 answer to an IPv6 query");
    tcp_pair_close(&pair);
}

static void test_lookupfd(void) {
    static const pair_kind kinds[] = {PAIR_V4, PAIR_V6, PAIR_MAPPED};
    char expected[200];
    daemon_script("echo-client");
    for (size_t i = 0; i < 3; i++) {
        tcp_pair pair = tcp_pair_open(kinds[i]);
        struct sockaddr_storage out;
        socklen_t length = 0;
        CHECK(nfqr_original_dst_fd(pair.server, &out, &length) == NFQR_FOUND, "LOOKUPFD kind %zu", i);
        CHECK(is_own_peer(pair.server, &out), "LOOKUPFD answer kind %zu", i);
        expected_lookup(pair.server, "LOOKUPFD", expected, sizeof expected);
        check_last(expected, "the daemon read the tuple from the passed socket");
        tcp_pair_close(&pair);
    }
}

static void test_refusals(void) {
    static const struct {
        const char *script;
        nfqr_answer answer;
    } cases[] = {
        {"err NOTFOUND", NFQR_NOT_FOUND},
        {"err NOTREDIRECTED", NFQR_NOT_REDIRECTED},
        {"err EXPIRED", NFQR_EXPIRED},
        {"err DENIED", NFQR_DENIED},
        {"err BADREQUEST expected 5 arguments", NFQR_BAD_REQUEST},
        {"raw HELLO\\n", NFQR_BAD_REPLY},
        {"raw OK 1.2.3.4\\n", NFQR_BAD_REPLY},
        {"raw OK 1.2.3.4 80 \\n", NFQR_BAD_REPLY},
        {"raw \\x00\\xff\\n", NFQR_BAD_REPLY},
    };
    tcp_pair pair = tcp_pair_open(PAIR_V4);
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        daemon_script("%s", cases[i].script);
        struct sockaddr_storage out;
        memset(&out, 0xAA, sizeof out);
        socklen_t length = 12345;
        nfqr_answer answer = nfqr_original_dst(pair.server, &out, &length);
        CHECK(answer == cases[i].answer, "%s -> %s", cases[i].script, nfqr_answer_name(answer));
        CHECK(length == 12345 && ((unsigned char *)&out)[0] == 0xAA, "%s leaves out alone", cases[i].script);
    }

    /* A line longer than any answer: bad reply, and the next lookup works on a new connection. */
    char long_line[700];
    memset(long_line, 'x', 600);
    strcpy(long_line + 600, "\\n");
    daemon_script("raw %s", long_line);
    struct sockaddr_storage out;
    CHECK(nfqr_original_dst(pair.server, &out, NULL) == NFQR_BAD_REPLY, "over-long answer");
    daemon_script("ok 192.0.2.1 80");
    CHECK(nfqr_original_dst(pair.server, &out, NULL) == NFQR_FOUND && is_sockaddr_in(&out, "192.0.2.1", 80),
          "recovers after an over-long answer");

    /* Two answers to one question: the first counts, the connection is not trusted again. */
    daemon_script("raw OK 192.0.2.2 80\\nOK 192.0.2.3 80\\n");
    CHECK(nfqr_original_dst(pair.server, &out, NULL) == NFQR_FOUND && is_sockaddr_in(&out, "192.0.2.2", 80),
          "first of two answers");
    daemon_script("ok 192.0.2.4 80");
    CHECK(nfqr_original_dst(pair.server, &out, NULL) == NFQR_FOUND && is_sockaddr_in(&out, "192.0.2.4", 80),
          "the stray second answer is not taken for the next one");
    tcp_pair_close(&pair);
}

static void test_timeouts_and_loss(void) {
    tcp_pair pair = tcp_pair_open(PAIR_V4);
    struct sockaddr_storage out;

    daemon_script("silent");
    double start = now_ms();
    errno = 0;
    nfqr_answer answer = nfqr_original_dst(pair.server, &out, NULL);
    double elapsed = now_ms() - start;
    CHECK(answer == NFQR_UNAVAILABLE && errno == ETIMEDOUT, "silent daemon: %s, %s", nfqr_answer_name(answer),
          strerror(errno));
    CHECK(elapsed >= 290 && elapsed < 800, "NFQ_REDIRECT_TIMEOUT_MS=300 honoured: %.0f ms", elapsed);

    /* The answer comes after the budget: given up, and not taken for the next lookup's. */
    daemon_script("delay 500 ok 192.0.2.8 8");
    answer = nfqr_original_dst(pair.server, &out, NULL);
    CHECK(answer == NFQR_UNAVAILABLE && errno == ETIMEDOUT, "late daemon: %s", nfqr_answer_name(answer));
    daemon_script("delay 100 ok 192.0.2.9 9");
    CHECK(nfqr_original_dst(pair.server, &out, NULL) == NFQR_FOUND && is_sockaddr_in(&out, "192.0.2.9", 9),
          "a slow answer within the budget, and not the late one before it");

    daemon_script("close");
    errno = 0;
    answer = nfqr_original_dst(pair.server, &out, NULL);
    CHECK(answer == NFQR_UNAVAILABLE && errno == ECONNRESET, "daemon hangs up: %s, %s", nfqr_answer_name(answer),
          strerror(errno));

    /* A daemon that dies after accepting the connection (a crash, a watchdog abort) closes it
     * unanswered: one retry, which its successor answers. */
    daemon_counts before_death = daemon_count();
    daemon_script("close-then ok 192.0.2.11 11");
    CHECK(nfqr_original_dst(pair.server, &out, NULL) == NFQR_FOUND && is_sockaddr_in(&out, "192.0.2.11", 11),
          "a lookup the daemon died on is asked again");
    daemon_counts after_death = daemon_count();
    CHECK(after_death.lookups == before_death.lookups + 2 && after_death.accepted == before_death.accepted + 4,
          "two connections for it (+1 for SCRIPT, +1 for COUNT): %ld lookups, %ld connections",
          after_death.lookups - before_death.lookups, after_death.accepted - before_death.accepted);

    /* The daemon restarts between two lookups: the cached connection is stale, one retry. */
    daemon_script("ok 192.0.2.10 10");
    CHECK(nfqr_original_dst(pair.server, &out, NULL) == NFQR_FOUND, "before the restart");
    char reply[16];
    daemon_command(reply, sizeof reply, "DROPALL");
    daemon_counts before = daemon_count();
    CHECK(nfqr_original_dst(pair.server, &out, NULL) == NFQR_FOUND && is_sockaddr_in(&out, "192.0.2.10", 10),
          "after the restart, through a new connection");
    daemon_counts after = daemon_count();
    CHECK(after.accepted == before.accepted + 2, "one reconnect (+1 for COUNT itself): %ld -> %ld", before.accepted,
          after.accepted);

    /* One connection per thread, reused. */
    before = daemon_count();
    for (int i = 0; i < 200; i++)
        nfqr_original_dst(pair.server, &out, NULL);
    after = daemon_count();
    CHECK(after.lookups == before.lookups + 200 && after.accepted == before.accepted + 1,
          "200 lookups on the cached connection: %ld new connections", after.accepted - before.accepted - 1);
    tcp_pair_close(&pair);
}

static void test_bad_sockets(void) {
    struct sockaddr_storage out;
    int pair_fds[2];
    socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, pair_fds);
    CHECK(nfqr_original_dst(pair_fds[0], &out, NULL) == NFQR_BAD_SOCKET && errno == EAFNOSUPPORT, "AF_UNIX");
    close(pair_fds[0]);
    CHECK(nfqr_original_dst(pair_fds[0], &out, NULL) == NFQR_BAD_SOCKET && errno == EBADF, "closed descriptor");
    close(pair_fds[1]);
    int pipe_fds[2];
    REQUIRE(pipe2(pipe_fds, O_CLOEXEC) == 0, "pipe");
    CHECK(nfqr_original_dst(pipe_fds[0], &out, NULL) == NFQR_BAD_SOCKET && errno == ENOTSOCK, "a pipe");
    close(pipe_fds[0]);
    close(pipe_fds[1]);
    int unconnected = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    CHECK(nfqr_original_dst(unconnected, &out, NULL) == NFQR_BAD_SOCKET && errno == ENOTCONN, "not connected");
    CHECK(nfqr_original_dst_fd(unconnected, &out, NULL) == NFQR_BAD_SOCKET && errno == ENOTCONN, "not connected, fd");
    close(unconnected);
}

static void test_udp_and_tuples(void) {
    char expected[200];
    struct sockaddr_storage out;
    socklen_t length;

    /* A connected UDP socket is asked as udp. */
    int receiver = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in address = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    bind(receiver, (struct sockaddr *)&address, sizeof address);
    socklen_t address_length = sizeof address;
    getsockname(receiver, (struct sockaddr *)&address, &address_length);
    int sender = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    connect(sender, (struct sockaddr *)&address, sizeof address);
    daemon_script("ok 198.51.100.53 53");
    CHECK(nfqr_original_dst(sender, &out, &length) == NFQR_FOUND && is_sockaddr_in(&out, "198.51.100.53", 53),
          "connected UDP");
    expected_lookup(sender, "LOOKUP", expected, sizeof expected);
    memcpy(expected + 7, "udp", 3);
    check_last(expected, "udp tuple");
    close(sender);
    close(receiver);

    /* Explicit tuples, as a UDP proxy learns them per datagram. */
    struct sockaddr_in client = {.sin_family = AF_INET, .sin_port = htons(5000)};
    struct sockaddr_in local = {.sin_family = AF_INET, .sin_port = htons(53)};
    inet_pton(AF_INET, "10.0.0.1", &client.sin_addr);
    inet_pton(AF_INET, "127.0.0.1", &local.sin_addr);
    CHECK(nfqr_lookup(IPPROTO_UDP, (struct sockaddr *)&client, (struct sockaddr *)&local, &out, &length) ==
                  NFQR_FOUND &&
              length == sizeof(struct sockaddr_in) && is_sockaddr_in(&out, "198.51.100.53", 53),
          "nfqr_lookup udp");
    check_last("LOOKUP udp 10.0.0.1 5000 127.0.0.1 53", "explicit tuple");

    struct sockaddr_in6 local6 = {.sin6_family = AF_INET6, .sin6_port = htons(53), .sin6_scope_id = 3};
    inet_pton(AF_INET6, "fe80::1", &local6.sin6_addr);
    struct sockaddr_in6 client6 = local6;
    client6.sin6_port = htons(6000);
    inet_pton(AF_INET6, "fe80::2", &client6.sin6_addr);
    daemon_script("ok fe80::9 53");
    CHECK(nfqr_lookup(IPPROTO_UDP, (struct sockaddr *)&client6, (struct sockaddr *)&local6, &out, &length) ==
              NFQR_FOUND,
          "nfqr_lookup link-local");
    CHECK(((struct sockaddr_in6 *)&out)->sin6_scope_id == 3, "a link-local answer takes the local scope");
    check_last("LOOKUP udp fe80::2 6000 fe80::1 53", "link-local tuple written plain");

    CHECK(nfqr_lookup(IPPROTO_UDP, (struct sockaddr *)&client, (struct sockaddr *)&local6, &out, &length) ==
                  NFQR_BAD_SOCKET &&
              errno == EAFNOSUPPORT,
          "mixed families");
    CHECK(nfqr_lookup(IPPROTO_SCTP, (struct sockaddr *)&client, (struct sockaddr *)&local, &out, &length) ==
                  NFQR_BAD_SOCKET &&
              errno == EPROTONOSUPPORT,
          "SCTP is not in the protocol");
    CHECK(nfqr_lookup(IPPROTO_TCP, NULL, (struct sockaddr *)&local, &out, &length) == NFQR_BAD_SOCKET &&
              errno == EINVAL,
          "NULL address");
}

/* ---- concurrency ------------------------------------------------------------------------- */

enum { THREADS = 8, CALLS_PER_THREAD = 1000 };

static void *lookup_many(void *unused) {
    (void)unused;
    tcp_pair pair = tcp_pair_open(PAIR_V4);
    long wrong = 0;
    for (int i = 0; i < CALLS_PER_THREAD; i++) {
        struct sockaddr_storage out;
        if (nfqr_original_dst(pair.server, &out, NULL) != NFQR_FOUND || !is_own_peer(pair.server, &out))
            wrong++;
    }
    tcp_pair_close(&pair);
    return (void *)wrong;
}

static void wait_for_open_connections(long at_most, daemon_counts *counts) {
    for (int tries = 0; tries < 100; tries++) {
        *counts = daemon_count();
        if (counts->open <= at_most)
            return;
        usleep(10000);
    }
}

static void test_threads(void) {
    daemon_script("echo-client");
    daemon_counts before = daemon_count();
    pthread_t threads[THREADS];
    for (int i = 0; i < THREADS; i++)
        pthread_create(&threads[i], NULL, lookup_many, NULL);
    long wrong = 0;
    for (int i = 0; i < THREADS; i++) {
        void *result;
        pthread_join(threads[i], &result);
        wrong += (long)result;
    }
    CHECK(wrong == 0, "%ld of %d answers were not the asking connection's own", wrong, THREADS * CALLS_PER_THREAD);
    daemon_counts after = daemon_count();
    CHECK(after.lookups - before.lookups == THREADS * CALLS_PER_THREAD, "every call asked the daemon");
    CHECK(after.accepted - before.accepted == THREADS + 1, "one connection per thread: %ld",
          after.accepted - before.accepted - 1);
    wait_for_open_connections(before.open, &after);
    CHECK(after.open <= before.open, "thread exit closed their connections: %ld open, %ld before", after.open,
          before.open);
}

static void test_fork(void) {
    daemon_script("echo-client");
    tcp_pair pair = tcp_pair_open(PAIR_V4);
    struct sockaddr_storage out;
    CHECK(nfqr_original_dst(pair.server, &out, NULL) == NFQR_FOUND, "parent caches a connection");
    daemon_counts before = daemon_count();

    pid_t child = fork();
    REQUIRE(child >= 0, "fork");
    if (child == 0) {
        int wrong = 0;
        for (int i = 0; i < 300; i++)
            if (nfqr_original_dst(pair.server, &out, NULL) != NFQR_FOUND || !is_own_peer(pair.server, &out))
                wrong++;
        _exit(wrong > 100 ? 100 : wrong);
    }
    int wrong = 0;
    for (int i = 0; i < 300; i++)
        if (nfqr_original_dst(pair.server, &out, NULL) != NFQR_FOUND || !is_own_peer(pair.server, &out))
            wrong++;
    int status;
    waitpid(child, &status, 0);
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0, "child: %d wrong answers", WEXITSTATUS(status));
    CHECK(wrong == 0, "parent beside its child: %d wrong answers", wrong);
    daemon_counts after = daemon_count();
    CHECK(after.accepted - before.accepted == 2, "the child opened its own connection (%ld new)",
          after.accepted - before.accepted - 1);
    tcp_pair_close(&pair);
}

static tcp_pair signal_pair;
static volatile sig_atomic_t handler_calls, handler_wrong;

static void lookup_in_handler(int signal_number) {
    (void)signal_number;
    int saved = errno;
    struct sockaddr_storage out;
    if (nfqr_original_dst(signal_pair.server, &out, NULL) != NFQR_FOUND || !is_own_peer(signal_pair.server, &out))
        handler_wrong++;
    handler_calls++;
    errno = saved;
}

static void test_signal_handler(void) {
    daemon_script("echo-client");
    signal_pair = tcp_pair_open(PAIR_V6);
    tcp_pair pair = tcp_pair_open(PAIR_V4);
    struct sigaction action = {.sa_handler = lookup_in_handler, .sa_flags = SA_RESTART};
    sigaction(SIGALRM, &action, NULL);
    struct itimerval every = {.it_interval = {0, 2000}, .it_value = {0, 2000}};
    setitimer(ITIMER_REAL, &every, NULL);
    int wrong = 0;
    for (int i = 0; i < 50000 && handler_calls < 200; i++) {
        struct sockaddr_storage out;
        if (nfqr_original_dst(pair.server, &out, NULL) != NFQR_FOUND || !is_own_peer(pair.server, &out))
            wrong++;
    }
    struct itimerval stop = {{0, 0}, {0, 0}};
    setitimer(ITIMER_REAL, &stop, NULL);
    signal(SIGALRM, SIG_DFL);
    CHECK(wrong == 0, "%d wrong answers in the interrupted thread", wrong);
    CHECK(handler_calls >= 200 && handler_wrong == 0, "%d lookups from the signal handler, %d wrong",
          (int)handler_calls, (int)handler_wrong);
    tcp_pair_close(&pair);
    tcp_pair_close(&signal_pair);
}

/* Descriptors open when the program started (inherited): not the library's to judge. */
static bool inherited[1024];

static void note_inherited_descriptors(void) {
    for (int fd = 0; fd < 1024; fd++)
        inherited[fd] = fcntl(fd, F_GETFD) >= 0;
}

/* Every descriptor the library opened (its cached connection is open now) is close-on-exec. */
static void test_close_on_exec(void) {
    int inheritable = 0, sockets = 0;
    for (int fd = 0; fd < 1024; fd++) {
        int flags = fcntl(fd, F_GETFD);
        if (flags < 0 || inherited[fd])
            continue;
        char link[64], target[64] = "";
        snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
        if (readlink(link, target, sizeof target - 1) > 0 && strncmp(target, "socket:", 7) == 0)
            sockets++;
        if (!(flags & FD_CLOEXEC))
            inheritable++;
    }
    CHECK(sockets >= 1, "the cached connection is open");
    CHECK(inheritable == 0, "%d descriptors without FD_CLOEXEC", inheritable);
}

static void test_absent(const char *errno_name) {
    int expected = strcmp(errno_name, "ENAMETOOLONG") == 0 ? ENAMETOOLONG : ENOENT;
    tcp_pair pair = tcp_pair_open(PAIR_V4);
    struct sockaddr_storage out;
    double start = now_ms();
    for (int i = 0; i < 100; i++) {
        errno = 0;
        nfqr_answer answer = nfqr_original_dst(pair.server, &out, NULL);
        if (answer != NFQR_UNAVAILABLE || errno != expected) {
            CHECK(false, "no daemon: %s, %s", nfqr_answer_name(answer), strerror(errno));
            break;
        }
    }
    double elapsed = now_ms() - start;
    CHECK(elapsed < 100, "100 lookups without a daemon fail fast: %.1f ms", elapsed);
    CHECK(nfqr_original_dst_fd(pair.server, &out, NULL) == NFQR_UNAVAILABLE && errno == expected, "LOOKUPFD too");
    tcp_pair_close(&pair);
}

int main(int argc, char **argv) {
    if (argc == 3 && strcmp(argv[1], "--absent") == 0) {
        test_absent(argv[2]);
        return check_summary("client_tests (no daemon)");
    }
    note_inherited_descriptors();
    test_found();
    test_lookupfd();
    test_refusals();
    test_timeouts_and_loss();
    test_bad_sockets();
    test_udp_and_tuples();
    test_threads();
    test_fork();
    test_signal_handler();
    test_close_on_exec();
    return check_summary("client_tests");
}
