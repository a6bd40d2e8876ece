/* The fault matrix of issue 8, from C: {an error return, a Rust panic injected with
 * bgjob_selftest_panic} in {the work, a state-change callback, a record write with bad
 * arguments, a finalizer that calls back into the library} (a C finalizer cannot raise:
 * its faults are re-entrant calls — starting, waiting for, removing jobs — and a panic
 * injected from inside it).
 *
 * Every cell must end in a defined state and status — never a hang, never a crash, never
 * an unwinding across the boundary — and leave the library usable: each test starts and
 * finishes another job afterwards. It asserts the job's final state and reason, the
 * callback sequences the other callbacks saw (the job's own and a repository-wide one), the
 * records, the finalizer counts (exactly once), each call's status and that nothing of the
 * test is left in the repository.
 *
 * The cells whose failure would be a crash or a hang of the host — the re-entrant
 * finalizers — first run in a forked child bounded by alarm(): a crash or a hang there is
 * a test failure here. When the child passed they run again in this process, so that
 * valgrind (`make sanitize`) checks them too.
 */
#include "check.h"
#include "util.h"

#include <signal.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

/* Generous bounds: reaching one means a hang, not slowness (valgrind is slow). */
#define BOUND_MS 30000
#define ISOLATED_ALARM_S 120

static bgjob_pool *g_pool = NULL; /* 2 threads */

/* ----- a recorder of state changes ------------------------------------------------------ */

#define MAX_EVENTS 4096

typedef struct recorder {
    pthread_mutex_t mu;
    int n;
    uint64_t job[MAX_EVENTS];
    unsigned prev[MAX_EVENTS];
    unsigned next[MAX_EVENTS];
    atomic_int calls;
    atomic_int finalized;
} recorder;

static void recorder_init(recorder *r) {
    pthread_mutex_init(&r->mu, NULL);
    r->n = 0;
    atomic_init(&r->calls, 0);
    atomic_init(&r->finalized, 0);
}

static void recorder_destroy(recorder *r) { pthread_mutex_destroy(&r->mu); }

static void recorder_cb(const bgjob_state_event *e, void *user_data) {
    recorder *r = user_data;
    atomic_fetch_add(&r->calls, 1);
    pthread_mutex_lock(&r->mu);
    if (r->n < MAX_EVENTS) {
        r->job[r->n] = e->job_id;
        r->prev[r->n] = e->previous_state_info.state;
        r->next[r->n] = e->state_info.state;
        r->n++;
    }
    pthread_mutex_unlock(&r->mu);
}

static void recorder_fin(void *user_data) { atomic_fetch_add(&((recorder *)user_data)->finalized, 1); }

/* Whether the changes `r` saw for job `id` are exactly the `n` pairs (prev, next) given as
 * array `want`; if not and `report`, prints what it saw. */
static bool saw_quietly(recorder *r, uint64_t id, const unsigned (*want)[2], int n, bool report) {
    pthread_mutex_lock(&r->mu);
    int k = 0;
    bool ok = true;
    for (int i = 0; i < r->n; i++) {
        if (r->job[i] != id) continue;
        if (k >= n || r->prev[i] != want[k][0] || r->next[i] != want[k][1]) ok = false;
        k++;
    }
    if (k != n) ok = false;
    if (!ok && report) {
        fprintf(stderr, "  job %llu: saw", (unsigned long long)id);
        for (int i = 0; i < r->n; i++)
            if (r->job[i] == id)
                fprintf(stderr, " %s->%s", bgjob_state_name(r->prev[i]), bgjob_state_name(r->next[i]));
        fprintf(stderr, "; want %d change(s)\n", n);
    }
    pthread_mutex_unlock(&r->mu);
    return ok;
}

static bool saw(recorder *r, uint64_t id, const unsigned (*want)[2], int n) {
    return saw_quietly(r, id, want, n, true);
}

static const unsigned RUN_COMPLETED[][2] = {{BGJOB_STATE_NOT_STARTED, BGJOB_STATE_RUNNING},
                                             {BGJOB_STATE_RUNNING, BGJOB_STATE_COMPLETED}};
static const unsigned RUN_FAILED[][2] = {{BGJOB_STATE_NOT_STARTED, BGJOB_STATE_RUNNING},
                                          {BGJOB_STATE_RUNNING, BGJOB_STATE_FAILED}};
static const unsigned QUEUED_STOPPED[][2] = {{BGJOB_STATE_NOT_STARTED, BGJOB_STATE_STOPPED}};
static const unsigned RUN_STOPPING[][2] = {{BGJOB_STATE_NOT_STARTED, BGJOB_STATE_RUNNING},
                                            {BGJOB_STATE_RUNNING, BGJOB_STATE_STOPPING}};
static const unsigned RUN_STOPPED[][2] = {{BGJOB_STATE_NOT_STARTED, BGJOB_STATE_RUNNING},
                                           {BGJOB_STATE_RUNNING, BGJOB_STATE_STOPPING},
                                           {BGJOB_STATE_STOPPING, BGJOB_STATE_STOPPED}};

/* The repository-wide recorder, registered for the whole run: it sees every change of every
 * job, after the job's own callbacks. */
static recorder g_any;

/* ----- helpers ---------------------------------------------------------------------------- */

/* Whether job `id` is in `state` with exactly `reason` (NULL: none); prints what it is
 * otherwise. */
static bool job_is(uint64_t id, bgjob_job_state state, const char *reason) {
    bgjob_job_info *info = NULL;
    bgjob_status st = bgjob_get_job(id, &info);
    if (st != BGJOB_OK) {
        fprintf(stderr, "  job %llu: %s\n", (unsigned long long)id, bgjob_status_name(st));
        return false;
    }
    const char *r = bgjob_job_info_reason(info);
    bool ok = bgjob_job_info_state(info) == state &&
              (reason == NULL ? r == NULL : (r != NULL && strcmp(r, reason) == 0));
    if (!ok)
        fprintf(stderr, "  job %llu is %s (%s); want %s (%s)\n", (unsigned long long)id,
                bgjob_state_name(bgjob_job_info_state(info)), r ? r : "no reason",
                bgjob_state_name(state), reason ? reason : "no reason");
    bgjob_job_info_free(info);
    return ok;
}

/* Whether the job's records (taken now) are exactly `n` of `streams` with `texts`. */
static bool records_are(uint64_t id, size_t n, const bgjob_stream *streams,
                        const char *const *texts) {
    bgjob_records *batch = NULL;
    if (bgjob_receive(id, 0, 0, 0, &batch) != BGJOB_OK) return false;
    bool ok = bgjob_records_count(batch) == n;
    for (size_t i = 0; ok && i < n; i++) ok = record_is(batch, i, streams[i], texts[i]);
    if (!ok) {
        fprintf(stderr, "  job %llu: %zu record(s):", (unsigned long long)id,
                bgjob_records_count(batch));
        for (size_t i = 0; i < bgjob_records_count(batch); i++) {
            const bgjob_record *r = bgjob_records_get(batch, i);
            fprintf(stderr, " [%s] %.*s", bgjob_stream_name(r->stream), (int)r->len,
                    r->data ? (const char *)r->data : "");
        }
        fprintf(stderr, "\n");
    }
    bgjob_records_free(batch);
    return ok;
}

static bool wait_done(uint64_t id) {
    return bgjob_wait(&id, 1, BGJOB_WAIT_ALL, BOUND_MS, NULL, NULL) == BGJOB_OK;
}

