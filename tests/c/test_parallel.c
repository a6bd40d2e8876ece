/* Parallel jobs through the C ABI (PowerShell's ForEach-Object -Parallel -AsJob): a spec
 * with inputs starts a parent with one child per input; the children run the work, each
 * reading its own input, at most the throttle limit at once; the parent's state, status
 * message and records follow its children's; lookups find children, listings hide them
 * unless asked; removal goes through the parent; the shared user data is finalized once. */
#include "check.h"
#include "util.h"

#include <inttypes.h>

/* A pool with enough workers for every test here, whatever the machine's core count. */
static bgjob_pool *g_pool = NULL;

/* ----- helpers ------------------------------------------------------------------------ */

/* Starts a parallel job over `n` text inputs (without their NULs) with `work(user_data)`,
 * on `pool` (NULL = default pool), throttled to `throttle` (0 = pool's limits), with an
 * optional parent callback (its data freed by `callback_finalizer`). Returns the parent's id, or 0 after a failed CHECK. */
static uint64_t start_parallel(const char *name, const char *const *inputs, size_t n,
                               bgjob_work_fn work, void *user_data, bgjob_finalizer finalizer,
                               const bgjob_pool *pool, uint32_t throttle,
                               bgjob_state_callback callback, void *callback_data,
                               bgjob_finalizer callback_finalizer) {
    bgjob_spec *spec = NULL;
    CHECK_OK(bgjob_spec_new(&spec));
    if (spec == NULL) return 0;
    if (name != NULL) CHECK_OK(bgjob_spec_set_name(spec, name));
    CHECK_OK(bgjob_spec_set_work(spec, work, user_data, finalizer));
    if (pool != NULL) CHECK_OK(bgjob_spec_set_pool(spec, pool));
    if (throttle != 0) CHECK_OK(bgjob_spec_set_throttle_limit(spec, throttle));
    if (callback != NULL) 
        CHECK_OK(bgjob_spec_on_state_changed(spec, callback, callback_data, callback_finalizer));
    for (size_t i = 0; i < n; i++)
        CHECK_OK(bgjob_spec_add_input(spec, inputs[i], strlen(inputs[i])));
    uint64_t id = 0;
    CHECK_OK(bgjob_start(spec, &id));
    CHECK(id != 0);
    return id;
}

/* Whether the snapshot's text field equals `want`. */
static bool text_is(const char *got, const char *want) {
    return got != NULL && strcmp(got, want) == 0;
}

/* The ids `bgjob_get_jobs` lists for a filter on `state` (or any state if `state` is 99)
 * and, if non-NULL, name `pattern`; `include_children` as given. Returns the count (or
 * (size_t)-1 on error) and copies up to `room` ids to `out`. */
static size_t list_jobs(bgjob_job_state state, const char *pattern, bool include_children,
                        uint64_t *out, size_t room) {
    bgjob_filter *f = NULL;
    bgjob_job_list *list = NULL;
    size_t n = (size_t)-1;
    if (bgjob_filter_new(&f) != BGJOB_OK) return n;
    if (state != 99 && bgjob_filter_set_state(f, state) != BGJOB_OK) goto out;
    if (pattern != NULL && bgjob_filter_set_name(f, pattern) != BGJOB_OK) goto out;
    if (bgjob_filter_set_include_children(f, include_children) != BGJOB_OK) goto out;
    if (bgjob_get_jobs(f, &list) != BGJOB_OK) goto out;
    n = bgjob_job_list_count(list);
    for (size_t i = 0; i < n && i < room; i++) out[i] = bgjob_job_list_get(list, i);
out:
    bgjob_job_list_free(list);
    bgjob_filter_free(f);
    return n;
}

/* Whether the listing equals `want` (n ids, ascending). */
static bool listing_is(bgjob_job_state state, const char *pattern, bool include_children,
                       const uint64_t *want, size_t n) {
    uint64_t got[32];
    size_t count = list_jobs(state, pattern, include_children, got, 32);
    bool ok = count == n;
    for (size_t i = 0; ok && i < n; i++) ok = got[i] == want[i];
    if (!ok) {
        fprintf(stderr, "  (listing state %u, name %s, children %d: %zu ids:", state,
                pattern ? pattern : "-", include_children, count);
        for (size_t i = 0; count != (size_t)-1 && i < count && i < 32; i++)
            fprintf(stderr, " %" PRIu64, got[i]);
        fprintf(stderr, ")\n");
    }
    return ok;
}

/* The parent's child ids, in creation order, via a snapshot (returns the count). */
static size_t child_ids(uint64_t parent, uint64_t *out, size_t room) {
    bgjob_job_info *info = NULL;
    if (bgjob_get_job(parent, &info) != BGJOB_OK) return 0;
    size_t n = bgjob_job_info_child_count(info);
    for (size_t i = 0; i < n && i < room; i++) out[i] = bgjob_job_info_child_id(info, i);
    bgjob_job_info_free(info);
    return n;
}

/* The job's begin time (0 if it never ran), or -1 if it cannot be read. */
static int64_t begin_ns_of(uint64_t id) {
    bgjob_job_info *info = NULL;
    if (bgjob_get_job(id, &info) != BGJOB_OK) return -1;
    int64_t t = bgjob_job_info_begin_time_ns(info);
    bgjob_job_info_free(info);
    return t;
}

/* Whether the job's state is `state` with `reason` (NULL = no reason) as its reason. */
static bool state_and_reason_are(uint64_t id, bgjob_job_state state, const char *reason) {
    bgjob_job_info *info = NULL;
    if (bgjob_get_job(id, &info) != BGJOB_OK) return false;
    const char *r = bgjob_job_info_reason(info);
    bool ok = bgjob_job_info_state(info) == state &&
              (reason == NULL ? r == NULL : text_is(r, reason));
    if (!ok)
        fprintf(stderr, "  (job %" PRIu64 ": %s, reason %s)\n", id,
                bgjob_state_name(bgjob_job_info_state(info)), r ? r : "NULL");
    bgjob_job_info_free(info);
    return ok;
}

/* Counts children of `ids` (n of them) in `state`. */
static int count_in_state(const uint64_t *ids, size_t n, bgjob_job_state state) {
    int k = 0;
    for (size_t i = 0; i < n; i++) k += state_of(ids[i]) == state;
    return k;
}

/* ----- work functions ------------------------------------------------------------------ */

