/* State-change callbacks through the C ABI: order, previous states, records readable in
 * the finished callback, repository-wide callbacks, re-entrant removal, waits that return
 * only after the callbacks, reasons, and finalizers of callback user data. */
#include "check.h"
#include "util.h"

static bgjob_pool *g_pool = NULL;

/* ----- a recorder: every event a callback saw --------------------------------------------- */

#define MAX_EVENTS 32
#define MAX_TEXT 128

typedef struct seen_event {
    uint64_t job_id;
    bgjob_job_state state, previous;
    bool has_reason, has_previous_reason;
    char reason[MAX_TEXT];
    long order; /* global order of calls, across recorders */
} seen_event;

static atomic_long g_order;

typedef struct recorder {
    pthread_mutex_t mu;
    latch finished; /* bumped on every finished state */
    seen_event events[MAX_EVENTS];
    int n;
    atomic_int finalized;
    atomic_int inside; /* callbacks of one job must never overlap */
    atomic_bool overlapped;
    /* What a receive with KEEP saw inside the finished callback. */
    int finished_records;
    char finished_texts[8][MAX_TEXT];
    bgjob_status finished_receive_status;
    long sleep_in_finished_ms; /* sleep inside the finished callback, then set the flag */
    atomic_int finished_returned;
} recorder;

static void recorder_init(recorder *r) {
    memset(r, 0, sizeof *r);
    pthread_mutex_init(&r->mu, NULL);
    latch_init(&r->finished);
    atomic_init(&r->finalized, 0);
    atomic_init(&r->inside, 0);
    atomic_init(&r->overlapped, false);
    atomic_init(&r->finished_returned, 0);
    r->finished_receive_status = 99;
}

static void recorder_destroy(recorder *r) {
    latch_destroy(&r->finished);
    pthread_mutex_destroy(&r->mu);
}

static void recorder_finalize(void *user_data) {
    atomic_fetch_add(&((recorder *)user_data)->finalized, 1);
}

static void on_state(const bgjob_state_event *e, void *user_data) {
    recorder *r = user_data;
    if (atomic_fetch_add(&r->inside, 1) != 0) atomic_store(&r->overlapped, true);
    pthread_mutex_lock(&r->mu);
    if (r->n < MAX_EVENTS) {
        seen_event *s = &r->events[r->n++];
        s->job_id = e->job_id;
        s->state = e->state_info.state;
        s->previous = e->previous_state_info.state;
        s->has_reason = e->state_info.reason != NULL;
        s->has_previous_reason = e->previous_state_info.reason != NULL;
        if (e->state_info.reason != NULL)
            snprintf(s->reason, sizeof s->reason, "%s", e->state_info.reason);
        s->order = atomic_fetch_add(&g_order, 1);
    }
    pthread_mutex_unlock(&r->mu);
    if (bgjob_state_is_finished(e->state_info.state)) {
        /* Every record the work wrote is readable now. */
        bgjob_records *recs = NULL;
        bgjob_status st = bgjob_receive(e->job_id, BGJOB_RECEIVE_KEEP, 0, 0, &recs);
        pthread_mutex_lock(&r->mu);
        r->finished_receive_status = st;
        r->finished_records = (int)bgjob_records_count(recs);
        for (size_t i = 0; i < bgjob_records_count(recs) && i < 8; i++) {
            const bgjob_record *rec = bgjob_records_get(recs, i);
            snprintf(r->finished_texts[i], MAX_TEXT, "%s",
                     rec->data ? (const char *)rec->data : "(null)");
        }
        pthread_mutex_unlock(&r->mu);
        bgjob_records_free(recs);
        if (r->sleep_in_finished_ms > 0) sleep_ms(r->sleep_in_finished_ms);
        atomic_store(&r->finished_returned, 1);
    }
    atomic_fetch_sub(&r->inside, 1);
    if (bgjob_state_is_finished(e->state_info.state)) latch_bump(&r->finished);
}

static int recorder_count(recorder *r) {
    pthread_mutex_lock(&r->mu);
    int n = r->n;
    pthread_mutex_unlock(&r->mu);
    return n;
}

/* Starts a job with `work(user_data)` and `rec` registered through the spec. */
static uint64_t start_watched(bgjob_work_fn work, void *user_data, bgjob_finalizer fin,
                              recorder *rec, const bgjob_pool *pool) {
    bgjob_spec *spec = NULL;
    CHECK_OK(bgjob_spec_new(&spec));
    CHECK_OK(bgjob_spec_set_work(spec, work, user_data, fin));
    CHECK_OK(bgjob_spec_set_pool(spec, pool));
    CHECK_OK(bgjob_spec_on_state_changed(spec, on_state, rec, recorder_finalize));
    uint64_t id = 0;
    CHECK_OK(bgjob_start(spec, &id));
    CHECK(id != 0);
    return id;
}

static int32_t work_five_records(bgjob_context *ctx, void *user_data) {
    (void)user_data;
    for (int i = 0; i < 5; i++) {
        char buf[8];
        snprintf(buf, sizeof buf, "v%d", i);
        if (bgjob_context_write_text(ctx, BGJOB_STREAM_OUTPUT, buf) != BGJOB_OK) return 1;
    }
    return 0;
}

/* ----- tests --------------------------------------------------------------------------------- */

