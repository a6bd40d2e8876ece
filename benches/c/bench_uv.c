/*
 * bench_uv.c -- peer benchmark: libuv's uv_queue_work thread pool.
 *
 * Measures what a C user would write with libuv instead of bgjob:
 *   W1 throughput : queue N no-op jobs (after_work_cb = NULL), run the default
 *                   loop until it has nothing left, free the per-job uv_work_t
 *                   array.                                   -> us/job
 *   W2 round trip : queue one no-op job and run the loop until it is done,
 *                   N/10 times in sequence.                  -> us/roundtrip
 *   W3 callbacks  : queue N no-op jobs, each with an after_work_cb (libuv's
 *                   natural completion notification, run on the loop thread)
 *                   that counts completions; run the loop until all N have
 *                   run, free the uv_work_t array.           -> us/job
 *
 * N = 100000 unless argv[1] gives another N.  Each workload runs one warm-up
 * round and 5 timed rounds; the median is printed as
 *   RESULT <workload> libuv <value> <unit>
 * on stdout, nothing else (diagnostics go to stderr).  CLOCK_MONOTONIC.
 *
 * Worker count: libuv's threadpool defaults to 4 threads.  So that every
 * system in the suite uses the same number of workers, UV_THREADPOOL_SIZE is
 * set (setenv, before the first uv_queue_work, which is when libuv reads it)
 * to the number of online cores.
 *
 * Timed region of W1/W3 includes the malloc/free of the uv_work_t array: the
 * request structs are the per-job memory a libuv user must provide.
 *
 * Build: gcc -O2 -Wall -Wextra -Werror -std=c11 benches/c/bench_uv.c \
 *            $(pkg-config --cflags --libs libuv) -o build/bench/bench_uv
 */
#define _POSIX_C_SOURCE 200809L

#include <stdio.h>
#include <stdlib.h>

#include <uv.h>

#include "peer_bench.h"


static uv_loop_t *loop;
static long w3_completed;


static void die_uv(const char *what, int rc)
{
    fprintf(stderr, "bench_uv: %s: %s\n", what, uv_strerror(rc));
    exit(1);
}

static void noop_work(uv_work_t *req)
{
    (void)req;
}

static void count_after_work(uv_work_t *req, int status)
{
    (void)req;
    if (status != 0) {
        fprintf(stderr, "bench_uv: after_work_cb status %d\n", status);
        exit(1);
    }
    w3_completed++;
}

static void run_loop_to_completion(void)
{
    uv_run(loop, UV_RUN_DEFAULT);
    if (uv_loop_alive(loop)) {
        fprintf(stderr, "bench_uv: loop still alive after uv_run\n");
        exit(1);
    }
}

/* Queues n no-op jobs (with `after`, or none) into a fresh uv_work_t array, which the
 * caller frees once the loop has run them. */
static uv_work_t *queue_jobs(long n, uv_after_work_cb after)
{
    uv_work_t *reqs = malloc((size_t)n * sizeof *reqs);
    if (!reqs) {
        fprintf(stderr, "bench_uv: out of memory\n");
        exit(1);
    }
    for (long i = 0; i < n; i++) {
        int rc = uv_queue_work(loop, &reqs[i], noop_work, after);
        if (rc != 0)
            die_uv("uv_queue_work", rc);
    }
    return reqs;
}

/* W1: N jobs without completion callback. Returns ns for the round. */
static double w1_round(long n)
{
    double t0 = now_ns();
    uv_work_t *reqs = queue_jobs(n, NULL);
    run_loop_to_completion();
    free(reqs);
    return now_ns() - t0;
}

/* W2: `iters` sequential submit-one-and-wait. Returns ns for the round. */
static double w2_round(long iters)
{
    uv_work_t req;
    double t0 = now_ns();
    for (long i = 0; i < iters; i++) {
        int rc = uv_queue_work(loop, &req, noop_work, NULL);
        if (rc != 0)
            die_uv("uv_queue_work", rc);
        run_loop_to_completion();
    }
    return now_ns() - t0;
}

/* W3: N jobs, each with an after_work_cb that counts completions. */
static double w3_round(long n)
{
    w3_completed = 0;
    double t0 = now_ns();
    uv_work_t *reqs = queue_jobs(n, count_after_work);
    while (w3_completed < n) {
        if (!uv_run(loop, UV_RUN_DEFAULT) && w3_completed < n) {
            fprintf(stderr, "bench_uv: loop idle with %ld/%ld callbacks\n",
                    w3_completed, n);
            exit(1);
        }
    }
    free(reqs);
    return now_ns() - t0;
}


int main(int argc, char **argv)
{
    long n = parse_n(argc, argv, LONG_MAX);
    long cores = online_cores();
    char buf[32];
    snprintf(buf, sizeof buf, "%ld", cores);
    /* Must happen before the first uv_queue_work (libuv reads it once). */
    if (setenv("UV_THREADPOOL_SIZE", buf, 1) != 0) {
        perror("setenv");
        return 1;
    }
    fprintf(stderr, "bench_uv: libuv %s, UV_THREADPOOL_SIZE=%ld, N=%ld\n",
            uv_version_string(), cores, n);

    loop = uv_default_loop();
    if (!loop) {
        fprintf(stderr, "bench_uv: uv_default_loop failed\n");
        return 1;
    }

    run_w1_w3("bench_uv", "libuv", n, w1_round, w2_round, w3_round);

    int rc = uv_loop_close(loop);
    if (rc != 0)
        die_uv("uv_loop_close", rc);
    if (fflush(stdout) != 0) {
        perror("stdout");
        return 1;
    }
    return 0;
}
