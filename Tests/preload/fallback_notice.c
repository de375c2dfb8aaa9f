/*
 * A stand-in proxy for the preload library's fallback notice (run.sh runs it with
 * LD_PRELOAD): accepts one loopback TCP connection and asks getsockopt(SO_ORIGINAL_DST) on it
 * COUNT times, as a proxy would for COUNT connections. Whatever the library says goes to
 * stderr; run.sh counts it. The kernel's answers (this connection was never NATed) do not
 * matter here; exits 0 once all calls were made.
 *
 *     fallback_notice COUNT
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

#define ORIGINAL_DST 80

int main(int argc, char **argv) {
    int count = argc > 1 ? atoi(argv[1]) : 3;
    int listener = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in address = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t length = sizeof address;
    if (listener < 0 || bind(listener, (struct sockaddr *)&address, sizeof address) != 0 || listen(listener, 1) != 0 ||
        getsockname(listener, (struct sockaddr *)&address, &length) != 0) {
        perror("fallback_notice: listen");
        return 2;
    }
    int client = socket(AF_INET, SOCK_STREAM, 0);
    if (client < 0 || connect(client, (struct sockaddr *)&address, sizeof address) != 0) {
        perror("fallback_notice: connect");
        return 2;
    }
    int accepted = accept(listener, NULL, NULL);
    if (accepted < 0) {
        perror("fallback_notice: accept");
        return 2;
    }
    for (int i = 0; i < count; i++) {
        struct sockaddr_in original;
        socklen_t original_length = sizeof original;
        (void)getsockopt(accepted, SOL_IP, ORIGINAL_DST, &original, &original_length);
    }
    return 0;
}
