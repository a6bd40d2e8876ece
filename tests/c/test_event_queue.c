/* The event queue from C: its descriptor polled with poll(2) on the test's own thread,
 * every state change of 1,000 jobs received exactly once and in each job's order. */
#include "check.h"
#include "util.h"

#include <inttypes.h>
#include <poll.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>

#define N_JOBS 1000
#define MAX_EVENTS 4

/* Work: returns its user data as the exit code (0 completes, 3 fails). */
static int32_t work_maybe_fail(bgjob_context *ctx, void *user_data) {
    (void)ctx;
    return (int32_t)(intptr_t)user_data;
}

static bool readable(const bgjob_event_queue *q, int timeout_ms) {
    struct pollfd pfd = {.fd = bgjob_event_queue_fd(q), .events = POLLIN, .revents = 0};
    return poll(&pfd, 1, timeout_ms) == 1 && (pfd.revents & POLLIN);
}

static void test_thousand_jobs_every_event_once_in_order(void) {
    int jobs = sanitizing() ? 100 : N_JOBS;
    bgjob_pool *pool = NULL;
    CHECK_OK(bgjob_pool_new(4, 0, &pool));
    bgjob_event_queue *q = NULL;
    CHECK_OK(bgjob_event_queue_open(NULL, 0, &q));
    if (q == NULL || pool == NULL) return;
    CHECK(bgjob_event_queue_fd(q) >= 0);
    CHECK(!readable(q, 0));

    uint64_t *ids = calloc((size_t)jobs, sizeof *ids);
    unsigned(*seen)[MAX_EVENTS][2] = calloc((size_t)jobs, sizeof *seen);
    int *count = calloc((size_t)jobs, sizeof *count);
    for (int i = 0; i < jobs; i++) {
        ids[i] = start_job(NULL, work_maybe_fail, (void *)(intptr_t)(i % 7 == 0 ? 3 : 0), NULL,
                           pool);
    }
    /* Ids are consecutive here (no parent jobs are started meanwhile by this program). */
    int finished = 0, overflow = 0, strangers = 0;
    double deadline = now_ms() + 60000;
    while (finished < jobs && now_ms() < deadline) {
        if (!readable(q, 1000)) continue;
        bgjob_state_event e;
        bool got = false;
        for (;;) {
            CHECK_OK(bgjob_event_queue_next(q, &e, &got));
            if (!got) break;
            if (e.job_id < ids[0] || e.job_id > ids[jobs - 1]) {
                strangers++;
                continue;
            }
            int i = (int)(e.job_id - ids[0]);
            if (count[i] == MAX_EVENTS) {
                overflow++;
                continue;
            }
            seen[i][count[i]][0] = e.previous_state_info.state;
            seen[i][count[i]][1] = e.state_info.state;
            count[i]++;
            if (bgjob_state_is_finished(e.state_info.state)) {
                finished++;
                if (e.state_info.state == BGJOB_STATE_FAILED) {
                    CHECK(e.state_info.reason != NULL &&
                          strcmp(e.state_info.reason, "the work returned 3") == 0);
                }
            }
        }
    }
    /* Every job finished and everything was drained: the descriptor is quiet. */
    CHECK(!readable(q, 0));
    CHECK(finished == jobs);
    CHECK(overflow == 0);
    CHECK(strangers == 0);
    int wrong = 0;
    for (int i = 0; i < jobs; i++) {
        unsigned end = i % 7 == 0 ? BGJOB_STATE_FAILED : BGJOB_STATE_COMPLETED;
        bool ok = count[i] == 2 && seen[i][0][0] == BGJOB_STATE_NOT_STARTED &&
                  seen[i][0][1] == BGJOB_STATE_RUNNING && seen[i][1][0] == BGJOB_STATE_RUNNING &&
                  seen[i][1][1] == end;
        if (!ok && wrong++ < 5) {
            fprintf(stderr, "  job %" PRIu64 ": %d events\n", ids[i], count[i]);
        }
    }
    CHECK(wrong == 0);
    printf("    %d jobs: %d finished events, every job's 2 events once and in order\n", jobs,
           finished);
    for (int i = 0; i < jobs; i++) finish_and_remove(ids[i]);
    bgjob_event_queue_free(q);
    pool_close(pool);
    free(ids);
    free(seen);
    free(count);
}

