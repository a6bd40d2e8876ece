/* W8 (processes), the C side: start and reap N `true` processes
 *   - through bgjob process jobs (bgjob_start with argv, bgjob_wait, bgjob_remove),
 *   - through a plain posix_spawn + waitpid loop (the floor: no job model at all),
 * both "all at once" (start N, then reap N) and, for posix_spawn, one at a time.
 * Prints one line per system: `<name> <median microseconds per process>`; the median is
 * over ROUNDS rounds of N processes. benches/run.py turns the lines into the table. */
#define _GNU_SOURCE
#include <bgjob.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>

extern char **environ;

#define ROUNDS 5

static double now_us(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e6 + ts.tv_nsec / 1e3;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(double *v, int n) {
    qsort(v, n, sizeof *v, cmp_double);
    return v[n / 2];
}

static void die(const char *what, bgjob_status st) {
    fprintf(stderr, "%s: %s (%s)\n", what, bgjob_status_name(st), bgjob_last_error_message());
    exit(1);
}

static double round_bgjob(int n, uint64_t *ids) {
    static const char *const argv[] = {"true"};
    double t0 = now_us();
    for (int i = 0; i < n; i++) {
        bgjob_spec *spec;
        bgjob_status st = bgjob_spec_new(&spec);
        if (st == BGJOB_OK) st = bgjob_spec_set_argv(spec, argv, 1);
        if (st != BGJOB_OK) die("spec", st);
        st = bgjob_start(spec, &ids[i]);
        if (st != BGJOB_OK) die("bgjob_start", st);
    }
    size_t ndone = 0;
    bgjob_status st = bgjob_wait(ids, (size_t)n, BGJOB_WAIT_ALL, BGJOB_INFINITE, NULL, &ndone);
    if (st != BGJOB_OK || ndone != (size_t)n) die("bgjob_wait", st);
    for (int i = 0; i < n; i++) {
        bgjob_job_state s;
        if (bgjob_get_state(ids[i], &s) != BGJOB_OK || s != BGJOB_STATE_COMPLETED) {
            fprintf(stderr, "job %llu did not complete\n", (unsigned long long)ids[i]);
            exit(1);
        }
        st = bgjob_remove(ids[i], false);
        if (st != BGJOB_OK) die("bgjob_remove", st);
    }
    return (now_us() - t0) / n;
}

static pid_t spawn_true(void) {
    static char *const argv[] = {"true", NULL};
    pid_t pid;
    int rc = posix_spawnp(&pid, "true", NULL, NULL, argv, environ);
    if (rc != 0) {
        fprintf(stderr, "posix_spawnp: %s\n", strerror(rc));
        exit(1);
    }
    return pid;
}

static void reap(pid_t pid) {
    int status;
    if (waitpid(pid, &status, 0) != pid || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        fprintf(stderr, "true failed\n");
        exit(1);
    }
}

static double round_spawn_batch(int n, pid_t *pids) {
    double t0 = now_us();
    for (int i = 0; i < n; i++) pids[i] = spawn_true();
    for (int i = 0; i < n; i++) reap(pids[i]);
    return (now_us() - t0) / n;
}

static double round_spawn_serial(int n) {
    double t0 = now_us();
    for (int i = 0; i < n; i++) reap(spawn_true());
    return (now_us() - t0) / n;
}

int main(int argc, char **argv) {
    int n = argc > 1 ? atoi(argv[1]) : 1000;
    if (n <= 0) n = 1000;
    uint64_t *ids = calloc((size_t)n, sizeof *ids);
    pid_t *pids = calloc((size_t)n, sizeof *pids);
    double b[ROUNDS], p[ROUNDS], s[ROUNDS];
    round_bgjob(n / 10 + 1, ids); /* warm-up: the pool and the reactor exist */
    /* Interleaved rounds, so a slow moment of the machine hits every system alike. */
    for (int r = 0; r < ROUNDS; r++) {
        b[r] = round_bgjob(n, ids);
        p[r] = round_spawn_batch(n, pids);
        s[r] = round_spawn_serial(n);
    }
    printf("bgjob_c %.2f\n", median(b, ROUNDS));
    printf("posix_spawn_batch %.2f\n", median(p, ROUNDS));
    printf("posix_spawn_serial %.2f\n", median(s, ROUNDS));
    bgjob_shutdown(10000);
    free(ids);
    free(pids);
    return 0;
}
