/*
 * Test helpers: scripting fake_daemon.py over its socket (NFQ_REDIRECT_SOCKET), and real TCP
 * connections on loopback (IPv4, IPv6, IPv4 accepted on a dual-stack IPv6 listener).
 */
#ifndef NFQR_TEST_FAKE_DAEMON_CONTROL_H
#define NFQR_TEST_FAKE_DAEMON_CONTROL_H

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdbool.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "check.h"

/* Sends one control line to the fake daemon and reads its one-line answer (without '\n'). */
static void daemon_command(char *reply, size_t capacity, const char *format, ...) {
    const char *path = getenv("NFQ_REDIRECT_SOCKET");
    REQUIRE(path != NULL, "NFQ_REDIRECT_SOCKET is not set");
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_un address = {.sun_family = AF_UNIX};
    strncpy(address.sun_path, path, sizeof address.sun_path - 1);
    REQUIRE(connect(fd, (struct sockaddr *)&address, sizeof address) == 0, "connect %s: %s", path, strerror(errno));

    char line[1024];
    va_list arguments;
    va_start(arguments, format);
    int length = vsnprintf(line, sizeof line - 1, format, arguments);
    va_end(arguments);
    line[length++] = '\n';
    REQUIRE(send(fd, line, (size_t)length, MSG_NOSIGNAL) == length, "send control line");

    size_t have = 0;
    while (have < capacity - 1) {
        ssize_t count = recv(fd, reply + have, 1, 0);
        REQUIRE(count == 1, "control answer cut short");
        if (reply[have] == '\n')
            break;
        have++;
    }
    reply[have] = '\0';
    close(fd);
}

#define daemon_script(...)                                                                                             \
    do {                                                                                                               \
        char script_reply_[64];                                                                                        \
        daemon_command(script_reply_, sizeof script_reply_, "SCRIPT " __VA_ARGS__);                                    \
        REQUIRE(strcmp(script_reply_, "OK") == 0, "SCRIPT: %s", script_reply_);                                        \
    } while (0)

/* The last lookup the daemon saw, as "LOOKUP tcp ..." or "LOOKUPFD tcp <tuple it read>". */
static const char *daemon_last(char *buffer, size_t capacity) {
    char reply[600];
    daemon_command(reply, sizeof reply, "LAST");
    snprintf(buffer, capacity, "%s", strncmp(reply, "LAST ", 5) == 0 ? reply + 5 : reply);
    return buffer;
}

typedef struct daemon_counts {
    long lookups, accepted, open; /* open counts the control connection that asked */
} daemon_counts;

static daemon_counts daemon_count(void) {
    char reply[128];
    daemon_counts counts = {-1, -1, -1};
    daemon_command(reply, sizeof reply, "COUNT");
    REQUIRE(sscanf(reply, "COUNT %ld %ld %ld", &counts.lookups, &counts.accepted, &counts.open) == 3, "%s", reply);
    return counts;
}

/* ---- loopback TCP connections ------------------------------------------------------------ */

typedef enum pair_kind { PAIR_V4, PAIR_V6, PAIR_MAPPED } pair_kind;

typedef struct tcp_pair {
    int listener, client, server; /* server: the accepted socket, the proxy's side */
} tcp_pair;

static tcp_pair tcp_pair_open(pair_kind kind) {
    tcp_pair pair;
    struct sockaddr_storage address;
    memset(&address, 0, sizeof address);
    socklen_t length;
    if (kind == PAIR_V4) {
        struct sockaddr_in *sin = (struct sockaddr_in *)&address;
        sin->sin_family = AF_INET;
        sin->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        length = sizeof *sin;
    } else {
        struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&address;
        sin6->sin6_family = AF_INET6;
        sin6->sin6_addr = kind == PAIR_V6 ? in6addr_loopback : in6addr_any;
        length = sizeof *sin6;
    }
    pair.listener = socket(address.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    REQUIRE(pair.listener >= 0, "socket: %s", strerror(errno));
    int off = 0;
    if (kind == PAIR_MAPPED)
        setsockopt(pair.listener, IPPROTO_IPV6, IPV6_V6ONLY, &off, sizeof off);
    REQUIRE(bind(pair.listener, (struct sockaddr *)&address, length) == 0, "bind: %s", strerror(errno));
    REQUIRE(listen(pair.listener, 64) == 0, "listen");
    REQUIRE(getsockname(pair.listener, (struct sockaddr *)&address, &length) == 0, "getsockname");

    if (kind == PAIR_MAPPED) { /* an IPv4 client reaching the dual-stack listener */
        struct sockaddr_in sin = {.sin_family = AF_INET,
                                  .sin_port = ((struct sockaddr_in6 *)&address)->sin6_port,
                                  .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
        pair.client = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        REQUIRE(connect(pair.client, (struct sockaddr *)&sin, sizeof sin) == 0, "connect: %s", strerror(errno));
    } else {
        pair.client = socket(address.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
        REQUIRE(connect(pair.client, (struct sockaddr *)&address, length) == 0, "connect: %s", strerror(errno));
    }
    pair.server = accept4(pair.listener, NULL, NULL, SOCK_CLOEXEC);
    REQUIRE(pair.server >= 0, "accept: %s", strerror(errno));
    return pair;
}

static void tcp_pair_close(tcp_pair *pair) {
    close(pair->client);
    close(pair->server);
    close(pair->listener);
}

/* "ip port" of an address, v4-mapped written as IPv4: what the lookup line must carry. */
static void endpoint_text(const struct sockaddr_storage *address, char *out, size_t capacity) {
    char host[INET6_ADDRSTRLEN];
    unsigned port;
    if (address->ss_family == AF_INET) {
        const struct sockaddr_in *sin = (const struct sockaddr_in *)address;
        inet_ntop(AF_INET, &sin->sin_addr, host, sizeof host);
        port = ntohs(sin->sin_port);
    } else {
        const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)address;
        if (IN6_IS_ADDR_V4MAPPED(&sin6->sin6_addr))
            inet_ntop(AF_INET, &sin6->sin6_addr.s6_addr[12], host, sizeof host);
        else
            inet_ntop(AF_INET6, &sin6->sin6_addr, host, sizeof host);
        port = ntohs(sin6->sin6_port);
    }
    snprintf(out, capacity, "%s %u", host, port);
}

/* The lookup line the daemon should see for the accepted socket fd ("LOOKUP tcp <peer> <local>"). */
static void expected_lookup(int fd, const char *command, char *out, size_t capacity) {
    struct sockaddr_storage local, peer;
    socklen_t length = sizeof local;
    getsockname(fd, (struct sockaddr *)&local, &length);
    length = sizeof peer;
    getpeername(fd, (struct sockaddr *)&peer, &length);
    char local_text[64], peer_text[64];
    endpoint_text(&local, local_text, sizeof local_text);
    endpoint_text(&peer, peer_text, sizeof peer_text);
    snprintf(out, capacity, "%s tcp %s %s", command, peer_text, local_text);
}

#endif