/* One job's history as a queue saw it: (previous state, state) pairs, in order. */
#define MAX_HISTORY 8

typedef struct history {
    uint64_t id;
    int n;
    unsigned from[MAX_HISTORY], to[MAX_HISTORY];
} history;

typedef struct move {
    unsigned from, to;
} move;

static void history_add(history *h, const bgjob_state_event *e) {
    if (h->n < MAX_HISTORY) {
        h->from[h->n] = e->previous_state_info.state;
        h->to[h->n] = e->state_info.state;
    }
    h->n++;
}

/* Whether the history is exactly `want` (n moves); prints it otherwise. */
static bool history_is(const history *h, const move *want, int n) {
    bool ok = h->n == n;
    for (int i = 0; ok && i < n; i++) ok = h->from[i] == want[i].from && h->to[i] == want[i].to;
    if (!ok) {
        fprintf(stderr, "  (job %" PRIu64 ": %d events:", h->id, h->n);
        for (int i = 0; i < h->n && i < MAX_HISTORY; i++)
            fprintf(stderr, " %s->%s", bgjob_state_name(h->from[i]), bgjob_state_name(h->to[i]));
        fprintf(stderr, ", want %d)\n", n);
    }
    return ok;
}

/* A queue of chosen jobs: it gets their events and nothing else. The chosen jobs are queued
 * behind a job that holds the pool's only worker when the queue opens, so the queue sees
 * their whole lives; unchosen jobs change state before, while and after the chosen ones run
 * and never make the descriptor readable. */
static void test_chosen_jobs_only(void) {
    bgjob_pool *pool = NULL;
    CHECK_OK(bgjob_pool_new(1, 0, &pool));
    if (pool == NULL) return;
    probe p;
    probe_init(&p, 60000);
    uint64_t blocker = start_probe_job(NULL, work_coop, &p, pool); /* runs until released */
    CHECK(wait_for_count(&p.started, 1, 20000));
    /* Chosen: b completes, c fails. Unchosen: a (queued with them), d (default pool). */
    uint64_t b = start_job(NULL, work_write_two, NULL, NULL, pool);
    uint64_t c = start_job(NULL, work_maybe_fail, (void *)(intptr_t)3, NULL, pool);
    uint64_t a = start_job(NULL, work_write_two, NULL, NULL, pool);
    CHECK(state_of(b) == BGJOB_STATE_NOT_STARTED && state_of(c) == BGJOB_STATE_NOT_STARTED);
    uint64_t chosen[2] = {b, c};
    bgjob_event_queue *q = NULL;
    CHECK_OK(bgjob_event_queue_open(chosen, 2, &q));
    if (q == NULL) {
        atomic_store(&p.release, true);
        pool_close(pool);
        return;
    }
    /* No chosen job has moved: quiet, whatever the unchosen ones do. */
    CHECK(!readable(q, 0));
    uint64_t d = start_job(NULL, work_maybe_fail, (void *)(intptr_t)3, NULL, NULL);
    CHECK_OK(bgjob_wait(&d, 1, BGJOB_WAIT_ALL, 20000, NULL, NULL));
    CHECK(!readable(q, 0));
    /* Let the queued jobs run; a wait returns after every callback of the finishing change,
     * the queue's feed included, so all their events are queued by then. */
    atomic_store(&p.release, true);
    uint64_t all[4] = {blocker, b, c, a};
    CHECK_OK(bgjob_wait(all, 4, BGJOB_WAIT_ALL, 20000, NULL, NULL));
    CHECK(state_of(b) == BGJOB_STATE_COMPLETED && state_of(c) == BGJOB_STATE_FAILED);
    /* Events pending: readable before draining. */
    CHECK(readable(q, 0));
    history hb = {.id = b}, hc = {.id = c};
    int strangers = 0, bad_reasons = 0;
    bgjob_state_event e;
    bool got = true;
    while (bgjob_event_queue_next(q, &e, &got) == BGJOB_OK && got) {
        if (e.job_id == b) {
            history_add(&hb, &e);
        } else if (e.job_id == c) {
            history_add(&hc, &e);
        } else {
            strangers++;
            fprintf(stderr, "  (event of unchosen job %" PRIu64 ": %s->%s)\n", e.job_id,
                    bgjob_state_name(e.previous_state_info.state),
                    bgjob_state_name(e.state_info.state));
            continue;
        }
        bool failed = e.job_id == c && e.state_info.state == BGJOB_STATE_FAILED;
        if (failed ? !(e.state_info.reason != NULL &&
                       strcmp(e.state_info.reason, "the work returned 3") == 0)
                   : e.state_info.reason != NULL)
            bad_reasons++;
        if (e.previous_state_info.reason != NULL) bad_reasons++;
    }
    CHECK(!got);
    /* Drained: quiet, and stays so (nothing of the chosen jobs changes any more). */
    CHECK(!readable(q, 0));
    CHECK(strangers == 0);
    CHECK(bad_reasons == 0);
    const move completed[] = {{BGJOB_STATE_NOT_STARTED, BGJOB_STATE_RUNNING},
                              {BGJOB_STATE_RUNNING, BGJOB_STATE_COMPLETED}};
    const move failed[] = {{BGJOB_STATE_NOT_STARTED, BGJOB_STATE_RUNNING},
                           {BGJOB_STATE_RUNNING, BGJOB_STATE_FAILED}};
    CHECK(history_is(&hb, completed, 2));
    CHECK(history_is(&hc, failed, 2));
    for (int i = 0; i < 4; i++) CHECK_OK(bgjob_remove(all[i], false));
    CHECK_OK(bgjob_remove(d, false));
    CHECK(!readable(q, 0));
    got = true;
    CHECK_OK(bgjob_event_queue_next(q, &e, &got));
    CHECK(!got);
    CHECK(atomic_load(&p.finalized) == 1);
    bgjob_event_queue_free(q);
    pool_close(pool);
}

