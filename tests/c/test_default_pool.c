/* The default pool's configuration: one worker per core and no throttle unless told,
 * BGJOB_THREADS and BGJOB_THROTTLE from the environment, bgjob_configure_default_pool
 * winning over them before first use, and refused after. Configuration is per process, so
 * some cases run this program again as a child. */
#define _GNU_SOURCE /* sched_getaffinity */
#include "util.h"

#include <dirent.h>
#include <sched.h>
#include <sys/wait.h>
#include <unistd.h>


/* Starts `n` looping jobs on the default pool and checks how many run at once. */
static void check_running(int n, int want_running) {
    atomic_bool release_all;
    atomic_init(&release_all, false);
    probe p[4];
    uint64_t ids[4];
    for (int i = 0; i < n; i++) {
        probe_init(&p[i], 20000);
        p[i].shared_release = &release_all;
        ids[i] = start_probe_job(NULL, work_coop, &p[i], NULL);
    }
    int running = 0, not_started = 0;
    double deadline = now_ms() + 5000;
    while (now_ms() < deadline) {
        running = 0;
        for (int i = 0; i < n; i++) running += state_of(ids[i]) == BGJOB_STATE_RUNNING;
        if (running >= want_running) break;
        sleep_ms(1);
    }
    /* Look a little longer: the throttle must hold the rest back. */
    sleep_ms(100);
    running = not_started = 0;
    for (int i = 0; i < n; i++) {
        running += state_of(ids[i]) == BGJOB_STATE_RUNNING;
        not_started += state_of(ids[i]) == BGJOB_STATE_NOT_STARTED;
    }
    CHECK(running == want_running);
    CHECK(not_started == n - want_running);
    atomic_store(&release_all, true);
    CHECK_OK(bgjob_wait(ids, (size_t)n, BGJOB_WAIT_ALL, 20000, NULL, NULL));
    for (int i = 0; i < n; i++) CHECK_OK(bgjob_remove(ids[i], false));
}

static void test_environment_sets_threads_and_throttle(void) {
    int before = thread_count();
    check_running(3, 1); /* BGJOB_THROTTLE=1 */
    /* BGJOB_THREADS=3: the default pool added exactly three threads. */
    CHECK(thread_count() == before + 3);
}

static void test_configure_after_first_use_is_refused(void) {
    CHECK_STATUS(bgjob_configure_default_pool(2, 2), BGJOB_E_ALREADY_INITIALIZED);
    CHECK(strlen(bgjob_last_error_message()) > 0);
}

static void run_child(const char *self, const char *mode);

static void test_configure_before_first_use_wins(const char *self) {
    run_child(self, "configured");
}

/* The child: the environment says throttle 1, the configuration says 2 threads, throttle 2. */
static void test_configured_child(void) {
    CHECK_OK(bgjob_configure_default_pool(2, 2));
    CHECK_OK(bgjob_configure_default_pool(2, 2)); /* again, still before first use */
    check_running(4, 2);
}

/* The child: no environment, no configuration: one worker per core the process may run
 * on (its CPU affinity), and no throttle beyond the threads. */
static void test_per_core_child(void) {
    cpu_set_t cpus;
    CHECK(sched_getaffinity(0, sizeof cpus, &cpus) == 0);
    int cores = CPU_COUNT(&cpus);
    int before = thread_count();
    uint64_t id = start_job(NULL, work_write_two, NULL, NULL, NULL);
    CHECK_OK(bgjob_wait(&id, 1, BGJOB_WAIT_ALL, 20000, NULL, NULL));
    CHECK(thread_count() == before + cores);
    CHECK_OK(bgjob_remove(id, false));
    if (cores <= 4) check_running(cores, cores); /* all run at once: no throttle */
}

static void run_child(const char *self, const char *mode) {
    pid_t pid = fork();
    if (pid == 0) {
        if (strcmp(mode, "per-core") == 0) {
            unsetenv("BGJOB_THREADS");
            unsetenv("BGJOB_THROTTLE");
        }
        execl(self, self, mode, (char *)NULL);
        _exit(127);
    }
    int status = 0;
    CHECK(pid > 0 && waitpid(pid, &status, 0) == pid);
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
}

static void test_one_worker_per_core_by_default(const char *self) {
    run_child(self, "per-core");
}

int main(int argc, char **argv) {
    if (argc > 1 && strcmp(argv[1], "per-core") == 0) {
        RUN_TEST(test_per_core_child);
        CHECK_OK(bgjob_shutdown(BGJOB_INFINITE));
        return check_failures ? 1 : 0;
    }
    setenv("BGJOB_THREADS", "3", 1);
    setenv("BGJOB_THROTTLE", "1", 1);
    if (argc > 1 && strcmp(argv[1], "configured") == 0) {
        RUN_TEST(test_configured_child);
        CHECK_OK(bgjob_shutdown(BGJOB_INFINITE));
        return check_failures ? 1 : 0;
    }
    RUN_TEST(test_environment_sets_threads_and_throttle);
    RUN_TEST(test_configure_after_first_use_is_refused);
    CHECK_OK(bgjob_shutdown(BGJOB_INFINITE));
    /* After the shutdown no bgjob thread is left (only this one). A joined thread can
     * still be listed in /proc for a moment after pthread_join returns (the kernel wakes
     * the joiner before it has reaped the task): a bounded poll, not a sleep. */
    double deadline = now_ms() + 10000;
    while (thread_count() != 1 && now_ms() < deadline) sleep_ms(1);
    CHECK(thread_count() == 1);
    RUN_TEST_ARG(test_configure_before_first_use_wins, argv[0]);
    RUN_TEST_ARG(test_one_worker_per_core_by_default, argv[0]);
    return check_summary("test_default_pool");
}
