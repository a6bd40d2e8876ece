/* The acceptance stress test, through the C ABI with pthreads.
 *
 * Case 1 (test_many_jobs_many_threads): several host threads concurrently start, stop,
 * wait (all / any, with timeouts), receive (consuming, KEEP, WAIT, AUTO_REMOVE) and remove
 * tens of thousands of jobs, on a private pool and on the default pool. Every job's work
 * writes a known sequence of records ("<tag>:<index>", the stream chosen by the index);
 * some jobs fail, some are stopped while queued or while running (cooperative work).
 * Afterwards: no record lost or duplicated, every state-change callback fired exactly
 * once per change in a legal order, every finalizer ran exactly once, repository empty.
 *
 * Case 2 (test_concurrent_stop_remove_same_jobs): many threads stop, wait for, receive
 * from and force-remove the *same* jobs at once: exactly one remove succeeds per job, the
 * others get BGJOB_E_NO_SUCH_JOB, no record is handed out twice, nothing crashes.
 *
 * BGJOB_SANITIZE (set by `make sanitize`, which runs this under valgrind) scales it down.
 * Sleeps only make work take time; every synchronisation is a bgjob wait, receive or stop. */
#include "check.h"
#include "util.h"

#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#define N_THREADS 6
#define MAX_EV 8
#define COOP_STEPS 20000u /* 1 ms each: a cooperative job runs ~20 s unless stopped */
#define MAX_BATCH 64
/* Waits and stops that should end at once get this bound, so a hang is reported as a
 * failure (BGJOB_E_TIMEOUT) instead of stalling the run. */
#define BOUND_MS 120000

enum { KIND_OUTPUT, KIND_FAIL_CTX, KIND_FAIL_RC, KIND_COOP };
enum { PLAN_NONE, PLAN_STOP_NOW, PLAN_STOP_NOWAIT, PLAN_STOP_RUNNING };
enum { REMOVE_PLAIN, REMOVE_FORCE, REMOVE_AUTO };

typedef struct track {
    uint32_t tag;
    uint8_t kind, plan, on_private, remove_mode, slow;
    uint32_t nrec;
    uint64_t id; /* written by the starting thread after bgjob_start */
    /* Case 1: only the owning host thread touches these. */
    uint32_t received;
    uint64_t last_seq;
    /* Case 2: records handed out, one bit per index (nrec <= 64 there), and removes. */
    _Atomic uint64_t got_bits;
    atomic_int remove_ok;
    /* Touched by workers and dispatchers. */
    atomic_int work_runs, work_finals, cb_finals, in_cb, nevents, write_errors;
    atomic_uint ev_prev[MAX_EV], ev_new[MAX_EV];
    _Atomic uint64_t cb_job_id, work_job_id;
    atomic_int finals_at_finish; /* work_finals seen by the finished callback, +1 */
    atomic_int bad_reason;
} track_t;

/* ----- thread-safe failure reporting (check.h's counters are not atomic) ---------- */

static atomic_int t_failures;

static void tfail(int line, const char *fmt, ...) {
    int n = atomic_fetch_add(&t_failures, 1);
    if (n < 40) {
        va_list ap;
        va_start(ap, fmt);
        fprintf(stderr, "  FAIL %s (test_stress.c:%d): ", check_current, line);
        vfprintf(stderr, fmt, ap);
        fprintf(stderr, "\n");
        va_end(ap);
    } else if (n == 40) {
        fprintf(stderr, "  (further failures not shown)\n");
    }
}

