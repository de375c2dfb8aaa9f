/*
 * The lookup protocol's lines (CONTRACT.md, docs/lookup-protocol.md):
 *     LOOKUP <tcp|udp> <client-ip> <client-port> <local-ip> <local-port>
 *     -> OK <orig-ip> <orig-port> | ERR NOTFOUND | ERR NOTREDIRECTED | ERR EXPIRED
 *        | ERR DENIED | ERR BUSY | ERR BADREQUEST <why>
 */
#include <errno.h>
#include <netinet/in.h>
#include <string.h>

#include "nfqr_internal.h"

static size_t append(char *out, size_t at, const char *text, size_t length) {
    memcpy(out + at, text, length);
    return at + length;
}

static size_t append_port(char *out, size_t at, uint16_t port) {
    char digits[5];
    size_t count = 0;
    unsigned value = port;
    do {
        digits[count++] = (char)('0' + value % 10);
        value /= 10;
    } while (value != 0);
    while (count > 0)
        out[at++] = digits[--count];
    return at;
}

static size_t append_endpoint(char *out, size_t at, const nfqr_endpoint *endpoint) {
    at += nfqr_format_address(endpoint, out + at);
    out[at++] = ' ';
    return append_port(out, at, endpoint->port);
}

size_t nfqr_format_lookup(char out[NFQR_REQUEST_MAX], int protocol, const nfqr_endpoint *client,
                          const nfqr_endpoint *local) {
    size_t at = append(out, 0, "LOOKUP ", 7);
    at = append(out, at, protocol == IPPROTO_UDP ? "udp " : "tcp ", 4);
    at = append_endpoint(out, at, client);
    out[at++] = ' ';
    at = append_endpoint(out, at, local);
    out[at++] = '\n';
    return at;
}

static bool equals(const char *text, size_t length, const char *word) {
    size_t word_length = strlen(word);
    return length == word_length && memcmp(text, word, length) == 0;
}

/* Splits off the word at *at (words are separated by exactly one space). */
static bool next_word(const char *line, size_t length, size_t *at, const char **word, size_t *word_length) {
    if (*at >= length)
        return false;
    const char *start = line + *at;
    const char *space = memchr(start, ' ', length - *at);
    *word = start;
    *word_length = space ? (size_t)(space - start) : length - *at;
    *at += *word_length + (space ? 1 : 0);
    return *word_length > 0;
}

nfqr_answer nfqr_parse_reply(const char *line, size_t length, nfqr_endpoint *original) {
    const char *word;
    size_t word_length, at = 0;

    if (!next_word(line, length, &at, &word, &word_length))
        return NFQR_BAD_REPLY;

    if (equals(word, word_length, "OK")) {
        const char *address, *port;
        size_t address_length, port_length;
        if (!next_word(line, length, &at, &address, &address_length) ||
            !next_word(line, length, &at, &port, &port_length) || at != length || line[length - 1] == ' ')
            return NFQR_BAD_REPLY;
        nfqr_endpoint parsed = {0};
        if (!nfqr_parse_address(address, address_length, &parsed) || !nfqr_parse_port(port, port_length, &parsed.port))
            return NFQR_BAD_REPLY;
        *original = parsed;
        return NFQR_FOUND;
    }

    if (!equals(word, word_length, "ERR") || !next_word(line, length, &at, &word, &word_length))
        return NFQR_BAD_REPLY;
    if (equals(word, word_length, "BADREQUEST"))
        return NFQR_BAD_REQUEST; /* the <why> that follows is for humans */
    if (at != length || line[length - 1] == ' ')
        return NFQR_BAD_REPLY;
    if (equals(word, word_length, "NOTFOUND"))
        return NFQR_NOT_FOUND;
    if (equals(word, word_length, "NOTREDIRECTED"))
        return NFQR_NOT_REDIRECTED;
    if (equals(word, word_length, "EXPIRED"))
        return NFQR_EXPIRED;
    if (equals(word, word_length, "DENIED"))
        return NFQR_DENIED;
    if (equals(word, word_length, "BUSY")) { /* the daemon is at max_clients and closes this connection */
        errno = EAGAIN;
        return NFQR_UNAVAILABLE;
    }
    return NFQR_BAD_REPLY;
}