static void test_order_previous_states_and_records_in_completed_callback(void) {
    recorder rec;
    recorder_init(&rec);
    uint64_t id = start_watched(work_five_records, NULL, NULL, &rec, g_pool);
    CHECK_OK(bgjob_wait(&id, 1, BGJOB_WAIT_ALL, 20000, NULL, NULL));
    /* The wait returned after the Completed callbacks: everything is recorded. */
    CHECK(recorder_count(&rec) == 2);
    CHECK(rec.events[0].job_id == id && rec.events[1].job_id == id);
    CHECK(rec.events[0].previous == BGJOB_STATE_NOT_STARTED);
    CHECK(rec.events[0].state == BGJOB_STATE_RUNNING);
    CHECK(rec.events[1].previous == BGJOB_STATE_RUNNING);
    CHECK(rec.events[1].state == BGJOB_STATE_COMPLETED);
    CHECK(!rec.events[0].has_reason && !rec.events[1].has_reason);
    CHECK(!rec.events[0].has_previous_reason && !rec.events[1].has_previous_reason);
    CHECK(!atomic_load(&rec.overlapped));
    CHECK(rec.finished_receive_status == BGJOB_OK);
    CHECK(rec.finished_records == 5);
    for (int i = 0; i < 5; i++) {
        char want[8];
        snprintf(want, sizeof want, "v%d", i);
        CHECK(strcmp(rec.finished_texts[i], want) == 0);
    }
    /* KEEP inside the callback left the records for the host. */
    bgjob_records *recs = NULL;
    CHECK_OK(bgjob_receive(id, 0, 0, 0, &recs));
    CHECK(bgjob_records_count(recs) == 5);
    bgjob_records_free(recs);
    /* The registration lives until the job is removed. */
    CHECK(atomic_load(&rec.finalized) == 0);
    CHECK_OK(bgjob_remove(id, false));
    CHECK(atomic_load(&rec.finalized) == 1);
    CHECK(recorder_count(&rec) == 2);
    recorder_destroy(&rec);
}

static void test_spec_callback_sees_the_stop_of_a_queued_job(void) {
    /* Registered through the spec, the first change is seen even when it is the only
     * one: a queued job stopped before it runs goes NotStarted -> Stopped. */
    bgjob_pool *pool = NULL;
    CHECK_OK(bgjob_pool_new(1, 1, &pool));
    probe busy;
    probe_init(&busy, 10000);
    uint64_t a = start_probe_job(NULL, work_coop, &busy, pool);
    CHECK(wait_for_state(a, BGJOB_STATE_RUNNING, 5000));
    recorder rec;
    recorder_init(&rec);
    probe queued;
    probe_init(&queued, 0);
    uint64_t b = start_watched(work_write_two, &queued, probe_finalize, &rec, pool);
    CHECK(state_of(b) == BGJOB_STATE_NOT_STARTED);
    CHECK_OK(bgjob_stop(b, 5000));
    CHECK(recorder_count(&rec) == 1);
    CHECK(rec.events[0].previous == BGJOB_STATE_NOT_STARTED);
    CHECK(rec.events[0].state == BGJOB_STATE_STOPPED);
    CHECK(rec.finished_records == 0 && rec.finished_receive_status == BGJOB_OK);
    CHECK(atomic_load(&queued.runs) == 0 && atomic_load(&queued.finalized) == 1);
    atomic_store(&busy.release, true);
    CHECK_OK(bgjob_wait(&a, 1, BGJOB_WAIT_ALL, 20000, NULL, NULL));
    CHECK_OK(bgjob_remove(a, false));
    CHECK_OK(bgjob_remove(b, false));
    CHECK(recorder_count(&rec) == 1);
    CHECK(atomic_load(&rec.finalized) == 1);
    CHECK(atomic_load(&queued.runs) == 0);
    pool_close(pool);
    recorder_destroy(&rec);
}

static void test_repository_wide_callback_sees_every_change(void) {
    recorder own[3], any;
    recorder_init(&any);
    uint64_t reg = 0;
    CHECK_OK(bgjob_on_any_state_changed(on_state, &any, recorder_finalize, &reg));
    CHECK(reg != 0);
    uint64_t ids[3];
    for (int i = 0; i < 3; i++) {
        recorder_init(&own[i]);
        ids[i] = start_watched(work_five_records, NULL, NULL, &own[i], g_pool);
    }
    CHECK_OK(bgjob_wait(ids, 3, BGJOB_WAIT_ALL, 20000, NULL, NULL));
    CHECK(recorder_count(&any) == 6);
    for (int i = 0; i < 3; i++) {
        /* This job's events, in the order the repository-wide callback saw them. */
        int k = 0;
        for (int j = 0; j < recorder_count(&any) && j < MAX_EVENTS; j++) {
            seen_event *e = &any.events[j];
            if (e->job_id != ids[i]) continue;
            if (k == 0) CHECK(e->previous == BGJOB_STATE_NOT_STARTED && e->state == BGJOB_STATE_RUNNING);
            if (k == 1) CHECK(e->previous == BGJOB_STATE_RUNNING && e->state == BGJOB_STATE_COMPLETED);
            /* Called after the job's own callback for the same change. */
            if (k < 2 && recorder_count(&own[i]) == 2) CHECK(own[i].events[k].order < e->order);
            k++;
        }
        CHECK(k == 2);
        CHECK(recorder_count(&own[i]) == 2);
    }
    /* Unregistered: its finalizer runs once, and it sees no more changes. */
    CHECK(atomic_load(&any.finalized) == 0);
    CHECK_OK(bgjob_unregister(0, reg));
    CHECK(atomic_load(&any.finalized) == 1);
    uint64_t more = start_job(NULL, work_write_two, NULL, NULL, g_pool);
    CHECK_OK(bgjob_wait(&more, 1, BGJOB_WAIT_ALL, 20000, NULL, NULL));
    CHECK(recorder_count(&any) == 6);
    CHECK_STATUS(bgjob_unregister(0, reg), BGJOB_E_INVALID_ARGUMENT);
    CHECK(atomic_load(&any.finalized) == 1);
    CHECK_OK(bgjob_remove(more, false));
    for (int i = 0; i < 3; i++) {
        CHECK_OK(bgjob_remove(ids[i], false));
        CHECK(atomic_load(&own[i].finalized) == 1);
        recorder_destroy(&own[i]);
    }
    CHECK(atomic_load(&any.finalized) == 1);
    recorder_destroy(&any);
}