/* Work: writes its input to the output stream (the probe counts runs). */
static int32_t work_echo_input(bgjob_context *ctx, void *user_data) {
    if (user_data != NULL) atomic_fetch_add(&((probe *)user_data)->runs, 1);
    const uint8_t *data = NULL;
    size_t len = 0;
    bgjob_status st = bgjob_context_input(ctx, &data, &len);
    if (st != BGJOB_OK) return 100 + (int32_t)st;
    return (int32_t)bgjob_context_write(ctx, BGJOB_STREAM_OUTPUT, data, len);
}

/* Work: fails for input "1" (with a reason and a non-zero return), echoes the others. */
static int32_t work_fail_on_one(bgjob_context *ctx, void *user_data) {
    const uint8_t *data = NULL;
    size_t len = 0;
    if (bgjob_context_input(ctx, &data, &len) != BGJOB_OK) return 99;
    if (len == 1 && data[0] == '1') {
        atomic_fetch_add(&((probe *)user_data)->runs, 1);
        bgjob_context_fail(ctx, "input 1 is refused");
        return 1;
    }
    return work_echo_input(ctx, user_data);
}

/* ----- a recorder of the parent's state changes ------------------------------------------ */

#define MAX_EVENTS 16

typedef struct recorder {
    pthread_mutex_t mu;
    int n;
    uint64_t job_id[MAX_EVENTS];
    bgjob_job_state state[MAX_EVENTS], previous[MAX_EVENTS];
    atomic_int finalized;
} recorder;

static void recorder_init(recorder *r) {
    pthread_mutex_init(&r->mu, NULL);
    r->n = 0;
    atomic_init(&r->finalized, 0);
}

static void on_parent_state(const bgjob_state_event *e, void *user_data) {
    recorder *r = user_data;
    pthread_mutex_lock(&r->mu);
    if (r->n < MAX_EVENTS) {
        r->job_id[r->n] = e->job_id;
        r->state[r->n] = e->state_info.state;
        r->previous[r->n] = e->previous_state_info.state;
        r->n++;
    }
    pthread_mutex_unlock(&r->mu);
}

static void recorder_finalize(void *user_data) {
    atomic_fetch_add(&((recorder *)user_data)->finalized, 1);
}

/* The recorded history is NotStarted → Running → … → `final`, every move legal, each
 * event's previous state the one before, all for `parent`, exactly one finished state
 * and it last. */
static bool history_is_legal(recorder *r, uint64_t parent, bgjob_job_state final) {
    pthread_mutex_lock(&r->mu);
    bool ok = r->n >= 2 && r->previous[0] == BGJOB_STATE_NOT_STARTED &&
              r->state[0] == BGJOB_STATE_RUNNING && r->state[r->n - 1] == final;
    bgjob_job_state at = BGJOB_STATE_NOT_STARTED;
    for (int i = 0; ok && i < r->n; i++) {
        ok = r->job_id[i] == parent && r->previous[i] == at && legal_move(at, r->state[i]) &&
             (bgjob_state_is_finished(r->state[i]) == (i == r->n - 1));
        at = r->state[i];
    }
    if (!ok) {
        fprintf(stderr, "  (parent %" PRIu64 " history:", parent);
        for (int i = 0; i < r->n; i++)
            fprintf(stderr, " [%" PRIu64 "] %s->%s", r->job_id[i], bgjob_state_name(r->previous[i]),
                    bgjob_state_name(r->state[i]));
        fprintf(stderr, ")\n");
    }
    pthread_mutex_unlock(&r->mu);
    return ok;
}

/* ----- the tests ---------------------------------------------------------------------- */

static const char *const TEN[] = {"1", "2", "3", "4", "5", "6", "7", "8", "9", "10"};

static void test_ten_inputs_give_ten_outputs_from_the_children(void) {
    probe p;
    probe_init(&p, 0);
    recorder r;
    recorder_init(&r);
    uint64_t parent = start_parallel("par-ten", TEN, 10, work_echo_input, &p, probe_finalize,
                                     g_pool, 0, on_parent_state, &r, recorder_finalize);
    CHECK_OK(bgjob_wait(&parent, 1, BGJOB_WAIT_ALL, 20000, NULL, NULL));
    CHECK(state_and_reason_are(parent, BGJOB_STATE_COMPLETED, NULL));
    CHECK(atomic_load(&p.runs) == 10);
    /* The shared user data is finalized once, when the last child no longer needs it. */
    CHECK(atomic_load(&p.finalized) == 1);
    CHECK(history_is_legal(&r, parent, BGJOB_STATE_COMPLETED));

    /* The parent and its children: ids N, N+1..N+10 in creation order. */
    bgjob_job_info *info = NULL;
    CHECK_OK(bgjob_get_job(parent, &info));
    CHECK(text_is(bgjob_job_info_type_name(info), "ParallelJob"));
    CHECK(text_is(bgjob_job_info_name(info), "par-ten"));
    CHECK(text_is(bgjob_job_info_status_message(info), "10/10 completed"));
    CHECK(bgjob_job_info_parent_id(info) == 0);
    CHECK(bgjob_job_info_child_count(info) == 10);
    for (size_t i = 0; i < 10; i++) CHECK(bgjob_job_info_child_id(info, i) == parent + 1 + i);
    CHECK(bgjob_job_info_child_id(info, 10) == 0);
    bgjob_job_info_free(info);
    for (uint64_t c = parent + 1; c <= parent + 10; c++) {
        info = NULL;
        CHECK_OK(bgjob_get_job(c, &info));
        CHECK(text_is(bgjob_job_info_type_name(info), "ParallelChildJob"));
        CHECK(bgjob_job_info_parent_id(info) == parent);
        CHECK(bgjob_job_info_child_count(info) == 0);
        CHECK(bgjob_job_info_state(info) == BGJOB_STATE_COMPLETED);
        bgjob_job_info_free(info);
    }

    /* Receiving from the parent gives the children's records: each input once, each from
     * the child that ran it (child k has input k). */
    bgjob_records *recs = NULL;
    CHECK_OK(bgjob_receive(parent, 0, 0, 0, &recs));
    CHECK(bgjob_records_count(recs) == 10);
    int seen[11] = {0};
    uint64_t last_sequence = 0;
    for (size_t i = 0; i < bgjob_records_count(recs); i++) {
        const bgjob_record *rec = bgjob_records_get(recs, i);
        CHECK(rec != NULL && rec->data != NULL);
        if (rec == NULL || rec->data == NULL) continue;
        CHECK(rec->stream == BGJOB_STREAM_OUTPUT);
        CHECK(rec->job_id > parent && rec->job_id <= parent + 10);
        CHECK(i == 0 || rec->sequence > last_sequence);
        last_sequence = rec->sequence;
        int v = atoi((const char *)rec->data);
        CHECK(v >= 1 && v <= 10);
        if (v >= 1 && v <= 10) {
            seen[v]++;
            CHECK(rec->job_id == parent + (uint64_t)v);
        }
    }
    for (int v = 1; v <= 10; v++) CHECK(seen[v] == 1);
    bgjob_records_free(recs);
    recs = NULL;
    /* Consumed: nothing left on the parent nor on a child. */
    CHECK_OK(bgjob_receive(parent + 3, 0, 0, 0, &recs));
    CHECK(bgjob_records_count(recs) == 0);
    bgjob_records_free(recs);

    /* The parent's callback registration ends with its removal. */
    CHECK(atomic_load(&r.finalized) == 0);
    CHECK_OK(bgjob_remove(parent, false));
    CHECK(atomic_load(&r.finalized) == 1);
    CHECK(repo_count() == 0);
    pthread_mutex_destroy(&r.mu);
}

