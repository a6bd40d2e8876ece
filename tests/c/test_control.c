/* Suspend-Job / Resume-Job and work that asks its host for input (Blocked), through the
 * C ABI: bgjob_suspend, bgjob_resume, bgjob_context_checkpoint, bgjob_context_read_input,
 * bgjob_send_input, bgjob_buffer_free, bgjob_job_info_prompt and BGJOB_E_BLOCKED (the same
 * behaviours as tests/control.rs, in C terms). */
#include "check.h"
#include "util.h"

#include <ctype.h>
#include <inttypes.h>

/* A pool for most tests here, whatever the machine's core count. */
static bgjob_pool *g_pool = NULL;

/* Bound of every poll and wait: far above what any step needs, so a hang fails a CHECK. */
#define LONG_MS 20000
/* The timeout of the waits that must end early with BGJOB_E_BLOCKED. */
#define WAIT_BLOCKED_TIMEOUT_MS 60000

/* ----- a recorder of one job's state changes --------------------------------------------- */

#define MAX_EVENTS 32

typedef struct recorder {
    pthread_mutex_t mu;
    int n;
    uint64_t job_id[MAX_EVENTS];
    bgjob_job_state state[MAX_EVENTS], previous[MAX_EVENTS];
    atomic_int finalized;
} recorder;

typedef struct move {
    bgjob_job_state from, to;
} move;

static void recorder_init(recorder *r) {
    pthread_mutex_init(&r->mu, NULL);
    r->n = 0;
    atomic_init(&r->finalized, 0);
}

static void recorder_destroy(recorder *r) {
    pthread_mutex_destroy(&r->mu);
}

static void on_state(const bgjob_state_event *e, void *user_data) {
    recorder *r = user_data;
    pthread_mutex_lock(&r->mu);
    if (r->n < MAX_EVENTS) {
        r->job_id[r->n] = e->job_id;
        r->state[r->n] = e->state_info.state;
        r->previous[r->n] = e->previous_state_info.state;
    }
    r->n++;
    pthread_mutex_unlock(&r->mu);
}

static void recorder_finalize(void *user_data) {
    atomic_fetch_add(&((recorder *)user_data)->finalized, 1);
}

static void print_history(recorder *r, uint64_t id) {
    fprintf(stderr, "  (job %" PRIu64 " history, %d events:", id, r->n);
    for (int i = 0; i < r->n && i < MAX_EVENTS; i++)
        fprintf(stderr, " [%" PRIu64 "] %s->%s", r->job_id[i], bgjob_state_name(r->previous[i]),
                bgjob_state_name(r->state[i]));
    fprintf(stderr, ")\n");
}

/* Whether the last `n` recorded events (all of them if `exact`) are the moves `want`, all
 * for job `id`. */
static bool history_matches(recorder *r, uint64_t id, const move *want, int n, bool exact) {
    pthread_mutex_lock(&r->mu);
    bool ok = r->n <= MAX_EVENTS && (exact ? r->n == n : r->n >= n);
    for (int i = 0; ok && i < n; i++) {
        int k = r->n - n + i;
        ok = r->job_id[k] == id && r->previous[k] == want[i].from && r->state[k] == want[i].to;
    }
    if (!ok) print_history(r, id);
    pthread_mutex_unlock(&r->mu);
    return ok;
}

static bool history_is(recorder *r, uint64_t id, const move *want, int n) {
    return history_matches(r, id, want, n, true);
}

static bool history_ends_with(recorder *r, uint64_t id, const move *want, int n) {
    return history_matches(r, id, want, n, false);
}

/* The history is NotStarted → … → `final`, each move legal and chained, all for `id`,
 * exactly one finished state and it last, and `via` among the states passed. */
static bool history_is_legal_via(recorder *r, uint64_t id, bgjob_job_state via,
                                 bgjob_job_state final) {
    pthread_mutex_lock(&r->mu);
    bool ok = r->n >= 2 && r->n <= MAX_EVENTS && r->state[r->n - 1] == final;
    bool seen_via = false;
    bgjob_job_state at = BGJOB_STATE_NOT_STARTED;
    for (int i = 0; ok && i < r->n; i++) {
        ok = r->job_id[i] == id && r->previous[i] == at && legal_move(at, r->state[i]) &&
             (bgjob_state_is_finished(r->state[i]) == (i == r->n - 1));
        seen_via |= r->state[i] == via;
        at = r->state[i];
    }
    ok = ok && seen_via;
    if (!ok) print_history(r, id);
    pthread_mutex_unlock(&r->mu);
    return ok;
}

/* ----- helpers ------------------------------------------------------------------------- */

/* Starts a job with `work(user_data)` (finalizer may be NULL) on `pool` (NULL = default
 * pool), with `r`'s callback if `r` is non-NULL, and one child per input if `n_inputs` > 0
 * (a parallel job). Returns its id, or 0 after a failed CHECK. */
static uint64_t start_spec(bgjob_work_fn work, void *user_data, bgjob_finalizer finalizer,
                           const bgjob_pool *pool, recorder *r, const char *const *inputs,
                           size_t n_inputs) {
    bgjob_spec *spec = NULL;
    CHECK_OK(bgjob_spec_new(&spec));
    if (spec == NULL) return 0;
    CHECK_OK(bgjob_spec_set_work(spec, work, user_data, finalizer));
    if (pool != NULL) CHECK_OK(bgjob_spec_set_pool(spec, pool));
    if (r != NULL) CHECK_OK(bgjob_spec_on_state_changed(spec, on_state, r, recorder_finalize));
    for (size_t i = 0; i < n_inputs; i++)
        CHECK_OK(bgjob_spec_add_input(spec, inputs[i], strlen(inputs[i])));
    uint64_t id = 0;
    CHECK_OK(bgjob_start(spec, &id));
    CHECK(id != 0);
    return id;
}

/* Whether the job's prompt is `want` (NULL: no prompt). Prints what it is otherwise if
 * `verbose`. */
static bool prompt_is_v(uint64_t id, const char *want, bool verbose) {
    bgjob_job_info *info = NULL;
    if (bgjob_get_job(id, &info) != BGJOB_OK) return false;
    const char *p = bgjob_job_info_prompt(info);
    bool ok = want == NULL ? p == NULL : (p != NULL && strcmp(p, want) == 0);
    if (!ok && verbose)
        fprintf(stderr, "  (job %" PRIu64 " is %s, prompt %s%s%s, want %s)\n", id,
                bgjob_state_name(bgjob_job_info_state(info)), p ? "\"" : "", p ? p : "NULL",
                p ? "\"" : "", want ? want : "NULL");
    bgjob_job_info_free(info);
    return ok;
}

static bool prompt_is(uint64_t id, const char *want) {
    return prompt_is_v(id, want, true);
}

/* Bounded poll until the job shows `prompt`. */
static bool wait_for_prompt(uint64_t id, const char *prompt, long timeout_ms) {
    double deadline = now_ms() + (double)timeout_ms;
    for (;;) {
        if (prompt_is_v(id, prompt, false)) return true;
        if (now_ms() >= deadline) return prompt_is(id, prompt);
        sleep_ms(1);
    }
}

