/* Reduced load tests for `make test`: each takes a few seconds at most on a 2-core machine
 * and prints what it did.
 *
 * 1. test_default_pool_shutdown_races / test_pool_shutdown_races: 10,000 jobs started by two
 *    threads while a third shuts the pool down, five times each: for the default pool
 *    (bgjob_shutdown; one process can shut it down only once, so each round runs in a
 *    forked child) and for a private pool (bgjob_pool_shutdown). Every start succeeds or
 *    fails with BGJOB_E_SHUT_DOWN, every accepted job ends (Completed or Stopped), every
 *    finalizer runs exactly once, nothing hangs.
 * 2. test_pool_create_destroy_cycles: 1,000 pools created, used and destroyed (shut down
 *    and freed, or freed while a job runs and another waits): the process's thread count
 *    (/proc/self/task) comes back to where it started and every finalizer ran once.
 * 3. test_million_jobs_flat_memory: 1,000,000 jobs started (bgjob_start_fn), waited for,
 *    received and removed in batches of 10,000: the resident set at the end is within 10%
 *    of the one after the first batch (malloc settings: see main).
 *
 * BGJOB_SANITIZE (valgrind) scales every count down. Sleeps only make work take time;
 * synchronisation is a bgjob wait, a latch, or a bounded poll. */
#define _GNU_SOURCE /* pipe2 */
#include "util.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <malloc.h>
#include <poll.h>
#include <signal.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

/* Waits that should end at once get this bound: a hang is a failed check, not a stuck run. */
#define BOUND_MS 60000L

static bool sanitize;

/* ===== small helpers ===================================================================== */


/* Bounded poll until the thread count is `want`: a thread that exited (even one that was
 * joined) can still be listed in /proc for a moment. Returns the last count seen. */
static int wait_thread_count(int want, long timeout_ms) {
    double deadline = now_ms() + (double)timeout_ms;
    int n;
    while ((n = thread_count()) != want && now_ms() < deadline) sleep_ms(1);
    return n;
}

/* Resident set size in KiB (/proc/self/statm, second field, in pages). */
static long rss_kib(void) {
    FILE *f = fopen("/proc/self/statm", "r");
    if (f == NULL) return -1;
    long size = 0, resident = -1;
    if (fscanf(f, "%ld %ld", &size, &resident) != 2) resident = -1;
    fclose(f);
    return resident < 0 ? -1 : resident * (sysconf(_SC_PAGESIZE) / 1024);
}

/* ===== 1. shutdown racing 10,000 starts ================================================== */

#define RACE_JOBS 10000
#define STARTERS 2

typedef struct race_job {
    atomic_int runs, finals;
    bool slow; /* set before the start */
    uint64_t id;
    bgjob_status st;
} race_job;

typedef struct starter {
    const bgjob_pool *pool; /* NULL: the default pool */
    race_job *jobs;
    size_t n;
    latch *progress;
    long ok, shut, other;
    bool ok_after_shut;
} starter;

static int32_t race_work(bgjob_context *ctx, void *user_data) {
    race_job *j = user_data;
    atomic_fetch_add(&j->runs, 1);
    /* A few jobs are still running when the shutdown comes: they see the stop request. */
    if (j->slow) {
        double deadline = now_ms() + 5000;
        while (!bgjob_context_stop_requested(ctx) && now_ms() < deadline) sleep_ms(1);
    }
    return 0;
}

static void race_finalize(void *user_data) {
    atomic_fetch_add(&((race_job *)user_data)->finals, 1);
}

/* Starts its share of jobs, whatever happens; after the first BGJOB_E_SHUT_DOWN, none may
 * succeed. */