#define TCHECK(cond)                                                                   \
    do {                                                                               \
        if (!(cond)) tfail(__LINE__, "%s", #cond);                                     \
    } while (0)
#define TCHECKF(cond, ...)                                                             \
    do {                                                                               \
        if (!(cond)) tfail(__LINE__, __VA_ARGS__);                                     \
    } while (0)
/* The status must be one of the listed ones. */
#define TSTATUS(expr, ...)                                                             \
    do {                                                                               \
        bgjob_status st_ = (expr);                                                     \
        const bgjob_status ok_[] = {__VA_ARGS__};                                      \
        bool found_ = false;                                                           \
        for (size_t k_ = 0; k_ < sizeof ok_ / sizeof ok_[0]; k_++)                     \
            found_ |= st_ == ok_[k_];                                                  \
        if (!found_)                                                                   \
            tfail(__LINE__, "%s -> %s (%s)", #expr, bgjob_status_name(st_),            \
                  bgjob_last_error_message());                                         \
    } while (0)

/* ----- small helpers ---------------------------------------------------------------- */

static uint64_t rng_next(uint64_t *s) {
    uint64_t x = *s;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return *s = x;
}

static unsigned rnd(uint64_t *s, unsigned n) { return (unsigned)(rng_next(s) % n); }

static bgjob_stream stream_of(uint32_t index) {
    static const bgjob_stream streams[3] = {BGJOB_STREAM_OUTPUT, BGJOB_STREAM_ERROR,
                                            BGJOB_STREAM_WARNING};
    return streams[index % 3];
}

static int fmt_record(char *buf, size_t size, uint32_t tag, uint32_t index) {
    return snprintf(buf, size, "%" PRIu32 ":%" PRIu32, tag, index);
}

static int fmt_reason(char *buf, size_t size, uint32_t tag) {
    return snprintf(buf, size, "stress failure of %" PRIu32, tag);
}

static bool finished(unsigned s) {
    return s == BGJOB_STATE_COMPLETED || s == BGJOB_STATE_FAILED || s == BGJOB_STATE_STOPPED;
}

/* ----- work, callbacks and finalizers ------------------------------------------------- */

static int32_t stress_work(bgjob_context *ctx, void *user_data) {
    track_t *t = user_data;
    atomic_fetch_add(&t->work_runs, 1);
    atomic_store(&t->work_job_id, bgjob_context_job_id(ctx));
    char buf[48];
    /* A cooperative job writes its `nrec` records, then goes on until it is stopped. */
    uint32_t steps = t->kind == KIND_COOP ? COOP_STEPS : t->nrec;
    for (uint32_t i = 0; i < steps; i++) {
        if (bgjob_context_stop_requested(ctx)) return 0; /* cooperative: ends Stopped */
        if (i < t->nrec) {
            int len = fmt_record(buf, sizeof buf, t->tag, i);
            if (bgjob_context_write(ctx, stream_of(i), buf, (size_t)len) != BGJOB_OK)
                atomic_fetch_add(&t->write_errors, 1);
        }
        if (t->kind == KIND_COOP || (t->slow && i % 4 == 3)) sleep_ms(1);
    }
    if (t->kind == KIND_FAIL_CTX) {
        fmt_reason(buf, sizeof buf, t->tag);
        if (bgjob_context_fail(ctx, buf) != BGJOB_OK) atomic_fetch_add(&t->write_errors, 1);
        return 0;
    }
    if (t->kind == KIND_FAIL_RC) return 7;
    return 0;
}

static void work_finalizer(void *user_data) {
    atomic_fetch_add(&((track_t *)user_data)->work_finals, 1);
}

static void callback_finalizer(void *user_data) {
    atomic_fetch_add(&((track_t *)user_data)->cb_finals, 1);
}

static void on_state(const bgjob_state_event *e, void *user_data) {
    track_t *t = user_data;
    if (atomic_fetch_add(&t->in_cb, 1) != 0)
        tfail(__LINE__, "callbacks of job %" PRIu64 " ran concurrently", e->job_id);
    uint64_t expect = 0;
    if (!atomic_compare_exchange_strong(&t->cb_job_id, &expect, e->job_id) &&
        expect != e->job_id)
        tfail(__LINE__, "one callback saw jobs %" PRIu64 " and %" PRIu64, expect, e->job_id);
    int k = atomic_fetch_add(&t->nevents, 1);
    if (k < MAX_EV) {
        atomic_store(&t->ev_prev[k], e->previous_state_info.state);
        atomic_store(&t->ev_new[k], e->state_info.state);
    }
    unsigned s = e->state_info.state;
    if (finished(s)) atomic_store(&t->finals_at_finish, 1 + atomic_load(&t->work_finals));
    if (e->previous_state_info.reason != NULL) atomic_store(&t->bad_reason, 1);
    if (s == BGJOB_STATE_FAILED) {
        char want[48];
        fmt_reason(want, sizeof want, t->tag);
        const char *r = e->state_info.reason;
        bool ok = r != NULL && ((t->kind == KIND_FAIL_CTX && strcmp(r, want) == 0) ||
                                (t->kind == KIND_FAIL_RC && strstr(r, "returned 7") != NULL));
        if (!ok) {
            atomic_store(&t->bad_reason, 1);
            tfail(__LINE__, "job %" PRIu64 " (kind %d) Failed with reason \"%s\"", e->job_id,
                  t->kind, r ? r : "(null)");
        }
    } else if (e->state_info.reason != NULL) {
        atomic_store(&t->bad_reason, 1);
    }
    atomic_fetch_sub(&t->in_cb, 1);
}

/* The repository-wide callback counts events per job id. */
static atomic_int *any_counts;
static atomic_uint (*any_events)[MAX_EV]; /* new state of each event, per job id */
static size_t any_cap;
static atomic_int any_overflow, any_finals;

static void on_any(const bgjob_state_event *e, void *user_data) {
    (void)user_data;
    if (e->job_id < any_cap) {
        int k = atomic_fetch_add(&any_counts[e->job_id], 1);
        if (k < MAX_EV) atomic_store(&any_events[e->job_id][k], e->state_info.state);
    }
    else
        atomic_fetch_add(&any_overflow, 1);
}

static void any_finalizer(void *user_data) {
    (void)user_data;
    atomic_fetch_add(&any_finals, 1);
}

static bgjob_status start_tracked(track_t *t, bgjob_pool *pool) {
    bgjob_spec *spec = NULL;
    bgjob_status st = bgjob_spec_new(&spec);
    if (st != BGJOB_OK) return st;
    char name[48];
    snprintf(name, sizeof name, "stress-%" PRIu32, t->tag);
    TSTATUS(bgjob_spec_set_name(spec, name), BGJOB_OK);
    TSTATUS(bgjob_spec_set_command(spec, "stress_work"), BGJOB_OK);
    TSTATUS(bgjob_spec_set_work(spec, stress_work, t, work_finalizer), BGJOB_OK);
    TSTATUS(bgjob_spec_on_state_changed(spec, on_state, t, callback_finalizer), BGJOB_OK);
    if (pool) TSTATUS(bgjob_spec_set_pool(spec, pool), BGJOB_OK);
    uint64_t id = 0;
    st = bgjob_start(spec, &id);
    t->id = id;
    return st;
}

static unsigned last_state(track_t *t) {
    int n = atomic_load(&t->nevents);
    if (n <= 0 || n > MAX_EV) return 999;
    return atomic_load(&t->ev_new[n - 1]);
}

/* "NotStarted>Running>Completed": the job's callback history, then the repository-wide
 * callback's, for failure messages. */
static const char *describe(track_t *t, char *buf, size_t size) {
    size_t off = 0;
    int n = atomic_load(&t->nevents);
    off += (size_t)snprintf(buf + off, size - off, "job callbacks: NotStarted");
    for (int i = 0; i < n && i < MAX_EV && off < size; i++)
        off += (size_t)snprintf(buf + off, size - off, ">%s",
                                bgjob_state_name(atomic_load(&t->ev_new[i])));
    if (t->id < any_cap && off < size) {
        int m = atomic_load(&any_counts[t->id]);
        off += (size_t)snprintf(buf + off, size - off, "; repository-wide: NotStarted");
        for (int i = 0; i < m && i < MAX_EV && off < size; i++)
            off += (size_t)snprintf(buf + off, size - off, ">%s",
                                    bgjob_state_name(atomic_load(&any_events[t->id][i])));
    }
    return buf;
}

/* Checks the event history, finalizers and the any-callback count of a removed job. */
static void check_history(track_t *t) {
    char hist[256];
    if (t->id < any_cap) {
        /* The repository-wide history must be legal too (it sees what the job's own
         * callbacks may have missed). */
        int m = atomic_load(&any_counts[t->id]);
        unsigned prev = BGJOB_STATE_NOT_STARTED;
        for (int i = 0; i < m && i < MAX_EV; i++) {
            unsigned s = atomic_load(&any_events[t->id][i]);
            TCHECKF(legal_move(prev, s), "job %" PRIu64 ": illegal move %s -> %s (%s)", t->id,
                    bgjob_state_name(prev), bgjob_state_name(s), describe(t, hist, sizeof hist));
            prev = s;
        }
    }
    int n = atomic_load(&t->nevents);
    TCHECKF(n >= 1 && n <= MAX_EV, "job %" PRIu64 ": %d state-change events (%s)", t->id, n,
            describe(t, hist, sizeof hist));
    if (n < 1 || n > MAX_EV) return;
    unsigned prev = BGJOB_STATE_NOT_STARTED;
    for (int i = 0; i < n; i++) {
        unsigned p = atomic_load(&t->ev_prev[i]), s = atomic_load(&t->ev_new[i]);
        TCHECKF(p == prev,
                "job %" PRIu64 " event %d: previous %s, but the event before moved to %s",
                t->id, i, bgjob_state_name(p), bgjob_state_name(prev));
        TCHECKF(legal_move(p, s), "job %" PRIu64 " event %d: illegal move %s -> %s (%s)", t->id,
                i, bgjob_state_name(p), bgjob_state_name(s), describe(t, hist, sizeof hist));
        prev = s;
    }
    TCHECKF(finished(prev), "job %" PRIu64 " last event moved to %s (%s)", t->id,
            bgjob_state_name(prev), describe(t, hist, sizeof hist));
    TCHECKF(atomic_load(&t->cb_job_id) == t->id, "job %" PRIu64 ": callback saw id %" PRIu64,
            t->id, (uint64_t)atomic_load(&t->cb_job_id));
    TCHECKF(t->id < any_cap && atomic_load(&any_counts[t->id]) == n,
            "job %" PRIu64 ": %d job callbacks but %d repository-wide ones (%s)", t->id, n,
            t->id < any_cap ? atomic_load(&any_counts[t->id]) : -1,
            describe(t, hist, sizeof hist));
    TCHECKF(atomic_load(&t->work_finals) == 1, "job %" PRIu64 ": work finalizer ran %d times",
            t->id, atomic_load(&t->work_finals));
    TCHECKF(atomic_load(&t->cb_finals) == 1,
            "job %" PRIu64 ": callback finalizer ran %d times", t->id,
            atomic_load(&t->cb_finals));
    /* (Only if the finished change reached the job's callback; if not, that is reported.) */
    TCHECKF(!finished(prev) || atomic_load(&t->finals_at_finish) == 2,
            "job %" PRIu64 ": the work finalizer had run %d times at the finished callback",
            t->id, atomic_load(&t->finals_at_finish) - 1);
    int runs = atomic_load(&t->work_runs);
    TCHECKF(runs <= 1, "job %" PRIu64 ": work ran %d times", t->id, runs);
    if (runs == 1)
        TCHECKF(atomic_load(&t->work_job_id) == t->id,
                "job %" PRIu64 ": context said job id %" PRIu64, t->id,
                (uint64_t)atomic_load(&t->work_job_id));
    if (runs == 0) TCHECKF(prev == BGJOB_STATE_STOPPED, "job %" PRIu64 " never ran but is %s",
                           t->id, bgjob_state_name(prev));
    TCHECKF(atomic_load(&t->write_errors) == 0, "job %" PRIu64 ": %d context calls failed",
            t->id, atomic_load(&t->write_errors));
    TCHECKF(atomic_load(&t->bad_reason) == 0, "job %" PRIu64 ": unexpected reason", t->id);
}

/* Case 1: checks a batch of records against the job's sequence; a consuming receive
 * advances it. Every record must be the next one expected: gapless, no duplicates. */
static void take_records(track_t *t, bgjob_records *recs, bool keep, size_t max) {
    size_t n = bgjob_records_count(recs);
    if (max) TCHECKF(n <= max, "job %" PRIu64 ": %zu records, max %zu", t->id, n, max);
    uint32_t next = t->received;
    uint64_t seq = t->last_seq;
    char want[48];
    for (size_t i = 0; i < n; i++) {
        const bgjob_record *r = bgjob_records_get(recs, i);
        if (r == NULL) {
            tfail(__LINE__, "record %zu of %zu is NULL", i, n);
            break;
        }
        int len = fmt_record(want, sizeof want, t->tag, next);
        bool ok = r->job_id == t->id && r->len == (size_t)len && r->data != NULL &&
                  memcmp(r->data, want, (size_t)len) == 0 && r->data[len] == 0 &&
                  r->stream == stream_of(next) && r->sequence > seq && next < t->nrec;
        if (!ok) {
            tfail(__LINE__,
                  "job %" PRIu64 " (tag %" PRIu32 "): record %zu of a %s batch is \"%.*s\" "
                  "(job %" PRIu64 ", stream %u, seq %" PRIu64 "), want \"%s\" after seq %" PRIu64,
                  t->id, t->tag, i, keep ? "kept" : "taken", r->data ? (int)r->len : 6,
                  r->data ? (const char *)r->data : "(null)", r->job_id, r->stream,
                  r->sequence, want, seq);
            break;
        }
        next++;
        seq = r->sequence;
    }
    if (!keep) {
        t->received = next;
        t->last_seq = seq;
    }
    bgjob_records_free(recs);
}

static void receive_into(track_t *t, uint32_t flags, size_t max, int64_t timeout_ms) {
    bgjob_records *recs = NULL;
    bgjob_status st = bgjob_receive(t->id, flags, max, timeout_ms, &recs);
    TCHECKF(st == BGJOB_OK, "receive(%" PRIu64 ", flags %u) -> %s: %s", t->id, flags,
            bgjob_status_name(st), bgjob_last_error_message());
    if (st == BGJOB_OK) take_records(t, recs, (flags & BGJOB_RECEIVE_KEEP) != 0, max);
}

/* `done` (count `nd`) must be a subsequence of `ids` in the given order, and each done
 * job's finished callback must have returned already. */
static void check_done(const uint64_t *ids, track_t **ts, size_t n, const uint64_t *done,
                       size_t nd) {
    size_t j = 0;
    for (size_t i = 0; i < nd; i++) {
        while (j < n && ids[j] != done[i]) j++;
        if (j == n) {
            tfail(__LINE__, "wait reported id %" PRIu64 " out of order or unknown", done[i]);
            return;
        }
        TCHECKF(finished(last_state(ts[j])),
                "wait said job %" PRIu64 " is done before its finished callback ran (last "
                "event: %s)",
                ids[j], bgjob_state_name(last_state(ts[j])));
        j++;
    }
}

/* ----- case 1 ---------------------------------------------------------------------------- */

typedef struct {
    track_t *tracks;
    size_t count, batch;
    bgjob_pool *pool;
    uint64_t rng;
} owner_t;

static void plan_job(track_t *t, uint64_t *rng) {
    unsigned r = rnd(rng, 100);
    t->kind = r < 6 ? KIND_COOP : r < 13 ? KIND_FAIL_CTX : r < 18 ? KIND_FAIL_RC : KIND_OUTPUT;
    t->nrec = t->kind == KIND_COOP ? COOP_STEPS : rnd(rng, 13);
    t->slow = rnd(rng, 100) < 20; /* a pause every 4 records: readers meet writers */
    unsigned p = rnd(rng, 100);
    if (t->kind == KIND_COOP)
        t->plan = p < 75 ? PLAN_STOP_RUNNING : PLAN_STOP_NOW;
    else
        t->plan = p < 8 ? PLAN_STOP_NOW : p < 13 ? PLAN_STOP_NOWAIT : PLAN_NONE;
    t->on_private = rnd(rng, 100) < 40;
    unsigned m = rnd(rng, 100);
    t->remove_mode = m < 70 ? REMOVE_PLAIN : m < 85 ? REMOVE_FORCE : REMOVE_AUTO;
}

static void run_batch(owner_t *o, track_t *ts, size_t n) {
    uint64_t ids[MAX_BATCH], done[MAX_BATCH];
    track_t *tp[MAX_BATCH];
    size_t nd = 0;
    for (size_t i = 0; i < n; i++) {
        tp[i] = &ts[i];
        plan_job(&ts[i], &o->rng);
        bgjob_status st = start_tracked(&ts[i], ts[i].on_private ? o->pool : NULL);
        TCHECKF(st == BGJOB_OK && ts[i].id != 0, "start -> %s: %s", bgjob_status_name(st),
                bgjob_last_error_message());
        ids[i] = ts[i].id;
    }
    /* Stops: at once (most likely while queued), without waiting, and of running work. */
    for (size_t i = 0; i < n; i++) {
        track_t *t = &ts[i];
        bgjob_job_state s = 99;
        if (t->plan == PLAN_STOP_NOW) {
            TSTATUS(bgjob_stop(t->id, BOUND_MS), BGJOB_OK);
            TSTATUS(bgjob_get_state(t->id, &s), BGJOB_OK);
            TCHECKF(finished(s), "job %" PRIu64 " is %s after stop returned", t->id,
                    bgjob_state_name(s));
            TCHECKF(finished(last_state(t)),
                    "job %" PRIu64 ": stop returned before the finished callback ran", t->id);
        } else if (t->plan == PLAN_STOP_NOWAIT) {
            TSTATUS(bgjob_stop(t->id, 0), BGJOB_OK, BGJOB_E_TIMEOUT);
        }
    }
    /* Cooperative jobs are stopped once they run: one record proves it. Each owner cycles
     * through its jobs with short receive waits rather than blocking on one, since its
     * queued job may wait for workers that other owners' running jobs hold. */
    size_t pending = 0;
    for (size_t i = 0; i < n; i++) pending += ts[i].plan == PLAN_STOP_RUNNING;
    double give_up = now_ms() + BOUND_MS;
    while (pending > 0 && now_ms() < give_up) {
        for (size_t i = 0; i < n; i++) {
            track_t *t = &ts[i];
            if (t->plan != PLAN_STOP_RUNNING || t->received > 0) continue;
            receive_into(t, BGJOB_RECEIVE_WAIT, 1, 5);
            if (t->received == 0) continue;
            pending--;
            TSTATUS(bgjob_stop(t->id, BOUND_MS), BGJOB_OK);
            bgjob_job_state s = 99;
            TSTATUS(bgjob_get_state(t->id, &s), BGJOB_OK);
            TCHECKF(s == BGJOB_STATE_STOPPED,
                    "running cooperative job %" PRIu64 " is %s after stop", t->id,
                    bgjob_state_name(s));
        }
    }
    TCHECKF(pending == 0, "%zu cooperative job(s) wrote nothing within %d ms", pending,
            BOUND_MS);
    for (size_t i = 0; i < n && pending > 0; i++)
        if (ts[i].plan == PLAN_STOP_RUNNING && ts[i].received == 0)
            TSTATUS(bgjob_stop(ts[i].id, BOUND_MS), BGJOB_OK);
    /* Waits with short timeouts: any of them, then all of them. */
    bgjob_status st = bgjob_wait(ids, n, BGJOB_WAIT_ANY, 1, done, &nd);
    TSTATUS(st, BGJOB_OK, BGJOB_E_TIMEOUT);
    TCHECKF(st == BGJOB_OK ? nd >= 1 : nd == 0, "wait any -> %s with %zu done",
            bgjob_status_name(st), nd);
    check_done(ids, tp, n, done, nd);
    /* Partial receives while the batch runs. */
    for (size_t i = 0; i < n; i++) {
        track_t *t = &ts[i];
        switch (rnd(&o->rng, 6)) {
        case 0:
            receive_into(t, BGJOB_RECEIVE_KEEP, rnd(&o->rng, 4), 0);
            break;
        case 1:
            receive_into(t, BGJOB_RECEIVE_WAIT, 1 + rnd(&o->rng, 4), 20);
            break;
        case 2:
            receive_into(t, 0, rnd(&o->rng, 3), 0);
            break;
        case 3:
            receive_into(t, BGJOB_RECEIVE_WAIT | BGJOB_RECEIVE_KEEP, 2, 5);
            break;
        default:
            break;
        }
    }
    nd = 0;
    st = bgjob_wait(ids, n, BGJOB_WAIT_ALL, 2, done, &nd);
    TSTATUS(st, BGJOB_OK, BGJOB_E_TIMEOUT);
    TCHECKF(st == BGJOB_OK ? nd == n : nd < n, "wait all (2 ms) -> %s with %zu of %zu done",
            bgjob_status_name(st), nd, n);
    check_done(ids, tp, n, done, nd);
    nd = 0;
    TSTATUS(st = bgjob_wait(ids, n, BGJOB_WAIT_ALL, BOUND_MS, done, &nd), BGJOB_OK);
    TCHECKF(nd == n, "wait all (bounded) -> %zu of %zu done", nd, n);
    check_done(ids, tp, n, done, nd);
    /* Everything is finished: take the rest, check it, remove. */
    for (size_t i = 0; i < n; i++) {
        track_t *t = &ts[i];
        bgjob_job_state s = 99;
        TSTATUS(bgjob_get_state(t->id, &s), BGJOB_OK);
        TCHECKF(finished(s) && s == last_state(t),
                "job %" PRIu64 " is %s after the wait; last callback said %s", t->id,
                bgjob_state_name(s), bgjob_state_name(last_state(t)));
        if (rnd(&o->rng, 4) == 0) receive_into(t, BGJOB_RECEIVE_KEEP, 0, 0);
        if (t->remove_mode == REMOVE_AUTO) {
            receive_into(t, BGJOB_RECEIVE_WAIT | BGJOB_RECEIVE_AUTO_REMOVE, 0, BOUND_MS);
            TSTATUS(bgjob_get_state(t->id, &s), BGJOB_E_NO_SUCH_JOB);
            TSTATUS(bgjob_remove(t->id, false), BGJOB_E_NO_SUCH_JOB);
        } else {
            receive_into(t, 0, 0, 0);
            bgjob_records *recs = NULL;
            TSTATUS(bgjob_receive(t->id, 0, 0, 0, &recs), BGJOB_OK);
            TCHECKF(bgjob_records_count(recs) == 0,
                    "job %" PRIu64 ": %zu records after everything was taken", t->id,
                    bgjob_records_count(recs));
            bgjob_records_free(recs);
            TSTATUS(bgjob_remove(t->id, t->remove_mode == REMOVE_FORCE), BGJOB_OK);
            TSTATUS(bgjob_get_state(t->id, &s), BGJOB_E_NO_SUCH_JOB);
        }
        /* What was received, by how the job ended. */
        unsigned fin = last_state(t);
        if (fin == BGJOB_STATE_COMPLETED) {
            TCHECKF(t->kind == KIND_OUTPUT || t->kind == KIND_COOP,
                    "job %" PRIu64 " of kind %d Completed", t->id, t->kind);
            TCHECKF(t->received == t->nrec,
                    "Completed job %" PRIu64 ": received %" PRIu32 " of %" PRIu32 " records",
                    t->id, t->received, t->nrec);
        } else if (fin == BGJOB_STATE_FAILED) {
            TCHECKF(t->kind == KIND_FAIL_CTX || t->kind == KIND_FAIL_RC,
                    "job %" PRIu64 " of kind %d Failed", t->id, t->kind);
            TCHECKF(t->received == t->nrec,
                    "Failed job %" PRIu64 ": received %" PRIu32 " of %" PRIu32 " records",
                    t->id, t->received, t->nrec);
        } else if (fin == BGJOB_STATE_STOPPED) {
            TCHECKF(t->plan != PLAN_NONE, "job %" PRIu64 " was never stopped but is Stopped",
                    t->id);
            TCHECKF(t->received <= t->nrec, "Stopped job %" PRIu64 ": %" PRIu32 " records",
                    t->id, t->received);
        }
    }
}

static void *owner_main(void *arg) {
    owner_t *o = arg;
    for (size_t done = 0; done < o->count; done += o->batch) {
        size_t n = o->count - done < o->batch ? o->count - done : o->batch;
        run_batch(o, o->tracks + done, n);
    }
    return NULL;
}

/* Lists and snapshots jobs while the owners work: Get-Job racing everything else. */
static atomic_bool watcher_stop;

static void *watcher_main(void *arg) {
    (void)arg;
    unsigned rounds = 0;
    while (!atomic_load(&watcher_stop)) {
        bgjob_filter *f = NULL;
        TSTATUS(bgjob_filter_new(&f), BGJOB_OK);
        TSTATUS(bgjob_filter_set_name(f, "STRESS-*"), BGJOB_OK);
        TSTATUS(bgjob_filter_set_include_children(f, true), BGJOB_OK);
        if (rounds % 2) TSTATUS(bgjob_filter_set_state(f, BGJOB_STATE_RUNNING), BGJOB_OK);
        bgjob_job_list *list = NULL;
        TSTATUS(bgjob_get_jobs(f, &list), BGJOB_OK);
        size_t n = bgjob_job_list_count(list);
        for (size_t i = 0; i < n && i < 16; i++) {
            bgjob_job_info *info = NULL;
            uint64_t id = bgjob_job_list_get(list, i);
            bgjob_status st = bgjob_get_job(id, &info);
            TSTATUS(st, BGJOB_OK, BGJOB_E_NO_SUCH_JOB);
            if (st == BGJOB_OK) {
                TCHECK(bgjob_job_info_id(info) == id);
                TCHECK(strncmp(bgjob_job_info_name(info), "stress-", 7) == 0);
                TCHECK(bgjob_job_info_state(info) <= BGJOB_STATE_AT_BREAKPOINT);
            }
            bgjob_job_info_free(info);
        }
        bgjob_job_list_free(list);
        bgjob_filter_free(f);
        rounds++;
    }
    return NULL;
}

static bool sanitize;
static uint64_t any_registration;
static size_t total_jobs, race_rounds, race_jobs;

static void test_many_jobs_many_threads(void) {
    int before = atomic_load(&t_failures);
    size_t per = total_jobs / N_THREADS;
    track_t *tracks = calloc(per * N_THREADS, sizeof *tracks);
    CHECK(tracks != NULL);
    if (!tracks) return;
    bgjob_pool *pool = NULL;
    CHECK_OK(bgjob_pool_new(3, 2, &pool));
    owner_t owners[N_THREADS];
    pthread_t th[N_THREADS], watcher;
    double t0 = now_ms();
    atomic_store(&watcher_stop, false);
    CHECK(pthread_create(&watcher, NULL, watcher_main, NULL) == 0);
    for (int i = 0; i < N_THREADS; i++) {
        owners[i] = (owner_t){.tracks = tracks + (size_t)i * per,
                              .count = per,
                              .batch = sanitize ? 25 : 50,
                              .pool = pool,
                              .rng = 0x9E3779B97F4A7C15ull * (uint64_t)(i + 1)};
        for (size_t k = 0; k < per; k++) owners[i].tracks[k].tag = (uint32_t)(i * per + k);
        CHECK(pthread_create(&th[i], NULL, owner_main, &owners[i]) == 0);
    }
    for (int i = 0; i < N_THREADS; i++) pthread_join(th[i], NULL);
    atomic_store(&watcher_stop, true);
    pthread_join(watcher, NULL);
    double elapsed = now_ms() - t0;

    size_t by_state[16] = {0}, ran = 0, records = 0, stopped_running = 0;
    for (size_t k = 0; k < per * N_THREADS; k++) {
        track_t *t = &tracks[k];
        check_history(t);
        unsigned s = last_state(t);
        if (s < 16) by_state[s]++;
        ran += atomic_load(&t->work_runs) == 1;
        records += t->received;
        stopped_running += s == BGJOB_STATE_STOPPED && atomic_load(&t->work_runs) == 1;
    }
    printf("    %zu jobs by %d threads in %.0f ms: %zu Completed, %zu Failed, %zu Stopped "
           "(%zu while running, %zu before); %zu ran; %zu records checked\n",
           per * N_THREADS, N_THREADS, elapsed, by_state[BGJOB_STATE_COMPLETED],
           by_state[BGJOB_STATE_FAILED], by_state[BGJOB_STATE_STOPPED], stopped_running,
           by_state[BGJOB_STATE_STOPPED] - stopped_running, ran, records);
    /* The mix really happened. */
    CHECK(by_state[BGJOB_STATE_COMPLETED] > 0 && by_state[BGJOB_STATE_FAILED] > 0);
    CHECK(stopped_running > 0 && by_state[BGJOB_STATE_STOPPED] > stopped_running);
    CHECK(by_state[BGJOB_STATE_COMPLETED] + by_state[BGJOB_STATE_FAILED] +
              by_state[BGJOB_STATE_STOPPED] ==
          per * N_THREADS);
    CHECK_OK(bgjob_pool_shutdown(pool, 30000));
    bgjob_pool_free(pool);
    free(tracks);
    CHECK(atomic_load(&t_failures) == before);
}

/* ----- case 2 ------------------------------------------------------------------------ */

typedef struct {
    int index;
    track_t *tracks;
    size_t n;
    pthread_barrier_t *barrier;
} racer_t;

static void race_receive(track_t *t) {
    bgjob_records *recs = NULL;
    bgjob_status st = bgjob_receive(t->id, 0, 0, 0, &recs);
    TSTATUS(st, BGJOB_OK, BGJOB_E_NO_SUCH_JOB);
    if (st != BGJOB_OK) return;
    size_t n = bgjob_records_count(recs);
    int64_t last = -1;
    char want[48];
    for (size_t i = 0; i < n; i++) {
        const bgjob_record *r = bgjob_records_get(recs, i);
        const char *colon = r && r->data ? strchr((const char *)r->data, ':') : NULL;
        unsigned long idx = colon ? strtoul(colon + 1, NULL, 10) : 999;
        int len = idx < 64 ? fmt_record(want, sizeof want, t->tag, (uint32_t)idx) : 0;
        bool ok = r && r->job_id == t->id && idx < t->nrec && (int64_t)idx > last &&
                  r->len == (size_t)len && memcmp(r->data, want, (size_t)len) == 0 &&
                  r->stream == stream_of((uint32_t)idx);
        if (!ok) {
            tfail(__LINE__, "job %" PRIu64 ": bad record %zu in a batch of %zu", t->id, i, n);
            break;
        }
        uint64_t bit = UINT64_C(1) << idx;
        uint64_t had = atomic_fetch_or(&t->got_bits, bit);
        TCHECKF(!(had & bit), "job %" PRIu64 ": record %lu handed out twice", t->id, idx);
        last = (int64_t)idx;
    }
    bgjob_records_free(recs);
}

static void race_remove(track_t *t) {
    bgjob_status st = bgjob_remove(t->id, true);
    TSTATUS(st, BGJOB_OK, BGJOB_E_NO_SUCH_JOB);
    if (st == BGJOB_OK) atomic_fetch_add(&t->remove_ok, 1);
    /* Whoever removed it, it is gone now. */
    TSTATUS(bgjob_stop(t->id, BOUND_MS), BGJOB_E_NO_SUCH_JOB);
}

static void *racer_main(void *arg) {
    racer_t *r = arg;
    pthread_barrier_wait(r->barrier);
    for (size_t k = 0; k < r->n; k++) {
        /* Every thread walks the jobs in the same order, each doing a different thing to
         * the same job at about the same time. */
        size_t j = k;
        track_t *t = &r->tracks[j];
        bgjob_job_state s;
        uint64_t done = 0;
        size_t nd = 0;
        switch ((r->index + j) % 4) {
        case 0:
            TSTATUS(bgjob_stop(t->id, BOUND_MS), BGJOB_OK, BGJOB_E_NO_SUCH_JOB);
            race_remove(t);
            break;
        case 1:
            race_receive(t);
            TSTATUS(bgjob_wait(&t->id, 1, BGJOB_WAIT_ALL, 0, &done, &nd), BGJOB_OK,
                    BGJOB_E_TIMEOUT, BGJOB_E_NO_SUCH_JOB);
            race_remove(t);
            break;
        case 2:
            TSTATUS(bgjob_stop(t->id, 0), BGJOB_OK, BGJOB_E_TIMEOUT, BGJOB_E_NO_SUCH_JOB);
            TSTATUS(bgjob_get_state(t->id, &s), BGJOB_OK, BGJOB_E_NO_SUCH_JOB);
            race_receive(t);
            race_remove(t);
            break;
        default:
            race_remove(t);
            TSTATUS(bgjob_get_state(t->id, &s), BGJOB_E_NO_SUCH_JOB);
            break;
        }
    }
    return NULL;
}

static void test_concurrent_stop_remove_same_jobs(void) {
    int before = atomic_load(&t_failures);
    track_t *tracks = calloc(race_rounds * race_jobs, sizeof *tracks);
    CHECK(tracks != NULL);
    if (!tracks) return;
    uint64_t rng = 12345;
    double t0 = now_ms();
    size_t removed = 0;
    for (size_t round = 0; round < race_rounds; round++) {
        track_t *ts = tracks + round * race_jobs;
        bgjob_pool *pool = NULL;
        CHECK_OK(bgjob_pool_new(2, 0, &pool));
        for (size_t j = 0; j < race_jobs; j++) {
            track_t *t = &ts[j];
            t->tag = (uint32_t)(1000000 + round * race_jobs + j);
            unsigned r = rnd(&rng, 3);
            t->kind = r == 0 ? KIND_COOP : KIND_OUTPUT;
            /* At most 64 records (the bitmap); cooperative jobs then run until stopped. */
            t->nrec = r == 0 ? 1 + rnd(&rng, 64) : r == 1 ? 1 + rnd(&rng, 63) : rnd(&rng, 4);
            CHECK_OK(start_tracked(t, j % 2 ? pool : NULL));
        }
        pthread_barrier_t barrier;
        pthread_barrier_init(&barrier, NULL, N_THREADS);
        racer_t racers[N_THREADS];
        pthread_t th[N_THREADS];
        for (int i = 0; i < N_THREADS; i++) {
            racers[i] = (racer_t){.index = i, .tracks = ts, .n = race_jobs, .barrier = &barrier};
            CHECK(pthread_create(&th[i], NULL, racer_main, &racers[i]) == 0);
        }
        for (int i = 0; i < N_THREADS; i++) pthread_join(th[i], NULL);
        pthread_barrier_destroy(&barrier);
        for (size_t j = 0; j < race_jobs; j++) {
            track_t *t = &ts[j];
            bgjob_job_state s;
            TCHECKF(atomic_load(&t->remove_ok) == 1, "job %" PRIu64 " removed %d times", t->id,
                    atomic_load(&t->remove_ok));
            removed += atomic_load(&t->remove_ok) == 1;
            TSTATUS(bgjob_get_state(t->id, &s), BGJOB_E_NO_SUCH_JOB);
        }
        CHECK_OK(bgjob_pool_shutdown(pool, 30000));
        bgjob_pool_free(pool);
    }
    size_t stopped = 0;
    for (size_t k = 0; k < race_rounds * race_jobs; k++) {
        check_history(&tracks[k]);
        stopped += last_state(&tracks[k]) == BGJOB_STATE_STOPPED;
    }
    printf("    %zu rounds of %zu jobs raced by %d threads in %.0f ms: %zu removed once each, "
           "%zu Stopped\n",
           race_rounds, race_jobs, N_THREADS, now_ms() - t0, removed, stopped);
    CHECK(stopped > 0);
    free(tracks);
    CHECK(atomic_load(&t_failures) == before);
}

/* ----- after both: nothing left behind -------------------------------------------------- */

static void test_repository_empty_and_any_callback_finalized(void) {
    bgjob_filter *f = NULL;
    CHECK_OK(bgjob_filter_new(&f));
    CHECK_OK(bgjob_filter_set_include_children(f, true));
    bgjob_job_list *list = NULL;
    CHECK_OK(bgjob_get_jobs(f, &list));
    CHECK(bgjob_job_list_count(list) == 0);
    if (bgjob_job_list_count(list) != 0)
        fprintf(stderr, "    %zu job(s) left, first id %" PRIu64 "\n",
                bgjob_job_list_count(list), bgjob_job_list_get(list, 0));
    bgjob_job_list_free(list);
    bgjob_filter_free(f);
    CHECK(atomic_load(&any_overflow) == 0);
    CHECK_OK(bgjob_unregister(0, any_registration));
    CHECK(atomic_load(&any_finals) == 1);
    CHECK_STATUS(bgjob_unregister(0, any_registration), BGJOB_E_INVALID_ARGUMENT);
}

int main(void) {
    sanitize = getenv("BGJOB_SANITIZE") != NULL;
    total_jobs = sanitize ? 1500 : 30000;
    race_rounds = sanitize ? 4 : 200;
    race_jobs = sanitize ? 12 : 48;
    any_cap = total_jobs + race_rounds * race_jobs + 64;
    any_counts = calloc(any_cap, sizeof *any_counts);
    any_events = calloc(any_cap, sizeof *any_events);
    CHECK_OK(bgjob_on_any_state_changed(on_any, NULL, any_finalizer, &any_registration));
    RUN_TEST(test_many_jobs_many_threads);
    RUN_TEST(test_concurrent_stop_remove_same_jobs);
    RUN_TEST(test_repository_empty_and_any_callback_finalized);
    free(any_counts);
    free(any_events);
    CHECK_OK(bgjob_shutdown(BGJOB_INFINITE));
    return check_summary("test_stress");
}
