/*
 * Configuration from the environment, read once when the library is loaded so that the
 * lookup path never calls getenv (not async-signal-safe, and racy against setenv).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "nfqr_internal.h"

#define DEFAULT_SOCKET_PATH "/run/nfq-redirect/lookup.sock"
#define DEFAULT_TIMEOUT_MS 1000
#define MAXIMUM_TIMEOUT_MS 60000
#define MAXIMUM_BUSY_POLL_US 100000

/* Until the constructor has run (a lookup from another library's constructor), no daemon. */
nfqr_config nfqr_settings = {.address_error = EAGAIN, .timeout_ms = DEFAULT_TIMEOUT_MS};

/* A whole decimal number from 0 up to `maximum`, or `fallback`. */
static int number_from(const char *text, long maximum, int fallback) {
    if (text == NULL || *text == '\0')
        return fallback;
    long value = 0;
    for (const char *c = text; *c != '\0'; c++) {
        if (*c < '0' || *c > '9')
            return fallback;
        value = value * 10 + (*c - '0');
        if (value > maximum)
            return fallback;
    }
    return (int)value;
}

__attribute__((constructor)) static void nfqr_load_settings(void) {
    const char *path = getenv("NFQ_REDIRECT_SOCKET");
    if (path == NULL || *path == '\0')
        path = DEFAULT_SOCKET_PATH;

    int timeout_ms = number_from(getenv("NFQ_REDIRECT_TIMEOUT_MS"), MAXIMUM_TIMEOUT_MS, DEFAULT_TIMEOUT_MS);
    nfqr_settings.timeout_ms = timeout_ms > 0 ? timeout_ms : DEFAULT_TIMEOUT_MS;
    nfqr_settings.busy_poll_us = number_from(getenv("NFQ_REDIRECT_BUSY_POLL_US"), MAXIMUM_BUSY_POLL_US, 0);
    const char *mode = getenv("NFQ_REDIRECT_LOOKUP");
    nfqr_settings.preload_uses_lookupfd = mode != NULL && strcmp(mode, "fd") == 0;
    const char *debug = getenv("NFQ_REDIRECT_DEBUG");
    nfqr_settings.debug = debug != NULL && *debug != '\0' && strcmp(debug, "0") != 0;
    /* systemd names the stream it gave as stderr, so that its output is known to be read. */
    const char *journal = getenv("JOURNAL_STREAM");
    if (journal != NULL) {
        char *end;
        nfqr_settings.journal_device = strtoull(journal, &end, 10);
        if (*end == ':') {
            nfqr_settings.journal_inode = strtoull(end + 1, &end, 10);
            nfqr_settings.has_journal_stream = *end == '\0';
        }
    }
    nfqr_settings.address.sun_family = AF_UNIX;
    size_t length = strlen(path);
    if (length >= sizeof nfqr_settings.address.sun_path) {
        nfqr_settings.address_length = 0;
        nfqr_settings.address_error = ENAMETOOLONG;
        return;
    }
    memcpy(nfqr_settings.address.sun_path, path, length + 1);
    nfqr_settings.address_length = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + length + 1);
}
