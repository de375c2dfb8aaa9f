/*
 * IP address text for the lookup protocol, written here rather than with inet_ntop/inet_pton
 * because glibc's inet_ntop formats through sprintf, which is not async-signal-safe, and
 * getsockopt may be called from a signal handler. The language accepted is inet_pton's.
 */
#include <netinet/in.h>
#include <string.h>

#include "nfqr_internal.h"

static const uint8_t v4_mapped_prefix[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};

static size_t format_decimal(unsigned value, char *out) {
    char digits[5];
    size_t count = 0;
    do {
        digits[count++] = (char)('0' + value % 10);
        value /= 10;
    } while (value != 0 && count < sizeof digits);
    for (size_t i = 0; i < count; i++)
        out[i] = digits[count - 1 - i];
    return count;
}

static size_t format_ipv4(const uint8_t addr[4], char *out) {
    size_t length = 0;
    for (int i = 0; i < 4; i++) {
        if (i > 0)
            out[length++] = '.';
        length += format_decimal(addr[i], out + length);
    }
    return length;
}

static size_t format_hex_group(unsigned group, char *out) {
    static const char hex[] = "0123456789abcdef";
    size_t length = 0;
    bool started = false;
    for (int shift = 12; shift >= 0; shift -= 4) {
        unsigned nibble = (group >> shift) & 0xf;
        if (nibble != 0 || started || shift == 0) {
            out[length++] = hex[nibble];
            started = true;
        }
    }
    return length;
}

static size_t format_ipv6(const uint8_t addr[16], char *out) {
    unsigned groups[8];
    for (int i = 0; i < 8; i++)
        groups[i] = (unsigned)addr[2 * i] << 8 | addr[2 * i + 1];

    /* RFC 5952 4.2: the longest run of two or more zero groups becomes "::", the first on a tie. */
    int best_start = -1, best_length = 1;
    for (int i = 0; i < 8;) {
        if (groups[i] != 0) {
            i++;
            continue;
        }
        int start = i;
        while (i < 8 && groups[i] == 0)
            i++;
        if (i - start > best_length) {
            best_start = start;
            best_length = i - start;
        }
    }

    size_t length = 0;
    for (int i = 0; i < 8; i++) {
        if (i == best_start) {
            out[length++] = ':';
            out[length++] = ':';
            i += best_length - 1;
            continue;
        }
        if (i > 0 && i != best_start + best_length)
            out[length++] = ':';
        length += format_hex_group(groups[i], out + length);
    }
    return length;
}

size_t nfqr_format_address(const nfqr_endpoint *endpoint, char *out) {
    return endpoint->is_v4 ? format_ipv4(endpoint->addr, out) : format_ipv6(endpoint->addr, out);
}

/* Dotted quad, each part 0..255 without leading zeros (inet_pton's rules). */
static bool parse_ipv4(const char *text, size_t length, uint8_t out[4]) {
    int part = 0;
    unsigned value = 0, digits = 0;
    for (size_t i = 0; i < length; i++) {
        char c = text[i];
        if (c >= '0' && c <= '9') {
            if (digits > 0 && value == 0)
                return false;
            value = value * 10 + (unsigned)(c - '0');
            if (value > 255)
                return false;
            digits++;
        } else if (c == '.' && digits > 0 && part < 3) {
            out[part++] = (uint8_t)value;
            value = 0;
            digits = 0;
        } else {
            return false;
        }
    }
    if (part != 3 || digits == 0)
        return false;
    out[3] = (uint8_t)value;
    return true;
}

