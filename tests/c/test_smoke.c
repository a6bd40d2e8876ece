/* Smoke test: a job writing "2" completes and receive gives "2", then nothing. */
#include "check.h"

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
    CHECK(id != 0);
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