/* Starts a job named `name` on `pool` running `work(data)` (finalizer `fin`), its changes
 * recorded by `rec`; its id (0 if the start failed, which is a failed check). */
static uint64_t start_recorded(const char *name, bgjob_work_fn work, void *data, bgjob_finalizer fin,
                               recorder *rec, bgjob_pool *pool) {
    bgjob_spec *spec = named_spec(name);
    CHECK_OK(bgjob_spec_set_work(spec, work, data, fin));
    CHECK_OK(bgjob_spec_on_state_changed(spec, recorder_cb, rec, recorder_fin));
    CHECK_OK(bgjob_spec_set_pool(spec, pool));
    uint64_t id = 0;
    CHECK_OK(bgjob_start(spec, &id));
    return id;
}

/* The library is still usable: a job on `pool` (NULL: the default pool) starts, writes
 * "2", completes and is removed. */
static void still_usable(const bgjob_pool *pool) {
    uint64_t id = start_job("faults-after", work_write_two, NULL, NULL, pool);
    CHECK(wait_done(id));
    CHECK(job_is(id, BGJOB_STATE_COMPLETED, NULL));
    const bgjob_stream out[] = {BGJOB_STREAM_OUTPUT};
    const char *const two[] = {"2"};
    CHECK(records_are(id, 1, out, two));
    CHECK_OK(bgjob_remove(id, false));
}

/* A one-thread pool whose only worker is held by a job until `busy_release`. */
typedef struct busy_pool {
    bgjob_pool *pool;
    probe blocker_probe;
    uint64_t blocker;
} busy_pool;

static void busy_init(busy_pool *b) {
    CHECK_OK(bgjob_pool_new(1, 0, &b->pool));
    probe_init(&b->blocker_probe, BOUND_MS);
    b->blocker = start_probe_job("faults-blocker", work_coop, &b->blocker_probe, b->pool);
    CHECK(wait_for_count(&b->blocker_probe.started, 1, BOUND_MS));
}

static void busy_release(busy_pool *b) {
    atomic_store(&b->blocker_probe.release, true);
    finish_and_remove(b->blocker);
}

static void busy_close(busy_pool *b) {
    pool_close(b->pool);
    CHECK(atomic_load(&b->blocker_probe.finalized) == 1);
}

/* Fails the test unless the status of the last call on this thread was `want` and left a
 * message. */
#define CHECK_REFUSED(expr, want)                                                       \
    do {                                                                                \
        CHECK_STATUS((expr), (want));                                                   \
        CHECK(bgjob_last_error_message()[0] != '\0');                                   \
    } while (0)

static bool setup(void);
static void teardown(void);

/* Runs `fn` in a forked child bounded by an alarm of `seconds`; a crash or a hang there
 * fails the test here. The child sets the library up and tears it down itself (see
 * main: children are forked before this process uses bgjob, so that they inherit no
 * state of threads they do not have). Returns whether the child passed. */
static bool run_isolated(const char *name, void (*fn)(void), unsigned seconds) {
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    if (pid < 0) {
        perror("fork");
        check_failures++;
        return false;
    }
    if (pid == 0) {
        alarm(seconds);
        check_current = name;
        if (!setup()) _exit(2);
        fn();
        teardown();
        fflush(stdout);
        fflush(stderr);
        _exit(check_failures == 0 ? 0 : 1);
    }
    int status = 0;
    while (waitpid(pid, &status, 0) < 0) {
    }
    if (WIFEXITED(status) && WEXITSTATUS(status) == 0) return true;
    if (WIFSIGNALED(status))
        fprintf(stderr, "  FAIL %s: the child was killed by signal %d%s\n", name, WTERMSIG(status),
                WTERMSIG(status) == SIGALRM ? " (a hang: the alarm fired)" : " (a crash)");
    else
        fprintf(stderr, "  FAIL %s: the child exited with %d\n", name, WEXITSTATUS(status));
    check_failures++;
    return false;
}

/* ===== the work ============================================================================ */

static int32_t work_error_7(bgjob_context *ctx, void *user_data) {
    atomic_fetch_add(&((probe *)user_data)->runs, 1);
    bgjob_context_write_text(ctx, BGJOB_STREAM_OUTPUT, "one");
    bgjob_context_write_text(ctx, BGJOB_STREAM_ERROR, "a non-terminating error");
    bgjob_context_write_text(ctx, BGJOB_STREAM_OUTPUT, "two");
    return 7;
}

static void test_work_error_return(void) {
    probe p;
    probe_init(&p, 0);
    recorder rec;
    recorder_init(&rec);
    uint64_t id = start_recorded("faults-work-error", work_error_7, &p, probe_finalize, &rec, g_pool);
    CHECK(wait_done(id));
    CHECK(job_is(id, BGJOB_STATE_FAILED, "the work returned 7"));
    CHECK(saw(&rec, id, RUN_FAILED, 2));
    CHECK(saw(&g_any, id, RUN_FAILED, 2));
    CHECK(atomic_load(&p.runs) == 1);
    CHECK(atomic_load(&p.finalized) == 1);
    const bgjob_stream s[] = {BGJOB_STREAM_OUTPUT, BGJOB_STREAM_ERROR, BGJOB_STREAM_OUTPUT};
    const char *const t[] = {"one", "a non-terminating error", "two"};
    CHECK(records_are(id, 3, s, t));
    CHECK(atomic_load(&rec.finalized) == 0);
    CHECK_OK(bgjob_remove(id, false));
    CHECK(atomic_load(&rec.finalized) == 1);
    CHECK(state_of(id) == 99);
    CHECK(atomic_load(&p.finalized) == 1);
    recorder_destroy(&rec);
    still_usable(g_pool);
}

static int32_t work_fail_then_return(bgjob_context *ctx, void *user_data) {
    bgjob_context_write_text(ctx, BGJOB_STREAM_OUTPUT, "written");
    CHECK_OK(bgjob_context_fail(ctx, "the reason given to fail"));
    return (int32_t)(intptr_t)user_data;
}

static void test_work_fail_reason_wins(void) {
    uint64_t ok = start_job("faults-fail-0", work_fail_then_return, (void *)(intptr_t)0, NULL, g_pool);
    uint64_t err = start_job("faults-fail-3", work_fail_then_return, (void *)(intptr_t)3, NULL, g_pool);
    CHECK(wait_done(ok));
    CHECK(wait_done(err));
    CHECK(job_is(ok, BGJOB_STATE_FAILED, "the reason given to fail"));
    CHECK(job_is(err, BGJOB_STATE_FAILED, "the reason given to fail"));
    const bgjob_stream s[] = {BGJOB_STREAM_OUTPUT};
    const char *const t[] = {"written"};
    CHECK(records_are(ok, 1, s, t));
    CHECK_OK(bgjob_remove(ok, false));
    CHECK_OK(bgjob_remove(err, false));
    still_usable(NULL);
}

/* What a work saw of a panic it injected. */
typedef struct panic_seen {
    probe p;
    atomic_int status;
    atomic_bool message_ok;
    bool return_status; /* return the panic's status (fails the job) instead of 0 */
} panic_seen;

static int32_t work_injects_a_panic(bgjob_context *ctx, void *user_data) {
    panic_seen *ps = user_data;
    atomic_fetch_add(&ps->p.runs, 1);
    bgjob_context_write_text(ctx, BGJOB_STREAM_OUTPUT, "before the panic");
    bgjob_status st = inject_panic("injected in the work");
    atomic_store(&ps->status, (int)st);
    atomic_store(&ps->message_ok, !bgjob_catches_panics() ||
                                      strstr(bgjob_last_error_message(), "injected in the work") != NULL);
    bgjob_context_write_text(ctx, BGJOB_STREAM_OUTPUT, "after the panic");
    return ps->return_status ? (int32_t)st : 0;
}

