/* Shared helpers for the C tests: probes (counters for work runs and finalizers),
 * starting jobs, bounded polls on getters, latches for callbacks. Include after check.h.
 *
 * Everything here is `static inline` so that a test program that does not use a helper
 * does not trip -Wunused-function under -Werror. */
#ifndef BGJOB_TEST_UTIL_H
#define BGJOB_TEST_UTIL_H

#include "check.h"

#include <dirent.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* True under `make sanitize` (valgrind): scale loop counts down. */
static inline bool sanitizing(void) {
    const char *s = getenv("BGJOB_SANITIZE");
    return s != NULL && *s != '\0' && strcmp(s, "0") != 0;
}

/* bgjob_selftest_panic, where the library catches panics. In a build with panic = "abort"
 * (make test-abort) a panic ends the process: nothing is injected there and the status the
 * boundary gives elsewhere is returned, so that what a test does around the injection
 * still runs. Checks of the panic itself (its message) hold only if bgjob_catches_panics(). */
static inline bgjob_status inject_panic(const char *message) {
    if (!bgjob_catches_panics()) return BGJOB_E_PANIC;
    return bgjob_selftest_panic(message);
}

/* Wall-clock nanoseconds since the Unix epoch (to compare with begin/end times). */
static inline int64_t wall_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

/* What a test hands a work function as user data: counts runs and finalizer calls, and
 * carries the knobs of the common work functions below. Lives in the test's frame; the
 * finalizer only counts. */
typedef struct probe {
    atomic_int runs;       /* how many times the work function was entered */
    atomic_int finalized;  /* how many times the finalizer ran */
    atomic_int started;    /* set by the work once it has done its set-up */
    atomic_bool release;   /* set by the test to let a looping work return */
    atomic_bool *shared_release; /* if non-NULL, checked as well (several jobs) */
    long duration_ms;      /* how long a looping work runs at most */
    atomic_int *concurrent;     /* if non-NULL: jobs inside the work right now */
    atomic_int *max_concurrent; /* if non-NULL: the most seen at once */
} probe;

static inline void probe_init(probe *p, long duration_ms) {
    atomic_init(&p->runs, 0);
    atomic_init(&p->finalized, 0);
    atomic_init(&p->started, 0);
    atomic_init(&p->release, false);
    p->shared_release = NULL;
    p->duration_ms = duration_ms;
    p->concurrent = NULL;
    p->max_concurrent = NULL;
}

static inline void probe_finalize(void *user_data) {
    atomic_fetch_add(&((probe *)user_data)->finalized, 1);
}

/* A finalizer for user data that is a bare atomic_int counter. */
static inline void count_finalize(void *user_data) {
    atomic_fetch_add((atomic_int *)user_data, 1);
}

static inline bool probe_released(const probe *p) {
    return atomic_load(&p->release) ||
           (p->shared_release != NULL && atomic_load(p->shared_release));
}

/* Work: writes "2" to the output stream. */
static inline int32_t work_write_two(bgjob_context *ctx, void *user_data) {
    if (user_data != NULL) atomic_fetch_add(&((probe *)user_data)->runs, 1);
    return (int32_t)bgjob_context_write_text(ctx, BGJOB_STREAM_OUTPUT, "2");
}

/* Work: a cooperative job. Loops with short sleeps until its time (duration_ms) is up,
 * a stop is asked, or the test releases it. Returns 0 (Completed, or Stopped if a stop
 * was asked). */
static inline int32_t work_coop(bgjob_context *ctx, void *user_data) {
    probe *p = user_data;
    atomic_fetch_add(&p->runs, 1);
    if (p->concurrent != NULL) {
        int now = atomic_fetch_add(p->concurrent, 1) + 1;
        int seen = atomic_load(p->max_concurrent);
        while (now > seen && !atomic_compare_exchange_weak(p->max_concurrent, &seen, now)) {
        }
    }
    atomic_store(&p->started, 1);
    double deadline = now_ms() + (double)p->duration_ms;
    while (now_ms() < deadline && !bgjob_context_stop_requested(ctx) && !probe_released(p))
        sleep_ms(2);
    if (p->concurrent != NULL) atomic_fetch_sub(p->concurrent, 1);
    return 0;
}

/* A new spec named `name` (NULL = default name); NULL after a failed CHECK. */
static inline bgjob_spec *named_spec(const char *name) {
    bgjob_spec *spec = NULL;
    CHECK_OK(bgjob_spec_new(&spec));
    if (spec != NULL && name != NULL) CHECK_OK(bgjob_spec_set_name(spec, name));
    return spec;
}

/* Starts a job with `work(user_data)` (finalizer may be NULL) on `pool` (NULL = default
 * pool), named `name` (NULL = default name). Returns its id, or 0 after a failed CHECK. */
static inline uint64_t start_job(const char *name, bgjob_work_fn work, void *user_data,
                                 bgjob_finalizer finalizer, const bgjob_pool *pool) {
    bgjob_spec *spec = named_spec(name);
    if (spec == NULL) return 0;
    CHECK_OK(bgjob_spec_set_work(spec, work, user_data, finalizer));
    if (pool != NULL) CHECK_OK(bgjob_spec_set_pool(spec, pool));
    uint64_t id = 0;
    CHECK_OK(bgjob_start(spec, &id));
    CHECK(id != 0);
    return id;
}

/* A job with the probe as user data and probe_finalize as its finalizer. */
static inline uint64_t start_probe_job(const char *name, bgjob_work_fn work, probe *p,
                                       const bgjob_pool *pool) {
    return start_job(name, work, p, probe_finalize, pool);
}

/* The job's state, or 99 if it cannot be read. */
static inline bgjob_job_state state_of(uint64_t id) {
    bgjob_job_state st = 99;
    if (bgjob_get_state(id, &st) != BGJOB_OK) return 99;
    return st;
}

