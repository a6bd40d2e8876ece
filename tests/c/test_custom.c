/* Custom (host-driven) jobs and inline runs through the C ABI.
 *
 * A custom job (PowerShell: a class derived from Job) runs no work of ours: the host makes
 * it from a spec (bgjob_create_custom), moves it through legal states, writes its records
 * and ends the foreign work when its stop callback is called; get, wait, receive, stop and
 * remove treat it like any job. An inline run (the cmdlet without -AsJob) is the thread job
 * bgjob_start would start, run on the calling thread. */
#include "check.h"
#include "util.h"

#include <inttypes.h>

#define LONG_MS 20000

/* An id no test ever gets. */
#define UNKNOWN_ID (UINT64_MAX - 11)

/* The call fails with `want` and the last error message holds `fragment`. */
#define CHECK_ERROR(expr, want, fragment)                                              \
    do {                                                                               \
        CHECK_STATUS((expr), (want));                                                  \
        if (strstr(bgjob_last_error_message(), (fragment)) == NULL) {                  \
            fprintf(stderr, "  FAIL %s (%s:%d): %s: message \"%s\" lacks \"%s\"\n",    \
                    check_current, __FILE__, __LINE__, #expr,                          \
                    bgjob_last_error_message(), (fragment));                           \
            check_failures++;                                                          \
        }                                                                              \
    } while (0)

static pthread_t g_main_thread;

/* ----- a log of state changes and stop calls, in the order they happened ---------------- */

#define LOG_MAX 32

/* What a log entry is: a state-change callback, or a stop callback. */
enum { EV_STATE = 'S', EV_STOP = 'X' };

/* What the stop callback does: nothing, or end the foreign work (move the job to Stopped). */
enum { STOP_DOES_NOTHING = 0, STOP_ENDS_THE_JOB = 1 };

typedef struct log_entry {
    int kind;
    uint64_t job_id;
    uint64_t parent_id;          /* stop calls only */
    bgjob_job_state previous;    /* for a stop call: the job's state seen at the call */
    bgjob_job_state state;       /* for a stop call: the same */
    bool on_main_thread;
    char reason[64];             /* "" when none */
} log_entry;

typedef struct event_log {
    pthread_mutex_t mu;
    int n;
    log_entry e[LOG_MAX];
    int stop_action;
    atomic_int stop_calls;
    atomic_int stop_set_state_failures; /* the stop callback's set_state calls that failed */
    atomic_int finalized;               /* of the state callback's user data */
    atomic_int stop_finalized;          /* of the stop callback's user data */
} event_log;

static void log_init(event_log *l, int stop_action) {
    pthread_mutex_init(&l->mu, NULL);
    l->n = 0;
    l->stop_action = stop_action;
    atomic_init(&l->stop_calls, 0);
    atomic_init(&l->stop_set_state_failures, 0);
    atomic_init(&l->finalized, 0);
    atomic_init(&l->stop_finalized, 0);
}

static void log_destroy(event_log *l) {
    pthread_mutex_destroy(&l->mu);
}

static void log_append(event_log *l, int kind, uint64_t job_id, uint64_t parent_id,
                       bgjob_job_state previous, bgjob_job_state state, const char *reason) {
    pthread_mutex_lock(&l->mu);
    if (l->n < LOG_MAX) {
        log_entry *e = &l->e[l->n++];
        e->kind = kind;
        e->job_id = job_id;
        e->parent_id = parent_id;
        e->previous = previous;
        e->state = state;
        e->on_main_thread = pthread_equal(pthread_self(), g_main_thread) != 0;
        snprintf(e->reason, sizeof e->reason, "%s", reason != NULL ? reason : "");
    }
    pthread_mutex_unlock(&l->mu);
}

static int log_count(event_log *l) {
    pthread_mutex_lock(&l->mu);
    int n = l->n;
    pthread_mutex_unlock(&l->mu);
    return n;
}

static void on_state(const bgjob_state_event *e, void *user_data) {
    log_append(user_data, EV_STATE, e->job_id, 0, e->previous_state_info.state,
               e->state_info.state, e->state_info.reason);
}

static void on_stop(const bgjob_stop_event *e, void *user_data) {
    event_log *l = user_data;
    atomic_fetch_add(&l->stop_calls, 1);
    bgjob_job_state seen = state_of(e->job_id);
    log_append(l, EV_STOP, e->job_id, e->parent_id, seen, seen, NULL);
    if (l->stop_action == STOP_ENDS_THE_JOB &&
        bgjob_custom_set_state(e->job_id, BGJOB_STATE_STOPPED, NULL) != BGJOB_OK)
        atomic_fetch_add(&l->stop_set_state_failures, 1);
}

static void log_finalize(void *user_data) {
    atomic_fetch_add(&((event_log *)user_data)->finalized, 1);
}

static void stop_finalize(void *user_data) {
    atomic_fetch_add(&((event_log *)user_data)->stop_finalized, 1);
}

/* One entry a test expects. */
typedef struct want_entry {
    int kind;
    uint64_t job_id;
    bgjob_job_state previous, state;
} want_entry;

static void log_print(event_log *l) {
    fprintf(stderr, "  (log:");
    for (int i = 0; i < l->n; i++)
        fprintf(stderr, " %c[%" PRIu64 "] %s->%s", l->e[i].kind, l->e[i].job_id,
                bgjob_state_name(l->e[i].previous), bgjob_state_name(l->e[i].state));
    fprintf(stderr, ")\n");
}

/* Whether the log is exactly `want` (n entries), in order. */
static bool log_is(event_log *l, const want_entry *want, int n) {
    pthread_mutex_lock(&l->mu);
    bool ok = l->n == n;
    for (int i = 0; ok && i < n; i++)
        ok = l->e[i].kind == want[i].kind && l->e[i].job_id == want[i].job_id &&
             l->e[i].previous == want[i].previous && l->e[i].state == want[i].state;
    if (!ok) log_print(l);
    pthread_mutex_unlock(&l->mu);
    return ok;
}

/* Whether every entry of the log was made on the main thread. */
static bool log_all_on_main_thread(event_log *l) {
    pthread_mutex_lock(&l->mu);
    bool ok = l->n > 0;
    for (int i = 0; i < l->n; i++) ok = ok && l->e[i].on_main_thread;
    pthread_mutex_unlock(&l->mu);
    return ok;
}

/* The job's state changes in the log are a legal history: NotStarted → … → `final`, each
 * previous state the one before, exactly one finished state and it last. */
static bool log_history_is_legal(event_log *l, uint64_t id, bgjob_job_state final) {
    pthread_mutex_lock(&l->mu);
    bgjob_job_state at = BGJOB_STATE_NOT_STARTED;
    int seen = 0;
    bool ok = true;
    for (int i = 0; ok && i < l->n; i++) {
        if (l->e[i].kind != EV_STATE || l->e[i].job_id != id) continue;
        ok = l->e[i].previous == at && legal_move(at, l->e[i].state) &&
             !bgjob_state_is_finished(at);
        at = l->e[i].state;
        seen++;
    }
    ok = ok && seen >= 2 && at == final;
    if (!ok) log_print(l);
    pthread_mutex_unlock(&l->mu);
    return ok;
}

/* ----- helpers -------------------------------------------------------------------------- */

/* A spec for a custom job named `name` (NULL = default), its state changes logged to `log`
 * (NULL = none) and, if `stop` is true, its stops handled by on_stop with `log`. */
static bgjob_spec *custom_spec(const char *name, event_log *log, bool stop) {
    bgjob_spec *spec = named_spec(name);
    if (spec == NULL) return NULL;
    if (log != NULL) CHECK_OK(bgjob_spec_on_state_changed(spec, on_state, log, log_finalize));
    if (log != NULL && stop) CHECK_OK(bgjob_spec_on_stop(spec, on_stop, log, stop_finalize));
    return spec;
}