/* A callback that removes its own job once it is Completed. */
typedef struct remover {
    latch done;
    atomic_uint remove_status;
    atomic_uint state_after;
    atomic_int finalized;
    atomic_int calls;
    bool force;               /* remove with force */
    bgjob_job_state on_state; /* the state on which to remove */
} remover;

static void remover_finalize(void *user_data) {
    atomic_fetch_add(&((remover *)user_data)->finalized, 1);
}

static void on_state_remove_self(const bgjob_state_event *e, void *user_data) {
    remover *r = user_data;
    atomic_fetch_add(&r->calls, 1);
    if (e->state_info.state != r->on_state) return;
    atomic_store(&r->remove_status, bgjob_remove(e->job_id, r->force));
    bgjob_job_state st = 99;
    atomic_store(&r->state_after, bgjob_get_state(e->job_id, &st));
    latch_bump(&r->done);
}

static void test_callback_removes_its_own_job(void) {
    remover r;
    latch_init(&r.done);
    atomic_init(&r.remove_status, 99);
    atomic_init(&r.state_after, 99);
    atomic_init(&r.finalized, 0);
    atomic_init(&r.calls, 0);
    r.force = false;
    r.on_state = BGJOB_STATE_COMPLETED;
    probe p;
    probe_init(&p, 0);
    bgjob_spec *spec = NULL;
    CHECK_OK(bgjob_spec_new(&spec));
    CHECK_OK(bgjob_spec_set_work(spec, work_five_records, &p, probe_finalize));
    CHECK_OK(bgjob_spec_set_pool(spec, g_pool));
    CHECK_OK(bgjob_spec_on_state_changed(spec, on_state_remove_self, &r, remover_finalize));
    uint64_t id = 0;
    CHECK_OK(bgjob_start(spec, &id));
    CHECK(latch_wait(&r.done, 1, 20000));
    CHECK(atomic_load(&r.remove_status) == BGJOB_OK);
    CHECK(atomic_load(&r.state_after) == BGJOB_E_NO_SUCH_JOB);
    bgjob_job_state st;
    CHECK_STATUS(bgjob_get_state(id, &st), BGJOB_E_NO_SUCH_JOB);
    bgjob_records *recs = NULL;
    CHECK_STATUS(bgjob_receive(id, 0, 0, 0, &recs), BGJOB_E_NO_SUCH_JOB);
    bgjob_records_free(recs);
    CHECK_STATUS(bgjob_wait(&id, 1, BGJOB_WAIT_ALL, 0, NULL, NULL), BGJOB_E_NO_SUCH_JOB);
    CHECK_STATUS(bgjob_remove(id, false), BGJOB_E_NO_SUCH_JOB);
    /* Its finalizer runs once the dispatch under way lets go of it. */
    CHECK(wait_for_count(&r.finalized, 1, 5000));
    CHECK(atomic_load(&p.finalized) == 1);
    CHECK(atomic_load(&r.calls) == 2);
    CHECK(atomic_load(&r.finalized) == 1);
    latch_destroy(&r.done);
}

static void test_callback_force_removes_its_running_job(void) {
    /* From its own callback a forced removal takes the job out at once; its work ends in
     * the background and its user data is freed exactly once. */
    remover r;
    latch_init(&r.done);
    atomic_init(&r.remove_status, 99);
    atomic_init(&r.state_after, 99);
    atomic_init(&r.finalized, 0);
    atomic_init(&r.calls, 0);
    r.force = true;
    r.on_state = BGJOB_STATE_RUNNING;
    probe p;
    probe_init(&p, 10000);
    bgjob_spec *spec = NULL;
    CHECK_OK(bgjob_spec_new(&spec));
    CHECK_OK(bgjob_spec_set_work(spec, work_coop, &p, probe_finalize));
    CHECK_OK(bgjob_spec_set_pool(spec, g_pool));
    CHECK_OK(bgjob_spec_on_state_changed(spec, on_state_remove_self, &r, remover_finalize));
    uint64_t id = 0;
    double t0 = now_ms();
    CHECK_OK(bgjob_start(spec, &id));
    CHECK(latch_wait(&r.done, 1, 20000));
    CHECK(atomic_load(&r.remove_status) == BGJOB_OK);
    CHECK(atomic_load(&r.state_after) == BGJOB_E_NO_SUCH_JOB);
    bgjob_job_state st;
    CHECK_STATUS(bgjob_get_state(id, &st), BGJOB_E_NO_SUCH_JOB);
    CHECK(wait_for_count(&p.finalized, 1, 10000));
    CHECK(wait_for_count(&r.finalized, 1, 10000));
    CHECK(now_ms() - t0 < 9000); /* the stop reached the work (if it ran at all) */
    CHECK(atomic_load(&p.finalized) == 1);
    CHECK(atomic_load(&r.finalized) == 1);
    CHECK(atomic_load(&p.runs) <= 1);
    latch_destroy(&r.done);
}