static void test_a_failing_child_fails_the_parent(void) {
    probe p;
    probe_init(&p, 0);
    const char *inputs[] = {"1", "2"};
    uint64_t parent = start_parallel(NULL, inputs, 2, work_fail_on_one, &p, probe_finalize,
                                     g_pool, 0, NULL, NULL, NULL);
    CHECK_OK(bgjob_wait(&parent, 1, BGJOB_WAIT_ALL, 20000, NULL, NULL));
    CHECK(atomic_load(&p.runs) == 2);
    CHECK(atomic_load(&p.finalized) == 1);
    uint64_t c1 = parent + 1, c2 = parent + 2;
    /* The fail reason wins over "the work returned 1". */
    CHECK(state_and_reason_are(c1, BGJOB_STATE_FAILED, "input 1 is refused"));
    CHECK(state_and_reason_are(c2, BGJOB_STATE_COMPLETED, NULL));
    bgjob_job_info *info = NULL;
    CHECK_OK(bgjob_get_job(parent, &info));
    CHECK(bgjob_job_info_state(info) == BGJOB_STATE_FAILED);
    const char *reason = bgjob_job_info_reason(info);
    CHECK(reason != NULL && strstr(reason, "input 1 is refused") != NULL);
    CHECK(text_is(bgjob_job_info_status_message(info), "2/2 completed"));
    bgjob_job_info_free(info);
    /* The child that completed still delivers its output through the parent. */
    bgjob_records *recs = NULL;
    CHECK_OK(bgjob_receive(parent, 0, 0, 0, &recs));
    CHECK(bgjob_records_count(recs) == 1);
    CHECK(record_is(recs, 0, BGJOB_STREAM_OUTPUT, "2"));
    const bgjob_record *rec = bgjob_records_get(recs, 0);
    CHECK(rec != NULL && rec->job_id == c2);
    bgjob_records_free(recs);
    CHECK_OK(bgjob_remove(parent, false));
    CHECK(repo_count() == 0);
}

static void test_throttle_two_of_four_then_stop(void) {
    probe p;
    probe_init(&p, 30000); /* long: ends only when stopped */
    atomic_int concurrent, max_concurrent;
    atomic_init(&concurrent, 0);
    atomic_init(&max_concurrent, 0);
    p.concurrent = &concurrent;
    p.max_concurrent = &max_concurrent;
    recorder r;
    recorder_init(&r);
    const char *inputs[] = {"a", "b", "c", "d"};
    /* The pool has 4 workers and no throttle of its own: the job's throttle is what holds. */
    uint64_t parent = start_parallel("par-throttle", inputs, 4, work_coop, &p, probe_finalize,
                                     g_pool, 2, on_parent_state, &r, recorder_finalize);
    uint64_t kids[4];
    CHECK(child_ids(parent, kids, 4) == 4);
    for (int i = 0; i < 4; i++) CHECK(kids[i] == parent + 1 + (uint64_t)i);

    /* Bounded poll on the state getters until two children run. */
    int running = 0, not_started = 0;
    double deadline = now_ms() + 10000;
    while (now_ms() < deadline) {
        running = count_in_state(kids, 4, BGJOB_STATE_RUNNING);
        if (running >= 2) break;
        sleep_ms(1);
    }
    CHECK(running == 2);
    /* The first two (creation order) run; the other two wait NotStarted, and stay so. */
    bool over = false;
    deadline = now_ms() + (sanitizing() ? 500 : 200);
    while (now_ms() < deadline) {
        running = count_in_state(kids, 4, BGJOB_STATE_RUNNING);
        not_started = count_in_state(kids, 4, BGJOB_STATE_NOT_STARTED);
        if (running != 2 || not_started != 2) over = true;
        sleep_ms(5);
    }
    CHECK(!over);
    CHECK(running == 2 && not_started == 2);
    CHECK(state_of(kids[0]) == BGJOB_STATE_RUNNING && state_of(kids[1]) == BGJOB_STATE_RUNNING);
    CHECK(state_of(kids[2]) == BGJOB_STATE_NOT_STARTED &&
          state_of(kids[3]) == BGJOB_STATE_NOT_STARTED);
    CHECK(state_of(parent) == BGJOB_STATE_RUNNING);
    CHECK(atomic_load(&max_concurrent) == 2);
    CHECK(atomic_load(&p.runs) == 2);

    /* While it runs: the parent's status message, and listings by state. */
    bgjob_job_info *info = NULL;
    CHECK_OK(bgjob_get_job(parent, &info));
    CHECK(text_is(bgjob_job_info_status_message(info), "0/4 completed"));
    bgjob_job_info_free(info);
    uint64_t running_all[] = {parent, kids[0], kids[1]};
    CHECK(listing_is(BGJOB_STATE_RUNNING, NULL, true, running_all, 3));
    uint64_t running_top[] = {parent};
    CHECK(listing_is(BGJOB_STATE_RUNNING, NULL, false, running_top, 1));
    uint64_t waiting[] = {kids[2], kids[3]};
    CHECK(listing_is(BGJOB_STATE_NOT_STARTED, NULL, true, waiting, 2));
    CHECK(listing_is(BGJOB_STATE_NOT_STARTED, NULL, false, NULL, 0));
    /* A running parent cannot be removed without force. */
    CHECK_STATUS(bgjob_remove(parent, false), BGJOB_E_NOT_FINISHED);

    /* Stop-Job on the parent stops every child; the two that waited never run. */
    CHECK_OK(bgjob_stop(parent, 20000));
    CHECK(state_of(parent) == BGJOB_STATE_STOPPED);
    for (int i = 0; i < 4; i++) {
        bgjob_job_state s = state_of(kids[i]);
        CHECK(s == BGJOB_STATE_STOPPED || s == BGJOB_STATE_COMPLETED);
    }
    CHECK(state_of(kids[2]) == BGJOB_STATE_STOPPED && state_of(kids[3]) == BGJOB_STATE_STOPPED);
    CHECK(begin_ns_of(kids[0]) > 0 && begin_ns_of(kids[1]) > 0);
    CHECK(begin_ns_of(kids[2]) == 0 && begin_ns_of(kids[3]) == 0);
    CHECK(atomic_load(&p.runs) == 2);
    if (atomic_load(&p.runs) != 2 || begin_ns_of(kids[2]) != 0 || begin_ns_of(kids[3]) != 0) {
        fprintf(stderr, "  (work entered %d times; children:", atomic_load(&p.runs));
        for (int i = 0; i < 4; i++)
            fprintf(stderr, " %" PRIu64 " %s %s", kids[i], bgjob_state_name(state_of(kids[i])),
                    begin_ns_of(kids[i]) > 0 ? "ran" : "never ran");
        fprintf(stderr, ")\n");
    }
    CHECK(atomic_load(&max_concurrent) == 2);
    /* Finalized once, though two children never ran. */
    CHECK(atomic_load(&p.finalized) == 1);
    CHECK(history_is_legal(&r, parent, BGJOB_STATE_STOPPED));
    info = NULL;
    CHECK_OK(bgjob_get_job(parent, &info));
    CHECK(text_is(bgjob_job_info_status_message(info), "4/4 completed"));
    bgjob_job_info_free(info);
    uint64_t stopped_all[] = {parent, kids[0], kids[1], kids[2], kids[3]};
    CHECK(listing_is(BGJOB_STATE_STOPPED, NULL, true, stopped_all, 5));

    CHECK(atomic_load(&r.finalized) == 0);
    CHECK_OK(bgjob_remove(parent, false));
    CHECK(atomic_load(&r.finalized) == 1);
    for (int i = 0; i < 4; i++)
        CHECK_STATUS(bgjob_get_state(kids[i], &(bgjob_job_state){0}), BGJOB_E_NO_SUCH_JOB);
    CHECK(atomic_load(&p.runs) == 2 && atomic_load(&p.finalized) == 1);
    CHECK(repo_count() == 0);
    pthread_mutex_destroy(&r.mu);
}