/* Makes the custom job `spec` describes; its id, or 0 after a failed CHECK. */
static uint64_t create(bgjob_spec *spec) {
    uint64_t id = 0;
    CHECK_OK(bgjob_create_custom(spec, &id));
    CHECK(id != 0);
    return id;
}

static bool text_eq(const char *got, const char *want) {
    return got != NULL && strcmp(got, want) == 0;
}

/* A copy of one received record. */
typedef struct got_record {
    bgjob_stream stream;
    uint64_t job_id;
    uint64_t sequence;
    int32_t percent;
    char text[48];
    char activity[48];
} got_record;

/* Takes every record of `id` (a consuming receive) into `out`; returns their count, or
 * (size_t)-1 if the receive failed. */
static size_t take_records(uint64_t id, got_record *out, size_t room) {
    bgjob_records *recs = NULL;
    if (bgjob_receive(id, 0, 0, 0, &recs) != BGJOB_OK) return (size_t)-1;
    size_t n = bgjob_records_count(recs);
    for (size_t i = 0; i < n && i < room; i++) {
        const bgjob_record *r = bgjob_records_get(recs, i);
        got_record *g = &out[i];
        memset(g, 0, sizeof *g);
        g->stream = r->stream;
        g->job_id = r->job_id;
        g->sequence = r->sequence;
        g->percent = r->percent_complete;
        if (r->data != NULL)
            snprintf(g->text, sizeof g->text, "%.*s", (int)r->len, (const char *)r->data);
        if (r->activity != NULL) snprintf(g->activity, sizeof g->activity, "%s", r->activity);
    }
    bgjob_records_free(recs);
    return n;
}

/* Whether the job's snapshot has this state and reason (NULL = none). */
static bool state_and_reason(uint64_t id, bgjob_job_state state, const char *reason_part) {
    bgjob_job_info *info = NULL;
    if (bgjob_get_job(id, &info) != BGJOB_OK) return false;
    const char *r = bgjob_job_info_reason(info);
    bool ok = bgjob_job_info_state(info) == state &&
              (reason_part == NULL ? r == NULL : (r != NULL && strstr(r, reason_part) != NULL));
    if (!ok)
        fprintf(stderr, "  (job %" PRIu64 ": %s, reason %s)\n", id,
                bgjob_state_name(bgjob_job_info_state(info)), r ? r : "NULL");
    bgjob_job_info_free(info);
    return ok;
}

/* ----- a custom job driven by its host, waited on and received by another thread -------- */

typedef struct waiter_args {
    uint64_t id;
    event_log *log;
    latch started;
    atomic_bool returned;
    bgjob_status wait_status;
    bgjob_job_state state_at_return;
    int log_count_at_return;
    size_t count;
    got_record recs[8];
} waiter_args;

static void *waiter_thread(void *arg) {
    waiter_args *w = arg;
    latch_bump(&w->started);
    w->wait_status = bgjob_wait(&w->id, 1, BGJOB_WAIT_ALL, LONG_MS, NULL, NULL);
    w->state_at_return = state_of(w->id);
    w->log_count_at_return = log_count(w->log);
    atomic_store(&w->returned, true);
    w->count = take_records(w->id, w->recs, 8);
    return NULL;
}

static void test_a_host_driven_job_is_waited_on_and_received_by_another_thread(void) {
    event_log log;
    log_init(&log, STOP_ENDS_THE_JOB);
    bgjob_spec *spec = custom_spec("remote-sync", &log, true);
    CHECK_OK(bgjob_spec_set_command(spec, "sync db"));
    CHECK_OK(bgjob_spec_set_location(spec, "db.example"));
    uint64_t id = create(spec);
    CHECK(state_of(id) == BGJOB_STATE_NOT_STARTED);
    bgjob_job_info *info = NULL;
    CHECK_OK(bgjob_get_job(id, &info));
    CHECK(text_eq(bgjob_job_info_type_name(info), "CustomJob"));
    CHECK(text_eq(bgjob_job_info_location(info), "db.example"));
    CHECK(text_eq(bgjob_job_info_name(info), "remote-sync"));
    CHECK(text_eq(bgjob_job_info_command(info), "sync db"));
    CHECK(bgjob_job_info_begin_time_ns(info) == 0);
    bgjob_job_info_free(info);

    waiter_args w = {.id = id, .log = &log};
    latch_init(&w.started);
    atomic_init(&w.returned, false);
    pthread_t t;
    CHECK(pthread_create(&t, NULL, waiter_thread, &w) == 0);
    CHECK(latch_wait(&w.started, 1, LONG_MS));

    /* The host (this thread) drives the job. */
    CHECK_OK(bgjob_custom_set_state(id, BGJOB_STATE_RUNNING, NULL));
    CHECK_OK(bgjob_custom_write(id, BGJOB_STREAM_OUTPUT, "row 1", 5));
    CHECK_OK(bgjob_custom_progress(id, 50, "Syncing", "half way"));
    CHECK_OK(bgjob_custom_set_status_message(id, "1 of 2 rows"));
    CHECK_OK(bgjob_custom_write_text(id, BGJOB_STREAM_OUTPUT, "row 2"));
    info = NULL;
    CHECK_OK(bgjob_get_job(id, &info));
    CHECK(bgjob_job_info_state(info) == BGJOB_STATE_RUNNING);
    CHECK(bgjob_job_info_begin_time_ns(info) != 0);
    CHECK(text_eq(bgjob_job_info_status_message(info), "1 of 2 rows"));
    int32_t pct = 0;
    const char *activity = NULL, *status = NULL;
    CHECK(bgjob_job_info_progress(info, &pct, &activity, &status));
    CHECK(pct == 50 && text_eq(activity, "Syncing") && text_eq(status, "half way"));
    bgjob_job_info_free(info);
    /* Running is not done: the other thread still waits. */
    CHECK(!atomic_load(&w.returned));
    CHECK_OK(bgjob_custom_set_state(id, BGJOB_STATE_COMPLETED, NULL));
    pthread_join(t, NULL);
    latch_destroy(&w.started);

    /* The wait returned for the finished job, after the callbacks of that change. */
    CHECK(w.wait_status == BGJOB_OK);
    CHECK(w.state_at_return == BGJOB_STATE_COMPLETED);
    CHECK(w.log_count_at_return == 2);
    /* It received every record, in order, each with the job's id. */
    CHECK(w.count == 3);
    if (w.count == 3) {
        CHECK(w.recs[0].stream == BGJOB_STREAM_OUTPUT && text_eq(w.recs[0].text, "row 1"));
        CHECK(w.recs[1].stream == BGJOB_STREAM_PROGRESS && w.recs[1].percent == 50 &&
              text_eq(w.recs[1].activity, "Syncing") && text_eq(w.recs[1].text, "half way"));
        CHECK(w.recs[2].stream == BGJOB_STREAM_OUTPUT && text_eq(w.recs[2].text, "row 2"));
        for (size_t i = 0; i < 3; i++) CHECK(w.recs[i].job_id == id);
        CHECK(w.recs[0].sequence < w.recs[1].sequence && w.recs[1].sequence < w.recs[2].sequence);
    }
    /* The callbacks: NotStarted → Running → Completed, on the host's thread, no stop call. */
    want_entry want[] = {
        {EV_STATE, id, BGJOB_STATE_NOT_STARTED, BGJOB_STATE_RUNNING},
        {EV_STATE, id, BGJOB_STATE_RUNNING, BGJOB_STATE_COMPLETED},
    };
    CHECK(log_is(&log, want, 2));
    CHECK(log_all_on_main_thread(&log));
    CHECK(atomic_load(&log.stop_calls) == 0);
    info = NULL;
    CHECK_OK(bgjob_get_job(id, &info));
    CHECK(bgjob_job_info_end_time_ns(info) >= bgjob_job_info_begin_time_ns(info));
    CHECK(bgjob_job_info_reason(info) == NULL);
    bgjob_job_info_free(info);

    /* A finished job's streams are closed: every write is refused, nothing is added. */
    CHECK_ERROR(bgjob_custom_write(id, BGJOB_STREAM_OUTPUT, "late", 4), BGJOB_E_INVALID_STATE,
                "finished");
    CHECK_ERROR(bgjob_custom_write_text(id, BGJOB_STREAM_ERROR, "late"), BGJOB_E_INVALID_STATE,
                "finished");
    CHECK_ERROR(bgjob_custom_progress(id, 90, "late", NULL), BGJOB_E_INVALID_STATE, "finished");
    got_record rest[2];
    CHECK(take_records(id, rest, 2) == 0);
    /* And nothing leaves a finished state. */
    CHECK_ERROR(bgjob_custom_set_state(id, BGJOB_STATE_RUNNING, NULL), BGJOB_E_INVALID_STATE,
                "cannot move");

    CHECK(atomic_load(&log.finalized) == 0 && atomic_load(&log.stop_finalized) == 0);
    CHECK_OK(bgjob_remove(id, false));
    CHECK(atomic_load(&log.finalized) == 1 && atomic_load(&log.stop_finalized) == 1);
    CHECK_STATUS(bgjob_get_state(id, &(bgjob_job_state){0}), BGJOB_E_NO_SUCH_JOB);
    CHECK_ERROR(bgjob_custom_set_state(id, BGJOB_STATE_RUNNING, NULL), BGJOB_E_NO_SUCH_JOB,
                "no job with id");
    CHECK(repo_count() == 0);
    log_destroy(&log);
}

