/*
 * getsockopt through LD_PRELOAD=libnfq-redirect-preload.so, against fake_daemon.py and the
 * kernel. This program links nothing of ours: it sees the library only through LD_PRELOAD.
 * The kernel's own answer is asked with the raw getsockopt system call, which is what the
 * same call gives in a process without the preload.
 *
 *     preload_tests              daemon at NFQ_REDIRECT_SOCKET (NFQ_REDIRECT_TIMEOUT_MS short)
 *     preload_tests --lookupfd   the same answers, asked with LOOKUPFD (NFQ_REDIRECT_LOOKUP=fd)
 *     preload_tests --busy-poll  the same answers while the client polls for them first
 *                                (NFQ_REDIRECT_BUSY_POLL_US), and a silent daemon still times out
 *     preload_tests --absent     no daemon: every call equals the kernel's
 *     preload_tests --no-preload run WITHOUT LD_PRELOAD: every call equals the kernel's
 *     preload_tests --netns      root, in a namespace with iptables REDIRECT 9999->7777 and
 *                                9998->7778 (see run.sh): daemon first, kernel behind it
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <sys/wait.h>

#include "fake_daemon_control.h"

#define ORIGINAL_DST 80
#define UNTOUCHED_ERRNO 9999 /* no call sets this: success must leave it */

static int kernel_getsockopt(int fd, int level, int name, void *value, socklen_t *length) {
    return (int)syscall(SYS_getsockopt, fd, level, name, value, length);
}

/* What one call did: result, errno, *optlen and the buffer (pre-filled with 0xAA). */
typedef struct outcome {
    int result, error;
    socklen_t length;
    unsigned char value[160];
} outcome;

static outcome call(bool through_preload, int fd, int level, int name, socklen_t length, bool null_value,
                    bool null_length) {
    outcome out;
    memset(&out, 0, sizeof out);
    memset(out.value, 0xAA, sizeof out.value);
    out.length = length;
    errno = UNTOUCHED_ERRNO;
    void *value = null_value ? NULL : out.value;
    socklen_t *length_pointer = null_length ? NULL : &out.length;
    out.result = through_preload ? getsockopt(fd, level, name, value, length_pointer)
                                 : kernel_getsockopt(fd, level, name, value, length_pointer);
    out.error = errno;
    return out;
}

static bool same(const outcome *a, const outcome *b) {
    return a->result == b->result && a->error == b->error && a->length == b->length &&
           memcmp(a->value, b->value, sizeof a->value) == 0;
}

static const char *describe(const outcome *o, char *buffer, size_t capacity) {
    snprintf(buffer, capacity, "result %d errno %d (%s) optlen %u first bytes %02x %02x %02x %02x", o->result, o->error,
             strerror(o->error), (unsigned)o->length, o->value[0], o->value[1], o->value[2], o->value[3]);
    return buffer;
}

/* ---- the sockets every comparison runs over ------------------------------------------------ */

typedef struct socket_case {
    const char *name;
    int fd;
} socket_case;

enum { MAX_CASES = 16 };
static socket_case cases[MAX_CASES];
static int case_count;
static tcp_pair pair_v4, pair_v6, pair_mapped;

static int udp_connected(int family) {
    int fd = socket(family, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    struct sockaddr_storage address;
    memset(&address, 0, sizeof address);
    socklen_t length;
    if (family == AF_INET) {
        struct sockaddr_in *sin = (struct sockaddr_in *)&address;
        sin->sin_family = AF_INET;
        sin->sin_port = htons(9);
        sin->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        length = sizeof *sin;
    } else {
        struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&address;
        sin6->sin6_family = AF_INET6;
        sin6->sin6_port = htons(9);
        sin6->sin6_addr = in6addr_loopback;
        length = sizeof *sin6;
    }
    REQUIRE(connect(fd, (struct sockaddr *)&address, length) == 0, "udp connect");
    return fd;
}

static void add_case(const char *name, int fd) { cases[case_count++] = (socket_case){name, fd}; }

static void open_cases(void) {
    pair_v4 = tcp_pair_open(PAIR_V4);
    pair_v6 = tcp_pair_open(PAIR_V6);
    pair_mapped = tcp_pair_open(PAIR_MAPPED);
    add_case("tcp4 accepted", pair_v4.server);
    add_case("tcp6 accepted", pair_v6.server);
    add_case("tcp4 on dual-stack accepted", pair_mapped.server);
    add_case("tcp4 connecting side", pair_v4.client);
    add_case("tcp4 listener", pair_v4.listener);
    add_case("udp4 connected", udp_connected(AF_INET));
    add_case("udp6 connected", udp_connected(AF_INET6));
    add_case("udp4 unbound", socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0));
    add_case("tcp6 unconnected", socket(AF_INET6, SOCK_STREAM | SOCK_CLOEXEC, 0));
    int unix_pair[2];
    socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, unix_pair);
    add_case("unix stream", unix_pair[0]);
    int pipe_fds[2];
    REQUIRE(pipe2(pipe_fds, O_CLOEXEC) == 0, "pipe");
    add_case("pipe", pipe_fds[0]);
    add_case("closed descriptor", 1000);
    add_case("negative descriptor", -1);
}

