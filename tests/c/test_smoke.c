/* Smoke test: a job writing "2" completes and receive gives "2", then nothing. */
#include "check.h"

/* The numbers are PowerShell's JobState and bgjob's fixed status codes: a C host may store
 * them, so a renumbering is a break this test must catch at compile time. */
_Static_assert(BGJOB_STATE_NOT_STARTED == 0 && BGJOB_STATE_RUNNING == 1 &&
                   BGJOB_STATE_COMPLETED == 2 && BGJOB_STATE_FAILED == 3 &&
                   BGJOB_STATE_STOPPED == 4 && BGJOB_STATE_BLOCKED == 5 &&
                   BGJOB_STATE_SUSPENDED == 6 && BGJOB_STATE_DISCONNECTED == 7 &&
                   BGJOB_STATE_SUSPENDING == 8 && BGJOB_STATE_STOPPING == 9 &&
                   BGJOB_STATE_AT_BREAKPOINT == 10,
               "job states keep PowerShell's numbers");
_Static_assert(BGJOB_OK == 0 && BGJOB_E_INVALID_ARGUMENT == 1 && BGJOB_E_NO_SUCH_JOB == 2 &&
                   BGJOB_E_NOT_FINISHED == 3 && BGJOB_E_CHILD_JOB == 4 &&
                   BGJOB_E_TIMEOUT == 5 && BGJOB_E_INVALID_STATE == 6 &&
                   BGJOB_E_SHUT_DOWN == 7 && BGJOB_E_WOULD_DEADLOCK == 8 &&
                   BGJOB_E_ALREADY_INITIALIZED == 9 && BGJOB_E_BUFFER_TOO_SMALL == 10 &&
                   BGJOB_E_PANIC == 11 && BGJOB_E_BLOCKED == 12 && BGJOB_E_SYSTEM == 13,
               "status codes are fixed");

static int32_t write_two(bgjob_context *ctx, void *user_data) {
    (void)user_data;
    return (int32_t)bgjob_context_write_text(ctx, BGJOB_STREAM_OUTPUT, "2");
}

static void test_write_two(void) {
    bgjob_spec *spec = NULL;
    CHECK_OK(bgjob_spec_new(&spec));
    CHECK_OK(bgjob_spec_set_work(spec, write_two, NULL, NULL));
    uint64_t id = 0;
    CHECK_OK(bgjob_start(spec, &id));
    /* Ids come from one process-wide counter starting at 1: this is the first job. */
    CHECK(id == 1);
    CHECK_OK(bgjob_wait(&id, 1, BGJOB_WAIT_ALL, BGJOB_INFINITE, NULL, NULL));
    bgjob_job_state st = 99;
    CHECK_OK(bgjob_get_state(id, &st));
    CHECK(st == BGJOB_STATE_COMPLETED);
    bgjob_records *recs = NULL;
    CHECK_OK(bgjob_receive(id, 0, 0, 0, &recs));
    CHECK(bgjob_records_count(recs) == 1);
    const bgjob_record *r = bgjob_records_get(recs, 0);
    CHECK(r != NULL && r->len == 1 && strcmp((const char *)r->data, "2") == 0);
    CHECK(r != NULL && r->stream == BGJOB_STREAM_OUTPUT && r->job_id == id);
    bgjob_records_free(recs);
    CHECK_OK(bgjob_receive(id, 0, 0, 0, &recs));
    CHECK(bgjob_records_count(recs) == 0);
    bgjob_records_free(recs);
    CHECK_OK(bgjob_remove(id, false));
    CHECK_STATUS(bgjob_get_state(id, &st), BGJOB_E_NO_SUCH_JOB);
}

int main(void) {
    RUN_TEST(test_write_two);
    CHECK_OK(bgjob_shutdown(BGJOB_INFINITE));
    return check_summary("test_smoke");
}
