/* Process jobs through the C ABI (PowerShell's Start-Job): a spec with argv runs a
 * program; stdout lines are Output records, stderr lines Error records, in arrival
 * order; exit 0 completes, anything else fails; stdin bytes, environment, working
 * directory; stop with SIGTERM then SIGKILL after the grace; hundreds at once with few
 * threads, no zombies and no leaked descriptors; misuse gives a status and a message. */
#include "check.h"
#include "util.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

/* Every job of this program is named under this prefix ("ptest-<pid>-..."). */
static char g_prefix[64];
/* A private temporary directory (FIFOs, the gate file). */
static char g_tmp[256];

/* Generous: waits that should end quickly, even under valgrind. */
#define LONG_MS 60000

/* A job name under the prefix. */
static const char *jname(char *buf, size_t size, const char *what) {
    snprintf(buf, size, "%s-%s", g_prefix, what);
    return buf;
}

/* A fresh spec named `<prefix>-what`. */
static bgjob_spec *new_spec(const char *what) {
    char name[128];
    return named_spec(jname(name, sizeof name, what));
}

/* A spec for a process job named `<prefix>-what` running argv (NULL-terminated list). */
static bgjob_spec *proc_spec(const char *what, const char *const *argv) {
    size_t argc = 0;
    while (argv[argc] != NULL) argc++;
    bgjob_spec *spec = new_spec(what);
    if (spec == NULL) return NULL;
    CHECK_OK(bgjob_spec_set_argv(spec, argv, argc));
    return spec;
}

/* Starts the spec; returns the job's id (0 after a failed CHECK). */
static uint64_t start_spec(bgjob_spec *spec) {
    uint64_t id = 0;
    CHECK_OK(bgjob_start(spec, &id));
    CHECK(id != 0);
    return id;
}

/* Starts `sh -c script` named `<prefix>-what`. */
static uint64_t start_sh(const char *what, const char *script) {
    const char *argv[] = {"sh", "-c", script, NULL};
    return start_spec(proc_spec(what, argv));
}

/* Waits (bounded) until the job is finished and returns its state. */
static bgjob_job_state wait_done(uint64_t id) {
    CHECK_OK(bgjob_wait(&id, 1, BGJOB_WAIT_ALL, LONG_MS, NULL, NULL));
    return state_of(id);
}

/* Every record present now (consumed). */
static bgjob_records *take_all(uint64_t id) {
    bgjob_records *recs = NULL;
    CHECK_OK(bgjob_receive(id, 0, 0, 0, &recs));
    return recs;
}

/* Receives exactly one record, waiting for it (bounded); NULL batch on failure. */
static bgjob_records *take_one(uint64_t id) {
    bgjob_records *recs = NULL;
    CHECK_OK(bgjob_receive(id, BGJOB_RECEIVE_WAIT, 1, LONG_MS, &recs));
    CHECK(bgjob_records_count(recs) == 1);
    return recs;
}

/* Takes every record of the job: whether they are exactly one Output record, `text`. */
static bool output_is_only(uint64_t id, const char *text) {
    bgjob_records *recs = take_all(id);
    bool ok = bgjob_records_count(recs) == 1 && record_is(recs, 0, BGJOB_STREAM_OUTPUT, text);
    bgjob_records_free(recs);
    return ok;
}

/* Whether the text field of the job's info that `field` reads is exactly `want`. */
static bool info_text_is(uint64_t id, const char *(*field)(const bgjob_job_info *),
                         const char *want) {
    bgjob_job_info *info = NULL;
    CHECK_OK(bgjob_get_job(id, &info));
    bool ok = info != NULL && field(info) != NULL && strcmp(field(info), want) == 0;
    bgjob_job_info_free(info);
    return ok;
}

/* The job's state info reason ("" if none); copied into buf. */
static const char *reason_of(uint64_t id, char *buf, size_t size) {
    buf[0] = '\0';
    bgjob_job_info *info = NULL;
    CHECK_OK(bgjob_get_job(id, &info));
    if (info != NULL) {
        const char *r = bgjob_job_info_reason(info);
        snprintf(buf, size, "%s", r != NULL ? r : "");
    }
    bgjob_job_info_free(info);
    return buf;
}

/* How many jobs have names matching `pattern`, children included. */
static size_t count_named(const char *pattern) {
    bgjob_filter *f = NULL;
    bgjob_job_list *list = NULL;
    size_t n = (size_t)-1;
    CHECK_OK(bgjob_filter_new(&f));
    CHECK_OK(bgjob_filter_set_name(f, pattern));
    CHECK_OK(bgjob_filter_set_include_children(f, true));
    if (bgjob_get_jobs(f, &list) == BGJOB_OK) n = bgjob_job_list_count(list);
    bgjob_job_list_free(list);
    bgjob_filter_free(f);
    return n;
}

/* Whether some record of the batch holds exactly `text` on `stream`. */
static bool has_record(const bgjob_records *recs, bgjob_stream stream, const char *text) {
    for (size_t i = 0; i < bgjob_records_count(recs); i++)
        if (record_is(recs, i, stream, text)) return true;
    return false;
}

/* Whether some record of the batch starts with `prefix`. */
static bool has_record_prefix(const bgjob_records *recs, const char *prefix) {
    size_t n = strlen(prefix);
    for (size_t i = 0; i < bgjob_records_count(recs); i++) {
        const bgjob_record *r = bgjob_records_get(recs, i);
        if (r != NULL && r->len >= n && memcmp(r->data, prefix, n) == 0) return true;
    }
    return false;
}

/* ----- 1. echo 2 ------------------------------------------------------------------------ */

static void test_echo_completes_with_one_record(void) {
    const char *argv[] = {"echo", "2", NULL};
    uint64_t id = start_spec(proc_spec("echo", argv));
    CHECK(wait_done(id) == BGJOB_STATE_COMPLETED);
    bgjob_records *recs = take_all(id);
    CHECK(bgjob_records_count(recs) == 1);
    CHECK(record_is(recs, 0, BGJOB_STREAM_OUTPUT, "2"));
    const bgjob_record *r = bgjob_records_get(recs, 0);
    CHECK(r != NULL && r->job_id == id && r->data[r->len] == '\0');
    bgjob_records_free(recs);
    bgjob_job_info *info = NULL;
    CHECK_OK(bgjob_get_job(id, &info));
    if (info != NULL) {
        char name[128];
        CHECK(strcmp(bgjob_job_info_type_name(info), "ProcessJob") == 0);
        CHECK(strcmp(bgjob_job_info_location(info), "localhost") == 0);
        CHECK(strcmp(bgjob_job_info_command(info), "echo 2") == 0);
        CHECK(strcmp(bgjob_job_info_name(info), jname(name, sizeof name, "echo")) == 0);
        CHECK(bgjob_job_info_reason(info) == NULL || bgjob_job_info_reason(info)[0] == '\0');
        CHECK(bgjob_job_info_begin_time_ns(info) > 0);
        CHECK(bgjob_job_info_end_time_ns(info) >= bgjob_job_info_begin_time_ns(info));
        CHECK(bgjob_job_info_child_count(info) == 0);
    }
    bgjob_job_info_free(info);
    CHECK_OK(bgjob_remove(id, false));
}

