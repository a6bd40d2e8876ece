/* A tiny test harness for the C tests: CHECK records a failure and goes on, each test
 * program ends with "N passed, N failed" and exits non-zero on any failure. */
#ifndef BGJOB_TEST_CHECK_H
#define BGJOB_TEST_CHECK_H

#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bgjob.h"

static int check_failures = 0;
static int check_passes = 0;
static int check_failed_tests = 0;
static const char *check_current = "";

#define CHECK(cond)                                                                    \
    do {                                                                               \
        if (!(cond)) {                                                                 \
            fprintf(stderr, "  FAIL %s (%s:%d): %s\n", check_current, __FILE__,        \
                    __LINE__, #cond);                                                  \
            check_failures++;                                                          \
        }                                                                              \
    } while (0)

/* Checks a status; on failure prints the status name and bgjob's message. */
#define CHECK_OK(expr)                                                                 \
    do {                                                                               \
        bgjob_status check_st_ = (expr);                                               \
        if (check_st_ != BGJOB_OK) {                                                   \
            fprintf(stderr, "  FAIL %s (%s:%d): %s -> %s: %s\n", check_current,        \
                    __FILE__, __LINE__, #expr, bgjob_status_name(check_st_),           \
                    bgjob_last_error_message());                                       \
            check_failures++;                                                          \
        }                                                                              \
    } while (0)

#define CHECK_STATUS(expr, want)                                                       \
    do {                                                                               \
        bgjob_status check_st_ = (expr);                                               \
        if (check_st_ != (want)) {                                                     \
            fprintf(stderr, "  FAIL %s (%s:%d): %s -> %s, want %s (%s)\n",             \
                    check_current, __FILE__, __LINE__, #expr,                          \
                    bgjob_status_name(check_st_), bgjob_status_name(want),             \
                    bgjob_last_error_message());                                       \
            check_failures++;                                                          \
        }                                                                              \
    } while (0)

/* Runs one test call and reports it as passed if it recorded no failure. */
#define RUN_CALL(name, call)                                                           \
    do {                                                                               \
        int before_ = check_failures;                                                  \
        check_current = name;                                                          \
        call;                                                                          \
        if (check_failures == before_) {                                               \
            check_passes++;                                                            \
            printf("  ok   %s\n", name);                                               \
        } else {                                                                       \
            check_failed_tests++;                                                      \
            printf("  FAIL %s\n", name);                                               \
        }                                                                              \
        fflush(stdout);                                                                \
    } while (0)

#define RUN_TEST(fn) RUN_CALL(#fn, fn())
/* RUN_TEST for a test function taking one argument. */
#define RUN_TEST_ARG(fn, arg) RUN_CALL(#fn, fn(arg))

static inline int check_summary(const char *program) {
    printf("%s: %d passed, %d failed\n", program, check_passes, check_failed_tests);
    return check_failures ? 1 : 0;
}

/* Monotonic milliseconds. */
static inline double now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

/* Sleeps for `ms` milliseconds: only to make work take time, never to synchronise. */
static inline void sleep_ms(long ms) {
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

#endif