static void *starter_main(void *arg) {
    starter *s = arg;
    bool shut_seen = false;
    for (size_t i = 0; i < s->n; i++) {
        race_job *j = &s->jobs[i];
        uint64_t id = 0;
        j->slow = i % 4096 == 2000;
        bgjob_status st = bgjob_start_fn(race_work, j, race_finalize, s->pool, &id);
        j->st = st;
        if (st == BGJOB_OK) {
            j->id = id;
            s->ok++;
            if (shut_seen) s->ok_after_shut = true;
        } else if (st == BGJOB_E_SHUT_DOWN) {
            s->shut++;
            shut_seen = true;
        } else {
            s->other++;
        }
        if (i % 100 == 99) latch_bump(s->progress);
    }
    return NULL;
}

typedef struct shutter {
    const bgjob_pool *pool;
    latch *progress;
    int after;
    bgjob_status st;
} shutter;

static void *shutter_main(void *arg) {
    shutter *s = arg;
    latch_wait(s->progress, s->after, BOUND_MS);
    s->st = s->pool ? bgjob_pool_shutdown(s->pool, BOUND_MS) : bgjob_shutdown(BOUND_MS);
    return NULL;
}

typedef struct race_result {
    long ok, shut, completed, stopped, never_ran;
    double ms;
} race_result;

/* One round: RACE_JOBS starts by STARTERS threads on `pool` (NULL: the default pool), shut
 * down once about half of them were made. Checks everything; fills `out`. */
static void race_round(const bgjob_pool *pool, int jobs, race_result *out) {
    race_job *all = calloc((size_t)jobs, sizeof *all);
    CHECK(all != NULL);
    if (all == NULL) return;
    latch progress;
    latch_init(&progress);
    starter s[STARTERS];
    pthread_t th[STARTERS], sth;
    int per = jobs / STARTERS;
    double t0 = now_ms();
    /* About half the starts before the shutdown (a tenth under valgrind, where a woken
     * thread takes long enough for the starters to finish first otherwise). */
    shutter sh = {.pool = pool, .progress = &progress, .after = jobs / (sanitize ? 10 : 2) / 100};
    CHECK(pthread_create(&sth, NULL, shutter_main, &sh) == 0);
    for (int i = 0; i < STARTERS; i++) {
        s[i] = (starter){.pool = pool, .jobs = all + (size_t)i * (size_t)per, .n = (size_t)per,
                         .progress = &progress};
        CHECK(pthread_create(&th[i], NULL, starter_main, &s[i]) == 0);
    }
    for (int i = 0; i < STARTERS; i++) pthread_join(th[i], NULL);
    pthread_join(sth, NULL);
    CHECK(sh.st == BGJOB_OK);
    race_result r = {0};
    uint64_t *ids = calloc((size_t)jobs, sizeof *ids);
    size_t n = 0;
    for (int i = 0; i < STARTERS; i++) {
        CHECK(s[i].other == 0);
        CHECK(!s[i].ok_after_shut);
        r.ok += s[i].ok;
        r.shut += s[i].shut;
    }
    for (int k = 0; k < jobs; k++)
        if (all[k].st == BGJOB_OK) ids[n++] = all[k].id;
    CHECK_OK(bgjob_wait(ids, n, BGJOB_WAIT_ALL, BOUND_MS, NULL, NULL));
    int bad = 0;
    for (int k = 0; k < jobs; k++) {
        race_job *j = &all[k];
        int runs = atomic_load(&j->runs);
        bad += atomic_load(&j->finals) != 1 || runs > 1;
        if (j->st != BGJOB_OK) {
            bad += runs != 0;
            continue;
        }
        bgjob_job_state st = state_of(j->id);
        r.completed += st == BGJOB_STATE_COMPLETED;
        r.stopped += st == BGJOB_STATE_STOPPED;
        r.never_ran += runs == 0;
        bad += !(st == BGJOB_STATE_COMPLETED || st == BGJOB_STATE_STOPPED);
        bad += runs == 0 && st != BGJOB_STATE_STOPPED;
        bad += bgjob_remove(j->id, false) != BGJOB_OK;
    }
    if (bad) fprintf(stderr, "  %d jobs with a wrong state, run count or finalizer count\n", bad);
    CHECK(bad == 0);
    CHECK(r.ok + r.shut == jobs);
    CHECK(r.completed + r.stopped == r.ok);
    CHECK(repo_count() == 0);
    r.ms = now_ms() - t0;
    *out = r;
    free(ids);
    free(all);
    latch_destroy(&progress);
}