static void test_wait_returns_after_the_completed_callback(void) {
    long nap = sanitizing() ? 300 : 200;
    /* bgjob_wait, ALL and ANY. */
    for (uint32_t mode = BGJOB_WAIT_ALL; mode <= BGJOB_WAIT_ANY; mode++) {
        recorder rec;
        recorder_init(&rec);
        rec.sleep_in_finished_ms = nap;
        uint64_t id = start_watched(work_write_two, NULL, NULL, &rec, g_pool);
        CHECK_OK(bgjob_wait(&id, 1, mode, 20000, NULL, NULL));
        CHECK(atomic_load(&rec.finished_returned) == 1);
        CHECK_OK(bgjob_remove(id, false));
        CHECK(atomic_load(&rec.finalized) == 1);
        recorder_destroy(&rec);
    }
    /* A poll that sees the job done also sees its callback returned. */
    {
        recorder rec;
        recorder_init(&rec);
        rec.sleep_in_finished_ms = nap;
        uint64_t id = start_watched(work_write_two, NULL, NULL, &rec, g_pool);
        double deadline = now_ms() + 20000;
        size_t n = 0;
        while (now_ms() < deadline) {
            n = 0;
            bgjob_status s = bgjob_wait(&id, 1, BGJOB_WAIT_ALL, 0, NULL, &n);
            if (s == BGJOB_OK) break;
            CHECK(s == BGJOB_E_TIMEOUT && n == 0);
            sleep_ms(1);
        }
        CHECK(n == 1);
        CHECK(atomic_load(&rec.finished_returned) == 1);
        CHECK_OK(bgjob_remove(id, false));
        recorder_destroy(&rec);
    }
    /* bgjob_stop returns after the Stopped callback. */
    {
        recorder rec;
        recorder_init(&rec);
        rec.sleep_in_finished_ms = nap;
        probe p;
        probe_init(&p, 10000);
        uint64_t id = start_watched(work_coop, &p, probe_finalize, &rec, g_pool);
        CHECK(wait_for_state(id, BGJOB_STATE_RUNNING, 5000));
        CHECK_OK(bgjob_stop(id, 20000));
        CHECK(atomic_load(&rec.finished_returned) == 1);
        CHECK(recorder_count(&rec) >= 3);
        /* Running -> Stopping -> Stopped. */
        if (recorder_count(&rec) >= 3) {
            CHECK(rec.events[1].previous == BGJOB_STATE_RUNNING);
            CHECK(rec.events[1].state == BGJOB_STATE_STOPPING);
            CHECK(rec.events[2].previous == BGJOB_STATE_STOPPING);
            CHECK(rec.events[2].state == BGJOB_STATE_STOPPED);
        }
        CHECK_OK(bgjob_remove(id, false));
        CHECK(atomic_load(&p.finalized) == 1);
        recorder_destroy(&rec);
    }
    /* bgjob_remove with force returns after the callbacks too. */
    {
        recorder rec;
        recorder_init(&rec);
        rec.sleep_in_finished_ms = nap;
        probe p;
        probe_init(&p, 10000);
        uint64_t id = start_watched(work_coop, &p, probe_finalize, &rec, g_pool);
        CHECK(wait_for_state(id, BGJOB_STATE_RUNNING, 5000));
        CHECK_OK(bgjob_remove(id, true));
        CHECK(atomic_load(&rec.finished_returned) == 1);
        CHECK(atomic_load(&rec.finalized) == 1);
        CHECK(atomic_load(&p.finalized) == 1);
        recorder_destroy(&rec);
    }
}

static int32_t work_fail_boom(bgjob_context *ctx, void *user_data) {
    (void)user_data;
    bgjob_context_fail(ctx, "boom: disk full");
    return 1;
}

static void test_failed_callback_gets_the_reason(void) {
    recorder rec;
    recorder_init(&rec);
    uint64_t id = start_watched(work_fail_boom, NULL, NULL, &rec, g_pool);
    CHECK_OK(bgjob_wait(&id, 1, BGJOB_WAIT_ALL, 20000, NULL, NULL));
    CHECK(recorder_count(&rec) == 2);
    CHECK(rec.events[1].previous == BGJOB_STATE_RUNNING);
    CHECK(rec.events[1].state == BGJOB_STATE_FAILED);
    CHECK(rec.events[1].has_reason);
    CHECK(strcmp(rec.events[1].reason, "boom: disk full") == 0);
    CHECK(!rec.events[1].has_previous_reason);
    CHECK(!rec.events[0].has_reason);
    CHECK_OK(bgjob_remove(id, false));
    CHECK(atomic_load(&rec.finalized) == 1);
    recorder_destroy(&rec);
}

static void count_callback(const bgjob_state_event *e, void *user_data) {
    (void)e;
    (void)user_data;
}