static void test_work_injected_panic(void) {
    bgjob_pool *one = NULL;
    CHECK_OK(bgjob_pool_new(1, 0, &one));
    for (int variant = 0; variant < 2; variant++) {
        panic_seen ps;
        probe_init(&ps.p, 0);
        atomic_init(&ps.status, -1);
        atomic_init(&ps.message_ok, false);
        ps.return_status = variant == 1;
        recorder rec;
        recorder_init(&rec);
        uint64_t id = start_recorded("faults-work-panic", work_injects_a_panic, &ps.p, probe_finalize, &rec, one);
        CHECK(wait_done(id));
        CHECK(atomic_load(&ps.status) == BGJOB_E_PANIC);
        CHECK(atomic_load(&ps.message_ok));
        if (variant == 0) {
            /* The panic was caught at the boundary of the call that made it: the work went
             * on and completed. */
            CHECK(job_is(id, BGJOB_STATE_COMPLETED, NULL));
            CHECK(saw(&rec, id, RUN_COMPLETED, 2));
        } else {
            CHECK(job_is(id, BGJOB_STATE_FAILED, "the work returned 11"));
            CHECK(saw(&rec, id, RUN_FAILED, 2));
        }
        const bgjob_stream s[] = {BGJOB_STREAM_OUTPUT, BGJOB_STREAM_OUTPUT};
        const char *const t[] = {"before the panic", "after the panic"};
        CHECK(records_are(id, 2, s, t));
        CHECK(atomic_load(&ps.p.finalized) == 1);
        CHECK_OK(bgjob_remove(id, false));
        CHECK(atomic_load(&rec.finalized) == 1);
        recorder_destroy(&rec);
        still_usable(one); /* the pool's only worker survived */
    }
    pool_close(one);
}

static int32_t work_child_input(bgjob_context *ctx, void *user_data) {
    atomic_fetch_add(&((probe *)user_data)->runs, 1);
    const uint8_t *data = NULL;
    size_t len = 0;
    if (bgjob_context_input(ctx, &data, &len) != BGJOB_OK) return 99;
    bgjob_context_write(ctx, BGJOB_STREAM_OUTPUT, data, len);
    if (len == 3 && memcmp(data, "bad", 3) == 0) return 5;
    if (len == 5 && memcmp(data, "panic", 5) == 0) return (int32_t)inject_panic("injected in a child");
    return 0;
}

static void test_parallel_children_error_and_panic(void) {
    probe p;
    probe_init(&p, 0);
    recorder rec;
    recorder_init(&rec);
    bgjob_spec *spec = named_spec("faults-parallel");
    CHECK_OK(bgjob_spec_set_work(spec, work_child_input, &p, probe_finalize));
    const char *inputs[] = {"a", "bad", "panic", "c"};
    for (int i = 0; i < 4; i++) CHECK_OK(bgjob_spec_add_input(spec, inputs[i], strlen(inputs[i])));
    CHECK_OK(bgjob_spec_set_throttle_limit(spec, 1)); /* in input order */
    CHECK_OK(bgjob_spec_on_state_changed(spec, recorder_cb, &rec, recorder_fin));
    CHECK_OK(bgjob_spec_set_pool(spec, g_pool));
    uint64_t parent = 0;
    CHECK_OK(bgjob_start(spec, &parent));
    CHECK(wait_done(parent));
    CHECK(job_is(parent, BGJOB_STATE_FAILED, "a child job failed: the work returned 5"));
    CHECK(job_is(parent + 1, BGJOB_STATE_COMPLETED, NULL));
    CHECK(job_is(parent + 2, BGJOB_STATE_FAILED, "the work returned 5"));
    CHECK(job_is(parent + 3, BGJOB_STATE_FAILED, "the work returned 11"));
    CHECK(job_is(parent + 4, BGJOB_STATE_COMPLETED, NULL));
    CHECK(saw(&rec, parent, RUN_FAILED, 2));
    for (uint64_t c = parent + 1; c <= parent + 4; c++)
        CHECK(saw(&g_any, c, c == parent + 1 || c == parent + 4 ? RUN_COMPLETED : RUN_FAILED, 2));
    CHECK(atomic_load(&p.runs) == 4);
    CHECK(atomic_load(&p.finalized) == 1);
    const bgjob_stream s[] = {BGJOB_STREAM_OUTPUT, BGJOB_STREAM_OUTPUT, BGJOB_STREAM_OUTPUT,
                              BGJOB_STREAM_OUTPUT};
    CHECK(records_are(parent, 4, s, inputs));
    CHECK_REFUSED(bgjob_remove(parent + 2, false), BGJOB_E_CHILD_JOB);
    CHECK_OK(bgjob_remove(parent, false));
    CHECK(state_of(parent + 2) == 99);
    CHECK(atomic_load(&rec.finalized) == 1);
    recorder_destroy(&rec);
    still_usable(g_pool);
}

static void test_inline_run_error(void) {
    probe p;
    probe_init(&p, 0);
    recorder rec;
    recorder_init(&rec);
    bgjob_spec *spec = named_spec("faults-inline");
    CHECK_OK(bgjob_spec_set_work(spec, work_error_7, &p, probe_finalize));
    CHECK_OK(bgjob_spec_on_state_changed(spec, recorder_cb, &rec, recorder_fin));
    uint64_t id = 0;
    CHECK_OK(bgjob_run_inline(spec, &id)); /* the run happened; the job failed */
    CHECK(job_is(id, BGJOB_STATE_FAILED, "the work returned 7"));
    CHECK(saw(&rec, id, RUN_FAILED, 2));
    CHECK(atomic_load(&p.finalized) == 1);
    CHECK_OK(bgjob_remove(id, false));
    CHECK(atomic_load(&rec.finalized) == 1);
    recorder_destroy(&rec);
    still_usable(NULL);
}

/* ===== state-change callbacks ============================================================== */

/* What the callback of test_callback_api_errors saw of the calls it made. */
typedef struct api_errors {
    recorder rec;
    atomic_int wait_running, remove_running, set_state_running;
    atomic_int wait_done_state, receive_done, remove_done;
    atomic_int finalized;
} api_errors;

static void cb_api_errors(const bgjob_state_event *e, void *user_data) {
    api_errors *a = user_data;
    uint64_t id = e->job_id;
    if (e->state_info.state == BGJOB_STATE_RUNNING) {
        atomic_store(&a->wait_running, (int)bgjob_wait(&id, 1, BGJOB_WAIT_ALL, BOUND_MS, NULL, NULL));
        atomic_store(&a->remove_running, (int)bgjob_remove(id, false));
        atomic_store(&a->set_state_running, (int)bgjob_custom_set_state(id, BGJOB_STATE_COMPLETED, NULL));
    } else if (bgjob_state_is_finished(e->state_info.state)) {
        atomic_store(&a->wait_done_state, (int)bgjob_wait(&id, 1, BGJOB_WAIT_ALL, BOUND_MS, NULL, NULL));
        bgjob_records *batch = NULL;
        if (bgjob_receive(id, BGJOB_RECEIVE_KEEP, 0, 0, &batch) == BGJOB_OK) {
            atomic_store(&a->receive_done, bgjob_records_count(batch) == 1 &&
                                               record_is(batch, 0, BGJOB_STREAM_OUTPUT, "2"));
            bgjob_records_free(batch);
        }
        /* The job removes itself from its finished callback. */
        atomic_store(&a->remove_done, (int)bgjob_remove(id, false));
    }
}

