/* What the peer benchmarks (bench_uv.c, bench_glib.c) share: a monotonic clock, the
 * median of ROUNDS timed rounds after a warm-up, and the N argument. Header-only: each
 * program includes it once. */
#ifndef BGJOB_PEER_BENCH_H
#define BGJOB_PEER_BENCH_H

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

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

#endif