static void test_callback_finalizers_run_once_on_remove(void) {
    atomic_int fin_a, fin_b, fin_late, fin_unreg;
    atomic_init(&fin_a, 0);
    atomic_init(&fin_b, 0);
    atomic_init(&fin_late, 0);
    atomic_init(&fin_unreg, 0);
    probe p;
    probe_init(&p, 0);
    bgjob_spec *spec = NULL;
    CHECK_OK(bgjob_spec_new(&spec));
    CHECK_OK(bgjob_spec_set_work(spec, work_write_two, &p, probe_finalize));
    CHECK_OK(bgjob_spec_set_pool(spec, g_pool));
    CHECK_OK(bgjob_spec_on_state_changed(spec, count_callback, &fin_a, count_finalize));
    CHECK_OK(bgjob_spec_on_state_changed(spec, count_callback, &fin_b, count_finalize));
    uint64_t id = 0;
    CHECK_OK(bgjob_start(spec, &id));
    CHECK_OK(bgjob_wait(&id, 1, BGJOB_WAIT_ALL, 20000, NULL, NULL));
    /* The work's user data is freed once the work returned; the callbacks' not yet. */
    CHECK(atomic_load(&p.finalized) == 1);
    CHECK(atomic_load(&fin_a) == 0 && atomic_load(&fin_b) == 0);
    /* Registered on the finished job: lives until the removal too. */
    uint64_t reg_late = 0, reg_unreg = 0;
    CHECK_OK(bgjob_on_state_changed(id, count_callback, &fin_late, count_finalize, &reg_late));
    CHECK_OK(bgjob_on_state_changed(id, count_callback, &fin_unreg, count_finalize, &reg_unreg));
    CHECK(reg_late != 0 && reg_unreg != 0 && reg_late != reg_unreg);
    CHECK_OK(bgjob_unregister(id, reg_unreg));
    CHECK(atomic_load(&fin_unreg) == 1);
    CHECK_STATUS(bgjob_unregister(id, reg_unreg), BGJOB_E_INVALID_ARGUMENT);
    CHECK(atomic_load(&fin_late) == 0);
    CHECK_OK(bgjob_remove(id, false));
    CHECK(atomic_load(&fin_a) == 1);
    CHECK(atomic_load(&fin_b) == 1);
    CHECK(atomic_load(&fin_late) == 1);
    CHECK(atomic_load(&fin_unreg) == 1);
    CHECK(atomic_load(&p.finalized) == 1);
    CHECK_STATUS(bgjob_remove(id, false), BGJOB_E_NO_SUCH_JOB);
    CHECK_STATUS(bgjob_unregister(id, reg_late), BGJOB_E_NO_SUCH_JOB);
    CHECK(atomic_load(&fin_a) == 1 && atomic_load(&fin_b) == 1 && atomic_load(&fin_late) == 1);
}

static void test_callback_registered_after_start_sees_later_changes(void) {
    probe p;
    probe_init(&p, 10000);
    uint64_t id = start_probe_job(NULL, work_coop, &p, g_pool);
    CHECK(wait_for_state(id, BGJOB_STATE_RUNNING, 5000));
    recorder rec;
    recorder_init(&rec);
    uint64_t reg = 0;
    CHECK_OK(bgjob_on_state_changed(id, on_state, &rec, recorder_finalize, &reg));
    atomic_store(&p.release, true);
    CHECK_OK(bgjob_wait(&id, 1, BGJOB_WAIT_ALL, 20000, NULL, NULL));
    CHECK(recorder_count(&rec) == 1);
    CHECK(rec.events[0].previous == BGJOB_STATE_RUNNING);
    CHECK(rec.events[0].state == BGJOB_STATE_COMPLETED);
    CHECK(atomic_load(&rec.finalized) == 0);
    CHECK_OK(bgjob_remove(id, false));
    CHECK(atomic_load(&rec.finalized) == 1);
    recorder_destroy(&rec);
}

/* Several callbacks on several jobs: each job's own callbacks never overlap and each
 * change reaches each callback exactly once. */
static void test_many_jobs_each_change_once_in_order(void) {
    enum { JOBS = 24 };
    int jobs = sanitizing() ? 8 : JOBS;
    recorder rec[JOBS];
    uint64_t ids[JOBS];
    for (int i = 0; i < jobs; i++) {
        recorder_init(&rec[i]);
        ids[i] = start_watched(i % 3 == 0 ? work_fail_boom : work_five_records, NULL, NULL,
                               &rec[i], g_pool);
    }
    CHECK_OK(bgjob_wait(ids, (size_t)jobs, BGJOB_WAIT_ALL, 30000, NULL, NULL));
    for (int i = 0; i < jobs; i++) {
        CHECK(recorder_count(&rec[i]) == 2);
        CHECK(rec[i].events[0].state == BGJOB_STATE_RUNNING);
        CHECK(rec[i].events[1].state ==
              (i % 3 == 0 ? BGJOB_STATE_FAILED : BGJOB_STATE_COMPLETED));
        CHECK(rec[i].events[0].job_id == ids[i] && rec[i].events[1].job_id == ids[i]);
        CHECK(!atomic_load(&rec[i].overlapped));
        CHECK(rec[i].finished_records == (i % 3 == 0 ? 0 : 5));
        CHECK_OK(bgjob_remove(ids[i], false));
        CHECK(atomic_load(&rec[i].finalized) == 1);
        recorder_destroy(&rec[i]);
    }
}