static void test_lookups_find_children_and_listings_hide_them(void) {
    const char *inputs[] = {"x", "y", "z"};
    uint64_t parent = start_parallel("par-lookup", inputs, 3, work_echo_input, NULL, NULL,
                                     g_pool, 0, NULL, NULL, NULL);
    CHECK_OK(bgjob_wait(&parent, 1, BGJOB_WAIT_ALL, 20000, NULL, NULL));
    uint64_t kids[3];
    CHECK(child_ids(parent, kids, 3) == 3);
    CHECK(kids[0] == parent + 1 && kids[1] == parent + 2 && kids[2] == parent + 3);
    uint64_t child = kids[1];

    /* By id. */
    bgjob_job_info *info = NULL;
    CHECK_OK(bgjob_get_job(child, &info));
    CHECK(bgjob_job_info_id(info) == child && bgjob_job_info_parent_id(info) == parent);
    char instance[64] = "";
    char name[64] = "";
    if (info != NULL) {
        snprintf(instance, sizeof instance, "%s", bgjob_job_info_instance_id(info));
        snprintf(name, sizeof name, "%s", bgjob_job_info_name(info));
    }
    bgjob_job_info_free(info);
    char want_name[64];
    snprintf(want_name, sizeof want_name, "Job%" PRIu64, child);
    CHECK(strcmp(name, want_name) == 0);

    /* By instance id (any case). */
    info = NULL;
    CHECK_OK(bgjob_get_job_by_instance_id(instance, &info));
    CHECK(bgjob_job_info_id(info) == child);
    bgjob_job_info_free(info);
    for (char *c = instance; *c; c++)
        if (*c >= 'a' && *c <= 'z') *c = (char)(*c - 'a' + 'A');
    info = NULL;
    CHECK_OK(bgjob_get_job_by_instance_id(instance, &info));
    CHECK(bgjob_job_info_id(info) == child);
    bgjob_job_info_free(info);

    /* By name: a child is found when children are included. */
    uint64_t just_child[] = {child};
    CHECK(listing_is(99, want_name, true, just_child, 1));
    for (char *c = want_name; *c; c++)
        if (*c >= 'a' && *c <= 'z') *c = (char)(*c - 'a' + 'A');
    CHECK(listing_is(99, want_name, true, just_child, 1));
    CHECK(listing_is(99, want_name, false, NULL, 0));
    uint64_t just_parent[] = {parent};
    CHECK(listing_is(99, "PAR-*", false, just_parent, 1));

    /* Listings: top-level only, unless children are included. */
    CHECK(listing_is(99, NULL, false, just_parent, 1));
    uint64_t all[] = {parent, kids[0], kids[1], kids[2]};
    CHECK(listing_is(99, NULL, true, all, 4));
    CHECK(listing_is(BGJOB_STATE_COMPLETED, NULL, true, all, 4));
    CHECK(listing_is(BGJOB_STATE_COMPLETED, NULL, false, just_parent, 1));
    CHECK(listing_is(BGJOB_STATE_FAILED, NULL, true, NULL, 0));

    /* Each child's records are its own; the parent's are all of them. */
    bgjob_records *recs = NULL;
    CHECK_OK(bgjob_receive(child, 0, 0, 0, &recs));
    CHECK(bgjob_records_count(recs) == 1 && record_is(recs, 0, BGJOB_STREAM_OUTPUT, "y"));
    bgjob_records_free(recs);
    recs = NULL;
    CHECK_OK(bgjob_receive(parent, 0, 0, 0, &recs));
    CHECK(bgjob_records_count(recs) == 2);
    CHECK(record_is(recs, 0, BGJOB_STREAM_OUTPUT, "x") || record_is(recs, 1, BGJOB_STREAM_OUTPUT, "x"));
    CHECK(record_is(recs, 0, BGJOB_STREAM_OUTPUT, "z") || record_is(recs, 1, BGJOB_STREAM_OUTPUT, "z"));
    bgjob_records_free(recs);

    CHECK_OK(bgjob_remove(parent, false));
    CHECK(repo_count() == 0);
}