static void test_command_text_can_be_set(void) {
    const char *argv[] = {"true", NULL};
    bgjob_spec *spec = proc_spec("command", argv);
    CHECK_OK(bgjob_spec_set_command(spec, "the truth"));
    uint64_t id = start_spec(spec);
    CHECK(wait_done(id) == BGJOB_STATE_COMPLETED);
    CHECK(info_text_is(id, bgjob_job_info_command, "the truth"));
    CHECK_OK(bgjob_remove(id, false));
}

/* ----- 2. stdout and stderr in arrival order --------------------------------------------- */

static void test_stdout_and_stderr_interleave_in_arrival_order(void) {
    char fifo[300];
    snprintf(fifo, sizeof fifo, "%s/steps", g_tmp);
    CHECK(mkfifo(fifo, 0600) == 0);
    /* Opened read-write, so that neither this open nor the script's blocks; the script
     * reads one line from it before each next step, so each record is written only
     * after the test has received the one before. */
    int fd = open(fifo, O_RDWR | O_CLOEXEC);
    CHECK(fd >= 0);
    const char *script = "exec 3<\"$STEPS\"; echo out1; read x <&3; echo err1 >&2; "
                         "read x <&3; echo out2; read x <&3; echo err2 >&2; read x <&3; "
                         "echo out3";
    const char *argv[] = {"sh", "-c", script, NULL};
    bgjob_spec *spec = proc_spec("interleave", argv);
    CHECK_OK(bgjob_spec_set_env(spec, "STEPS", fifo));
    uint64_t id = start_spec(spec);
    struct {
        bgjob_stream stream;
        const char *text;
    } expect[] = {{BGJOB_STREAM_OUTPUT, "out1"},
                  {BGJOB_STREAM_ERROR, "err1"},
                  {BGJOB_STREAM_OUTPUT, "out2"},
                  {BGJOB_STREAM_ERROR, "err2"},
                  {BGJOB_STREAM_OUTPUT, "out3"}};
    uint64_t last_seq = 0;
    int64_t last_time = 0;
    for (size_t i = 0; i < sizeof expect / sizeof expect[0]; i++) {
        bgjob_records *recs = take_one(id);
        CHECK(record_is(recs, 0, expect[i].stream, expect[i].text));
        const bgjob_record *r = bgjob_records_get(recs, 0);
        if (r != NULL) {
            CHECK(r->sequence > last_seq);
            last_seq = r->sequence;
            /* The time it arrived: set, and never before the one that came first. */
            CHECK(r->time_ns > 0);
            CHECK(r->time_ns >= last_time);
            last_time = r->time_ns;
        } else {
            fprintf(stderr, "  (no record for step %zu)\n", i);
        }
        bgjob_records_free(recs);
        if (i + 1 < sizeof expect / sizeof expect[0] && fd >= 0)
            CHECK(write(fd, "go\n", 3) == 3);
    }
    CHECK(wait_done(id) == BGJOB_STATE_COMPLETED);
    bgjob_records *rest = take_all(id);
    CHECK(bgjob_records_count(rest) == 0);
    bgjob_records_free(rest);
    CHECK_OK(bgjob_remove(id, false));
    if (fd >= 0) close(fd);
    unlink(fifo);
}

static void test_each_stream_keeps_its_own_order(void) {
    uint64_t id = start_sh("two-hundred",
                           "i=0; while [ $i -lt 200 ]; do echo o$i; echo e$i >&2; "
                           "i=$((i+1)); done");
    CHECK(wait_done(id) == BGJOB_STATE_COMPLETED);
    bgjob_records *recs = take_all(id);
    CHECK(bgjob_records_count(recs) == 400);
    int next_out = 0, next_err = 0;
    bool ok = true;
    uint64_t last_seq = 0;
    for (size_t i = 0; i < bgjob_records_count(recs); i++) {
        const bgjob_record *r = bgjob_records_get(recs, i);
        char want[16];
        if (r->stream == BGJOB_STREAM_OUTPUT) {
            snprintf(want, sizeof want, "o%d", next_out++);
        } else if (r->stream == BGJOB_STREAM_ERROR) {
            snprintf(want, sizeof want, "e%d", next_err++);
        } else {
            ok = false;
            continue;
        }
        if (!record_is(recs, i, r->stream, want) || r->sequence <= last_seq) ok = false;
        last_seq = r->sequence;
    }
    CHECK(ok);
    CHECK(next_out == 200 && next_err == 200);
    bgjob_records_free(recs);
    CHECK_OK(bgjob_remove(id, false));
}

/* ----- 3, 4. how a process fails -------------------------------------------------------- */

static void test_exit_code_fails_the_job(void) {
    uint64_t id = start_sh("exit3", "echo before; exit 3");
    CHECK(wait_done(id) == BGJOB_STATE_FAILED);
    char reason[512];
    reason_of(id, reason, sizeof reason);
    CHECK(strstr(reason, "exited with code 3") != NULL);
    /* What it wrote before failing is there. */
    CHECK(output_is_only(id, "before"));
    CHECK_OK(bgjob_remove(id, false));
}

/* Runs `argv`, whose exec must fail with `os_text` (strerror's words), and checks the
 * job Failed with the OS's reason naming the program; returns the job's id, not removed. */
static uint64_t check_exec_fails(const char *name, const char *const *argv, const char *os_text) {
    int failures_before = check_failures;
    uint64_t id = start_spec(proc_spec(name, argv));
    CHECK(wait_done(id) == BGJOB_STATE_FAILED);
    char reason[512];
    reason_of(id, reason, sizeof reason);
    if (sanitizing()) {
        /* Under valgrind the exec error cannot come back: glibc's posix_spawn reports it
         * through memory shared with the child (CLONE_VM), which valgrind turns into a
         * plain fork; the job sees the child exit with a code instead. */
        CHECK(strstr(reason, os_text) != NULL || strstr(reason, "exited with code") != NULL);
    } else {
        CHECK(strstr(reason, os_text) != NULL);
        CHECK(strstr(reason, argv[0]) != NULL);
    }
    if (check_failures != failures_before) fprintf(stderr, "  (reason: %s)\n", reason);
    return id;
}

static void test_missing_program_fails_the_job(void) {
    const char *argv[] = {"bgjob-no-such-program-here", "x", NULL};
    CHECK_OK(bgjob_remove(check_exec_fails("missing", argv, "No such file or directory"), false));
}

