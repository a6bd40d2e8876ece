/* Misuse from C gets a status and a message, never a crash: NULL pointers, unknown and
 * removed ids, out-of-range enums and flags, invalid UTF-8, bad timeouts, specs freed or
 * started wrongly, shut-down pools, a panic inside Rust, and _free(NULL). */
#include "check.h"
#include "last_error.h"
#include "util.h"

static bgjob_pool *g_pool = NULL;


/* A value-returning call gives `fallback` and leaves a message of its own. */
#define CHECK_FALLBACK(expr, fallback)                                                  \
    do {                                                                                \
        prime_last_error();                                                             \
        CHECK((expr) == (fallback));                                                    \
        if (!fresh_message()) {                                                         \
            fprintf(stderr, "  FAIL %s (%s:%d): %s left no message of its own\n",      \
                    check_current, __FILE__, __LINE__, #expr);                          \
            check_failures++;                                                           \
        }                                                                               \
    } while (0)

static void never_called_callback(const bgjob_state_event *e, void *user_data) {
    (void)e;
    (void)user_data;
}

static int32_t work_count_runs(bgjob_context *ctx, void *user_data) {
    (void)ctx;
    atomic_fetch_add(&((probe *)user_data)->runs, 1);
    return 0;
}

/* A finished job to misuse things with; removed by the caller. */
static uint64_t finished_job(void) {
    uint64_t id = start_job(NULL, work_write_two, NULL, NULL, g_pool);
    CHECK_OK(bgjob_wait(&id, 1, BGJOB_WAIT_ALL, 20000, NULL, NULL));
    return id;
}

/* ----- specs and start --------------------------------------------------------------------- */

static void test_spec_null_arguments(void) {
    CHECK_FAILS(bgjob_spec_new(NULL), BGJOB_E_INVALID_ARGUMENT);
    CHECK_FAILS(bgjob_spec_set_name(NULL, "x"), BGJOB_E_INVALID_ARGUMENT);
    CHECK_FAILS(bgjob_spec_set_command(NULL, "x"), BGJOB_E_INVALID_ARGUMENT);
    CHECK_FAILS(bgjob_spec_set_pool(NULL, g_pool), BGJOB_E_INVALID_ARGUMENT);
    /* set_work and on_state_changed own the user data even when they fail. */
    atomic_int fin;
    atomic_init(&fin, 0);
    CHECK_FAILS(bgjob_spec_set_work(NULL, work_write_two, &fin, count_finalize),
                BGJOB_E_INVALID_ARGUMENT);
    CHECK(atomic_load(&fin) == 1);
    CHECK_FAILS(bgjob_spec_on_state_changed(NULL, never_called_callback, &fin, count_finalize),
                BGJOB_E_INVALID_ARGUMENT);
    CHECK(atomic_load(&fin) == 2);

    bgjob_spec *spec = NULL;
    CHECK_OK(bgjob_spec_new(&spec));
    CHECK(spec != NULL);
    CHECK_FAILS(bgjob_spec_set_name(spec, NULL), BGJOB_E_INVALID_ARGUMENT);
    CHECK_FAILS(bgjob_spec_set_command(spec, NULL), BGJOB_E_INVALID_ARGUMENT);
    CHECK_FAILS(bgjob_spec_set_pool(spec, NULL), BGJOB_E_INVALID_ARGUMENT);
    CHECK_FAILS(bgjob_spec_set_work(spec, NULL, &fin, count_finalize), BGJOB_E_INVALID_ARGUMENT);
    CHECK(atomic_load(&fin) == 3);
    CHECK_FAILS(bgjob_spec_on_state_changed(spec, NULL, &fin, count_finalize),
                BGJOB_E_INVALID_ARGUMENT);
    CHECK(atomic_load(&fin) == 4);
    /* NULL finalizers are allowed. */
    CHECK_OK(bgjob_spec_on_state_changed(spec, never_called_callback, NULL, NULL));
    bgjob_spec_free(spec);
    CHECK(atomic_load(&fin) == 4);
}

static void test_invalid_utf8_names_are_refused(void) {
    bgjob_spec *spec = NULL;
    CHECK_OK(bgjob_spec_new(&spec));
    CHECK_FAILS(bgjob_spec_set_name(spec, "\xff\xfe"), BGJOB_E_INVALID_ARGUMENT);
    CHECK_FAILS(bgjob_spec_set_name(spec, "ok\xc3"), BGJOB_E_INVALID_ARGUMENT); /* cut short */
    CHECK_FAILS(bgjob_spec_set_name(spec, "\xc0\xaf"), BGJOB_E_INVALID_ARGUMENT); /* overlong */
    CHECK_FAILS(bgjob_spec_set_command(spec, "\xff\xfe"), BGJOB_E_INVALID_ARGUMENT);
    /* The spec is still usable, and valid UTF-8 beyond ASCII is fine. */
    CHECK_OK(bgjob_spec_set_name(spec, "gr\xc3\xbc\xc3\x9f-\xe2\x82\xac"));
    CHECK_OK(bgjob_spec_set_work(spec, work_write_two, NULL, NULL));
    CHECK_OK(bgjob_spec_set_pool(spec, g_pool));
    uint64_t id = 0;
    CHECK_OK(bgjob_start(spec, &id));
    CHECK_OK(bgjob_wait(&id, 1, BGJOB_WAIT_ALL, 20000, NULL, NULL));
    bgjob_job_info *info = NULL;
    CHECK_OK(bgjob_get_job(id, &info));
    const char *name = bgjob_job_info_name(info);
    CHECK(name != NULL && strcmp(name, "gr\xc3\xbc\xc3\x9f-\xe2\x82\xac") == 0);
    bgjob_job_info_free(info);
    /* Case-insensitive beyond ASCII: GRÜ* matches grüß-€. */
    bgjob_filter *f = NULL;
    CHECK_OK(bgjob_filter_new(&f));
    CHECK_OK(bgjob_filter_set_name(f, "GR\xc3\x9c*"));
    bgjob_job_list *list = NULL;
    CHECK_OK(bgjob_get_jobs(f, &list));
    CHECK(bgjob_job_list_count(list) == 1 && bgjob_job_list_get(list, 0) == id);
    bgjob_job_list_free(list);
    CHECK_FAILS(bgjob_filter_set_name(f, "\xff\xfe"), BGJOB_E_INVALID_ARGUMENT);
    CHECK_FAILS(bgjob_filter_set_command(f, "\xff\xfe*"), BGJOB_E_INVALID_ARGUMENT);
    bgjob_filter_free(f);
    CHECK_OK(bgjob_remove(id, false));
}

static void test_spec_freed_unstarted_finalizes_once(void) {
    probe p;
    probe_init(&p, 0);
    atomic_int cb_fin;
    atomic_init(&cb_fin, 0);
    bgjob_spec *spec = NULL;
    CHECK_OK(bgjob_spec_new(&spec));
    CHECK_OK(bgjob_spec_set_name(spec, "never started"));
    CHECK_OK(bgjob_spec_set_work(spec, work_count_runs, &p, probe_finalize));
    CHECK_OK(bgjob_spec_set_pool(spec, g_pool));
    CHECK_OK(bgjob_spec_on_state_changed(spec, never_called_callback, &cb_fin, count_finalize));
    CHECK(atomic_load(&p.finalized) == 0 && atomic_load(&cb_fin) == 0);
    bgjob_spec_free(spec);
    CHECK(atomic_load(&p.finalized) == 1);
    CHECK(atomic_load(&cb_fin) == 1);
    CHECK(atomic_load(&p.runs) == 0);
    /* Replacing the work finalizes the previous user data at once, exactly once. */
    probe first, second;
    probe_init(&first, 0);
    probe_init(&second, 0);
    spec = NULL;
    CHECK_OK(bgjob_spec_new(&spec));
    CHECK_OK(bgjob_spec_set_work(spec, work_count_runs, &first, probe_finalize));
    CHECK_OK(bgjob_spec_set_work(spec, work_count_runs, &second, probe_finalize));
    CHECK(atomic_load(&first.finalized) == 1 && atomic_load(&second.finalized) == 0);
    bgjob_spec_free(spec);
    CHECK(atomic_load(&first.finalized) == 1 && atomic_load(&second.finalized) == 1);
    CHECK(atomic_load(&first.runs) == 0 && atomic_load(&second.runs) == 0);
}

static void test_start_misuse(void) {
    size_t before = repo_count();
    uint64_t id = 12345;
    CHECK_FAILS(bgjob_start(NULL, &id), BGJOB_E_INVALID_ARGUMENT);
    CHECK(id == 12345);
    /* A spec without work: consumed, its callback data finalized, nothing started. */
    atomic_int cb_fin;
    atomic_init(&cb_fin, 0);
    bgjob_spec *spec = NULL;
    CHECK_OK(bgjob_spec_new(&spec));
    CHECK_OK(bgjob_spec_set_name(spec, "no work"));
    CHECK_OK(bgjob_spec_on_state_changed(spec, never_called_callback, &cb_fin, count_finalize));
    CHECK_FAILS(bgjob_start(spec, &id), BGJOB_E_INVALID_ARGUMENT);
    CHECK(atomic_load(&cb_fin) == 1);
    /* NULL out_id: the spec is consumed all the same, its user data finalized. */
    probe p;
    probe_init(&p, 0);
    spec = NULL;
    CHECK_OK(bgjob_spec_new(&spec));
    CHECK_OK(bgjob_spec_set_work(spec, work_count_runs, &p, probe_finalize));
    CHECK_OK(bgjob_spec_set_pool(spec, g_pool));
    CHECK_FAILS(bgjob_start(spec, NULL), BGJOB_E_INVALID_ARGUMENT);
    CHECK(atomic_load(&p.finalized) == 1);
    CHECK(atomic_load(&p.runs) == 0);
    CHECK(repo_count() == before);
}

static void test_start_on_a_shut_down_pool(void) {
    bgjob_pool *pool = NULL;
    CHECK_OK(bgjob_pool_new(1, 0, &pool));
    CHECK_OK(bgjob_pool_shutdown(pool, 5000));
    CHECK_OK(bgjob_pool_shutdown(pool, 5000)); /* repeatable */
    size_t before = repo_count();
    probe p;
    probe_init(&p, 0);
    atomic_int cb_fin;
    atomic_init(&cb_fin, 0);
    bgjob_spec *spec = NULL;
    CHECK_OK(bgjob_spec_new(&spec));
    CHECK_OK(bgjob_spec_set_work(spec, work_count_runs, &p, probe_finalize));
    CHECK_OK(bgjob_spec_set_pool(spec, pool));
    CHECK_OK(bgjob_spec_on_state_changed(spec, never_called_callback, &cb_fin, count_finalize));
    uint64_t id = 0;
    CHECK_FAILS(bgjob_start(spec, &id), BGJOB_E_SHUT_DOWN);
    CHECK(atomic_load(&p.finalized) == 1);
    CHECK(atomic_load(&cb_fin) == 1);
    CHECK(atomic_load(&p.runs) == 0);
    CHECK(repo_count() == before);
    /* A spec keeps its own reference: the handle may be freed before the start. */
    probe q;
    probe_init(&q, 0);
    spec = NULL;
    CHECK_OK(bgjob_spec_new(&spec));
    CHECK_OK(bgjob_spec_set_work(spec, work_count_runs, &q, probe_finalize));
    CHECK_OK(bgjob_spec_set_pool(spec, pool));
    bgjob_pool_free(pool);
    CHECK_FAILS(bgjob_start(spec, &id), BGJOB_E_SHUT_DOWN);
    CHECK(atomic_load(&q.finalized) == 1);
    CHECK(repo_count() == before);
}

/* bgjob_start_fn: every refusal has a status and a message, starts nothing, and still
 * finalizes the user data it was handed (once). */
static void test_start_fn_misuse(void) {
    size_t before = repo_count();
    probe p;
    probe_init(&p, 0);
    uint64_t id = 12345;
    CHECK_FAILS(bgjob_start_fn(NULL, &p, probe_finalize, g_pool, &id), BGJOB_E_INVALID_ARGUMENT);
    CHECK(id == 12345);
    CHECK(atomic_load(&p.finalized) == 1);
    CHECK_FAILS(bgjob_start_fn(work_count_runs, &p, probe_finalize, g_pool, NULL),
                BGJOB_E_INVALID_ARGUMENT);
    CHECK(atomic_load(&p.finalized) == 2);
    bgjob_pool *pool = NULL;
    CHECK_OK(bgjob_pool_new(1, 0, &pool));
    CHECK_OK(bgjob_pool_shutdown(pool, 5000));
    CHECK_FAILS(bgjob_start_fn(work_count_runs, &p, probe_finalize, pool, &id), BGJOB_E_SHUT_DOWN);
    CHECK(id == 12345);
    CHECK(atomic_load(&p.finalized) == 3);
    bgjob_pool_free(pool);
    CHECK(atomic_load(&p.runs) == 0);
    CHECK(repo_count() == before);
}

static void test_pool_misuse(void) {
    CHECK_FAILS(bgjob_pool_new(1, 1, NULL), BGJOB_E_INVALID_ARGUMENT);
    CHECK_FAILS(bgjob_pool_shutdown(NULL, 0), BGJOB_E_INVALID_ARGUMENT);
    bgjob_pool *pool = NULL;
    CHECK_OK(bgjob_pool_new(1, 0, &pool));
    CHECK_FAILS(bgjob_pool_shutdown(pool, -2), BGJOB_E_INVALID_ARGUMENT);
    CHECK_FAILS(bgjob_pool_shutdown(pool, INT64_MIN), BGJOB_E_INVALID_ARGUMENT);
    /* A refused shutdown did not shut it down. */
    uint64_t id = start_job(NULL, work_write_two, NULL, NULL, pool);
    finish_and_remove(id);
    CHECK_OK(bgjob_pool_shutdown(pool, BGJOB_INFINITE));
    bgjob_pool_free(pool);
}

/* ----- ids ------------------------------------------------------------------------------------ */

static void check_unknown_id(uint64_t id) {
    bgjob_job_state st = 77;
    CHECK_FAILS(bgjob_get_state(id, &st), BGJOB_E_NO_SUCH_JOB);
    CHECK(st == 77);
    bgjob_job_info *info = NULL;
    CHECK_FAILS(bgjob_get_job(id, &info), BGJOB_E_NO_SUCH_JOB);
    CHECK(info == NULL);
    bgjob_records *recs = NULL;
    CHECK_FAILS(bgjob_receive(id, 0, 0, 0, &recs), BGJOB_E_NO_SUCH_JOB);
    CHECK(recs == NULL);
    CHECK_FAILS(bgjob_receive(id, BGJOB_RECEIVE_WAIT, 0, BGJOB_INFINITE, &recs),
                BGJOB_E_NO_SUCH_JOB);
    CHECK(recs == NULL);
    uint64_t done[1] = {0};
    size_t n = 55;
    CHECK_FAILS(bgjob_wait(&id, 1, BGJOB_WAIT_ALL, BGJOB_INFINITE, done, &n), BGJOB_E_NO_SUCH_JOB);
    CHECK_FAILS(bgjob_wait(&id, 1, BGJOB_WAIT_ANY, 0, done, &n), BGJOB_E_NO_SUCH_JOB);
    CHECK_FAILS(bgjob_stop(id, BGJOB_INFINITE), BGJOB_E_NO_SUCH_JOB);
    CHECK_FAILS(bgjob_stop(id, 0), BGJOB_E_NO_SUCH_JOB);
    CHECK_FAILS(bgjob_remove(id, false), BGJOB_E_NO_SUCH_JOB);
    CHECK_FAILS(bgjob_remove(id, true), BGJOB_E_NO_SUCH_JOB);
    atomic_int fin;
    atomic_init(&fin, 0);
    uint64_t reg = 33;
    CHECK_FAILS(bgjob_on_state_changed(id, never_called_callback, &fin, count_finalize, &reg),
                BGJOB_E_NO_SUCH_JOB);
    CHECK(atomic_load(&fin) == 1); /* the finalizer runs even when this fails */
    CHECK(reg == 33);
    if (id != 0) CHECK_FAILS(bgjob_unregister(id, 1), BGJOB_E_NO_SUCH_JOB);
}

static void test_ids_that_never_existed(void) {
    check_unknown_id(0);
    check_unknown_id(UINT64_MAX);
    check_unknown_id(UINT64_MAX / 2);
    /* The next id, not given out yet. */
    uint64_t id = finished_job();
    check_unknown_id(id + 1000);
    CHECK_OK(bgjob_remove(id, false));
    /* A wait on a known and an unknown id: NO_SUCH_JOB, nothing waited. */
    probe p;
    probe_init(&p, 10000);
    uint64_t running = start_probe_job(NULL, work_coop, &p, g_pool);
    uint64_t ids[2] = {running, UINT64_MAX};
    double t0 = now_ms();
    CHECK_FAILS(bgjob_wait(ids, 2, BGJOB_WAIT_ALL, BGJOB_INFINITE, NULL, NULL),
                BGJOB_E_NO_SUCH_JOB);
    CHECK(now_ms() - t0 < 2000);
    CHECK_OK(bgjob_remove(running, true));
    CHECK(atomic_load(&p.finalized) == 1);
}

static void test_removed_ids(void) {
    uint64_t id = finished_job();
    bgjob_job_info *info = NULL;
    CHECK_OK(bgjob_get_job(id, &info));
    char iid[64];
    snprintf(iid, sizeof iid, "%s", bgjob_job_info_instance_id(info) ? bgjob_job_info_instance_id(info) : "");
    bgjob_job_info_free(info);
    uint64_t reg = 0;
    CHECK_OK(bgjob_on_state_changed(id, never_called_callback, NULL, NULL, &reg));
    CHECK_OK(bgjob_remove(id, false));
    /* Double remove. */
    CHECK_FAILS(bgjob_remove(id, false), BGJOB_E_NO_SUCH_JOB);
    check_unknown_id(id);
    info = NULL;
    CHECK_FAILS(bgjob_get_job_by_instance_id(iid, &info), BGJOB_E_NO_SUCH_JOB);
    CHECK(info == NULL);
    CHECK_FAILS(bgjob_unregister(id, reg), BGJOB_E_NO_SUCH_JOB);
}

static void test_instance_id_misuse(void) {
    uint64_t id = finished_job();
    bgjob_job_info *info = NULL;
    CHECK_OK(bgjob_get_job(id, &info));
    char iid[64];
    snprintf(iid, sizeof iid, "%s", bgjob_job_info_instance_id(info) ? bgjob_job_info_instance_id(info) : "");
    bgjob_job_info_free(info);
    info = NULL;
    CHECK_FAILS(bgjob_get_job_by_instance_id(NULL, &info), BGJOB_E_INVALID_ARGUMENT);
    CHECK_FAILS(bgjob_get_job_by_instance_id(iid, NULL), BGJOB_E_INVALID_ARGUMENT);
    CHECK_FAILS(bgjob_get_job_by_instance_id("not-a-uuid", &info), BGJOB_E_INVALID_ARGUMENT);
    CHECK_FAILS(bgjob_get_job_by_instance_id("", &info), BGJOB_E_INVALID_ARGUMENT);
    CHECK_FAILS(bgjob_get_job_by_instance_id("\xff\xfe", &info), BGJOB_E_INVALID_ARGUMENT);
    CHECK_FAILS(bgjob_get_job_by_instance_id("00000000-0000-4000-8000-000000000000", &info),
                BGJOB_E_NO_SUCH_JOB);
    CHECK(info == NULL);
    CHECK_OK(bgjob_remove(id, false));
}

/* ----- getters, filters, lists, records --------------------------------------------------- */

static void test_get_misuse(void) {
    uint64_t id = finished_job();
    CHECK_FAILS(bgjob_get_job(id, NULL), BGJOB_E_INVALID_ARGUMENT);
    CHECK_FAILS(bgjob_get_state(id, NULL), BGJOB_E_INVALID_ARGUMENT);
    CHECK_FAILS(bgjob_get_jobs(NULL, NULL), BGJOB_E_INVALID_ARGUMENT);
    /* Snapshot getters on NULL: their documented fallback, and a message. */
    CHECK_FALLBACK(bgjob_job_info_id(NULL), 0);
    CHECK_FALLBACK(bgjob_job_info_parent_id(NULL), 0);
    CHECK_FALLBACK(bgjob_job_info_instance_id(NULL), NULL);
    CHECK_FALLBACK(bgjob_job_info_name(NULL), NULL);
    CHECK_FALLBACK(bgjob_job_info_command(NULL), NULL);
    CHECK_FALLBACK(bgjob_job_info_type_name(NULL), NULL);
    CHECK_FALLBACK(bgjob_job_info_location(NULL), NULL);
    CHECK_FALLBACK(bgjob_job_info_status_message(NULL), NULL);
    CHECK_FALLBACK(bgjob_job_info_reason(NULL), NULL);
    CHECK_FALLBACK(bgjob_job_info_begin_time_ns(NULL), 0);
    CHECK_FALLBACK(bgjob_job_info_end_time_ns(NULL), 0);
    CHECK_FALLBACK(bgjob_job_info_has_more_data(NULL), false);
    CHECK_FALLBACK(bgjob_job_info_child_count(NULL), 0);
    CHECK_FALLBACK(bgjob_job_info_child_id(NULL, 0), 0);
    int32_t pct = 5;
    const char *a = "x", *s = "y";
    CHECK_FALLBACK(bgjob_job_info_progress(NULL, &pct, &a, &s), false);
    CHECK(pct == 5);
    /* A valid snapshot: out-of-range child index; no progress leaves the outs alone. */
    bgjob_job_info *info = NULL;
    CHECK_OK(bgjob_get_job(id, &info));
    CHECK(bgjob_job_info_child_id(info, 0) == 0);
    CHECK(bgjob_job_info_child_id(info, SIZE_MAX) == 0);
    CHECK(!bgjob_job_info_progress(info, &pct, &a, &s));
    CHECK(!bgjob_job_info_progress(info, NULL, NULL, NULL));
    CHECK(pct == 5);
    bgjob_job_info_free(info);
    /* Lists. */
    CHECK_FALLBACK(bgjob_job_list_count(NULL), 0);
    CHECK_FALLBACK(bgjob_job_list_get(NULL, 0), 0);
    bgjob_job_list *list = NULL;
    CHECK_OK(bgjob_get_jobs(NULL, &list));
    size_t n = bgjob_job_list_count(list);
    CHECK(n >= 1);
    CHECK(bgjob_job_list_get(list, n) == 0);
    CHECK(bgjob_job_list_get(list, SIZE_MAX) == 0);
    bgjob_job_list_free(list);
    CHECK_OK(bgjob_remove(id, false));
}

static void test_filter_misuse(void) {
    CHECK_FAILS(bgjob_filter_new(NULL), BGJOB_E_INVALID_ARGUMENT);
    CHECK_FAILS(bgjob_filter_set_name(NULL, "x"), BGJOB_E_INVALID_ARGUMENT);
    CHECK_FAILS(bgjob_filter_set_command(NULL, "x"), BGJOB_E_INVALID_ARGUMENT);
    CHECK_FAILS(bgjob_filter_set_state(NULL, BGJOB_STATE_RUNNING), BGJOB_E_INVALID_ARGUMENT);
    CHECK_FAILS(bgjob_filter_set_has_more_data(NULL, true), BGJOB_E_INVALID_ARGUMENT);
    CHECK_FAILS(bgjob_filter_set_newest(NULL, 1), BGJOB_E_INVALID_ARGUMENT);
    CHECK_FAILS(bgjob_filter_set_include_children(NULL, true), BGJOB_E_INVALID_ARGUMENT);
    bgjob_filter *f = NULL;
    CHECK_OK(bgjob_filter_new(&f));
    CHECK_FAILS(bgjob_filter_set_name(f, NULL), BGJOB_E_INVALID_ARGUMENT);
    CHECK_FAILS(bgjob_filter_set_command(f, NULL), BGJOB_E_INVALID_ARGUMENT);
    CHECK_FAILS(bgjob_filter_set_state(f, 11), BGJOB_E_INVALID_ARGUMENT);
    CHECK_FAILS(bgjob_filter_set_state(f, 99), BGJOB_E_INVALID_ARGUMENT);
    CHECK_FAILS(bgjob_filter_set_state(f, UINT32_MAX), BGJOB_E_INVALID_ARGUMENT);
    /* Every real state is accepted. */
    for (uint32_t s = 0; s <= BGJOB_STATE_AT_BREAKPOINT; s++) CHECK_OK(bgjob_filter_set_state(f, s));
    /* Odd patterns are patterns, not errors. */
    CHECK_OK(bgjob_filter_set_name(f, "["));
    CHECK_OK(bgjob_filter_set_name(f, ""));
    CHECK_OK(bgjob_filter_set_name(f, "`"));
    CHECK_OK(bgjob_filter_set_newest(f, 0));
    bgjob_job_list *list = NULL;
    CHECK_OK(bgjob_get_jobs(f, &list));
    bgjob_job_list_free(list);
    bgjob_filter_free(f);
}

static void test_receive_misuse(void) {
    uint64_t id = finished_job();
    bgjob_records *recs = NULL;
    CHECK_FAILS(bgjob_receive(id, 0, 0, 0, NULL), BGJOB_E_INVALID_ARGUMENT);
    CHECK_FAILS(bgjob_receive(id, 8, 0, 0, &recs), BGJOB_E_INVALID_ARGUMENT);
    CHECK_FAILS(bgjob_receive(id, 0x100, 0, 0, &recs), BGJOB_E_INVALID_ARGUMENT);
    CHECK_FAILS(bgjob_receive(id, UINT32_MAX, 0, 0, &recs), BGJOB_E_INVALID_ARGUMENT);
    CHECK_FAILS(bgjob_receive(id, BGJOB_RECEIVE_AUTO_REMOVE, 0, 0, &recs),
                BGJOB_E_INVALID_ARGUMENT);
    CHECK_FAILS(bgjob_receive(id, BGJOB_RECEIVE_AUTO_REMOVE | BGJOB_RECEIVE_WAIT |
                                      BGJOB_RECEIVE_KEEP, 0, 0, &recs),
                BGJOB_E_INVALID_ARGUMENT);
    CHECK_FAILS(bgjob_receive(id, BGJOB_RECEIVE_WAIT, 0, -2, &recs), BGJOB_E_INVALID_ARGUMENT);
    CHECK_FAILS(bgjob_receive(id, 0, 0, INT64_MIN, &recs), BGJOB_E_INVALID_ARGUMENT);
    CHECK(recs == NULL);
    /* None of those took the record. */
    CHECK_OK(bgjob_receive(id, 0, 0, 0, &recs));
    CHECK(bgjob_records_count(recs) == 1);
    CHECK(bgjob_records_get(recs, 1) == NULL);
    CHECK(bgjob_records_get(recs, SIZE_MAX) == NULL);
    bgjob_records_free(recs);
    recs = NULL;
    CHECK_OK(bgjob_receive(id, 0, 0, 0, &recs));
    CHECK(bgjob_records_count(recs) == 0);
    CHECK(bgjob_records_get(recs, 0) == NULL);
    bgjob_records_free(recs);
    CHECK_FALLBACK(bgjob_records_count(NULL), 0);
    CHECK_FALLBACK(bgjob_records_get(NULL, 0), NULL);
    CHECK_OK(bgjob_remove(id, false));
}

static void test_wait_and_stop_misuse(void) {
    uint64_t id = finished_job();
    size_t n = 9;
    CHECK_FAILS(bgjob_wait(&id, 1, 2, 0, NULL, &n), BGJOB_E_INVALID_ARGUMENT);
    CHECK_FAILS(bgjob_wait(&id, 1, UINT32_MAX, 0, NULL, &n), BGJOB_E_INVALID_ARGUMENT);
    CHECK_FAILS(bgjob_wait(NULL, 1, BGJOB_WAIT_ALL, 0, NULL, &n), BGJOB_E_INVALID_ARGUMENT);
    CHECK_FAILS(bgjob_wait(&id, 1, BGJOB_WAIT_ALL, -2, NULL, &n), BGJOB_E_INVALID_ARGUMENT);
    CHECK_FAILS(bgjob_wait(&id, 1, BGJOB_WAIT_ANY, INT64_MIN, NULL, &n), BGJOB_E_INVALID_ARGUMENT);
    /* NULL outs are allowed; an empty set is done at once. */
    CHECK_OK(bgjob_wait(&id, 1, BGJOB_WAIT_ALL, 0, NULL, NULL));
    n = 9;
    CHECK_OK(bgjob_wait(NULL, 0, BGJOB_WAIT_ALL, BGJOB_INFINITE, NULL, &n));
    CHECK(n == 0);
    CHECK_FAILS(bgjob_stop(id, -2), BGJOB_E_INVALID_ARGUMENT);
    CHECK_OK(bgjob_stop(id, 0));
    CHECK(state_of(id) == BGJOB_STATE_COMPLETED); /* stopping a finished job does nothing */
    CHECK_OK(bgjob_remove(id, false));
}

/* The longest timeout and grace C can pass (INT64_MAX ms, 292 million years) mean "never":
 * accepted, no overflow inside, and a stop still ends the job. */
static void test_huge_timeouts_mean_forever(void) {
    uint64_t done = finished_job();
    CHECK_OK(bgjob_wait(&done, 1, BGJOB_WAIT_ALL, INT64_MAX, NULL, NULL));
    CHECK_OK(bgjob_stop(done, INT64_MAX));
    CHECK_OK(bgjob_remove(done, false));

    probe p;
    probe_init(&p, 60000);
    uint64_t running = start_probe_job("huge-timeouts", work_coop, &p, g_pool);
    CHECK(wait_for_state(running, BGJOB_STATE_RUNNING, 20000));
    CHECK_OK(bgjob_stop(running, INT64_MAX));
    CHECK(state_of(running) == BGJOB_STATE_STOPPED);
    CHECK_OK(bgjob_remove(running, false));

    /* A process job with an endless grace: SIGTERM ends `sleep` and the stop returns. */
    static const char *const argv[] = {"sleep", "60"};
    bgjob_spec *spec = named_spec("huge-grace");
    CHECK_OK(bgjob_spec_set_argv(spec, argv, 2));
    CHECK_OK(bgjob_spec_set_stop_grace(spec, INT64_MAX));
    uint64_t proc = 0;
    CHECK_OK(bgjob_start(spec, &proc));
    CHECK(wait_for_state(proc, BGJOB_STATE_RUNNING, 20000));
    CHECK_OK(bgjob_stop(proc, 60000));
    CHECK(state_of(proc) == BGJOB_STATE_STOPPED);
    CHECK_OK(bgjob_remove(proc, false));
    CHECK(atomic_load(&p.finalized) == 1);
}

static void test_callback_registration_misuse(void) {
    atomic_int fin;
    atomic_init(&fin, 0);
    CHECK_FAILS(bgjob_on_any_state_changed(NULL, &fin, count_finalize, NULL),
                BGJOB_E_INVALID_ARGUMENT);
    CHECK(atomic_load(&fin) == 1);
    uint64_t id = finished_job();
    CHECK_FAILS(bgjob_on_state_changed(id, NULL, &fin, count_finalize, NULL),
                BGJOB_E_INVALID_ARGUMENT);
    CHECK(atomic_load(&fin) == 2);
    /* Unknown registrations. */
    CHECK_FAILS(bgjob_unregister(0, 0), BGJOB_E_INVALID_ARGUMENT);
    CHECK_FAILS(bgjob_unregister(0, UINT64_MAX), BGJOB_E_INVALID_ARGUMENT);
    CHECK_FAILS(bgjob_unregister(id, 0), BGJOB_E_INVALID_ARGUMENT);
    CHECK_FAILS(bgjob_unregister(id, UINT64_MAX), BGJOB_E_INVALID_ARGUMENT);
    /* A job's registration is not a repository-wide one, and the other way round. */
    uint64_t job_reg = 0, any_reg = 0;
    CHECK_OK(bgjob_on_state_changed(id, never_called_callback, &fin, count_finalize, &job_reg));
    CHECK_OK(bgjob_on_any_state_changed(never_called_callback, &fin, count_finalize, &any_reg));
    CHECK_FAILS(bgjob_unregister(0, job_reg), BGJOB_E_INVALID_ARGUMENT);
    CHECK_FAILS(bgjob_unregister(id, any_reg), BGJOB_E_INVALID_ARGUMENT);
    CHECK(atomic_load(&fin) == 2);
    CHECK_OK(bgjob_unregister(0, any_reg));
    CHECK(atomic_load(&fin) == 3);
    CHECK_FAILS(bgjob_unregister(0, any_reg), BGJOB_E_INVALID_ARGUMENT);
    CHECK_OK(bgjob_unregister(id, job_reg));
    CHECK(atomic_load(&fin) == 4);
    CHECK_FAILS(bgjob_unregister(id, job_reg), BGJOB_E_INVALID_ARGUMENT);
    /* out_registration may be NULL: the registration then ends with the job. */
    CHECK_OK(bgjob_on_state_changed(id, never_called_callback, &fin, count_finalize, NULL));
    CHECK(atomic_load(&fin) == 4);
    CHECK_OK(bgjob_remove(id, false));
    CHECK(atomic_load(&fin) == 5);
}

/* ----- the work context ---------------------------------------------------------------------- */

enum {
    C_WRITE_STREAM7, C_WRITE_STREAM99, C_WRITE_NULL_DATA, C_WRITE_NULL_EMPTY, C_TEXT_NULL,
    C_TEXT_STREAM7, C_TEXT_BAD_UTF8, C_PROGRESS_BAD_UTF8, C_STATUS_NULL, C_STATUS_BAD_UTF8,
    C_FAIL_NULL, C_FAIL_BAD_UTF8, C_COUNT
};

typedef struct ctx_results {
    bgjob_status status[C_COUNT];
    bool fresh[C_COUNT];
} ctx_results;

/* Runs a context call on the worker (last-error messages are per thread). */
#define CTX_CALL(res, k, expr)                                                          \
    do {                                                                                \
        prime_last_error();                                                             \
        (res)->status[k] = (expr);                                                      \
        (res)->fresh[k] = fresh_message();                                              \
    } while (0)

static int32_t work_misuse_context(bgjob_context *ctx, void *user_data) {
    ctx_results *r = user_data;
    CTX_CALL(r, C_WRITE_STREAM7, bgjob_context_write(ctx, 7, "x", 1));
    CTX_CALL(r, C_WRITE_STREAM99, bgjob_context_write(ctx, 99, "x", 1));
    CTX_CALL(r, C_WRITE_NULL_DATA, bgjob_context_write(ctx, BGJOB_STREAM_OUTPUT, NULL, 5));
    CTX_CALL(r, C_WRITE_NULL_EMPTY, bgjob_context_write(ctx, BGJOB_STREAM_OUTPUT, NULL, 0));
    CTX_CALL(r, C_TEXT_NULL, bgjob_context_write_text(ctx, BGJOB_STREAM_OUTPUT, NULL));
    CTX_CALL(r, C_TEXT_STREAM7, bgjob_context_write_text(ctx, 7, "x"));
    /* Records are bytes: text need not be UTF-8. */
    CTX_CALL(r, C_TEXT_BAD_UTF8, bgjob_context_write_text(ctx, BGJOB_STREAM_WARNING, "\xff\xfe"));
    CTX_CALL(r, C_PROGRESS_BAD_UTF8, bgjob_context_progress(ctx, 10, "\xff\xfe", NULL));
    CTX_CALL(r, C_STATUS_NULL, bgjob_context_set_status_message(ctx, NULL));
    CTX_CALL(r, C_STATUS_BAD_UTF8, bgjob_context_set_status_message(ctx, "\xff\xfe"));
    CTX_CALL(r, C_FAIL_NULL, bgjob_context_fail(ctx, NULL));
    CTX_CALL(r, C_FAIL_BAD_UTF8, bgjob_context_fail(ctx, "\xff\xfe"));
    return 0; /* none of the refused calls failed the job */
}

static void test_context_misuse(void) {
    /* A NULL context. */
    CHECK_FAILS(bgjob_context_write(NULL, BGJOB_STREAM_OUTPUT, "x", 1), BGJOB_E_INVALID_ARGUMENT);
    CHECK_FAILS(bgjob_context_write_text(NULL, BGJOB_STREAM_OUTPUT, "x"), BGJOB_E_INVALID_ARGUMENT);
    CHECK_FAILS(bgjob_context_progress(NULL, 1, "a", "s"), BGJOB_E_INVALID_ARGUMENT);
    CHECK_FAILS(bgjob_context_set_status_message(NULL, "m"), BGJOB_E_INVALID_ARGUMENT);
    CHECK_FAILS(bgjob_context_fail(NULL, "r"), BGJOB_E_INVALID_ARGUMENT);
    CHECK_FALLBACK(bgjob_context_stop_requested(NULL), false);
    CHECK_FALLBACK(bgjob_context_job_id(NULL), 0);

    /* A live context, bad arguments. */
    ctx_results r;
    for (int k = 0; k < C_COUNT; k++) {
        r.status[k] = 99;
        r.fresh[k] = false;
    }
    uint64_t id = start_job(NULL, work_misuse_context, &r, NULL, g_pool);
    CHECK_OK(bgjob_wait(&id, 1, BGJOB_WAIT_ALL, 20000, NULL, NULL));
    CHECK(state_of(id) == BGJOB_STATE_COMPLETED);
    const struct {
        int k;
        bgjob_status want;
    } expect[] = {
        {C_WRITE_STREAM7, BGJOB_E_INVALID_ARGUMENT},  {C_WRITE_STREAM99, BGJOB_E_INVALID_ARGUMENT},
        {C_WRITE_NULL_DATA, BGJOB_E_INVALID_ARGUMENT}, {C_WRITE_NULL_EMPTY, BGJOB_OK},
        {C_TEXT_NULL, BGJOB_E_INVALID_ARGUMENT},       {C_TEXT_STREAM7, BGJOB_E_INVALID_ARGUMENT},
        {C_TEXT_BAD_UTF8, BGJOB_OK},                   {C_PROGRESS_BAD_UTF8, BGJOB_E_INVALID_ARGUMENT},
        {C_STATUS_NULL, BGJOB_E_INVALID_ARGUMENT},     {C_STATUS_BAD_UTF8, BGJOB_E_INVALID_ARGUMENT},
        {C_FAIL_NULL, BGJOB_E_INVALID_ARGUMENT},       {C_FAIL_BAD_UTF8, BGJOB_E_INVALID_ARGUMENT},
    };
    for (size_t i = 0; i < sizeof expect / sizeof expect[0]; i++) {
        int k = expect[i].k;
        if (r.status[k] != expect[i].want) {
            fprintf(stderr, "  FAIL %s: context call #%d -> %s, want %s\n", check_current, k,
                    bgjob_status_name(r.status[k]), bgjob_status_name(expect[i].want));
            check_failures++;
        }
        if (expect[i].want != BGJOB_OK && !r.fresh[k]) {
            fprintf(stderr, "  FAIL %s: context call #%d left no message\n", check_current, k);
            check_failures++;
        }
    }
    /* What was accepted is there: the empty record and the non-UTF-8 bytes. */
    bgjob_records *recs = NULL;
    CHECK_OK(bgjob_receive(id, 0, 0, 0, &recs));
    CHECK(bgjob_records_count(recs) == 2);
    const bgjob_record *r0 = bgjob_records_get(recs, 0), *r1 = bgjob_records_get(recs, 1);
    CHECK(r0 != NULL && r0->stream == BGJOB_STREAM_OUTPUT && r0->len == 0 && r0->data != NULL);
    CHECK(r1 != NULL && r1->stream == BGJOB_STREAM_WARNING && r1->len == 2 &&
          memcmp(r1->data, "\xff\xfe", 2) == 0);
    bgjob_records_free(recs);
    bgjob_job_info *info = NULL;
    CHECK_OK(bgjob_get_job(id, &info));
    CHECK(!bgjob_job_info_progress(info, NULL, NULL, NULL)); /* the refused one left none */
    const char *m = bgjob_job_info_status_message(info);
    CHECK(m != NULL && m[0] == '\0');
    bgjob_job_info_free(info);
    CHECK_OK(bgjob_remove(id, false));
}

/* ----- names, panics, frees ---------------------------------------------------------------- */

static void test_names_of_out_of_range_values(void) {
    CHECK(strcmp(bgjob_status_name(BGJOB_OK), "BGJOB_OK") == 0);
    CHECK(strcmp(bgjob_status_name(BGJOB_E_TIMEOUT), "BGJOB_E_TIMEOUT") == 0);
    CHECK(strcmp(bgjob_status_name(BGJOB_E_PANIC), "BGJOB_E_PANIC") == 0);
    CHECK(strcmp(bgjob_status_name(BGJOB_E_BLOCKED), "BGJOB_E_BLOCKED") == 0);
    CHECK(strcmp(bgjob_status_name(BGJOB_E_SYSTEM), "BGJOB_E_SYSTEM") == 0);
    CHECK(strcmp(bgjob_status_name(BGJOB_E_SYSTEM + 1), "BGJOB_E_UNKNOWN") == 0);
    CHECK(strcmp(bgjob_status_name(999), "BGJOB_E_UNKNOWN") == 0);
    CHECK(strcmp(bgjob_status_name(UINT32_MAX), "BGJOB_E_UNKNOWN") == 0);
    CHECK(strcmp(bgjob_state_name(BGJOB_STATE_NOT_STARTED), "NotStarted") == 0);
    CHECK(strcmp(bgjob_state_name(BGJOB_STATE_AT_BREAKPOINT), "AtBreakpoint") == 0);
    CHECK(strcmp(bgjob_state_name(11), "Unknown") == 0);
    CHECK(strcmp(bgjob_state_name(UINT32_MAX), "Unknown") == 0);
    CHECK(strcmp(bgjob_stream_name(BGJOB_STREAM_PROGRESS), "Progress") == 0);
    CHECK(strcmp(bgjob_stream_name(7), "Unknown") == 0);
    CHECK(strcmp(bgjob_stream_name(99), "Unknown") == 0);
    CHECK(strcmp(bgjob_stream_name(UINT32_MAX), "Unknown") == 0);
    for (uint32_t s = 0; s <= 12; s++)
        CHECK(bgjob_state_is_finished(s) ==
              (s == BGJOB_STATE_COMPLETED || s == BGJOB_STATE_FAILED || s == BGJOB_STATE_STOPPED));
    CHECK(!bgjob_state_is_finished(UINT32_MAX));
    const char *v = bgjob_version();
    CHECK(v != NULL && v[0] != '\0' && strchr(v, '.') != NULL);
}

static void test_panic_is_caught_at_the_boundary(void) {
    /* make test-abort runs this program against the panic = "abort" build and says so. */
    const char *build = getenv("BGJOB_EXPECT_PANIC");
    CHECK(bgjob_catches_panics() == !(build != NULL && strcmp(build, "abort") == 0));
    if (!bgjob_catches_panics()) {
        printf("    (not here: this build of the library aborts on a panic)\n");
        return;
    }
    CHECK_FAILS(bgjob_selftest_panic("kaboom from the misuse test"), BGJOB_E_PANIC);
    CHECK(strstr(bgjob_last_error_message(), "kaboom from the misuse test") != NULL);
    CHECK_FAILS(bgjob_selftest_panic(NULL), BGJOB_E_PANIC);
    /* The library still works afterwards. */
    uint64_t id = finished_job();
    CHECK(state_of(id) == BGJOB_STATE_COMPLETED);
    CHECK_OK(bgjob_remove(id, false));
}

static int32_t work_fail_calls(bgjob_context *ctx, void *user_data) {
    (void)user_data;
    bgjob_context_write(ctx, 42, "x", 1);
    inject_panic("on a worker");
    return 0;
}

static void test_last_error_is_per_thread_and_kept_on_success(void) {
    prime_last_error();
    /* A successful call leaves it. */
    bgjob_job_list *list = NULL;
    CHECK_OK(bgjob_get_jobs(NULL, &list));
    bgjob_job_list_free(list);
    CHECK(strcmp(bgjob_last_error_message(), last_error_marker) == 0);
    /* Failures on another thread do not touch this thread's message. */
    uint64_t id = start_job(NULL, work_fail_calls, NULL, NULL, g_pool);
    CHECK_OK(bgjob_wait(&id, 1, BGJOB_WAIT_ALL, 20000, NULL, NULL));
    CHECK(state_of(id) == BGJOB_STATE_COMPLETED);
    CHECK_OK(bgjob_remove(id, false));
    CHECK(strcmp(bgjob_last_error_message(), last_error_marker) == 0);
}

static void test_free_null_is_a_no_op(void) {
    bgjob_spec_free(NULL);
    bgjob_job_info_free(NULL);
    bgjob_filter_free(NULL);
    bgjob_job_list_free(NULL);
    bgjob_records_free(NULL);
    bgjob_pool_free(NULL);
    CHECK(1);
}

static void test_repository_is_empty_at_the_end(void) {
    CHECK(repo_count() == 0);
}

int main(void) {
    if (bgjob_pool_new(2, 0, &g_pool) != BGJOB_OK) {
        fprintf(stderr, "bgjob_pool_new: %s\n", bgjob_last_error_message());
        return 1;
    }
    RUN_TEST(test_spec_null_arguments);
    RUN_TEST(test_invalid_utf8_names_are_refused);
    RUN_TEST(test_spec_freed_unstarted_finalizes_once);
    RUN_TEST(test_start_misuse);
    RUN_TEST(test_start_on_a_shut_down_pool);
    RUN_TEST(test_start_fn_misuse);
    RUN_TEST(test_pool_misuse);
    RUN_TEST(test_ids_that_never_existed);
    RUN_TEST(test_removed_ids);
    RUN_TEST(test_instance_id_misuse);
    RUN_TEST(test_get_misuse);
    RUN_TEST(test_filter_misuse);
    RUN_TEST(test_receive_misuse);
    RUN_TEST(test_wait_and_stop_misuse);
    RUN_TEST(test_huge_timeouts_mean_forever);
    RUN_TEST(test_callback_registration_misuse);
    RUN_TEST(test_context_misuse);
    RUN_TEST(test_names_of_out_of_range_values);
    RUN_TEST(test_panic_is_caught_at_the_boundary);
    RUN_TEST(test_last_error_is_per_thread_and_kept_on_success);
    RUN_TEST(test_free_null_is_a_no_op);
    RUN_TEST(test_repository_is_empty_at_the_end);
    CHECK_OK(bgjob_pool_shutdown(g_pool, 20000));
    bgjob_pool_free(g_pool);
    /* Every bgjob thread gone before exit: valgrind sees no live worker. */
    CHECK_OK(bgjob_shutdown(BGJOB_INFINITE));
    return check_summary("test_misuse");
}