static void print_round(const char *what, int round, int jobs, const race_result *r) {
    printf("    %s round %d: %d starts in %.0f ms: %ld accepted (%ld Completed, %ld Stopped, "
           "%ld never ran), %ld refused\n",
           what, round, jobs, r->ms, r->ok, r->completed, r->stopped, r->never_ran, r->shut);
}

/* In a forked child: one round on the default pool, then every allocation freed. */
static int default_pool_round(int round, int jobs) {
    CHECK_OK(bgjob_configure_default_pool(2, 0));
    race_result r = {0};
    race_round(NULL, jobs, &r);
    print_round("bgjob_shutdown", round, jobs, &r);
    uint64_t id = 0;
    CHECK_STATUS(bgjob_start_fn(race_work, NULL, NULL, NULL, &id), BGJOB_E_SHUT_DOWN);
    CHECK_OK(bgjob_shutdown(BOUND_MS)); /* again: frees what the last starts left */
    fflush(stdout);
    fflush(stderr);
    return check_failures ? 1 : 0;
}

/* Waits for a child up to `timeout_ms` (a pidfd where there is one, else a bounded poll),
 * killing it then. True if it exited 0. */
static bool child_exited_clean(pid_t pid, long timeout_ms, char *why, size_t size) {
    double deadline = now_ms() + (double)timeout_ms;
    bool ended = false;
#ifdef SYS_pidfd_open
    int pfd = sanitize ? -1 : (int)syscall(SYS_pidfd_open, pid, 0);
    if (pfd >= 0) {
        struct pollfd p = {.fd = pfd, .events = POLLIN};
        int r;
        do {
            double left = deadline - now_ms();
            r = poll(&p, 1, left > 0 ? (int)left + 1 : 0);
        } while (r < 0 && errno == EINTR);
        close(pfd);
        ended = r > 0;
    } else
#endif
    {
        for (;;) {
            siginfo_t si;
            memset(&si, 0, sizeof si);
            if (waitid(P_PID, (id_t)pid, &si, WEXITED | WNOHANG | WNOWAIT) == 0 && si.si_pid == pid) {
                ended = true;
                break;
            }
            if (now_ms() >= deadline) break;
            sleep_ms(1);
        }
    }
    if (!ended) kill(pid, SIGKILL);
    int status = 0;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    if (!ended) snprintf(why, size, "hung: killed after %ld ms", timeout_ms);
    else if (WIFSIGNALED(status)) snprintf(why, size, "killed by signal %d", WTERMSIG(status));
    else snprintf(why, size, "exit code %d", WEXITSTATUS(status));
    return ended && WIFEXITED(status) && WEXITSTATUS(status) == 0;
}

static void test_default_pool_shutdown_races(void) {
    /* The default pool can be shut down once per process: each round is a fresh child. This
     * runs before this process first uses bgjob, so the children start clean (and under
     * valgrind their own leak check speaks of their own use only). */
    int jobs = sanitize ? 1000 : RACE_JOBS;
    for (int round = 1; round <= 5; round++) {
        fflush(stdout);
        fflush(stderr);
        pid_t pid = fork();
        if (pid == 0) _exit(default_pool_round(round, jobs));
        CHECK(pid > 0);
        char why[64];
        bool ok = pid > 0 && child_exited_clean(pid, 2 * BOUND_MS, why, sizeof why);
        if (!ok) {
            fprintf(stderr, "  FAIL %s: round %d: the child %s\n", check_current, round, why);
            check_failures++;
        }
    }
}

static void test_pool_shutdown_races(void) {
    int jobs = sanitize ? 1000 : RACE_JOBS;
    for (int round = 1; round <= 5; round++) {
        bgjob_pool *pool = NULL;
        CHECK_OK(bgjob_pool_new(2, 0, &pool));
        race_result r = {0};
        race_round(pool, jobs, &r);
        print_round("bgjob_pool_shutdown", round, jobs, &r);
        CHECK_OK(bgjob_pool_shutdown(pool, BOUND_MS));
        bgjob_pool_free(pool);
    }
}