/* Finding a child job by its name from C: a name filter, like every filter, lists
 * top-level jobs only; with bgjob_filter_set_include_children(true) it finds children too
 * (what Python's get_job(name=...) does). A custom parent's children carry the names the
 * host gave them; a parallel job's children are Job<id>. */
static void test_a_child_is_found_by_its_name_with_include_children(void) {
    /* A custom parent "sync" with children "sync-eu" and "sync-us" (ids N+1, N+2). */
    bgjob_spec *spec = NULL;
    CHECK_OK(bgjob_spec_new(&spec));
    if (spec == NULL) return;
    CHECK_OK(bgjob_spec_set_name(spec, "sync"));
    CHECK_OK(bgjob_spec_add_custom_child(spec, "sync-eu"));
    CHECK_OK(bgjob_spec_add_custom_child(spec, "sync-us"));
    uint64_t custom = 0;
    CHECK_OK(bgjob_create_custom(spec, &custom));
    uint64_t eu = custom + 1, us = custom + 2;
    /* A parallel job "sync-batch" with two children named Job<id>. */
    const char *inputs[] = {"1", "2"};
    uint64_t batch = start_parallel("sync-batch", inputs, 2, work_echo_input, NULL, NULL,
                                    g_pool, 0, NULL, NULL, NULL);
    CHECK_OK(bgjob_wait(&batch, 1, BGJOB_WAIT_ALL, 20000, NULL, NULL));
    uint64_t kids[2] = {0, 0};
    CHECK(child_ids(batch, kids, 2) == 2);

    /* Without include_children a child's name finds nothing... */
    CHECK(listing_is(99, "sync-eu", false, NULL, 0));
    /* ...with it, exactly the child (any case), whose parent is the custom job. */
    uint64_t just_eu[] = {eu}, just_us[] = {us};
    CHECK(listing_is(99, "sync-eu", true, just_eu, 1));
    CHECK(listing_is(99, "SYNC-US", true, just_us, 1));
    uint64_t found = 0;
    CHECK(list_jobs(99, "sync-eu", true, &found, 1) == 1);
    bgjob_job_info *info = NULL;
    CHECK_OK(bgjob_get_job(found, &info));
    CHECK(bgjob_job_info_parent_id(info) == custom);
    CHECK(text_is(bgjob_job_info_name(info), "sync-eu"));
    bgjob_job_info_free(info);
    /* A parallel child by its default name. */
    char kid_name[32];
    snprintf(kid_name, sizeof kid_name, "job%" PRIu64, kids[1]);
    uint64_t just_kid[] = {kids[1]};
    CHECK(listing_is(99, kid_name, false, NULL, 0));
    CHECK(listing_is(99, kid_name, true, just_kid, 1));

    /* Wildcards: top-level matches only, or children too (sorted by id). */
    uint64_t dash_top[] = {batch}, dash_all[] = {eu, us, batch};
    CHECK(listing_is(99, "sync-*", false, dash_top, 1));
    CHECK(listing_is(99, "sync-*", true, dash_all, 3));
    uint64_t any_top[] = {custom, batch}, any_all[] = {custom, eu, us, batch};
    CHECK(listing_is(99, "sync*", false, any_top, 2));
    CHECK(listing_is(99, "sync*", true, any_all, 4));
    /* With a state too: the custom children are still NotStarted, the batch Completed. */
    uint64_t queued[] = {eu, us};
    CHECK(listing_is(BGJOB_STATE_NOT_STARTED, "sync-*", true, queued, 2));
    CHECK(listing_is(BGJOB_STATE_COMPLETED, "sync-*", true, dash_top, 1));

    /* The host drives the children to the end; then both parents are removed. */
    for (uint64_t c = eu; c <= us; c++) {
        CHECK_OK(bgjob_custom_set_state(c, BGJOB_STATE_RUNNING, NULL));
        CHECK_OK(bgjob_custom_set_state(c, BGJOB_STATE_COMPLETED, NULL));
    }
    CHECK_OK(bgjob_wait(&custom, 1, BGJOB_WAIT_ALL, 20000, NULL, NULL));
    CHECK(state_of(custom) == BGJOB_STATE_COMPLETED);
    CHECK(listing_is(BGJOB_STATE_COMPLETED, "sync-*", true, dash_all, 3));
    CHECK_OK(bgjob_remove(custom, false));
    CHECK_OK(bgjob_remove(batch, false));
    CHECK(listing_is(99, "sync*", true, NULL, 0));
    CHECK(repo_count() == 0);
}

static void test_children_are_removed_with_their_parent_only(void) {
    probe p;
    probe_init(&p, 0);
    uint64_t parent = start_parallel(NULL, TEN, 3, work_echo_input, &p, probe_finalize, g_pool,
                                     0, NULL, NULL, NULL);
    CHECK_OK(bgjob_wait(&parent, 1, BGJOB_WAIT_ALL, 20000, NULL, NULL));
    /* Removing a child alone is refused, with or without force, and it stays. */
    CHECK_STATUS(bgjob_remove(parent + 1, false), BGJOB_E_CHILD_JOB);
    CHECK(bgjob_last_error_message()[0] != '\0');
    CHECK_STATUS(bgjob_remove(parent + 2, true), BGJOB_E_CHILD_JOB);
    CHECK(state_of(parent + 1) == BGJOB_STATE_COMPLETED);
    CHECK(state_of(parent + 2) == BGJOB_STATE_COMPLETED);
    CHECK(repo_count() == 4);
    /* A child's records stay receivable after the refused removal. */
    bgjob_records *recs = NULL;
    CHECK_OK(bgjob_receive(parent + 1, BGJOB_RECEIVE_KEEP, 0, 0, &recs));
    CHECK(bgjob_records_count(recs) == 1 && record_is(recs, 0, BGJOB_STREAM_OUTPUT, "1"));
    bgjob_records_free(recs);
    /* Removing the parent removes its children. */
    CHECK_OK(bgjob_remove(parent, false));
    for (uint64_t id = parent; id <= parent + 3; id++) {
        CHECK_STATUS(bgjob_get_state(id, &(bgjob_job_state){0}), BGJOB_E_NO_SUCH_JOB);
        bgjob_job_info *info = NULL;
        CHECK_STATUS(bgjob_get_job(id, &info), BGJOB_E_NO_SUCH_JOB);
        CHECK(info == NULL);
    }
    CHECK_STATUS(bgjob_remove(parent + 1, false), BGJOB_E_NO_SUCH_JOB);
    CHECK(atomic_load(&p.runs) == 3 && atomic_load(&p.finalized) == 1);
    CHECK(repo_count() == 0);
}