/* Bounded poll until every one of `ids` is in `state`. */
static bool wait_all_in_state(const uint64_t *ids, size_t n, bgjob_job_state state,
                              long timeout_ms) {
    double deadline = now_ms() + (double)timeout_ms;
    for (;;) {
        size_t k = 0;
        for (size_t i = 0; i < n; i++) k += state_of(ids[i]) == state;
        if (k == n) return true;
        if (now_ms() >= deadline) {
            for (size_t i = 0; i < n; i++)
                fprintf(stderr, "  (job %" PRIu64 " is %s, want %s)\n", ids[i],
                        bgjob_state_name(state_of(ids[i])), bgjob_state_name(state));
            return false;
        }
        sleep_ms(1);
    }
}

/* Whether the message names job `id` (as a whole number, not a part of another). */
static bool names_id(const char *msg, uint64_t id) {
    char buf[32];
    snprintf(buf, sizeof buf, "%" PRIu64, id);
    size_t n = strlen(buf);
    for (const char *p = msg; (p = strstr(p, buf)) != NULL; p++) {
        bool left = p == msg || !isdigit((unsigned char)p[-1]);
        bool right = !isdigit((unsigned char)p[n]);
        if (left && right) return true;
    }
    return false;
}

/* Whether a consuming receive of the job gives exactly the output texts `want`. */
static bool outputs_are(uint64_t id, const char *const *want, size_t n) {
    bgjob_records *recs = NULL;
    if (bgjob_receive(id, 0, 0, 0, &recs) != BGJOB_OK) return false;
    bool ok = bgjob_records_count(recs) == n;
    for (size_t i = 0; ok && i < n; i++) ok = record_is(recs, i, BGJOB_STREAM_OUTPUT, want[i]);
    if (!ok) {
        fprintf(stderr, "  (job %" PRIu64 ": %zu records:", id, bgjob_records_count(recs));
        for (size_t i = 0; i < bgjob_records_count(recs); i++) {
            const bgjob_record *rec = bgjob_records_get(recs, i);
            fprintf(stderr, " \"%s\"", rec && rec->data ? (const char *)rec->data : "(null)");
        }
        fprintf(stderr, ")\n");
    }
    bgjob_records_free(recs);
    return ok;
}

/* Bounded poll until every one of `ids` is finished (its stored state, not a wait).
 *
 * Used after bgjob_send_input or bgjob_resume, before a bgjob_wait that must wait for the
 * end of the work. It guarded against a library race, since fixed: while the work's own
 * change to Blocked (Suspended) is still being dispatched on its worker thread, the host's
 * Blocked -> Running (Suspended -> Running) change queues behind it and the call returns;
 * a wait begun then judges the job by its stale delivered state, so it fails with
 * BGJOB_E_BLOCKED (after send_input) or returns the Running job as done (after resume).
 * Once the stored state is finished, the work has returned, so its thread delivered every
 * earlier change. This race was fixed (waits now go by the settled state);
 * test_wait_right_after_send_input_is_not_blocked and
 * test_wait_right_after_resume_waits_for_the_running_job check it. */
static bool wait_for_finished(const uint64_t *ids, size_t n) {
    double deadline = now_ms() + LONG_MS;
    for (;;) {
        size_t k = 0;
        for (size_t i = 0; i < n; i++) k += bgjob_state_is_finished(state_of(ids[i]));
        if (k == n) return true;
        if (now_ms() >= deadline) {
            for (size_t i = 0; i < n; i++)
                fprintf(stderr, "  (job %" PRIu64 " is %s, want finished)\n", ids[i],
                        bgjob_state_name(state_of(ids[i])));
            return false;
        }
        sleep_ms(1);
    }
}

/* Waits for the jobs (all) and removes them. */
static void finish_and_remove_all(const uint64_t *ids, size_t n) {
    CHECK_OK(bgjob_wait(ids, n, BGJOB_WAIT_ALL, LONG_MS, NULL, NULL));
    for (size_t i = 0; i < n; i++) CHECK_OK(bgjob_remove(ids[i], false));
}

/* ----- work functions ------------------------------------------------------------------ */

/* What a checkpointing work shares with its test (one job, or every child of a parallel
 * job). */
typedef struct stepper {
    atomic_bool finish;         /* set by the test: the loop ends */
    atomic_int runs;            /* how many works entered */
    atomic_int checkpoint_errors;
    atomic_int finalized;
} stepper;

static void stepper_init(stepper *s) {
    atomic_init(&s->finish, false);
    atomic_init(&s->runs, 0);
    atomic_init(&s->checkpoint_errors, 0);
    atomic_init(&s->finalized, 0);
}

static void stepper_finalize(void *user_data) {
    atomic_fetch_add(&((stepper *)user_data)->finalized, 1);
}

/* Work: passes a checkpoint, then sleeps 1 ms, until `finish` is set or a stop is asked.
 * Fails if the checkpoint fails or it never ends (a bound, not a synchronisation). */
static int32_t work_checkpointing(bgjob_context *ctx, void *user_data) {
    stepper *s = user_data;
    atomic_fetch_add(&s->runs, 1);
    double deadline = now_ms() + 120000;
    while (!atomic_load(&s->finish) && !bgjob_context_stop_requested(ctx)) {
        if (now_ms() > deadline) {
            bgjob_context_fail(ctx, "never finished");
            return 1;
        }
        bgjob_status st = bgjob_context_checkpoint(ctx);
        if (st != BGJOB_OK) {
            atomic_fetch_add(&s->checkpoint_errors, 1);
            bgjob_context_fail(ctx, "the checkpoint failed");
            return 1;
        }
        sleep_ms(1);
    }
    return 0;
}

/* A gate the test opens; the work waits for it (bounded) and never checkpoints. */
typedef struct gate {
    atomic_bool open;
    atomic_int entered;
    atomic_int checkpoint_status; /* for work_gate_then_checkpoint; 99 = not reached */
} gate;

static void gate_init(gate *g) {
    atomic_init(&g->open, false);
    atomic_init(&g->entered, 0);
    atomic_init(&g->checkpoint_status, 99);
}

static bool gate_pass(atomic_bool *open) {
    double deadline = now_ms() + 120000;
    while (!atomic_load(open)) {
        if (now_ms() > deadline) return false;
        sleep_ms(1);
    }
    return true;
}

/* Work: waits for the gate, then returns 0 (no checkpoint on the way). */
static int32_t work_gate(bgjob_context *ctx, void *user_data) {
    gate *g = user_data;
    atomic_fetch_add(&g->entered, 1);
    if (!gate_pass(&g->open)) {
        bgjob_context_fail(ctx, "the gate never opened");
        return 1;
    }
    return 0;
}

/* Work: waits for the gate, passes one checkpoint, writes "past the checkpoint". */
static int32_t work_gate_then_checkpoint(bgjob_context *ctx, void *user_data) {
    gate *g = user_data;
    if (work_gate(ctx, user_data) != 0) return 1;
    bgjob_status st = bgjob_context_checkpoint(ctx);
    atomic_store(&g->checkpoint_status, (int)st);
    if (st != BGJOB_OK) return 2;
    return (int32_t)bgjob_context_write_text(ctx, BGJOB_STREAM_OUTPUT, "past the checkpoint");
}

/* What a work that reads input saw. */
#define MAX_READS 2
#define MAX_INPUT 64

typedef struct read_slot {
    atomic_int status; /* of bgjob_context_read_input; 99 = not called */
    size_t len;
    uint8_t bytes[MAX_INPUT];
    bool too_long;
} read_slot;