/* ----- legal and illegal moves ---------------------------------------------------------- */

/* Tries every move out of the job's current state `at` that DESIGN does not allow: each is
 * refused with BGJOB_E_INVALID_STATE and a message, and changes nothing. */
static void check_illegal_moves_from(uint64_t id, bgjob_job_state at, event_log *log) {
    int before = log_count(log);
    for (bgjob_job_state to = 0; to <= BGJOB_STATE_AT_BREAKPOINT; to++) {
        if (legal_move(at, to)) continue;
        bgjob_status st = bgjob_custom_set_state(id, to, "should not stick");
        if (st != BGJOB_E_INVALID_STATE ||
            strstr(bgjob_last_error_message(), "cannot move") == NULL) {
            fprintf(stderr, "  FAIL %s: %s -> %s gave %s (%s)\n", check_current,
                    bgjob_state_name(at), bgjob_state_name(to), bgjob_status_name(st),
                    bgjob_last_error_message());
            check_failures++;
        }
        CHECK(state_of(id) == at);
    }
    CHECK(state_and_reason(id, at, NULL));
    CHECK(log_count(log) == before); /* a refused move calls no callback */
}

static void test_illegal_moves_are_refused_and_change_nothing(void) {
    event_log log;
    log_init(&log, STOP_DOES_NOTHING);
    uint64_t id = create(custom_spec(NULL, &log, true));
    /* A walk through every non-finished state, trying every illegal move at each step. */
    const bgjob_job_state path[] = {
        BGJOB_STATE_RUNNING,   BGJOB_STATE_BLOCKED,       BGJOB_STATE_RUNNING,
        BGJOB_STATE_SUSPENDING, BGJOB_STATE_SUSPENDED,    BGJOB_STATE_RUNNING,
        BGJOB_STATE_AT_BREAKPOINT, BGJOB_STATE_RUNNING,   BGJOB_STATE_DISCONNECTED,
        BGJOB_STATE_RUNNING,   BGJOB_STATE_STOPPING,
    };
    enum { STEPS = sizeof path / sizeof path[0] };
    want_entry want[STEPS + 1];
    bgjob_job_state at = BGJOB_STATE_NOT_STARTED;
    for (int i = 0; i < STEPS; i++) {
        check_illegal_moves_from(id, at, &log);
        CHECK_OK(bgjob_custom_set_state(id, path[i], NULL));
        want[i] = (want_entry){EV_STATE, id, at, path[i]};
        at = path[i];
    }
    check_illegal_moves_from(id, at, &log);
    /* The host may fail it, with a reason, from Stopping (the work ended on its own). */
    CHECK_OK(bgjob_custom_set_state(id, BGJOB_STATE_FAILED, "the remote side hung up"));
    want[STEPS] = (want_entry){EV_STATE, id, BGJOB_STATE_STOPPING, BGJOB_STATE_FAILED};
    CHECK(state_and_reason(id, BGJOB_STATE_FAILED, "the remote side hung up"));
    int n = log_count(&log);
    for (bgjob_job_state to = 0; to <= BGJOB_STATE_AT_BREAKPOINT; to++)
        CHECK_ERROR(bgjob_custom_set_state(id, to, NULL), BGJOB_E_INVALID_STATE, "cannot move");
    CHECK(state_and_reason(id, BGJOB_STATE_FAILED, "the remote side hung up"));
    CHECK(log_count(&log) == n);
    CHECK(log_is(&log, want, STEPS + 1));
    pthread_mutex_lock(&log.mu);
    CHECK(strcmp(log.e[STEPS].reason, "the remote side hung up") == 0);
    pthread_mutex_unlock(&log.mu);
    /* The host moving it to Stopping is no stop request: the stop callback was not called. */
    CHECK(atomic_load(&log.stop_calls) == 0);
    CHECK_OK(bgjob_remove(id, false));
    CHECK(atomic_load(&log.finalized) == 1 && atomic_load(&log.stop_finalized) == 1);
    CHECK(repo_count() == 0);
    log_destroy(&log);
}

static void test_only_a_custom_job_is_driven_by_its_host(void) {
    probe p;
    probe_init(&p, 10000);
    uint64_t id = start_probe_job("thread", work_coop, &p, NULL);
    CHECK(wait_for_state(id, BGJOB_STATE_RUNNING, 5000));
    CHECK_ERROR(bgjob_custom_set_state(id, BGJOB_STATE_COMPLETED, NULL), BGJOB_E_INVALID_STATE,
                "only a custom job");
    CHECK_ERROR(bgjob_custom_set_state(id, BGJOB_STATE_STOPPING, NULL), BGJOB_E_INVALID_STATE,
                "ThreadJob");
    CHECK_ERROR(bgjob_custom_write(id, BGJOB_STREAM_OUTPUT, "x", 1), BGJOB_E_INVALID_STATE,
                "only a custom job");
    CHECK_ERROR(bgjob_custom_write_text(id, BGJOB_STREAM_OUTPUT, "x"), BGJOB_E_INVALID_STATE,
                "only a custom job");
    CHECK_ERROR(bgjob_custom_progress(id, 5, "a", "b"), BGJOB_E_INVALID_STATE,
                "only a custom job");
    CHECK_ERROR(bgjob_custom_set_status_message(id, "hijacked"), BGJOB_E_INVALID_STATE,
                "only a custom job");
    /* Nothing changed: still running, no record, no status message. */
    CHECK(state_of(id) == BGJOB_STATE_RUNNING);
    bgjob_job_info *info = NULL;
    CHECK_OK(bgjob_get_job(id, &info));
    CHECK(!bgjob_job_info_has_more_data(info));
    CHECK(!bgjob_job_info_progress(info, NULL, NULL, NULL));
    CHECK(text_eq(bgjob_job_info_status_message(info), ""));
    bgjob_job_info_free(info);
    atomic_store(&p.release, true);
    finish_and_remove(id);
    CHECK(atomic_load(&p.finalized) == 1);
    CHECK(repo_count() == 0);
}

