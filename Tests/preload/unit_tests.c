/*
 * Unit tests of the protocol pieces: address text against inet_ntop/inet_pton (tables and
 * seeded random cases), ports, request lines, answer lines and kernel-shaped socket addresses.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <string.h>

#include "check.h"
#include "nfqr_internal.h"

static nfqr_endpoint v6(const char *text) {
    nfqr_endpoint endpoint = {0};
    REQUIRE(inet_pton(AF_INET6, text, endpoint.addr) == 1, "%s", text);
    return endpoint;
}

static nfqr_endpoint v4(const char *text, uint16_t port) {
    nfqr_endpoint endpoint = {.is_v4 = true, .port = port};
    REQUIRE(inet_pton(AF_INET, text, endpoint.addr) == 1, "%s", text);
    return endpoint;
}

static const char *formatted(const nfqr_endpoint *endpoint, char *buffer) {
    size_t length = nfqr_format_address(endpoint, buffer);
    buffer[length] = '\0';
    return buffer;
}

static void test_format_table(void) {
    static const struct {
        const char *in, *out;
    } cases[] = {
        {"::", "::"},
        {"::1", "::1"},
        {"1::", "1::"},
        {"2001:db8::1", "2001:db8::1"},
        {"2001:0db8:0000:0000:0001:0000:0000:0001", "2001:db8::1:0:0:1"}, /* first of equal runs */
        {"2001:db8:0:1:1:1:1:1", "2001:db8:0:1:1:1:1:1"}, /* one zero group stays */
        {"2001:db8:0:0:1:0:0:0", "2001:db8:0:0:1::"}, /* the longer run wins */
        {"FE80::ABCD", "fe80::abcd"},
        {"ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"},
        {"::1.2.3.4", "::102:304"}, /* never a dotted tail */
    };
    char buffer[64];
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        nfqr_endpoint endpoint = v6(cases[i].in);
        CHECK(strcmp(formatted(&endpoint, buffer), cases[i].out) == 0, "%s -> %s", cases[i].in, buffer);
    }
    static const char *quads[] = {"0.0.0.0", "127.0.0.1", "255.255.255.255", "10.20.30.40", "1.0.10.100"};
    for (size_t i = 0; i < sizeof quads / sizeof quads[0]; i++) {
        nfqr_endpoint endpoint = v4(quads[i], 1);
        CHECK(strcmp(formatted(&endpoint, buffer), quads[i]) == 0, "%s -> %s", quads[i], buffer);
    }
}

/* Random addresses with runs of zero groups, compared with glibc's inet_ntop, which follows
 * RFC 5952 except for the dotted tail it writes for ::a.b.c.d and ::ffff:a.b.c.d. */
static void test_format_random(void) {
    unsigned long long seed = 0x5eed0001;
    char ours[64], theirs[64];
    int compared = 0, mismatches = 0;
    for (int round = 0; round < 20000; round++) {
        nfqr_endpoint endpoint = {0};
        unsigned long long bits = splitmix64(&seed);
        for (int group = 0; group < 8; group++) {
            unsigned value = (unsigned)(splitmix64(&seed) & 0xffff);
            if (bits >> group & 1)
                value = 0; /* about half the groups zero: many runs */
            else if (bits >> (group + 8) & 1)
                value &= 0xf; /* short groups too */
            endpoint.addr[2 * group] = (uint8_t)(value >> 8);
            endpoint.addr[2 * group + 1] = (uint8_t)value;
        }
        inet_ntop(AF_INET6, endpoint.addr, theirs, sizeof theirs);
        if (strchr(theirs, '.') != NULL)
            continue;
        formatted(&endpoint, ours);
        compared++;
        if (strcmp(ours, theirs) != 0 && mismatches++ < 5)
            fprintf(stderr, "format: ours %s, inet_ntop %s\n", ours, theirs);
    }
    CHECK(mismatches == 0 && compared > 10000, "%d of %d random IPv6 texts differ from inet_ntop", mismatches,
          compared);

    int v4_mismatches = 0;
    for (int round = 0; round < 2000; round++) {
        nfqr_endpoint endpoint = {.is_v4 = true};
        unsigned long long value = splitmix64(&seed);
        memcpy(endpoint.addr, &value, 4);
        inet_ntop(AF_INET, endpoint.addr, theirs, sizeof theirs);
        if (strcmp(formatted(&endpoint, ours), theirs) != 0)
            v4_mismatches++;
    }
    CHECK(v4_mismatches == 0, "%d random IPv4 texts differ from inet_ntop", v4_mismatches);
}