static void test_killed_by_a_signal_it_was_not_sent_by_us_fails_naming_it(void) {
    struct {
        const char *script, *name;
    } cases[] = {
        /* No core file: the signal is what counts. */
        {"ulimit -c 0; echo before; kill -SEGV $$; echo after", "SIGSEGV"},
        {"echo before; kill -TERM $$; echo after", "SIGTERM"},
        {"echo before; kill -KILL $$; echo after", "SIGKILL"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        uint64_t id = start_sh("self-signal", cases[i].script);
        CHECK(wait_done(id) == BGJOB_STATE_FAILED);
        char reason[512];
        reason_of(id, reason, sizeof reason);
        CHECK(strstr(reason, cases[i].name) != NULL);
        CHECK(strstr(reason, "signal") != NULL);
        if (strstr(reason, cases[i].name) == NULL) fprintf(stderr, "  (reason: %s)\n", reason);
        /* What it wrote before the signal is there; nothing after. */
        CHECK(output_is_only(id, "before"));
        CHECK_OK(bgjob_remove(id, false));
    }
}

static void test_a_file_that_is_not_executable_fails_the_job(void) {
    char path[300];
    snprintf(path, sizeof path, "%s/not-executable.sh", g_tmp);
    FILE *f = fopen(path, "w");
    CHECK(f != NULL);
    if (f == NULL) return;
    fputs("#!/bin/sh\necho should-not-run\n", f);
    fclose(f);
    CHECK(chmod(path, 0644) == 0);
    const char *argv[] = {path, NULL};
    uint64_t id = check_exec_fails("not-executable", argv, "Permission denied");
    /* The script never ran. */
    bgjob_records *recs = take_all(id);
    CHECK(!has_record(recs, BGJOB_STREAM_OUTPUT, "should-not-run"));
    bgjob_records_free(recs);
    CHECK_OK(bgjob_remove(id, false));
    unlink(path);
}

/* ----- 5. a bad working directory -------------------------------------------------------- */

static void test_bad_working_directory_is_a_system_error(void) {
    char dir[300];
    snprintf(dir, sizeof dir, "%s/no-such-dir", g_tmp);
    const char *argv[] = {"pwd", NULL};
    bgjob_spec *spec = proc_spec("badcwd", argv);
    CHECK_OK(bgjob_spec_set_working_directory(spec, dir));
    uint64_t id = 0;
    CHECK_STATUS(bgjob_start(spec, &id), BGJOB_E_SYSTEM);
    CHECK(bgjob_last_error_errno() == ENOENT);
    CHECK(strstr(bgjob_last_error_message(), dir) != NULL);
    CHECK(id == 0);
    char pattern[128];
    CHECK(count_named(jname(pattern, sizeof pattern, "badcwd")) == 0);

    /* A file that is not a directory: ENOTDIR. */
    char file[300];
    snprintf(file, sizeof file, "%s/plain-file", g_tmp);
    FILE *fp = fopen(file, "w");
    CHECK(fp != NULL);
    if (fp != NULL) fclose(fp);
    spec = proc_spec("badcwd", argv);
    CHECK_OK(bgjob_spec_set_working_directory(spec, file));
    CHECK_STATUS(bgjob_run_inline(spec, &id), BGJOB_E_SYSTEM);
    CHECK(bgjob_last_error_errno() == ENOTDIR);
    CHECK(count_named(pattern) == 0);
    unlink(file);

    /* A status other than BGJOB_E_SYSTEM leaves errno 0. */
    CHECK_STATUS(bgjob_start(NULL, &id), BGJOB_E_INVALID_ARGUMENT);
    CHECK(bgjob_last_error_errno() == 0);

    /* And a good one is used. */
    spec = proc_spec("goodcwd", argv);
    CHECK_OK(bgjob_spec_set_working_directory(spec, g_tmp));
    id = start_spec(spec);
    CHECK(wait_done(id) == BGJOB_STATE_COMPLETED);
    CHECK(output_is_only(id, g_tmp));
    CHECK_OK(bgjob_remove(id, false));
}

/* ----- 6. stdin ------------------------------------------------------------------------- */

static void test_stdin_bytes_reach_the_process(void) {
    const char *argv[] = {"cat", NULL};
    bgjob_spec *spec = proc_spec("cat", argv);
    const char *in = "hello\nworld\n";
    CHECK_OK(bgjob_spec_set_stdin(spec, "replaced\n", 9));
    CHECK_OK(bgjob_spec_set_stdin(spec, in, strlen(in)));
    uint64_t id = start_spec(spec);
    CHECK(wait_done(id) == BGJOB_STATE_COMPLETED);
    bgjob_records *recs = take_all(id);
    CHECK(bgjob_records_count(recs) == 2);
    CHECK(record_is(recs, 0, BGJOB_STREAM_OUTPUT, "hello"));
    CHECK(record_is(recs, 1, BGJOB_STREAM_OUTPUT, "world"));
    bgjob_records_free(recs);
    CHECK_OK(bgjob_remove(id, false));

    /* Without stdin the process sees end of file at once. */
    id = start_spec(proc_spec("cat-eof", argv));
    CHECK(wait_done(id) == BGJOB_STATE_COMPLETED);
    recs = take_all(id);
    CHECK(bgjob_records_count(recs) == 0);
    bgjob_records_free(recs);
    CHECK_OK(bgjob_remove(id, false));
}

static void test_large_stdin_is_fed_whole(void) {
    /* 20,000 lines of 10 bytes: 200,000 bytes, three times a pipe's 64 KiB. */
    enum { LINES = 20000, WIDTH = 10 };
    char *in = malloc((size_t)LINES * WIDTH + 1);
    CHECK(in != NULL);
    if (in == NULL) return;
    for (int i = 0; i < LINES; i++) snprintf(in + (size_t)i * WIDTH, WIDTH + 1, "line%05d\n", i);
    const char *argv[] = {"cat", NULL};
    bgjob_spec *spec = proc_spec("cat-large", argv);
    CHECK_OK(bgjob_spec_set_stdin(spec, in, (size_t)LINES * WIDTH));
    free(in); /* copied by the spec */
    uint64_t id = start_spec(spec);
    CHECK(wait_done(id) == BGJOB_STATE_COMPLETED);
    bgjob_records *recs = take_all(id);
    CHECK(bgjob_records_count(recs) == LINES);
    bool ok = bgjob_records_count(recs) == LINES;
    for (size_t i = 0; ok && i < LINES; i++) {
        char want[16];
        snprintf(want, sizeof want, "line%05zu", i);
        ok = record_is(recs, i, BGJOB_STREAM_OUTPUT, want);
    }
    CHECK(ok);
    bgjob_records_free(recs);
    CHECK_OK(bgjob_remove(id, false));
}

/* ----- 7. environment ------------------------------------------------------------------- */

/* Runs /usr/bin/env with the spec's settings applied by `setup` and returns its lines. */
static bgjob_records *run_env(const char *what, void (*setup)(bgjob_spec *)) {
    const char *argv[] = {"/usr/bin/env", NULL};
    bgjob_spec *spec = proc_spec(what, argv);
    setup(spec);
    uint64_t id = start_spec(spec);
    CHECK(wait_done(id) == BGJOB_STATE_COMPLETED);
    bgjob_records *recs = take_all(id);
    CHECK_OK(bgjob_remove(id, false));
    return recs;
}

static void env_added(bgjob_spec *spec) {
    CHECK_OK(bgjob_spec_set_env(spec, "BGJOB_PTEST_ADDED", "yes"));
}

static void env_overridden_and_removed(bgjob_spec *spec) {
    CHECK_OK(bgjob_spec_set_env(spec, "BGJOB_PTEST_INHERITED", "over"));
    CHECK_OK(bgjob_spec_set_env(spec, "BGJOB_PTEST_REMOVED", NULL));
    /* Set, then removed: the last call wins. */
    CHECK_OK(bgjob_spec_set_env(spec, "BGJOB_PTEST_ADDED", "no"));
    CHECK_OK(bgjob_spec_set_env(spec, "BGJOB_PTEST_ADDED", NULL));
    /* Not UTF-8: bytes pass as they are. */
    CHECK_OK(bgjob_spec_set_env(spec, "BGJOB_PTEST_BYTES", "\xff\xfe"));
}

static void env_replaced(bgjob_spec *spec) {
    CHECK_OK(bgjob_spec_set_env(spec, "GONE", "before-clear"));
    CHECK_OK(bgjob_spec_set_env(spec, "GONE", NULL));
    CHECK_OK(bgjob_spec_clear_env(spec));
    CHECK_OK(bgjob_spec_set_env(spec, "ONLY", "this"));
}

static void test_environment_added_removed_replaced(void) {
    bgjob_records *recs = run_env("env-added", env_added);
    CHECK(has_record(recs, BGJOB_STREAM_OUTPUT, "BGJOB_PTEST_INHERITED=inh"));
    CHECK(has_record(recs, BGJOB_STREAM_OUTPUT, "BGJOB_PTEST_REMOVED=gone"));
    CHECK(has_record(recs, BGJOB_STREAM_OUTPUT, "BGJOB_PTEST_ADDED=yes"));
    CHECK(has_record_prefix(recs, "PATH="));
    bgjob_records_free(recs);

    recs = run_env("env-removed", env_overridden_and_removed);
    CHECK(has_record(recs, BGJOB_STREAM_OUTPUT, "BGJOB_PTEST_INHERITED=over"));
    CHECK(!has_record_prefix(recs, "BGJOB_PTEST_INHERITED=inh"));
    CHECK(!has_record_prefix(recs, "BGJOB_PTEST_REMOVED="));
    CHECK(!has_record_prefix(recs, "BGJOB_PTEST_ADDED="));
    CHECK(has_record(recs, BGJOB_STREAM_OUTPUT, "BGJOB_PTEST_BYTES=\xff\xfe"));
    CHECK(has_record_prefix(recs, "PATH="));
    bgjob_records_free(recs);

    recs = run_env("env-replaced", env_replaced);
    CHECK(bgjob_records_count(recs) == 1);
    CHECK(record_is(recs, 0, BGJOB_STREAM_OUTPUT, "ONLY=this"));
    if (bgjob_records_count(recs) != 1)
        for (size_t i = 0; i < bgjob_records_count(recs); i++)
            fprintf(stderr, "  (env line: %s)\n", (const char *)bgjob_records_get(recs, i)->data);
    bgjob_records_free(recs);
}

/* ----- 8, 9. stop ----------------------------------------------------------------------- */

static void test_stop_a_sleeping_process(void) {
    const char *argv[] = {"sleep", "30", NULL};
    uint64_t id = start_spec(proc_spec("sleep", argv));
    CHECK(wait_for_state(id, BGJOB_STATE_RUNNING, LONG_MS));
    double t0 = now_ms();
    CHECK_OK(bgjob_stop(id, LONG_MS));
    CHECK(state_of(id) == BGJOB_STATE_STOPPED);
    /* SIGTERM ends sleep at once: no wait for the 5 s grace. */
    CHECK(now_ms() - t0 < 4500);
    CHECK_OK(bgjob_remove(id, false));
}

static void test_sigterm_ignored_gets_sigkill_after_the_grace(void) {
    const char *argv[] = {"sh", "-c", "trap '' TERM; echo ready; sleep 600", NULL};
    bgjob_spec *spec = proc_spec("ignore-term-300", argv);
    CHECK_OK(bgjob_spec_set_stop_grace(spec, 300));
    uint64_t id = start_spec(spec);
    bgjob_records *recs = take_one(id);
    CHECK(record_is(recs, 0, BGJOB_STREAM_OUTPUT, "ready"));
    bgjob_records_free(recs);
    double t0 = now_ms();
    CHECK_OK(bgjob_stop(id, LONG_MS));
    double elapsed = now_ms() - t0;
    CHECK(state_of(id) == BGJOB_STATE_STOPPED);
    CHECK(elapsed >= 300);
    CHECK(elapsed < 30000);
    CHECK_OK(bgjob_remove(id, false));

    /* Grace 0: SIGKILL at once. */
    spec = proc_spec("ignore-term-0", argv);
    CHECK_OK(bgjob_spec_set_stop_grace(spec, 0));
    id = start_spec(spec);
    recs = take_one(id);
    bgjob_records_free(recs);
    CHECK_OK(bgjob_stop(id, LONG_MS));
    CHECK(state_of(id) == BGJOB_STATE_STOPPED);
    CHECK_OK(bgjob_remove(id, false));
}

static void test_stop_with_a_grandchild_holding_stdout(void) {
    uint64_t id = start_sh("grandchild", "sleep 600 & echo started; wait");
    bgjob_records *recs = take_one(id);
    CHECK(record_is(recs, 0, BGJOB_STREAM_OUTPUT, "started"));
    bgjob_records_free(recs);
    CHECK_OK(bgjob_stop(id, LONG_MS));
    CHECK(state_of(id) == BGJOB_STATE_STOPPED);
    CHECK_OK(bgjob_remove(id, false));
}

static void test_stop_with_a_grandchild_that_left_the_group_holding_stdout(void) {
    /* The grandchild starts a session of its own, so the stop's signals to the job's
     * process group never reach it, and it keeps the job's stdout open for 600 s. */
    uint64_t id = start_sh("grandchild-setsid",
                           "setsid sh -c 'echo $$; exec sleep 600' & wait");
    bgjob_records *recs = take_one(id);
    const bgjob_record *r = bgjob_records_get(recs, 0);
    long gpid = 0;
    if (r != NULL && r->stream == BGJOB_STREAM_OUTPUT && r->data != NULL)
        gpid = strtol((const char *)r->data, NULL, 10);
    bgjob_records_free(recs);
    CHECK(gpid > 1);
    /* It is in a group (and session) of its own. */
    if (gpid > 1) CHECK(getpgid((pid_t)gpid) == (pid_t)gpid);
    double t0 = now_ms();
    CHECK_OK(bgjob_stop(id, LONG_MS));
    double elapsed = now_ms() - t0;
    CHECK(state_of(id) == BGJOB_STATE_STOPPED);
    /* Well under the grandchild's 600 s, which is still alive and holding the pipe. */
    CHECK(elapsed < 10000);
    if (elapsed >= 10000) fprintf(stderr, "  (stop took %.0f ms)\n", elapsed);
    if (gpid > 1) {
        CHECK(kill((pid_t)gpid, 0) == 0);
        kill((pid_t)gpid, SIGKILL);
    }
    if (state_of(id) != BGJOB_STATE_STOPPED) wait_done(id);
    CHECK_OK(bgjob_remove(id, false));
}

static void test_a_process_job_cannot_be_suspended(void) {
    const char *argv[] = {"sleep", "30", NULL};
    uint64_t id = start_spec(proc_spec("suspend", argv));
    CHECK(wait_for_state(id, BGJOB_STATE_RUNNING, LONG_MS));
    bgjob_status st = bgjob_suspend(id);
    CHECK(st != BGJOB_OK);
    CHECK(bgjob_last_error_message()[0] != '\0');
    CHECK(state_of(id) == BGJOB_STATE_RUNNING);
    CHECK_OK(bgjob_stop(id, LONG_MS));
    CHECK(state_of(id) == BGJOB_STATE_STOPPED);
    CHECK_OK(bgjob_remove(id, false));
}

static void test_a_throttled_pool_holds_the_next_process_until_one_ends(void) {
    bgjob_pool *pool = NULL;
    CHECK_OK(bgjob_pool_new(2, 1, &pool));
    if (pool == NULL) return;
    char fifo[300];
    snprintf(fifo, sizeof fifo, "%s/throttle", g_tmp);
    CHECK(mkfifo(fifo, 0600) == 0);
    /* Held open read-write: neither this open nor the jobs' opens block, and the lines
     * written stay in the FIFO until a job reads them. */
    int fd = open(fifo, O_RDWR | O_CLOEXEC);
    CHECK(fd >= 0);
    /* Each job waits for one line: the first is held until the test writes. */
    const char *argv[] = {"sh", "-c", "read x <\"$F\"; echo \"got $x\"", NULL};
    uint64_t ids[2];
    for (size_t i = 0; i < 2; i++) {
        bgjob_spec *spec = proc_spec("throttled", argv);
        CHECK_OK(bgjob_spec_set_env(spec, "F", fifo));
        CHECK_OK(bgjob_spec_set_pool(spec, pool));
        ids[i] = start_spec(spec);
        if (i == 0) CHECK(wait_for_state(ids[0], BGJOB_STATE_RUNNING, LONG_MS));
    }
    /* The first holds the only permit while its process runs (no worker thread is busy
     * with it): the second stays NotStarted. */
    CHECK_STATUS(bgjob_wait(&ids[1], 1, BGJOB_WAIT_ALL, 300, NULL, NULL), BGJOB_E_TIMEOUT);
    CHECK(state_of(ids[0]) == BGJOB_STATE_RUNNING);
    CHECK(state_of(ids[1]) == BGJOB_STATE_NOT_STARTED);
    if (fd >= 0) CHECK(write(fd, "one\ntwo\n", 8) == 8);
    CHECK_OK(bgjob_wait(ids, 2, BGJOB_WAIT_ALL, LONG_MS, NULL, NULL));
    const char *want[] = {"got one", "got two"};
    for (size_t i = 0; i < 2; i++) {
        CHECK(state_of(ids[i]) == BGJOB_STATE_COMPLETED);
        CHECK(output_is_only(ids[i], want[i]));
        CHECK_OK(bgjob_remove(ids[i], false));
    }
    if (fd >= 0) close(fd);
    unlink(fifo);
    pool_close(pool);
}

/* ----- 10, 11. scale and hygiene -------------------------------------------------------- */

static long threads_now(void) {
    FILE *f = fopen("/proc/self/status", "r");
    if (f == NULL) return -1;
    char line[256];
    long n = -1;
    while (fgets(line, sizeof line, f) != NULL)
        if (strncmp(line, "Threads:", 8) == 0) n = strtol(line + 8, NULL, 10);
    fclose(f);
    return n;
}

/* Our children that are zombies (exited, never reaped). */
static int zombies(void) {
    DIR *d = opendir("/proc");
    if (d == NULL) return -1;
    int me = (int)getpid(), z = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        char *end;
        long pid = strtol(e->d_name, &end, 10);
        if (*end != '\0' || pid <= 0) continue;
        char path[64], buf[512];
        snprintf(path, sizeof path, "/proc/%ld/stat", pid);
        FILE *f = fopen(path, "r");
        if (f == NULL) continue;
        size_t n = fread(buf, 1, sizeof buf - 1, f);
        fclose(f);
        buf[n] = '\0';
        /* "pid (comm) state ppid ...": comm may hold spaces, so read after its ')'. */
        char *rp = strrchr(buf, ')');
        char state;
        int ppid;
        if (rp != NULL && sscanf(rp + 1, " %c %d", &state, &ppid) == 2 && state == 'Z' &&
            ppid == me) {
            fprintf(stderr, "  (zombie child %ld)\n", pid);
            z++;
        }
    }
    closedir(d);
    return z;
}