/* Bounded poll on the state getter: true once the job is in `state`, false after
 * `timeout_ms`. */
static inline bool wait_for_state(uint64_t id, bgjob_job_state state, long timeout_ms) {
    double deadline = now_ms() + (double)timeout_ms;
    for (;;) {
        if (state_of(id) == state) return true;
        if (now_ms() >= deadline) return false;
        sleep_ms(1);
    }
}

/* Bounded poll on an atomic counter: true once it is >= `want`. */
static inline bool wait_for_count(atomic_int *counter, int want, long timeout_ms) {
    double deadline = now_ms() + (double)timeout_ms;
    for (;;) {
        if (atomic_load(counter) >= want) return true;
        if (now_ms() >= deadline) return false;
        sleep_ms(1);
    }
}

/* How many jobs the repository holds, children included. */
static inline size_t repo_count(void) {
    bgjob_filter *f = NULL;
    bgjob_job_list *list = NULL;
    if (bgjob_filter_new(&f) != BGJOB_OK) return (size_t)-1;
    bgjob_filter_set_include_children(f, true);
    size_t n = (size_t)-1;
    if (bgjob_get_jobs(f, &list) == BGJOB_OK) n = bgjob_job_list_count(list);
    bgjob_job_list_free(list);
    bgjob_filter_free(f);
    return n;
}

/* Waits for a finished job and removes it (checks both). */
static inline void finish_and_remove(uint64_t id) {
    CHECK_OK(bgjob_wait(&id, 1, BGJOB_WAIT_ALL, 20000, NULL, NULL));
    CHECK_OK(bgjob_remove(id, false));
}

/* Shuts a pool down (waiting for its threads) and frees it. */
static inline void pool_close(bgjob_pool *pool) {
    if (pool == NULL) return;
    CHECK_OK(bgjob_pool_shutdown(pool, 20000));
    bgjob_pool_free(pool);
}

/* Whether record `i` of `recs` is on `stream` and holds exactly `text`. */
static inline bool record_is(const bgjob_records *recs, size_t i, bgjob_stream stream,
                             const char *text) {
    const bgjob_record *r = bgjob_records_get(recs, i);
    return r != NULL && r->stream == stream && r->data != NULL && r->len == strlen(text) &&
           memcmp(r->data, text, r->len) == 0;
}

/* A counter that callbacks bump and tests wait on (mutex + condition, bounded). */
typedef struct latch {
    pthread_mutex_t mu;
    pthread_cond_t cond;
    int count;
} latch;

static inline void latch_init(latch *l) {
    pthread_mutex_init(&l->mu, NULL);
    pthread_cond_init(&l->cond, NULL);
    l->count = 0;
}

static inline void latch_destroy(latch *l) {
    pthread_cond_destroy(&l->cond);
    pthread_mutex_destroy(&l->mu);
}

static inline void latch_bump(latch *l) {
    pthread_mutex_lock(&l->mu);
    l->count++;
    pthread_cond_broadcast(&l->cond);
    pthread_mutex_unlock(&l->mu);
}

/* Waits until the count reaches `want`; false after `timeout_ms`. */
static inline bool latch_wait(latch *l, int want, long timeout_ms) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += timeout_ms / 1000;
    ts.tv_nsec += (timeout_ms % 1000) * 1000000L;
    if (ts.tv_nsec >= 1000000000L) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000L;
    }
    pthread_mutex_lock(&l->mu);
    int rc = 0;
    while (l->count < want && rc == 0) rc = pthread_cond_timedwait(&l->cond, &l->mu, &ts);
    bool ok = l->count >= want;
    pthread_mutex_unlock(&l->mu);
    return ok;
}

/* DESIGN §1 "Legal moves": whether a job may go from state `from` to `to`. */
static inline bool legal_move(unsigned from, unsigned to) {
    switch (from) {
    case BGJOB_STATE_NOT_STARTED:
        return to == BGJOB_STATE_RUNNING || to == BGJOB_STATE_STOPPED || to == BGJOB_STATE_FAILED;
    case BGJOB_STATE_RUNNING:
        return to == BGJOB_STATE_COMPLETED || to == BGJOB_STATE_FAILED ||
               to == BGJOB_STATE_STOPPING || to == BGJOB_STATE_BLOCKED ||
               to == BGJOB_STATE_SUSPENDING || to == BGJOB_STATE_AT_BREAKPOINT ||
               to == BGJOB_STATE_DISCONNECTED;
    case BGJOB_STATE_STOPPING:
        return to == BGJOB_STATE_STOPPED || to == BGJOB_STATE_FAILED ||
               to == BGJOB_STATE_COMPLETED;
    case BGJOB_STATE_BLOCKED:
        return to == BGJOB_STATE_RUNNING || to == BGJOB_STATE_STOPPING;
    case BGJOB_STATE_SUSPENDING:
        return to == BGJOB_STATE_SUSPENDED;
    case BGJOB_STATE_SUSPENDED:
        return to == BGJOB_STATE_RUNNING || to == BGJOB_STATE_STOPPING;
    case BGJOB_STATE_AT_BREAKPOINT:
        return to == BGJOB_STATE_RUNNING;
    case BGJOB_STATE_DISCONNECTED:
        return to == BGJOB_STATE_RUNNING || to == BGJOB_STATE_FAILED ||
               to == BGJOB_STATE_STOPPED;
    default:
        return false;
    }
}

/* Threads of this process now (entries of /proc/self/task). */
static inline int thread_count(void) {
    DIR *d = opendir("/proc/self/task");
    if (d == NULL) return -1;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) n += e->d_name[0] != '.';
    closedir(d);
    return n;
}

#endif
