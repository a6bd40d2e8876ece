/* bench_bgjob: bgjob measured through its C ABI (include/bgjob.h).
 *
 *   W1  throughput   start N no-op thread jobs, wait for all (BGJOB_WAIT_ALL), remove them
 *   W2  round trip   start one no-op job, wait for it, remove it; N/10 times in sequence
 *                    (W1 and W2 start with bgjob_start_fn, the one-call start, as `bgjob`,
 *                    and again through a spec, as `bgjob-spec`)
 *   W3  callbacks    N no-op jobs with a state-change callback on the spec; the callbacks
 *                    count Completed changes and the last one wakes the main thread
 *   W4  records      one job writes 1,000,000 8-byte records while the main thread
 *                    receives them (bgjob_receive with BGJOB_RECEIVE_WAIT) concurrently
 *   W5  many waiters 10,000 no-op jobs; BGJOB_WAIT_ANY on the ids not yet done, repeated
 *                    until all are done (each removed as it is found done)
 *   W6  repository   1,000,000 finished jobs kept: get by id with 1,000 and with 1,000,000
 *                    kept, list by state, list by name pattern, memory per kept job
 *
 * N = 100,000 unless stated; argv[1] (optional) scales every N, e.g. 0.1 for a quick run;
 * argv[2] (optional) runs only the workloads it names, e.g. "W1,W4".
 * W1, W2, W3, W5: one warm-up round, then the median of 5 rounds; W4: median of 3 rounds;
 * W6: once. Prints one line per measurement on stdout,
 *     RESULT <workload> bgjob <value> <unit>
 * and nothing else there (progress and extra detail go to stderr). Every status is
 * checked: any failure prints bgjob_last_error_message() and exits 1.
 *
 * Build (from the repository root, after `cargo build --release --lib`):
 *   gcc -O2 -Wall -Wextra -Werror -std=c11 -Iinclude benches/c/bench_bgjob.c \
 *       -o build/bench/bench_bgjob -L target/release -Wl,-rpath,$PWD/target/release \
 *       -lbgjob -pthread
 */
#define _POSIX_C_SOURCE 200809L
#include <bgjob.h>
#include <malloc.h> /* malloc_trim (glibc): for the RSS note after W6 */
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define ROUNDS 5
#define ROUNDS_W4 3

static double g_scale = 1.0;

