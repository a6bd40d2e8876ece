/* bgjob demo (C): PowerShell's background jobs from a C program.
 *
 *   make demo        (or: build/demo, build/demo | cat)
 *
 * It starts five jobs at once and returns to its own loop at once (Start-Job):
 *   1. primes       a thread job (ThreadJob): counts primes, reporting progress;
 *   2. thumbnails   a parallel job (ParallelJob): one child per photo, at most 2 at a time;
 *   3. build        a process job (ProcessJob): `sh -c ...` printing a line every 0.3 s,
 *                   its stdout lines become Output records, its stderr lines Error records;
 *   4. db-sync      a thread job that fails, with a reason;
 *   5. watch-queue  a thread job that would run for a minute: the demo stops it (Stop-Job).
 * While they run it shows a progress bar per job (and per child), fed by job snapshots
 * (Get-Job), and every state change as a state-change callback reports it. When the
 * others are done it stops watch-queue, prints a Get-Job table, receives every job's
 * results (Receive-Job), removes every job (Remove-Job) and shuts the pool down.
 *
 * On a terminal the bars are redrawn in place and the state changes scroll above them;
 * into a pipe or a file it prints plain lines instead: one per state change, one per
 * progress step, no escape codes (demo_term.h decides which).
 *
 * Threads: the callback runs on bgjob's worker threads. It only records the change in a
 * queue under `events.lock` and returns; the main thread drains the queue and does all of
 * the printing, never under a bgjob lock (bgjob holds none while calling back anyway).
 */
#define _DEFAULT_SOURCE
#define _POSIX_C_SOURCE 200809L
#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bgjob.h"
#include "demo_term.h"

/* ----- errors: every bgjob call is checked ----------------------------------------------- */

/* Prints what failed and bgjob's own message, then exits non-zero (the atexit hook of
 * demo_term.h shows the cursor again). */
static void die(const char *what, bgjob_status st) {
    fflush(stdout);
    if (term.fancy) fputs("\n", stderr);
    fprintf(stderr, "demo: %s failed: %s: %s\n", what, bgjob_status_name(st),
            bgjob_last_error_message());
    exit(1);
}

