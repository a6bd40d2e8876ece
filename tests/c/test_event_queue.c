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

static void test_chosen_jobs_only(void) {
    probe p;
    probe_init(&p, 60000);
    uint64_t a = start_job(NULL, work_write_two, NULL, NULL, NULL);
    uint64_t b = start_probe_job(NULL, work_coop, &p, NULL); /* runs until released */
    bgjob_event_queue *q = NULL;
    CHECK_OK(bgjob_event_queue_open(&b, 1, &q));
    finish_and_remove(a);
    atomic_store(&p.release, true);
    uint64_t ids[1] = {b};
    CHECK_OK(bgjob_wait(ids, 1, BGJOB_WAIT_ALL, 60000, NULL, NULL));
    bgjob_state_event e;
    bool got = true;
    int n = 0;
    while (q != NULL && bgjob_event_queue_next(q, &e, &got) == BGJOB_OK && got) {
        CHECK(e.job_id == b);
        n++;
    }
    /* b was running when the queue opened: its finish is there, a's events are not. */
    CHECK(n >= 1);
    finish_and_remove(b);
    bgjob_event_queue_free(q);
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
    RUN_TEST(test_misuse);
    RUN_TEST(test_repository_is_empty_at_the_end);
    CHECK_OK(bgjob_shutdown(BGJOB_INFINITE));
    return check_summary("test_event_queue");
}