static void test_hundreds_at_once_need_few_threads_and_leave_no_zombies(void) {
    /* 500 normally; fewer under valgrind, where every start is slow. */
    const size_t count = sanitizing() ? 50 : 500;
    char gate[300];
    snprintf(gate, sizeof gate, "%s/gate", g_tmp);
    long before = threads_now();
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    uint64_t *ids = calloc(count, sizeof *ids);
    uint64_t *done = calloc(count, sizeof *done);
    CHECK(ids != NULL && done != NULL);
    if (ids == NULL || done == NULL) {
        free(ids);
        free(done);
        return;
    }
    /* Every process waits until the gate file exists, so all of them run at once. */
    const char *argv[] = {"sh", "-c", "while [ ! -e \"$GATE\" ]; do sleep 0.05; done; echo done",
                          NULL};
    for (size_t i = 0; i < count; i++) {
        bgjob_spec *spec = proc_spec("many", argv);
        CHECK_OK(bgjob_spec_set_env(spec, "GATE", gate));
        ids[i] = start_spec(spec);
    }
    double deadline = now_ms() + 120000;
    size_t running = 0;
    for (;;) {
        running = 0;
        for (size_t i = 0; i < count; i++)
            if (state_of(ids[i]) == BGJOB_STATE_RUNNING) running++;
        if (running == count || now_ms() > deadline) break;
        sleep_ms(20);
    }
    CHECK(running == count);
    long during = threads_now();
    CHECK(before > 0 && during > 0);
    CHECK(during <= before + cores + 2);
    if (during > before + cores + 2)
        fprintf(stderr, "  (%ld threads before, %ld with %zu processes running, %ld cores)\n",
                before, during, count, cores);
    FILE *g = fopen(gate, "w");
    CHECK(g != NULL);
    if (g != NULL) fclose(g);
    size_t ndone = 0;
    CHECK_OK(bgjob_wait(ids, count, BGJOB_WAIT_ALL, 120000, done, &ndone));
    CHECK(ndone == count);
    size_t completed = 0, right_output = 0;
    for (size_t i = 0; i < count; i++) {
        if (state_of(ids[i]) == BGJOB_STATE_COMPLETED) completed++;
        if (output_is_only(ids[i], "done")) right_output++;
        CHECK_OK(bgjob_remove(ids[i], false));
    }
    CHECK(completed == count);
    CHECK(right_output == count);
    CHECK(zombies() == 0);
    unlink(gate);
    free(ids);
    free(done);
}