/* What a work saw when it misused bgjob_context_input. */
typedef struct input_misuse {
    probe p;
    atomic_uint plain_status;      /* in a plain thread job */
    char plain_message[256];
    atomic_uint null_data_status;  /* out_data NULL */
    atomic_uint null_len_status;   /* out_len NULL */
    char null_message[256];
    atomic_bool untouched;         /* out-pointers left alone on failure */
    atomic_uint good_status;       /* then a good call */
    atomic_size_t good_len;
    atomic_bool good_pointer;      /* non-NULL, even for an empty input */
} input_misuse;

static int32_t work_input_in_plain_job(bgjob_context *ctx, void *user_data) {
    input_misuse *m = user_data;
    atomic_fetch_add(&m->p.runs, 1);
    const uint8_t *data = (const uint8_t *)"sentinel";
    size_t len = 12345;
    atomic_store(&m->plain_status, bgjob_context_input(ctx, &data, &len));
    snprintf(m->plain_message, sizeof m->plain_message, "%s", bgjob_last_error_message());
    atomic_store(&m->untouched, len == 12345 && memcmp(data, "sentinel", 8) == 0);
    return 0;
}

static int32_t work_input_with_null_pointers(bgjob_context *ctx, void *user_data) {
    input_misuse *m = user_data;
    atomic_fetch_add(&m->p.runs, 1);
    const uint8_t *data = NULL;
    size_t len = 777;
    atomic_store(&m->null_data_status, bgjob_context_input(ctx, NULL, &len));
    bool untouched = len == 777;
    atomic_store(&m->null_len_status, bgjob_context_input(ctx, &data, NULL));
    snprintf(m->null_message, sizeof m->null_message, "%s", bgjob_last_error_message());
    untouched = untouched && data == NULL;
    atomic_store(&m->untouched, untouched);
    atomic_store(&m->good_status, bgjob_context_input(ctx, &data, &len));
    atomic_store(&m->good_len, len);
    atomic_store(&m->good_pointer, data != NULL);
    return 0;
}

static void input_misuse_init(input_misuse *m) {
    probe_init(&m->p, 0);
    atomic_init(&m->plain_status, 99);
    atomic_init(&m->null_data_status, 99);
    atomic_init(&m->null_len_status, 99);
    atomic_init(&m->good_status, 99);
    atomic_init(&m->good_len, 999);
    atomic_init(&m->untouched, false);
    atomic_init(&m->good_pointer, false);
    m->plain_message[0] = m->null_message[0] = '\0';
}

static void test_context_input_misuse_gives_a_status_and_a_message(void) {
    /* A plain thread job has no input. */
    input_misuse m;
    input_misuse_init(&m);
    uint64_t id = start_probe_job(NULL, work_input_in_plain_job, &m.p, g_pool);
    CHECK_OK(bgjob_wait(&id, 1, BGJOB_WAIT_ALL, 20000, NULL, NULL));
    CHECK(atomic_load(&m.p.runs) == 1);
    CHECK(atomic_load(&m.plain_status) == BGJOB_E_INVALID_ARGUMENT);
    CHECK(strstr(m.plain_message, "no input") != NULL);
    CHECK(atomic_load(&m.untouched));
    CHECK(state_of(id) == BGJOB_STATE_COMPLETED);
    CHECK_OK(bgjob_remove(id, false));
    CHECK(atomic_load(&m.p.finalized) == 1);

    /* NULL out-pointers in a child with an (empty) input; then a good call. */
    input_misuse n;
    input_misuse_init(&n);
    bgjob_spec *spec = NULL;
    CHECK_OK(bgjob_spec_new(&spec));
    CHECK_OK(bgjob_spec_set_work(spec, work_input_with_null_pointers, &n.p, probe_finalize));
    CHECK_OK(bgjob_spec_set_pool(spec, g_pool));
    CHECK_OK(bgjob_spec_add_input(spec, NULL, 0)); /* an empty input is fine */
    uint64_t parent = 0;
    CHECK_OK(bgjob_start(spec, &parent));
    CHECK_OK(bgjob_wait(&parent, 1, BGJOB_WAIT_ALL, 20000, NULL, NULL));
    CHECK(atomic_load(&n.p.runs) == 1);
    CHECK(atomic_load(&n.null_data_status) == BGJOB_E_INVALID_ARGUMENT);
    CHECK(atomic_load(&n.null_len_status) == BGJOB_E_INVALID_ARGUMENT);
    CHECK(strstr(n.null_message, "out_len") != NULL);
    CHECK(atomic_load(&n.untouched));
    CHECK(atomic_load(&n.good_status) == BGJOB_OK);
    CHECK(atomic_load(&n.good_len) == 0);
    CHECK(atomic_load(&n.good_pointer));
    CHECK(state_of(parent) == BGJOB_STATE_COMPLETED);
    CHECK_OK(bgjob_remove(parent, false));
    CHECK(atomic_load(&n.p.finalized) == 1);

    /* A NULL context, from outside any work. */
    const uint8_t *data = NULL;
    size_t len = 0;
    CHECK_STATUS(bgjob_context_input(NULL, &data, &len), BGJOB_E_INVALID_ARGUMENT);
    CHECK(strstr(bgjob_last_error_message(), "ctx") != NULL);
    CHECK(repo_count() == 0);
}

/* A work that compares its input with the bytes the test added. */
typedef struct bytes_check {
    probe p;
    atomic_bool matched;
} bytes_check;