/* ----- stop ----------------------------------------------------------------------------- */

static void test_a_stop_calls_the_stop_callback_once_which_ends_the_job(void) {
    event_log log;
    log_init(&log, STOP_ENDS_THE_JOB);
    uint64_t id = create(custom_spec("stoppable", &log, true));
    CHECK_OK(bgjob_custom_set_state(id, BGJOB_STATE_RUNNING, NULL));
    CHECK_OK(bgjob_custom_write_text(id, BGJOB_STREAM_OUTPUT, "partial"));
    CHECK_OK(bgjob_stop(id, LONG_MS));
    CHECK(state_of(id) == BGJOB_STATE_STOPPED);
    CHECK(atomic_load(&log.stop_calls) == 1);
    CHECK(atomic_load(&log.stop_set_state_failures) == 0);
    /* In order: the Stopping callbacks, then the stop callback (seeing the job Stopping,
     * with the job's own id and no parent), then Stopped — all on the stopping thread. */
    want_entry want[] = {
        {EV_STATE, id, BGJOB_STATE_NOT_STARTED, BGJOB_STATE_RUNNING},
        {EV_STATE, id, BGJOB_STATE_RUNNING, BGJOB_STATE_STOPPING},
        {EV_STOP, id, BGJOB_STATE_STOPPING, BGJOB_STATE_STOPPING},
        {EV_STATE, id, BGJOB_STATE_STOPPING, BGJOB_STATE_STOPPED},
    };
    CHECK(log_is(&log, want, 4));
    CHECK(log_all_on_main_thread(&log));
    pthread_mutex_lock(&log.mu);
    CHECK(log.e[2].parent_id == 0);
    pthread_mutex_unlock(&log.mu);
    /* A second stop of the finished job calls nothing. */
    CHECK_OK(bgjob_stop(id, 0));
    CHECK(atomic_load(&log.stop_calls) == 1);
    CHECK(log_count(&log) == 4);
    /* What it wrote before the stop is still there. */
    got_record recs[2];
    CHECK(take_records(id, recs, 2) == 1 && text_eq(recs[0].text, "partial"));
    CHECK_OK(bgjob_remove(id, false));
    CHECK(atomic_load(&log.finalized) == 1 && atomic_load(&log.stop_finalized) == 1);

    /* A custom job not yet started is Stopped at once: no work to end, no call. */
    event_log log2;
    log_init(&log2, STOP_ENDS_THE_JOB);
    id = create(custom_spec(NULL, &log2, true));
    CHECK_OK(bgjob_stop(id, LONG_MS));
    CHECK(state_of(id) == BGJOB_STATE_STOPPED);
    CHECK(atomic_load(&log2.stop_calls) == 0);
    want_entry want2[] = {{EV_STATE, id, BGJOB_STATE_NOT_STARTED, BGJOB_STATE_STOPPED}};
    CHECK(log_is(&log2, want2, 1));
    CHECK_OK(bgjob_remove(id, false));
    CHECK(atomic_load(&log2.stop_finalized) == 1);

    /* Remove-Job with force stops a running custom job through its callback too. */
    event_log log3;
    log_init(&log3, STOP_ENDS_THE_JOB);
    id = create(custom_spec(NULL, &log3, true));
    CHECK_OK(bgjob_custom_set_state(id, BGJOB_STATE_RUNNING, NULL));
    CHECK_STATUS(bgjob_remove(id, false), BGJOB_E_NOT_FINISHED);
    CHECK_OK(bgjob_remove(id, true));
    CHECK(atomic_load(&log3.stop_calls) == 1);
    CHECK(atomic_load(&log3.finalized) == 1 && atomic_load(&log3.stop_finalized) == 1);
    CHECK_STATUS(bgjob_get_state(id, &(bgjob_job_state){0}), BGJOB_E_NO_SUCH_JOB);
    CHECK(repo_count() == 0);
    log_destroy(&log);
    log_destroy(&log2);
    log_destroy(&log3);
}

static void test_a_stop_the_callback_does_not_end_times_out_and_stays_stopping(void) {
    event_log log;
    log_init(&log, STOP_DOES_NOTHING);
    uint64_t id = create(custom_spec(NULL, &log, true));
    CHECK_OK(bgjob_custom_set_state(id, BGJOB_STATE_RUNNING, NULL));
    double t0 = now_ms();
    CHECK_ERROR(bgjob_stop(id, 100), BGJOB_E_TIMEOUT, "Stopping");
    double elapsed = now_ms() - t0;
    CHECK(elapsed >= 90 && elapsed < 5000);
    CHECK(state_of(id) == BGJOB_STATE_STOPPING);
    CHECK(atomic_load(&log.stop_calls) == 1);
    /* Asking again neither calls it again nor changes anything. */
    CHECK_STATUS(bgjob_stop(id, 0), BGJOB_E_TIMEOUT);
    CHECK(atomic_load(&log.stop_calls) == 1);
    CHECK(state_of(id) == BGJOB_STATE_STOPPING);
    CHECK_STATUS(bgjob_remove(id, false), BGJOB_E_NOT_FINISHED);
    /* Still Stopping, its streams are open: the foreign work may still report. */
    CHECK_OK(bgjob_custom_write_text(id, BGJOB_STREAM_WARNING, "shutting down"));
    /* Later the host ends it; then the stop is over. */
    CHECK_OK(bgjob_custom_set_state(id, BGJOB_STATE_STOPPED, NULL));
    CHECK_OK(bgjob_stop(id, 0));
    want_entry want[] = {
        {EV_STATE, id, BGJOB_STATE_NOT_STARTED, BGJOB_STATE_RUNNING},
        {EV_STATE, id, BGJOB_STATE_RUNNING, BGJOB_STATE_STOPPING},
        {EV_STOP, id, BGJOB_STATE_STOPPING, BGJOB_STATE_STOPPING},
        {EV_STATE, id, BGJOB_STATE_STOPPING, BGJOB_STATE_STOPPED},
    };
    CHECK(log_is(&log, want, 4));
    got_record recs[2];
    CHECK(take_records(id, recs, 2) == 1 && recs[0].stream == BGJOB_STREAM_WARNING);
    CHECK_OK(bgjob_remove(id, false));
    CHECK(atomic_load(&log.finalized) == 1 && atomic_load(&log.stop_finalized) == 1);
    CHECK(repo_count() == 0);
    log_destroy(&log);
}

/* ----- custom parents ------------------------------------------------------------------- */

/* A custom parent named `name` with children "east" and a default-named one; its state
 * changes go to `parent_log`, its children's stops to `stop_log`. */
static uint64_t create_parent(const char *name, event_log *parent_log, event_log *stop_log) {
    bgjob_spec *spec = named_spec(name);
    if (spec == NULL) return 0;
    CHECK_OK(bgjob_spec_set_command(spec, "replicate"));
    CHECK_OK(bgjob_spec_set_location(spec, "cluster"));
    CHECK_OK(bgjob_spec_set_type_name(spec, "RemoteJob"));
    CHECK_OK(bgjob_spec_add_custom_child(spec, "east"));
    CHECK_OK(bgjob_spec_add_custom_child(spec, NULL));
    CHECK_OK(bgjob_spec_on_state_changed(spec, on_state, parent_log, log_finalize));
    CHECK_OK(bgjob_spec_on_stop(spec, on_stop, stop_log, stop_finalize));
    return create(spec);
}