/* ----- suspend/resume and Blocked/input, driven from a poll(2) loop ------------------- */

/* What a job of the event-loop test shares with the loop. */
typedef enum kind {
    SUSPEND_RESUME, /* checkpoints: suspended, resumed, then told to finish */
    SUSPEND_STOP,   /* checkpoints: suspended, then stopped while parked */
    INPUT_TWICE,    /* asks for input twice, answered each time */
    INPUT_STOP,     /* asks for input, stopped while Blocked */
    N_KINDS
} kind;

#define PER_KIND 2
#define N_DRIVEN (N_KINDS * PER_KIND)
#define INPUT_LEN 8

typedef struct driven {
    kind kind;
    uint64_t id;
    atomic_bool finish;         /* set by the loop: a checkpointing work returns */
    atomic_int checkpoint_errors;
    atomic_int reads;           /* inputs read (INPUT_*) */
    atomic_int read_failures;   /* reads that failed (the stop of INPUT_STOP) */
    char input[2][INPUT_LEN];   /* what each read got */
    int blocked_seen;           /* loop side: Blocked events so far */
    int prompt_mismatches;      /* loop side: Blocked with a prompt other than expected */
    atomic_int finalized;       /* by the finalizer: once, at the removal */
    history h;
} driven;

static const char *const PROMPTS[2] = {"first?", "second?"};

static void driven_finalize(void *user_data) {
    atomic_fetch_add(&((driven *)user_data)->finalized, 1);
}

/* Work: passes a checkpoint, then sleeps 1 ms, until told to finish or a stop is asked
 * (bounded: it fails if it never ends). */
static int32_t work_checkpoints(bgjob_context *ctx, void *user_data) {
    driven *d = user_data;
    double deadline = now_ms() + 120000;
    while (!atomic_load(&d->finish) && !bgjob_context_stop_requested(ctx)) {
        if (now_ms() > deadline) {
            bgjob_context_fail(ctx, "never finished");
            return 1;
        }
        if (bgjob_context_checkpoint(ctx) != BGJOB_OK) {
            atomic_fetch_add(&d->checkpoint_errors, 1);
            return 1;
        }
        sleep_ms(1);
    }
    return 0;
}