/* Our parser must accept exactly what inet_pton accepts, with the same bytes. */
static bool parse_agrees(const char *text) {
    nfqr_endpoint ours = {0};
    bool we_accept = nfqr_parse_address(text, strlen(text), &ours);
    uint8_t theirs[16];
    bool is_v6 = strchr(text, ':') != NULL;
    bool they_accept = inet_pton(is_v6 ? AF_INET6 : AF_INET, text, theirs) == 1;
    if (we_accept != they_accept)
        return false;
    if (!we_accept)
        return true;
    if (!is_v6)
        return ours.is_v4 && memcmp(ours.addr, theirs, 4) == 0;
    static const uint8_t mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    if (memcmp(theirs, mapped, 12) == 0)
        return ours.is_v4 && memcmp(ours.addr, theirs + 12, 4) == 0;
    return !ours.is_v4 && memcmp(ours.addr, theirs, 16) == 0;
}

static void test_parse_table(void) {
    static const char *cases[] = {
        "1.2.3.4",
        "0.0.0.0",
        "255.255.255.255",
        "256.1.1.1",
        "1.2.3",
        "1.2.3.4.5",
        "01.2.3.4",
        "1..2.3",
        ".1.2.3",
        "1.2.3.",
        "1.2.3.4 ",
        " 1.2.3.4",
        "",
        "a.b.c.d",
        "1.2.3.-4",
        "::",
        "::1",
        "1::",
        ":",
        ":::",
        "1:2:3:4:5:6:7:8",
        "1:2:3:4:5:6:7:8:9",
        "1:2:3:4:5:6:7::",
        "::2:3:4:5:6:7:8",
        "1::2::3",
        "12345::",
        "1:",
        ":1",
        "::ffff:1.2.3.4",
        "::ffff:0102:0304",
        "::1.2.3.4",
        "1:2:3:4:5:6:1.2.3.4",
        "1:2:3:4:5:6:7:1.2.3.4",
        "::ffff:1.2.3",
        "::ffff:01.2.3.4",
        "fe80::1%eth0",
        "[::1]",
        "g::1",
        "FFFF::",
        "0000:0000:0000:0000:0000:0000:0000:0001",
        "00000::1",
        "1:2:3:4:5:6:7:8::",
        "::1.2.3.4:5",
        "1.2.3.4::",
        "::ffff:255.255.255.255",
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        CHECK(parse_agrees(cases[i]), "parse of \"%s\" differs from inet_pton", cases[i]);

    nfqr_endpoint endpoint = {0};
    CHECK(nfqr_parse_address("::ffff:10.0.0.1", 15, &endpoint) && endpoint.is_v4 &&
              memcmp(endpoint.addr, "\x0a\x00\x00\x01", 4) == 0,
          "v4-mapped text becomes IPv4");
    /* Length-delimited: what follows the given length is not read. */
    CHECK(nfqr_parse_address("10.0.0.1 80", 8, &endpoint) && endpoint.is_v4, "stops at the given length");
}

/* Valid texts (inet_ntop's, dotted tails included) and random corruptions of them. */
static void test_parse_random(void) {
    static const char alphabet[] = "0123456789abcdefABCDEF:.% x";
    unsigned long long seed = 0x5eed0002;
    char text[64];
    int disagreements = 0;
    for (int round = 0; round < 30000; round++) {
        uint8_t bytes[16];
        for (int i = 0; i < 16; i += 8) {
            unsigned long long value = splitmix64(&seed);
            memcpy(bytes + i, &value, 8);
        }
        unsigned long long shape = splitmix64(&seed);
        for (int group = 0; group < 8; group++)
            if (shape >> group & 1)
                bytes[2 * group] = bytes[2 * group + 1] = 0;
        if ((shape >> 8 & 7) == 0) { /* some v4-mapped and v4-compatible addresses */
            memset(bytes, 0, 10);
            bytes[10] = bytes[11] = (shape >> 11 & 1) ? 0xff : 0;
        }
        bool as_v4 = (shape >> 12 & 3) == 0;
        inet_ntop(as_v4 ? AF_INET : AF_INET6, bytes, text, sizeof text);
        if (!parse_agrees(text) && disagreements++ < 5)
            fprintf(stderr, "parse disagrees on valid \"%s\"\n", text);

        /* Corrupt: replace, insert or delete a character. */
        size_t length = strlen(text);
        size_t at = (size_t)(splitmix64(&seed) % (length + 1));
        char c = alphabet[splitmix64(&seed) % (sizeof alphabet - 1)];
        switch (splitmix64(&seed) % 3) {
        case 0:
            if (at < length)
                text[at] = c;
            break;
        case 1:
            memmove(text + at + 1, text + at, length - at + 1);
            text[at] = c;
            break;
        default:
            if (at < length)
                memmove(text + at, text + at + 1, length - at);
            break;
        }
        if (!parse_agrees(text) && disagreements++ < 5)
            fprintf(stderr, "parse disagrees on corrupted \"%s\"\n", text);
    }
    CHECK(disagreements == 0, "%d random texts parsed differently from inet_pton", disagreements);
}

static void test_ports(void) {
    static const struct {
        const char *text;
        bool valid;
        uint16_t value;
    } cases[] = {
        {"1", true, 1},      {"80", true, 80},     {"65535", true, 65535}, {"0", false, 0},
        {"65536", false, 0}, {"080", false, 0},    {"", false, 0},         {"-1", false, 0},
        {"+1", false, 0},    {"123456", false, 0}, {"8o", false, 0},       {"99999", false, 0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        uint16_t value = 0;
        bool valid = nfqr_parse_port(cases[i].text, strlen(cases[i].text), &value);
        CHECK(valid == cases[i].valid && (!valid || value == cases[i].value), "port \"%s\"", cases[i].text);
    }
}

static void test_request_lines(void) {
    char line[NFQR_REQUEST_MAX + 1];
    nfqr_endpoint client = v4("10.1.2.3", 40000), local = v4("127.0.0.1", 8080);
    size_t length = nfqr_format_lookup(line, IPPROTO_TCP, &client, &local);
    line[length] = '\0';
    CHECK(strcmp(line, "LOOKUP tcp 10.1.2.3 40000 127.0.0.1 8080\n") == 0, "%s", line);

    nfqr_endpoint client6 = v6("2001:db8::7"), local6 = v6("::1");
    client6.port = 1;
    local6.port = 65535;
    length = nfqr_format_lookup(line, IPPROTO_UDP, &client6, &local6);
    line[length] = '\0';
    CHECK(strcmp(line, "LOOKUP udp 2001:db8::7 1 ::1 65535\n") == 0, "%s", line);

    nfqr_endpoint widest = v6("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff");
    widest.port = 65535;
    length = nfqr_format_lookup(line, IPPROTO_UDP, &widest, &widest);
    CHECK(length < NFQR_REQUEST_MAX && length == 7 + 4 + 2 * (39 + 1 + 5) + 1 + 1, "longest line %zu", length);
}

static void test_reply_lines(void) {
    static const struct {
        const char *line;
        nfqr_answer answer;
    } cases[] = {
        {"OK 203.0.113.5 443", NFQR_FOUND},
        {"OK 2001:db8::5 8443", NFQR_FOUND},
        {"OK ::ffff:203.0.113.5 443", NFQR_FOUND},
        {"ERR NOTFOUND", NFQR_NOT_FOUND},
        {"ERR NOTREDIRECTED", NFQR_NOT_REDIRECTED},
        {"ERR EXPIRED", NFQR_EXPIRED},
        {"ERR DENIED", NFQR_DENIED},
        {"ERR BADREQUEST expected 5 arguments", NFQR_BAD_REQUEST},
        {"ERR BADREQUEST", NFQR_BAD_REQUEST},
        {"", NFQR_BAD_REPLY},
        {"OK", NFQR_BAD_REPLY},
        {"OK 1.2.3.4", NFQR_BAD_REPLY},
        {"OK 1.2.3.4 0", NFQR_BAD_REPLY},
        {"OK 1.2.3.4 65536", NFQR_BAD_REPLY},
        {"OK 1.2.3.4 80 extra", NFQR_BAD_REPLY},
        {"OK 1.2.3.4 80 ", NFQR_BAD_REPLY},
        {"OK  1.2.3.4 80", NFQR_BAD_REPLY},
        {"OK [::1] 80", NFQR_BAD_REPLY},
        {"OK 1.2.3.4 80\r", NFQR_BAD_REPLY},
        {"ok 1.2.3.4 80", NFQR_BAD_REPLY},
        {"ERR", NFQR_BAD_REPLY},
        {"ERR NOTFOUND extra", NFQR_BAD_REPLY},
        {"ERR NOTFOUND ", NFQR_BAD_REPLY},
        {"ERR SOMETHING", NFQR_BAD_REPLY},
        {"HELLO", NFQR_BAD_REPLY},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        nfqr_endpoint original = {0};
        nfqr_answer answer = nfqr_parse_reply(cases[i].line, strlen(cases[i].line), &original);
        CHECK(answer == cases[i].answer, "\"%s\" -> %s", cases[i].line, nfqr_answer_name(answer));
    }
    nfqr_endpoint original = {0};
    nfqr_parse_reply("OK ::ffff:203.0.113.5 443", 25, &original);
    CHECK(original.is_v4 && original.port == 443 && memcmp(original.addr, "\xcb\x00\x71\x05", 4) == 0,
          "mapped answer held as IPv4");
    nfqr_parse_reply("OK 2001:db8::5 8443", 19, &original);
    CHECK(!original.is_v4 && original.port == 8443 && original.addr[15] == 5, "IPv6 answer");
}

static void test_shapes(void) {
    struct sockaddr_storage out;
    memset(&out, 0xAA, sizeof out);
    nfqr_endpoint original = v4("203.0.113.5", 443);
    socklen_t length = nfqr_shape_original(AF_INET, &original, 0, 0, &out);
    static const uint8_t expected_in[16] = {AF_INET, 0, 0x01, 0xbb, 203, 0, 113, 5, 0, 0, 0, 0, 0, 0, 0, 0};
    CHECK(length == 16 && memcmp(&out, expected_in, 16) == 0, "sockaddr_in bytes, sin_zero cleared");

    length = nfqr_shape_original(AF_INET6, &original, 0, 0, &out);
    struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&out;
    char text[64];
    inet_ntop(AF_INET6, &sin6->sin6_addr, text, sizeof text);
    CHECK(length == 28 && sin6->sin6_family == AF_INET6 && ntohs(sin6->sin6_port) == 443 &&
              strcmp(text, "::ffff:203.0.113.5") == 0 && sin6->sin6_flowinfo == 0 && sin6->sin6_scope_id == 0,
          "IPv4 answer on an AF_INET6 socket is v4-mapped (%s)", text);

    nfqr_endpoint link_local = v6("fe80::1");
    link_local.port = 80;
    nfqr_shape_original(AF_INET6, &link_local, htonl(0x12345), 7, &out);
    CHECK(sin6->sin6_scope_id == 7 && sin6->sin6_flowinfo == htonl(0x12345), "scope and flowinfo carried");

    static const struct {
        const char *text;
        bool needs;
    } scopes[] = {
        {"fe80::1", true},  {"febf::1", true},  {"fec0::1", false}, {"ff02::1", true},      {"ff01::1", true},
        {"ff05::1", false}, {"ff0e::1", false}, {"::1", false},     {"2001:db8::1", false},
    };
    for (size_t i = 0; i < sizeof scopes / sizeof scopes[0]; i++) {
        nfqr_endpoint endpoint = v6(scopes[i].text);
        CHECK(nfqr_needs_scope_id(&endpoint) == scopes[i].needs, "scope id for %s", scopes[i].text);
    }
    nfqr_endpoint quad = v4("169.254.1.1", 1);
    CHECK(!nfqr_needs_scope_id(&quad), "IPv4 never has a scope id");
}

static void test_answer_names(void) {
    CHECK(strcmp(nfqr_answer_name(NFQR_FOUND), "found") == 0, "found");
    CHECK(strcmp(nfqr_answer_name(NFQR_UNAVAILABLE), "daemon unavailable") == 0, "unavailable");
    CHECK(strcmp(nfqr_answer_name((nfqr_answer)99), "unknown answer") == 0, "out of range");
    for (int answer = NFQR_FOUND; answer <= NFQR_BAD_SOCKET; answer++)
        CHECK(strcmp(nfqr_answer_name((nfqr_answer)answer), "unknown answer") != 0, "answer %d named", answer);
}

int main(void) {
    test_format_table();
    test_format_random();
    test_parse_table();
    test_parse_random();
    test_ports();
    test_request_lines();
    test_reply_lines();
    test_shapes();
    test_answer_names();
    return check_summary("unit_tests");
}
