/* run_commands: several shell commands run at once as process jobs (PowerShell's
 * Start-Job), their state changes printed live as they happen, one Wait-Job over all of
 * them with a timeout, then each job's output (Receive-Job: stdout lines as output
 * records, stderr lines as error records) printed per job with its final state and
 * reason, and every job removed (Remove-Job).
 *
 * Build and run (from the repository root, after `make build`):
 *
 *   mkdir -p build/examples
 *   gcc -O1 -g -Wall -Wextra -Werror -std=c11 -Iinclude examples/c/run_commands.c \
 *       -o build/examples/run_commands \
 *       -L$PWD/target/release -Wl,-rpath,$PWD/target/release -lbgjob -pthread
 *   build/examples/run_commands
 *
 * Exits 0 when every command ended as expected (one of them is meant to fail), 1 otherwise.
 */
#define _POSIX_C_SOURCE 200809L
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "bgjob.h"

/* The whole run must be over by then; the commands take well under a second. */
#define WAIT_TIMEOUT_MS 10000
/* How often the jobs still running are shown while we wait. */
#define PROGRESS_MS 250

/* One command to run, what we expect of it, and what its callbacks saw. */
struct command {
    const char *name;
    const char *argv[4];
    size_t argc;
    bgjob_job_state expected;
    uint64_t id;
    int finished_changes; /* how many changes to a finished state the callback saw */
};

static struct command commands[] = {
    {"uname", {"uname", "-a"}, 2, BGJOB_STATE_COMPLETED, 0, 0},
    {"list-root", {"ls", "-l", "/"}, 3, BGJOB_STATE_COMPLETED, 0, 0},
    {"steps", {"sh", "-c", "for i in 1 2 3; do echo step $i; sleep 0.2; done"}, 3,
     BGJOB_STATE_COMPLETED, 0, 0},
    /* Writes to stderr but exits 0: error records do not fail a job, only the exit code does. */
    {"warns", {"sh", "-c", "echo checking config; echo \"no config file, using defaults\" >&2"}, 3,
     BGJOB_STATE_COMPLETED, 0, 0},
    /* Meant to fail: ls exits non-zero, so the job ends Failed ("exited with code N"). */
    {"list-missing", {"ls", "/nonexistent"}, 2, BGJOB_STATE_FAILED, 0, 0},
};
#define NCOMMANDS (sizeof commands / sizeof commands[0])

/* Callbacks run on bgjob's threads, possibly several at once (one per job): the lock
 * keeps their lines whole and guards `finished_changes`. */
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static struct timespec t0;

static double elapsed_s(void) {
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (double)(now.tv_sec - t0.tv_sec) + (double)(now.tv_nsec - t0.tv_nsec) / 1e9;
}

/* Prints a failed call's status and bgjob's explanation; returns false for the caller. */
static bool failed(const char *what, bgjob_status st) {
    fprintf(stderr, "run_commands: %s: %s: %s\n", what, bgjob_status_name(st),
            bgjob_last_error_message());
    return false;
}

/* A job's state-change callback (registered on its spec, so no change is missed): one
 * line per change, as it happens. */
static void on_state_changed(const bgjob_state_event *e, void *user_data) {
    struct command *c = user_data;
    pthread_mutex_lock(&lock);
    printf("[%5.2fs] job %llu %-12s %-10s -> %s%s%s\n", elapsed_s(),
           (unsigned long long)e->job_id, c->name, bgjob_state_name(e->previous_state_info.state),
           bgjob_state_name(e->state_info.state), e->state_info.reason ? "  reason: " : "",
           e->state_info.reason ? e->state_info.reason : "");
    fflush(stdout);
    if (bgjob_state_is_finished(e->state_info.state)) c->finished_changes++;
    pthread_mutex_unlock(&lock);
}