/* Waits from inside a job's own callbacks: on a later change it could never end. */
typedef struct self_waiter {
    atomic_uint running_wait, running_poll, completed_wait;
    atomic_int calls;
} self_waiter;

static void on_state_wait_self(const bgjob_state_event *e, void *user_data) {
    self_waiter *w = user_data;
    uint64_t id = e->job_id;
    atomic_fetch_add(&w->calls, 1);
    if (e->state_info.state == BGJOB_STATE_RUNNING) {
        atomic_store(&w->running_wait, bgjob_wait(&id, 1, BGJOB_WAIT_ALL, 1000, NULL, NULL));
        atomic_store(&w->running_poll, bgjob_wait(&id, 1, BGJOB_WAIT_ANY, 0, NULL, NULL));
    } else if (e->state_info.state == BGJOB_STATE_COMPLETED) {
        /* The change being delivered counts as done here. */
        atomic_store(&w->completed_wait, bgjob_wait(&id, 1, BGJOB_WAIT_ALL, 1000, NULL, NULL));
    }
}

static void test_wait_from_own_callback(void) {
    self_waiter w;
    atomic_init(&w.running_wait, 99);
    atomic_init(&w.running_poll, 99);
    atomic_init(&w.completed_wait, 99);
    atomic_init(&w.calls, 0);
    bgjob_spec *spec = NULL;
    CHECK_OK(bgjob_spec_new(&spec));
    CHECK_OK(bgjob_spec_set_work(spec, work_write_two, NULL, NULL));
    CHECK_OK(bgjob_spec_set_pool(spec, g_pool));
    CHECK_OK(bgjob_spec_on_state_changed(spec, on_state_wait_self, &w, NULL));
    uint64_t id = 0;
    CHECK_OK(bgjob_start(spec, &id));
    CHECK_OK(bgjob_wait(&id, 1, BGJOB_WAIT_ALL, 20000, NULL, NULL));
    CHECK(atomic_load(&w.calls) == 2);
    CHECK(atomic_load(&w.running_wait) == BGJOB_E_WOULD_DEADLOCK);
    CHECK(atomic_load(&w.running_poll) == BGJOB_E_TIMEOUT);
    CHECK(atomic_load(&w.completed_wait) == BGJOB_OK);
    CHECK_OK(bgjob_remove(id, false));
}

/* A thread that stops a job (and so runs its Stopping callbacks itself). */
static void *stop_thread(void *arg) {
    uint64_t id = *(uint64_t *)arg;
    static bgjob_status result;
    result = bgjob_stop(id, 20000);
    return &result;
}

typedef struct slow_stopping {
    recorder rec;
    atomic_int in_stopping; /* 1 while the Stopping callback is held */
    latch go;               /* lets the Stopping callback return */
} slow_stopping;

static void on_state_slow_stopping(const bgjob_state_event *e, void *user_data) {
    slow_stopping *s = user_data;
    if (e->state_info.state == BGJOB_STATE_STOPPING) {
        atomic_store(&s->in_stopping, 1);
        /* Held until the test has removed the job, at most 1 s: a library that makes the
         * remove wait for this change's callbacks is not deadlocked, only slowed. */
        latch_wait(&s->go, 1, 1000);
        atomic_store(&s->in_stopping, 2);
    }
    on_state(e, &s->rec);
}

static void slow_stopping_finalize(void *user_data) {
    atomic_fetch_add(&((slow_stopping *)user_data)->rec.finalized, 1);
}

static void test_remove_before_the_finished_callbacks_ran_still_runs_them(void) {
    /* The Stopping change is dispatched by the thread that asked the stop, and its callback
     * is held until the test lets it go. Meanwhile the work sees the stop and ends: Stopped
     * is stored (a getter sees it, it is finished) and its event is queued behind the held
     * callback. A remove now must not cost the job its Stopped callback: each change
     * reaches each callback exactly once. */
    slow_stopping s;
    recorder_init(&s.rec);
    atomic_init(&s.in_stopping, 0);
    latch_init(&s.go);
    probe p;
    probe_init(&p, 10000);
    bgjob_spec *spec = NULL;
    CHECK_OK(bgjob_spec_new(&spec));
    CHECK_OK(bgjob_spec_set_work(spec, work_coop, &p, probe_finalize));
    CHECK_OK(bgjob_spec_set_pool(spec, g_pool));
    CHECK_OK(bgjob_spec_on_state_changed(spec, on_state_slow_stopping, &s, slow_stopping_finalize));
    uint64_t id = 0;
    CHECK_OK(bgjob_start(spec, &id));
    CHECK(wait_for_state(id, BGJOB_STATE_RUNNING, 5000));
    pthread_t t;
    CHECK(pthread_create(&t, NULL, stop_thread, &id) == 0);
    CHECK(wait_for_count(&s.in_stopping, 1, 5000));
    /* The stored state moves on to Stopped while the Stopping callback is held. */
    CHECK(wait_for_state(id, BGJOB_STATE_STOPPED, 5000));
    CHECK(atomic_load(&s.in_stopping) == 1);
    bgjob_status removed = bgjob_remove(id, false);
    CHECK(removed == BGJOB_OK);
    latch_bump(&s.go);
    void *ret = NULL;
    pthread_join(t, &ret);
    CHECK(ret != NULL && *(bgjob_status *)ret == BGJOB_OK);
    /* Running, Stopping, Stopped: the last one was not lost to the removal. */
    CHECK(wait_for_count(&s.rec.finalized, 1, 5000));
    int n = recorder_count(&s.rec);
    CHECK(n == 3);
    if (n != 3)
        fprintf(stderr, "  (saw %d state-change callbacks; the last was %s)\n", n,
                n > 0 ? bgjob_state_name(s.rec.events[n - 1].state) : "none");
    if (n == 3) CHECK(s.rec.events[2].state == BGJOB_STATE_STOPPED);
    CHECK(atomic_load(&s.rec.finalized) == 1);
    CHECK(atomic_load(&p.finalized) == 1);
    if (removed != BGJOB_OK) bgjob_remove(id, true);
    latch_destroy(&s.go);
    recorder_destroy(&s.rec);
}