/* Every level/length/pointer combination on every socket: through the preload exactly what
 * the kernel gives. */
static void compare_all_with_kernel(const char *situation) {
    static const int levels[] = {SOL_IP, SOL_IPV6};
    int differences = 0, comparisons = 0;
    for (int c = 0; c < case_count; c++) {
        for (int l = 0; l < 2; l++) {
            int size = levels[l] == SOL_IP ? 16 : 28;
            const socklen_t lengths[] = {0, (socklen_t)(size - 1), (socklen_t)size, 128, (socklen_t)-1};
            for (int variant = 0; variant < 7; variant++) {
                socklen_t length = variant < 5 ? lengths[variant] : (socklen_t)size;
                bool null_value = variant == 5, null_length = variant == 6;
                outcome ours = call(true, cases[c].fd, levels[l], ORIGINAL_DST, length, null_value, null_length);
                outcome kernel = call(false, cases[c].fd, levels[l], ORIGINAL_DST, length, null_value, null_length);
                comparisons++;
                if (!same(&ours, &kernel)) {
                    char a[160], b[160];
                    differences++;
                    fprintf(stderr, "%s: %s level %d optlen %d%s%s:\n  preload %s\n  kernel  %s\n", situation,
                            cases[c].name, levels[l], (int)length, null_value ? " NULL value" : "",
                            null_length ? " NULL optlen" : "", describe(&ours, a, sizeof a),
                            describe(&kernel, b, sizeof b));
                }
            }
        }
    }
    CHECK(differences == 0, "%s: %d of %d calls differ from the kernel's", situation, differences, comparisons);
}

/* ---- answers from the daemon --------------------------------------------------------------- */

static void expect_sockaddr_in(int fd, int level, const char *ip, uint16_t port, const char *what) {
    outcome exact = call(true, fd, level, ORIGINAL_DST, 16, false, false);
    outcome large = call(true, fd, level, ORIGINAL_DST, 128, false, false);
    unsigned char expected[16] = {0};
    struct sockaddr_in *sin = (struct sockaddr_in *)expected;
    sin->sin_family = AF_INET;
    sin->sin_port = htons(port);
    inet_pton(AF_INET, ip, &sin->sin_addr);
    CHECK(exact.result == 0 && exact.error == UNTOUCHED_ERRNO && exact.length == 16, "%s: result %d errno %d len %u",
          what, exact.result, exact.error, (unsigned)exact.length);
    CHECK(memcmp(exact.value, expected, 16) == 0 && exact.value[16] == 0xAA, "%s: sockaddr_in bytes", what);
    CHECK(large.result == 0 && large.length == 128 && memcmp(large.value, expected, 16) == 0 && large.value[16] == 0xAA,
          "%s: a larger buffer gets 16 bytes and keeps its optlen", what);
}

static void expect_sockaddr_in6(int fd, const char *ip, uint16_t port, const char *what) {
    outcome exact = call(true, fd, SOL_IPV6, ORIGINAL_DST, 28, false, false);
    unsigned char expected[28] = {0};
    struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)expected;
    sin6->sin6_family = AF_INET6;
    sin6->sin6_port = htons(port);
    inet_pton(AF_INET6, ip, &sin6->sin6_addr);
    CHECK(exact.result == 0 && exact.error == UNTOUCHED_ERRNO && exact.length == 28, "%s: result %d errno %d len %u",
          what, exact.result, exact.error, (unsigned)exact.length);
    CHECK(memcmp(exact.value, expected, 28) == 0 && exact.value[28] == 0xAA, "%s: sockaddr_in6 bytes", what);
}

