/* bgjob demo: start real background jobs from C, watch their state changes and progress
 * live, stop one, then print a Get-Job style table and every job's results.
 *
 *   make demo
 */
#define _POSIX_C_SOURCE 200809L
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bgjob.h"

#define NJOBS 5

static pthread_mutex_t print_lock = PTHREAD_MUTEX_INITIALIZER;

static void sleep_ms(long ms) {
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static void die(const char *what, bgjob_status st) {
    fprintf(stderr, "%s failed: %s: %s\n", what, bgjob_status_name(st), bgjob_last_error_message());
    exit(1);
}

/* Repository-wide callback: every state change of every job, as it happens. */
static void on_change(const bgjob_state_event *e, void *user_data) {
    (void)user_data;
    pthread_mutex_lock(&print_lock);
    printf("  [event] job %-3llu %-10s -> %-10s%s%s\n", (unsigned long long)e->job_id,
           bgjob_state_name(e->previous_state_info.state), bgjob_state_name(e->state_info.state),
           e->state_info.reason ? "  reason: " : "", e->state_info.reason ? e->state_info.reason : "");
    pthread_mutex_unlock(&print_lock);
    fflush(stdout);
}

/* Counts primes below `limit`, reporting progress as it goes; the count is its output. */
static int32_t count_primes(bgjob_context *ctx, void *user_data) {
    long limit = (long)(intptr_t)user_data, found = 0;
    for (long n = 2; n < limit; n++) {
        int prime = 1;
        for (long d = 2; d * d <= n; d++)
            if (n % d == 0) { prime = 0; break; }
        found += prime;
        if (n % (limit / 10) == 0) {
            char status[64];
            snprintf(status, sizeof status, "%ld primes so far", found);
            bgjob_context_progress(ctx, (int32_t)(n * 100 / limit), "Counting primes", status);
            if (bgjob_context_stop_requested(ctx)) return 0;
            sleep_ms(120); /* make the demo watchable */
        }
    }
    char out[64];
    snprintf(out, sizeof out, "%ld primes below %ld", found, limit);
    bgjob_context_write_text(ctx, BGJOB_STREAM_OUTPUT, out);
    return 0;
}

/* Writes a warning and an error record but returns 0: it still Completes. */
static int32_t noisy(bgjob_context *ctx, void *user_data) {
    (void)user_data;
    bgjob_context_write_text(ctx, BGJOB_STREAM_WARNING, "disk is 91% full");
    bgjob_context_write_text(ctx, BGJOB_STREAM_ERROR, "could not read /etc/shadow (skipped)");
    bgjob_context_write_text(ctx, BGJOB_STREAM_OUTPUT, "scanned 42 files");
    return 0;
}

/* Fails with a reason. */
static int32_t failing(bgjob_context *ctx, void *user_data) {
    (void)user_data;
    sleep_ms(300);
    bgjob_context_fail(ctx, "connection refused by db.example:5432");
    return 1;
}

/* Runs until stopped. */
static int32_t forever(bgjob_context *ctx, void *user_data) {
    (void)user_data;
    bgjob_context_set_status_message(ctx, "polling");
    while (!bgjob_context_stop_requested(ctx)) sleep_ms(20);
    bgjob_context_write_text(ctx, BGJOB_STREAM_VERBOSE, "stop seen, cleaning up");
    return 0;
}

static uint64_t start(const char *name, const char *command, bgjob_work_fn fn, void *data) {
    bgjob_spec *spec;
    bgjob_status st;
    if ((st = bgjob_spec_new(&spec))) die("bgjob_spec_new", st);
    bgjob_spec_set_name(spec, name);
    bgjob_spec_set_command(spec, command);
    bgjob_spec_set_work(spec, fn, data, NULL);
    uint64_t id;
    if ((st = bgjob_start(spec, &id))) die("bgjob_start", st);
    return id;
}

static void print_progress(const uint64_t *ids, int n) {
    for (int i = 0; i < n; i++) {
        bgjob_job_info *info;
        if (bgjob_get_job(ids[i], &info) != BGJOB_OK) continue;
        int32_t pct;
        const char *activity, *status;
        if (bgjob_job_info_progress(info, &pct, &activity, &status) &&
            !bgjob_state_is_finished(bgjob_job_info_state(info))) {
            char bar[21];
            int filled = pct < 0 ? 0 : pct / 5;
            for (int k = 0; k < 20; k++) bar[k] = k < filled ? '#' : '.';
            bar[20] = 0;
            pthread_mutex_lock(&print_lock);
            printf("  [progress] %-14s [%s] %3d%%  %s\n", bgjob_job_info_name(info), bar, pct, status);
            pthread_mutex_unlock(&print_lock);
        }
        bgjob_job_info_free(info);
    }
    fflush(stdout);
}

int main(void) {
    printf("bgjob %s demo: starting %d background jobs\n\n", bgjob_version(), NJOBS);
    uint64_t reg;
    bgjob_on_any_state_changed(on_change, NULL, NULL, &reg);

    uint64_t ids[NJOBS];
    ids[0] = start("primes-small", "count_primes 200000", count_primes, (void *)(intptr_t)200000);
    ids[1] = start("primes-large", "count_primes 600000", count_primes, (void *)(intptr_t)600000);
    ids[2] = start("scan-files", "noisy", noisy, NULL);
    ids[3] = start("db-sync", "failing", failing, NULL);
    ids[4] = start("poller", "forever", forever, NULL);

    /* Watch until every job but the poller is done, showing progress twice a second. */
    for (;;) {
        size_t done = 0;
        bgjob_status st = bgjob_wait(ids, NJOBS - 1, BGJOB_WAIT_ALL, 500, NULL, &done);
        print_progress(ids, NJOBS - 1);
        if (st == BGJOB_OK) break;
        if (st != BGJOB_E_TIMEOUT) die("bgjob_wait", st);
    }
    printf("\n  stopping the poller (Stop-Job)...\n");
    bgjob_status st = bgjob_stop(ids[4], 5000);
    if (st) die("bgjob_stop", st);

    /* Get-Job */
    printf("\n%-4s %-14s %-14s %-10s %-12s %-10s %s\n", "Id", "Name", "PSJobTypeName", "State",
           "HasMoreData", "Location", "Command");
    printf("%-4s %-14s %-14s %-10s %-12s %-10s %s\n", "--", "----", "-------------", "-----",
           "-----------", "--------", "-------");
    bgjob_job_list *list;
    if ((st = bgjob_get_jobs(NULL, &list))) die("bgjob_get_jobs", st);
    for (size_t i = 0; i < bgjob_job_list_count(list); i++) {
        bgjob_job_info *info;
        if (bgjob_get_job(bgjob_job_list_get(list, i), &info) != BGJOB_OK) continue;
        printf("%-4llu %-14s %-14s %-10s %-12s %-10s %s\n",
               (unsigned long long)bgjob_job_info_id(info), bgjob_job_info_name(info),
               bgjob_job_info_type_name(info), bgjob_state_name(bgjob_job_info_state(info)),
               bgjob_job_info_has_more_data(info) ? "True" : "False",
               bgjob_job_info_location(info), bgjob_job_info_command(info));
        bgjob_job_info_free(info);
    }
    bgjob_job_list_free(list);

    /* Receive-Job, then Remove-Job */
    printf("\nResults (Receive-Job):\n");
    for (int i = 0; i < NJOBS; i++) {
        bgjob_records *recs;
        if ((st = bgjob_receive(ids[i], 0, 0, 0, &recs))) die("bgjob_receive", st);
        for (size_t k = 0; k < bgjob_records_count(recs); k++) {
            const bgjob_record *r = bgjob_records_get(recs, k);
            if (r->stream == BGJOB_STREAM_PROGRESS) continue;
            printf("  job %llu %-11s %s\n", (unsigned long long)r->job_id, bgjob_stream_name(r->stream),
                   (const char *)r->data);
        }
        bgjob_records_free(recs);
        if ((st = bgjob_remove(ids[i], false))) die("bgjob_remove", st);
    }
    bgjob_unregister(0, reg);
    printf("\nAll jobs removed. Done.\n");
    return 0;
}