static const uint8_t BINARY[] = {0x00, 0xff, 'a', 0x00, 0x7f};

static int32_t work_check_binary(bgjob_context *ctx, void *user_data) {
    bytes_check *b = user_data;
    atomic_fetch_add(&b->p.runs, 1);
    const uint8_t *data = NULL;
    size_t len = 0;
    if (bgjob_context_input(ctx, &data, &len) != BGJOB_OK) return 1;
    atomic_store(&b->matched, len == sizeof BINARY && memcmp(data, BINARY, len) == 0);
    return 0;
}

static void test_spec_inputs_are_copied_bytes(void) {
    bytes_check b;
    probe_init(&b.p, 0);
    atomic_init(&b.matched, false);
    uint8_t buffer[sizeof BINARY];
    memcpy(buffer, BINARY, sizeof buffer);
    bgjob_spec *spec = NULL;
    CHECK_OK(bgjob_spec_new(&spec));
    CHECK_OK(bgjob_spec_set_work(spec, work_check_binary, &b.p, probe_finalize));
    CHECK_OK(bgjob_spec_set_pool(spec, g_pool));
    /* NULL data with a length is refused and leaves no input behind. */
    CHECK_STATUS(bgjob_spec_add_input(spec, NULL, 3), BGJOB_E_INVALID_ARGUMENT);
    CHECK(strstr(bgjob_last_error_message(), "data is NULL") != NULL);
    /* Bytes (NULs included) are copied: changing the buffer afterwards changes nothing. */
    CHECK_OK(bgjob_spec_add_input(spec, buffer, sizeof buffer));
    memset(buffer, 'X', sizeof buffer);
    uint64_t parent = 0;
    CHECK_OK(bgjob_start(spec, &parent));
    CHECK_OK(bgjob_wait(&parent, 1, BGJOB_WAIT_ALL, 20000, NULL, NULL));
    /* One child only: the refused input was not added. */
    CHECK(child_ids(parent, (uint64_t[2]){0}, 2) == 1);
    CHECK(atomic_load(&b.p.runs) == 1);
    CHECK(atomic_load(&b.matched));
    CHECK(state_of(parent) == BGJOB_STATE_COMPLETED);
    CHECK_OK(bgjob_remove(parent, false));
    CHECK(atomic_load(&b.p.finalized) == 1);
    CHECK(repo_count() == 0);
}

static void test_spec_misuse_and_unstarted_specs(void) {
    /* NULL specs. */
    CHECK_STATUS(bgjob_spec_add_input(NULL, "x", 1), BGJOB_E_INVALID_ARGUMENT);
    CHECK(strstr(bgjob_last_error_message(), "spec") != NULL);
    CHECK_STATUS(bgjob_spec_set_throttle_limit(NULL, 2), BGJOB_E_INVALID_ARGUMENT);
    CHECK(strstr(bgjob_last_error_message(), "spec") != NULL);

    /* A spec with inputs but no work: refused, nothing left behind. */
    bgjob_spec *spec = NULL;
    CHECK_OK(bgjob_spec_new(&spec));
    CHECK_OK(bgjob_spec_add_input(spec, "x", 1));
    uint64_t id = 0;
    CHECK_STATUS(bgjob_start(spec, &id), BGJOB_E_INVALID_ARGUMENT);
    CHECK(strstr(bgjob_last_error_message(), "work") != NULL);
    CHECK(id == 0);
    CHECK(repo_count() == 0);

    /* A spec with inputs freed unstarted: its user data is finalized once. */
    probe p;
    probe_init(&p, 0);
    spec = NULL;
    CHECK_OK(bgjob_spec_new(&spec));
    CHECK_OK(bgjob_spec_set_work(spec, work_echo_input, &p, probe_finalize));
    for (int i = 0; i < 3; i++) CHECK_OK(bgjob_spec_add_input(spec, TEN[i], 1));
    CHECK_OK(bgjob_spec_set_throttle_limit(spec, 1));
    bgjob_spec_free(spec);
    CHECK(atomic_load(&p.runs) == 0 && atomic_load(&p.finalized) == 1);

    /* Started on a shut-down pool: refused, nothing left behind, finalized once. */
    bgjob_pool *pool = NULL;
    CHECK_OK(bgjob_pool_new(1, 0, &pool));
    CHECK_OK(bgjob_pool_shutdown(pool, 20000));
    probe q;
    probe_init(&q, 0);
    spec = NULL;
    CHECK_OK(bgjob_spec_new(&spec));
    CHECK_OK(bgjob_spec_set_work(spec, work_echo_input, &q, probe_finalize));
    CHECK_OK(bgjob_spec_set_pool(spec, pool));
    for (int i = 0; i < 3; i++) CHECK_OK(bgjob_spec_add_input(spec, TEN[i], 1));
    id = 0;
    CHECK_STATUS(bgjob_start(spec, &id), BGJOB_E_SHUT_DOWN);
    CHECK(id == 0);
    CHECK(atomic_load(&q.runs) == 0 && atomic_load(&q.finalized) == 1);
    CHECK(repo_count() == 0);
    bgjob_pool_free(pool);
}

static void test_throttle_one_runs_children_one_at_a_time_in_order(void) {
    probe p;
    probe_init(&p, 0);
    atomic_int concurrent, max_concurrent;
    atomic_init(&concurrent, 0);
    atomic_init(&max_concurrent, 0);
    p.concurrent = &concurrent;
    p.max_concurrent = &max_concurrent;
    /* work_coop with duration 0 returns at once: each child completes. */
    enum { N = 6 };
    uint64_t parent = start_parallel(NULL, TEN, N, work_coop, &p, probe_finalize, g_pool, 1,
                                     NULL, NULL, NULL);
    CHECK_OK(bgjob_wait(&parent, 1, BGJOB_WAIT_ALL, 20000, NULL, NULL));
    CHECK(state_of(parent) == BGJOB_STATE_COMPLETED);
    CHECK(atomic_load(&p.runs) == N);
    CHECK(atomic_load(&max_concurrent) == 1);
    /* Handed to the pool in creation order, one after the other. */
    int64_t previous_end = 0;
    for (uint64_t c = parent + 1; c <= parent + N; c++) {
        bgjob_job_info *info = NULL;
        CHECK_OK(bgjob_get_job(c, &info));
        CHECK(bgjob_job_info_state(info) == BGJOB_STATE_COMPLETED);
        CHECK(bgjob_job_info_begin_time_ns(info) >= previous_end);
        previous_end = bgjob_job_info_end_time_ns(info);
        bgjob_job_info_free(info);
    }
    CHECK_OK(bgjob_remove(parent, false));
    CHECK(atomic_load(&p.finalized) == 1);
    CHECK(repo_count() == 0);
}