static void api_errors_fin(void *user_data) { atomic_fetch_add(&((api_errors *)user_data)->finalized, 1); }

static void test_callback_api_errors(void) {
    api_errors a;
    recorder_init(&a.rec);
    atomic_init(&a.wait_running, -1);
    atomic_init(&a.remove_running, -1);
    atomic_init(&a.set_state_running, -1);
    atomic_init(&a.wait_done_state, -1);
    atomic_init(&a.receive_done, 0);
    atomic_init(&a.remove_done, -1);
    atomic_init(&a.finalized, 0);
    probe p;
    probe_init(&p, 0);
    bgjob_spec *spec = named_spec("faults-cb-errors");
    CHECK_OK(bgjob_spec_set_work(spec, work_write_two, &p, probe_finalize));
    CHECK_OK(bgjob_spec_on_state_changed(spec, recorder_cb, &a.rec, recorder_fin));
    CHECK_OK(bgjob_spec_on_state_changed(spec, cb_api_errors, &a, api_errors_fin));
    CHECK_OK(bgjob_spec_set_pool(spec, g_pool));
    uint64_t id = 0;
    CHECK_OK(bgjob_start(spec, &id));
    /* It removes itself: wait until its id is gone and its registrations ended. */
    CHECK(wait_for_count(&a.finalized, 1, BOUND_MS));
    CHECK(wait_for_count(&a.rec.finalized, 1, BOUND_MS));
    CHECK(state_of(id) == 99);
    CHECK(atomic_load(&a.wait_running) == BGJOB_E_WOULD_DEADLOCK);
    CHECK(atomic_load(&a.remove_running) == BGJOB_E_NOT_FINISHED);
    CHECK(atomic_load(&a.set_state_running) == BGJOB_E_INVALID_STATE); /* not a custom job */
    CHECK(atomic_load(&a.wait_done_state) == BGJOB_OK);
    CHECK(atomic_load(&a.receive_done));
    CHECK(atomic_load(&a.remove_done) == BGJOB_OK);
    CHECK(saw(&a.rec, id, RUN_COMPLETED, 2));
    CHECK(saw(&g_any, id, RUN_COMPLETED, 2));
    CHECK(atomic_load(&a.finalized) == 1);
    CHECK(atomic_load(&a.rec.finalized) == 1);
    CHECK(atomic_load(&p.runs) == 1);
    CHECK(atomic_load(&p.finalized) == 1);
    recorder_destroy(&a.rec);
    still_usable(g_pool);
}

typedef struct panicking_cb {
    atomic_int calls;
    atomic_int not_panic; /* calls whose injected panic did not come back as BGJOB_E_PANIC */
    atomic_int finalized;
} panicking_cb;

static void cb_injects_a_panic(const bgjob_state_event *e, void *user_data) {
    (void)e;
    panicking_cb *pc = user_data;
    atomic_fetch_add(&pc->calls, 1);
    if (inject_panic("injected in a callback") != BGJOB_E_PANIC ||
        (bgjob_catches_panics() && strstr(bgjob_last_error_message(), "injected in a callback") == NULL))
        atomic_fetch_add(&pc->not_panic, 1);
}

static void panicking_cb_fin(void *user_data) {
    panicking_cb *pc = user_data;
    atomic_fetch_add(&pc->finalized, 1);
    /* A panic injected from a finalizer stops at that call's boundary too. */
    if (inject_panic("injected in a finalizer") != BGJOB_E_PANIC) atomic_fetch_add(&pc->not_panic, 1);
}

static void panicking_cb_init(panicking_cb *pc) {
    atomic_init(&pc->calls, 0);
    atomic_init(&pc->not_panic, 0);
    atomic_init(&pc->finalized, 0);
}

static void test_callback_injected_panic(void) {
    bgjob_pool *one = NULL;
    CHECK_OK(bgjob_pool_new(1, 0, &one));
    panicking_cb pc;
    panicking_cb_init(&pc);
    recorder rec;
    recorder_init(&rec);
    bgjob_spec *spec = named_spec("faults-cb-panic");
    CHECK_OK(bgjob_spec_set_work(spec, work_write_two, NULL, NULL));
    /* First, so that the others run after it on every change. */
    CHECK_OK(bgjob_spec_on_state_changed(spec, cb_injects_a_panic, &pc, panicking_cb_fin));
    CHECK_OK(bgjob_spec_on_state_changed(spec, recorder_cb, &rec, recorder_fin));
    CHECK_OK(bgjob_spec_set_pool(spec, one));
    uint64_t id = 0;
    CHECK_OK(bgjob_start(spec, &id));
    CHECK(wait_done(id));
    CHECK(job_is(id, BGJOB_STATE_COMPLETED, NULL));
    CHECK(atomic_load(&pc.calls) == 2);
    CHECK(saw(&rec, id, RUN_COMPLETED, 2));
    CHECK(saw(&g_any, id, RUN_COMPLETED, 2));
    const bgjob_stream s[] = {BGJOB_STREAM_OUTPUT};
    const char *const t[] = {"2"};
    CHECK(records_are(id, 1, s, t));
    CHECK_OK(bgjob_remove(id, false));
    CHECK(atomic_load(&pc.finalized) == 1);
    CHECK(atomic_load(&rec.finalized) == 1);
    CHECK(atomic_load(&pc.not_panic) == 0);
    recorder_destroy(&rec);
    still_usable(one);
    pool_close(one);
}

static void test_callback_panic_on_the_stopping_thread(void) {
    busy_pool b;
    busy_init(&b);
    panicking_cb pc;
    panicking_cb_init(&pc);
    recorder rec;
    recorder_init(&rec);
    probe p;
    probe_init(&p, 0);
    bgjob_spec *spec = named_spec("faults-cb-panic-stop");
    CHECK_OK(bgjob_spec_set_work(spec, work_coop, &p, probe_finalize));
    CHECK_OK(bgjob_spec_on_state_changed(spec, cb_injects_a_panic, &pc, panicking_cb_fin));
    CHECK_OK(bgjob_spec_on_state_changed(spec, recorder_cb, &rec, recorder_fin));
    CHECK_OK(bgjob_spec_set_pool(spec, b.pool));
    uint64_t id = 0;
    CHECK_OK(bgjob_start(spec, &id));
    CHECK(state_of(id) == BGJOB_STATE_NOT_STARTED);
    /* Its callbacks run here, on the thread that stops it. */
    CHECK_OK(bgjob_stop(id, BOUND_MS));
    CHECK(job_is(id, BGJOB_STATE_STOPPED, NULL));
    CHECK(atomic_load(&pc.calls) == 1);
    CHECK(saw(&rec, id, QUEUED_STOPPED, 1));
    CHECK(saw(&g_any, id, QUEUED_STOPPED, 1));
    CHECK(atomic_load(&p.runs) == 0);
    CHECK(atomic_load(&p.finalized) == 1);
    CHECK_OK(bgjob_remove(id, false));
    CHECK(atomic_load(&pc.finalized) == 1);
    CHECK(atomic_load(&pc.not_panic) == 0);
    recorder_destroy(&rec);
    busy_release(&b);
    still_usable(b.pool);
    busy_close(&b);
}

/* ===== record writes with bad arguments ===================================================== */

typedef struct bad_writes {
    atomic_int wrong; /* calls that did not give the status expected */
} bad_writes;

