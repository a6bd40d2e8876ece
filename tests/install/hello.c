/* A program built against an *installed* bgjob, as a user's project would build it: by
 * tests/install/run.sh with `pkg-config --cflags --libs bgjob`, and by the CMake project
 * next to it with find_package(bgjob). It checks that the header and the library it runs
 * against are the same version, runs one job, and prints what the job wrote. */
#include <stdio.h>
#include <string.h>

#include <bgjob.h>

static int32_t answer(bgjob_context *ctx, void *user_data) {
    (void)user_data;
    return bgjob_context_write_text(ctx, BGJOB_STREAM_OUTPUT, "42") == BGJOB_OK ? 0 : 1;
}

static int fail(const char *what) {
    fprintf(stderr, "hello: %s: %s\n", what, bgjob_last_error_message());
    return 1;
}

int main(void) {
    if (strcmp(bgjob_version(), BGJOB_VERSION_STRING) != 0) {
        fprintf(stderr, "hello: header %s, library %s\n", BGJOB_VERSION_STRING, bgjob_version());
        return 1;
    }
    uint64_t id;
    if (bgjob_start_fn(answer, NULL, NULL, NULL, &id) != BGJOB_OK) return fail("start");
    if (bgjob_wait(&id, 1, BGJOB_WAIT_ALL, 10000, NULL, NULL) != BGJOB_OK) return fail("wait");
    bgjob_job_state state;
    if (bgjob_get_state(id, &state) != BGJOB_OK) return fail("state");
    bgjob_records *records;
    if (bgjob_receive(id, 0, 0, 0, &records) != BGJOB_OK) return fail("receive");
    const bgjob_record *first = bgjob_records_count(records) == 1 ? bgjob_records_get(records, 0) : NULL;
    printf("bgjob %s: job %s, output %s\n", bgjob_version(), bgjob_state_name(state),
           first ? (const char *)first->data : "(none)");
    bgjob_records_free(records);
    if (bgjob_remove(id, false) != BGJOB_OK) return fail("remove");
    return bgjob_shutdown(10000) == BGJOB_OK ? 0 : fail("shutdown");
}