/* Start-Job for one command: a spec with argv (no work function) makes a process job. */
static bool start_command(struct command *c) {
    bgjob_spec *spec;
    bgjob_status st = bgjob_spec_new(&spec);
    if (st != BGJOB_OK) return failed("bgjob_spec_new", st);
    if ((st = bgjob_spec_set_name(spec, c->name)) != BGJOB_OK ||
        (st = bgjob_spec_set_argv(spec, c->argv, c->argc)) != BGJOB_OK ||
        /* Same words whatever the user's locale, so the output reads the same everywhere. */
        (st = bgjob_spec_set_env(spec, "LC_ALL", "C")) != BGJOB_OK ||
        /* `commands` is static: nothing to free, so no finalizer. */
        (st = bgjob_spec_on_state_changed(spec, on_state_changed, c, NULL)) != BGJOB_OK) {
        bgjob_spec_free(spec);
        return failed("building the spec", st);
    }
    /* bgjob_start consumes the spec whether it succeeds or not. */
    if ((st = bgjob_start(spec, &c->id)) != BGJOB_OK) return failed("bgjob_start", st);
    return true;
}

/* Progress while waiting: how many jobs are done, and for each one still running how
 * many lines it has written so far. Receive-Job -Keep copies the records and leaves
 * them, so the receive after the end still gets every one. The line is built first and
 * printed under the lock after: no bgjob call is made while holding a lock the
 * callbacks take. */
static bool show_running(const uint64_t *ids, size_t count, size_t ndone) {
    char line[1024];
    size_t used = 0;
    used += (size_t)snprintf(line, sizeof line, "waiting: %zu/%zu finished", ndone, count);
    for (size_t i = 0; i < count && used < sizeof line; i++) {
        bgjob_job_state state;
        bgjob_records *records;
        bgjob_status st = bgjob_get_state(ids[i], &state);
        if (st != BGJOB_OK) return failed("bgjob_get_state", st);
        if (bgjob_state_is_finished(state)) continue;
        if ((st = bgjob_receive(ids[i], BGJOB_RECEIVE_KEEP, 0, 0, &records)) != BGJOB_OK)
            return failed("bgjob_receive", st);
        size_t n = bgjob_records_count(records);
        const bgjob_record *last = n ? bgjob_records_get(records, n - 1) : NULL;
        const char *text = last && last->data ? (const char *)last->data : NULL;
        used += (size_t)snprintf(line + used, sizeof line - used, "; %s: %zu line%s so far%s%s%s",
                                 commands[i].name, n, n == 1 ? "" : "s", text ? " (last: \"" : "",
                                 text ? text : "", text ? "\")" : "");
        bgjob_records_free(records);
    }
    pthread_mutex_lock(&lock);
    printf("[%5.2fs] %s\n", elapsed_s(), line);
    fflush(stdout);
    pthread_mutex_unlock(&lock);
    return true;
}

/* Receive-Job and Get-Job for one finished job: prints its state, reason, command and
 * records, and checks them against what the command should have done. */
static bool report(struct command *c) {
    bool ok = true;
    bgjob_job_info *info;
    bgjob_status st = bgjob_get_job(c->id, &info);
    if (st != BGJOB_OK) return failed("bgjob_get_job", st);
    bgjob_job_state state = bgjob_job_info_state(info);
    const char *reason = bgjob_job_info_reason(info);
    double secs = (double)(bgjob_job_info_end_time_ns(info) - bgjob_job_info_begin_time_ns(info)) / 1e9;
    printf("\n== job %llu %s: %s%s%s  (%.2fs)\n   $ %s\n", (unsigned long long)c->id, c->name,
           bgjob_state_name(state), reason ? ", reason: " : "", reason ? reason : "", secs,
           bgjob_job_info_command(info));
    if (state != c->expected) {
        fprintf(stderr, "run_commands: %s ended %s, expected %s\n", c->name, bgjob_state_name(state),
                bgjob_state_name(c->expected));
        ok = false;
    }
    if (state == BGJOB_STATE_FAILED && (reason == NULL || strstr(reason, "exited with code") == NULL)) {
        fprintf(stderr, "run_commands: %s failed for an unexpected reason\n", c->name);
        ok = false;
    }
    bgjob_job_info_free(info);

    /* Everything the process wrote, in arrival order; a consuming receive hands each
     * record out once. The job is finished, so no wait is needed: all is there. */
    bgjob_records *records;
    if ((st = bgjob_receive(c->id, 0, 0, 0, &records)) != BGJOB_OK) return failed("bgjob_receive", st);
    size_t n = bgjob_records_count(records), outputs = 0, errors = 0;
    for (size_t i = 0; i < n; i++) {
        const bgjob_record *r = bgjob_records_get(records, i);
        const char *text = r->data ? (const char *)r->data : "";
        if (r->stream == BGJOB_STREAM_OUTPUT) {
            printf("   out | %s\n", text);
            outputs++;
        } else {
            printf("   %s | %s\n", r->stream == BGJOB_STREAM_ERROR ? "err" : bgjob_stream_name(r->stream), text);
            errors += r->stream == BGJOB_STREAM_ERROR;
        }
    }
    bgjob_records_free(records);
    printf("   (%zu output, %zu error records)\n", outputs, errors);

    /* Sanity checks of what each command must have written. */
    if (strcmp(c->name, "steps") == 0 && outputs != 3) ok = false;
    if (strcmp(c->name, "warns") == 0 && (outputs != 1 || errors != 1)) ok = false;
    if (strcmp(c->name, "list-missing") == 0 && errors == 0) ok = false;
    if (strcmp(c->name, "uname") == 0 && outputs != 1) ok = false;
    if (!ok) fprintf(stderr, "run_commands: %s did not go as expected\n", c->name);
    return ok;
}