/* Two callbacks on one job; the first removes the job when it is Completed. */
typedef struct pair_state {
    atomic_uint remove_status;
    atomic_int first_fin, second_fin;
    atomic_int second_calls, second_completed;
} pair_state;

static void on_state_first_removes(const bgjob_state_event *e, void *user_data) {
    pair_state *ps = user_data;
    if (e->state_info.state == BGJOB_STATE_COMPLETED)
        atomic_store(&ps->remove_status, bgjob_remove(e->job_id, false));
}

static void on_state_second_counts(const bgjob_state_event *e, void *user_data) {
    pair_state *ps = user_data;
    atomic_fetch_add(&ps->second_calls, 1);
    if (e->state_info.state == BGJOB_STATE_COMPLETED) atomic_fetch_add(&ps->second_completed, 1);
}

static void first_finalize(void *user_data) {
    atomic_fetch_add(&((pair_state *)user_data)->first_fin, 1);
}

static void second_finalize(void *user_data) {
    atomic_fetch_add(&((pair_state *)user_data)->second_fin, 1);
}

static void test_callback_removing_its_job_does_not_starve_the_others(void) {
    /* The removal comes after the Completed change: every callback registered for the job
     * still gets that change, exactly once. */
    pair_state ps;
    atomic_init(&ps.remove_status, 99);
    atomic_init(&ps.first_fin, 0);
    atomic_init(&ps.second_fin, 0);
    atomic_init(&ps.second_calls, 0);
    atomic_init(&ps.second_completed, 0);
    bgjob_spec *spec = NULL;
    CHECK_OK(bgjob_spec_new(&spec));
    CHECK_OK(bgjob_spec_set_work(spec, work_write_two, NULL, NULL));
    CHECK_OK(bgjob_spec_set_pool(spec, g_pool));
    CHECK_OK(bgjob_spec_on_state_changed(spec, on_state_first_removes, &ps, first_finalize));
    CHECK_OK(bgjob_spec_on_state_changed(spec, on_state_second_counts, &ps, second_finalize));
    uint64_t id = 0;
    CHECK_OK(bgjob_start(spec, &id));
    /* Both finalizers run once the dispatch of the Completed change lets go of them. */
    CHECK(wait_for_count(&ps.first_fin, 1, 10000));
    CHECK(wait_for_count(&ps.second_fin, 1, 10000));
    CHECK(atomic_load(&ps.remove_status) == BGJOB_OK);
    CHECK_STATUS(bgjob_get_state(id, &(bgjob_job_state){0}), BGJOB_E_NO_SUCH_JOB);
    CHECK(atomic_load(&ps.second_calls) == 2);
    CHECK(atomic_load(&ps.second_completed) == 1);
    CHECK(atomic_load(&ps.first_fin) == 1 && atomic_load(&ps.second_fin) == 1);
}

/* A callback that unregisters itself: its user data must outlive the call. */
typedef struct self_unregister {
    _Atomic uint64_t registration;
    atomic_uint unregister_status;
    atomic_int finalized_during_call;
    atomic_int finalized;
    atomic_int calls;
} self_unregister;

static void on_state_unregister_self(const bgjob_state_event *e, void *user_data) {
    self_unregister *u = user_data;
    atomic_fetch_add(&u->calls, 1);
    atomic_store(&u->unregister_status,
                 bgjob_unregister(e->job_id, atomic_load(&u->registration)));
    /* Still in the call: the finalizer must not have run yet. */
    atomic_store(&u->finalized_during_call, atomic_load(&u->finalized));
}

static void self_unregister_finalize(void *user_data) {
    atomic_fetch_add(&((self_unregister *)user_data)->finalized, 1);
}

static void test_callback_unregisters_itself(void) {
    self_unregister u;
    atomic_init(&u.registration, 0);
    atomic_init(&u.unregister_status, 99);
    atomic_init(&u.finalized_during_call, 99);
    atomic_init(&u.finalized, 0);
    atomic_init(&u.calls, 0);
    probe p;
    probe_init(&p, 10000);
    uint64_t id = start_probe_job(NULL, work_coop, &p, g_pool);
    CHECK(wait_for_state(id, BGJOB_STATE_RUNNING, 5000));
    uint64_t reg = 0;
    CHECK_OK(bgjob_on_state_changed(id, on_state_unregister_self, &u, self_unregister_finalize,
                                    &reg));
    atomic_store(&u.registration, reg);
    CHECK_OK(bgjob_stop(id, 20000)); /* Running -> Stopping -> Stopped */
    CHECK(atomic_load(&u.calls) == 1); /* unregistered during the first call */
    CHECK(atomic_load(&u.unregister_status) == BGJOB_OK);
    CHECK(atomic_load(&u.finalized_during_call) == 0);
    CHECK(atomic_load(&u.finalized) == 1);
    CHECK_OK(bgjob_remove(id, false));
    CHECK(atomic_load(&u.finalized) == 1);
}