static void expect_kernel(int fd, int level, socklen_t length, const char *what) {
    outcome ours = call(true, fd, level, ORIGINAL_DST, length, false, false);
    outcome kernel = call(false, fd, level, ORIGINAL_DST, length, false, false);
    char a[160], b[160];
    CHECK(same(&ours, &kernel), "%s: preload %s, kernel %s", what, describe(&ours, a, sizeof a),
          describe(&kernel, b, sizeof b));
}

static void expect_asked(int fd, const char *command, const char *what) {
    char expected[200], last[600];
    expected_lookup(fd, command, expected, sizeof expected);
    daemon_last(last, sizeof last);
    CHECK(strcmp(last, expected) == 0, "%s: daemon saw \"%s\", expected \"%s\"", what, last, expected);
}

static void test_answers(const char *command) {
    daemon_script("ok 203.0.113.5 443");
    expect_sockaddr_in(pair_v4.server, SOL_IP, "203.0.113.5", 443, "tcp4");
    expect_asked(pair_v4.server, command, "tcp4 asked");
    expect_kernel(pair_v4.server, SOL_IP, 15, "tcp4 short buffer: EINVAL, optlen kept");
    expect_kernel(pair_v4.server, SOL_IPV6, 28, "tcp4 asked at the IPv6 level");

    /* IPv4 on a dual-stack socket: asked as IPv4; SOL_IP gets a sockaddr_in like the kernel
     * gives, IP6T_SO_ORIGINAL_DST a v4-mapped sockaddr_in6 (where the kernel says ENOENT). */
    expect_sockaddr_in(pair_mapped.server, SOL_IP, "203.0.113.5", 443, "dual-stack SOL_IP");
    expect_asked(pair_mapped.server, command, "dual-stack asked as IPv4");
    expect_sockaddr_in6(pair_mapped.server, "::ffff:203.0.113.5", 443, "dual-stack SOL_IPV6");
    expect_kernel(pair_mapped.server, SOL_IPV6, 27, "dual-stack short buffer");

    daemon_script("ok 2001:db8::5 8443");
    expect_sockaddr_in6(pair_v6.server, "2001:db8::5", 8443, "tcp6");
    expect_asked(pair_v6.server, command, "tcp6 asked");
    expect_kernel(pair_v6.server, SOL_IPV6, 27, "tcp6 short buffer");
    expect_kernel(pair_v6.server, SOL_IP, 16, "tcp6 asked at the IPv4 level: the kernel's");
    expect_kernel(pair_v4.server, SOL_IP, 16, "an IPv6 answer for an IPv4 socket is not taken");

    /* Not a lookup at all: the daemon is not asked. */
    daemon_script("ok 203.0.113.5 443");
    daemon_counts before = daemon_count();
    expect_kernel(cases[5].fd, SOL_IP, 16, "udp4: ENOPROTOOPT");
    expect_kernel(cases[6].fd, SOL_IPV6, 28, "udp6: ENOPROTOOPT");
    expect_kernel(pair_v4.server, SOL_IP, 8, "short buffer");
    static const struct {
        int level, name;
        socklen_t length;
    } unrelated[] = {
        {SOL_SOCKET, SO_TYPE, 4},
        {SOL_SOCKET, SO_RCVBUF, 4},
        {SOL_SOCKET, SO_ERROR, 4},
        {SOL_IP, IP_TTL, 4},
        {SOL_IP, ORIGINAL_DST + 1, 16},
        {SOL_IPV6, IPV6_V6ONLY, 4},
        {IPPROTO_TCP, 1, 4} /* TCP_NODELAY */,
        {IPPROTO_TCP, ORIGINAL_DST, 16},
        {SOL_SOCKET, ORIGINAL_DST, 16},
    };
    int differences = 0;
    for (size_t i = 0; i < sizeof unrelated / sizeof unrelated[0]; i++) {
        int fd = unrelated[i].level == SOL_IPV6 ? pair_v6.server : pair_v4.server;
        outcome ours = call(true, fd, unrelated[i].level, unrelated[i].name, unrelated[i].length, false, false);
        outcome kernel = call(false, fd, unrelated[i].level, unrelated[i].name, unrelated[i].length, false, false);
        if (!same(&ours, &kernel))
            differences++;
    }
    CHECK(differences == 0, "%d unrelated getsockopt calls differ", differences);
    daemon_counts after = daemon_count();
    CHECK(after.lookups == before.lookups, "the daemon was asked %ld times for calls that are not lookups",
          after.lookups - before.lookups);
}