/* This process's open descriptors (sorted, the listing's own excluded) into fds, with
 * whether each is close-on-exec; returns how many (at most cap). */
static size_t open_fds(int *fds, bool *cloexec, size_t cap) {
    size_t n = 0;
    DIR *d = opendir("/proc/self/fd");
    if (d == NULL) return 0;
    int own = dirfd(d);
    struct dirent *e;
    while ((e = readdir(d)) != NULL && n < cap) {
        if (e->d_name[0] == '.') continue;
        int fd = atoi(e->d_name);
        if (fd != own) fds[n++] = fd;
    }
    closedir(d);
    for (size_t i = 1; i < n; i++)
        for (size_t j = i; j > 0 && fds[j - 1] > fds[j]; j--) {
            int t = fds[j];
            fds[j] = fds[j - 1];
            fds[j - 1] = t;
        }
    size_t kept = 0;
    for (size_t i = 0; i < n; i++) {
        int flags = fcntl(fds[i], F_GETFD);
        if (flags < 0) continue; /* closed meanwhile */
        fds[kept] = fds[i];
        cloexec[kept] = (flags & FD_CLOEXEC) != 0;
        kept++;
    }
    return kept;
}

static bool fd_in(const int *fds, size_t n, int fd) {
    for (size_t i = 0; i < n; i++)
        if (fds[i] == fd) return true;
    return false;
}