/* The recorded history is exactly the `n` moves given as (previous, state) pairs. */
static bool history_is(recorder *r, int n, const bgjob_job_state *moves) {
    pthread_mutex_lock(&r->mu);
    bool ok = r->n == n;
    for (int i = 0; ok && i < n; i++)
        ok = r->previous[i] == moves[2 * i] && r->state[i] == moves[2 * i + 1];
    if (!ok) {
        fprintf(stderr, "  (history:");
        for (int i = 0; i < r->n; i++)
            fprintf(stderr, " %s->%s", bgjob_state_name(r->previous[i]),
                    bgjob_state_name(r->state[i]));
        fprintf(stderr, ")\n");
    }
    pthread_mutex_unlock(&r->mu);
    return ok;
}

/* DESIGN: "Running as soon as any child runs", and a stopped queued job never runs. A
 * parallel job whose children are all still queued when it is stopped never ran: its
 * history is NotStarted -> Stopped, with no begin time. */
static void test_a_parallel_job_stopped_while_all_queued_goes_straight_to_stopped(void) {
    bgjob_pool *pool = NULL;
    CHECK_OK(bgjob_pool_new(1, 1, &pool));
    probe busy;
    probe_init(&busy, 30000);
    uint64_t blocker = start_probe_job(NULL, work_coop, &busy, pool);
    CHECK(wait_for_state(blocker, BGJOB_STATE_RUNNING, 10000));
    recorder r;
    recorder_init(&r);
    probe p;
    probe_init(&p, 0);
    const char *inputs[] = {"a", "b", "c"};
    uint64_t parent = start_parallel("par-queued-stop", inputs, 3, work_coop, &p, probe_finalize,
                                     pool, 0, on_parent_state, &r, recorder_finalize);
    CHECK(state_of(parent) == BGJOB_STATE_NOT_STARTED);
    CHECK_OK(bgjob_stop(parent, 10000));
    CHECK(state_of(parent) == BGJOB_STATE_STOPPED);
    const bgjob_job_state want[] = {BGJOB_STATE_NOT_STARTED, BGJOB_STATE_STOPPED};
    CHECK(history_is(&r, 1, want));
    CHECK(begin_ns_of(parent) == 0);
    CHECK(atomic_load(&p.runs) == 0);
    CHECK_OK(bgjob_remove(parent, false));
    CHECK_OK(bgjob_remove(blocker, true));
    CHECK(atomic_load(&r.finalized) == 1);
    pool_close(pool);
}

/* Children stopped one by one (not their parent): the running parent ends Stopped by the
 * moves Running -> Stopping -> Stopped, never through a state nothing called for
 * (Disconnected: a remote job's lost connection). */
static void test_children_stopped_one_by_one_stop_the_parent_through_stopping(void) {
    probe p;
    probe_init(&p, 30000);
    recorder r;
    recorder_init(&r);
    const char *inputs[] = {"a", "b"};
    uint64_t parent = start_parallel("par-child-stops", inputs, 2, work_coop, &p, probe_finalize,
                                     g_pool, 0, on_parent_state, &r, recorder_finalize);
    uint64_t kids[2];
    CHECK(child_ids(parent, kids, 2) == 2);
    CHECK(wait_for_state(kids[0], BGJOB_STATE_RUNNING, 10000));
    CHECK(wait_for_state(kids[1], BGJOB_STATE_RUNNING, 10000));
    CHECK_OK(bgjob_stop(kids[0], 10000));
    CHECK(state_of(parent) == BGJOB_STATE_RUNNING);
    CHECK_OK(bgjob_stop(kids[1], 10000));
    CHECK_OK(bgjob_wait(&parent, 1, BGJOB_WAIT_ALL, 10000, NULL, NULL));
    CHECK(state_of(parent) == BGJOB_STATE_STOPPED);
    const bgjob_job_state want[] = {BGJOB_STATE_NOT_STARTED, BGJOB_STATE_RUNNING,
                                    BGJOB_STATE_RUNNING,     BGJOB_STATE_STOPPING,
                                    BGJOB_STATE_STOPPING,    BGJOB_STATE_STOPPED};
    CHECK(history_is(&r, 3, want));
    CHECK(begin_ns_of(parent) != 0);
    CHECK_OK(bgjob_remove(parent, false));
}

static void test_repository_is_empty_at_the_end(void) {
    CHECK(repo_count() == 0);
}

int main(void) {
    /* Four workers: the throttle test needs more workers than its throttle. */
    if (bgjob_pool_new(4, 0, &g_pool) != BGJOB_OK) {
        fprintf(stderr, "bgjob_pool_new: %s\n", bgjob_last_error_message());
        return 1;
    }
    RUN_TEST(test_ten_inputs_give_ten_outputs_from_the_children);
    RUN_TEST(test_a_failing_child_fails_the_parent);
    RUN_TEST(test_throttle_two_of_four_then_stop);
    RUN_TEST(test_lookups_find_children_and_listings_hide_them);
    RUN_TEST(test_a_child_is_found_by_its_name_with_include_children);
    RUN_TEST(test_children_are_removed_with_their_parent_only);
    RUN_TEST(test_context_input_misuse_gives_a_status_and_a_message);
    RUN_TEST(test_spec_inputs_are_copied_bytes);
    RUN_TEST(test_spec_misuse_and_unstarted_specs);
    RUN_TEST(test_throttle_one_runs_children_one_at_a_time_in_order);
    RUN_TEST(test_a_parallel_job_stopped_while_all_queued_goes_straight_to_stopped);
    RUN_TEST(test_children_stopped_one_by_one_stop_the_parent_through_stopping);
    RUN_TEST(test_repository_is_empty_at_the_end);
    CHECK_OK(bgjob_pool_shutdown(g_pool, 20000));
    bgjob_pool_free(g_pool);
    /* Every bgjob thread gone before exit: valgrind sees no live worker. */
    CHECK_OK(bgjob_shutdown(BGJOB_INFINITE));
    return check_summary("test_parallel");
}