#define EXPECT_FROM_WORK(bw, expr, want)                                                \
    do {                                                                                \
        bgjob_status st_ = (expr);                                                      \
        if (st_ != (want) || (want != BGJOB_OK && bgjob_last_error_message()[0] == '\0')) { \
            fprintf(stderr, "  %s -> %s, want %s\n", #expr, bgjob_status_name(st_),     \
                    bgjob_status_name(want));                                           \
            atomic_fetch_add(&(bw)->wrong, 1);                                          \
        }                                                                               \
    } while (0)

static int32_t work_bad_writes(bgjob_context *ctx, void *user_data) {
    bad_writes *bw = user_data;
    static const char bad_utf8[] = {'b', 'a', 'd', (char)0xff, 0};
    EXPECT_FROM_WORK(bw, bgjob_context_write_text(ctx, BGJOB_STREAM_OUTPUT, "first"), BGJOB_OK);
    EXPECT_FROM_WORK(bw, bgjob_context_write(ctx, 7, "x", 1), BGJOB_E_INVALID_ARGUMENT);
    EXPECT_FROM_WORK(bw, bgjob_context_write(ctx, UINT32_MAX, "x", 1), BGJOB_E_INVALID_ARGUMENT);
    EXPECT_FROM_WORK(bw, bgjob_context_write(ctx, BGJOB_STREAM_OUTPUT, NULL, 5), BGJOB_E_INVALID_ARGUMENT);
    EXPECT_FROM_WORK(bw, bgjob_context_write_text(ctx, BGJOB_STREAM_OUTPUT, NULL), BGJOB_E_INVALID_ARGUMENT);
    EXPECT_FROM_WORK(bw, bgjob_context_write_text(ctx, 99, "x"), BGJOB_E_INVALID_ARGUMENT);
    EXPECT_FROM_WORK(bw, bgjob_context_write_text(NULL, BGJOB_STREAM_OUTPUT, "x"), BGJOB_E_INVALID_ARGUMENT);
    EXPECT_FROM_WORK(bw, bgjob_context_progress(ctx, 50, bad_utf8, NULL), BGJOB_E_INVALID_ARGUMENT);
    EXPECT_FROM_WORK(bw, bgjob_context_progress(ctx, 50, NULL, bad_utf8), BGJOB_E_INVALID_ARGUMENT);
    EXPECT_FROM_WORK(bw, bgjob_context_set_status_message(ctx, bad_utf8), BGJOB_E_INVALID_ARGUMENT);
    EXPECT_FROM_WORK(bw, bgjob_context_set_status_message(ctx, NULL), BGJOB_E_INVALID_ARGUMENT);
    /* A refused fail() does not fail the job. */
    EXPECT_FROM_WORK(bw, bgjob_context_fail(ctx, bad_utf8), BGJOB_E_INVALID_ARGUMENT);
    EXPECT_FROM_WORK(bw, bgjob_context_fail(ctx, NULL), BGJOB_E_INVALID_ARGUMENT);
    /* Records are bytes: text that is not UTF-8 and an empty record are fine. */
    EXPECT_FROM_WORK(bw, bgjob_context_write_text(ctx, BGJOB_STREAM_WARNING, bad_utf8), BGJOB_OK);
    EXPECT_FROM_WORK(bw, bgjob_context_write(ctx, BGJOB_STREAM_VERBOSE, NULL, 0), BGJOB_OK);
    EXPECT_FROM_WORK(bw, bgjob_context_write_text(ctx, BGJOB_STREAM_OUTPUT, "last"), BGJOB_OK);
    return 0;
}

static void test_record_writes_with_bad_arguments(void) {
    bad_writes bw;
    atomic_init(&bw.wrong, 0);
    recorder rec;
    recorder_init(&rec);
    uint64_t id = start_recorded("faults-bad-writes", work_bad_writes, &bw, NULL, &rec, g_pool);
    CHECK(wait_done(id));
    CHECK(atomic_load(&bw.wrong) == 0);
    CHECK(job_is(id, BGJOB_STATE_COMPLETED, NULL));
    CHECK(saw(&rec, id, RUN_COMPLETED, 2));
    bgjob_job_info *info = NULL;
    CHECK_OK(bgjob_get_job(id, &info));
    if (info != NULL) {
        CHECK(strcmp(bgjob_job_info_status_message(info), "") == 0);
        CHECK(!bgjob_job_info_progress(info, NULL, NULL, NULL));
        bgjob_job_info_free(info);
    }
    const bgjob_stream s[] = {BGJOB_STREAM_OUTPUT, BGJOB_STREAM_WARNING, BGJOB_STREAM_VERBOSE,
                              BGJOB_STREAM_OUTPUT};
    static const char bad_utf8[] = {'b', 'a', 'd', (char)0xff, 0};
    const char *const t[] = {"first", bad_utf8, "", "last"};
    CHECK(records_are(id, 4, s, t));
    CHECK_OK(bgjob_remove(id, false));
    recorder_destroy(&rec);
    still_usable(g_pool);
}

static void test_custom_writes_with_bad_arguments(void) {
    recorder rec;
    recorder_init(&rec);
    bgjob_spec *spec = named_spec("faults-custom-writes");
    CHECK_OK(bgjob_spec_on_state_changed(spec, recorder_cb, &rec, recorder_fin));
    uint64_t id = 0;
    CHECK_OK(bgjob_create_custom(spec, &id));
    CHECK_OK(bgjob_custom_set_state(id, BGJOB_STATE_RUNNING, NULL));
    CHECK_OK(bgjob_custom_write_text(id, BGJOB_STREAM_OUTPUT, "in time"));
    CHECK_REFUSED(bgjob_custom_write(id, 7, "x", 1), BGJOB_E_INVALID_ARGUMENT);
    CHECK_REFUSED(bgjob_custom_write(id, BGJOB_STREAM_OUTPUT, NULL, 3), BGJOB_E_INVALID_ARGUMENT);
    CHECK_REFUSED(bgjob_custom_write_text(id, BGJOB_STREAM_OUTPUT, NULL), BGJOB_E_INVALID_ARGUMENT);
    CHECK_REFUSED(bgjob_custom_write_text(UINT64_MAX - 3, BGJOB_STREAM_OUTPUT, "x"), BGJOB_E_NO_SUCH_JOB);
    CHECK_REFUSED(bgjob_custom_set_state(id, 42, NULL), BGJOB_E_INVALID_ARGUMENT);
    CHECK_REFUSED(bgjob_custom_set_state(id, BGJOB_STATE_NOT_STARTED, NULL), BGJOB_E_INVALID_STATE);
    CHECK_OK(bgjob_custom_set_state(id, BGJOB_STATE_FAILED, "the host's reason"));
    CHECK_REFUSED(bgjob_custom_write_text(id, BGJOB_STREAM_OUTPUT, "late"), BGJOB_E_INVALID_STATE);
    CHECK_REFUSED(bgjob_custom_progress(id, 10, "late", NULL), BGJOB_E_INVALID_STATE);
    CHECK_REFUSED(bgjob_custom_set_state(id, BGJOB_STATE_RUNNING, NULL), BGJOB_E_INVALID_STATE);
    CHECK(job_is(id, BGJOB_STATE_FAILED, "the host's reason"));
    CHECK(saw(&rec, id, RUN_FAILED, 2));
    CHECK(saw(&g_any, id, RUN_FAILED, 2));
    const bgjob_stream s[] = {BGJOB_STREAM_OUTPUT};
    const char *const t[] = {"in time"};
    CHECK(records_are(id, 1, s, t));
    CHECK_OK(bgjob_remove(id, false));
    CHECK(atomic_load(&rec.finalized) == 1);
    recorder_destroy(&rec);
    still_usable(NULL);
}