/* Prints "label: fd fd ..." to stderr, for a failed check. */
static void print_fds(const char *label, const int *fds, size_t n) {
    fprintf(stderr, "  (%s:", label);
    for (size_t i = 0; i < n; i++) fprintf(stderr, " %d", fds[i]);
    fprintf(stderr, ")\n");
}

static void test_no_descriptor_leaks_into_another_jobs_process(void) {
    enum { CAP = 1024, SLEEPERS = 3 };
    static int before[CAP], during[CAP];
    static bool before_cx[CAP], during_cx[CAP];
    size_t nbefore = open_fds(before, before_cx, CAP);
    CHECK(nbefore >= 3);
    /* What a child of this process inherits without bgjob's help: 0, 1, 2 (which the
     * job replaces with its own) and whatever this process holds without close-on-exec. */
    int expect[CAP];
    size_t nexpect = 0;
    for (int fd = 0; fd <= 2; fd++) expect[nexpect++] = fd;
    for (size_t i = 0; i < nbefore; i++)
        if (before[i] > 2 && !before_cx[i]) expect[nexpect++] = before[i];

    /* Other process jobs running, with their pipes (and pidfds) open in this process. */
    const char *sleep_argv[] = {"sleep", "30", NULL};
    uint64_t sleepers[SLEEPERS];
    for (size_t i = 0; i < SLEEPERS; i++) {
        sleepers[i] = start_spec(proc_spec("fd-sleeper", sleep_argv));
        CHECK(wait_for_state(sleepers[i], BGJOB_STATE_RUNNING, LONG_MS));
    }
    size_t nduring = open_fds(during, during_cx, CAP);
    CHECK(nduring > nbefore);
    /* Every descriptor bgjob opened meanwhile is close-on-exec. */
    for (size_t i = 0; i < nduring; i++)
        if (!fd_in(before, nbefore, during[i]) && !during_cx[i]) {
            fprintf(stderr, "  (fd %d opened without close-on-exec)\n", during[i]);
            CHECK(during_cx[i]);
        }

    /* The shell lists its own descriptors from a child (`ls`, which is not exec'd in the
     * shell's place because of the `:` after it), so the listing's own descriptor is
     * not among them: exactly what the job's process inherited. */
    const char *ls_argv[] = {"sh", "-c", "ls /proc/$$/fd; :", NULL};
    uint64_t id = start_spec(proc_spec("fd-lister", ls_argv));
    CHECK(wait_done(id) == BGJOB_STATE_COMPLETED);
    bgjob_records *recs = take_all(id);
    int got[CAP];
    size_t ngot = 0;
    for (size_t i = 0; i < bgjob_records_count(recs) && ngot < CAP; i++) {
        const bgjob_record *r = bgjob_records_get(recs, i);
        CHECK(r->stream == BGJOB_STREAM_OUTPUT);
        char *end = NULL;
        long fd = strtol((const char *)r->data, &end, 10);
        CHECK(r->len > 0 && end != NULL && *end == '\0');
        got[ngot++] = (int)fd;
    }
    bgjob_records_free(recs);
    bool same = ngot == nexpect;
    for (size_t i = 0; i < ngot; i++)
        if (!fd_in(expect, nexpect, got[i])) same = false;
    CHECK(same);
    if (!same) {
        print_fds("the job's process had fds", got, ngot);
        print_fds("expected", expect, nexpect);
    }
    CHECK_OK(bgjob_remove(id, false));
    for (size_t i = 0; i < SLEEPERS; i++) {
        CHECK_OK(bgjob_stop(sleepers[i], LONG_MS));
        CHECK(state_of(sleepers[i]) == BGJOB_STATE_STOPPED);
        CHECK_OK(bgjob_remove(sleepers[i], false));
    }
}

static void test_a_thousand_jobs_leave_the_descriptors_as_they_were(void) {
    enum { CAP = 4096 };
    static int before[CAP], after[CAP];
    static bool before_cx[CAP], after_cx[CAP];
    const size_t batches = sanitizing() ? 2 : 10, per_batch = 100;
    const char *argv[] = {"true", NULL};
    /* Warm up: the default pool and the reactor exist, with their descriptors. */
    uint64_t id = start_spec(proc_spec("true", argv));
    CHECK(wait_done(id) == BGJOB_STATE_COMPLETED);
    CHECK_OK(bgjob_remove(id, false));
    size_t nbefore = open_fds(before, before_cx, CAP);
    CHECK(nbefore >= 3);
    uint64_t ids[100];
    size_t completed = 0;
    for (size_t b = 0; b < batches; b++) {
        for (size_t i = 0; i < per_batch; i++) ids[i] = start_spec(proc_spec("true", argv));
        CHECK_OK(bgjob_wait(ids, per_batch, BGJOB_WAIT_ALL, 120000, NULL, NULL));
        for (size_t i = 0; i < per_batch; i++) {
            if (state_of(ids[i]) == BGJOB_STATE_COMPLETED) completed++;
            CHECK_OK(bgjob_remove(ids[i], false));
        }
    }
    CHECK(completed == batches * per_batch);
    size_t nafter = open_fds(after, after_cx, CAP);
    bool same = nafter == nbefore && memcmp(before, after, nbefore * sizeof *before) == 0;
    CHECK(same);
    if (!same) {
        print_fds("fds before", before, nbefore);
        print_fds("fds after", after, nafter);
    }
    CHECK(zombies() == 0);
}

/* ----- 12. misuse, inline runs, custom jobs --------------------------------------------- */

/* The call fails with `want` and leaves a non-empty message. */
#define CHECK_FAILS(expr, want)                                                         \
    do {                                                                                \
        CHECK_STATUS((expr), (want));                                                   \
        CHECK(bgjob_last_error_message()[0] != '\0');                                   \
    } while (0)

static int32_t work_nothing(bgjob_context *ctx, void *user_data) {
    (void)ctx;
    (void)user_data;
    return 0;
}