static void test_a_custom_parent_follows_its_children_and_stops_the_running_one(void) {
    event_log plog, slog;
    log_init(&plog, STOP_DOES_NOTHING);
    log_init(&slog, STOP_ENDS_THE_JOB);
    uint64_t parent = create_parent("replica", &plog, &slog);
    uint64_t east = parent + 1, west = parent + 2;

    bgjob_job_info *info = NULL;
    CHECK_OK(bgjob_get_job(parent, &info));
    CHECK(bgjob_job_info_child_count(info) == 2);
    CHECK(bgjob_job_info_child_id(info, 0) == east && bgjob_job_info_child_id(info, 1) == west);
    CHECK(text_eq(bgjob_job_info_type_name(info), "RemoteJob"));
    CHECK(text_eq(bgjob_job_info_location(info), "cluster"));
    CHECK(text_eq(bgjob_job_info_status_message(info), "0/2 completed"));
    bgjob_job_info_free(info);
    char west_name[32];
    snprintf(west_name, sizeof west_name, "Job%" PRIu64, west);
    for (uint64_t c = east; c <= west; c++) {
        info = NULL;
        CHECK_OK(bgjob_get_job(c, &info));
        CHECK(bgjob_job_info_parent_id(info) == parent);
        CHECK(text_eq(bgjob_job_info_name(info), c == east ? "east" : west_name));
        CHECK(text_eq(bgjob_job_info_type_name(info), "RemoteJob"));
        CHECK(text_eq(bgjob_job_info_location(info), "cluster"));
        CHECK(text_eq(bgjob_job_info_command(info), "replicate"));
        CHECK(bgjob_job_info_state(info) == BGJOB_STATE_NOT_STARTED);
        bgjob_job_info_free(info);
    }

    /* The parent's state is its children's business. */
    CHECK_ERROR(bgjob_custom_set_state(parent, BGJOB_STATE_RUNNING, NULL),
                BGJOB_E_INVALID_STATE, "parent");
    CHECK(state_of(parent) == BGJOB_STATE_NOT_STARTED);

    CHECK_OK(bgjob_custom_set_state(east, BGJOB_STATE_RUNNING, NULL));
    CHECK(wait_for_state(parent, BGJOB_STATE_RUNNING, 5000));
    CHECK_OK(bgjob_custom_write_text(east, BGJOB_STREAM_OUTPUT, "from east"));
    CHECK_OK(bgjob_custom_set_state(east, BGJOB_STATE_COMPLETED, NULL));
    CHECK(state_of(parent) == BGJOB_STATE_RUNNING); /* west has not finished */
    CHECK_OK(bgjob_custom_set_state(west, BGJOB_STATE_RUNNING, NULL));
    CHECK_ERROR(bgjob_custom_set_state(parent, BGJOB_STATE_COMPLETED, NULL),
                BGJOB_E_INVALID_STATE, "parent");
    CHECK(state_of(parent) == BGJOB_STATE_RUNNING);

    /* Stopping the parent stops the running child through the callback, only that one. */
    CHECK_OK(bgjob_stop(parent, LONG_MS));
    CHECK(state_of(parent) == BGJOB_STATE_STOPPED);
    CHECK(state_of(east) == BGJOB_STATE_COMPLETED);
    CHECK(state_of(west) == BGJOB_STATE_STOPPED);
    CHECK(atomic_load(&slog.stop_calls) == 1);
    CHECK(atomic_load(&slog.stop_set_state_failures) == 0);
    pthread_mutex_lock(&slog.mu);
    CHECK(slog.n == 1 && slog.e[0].kind == EV_STOP && slog.e[0].job_id == west &&
          slog.e[0].parent_id == parent && slog.e[0].state == BGJOB_STATE_STOPPING);
    pthread_mutex_unlock(&slog.mu);
    CHECK(log_history_is_legal(&plog, parent, BGJOB_STATE_STOPPED));

    /* Receiving from the parent gives its children's records. */
    got_record recs[4];
    CHECK(take_records(parent, recs, 4) == 1);
    CHECK(text_eq(recs[0].text, "from east") && recs[0].job_id == east);
    CHECK_ERROR(bgjob_custom_set_state(parent, BGJOB_STATE_RUNNING, NULL),
                BGJOB_E_INVALID_STATE, "parent");

    /* Removed through the parent only; the shared stop callback data is finalized once. */
    CHECK_STATUS(bgjob_remove(west, false), BGJOB_E_CHILD_JOB);
    CHECK(atomic_load(&slog.stop_finalized) == 0);
    CHECK_OK(bgjob_remove(parent, false));
    CHECK(atomic_load(&slog.stop_finalized) == 1);
    CHECK(atomic_load(&plog.finalized) == 1);
    CHECK_STATUS(bgjob_get_state(east, &(bgjob_job_state){0}), BGJOB_E_NO_SUCH_JOB);
    CHECK(repo_count() == 0);
    log_destroy(&plog);
    log_destroy(&slog);
}

static void test_a_custom_parent_fails_when_a_child_fails(void) {
    event_log plog, slog;
    log_init(&plog, STOP_DOES_NOTHING);
    log_init(&slog, STOP_ENDS_THE_JOB);
    uint64_t parent = create_parent("failing", &plog, &slog);
    uint64_t east = parent + 1, west = parent + 2;
    CHECK_OK(bgjob_custom_set_state(east, BGJOB_STATE_RUNNING, NULL));
    CHECK_OK(bgjob_custom_set_state(west, BGJOB_STATE_RUNNING, NULL));
    CHECK_OK(bgjob_custom_set_state(west, BGJOB_STATE_FAILED, "link down"));
    CHECK(state_of(parent) == BGJOB_STATE_RUNNING);
    CHECK_OK(bgjob_custom_set_state(east, BGJOB_STATE_COMPLETED, NULL));
    CHECK_OK(bgjob_wait(&parent, 1, BGJOB_WAIT_ALL, LONG_MS, NULL, NULL));
    CHECK(state_and_reason(parent, BGJOB_STATE_FAILED, "link down"));
    CHECK(state_and_reason(west, BGJOB_STATE_FAILED, "link down"));
    CHECK(log_history_is_legal(&plog, parent, BGJOB_STATE_FAILED));
    bgjob_job_info *info = NULL;
    CHECK_OK(bgjob_get_job(parent, &info));
    CHECK(text_eq(bgjob_job_info_status_message(info), "2/2 completed"));
    bgjob_job_info_free(info);
    CHECK(atomic_load(&slog.stop_calls) == 0);
    CHECK_OK(bgjob_remove(parent, false));
    CHECK(atomic_load(&slog.stop_finalized) == 1 && atomic_load(&plog.finalized) == 1);
    CHECK(repo_count() == 0);
    log_destroy(&plog);
    log_destroy(&slog);
}

/* ----- inline runs ---------------------------------------------------------------------- */

typedef struct script {
    probe p;
    int32_t rc; /* what the work returns: 0 completes the job */
    pthread_t ran_on;
} script;

/* Work: the same records every time (several streams, a progress report), then returns
 * the script's rc. */
static int32_t work_scripted(bgjob_context *ctx, void *user_data) {
    script *s = user_data;
    atomic_fetch_add(&s->p.runs, 1);
    s->ran_on = pthread_self();
    bgjob_status st = bgjob_context_write_text(ctx, BGJOB_STREAM_OUTPUT, "one");
    if (st == BGJOB_OK) st = bgjob_context_write_text(ctx, BGJOB_STREAM_WARNING, "careful");
    if (st == BGJOB_OK) st = bgjob_context_progress(ctx, 30, "Step", "a third");
    if (st == BGJOB_OK) st = bgjob_context_write(ctx, BGJOB_STREAM_OUTPUT, "two", 3);
    return st == BGJOB_OK ? s->rc : 100;
}