/* What the finished callback saw of the work's user data. */
typedef struct fin_watch {
    probe *p;
    atomic_int finalized_at_finish; /* the work's finalizer count in the finished callback */
    atomic_uint finished_state;
} fin_watch;

static void on_state_fin_watch(const bgjob_state_event *e, void *user_data) {
    fin_watch *w = user_data;
    if (bgjob_state_is_finished(e->state_info.state)) {
        atomic_store(&w->finalized_at_finish, atomic_load(&w->p->finalized));
        atomic_store(&w->finished_state, e->state_info.state);
    }
}

static uint64_t start_fin_watched(bgjob_work_fn work, probe *p, fin_watch *w,
                                  const bgjob_pool *pool) {
    w->p = p;
    atomic_init(&w->finalized_at_finish, 99);
    atomic_init(&w->finished_state, 99);
    bgjob_spec *spec = NULL;
    CHECK_OK(bgjob_spec_new(&spec));
    CHECK_OK(bgjob_spec_set_work(spec, work, p, probe_finalize));
    CHECK_OK(bgjob_spec_set_pool(spec, pool));
    CHECK_OK(bgjob_spec_on_state_changed(spec, on_state_fin_watch, w, NULL));
    uint64_t id = 0;
    CHECK_OK(bgjob_start(spec, &id));
    return id;
}

static void test_work_user_data_is_freed_before_the_finished_callbacks(void) {
    /* Completed, Failed, Stopped while running, Stopped while queued. */
    bgjob_pool *pool = NULL;
    CHECK_OK(bgjob_pool_new(1, 0, &pool));
    probe p[4];
    fin_watch w[4];
    uint64_t ids[4];
    probe_init(&p[0], 0);
    ids[0] = start_fin_watched(work_write_two, &p[0], &w[0], pool);
    probe_init(&p[1], 0);
    ids[1] = start_fin_watched(work_fail_boom, &p[1], &w[1], pool);
    CHECK_OK(bgjob_wait(ids, 2, BGJOB_WAIT_ALL, 20000, NULL, NULL));
    probe_init(&p[2], 10000);
    ids[2] = start_fin_watched(work_coop, &p[2], &w[2], pool);
    CHECK(wait_for_state(ids[2], BGJOB_STATE_RUNNING, 5000));
    probe_init(&p[3], 0);
    ids[3] = start_fin_watched(work_write_two, &p[3], &w[3], pool); /* queued behind */
    CHECK_OK(bgjob_stop(ids[3], 20000));
    CHECK_OK(bgjob_stop(ids[2], 20000));
    bgjob_job_state want[4] = {BGJOB_STATE_COMPLETED, BGJOB_STATE_FAILED, BGJOB_STATE_STOPPED,
                               BGJOB_STATE_STOPPED};
    for (int i = 0; i < 4; i++) {
        CHECK(atomic_load(&w[i].finished_state) == want[i]);
        CHECK(atomic_load(&w[i].finalized_at_finish) == 1);
        CHECK_OK(bgjob_remove(ids[i], false));
        CHECK(atomic_load(&p[i].finalized) == 1);
    }
    CHECK(atomic_load(&p[3].runs) == 0);
    pool_close(pool);
}

static void test_repository_is_empty_at_the_end(void) {
    CHECK(repo_count() == 0);
}

int main(void) {
    atomic_init(&g_order, 0);
    if (bgjob_pool_new(4, 0, &g_pool) != BGJOB_OK) {
        fprintf(stderr, "bgjob_pool_new: %s\n", bgjob_last_error_message());
        return 1;
    }
    RUN_TEST(test_order_previous_states_and_records_in_completed_callback);
    RUN_TEST(test_spec_callback_sees_the_stop_of_a_queued_job);
    RUN_TEST(test_repository_wide_callback_sees_every_change);
    RUN_TEST(test_callback_removes_its_own_job);
    RUN_TEST(test_callback_force_removes_its_running_job);
    RUN_TEST(test_wait_returns_after_the_completed_callback);
    RUN_TEST(test_failed_callback_gets_the_reason);
    RUN_TEST(test_callback_finalizers_run_once_on_remove);
    RUN_TEST(test_callback_registered_after_start_sees_later_changes);
    RUN_TEST(test_many_jobs_each_change_once_in_order);
    RUN_TEST(test_wait_from_own_callback);
    RUN_TEST(test_remove_before_the_finished_callbacks_ran_still_runs_them);
    RUN_TEST(test_callback_removing_its_job_does_not_starve_the_others);
    RUN_TEST(test_callback_unregisters_itself);
    RUN_TEST(test_work_user_data_is_freed_before_the_finished_callbacks);
    RUN_TEST(test_repository_is_empty_at_the_end);
    CHECK_OK(bgjob_pool_shutdown(g_pool, 20000));
    bgjob_pool_free(g_pool);
    /* Every bgjob thread gone before exit: valgrind sees no live worker. */
    CHECK_OK(bgjob_shutdown(BGJOB_INFINITE));
    return check_summary("test_callbacks");
}