typedef struct asker {
    int reads;                       /* how many inputs to read, one after the other */
    const char *prompts[MAX_READS];  /* the prompt of each */
    bool greet;                      /* write "hello <input>" after each read */
    atomic_bool *gate;               /* if non-NULL: wait for it before the first read */
    read_slot slot[MAX_READS];
    atomic_bool stop_seen;           /* a failed read saw a stop asked */
    atomic_bool untouched;           /* a failed read left the out-pointers alone */
    atomic_int finalized;
} asker;

static void asker_init(asker *a, const char *prompt) {
    memset(a, 0, sizeof *a);
    a->reads = 1;
    a->prompts[0] = prompt;
    a->greet = true;
    a->gate = NULL;
    for (int i = 0; i < MAX_READS; i++) atomic_init(&a->slot[i].status, 99);
    atomic_init(&a->stop_seen, false);
    atomic_init(&a->untouched, false);
    atomic_init(&a->finalized, 0);
}

static void asker_finalize(void *user_data) {
    atomic_fetch_add(&((asker *)user_data)->finalized, 1);
}

static uint8_t g_sentinel_byte;
#define SENTINEL_LEN ((size_t)123456)

/* Work: reads `reads` inputs (each with its prompt), keeps a copy of each, frees the
 * buffers, and greets each input if asked. A read that fails ends the work: 0 if a stop
 * was asked (the job then ends Stopped), 1 otherwise. */
static int32_t work_ask(bgjob_context *ctx, void *user_data) {
    asker *a = user_data;
    if (a->gate != NULL && !gate_pass(a->gate)) {
        bgjob_context_fail(ctx, "the gate never opened");
        return 1;
    }
    for (int i = 0; i < a->reads; i++) {
        read_slot *s = &a->slot[i];
        uint8_t *data = &g_sentinel_byte;
        size_t len = SENTINEL_LEN;
        bgjob_status st = bgjob_context_read_input(ctx, a->prompts[i], &data, &len);
        if (st != BGJOB_OK) {
            atomic_store(&a->untouched, data == &g_sentinel_byte && len == SENTINEL_LEN);
            atomic_store(&a->stop_seen, bgjob_context_stop_requested(ctx));
            atomic_store(&s->status, (int)st);
            return bgjob_context_stop_requested(ctx) ? 0 : 1;
        }
        s->len = len;
        s->too_long = len > MAX_INPUT;
        if (len > 0 && data != NULL) memcpy(s->bytes, data, len > MAX_INPUT ? MAX_INPUT : len);
        bool greeted = true;
        if (a->greet) {
            uint8_t greeting[6 + MAX_INPUT];
            memcpy(greeting, "hello ", 6);
            size_t n = len > MAX_INPUT ? MAX_INPUT : len;
            if (n > 0) memcpy(greeting + 6, data, n);
            greeted = bgjob_context_write(ctx, BGJOB_STREAM_OUTPUT, greeting, 6 + n) == BGJOB_OK;
        }
        bgjob_buffer_free(data, len);
        atomic_store(&s->status, (int)st);
        if (!greeted) return 2;
    }
    return 0;
}

static bool slot_holds(const read_slot *s, const void *bytes, size_t len) {
    return atomic_load(&s->status) == BGJOB_OK && !s->too_long && s->len == len &&
           (len == 0 || memcmp(s->bytes, bytes, len) == 0);
}

/* ----- suspend and resume -------------------------------------------------------------- */

static void test_suspend_parks_at_the_checkpoint_and_resume_lets_it_complete(void) {
    stepper s;
    stepper_init(&s);
    recorder r;
    recorder_init(&r);
    uint64_t id = start_spec(work_checkpointing, &s, stepper_finalize, g_pool, &r, NULL, 0);
    CHECK(wait_for_state(id, BGJOB_STATE_RUNNING, LONG_MS));
    CHECK_OK(bgjob_suspend(id));
    /* At once Suspending; Suspended when the work reaches its checkpoint. */
    bgjob_job_state now = state_of(id);
    CHECK(now == BGJOB_STATE_SUSPENDING || now == BGJOB_STATE_SUSPENDED);
    CHECK(wait_for_state(id, BGJOB_STATE_SUSPENDED, LONG_MS));
    /* A wait stops at Suspended (a persistent state): the job is returned as done. */
    uint64_t done[1] = {0};
    size_t n_done = 0;
    CHECK_OK(bgjob_wait(&id, 1, BGJOB_WAIT_ALL, LONG_MS, done, &n_done));
    CHECK(n_done == 1 && done[0] == id);
    n_done = 0;
    CHECK_OK(bgjob_wait(&id, 1, BGJOB_WAIT_ANY, 0, done, &n_done));
    CHECK(n_done == 1 && done[0] == id);
    /* A forced wait (Wait-Job -Force) does not stop there: polled, the job is not done. */
    n_done = 99;
    CHECK_STATUS(bgjob_wait(&id, 1, BGJOB_WAIT_ALL | BGJOB_WAIT_FORCE, 0, done, &n_done),
                 BGJOB_E_TIMEOUT);
    CHECK(n_done == 0);
    CHECK_STATUS(bgjob_wait(&id, 1, BGJOB_WAIT_ANY | BGJOB_WAIT_FORCE, 0, done, &n_done),
                 BGJOB_E_TIMEOUT);
    CHECK_STATUS(bgjob_wait(&id, 1, 2 | BGJOB_WAIT_FORCE, 0, NULL, NULL),
                 BGJOB_E_INVALID_ARGUMENT);
    /* Suspending again does nothing. */
    CHECK_OK(bgjob_suspend(id));
    CHECK(state_of(id) == BGJOB_STATE_SUSPENDED);
    /* Parked: the work is not finished and the job stays Suspended. */
    CHECK(!atomic_load(&s.finish) && atomic_load(&s.runs) == 1);
    CHECK_OK(bgjob_resume(id));
    CHECK(wait_for_state(id, BGJOB_STATE_RUNNING, LONG_MS));
    atomic_store(&s.finish, true);
    /* The forced wait returns once the job is finished. */
    CHECK_OK(bgjob_wait(&id, 1, BGJOB_WAIT_ALL | BGJOB_WAIT_FORCE, LONG_MS, NULL, NULL));
    CHECK(state_of(id) == BGJOB_STATE_COMPLETED);
    CHECK(atomic_load(&s.checkpoint_errors) == 0);
    const move want[] = {
        {BGJOB_STATE_NOT_STARTED, BGJOB_STATE_RUNNING},
        {BGJOB_STATE_RUNNING, BGJOB_STATE_SUSPENDING},
        {BGJOB_STATE_SUSPENDING, BGJOB_STATE_SUSPENDED},
        {BGJOB_STATE_SUSPENDED, BGJOB_STATE_RUNNING},
        {BGJOB_STATE_RUNNING, BGJOB_STATE_COMPLETED},
    };
    CHECK(history_is(&r, id, want, 5));
    CHECK_OK(bgjob_remove(id, false));
    CHECK(atomic_load(&s.finalized) == 1);
    CHECK(atomic_load(&r.finalized) == 1);
    recorder_destroy(&r);
    CHECK(repo_count() == 0);
}