/* A spec running work_scripted with `s` (returning `rc`), its state changes logged. */
static bgjob_spec *scripted_spec(script *s, int32_t rc, event_log *log) {
    probe_init(&s->p, 0);
    s->rc = rc;
    bgjob_spec *spec = named_spec("scripted");
    if (spec == NULL) return NULL;
    CHECK_OK(bgjob_spec_set_command(spec, "work_scripted"));
    CHECK_OK(bgjob_spec_set_work(spec, work_scripted, &s->p, probe_finalize));
    CHECK_OK(bgjob_spec_on_state_changed(spec, on_state, log, log_finalize));
    return spec;
}

static void test_an_inline_run_gives_the_same_records_and_callbacks_as_a_started_job(void) {
    /* As a job, on the default pool. */
    script a;
    event_log alog;
    log_init(&alog, STOP_DOES_NOTHING);
    uint64_t started = 0;
    CHECK_OK(bgjob_start(scripted_spec(&a, 0, &alog), &started));
    CHECK_OK(bgjob_wait(&started, 1, BGJOB_WAIT_ALL, LONG_MS, NULL, NULL));
    CHECK(pthread_equal(a.ran_on, g_main_thread) == 0); /* on a worker */
    got_record arecs[8];
    size_t an = take_records(started, arecs, 8);

    /* Inline: returns finished, its callbacks already run, all on this thread. */
    script b;
    event_log blog;
    log_init(&blog, STOP_DOES_NOTHING);
    uint64_t inline_id = 0;
    CHECK_OK(bgjob_run_inline(scripted_spec(&b, 0, &blog), &inline_id));
    CHECK(inline_id != 0 && inline_id != started);
    CHECK(state_of(inline_id) == BGJOB_STATE_COMPLETED);
    CHECK(atomic_load(&b.p.runs) == 1 && atomic_load(&b.p.finalized) == 1);
    CHECK(pthread_equal(b.ran_on, g_main_thread) != 0);
    want_entry bwant[] = {
        {EV_STATE, inline_id, BGJOB_STATE_NOT_STARTED, BGJOB_STATE_RUNNING},
        {EV_STATE, inline_id, BGJOB_STATE_RUNNING, BGJOB_STATE_COMPLETED},
    };
    CHECK(log_is(&blog, bwant, 2));
    CHECK(log_all_on_main_thread(&blog));
    /* The same callback sequence as the started job's (previous → new). */
    want_entry awant[] = {
        {EV_STATE, started, BGJOB_STATE_NOT_STARTED, BGJOB_STATE_RUNNING},
        {EV_STATE, started, BGJOB_STATE_RUNNING, BGJOB_STATE_COMPLETED},
    };
    CHECK(log_is(&alog, awant, 2));

    /* A job like any other, in the repository. */
    bgjob_job_info *info = NULL;
    CHECK_OK(bgjob_get_job(inline_id, &info));
    CHECK(text_eq(bgjob_job_info_type_name(info), "ThreadJob"));
    CHECK(text_eq(bgjob_job_info_name(info), "scripted"));
    CHECK(text_eq(bgjob_job_info_command(info), "work_scripted"));
    CHECK(bgjob_job_info_begin_time_ns(info) != 0 && bgjob_job_info_end_time_ns(info) != 0);
    bgjob_job_info_free(info);
    uint64_t both[2] = {started, inline_id}, done[2] = {0, 0};
    size_t done_n = 0;
    CHECK_OK(bgjob_wait(both, 2, BGJOB_WAIT_ALL, 0, done, &done_n));
    CHECK(done_n == 2 && done[1] == inline_id);

    /* The same records: stream and bytes, in order (and the progress fields). */
    got_record brecs[8];
    size_t bn = take_records(inline_id, brecs, 8);
    CHECK(an == 4 && bn == an);
    for (size_t i = 0; i < an && i < bn && i < 8; i++) {
        CHECK(brecs[i].stream == arecs[i].stream);
        CHECK(strcmp(brecs[i].text, arecs[i].text) == 0);
        CHECK(brecs[i].percent == arecs[i].percent);
        CHECK(strcmp(brecs[i].activity, arecs[i].activity) == 0);
        CHECK(arecs[i].job_id == started && brecs[i].job_id == inline_id);
    }
    if (bn == 4) {
        CHECK(brecs[0].stream == BGJOB_STREAM_OUTPUT && text_eq(brecs[0].text, "one"));
        CHECK(brecs[1].stream == BGJOB_STREAM_WARNING && text_eq(brecs[1].text, "careful"));
        CHECK(brecs[2].stream == BGJOB_STREAM_PROGRESS && brecs[2].percent == 30);
        CHECK(brecs[3].stream == BGJOB_STREAM_OUTPUT && text_eq(brecs[3].text, "two"));
    }

    CHECK_OK(bgjob_remove(started, false));
    CHECK_OK(bgjob_remove(inline_id, false));
    CHECK(atomic_load(&a.p.finalized) == 1 && atomic_load(&alog.finalized) == 1);
    CHECK(atomic_load(&blog.finalized) == 1);
    CHECK(repo_count() == 0);
    log_destroy(&alog);
    log_destroy(&blog);
}

static void test_an_inline_run_whose_work_fails_returns_ok_with_the_job_failed(void) {
    script s;
    event_log log;
    log_init(&log, STOP_DOES_NOTHING);
    uint64_t id = 0;
    CHECK_OK(bgjob_run_inline(scripted_spec(&s, 7, &log), &id));
    CHECK(state_and_reason(id, BGJOB_STATE_FAILED, "the work returned 7"));
    want_entry want[] = {
        {EV_STATE, id, BGJOB_STATE_NOT_STARTED, BGJOB_STATE_RUNNING},
        {EV_STATE, id, BGJOB_STATE_RUNNING, BGJOB_STATE_FAILED},
    };
    CHECK(log_is(&log, want, 2));
    pthread_mutex_lock(&log.mu);
    CHECK(strcmp(log.e[1].reason, "the work returned 7") == 0);
    pthread_mutex_unlock(&log.mu);
    /* What it wrote before failing is there. */
    got_record recs[8];
    CHECK(take_records(id, recs, 8) == 4);
    CHECK_OK(bgjob_remove(id, false));
    CHECK(atomic_load(&s.p.finalized) == 1 && atomic_load(&log.finalized) == 1);
    CHECK(repo_count() == 0);
    log_destroy(&log);
}

