/*
 * Minimal checks for the preload tests: each CHECK counts one pass or one failure (printed,
 * indented, with its place); check_summary() prints "RESULT <passed> <failed>", which the
 * harness's reporter (Tests/harness/report.py) adds up into the suite's summary line.
 */
#ifndef NFQR_TEST_CHECK_H
#define NFQR_TEST_CHECK_H

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>

static atomic_int checks_passed, checks_failed;

#define CHECK(condition, ...)                                                                                          \
    do {                                                                                                               \
        if (condition) {                                                                                               \
            atomic_fetch_add(&checks_passed, 1);                                                                       \
        } else {                                                                                                       \
            atomic_fetch_add(&checks_failed, 1);                                                                       \
            fprintf(stderr, "  failed %s:%d: %s: ", __FILE__, __LINE__, #condition);                                   \
            fprintf(stderr, __VA_ARGS__);                                                                              \
            fputc('\n', stderr);                                                                                       \
        }                                                                                                              \
    } while (0)

/* A failure that makes the rest of a test meaningless. */
#define REQUIRE(condition, ...)                                                                                        \
    do {                                                                                                               \
        if (!(condition)) {                                                                                            \
            fprintf(stderr, "FATAL %s:%d: %s: ", __FILE__, __LINE__, #condition);                                      \
            fprintf(stderr, __VA_ARGS__);                                                                              \
            fputc('\n', stderr);                                                                                       \
            exit(2);                                                                                                   \
        }                                                                                                              \
    } while (0)

static inline int check_summary(const char *program) {
    int passed = atomic_load(&checks_passed), failed = atomic_load(&checks_failed);
    printf("RESULT %d %d %s\n", passed, failed, program);
    return failed == 0 ? 0 : 1;
}

/* SplitMix64: a small seeded generator, so that random tests replay exactly. */
static inline unsigned long long splitmix64(unsigned long long *state) {
    unsigned long long z = (*state += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

#endif