/* ===== finalizers that call back into the library ========================================== */

/* The user data of a work whose finalizer calls the library; the statuses it got. */
typedef struct reentrant {
    _Atomic uint64_t own;    /* the job's id, for the finalizer (set by the work, which runs
                                before it, or by the test before a stop) */
    const bgjob_pool *pool;  /* where the finalizer starts its job */
    atomic_int finalized;
    atomic_int own_state;    /* bgjob_get_state(own) from the finalizer (its state) */
    atomic_int st_get, st_wait, st_remove, st_start, st_inner_wait, st_panic;
    uint64_t inner;          /* the job the finalizer started */
} reentrant;

static void reentrant_init(reentrant *r, const bgjob_pool *pool) {
    atomic_init(&r->own, 0);
    r->pool = pool;
    r->inner = 0;
    atomic_init(&r->finalized, 0);
    atomic_init(&r->own_state, -1);
    atomic_init(&r->st_get, -1);
    atomic_init(&r->st_wait, -1);
    atomic_init(&r->st_remove, -1);
    atomic_init(&r->st_start, -1);
    atomic_init(&r->st_inner_wait, -1);
    atomic_init(&r->st_panic, -1);
}

/* Notes its job's id for the finalizer (bgjob_start writes the id only once the job is
 * queued: the work may be over by then), then writes "2". */
static int32_t work_note_id(bgjob_context *ctx, void *user_data) {
    atomic_store(&((reentrant *)user_data)->own, bgjob_context_job_id(ctx));
    return (int32_t)bgjob_context_write_text(ctx, BGJOB_STREAM_OUTPUT, "2");
}

static int32_t work_inner(bgjob_context *ctx, void *user_data) {
    (void)user_data;
    return (int32_t)bgjob_context_write_text(ctx, BGJOB_STREAM_OUTPUT, "inner");
}

/* Starts a job on the same pool and waits for it (from the work's thread: the wait lends
 * the worker, so even a one-thread pool runs it), then removes it. */
static void fin_starts_and_waits(void *user_data) {
    reentrant *r = user_data;
    atomic_fetch_add(&r->finalized, 1);
    bgjob_job_state st = 99;
    atomic_store(&r->st_get, (int)bgjob_get_state(atomic_load(&r->own), &st));
    atomic_store(&r->own_state, (int)st);
    uint64_t inner = 0;
    atomic_store(&r->st_start, (int)bgjob_start_fn(work_inner, NULL, NULL, r->pool, &inner));
    r->inner = inner;
    atomic_store(&r->st_inner_wait, (int)bgjob_wait(&inner, 1, BGJOB_WAIT_ALL, BOUND_MS, NULL, NULL));
    atomic_store(&r->st_panic, (int)inject_panic("injected in a finalizer"));
}

static void test_finalizer_starts_and_waits_for_a_job(void) {
    bgjob_pool *one = NULL;
    CHECK_OK(bgjob_pool_new(1, 0, &one));
    reentrant r;
    reentrant_init(&r, one);
    recorder rec;
    recorder_init(&rec);
    uint64_t id = start_recorded("faults-fin-start", work_note_id, &r, fin_starts_and_waits, &rec, one);
    CHECK(wait_done(id));
    CHECK(atomic_load(&r.finalized) == 1);
    CHECK(atomic_load(&r.st_get) == BGJOB_OK);
    /* The finalizer runs after the work returned, before the job's finished state. */
    CHECK(atomic_load(&r.own_state) == BGJOB_STATE_RUNNING);
    CHECK(atomic_load(&r.st_start) == BGJOB_OK);
    CHECK(atomic_load(&r.st_inner_wait) == BGJOB_OK);
    CHECK(atomic_load(&r.st_panic) == BGJOB_E_PANIC);
    CHECK(job_is(id, BGJOB_STATE_COMPLETED, NULL));
    CHECK(saw(&rec, id, RUN_COMPLETED, 2));
    CHECK(job_is(r.inner, BGJOB_STATE_COMPLETED, NULL));
    const bgjob_stream s[] = {BGJOB_STREAM_OUTPUT};
    const char *const two[] = {"2"};
    const char *const inner[] = {"inner"};
    CHECK(records_are(id, 1, s, two));
    CHECK(records_are(r.inner, 1, s, inner));
    CHECK_OK(bgjob_remove(r.inner, false));
    CHECK_OK(bgjob_remove(id, false));
    CHECK(atomic_load(&rec.finalized) == 1);
    recorder_destroy(&rec);
    still_usable(one);
    pool_close(one);
}

/* From inside the job's own work (where a work's finalizer runs): a wait on the job is
 * refused as a deadlock, a plain remove as unfinished. */
static void fin_waits_on_own_job(void *user_data) {
    reentrant *r = user_data;
    atomic_fetch_add(&r->finalized, 1);
    uint64_t own = atomic_load(&r->own);
    atomic_store(&r->st_wait, (int)bgjob_wait(&own, 1, BGJOB_WAIT_ALL, BOUND_MS, NULL, NULL));
    atomic_store(&r->st_remove, (int)bgjob_remove(own, false));
}

static void test_finalizer_waits_on_its_running_job(void) {
    reentrant r;
    reentrant_init(&r, g_pool);
    recorder rec;
    recorder_init(&rec);
    uint64_t id = start_recorded("faults-fin-wait-own", work_note_id, &r, fin_waits_on_own_job, &rec, g_pool);
    CHECK(wait_done(id));
    CHECK(atomic_load(&r.finalized) == 1);
    CHECK(atomic_load(&r.st_wait) == BGJOB_E_WOULD_DEADLOCK);
    CHECK(atomic_load(&r.st_remove) == BGJOB_E_NOT_FINISHED);
    CHECK(job_is(id, BGJOB_STATE_COMPLETED, NULL));
    CHECK(saw(&rec, id, RUN_COMPLETED, 2));
    CHECK_OK(bgjob_remove(id, false));
    CHECK(atomic_load(&rec.finalized) == 1);
    recorder_destroy(&rec);
    still_usable(g_pool);
}

/* A forced remove of its own job from the work's finalizer takes the job out at once. */
static void fin_removes_own_job(void *user_data) {
    reentrant *r = user_data;
    atomic_fetch_add(&r->finalized, 1);
    uint64_t own = atomic_load(&r->own);
    atomic_store(&r->st_remove, (int)bgjob_remove(own, true));
    atomic_store(&r->st_wait, (int)bgjob_wait(&own, 1, BGJOB_WAIT_ALL, BOUND_MS, NULL, NULL));
}

static void test_finalizer_removes_its_own_job(void) {
    reentrant r;
    reentrant_init(&r, g_pool);
    recorder rec;
    recorder_init(&rec);
    uint64_t id = start_recorded("faults-fin-remove-own", work_note_id, &r, fin_removes_own_job, &rec, g_pool);
    /* The id goes once the finalizer removed it; the registration ends with it. */
    CHECK(wait_for_count(&rec.finalized, 1, BOUND_MS));
    CHECK(state_of(id) == 99);
    CHECK(atomic_load(&r.finalized) == 1);
    CHECK(atomic_load(&r.st_remove) == BGJOB_OK);
    CHECK(atomic_load(&r.st_wait) == BGJOB_E_NO_SUCH_JOB);
    /* A forced remove stops the job first (Running -> Stopping, still seen by the job's
     * callbacks), then ends its registrations: the job's own callback never sees the end;
     * the repository-wide one does, and the work's return ends it Stopped. */
    CHECK(saw(&rec, id, RUN_STOPPING, 2));
    double deadline = now_ms() + BOUND_MS;
    while (!saw_quietly(&g_any, id, RUN_STOPPED, 3, false) && now_ms() < deadline) sleep_ms(1);
    CHECK(saw(&g_any, id, RUN_STOPPED, 3));
    recorder_destroy(&rec);
    still_usable(g_pool);
}