#define TRY(call)                                                                      \
    do {                                                                               \
        bgjob_status try_st_ = (call);                                                 \
        if (try_st_ != BGJOB_OK) die(#call, try_st_);                                  \
    } while (0)

/* Inside a work function: a failed bgjob call fails the job, saying which call and why. */
static int32_t work_failed(bgjob_context *ctx, const char *what, bgjob_status st) {
    char reason[512];
    snprintf(reason, sizeof reason, "%s: %s: %s", what, bgjob_status_name(st),
             bgjob_last_error_message());
    (void)bgjob_context_fail(ctx, reason); /* the non-zero return fails the job anyway */
    return 1;
}

#define WORK_TRY(ctx, call)                                                            \
    do {                                                                               \
        bgjob_status work_st_ = (call);                                                \
        if (work_st_ != BGJOB_OK) return work_failed((ctx), #call, work_st_);          \
    } while (0)

static void sleep_ms(long ms) {
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0) {
    }
}

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static double t0; /* when the demo started */

/* ----- the work: what the thread jobs run (on bgjob's worker threads) -------------------- */

/* primes: counts the primes below `limit` in ten steps, reporting progress after each. */
static int32_t count_primes(bgjob_context *ctx, void *user_data) {
    long limit = (long)(intptr_t)user_data, found = 0, step = limit / 10;
    for (long n = 2; n < limit; n++) {
        bool prime = true;
        for (long d = 2; d * d <= n; d++)
            if (n % d == 0) {
                prime = false;
                break;
            }
        found += prime;
        if ((n + 1) % step == 0) {
            char status[64];
            snprintf(status, sizeof status, "%ld found below %ld", found, n + 1);
            WORK_TRY(ctx, bgjob_context_progress(ctx, (int32_t)((n + 1) / step * 10),
                                                 "Counting primes", status));
            if (bgjob_context_stop_requested(ctx)) return 0;
            sleep_ms(110); /* slow enough to watch */
        }
    }
    char out[64];
    snprintf(out, sizeof out, "%ld primes below %ld", found, limit);
    WORK_TRY(ctx, bgjob_context_write_text(ctx, BGJOB_STREAM_OUTPUT, out));
    return 0;
}

/* thumbnails: one child per photo; the photo's name is the child's input. */
static int32_t make_thumbnail(bgjob_context *ctx, void *user_data) {
    (void)user_data;
    const uint8_t *data;
    size_t len;
    WORK_TRY(ctx, bgjob_context_input(ctx, &data, &len));
    char photo[64];
    snprintf(photo, sizeof photo, "%.*s", (int)(len < 63 ? len : 63), (const char *)data);

    static const char *const steps[] = {"decoding", "scaling", "sharpening", "encoding"};
    char activity[96];
    snprintf(activity, sizeof activity, "Thumbnail of %s", photo);
    for (int i = 0; i < 4; i++) {
        WORK_TRY(ctx, bgjob_context_progress(ctx, i * 25, activity, steps[i]));
        if (bgjob_context_stop_requested(ctx)) return 0;
        sleep_ms(130);
    }
    WORK_TRY(ctx, bgjob_context_progress(ctx, 100, activity, "done"));
    char out[160];
    if (strcmp(photo, "harbour.jpg") == 0) /* a warning: it still Completes */
        WORK_TRY(ctx, bgjob_context_write_text(
                          ctx, BGJOB_STREAM_WARNING,
                          "harbour.jpg: no EXIF orientation, assumed upright"));
    snprintf(out, sizeof out, "%s: 4032x3024 -> thumbs/%s (256x192)", photo, photo);
    WORK_TRY(ctx, bgjob_context_write_text(ctx, BGJOB_STREAM_OUTPUT, out));
    return 0;
}

/* db-sync: tries three times, then fails the job with a reason. */
static int32_t db_sync(bgjob_context *ctx, void *user_data) {
    const char *server = user_data;
    char text[128];
    for (int attempt = 1; attempt <= 3; attempt++) {
        snprintf(text, sizeof text, "attempt %d of 3", attempt);
        WORK_TRY(ctx, bgjob_context_progress(ctx, attempt * 15, "Syncing orders", text));
        sleep_ms(220);
        snprintf(text, sizeof text, "attempt %d: %s refused the connection", attempt, server);
        WORK_TRY(ctx, bgjob_context_write_text(ctx, BGJOB_STREAM_WARNING, text));
    }
    snprintf(text, sizeof text, "connection refused by %s (3 attempts)", server);
    WORK_TRY(ctx, bgjob_context_fail(ctx, text));
    return 1;
}

/* watch-queue: polls for up to a minute, until a stop is asked; progress unknown (-1). */
static int32_t watch_queue(bgjob_context *ctx, void *user_data) {
    (void)user_data;
    int polls = 0;
    char text[64];
    WORK_TRY(ctx, bgjob_context_set_status_message(ctx, "watching jobs.incoming"));
    while (!bgjob_context_stop_requested(ctx) && polls < 1200) {
        sleep_ms(50);
        if (++polls % 5 == 0) {
            snprintf(text, sizeof text, "%d polls, 0 new messages", polls);
            WORK_TRY(ctx, bgjob_context_progress(ctx, -1, "Watching jobs.incoming", text));
        }
    }
    WORK_TRY(ctx, bgjob_context_write_text(ctx, BGJOB_STREAM_VERBOSE,
                                           "stop requested: closing the queue connection"));
    snprintf(text, sizeof text, "0 messages in %d polls", polls);
    WORK_TRY(ctx, bgjob_context_write_text(ctx, BGJOB_STREAM_OUTPUT, text));
    return 0; /* a stop was asked, so the job ends Stopped */
}

/* ----- state changes: recorded by the callback, printed by the main thread --------------- */

#define MAX_EVENTS 256

typedef struct demo_event {
    uint64_t job_id;
    bgjob_job_state from, to;
    char reason[200];
    double at;
} demo_event;

static struct {
    pthread_mutex_t lock;
    demo_event items[MAX_EVENTS];
    size_t count;   /* recorded */
    size_t dropped; /* did not fit (never in this demo; counted rather than lost silently) */
} events = {.lock = PTHREAD_MUTEX_INITIALIZER};

/* The repository-wide callback (bgjob_on_any_state_changed). Runs on a worker thread:
 * copies the event (its reason is valid during the call only) and returns. */
static void on_state_changed(const bgjob_state_event *e, void *user_data) {
    (void)user_data;
    double at = now_s() - t0;
    pthread_mutex_lock(&events.lock);
    if (events.count < MAX_EVENTS) {
        demo_event *d = &events.items[events.count++];
        d->job_id = e->job_id;
        d->from = e->previous_state_info.state;
        d->to = e->state_info.state;
        snprintf(d->reason, sizeof d->reason, "%s",
                 e->state_info.reason != NULL ? e->state_info.reason : "");
        d->at = at;
    } else {
        events.dropped++;
    }
    pthread_mutex_unlock(&events.lock);
}

/* ----- the live view --------------------------------------------------------------------- */

typedef struct demo_job {
    const char *label;  /* what it is, for the intro */
    uint64_t id;
    int expected_lines; /* a process job: lines it prints (its progress); else 0 */
} demo_job;

enum { J_PRIMES, J_THUMBS, J_BUILD, J_DBSYNC, J_WATCH, NJOBS };
static demo_job jobs[NJOBS];

#define MAX_ROWS 32

/* One line of the live view: a job or a child, as the latest snapshot shows it. */
typedef struct row {
    uint64_t id;
    int depth; /* 0 top-level, 1 child */
    char name[48];
    bgjob_job_state state;
    int percent; /* -1 unknown */
    char status[256];
    char step[300]; /* plain mode prints a progress line when this changes */
} row;

static row rows[MAX_ROWS];
static int nrows;
static char printed_step[MAX_ROWS][300]; /* plain mode: the last progress step printed */

static const char *state_color(bgjob_job_state s) {
    switch (s) {
    case BGJOB_STATE_COMPLETED: return SGR_GREEN;
    case BGJOB_STATE_FAILED: return SGR_RED;
    case BGJOB_STATE_STOPPED:
    case BGJOB_STATE_STOPPING: return SGR_YELLOW;
    case BGJOB_STATE_RUNNING: return SGR_CYAN;
    default: return SGR_DIM;
    }
}

/* A process job reports no progress; its lines are its progress: a Receive-Job -Keep
 * copies them without taking them, the last one is its status. */
static void process_progress(uint64_t id, int expected, int *percent, char *status, size_t sz) {
    bgjob_records *recs;
    TRY(bgjob_receive(id, BGJOB_RECEIVE_KEEP, 0, 0, &recs));
    size_t n = bgjob_records_count(recs), lines = 0;
    status[0] = '\0';
    for (size_t i = 0; i < n; i++) {
        const bgjob_record *r = bgjob_records_get(recs, i);
        if (r == NULL || r->data == NULL) continue;
        if (r->stream == BGJOB_STREAM_OUTPUT) lines++;
        snprintf(status, sz, "%s%s", r->stream == BGJOB_STREAM_ERROR ? "stderr: " : "",
                 (const char *)r->data);
    }
    bgjob_records_free(recs);
    *percent = expected > 0 ? (int)(lines * 100 / (size_t)expected) : -1;
    if (*percent > 100) *percent = 100;
}

/* Fills one row from a snapshot of job `id`. */
static void fill_row(row *r, const bgjob_job_info *info, int depth, int expected_lines) {
    r->id = bgjob_job_info_id(info);
    r->depth = depth;
    snprintf(r->name, sizeof r->name, "%s", bgjob_job_info_name(info));
    r->state = bgjob_job_info_state(info);
    r->percent = -1;
    r->status[0] = '\0';
    int32_t pct;
    const char *activity, *status;
    if (bgjob_job_info_progress(info, &pct, &activity, &status)) {
        r->percent = pct;
        if (depth > 0 && activity[0] != '\0')
            snprintf(r->status, sizeof r->status, "%s: %s", activity, status);
        else
            snprintf(r->status, sizeof r->status, "%s", status);
    } else if (strcmp(bgjob_job_info_type_name(info), "ProcessJob") == 0) {
        process_progress(r->id, expected_lines, &r->percent, r->status, sizeof r->status);
    }
    if (r->status[0] == '\0') /* no progress yet: what the work says it does, if anything */
        snprintf(r->status, sizeof r->status, "%s", bgjob_job_info_status_message(info));
    if (r->state == BGJOB_STATE_NOT_STARTED)
        snprintf(r->status, sizeof r->status, "queued (throttle limit)");
    if (r->state == BGJOB_STATE_COMPLETED) r->percent = 100;
    if (r->state == BGJOB_STATE_FAILED && bgjob_job_info_reason(info) != NULL)
        snprintf(r->status, sizeof r->status, "%s", bgjob_job_info_reason(info));
    snprintf(r->step, sizeof r->step, "%d|%s", r->percent, r->status);
}

/* Takes a snapshot of every demo job (and child) into rows[]. */
static void snapshot_rows(void) {
    nrows = 0;
    for (int j = 0; j < NJOBS && nrows < MAX_ROWS; j++) {
        bgjob_job_info *info;
        TRY(bgjob_get_job(jobs[j].id, &info));
        row *parent = &rows[nrows++];
        fill_row(parent, info, 0, jobs[j].expected_lines);
        size_t nchildren = bgjob_job_info_child_count(info);
        if (nchildren > 0) {
            /* A parent reports no progress of its own: its bar is its children's mean,
             * its status message says "k/n completed". */
            int sum = 0;
            for (size_t c = 0; c < nchildren && nrows < MAX_ROWS; c++) {
                bgjob_job_info *child;
                TRY(bgjob_get_job(bgjob_job_info_child_id(info, c), &child));
                row *cr = &rows[nrows++];
                fill_row(cr, child, 1, 0);
                sum += cr->percent < 0 ? 0 : cr->percent;
                bgjob_job_info_free(child);
            }
            parent->percent = sum / (int)nchildren;
            const char *message = bgjob_job_info_status_message(info);
            snprintf(parent->status, sizeof parent->status, "%s", message);
            snprintf(parent->step, sizeof parent->step, "%s", message);
        } else if (parent->state == BGJOB_STATE_STOPPED) {
            snprintf(parent->status, sizeof parent->status, "stopped by the demo (Stop-Job)");
        }
        bgjob_job_info_free(info);
    }
}

static const row *find_row(uint64_t id) {
    for (int i = 0; i < nrows; i++)
        if (rows[i].id == id) return &rows[i];
    return NULL;
}

/* "#3 thumbnails/Job3": a child is named after its parent. */
static void job_label(char *out, size_t sz, uint64_t id) {
    const row *r = find_row(id);
    if (r == NULL) {
        snprintf(out, sz, "#%llu", (unsigned long long)id);
        return;
    }
    const row *parent = NULL;
    for (int i = (int)(r - rows); r->depth > 0 && i >= 0; i--)
        if (rows[i].depth == 0) {
            parent = &rows[i];
            break;
        }
    if (parent != NULL)
        snprintf(out, sz, "#%llu %s/%s", (unsigned long long)id, parent->name, r->name);
    else
        snprintf(out, sz, "#%llu %s", (unsigned long long)id, r->name);
}

static void print_event(const demo_event *e, int width) {
    term_line l;
    char label[128];
    job_label(label, sizeof label, e->job_id);
    tl_reset(&l, width > 0 ? width - 1 : 0);
    tl_textf(&l, "  %5.2fs  ", e->at);
    tl_colored(&l, NULL, label, 24);
    tl_text(&l, " ");
    tl_text(&l, bgjob_state_name(e->from));
    tl_text(&l, " -> ");
    tl_sgr(&l, SGR_BOLD);
    tl_colored(&l, state_color(e->to), bgjob_state_name(e->to), 0);
    if (e->reason[0] != '\0') {
        tl_text(&l, "  reason: ");
        tl_text(&l, e->reason);
    }
    tl_print(&l);
}

static void print_note(const char *fmt, ...) {
    char text[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(text, sizeof text, fmt, ap);
    va_end(ap);
    term_line l;
    int width = term_width();
    tl_reset(&l, width > 0 ? width - 1 : 0);
    tl_textf(&l, "  %5.2fs  ", now_s() - t0);
    tl_sgr(&l, SGR_BOLD);
    tl_text(&l, "demo: ");
    tl_text(&l, text);
    tl_print(&l);
}

/* One row as a line: "    3    Job3  Running  [#####-----]  50%  status". */
static void format_row(term_line *l, const row *r, unsigned frame) {
    tl_textf(l, "  %3llu  ", (unsigned long long)r->id);
    tl_text(l, r->depth > 0 ? "  " : "");
    tl_colored(l, NULL, r->name, 14 - 2 * r->depth);
    tl_text(l, " ");
    tl_colored(l, state_color(r->state), bgjob_state_name(r->state), 11);
    bool moving = r->state == BGJOB_STATE_RUNNING;
    tl_bar(l, r->percent, moving, frame, 20, state_color(r->state));
    if (r->percent >= 0)
        tl_textf(l, " %3d%%  ", r->percent);
    else
        tl_text(l, "   ?   ");
    tl_text(l, r->status);
}

/* One frame. Fancy: new events scroll above the block, the block is redrawn in place.
 * Plain: one line per new event and per new progress step, nothing redrawn. */
static void draw(unsigned frame, bool final) {
    static size_t shown = 0; /* events printed so far */
    demo_event fresh[MAX_EVENTS];
    size_t nfresh = 0;
    pthread_mutex_lock(&events.lock);
    while (shown < events.count) fresh[nfresh++] = events.items[shown++];
    pthread_mutex_unlock(&events.lock);

    snapshot_rows();
    int width = term_width();
    term_begin_frame();
    for (size_t i = 0; i < nfresh; i++) print_event(&fresh[i], width);

    term_line l;
    if (term.fancy) {
        tl_reset(&l, width - 1);
        tl_sgr(&l, SGR_DIM);
        tl_text(&l, "   Id  Name           State      Progress");
        if (!final) tl_text(&l, " (live; Ctrl-C restores the cursor)");
        tl_print(&l);
        /* The block must fit on the screen to be redrawn in place: on a short terminal
         * the children are left out. */
        bool children = nrows + 2 <= term_height();
        int lines = 1;
        for (int i = 0; i < nrows; i++) {
            if (rows[i].depth > 0 && !children) continue;
            tl_reset(&l, width - 1);
            format_row(&l, &rows[i], frame);
            tl_print(&l);
            lines++;
        }
        term_end_frame(lines);
        return;
    }
    for (int i = 0; i < nrows; i++) {
        const row *r = &rows[i];
        /* A progress step worth a line: it changed, and the job has begun. */
        if (strcmp(r->step, printed_step[i]) == 0 || r->state == BGJOB_STATE_NOT_STARTED ||
            (r->percent < 0 && r->status[0] == '\0'))
            continue;
        snprintf(printed_step[i], sizeof printed_step[i], "%s", r->step);
        if (r->state == BGJOB_STATE_FAILED || r->state == BGJOB_STATE_STOPPED) continue;
        char label[128];
        job_label(label, sizeof label, r->id);
        tl_reset(&l, 0);
        tl_textf(&l, "  %5.2fs  ", now_s() - t0);
        tl_colored(&l, NULL, label, 24);
        tl_text(&l, " ");
        tl_bar(&l, r->percent, false, 0, 20, NULL);
        if (r->percent >= 0)
            tl_textf(&l, " %3d%%  ", r->percent);
        else
            tl_text(&l, "   ?   ");
        tl_text(&l, r->status);
        tl_print(&l);
    }
    term_end_frame(0);
}

/* ----- starting the jobs (Start-Job) ----------------------------------------------------- */

/* A new spec with a name and a command text. bgjob_start consumes a spec whatever the
 * result; a spec whose setter failed before is freed here (spec_try). */
static bgjob_spec *new_spec(const char *name, const char *command) {
    bgjob_spec *spec;
    TRY(bgjob_spec_new(&spec));
    bgjob_status st = bgjob_spec_set_name(spec, name);
    if (st == BGJOB_OK && command != NULL) st = bgjob_spec_set_command(spec, command);
    if (st != BGJOB_OK) {
        bgjob_spec_free(spec);
        die("bgjob_spec_set_name/command", st);
    }
    return spec;
}

static void spec_try(bgjob_spec *spec, bgjob_status st, const char *what) {
    if (st != BGJOB_OK) {
        bgjob_spec_free(spec);
        die(what, st);
    }
}

static uint64_t start_spec(bgjob_spec *spec) {
    uint64_t id;
    TRY(bgjob_start(spec, &id));
    return id;
}

static uint64_t start_thread_job(const char *name, const char *command, bgjob_work_fn fn,
                                 void *data) {
    bgjob_spec *spec = new_spec(name, command);
    spec_try(spec, bgjob_spec_set_work(spec, fn, data, NULL), "bgjob_spec_set_work");
    return start_spec(spec);
}

static void start_all(void) {
    jobs[J_PRIMES] = (demo_job){"a thread job", 0, 0};
    jobs[J_PRIMES].id = start_thread_job("primes", "count_primes 250000", count_primes,
                                         (void *)(intptr_t)250000);

    /* ForEach-Object -Parallel -AsJob -ThrottleLimit 2: a parent, one child per input. */
    static const char *const photos[] = {"beach.jpg", "harbour.jpg", "market.jpg", "summit.jpg"};
    bgjob_spec *spec = new_spec("thumbnails", "make_thumbnail");
    spec_try(spec, bgjob_spec_set_work(spec, make_thumbnail, NULL, NULL), "bgjob_spec_set_work");
    for (size_t i = 0; i < sizeof photos / sizeof photos[0]; i++)
        spec_try(spec, bgjob_spec_add_input(spec, photos[i], strlen(photos[i])),
                 "bgjob_spec_add_input");
    spec_try(spec, bgjob_spec_set_throttle_limit(spec, 2), "bgjob_spec_set_throttle_limit");
    jobs[J_THUMBS] = (demo_job){"a parallel job over 4 photos, 2 at a time", start_spec(spec), 0};

    /* Start-Job: a real program; no shell unless we run one. */
    static const char *const argv[] = {
        "sh", "-c",
        "for f in main util net db ui; do echo \"cc -c $f.c\"; sleep 0.3; done; "
        "echo \"net.c:42: warning: unused variable\" >&2; echo \"linked app\""};
    spec = new_spec("build", NULL);
    spec_try(spec, bgjob_spec_set_argv(spec, argv, 3), "bgjob_spec_set_argv");
    spec_try(spec, bgjob_spec_set_env(spec, "LC_ALL", "C"), "bgjob_spec_set_env");
    jobs[J_BUILD] = (demo_job){"a process job (sh -c ...)", start_spec(spec), 6};

    jobs[J_DBSYNC] = (demo_job){"a thread job that fails", 0, 0};
    jobs[J_DBSYNC].id = start_thread_job("db-sync", "db_sync db.example:5432", db_sync,
                                         (void *)"db.example:5432");

    jobs[J_WATCH] = (demo_job){"a thread job the demo stops", 0, 0};
    jobs[J_WATCH].id =
        start_thread_job("watch-queue", "watch_queue jobs.incoming", watch_queue, NULL);
}

/* ----- Get-Job: the table ---------------------------------------------------------------- */

#define NCOLS 7
#define CELL 256

static void print_job_table(void) {
    static const char *const heads[NCOLS] = {"Id",          "Name",     "PSJobTypeName", "State",
                                             "HasMoreData", "Location", "Command"};
    /* Every top-level job (bgjob_get_jobs), each followed by its children, indented. */
    bgjob_job_info *infos[MAX_ROWS];
    int depth[MAX_ROWS], n = 0;
    bgjob_job_list *list;
    TRY(bgjob_get_jobs(NULL, &list));
    for (size_t i = 0; i < bgjob_job_list_count(list) && n < MAX_ROWS; i++) {
        TRY(bgjob_get_job(bgjob_job_list_get(list, i), &infos[n]));
        depth[n] = 0;
        const bgjob_job_info *parent = infos[n++];
        for (size_t c = 0; c < bgjob_job_info_child_count(parent) && n < MAX_ROWS; c++) {
            TRY(bgjob_get_job(bgjob_job_info_child_id(parent, c), &infos[n]));
            depth[n++] = 1;
        }
    }
    bgjob_job_list_free(list);

    char cells[MAX_ROWS][NCOLS][CELL];
    int widths[NCOLS];
    for (int c = 0; c < NCOLS; c++) widths[c] = (int)strlen(heads[c]);
    for (int i = 0; i < n; i++) {
        const bgjob_job_info *in = infos[i];
        snprintf(cells[i][0], CELL, "%llu", (unsigned long long)bgjob_job_info_id(in));
        snprintf(cells[i][1], CELL, "%s%s", depth[i] ? "  " : "", bgjob_job_info_name(in));
        snprintf(cells[i][2], CELL, "%s", bgjob_job_info_type_name(in));
        snprintf(cells[i][3], CELL, "%s", bgjob_state_name(bgjob_job_info_state(in)));
        snprintf(cells[i][4], CELL, "%s", bgjob_job_info_has_more_data(in) ? "True" : "False");
        snprintf(cells[i][5], CELL, "%s", bgjob_job_info_location(in));
        snprintf(cells[i][6], CELL, "%s", bgjob_job_info_command(in));
        for (int c = 0; c < NCOLS; c++)
            if ((int)strlen(cells[i][c]) > widths[c]) widths[c] = (int)strlen(cells[i][c]);
    }

    int width = term_width();
    term_line l;
    printf("\nGet-Job (children indented under their parent):\n\n");
    for (int pass = 0; pass < 2; pass++) { /* the heads, then their underlines */
        tl_reset(&l, width > 0 ? width - 1 : 0);
        for (int c = 0; c < NCOLS; c++) {
            char under[32];
            size_t k = strlen(heads[c]);
            memset(under, '-', k);
            under[k] = '\0';
            tl_colored(&l, pass == 0 ? SGR_BOLD : NULL, pass == 0 ? heads[c] : under,
                       c + 1 < NCOLS ? widths[c] + 2 : 0);
        }
        tl_print(&l);
    }
    for (int i = 0; i < n; i++) {
        tl_reset(&l, width > 0 ? width - 1 : 0);
        for (int c = 0; c < NCOLS; c++) {
            const char *sgr = c == 3 ? state_color(bgjob_job_info_state(infos[i])) : NULL;
            tl_colored(&l, sgr, cells[i][c], c + 1 < NCOLS ? widths[c] + 2 : 0);
        }
        tl_print(&l); /* on a terminal a long command is cut at its edge: "..." */
    }
    for (int i = 0; i < n; i++) bgjob_job_info_free(infos[i]);
}

/* ----- Receive-Job, then Remove-Job ------------------------------------------------------ */

static void print_clean(const char *text) {
    term_line l;
    tl_reset(&l, 0);
    tl_text(&l, text); /* control characters of foreign output made harmless */
    fwrite(l.buf, 1, l.len, stdout);
}

static void receive_and_remove_all(void) {
    printf("\nReceive-Job, job by job (progress records counted, not shown):\n");
    bgjob_job_list *list;
    TRY(bgjob_get_jobs(NULL, &list));
    for (size_t i = 0; i < bgjob_job_list_count(list); i++) {
        uint64_t id = bgjob_job_list_get(list, i);
        bgjob_job_info *info;
        TRY(bgjob_get_job(id, &info));
        bgjob_job_state state = bgjob_job_info_state(info);
        printf("\n  %s (#%llu, %s, %s)\n", bgjob_job_info_name(info), (unsigned long long)id,
               bgjob_job_info_type_name(info), bgjob_state_name(state));

        bgjob_records *recs;
        TRY(bgjob_receive(id, 0, 0, 0, &recs)); /* takes every record, children's included */
        size_t progress = 0;
        for (size_t k = 0; k < bgjob_records_count(recs); k++) {
            const bgjob_record *r = bgjob_records_get(recs, k);
            if (r == NULL) continue;
            if (r->stream == BGJOB_STREAM_PROGRESS) {
                progress++;
                continue;
            }
            printf("    %-8s", bgjob_stream_name(r->stream));
            if (r->job_id != id) printf("[#%llu] ", (unsigned long long)r->job_id);
            print_clean(r->data != NULL ? (const char *)r->data : "(an object without bytes)");
            printf("\n");
        }
        if (state == BGJOB_STATE_FAILED)
            printf("    %-8s%s\n", "Reason", bgjob_job_info_reason(info) != NULL
                                                 ? bgjob_job_info_reason(info)
                                                 : "(none given)");
        if (state == BGJOB_STATE_STOPPED) printf("    %-8s%s\n", "Stopped", "by the demo");
        if (progress > 0) printf("    (%zu progress records)\n", progress);
        bgjob_records_free(recs);
        bgjob_job_info_free(info);

        TRY(bgjob_remove(id, false)); /* Remove-Job: frees its records, children too */
    }
    bgjob_job_list_free(list);

    /* Nothing is left: not a job, not a child. */
    bgjob_filter *filter;
    TRY(bgjob_filter_new(&filter));
    bgjob_status st = bgjob_filter_set_include_children(filter, true);
    if (st != BGJOB_OK) {
        bgjob_filter_free(filter);
        die("bgjob_filter_set_include_children", st);
    }
    st = bgjob_get_jobs(filter, &list);
    bgjob_filter_free(filter);
    if (st != BGJOB_OK) die("bgjob_get_jobs", st);
    size_t left = bgjob_job_list_count(list);
    bgjob_job_list_free(list);
    if (left != 0) {
        fprintf(stderr, "demo: %zu jobs are still in the repository\n", left);
        exit(1);
    }
}

/* ----- main ------------------------------------------------------------------------------ */

int main(void) {
    t0 = now_s();
    term_init();
    printf("bgjob %s demo (C): five background jobs, watched live%s\n\n", bgjob_version(),
           term.fancy ? "" : " (stdout is not a terminal: one line per change)");

    /* Enough workers for every thread job at once (a process job holds none while its
     * program runs). Must come before the first start. */
    TRY(bgjob_configure_default_pool(8, 0));

    /* Every state change of every job, children too, from now on. */
    uint64_t registration;
    TRY(bgjob_on_any_state_changed(on_state_changed, NULL, NULL, &registration));

    start_all();
    for (int j = 0; j < NJOBS; j++)
        printf("  Start-Job #%llu: %s\n", (unsigned long long)jobs[j].id, jobs[j].label);
    printf("\n");

    /* Watch until every job but watch-queue is finished. bgjob_wait is the frame clock:
     * it returns after 80 ms, or as soon as they are all done. */
    const uint64_t others[] = {jobs[J_PRIMES].id, jobs[J_THUMBS].id, jobs[J_BUILD].id,
                               jobs[J_DBSYNC].id};
    const size_t nothers = sizeof others / sizeof others[0];
    term_hide_cursor();
    unsigned frame = 0;
    for (;;) {
        bgjob_status st = bgjob_wait(others, nothers, BGJOB_WAIT_ALL, 80, NULL, NULL);
        if (st != BGJOB_OK && st != BGJOB_E_TIMEOUT) die("bgjob_wait", st);
        draw(frame++, false);
        if (st == BGJOB_OK) break;
    }

    /* Stop-Job: watch-queue sees the request at its next poll and returns. */
    term_begin_frame();
    print_note("the other jobs are done: stopping watch-queue (Stop-Job)");
    term_end_frame(0);
    TRY(bgjob_stop(jobs[J_WATCH].id, 5000));
    draw(frame, true);
    term_show_cursor();

    pthread_mutex_lock(&events.lock);
    size_t dropped = events.dropped;
    pthread_mutex_unlock(&events.lock);
    if (dropped > 0) printf("  (%zu state changes were not shown)\n", dropped);

    print_job_table();
    receive_and_remove_all();

    /* What the C tests do at the end too: no callback left, every bgjob thread gone, so
     * a leak checker finds nothing. */
    TRY(bgjob_unregister(0, registration));
    TRY(bgjob_shutdown(BGJOB_INFINITE));
    printf("\nAll jobs removed. Done.\n");
    return 0;
}
