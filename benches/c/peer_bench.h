/* What the peer benchmarks (bench_uv.c, bench_glib.c) share: a monotonic clock, the
 * median of ROUNDS timed rounds after a warm-up, the N argument, the core count, and
 * running W1-W3 and printing their RESULT lines. Header-only: each program includes it
 * once. */
#ifndef BGJOB_PEER_BENCH_H
#define BGJOB_PEER_BENCH_H

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#define ROUNDS 5

/* Nanoseconds on the monotonic clock. */
static double now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Warm-up round, then ROUNDS timed rounds of round(arg); returns the median (ns/round).
 * The spread goes to stderr, prefixed with `prog`, so noisy runs can be spotted. */
static double median_of_rounds(const char *prog, const char *name,
                               double (*round)(long), long arg)
{
    double samples[ROUNDS];
    (void)round(arg); /* warm-up */
    for (int r = 0; r < ROUNDS; r++)
        samples[r] = round(arg);
    qsort(samples, ROUNDS, sizeof samples[0], cmp_double);
    fprintf(stderr, "%s: %s per-op min/median/max %.3f/%.3f/%.3f us\n", prog, name,
            samples[0] / 1e3 / (double)arg, samples[ROUNDS / 2] / 1e3 / (double)arg,
            samples[ROUNDS - 1] / 1e3 / (double)arg);
    return samples[ROUNDS / 2];
}

/* N from argv[1] (default 100,000), at most `max`; exits with status 2 and a usage line
 * on anything else. */
static long parse_n(int argc, char **argv, long max)
{
    long n = 100000;
    if (argc > 1) {
        char *end;
        n = strtol(argv[1], &end, 10);
        if (*argv[1] == '\0' || *end != '\0' || n < 1 || n > max) {
            fprintf(stderr, "usage: %s [N>=1]\n", argv[0]);
            exit(2);
        }
    }
    return n;
}

/* Online cores (at least 1): every system in the suite uses this many workers. */
static long online_cores(void)
{
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    return cores < 1 ? 1 : cores;
}

/* W1 (n jobs), W2 (n/10 round trips, at least 1) and W3 (n jobs), each measured by
 * median_of_rounds, then their three `RESULT <W> <system> ...` lines on stdout. */
static void run_w1_w3(const char *prog, const char *system, long n, double (*w1_round)(long),
                      double (*w2_round)(long), double (*w3_round)(long))
{
    long rt = n / 10 > 0 ? n / 10 : 1;
    double w1 = median_of_rounds(prog, "W1", w1_round, n);
    double w2 = median_of_rounds(prog, "W2", w2_round, rt);
    double w3 = median_of_rounds(prog, "W3", w3_round, n);
    printf("RESULT W1 %s %.3f us/job\n", system, w1 / 1e3 / (double)n);
    printf("RESULT W2 %s %.2f us/roundtrip\n", system, w2 / 1e3 / (double)rt);
    printf("RESULT W3 %s %.3f us/job\n", system, w3 / 1e3 / (double)n);
}

#endif