/* Work: reads one input per prompt (two for INPUT_TWICE, one for INPUT_STOP); a failed
 * read ends it, 0 if a stop was asked (the job then ends Stopped). */
static int32_t work_asks(bgjob_context *ctx, void *user_data) {
    driven *d = user_data;
    int reads = d->kind == INPUT_TWICE ? 2 : 1;
    for (int i = 0; i < reads; i++) {
        uint8_t *data = NULL;
        size_t len = 0;
        if (bgjob_context_read_input(ctx, PROMPTS[i], &data, &len) != BGJOB_OK) {
            atomic_fetch_add(&d->read_failures, 1);
            return bgjob_context_stop_requested(ctx) ? 0 : 1;
        }
        size_t n = len < INPUT_LEN - 1 ? len : INPUT_LEN - 1;
        if (n > 0) memcpy(d->input[i], data, n);
        d->input[i][n] = '\0';
        bgjob_buffer_free(data, len);
        atomic_fetch_add(&d->reads, 1);
    }
    return 0;
}

/* Whether the job's prompt is `want` now. */
static bool prompt_is(uint64_t id, const char *want) {
    bgjob_job_info *info = NULL;
    if (bgjob_get_job(id, &info) != BGJOB_OK) return false;
    const char *p = bgjob_job_info_prompt(info);
    bool ok = p != NULL && strcmp(p, want) == 0;
    bgjob_job_info_free(info);
    return ok;
}

/* The loop's reaction to one event of a driven job: what an event-loop host does. Every
 * move out of Suspended or Blocked is the host's, so the job is still there when the loop
 * sees the event. Returns false if a call failed. */
static bool react(driven *d, const bgjob_state_event *e) {
    unsigned from = e->previous_state_info.state, to = e->state_info.state;
    switch (d->kind) {
    case SUSPEND_RESUME:
    case SUSPEND_STOP:
        if (from == BGJOB_STATE_NOT_STARTED && to == BGJOB_STATE_RUNNING)
            return bgjob_suspend(d->id) == BGJOB_OK;
        if (to == BGJOB_STATE_SUSPENDED) {
            if (d->kind == SUSPEND_RESUME) return bgjob_resume(d->id) == BGJOB_OK;
            return bgjob_stop(d->id, 20000) == BGJOB_OK;
        }
        if (from == BGJOB_STATE_SUSPENDED && to == BGJOB_STATE_RUNNING)
            atomic_store(&d->finish, true);
        return true;
    case INPUT_TWICE:
    case INPUT_STOP:
        if (to != BGJOB_STATE_BLOCKED) return true;
        if (d->blocked_seen < 2 && !prompt_is(d->id, PROMPTS[d->blocked_seen]))
            d->prompt_mismatches++;
        d->blocked_seen++;
        if (d->kind == INPUT_STOP) return bgjob_stop(d->id, 20000) == BGJOB_OK;
        return bgjob_send_input(d->id, d->blocked_seen == 1 ? "ann" : "bob", 3) == BGJOB_OK;
    default:
        return false;
    }
}

/* Jobs suspended and resumed at their checkpoints, suspended and stopped, Blocked for
 * input and answered (twice), Blocked and stopped — each driven by the test's own thread
 * from the events it drains in a poll(2) loop on the queue's descriptor, no callback and
 * no polling of states. Each job's events arrive exactly once, in its order. */