static void test_run_inline_refuses_what_it_cannot_run_and_finalizes_once(void) {
    /* A spec with inputs is a parallel job: refused, nothing run, user data finalized once. */
    probe p;
    probe_init(&p, 0);
    event_log log;
    log_init(&log, STOP_DOES_NOTHING);
    bgjob_spec *spec = NULL;
    CHECK_OK(bgjob_spec_new(&spec));
    CHECK_OK(bgjob_spec_set_work(spec, work_write_two, &p, probe_finalize));
    CHECK_OK(bgjob_spec_on_state_changed(spec, on_state, &log, log_finalize));
    CHECK_OK(bgjob_spec_add_input(spec, "a", 1));
    CHECK_OK(bgjob_spec_add_input(spec, "b", 1));
    uint64_t id = 0;
    CHECK_ERROR(bgjob_run_inline(spec, &id), BGJOB_E_INVALID_ARGUMENT, "parallel job");
    CHECK(strstr(bgjob_last_error_message(), "bgjob_start") != NULL);
    CHECK(id == 0);
    CHECK(atomic_load(&p.runs) == 0 && atomic_load(&p.finalized) == 1);
    CHECK(atomic_load(&log.finalized) == 1 && log_count(&log) == 0);
    CHECK(repo_count() == 0);

    /* No work. */
    spec = NULL;
    CHECK_OK(bgjob_spec_new(&spec));
    CHECK_ERROR(bgjob_run_inline(spec, &id), BGJOB_E_INVALID_ARGUMENT, "no work");
    CHECK(id == 0);

    /* NULL spec; NULL out_id (the spec is still consumed, its user data finalized). */
    CHECK_ERROR(bgjob_run_inline(NULL, &id), BGJOB_E_INVALID_ARGUMENT, "spec is NULL");
    probe q;
    probe_init(&q, 0);
    spec = NULL;
    CHECK_OK(bgjob_spec_new(&spec));
    CHECK_OK(bgjob_spec_set_work(spec, work_write_two, &q, probe_finalize));
    CHECK_ERROR(bgjob_run_inline(spec, NULL), BGJOB_E_INVALID_ARGUMENT, "out_id is NULL");
    CHECK(atomic_load(&q.runs) == 0 && atomic_load(&q.finalized) == 1);

    /* Custom-only settings are refused by bgjob_run_inline and bgjob_start alike. */
    event_log slog;
    log_init(&slog, STOP_DOES_NOTHING);
    probe r;
    probe_init(&r, 0);
    spec = NULL;
    CHECK_OK(bgjob_spec_new(&spec));
    CHECK_OK(bgjob_spec_set_work(spec, work_write_two, &r, probe_finalize));
    CHECK_OK(bgjob_spec_on_stop(spec, on_stop, &slog, stop_finalize));
    CHECK_ERROR(bgjob_run_inline(spec, &id), BGJOB_E_INVALID_ARGUMENT, "bgjob_create_custom");
    CHECK(strstr(bgjob_last_error_message(), "stop callback") != NULL);
    CHECK(atomic_load(&r.runs) == 0 && atomic_load(&r.finalized) == 1);
    CHECK(atomic_load(&slog.stop_finalized) == 1);
    spec = NULL;
    CHECK_OK(bgjob_spec_new(&spec));
    CHECK_OK(bgjob_spec_set_work(spec, work_write_two, &r, probe_finalize));
    CHECK_OK(bgjob_spec_set_location(spec, "elsewhere"));
    CHECK_OK(bgjob_spec_add_custom_child(spec, NULL));
    CHECK_ERROR(bgjob_start(spec, &id), BGJOB_E_INVALID_ARGUMENT, "location");
    CHECK(strstr(bgjob_last_error_message(), "custom children") != NULL);
    CHECK(atomic_load(&r.runs) == 0 && atomic_load(&r.finalized) == 2);
    CHECK(id == 0);
    CHECK(repo_count() == 0);
    log_destroy(&log);
    log_destroy(&slog);
}

/* ----- misuse --------------------------------------------------------------------------- */

static void test_custom_spec_misuse_gives_a_status_and_a_message(void) {
    event_log log;
    log_init(&log, STOP_DOES_NOTHING);
    /* NULL specs: refused; on_stop owns its user data even then. */
    CHECK_ERROR(bgjob_spec_set_location(NULL, "x"), BGJOB_E_INVALID_ARGUMENT, "spec is NULL");
    CHECK_ERROR(bgjob_spec_set_type_name(NULL, "x"), BGJOB_E_INVALID_ARGUMENT, "spec is NULL");
    CHECK_ERROR(bgjob_spec_add_custom_child(NULL, "x"), BGJOB_E_INVALID_ARGUMENT,
                "spec is NULL");
    CHECK_ERROR(bgjob_spec_on_stop(NULL, on_stop, &log, stop_finalize), BGJOB_E_INVALID_ARGUMENT,
                "spec is NULL");
    CHECK(atomic_load(&log.stop_finalized) == 1);
    uint64_t id = 0;
    CHECK_ERROR(bgjob_create_custom(NULL, &id), BGJOB_E_INVALID_ARGUMENT, "spec is NULL");

    bgjob_spec *spec = NULL;
    CHECK_OK(bgjob_spec_new(&spec));
    /* NULL texts (a child's NULL name is allowed), NULL callback, invalid UTF-8. */
    CHECK_ERROR(bgjob_spec_set_location(spec, NULL), BGJOB_E_INVALID_ARGUMENT, "location");
    CHECK_ERROR(bgjob_spec_set_type_name(spec, NULL), BGJOB_E_INVALID_ARGUMENT, "type_name");
    CHECK_ERROR(bgjob_spec_on_stop(spec, NULL, &log, stop_finalize), BGJOB_E_INVALID_ARGUMENT,
                "callback is NULL");
    CHECK(atomic_load(&log.stop_finalized) == 2);
    CHECK_ERROR(bgjob_spec_set_location(spec, "\xff\xfe"), BGJOB_E_INVALID_ARGUMENT, "UTF-8");
    CHECK_ERROR(bgjob_spec_set_type_name(spec, "ok\xc3"), BGJOB_E_INVALID_ARGUMENT, "UTF-8");
    CHECK_ERROR(bgjob_spec_add_custom_child(spec, "\xc0\xaf"), BGJOB_E_INVALID_ARGUMENT, "UTF-8");
    /* A stop callback replaced: the earlier one's data is finalized then. */
    CHECK_OK(bgjob_spec_on_stop(spec, on_stop, &log, stop_finalize));
    CHECK_OK(bgjob_spec_on_stop(spec, on_stop, &log, stop_finalize));
    CHECK(atomic_load(&log.stop_finalized) == 3);
    /* The spec is still usable: the refused child was not added. */
    CHECK_OK(bgjob_spec_set_location(spec, "gr\xc3\xbc\xc3\x9f"));
    id = create(spec);
    bgjob_job_info *info = NULL;
    CHECK_OK(bgjob_get_job(id, &info));
    CHECK(bgjob_job_info_child_count(info) == 0);
    CHECK(text_eq(bgjob_job_info_location(info), "gr\xc3\xbc\xc3\x9f"));
    CHECK(text_eq(bgjob_job_info_type_name(info), "CustomJob"));
    bgjob_job_info_free(info);
    CHECK_OK(bgjob_custom_set_state(id, BGJOB_STATE_FAILED, "never connected"));
    CHECK_OK(bgjob_remove(id, false));
    CHECK(atomic_load(&log.stop_finalized) == 4);

    /* A spec with work, or with inputs, makes no custom job; its user data is finalized. */
    probe p;
    probe_init(&p, 0);
    spec = NULL;
    CHECK_OK(bgjob_spec_new(&spec));
    CHECK_OK(bgjob_spec_set_work(spec, work_write_two, &p, probe_finalize));
    CHECK_OK(bgjob_spec_on_stop(spec, on_stop, &log, stop_finalize));
    id = 0;
    CHECK_ERROR(bgjob_create_custom(spec, &id), BGJOB_E_INVALID_ARGUMENT, "has work");
    CHECK(id == 0 && atomic_load(&p.runs) == 0 && atomic_load(&p.finalized) == 1);
    CHECK(atomic_load(&log.stop_finalized) == 5);
    spec = NULL;
    CHECK_OK(bgjob_spec_new(&spec));
    CHECK_OK(bgjob_spec_add_input(spec, "x", 1));
    CHECK_ERROR(bgjob_create_custom(spec, &id), BGJOB_E_INVALID_ARGUMENT, "input");
    /* NULL out_id: the spec is consumed all the same. */
    spec = NULL;
    CHECK_OK(bgjob_spec_new(&spec));
    CHECK_OK(bgjob_spec_on_state_changed(spec, on_state, &log, log_finalize));
    CHECK_OK(bgjob_spec_on_stop(spec, on_stop, &log, stop_finalize));
    CHECK_ERROR(bgjob_create_custom(spec, NULL), BGJOB_E_INVALID_ARGUMENT, "out_id is NULL");
    CHECK(atomic_load(&log.finalized) == 1 && atomic_load(&log.stop_finalized) == 6);
    /* A spec freed unused finalizes its stop callback's data once. */
    spec = NULL;
    CHECK_OK(bgjob_spec_new(&spec));
    CHECK_OK(bgjob_spec_add_custom_child(spec, "c"));
    CHECK_OK(bgjob_spec_on_stop(spec, on_stop, &log, stop_finalize));
    bgjob_spec_free(spec);
    CHECK(atomic_load(&log.stop_finalized) == 7);
    CHECK(atomic_load(&log.stop_calls) == 0 && log_count(&log) == 0);
    CHECK(id == 0);
    CHECK(repo_count() == 0);
    log_destroy(&log);
}