static void test_a_stop_of_a_suspended_job_ends_it_stopped(void) {
    stepper s;
    stepper_init(&s);
    recorder r;
    recorder_init(&r);
    uint64_t id = start_spec(work_checkpointing, &s, stepper_finalize, g_pool, &r, NULL, 0);
    CHECK(wait_for_state(id, BGJOB_STATE_RUNNING, LONG_MS));
    CHECK_OK(bgjob_suspend(id));
    CHECK(wait_for_state(id, BGJOB_STATE_SUSPENDED, LONG_MS));
    CHECK_OK(bgjob_stop(id, LONG_MS));
    CHECK(state_of(id) == BGJOB_STATE_STOPPED);
    CHECK_OK(bgjob_wait(&id, 1, BGJOB_WAIT_ALL, LONG_MS, NULL, NULL));
    const move want[] = {
        {BGJOB_STATE_SUSPENDED, BGJOB_STATE_STOPPING},
        {BGJOB_STATE_STOPPING, BGJOB_STATE_STOPPED},
    };
    CHECK(history_ends_with(&r, id, want, 2));
    CHECK(history_is_legal_via(&r, id, BGJOB_STATE_SUSPENDED, BGJOB_STATE_STOPPED));
    CHECK(atomic_load(&s.checkpoint_errors) == 0);
    CHECK_OK(bgjob_remove(id, false));
    CHECK(atomic_load(&s.finalized) == 1);
    recorder_destroy(&r);
    CHECK(repo_count() == 0);
}

static void test_work_that_never_checkpoints_stays_suspending_until_it_ends(void) {
    gate g;
    gate_init(&g);
    recorder r;
    recorder_init(&r);
    uint64_t id = start_spec(work_gate, &g, NULL, g_pool, &r, NULL, 0);
    CHECK(wait_for_state(id, BGJOB_STATE_RUNNING, LONG_MS));
    CHECK_OK(bgjob_suspend(id));
    CHECK(state_of(id) == BGJOB_STATE_SUSPENDING);
    /* Suspending is not persistent: a poll does not return it as done. */
    size_t n_done = 99;
    CHECK_STATUS(bgjob_wait(&id, 1, BGJOB_WAIT_ALL, 0, NULL, &n_done), BGJOB_E_TIMEOUT);
    CHECK(n_done == 0);
    CHECK(state_of(id) == BGJOB_STATE_SUSPENDING);
    atomic_store(&g.open, true);
    CHECK_OK(bgjob_wait(&id, 1, BGJOB_WAIT_ALL, LONG_MS, NULL, NULL));
    CHECK(state_of(id) == BGJOB_STATE_COMPLETED);
    /* The end of the work finishes the job from Suspending. */
    const move want[] = {
        {BGJOB_STATE_NOT_STARTED, BGJOB_STATE_RUNNING},
        {BGJOB_STATE_RUNNING, BGJOB_STATE_SUSPENDING},
        {BGJOB_STATE_SUSPENDING, BGJOB_STATE_COMPLETED},
    };
    CHECK(history_is(&r, id, want, 3));
    CHECK_OK(bgjob_remove(id, false));
    recorder_destroy(&r);
    CHECK(repo_count() == 0);
}

static void test_resume_before_the_checkpoint_cancels_the_suspension(void) {
    gate g;
    gate_init(&g);
    recorder r;
    recorder_init(&r);
    uint64_t id = start_spec(work_gate_then_checkpoint, &g, NULL, g_pool, &r, NULL, 0);
    CHECK(wait_for_state(id, BGJOB_STATE_RUNNING, LONG_MS));
    CHECK_OK(bgjob_suspend(id));
    CHECK(state_of(id) == BGJOB_STATE_SUSPENDING);
    CHECK_OK(bgjob_resume(id));
    atomic_store(&g.open, true);
    /* Not a wait: it may return at the passing Suspended (a persistent state). */
    CHECK(wait_for_state(id, BGJOB_STATE_COMPLETED, LONG_MS));
    CHECK(atomic_load(&g.checkpoint_status) == BGJOB_OK);
    /* The Completed callback has run once a wait returns. */
    CHECK_OK(bgjob_wait(&id, 1, BGJOB_WAIT_ALL, LONG_MS, NULL, NULL));
    const char *out[] = {"past the checkpoint"};
    CHECK(outputs_are(id, out, 1));
    const move want[] = {
        {BGJOB_STATE_NOT_STARTED, BGJOB_STATE_RUNNING},
        {BGJOB_STATE_RUNNING, BGJOB_STATE_SUSPENDING},
        {BGJOB_STATE_SUSPENDING, BGJOB_STATE_SUSPENDED},
        {BGJOB_STATE_SUSPENDED, BGJOB_STATE_RUNNING},
        {BGJOB_STATE_RUNNING, BGJOB_STATE_COMPLETED},
    };
    CHECK(history_is(&r, id, want, 5));
    CHECK_OK(bgjob_remove(id, false));
    recorder_destroy(&r);
    CHECK(repo_count() == 0);
}

static void test_only_a_running_job_can_be_suspended(void) {
    bgjob_pool *pool = NULL;
    CHECK_OK(bgjob_pool_new(1, 1, &pool));
    if (pool == NULL) return;
    gate g;
    gate_init(&g);
    recorder r;
    recorder_init(&r);
    uint64_t blocker = start_spec(work_gate, &g, NULL, pool, &r, NULL, 0);
    uint64_t queued = start_job(NULL, work_write_two, NULL, NULL, pool);
    CHECK(wait_for_state(blocker, BGJOB_STATE_RUNNING, LONG_MS));
    /* Queued (NotStarted): refused with a message, nothing changes. */
    CHECK(state_of(queued) == BGJOB_STATE_NOT_STARTED);
    CHECK_STATUS(bgjob_suspend(queued), BGJOB_E_INVALID_STATE);
    CHECK(strstr(bgjob_last_error_message(), "NotStarted") != NULL);
    CHECK(names_id(bgjob_last_error_message(), queued));
    CHECK(state_of(queued) == BGJOB_STATE_NOT_STARTED);
    /* Resuming a job that is not suspended: OK, no change. */
    CHECK_OK(bgjob_resume(queued));
    CHECK(state_of(queued) == BGJOB_STATE_NOT_STARTED);
    CHECK_OK(bgjob_resume(blocker));
    CHECK(state_of(blocker) == BGJOB_STATE_RUNNING);
    atomic_store(&g.open, true);
    uint64_t both[2] = {blocker, queued};
    CHECK_OK(bgjob_wait(both, 2, BGJOB_WAIT_ALL, LONG_MS, NULL, NULL));
    /* Finished: refused with a message. */
    CHECK_STATUS(bgjob_suspend(blocker), BGJOB_E_INVALID_STATE);
    CHECK(strstr(bgjob_last_error_message(), "Completed") != NULL);
    CHECK(names_id(bgjob_last_error_message(), blocker));
    CHECK(state_of(blocker) == BGJOB_STATE_COMPLETED);
    CHECK_OK(bgjob_resume(queued));
    CHECK(state_of(queued) == BGJOB_STATE_COMPLETED);
    /* The resume of the Running job and the refused suspends left no trace. */
    const move want[] = {
        {BGJOB_STATE_NOT_STARTED, BGJOB_STATE_RUNNING},
        {BGJOB_STATE_RUNNING, BGJOB_STATE_COMPLETED},
    };
    CHECK(history_is(&r, blocker, want, 2));
    for (int i = 0; i < 2; i++) CHECK_OK(bgjob_remove(both[i], false));
    recorder_destroy(&r);
    pool_close(pool);
    CHECK(repo_count() == 0);
}