static void test_suspend_resume_and_input_driven_from_a_poll_loop(void) {
    bgjob_pool *pool = NULL;
    CHECK_OK(bgjob_pool_new(4, 0, &pool));
    bgjob_event_queue *q = NULL;
    CHECK_OK(bgjob_event_queue_open(NULL, 0, &q));
    if (q == NULL || pool == NULL) {
        bgjob_event_queue_free(q);
        pool_close(pool);
        return;
    }
    CHECK(!readable(q, 0));
    static driven jobs[N_DRIVEN];
    memset(jobs, 0, sizeof jobs);
    for (int i = 0; i < N_DRIVEN; i++) {
        driven *d = &jobs[i];
        d->kind = (kind)(i % N_KINDS);
        atomic_init(&d->finish, false);
        atomic_init(&d->checkpoint_errors, 0);
        atomic_init(&d->reads, 0);
        atomic_init(&d->read_failures, 0);
        atomic_init(&d->finalized, 0);
        bool checkpoints = d->kind == SUSPEND_RESUME || d->kind == SUSPEND_STOP;
        d->id = start_job(NULL, checkpoints ? work_checkpoints : work_asks, d, driven_finalize,
                          pool);
        d->h.id = d->id;
    }
    int finished = 0, strangers = 0, failed_reactions = 0, reasons = 0, loops = 0;
    double deadline = now_ms() + 60000;
    while (finished < N_DRIVEN && now_ms() < deadline) {
        if (!readable(q, 1000)) continue;
        loops++;
        bgjob_state_event e;
        bool got = false;
        for (;;) {
            CHECK_OK(bgjob_event_queue_next(q, &e, &got));
            if (!got) break;
            driven *d = NULL;
            for (int i = 0; i < N_DRIVEN; i++)
                if (jobs[i].id == e.job_id) d = &jobs[i];
            if (d == NULL) {
                strangers++;
                continue;
            }
            history_add(&d->h, &e);
            if (e.state_info.reason != NULL || e.previous_state_info.reason != NULL) reasons++;
            if (bgjob_state_is_finished(e.state_info.state)) finished++;
            if (!react(d, &e)) {
                failed_reactions++;
                fprintf(stderr, "  (job %" PRIu64 ": reaction to %s->%s failed: %s)\n", d->id,
                        bgjob_state_name(e.previous_state_info.state),
                        bgjob_state_name(e.state_info.state), bgjob_last_error_message());
            }
        }
    }
    CHECK(finished == N_DRIVEN);
    CHECK(strangers == 0);
    CHECK(failed_reactions == 0);
    CHECK(reasons == 0);
    CHECK(loops >= 1);
    uint64_t ids[N_DRIVEN];
    for (int i = 0; i < N_DRIVEN; i++) ids[i] = jobs[i].id;
    CHECK_OK(bgjob_wait(ids, N_DRIVEN, BGJOB_WAIT_ALL, 20000, NULL, NULL));
    /* Everything was drained and nothing moves any more: the descriptor is quiet. */
    CHECK(!readable(q, 0));

    const move suspend_resume[] = {
        {BGJOB_STATE_NOT_STARTED, BGJOB_STATE_RUNNING},
        {BGJOB_STATE_RUNNING, BGJOB_STATE_SUSPENDING},
        {BGJOB_STATE_SUSPENDING, BGJOB_STATE_SUSPENDED},
        {BGJOB_STATE_SUSPENDED, BGJOB_STATE_RUNNING},
        {BGJOB_STATE_RUNNING, BGJOB_STATE_COMPLETED},
    };
    const move suspend_stop[] = {
        {BGJOB_STATE_NOT_STARTED, BGJOB_STATE_RUNNING},
        {BGJOB_STATE_RUNNING, BGJOB_STATE_SUSPENDING},
        {BGJOB_STATE_SUSPENDING, BGJOB_STATE_SUSPENDED},
        {BGJOB_STATE_SUSPENDED, BGJOB_STATE_STOPPING},
        {BGJOB_STATE_STOPPING, BGJOB_STATE_STOPPED},
    };
    const move input_twice[] = {
        {BGJOB_STATE_NOT_STARTED, BGJOB_STATE_RUNNING},
        {BGJOB_STATE_RUNNING, BGJOB_STATE_BLOCKED},
        {BGJOB_STATE_BLOCKED, BGJOB_STATE_RUNNING},
        {BGJOB_STATE_RUNNING, BGJOB_STATE_BLOCKED},
        {BGJOB_STATE_BLOCKED, BGJOB_STATE_RUNNING},
        {BGJOB_STATE_RUNNING, BGJOB_STATE_COMPLETED},
    };
    const move input_stop[] = {
        {BGJOB_STATE_NOT_STARTED, BGJOB_STATE_RUNNING},
        {BGJOB_STATE_RUNNING, BGJOB_STATE_BLOCKED},
        {BGJOB_STATE_BLOCKED, BGJOB_STATE_STOPPING},
        {BGJOB_STATE_STOPPING, BGJOB_STATE_STOPPED},
    };
    for (int i = 0; i < N_DRIVEN; i++) {
        driven *d = &jobs[i];
        switch (d->kind) {
        case SUSPEND_RESUME:
            CHECK(history_is(&d->h, suspend_resume, 5));
            CHECK(state_of(d->id) == BGJOB_STATE_COMPLETED);
            break;
        case SUSPEND_STOP:
            CHECK(history_is(&d->h, suspend_stop, 5));
            CHECK(state_of(d->id) == BGJOB_STATE_STOPPED);
            break;
        case INPUT_TWICE:
            CHECK(history_is(&d->h, input_twice, 6));
            CHECK(state_of(d->id) == BGJOB_STATE_COMPLETED);
            CHECK(atomic_load(&d->reads) == 2 && atomic_load(&d->read_failures) == 0);
            CHECK(strcmp(d->input[0], "ann") == 0 && strcmp(d->input[1], "bob") == 0);
            CHECK(d->blocked_seen == 2);
            break;
        case INPUT_STOP:
            CHECK(history_is(&d->h, input_stop, 4));
            CHECK(state_of(d->id) == BGJOB_STATE_STOPPED);
            CHECK(atomic_load(&d->reads) == 0 && atomic_load(&d->read_failures) == 1);
            CHECK(d->blocked_seen == 1);
            break;
        default:
            CHECK(false);
        }
        CHECK(d->prompt_mismatches == 0);
        CHECK(atomic_load(&d->checkpoint_errors) == 0);
        CHECK_OK(bgjob_remove(d->id, false));
        CHECK(atomic_load(&d->finalized) == 1);
    }
    printf("    %d jobs driven from %d poll wake-ups, every history exact\n", N_DRIVEN, loops);
    bgjob_event_queue_free(q);
    pool_close(pool);
}