/* ===== 2. pool create/destroy cycles ===================================================== */

/* Work: writes "2"; its user data is only a finalizer's counter. */
static int32_t work_two(bgjob_context *ctx, void *user_data) {
    (void)user_data;
    return (int32_t)bgjob_context_write_text(ctx, BGJOB_STREAM_OUTPUT, "2");
}

static void test_pool_create_destroy_cycles(void) {
    int cycles = sanitize ? 100 : 1000;
    atomic_int finals;
    atomic_init(&finals, 0);
    /* No pool of this process has threads now (the default pool is never used here). */
    int start = wait_thread_count(1, 10000);
    int peak = start;
    double t0 = now_ms();
    for (int c = 0; c < cycles; c++) {
        bgjob_pool *pool = NULL;
        CHECK_OK(bgjob_pool_new(2, 1, &pool));
        uint64_t ids[3];
        for (int i = 0; i < 3; i++)
            CHECK_OK(bgjob_start_fn(work_two, &finals, count_finalize, pool, &ids[i]));
        if (c % 2 == 0) {
            /* Used, shut down (waiting for its threads), freed. */
            CHECK_OK(bgjob_wait(ids, 3, BGJOB_WAIT_ALL, BOUND_MS, NULL, NULL));
            for (int i = 0; i < 3; i++) CHECK_OK(bgjob_remove(ids[i], false));
            CHECK_OK(bgjob_pool_shutdown(pool, BOUND_MS));
            bgjob_pool_free(pool);
        } else {
            /* Freed while a job runs and another waits behind it (throttle 1): the running
             * one is asked to stop, the queued one is Stopped, the threads leave as their
             * jobs end. */
            probe run, queued;
            probe_init(&run, 10000);
            probe_init(&queued, 0);
            uint64_t r = start_probe_job(NULL, work_coop, &run, pool);
            CHECK(wait_for_count(&run.started, 1, BOUND_MS));
            uint64_t q = start_probe_job(NULL, work_coop, &queued, pool);
            bgjob_pool_free(pool);
            uint64_t two[2] = {r, q};
            CHECK_OK(bgjob_wait(two, 2, BGJOB_WAIT_ALL, BOUND_MS, NULL, NULL));
            CHECK(state_of(r) == BGJOB_STATE_STOPPED && state_of(q) == BGJOB_STATE_STOPPED);
            CHECK(atomic_load(&run.runs) == 1 && atomic_load(&queued.runs) == 0);
            CHECK(atomic_load(&run.finalized) == 1 && atomic_load(&queued.finalized) == 1);
            CHECK_OK(bgjob_remove(r, false));
            CHECK_OK(bgjob_remove(q, false));
            CHECK_OK(bgjob_wait(ids, 3, BGJOB_WAIT_ALL, BOUND_MS, NULL, NULL));
            for (int i = 0; i < 3; i++) CHECK_OK(bgjob_remove(ids[i], false));
        }
        if (c % 50 == 49) {
            int n = thread_count();
            if (n > peak) peak = n;
        }
    }
    int end = wait_thread_count(start, 10000);
    printf("    %d pools created and destroyed in %.0f ms: threads %d at the start, %d at the "
           "end (at most %d seen between cycles); %d finalizers ran\n",
           cycles, now_ms() - t0, start, end, peak, atomic_load(&finals));
    CHECK(end == start);
    CHECK(atomic_load(&finals) == 3 * cycles);
    /* Threads do not pile up: at most the last pools' workers are still leaving. */
    CHECK(peak <= start + 8);
    CHECK(repo_count() == 0);
}

/* ===== 3. a million jobs, flat memory ==================================================== */

static atomic_long g_finals;

static void million_finalize(void *user_data) {
    (void)user_data;
    atomic_fetch_add(&g_finals, 1);
}