/* Run on the thread that stops a queued job: reads its state, starts another job, injects a
 * panic. */
static void fin_of_a_queued_job(void *user_data) {
    reentrant *r = user_data;
    atomic_fetch_add(&r->finalized, 1);
    bgjob_job_state st = 99;
    atomic_store(&r->st_get, (int)bgjob_get_state(atomic_load(&r->own), &st));
    atomic_store(&r->own_state, (int)st);
    uint64_t inner = 0;
    atomic_store(&r->st_start, (int)bgjob_start_fn(work_inner, NULL, NULL, NULL, &inner));
    r->inner = inner;
    atomic_store(&r->st_panic, (int)inject_panic("injected in a finalizer"));
}

static void test_finalizer_of_a_job_stopped_while_queued(void) {
    busy_pool b;
    busy_init(&b);
    reentrant r;
    reentrant_init(&r, NULL);
    recorder rec;
    recorder_init(&rec);
    uint64_t id = start_recorded("faults-fin-queued", work_note_id, &r, fin_of_a_queued_job, &rec, b.pool);
    atomic_store(&r.own, id);
    CHECK_OK(bgjob_stop(id, BOUND_MS));
    CHECK(atomic_load(&r.finalized) == 1);
    CHECK(atomic_load(&r.st_get) == BGJOB_OK);
    CHECK(atomic_load(&r.own_state) == BGJOB_STATE_STOPPED);
    CHECK(atomic_load(&r.st_start) == BGJOB_OK);
    CHECK(atomic_load(&r.st_panic) == BGJOB_E_PANIC);
    CHECK(job_is(id, BGJOB_STATE_STOPPED, NULL));
    CHECK(saw(&rec, id, QUEUED_STOPPED, 1));
    CHECK(saw(&g_any, id, QUEUED_STOPPED, 1));
    CHECK(wait_done(r.inner));
    CHECK(job_is(r.inner, BGJOB_STATE_COMPLETED, NULL));
    CHECK_OK(bgjob_remove(r.inner, false));
    CHECK_OK(bgjob_remove(id, false));
    CHECK(atomic_load(&rec.finalized) == 1);
    recorder_destroy(&rec);
    busy_release(&b);
    still_usable(b.pool);
    busy_close(&b);
}

/* A registration's finalizer, run by the removal of its job (on the remover's thread): the
 * job is gone by then; it starts another job and injects a panic. */
typedef struct reg_fin {
    uint64_t own;
    atomic_int finalized;
    atomic_int st_get, st_start, st_panic;
    uint64_t inner;
} reg_fin;

static void reg_fin_calls_the_api(void *user_data) {
    reg_fin *f = user_data;
    atomic_fetch_add(&f->finalized, 1);
    bgjob_job_state st;
    atomic_store(&f->st_get, (int)bgjob_get_state(f->own, &st));
    uint64_t inner = 0;
    atomic_store(&f->st_start, (int)bgjob_start_fn(work_inner, NULL, NULL, NULL, &inner));
    f->inner = inner;
    atomic_store(&f->st_panic, (int)inject_panic("injected in a finalizer"));
}

static void noop_cb(const bgjob_state_event *e, void *user_data) {
    (void)e;
    (void)user_data;
}

static void test_registration_finalizer_calls_the_api_at_removal(void) {
    reg_fin f;
    f.own = 0;
    f.inner = 0;
    atomic_init(&f.finalized, 0);
    atomic_init(&f.st_get, -1);
    atomic_init(&f.st_start, -1);
    atomic_init(&f.st_panic, -1);
    bgjob_spec *spec = named_spec("faults-reg-fin");
    CHECK_OK(bgjob_spec_set_work(spec, work_write_two, NULL, NULL));
    CHECK_OK(bgjob_spec_on_state_changed(spec, noop_cb, &f, reg_fin_calls_the_api));
    CHECK_OK(bgjob_spec_set_pool(spec, g_pool));
    CHECK_OK(bgjob_start(spec, &f.own));
    CHECK(wait_done(f.own));
    CHECK(atomic_load(&f.finalized) == 0);
    CHECK_OK(bgjob_remove(f.own, false));
    CHECK(atomic_load(&f.finalized) == 1);
    CHECK(atomic_load(&f.st_get) == BGJOB_E_NO_SUCH_JOB);
    CHECK(atomic_load(&f.st_start) == BGJOB_OK);
    CHECK(atomic_load(&f.st_panic) == BGJOB_E_PANIC);
    CHECK(wait_done(f.inner));
    CHECK(job_is(f.inner, BGJOB_STATE_COMPLETED, NULL));
    CHECK_OK(bgjob_remove(f.inner, false));

    /* An unregistration runs it too, on the unregistering thread. */
    reg_fin g;
    g.inner = 0;
    atomic_init(&g.finalized, 0);
    atomic_init(&g.st_get, -1);
    atomic_init(&g.st_start, -1);
    atomic_init(&g.st_panic, -1);
    g.own = start_job("faults-reg-fin-2", work_write_two, NULL, NULL, g_pool);
    uint64_t reg = 0;
    CHECK_OK(bgjob_on_state_changed(g.own, noop_cb, &g, reg_fin_calls_the_api, &reg));
    CHECK(wait_done(g.own));
    CHECK_OK(bgjob_unregister(g.own, reg));
    CHECK(atomic_load(&g.finalized) == 1);
    CHECK(atomic_load(&g.st_get) == BGJOB_OK);
    CHECK(atomic_load(&g.st_start) == BGJOB_OK);
    CHECK(atomic_load(&g.st_panic) == BGJOB_E_PANIC);
    CHECK(wait_done(g.inner));
    CHECK_OK(bgjob_remove(g.inner, false));
    CHECK_OK(bgjob_remove(g.own, false));
    CHECK(atomic_load(&g.finalized) == 1);
    still_usable(NULL);
}

/* A spec's finalizers run when it is freed unstarted, or when its start fails; there they
 * start jobs of their own. */
