/* The soak test (`make soak`; `make soak-smoke` runs it for 5 s): SOAK_THREADS host
 * threads (default 8) mix every operation of the C API for SOAK_SECONDS (default 600),
 * each from its own seeded random stream (SOAK_SEED replays the choices; thread timing
 * still varies), while an invariant checker follows every job from its start to its
 * retirement:
 *
 * - records: every record a job's work writes encodes (job tag, writer, sequence). Each
 *   consuming receive (the owner's, and sometimes a second thread's at the same time)
 *   is checked record by record: the right job and writer, the right stream, sequence
 *   numbers increasing in the batch and for each reader, a writer's records contiguous
 *   in a batch, never a record handed out twice, at most `max`; a KEEP receive takes
 *   nothing. A job received to the end must have handed out exactly the records its work
 *   wrote (a stopped process job: a prefix of them).
 * - callbacks: the job's own callback (registered on the spec), the repository-wide
 *   callback and a global event queue each see one legal chain of changes — each change
 *   once, in order, no gap, nothing after a finished state — ending in the job's final
 *   state; the three chains are the same. Callbacks of one job never overlap; a finished
 *   callback sees every record readable and the work's user data already finalized. A
 *   late registration and a per-job event queue see a gapless, legal tail of it.
 * - finalizers: the work's user data, each callback registration's and a custom job's
 *   stop callback's are finalized exactly once.
 * - statuses: every call returns one of the statuses the documentation gives for the
 *   situation; deliberate misuse (unknown, removed and child ids, bad flags, timeouts and
 *   states, a shut-down pool, illegal custom moves, ...) returns the documented error,
 *   with a message.
 * - snapshots (get_job) and listings (get_jobs): the fields a job must have, consistent
 *   with each other (no begin time while NotStarted, no end time before the end, a prompt
 *   exactly while Blocked; once a library bug found here); the listing by a host's name
 *   pattern is exactly that host's live jobs.
 * - waits: the done ids in the order given, each in a persistent state (finished, if
 *   forced), TIMEOUT only with the condition unmet. (A job resumed while still Suspending
 *   passes through Suspended at its next checkpoint all the same; a wait that is not
 *   forced may report it done then, so that check is relaxed for jobs ever suspended.)
 * - at the end: every job removed, the repository empty, no event for a retired job,
 *   pools freed, the thread count back to the start, and the resident set within 10% +
 *   4 MiB of the one after the warm-up (see rss_slack_kib).
 *
 * A monitor thread drains the global event queue, finishes each retired job's checks,
 * prints progress every 30 s and is the watchdog: a host thread that makes no progress for
 * 60 s (scaled, see SOAK_SLOW) has every thread's current operation printed and the run
 * aborted — a hang is a failure, never a stuck run.
 *
 * SOAK_SLOW scales every bound that "must" hold (default 1; 25 when it finds itself
 * under valgrind): e.g. `SOAK_SECONDS=30 valgrind --error-exitcode=99 --leak-check=full
 * --errors-for-leak-kinds=definite,indirect --suppressions=tests/valgrind.supp
 * build/soak/soak`. The resident-set check is skipped under valgrind (its resident set is
 * valgrind's as much as ours; its leak check is the measure there).
 *
 * Sleeps only make work take time (and pace the monitor); every synchronisation is a
 * bgjob wait, stop or receive, or a bounded poll on a counter. */
#define _GNU_SOURCE
#include "util.h"
#include "soak_check.h"

#include <errno.h>
#include <inttypes.h>
#include <malloc.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* ===== configuration ===================================================================== */

#define MAX_THREADS 64
#define MAXOWN 12  /* jobs a host thread holds at once */
#define MAXW 8     /* writers of a job (children, pipes) */
#define CAP 512    /* records per writer at most */
#define CAPW (CAP / 64)

static long g_seconds = 600;
static int g_threads = 8;
static uint64_t g_seed;
static double g_slow = 1;
static bool g_valgrind;
static int64_t BOUND_MS;     /* what must end, ends within this */
static int64_t WATCHDOG_MS;  /* no progress for this long: a hang */

/* ===== statistics ======================================================================== */

static atomic_llong st_jobs, st_records, st_callbacks, st_qevents, st_ops, st_live;
static atomic_llong st_by_final[5]; /* Completed, Failed, Stopped by index state-2 */
static atomic_llong st_events_to[11]; /* the repository-wide callback's events, by new state */
static atomic_llong st_op_count[32];
static atomic_llong st_helper_records, st_to_end, st_cbcheck, st_late_regs, st_pool_cycles;
static atomic_llong st_kinds[16];

/* ===== one job, as the checker follows it ================================================ */

enum kind {
    K_OUTPUT,     /* writes its records, completes */
    K_FAIL_RC,    /* writes, returns 3: Failed "the work returned 3" */
    K_FAIL_CTX,   /* writes, bgjob_context_fail: Failed with its reason */
    K_COOP,       /* writes slowly, checking stop and checkpoint between records */
    K_UNTIL_STOP, /* writes, then runs until stopped (checkpoints: suspendable) */
    K_INPUT,      /* asks its host for input (Blocked) a few times */
    K_NESTED,     /* starts a job on its own pool and waits for it from its work */
    K_PARALLEL,   /* a parallel job: one child per input, some may fail */
    K_PROCESS,    /* a process job (/bin/sh, /bin/echo, /bin/cat, sleep, a missing one) */
    K_CUSTOM,     /* a custom job the host drives (maybe with children) */
    K__N
};
static const char *const kind_names[K__N] = {"output", "fail-rc", "fail-ctx", "coop",
                                             "until-stop", "input", "nested", "parallel",
                                             "process", "custom"};
enum { P_ECHO, P_SH, P_CAT, P_SLEEP, P_MISSING };
enum { POOL_DEFAULT, POOL_SHARED, POOL_OWN };

typedef struct track {
    struct track *next; /* the monitor's list */
    /* Set before the start; read-only after. */
    uint32_t tag;
    int owner, kind, pkind, nchildren, nw, pool_kind, exit_code, rounds;
    uint32_t pool_gen, fail_mask, nrec[MAXW];
    bool slow, cbcheck, spec_cb, via_fn, is_inline, self_remove, named;
    const bgjob_pool *nest_pool;
    uint64_t wseed;
    char name[48];
    /* The owner's (one host thread). */
    uint64_t id;
    bool stop_asked, suspend_asked, known_finished, published, removed, received_to_end;
    bool reg_active, custom_type, cmd_set, ever_suspended, ever_resumed;
    atomic_bool race_remove; /* read by helpers */
    int answered, reg_count;
    unsigned final_state, cstate[MAXW];
    uint64_t reg, owner_last_seq;
    /* The work's. */
    atomic_uint written[MAXW];
    atomic_int work_runs[MAXW], work_finals, work_errors;
    _Atomic uint64_t work_id[MAXW], inner_id;
    atomic_int inner_ok;
    /* Callbacks' and finalizers'. */
    atomic_int in_cb, cb_finals, reg_finals, stop_calls, stop_finals, cb_removed;
    _Atomic uint64_t cb_job_id;
    atomic_int finals_at_finish; /* the work finalizer count seen by the finished callback, +1 */
    /* Under mu: the callbacks' chains and the records handed out. */
    pthread_mutex_t mu;
    chain cb, regc;
    uint64_t got[MAXW][CAPW];
    uint32_t ngot[MAXW];
    /* Threads receiving from it besides the owner. */
    atomic_int sharers;
    double retired_ms; /* when its owner handed it to the monitor */
} track;

static atomic_uint g_tag;

static track *track_new(int owner, int kind, uint64_t *rng);

static uint64_t writer_id(const track *t, unsigned w) {
    return t->nchildren ? t->id + 1 + w : t->id;
}

static bgjob_stream stream_for(const track *t, unsigned w, uint32_t seq) {
    if (t->kind == K_PROCESS) return w == 0 ? BGJOB_STREAM_OUTPUT : BGJOB_STREAM_ERROR;
    return stream_of_seq(seq);
}

static bool is_thread_leaf(const track *t) {
    return t->kind <= K_NESTED;
}

/* ===== random numbers ==================================================================== */

