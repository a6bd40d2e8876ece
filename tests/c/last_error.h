/* CHECK_FAILS: a call fails with the status a test expects *and* leaves a message of its
 * own in bgjob_last_error_message(), not one an earlier call left. Shared by the misuse
 * tests (test_misuse.c, test_isolated_misuse.c). */
#ifndef BGJOB_TEST_LAST_ERROR_H
#define BGJOB_TEST_LAST_ERROR_H

#include "check.h"

#include <stdio.h>
#include <string.h>

/* An id that no test ever gets: its NO_SUCH_JOB message primes the last error, so that
 * a check can see that the call under test wrote a message of its own. */
#define MARKER_ID (UINT64_MAX - 7)

/* The primed message; per thread, as the last error is. */
static _Thread_local char last_error_marker[256];

static inline void prime_last_error(void) {
    bgjob_job_state st;
    bgjob_get_state(MARKER_ID, &st);
    snprintf(last_error_marker, sizeof last_error_marker, "%s", bgjob_last_error_message());
}

/* Whether the last error message is non-empty and was written after prime_last_error. */
static inline bool fresh_message(void) {
    const char *m = bgjob_last_error_message();
    return m != NULL && m[0] != '\0' && strcmp(m, last_error_marker) != 0;
}

/* The call fails with `want` and leaves a message of its own. */
#define CHECK_FAILS(expr, want)                                                         \
    do {                                                                                \
        prime_last_error();                                                             \
        CHECK_STATUS((expr), (want));                                                   \
        if (!fresh_message()) {                                                         \
            fprintf(stderr, "  FAIL %s (%s:%d): %s left no message of its own\n",      \
                    check_current, __FILE__, __LINE__, #expr);                          \
            check_failures++;                                                           \
        }                                                                               \
    } while (0)

#endif