static void test_spec_finalizers_call_the_api(void) {
    reentrant r;
    reentrant_init(&r, g_pool);
    bgjob_spec *spec = named_spec("faults-spec-fin");
    CHECK_OK(bgjob_spec_set_work(spec, work_note_id, &r, fin_of_a_queued_job));
    atomic_store(&r.own, UINT64_MAX - 5); /* never started: no id */
    bgjob_spec_free(spec);
    CHECK(atomic_load(&r.finalized) == 1);
    CHECK(atomic_load(&r.st_get) == BGJOB_E_NO_SUCH_JOB);
    CHECK(atomic_load(&r.st_start) == BGJOB_OK);
    CHECK(atomic_load(&r.st_panic) == BGJOB_E_PANIC);
    CHECK(wait_done(r.inner));
    CHECK_OK(bgjob_remove(r.inner, false));

    /* A start that fails (its pool is shut down) finalizes the work's and the callback's
     * user data once each; their calls work. */
    bgjob_pool *closed = NULL;
    CHECK_OK(bgjob_pool_new(1, 0, &closed));
    CHECK_OK(bgjob_pool_shutdown(closed, BOUND_MS));
    reentrant w;
    reentrant_init(&w, NULL);
    atomic_store(&w.own, UINT64_MAX - 5);
    reg_fin f;
    f.own = UINT64_MAX - 5;
    f.inner = 0;
    atomic_init(&f.finalized, 0);
    atomic_init(&f.st_get, -1);
    atomic_init(&f.st_start, -1);
    atomic_init(&f.st_panic, -1);
    spec = named_spec("faults-spec-fin-2");
    CHECK_OK(bgjob_spec_set_work(spec, work_note_id, &w, fin_of_a_queued_job));
    CHECK_OK(bgjob_spec_on_state_changed(spec, noop_cb, &f, reg_fin_calls_the_api));
    CHECK_OK(bgjob_spec_set_pool(spec, closed));
    uint64_t id = 0;
    CHECK_REFUSED(bgjob_start(spec, &id), BGJOB_E_SHUT_DOWN);
    CHECK(atomic_load(&w.finalized) == 1);
    CHECK(atomic_load(&f.finalized) == 1);
    CHECK(atomic_load(&w.st_start) == BGJOB_OK);
    CHECK(atomic_load(&f.st_start) == BGJOB_OK);
    CHECK(wait_done(w.inner));
    CHECK(wait_done(f.inner));
    CHECK_OK(bgjob_remove(w.inner, false));
    CHECK_OK(bgjob_remove(f.inner, false));
    bgjob_pool_free(closed);
    still_usable(NULL);
}

/* ===== The finalizer of a job stopped while queued waits for and removes its job ========= */

/* A regression test (same root cause as tests/faults.rs's work_data_whose_drop_panics_when_
 * stopped_while_queued): this finalizer once ran inside bgjob_stop after Stopped was stored
 * but before it was delivered, so bgjob_wait on the job waited out its whole timeout and
 * bgjob_remove(job, false) never returned — the thread that called bgjob_stop hung. Now
 * the finalizer runs after the Stopped change was delivered: both answer at once. */
static void fin_waits_and_removes_own_queued_job(void *user_data) {
    reentrant *r = user_data;
    atomic_fetch_add(&r->finalized, 1);
    uint64_t own = atomic_load(&r->own);
    atomic_store(&r->st_wait, (int)bgjob_wait(&own, 1, BGJOB_WAIT_ALL, 2000, NULL, NULL));
    atomic_store(&r->st_remove, (int)bgjob_remove(own, false));
}

static void test_finalizer_of_a_queued_job_waits_for_or_removes_it(void) {
    busy_pool b;
    busy_init(&b);
    reentrant r;
    reentrant_init(&r, NULL);
    bgjob_spec *spec = named_spec("faults-fin-queued");
    CHECK_OK(bgjob_spec_set_work(spec, work_note_id, &r, fin_waits_and_removes_own_queued_job));
    CHECK_OK(bgjob_spec_set_pool(spec, b.pool));
    uint64_t id = 0;
    CHECK_OK(bgjob_start(spec, &id));
    atomic_store(&r.own, id);
    CHECK_OK(bgjob_stop(id, BOUND_MS)); /* once hung here, in the finalizer's remove */
    CHECK(atomic_load(&r.finalized) == 1);
    int waited = atomic_load(&r.st_wait);
    CHECK(waited == BGJOB_OK || waited == BGJOB_E_WOULD_DEADLOCK);
    int removed = atomic_load(&r.st_remove);
    CHECK(removed == BGJOB_OK || removed == BGJOB_E_WOULD_DEADLOCK);
    if (removed != BGJOB_OK) CHECK_OK(bgjob_remove(id, false));
    busy_release(&b);
    still_usable(b.pool);
    busy_close(&b);
}

/* ===== afterwards ========================================================================== */

static void test_repository_is_clean(void) {
    CHECK(repo_count() == 0);
}

static uint64_t g_any_reg = 0;

/* What every run needs: the two-thread pool and the repository-wide recorder. */
static bool setup(void) {
    if (bgjob_pool_new(2, 0, &g_pool) != BGJOB_OK) {
        fprintf(stderr, "bgjob_pool_new: %s\n", bgjob_last_error_message());
        return false;
    }
    recorder_init(&g_any);
    if (bgjob_on_any_state_changed(recorder_cb, &g_any, recorder_fin, &g_any_reg) != BGJOB_OK) {
        fprintf(stderr, "bgjob_on_any_state_changed: %s\n", bgjob_last_error_message());
        return false;
    }
    return true;
}

/* Undoes setup, checks the repository is empty and ends every bgjob thread. */
static void teardown(void) {
    CHECK(repo_count() == 0);
    CHECK_OK(bgjob_unregister(0, g_any_reg));
    CHECK(atomic_load(&g_any.finalized) == 1);
    recorder_destroy(&g_any);
    CHECK_OK(bgjob_pool_shutdown(g_pool, BOUND_MS));
    bgjob_pool_free(g_pool);
    g_pool = NULL;
    /* Every bgjob thread gone before exit: valgrind sees no live worker. */
    CHECK_OK(bgjob_shutdown(BGJOB_INFINITE));
}

typedef struct isolated_test {
    const char *name;
    void (*fn)(void);
    bool passed;
} isolated_test;

#define ISOLATED(fn) {#fn, fn, false}

int main(void) {
    /* The crash candidates — finalizers calling back into the library — first run each in
     * a child forked before this process uses bgjob at all. */
    isolated_test isolated[] = {
        ISOLATED(test_finalizer_starts_and_waits_for_a_job),
        ISOLATED(test_finalizer_waits_on_its_running_job),
        ISOLATED(test_finalizer_removes_its_own_job),
        ISOLATED(test_finalizer_of_a_job_stopped_while_queued),
        ISOLATED(test_registration_finalizer_calls_the_api_at_removal),
        ISOLATED(test_spec_finalizers_call_the_api),
    };
    size_t n_isolated = sizeof isolated / sizeof isolated[0];
    char label[160];
    for (size_t i = 0; i < n_isolated; i++) {
        snprintf(label, sizeof label, "%s [isolated]", isolated[i].name);
        RUN_CALL(label, isolated[i].passed = run_isolated(isolated[i].name, isolated[i].fn,
                                                          ISOLATED_ALARM_S));
    }
    /* Once a hang (see its comment): still isolated and bounded. */
    RUN_CALL("test_finalizer_of_a_queued_job_waits_for_or_removes_it [isolated]",
             run_isolated("test_finalizer_of_a_queued_job_waits_for_or_removes_it",
                          test_finalizer_of_a_queued_job_waits_for_or_removes_it, 20));

    if (!setup()) return 1;
    /* the work */
    RUN_TEST(test_work_error_return);
    RUN_TEST(test_work_fail_reason_wins);
    RUN_TEST(test_work_injected_panic);
    RUN_TEST(test_parallel_children_error_and_panic);
    RUN_TEST(test_inline_run_error);
    /* state-change callbacks */
    RUN_TEST(test_callback_api_errors);
    RUN_TEST(test_callback_injected_panic);
    RUN_TEST(test_callback_panic_on_the_stopping_thread);
    /* record writes */
    RUN_TEST(test_record_writes_with_bad_arguments);
    RUN_TEST(test_custom_writes_with_bad_arguments);
    /* finalizers: again, in this process (valgrind checks them here), if they passed */
    for (size_t i = 0; i < n_isolated; i++)
        if (isolated[i].passed) RUN_CALL(isolated[i].name, isolated[i].fn());
    RUN_TEST(test_repository_is_clean);
    teardown();
    return check_summary("test_faults");
}
