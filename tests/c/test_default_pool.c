/* The default pool's configuration: BGJOB_THREADS and BGJOB_THROTTLE from the environment,
 * bgjob_configure_default_pool winning over them before first use, and refused after.
 * Configuration is per process, so the second case runs this program again as a child. */
#include "util.h"

#include <dirent.h>
#include <sys/wait.h>
#include <unistd.h>

/* Threads of this process now (entries of /proc/self/task). */
static int thread_count(void) {
    DIR *d = opendir("/proc/self/task");
    if (d == NULL) return -1;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) n += e->d_name[0] != '.';
    closedir(d);
    return n;
}

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

static void test_configure_before_first_use_wins(const char *self) {
    pid_t pid = fork();
    if (pid == 0) {
        execl(self, self, "configured", (char *)NULL);
        _exit(127);
    }
    int status = 0;
    CHECK(pid > 0 && waitpid(pid, &status, 0) == pid);
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
}

/* The child: the environment says throttle 1, the configuration says 2 threads, throttle 2. */
static void test_configured_child(void) {
    CHECK_OK(bgjob_configure_default_pool(2, 2));
    CHECK_OK(bgjob_configure_default_pool(2, 2)); /* again, still before first use */
    check_running(4, 2);
}

int main(int argc, char **argv) {
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
    return check_summary("test_default_pool");
}