/* ----- helpers ------------------------------------------------------------------------ */

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(double *v, int n) {
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

static size_t scaled(size_t n) {
    double v = (double)n * g_scale;
    return v < 1 ? 1 : (size_t)v;
}

static void die(const char *what, bgjob_status st) {
    fprintf(stderr, "bench_bgjob: %s failed: %s (%s)\n", what, bgjob_status_name(st),
            bgjob_last_error_message());
    exit(1);
}

#define CHECK(call)                                \
    do {                                           \
        bgjob_status st_ = (call);                 \
        if (st_ != BGJOB_OK) die(#call, st_);      \
    } while (0)

static void fail(const char *msg) {
    fprintf(stderr, "bench_bgjob: %s\n", msg);
    exit(1);
}

static void *xmalloc(size_t n) {
    void *p = malloc(n ? n : 1);
    if (!p) fail("out of memory");
    return p;
}

static void result_as(const char *workload, const char *system, double value, const char *unit) {
    printf("RESULT %s %s %.4g %s\n", workload, system, value, unit);
    fflush(stdout);
}

static void result(const char *workload, double value, const char *unit) {
    result_as(workload, "bgjob", value, unit);
}

static void expect_completed(uint64_t id) {
    bgjob_job_state s;
    CHECK(bgjob_get_state(id, &s));
    if (s != BGJOB_STATE_COMPLETED) {
        fprintf(stderr, "bench_bgjob: job %llu ended %s, not Completed\n",
                (unsigned long long)id, bgjob_state_name(s));
        exit(1);
    }
}

static long rss_bytes(void) {
    FILE *f = fopen("/proc/self/statm", "r");
    long size = 0, resident = 0;
    if (!f || fscanf(f, "%ld %ld", &size, &resident) != 2) fail("cannot read /proc/self/statm");
    fclose(f);
    return resident * sysconf(_SC_PAGESIZE);
}

/* ----- work functions ----------------------------------------------------------------- */

static int32_t noop_work(bgjob_context *ctx, void *user_data) {
    (void)ctx;
    (void)user_data;
    return 0;
}

/* A no-op job through a spec (bgjob_spec_new, _set_name, _set_work, bgjob_start): what a
 * job with a name or callbacks takes. */
static uint64_t start_noop(const char *name) {
    bgjob_spec *spec;
    uint64_t id;
    CHECK(bgjob_spec_new(&spec));
    if (name) CHECK(bgjob_spec_set_name(spec, name));
    CHECK(bgjob_spec_set_work(spec, noop_work, NULL, NULL));
    CHECK(bgjob_start(spec, &id));
    return id;
}

/* A no-op job in one call (bgjob_start_fn): what a C host uses for a plain job. */
static uint64_t start_noop_fn(void) {
    uint64_t id;
    CHECK(bgjob_start_fn(noop_work, NULL, NULL, NULL, &id));
    return id;
}

/* W1 and W2 run once with each way to start (the table shows both). */
static int g_use_spec = 0;

static uint64_t start_plain(void) {
    return g_use_spec ? start_noop(NULL) : start_noop_fn();
}

static void wait_all(const uint64_t *ids, size_t n) {
    size_t ndone = 0;
    CHECK(bgjob_wait(ids, n, BGJOB_WAIT_ALL, BGJOB_INFINITE, NULL, &ndone));
    if (ndone != n) fail("bgjob_wait(ALL) returned before every job was done");
}

/* ----- W1: throughput ----------------------------------------------------------------- */

/* Seconds for one round of n jobs: start, wait all, remove (the Completed check between
 * the wait and the removal is not timed). */
static double w1_round(uint64_t *ids, size_t n) {
    double t0 = now_s();
    for (size_t i = 0; i < n; i++) ids[i] = start_plain();
    wait_all(ids, n);
    double t1 = now_s();
    for (size_t i = 0; i < n; i++) expect_completed(ids[i]);
    double t2 = now_s();
    for (size_t i = 0; i < n; i++) CHECK(bgjob_remove(ids[i], false));
    double t3 = now_s();
    return (t1 - t0) + (t3 - t2);
}

/* W1 and W2: a warm-up round, then the median of ROUNDS rounds of `items` jobs or trips,
 * once starting with bgjob_start_fn (system `bgjob`) and once through a spec
 * (`bgjob-spec`). */
static void bench_both_starts(const char *workload, double (*round)(uint64_t *, size_t),
                              uint64_t *ids, size_t items, const char *unit) {
    for (g_use_spec = 0; g_use_spec < 2; g_use_spec++) {
        double t[ROUNDS];
        round(ids, items);
        for (int r = 0; r < ROUNDS; r++) {
            t[r] = round(ids, items) / (double)items * 1e6;
            fprintf(stderr, "  %s%s round %d: %.3f %s\n", workload,
                    g_use_spec ? " (spec)" : "", r, t[r], unit);
        }
        result_as(workload, g_use_spec ? "bgjob-spec" : "bgjob", median(t, ROUNDS), unit);
    }
    g_use_spec = 0;
}

static void bench_w1(void) {
    size_t n = scaled(100000);
    uint64_t *ids = xmalloc(n * sizeof *ids);
    bench_both_starts("W1", w1_round, ids, n, "us/job");
    free(ids);
}

/* ----- W2: round trip ----------------------------------------------------------------- */

/* Seconds for n round trips (`ids` is unused: the signature is w1_round's). */
static double w2_round(uint64_t *ids, size_t n) {
    (void)ids;
    double t0 = now_s();
    for (size_t i = 0; i < n; i++) {
        uint64_t id = start_plain();
        wait_all(&id, 1);
        expect_completed(id); /* one bgjob_get_state per trip: well under 1% of it */
        CHECK(bgjob_remove(id, false));
    }
    return now_s() - t0;
}

static void bench_w2(void) {
    size_t n = scaled(100000) / 10;
    if (n == 0) n = 1;
    bench_both_starts("W2", w2_round, NULL, n, "us/roundtrip");
}

/* ----- W3: callbacks ------------------------------------------------------------------ */

struct w3_shared {
    atomic_size_t completed;
    atomic_size_t calls;
    size_t target;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int done;
};

static void w3_callback(const bgjob_state_event *ev, void *user_data) {
    struct w3_shared *s = user_data;
    atomic_fetch_add_explicit(&s->calls, 1, memory_order_relaxed);
    if (ev->state_info.state != BGJOB_STATE_COMPLETED) return;
    size_t c = atomic_fetch_add_explicit(&s->completed, 1, memory_order_acq_rel) + 1;
    if (c == s->target) {
        pthread_mutex_lock(&s->mu);
        s->done = 1;
        pthread_cond_signal(&s->cv);
        pthread_mutex_unlock(&s->mu);
    }
}

static double w3_round(uint64_t *ids, size_t n, struct w3_shared *s) {
    atomic_store(&s->completed, 0);
    atomic_store(&s->calls, 0);
    s->target = n;
    s->done = 0;
    double t0 = now_s();
    for (size_t i = 0; i < n; i++) {
        bgjob_spec *spec;
        CHECK(bgjob_spec_new(&spec));
        CHECK(bgjob_spec_set_work(spec, noop_work, NULL, NULL));
        CHECK(bgjob_spec_on_state_changed(spec, w3_callback, s, NULL));
        CHECK(bgjob_start(spec, &ids[i]));
    }
    pthread_mutex_lock(&s->mu);
    while (!s->done) pthread_cond_wait(&s->cv, &s->mu);
    pthread_mutex_unlock(&s->mu);
    /* Every job reported Completed, so each is finished (the state is stored before its
     * callbacks run) and can be removed. */
    for (size_t i = 0; i < n; i++) CHECK(bgjob_remove(ids[i], false));
    double t1 = now_s();
    size_t calls = atomic_load(&s->calls);
    if (calls != 2 * n) {
        fprintf(stderr, "bench_bgjob: W3 expected %zu callback calls, saw %zu\n", 2 * n, calls);
        exit(1);
    }
    return t1 - t0;
}

static void bench_w3(void) {
    size_t n = scaled(100000);
    uint64_t *ids = xmalloc(n * sizeof *ids);
    struct w3_shared s;
    atomic_init(&s.completed, 0);
    atomic_init(&s.calls, 0);
    pthread_mutex_init(&s.mu, NULL);
    pthread_cond_init(&s.cv, NULL);
    double t[ROUNDS];
    w3_round(ids, n, &s);
    for (int r = 0; r < ROUNDS; r++) {
        t[r] = w3_round(ids, n, &s) / (double)n * 1e6;
        fprintf(stderr, "  W3 round %d: %.3f us/job\n", r, t[r]);
    }
    result("W3", median(t, ROUNDS), "us/job");
    pthread_mutex_destroy(&s.mu);
    pthread_cond_destroy(&s.cv);
    free(ids);
}

/* ----- W4: records -------------------------------------------------------------------- */

struct w4_work {
    size_t count;
};

static int32_t w4_writer(bgjob_context *ctx, void *user_data) {
    const struct w4_work *w = user_data;
    char buf[16];
    memcpy(buf, "rec00000", 8);
    for (size_t i = 0; i < w->count; i++) {
        /* "rec" + the last 5 decimal digits of i: 8 bytes. */
        size_t v = i;
        for (int d = 7; d >= 3; d--) {
            buf[d] = (char)('0' + v % 10);
            v /= 10;
        }
        if (bgjob_context_write(ctx, BGJOB_STREAM_OUTPUT, buf, 8) != BGJOB_OK) return 1;
    }
    return 0;
}

/* Seconds from the start to the last record received, receiving batches of at most
 * `max` records with BGJOB_RECEIVE_WAIT (flags = 0: polling without the wait flag). */
static double w4_round(size_t count, size_t max, uint32_t flags, size_t *batches_out) {
    struct w4_work w = {count};
    bgjob_spec *spec;
    uint64_t id;
    size_t got = 0, batches = 0;
    uint64_t last_seq = 0;
    double t0 = now_s();
    CHECK(bgjob_spec_new(&spec));
    CHECK(bgjob_spec_set_work(spec, w4_writer, &w, NULL));
    CHECK(bgjob_start(spec, &id));
    while (got < count) {
        bgjob_records *recs;
        CHECK(bgjob_receive(id, flags, max, BGJOB_INFINITE, &recs));
        size_t k = bgjob_records_count(recs);
        for (size_t i = 0; i < k; i++) {
            const bgjob_record *r = bgjob_records_get(recs, i);
            if (!r || r->stream != BGJOB_STREAM_OUTPUT || r->len != 8 || r->data[0] != 'r' ||
                r->sequence <= last_seq)
                fail("W4: unexpected record");
            last_seq = r->sequence;
        }
        if (k) {
            /* spot-check the text of the batch's last record */
            const bgjob_record *r = bgjob_records_get(recs, k - 1);
            size_t v = got + k - 1;
            char want[9];
            snprintf(want, sizeof want, "rec%05zu", v % 100000);
            if (memcmp(r->data, want, 8) != 0) fail("W4: records out of order or lost");
        }
        got += k;
        batches++;
        bgjob_records_free(recs);
        if (k == 0 && !(flags & BGJOB_RECEIVE_WAIT)) {
            sched_yield();
        } else if (k == 0) {
            bgjob_job_state s;
            CHECK(bgjob_get_state(id, &s));
            if (bgjob_state_is_finished(s) && got < count) fail("W4: job finished, records missing");
        }
    }
    double t1 = now_s();
    if (got != count) fail("W4: received more records than written");
    wait_all(&id, 1);
    expect_completed(id);
    CHECK(bgjob_remove(id, false));
    if (batches_out) *batches_out = batches;
    return t1 - t0;
}

static void bench_w4(void) {
    size_t count = scaled(1000000);
    const size_t max = 65536; /* "large": other limits are the stderr variants below */
    double t[ROUNDS_W4];
    size_t batches = 0;
    w4_round(count / 10 ? count / 10 : 1, max, BGJOB_RECEIVE_WAIT, NULL);
    for (int r = 0; r < ROUNDS_W4; r++) {
        t[r] = w4_round(count, max, BGJOB_RECEIVE_WAIT, &batches);
        fprintf(stderr, "  W4 round %d: %.3f us/record (%zu batches of <= %zu)\n", r,
                t[r] / (double)count * 1e6, batches, max);
    }
    double m = median(t, ROUNDS_W4);
    result("W4", m / (double)count * 1e6, "us/record");
    result("W4-rate", (double)count / m, "records/s");

    /* Other ways to receive, for the record (stderr only). */
    static const struct {
        size_t max;
        uint32_t flags;
        const char *what;
    } variants[] = {
        {0, BGJOB_RECEIVE_WAIT, "WAIT, max 0 (no limit: waits for the job to finish)"},
        {1000000, BGJOB_RECEIVE_WAIT, "WAIT, max 1,000,000"},
        {4096, BGJOB_RECEIVE_WAIT, "WAIT, max 4096"},
        {256, BGJOB_RECEIVE_WAIT, "WAIT, max 256"},
        {0, 0, "no WAIT, max 0, sched_yield when empty (polling)"},
    };
    for (size_t v = 0; v < sizeof variants / sizeof *variants; v++) {
        double s = w4_round(count, variants[v].max, variants[v].flags, &batches);
        fprintf(stderr, "  W4 variant %-52s %.3f us/record, %.3g records/s, %zu batches\n",
                variants[v].what, s / (double)count * 1e6, (double)count / s, batches);
    }
}

/* ----- W5: many waiters (wait-any) ----------------------------------------------------- */

/* Wait-any on the ids not yet done, removing each job found done, until none is left;
 * returns how many wait-any calls that took. */
static size_t drain_with_wait_any(uint64_t *ids, uint64_t *done, size_t n) {
    size_t calls = 0;
    size_t left = n;
    while (left > 0) {
        size_t ndone = 0;
        CHECK(bgjob_wait(ids, left, BGJOB_WAIT_ANY, BGJOB_INFINITE, done, &ndone));
        calls++;
        if (ndone == 0) fail("W5: wait-any returned with nothing done");
        /* done[] is in the order of ids[]: one merge pass drops them from ids[]. */
        size_t k = 0, w = 0;
        for (size_t i = 0; i < left; i++) {
            if (k < ndone && ids[i] == done[k]) {
                expect_completed(ids[i]);
                CHECK(bgjob_remove(ids[i], false));
                k++;
            } else {
                ids[w++] = ids[i];
            }
        }
        if (k != ndone) fail("W5: done ids not in the order given");
        left = w;
    }
    return calls;
}

static double w5_round(uint64_t *ids, uint64_t *done, size_t n, size_t *calls_out) {
    double t0 = now_s();
    for (size_t i = 0; i < n; i++) ids[i] = start_noop_fn();
    size_t calls = drain_with_wait_any(ids, done, n);
    if (calls_out) *calls_out = calls;
    return now_s() - t0;
}

/* W5-gated: the same, but every job's work first waits at a gate the main thread opens
 * only once all jobs are started, so the wait-any loop runs while the jobs complete (with
 * no-op work on 2 cores the jobs are all done before the first wait-any, and W5 makes a
 * single call). Reported on stderr only. Two jobs hold the two default-pool workers at the gate meanwhile. */
struct gate {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int open;
};

static int32_t gated_work(bgjob_context *ctx, void *user_data) {
    struct gate *g = user_data;
    (void)ctx;
    pthread_mutex_lock(&g->mu);
    while (!g->open) pthread_cond_wait(&g->cv, &g->mu);
    pthread_mutex_unlock(&g->mu);
    return 0;
}

static double w5_gated_round(uint64_t *ids, uint64_t *done, size_t n, size_t *calls_out) {
    struct gate g = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0};
    double t0 = now_s();
    for (size_t i = 0; i < n; i++) {
        bgjob_spec *spec;
        CHECK(bgjob_spec_new(&spec));
        CHECK(bgjob_spec_set_work(spec, gated_work, &g, NULL));
        CHECK(bgjob_start(spec, &ids[i]));
    }
    pthread_mutex_lock(&g.mu);
    g.open = 1;
    pthread_cond_broadcast(&g.cv);
    pthread_mutex_unlock(&g.mu);
    size_t calls = drain_with_wait_any(ids, done, n);
    double t1 = now_s();
    pthread_mutex_destroy(&g.mu);
    pthread_cond_destroy(&g.cv);
    if (calls_out) *calls_out = calls;
    return t1 - t0;
}

static void bench_w5(void) {
    size_t n = scaled(10000);
    uint64_t *ids = xmalloc(n * sizeof *ids);
    uint64_t *done = xmalloc(n * sizeof *done);
    double t[ROUNDS];
    size_t calls = 0;
    w5_round(ids, done, n, NULL);
    for (int r = 0; r < ROUNDS; r++) {
        t[r] = w5_round(ids, done, n, &calls) / (double)n * 1e6;
        fprintf(stderr, "  W5 round %d: %.3f us/job (%zu wait-any calls)\n", r, t[r], calls);
    }
    result("W5", median(t, ROUNDS), "us/job");
    /* for the record (stderr only): the gated variant */
    for (int r = 0; r < 3; r++) {
        double s = w5_gated_round(ids, done, n, &calls) / (double)n * 1e6;
        fprintf(stderr, "  W5-gated round %d: %.3f us/job (%zu wait-any calls)\n", r, s, calls);
    }
    free(ids);
    free(done);
}

/* ----- W6: repository ----------------------------------------------------------------- */

static uint64_t rng_state = 0x9E3779B97F4A7C15ull;
static uint64_t rng_next(void) { /* xorshift64* */
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return rng_state * 2685821657736338717ull;
}

/* Starts jobs [from, to) named w6-<i>, in batches, each batch waited for (not removed). */
static void w6_fill(uint64_t *ids, size_t from, size_t to) {
    const size_t batch = 10000;
    char name[32];
    for (size_t b = from; b < to; b += batch) {
        size_t e = b + batch < to ? b + batch : to;
        for (size_t i = b; i < e; i++) {
            snprintf(name, sizeof name, "w6-%zu", i);
            ids[i] = start_noop(name);
        }
        wait_all(ids + b, e - b);
    }
}

/* Microseconds per bgjob_get_state on `gets` random ids among ids[0..kept). */
static double w6_get(const uint64_t *ids, size_t kept, uint64_t *picks, size_t gets) {
    for (size_t i = 0; i < gets; i++) picks[i] = ids[rng_next() % kept];
    double t0 = now_s();
    for (size_t i = 0; i < gets; i++) {
        bgjob_job_state s;
        CHECK(bgjob_get_state(picks[i], &s));
        if (s != BGJOB_STATE_COMPLETED) fail("W6: job not Completed");
    }
    double t1 = now_s();
    /* the snapshot call too, for the record (stderr) */
    size_t ninfo = gets / 10 ? gets / 10 : 1;
    double t2 = now_s();
    for (size_t i = 0; i < ninfo; i++) {
        bgjob_job_info *info;
        CHECK(bgjob_get_job(picks[i], &info));
        if (bgjob_job_info_id(info) != picks[i]) fail("W6: wrong job info");
        bgjob_job_info_free(info);
    }
    double t3 = now_s();
    fprintf(stderr, "  W6 get with %zu kept: bgjob_get_state %.4f us, bgjob_get_job+free %.4f us\n",
            kept, (t1 - t0) / (double)gets * 1e6, (t3 - t2) / (double)ninfo * 1e6);
    return (t1 - t0) / (double)gets * 1e6;
}

static double w6_list(const bgjob_filter *f, size_t reps, size_t *count_out) {
    double t0 = now_s();
    size_t c = 0;
    for (size_t r = 0; r < reps; r++) {
        bgjob_job_list *list;
        CHECK(bgjob_get_jobs(f, &list));
        c = bgjob_job_list_count(list);
        bgjob_job_list_free(list);
    }
    *count_out = c;
    return (now_s() - t0) / (double)reps;
}

static void bench_w6(void) {
    size_t n = scaled(1000000);
    size_t small = n < 1000 ? n : 1000;
    size_t gets = 1000000;
    uint64_t *ids = xmalloc(n * sizeof *ids);
    uint64_t *picks = xmalloc(gets * sizeof *picks);
    /* touch the arrays so their pages do not count as kept-job memory */
    memset(ids, 0, n * sizeof *ids);
    memset(picks, 0, gets * sizeof *picks);

    long rss0 = rss_bytes();
    double t0 = now_s();
    w6_fill(ids, 0, small);
    double t1 = now_s();
    double get_small = w6_get(ids, small, picks, gets);
    double t2 = now_s();
    w6_fill(ids, small, n);
    double t3 = now_s();
    long rss1 = rss_bytes();
    double fill_s = (t1 - t0) + (t3 - t2);
    fprintf(stderr, "  W6 created %zu finished jobs in %.2f s (%.3f us/job); RSS %+.1f MiB\n", n,
            fill_s, fill_s / (double)n * 1e6, (double)(rss1 - rss0) / 1048576.0);
    double get_big = w6_get(ids, n, picks, gets);
    fprintf(stderr, "  W6 (same 1,000 ids as before, now with %zu kept:)\n", n);
    w6_get(ids, small, picks, gets);

    result("W6-get-1k", get_small, "us/get");
    result("W6-get-1M", get_big, "us/get");

    /* list by state: every kept job is Completed */
    bgjob_filter *f;
    size_t count;
    CHECK(bgjob_filter_new(&f));
    CHECK(bgjob_filter_set_state(f, BGJOB_STATE_COMPLETED));
    double ls = w6_list(f, 5, &count);
    bgjob_filter_free(f);
    if (count < n) fail("W6: list by state missed jobs");
    fprintf(stderr, "  W6 list by state: %zu jobs, %.2f ms/listing, %.4f us/job listed\n", count,
            ls * 1e3, ls / (double)count * 1e6);
    result("W6-list-state", ls * 1e3, "ms/listing");
    result("W6-list-state-per-job", ls / (double)count * 1e6, "us/job");

    /* list by name: w6-12* matches 12, 120..129, 1200..1299, ..., 120000..129999: 11,111
     * of 1,000,000 names (1.1%) */
    CHECK(bgjob_filter_new(&f));
    const char *pattern = "w6-12*";
    CHECK(bgjob_filter_set_name(f, pattern));
    double ln = w6_list(f, 5, &count);
    bgjob_filter_free(f);
    if (count == 0) fail("W6: list by name found nothing");
    fprintf(stderr, "  W6 list by name '%s': %zu jobs (%.2f%%), %.2f ms/listing\n", pattern,
            count, 100.0 * (double)count / (double)n, ln * 1e3);
    result("W6-list-name", ln * 1e3, "ms/listing");

    double per_job = (double)(rss1 - rss0) / (double)n;
    result("W6-bytes", per_job, "bytes/job");

    double t4 = now_s();
    for (size_t i = 0; i < n; i++) CHECK(bgjob_remove(ids[i], false));
    fprintf(stderr, "  W6 removed %zu jobs in %.2f s; RSS now %+.1f MiB from before W6\n", n,
            now_s() - t4, (double)(rss_bytes() - rss0) / 1048576.0);
    malloc_trim(0);
    fprintf(stderr, "  W6 after malloc_trim(0): RSS %+.1f MiB from before W6\n",
            (double)(rss_bytes() - rss0) / 1048576.0);
    free(ids);
    free(picks);
}

/* ----- main --------------------------------------------------------------------------- */

int main(int argc, char **argv) {
    if (argc > 1) {
        char *end;
        g_scale = strtod(argv[1], &end);
        if (*end || !(g_scale > 0)) {
            fprintf(stderr, "usage: %s [scale > 0] [workloads, e.g. W1,W4]\n", argv[0]);
            return 2;
        }
    }
    fprintf(stderr, "bench_bgjob: bgjob %s, scale %g\n", bgjob_version(), g_scale);
    struct {
        const char *name;
        void (*fn)(void);
    } benches[] = {{"W1", bench_w1}, {"W2", bench_w2}, {"W3", bench_w3},
                   {"W4", bench_w4}, {"W5", bench_w5}, {"W6", bench_w6}};
    double start = now_s();
    for (size_t i = 0; i < sizeof benches / sizeof *benches; i++) {
        if (argc > 2 && !strstr(argv[2], benches[i].name)) continue;
        double t = now_s();
        fprintf(stderr, "%s ...\n", benches[i].name);
        benches[i].fn();
        fprintf(stderr, "%s took %.1f s\n", benches[i].name, now_s() - t);
    }
    CHECK(bgjob_shutdown(10000));
    fprintf(stderr, "bench_bgjob: total %.1f s\n", now_s() - start);
    return 0;
}