/* ---- concurrency ------------------------------------------------------------------------- */

enum { THREADS = 8, CALLS_PER_THREAD = 1000 };

/* echo-client answers with the asker's peer, so a crossed answer shows. */
static bool answer_is_own_peer(int fd) {
    struct sockaddr_in answer;
    socklen_t length = sizeof answer;
    errno = UNTOUCHED_ERRNO;
    if (getsockopt(fd, SOL_IP, ORIGINAL_DST, &answer, &length) != 0 || errno != UNTOUCHED_ERRNO)
        return false;
    struct sockaddr_in peer;
    socklen_t peer_length = sizeof peer;
    getpeername(fd, (struct sockaddr *)&peer, &peer_length);
    return answer.sin_port == peer.sin_port && answer.sin_addr.s_addr == peer.sin_addr.s_addr;
}

static void *lookup_many(void *unused) {
    (void)unused;
    tcp_pair pair = tcp_pair_open(PAIR_V4);
    long wrong = 0;
    for (int i = 0; i < CALLS_PER_THREAD; i++)
        if (!answer_is_own_peer(pair.server))
            wrong++;
    tcp_pair_close(&pair);
    return (void *)wrong;
}

static void test_threads_fork_signals(void) {
    daemon_script("echo-client");
    pthread_t threads[THREADS];
    for (int i = 0; i < THREADS; i++)
        pthread_create(&threads[i], NULL, lookup_many, NULL);
    long wrong = 0;
    for (int i = 0; i < THREADS; i++) {
        void *result;
        pthread_join(threads[i], &result);
        wrong += (long)result;
    }
    CHECK(wrong == 0, "threads: %ld of %d answers wrong", wrong, THREADS * CALLS_PER_THREAD);

    CHECK(answer_is_own_peer(pair_v4.server), "parent before fork");
    pid_t child = fork();
    REQUIRE(child >= 0, "fork");
    if (child == 0) {
        int child_wrong = 0;
        for (int i = 0; i < 200; i++)
            child_wrong += !answer_is_own_peer(pair_v4.server);
        _exit(child_wrong > 100 ? 100 : child_wrong);
    }
    int parent_wrong = 0;
    for (int i = 0; i < 200; i++)
        parent_wrong += !answer_is_own_peer(pair_v4.server);
    int status;
    waitpid(child, &status, 0);
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0, "forked child: %d wrong", WEXITSTATUS(status));
    CHECK(parent_wrong == 0, "parent beside its child: %d wrong", parent_wrong);
}

static volatile sig_atomic_t handler_calls, handler_wrong;

static void getsockopt_in_handler(int signal_number) {
    (void)signal_number;
    int saved = errno;
    if (!answer_is_own_peer(pair_mapped.client)) /* the connecting side: a third tuple */
        handler_wrong++;
    handler_calls++;
    errno = saved;
}

static void test_signal_handler(void) {
    daemon_script("echo-client");
    struct sigaction action = {.sa_handler = getsockopt_in_handler, .sa_flags = SA_RESTART};
    sigaction(SIGALRM, &action, NULL);
    struct itimerval every = {.it_interval = {0, 2000}, .it_value = {0, 2000}};
    setitimer(ITIMER_REAL, &every, NULL);
    int wrong = 0;
    for (int i = 0; i < 50000 && handler_calls < 200; i++)
        wrong += !answer_is_own_peer(pair_v4.server);
    struct itimerval stop = {{0, 0}, {0, 0}};
    setitimer(ITIMER_REAL, &stop, NULL);
    signal(SIGALRM, SIG_DFL);
    CHECK(wrong == 0, "interrupted thread: %d wrong", wrong);
    CHECK(handler_calls >= 200 && handler_wrong == 0, "%d getsockopt calls from a signal handler, %d wrong",
          (int)handler_calls, (int)handler_wrong);
}

/* ---- the kernel behind the daemon (in a namespace with REDIRECT rules) ----------------------- */