static void test_a_suspended_parallel_job_resumes_with_all_its_children(void) {
    bgjob_pool *pool = NULL;
    CHECK_OK(bgjob_pool_new(3, 0, &pool));
    if (pool == NULL) return;
    stepper s;
    stepper_init(&s);
    recorder r;
    recorder_init(&r);
    const char *inputs[] = {"a", "b", "c"};
    uint64_t parent = start_spec(work_checkpointing, &s, stepper_finalize, pool, &r, inputs, 3);
    uint64_t kids[3] = {0};
    bgjob_job_info *info = NULL;
    CHECK_OK(bgjob_get_job(parent, &info));
    CHECK(bgjob_job_info_child_count(info) == 3);
    for (size_t i = 0; i < 3; i++) kids[i] = bgjob_job_info_child_id(info, i);
    bgjob_job_info_free(info);
    /* Three workers: all three children run at once. */
    CHECK(wait_all_in_state(kids, 3, BGJOB_STATE_RUNNING, LONG_MS));
    CHECK(wait_for_state(parent, BGJOB_STATE_RUNNING, LONG_MS));
    CHECK_OK(bgjob_suspend(parent));
    CHECK(wait_for_state(parent, BGJOB_STATE_SUSPENDED, LONG_MS));
    for (int i = 0; i < 3; i++) CHECK(state_of(kids[i]) == BGJOB_STATE_SUSPENDED);
    /* A wait on the parent stops at Suspended too. */
    CHECK_OK(bgjob_wait(&parent, 1, BGJOB_WAIT_ALL, LONG_MS, NULL, NULL));
    CHECK_OK(bgjob_resume(parent));
    CHECK(wait_all_in_state(kids, 3, BGJOB_STATE_RUNNING, LONG_MS));
    CHECK(wait_for_state(parent, BGJOB_STATE_RUNNING, LONG_MS));
    atomic_store(&s.finish, true);
    CHECK(wait_for_finished(&parent, 1));
    CHECK_OK(bgjob_wait(&parent, 1, BGJOB_WAIT_ALL, LONG_MS, NULL, NULL));
    CHECK(state_of(parent) == BGJOB_STATE_COMPLETED);
    for (int i = 0; i < 3; i++) CHECK(state_of(kids[i]) == BGJOB_STATE_COMPLETED);
    CHECK(atomic_load(&s.runs) == 3);
    CHECK(atomic_load(&s.checkpoint_errors) == 0);
    CHECK(history_is_legal_via(&r, parent, BGJOB_STATE_SUSPENDED, BGJOB_STATE_COMPLETED));
    CHECK_OK(bgjob_remove(parent, false));
    CHECK(atomic_load(&s.finalized) == 1);
    recorder_destroy(&r);
    pool_close(pool);
    CHECK(repo_count() == 0);
}

/* ----- input for Blocked jobs -------------------------------------------------------- */

static void test_a_blocked_job_runs_again_with_the_input_its_host_sends(void) {
    asker a;
    asker_init(&a, "your name?");
    recorder r;
    recorder_init(&r);
    uint64_t id = start_spec(work_ask, &a, asker_finalize, g_pool, &r, NULL, 0);
    CHECK(wait_for_state(id, BGJOB_STATE_BLOCKED, LONG_MS));
    CHECK(prompt_is(id, "your name?"));
    CHECK_OK(bgjob_send_input(id, "bob", 3));
    CHECK(wait_for_finished(&id, 1));
    CHECK_OK(bgjob_wait(&id, 1, BGJOB_WAIT_ALL, LONG_MS, NULL, NULL));
    CHECK(state_of(id) == BGJOB_STATE_COMPLETED);
    CHECK(slot_holds(&a.slot[0], "bob", 3));
    CHECK(prompt_is(id, NULL));
    const char *out[] = {"hello bob"};
    CHECK(outputs_are(id, out, 1));
    const move want[] = {
        {BGJOB_STATE_NOT_STARTED, BGJOB_STATE_RUNNING},
        {BGJOB_STATE_RUNNING, BGJOB_STATE_BLOCKED},
        {BGJOB_STATE_BLOCKED, BGJOB_STATE_RUNNING},
        {BGJOB_STATE_RUNNING, BGJOB_STATE_COMPLETED},
    };
    CHECK(history_is(&r, id, want, 4));
    /* Too late: the job is finished. */
    CHECK_STATUS(bgjob_send_input(id, "late", 4), BGJOB_E_INVALID_STATE);
    CHECK(names_id(bgjob_last_error_message(), id));
    CHECK(strstr(bgjob_last_error_message(), "Blocked") != NULL);
    CHECK_OK(bgjob_remove(id, false));
    CHECK(atomic_load(&a.finalized) == 1);
    recorder_destroy(&r);
    CHECK(repo_count() == 0);
}

static void test_input_goes_only_to_a_blocked_job(void) {
    gate g;
    gate_init(&g);
    uint64_t id = start_spec(work_gate, &g, NULL, g_pool, NULL, NULL, 0);
    CHECK(wait_for_state(id, BGJOB_STATE_RUNNING, LONG_MS));
    CHECK_STATUS(bgjob_send_input(id, "x", 1), BGJOB_E_INVALID_STATE);
    CHECK(strstr(bgjob_last_error_message(), "Running") != NULL);
    CHECK(state_of(id) == BGJOB_STATE_RUNNING);
    CHECK(prompt_is(id, NULL));
    atomic_store(&g.open, true);
    finish_and_remove_all(&id, 1);
    CHECK(repo_count() == 0);
}

static const uint8_t BINARY[] = {0x00, 0xff, 'a', 0x00, 0x7f, 0x00};

static void test_binary_and_empty_input_arrive_intact(void) {
    asker a;
    asker_init(&a, "binary?");
    a.reads = 2;
    a.prompts[1] = "empty?";
    a.greet = false;
    uint64_t id = start_spec(work_ask, &a, asker_finalize, g_pool, NULL, NULL, 0);
    CHECK(wait_for_state(id, BGJOB_STATE_BLOCKED, LONG_MS));
    CHECK(prompt_is(id, "binary?"));
    /* Copied: changing the buffer after the call changes nothing. */
    uint8_t buffer[sizeof BINARY];
    memcpy(buffer, BINARY, sizeof buffer);
    CHECK_OK(bgjob_send_input(id, buffer, sizeof buffer));
    memset(buffer, 'X', sizeof buffer);
    /* The same work asks again: Blocked with the new prompt. */
    CHECK(wait_for_prompt(id, "empty?", LONG_MS));
    CHECK(state_of(id) == BGJOB_STATE_BLOCKED);
    CHECK_OK(bgjob_send_input(id, NULL, 0));
    CHECK(wait_for_finished(&id, 1));
    CHECK_OK(bgjob_wait(&id, 1, BGJOB_WAIT_ALL, LONG_MS, NULL, NULL));
    CHECK(state_of(id) == BGJOB_STATE_COMPLETED);
    CHECK(slot_holds(&a.slot[0], BINARY, sizeof BINARY));
    CHECK(slot_holds(&a.slot[1], "", 0));
    CHECK_OK(bgjob_remove(id, false));
    CHECK(atomic_load(&a.finalized) == 1);
    CHECK(repo_count() == 0);
}

