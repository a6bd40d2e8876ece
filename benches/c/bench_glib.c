/*
 * bench_glib.c -- peer benchmark: GLib's GThreadPool.
 *
 * One pool for the whole run: g_thread_pool_new(func, ctx, max_threads =
 * number of cores, exclusive = FALSE).  The same worker count is used by
 * every system in the suite.
 *
 *   W1 throughput : push N no-op jobs, then wait until all have finished.
 *                   "Wait for all" is done the way a user keeping a reusable
 *                   pool writes it: the job decrements an atomic counter
 *                   (g_atomic_int_dec_and_test) and the job that brings it to
 *                   zero signals a GCond under a GMutex; the submitter waits on
 *                   that GCond.  (The alternative, g_thread_pool_free(pool,
 *                   FALSE, TRUE) per round, tears the pool down and would
 *                   charge thread creation to every round.)  No per-job
 *                   memory: every job's data is a pointer to one shared
 *                   context.                                   -> us/job
 *   W2 round trip : push one no-op job and wait for its completion signal
 *                   (the W1 mechanism with a batch of 1), N/10 times in
 *                   sequence.                                  -> us/roundtrip
 *   W3 callbacks  : push N no-op jobs, each with a completion callback.
 *                   GThreadPool has no built-in completion notification; the
 *                   closest analogue of libuv's after_work_cb is chosen: when
 *                   a job finishes, the worker pushes the job's data onto a
 *                   GAsyncQueue, and the submitting thread pops each
 *                   completion and runs the job's callback there (the
 *                   callback counts completions).  So every completion is
 *                   delivered individually to the submitting thread, as with
 *                   libuv.  Done when N callbacks have run.    -> us/job
 *
 * N = 100000 unless argv[1] gives another N.  Each workload runs one warm-up
 * round and 5 timed rounds; the median is printed as
 *   RESULT <workload> glib <value> <unit>
 * on stdout, nothing else (diagnostics go to stderr).  CLOCK_MONOTONIC.
 *
 * Build: gcc -O2 -Wall -Wextra -Werror -std=c11 benches/c/bench_glib.c \
 *            $(pkg-config --cflags --libs glib-2.0) -o build/bench/bench_glib
 * (GLib's GThreadPool lives in glib-2.0 itself; gthread-2.0 is not needed.)
 */
#define _POSIX_C_SOURCE 200809L

#include <stdio.h>
#include <stdlib.h>

#include <glib.h>

#include "peer_bench.h"


typedef struct job job;
typedef void (*job_callback)(job *j);

/* Shared per-round state.  Jobs carry a pointer to a `job` (GThreadPool
 * rejects NULL data); in this benchmark every job of a round shares one. */
struct job {
    /* W1/W2: countdown latch */
    gint remaining;
    gboolean done;
    GMutex lock;
    GCond cond;
    /* W3: completion queue + callback */
    gboolean notify;         /* push to `completions` when finished */
    GAsyncQueue *completions;
    job_callback callback;   /* run on the submitting thread */
    long callbacks_run;
};


/* Pool function: the no-op job followed by its completion notification. */
static void pool_func(gpointer data, gpointer user_data)
{
    (void)user_data;
    job *j = data;
    /* (no-op job body) */
    if (j->notify) {
        g_async_queue_push(j->completions, j);
    } else if (g_atomic_int_dec_and_test(&j->remaining)) {
        g_mutex_lock(&j->lock);
        j->done = TRUE;
        g_cond_signal(&j->cond);
        g_mutex_unlock(&j->lock);
    }
}

static void count_callback(job *j)
{
    j->callbacks_run++;
}

static GThreadPool *pool;
static job ctx;

static void push(job *j)
{
    GError *err = NULL;
    if (!g_thread_pool_push(pool, j, &err)) {
        fprintf(stderr, "bench_glib: g_thread_pool_push: %s\n",
                err ? err->message : "failed");
        exit(1);
    }
}

/* Push `n` no-op jobs and wait until all have finished. */
static void batch_and_wait(long n)
{
    ctx.notify = FALSE;
    ctx.done = FALSE;
    g_atomic_int_set(&ctx.remaining, (gint)n);
    for (long i = 0; i < n; i++)
        push(&ctx);
    g_mutex_lock(&ctx.lock);
    while (!ctx.done)
        g_cond_wait(&ctx.cond, &ctx.lock);
    g_mutex_unlock(&ctx.lock);
    if (g_atomic_int_get(&ctx.remaining) != 0) {
        fprintf(stderr, "bench_glib: latch released early\n");
        exit(1);
    }
}

static double w1_round(long n)
{
    double t0 = now_ns();
    batch_and_wait(n);
    return now_ns() - t0;
}

static double w2_round(long iters)
{
    double t0 = now_ns();
    for (long i = 0; i < iters; i++)
        batch_and_wait(1);
    return now_ns() - t0;
}

static double w3_round(long n)
{
    ctx.notify = TRUE;
    ctx.callback = count_callback;
    ctx.callbacks_run = 0;
    double t0 = now_ns();
    for (long i = 0; i < n; i++)
        push(&ctx);
    for (long i = 0; i < n; i++) {
        job *j = g_async_queue_pop(ctx.completions);
        j->callback(j);
    }
    double t = now_ns() - t0;
    if (ctx.callbacks_run != n) {
        fprintf(stderr, "bench_glib: %ld/%ld callbacks ran\n",
                ctx.callbacks_run, n);
        exit(1);
    }
    return t;
}


int main(int argc, char **argv)
{
    long n = parse_n(argc, argv, G_MAXINT);
    long cores = online_cores();
    fprintf(stderr, "bench_glib: GLib %u.%u.%u, max_threads=%ld, N=%ld\n",
            glib_major_version, glib_minor_version, glib_micro_version,
            cores, n);

    g_mutex_init(&ctx.lock);
    g_cond_init(&ctx.cond);
    ctx.completions = g_async_queue_new();

    GError *err = NULL;
    pool = g_thread_pool_new(pool_func, NULL, (gint)cores, FALSE, &err);
    if (!pool) {
        fprintf(stderr, "bench_glib: g_thread_pool_new: %s\n",
                err ? err->message : "failed");
        return 1;
    }

    run_w1_w3("bench_glib", "glib", n, w1_round, w2_round, w3_round);

    g_thread_pool_free(pool, FALSE, TRUE);
    g_async_queue_unref(ctx.completions);
    g_cond_clear(&ctx.cond);
    g_mutex_clear(&ctx.lock);
    if (fflush(stdout) != 0) {
        perror("stdout");
        return 1;
    }
    return 0;
}