static void test_misuse_of_the_process_settings(void) {
    const char *argv[] = {"echo", "x", NULL};
    const char *with_null[] = {"echo", NULL, "x"};
    bgjob_spec *spec = new_spec("misuse");
    CHECK_FAILS(bgjob_spec_set_argv(NULL, argv, 2), BGJOB_E_INVALID_ARGUMENT);
    CHECK_FAILS(bgjob_spec_set_argv(spec, NULL, 2), BGJOB_E_INVALID_ARGUMENT);
    CHECK_FAILS(bgjob_spec_set_argv(spec, argv, 0), BGJOB_E_INVALID_ARGUMENT);
    CHECK_FAILS(bgjob_spec_set_argv(spec, with_null, 3), BGJOB_E_INVALID_ARGUMENT);
    CHECK(strstr(bgjob_last_error_message(), "argv[1]") != NULL);
    const char *empty[] = {"", NULL};
    CHECK_FAILS(bgjob_spec_set_argv(spec, empty, 1), BGJOB_E_INVALID_ARGUMENT);
    CHECK_FAILS(bgjob_spec_set_env(NULL, "A", "b"), BGJOB_E_INVALID_ARGUMENT);
    CHECK_FAILS(bgjob_spec_set_env(spec, NULL, "b"), BGJOB_E_INVALID_ARGUMENT);
    CHECK_FAILS(bgjob_spec_set_env(spec, "", "b"), BGJOB_E_INVALID_ARGUMENT);
    CHECK_FAILS(bgjob_spec_set_env(spec, "A=B", "b"), BGJOB_E_INVALID_ARGUMENT);
    CHECK_FAILS(bgjob_spec_clear_env(NULL), BGJOB_E_INVALID_ARGUMENT);
    CHECK_FAILS(bgjob_spec_set_working_directory(NULL, "/"), BGJOB_E_INVALID_ARGUMENT);
    CHECK_FAILS(bgjob_spec_set_working_directory(spec, NULL), BGJOB_E_INVALID_ARGUMENT);
    CHECK_FAILS(bgjob_spec_set_stdin(NULL, "x", 1), BGJOB_E_INVALID_ARGUMENT);
    CHECK_FAILS(bgjob_spec_set_stdin(spec, NULL, 1), BGJOB_E_INVALID_ARGUMENT);
    CHECK_FAILS(bgjob_spec_set_stop_grace(NULL, 10), BGJOB_E_INVALID_ARGUMENT);
    CHECK_FAILS(bgjob_spec_set_stop_grace(spec, -1), BGJOB_E_INVALID_ARGUMENT);
    CHECK_FAILS(bgjob_spec_set_stop_grace(spec, INT64_MIN), BGJOB_E_INVALID_ARGUMENT);
    CHECK_FAILS(bgjob_spec_set_output_mode(NULL, BGJOB_OUTPUT_LINES), BGJOB_E_INVALID_ARGUMENT);
    CHECK_FAILS(bgjob_spec_set_output_mode(spec, 7), BGJOB_E_INVALID_ARGUMENT);
    CHECK_FAILS(bgjob_spec_set_output_mode(spec, UINT32_MAX), BGJOB_E_INVALID_ARGUMENT);
    /* None of the failures changed the spec: with argv now, it runs echo x. */
    CHECK_OK(bgjob_spec_set_argv(spec, argv, 2));
    uint64_t id = 0;
    CHECK_OK(bgjob_run_inline(spec, &id));
    CHECK(state_of(id) == BGJOB_STATE_COMPLETED);
    CHECK(output_is_only(id, "x"));
    CHECK_OK(bgjob_remove(id, false));
}

static void test_specs_mixing_kinds_are_refused(void) {
    const char *argv[] = {"true", NULL};
    char pattern[128];
    jname(pattern, sizeof pattern, "mixed");
    atomic_int finalized;
    atomic_init(&finalized, 0);
    uint64_t id = 0;

    /* argv + work */
    bgjob_spec *spec = new_spec("mixed");
    CHECK_OK(bgjob_spec_set_argv(spec, argv, 1));
    CHECK_OK(bgjob_spec_set_work(spec, work_nothing, &finalized, count_finalize));
    CHECK_FAILS(bgjob_start(spec, &id), BGJOB_E_INVALID_ARGUMENT);
    CHECK(strstr(bgjob_last_error_message(), "work") != NULL);
    CHECK(atomic_load(&finalized) == 1);
    spec = new_spec("mixed");
    CHECK_OK(bgjob_spec_set_argv(spec, argv, 1));
    CHECK_OK(bgjob_spec_set_work(spec, work_nothing, &finalized, count_finalize));
    CHECK_FAILS(bgjob_run_inline(spec, &id), BGJOB_E_INVALID_ARGUMENT);
    CHECK(atomic_load(&finalized) == 2);

    /* argv + input */
    spec = new_spec("mixed");
    CHECK_OK(bgjob_spec_set_argv(spec, argv, 1));
    CHECK_OK(bgjob_spec_add_input(spec, "a", 1));
    CHECK_FAILS(bgjob_start(spec, &id), BGJOB_E_INVALID_ARGUMENT);
    CHECK(strstr(bgjob_last_error_message(), "input") != NULL);
    spec = new_spec("mixed");
    CHECK_OK(bgjob_spec_set_argv(spec, argv, 1));
    CHECK_OK(bgjob_spec_add_input(spec, "a", 1));
    CHECK_FAILS(bgjob_run_inline(spec, &id), BGJOB_E_INVALID_ARGUMENT);
    CHECK(strstr(bgjob_last_error_message(), "input") != NULL);

    /* argv + a custom-only setting */
    spec = new_spec("mixed");
    CHECK_OK(bgjob_spec_set_argv(spec, argv, 1));
    CHECK_OK(bgjob_spec_set_location(spec, "far away"));
    CHECK_FAILS(bgjob_start(spec, &id), BGJOB_E_INVALID_ARGUMENT);
    CHECK(strstr(bgjob_last_error_message(), "location") != NULL);

    /* process settings without argv: refused, naming the setting */
    struct {
        const char *setting;
    } cases[] = {{"bgjob_spec_set_env"},         {"bgjob_spec_clear_env"},
                 {"bgjob_spec_set_working_directory"}, {"bgjob_spec_set_stdin"},
                 {"bgjob_spec_set_stop_grace"},  {"bgjob_spec_set_output_mode"}};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        for (int inline_run = 0; inline_run < 2; inline_run++) {
            spec = new_spec("mixed");
            CHECK_OK(bgjob_spec_set_work(spec, work_nothing, &finalized, count_finalize));
            switch (i) {
            case 0: CHECK_OK(bgjob_spec_set_env(spec, "A", "b")); break;
            case 1: CHECK_OK(bgjob_spec_clear_env(spec)); break;
            case 2: CHECK_OK(bgjob_spec_set_working_directory(spec, "/")); break;
            case 3: CHECK_OK(bgjob_spec_set_stdin(spec, "x", 1)); break;
            case 4: CHECK_OK(bgjob_spec_set_stop_grace(spec, 10)); break;
            default: CHECK_OK(bgjob_spec_set_output_mode(spec, BGJOB_OUTPUT_CHUNKS)); break;
            }
            CHECK_FAILS(inline_run ? bgjob_run_inline(spec, &id) : bgjob_start(spec, &id),
                        BGJOB_E_INVALID_ARGUMENT);
            const char *m = bgjob_last_error_message();
            CHECK(strstr(m, cases[i].setting) != NULL);
            CHECK(strstr(m, "applies to a process job") != NULL);
            CHECK(strstr(m, "bgjob_spec_set_argv") != NULL);
        }
    }
    /* Neither work nor argv. */
    spec = new_spec("mixed");
    CHECK_FAILS(bgjob_start(spec, &id), BGJOB_E_INVALID_ARGUMENT);
    CHECK(strstr(bgjob_last_error_message(), "bgjob_spec_set_argv") != NULL);

    /* bgjob_create_custom refuses argv and process settings. */
    spec = new_spec("mixed");
    CHECK_OK(bgjob_spec_set_argv(spec, argv, 1));
    CHECK_FAILS(bgjob_create_custom(spec, &id), BGJOB_E_INVALID_ARGUMENT);
    CHECK(strstr(bgjob_last_error_message(), "bgjob_spec_set_argv") != NULL);
    spec = new_spec("mixed");
    CHECK_OK(bgjob_spec_set_stdin(spec, "x", 1));
    CHECK_FAILS(bgjob_create_custom(spec, &id), BGJOB_E_INVALID_ARGUMENT);
    CHECK(strstr(bgjob_last_error_message(), "bgjob_spec_set_stdin") != NULL);

    /* An unused spec with process settings frees cleanly. */
    spec = new_spec("mixed");
    CHECK_OK(bgjob_spec_set_argv(spec, argv, 1));
    CHECK_OK(bgjob_spec_set_env(spec, "A", "b"));
    CHECK_OK(bgjob_spec_set_stdin(spec, "x", 1));
    CHECK_OK(bgjob_spec_set_working_directory(spec, "/"));
    bgjob_spec_free(spec);

    CHECK(count_named(pattern) == 0);
    CHECK(atomic_load(&finalized) == 2 + 12);
}