static void test_driving_misuse_gives_a_status_and_a_message(void) {
    /* Unknown ids (and 0, never valid). */
    const uint64_t bad_ids[] = {UNKNOWN_ID, 0};
    for (size_t i = 0; i < 2; i++) {
        uint64_t b = bad_ids[i];
        CHECK_ERROR(bgjob_custom_set_state(b, BGJOB_STATE_RUNNING, NULL), BGJOB_E_NO_SUCH_JOB,
                    "no job with id");
        CHECK_ERROR(bgjob_custom_write(b, BGJOB_STREAM_OUTPUT, "x", 1), BGJOB_E_NO_SUCH_JOB,
                    "no job with id");
        CHECK_ERROR(bgjob_custom_write_text(b, BGJOB_STREAM_OUTPUT, "x"), BGJOB_E_NO_SUCH_JOB,
                    "no job with id");
        CHECK_ERROR(bgjob_custom_progress(b, 1, "a", "b"), BGJOB_E_NO_SUCH_JOB,
                    "no job with id");
        CHECK_ERROR(bgjob_custom_set_status_message(b, "m"), BGJOB_E_NO_SUCH_JOB,
                    "no job with id");
    }

    event_log log;
    log_init(&log, STOP_DOES_NOTHING);
    uint64_t id = create(custom_spec(NULL, &log, false));
    /* Out-of-range states and streams. */
    CHECK_ERROR(bgjob_custom_set_state(id, 11, NULL), BGJOB_E_INVALID_ARGUMENT, "job state");
    CHECK_ERROR(bgjob_custom_set_state(id, 0xFFFFFFFFu, NULL), BGJOB_E_INVALID_ARGUMENT,
                "job state");
    CHECK_ERROR(bgjob_custom_write(id, 7, "x", 1), BGJOB_E_INVALID_ARGUMENT, "stream");
    CHECK_ERROR(bgjob_custom_write_text(id, 0xFFFFFFFFu, "x"), BGJOB_E_INVALID_ARGUMENT,
                "stream");
    /* Invalid UTF-8 in a reason: refused, the state unchanged. */
    CHECK_ERROR(bgjob_custom_set_state(id, BGJOB_STATE_FAILED, "bad \xff reason"),
                BGJOB_E_INVALID_ARGUMENT, "UTF-8");
    CHECK(state_of(id) == BGJOB_STATE_NOT_STARTED);
    CHECK_OK(bgjob_custom_set_state(id, BGJOB_STATE_RUNNING, NULL));
    /* NULL data with a length, NULL text, NULL or invalid texts. */
    CHECK_ERROR(bgjob_custom_write(id, BGJOB_STREAM_OUTPUT, NULL, 3), BGJOB_E_INVALID_ARGUMENT,
                "data is NULL");
    CHECK_ERROR(bgjob_custom_write_text(id, BGJOB_STREAM_OUTPUT, NULL), BGJOB_E_INVALID_ARGUMENT,
                "text is NULL");
    CHECK_ERROR(bgjob_custom_set_status_message(id, NULL), BGJOB_E_INVALID_ARGUMENT,
                "message is NULL");
    CHECK_ERROR(bgjob_custom_set_status_message(id, "\xc3"), BGJOB_E_INVALID_ARGUMENT, "UTF-8");
    CHECK_ERROR(bgjob_custom_progress(id, 10, "\xff", NULL), BGJOB_E_INVALID_ARGUMENT,
                "activity");
    CHECK_ERROR(bgjob_custom_progress(id, 10, NULL, "\xff"), BGJOB_E_INVALID_ARGUMENT, "status");
    /* None of that wrote anything; what is allowed does: an empty record, NULL progress
     * texts (empty), a clamped percentage, bytes that are not text. */
    got_record recs[8];
    CHECK(take_records(id, recs, 8) == 0);
    CHECK_OK(bgjob_custom_write(id, BGJOB_STREAM_DEBUG, NULL, 0));
    CHECK_OK(bgjob_custom_progress(id, 250, NULL, NULL));
    CHECK_OK(bgjob_custom_write(id, BGJOB_STREAM_VERBOSE, "\xff\x00z", 3));
    bgjob_records *batch = NULL;
    CHECK_OK(bgjob_receive(id, 0, 0, 0, &batch));
    CHECK(bgjob_records_count(batch) == 3);
    const bgjob_record *r0 = bgjob_records_get(batch, 0), *r1 = bgjob_records_get(batch, 1),
                       *r2 = bgjob_records_get(batch, 2);
    CHECK(r0 != NULL && r0->stream == BGJOB_STREAM_DEBUG && r0->len == 0);
    CHECK(r1 != NULL && r1->stream == BGJOB_STREAM_PROGRESS && r1->percent_complete == 100 &&
          r1->activity != NULL && r1->activity[0] == '\0' && r1->len == 0);
    CHECK(r2 != NULL && r2->len == 3 && r2->data != NULL && memcmp(r2->data, "\xff\x00z", 3) == 0);
    bgjob_records_free(batch);
    CHECK(state_of(id) == BGJOB_STATE_RUNNING);
    CHECK_OK(bgjob_custom_set_state(id, BGJOB_STATE_COMPLETED, NULL));
    CHECK_OK(bgjob_remove(id, false));
    CHECK(atomic_load(&log.finalized) == 1);
    /* A removed job is unknown. */
    CHECK_ERROR(bgjob_custom_write_text(id, BGJOB_STREAM_OUTPUT, "x"), BGJOB_E_NO_SUCH_JOB,
                "no job with id");
    CHECK(repo_count() == 0);
    log_destroy(&log);
}

static void test_repository_is_empty_at_the_end(void) {
    CHECK(repo_count() == 0);
}

int main(void) {
    g_main_thread = pthread_self();
    RUN_TEST(test_a_host_driven_job_is_waited_on_and_received_by_another_thread);
    RUN_TEST(test_illegal_moves_are_refused_and_change_nothing);
    RUN_TEST(test_only_a_custom_job_is_driven_by_its_host);
    RUN_TEST(test_a_stop_calls_the_stop_callback_once_which_ends_the_job);
    RUN_TEST(test_a_stop_the_callback_does_not_end_times_out_and_stays_stopping);
    RUN_TEST(test_a_custom_parent_follows_its_children_and_stops_the_running_one);
    RUN_TEST(test_a_custom_parent_fails_when_a_child_fails);
    RUN_TEST(test_an_inline_run_gives_the_same_records_and_callbacks_as_a_started_job);
    RUN_TEST(test_an_inline_run_whose_work_fails_returns_ok_with_the_job_failed);
    RUN_TEST(test_run_inline_refuses_what_it_cannot_run_and_finalizes_once);
    RUN_TEST(test_custom_spec_misuse_gives_a_status_and_a_message);
    RUN_TEST(test_driving_misuse_gives_a_status_and_a_message);
    RUN_TEST(test_repository_is_empty_at_the_end);
    /* Every bgjob thread gone before exit: valgrind sees no live worker. */
    CHECK_OK(bgjob_shutdown(BGJOB_INFINITE));
    return check_summary("test_custom");
}