static void test_a_blocked_job_can_be_stopped_and_its_read_fails(void) {
    asker a;
    asker_init(&a, "anything?");
    recorder r;
    recorder_init(&r);
    uint64_t id = start_spec(work_ask, &a, asker_finalize, g_pool, &r, NULL, 0);
    CHECK(wait_for_state(id, BGJOB_STATE_BLOCKED, LONG_MS));
    CHECK(prompt_is(id, "anything?"));
    CHECK_OK(bgjob_stop(id, LONG_MS));
    CHECK(state_of(id) == BGJOB_STATE_STOPPED);
    CHECK(atomic_load(&a.slot[0].status) == BGJOB_E_INVALID_STATE);
    CHECK(atomic_load(&a.stop_seen));
    CHECK(atomic_load(&a.untouched));
    CHECK(prompt_is(id, NULL));
    CHECK_OK(bgjob_wait(&id, 1, BGJOB_WAIT_ALL, LONG_MS, NULL, NULL));
    const move want[] = {
        {BGJOB_STATE_BLOCKED, BGJOB_STATE_STOPPING},
        {BGJOB_STATE_STOPPING, BGJOB_STATE_STOPPED},
    };
    CHECK(history_ends_with(&r, id, want, 2));
    CHECK(history_is_legal_via(&r, id, BGJOB_STATE_BLOCKED, BGJOB_STATE_STOPPED));
    /* Nothing to answer any more. */
    CHECK_STATUS(bgjob_send_input(id, "late", 4), BGJOB_E_INVALID_STATE);
    CHECK_OK(bgjob_remove(id, false));
    CHECK(atomic_load(&a.finalized) == 1);
    recorder_destroy(&r);
    CHECK(repo_count() == 0);
}

static void test_a_wait_on_jobs_that_are_all_blocked_ends_with_blocked(void) {
    asker a[2];
    uint64_t ids[2];
    for (int i = 0; i < 2; i++) {
        asker_init(&a[i], "your name?");
        ids[i] = start_spec(work_ask, &a[i], asker_finalize, g_pool, NULL, NULL, 0);
    }
    CHECK(wait_all_in_state(ids, 2, BGJOB_STATE_BLOCKED, LONG_MS));
    const uint32_t modes[2] = {BGJOB_WAIT_ALL, BGJOB_WAIT_ANY};
    for (int m = 0; m < 2; m++) {
        double t0 = now_ms();
        CHECK_STATUS(bgjob_wait(ids, 2, modes[m], WAIT_BLOCKED_TIMEOUT_MS, NULL, NULL),
                     BGJOB_E_BLOCKED);
        double elapsed = now_ms() - t0;
        if (elapsed >= WAIT_BLOCKED_TIMEOUT_MS / 2)
            fprintf(stderr, "  (mode %u: the wait took %.0f ms)\n", modes[m], elapsed);
        CHECK(elapsed < WAIT_BLOCKED_TIMEOUT_MS / 2);
        CHECK(names_id(bgjob_last_error_message(), ids[0]));
        CHECK(names_id(bgjob_last_error_message(), ids[1]));
    }
    /* Answer the first: waiting for all still ends Blocked, on the second. */
    CHECK_OK(bgjob_send_input(ids[0], "ann", 3));
    CHECK(wait_for_finished(&ids[0], 1));
    CHECK_STATUS(bgjob_wait(ids, 2, BGJOB_WAIT_ALL, WAIT_BLOCKED_TIMEOUT_MS, NULL, NULL),
                 BGJOB_E_BLOCKED);
    CHECK(names_id(bgjob_last_error_message(), ids[1]));
    CHECK(!names_id(bgjob_last_error_message(), ids[0]));
    /* Any: the answered job is done, so the wait succeeds with it. */
    uint64_t done[2] = {0, 0};
    size_t n_done = 0;
    CHECK_OK(bgjob_wait(ids, 2, BGJOB_WAIT_ANY, WAIT_BLOCKED_TIMEOUT_MS, done, &n_done));
    CHECK(n_done == 1 && done[0] == ids[0]);
    CHECK(state_of(ids[0]) == BGJOB_STATE_COMPLETED);
    CHECK(state_of(ids[1]) == BGJOB_STATE_BLOCKED);
    /* Answer both: waiting for all succeeds. */
    CHECK_OK(bgjob_send_input(ids[1], "bea", 3));
    CHECK(wait_for_finished(&ids[1], 1));
    n_done = 0;
    CHECK_OK(bgjob_wait(ids, 2, BGJOB_WAIT_ALL, WAIT_BLOCKED_TIMEOUT_MS, done, &n_done));
    CHECK(n_done == 2 && done[0] == ids[0] && done[1] == ids[1]);
    const char *out0[] = {"hello ann"}, *out1[] = {"hello bea"};
    CHECK(outputs_are(ids[0], out0, 1));
    CHECK(outputs_are(ids[1], out1, 1));
    CHECK(slot_holds(&a[0].slot[0], "ann", 3));
    CHECK(slot_holds(&a[1].slot[0], "bea", 3));
    for (int i = 0; i < 2; i++) {
        CHECK(state_of(ids[i]) == BGJOB_STATE_COMPLETED);
        CHECK_OK(bgjob_remove(ids[i], false));
        CHECK(atomic_load(&a[i].finalized) == 1);
    }
    CHECK(repo_count() == 0);
}

typedef struct waiter_args {
    const uint64_t *ids;
    size_t n;
    bgjob_status status;
    double elapsed_ms;
    char message[256];
} waiter_args;

static void *waiter_thread(void *arg) {
    waiter_args *w = arg;
    double t0 = now_ms();
    w->status = bgjob_wait(w->ids, w->n, BGJOB_WAIT_ALL, WAIT_BLOCKED_TIMEOUT_MS, NULL, NULL);
    w->elapsed_ms = now_ms() - t0;
    snprintf(w->message, sizeof w->message, "%s", bgjob_last_error_message());
    return NULL;
}

static void test_a_wait_ends_blocked_when_its_last_running_job_blocks(void) {
    asker first, later;
    asker_init(&first, "first?");
    asker_init(&later, "later?");
    atomic_bool open;
    atomic_init(&open, false);
    later.gate = &open;
    uint64_t ids[2];
    ids[0] = start_spec(work_ask, &first, asker_finalize, g_pool, NULL, NULL, 0);
    ids[1] = start_spec(work_ask, &later, asker_finalize, g_pool, NULL, NULL, 0);
    CHECK(wait_for_state(ids[0], BGJOB_STATE_BLOCKED, LONG_MS));
    CHECK(wait_for_state(ids[1], BGJOB_STATE_RUNNING, LONG_MS));
    waiter_args w = {ids, 2, 99, 0, ""};
    pthread_t t;
    CHECK(pthread_create(&t, NULL, waiter_thread, &w) == 0);
    /* `later` now runs on, then blocks too: the waiter must wake and give up. */
    atomic_store(&open, true);
    CHECK(pthread_join(t, NULL) == 0);
    CHECK(w.status == BGJOB_E_BLOCKED);
    CHECK(w.elapsed_ms < WAIT_BLOCKED_TIMEOUT_MS / 2);
    CHECK(names_id(w.message, ids[0]) && names_id(w.message, ids[1]));
    if (w.status != BGJOB_E_BLOCKED)
        fprintf(stderr, "  (waiter: %s after %.0f ms: %s)\n", bgjob_status_name(w.status),
                w.elapsed_ms, w.message);
    CHECK(state_of(ids[1]) == BGJOB_STATE_BLOCKED);
    CHECK_OK(bgjob_send_input(ids[0], "x", 1));
    CHECK(wait_for_state(ids[1], BGJOB_STATE_BLOCKED, LONG_MS));
    CHECK_OK(bgjob_send_input(ids[1], "y", 1));
    CHECK(wait_for_finished(ids, 2));
    finish_and_remove_all(ids, 2);
    CHECK(slot_holds(&first.slot[0], "x", 1));
    CHECK(slot_holds(&later.slot[0], "y", 1));
    CHECK(atomic_load(&first.finalized) == 1 && atomic_load(&later.finalized) == 1);
    CHECK(repo_count() == 0);
}