static void test_run_inline_runs_the_process_here(void) {
    const char *argv[] = {"sh", "-c", "echo out; echo err >&2; exit 4", NULL};
    bgjob_spec *spec = proc_spec("inline", argv);
    uint64_t id = 0;
    CHECK_OK(bgjob_run_inline(spec, &id));
    /* Finished already, with its records. */
    CHECK(state_of(id) == BGJOB_STATE_FAILED);
    char reason[512];
    CHECK(strstr(reason_of(id, reason, sizeof reason), "exited with code 4") != NULL);
    bgjob_records *recs = take_all(id);
    CHECK(bgjob_records_count(recs) == 2);
    CHECK(has_record(recs, BGJOB_STREAM_OUTPUT, "out"));
    CHECK(has_record(recs, BGJOB_STREAM_ERROR, "err"));
    bgjob_records_free(recs);
    CHECK(info_text_is(id, bgjob_job_info_type_name, "ProcessJob"));
    CHECK_OK(bgjob_remove(id, false));
}

static void test_argv_is_bytes_and_replaced(void) {
    /* Not UTF-8: passed as it is. */
    const char *first[] = {"echo", "first", NULL};
    const char *argv[] = {"printf", "%s\\n", "caf\xe9", NULL};
    bgjob_spec *spec = proc_spec("bytes", first);
    CHECK_OK(bgjob_spec_set_argv(spec, argv, 3));
    uint64_t id = start_spec(spec);
    CHECK(wait_done(id) == BGJOB_STATE_COMPLETED);
    CHECK(output_is_only(id, "caf\xe9"));
    CHECK_OK(bgjob_remove(id, false));
}

static void test_a_final_line_without_newline_is_kept(void) {
    const char *argv[] = {"printf", "a\\nb", NULL};
    uint64_t id = start_spec(proc_spec("final-line", argv));
    CHECK(wait_done(id) == BGJOB_STATE_COMPLETED);
    bgjob_records *recs = take_all(id);
    CHECK(bgjob_records_count(recs) == 2);
    CHECK(record_is(recs, 0, BGJOB_STREAM_OUTPUT, "a"));
    CHECK(record_is(recs, 1, BGJOB_STREAM_OUTPUT, "b"));
    bgjob_records_free(recs);
    CHECK_OK(bgjob_remove(id, false));
}

static void test_chunks_mode_keeps_the_bytes(void) {
    const char *argv[] = {"printf", "a\\nb\\nc", NULL};
    bgjob_spec *spec = proc_spec("chunks", argv);
    CHECK_OK(bgjob_spec_set_output_mode(spec, BGJOB_OUTPUT_CHUNKS));
    uint64_t id = start_spec(spec);
    CHECK(wait_done(id) == BGJOB_STATE_COMPLETED);
    bgjob_records *recs = take_all(id);
    /* However the reads cut them, the chunks together are the bytes written. */
    char all[64] = "";
    size_t len = 0;
    for (size_t i = 0; i < bgjob_records_count(recs); i++) {
        const bgjob_record *r = bgjob_records_get(recs, i);
        CHECK(r->stream == BGJOB_STREAM_OUTPUT);
        if (len + r->len < sizeof all) {
            memcpy(all + len, r->data, r->len);
            len += r->len;
        }
    }
    all[len] = '\0';
    CHECK(strcmp(all, "a\nb\nc") == 0);
    bgjob_records_free(recs);
    CHECK_OK(bgjob_remove(id, false));
}

static void test_no_job_of_this_program_is_left(void) {
    char pattern[128];
    CHECK(count_named(jname(pattern, sizeof pattern, "*")) == 0);
}

int main(void) {
    snprintf(g_prefix, sizeof g_prefix, "ptest-%d", (int)getpid());
    snprintf(g_tmp, sizeof g_tmp, "/tmp/bgjob-ptest-XXXXXX");
    if (mkdtemp(g_tmp) == NULL) {
        perror("mkdtemp");
        return 1;
    }
    /* Before any bgjob thread exists: what the environment tests expect to inherit. */
    setenv("BGJOB_PTEST_INHERITED", "inh", 1);
    setenv("BGJOB_PTEST_REMOVED", "gone", 1);
    unsetenv("BGJOB_PTEST_ADDED");
    /* Hundreds of running process jobs hold three or four descriptors each. */
    struct rlimit lim;
    if (getrlimit(RLIMIT_NOFILE, &lim) == 0) {
        rlim_t want = lim.rlim_max < 4096 ? lim.rlim_max : 4096;
        if (lim.rlim_cur < want) {
            lim.rlim_cur = want;
            setrlimit(RLIMIT_NOFILE, &lim);
        }
    }
    RUN_TEST(test_echo_completes_with_one_record);
    RUN_TEST(test_command_text_can_be_set);
    RUN_TEST(test_stdout_and_stderr_interleave_in_arrival_order);
    RUN_TEST(test_each_stream_keeps_its_own_order);
    RUN_TEST(test_exit_code_fails_the_job);
    RUN_TEST(test_missing_program_fails_the_job);
    RUN_TEST(test_killed_by_a_signal_it_was_not_sent_by_us_fails_naming_it);
    RUN_TEST(test_a_file_that_is_not_executable_fails_the_job);
    RUN_TEST(test_bad_working_directory_is_a_system_error);
    RUN_TEST(test_stdin_bytes_reach_the_process);
    RUN_TEST(test_large_stdin_is_fed_whole);
    RUN_TEST(test_environment_added_removed_replaced);
    RUN_TEST(test_stop_a_sleeping_process);
    RUN_TEST(test_sigterm_ignored_gets_sigkill_after_the_grace);
    RUN_TEST(test_stop_with_a_grandchild_holding_stdout);
    RUN_TEST(test_stop_with_a_grandchild_that_left_the_group_holding_stdout);
    RUN_TEST(test_a_process_job_cannot_be_suspended);
    RUN_TEST(test_a_throttled_pool_holds_the_next_process_until_one_ends);
    RUN_TEST(test_hundreds_at_once_need_few_threads_and_leave_no_zombies);
    RUN_TEST(test_a_thousand_jobs_leave_the_descriptors_as_they_were);
    RUN_TEST(test_no_descriptor_leaks_into_another_jobs_process);
    RUN_TEST(test_misuse_of_the_process_settings);
    RUN_TEST(test_specs_mixing_kinds_are_refused);
    RUN_TEST(test_run_inline_runs_the_process_here);
    RUN_TEST(test_argv_is_bytes_and_replaced);
    RUN_TEST(test_a_final_line_without_newline_is_kept);
    RUN_TEST(test_chunks_mode_keeps_the_bytes);
    RUN_TEST(test_no_job_of_this_program_is_left);
    /* Every bgjob thread gone before exit: valgrind sees no live worker. */
    CHECK_OK(bgjob_shutdown(BGJOB_INFINITE));
    rmdir(g_tmp);
    return check_summary("test_process");
}