static void test_million_jobs_flat_memory(void) {
    long total = sanitize ? 20000 : 1000000;
    int batch = sanitize ? 2000 : 10000;
    uint64_t *ids = calloc((size_t)batch, sizeof *ids);
    CHECK(ids != NULL);
    if (ids == NULL) return;
    bgjob_pool *pool = NULL;
    CHECK_OK(bgjob_pool_new(2, 0, &pool));
    long rss_before = rss_kib(), rss_first = -1, rss_max = 0;
    long started = 0, received = 0, bad_records = 0;
    double t0 = now_ms(), t_first = 0;
    for (long done = 0; done < total; done += batch) {
        for (int i = 0; i < batch; i++) {
            bgjob_status st = bgjob_start_fn(work_write_two, NULL, million_finalize, pool, &ids[i]);
            if (st != BGJOB_OK) {
                CHECK_OK(st);
                ids[i] = 0;
                continue;
            }
            started++;
        }
        CHECK_OK(bgjob_wait(ids, (size_t)batch, BGJOB_WAIT_ALL, BOUND_MS, NULL, NULL));
        for (int i = 0; i < batch; i++) {
            bgjob_records *recs = NULL;
            if (bgjob_receive(ids[i], 0, 0, 0, &recs) == BGJOB_OK &&
                record_is(recs, 0, BGJOB_STREAM_OUTPUT, "2") && bgjob_records_count(recs) == 1)
                received++;
            else
                bad_records++;
            bgjob_records_free(recs);
            if (bgjob_remove(ids[i], false) != BGJOB_OK) bad_records++;
        }
        long rss = rss_kib();
        if (rss > rss_max) rss_max = rss;
        if (rss_first < 0) {
            rss_first = rss;
            t_first = now_ms() - t0;
        }
    }
    double elapsed = now_ms() - t0;
    long rss_end = rss_kib(); /* after the last batch, as after the first */
    pool_close(pool);
    printf("    %ld jobs started, received and removed in batches of %d in %.0f ms (%.2f us per "
           "job; first batch %.0f ms)\n",
           started, batch, elapsed, elapsed * 1000.0 / (double)(started ? started : 1), t_first);
    printf("    RSS: %ld KiB before, %ld KiB after the first batch, %ld KiB at the end "
           "(%+.1f%%), at most %ld KiB\n",
           rss_before, rss_first, rss_end,
           rss_first > 0 ? 100.0 * (double)(rss_end - rss_first) / (double)rss_first : 0.0,
           rss_max);
    CHECK(started == total);
    CHECK(received == total && bad_records == 0);
    CHECK(atomic_load(&g_finals) == total);
    CHECK(repo_count() == 0);
    /* No growth: the end within 10% of after the first batch. (Under valgrind the resident
     * set is valgrind's as much as ours; its leak check is the measure there.) */
    if (!sanitize) CHECK(rss_end <= rss_first + rss_first / 10);
    free(ids);
}

int main(void) {
    sanitize = sanitizing();
    /* For test 3: the allocator keeps what it got (one arena for every thread, no trimming
     * of the heap's top, no mmap for mid-size blocks), so the resident set is the heap's
     * high-water mark: it stays flat unless memory is kept, and a leak raises it. Left to
     * glibc's defaults, trimming and per-thread arenas move it by +-10% between two runs
     * of the same program. */
    mallopt(M_ARENA_MAX, 1);
    mallopt(M_TRIM_THRESHOLD, 1 << 30);
    mallopt(M_MMAP_THRESHOLD, 32 << 20);
    double t0 = now_ms();
    RUN_TEST(test_default_pool_shutdown_races); /* first: before this process uses bgjob */
    RUN_TEST(test_million_jobs_flat_memory);    /* next: no other test's heap to reuse */
    RUN_TEST(test_pool_shutdown_races);
    RUN_TEST(test_pool_create_destroy_cycles);
    printf("    (all in %.0f ms)\n", now_ms() - t0);
    CHECK_OK(bgjob_shutdown(BOUND_MS));
    return check_summary("test_load");
}