/* A state-change callback that takes 300 ms for every change to or from Blocked or
 * Suspended (a slow logger, say): it keeps the job's change to Blocked (Suspended) in
 * dispatch on the worker thread, where the work made it, while the host answers (resumes),
 * and the host's change queued behind it. The sleep only widens the window; the
 * assertions hold whatever the timing. */
static bool is_parking_state(bgjob_job_state s) {
    return s == BGJOB_STATE_BLOCKED || s == BGJOB_STATE_SUSPENDED;
}

static void on_state_slowly(const bgjob_state_event *e, void *user_data) {
    atomic_fetch_add((atomic_int *)user_data, 1);
    if (is_parking_state(e->state_info.state) || is_parking_state(e->previous_state_info.state))
        sleep_ms(300);
}

/* Once bgjob_send_input returned BGJOB_OK the job is Running, not Blocked, so a wait on it
 * must not fail with BGJOB_E_BLOCKED — even while the callbacks of its move to Blocked
 * still run (slowly, here) on the work's thread and the host's change queues behind them.
 * (Waits go by the *settled* state: delivered, with no change queued or in delivery.) */
static void test_wait_right_after_send_input_is_not_blocked(void) {
    asker a;
    asker_init(&a, "your name?");
    atomic_int calls;
    atomic_init(&calls, 0);
    bgjob_spec *spec = NULL;
    CHECK_OK(bgjob_spec_new(&spec));
    if (spec == NULL) return;
    CHECK_OK(bgjob_spec_set_work(spec, work_ask, &a, asker_finalize));
    CHECK_OK(bgjob_spec_set_pool(spec, g_pool));
    CHECK_OK(bgjob_spec_on_state_changed(spec, on_state_slowly, &calls, NULL));
    uint64_t id = 0;
    CHECK_OK(bgjob_start(spec, &id));
    CHECK(wait_for_state(id, BGJOB_STATE_BLOCKED, LONG_MS));
    CHECK_OK(bgjob_send_input(id, "bob", 3));
    CHECK(state_of(id) == BGJOB_STATE_RUNNING || state_of(id) == BGJOB_STATE_COMPLETED);
    CHECK_OK(bgjob_wait(&id, 1, BGJOB_WAIT_ALL, WAIT_BLOCKED_TIMEOUT_MS, NULL, NULL));
    CHECK_OK(bgjob_wait(&id, 1, BGJOB_WAIT_ANY, WAIT_BLOCKED_TIMEOUT_MS, NULL, NULL));
    CHECK(wait_for_finished(&id, 1));
    CHECK_OK(bgjob_wait(&id, 1, BGJOB_WAIT_ALL, LONG_MS, NULL, NULL));
    CHECK(state_of(id) == BGJOB_STATE_COMPLETED);
    CHECK(slot_holds(&a.slot[0], "bob", 3));
    CHECK_OK(bgjob_remove(id, false));
    CHECK(atomic_load(&a.finalized) == 1);
    CHECK(atomic_load(&calls) == 4);
    CHECK(repo_count() == 0);
}

/* Once bgjob_resume returned BGJOB_OK the job is Running, so a wait on it must not return
 * it as done (at the persistent Suspended it already left), even while the callbacks of
 * Suspended still run on the work's thread. */
static void test_wait_right_after_resume_waits_for_the_running_job(void) {
    stepper s;
    stepper_init(&s);
    atomic_int calls;
    atomic_init(&calls, 0);
    bgjob_spec *spec = NULL;
    CHECK_OK(bgjob_spec_new(&spec));
    if (spec == NULL) return;
    CHECK_OK(bgjob_spec_set_work(spec, work_checkpointing, &s, stepper_finalize));
    CHECK_OK(bgjob_spec_set_pool(spec, g_pool));
    CHECK_OK(bgjob_spec_on_state_changed(spec, on_state_slowly, &calls, NULL));
    uint64_t id = 0;
    CHECK_OK(bgjob_start(spec, &id));
    CHECK(wait_for_state(id, BGJOB_STATE_RUNNING, LONG_MS));
    CHECK_OK(bgjob_suspend(id));
    CHECK(wait_for_state(id, BGJOB_STATE_SUSPENDED, LONG_MS));
    CHECK_OK(bgjob_resume(id));
    CHECK(state_of(id) == BGJOB_STATE_RUNNING);
    /* The work runs until told to finish: the wait can only time out. */
    size_t n_done = 99;
    CHECK_STATUS(bgjob_wait(&id, 1, BGJOB_WAIT_ALL, 2000, NULL, &n_done), BGJOB_E_TIMEOUT);
    CHECK(n_done == 0);
    CHECK(state_of(id) == BGJOB_STATE_RUNNING);
    atomic_store(&s.finish, true);
    CHECK(wait_for_finished(&id, 1));
    CHECK_OK(bgjob_wait(&id, 1, BGJOB_WAIT_ALL, LONG_MS, NULL, NULL));
    CHECK(state_of(id) == BGJOB_STATE_COMPLETED);
    CHECK_OK(bgjob_remove(id, false));
    CHECK(atomic_load(&s.finalized) == 1);
    CHECK(atomic_load(&calls) == 5);
    CHECK(repo_count() == 0);
}

/* ----- misuse ---------------------------------------------------------------------------- */

#define MSG 160

/* What the misuse work saw from inside a live context. */
typedef struct misuse {
    atomic_int null_prompt, null_data, null_len, both_null, checkpoint;
    char msg_prompt[MSG], msg_data[MSG], msg_len[MSG];
    atomic_int state_after; /* the job's own state after the refused reads */
    atomic_bool data_untouched;
} misuse;

static int32_t work_misuse(bgjob_context *ctx, void *user_data) {
    misuse *m = user_data;
    uint8_t *data = &g_sentinel_byte;
    size_t len = SENTINEL_LEN;
    atomic_store(&m->null_prompt, (int)bgjob_context_read_input(ctx, NULL, &data, &len));
    snprintf(m->msg_prompt, MSG, "%s", bgjob_last_error_message());
    atomic_store(&m->null_data, (int)bgjob_context_read_input(ctx, "p", NULL, &len));
    snprintf(m->msg_data, MSG, "%s", bgjob_last_error_message());
    atomic_store(&m->null_len, (int)bgjob_context_read_input(ctx, "p", &data, NULL));
    snprintf(m->msg_len, MSG, "%s", bgjob_last_error_message());
    atomic_store(&m->both_null, (int)bgjob_context_read_input(ctx, "p", NULL, NULL));
    atomic_store(&m->data_untouched, data == &g_sentinel_byte && len == SENTINEL_LEN);
    bgjob_job_state st = 99;
    if (bgjob_get_state(bgjob_context_job_id(ctx), &st) != BGJOB_OK) st = 99;
    atomic_store(&m->state_after, (int)st);
    /* No suspend asked: the checkpoint returns at once. */
    atomic_store(&m->checkpoint, (int)bgjob_context_checkpoint(ctx));
    return 0;
}