int main(void) {
    bool ok = true;
    size_t started = 0;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    printf("bgjob %s: running %zu commands as process jobs\n", bgjob_version(), NCOMMANDS);
    fflush(stdout);

    /* Start them all first: they run at the same time. Callback lines may already appear. */
    for (size_t i = 0; i < NCOMMANDS && ok; i++) {
        ok = start_command(&commands[i]);
        started += ok;
    }

    /* Wait-Job -Timeout: all of them, at most WAIT_TIMEOUT_MS in total, in slices of
     * PROGRESS_MS so that the jobs still running can be shown meanwhile. Every callback
     * of the changes waited for has returned once a wait says a job is done. */
    uint64_t ids[NCOMMANDS], done[NCOMMANDS];
    size_t ndone = 0;
    for (size_t i = 0; i < started; i++) ids[i] = commands[i].id;
    for (int64_t waited = 0; started > 0; waited += PROGRESS_MS) {
        int64_t slice = WAIT_TIMEOUT_MS - waited < PROGRESS_MS ? WAIT_TIMEOUT_MS - waited : PROGRESS_MS;
        bgjob_status st = bgjob_wait(ids, started, BGJOB_WAIT_ALL, slice, done, &ndone);
        if (st == BGJOB_OK) break;
        if (st != BGJOB_E_TIMEOUT) {
            ok = failed("bgjob_wait", st);
            break;
        }
        if (waited + slice >= WAIT_TIMEOUT_MS) {
            fprintf(stderr, "run_commands: only %zu of %zu jobs finished in %d ms; stopping the rest\n",
                    ndone, started, WAIT_TIMEOUT_MS);
            /* Stop-Job: SIGTERM, then SIGKILL after the grace; no process is left behind. */
            for (size_t i = 0; i < started; i++) {
                bgjob_status sst = bgjob_stop(ids[i], BGJOB_INFINITE);
                if (sst != BGJOB_OK) failed("bgjob_stop", sst);
            }
            ok = false;
            break;
        }
        if (!show_running(ids, started, ndone)) ok = false;
    }
    if (ok) {
        pthread_mutex_lock(&lock);
        printf("[%5.2fs] Wait-Job returned: all %zu jobs finished\n", elapsed_s(), ndone);
        pthread_mutex_unlock(&lock);
    }

    for (size_t i = 0; i < started; i++) {
        struct command *c = &commands[i];
        if (!report(c)) ok = false;
        /* Each change is called back exactly once: one change to a finished state. */
        pthread_mutex_lock(&lock);
        int seen = c->finished_changes;
        pthread_mutex_unlock(&lock);
        if (seen != 1) {
            fprintf(stderr, "run_commands: %s: %d finished callbacks, expected 1\n", c->name, seen);
            ok = false;
        }
        /* Remove-Job: frees the job and what is left of its records. */
        bgjob_status st = bgjob_remove(c->id, false);
        if (st != BGJOB_OK) ok = failed("bgjob_remove", st);
    }

    /* No bgjob thread outlives main: leak checkers (valgrind) then see nothing left. */
    bgjob_status st = bgjob_shutdown(BGJOB_INFINITE);
    if (st != BGJOB_OK) ok = failed("bgjob_shutdown", st);

    printf("\n%s\n", ok ? "run_commands: every command ended as expected"
                        : "run_commands: something went wrong (see above)");
    return ok ? 0 : 1;
}