static uint64_t splitmix(uint64_t *s) {
    uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static unsigned rnd(uint64_t *s, unsigned n) { return n ? (unsigned)(splitmix(s) % n) : 0; }
static bool chance(uint64_t *s, unsigned percent) { return rnd(s, 100) < percent; }

/* ===== the work ========================================================================== */

static bgjob_pool *g_shared_pool;

static void work_error(track *t, const char *what, bgjob_status st) {
    atomic_fetch_add(&t->work_errors, 1);
    VIOL("job tag %" PRIu32 " (%s): the work's %s -> %s (%s)", t->tag, kind_names[t->kind], what,
         bgjob_status_name(st), bgjob_last_error_message());
}

/* Writes writer w's next record (a progress report every 7th), sometimes a status message. */
static void write_rec(bgjob_context *ctx, track *t, unsigned w) {
    uint32_t seq = atomic_load(&t->written[w]);
    if (seq >= CAP) return;
    char buf[64], act[24];
    int len = fmt_payload(buf, sizeof buf, t->tag, w, seq);
    bgjob_status st;
    if (stream_of_seq(seq) == BGJOB_STREAM_PROGRESS) {
        snprintf(act, sizeof act, "A%" PRIu32, t->tag);
        st = bgjob_context_progress(ctx, (int32_t)(seq % 101), act, buf);
    } else if (seq % 2) {
        st = bgjob_context_write_text(ctx, stream_of_seq(seq), buf);
    } else {
        st = bgjob_context_write(ctx, stream_of_seq(seq), buf, (size_t)len);
    }
    if (st != BGJOB_OK) {
        work_error(t, "write", st);
        return;
    }
    atomic_store(&t->written[w], seq + 1);
    if (seq % 10 == 0) {
        snprintf(buf, sizeof buf, "S%" PRIu32 ".%u:%" PRIu32, t->tag, w, seq);
        st = bgjob_context_set_status_message(ctx, buf);
        if (st != BGJOB_OK) work_error(t, "set_status_message", st);
    }
}

static int32_t inner_work(bgjob_context *ctx, void *user_data) {
    (void)user_data;
    return (int32_t)bgjob_context_write_text(ctx, BGJOB_STREAM_OUTPUT, "inner");
}

/* A job's work: what it does depends on its kind (see enum kind). */
static int32_t soak_work(bgjob_context *ctx, void *user_data) {
    track *t = user_data;
    unsigned w = 0;
    const uint8_t *in = NULL;
    size_t in_len = 0;
    if (t->kind == K_PARALLEL) {
        bgjob_status st = bgjob_context_input(ctx, &in, &in_len);
        if (st != BGJOB_OK || in == NULL || in_len != 1 || in[0] < '0' ||
            in[0] >= '0' + t->nchildren) {
            work_error(t, "input", st);
            return 9;
        }
        w = (unsigned)(in[0] - '0');
    } else if (t->tag % 16 == 5) {
        /* A plain thread job has no input. */
        EXPECT(bgjob_context_input(ctx, &in, &in_len), B(BGJOB_E_INVALID_ARGUMENT));
    }
    atomic_fetch_add(&t->work_runs[w], 1);
    uint64_t self = bgjob_context_job_id(ctx);
    atomic_store(&t->work_id[w], self);
    if (t->tag % 13 == 4) {
        /* A wait from a job's own work on itself could never end. */
        bgjob_records *recs = NULL;
        EXPECT(bgjob_wait(&self, 1, BGJOB_WAIT_ALL, 50, NULL, NULL),
               B(BGJOB_E_WOULD_DEADLOCK));
        EXPECT(bgjob_receive(self, BGJOB_RECEIVE_WAIT | BGJOB_RECEIVE_KEEP, 0, 50, &recs),
               B(BGJOB_E_WOULD_DEADLOCK));
        bgjob_records_free(recs);
    }
    uint32_t n = t->nrec[w];
    bgjob_status st;
    switch (t->kind) {
    case K_OUTPUT:
    case K_FAIL_RC:
    case K_FAIL_CTX:
        for (uint32_t i = 0; i < n; i++) {
            write_rec(ctx, t, w);
            if (t->slow && i % 4 == 3) sleep_ms(1);
        }
        if (t->kind == K_FAIL_RC) return 3;
        if (t->kind == K_FAIL_CTX) {
            char reason[64];
            snprintf(reason, sizeof reason, "soak failure T%" PRIu32, t->tag);
            if ((st = bgjob_context_fail(ctx, reason)) != BGJOB_OK) work_error(t, "fail", st);
        }
        return 0;
    case K_COOP:
    case K_PARALLEL:
        for (uint32_t i = 0; i < n; i++) {
            if (bgjob_context_stop_requested(ctx)) return 0;
            if ((st = bgjob_context_checkpoint(ctx)) != BGJOB_OK) work_error(t, "checkpoint", st);
            if (bgjob_context_stop_requested(ctx)) return 0;
            write_rec(ctx, t, w);
            if (t->kind == K_COOP || t->slow) sleep_ms(1);
        }
        if (t->kind == K_PARALLEL && (t->fail_mask >> w & 1)) {
            if (w % 2) return 3;
            char reason[64];
            snprintf(reason, sizeof reason, "soak child failure T%" PRIu32 ".%u", t->tag, w);
            if ((st = bgjob_context_fail(ctx, reason)) != BGJOB_OK) work_error(t, "fail", st);
        }
        return 0;
    case K_UNTIL_STOP: {
        double deadline = now_ms() + 4.0 * (double)BOUND_MS;
        for (uint32_t i = 0; !bgjob_context_stop_requested(ctx); i++) {
            if ((st = bgjob_context_checkpoint(ctx)) != BGJOB_OK) work_error(t, "checkpoint", st);
            if (bgjob_context_stop_requested(ctx)) break;
            if (i < n) write_rec(ctx, t, w);
            sleep_ms(i < n ? 0 : 1);
            if (now_ms() > deadline) {
                work_error(t, "wait for a stop (it never came)", BGJOB_E_TIMEOUT);
                break;
            }
        }
        return 0;
    }
    case K_INPUT:
        for (int r = 0; r < t->rounds; r++) {
            for (uint32_t i = 0; i < n; i++) write_rec(ctx, t, w);
            char prompt[48], want[48];
            snprintf(prompt, sizeof prompt, "T%" PRIu32 "?%d", t->tag, r);
            snprintf(want, sizeof want, "I%" PRIu32 ":%d", t->tag, r);
            uint8_t *data = NULL;
            size_t len = 0;
            st = bgjob_context_read_input(ctx, prompt, &data, &len);
            for (int tries = 0; st == BGJOB_E_INVALID_STATE && tries < 1000; tries++) {
                /* Stopped — or not Running: a suspend came first, and the checkpoint parks
                 * until it is resumed (or stopped). */
                atomic_fetch_add(&st_errors, 1);
                if (bgjob_context_stop_requested(ctx)) return 0;
                if ((st = bgjob_context_checkpoint(ctx)) != BGJOB_OK) work_error(t, "checkpoint", st);
                if (bgjob_context_stop_requested(ctx)) return 0;
                st = bgjob_context_read_input(ctx, prompt, &data, &len);
            }
            if (st != BGJOB_OK) {
                work_error(t, "read_input", st);
                return 0;
            }
            VCHECK(len == strlen(want) && data != NULL && memcmp(data, want, len) == 0,
                   "job tag %" PRIu32 ": input round %d is \"%.*s\", want \"%s\"", t->tag, r,
                   (int)len, data ? (const char *)data : "", want);
            bgjob_buffer_free(data, len);
        }
        write_rec(ctx, t, w);
        return 0;
    case K_NESTED: {
        for (uint32_t i = 0; i < n / 2; i++) write_rec(ctx, t, w);
        /* A job started from a work and waited for there, on the same pool: the waiting
         * work lends its slot, so this never deadlocks the pool. */
        uint64_t inner = 0;
        st = bgjob_start_fn(inner_work, NULL, NULL, t->nest_pool, &inner);
        if (st != BGJOB_OK) {
            work_error(t, "start_fn", st);
        } else {
            atomic_store(&t->inner_id, inner);
            bgjob_records *recs = NULL;
            if ((st = bgjob_wait(&inner, 1, BGJOB_WAIT_ALL, BOUND_MS, NULL, NULL)) != BGJOB_OK)
                work_error(t, "wait for its inner job", st);
            else if ((st = bgjob_receive(inner, 0, 0, 0, &recs)) != BGJOB_OK)
                work_error(t, "receive from its inner job", st);
            else if (bgjob_records_count(recs) != 1 || !record_is(recs, 0, BGJOB_STREAM_OUTPUT, "inner"))
                work_error(t, "receive from its inner job (wrong records)", BGJOB_OK);
            else if ((st = bgjob_remove(inner, false)) != BGJOB_OK)
                work_error(t, "remove its inner job", st);
            else
                atomic_store(&t->inner_ok, 1);
            bgjob_records_free(recs);
        }
        for (uint32_t i = n / 2; i < n; i++) write_rec(ctx, t, w);
        return 0;
    }
    default:
        work_error(t, "kind", BGJOB_E_INVALID_ARGUMENT);
        return 9;
    }
}

static void work_finalizer(void *user_data) {
    atomic_fetch_add(&((track *)user_data)->work_finals, 1);
}

/* ===== callbacks ========================================================================= */

/* Whether `reason` is right for job `job_id` (writer w) of `t` in `state`. */
static bool reason_ok(const track *t, bool parent, unsigned w, unsigned state, const char *reason) {
    if (state != BGJOB_STATE_FAILED) return reason == NULL;
    if (reason == NULL) return false;
    char want[64];
    switch (t->kind) {
    case K_FAIL_RC:
        return strstr(reason, "returned 3") != NULL;
    case K_FAIL_CTX:
        snprintf(want, sizeof want, "soak failure T%" PRIu32, t->tag);
        return strcmp(reason, want) == 0;
    case K_PARALLEL:
        if (parent) return strncmp(reason, "a child job failed", 18) == 0;
        if (w % 2) return strstr(reason, "returned 3") != NULL;
        snprintf(want, sizeof want, "soak child failure T%" PRIu32 ".%u", t->tag, w);
        return strcmp(reason, want) == 0;
    case K_PROCESS:
        if (t->pkind == P_MISSING) return strncmp(reason, "cannot start", 12) == 0;
        return strcmp(reason, "exited with code 3") == 0;
    case K_CUSTOM:
        if (parent) return strncmp(reason, "a child job failed", 18) == 0;
        snprintf(want, sizeof want, "custom failure T%" PRIu32, t->tag);
        return strcmp(reason, want) == 0;
    default:
        return false;
    }
}

/* In a finished callback of a job nobody received from yet: every record its work wrote
 * is readable now (DESIGN §1, "one state change, in order", step 2). */
static void check_records_readable(track *t, uint64_t id, unsigned state) {
    bgjob_records *recs = NULL;
    if (EXPECT(bgjob_receive(id, BGJOB_RECEIVE_KEEP, 0, 0, &recs), OKB) != BGJOB_OK) return;
    uint32_t seen[MAXW] = {0};
    bool bad = false;
    size_t n = bgjob_records_count(recs);
    for (size_t i = 0; i < n; i++) {
        const bgjob_record *r = bgjob_records_get(recs, i);
        uint32_t tag, seq;
        unsigned w;
        if (r == NULL || !parse_payload(r->data, r->len, &tag, &w, &seq) || tag != t->tag ||
            (int)w >= t->nw || seq != seen[w]) {
            bad = true;
            break;
        }
        seen[w]++;
    }
    for (int w = 0; w < t->nw && !bad; w++) {
        uint32_t want = t->kind == K_PROCESS ? t->nrec[w] : atomic_load(&t->written[w]);
        if (t->kind == K_PROCESS && state == BGJOB_STATE_STOPPED) want = seen[w];
        if (seen[w] != want) {
            VIOL("job %" PRIu64 " (%s): its %s callback could receive %" PRIu32
                 " records of writer %d, but %" PRIu32 " were written",
                 id, kind_names[t->kind], bgjob_state_name(state), seen[w], w, want);
            bad = false;
            break;
        }
    }
    if (bad)
        VIOL("job %" PRIu64 " (%s): a KEEP receive in its %s callback gave %zu records not in "
             "write order",
             id, kind_names[t->kind], bgjob_state_name(state), n);
    bgjob_records_free(recs);
}

/* The job's own callback, registered on its spec before the start. */
static void on_own(const bgjob_state_event *e, void *user_data) {
    track *t = user_data;
    atomic_fetch_add(&st_callbacks, 1);
    if (atomic_fetch_add(&t->in_cb, 1) != 0)
        VIOL("job %" PRIu64 ": two of its callbacks ran at once", e->job_id);
    uint64_t expect = 0;
    if (!atomic_compare_exchange_strong(&t->cb_job_id, &expect, e->job_id) && expect != e->job_id)
        VIOL("one job's callback saw jobs %" PRIu64 " and %" PRIu64, expect, e->job_id);
    unsigned prev = e->previous_state_info.state, s = e->state_info.state;
    pthread_mutex_lock(&t->mu);
    const char *why = chain_add(&t->cb, prev, s);
    char hist[256];
    if (why) chain_str(&t->cb, hist, sizeof hist);
    pthread_mutex_unlock(&t->mu);
    if (why)
        VIOL("job %" PRIu64 " (%s): its callback got %s -> %s: %s (%s)", e->job_id,
             kind_names[t->kind], bgjob_state_name(prev), bgjob_state_name(s), why, hist);
    /* (Not t->id: the owner may not know it yet.) */
    if (!reason_ok(t, t->nchildren > 0, 0, s, e->state_info.reason))
        VIOL("job %" PRIu64 " (%s): its callback got %s with reason \"%s\"", e->job_id,
             kind_names[t->kind], bgjob_state_name(s),
             e->state_info.reason ? e->state_info.reason : "(null)");
    if (state_finished(s)) {
        /* The state is stored before the callbacks run, and nothing leaves it. */
        bgjob_job_state now = 99;
        EXPECT(bgjob_get_state(e->job_id, &now), OKB);
        VCHECK(now == s, "job %" PRIu64 ": %s in its callback, but get_state says %s", e->job_id,
               bgjob_state_name(s), bgjob_state_name(now));
        if (is_thread_leaf(t)) atomic_store(&t->finals_at_finish, 1 + atomic_load(&t->work_finals));
        if (t->cbcheck) {
            check_records_readable(t, e->job_id, s);
            atomic_fetch_add(&st_cbcheck, 1);
        }
        if (t->self_remove) {
            /* A callback may remove its own job. */
            if (EXPECT(bgjob_remove(e->job_id, false), OKB | B(BGJOB_E_NO_SUCH_JOB)) == BGJOB_OK)
                atomic_fetch_add(&t->cb_removed, 1);
        }
    } else if (s == BGJOB_STATE_RUNNING && prev == BGJOB_STATE_NOT_STARTED && is_thread_leaf(t) &&
               t->tag % 8 == 1) {
        /* Waiting in a callback for a later change of the same job could never end. */
        uint64_t id = e->job_id;
        bgjob_records *recs = NULL;
        EXPECT(bgjob_wait(&id, 1, BGJOB_WAIT_ALL, 50, NULL, NULL), B(BGJOB_E_WOULD_DEADLOCK));
        EXPECT(bgjob_receive(id, BGJOB_RECEIVE_WAIT | BGJOB_RECEIVE_KEEP, 0, 50, &recs),
               B(BGJOB_E_WOULD_DEADLOCK));
        bgjob_records_free(recs);
        /* A poll is never refused. */
        EXPECT(bgjob_wait(&id, 1, BGJOB_WAIT_ALL, 0, NULL, NULL), B(BGJOB_E_TIMEOUT));
    }
    atomic_fetch_sub(&t->in_cb, 1);
}

static void own_finalizer(void *user_data) {
    atomic_fetch_add(&((track *)user_data)->cb_finals, 1);
}

/* A callback registered after the start (bgjob_on_state_changed): a gapless tail. */
static void on_late(const bgjob_state_event *e, void *user_data) {
    track *t = user_data;
    atomic_fetch_add(&st_callbacks, 1);
    pthread_mutex_lock(&t->mu);
    const char *why = chain_add(&t->regc, e->previous_state_info.state, e->state_info.state);
    char hist[256];
    if (why) chain_str(&t->regc, hist, sizeof hist);
    pthread_mutex_unlock(&t->mu);
    if (why)
        VIOL("job %" PRIu64 " (%s): a late registration got %s -> %s: %s (%s)", e->job_id,
             kind_names[t->kind], bgjob_state_name(e->previous_state_info.state),
             bgjob_state_name(e->state_info.state), why, hist);
}

static void late_finalizer(void *user_data) {
    atomic_fetch_add(&((track *)user_data)->reg_finals, 1);
}

/* The repository-wide callback: every change of every job, into the id map. */
static void on_any(const bgjob_state_event *e, void *user_data) {
    (void)user_data;
    atomic_fetch_add(&st_callbacks, 1);
    if (e->state_info.state < 11) atomic_fetch_add(&st_events_to[e->state_info.state], 1);
    shard *s = shard_of(e->job_id);
    pthread_mutex_lock(&s->mu);
    entry *en = entry_find(s, e->job_id, true);
    int overlap = en->in_any++;
    const char *why = chain_add(&en->any, e->previous_state_info.state, e->state_info.state);
    char hist[256];
    if (why) chain_str(&en->any, hist, sizeof hist);
    pthread_mutex_unlock(&s->mu);
    if (overlap) VIOL("job %" PRIu64 ": two repository-wide callbacks ran at once", e->job_id);
    if (why)
        VIOL("job %" PRIu64 ": the repository-wide callback got %s -> %s: %s (%s)", e->job_id,
             bgjob_state_name(e->previous_state_info.state),
             bgjob_state_name(e->state_info.state), why, hist);
    pthread_mutex_lock(&s->mu);
    en->in_any--;
    pthread_mutex_unlock(&s->mu);
}

static atomic_int g_any_finals;
static void any_finalizer(void *user_data) {
    (void)user_data;
    atomic_fetch_add(&g_any_finals, 1);
}

/* A second repository-wide callback, registered and unregistered by the hosts. */
typedef struct any2_data {
    atomic_int calls, finals;
} any2_data;

static void on_any2(const bgjob_state_event *e, void *user_data) {
    (void)e;
    atomic_fetch_add(&((any2_data *)user_data)->calls, 1);
    atomic_fetch_add(&st_callbacks, 1);
}

static void any2_finalizer(void *user_data) {
    atomic_fetch_add(&((any2_data *)user_data)->finals, 1);
}

static void count_call(const bgjob_state_event *e, void *user_data) {
    (void)e;
    atomic_fetch_add((atomic_int *)user_data, 1000);
}

static void count_final(void *user_data) { atomic_fetch_add((atomic_int *)user_data, 1); }

/* A custom job's stop callback: ends the foreign work at once. */
static void on_custom_stop(const bgjob_stop_event *e, void *user_data) {
    track *t = user_data;
    atomic_fetch_add(&t->stop_calls, 1);
    bool child = t->nchildren > 0;
    VCHECK(child ? e->parent_id == t->id && e->job_id > t->id && e->job_id <= t->id + (uint64_t)t->nchildren
                 : e->parent_id == 0 && e->job_id == t->id,
           "custom job %" PRIu64 ": a stop callback for job %" PRIu64 " (parent %" PRIu64 ")",
           t->id, e->job_id, e->parent_id);
    bgjob_job_state s = 99;
    EXPECT(bgjob_get_state(e->job_id, &s), OKB);
    VCHECK(s == BGJOB_STATE_STOPPING, "custom job %" PRIu64 " is %s in its stop callback",
           e->job_id, bgjob_state_name(s));
    EXPECT(bgjob_custom_set_state(e->job_id, BGJOB_STATE_STOPPED, NULL), OKB);
}

static void stop_finalizer(void *user_data) {
    atomic_fetch_add(&((track *)user_data)->stop_finals, 1);
}

/* ===== records handed out ================================================================= */

static bool got_bit(const track *t, unsigned w, uint32_t seq) {
    return t->got[w][seq / 64] >> (seq % 64) & 1;
}

/* Checks a batch a receive returned; a consuming one marks its records handed out.
 * `exclusive`: nobody else receives from the job meanwhile, so the batch must start at the
 * first record not handed out yet. `last_seq`: the reader's last sequence number. */
static void take_batch(track *t, const bgjob_records *recs, bool keep, size_t max,
                       bool exclusive, uint64_t *last_seq, const char *who) {
    size_t n = bgjob_records_count(recs);
    VCHECK(max == 0 || n <= max, "job %" PRIu64 ": %zu records from a receive with max %zu",
           t->id, n, max);
    uint64_t prev_seq = *last_seq;
    int64_t prev_w[MAXW];
    for (int w = 0; w < MAXW; w++) prev_w[w] = -1;
    bool bad = false;
    pthread_mutex_lock(&t->mu);
    for (size_t i = 0; i < n && !bad; i++) {
        const bgjob_record *r = bgjob_records_get(recs, i);
        uint32_t tag = 0, seq = 0;
        unsigned w = 0;
        char what[200] = "";
        if (r == NULL) snprintf(what, sizeof what, "no record at index %zu", i);
        else if (!parse_payload(r->data, r->len, &tag, &w, &seq) || tag != t->tag ||
                 (int)w >= t->nw || seq >= CAP)
            snprintf(what, sizeof what, "a record not of this job: \"%.*s\" from job %" PRIu64,
                     r->data ? (int)(r->len < 60 ? r->len : 60) : 6,
                     r->data ? (const char *)r->data : "(null)", r->job_id);
        else if (r->job_id != writer_id(t, w))
            snprintf(what, sizeof what, "record T%" PRIu32 ".%u:%" PRIu32 " says job %" PRIu64
                     ", want %" PRIu64, tag, w, seq, r->job_id, writer_id(t, w));
        else if (r->stream != stream_for(t, w, seq))
            snprintf(what, sizeof what, "record %u:%" PRIu32 " on stream %s, want %s", w, seq,
                     bgjob_stream_name(r->stream), bgjob_stream_name(stream_for(t, w, seq)));
        else if (r->stream == BGJOB_STREAM_PROGRESS &&
                 (r->percent_complete != (int32_t)(seq % 101) || r->activity == NULL ||
                  r->activity[0] != 'A' || strtoul(r->activity + 1, NULL, 10) != t->tag))
            snprintf(what, sizeof what, "progress record %u:%" PRIu32 " with %d%% \"%s\"", w,
                     seq, r->percent_complete, r->activity ? r->activity : "(null)");
        else if (r->stream != BGJOB_STREAM_PROGRESS && (r->percent_complete != -1 || r->activity != NULL))
            snprintf(what, sizeof what, "record %u:%" PRIu32 " with progress fields", w, seq);
        else if (r->sequence <= prev_seq)
            snprintf(what, sizeof what, "record %u:%" PRIu32 " has sequence number %" PRIu64
                     " after %" PRIu64 " (out of time order)", w, seq, r->sequence, prev_seq);
        else if (r->time_ns <= 0)
            snprintf(what, sizeof what, "record %u:%" PRIu32 " has time %" PRId64, w, seq, r->time_ns);
        else if (prev_w[w] >= 0 && seq != (uint32_t)prev_w[w] + 1)
            snprintf(what, sizeof what, "writer %u's records %" PRId64 " then %" PRIu32
                     " in one batch (a gap or reordering)", w, prev_w[w], seq);
        else if (exclusive && prev_w[w] < 0 && seq != t->ngot[w])
            snprintf(what, sizeof what, "writer %u's first record in the batch is %" PRIu32
                     ", but %" PRIu32 " were handed out so far (lost or repeated records)",
                     w, seq, t->ngot[w]);
        else if (got_bit(t, w, seq) && (!keep || exclusive))
            snprintf(what, sizeof what, "record %u:%" PRIu32 " handed out twice%s", w, seq,
                     keep ? " (a KEEP receive returned a record already taken)" : "");
        if (what[0]) {
            bad = true;
            pthread_mutex_unlock(&t->mu);
            VIOL("job %" PRIu64 " (%s): %s receive (%s, max %zu) record %zu of %zu: %s", t->id,
                 kind_names[t->kind], who, keep ? "keep" : "consume", max, i, n, what);
            pthread_mutex_lock(&t->mu);
            break;
        }
        prev_seq = r->sequence;
        prev_w[w] = seq;
        if (!keep) {
            t->got[w][seq / 64] |= UINT64_C(1) << (seq % 64);
            t->ngot[w]++;
        }
    }
    pthread_mutex_unlock(&t->mu);
    if (!keep) {
        *last_seq = prev_seq;
        atomic_fetch_add(&st_records, (long long)n);
    }
}

/* After the job was received to the end: exactly the records written were handed out. */
static void check_all_received(track *t) {
    pthread_mutex_lock(&t->mu);
    for (int w = 0; w < t->nw; w++) {
        uint32_t k = 0;
        while (k < CAP && got_bit(t, (unsigned)w, k)) k++;
        uint32_t extra = 0;
        for (uint32_t s = k; s < CAP; s++) extra += got_bit(t, (unsigned)w, s);
        uint32_t want = t->kind == K_PROCESS ? t->nrec[w] : atomic_load(&t->written[w]);
        bool prefix_only = t->kind == K_PROCESS && t->final_state == BGJOB_STATE_STOPPED;
        if (extra || (prefix_only ? k > want : k != want)) {
            pthread_mutex_unlock(&t->mu);
            VIOL("job %" PRIu64 " (%s, %s): writer %d wrote %" PRIu32 " records%s, the receives "
                 "handed out %" PRIu32 " (records 0..%" PRIu32 " then %" PRIu32 " more)",
                 t->id, kind_names[t->kind], bgjob_state_name(t->final_state), w, want,
                 prefix_only ? " at most" : "", t->ngot[w], k, extra);
            return;
        }
    }
    pthread_mutex_unlock(&t->mu);
}

/* ===== the monitor's list of retired jobs ================================================= */

static pthread_mutex_t g_retired_mu = PTHREAD_MUTEX_INITIALIZER;
static track *g_retired;
static atomic_long g_retired_n;

static void hand_to_monitor(track *t) {
    if (t->retired_ms == 0) t->retired_ms = now_ms();
    pthread_mutex_lock(&g_retired_mu);
    t->next = g_retired;
    g_retired = t;
    pthread_mutex_unlock(&g_retired_mu);
    atomic_fetch_add(&g_retired_n, 1);
}

/* ===== host threads ====================================================================== */

enum op {
    OP_IDLE, OP_START, OP_PARALLEL, OP_PROCESS, OP_CUSTOM_NEW, OP_CUSTOM_DRIVE, OP_INLINE,
    OP_RECEIVE, OP_WAIT, OP_STOP, OP_SUSPEND, OP_INPUT, OP_QUERY, OP_REGISTER, OP_EVENTQ,
    OP_POOL, OP_BAD, OP_HELP, OP_RETIRE, OP_WARMUP, OP_DRAIN, OP_DONE, OP__N
};
static const char *const op_names[OP__N] = {
    "idle", "start", "parallel", "process", "custom-new", "custom-drive", "inline",
    "receive", "wait", "stop", "suspend", "input", "query", "register", "event-queue",
    "pool", "bad-calls", "help", "retire", "warm-up barrier", "final retire", "done"};

typedef struct host {
    int idx;
    uint64_t rng;
    track *own[MAXOWN];
    int nown;
    bgjob_pool *pool;
    uint32_t pool_gen;
    uint64_t removed[32];
    int nremoved;
    /* what it is doing, for the watchdog */
    atomic_int op;
    _Atomic uint64_t op_job;
    _Atomic int64_t op_since;
    atomic_bool running;
    /* the job it lets others receive from */
    pthread_mutex_t share_mu;
    track *shared;
} host;

static host g_hosts[MAX_THREADS + 1]; /* + main's, for the watchdog */

static void doing(host *h, int op, uint64_t job) {
    atomic_store(&h->op, op);
    atomic_store(&h->op_job, job);
    atomic_store(&h->op_since, (int64_t)now_ms());
    if (h->idx < g_threads) {
        atomic_fetch_add(&st_ops, 1);
        atomic_fetch_add(&st_op_count[op], 1);
    }
}

static unsigned gone(const track *t) { return t->self_remove ? B(BGJOB_E_NO_SUCH_JOB) : 0; }

static track *track_new(int owner, int kind, uint64_t *rng) {
    track *t = calloc(1, sizeof *t);
    if (t == NULL) abort();
    t->tag = atomic_fetch_add(&g_tag, 1) + 1;
    t->owner = owner;
    t->kind = kind;
    t->nw = 1;
    t->wseed = splitmix(rng);
    pthread_mutex_init(&t->mu, NULL);
    chain_init(&t->cb);
    chain_init(&t->regc);
    for (int w = 0; w < MAXW; w++) t->cstate[w] = BGJOB_STATE_NOT_STARTED;
    snprintf(t->name, sizeof t->name, "soak-%d-%" PRIu32, owner, t->tag);
    return t;
}

static void track_free(track *t) {
    pthread_mutex_destroy(&t->mu);
    free(t);
}

static void own_add(host *h, track *t) {
    h->own[h->nown++] = t;
    atomic_fetch_add(&st_jobs, 1);
    atomic_fetch_add(&st_live, 1);
    atomic_fetch_add(&st_kinds[t->kind], 1);
}

static void own_drop(host *h, track *t) {
    for (int i = 0; i < h->nown; i++)
        if (h->own[i] == t) {
            h->own[i] = h->own[--h->nown];
            atomic_fetch_sub(&st_live, 1);
            return;
        }
}

static track *pick(host *h, bool (*pred)(const track *)) {
    track *c[MAXOWN];
    int n = 0;
    for (int i = 0; i < h->nown; i++)
        if (pred == NULL || pred(h->own[i])) c[n++] = h->own[i];
    return n ? c[rnd(&h->rng, (unsigned)n)] : NULL;
}

/* Whether a job ends without its host doing anything more. */
static bool self_finishing(const host *h, const track *t) {
    if (t->known_finished) return true;
    if (t->suspend_asked) return false;
    switch (t->kind) {
    case K_UNTIL_STOP:
    case K_INPUT:
        return t->stop_asked;
    case K_CUSTOM:
        return false;
    case K_PROCESS:
        return t->pkind != P_SLEEP || t->stop_asked;
    default:
        break;
    }
    if (t->pool_kind == POOL_OWN) {
        /* Its own pool may be full of jobs that run until stopped. */
        for (int i = 0; i < h->nown; i++) {
            const track *o = h->own[i];
            if (o->pool_kind == POOL_OWN && o->pool_gen == t->pool_gen && !o->stop_asked &&
                !o->known_finished && (o->kind == K_UNTIL_STOP || o->suspend_asked))
                return false;
        }
    }
    return true;
}

static void remember_removed(host *h, uint64_t id) {
    h->removed[h->nremoved++ % 32] = id;
}

static uint64_t a_removed_id(host *h) {
    if (h->nremoved == 0) return 0;
    int n = h->nremoved < 32 ? h->nremoved : 32;
    return h->removed[rnd(&h->rng, (unsigned)n)];
}

/* ----- sharing a job with other host threads ---------------------------------------------- */

static void publish(host *h, track *t) {
    pthread_mutex_lock(&h->share_mu);
    if (h->shared == NULL) {
        h->shared = t;
        t->published = true;
    }
    pthread_mutex_unlock(&h->share_mu);
}

/* Stops sharing `t` and waits (bounded) until no other thread receives from it. */
static void unpublish(host *h, track *t) {
    if (!t->published) return;
    pthread_mutex_lock(&h->share_mu);
    if (h->shared == t) h->shared = NULL;
    pthread_mutex_unlock(&h->share_mu);
    t->published = false;
    double deadline = now_ms() + (double)BOUND_MS;
    while (atomic_load(&t->sharers) > 0) {
        if (now_ms() > deadline) {
            VIOL("job %" PRIu64 ": a helper's receive did not return within %" PRId64 " ms",
                 t->id, BOUND_MS);
            break;
        }
        sleep_ms(1);
    }
}

/* OP_HELP: receive from another host thread's shared job, concurrently with its owner. */
static void op_help(host *h) {
    if (g_threads < 2) return;
    host *o = &g_hosts[(h->idx + 1 + (int)rnd(&h->rng, (unsigned)g_threads - 1)) % g_threads];
    pthread_mutex_lock(&o->share_mu);
    track *t = o->shared;
    if (t != NULL) atomic_fetch_add(&t->sharers, 1);
    pthread_mutex_unlock(&o->share_mu);
    if (t == NULL) return;
    doing(h, OP_HELP, t->id);
    uint64_t last = 0;
    int rounds = 1 + (int)rnd(&h->rng, 4);
    for (int i = 0; i < rounds; i++) {
        bool keep = chance(&h->rng, 20);
        bool wait = chance(&h->rng, 40);
        size_t max = rnd(&h->rng, 6);
        uint32_t flags = (keep ? BGJOB_RECEIVE_KEEP : 0) | (wait ? BGJOB_RECEIVE_WAIT : 0);
        bgjob_records *recs = NULL;
        bgjob_status st = EXPECT(bgjob_receive(t->id, flags, max, wait ? rnd(&h->rng, 5) : 0, &recs),
                                 OKB | B(BGJOB_E_NO_SUCH_JOB));
        if (st == BGJOB_E_NO_SUCH_JOB && !atomic_load(&t->race_remove))
            VIOL("job %" PRIu64 ": a helper found it gone while its owner still held it", t->id);
        if (st == BGJOB_OK) {
            take_batch(t, recs, keep, max, false, &last, "a helper's");
            if (!keep) atomic_fetch_add(&st_helper_records, (long long)bgjob_records_count(recs));
        }
        bgjob_records_free(recs);
        if (st != BGJOB_OK) break;
    }
    atomic_fetch_sub(&t->sharers, 1);
}

/* ----- starting jobs --------------------------------------------------------------------- */

static const bgjob_pool *choose_pool(host *h, track *t, bool may_own, bool may_shared) {
    unsigned r = rnd(&h->rng, 10);
    if (may_own && h->pool != NULL && r < 4) {
        t->pool_kind = POOL_OWN;
        t->pool_gen = h->pool_gen;
        return h->pool;
    }
    if (may_shared && r >= 7) {
        t->pool_kind = POOL_SHARED;
        return g_shared_pool;
    }
    t->pool_kind = POOL_DEFAULT;
    return NULL;
}

/* A spec with the job's name, command and own callback (most of the time). */
static bgjob_spec *new_spec(host *h, track *t, bool with_cb) {
    bgjob_spec *spec = NULL;
    if (EXPECT(bgjob_spec_new(&spec), OKB) != BGJOB_OK) return NULL;
    EXPECT(bgjob_spec_set_name(spec, t->name), OKB);
    t->named = true;
    char cmd[48];
    snprintf(cmd, sizeof cmd, "soak_%s %" PRIu32, kind_names[t->kind], t->tag);
    if (t->kind != K_PROCESS || chance(&h->rng, 50)) {
        EXPECT(bgjob_spec_set_command(spec, cmd), OKB);
        t->cmd_set = true;
    }
    if (with_cb) {
        EXPECT(bgjob_spec_on_state_changed(spec, on_own, t, own_finalizer), OKB);
        t->spec_cb = true;
    }
    return spec;
}

/* Waits (bounded) until the finalizers a job had were called exactly once. */
static void check_finalizers(track *t, const char *when) {
    int want_work = (is_thread_leaf(t) || t->kind == K_PARALLEL) ? 1 : 0;
    int want_cb = t->spec_cb ? 1 : 0;
    int want_stop = t->kind == K_CUSTOM ? 1 : 0;
    double deadline = now_ms() + (double)BOUND_MS;
    for (;;) {
        bool done = atomic_load(&t->work_finals) >= want_work && atomic_load(&t->cb_finals) >= want_cb &&
                    atomic_load(&t->stop_finals) >= want_stop &&
                    atomic_load(&t->reg_finals) >= t->reg_count;
        if (done || now_ms() > deadline) break;
        sleep_ms(1);
    }
    VCHECK(atomic_load(&t->work_finals) == want_work && atomic_load(&t->cb_finals) == want_cb &&
               atomic_load(&t->stop_finals) == want_stop && atomic_load(&t->reg_finals) == t->reg_count,
           "job %" PRIu64 " (%s) %s: finalizers ran work %d (want %d), callback %d (want %d), "
           "stop callback %d (want %d), late registrations %d (want %d)",
           t->id, kind_names[t->kind], when, atomic_load(&t->work_finals), want_work,
           atomic_load(&t->cb_finals), want_cb, atomic_load(&t->stop_finals), want_stop,
           atomic_load(&t->reg_finals), t->reg_count);
}

/* A start that failed left nothing behind and finalized what it held. */
static void start_failed(track *t) {
    t->id = 0;
    check_finalizers(t, "after a failed start");
    track_free(t);
}

/* A start's outcome `st` (with the id it gave: take the status first, the id after):
 * on success the job is this host's (its id recorded, counted); on failure its track goes
 * (its finalizers checked first). True if it started. */
static bool adopt(host *h, track *t, bgjob_status st, uint64_t id) {
    if (st != BGJOB_OK || id == 0) {
        start_failed(t);
        return false;
    }
    t->id = id;
    atomic_store(&h->op_job, id);
    own_add(h, t);
    return true;
}

static void op_start(host *h) {
    static const int kinds[] = {K_OUTPUT, K_OUTPUT, K_OUTPUT, K_OUTPUT, K_FAIL_RC, K_FAIL_CTX,
                                K_COOP,   K_COOP,   K_UNTIL_STOP, K_INPUT, K_NESTED};
    int kind = kinds[rnd(&h->rng, sizeof kinds / sizeof kinds[0])];
    track *t = track_new(h->idx, kind, &h->rng);
    doing(h, OP_START, 0);
    t->slow = chance(&h->rng, 15);
    t->nrec[0] = chance(&h->rng, 5) ? rnd(&h->rng, CAP + 1) : rnd(&h->rng, 40);
    if (kind == K_COOP) t->nrec[0] = rnd(&h->rng, 60);
    if (kind == K_INPUT) {
        t->rounds = 1 + (int)rnd(&h->rng, 3);
        t->nrec[0] = rnd(&h->rng, 5);
    }
    if (kind == K_UNTIL_STOP) t->nrec[0] = rnd(&h->rng, 100);
    const bgjob_pool *pool;
    if (kind == K_UNTIL_STOP) {
        /* Only on its own pool: it would starve the pools others wait on. */
        if (h->pool == NULL) EXPECT(bgjob_pool_new(1 + rnd(&h->rng, 2), 0, &h->pool), OKB);
        t->pool_kind = POOL_OWN;
        t->pool_gen = h->pool_gen;
        pool = h->pool;
    } else if (kind == K_NESTED) {
        pool = choose_pool(h, t, false, true);
        t->nest_pool = pool;
    } else {
        pool = choose_pool(h, t, true, true);
    }
    t->via_fn = kind != K_INPUT && chance(&h->rng, 12);
    bool simple = kind == K_OUTPUT || kind == K_FAIL_RC || kind == K_FAIL_CTX;
    uint64_t id = 0;
    bgjob_status st;
    if (t->via_fn) {
        t->named = false;
        snprintf(t->name, sizeof t->name, "(Job<id>)");
        st = EXPECT(bgjob_start_fn(soak_work, t, work_finalizer, pool, &id), OKB);
    } else {
        bgjob_spec *spec = new_spec(h, t, chance(&h->rng, 90));
        if (spec == NULL) {
            start_failed(t);
            return;
        }
        t->self_remove = simple && t->spec_cb && chance(&h->rng, 6);
        t->cbcheck = t->spec_cb && !t->self_remove && kind != K_UNTIL_STOP && kind != K_INPUT &&
                     chance(&h->rng, 30);
        EXPECT(bgjob_spec_set_work(spec, soak_work, t, work_finalizer), OKB);
        if (pool != NULL) EXPECT(bgjob_spec_set_pool(spec, pool), OKB);
        st = EXPECT(bgjob_start(spec, &id), OKB);
    }
    if (!adopt(h, t, st, id)) return;
    if (!t->cbcheck && !t->self_remove && (t->slow || kind == K_COOP || kind == K_UNTIL_STOP ||
                                          chance(&h->rng, 10)))
        publish(h, t);
}

static void op_parallel(host *h) {
    track *t = track_new(h->idx, K_PARALLEL, &h->rng);
    doing(h, OP_PARALLEL, 0);
    t->nchildren = 1 + (int)rnd(&h->rng, 6);
    t->nw = t->nchildren;
    t->slow = chance(&h->rng, 15);
    for (int w = 0; w < t->nw; w++) t->nrec[w] = rnd(&h->rng, 30);
    if (chance(&h->rng, 25)) t->fail_mask = 1u << rnd(&h->rng, (unsigned)t->nchildren);
    const bgjob_pool *pool = choose_pool(h, t, true, true);
    bgjob_spec *spec = new_spec(h, t, chance(&h->rng, 90));
    if (spec == NULL) {
        start_failed(t);
        return;
    }
    t->cbcheck = t->spec_cb && chance(&h->rng, 30);
    EXPECT(bgjob_spec_set_work(spec, soak_work, t, work_finalizer), OKB);
    for (int k = 0; k < t->nchildren; k++) {
        char in = (char)('0' + k);
        EXPECT(bgjob_spec_add_input(spec, &in, 1), OKB);
    }
    EXPECT(bgjob_spec_set_throttle_limit(spec, rnd(&h->rng, 4)), OKB);
    if (pool != NULL) EXPECT(bgjob_spec_set_pool(spec, pool), OKB);
    uint64_t id = 0;
    bgjob_status st = EXPECT(bgjob_start(spec, &id), OKB);
    if (!adopt(h, t, st, id)) return;
    if (!t->cbcheck && chance(&h->rng, 40)) publish(h, t);
}

static void op_process(host *h, bool inline_run) {
    track *t = track_new(h->idx, K_PROCESS, &h->rng);
    doing(h, inline_run ? OP_INLINE : OP_PROCESS, 0);
    static const int pk[] = {P_ECHO, P_SH, P_SH, P_SH, P_CAT, P_CAT, P_SLEEP, P_SLEEP, P_MISSING};
    t->pkind = inline_run ? P_ECHO : pk[rnd(&h->rng, sizeof pk / sizeof pk[0])];
    /* Under valgrind the child runs valgrind until its exec: a failed exec then exits 127
     * (with a leak report of its own) instead of the OS error bgjob reports natively. */
    if (t->pkind == P_MISSING && g_valgrind) t->pkind = P_ECHO;
    t->pool_kind = POOL_DEFAULT;
    bgjob_spec *spec = new_spec(h, t, chance(&h->rng, 90));
    if (spec == NULL) {
        start_failed(t);
        return;
    }
    char tagbuf[16], line0[48], script[1024];
    snprintf(tagbuf, sizeof tagbuf, "%" PRIu32, t->tag);
    fmt_payload(line0, sizeof line0, t->tag, 0, 0);
    const char *argv[4] = {NULL, NULL, NULL, NULL};
    size_t argc = 0;
    switch (t->pkind) {
    case P_ECHO:
        argv[0] = "/bin/echo";
        argv[1] = line0;
        argc = 2;
        t->nrec[0] = 1;
        break;
    case P_SH: {
        unsigned n = rnd(&h->rng, 40);
        t->exit_code = chance(&h->rng, 30) ? 3 : 0;
        t->nw = 2;
        t->nrec[0] = t->nrec[1] = n;
        snprintf(script, sizeof script,
                 "i=0; while [ $i -lt %u ]; do echo \"T${SOAK_TAG}.0:$i\"; "
                 "echo \"T${SOAK_TAG}.1:$i\" >&2; i=$((i+1)); done; exit %d",
                 n, t->exit_code);
        argv[0] = "/bin/sh";
        argv[1] = "-c";
        argv[2] = script;
        argc = 3;
        EXPECT(bgjob_spec_set_env(spec, "SOAK_TAG", tagbuf), OKB);
        if (chance(&h->rng, 50)) EXPECT(bgjob_spec_set_env(spec, "SOAK_UNSET_ME", NULL), OKB);
        break;
    }
    case P_CAT: {
        unsigned n = rnd(&h->rng, 30);
        size_t off = 0;
        for (unsigned i = 0; i < n; i++)
            off += (size_t)fmt_payload(script + off, sizeof script - off - 1, t->tag, 0, i),
                script[off++] = '\n';
        t->nrec[0] = n;
        argv[0] = "cat";
        argc = 1;
        EXPECT(bgjob_spec_set_stdin(spec, script, off), OKB);
        EXPECT(bgjob_spec_set_working_directory(spec, "/"), OKB);
        break;
    }
    case P_SLEEP:
        snprintf(script, sizeof script, "echo %s; exec sleep 1000", line0);
        argv[0] = "/bin/sh";
        argv[1] = "-c";
        argv[2] = script;
        argc = 3;
        t->nrec[0] = 1;
        break;
    default:
        argv[0] = "/nonexistent/soak-no-such-program";
        argc = 1;
        break;
    }
    EXPECT(bgjob_spec_set_argv(spec, argv, argc), OKB);
    EXPECT(bgjob_spec_set_stop_grace(spec, chance(&h->rng, 50) ? 0 : 100), OKB);
    if (chance(&h->rng, 30)) EXPECT(bgjob_spec_set_output_mode(spec, BGJOB_OUTPUT_LINES), OKB);
    t->cbcheck = t->spec_cb && chance(&h->rng, 30);
    uint64_t id = 0;
    bgjob_status st = inline_run ? EXPECT(bgjob_run_inline(spec, &id), OKB)
                                 : EXPECT(bgjob_start(spec, &id), OKB);
    if (adopt(h, t, st, id)) {
        t->is_inline = inline_run;
        t->known_finished = inline_run;
    }
}

/* OP_INLINE: a thread job run on this thread (or, sometimes, a process job). */
static void op_inline(host *h) {
    if (chance(&h->rng, 20)) {
        op_process(h, true);
        return;
    }
    static const int kinds[] = {K_OUTPUT, K_OUTPUT, K_FAIL_RC, K_FAIL_CTX};
    track *t = track_new(h->idx, kinds[rnd(&h->rng, 4)], &h->rng);
    doing(h, OP_INLINE, 0);
    t->nrec[0] = rnd(&h->rng, 30);
    bgjob_spec *spec = new_spec(h, t, chance(&h->rng, 80));
    if (spec == NULL) {
        start_failed(t);
        return;
    }
    t->cbcheck = t->spec_cb && chance(&h->rng, 50);
    EXPECT(bgjob_spec_set_work(spec, soak_work, t, work_finalizer), OKB);
    uint64_t id = 0;
    bgjob_status st = EXPECT(bgjob_run_inline(spec, &id), OKB);
    if (!adopt(h, t, st, id)) return;
    t->is_inline = true;
    t->known_finished = true; /* it returns after the finished callbacks */
    /* It is finished now, and the work's user data was finalized before that. */
    bgjob_job_state s = 99;
    EXPECT(bgjob_get_state(id, &s), OKB);
    VCHECK(state_finished(s), "inline job %" PRIu64 " is %s after bgjob_run_inline", id,
           bgjob_state_name(s));
    VCHECK(atomic_load(&t->work_finals) == 1, "inline job %" PRIu64 ": work finalized %d times",
           id, atomic_load(&t->work_finals));
}

/* ----- custom jobs ------------------------------------------------------------------------ */

static void op_custom_new(host *h) {
    track *t = track_new(h->idx, K_CUSTOM, &h->rng);
    doing(h, OP_CUSTOM_NEW, 0);
    t->nchildren = chance(&h->rng, 30) ? 2 : 0;
    t->nw = t->nchildren ? t->nchildren : 1;
    t->pool_kind = POOL_DEFAULT;
    bgjob_spec *spec = new_spec(h, t, chance(&h->rng, 90));
    if (spec == NULL) {
        start_failed(t);
        return;
    }
    t->custom_type = chance(&h->rng, 50);
    if (t->custom_type) {
        EXPECT(bgjob_spec_set_type_name(spec, "SoakRemote"), OKB);
        EXPECT(bgjob_spec_set_location(spec, "soak-remote"), OKB);
    }
    for (int k = 0; k < t->nchildren; k++) {
        char name[64];
        snprintf(name, sizeof name, "%s-c%d", t->name, k);
        EXPECT(bgjob_spec_add_custom_child(spec, name), OKB);
    }
    EXPECT(bgjob_spec_on_stop(spec, on_custom_stop, t, stop_finalizer), OKB);
    t->cbcheck = t->spec_cb && chance(&h->rng, 30);
    uint64_t id = 0;
    bgjob_status st = EXPECT(bgjob_create_custom(spec, &id), OKB);
    if (!adopt(h, t, st, id)) return;
    bgjob_job_state s = 99;
    EXPECT(bgjob_get_state(id, &s), OKB);
    VCHECK(s == BGJOB_STATE_NOT_STARTED, "custom job %" PRIu64 " is %s when made", id,
           bgjob_state_name(s));
}

static bool is_custom(const track *t) { return t->kind == K_CUSTOM; }

static bool custom_finished(const track *t) {
    for (int w = 0; w < t->nw; w++)
        if (!state_finished(t->cstate[w])) return false;
    return true;
}

/* Moves writer w of a custom job to `to`: refused exactly when DESIGN's table forbids it. */
static void custom_move(track *t, unsigned w, unsigned to) {
    const char *reason = NULL;
    char buf[64];
    if (to == BGJOB_STATE_FAILED) {
        snprintf(buf, sizeof buf, "custom failure T%" PRIu32, t->tag);
        reason = buf;
    }
    bool legal = legal_move(t->cstate[w], to);
    bgjob_status st = EXPECT(bgjob_custom_set_state(writer_id(t, w), to, reason),
                             legal ? OKB : B(BGJOB_E_INVALID_STATE));
    if (st == BGJOB_OK) t->cstate[w] = to;
}

static void custom_write(host *h, track *t, unsigned w) {
    uint32_t seq = atomic_load(&t->written[w]);
    if (seq >= CAP) return;
    char buf[64], act[24];
    int len = fmt_payload(buf, sizeof buf, t->tag, w, seq);
    bool open = !state_finished(t->cstate[w]);
    unsigned want = open ? OKB : B(BGJOB_E_INVALID_STATE);
    bgjob_status st;
    if (stream_of_seq(seq) == BGJOB_STREAM_PROGRESS) {
        snprintf(act, sizeof act, "A%" PRIu32, t->tag);
        st = EXPECT(bgjob_custom_progress(writer_id(t, w), (int32_t)(seq % 101), act, buf), want);
    } else if (chance(&h->rng, 50)) {
        st = EXPECT(bgjob_custom_write_text(writer_id(t, w), stream_of_seq(seq), buf), want);
    } else {
        st = EXPECT(bgjob_custom_write(writer_id(t, w), stream_of_seq(seq), buf, (size_t)len), want);
    }
    if (st == BGJOB_OK) atomic_store(&t->written[w], seq + 1);
}

/* One step of the host's foreign work for custom job t. */
static void custom_step(host *h, track *t) {
    unsigned w = rnd(&h->rng, (unsigned)t->nw);
    unsigned s = t->cstate[w];
    unsigned r = rnd(&h->rng, 100);
    if (t->nchildren && r < 3) {
        /* A custom parent's state follows its children's. */
        EXPECT(bgjob_custom_set_state(t->id, BGJOB_STATE_RUNNING, NULL), B(BGJOB_E_INVALID_STATE));
        return;
    }
    switch (s) {
    case BGJOB_STATE_NOT_STARTED:
        custom_move(t, w, r < 85 ? BGJOB_STATE_RUNNING : r < 92 ? BGJOB_STATE_COMPLETED : BGJOB_STATE_FAILED);
        break;
    case BGJOB_STATE_RUNNING:
        if (r < 55) {
            int k = 1 + (int)rnd(&h->rng, 5);
            while (k--) custom_write(h, t, w);
        } else if (r < 60) {
            char msg[48];
            snprintf(msg, sizeof msg, "S%" PRIu32 ".%u", t->tag, w);
            EXPECT(bgjob_custom_set_status_message(writer_id(t, w), msg), OKB);
        } else if (r < 65) {
            custom_move(t, w, BGJOB_STATE_DISCONNECTED);
        } else if (r < 70) {
            custom_move(t, w, BGJOB_STATE_AT_BREAKPOINT);
            custom_move(t, w, BGJOB_STATE_RUNNING); /* never left at a breakpoint */
        } else if (r < 75) {
            custom_move(t, w, BGJOB_STATE_BLOCKED);
        } else if (r < 88) {
            custom_move(t, w, BGJOB_STATE_COMPLETED);
        } else if (r < 94) {
            custom_move(t, w, BGJOB_STATE_FAILED);
        } else {
            /* Illegal moves change nothing. */
            custom_move(t, w, r < 97 ? BGJOB_STATE_NOT_STARTED : BGJOB_STATE_SUSPENDED);
        }
        break;
    case BGJOB_STATE_DISCONNECTED:
        custom_move(t, w, r < 70 ? BGJOB_STATE_RUNNING : r < 85 ? BGJOB_STATE_FAILED : BGJOB_STATE_COMPLETED);
        break;
    case BGJOB_STATE_BLOCKED:
        custom_move(t, w, BGJOB_STATE_RUNNING);
        break;
    default:
        /* Finished: nothing moves it, nothing can be written. */
        if (r < 50) custom_write(h, t, w);
        else custom_move(t, w, BGJOB_STATE_RUNNING);
        break;
    }
}

static void op_custom_drive(host *h) {
    track *t = pick(h, is_custom);
    if (t == NULL) return;
    doing(h, OP_CUSTOM_DRIVE, t->id);
    int steps = 1 + (int)rnd(&h->rng, 4);
    while (steps--) custom_step(h, t);
}

/* After a stop of a custom job: what the stop made of each writer. */
static void custom_sync(track *t) {
    for (int w = 0; w < t->nw; w++) {
        bgjob_job_state s = 99;
        if (EXPECT(bgjob_get_state(writer_id(t, (unsigned)w), &s), OKB) == BGJOB_OK) {
            VCHECK(s == t->cstate[w] || (!state_finished(t->cstate[w]) && s == BGJOB_STATE_STOPPED),
                   "custom job %" PRIu64 " writer %d is %s, the host left it %s", t->id, w,
                   bgjob_state_name(s), bgjob_state_name(t->cstate[w]));
            t->cstate[w] = s;
        }
    }
}

/* ----- receive ---------------------------------------------------------------------------- */

static bool receivable(const track *t) { return !t->removed; }

/* Whether the owner alone receives from t now. */
static bool exclusive(const track *t) {
    return !t->published && atomic_load(&t->sharers) == 0 && !t->self_remove;
}

static bgjob_status owner_receive(host *h, track *t, uint32_t flags, size_t max, int64_t timeout) {
    bgjob_records *recs = NULL;
    unsigned ok = OKB | gone(t);
    bgjob_status st = EXPECT(bgjob_receive(t->id, flags, max, timeout, &recs), ok);
    if (st == BGJOB_OK) {
        bool keep = flags & BGJOB_RECEIVE_KEEP;
        take_batch(t, recs, keep, max, exclusive(t), &t->owner_last_seq, "the owner's");
    }
    bgjob_records_free(recs);
    (void)h;
    return st;
}

static void op_receive(host *h) {
    track *t = pick(h, receivable);
    if (t == NULL) return;
    doing(h, OP_RECEIVE, t->id);
    int rounds = 1 + (int)rnd(&h->rng, 3);
    for (int i = 0; i < rounds; i++) {
        /* A job whose finished callback checks its records is not taken from before. */
        bool keep = chance(&h->rng, 25) || (t->cbcheck && !t->known_finished);
        bool wait = chance(&h->rng, 30);
        size_t max = rnd(&h->rng, 9);
        int64_t timeout = wait ? rnd(&h->rng, 10) : 0;
        if (wait && keep && chance(&h->rng, 50)) max = 1 + rnd(&h->rng, 3);
        uint32_t flags = (keep ? BGJOB_RECEIVE_KEEP : 0) | (wait ? BGJOB_RECEIVE_WAIT : 0);
        if (owner_receive(h, t, flags, max, timeout) != BGJOB_OK) break;
    }
}

/* ----- wait ------------------------------------------------------------------------------- */

static void op_wait(host *h) {
    if (h->nown == 0) return;
    track *set[4];
    uint64_t ids[4], done[4];
    size_t n = 0;
    int want = 1 + (int)rnd(&h->rng, 4);
    for (int tries = 0; tries < 8 && (int)n < want; tries++) {
        track *t = h->own[rnd(&h->rng, (unsigned)h->nown)];
        bool dup = t->self_remove;
        for (size_t k = 0; k < n; k++) dup |= set[k] == t;
        if (!dup) {
            set[n] = t;
            ids[n++] = t->id;
        }
    }
    if (n == 0) return;
    doing(h, OP_WAIT, ids[0]);
    bool any = chance(&h->rng, 40), force = chance(&h->rng, 50);
    bool all_self = true, some_self = false, maybe_blocked = false;
    for (size_t k = 0; k < n; k++) {
        bool s = self_finishing(h, set[k]);
        all_self &= s;
        some_self |= s;
        maybe_blocked |= set[k]->kind == K_INPUT || set[k]->kind == K_CUSTOM;
    }
    unsigned r = rnd(&h->rng, 10);
    int64_t timeout = r < 3 ? 0 : r < 9 ? 1 + (int64_t)rnd(&h->rng, 20) : -2;
    bool bounded = timeout == -2 && (any ? some_self : all_self);
    if (timeout == -2) timeout = bounded ? BOUND_MS : 5;
    uint32_t mode = (any ? BGJOB_WAIT_ANY : BGJOB_WAIT_ALL) | (force ? BGJOB_WAIT_FORCE : 0);
    size_t nd = 99;
    unsigned ok = bounded ? OKB : OKB | B(BGJOB_E_TIMEOUT);
    if (maybe_blocked) ok |= B(BGJOB_E_BLOCKED);
    bgjob_status st = EXPECT(bgjob_wait(ids, n, mode, timeout, done, &nd), ok);
    if (st == BGJOB_E_BLOCKED) return;
    VCHECK(nd <= n, "wait: %zu done of %zu", nd, n);
    if (nd > n) return;
    if (st == BGJOB_OK)
        VCHECK(any ? nd >= 1 : nd == n, "wait %s -> OK with %zu of %zu done", any ? "any" : "all", nd, n);
    else if (st == BGJOB_E_TIMEOUT)
        VCHECK(any ? nd == 0 : nd < n, "wait %s -> TIMEOUT with %zu of %zu done", any ? "any" : "all",
               nd, n);
    /* The done ids: in the order given, each done — persistent (finished if forced). */
    size_t k = 0;
    for (size_t i = 0; i < nd; i++) {
        while (k < n && ids[k] != done[i]) k++;
        if (k == n) {
            VIOL("wait: done id %" PRIu64 " is not among the ids given, in order", done[i]);
            return;
        }
        track *t = set[k++];
        bgjob_job_state s = 99;
        EXPECT(bgjob_get_state(t->id, &s), OKB);
        bool fin = state_finished(s);
        /* (A job resumed while still Suspending passes through Suspended at its next
         * checkpoint all the same, waking waiters: a wait that is not forced may return it
         * as done after its host resumed it — see the report.) */
        VCHECK(force ? fin : fin || s == BGJOB_STATE_SUSPENDED || s == BGJOB_STATE_DISCONNECTED ||
                                 t->ever_suspended,
               "wait%s returned job %" PRIu64 " (%s) as done, but it is %s", force ? " (forced)" : "",
               t->id, kind_names[t->kind], bgjob_state_name(s));
        if (fin) t->known_finished = true;
    }
}

/* ----- stop, suspend, input --------------------------------------------------------------- */

static bool stoppable(const track *t) { return !t->self_remove; }

static void stop_job(host *h, track *t, bool bounded) {
    t->stop_asked = true;
    bgjob_status st = EXPECT(bgjob_stop(t->id, bounded ? BOUND_MS : 0),
                             (bounded ? OKB : OKB | B(BGJOB_E_TIMEOUT)) | gone(t));
    if (t->kind == K_CUSTOM) custom_sync(t);
    if (st == BGJOB_OK) {
        bgjob_job_state s = 99;
        if (EXPECT(bgjob_get_state(t->id, &s), OKB | gone(t)) != BGJOB_OK) return;
        VCHECK(state_finished(s), "job %" PRIu64 " (%s) is %s after a stop returned OK", t->id,
               kind_names[t->kind], bgjob_state_name(s));
    }
    (void)h;
}

static void op_stop(host *h) {
    track *t = pick(h, stoppable);
    if (t == NULL) return;
    doing(h, OP_STOP, t->id);
    stop_job(h, t, chance(&h->rng, 50));
}

static bool suspendable(const track *t) {
    return !t->self_remove && t->kind != K_CUSTOM;
}

static void op_suspend(host *h) {
    track *t = pick(h, suspendable);
    if (t == NULL) return;
    doing(h, OP_SUSPEND, t->id);
    if (t->suspend_asked && chance(&h->rng, 70)) {
        EXPECT(bgjob_resume(t->id), OKB);
        t->suspend_asked = false;
        t->ever_resumed = true;
        return;
    }
    /* A leaf refuses it unless Running (or already Suspending/Suspended), a process job
     * always; a parent suspends whichever children run (the guide, section 10). */
    unsigned ok;
    if (t->kind == K_PROCESS || (t->known_finished && t->nchildren == 0)) ok = B(BGJOB_E_INVALID_STATE);
    else ok = OKB | B(BGJOB_E_INVALID_STATE);
    bgjob_job_state before = 99;
    bgjob_get_state(t->id, &before);
    bgjob_status st = EXPECT(bgjob_suspend(t->id), ok);
    if (!(B(st) & ok))
        VIOL("(the suspend above: job %" PRIu64 " %s, %s before it%s)", t->id, kind_names[t->kind],
             bgjob_state_name(before), t->known_finished ? ", known finished" : "");
    if (st == BGJOB_OK) {
        t->suspend_asked = true;
        t->ever_suspended = true;
        if (chance(&h->rng, 50)) {
            /* A wait (not forced) stops at Suspended. */
            uint64_t id = t->id;
            size_t nd = 0;
            uint64_t d;
            st = EXPECT(bgjob_wait(&id, 1, BGJOB_WAIT_ALL, rnd(&h->rng, 20), &d, &nd),
                        OKB | B(BGJOB_E_TIMEOUT) | B(BGJOB_E_BLOCKED));
            if (st == BGJOB_OK) {
                bgjob_job_state s = 99;
                EXPECT(bgjob_get_state(id, &s), OKB);
                VCHECK(s == BGJOB_STATE_SUSPENDED || state_finished(s) || t->ever_resumed,
                       "job %" PRIu64 " (%s) is %s after a wait for it returned", id,
                       kind_names[t->kind], bgjob_state_name(s));
                if (state_finished(s)) t->known_finished = true;
            }
        }
        if (chance(&h->rng, 40)) {
            EXPECT(bgjob_resume(t->id), OKB);
            t->suspend_asked = false;
            t->ever_resumed = true;
        }
    }
}

static bool is_input(const track *t) { return t->kind == K_INPUT; }

/* Answers (or tries to answer) a job that asks for input. */
static void answer(host *h, track *t) {
    char want_prompt[48], input[48];
    snprintf(want_prompt, sizeof want_prompt, "T%" PRIu32 "?%d", t->tag, t->answered);
    snprintf(input, sizeof input, "I%" PRIu32 ":%d", t->tag, t->answered);
    bgjob_job_info *info = NULL;
    if (EXPECT(bgjob_get_job(t->id, &info), OKB) != BGJOB_OK) return;
    unsigned s = bgjob_job_info_state(info);
    if (s == BGJOB_STATE_BLOCKED) {
        const char *p = bgjob_job_info_prompt(info);
        VCHECK(p != NULL && strcmp(p, want_prompt) == 0, "job %" PRIu64 " is Blocked with prompt "
               "\"%s\", want \"%s\"", t->id, p ? p : "(null)", want_prompt);
        /* Only its owner answers or stops it: it is still Blocked. */
        if (EXPECT(bgjob_send_input(t->id, input, strlen(input)), OKB) == BGJOB_OK) t->answered++;
    } else if (t->known_finished || state_finished(s)) {
        EXPECT(bgjob_send_input(t->id, input, strlen(input)), B(BGJOB_E_INVALID_STATE));
    } else if (chance(&h->rng, 30)) {
        /* It may have become Blocked meanwhile: then this is the right answer. */
        if (EXPECT(bgjob_send_input(t->id, input, strlen(input)),
                   OKB | B(BGJOB_E_INVALID_STATE)) == BGJOB_OK)
            t->answered++;
    }
    bgjob_job_info_free(info);
}

static void op_input(host *h) {
    track *t = pick(h, is_input);
    if (t == NULL) return;
    doing(h, OP_INPUT, t->id);
    answer(h, t);
}

/* ----- snapshots and listings -------------------------------------------------------------- */

static const char *want_type(const track *t, bool child) {
    switch (t->kind) {
    case K_PARALLEL: return child ? "ParallelChildJob" : "ParallelJob";
    case K_PROCESS: return "ProcessJob";
    case K_CUSTOM: return t->custom_type ? "SoakRemote" : "CustomJob";
    default: return "ThreadJob";
    }
}

/* Checks a snapshot of the job (w < 0) or of its child w. */

static void check_snapshot(track *t, int w, bool finished_now) {
    uint64_t id = w < 0 ? t->id : t->id + 1 + (uint64_t)w;
    bgjob_job_info *info = NULL;
    if (EXPECT(bgjob_get_job(id, &info), OKB | gone(t)) != BGJOB_OK) return;
    char what[320] = "";
    unsigned s = bgjob_job_info_state(info);
    const char *type = bgjob_job_info_type_name(info), *name = bgjob_job_info_name(info);
    const char *loc = bgjob_job_info_location(info), *reason = bgjob_job_info_reason(info);
    const char *inst = bgjob_job_info_instance_id(info);
    int64_t begin = bgjob_job_info_begin_time_ns(info), end = bgjob_job_info_end_time_ns(info);
    char defname[32];
    snprintf(defname, sizeof defname, "Job%" PRIu64, id);
    if (bgjob_job_info_id(info) != id)
        snprintf(what, sizeof what, "id %" PRIu64, bgjob_job_info_id(info));
    else if (bgjob_job_info_parent_id(info) != (w < 0 ? 0 : t->id))
        snprintf(what, sizeof what, "parent %" PRIu64, bgjob_job_info_parent_id(info));
    else if (s > BGJOB_STATE_AT_BREAKPOINT)
        snprintf(what, sizeof what, "state %u", s);
    else if (type == NULL || strcmp(type, want_type(t, w >= 0)) != 0)
        snprintf(what, sizeof what, "type %s, want %s", type ? type : "(null)", want_type(t, w >= 0));
    else if (name == NULL ||
             (w < 0 ? (t->named ? strcmp(name, t->name) : strcmp(name, defname)) != 0
                    : (t->kind == K_CUSTOM ? strncmp(name, t->name, strlen(t->name)) != 0
                                           : strcmp(name, defname) != 0)))
        snprintf(what, sizeof what, "name \"%s\"", name ? name : "(null)");
    else if (loc == NULL || strcmp(loc, t->custom_type ? "soak-remote" : "localhost") != 0)
        snprintf(what, sizeof what, "location \"%s\"", loc ? loc : "(null)");
    else if (inst == NULL || strlen(inst) != 36 || inst[14] != '4')
        snprintf(what, sizeof what, "instance id \"%s\"", inst ? inst : "(null)");
    else if (bgjob_job_info_child_count(info) != (w < 0 ? (size_t)t->nchildren : 0))
        snprintf(what, sizeof what, "%zu children", bgjob_job_info_child_count(info));
    else if (w < 0 && t->nchildren && (bgjob_job_info_child_id(info, 0) != t->id + 1 ||
                                       bgjob_job_info_child_id(info, (size_t)t->nchildren - 1) !=
                                           t->id + (uint64_t)t->nchildren ||
                                       bgjob_job_info_child_id(info, (size_t)t->nchildren) != 0))
        snprintf(what, sizeof what, "child ids %" PRIu64 "..", bgjob_job_info_child_id(info, 0));
    else if (end != 0 && end < begin)
        snprintf(what, sizeof what, "%s with begin %" PRId64 " end %" PRId64, bgjob_state_name(s),
                 begin, end);
    else if ((s == BGJOB_STATE_BLOCKED) != (bgjob_job_info_prompt(info) != NULL) &&
             t->kind != K_CUSTOM && t->kind != K_PARALLEL)
        /* One moment of the job: Blocked exactly when it asks for input. (Once a bug found
         * here: state, times and prompt were read one after the other and could tear.) */
        snprintf(what, sizeof what, "%s with%s a prompt", bgjob_state_name(s),
                 bgjob_job_info_prompt(info) ? "" : "out");
    else if (end != 0 && !state_finished(s))
        snprintf(what, sizeof what, "%s with begin %" PRId64 " end %" PRId64, bgjob_state_name(s),
                 begin, end);
    else if (state_finished(s) && end == 0)
        snprintf(what, sizeof what, "%s without an end time", bgjob_state_name(s));
    else if (s == BGJOB_STATE_RUNNING && begin == 0)
        snprintf(what, sizeof what, "Running without a begin time");
    else if (state_finished(s) && s != BGJOB_STATE_FAILED && reason != NULL)
        snprintf(what, sizeof what, "%s with reason \"%s\"", bgjob_state_name(s), reason);
    else if (s == BGJOB_STATE_FAILED && !reason_ok(t, w < 0 && t->nchildren > 0, w < 0 ? 0 : (unsigned)w, s, reason))
        snprintf(what, sizeof what, "Failed with reason \"%s\"", reason ? reason : "(null)");
    else if ((s == BGJOB_STATE_BLOCKED) != (bgjob_job_info_prompt(info) != NULL) &&
             t->kind != K_CUSTOM && t->kind != K_PARALLEL)
        snprintf(what, sizeof what, "%s with prompt %s", bgjob_state_name(s),
                 bgjob_job_info_prompt(info) ? bgjob_job_info_prompt(info) : "(null)");
    if (what[0] == '\0' && w < 0 && t->kind == K_PARALLEL && finished_now) {
        char want[32];
        snprintf(want, sizeof want, "%d/%d completed", t->nchildren, t->nchildren);
        const char *m = bgjob_job_info_status_message(info);
        if (m == NULL || strcmp(m, want) != 0)
            snprintf(what, sizeof what, "status message \"%s\", want \"%s\"", m ? m : "(null)", want);
    }
    if (what[0] == '\0') {
        int32_t pct = -2;
        const char *act = NULL;
        if (bgjob_job_info_progress(info, &pct, &act, NULL) && t->kind != K_PROCESS &&
            (act == NULL || act[0] != 'A' || strtoul(act + 1, NULL, 10) != t->tag || pct < 0 || pct > 100))
            snprintf(what, sizeof what, "progress %d%% \"%s\"", pct, act ? act : "(null)");
    }
    if (what[0] == '\0' && inst != NULL && chance(&g_hosts[t->owner].rng, 20)) {
        /* The lookup by instance id, in either case, finds the same job. */
        char upper[40];
        snprintf(upper, sizeof upper, "%s", inst);
        for (char *c = upper; *c; c++)
            if (*c >= 'a' && *c <= 'f') *c = (char)(*c - 'a' + 'A');
        bgjob_job_info *again = NULL;
        if (EXPECT(bgjob_get_job_by_instance_id(upper, &again), OKB | gone(t)) == BGJOB_OK &&
            bgjob_job_info_id(again) != id)
            snprintf(what, sizeof what, "its instance id finds job %" PRIu64, bgjob_job_info_id(again));
        bgjob_job_info_free(again);
    }
    if (what[0])
        VIOL("job %" PRIu64 " (%s%s) snapshot: %s", id, kind_names[t->kind], w >= 0 ? " child" : "", what);
    bgjob_job_info_free(info);
}

/* The listing by this host's name pattern: exactly its live named jobs. */
static void check_listing(host *h) {
    char pattern[32];
    snprintf(pattern, sizeof pattern, "SOAK-%d-*", h->idx);
    bool children = chance(&h->rng, 30);
    size_t newest = chance(&h->rng, 20) ? 1 + rnd(&h->rng, 3) : 0;
    bgjob_filter *f = NULL;
    if (EXPECT(bgjob_filter_new(&f), OKB) != BGJOB_OK) return;
    EXPECT(bgjob_filter_set_name(f, pattern), OKB);
    if (children) EXPECT(bgjob_filter_set_include_children(f, true), OKB);
    if (newest) EXPECT(bgjob_filter_set_newest(f, newest), OKB);
    bool by_cmd = chance(&h->rng, 20);
    if (by_cmd) EXPECT(bgjob_filter_set_command(f, "soak_*"), OKB);
    bgjob_job_list *list = NULL;
    bgjob_status st = EXPECT(bgjob_get_jobs(f, &list), OKB);
    bgjob_filter_free(f);
    if (st != BGJOB_OK) return;
    /* Expected: every live named job of this host (named by spec) and, with children,
     * its custom children; self-removing jobs may be gone. */
    uint64_t want[MAXOWN * 4];
    size_t nw = 0;
    bool unsure = false;
    for (int i = 0; i < h->nown; i++) {
        track *t = h->own[i];
        if (!t->named || (by_cmd && !t->cmd_set)) continue;
        if (t->self_remove) {
            unsure = true;
            continue;
        }
        want[nw++] = t->id;
        if (children && t->kind == K_CUSTOM)
            for (int k = 0; k < t->nchildren; k++) want[nw++] = t->id + 1 + (uint64_t)k;
    }
    /* sort */
    for (size_t i = 1; i < nw; i++)
        for (size_t j = i; j > 0 && want[j - 1] > want[j]; j--) {
            uint64_t x = want[j];
            want[j] = want[j - 1];
            want[j - 1] = x;
        }
    size_t n = bgjob_job_list_count(list);
    char what[200] = "";
    for (size_t i = 1; i < n && !what[0]; i++)
        if (bgjob_job_list_get(list, i - 1) >= bgjob_job_list_get(list, i))
            snprintf(what, sizeof what, "not sorted at %zu", i);
    if (!what[0] && !unsure) {
        size_t first = newest && nw > newest ? nw - newest : 0;
        if (n != nw - first) snprintf(what, sizeof what, "%zu ids, want %zu", n, nw - first);
        for (size_t i = 0; i < n && !what[0]; i++)
            if (bgjob_job_list_get(list, i) != want[first + i])
                snprintf(what, sizeof what, "id %" PRIu64 " at %zu, want %" PRIu64,
                         bgjob_job_list_get(list, i), i, want[first + i]);
    }
    VCHECK(!what[0], "get_jobs(name \"%s\"%s, newest %zu): %s", pattern,
           children ? ", with children" : "", newest, what);
    bgjob_job_list_free(list);
}

static void op_query(host *h) {
    doing(h, OP_QUERY, 0);
    unsigned r = rnd(&h->rng, 10);
    if (r < 5) {
        track *t = pick(h, receivable);
        if (t == NULL) return;
        atomic_store(&h->op_job, t->id);
        check_snapshot(t, -1, false);
        if (t->nchildren) check_snapshot(t, (int)rnd(&h->rng, (unsigned)t->nchildren), false);
        bgjob_job_state s = 99;
        EXPECT(bgjob_get_state(t->id, &s), OKB | gone(t));
    } else if (r < 8) {
        check_listing(h);
    } else {
        /* Every top-level job, and the ones in a state: sorted, and a state filter lists only
         * jobs that were in that state (they may have moved on since). */
        bgjob_filter *f = NULL;
        EXPECT(bgjob_filter_new(&f), OKB);
        unsigned s = rnd(&h->rng, 11);
        bool with_state = chance(&h->rng, 50);
        if (with_state) EXPECT(bgjob_filter_set_state(f, s), OKB);
        if (chance(&h->rng, 30)) EXPECT(bgjob_filter_set_has_more_data(f, chance(&h->rng, 50)), OKB);
        bgjob_job_list *list = NULL;
        if (EXPECT(bgjob_get_jobs(chance(&h->rng, 30) ? NULL : f, &list), OKB) == BGJOB_OK) {
            size_t n = bgjob_job_list_count(list);
            for (size_t i = 1; i < n; i++)
                VCHECK(bgjob_job_list_get(list, i - 1) < bgjob_job_list_get(list, i),
                       "get_jobs: not sorted at %zu", i);
            VCHECK(bgjob_job_list_get(list, n) == 0, "get_jobs: an id past the end");
        }
        bgjob_job_list_free(list);
        bgjob_filter_free(f);
    }
}

/* ----- registrations and event queues ------------------------------------------------------ */

static bool registrable(const track *t) { return !t->self_remove; }

static void op_register(host *h) {
    doing(h, OP_REGISTER, 0);
    if (chance(&h->rng, 25)) {
        /* A repository-wide registration for a while. */
        /* Its data lives here: once finalized, no call of it runs any more. */
        any2_data d;
        atomic_init(&d.calls, 0);
        atomic_init(&d.finals, 0);
        uint64_t reg = 0;
        EXPECT(bgjob_on_any_state_changed(on_any2, &d, any2_finalizer, &reg), OKB);
        op_receive(h);
        doing(h, OP_REGISTER, 0);
        EXPECT(bgjob_unregister(0, reg), OKB);
        EXPECT(bgjob_unregister(0, reg), B(BGJOB_E_INVALID_ARGUMENT));
        double deadline = now_ms() + (double)BOUND_MS;
        while (atomic_load(&d.finals) == 0 && now_ms() < deadline) sleep_ms(1);
        VCHECK(atomic_load(&d.finals) == 1, "a repository-wide registration was finalized %d times",
               atomic_load(&d.finals));
        if (atomic_load(&d.finals) == 0) abort(); /* its callback may still use the stack */
        return;
    }
    track *t = pick(h, registrable);
    if (t == NULL) return;
    atomic_store(&h->op_job, t->id);
    if (t->reg_active) {
        EXPECT(bgjob_unregister(t->id, t->reg), OKB);
        EXPECT(bgjob_unregister(t->id, t->reg), B(BGJOB_E_INVALID_ARGUMENT));
        t->reg_active = false;
        return;
    }
    /* One late registration per job (its chain is the tail from now on). */
    if (t->reg_count > 0) return;
    bgjob_status st = EXPECT(bgjob_on_state_changed(t->id, on_late, t, late_finalizer, &t->reg), OKB);
    t->reg_count++; /* the finalizer runs even if it failed */
    atomic_fetch_add(&st_late_regs, 1);
    if (st == BGJOB_OK) t->reg_active = true;
}

/* A queue for a few of this host's jobs, opened after their start: each job's events form
 * a gapless legal tail, and a job that finished meanwhile ends its tail finished. */
static void op_eventq(host *h) {
    track *set[3];
    uint64_t ids[3];
    size_t n = 0;
    for (int tries = 0; tries < 6 && n < 3; tries++) {
        track *t = pick(h, registrable);
        bool dup = t == NULL;
        for (size_t k = 0; k < n && !dup; k++) dup = set[k] == t;
        if (!dup) {
            set[n] = t;
            ids[n++] = t->id;
        }
    }
    if (n == 0) return;
    doing(h, OP_EVENTQ, ids[0]);
    bgjob_event_queue *q = NULL;
    if (EXPECT(bgjob_event_queue_open(ids, n, &q), OKB) != BGJOB_OK) return;
    int fd = bgjob_event_queue_fd(q);
    VCHECK(fd >= 0, "event queue fd %d", fd);
    chain c[3];
    for (size_t k = 0; k < n; k++) chain_init(&c[k]);
    for (size_t k = 0; k < n; k++) {
        unsigned r = rnd(&h->rng, 4);
        if (r == 0 && set[k]->kind != K_CUSTOM) stop_job(h, set[k], false);
        else if (r == 1 && set[k]->kind == K_CUSTOM) custom_step(h, set[k]);
        else if (r == 2 && set[k]->kind == K_INPUT) answer(h, set[k]);
    }
    struct pollfd p = {.fd = fd, .events = POLLIN};
    poll(&p, 1, (int)rnd(&h->rng, 10));
    for (int pass = 0; pass < 2; pass++) {
        bgjob_state_event ev;
        bool got = true;
        while (got) {
            got = false;
            if (EXPECT(bgjob_event_queue_next(q, &ev, &got), OKB) != BGJOB_OK || !got) break;
            atomic_fetch_add(&st_qevents, 1);
            size_t k = 0;
            while (k < n && ids[k] != ev.job_id) k++;
            if (k == n) {
                VIOL("an event queue for %zu jobs got an event of job %" PRIu64, n, ev.job_id);
                continue;
            }
            const char *why = chain_add(&c[k], ev.previous_state_info.state, ev.state_info.state);
            if (why) {
                char hist[256];
                VIOL("job %" PRIu64 ": a per-job event queue got %s -> %s: %s (%s)", ev.job_id,
                     bgjob_state_name(ev.previous_state_info.state),
                     bgjob_state_name(ev.state_info.state), why, chain_str(&c[k], hist, sizeof hist));
            }
        }
        if (pass == 0) {
            /* Which are finished now (with their callbacks, so their events are queued). */
            uint64_t done[3];
            size_t nd = 0;
            EXPECT(bgjob_wait(ids, n, BGJOB_WAIT_ALL | BGJOB_WAIT_FORCE, 0, done, &nd),
                   OKB | B(BGJOB_E_TIMEOUT));
            for (size_t i = 0; i < nd && i < 3; i++)
                for (size_t k = 0; k < n; k++)
                    if (ids[k] == done[i]) set[k]->known_finished = true;
        }
    }
    for (size_t k = 0; k < n; k++)
        if (c[k].n > 0 && set[k]->known_finished)
            VCHECK(state_finished(c[k].last), "job %" PRIu64 " is finished but its queue's last "
                   "event moved it to %s", ids[k], bgjob_state_name(c[k].last));
    bgjob_event_queue_free(q);
}

/* ----- pools ------------------------------------------------------------------------------ */

static bool on_own_pool(const host *h, const track *t) {
    return t->pool_kind == POOL_OWN && t->pool_gen == h->pool_gen;
}

static void op_pool(host *h) {
    doing(h, OP_POOL, 0);
    if (h->pool == NULL) {
        EXPECT(bgjob_pool_new(1 + rnd(&h->rng, 3), rnd(&h->rng, 4), &h->pool), OKB);
        return;
    }
    for (int i = 0; i < h->nown; i++)
        if (on_own_pool(h, h->own[i])) h->own[i]->stop_asked = true;
    unsigned r = rnd(&h->rng, 10);
    if (r < 8) {
        /* Shut down: queued jobs Stopped, running ones stopped, its threads gone. */
        EXPECT(bgjob_pool_shutdown(h->pool, BOUND_MS), OKB);
        for (int i = 0; i < h->nown; i++) {
            track *t = h->own[i];
            if (!on_own_pool(h, t)) continue;
            bgjob_job_state s = 99;
            EXPECT(bgjob_get_state(t->id, &s), OKB | gone(t));
            VCHECK(s == 99 || state_finished(s), "job %" PRIu64 " (%s) is %s after its pool was "
                   "shut down", t->id, kind_names[t->kind], bgjob_state_name(s));
        }
        if (r < 3) {
            /* A shut-down pool refuses starts; the spec's user data is finalized. */
            atomic_int fin;
            atomic_init(&fin, 0);
            uint64_t id = 0;
            EXPECT(bgjob_start_fn(inner_work, &fin, count_final, h->pool, &id), B(BGJOB_E_SHUT_DOWN));
            bgjob_spec *spec = NULL;
            EXPECT(bgjob_spec_new(&spec), OKB);
            EXPECT(bgjob_spec_set_work(spec, inner_work, &fin, count_final), OKB);
            EXPECT(bgjob_spec_set_pool(spec, h->pool), OKB);
            EXPECT(bgjob_start(spec, &id), B(BGJOB_E_SHUT_DOWN));
            VCHECK(atomic_load(&fin) == 2, "starts on a shut-down pool finalized %d of 2",
                   atomic_load(&fin));
            EXPECT(bgjob_pool_shutdown(h->pool, 0), OKB); /* repeatable */
        }
    }
    /* Freed (without a shutdown: queued jobs Stopped, running ones asked to stop). */
    atomic_fetch_add(&st_pool_cycles, 1);
    bgjob_pool_free(h->pool);
    h->pool = NULL;
    h->pool_gen++;
}

/* ----- deliberate misuse ------------------------------------------------------------------- */

static void op_bad(host *h) {
    doing(h, OP_BAD, 0);
    uint64_t gone_id = a_removed_id(h);
    uint64_t unknown = UINT64_MAX - 1 - rnd(&h->rng, 1000);
    uint64_t id = chance(&h->rng, 50) && gone_id ? gone_id : unknown;
    bgjob_job_state s;
    bgjob_records *recs = NULL;
    bgjob_job_info *info = NULL;
    uint64_t reg = 0;
    atomic_int fin;
    atomic_init(&fin, 0);
    track *t = NULL;
    switch (rnd(&h->rng, 24)) {
    case 0: EXPECT(bgjob_get_state(id, &s), B(BGJOB_E_NO_SUCH_JOB)); break;
    case 1: EXPECT(bgjob_get_job(id, &info), B(BGJOB_E_NO_SUCH_JOB)); break;
    case 2: EXPECT(bgjob_receive(id, 0, 0, 0, &recs), B(BGJOB_E_NO_SUCH_JOB)); break;
    case 3: EXPECT(bgjob_stop(id, 10), B(BGJOB_E_NO_SUCH_JOB)); break;
    case 4: EXPECT(bgjob_remove(id, chance(&h->rng, 50)), B(BGJOB_E_NO_SUCH_JOB)); break;
    case 5: {
        uint64_t two[2] = {id, 0};
        size_t n = 1;
        if (h->nown) two[n++] = h->own[0]->id;
        EXPECT(bgjob_wait(two, n, BGJOB_WAIT_ANY, 10, NULL, NULL), B(BGJOB_E_NO_SUCH_JOB));
        break;
    }
    case 6: EXPECT(bgjob_suspend(id), B(BGJOB_E_NO_SUCH_JOB));
            EXPECT(bgjob_resume(id), B(BGJOB_E_NO_SUCH_JOB)); break;
    case 7: EXPECT(bgjob_send_input(id, "x", 1), B(BGJOB_E_NO_SUCH_JOB)); break;
    case 8:
        EXPECT(bgjob_on_state_changed(id, count_call, &fin, count_final, &reg), B(BGJOB_E_NO_SUCH_JOB));
        VCHECK(atomic_load(&fin) == 1, "a refused registration finalized its data %d times",
               atomic_load(&fin));
        break;
    case 9: {
        bgjob_event_queue *q = NULL;
        EXPECT(bgjob_event_queue_open(&id, 1, &q), B(BGJOB_E_NO_SUCH_JOB));
        break;
    }
    case 10: EXPECT(bgjob_custom_set_state(id, BGJOB_STATE_RUNNING, NULL), B(BGJOB_E_NO_SUCH_JOB)); break;
    case 11: EXPECT(bgjob_get_state(0, &s), B(BGJOB_E_NO_SUCH_JOB)); break;
    case 12:
        if ((t = pick(h, receivable)) == NULL || t->self_remove) break;
        EXPECT(bgjob_receive(t->id, BGJOB_RECEIVE_AUTO_REMOVE, 0, 0, &recs), B(BGJOB_E_INVALID_ARGUMENT));
        EXPECT(bgjob_receive(t->id, BGJOB_RECEIVE_KEEP | BGJOB_RECEIVE_WAIT | BGJOB_RECEIVE_AUTO_REMOVE,
                             0, 0, &recs), B(BGJOB_E_INVALID_ARGUMENT));
        EXPECT(bgjob_receive(t->id, 0x40, 0, 0, &recs), B(BGJOB_E_INVALID_ARGUMENT));
        EXPECT(bgjob_receive(t->id, BGJOB_RECEIVE_WAIT, 0, -5, &recs), B(BGJOB_E_INVALID_ARGUMENT));
        break;
    case 13:
        if ((t = pick(h, receivable)) == NULL || t->self_remove) break;
        EXPECT(bgjob_wait(&t->id, 1, 7, 0, NULL, NULL), B(BGJOB_E_INVALID_ARGUMENT));
        EXPECT(bgjob_wait(&t->id, 1, BGJOB_WAIT_ALL, -3, NULL, NULL), B(BGJOB_E_INVALID_ARGUMENT));
        EXPECT(bgjob_stop(t->id, -9), B(BGJOB_E_INVALID_ARGUMENT));
        break;
    case 14:
        /* A child cannot be removed on its own. */
        for (int i = 0; i < h->nown; i++)
            if (h->own[i]->nchildren) {
                t = h->own[i];
                EXPECT(bgjob_remove(t->id + 1 + rnd(&h->rng, (unsigned)t->nchildren), chance(&h->rng, 50)),
                       B(BGJOB_E_CHILD_JOB));
                break;
            }
        break;
    case 15:
        /* An unfinished job is not removed without force. */
        for (int i = 0; i < h->nown; i++) {
            t = h->own[i];
            bool unfinished = (t->kind == K_UNTIL_STOP && !t->stop_asked) ||
                              (t->kind == K_CUSTOM && !custom_finished(t) && !t->stop_asked);
            if (unfinished) {
                EXPECT(bgjob_remove(t->id, false), B(BGJOB_E_NOT_FINISHED));
                break;
            }
        }
        break;
    case 16:
        /* Finished jobs refuse suspend and input; a finished custom job refuses writes. */
        for (int i = 0; i < h->nown; i++) {
            t = h->own[i];
            if (!t->known_finished || t->self_remove) continue;
            /* (A parent "suspends its running children": none, and says OK.) */
            EXPECT(bgjob_suspend(t->id), t->nchildren ? OKB : B(BGJOB_E_INVALID_STATE));
            if (t->nchildren == 0) EXPECT(bgjob_send_input(t->id, "x", 1), B(BGJOB_E_INVALID_STATE));
            EXPECT(bgjob_custom_write_text(t->id, BGJOB_STREAM_OUTPUT, "x"), B(BGJOB_E_INVALID_STATE));
            EXPECT(bgjob_stop(t->id, 0), OKB); /* stopping a finished job does nothing */
            EXPECT(bgjob_resume(t->id), OKB);
            break;
        }
        break;
    case 17:
        /* Custom-only calls on a job that is not custom; bad custom arguments. */
        if ((t = pick(h, receivable)) == NULL || t->self_remove) break;
        if (t->kind != K_CUSTOM) {
            EXPECT(bgjob_custom_set_state(t->id, BGJOB_STATE_COMPLETED, NULL), B(BGJOB_E_INVALID_STATE));
            EXPECT(bgjob_custom_set_status_message(t->id, "x"), B(BGJOB_E_INVALID_STATE));
        } else {
            EXPECT(bgjob_custom_set_state(t->id, 42, NULL), B(BGJOB_E_INVALID_ARGUMENT));
            EXPECT(bgjob_custom_write(t->nchildren ? t->id + 1 : t->id, 99, "x", 1),
                   B(BGJOB_E_INVALID_ARGUMENT));
        }
        break;
    case 18: {
        /* Specs that cannot start are refused, and their user data finalized once. */
        bgjob_spec *spec = NULL;
        EXPECT(bgjob_spec_new(&spec), OKB);
        EXPECT(bgjob_start(spec, &id), B(BGJOB_E_INVALID_ARGUMENT)); /* neither work nor argv */
        const char *argv[] = {"/bin/true"};
        EXPECT(bgjob_spec_new(&spec), OKB);
        EXPECT(bgjob_spec_set_work(spec, inner_work, &fin, count_final), OKB);
        EXPECT(bgjob_spec_set_argv(spec, argv, 1), OKB);
        EXPECT(bgjob_start(spec, &id), B(BGJOB_E_INVALID_ARGUMENT)); /* both */
        EXPECT(bgjob_spec_new(&spec), OKB);
        EXPECT(bgjob_spec_set_work(spec, inner_work, &fin, count_final), OKB);
        EXPECT(bgjob_spec_set_location(spec, "elsewhere"), OKB);
        EXPECT(bgjob_start(spec, &id), B(BGJOB_E_INVALID_ARGUMENT)); /* custom-only setting */
        EXPECT(bgjob_spec_new(&spec), OKB);
        EXPECT(bgjob_spec_set_work(spec, inner_work, &fin, count_final), OKB);
        EXPECT(bgjob_spec_add_input(spec, "a", 1), OKB);
        EXPECT(bgjob_spec_add_input(spec, NULL, 3), B(BGJOB_E_INVALID_ARGUMENT));
        EXPECT(bgjob_run_inline(spec, &id), B(BGJOB_E_INVALID_ARGUMENT)); /* parallel inline */
        EXPECT(bgjob_spec_new(&spec), OKB);
        EXPECT(bgjob_spec_set_work(spec, inner_work, &fin, count_final), OKB);
        EXPECT(bgjob_spec_set_argv(spec, NULL, 0), B(BGJOB_E_INVALID_ARGUMENT));
        EXPECT(bgjob_spec_set_stop_grace(spec, -1), B(BGJOB_E_INVALID_ARGUMENT));
        EXPECT(bgjob_spec_set_output_mode(spec, 7), B(BGJOB_E_INVALID_ARGUMENT));
        bgjob_spec_free(spec);
        VCHECK(atomic_load(&fin) == 4, "refused specs finalized their data %d times, want 4",
               atomic_load(&fin));
        break;
    }
    case 19: {
        /* A process job whose working directory does not exist is not made. */
        bgjob_spec *spec = NULL;
        const char *argv[] = {"/bin/true"};
        EXPECT(bgjob_spec_new(&spec), OKB);
        EXPECT(bgjob_spec_set_argv(spec, argv, 1), OKB);
        EXPECT(bgjob_spec_set_working_directory(spec, "/nonexistent/soak-dir"), OKB);
        if (EXPECT(bgjob_start(spec, &id), B(BGJOB_E_SYSTEM)) == BGJOB_E_SYSTEM)
            VCHECK(bgjob_last_error_errno() == ENOENT, "errno %d, want ENOENT", bgjob_last_error_errno());
        break;
    }
    case 20: {
        bgjob_filter *f = NULL;
        EXPECT(bgjob_filter_new(&f), OKB);
        EXPECT(bgjob_filter_set_state(f, 11), B(BGJOB_E_INVALID_ARGUMENT));
        EXPECT(bgjob_filter_set_name(f, NULL), B(BGJOB_E_INVALID_ARGUMENT));
        bgjob_filter_free(f);
        EXPECT(bgjob_get_job_by_instance_id("00000000-0000-4000-8000-000000000000", &info),
               B(BGJOB_E_NO_SUCH_JOB));
        EXPECT(bgjob_get_job_by_instance_id("not a uuid", &info),
               B(BGJOB_E_NO_SUCH_JOB) | B(BGJOB_E_INVALID_ARGUMENT));
        break;
    }
    case 21:
        EXPECT(bgjob_configure_default_pool(2, 0), B(BGJOB_E_ALREADY_INITIALIZED));
        EXPECT(bgjob_unregister(0, UINT64_MAX - 3), B(BGJOB_E_INVALID_ARGUMENT));
        break;
    case 22:
        /* The names of things, and the neutral answers for NULL. */
        VCHECK(strcmp(bgjob_status_name(BGJOB_E_NO_SUCH_JOB), "BGJOB_E_NO_SUCH_JOB") == 0 &&
                   strcmp(bgjob_status_name(999), "BGJOB_E_UNKNOWN") == 0 &&
                   strcmp(bgjob_state_name(BGJOB_STATE_AT_BREAKPOINT), "AtBreakpoint") == 0 &&
                   strcmp(bgjob_state_name(77), "Unknown") == 0 &&
                   strcmp(bgjob_stream_name(BGJOB_STREAM_PROGRESS), "Progress") == 0 &&
                   strcmp(bgjob_stream_name(77), "Unknown") == 0 && !bgjob_state_is_finished(77) &&
                   bgjob_event_queue_fd(NULL) == -1 && bgjob_records_count(NULL) == 0 &&
                   bgjob_job_list_count(NULL) == 0 && bgjob_job_info_id(NULL) == 0 &&
                   bgjob_context_job_id(NULL) == 0 && !bgjob_context_stop_requested(NULL) &&
                   strcmp(bgjob_version(), BGJOB_VERSION_STRING) == 0,
               "a name or neutral value is wrong");
        bgjob_records_free(NULL);
        bgjob_job_info_free(NULL);
        bgjob_job_list_free(NULL);
        bgjob_filter_free(NULL);
        bgjob_spec_free(NULL);
        bgjob_pool_free(NULL);
        bgjob_event_queue_free(NULL);
        bgjob_buffer_free(NULL, 0);
        break;
    default:
        /* A process job cannot be suspended. */
        for (int i = 0; i < h->nown; i++)
            if (h->own[i]->kind == K_PROCESS) {
                EXPECT(bgjob_suspend(h->own[i]->id), B(BGJOB_E_INVALID_STATE));
                break;
            }
        break;
    }
    bgjob_records_free(recs);
    bgjob_job_info_free(info);
}

/* ----- retiring a job --------------------------------------------------------------------- */

enum { R_PLAIN, R_AUTO, R_FORCE_AFTER, R_FORCE_EARLY };

/* Makes a job finished (answering, resuming, driving or stopping it as needed) and waits
 * for it, with its callbacks; true if it is finished. */
static bool make_finished(host *h, track *t) {
    double soft = now_ms() + 200.0 * g_slow, hard = now_ms() + (double)BOUND_MS;
    int iterations = 0;
    double longest_wait = 0;
    for (;; iterations++) {
        if (t->suspend_asked) {
            EXPECT(bgjob_resume(t->id), OKB | gone(t));
            t->suspend_asked = false;
        }
        bool late = now_ms() > soft;
        if (late && !t->stop_asked && !(t->kind == K_CUSTOM && custom_finished(t))) {
            /* Queued behind its pool's other jobs, or waiting for its host: stop it. */
            stop_job(h, t, chance(&h->rng, 50));
        } else if (t->kind == K_CUSTOM && !custom_finished(t)) {
            if (chance(&h->rng, 50)) {
                for (int w = 0; w < t->nw; w++) {
                    if (t->cstate[w] == BGJOB_STATE_NOT_STARTED || t->cstate[w] == BGJOB_STATE_BLOCKED ||
                        t->cstate[w] == BGJOB_STATE_DISCONNECTED)
                        custom_move(t, (unsigned)w, BGJOB_STATE_RUNNING);
                    if (t->cstate[w] == BGJOB_STATE_RUNNING) {
                        custom_write(h, t, (unsigned)w);
                        custom_move(t, (unsigned)w, chance(&h->rng, 80) ? BGJOB_STATE_COMPLETED
                                                                       : BGJOB_STATE_FAILED);
                    }
                }
            } else {
                stop_job(h, t, true);
            }
        } else if (t->kind == K_INPUT && !t->stop_asked && chance(&h->rng, 70)) {
            answer(h, t);
        } else if ((t->kind == K_UNTIL_STOP || (t->kind == K_PROCESS && t->pkind == P_SLEEP) ||
                    t->kind == K_INPUT) && !t->stop_asked) {
            stop_job(h, t, chance(&h->rng, 50));
        }
        uint64_t id = t->id;
        int64_t timeout = late ? BOUND_MS : 20;
        double w0 = now_ms();
        bgjob_status st = EXPECT(bgjob_wait(&id, 1, BGJOB_WAIT_ALL | BGJOB_WAIT_FORCE, timeout, NULL, NULL),
                                 OKB | B(BGJOB_E_TIMEOUT) | B(BGJOB_E_BLOCKED) | gone(t));
        if (now_ms() - w0 > longest_wait) longest_wait = now_ms() - w0;
        if (st == BGJOB_OK) {
            t->known_finished = true;
            return true;
        }
        if (st == BGJOB_E_NO_SUCH_JOB) return false;
        if (now_ms() > hard) {
            bgjob_job_state s = 99;
            bgjob_get_state(t->id, &s);
            VIOL("job %" PRIu64 " (%s) did not finish within %" PRId64 " ms (it is %s; %s pool%s%s, "
                 "%d answers; %d rounds, the longest wait %.0f ms)", t->id, kind_names[t->kind], BOUND_MS, bgjob_state_name(s),
                 t->pool_kind == POOL_OWN ? "own" : t->pool_kind == POOL_SHARED ? "shared" : "default",
                 t->stop_asked ? ", stop asked" : "", t->suspend_asked ? ", suspend asked" : "",
                 t->answered, iterations, longest_wait);
            return false;
        }
    }
}

/* The final state a job may have, from what was done to it. */
static void check_final_state(track *t) {
    unsigned s = t->final_state;
    bool ok;
    switch (t->kind) {
    case K_OUTPUT:
    case K_COOP:
    case K_NESTED:
        ok = s == BGJOB_STATE_COMPLETED || (t->stop_asked && s == BGJOB_STATE_STOPPED);
        break;
    case K_FAIL_RC:
    case K_FAIL_CTX:
        ok = s == BGJOB_STATE_FAILED || (t->stop_asked && s == BGJOB_STATE_STOPPED);
        break;
    case K_UNTIL_STOP:
        ok = s == BGJOB_STATE_STOPPED;
        break;
    case K_INPUT:
        ok = (s == BGJOB_STATE_COMPLETED && t->answered == t->rounds) ||
             (t->stop_asked && s == BGJOB_STATE_STOPPED);
        break;
    case K_PROCESS:
        ok = s == (t->pkind == P_SLEEP   ? BGJOB_STATE_STOPPED
                   : t->pkind == P_MISSING || t->exit_code ? BGJOB_STATE_FAILED
                                                           : BGJOB_STATE_COMPLETED) ||
             (t->stop_asked && s == BGJOB_STATE_STOPPED);
        break;
    default: /* parents and custom jobs: checked against their children by the monitor */
        ok = state_finished(s);
        break;
    }
    VCHECK(ok, "job %" PRIu64 " (%s%s%s) ended %s", t->id, kind_names[t->kind],
           t->stop_asked ? ", stop asked" : "", t->is_inline ? ", inline" : "", bgjob_state_name(s));
}

static void retire(host *h, track *t, int mode) {
    doing(h, OP_RETIRE, t->id);
    bgjob_status st;
    if (mode == R_FORCE_EARLY && t->published && chance(&h->rng, 50)) {
        /* A forced remove racing a helper's receive: the helper may find the job gone. */
        atomic_store(&t->race_remove, true);
        pthread_mutex_lock(&g_hosts[h->idx].share_mu);
        if (h->shared == t) h->shared = NULL;
        pthread_mutex_unlock(&g_hosts[h->idx].share_mu);
        t->published = false;
    } else {
        unpublish(h, t);
    }
    if (t->self_remove) {
        /* Its finished callback removes it: exactly one remove succeeds. */
        make_finished(h, t);
        st = EXPECT(bgjob_remove(t->id, chance(&h->rng, 50)), OKB | B(BGJOB_E_NO_SUCH_JOB));
        /* The callback's remove takes effect before it returns to the callback: count it
         * once the callback is over (its registration finalized after it returned). */
        double deadline = now_ms() + (double)BOUND_MS;
        while (atomic_load(&t->cb_finals) == 0 && now_ms() < deadline) sleep_ms(1);
        int removes = (st == BGJOB_OK) + atomic_load(&t->cb_removed);
        VCHECK(removes == 1, "self-removing job %" PRIu64 " was removed %d times", t->id, removes);
        pthread_mutex_lock(&t->mu);
        t->final_state = t->cb.last;
        pthread_mutex_unlock(&t->mu);
    } else if (mode == R_FORCE_EARLY) {
        if (t->kind == K_UNTIL_STOP && !t->stop_asked)
            EXPECT(bgjob_remove(t->id, false), B(BGJOB_E_NOT_FINISHED));
        if (t->kind == K_CUSTOM) {
            /* The stop callback ends it; never at a breakpoint (see custom_step). */
        }
        t->stop_asked = true;
        EXPECT(bgjob_remove(t->id, true), OKB);
        pthread_mutex_lock(&t->mu);
        t->final_state = t->spec_cb ? t->cb.last : 99;
        pthread_mutex_unlock(&t->mu);
    } else {
        if (!make_finished(h, t)) {
            t->stop_asked = true;
            EXPECT(bgjob_remove(t->id, true), OKB);
            pthread_mutex_lock(&t->mu);
            t->final_state = t->spec_cb ? t->cb.last : 99;
            pthread_mutex_unlock(&t->mu);
        } else {
            bgjob_job_state s = 99;
            EXPECT(bgjob_get_state(t->id, &s), OKB);
            t->final_state = s;
            if (t->kind == K_CUSTOM) custom_sync(t);
            check_final_state(t);
            if (t->spec_cb) {
                pthread_mutex_lock(&t->mu);
                unsigned last = t->cb.last;
                pthread_mutex_unlock(&t->mu);
                VCHECK(last == s, "job %" PRIu64 " (%s) is %s after a wait, its last callback said %s",
                       t->id, kind_names[t->kind], bgjob_state_name(s), bgjob_state_name(last));
            }
            if (is_thread_leaf(t) && t->spec_cb)
                VCHECK(atomic_load(&t->finals_at_finish) == 2, "job %" PRIu64 ": the work finalizer "
                       "had run %d times at the finished callback", t->id,
                       atomic_load(&t->finals_at_finish) - 1);
            check_snapshot(t, -1, true);
            for (int k = 0; k < t->nchildren; k++) check_snapshot(t, k, true);
            if (chance(&h->rng, 30)) owner_receive(h, t, BGJOB_RECEIVE_KEEP, 0, 0);
            /* Received to the end. */
            if (mode == R_AUTO) {
                owner_receive(h, t, BGJOB_RECEIVE_WAIT | BGJOB_RECEIVE_AUTO_REMOVE, 0, BOUND_MS);
                EXPECT(bgjob_get_state(t->id, &s), B(BGJOB_E_NO_SUCH_JOB));
            } else {
                size_t max = chance(&h->rng, 50) ? 0 : 1 + rnd(&h->rng, 16);
                for (int i = 0; i < 10000; i++) {
                    bgjob_records *recs = NULL;
                    if (EXPECT(bgjob_receive(t->id, 0, max, 0, &recs), OKB) != BGJOB_OK) break;
                    size_t n = bgjob_records_count(recs);
                    take_batch(t, recs, false, max, true, &t->owner_last_seq, "the owner's final");
                    bgjob_records_free(recs);
                    if (n == 0) break;
                }
                bgjob_job_info *info = NULL;
                if (EXPECT(bgjob_get_job(t->id, &info), OKB) == BGJOB_OK)
                    VCHECK(!bgjob_job_info_has_more_data(info), "job %" PRIu64 " has more data "
                           "after it was received to the end", t->id);
                bgjob_job_info_free(info);
                EXPECT(bgjob_remove(t->id, mode == R_FORCE_AFTER), OKB);
            }
            t->received_to_end = true;
            atomic_fetch_add(&st_to_end, 1);
            check_all_received(t);
        }
    }
    t->removed = true;
    /* Gone, children too. */
    bgjob_job_state s;
    EXPECT(bgjob_get_state(t->id, &s), B(BGJOB_E_NO_SUCH_JOB));
    for (int k = 0; k < t->nchildren; k++)
        EXPECT(bgjob_get_state(t->id + 1 + (uint64_t)k, &s), B(BGJOB_E_NO_SUCH_JOB));
    remember_removed(h, t->id);
    check_finalizers(t, "after its remove");
    if (is_thread_leaf(t) || t->kind == K_PARALLEL)
        for (int w = 0; w < t->nw; w++) {
            int runs = atomic_load(&t->work_runs[w]);
            VCHECK(runs <= 1, "job %" PRIu64 " writer %d: the work ran %d times", t->id, w, runs);
            if (runs == 1)
                VCHECK(atomic_load(&t->work_id[w]) == writer_id(t, (unsigned)w),
                       "job %" PRIu64 " writer %d: the context said job %" PRIu64, t->id, w,
                       (uint64_t)atomic_load(&t->work_id[w]));
        }
    if (t->kind == K_NESTED && t->received_to_end && t->final_state == BGJOB_STATE_COMPLETED)
        VCHECK(atomic_load(&t->inner_ok) == 1, "nested job %" PRIu64 ": its inner job was not "
               "waited for, received and removed", t->id);
    if (t->final_state <= BGJOB_STATE_STOPPED && t->final_state >= BGJOB_STATE_COMPLETED)
        atomic_fetch_add(&st_by_final[t->final_state - BGJOB_STATE_COMPLETED], 1);
    own_drop(h, t);
    hand_to_monitor(t);
}

static void op_retire(host *h) {
    if (h->nown == 0) return;
    track *t = h->own[rnd(&h->rng, (unsigned)h->nown)];
    unsigned r = rnd(&h->rng, 10);
    retire(h, t, r < 5 ? R_PLAIN : r < 7 ? R_AUTO : r < 8 ? R_FORCE_AFTER : R_FORCE_EARLY);
}

static void retire_all(host *h, int op) {
    while (h->nown > 0) {
        doing(h, op, h->own[0]->id);
        retire(h, h->own[0], chance(&h->rng, 50) ? R_PLAIN : R_AUTO);
    }
    if (h->pool != NULL) {
        EXPECT(bgjob_pool_shutdown(h->pool, BOUND_MS), OKB);
        bgjob_pool_free(h->pool);
        h->pool = NULL;
        h->pool_gen++;
    }
}

/* ----- the host thread's loop ------------------------------------------------------------- */

static double g_end_ms, g_warm_ms;
static pthread_barrier_t g_warm_barrier;

static void *host_main(void *arg) {
    host *h = arg;
    tl_who = h->idx;
    bool warmed = false;
    while (!atomic_load(&g_stop) && now_ms() < g_end_ms) {
        if (!warmed && now_ms() >= g_warm_ms) {
            /* Quiescent point for the start sample of the resident set and threads. */
            retire_all(h, OP_WARMUP);
            doing(h, OP_WARMUP, 0);
            pthread_barrier_wait(&g_warm_barrier);
            pthread_barrier_wait(&g_warm_barrier);
            warmed = true;
            continue;
        }
        if (h->nown >= MAXOWN) {
            op_retire(h);
            continue;
        }
        unsigned r = rnd(&h->rng, 1000);
        if (r < 170) op_start(h);
        else if (r < 220) op_parallel(h);
        else if (r < 232) op_process(h, false);
        else if (r < 255) op_custom_new(h);
        else if (r < 300) op_custom_drive(h);
        else if (r < 310) op_inline(h);
        else if (r < 470) op_receive(h);
        else if (r < 560) op_wait(h);
        else if (r < 600) op_stop(h);
        else if (r < 640) op_suspend(h);
        else if (r < 690) op_input(h);
        else if (r < 750) op_query(h);
        else if (r < 775) op_register(h);
        else if (r < 795) op_eventq(h);
        else if (r < 805) op_pool(h);
        else if (r < 850) op_bad(h);
        else if (r < 900) op_help(h);
        else op_retire(h);
    }
    if (!warmed) {
        /* A run too short (or ended early) to reach the warm-up point. */
        retire_all(h, OP_WARMUP);
        doing(h, OP_WARMUP, 0);
        pthread_barrier_wait(&g_warm_barrier);
        pthread_barrier_wait(&g_warm_barrier);
    }
    retire_all(h, OP_DRAIN);
    doing(h, OP_DONE, 0);
    atomic_store(&h->running, false);
    return NULL;
}

/* ===== the monitor ======================================================================== */

static bgjob_event_queue *g_queue;
static atomic_bool g_monitor_stop;

static void drain_queue(void) {
    bgjob_state_event ev;
    bool got = true;
    while (got) {
        got = false;
        if (EXPECT(bgjob_event_queue_next(g_queue, &ev, &got), OKB) != BGJOB_OK || !got) break;
        atomic_fetch_add(&st_qevents, 1);
        shard *s = shard_of(ev.job_id);
        pthread_mutex_lock(&s->mu);
        entry *en = entry_find(s, ev.job_id, true);
        const char *why = chain_add(&en->q, ev.previous_state_info.state, ev.state_info.state);
        char hist[256];
        if (why) chain_str(&en->q, hist, sizeof hist);
        pthread_mutex_unlock(&s->mu);
        if (why)
            VIOL("job %" PRIu64 ": the event queue got %s -> %s: %s (%s)", ev.job_id,
                 bgjob_state_name(ev.previous_state_info.state),
                 bgjob_state_name(ev.state_info.state), why, hist);
    }
}

/* The checks of a retired job that need every observer's chain: its own, its children's
 * and its inner job's. */
static void finish_check(track *t) {
    uint64_t fam[1 + MAXW + 1];
    int nf = 0;
    fam[nf++] = t->id;
    for (int k = 0; k < t->nchildren; k++) fam[nf++] = t->id + 1 + (uint64_t)k;
    uint64_t inner = atomic_load(&t->inner_id);
    if (inner) fam[nf++] = inner;
    unsigned last[1 + MAXW + 1];
    char h1[256], h2[256];
    for (int i = 0; i < nf; i++) {
        entry *en = entry_take(fam[i]);
        last[i] = 99;
        if (en == NULL) {
            VIOL("job %" PRIu64 " (%s%s): the repository-wide callback never saw it", fam[i],
                 kind_names[t->kind], i == 0 ? "" : " child");
            continue;
        }
        last[i] = en->any.last;
        VCHECK(en->any.n > 0 && en->any.first_prev == BGJOB_STATE_NOT_STARTED && state_finished(en->any.last),
               "job %" PRIu64 " (%s): the repository-wide callback saw %s", fam[i], kind_names[t->kind],
               chain_str(&en->any, h1, sizeof h1));
        VCHECK(chain_same(&en->any, &en->q), "job %" PRIu64 " (%s): the repository-wide callback "
               "saw %s, the event queue %s", fam[i], kind_names[t->kind],
               chain_str(&en->any, h1, sizeof h1), chain_str(&en->q, h2, sizeof h2));
        if (i == 0 && t->spec_cb) {
            pthread_mutex_lock(&t->mu);
            bool same = chain_same(&en->any, &t->cb);
            if (!same) chain_str(&t->cb, h2, sizeof h2);
            pthread_mutex_unlock(&t->mu);
            VCHECK(same, "job %" PRIu64 " (%s): its own callback saw %s, the repository-wide one %s",
                   t->id, kind_names[t->kind], h2, chain_str(&en->any, h1, sizeof h1));
            VCHECK(atomic_load(&t->cb_job_id) == t->id, "job %" PRIu64 ": its callback saw job %" PRIu64,
                   t->id, (uint64_t)atomic_load(&t->cb_job_id));
        }
        if (i == 0 && t->final_state != 99)
            VCHECK(en->any.last == t->final_state, "job %" PRIu64 " (%s) ended %s, its callbacks "
                   "ended at %s", t->id, kind_names[t->kind], bgjob_state_name(t->final_state),
                   bgjob_state_name(en->any.last));
        free(en);
    }
    if (t->reg_count > 0) {
        pthread_mutex_lock(&t->mu);
        chain c = t->regc;
        pthread_mutex_unlock(&t->mu);
        VCHECK(c.bad == 0, "job %" PRIu64 ": its late registration saw a broken chain", t->id);
    }
    if (t->nchildren > 0 && nf > t->nchildren) {
        /* A parent's end follows its children's (ContainerParentJob's rule). */
        bool failed = false, stopped = false;
        for (int k = 1; k <= t->nchildren; k++) {
            failed |= last[k] == BGJOB_STATE_FAILED;
            stopped |= last[k] == BGJOB_STATE_STOPPED;
        }
        unsigned p = last[0];
        bool ok = failed ? p == BGJOB_STATE_FAILED
                 : stopped ? p == BGJOB_STATE_STOPPED
                           : p == BGJOB_STATE_COMPLETED || (t->stop_asked && p == BGJOB_STATE_STOPPED);
        if (!ok) {
            char ch[128];
            size_t off = 0;
            for (int k = 1; k <= t->nchildren && off < sizeof ch; k++)
                off += (size_t)snprintf(ch + off, sizeof ch - off, " %s", bgjob_state_name(last[k]));
            VIOL("parent job %" PRIu64 " (%s%s) ended %s, its children:%s", t->id, kind_names[t->kind],
                 t->stop_asked ? ", stop asked" : "", bgjob_state_name(p), ch);
        }
    }
}

static long g_rss_start = -1, g_threads_warm = -1;

static void print_progress(void) {
    printf("soak: %4.0f s: %lld jobs (%lld live), %lld records, %lld callbacks, %lld queue events, "
           "%lld errors checked, %d violations; RSS %ld KiB, threads %ld\n",
           (now_ms() - g_t0) / 1000.0, (long long)atomic_load(&st_jobs),
           (long long)atomic_load(&st_live), (long long)atomic_load(&st_records),
           (long long)atomic_load(&st_callbacks), (long long)atomic_load(&st_qevents),
           (long long)atomic_load(&st_errors), atomic_load(&g_violations), proc_status("VmRSS"),
           proc_status("Threads"));
    fflush(stdout);
}

static void watchdog(void) {
    double now = now_ms();
    for (int i = 0; i <= g_threads; i++) {
        host *h = &g_hosts[i];
        if (!atomic_load(&h->running)) continue;
        double idle = now - (double)atomic_load(&h->op_since);
        if (idle < (double)WATCHDOG_MS) continue;
        fprintf(stderr, "soak: WATCHDOG: %s made no progress for %.0f s; what every thread is doing:\n",
                i == g_threads ? "the main thread" : "a host thread", idle / 1000.0);
        for (int k = 0; k <= g_threads; k++) {
            host *o = &g_hosts[k];
            int op = atomic_load(&o->op);
            fprintf(stderr, "  %s %d: %s%s job %" PRIu64 " for %.1f s (%d jobs held)\n",
                    k == g_threads ? "main" : "host", k, op_names[op >= 0 && op < OP__N ? op : 0],
                    atomic_load(&o->running) ? "" : " (ended)", (uint64_t)atomic_load(&o->op_job),
                    (now - (double)atomic_load(&o->op_since)) / 1000.0, o->nown);
        }
        fprintf(stderr, "soak: %lld jobs, %d violations; aborting: a hang is a failure\n",
                (long long)atomic_load(&st_jobs), atomic_load(&g_violations));
        fflush(stderr);
        abort();
    }
}

static void *monitor_main(void *arg) {
    (void)arg;
    tl_who = WHO_MONITOR;
    double next_print = now_ms() + 30000.0;
    for (;;) {
        bool stopping = atomic_load(&g_monitor_stop);
        struct pollfd p = {.fd = bgjob_event_queue_fd(g_queue), .events = POLLIN};
        poll(&p, 1, stopping ? 0 : 50);
        drain_queue();
        /* Every job on the list was removed before it got there, so its events were queued
         * before that: the drain after taking the list has them all. */
        pthread_mutex_lock(&g_retired_mu);
        track *list = g_retired;
        g_retired = NULL;
        pthread_mutex_unlock(&g_retired_mu);
        drain_queue();
        while (list != NULL) {
            track *t = list;
            list = t->next;
            /* A helper may still hold it. A job its own callback removed was out of the
             * repository before the rest of that change's delivery (the repository-wide
             * callbacks, the event queue) was over: give that a moment (bounded). */
            if (atomic_load(&t->sharers) > 0 ||
                (t->self_remove && !entry_settled(t->id) && now_ms() - t->retired_ms < (double)BOUND_MS)) {
                hand_to_monitor(t);
                atomic_fetch_sub(&g_retired_n, 1);
                continue;
            }
            finish_check(t);
            atomic_fetch_sub(&g_retired_n, 1);
            track_free(t);
        }
        if (now_ms() >= next_print) {
            print_progress();
            next_print += 30000.0;
        }
        watchdog();
        if (stopping && atomic_load(&g_retired_n) == 0) break;
    }
    return NULL;
}

/* ===== main ============================================================================== */

static long env_long(const char *name, long dflt) {
    const char *s = getenv(name);
    if (s == NULL || *s == '\0') return dflt;
    char *end;
    long v = strtol(s, &end, 10);
    if (*end != '\0') {
        fprintf(stderr, "soak: %s=\"%s\" is not a number\n", name, s);
        exit(2);
    }
    return v;
}

/* The resident set may end this much above 110% of the start sample (KiB). Both samples
 * are taken at a quiescent point — every job removed, no private pool, malloc_trim(0)
 * first, the same threads alive — so what may differ is memory that outlives jobs but
 * not in proportion to them: malloc arenas that threads first contended for after the
 * start sample (glibc makes up to 8 per core, each keeping its header and partly used
 * pages), the deepest stack pages any of the ~17 threads touched since, glibc's cache of
 * exited threads' stacks (private pools come and go), tables (repository, event queue)
 * grown to a new peak of live jobs. Together a few MiB at most, and none grows with the
 * number of jobs: a leak of 8 bytes per job over a 10-minute run (~600,000 jobs) exceeds
 * it (10% of the start sample is ~0.7 MiB more). */
static long rss_slack_kib(void) { return 4096; }

static void quiescent_sample(long *rss, long *threads) {
    malloc_trim(0);
    *rss = proc_status("VmRSS");
    *threads = proc_status("Threads");
}

static size_t repo_jobs(void) {
    bgjob_filter *f = NULL;
    bgjob_job_list *list = NULL;
    size_t n = (size_t)-1;
    if (EXPECT(bgjob_filter_new(&f), OKB) != BGJOB_OK) return n;
    EXPECT(bgjob_filter_set_include_children(f, true), OKB);
    if (EXPECT(bgjob_get_jobs(f, &list), OKB) == BGJOB_OK) {
        n = bgjob_job_list_count(list);
        if (n)
            fprintf(stderr, "soak: %zu job(s) left in the repository, the first %" PRIu64 "\n", n,
                    bgjob_job_list_get(list, 0));
    }
    bgjob_job_list_free(list);
    bgjob_filter_free(f);
    return n;
}

int main(void) {
    (void)check_failures;
    (void)check_passes;
    (void)check_failed_tests;
    (void)check_current;
    tl_who = WHO_MAIN;
    g_t0 = now_ms();
    g_seconds = env_long("SOAK_SECONDS", 600);
    g_threads = (int)env_long("SOAK_THREADS", 8);
    if (g_threads < 1 || g_threads > MAX_THREADS || g_seconds < 1) {
        fprintf(stderr, "soak: SOAK_THREADS must be 1..%d and SOAK_SECONDS at least 1\n", MAX_THREADS);
        return 2;
    }
    const char *preload = getenv("LD_PRELOAD");
    g_valgrind = preload != NULL && strstr(preload, "vgpreload") != NULL;
    const char *slow = getenv("SOAK_SLOW");
    g_slow = slow && *slow ? atof(slow) : g_valgrind ? 25 : 1;
    if (g_slow < 1) g_slow = 1;
    BOUND_MS = (int64_t)(30000 * g_slow);
    WATCHDOG_MS = (int64_t)(60000 * g_slow);
    if (WATCHDOG_MS < BOUND_MS + 30000) WATCHDOG_MS = BOUND_MS + 30000;
    const char *seed = getenv("SOAK_SEED");
    g_seed = seed && *seed ? strtoull(seed, NULL, 0)
                           : ((uint64_t)time(NULL) << 20) ^ (uint64_t)getpid() ^ (uint64_t)(now_ms() * 1000);
    printf("soak: %ld s, %d threads, seed %" PRIu64 " (SOAK_SEED=%" PRIu64 " to replay)%s, slow x%g\n",
           g_seconds, g_threads, g_seed, g_seed, g_valgrind ? ", under valgrind" : "", g_slow);
    fflush(stdout);
    shards_init();
    long threads_start = proc_status("Threads");

    /* Before anything else uses bgjob: the default pool's size; one job makes the pool (so
     * that a later configuration is refused); then the observers. */
    EXPECT(bgjob_configure_default_pool(4, 0), OKB);
    uint64_t first_id = 0;
    bgjob_records *first_recs = NULL;
    EXPECT(bgjob_start_fn(inner_work, NULL, NULL, NULL, &first_id), OKB);
    EXPECT(bgjob_wait(&first_id, 1, BGJOB_WAIT_ALL, BOUND_MS, NULL, NULL), OKB);
    EXPECT(bgjob_receive(first_id, 0, 0, 0, &first_recs), OKB);
    VCHECK(record_is(first_recs, 0, BGJOB_STREAM_OUTPUT, "inner"), "the first job's record");
    bgjob_records_free(first_recs);
    EXPECT(bgjob_remove(first_id, false), OKB);
    EXPECT(bgjob_configure_default_pool(2, 0), B(BGJOB_E_ALREADY_INITIALIZED));
    uint64_t any_reg = 0;
    EXPECT(bgjob_on_any_state_changed(on_any, NULL, any_finalizer, &any_reg), OKB);
    EXPECT(bgjob_event_queue_open(NULL, 0, &g_queue), OKB);
    EXPECT(bgjob_pool_new(2, 2, &g_shared_pool), OKB);
    if (g_queue == NULL || g_shared_pool == NULL) return 1;

    host *mainh = &g_hosts[g_threads];
    mainh->idx = g_threads;
    atomic_store(&mainh->running, true);
    doing(mainh, OP_IDLE, 0);
    pthread_t mon;
    if (pthread_create(&mon, NULL, monitor_main, NULL) != 0) abort();

    /* Warm-up: a fraction of a minute (a tenth of the run, 1 to 30 s). */
    double warm_s = (double)g_seconds / 10.0;
    if (warm_s < 1) warm_s = 1;
    if (warm_s > 30) warm_s = 30;
    g_warm_ms = g_t0 + warm_s * 1000.0;
    g_end_ms = g_t0 + (double)g_seconds * 1000.0;
    pthread_barrier_init(&g_warm_barrier, NULL, (unsigned)g_threads + 1);
    pthread_t th[MAX_THREADS];
    for (int i = 0; i < g_threads; i++) {
        host *h = &g_hosts[i];
        h->idx = i;
        uint64_t s = g_seed + 0x1234567ull * (uint64_t)(i + 1);
        h->rng = splitmix(&s);
        pthread_mutex_init(&h->share_mu, NULL);
        atomic_store(&h->running, true);
        doing(h, OP_IDLE, 0);
        if (pthread_create(&th[i], NULL, host_main, h) != 0) abort();
    }

    /* The start sample, at the warm-up barrier: every job retired, no private pool. (The
     * watchdog watches the hosts meanwhile, not this wait for them.) */
    doing(mainh, OP_WARMUP, 0);
    atomic_store(&mainh->running, false);
    pthread_barrier_wait(&g_warm_barrier);
    atomic_store(&mainh->running, true);
    doing(mainh, OP_WARMUP, 0);
    double wait_ms = now_ms() + (double)BOUND_MS;
    while (atomic_load(&g_retired_n) > 0 && now_ms() < wait_ms) sleep_ms(5);
    size_t left = repo_jobs();
    VCHECK(left == 0, "%zu job(s) in the repository at the warm-up point, where every host "
           "retired all of its jobs", left);
    quiescent_sample(&g_rss_start, &g_threads_warm);
    printf("soak: warm-up done at %.0f s: RSS %ld KiB, threads %ld\n", (now_ms() - g_t0) / 1000.0,
           g_rss_start, g_threads_warm);
    fflush(stdout);
    doing(mainh, OP_IDLE, 0);
    pthread_barrier_wait(&g_warm_barrier);

    /* The run; then every host retires its jobs and frees its pool. */
    for (int i = 0; i < g_threads; i++) {
        for (;;) {
            doing(mainh, OP_DONE, 0);
            if (!atomic_load(&g_hosts[i].running)) break;
            sleep_ms(50);
        }
        pthread_join(th[i], NULL);
    }
    doing(mainh, OP_DRAIN, 0);
    wait_ms = now_ms() + (double)BOUND_MS;
    while (atomic_load(&g_retired_n) > 0 && now_ms() < wait_ms) sleep_ms(5);

    /* The end: the repository empty, no event left for a retired job, memory and threads. */
    left = repo_jobs();
    VCHECK(left == 0, "%zu job(s) left in the repository at the end", left);
    long rss_end, threads_quiet;
    quiescent_sample(&rss_end, &threads_quiet);
    VCHECK(threads_quiet <= g_threads_warm + 4, "threads: %ld at the end, %ld at the warm-up "
           "point (both with every job removed and every private pool freed)", threads_quiet,
           g_threads_warm);
    EXPECT(bgjob_unregister(0, any_reg), OKB);
    EXPECT(bgjob_pool_shutdown(g_shared_pool, BOUND_MS), OKB);
    bgjob_pool_free(g_shared_pool);
    EXPECT(bgjob_shutdown(BOUND_MS), OKB);
    atomic_store(&g_monitor_stop, true);
    pthread_join(mon, NULL);
    tl_who = WHO_MAIN;
    drain_queue();
    uint64_t first = 0;
    size_t stray = entries_left(&first);
    VCHECK(stray == 0, "%zu job id(s) had state changes after they were retired, or were never "
           "retired (the first: %" PRIu64 ")", stray, first);
    bgjob_event_queue_free(g_queue);
    VCHECK(atomic_load(&g_any_finals) == 1, "the repository-wide callback was finalized %d times",
           atomic_load(&g_any_finals));
    long threads_end = -1;
    double deadline = now_ms() + 10000.0 * g_slow;
    while ((threads_end = proc_status("Threads")) != threads_start && now_ms() < deadline) sleep_ms(5);
    VCHECK(threads_end == threads_start, "threads: %ld at the start, %ld at the end (after "
           "bgjob_shutdown)", threads_start, threads_end);
    double growth = g_rss_start > 0 ? 100.0 * (double)(rss_end - g_rss_start) / (double)g_rss_start : 0;
    if (!g_valgrind)
        VCHECK(rss_end <= g_rss_start + g_rss_start / 10 + rss_slack_kib(),
               "RSS grew from %ld KiB to %ld KiB (%+.1f%%), more than 10%% + %ld KiB", g_rss_start,
               rss_end, growth, rss_slack_kib());
    printf("soak: by final state: %lld Completed, %lld Failed, %lld Stopped; by kind:",
           (long long)st_by_final[0], (long long)st_by_final[1], (long long)st_by_final[2]);
    for (int k = 0; k < K__N; k++) printf(" %s %lld", kind_names[k], (long long)st_kinds[k]);
    printf("; %.0f s in all\nsoak: changes by new state:", (now_ms() - g_t0) / 1000.0);
    for (int k = 0; k < 11; k++) printf(" %s %lld", bgjob_state_name((unsigned)k), (long long)st_events_to[k]);
    printf("\nsoak: %lld operations:", (long long)st_ops);
    for (int k = OP_START; k <= OP_RETIRE; k++) printf(" %s %lld", op_names[k], (long long)st_op_count[k]);
    printf("\nsoak: %lld jobs received to the end, %lld finished callbacks checked every record "
           "readable, %lld records taken by a second thread, %lld late registrations, %lld "
           "private pools freed, %lld queue events%s\n",
           (long long)st_to_end, (long long)st_cbcheck, (long long)st_helper_records,
           (long long)st_late_regs, (long long)st_pool_cycles, (long long)st_qevents,
           g_valgrind ? "; RSS not checked under valgrind" : "");
    printf("soak: %ld s, %d threads, seed %" PRIu64 ": %lld jobs, %lld records, %lld callbacks, "
           "%lld errors checked, %d invariant violations; RSS start %ld KiB end %ld KiB (%+.1f%%); "
           "threads start %ld end %ld\n",
           g_seconds, g_threads, g_seed, (long long)st_jobs, (long long)st_records,
           (long long)st_callbacks, (long long)st_errors, atomic_load(&g_violations), g_rss_start,
           rss_end, growth, threads_start, threads_end);
    return atomic_load(&g_violations) ? 1 : 0;
}