static int listen_on(int family, uint16_t port, bool v6_only) {
    int fd = socket(family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int on = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof on);
    if (family == AF_INET6) {
        int only = v6_only;
        setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &only, sizeof only);
        struct sockaddr_in6 address = {.sin6_family = AF_INET6, .sin6_port = htons(port)};
        REQUIRE(bind(fd, (struct sockaddr *)&address, sizeof address) == 0, "bind [::]:%u", port);
    } else {
        struct sockaddr_in address = {.sin_family = AF_INET, .sin_port = htons(port)};
        REQUIRE(bind(fd, (struct sockaddr *)&address, sizeof address) == 0, "bind 0.0.0.0:%u", port);
    }
    REQUIRE(listen(fd, 16) == 0, "listen");
    return fd;
}

/* Connects to ip:port (rewritten by the kernel's REDIRECT) and returns the accepted socket. */
static int redirected_connection(int listener, const char *ip, uint16_t port, int *client) {
    struct sockaddr_storage address;
    memset(&address, 0, sizeof address);
    socklen_t length;
    if (strchr(ip, ':') != NULL) {
        struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&address;
        sin6->sin6_family = AF_INET6;
        sin6->sin6_port = htons(port);
        inet_pton(AF_INET6, ip, &sin6->sin6_addr);
        length = sizeof *sin6;
    } else {
        struct sockaddr_in *sin = (struct sockaddr_in *)&address;
        sin->sin_family = AF_INET;
        sin->sin_port = htons(port);
        inet_pton(AF_INET, ip, &sin->sin_addr);
        length = sizeof *sin;
    }
    *client = socket(address.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    REQUIRE(connect(*client, (struct sockaddr *)&address, length) == 0, "connect %s:%u: %s", ip, port, strerror(errno));
    int server = accept4(listener, NULL, NULL, SOCK_CLOEXEC);
    REQUIRE(server >= 0, "accept");
    return server;
}

static void test_kernel_behind_daemon(bool daemon_present) {
    int listener4 = listen_on(AF_INET, 7777, false);
    int listener6 = listen_on(AF_INET6, 7777, true);
    int listener_dual = listen_on(AF_INET6, 7778, false);
    int client4, client6, client_mapped;
    int server4 = redirected_connection(listener4, "127.0.0.2", 9999, &client4);
    int server6 = redirected_connection(listener6, "::1", 9999, &client6);
    int server_mapped = redirected_connection(listener_dual, "127.0.0.2", 9998, &client_mapped);

    /* The kernel's answers, asked directly. */
    outcome kernel4 = call(false, server4, SOL_IP, ORIGINAL_DST, 16, false, false);
    outcome kernel6 = call(false, server6, SOL_IPV6, ORIGINAL_DST, 28, false, false);
    struct sockaddr_in *k4 = (struct sockaddr_in *)kernel4.value;
    struct sockaddr_in6 *k6 = (struct sockaddr_in6 *)kernel6.value;
    char text[64];
    inet_ntop(AF_INET, &k4->sin_addr, text, sizeof text);
    CHECK(kernel4.result == 0 && strcmp(text, "127.0.0.2") == 0 && ntohs(k4->sin_port) == 9999,
          "kernel REDIRECT seen: %s:%u", text, ntohs(k4->sin_port));
    CHECK(kernel6.result == 0 && ntohs(k6->sin6_port) == 9999, "kernel REDIRECT seen for IPv6");
    CHECK(k6->sin6_flowinfo != 0, "the namespace reflects flow labels, so flowinfo is tested non-zero");

    if (daemon_present)
        daemon_script("err NOTFOUND");
    /* The daemon does not know the flow (or is not there): the kernel answers. */
    expect_kernel(server4, SOL_IP, 16, "kernel-NATed IPv4 flow");
    expect_kernel(server4, SOL_IP, 15, "kernel-NATed IPv4 flow, short buffer");
    expect_kernel(server6, SOL_IPV6, 28, "kernel-NATed IPv6 flow");
    expect_kernel(server_mapped, SOL_IP, 16, "kernel-NATed IPv4 flow on a dual-stack socket");
    expect_kernel(server_mapped, SOL_IPV6, 28, "dual-stack at the IPv6 level: the kernel's ENOENT");
    outcome mapped = call(true, server_mapped, SOL_IP, ORIGINAL_DST, 16, false, false);
    CHECK(mapped.result == 0 && ntohs(((struct sockaddr_in *)mapped.value)->sin_port) == 9998,
          "dual-stack SOL_IP falls back to 127.0.0.2:9998");
    outcome mapped6 = call(true, server_mapped, SOL_IPV6, ORIGINAL_DST, 28, false, false);
    CHECK(mapped6.result == -1 && mapped6.error == ENOENT, "dual-stack SOL_IPV6 falls back to ENOENT");

    if (daemon_present) {
        daemon_script("err NOTREDIRECTED");
        expect_kernel(server4, SOL_IP, 16, "not redirected by the daemon: the kernel's");
        expect_asked(server4, "LOOKUP", "the daemon is asked about the proxy's view of the flow");

        /* The daemon redirected the flow: its answer wins over the kernel's. */
        daemon_script("ok 203.0.113.5 443");
        expect_sockaddr_in(server4, SOL_IP, "203.0.113.5", 443, "daemon first");
        expect_sockaddr_in(server_mapped, SOL_IP, "203.0.113.5", 443, "daemon first, dual-stack");
        expect_sockaddr_in6(server_mapped, "::ffff:203.0.113.5", 443, "daemon first, dual-stack SOL_IPV6");
        daemon_script("ok 2001:db8::5 8443");
        outcome ours6 = call(true, server6, SOL_IPV6, ORIGINAL_DST, 28, false, false);
        struct sockaddr_in6 *o6 = (struct sockaddr_in6 *)ours6.value;
        inet_ntop(AF_INET6, &o6->sin6_addr, text, sizeof text);
        CHECK(ours6.result == 0 && strcmp(text, "2001:db8::5") == 0 && ntohs(o6->sin6_port) == 8443,
              "daemon first, IPv6: %s", text);
        CHECK(o6->sin6_flowinfo == k6->sin6_flowinfo && o6->sin6_scope_id == k6->sin6_scope_id,
              "flowinfo %#x and scope %u as the kernel fills them (kernel %#x, %u)", o6->sin6_flowinfo,
              o6->sin6_scope_id, k6->sin6_flowinfo, k6->sin6_scope_id);
    }
    int fds[] = {server4, server6, server_mapped, client4, client6, client_mapped, listener4, listener6, listener_dual};
    for (size_t i = 0; i < sizeof fds / sizeof fds[0]; i++)
        close(fds[i]);
}

int main(int argc, char **argv) {
    const char *mode = argc > 1 ? argv[1] : "";
    if (strcmp(mode, "--netns") == 0 || strcmp(mode, "--netns-absent") == 0) {
        test_kernel_behind_daemon(strcmp(mode, "--netns") == 0);
        return check_summary(strcmp(mode, "--netns") == 0 ? "preload_tests (netns)"
                                                          : "preload_tests (netns, no daemon)");
    }

    open_cases();
    if (strcmp(mode, "--absent") == 0) {
        compare_all_with_kernel("no daemon");
        return check_summary("preload_tests (no daemon)");
    }
    if (strcmp(mode, "--no-preload") == 0) {
        daemon_script("ok 203.0.113.5 443");
        compare_all_with_kernel("without LD_PRELOAD");
        return check_summary("preload_tests (without preload)");
    }
    if (strcmp(mode, "--lookupfd") == 0) {
        test_answers("LOOKUPFD");
        return check_summary("preload_tests (LOOKUPFD)");
    }
    if (strcmp(mode, "--busy-poll") == 0) {
        test_answers("LOOKUP");
        daemon_script("silent");
        compare_all_with_kernel("silent daemon, the client polling first");
        return check_summary("preload_tests (busy poll)");
    }

    static const char *fallbacks[] = {
        "err NOTFOUND",   "err NOTREDIRECTED", "err EXPIRED", "err DENIED", "err BADREQUEST no such thing",
        "raw garbage\\n", "raw OK 1.2.3.4\\n", "close",       "silent",
    };
    for (size_t i = 0; i < sizeof fallbacks / sizeof fallbacks[0]; i++) {
        daemon_script("%s", fallbacks[i]);
        compare_all_with_kernel(fallbacks[i]);
    }
    test_answers("LOOKUP");
    test_threads_fork_signals();
    test_signal_handler();
    return check_summary("preload_tests");
}