static int hex_value(char c) {
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* RFC 4291 2.2 text: hex groups of 1-4 digits, at most one "::", optionally a dotted-quad tail. */
static bool parse_ipv6(const char *text, size_t length, uint8_t out[16]) {
    uint8_t bytes[16] = {0};
    size_t filled = 0, i = 0;
    int gap = -1; /* where "::" stands, as a byte offset */
    size_t group_start = 0;
    unsigned value = 0, digits = 0;

    if (length == 0)
        return false;
    if (text[0] == ':') {
        if (length < 2 || text[1] != ':')
            return false;
        i = 1;
    }
    group_start = i;
    while (i < length) {
        char c = text[i++];
        int nibble = hex_value(c);
        if (nibble >= 0) {
            if (digits == 4)
                return false;
            value = value << 4 | (unsigned)nibble;
            digits++;
            continue;
        }
        if (c == ':') {
            group_start = i;
            if (digits == 0) {
                if (gap >= 0)
                    return false;
                gap = (int)filled;
                continue;
            }
            if (i == length || filled + 2 > 16)
                return false;
            bytes[filled++] = (uint8_t)(value >> 8);
            bytes[filled++] = (uint8_t)value;
            value = 0;
            digits = 0;
            continue;
        }
        if (c == '.' && filled + 4 <= 16 && parse_ipv4(text + group_start, length - group_start, bytes + filled)) {
            filled += 4;
            digits = 0;
            break;
        }
        return false;
    }
    if (digits > 0) {
        if (filled + 2 > 16)
            return false;
        bytes[filled++] = (uint8_t)(value >> 8);
        bytes[filled++] = (uint8_t)value;
    }
    if (gap >= 0) {
        if (filled == 16)
            return false; /* "::" must stand for at least one zero group */
        size_t tail = filled - (size_t)gap;
        memmove(bytes + 16 - tail, bytes + gap, tail);
        memset(bytes + gap, 0, 16 - tail - (size_t)gap);
        filled = 16;
    }
    if (filled != 16)
        return false;
    memcpy(out, bytes, 16);
    return true;
}

bool nfqr_parse_address(const char *text, size_t length, nfqr_endpoint *out) {
    nfqr_endpoint parsed = {.port = out->port};
    if (memchr(text, ':', length) == NULL) {
        if (!parse_ipv4(text, length, parsed.addr))
            return false;
        parsed.is_v4 = true;
    } else {
        if (!parse_ipv6(text, length, parsed.addr))
            return false;
        if (memcmp(parsed.addr, v4_mapped_prefix, sizeof v4_mapped_prefix) == 0) {
            memmove(parsed.addr, parsed.addr + 12, 4);
            memset(parsed.addr + 4, 0, 12);
            parsed.is_v4 = true;
        }
    }
    *out = parsed;
    return true;
}

bool nfqr_parse_port(const char *text, size_t length, uint16_t *out) {
    if (length == 0 || length > 5 || text[0] == '0')
        return false;
    unsigned value = 0;
    for (size_t i = 0; i < length; i++) {
        if (text[i] < '0' || text[i] > '9')
            return false;
        value = value * 10 + (unsigned)(text[i] - '0');
    }
    if (value > 65535)
        return false;
    *out = (uint16_t)value;
    return true;
}

bool nfqr_endpoint_from_sockaddr(const struct sockaddr *address, socklen_t length, nfqr_endpoint *out) {
    nfqr_endpoint endpoint = {0};
    if (address->sa_family == AF_INET && length >= sizeof(struct sockaddr_in)) {
        const struct sockaddr_in *sin = (const struct sockaddr_in *)address;
        memcpy(endpoint.addr, &sin->sin_addr, 4);
        endpoint.port = ntohs(sin->sin_port);
        endpoint.is_v4 = true;
    } else if (address->sa_family == AF_INET6 && length >= sizeof(struct sockaddr_in6)) {
        const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)address;
        const uint8_t *bytes = sin6->sin6_addr.s6_addr;
        if (memcmp(bytes, v4_mapped_prefix, sizeof v4_mapped_prefix) == 0) {
            memcpy(endpoint.addr, bytes + 12, 4);
            endpoint.is_v4 = true;
        } else {
            memcpy(endpoint.addr, bytes, 16);
        }
        endpoint.port = ntohs(sin6->sin6_port);
    } else {
        return false;
    }
    *out = endpoint;
    return true;
}