static void test_misuse_gives_a_status_and_a_message(void) {
    /* Unknown ids: 0 (never valid), one never made, one removed. */
    uint64_t removed = start_job(NULL, work_write_two, NULL, NULL, g_pool);
    finish_and_remove_all(&removed, 1);
    const uint64_t unknown[] = {0, UINT64_MAX - 7, removed};
    for (int i = 0; i < 3; i++) {
        CHECK_STATUS(bgjob_suspend(unknown[i]), BGJOB_E_NO_SUCH_JOB);
        CHECK(bgjob_last_error_message()[0] != '\0');
        CHECK_STATUS(bgjob_resume(unknown[i]), BGJOB_E_NO_SUCH_JOB);
        CHECK(bgjob_last_error_message()[0] != '\0');
        CHECK_STATUS(bgjob_send_input(unknown[i], "x", 1), BGJOB_E_NO_SUCH_JOB);
        CHECK(bgjob_last_error_message()[0] != '\0');
        CHECK_STATUS(bgjob_send_input(unknown[i], NULL, 0), BGJOB_E_NO_SUCH_JOB);
    }

    /* A NULL context, from outside any work. */
    uint8_t *data = &g_sentinel_byte;
    size_t len = SENTINEL_LEN;
    CHECK_STATUS(bgjob_context_checkpoint(NULL), BGJOB_E_INVALID_ARGUMENT);
    CHECK(strstr(bgjob_last_error_message(), "ctx") != NULL);
    CHECK_STATUS(bgjob_context_read_input(NULL, "p", &data, &len), BGJOB_E_INVALID_ARGUMENT);
    CHECK(strstr(bgjob_last_error_message(), "ctx") != NULL);
    CHECK(data == &g_sentinel_byte && len == SENTINEL_LEN);

    /* NULL prompt and NULL out-pointers, from inside a live work: refused, and the job is
     * not Blocked by them. */
    misuse m;
    memset(&m, 0, sizeof m);
    atomic_init(&m.null_prompt, 99);
    atomic_init(&m.null_data, 99);
    atomic_init(&m.null_len, 99);
    atomic_init(&m.both_null, 99);
    atomic_init(&m.checkpoint, 99);
    atomic_init(&m.state_after, 99);
    atomic_init(&m.data_untouched, false);
    uint64_t id = start_spec(work_misuse, &m, NULL, g_pool, NULL, NULL, 0);
    CHECK_OK(bgjob_wait(&id, 1, BGJOB_WAIT_ALL, LONG_MS, NULL, NULL));
    CHECK(state_of(id) == BGJOB_STATE_COMPLETED);
    CHECK(atomic_load(&m.null_prompt) == BGJOB_E_INVALID_ARGUMENT);
    CHECK(strstr(m.msg_prompt, "prompt") != NULL);
    CHECK(atomic_load(&m.null_data) == BGJOB_E_INVALID_ARGUMENT);
    CHECK(strstr(m.msg_data, "out_data") != NULL);
    CHECK(atomic_load(&m.null_len) == BGJOB_E_INVALID_ARGUMENT);
    CHECK(strstr(m.msg_len, "out_len") != NULL);
    CHECK(atomic_load(&m.both_null) == BGJOB_E_INVALID_ARGUMENT);
    CHECK(atomic_load(&m.data_untouched));
    CHECK(atomic_load(&m.state_after) == BGJOB_STATE_RUNNING);
    CHECK(atomic_load(&m.checkpoint) == BGJOB_OK);
    CHECK(prompt_is(id, NULL));
    CHECK_OK(bgjob_remove(id, false));

    /* NULL data with a length, to a Blocked job: refused, the job still waits. */
    asker a;
    asker_init(&a, "your name?");
    id = start_spec(work_ask, &a, asker_finalize, g_pool, NULL, NULL, 0);
    CHECK(wait_for_state(id, BGJOB_STATE_BLOCKED, LONG_MS));
    CHECK_STATUS(bgjob_send_input(id, NULL, 3), BGJOB_E_INVALID_ARGUMENT);
    CHECK(strstr(bgjob_last_error_message(), "data is NULL") != NULL);
    CHECK(state_of(id) == BGJOB_STATE_BLOCKED);
    CHECK(prompt_is(id, "your name?"));
    CHECK_OK(bgjob_send_input(id, "eve", 3));
    CHECK(wait_for_finished(&id, 1));
    CHECK_OK(bgjob_wait(&id, 1, BGJOB_WAIT_ALL, LONG_MS, NULL, NULL));
    CHECK(slot_holds(&a.slot[0], "eve", 3));
    const char *out[] = {"hello eve"};
    CHECK(outputs_are(id, out, 1));
    CHECK_OK(bgjob_remove(id, false));
    CHECK(atomic_load(&a.finalized) == 1);

    /* Freeing NULL is a no-op, whatever the length. */
    bgjob_buffer_free(NULL, 0);
    bgjob_buffer_free(NULL, 5);
    CHECK(repo_count() == 0);
}

static void test_repository_is_empty_at_the_end(void) {
    CHECK(repo_count() == 0);
}

int main(void) {
    if (bgjob_pool_new(4, 0, &g_pool) != BGJOB_OK) {
        fprintf(stderr, "bgjob_pool_new: %s\n", bgjob_last_error_message());
        return 1;
    }
    RUN_TEST(test_suspend_parks_at_the_checkpoint_and_resume_lets_it_complete);
    RUN_TEST(test_a_stop_of_a_suspended_job_ends_it_stopped);
    RUN_TEST(test_work_that_never_checkpoints_stays_suspending_until_it_ends);
    RUN_TEST(test_resume_before_the_checkpoint_cancels_the_suspension);
    RUN_TEST(test_only_a_running_job_can_be_suspended);
    RUN_TEST(test_a_suspended_parallel_job_resumes_with_all_its_children);
    RUN_TEST(test_a_blocked_job_runs_again_with_the_input_its_host_sends);
    RUN_TEST(test_input_goes_only_to_a_blocked_job);
    RUN_TEST(test_binary_and_empty_input_arrive_intact);
    RUN_TEST(test_a_blocked_job_can_be_stopped_and_its_read_fails);
    RUN_TEST(test_a_wait_on_jobs_that_are_all_blocked_ends_with_blocked);
    RUN_TEST(test_a_wait_ends_blocked_when_its_last_running_job_blocks);
    RUN_TEST(test_misuse_gives_a_status_and_a_message);
    RUN_TEST(test_wait_right_after_send_input_is_not_blocked);
    RUN_TEST(test_wait_right_after_resume_waits_for_the_running_job);
    RUN_TEST(test_repository_is_empty_at_the_end);
    CHECK_OK(bgjob_pool_shutdown(g_pool, LONG_MS));
    bgjob_pool_free(g_pool);
    /* Every bgjob thread gone before exit: valgrind sees no live worker. */
    CHECK_OK(bgjob_shutdown(BGJOB_INFINITE));
    return check_summary("test_control");
}