static void test_misuse(void) {
    bgjob_event_queue *q = NULL;
    CHECK_STATUS(bgjob_event_queue_open(NULL, 3, &q), BGJOB_E_INVALID_ARGUMENT);
    CHECK(strstr(bgjob_last_error_message(), "ids is NULL") != NULL);
    CHECK_STATUS(bgjob_event_queue_open(NULL, 0, NULL), BGJOB_E_INVALID_ARGUMENT);
    CHECK(bgjob_event_queue_fd(NULL) == -1);
    bgjob_state_event e;
    bool got;
    CHECK_STATUS(bgjob_event_queue_next(NULL, &e, &got), BGJOB_E_INVALID_ARGUMENT);
    CHECK_OK(bgjob_event_queue_open(NULL, 0, &q));
    CHECK_STATUS(bgjob_event_queue_next(q, NULL, &got), BGJOB_E_INVALID_ARGUMENT);
    CHECK_STATUS(bgjob_event_queue_next(q, &e, NULL), BGJOB_E_INVALID_ARGUMENT);
    bgjob_event_queue_free(q);
    bgjob_event_queue_free(NULL);
}

static void test_repository_is_empty_at_the_end(void) { CHECK(repo_count() == 0); }

int main(void) {
    RUN_TEST(test_thousand_jobs_every_event_once_in_order);
    RUN_TEST(test_chosen_jobs_only);
    RUN_TEST(test_suspend_resume_and_input_driven_from_a_poll_loop);
    RUN_TEST(test_misuse);
    RUN_TEST(test_repository_is_empty_at_the_end);
    CHECK_OK(bgjob_shutdown(BGJOB_INFINITE));
    return check_summary("test_event_queue");
}
