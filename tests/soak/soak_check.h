/* The soak driver's invariant-checking pieces (tests/soak/soak.c): violation reports,
 * status expectations, state-change chains, the record payload format, and a small
 * sharded map from job id to what the repository-wide callback and the event queue saw.
 * Everything is `static` and used by soak.c only. Include after util.h. */
#ifndef BGJOB_SOAK_CHECK_H
#define BGJOB_SOAK_CHECK_H

#include "util.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ===== violations ======================================================================== */

/* How many violations are printed; the run ends once this many were found. */
#define MAX_SHOWN 12

static atomic_int g_violations;
static atomic_bool g_stop;   /* ends the run early (too many violations) */
static double g_t0;          /* now_ms() at the start */
/* Who is running: a host thread's index, or one of these. */
enum { WHO_BGJOB = -1, WHO_MAIN = -2, WHO_MONITOR = -3 };
static _Thread_local int tl_who = WHO_BGJOB;

static void violation(int line, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void violation(int line, const char *fmt, ...) {
    int n = atomic_fetch_add(&g_violations, 1);
    if (n < MAX_SHOWN) {
        char msg[1536], who[32];
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(msg, sizeof msg, fmt, ap);
        va_end(ap);
        if (tl_who >= 0) snprintf(who, sizeof who, "host %d", tl_who);
        else snprintf(who, sizeof who, "%s", tl_who == WHO_MAIN      ? "main"
                                             : tl_who == WHO_MONITOR ? "monitor"
                                                                     : "a bgjob thread");
        fprintf(stderr, "soak: VIOLATION %d at %.1f s (%s, soak.c:%d): %s\n", n + 1,
                (now_ms() - g_t0) / 1000.0, who, line, msg);
        fflush(stderr);
    } else if (n == MAX_SHOWN) {
        fprintf(stderr, "soak: further violations are counted, not shown\n");
    }
    if (n + 1 >= MAX_SHOWN) atomic_store(&g_stop, true);
}

#define VIOL(...) violation(__LINE__, __VA_ARGS__)
#define VCHECK(cond, ...)                                                                   \
    do {                                                                                    \
        if (!(cond)) violation(__LINE__, __VA_ARGS__);                                      \
    } while (0)

/* ===== status expectations =============================================================== */

/* Documented errors that a call returned where the driver expected them. */
static atomic_llong st_errors;

#define B(s) (1u << (s))
#define OKB B(BGJOB_OK)

/* The status must be in `mask`; an expected error must come with a message. */
static bgjob_status expect_st(bgjob_status st, unsigned mask, const char *what, int line) {
    if (st < 32 && (mask & B(st))) {
        if (st != BGJOB_OK) {
            atomic_fetch_add(&st_errors, 1);
            const char *m = bgjob_last_error_message();
            if (m == NULL || m[0] == '\0')
                violation(line, "%s -> %s without a message", what, bgjob_status_name(st));
        }
        return st;
    }
    char want[256] = "";
    size_t off = 0;
    for (unsigned s = 0; s < 32 && off < sizeof want - 32; s++)
        if (mask & B(s))
            off += (size_t)snprintf(want + off, sizeof want - off, "%s%s", off ? "|" : "",
                                    bgjob_status_name(s));
    violation(line, "%s -> %s (%s), want %s", what, bgjob_status_name(st),
              bgjob_last_error_message(), want);
    return st;
}

#define EXPECT(expr, mask) expect_st((expr), (mask), #expr, __LINE__)

/* ===== state-change chains ================================================================ */

#define HIST 24

/* What one observer (a job's callback, the repository-wide callback, an event queue) saw
 * of one job's changes. Each event must continue the last (its previous state is the last
 * new state), be a legal move (DESIGN §1), and nothing may follow a finished state. */
typedef struct chain {
    int n;
    unsigned first_prev, last;
    int bad;
    unsigned hist[HIST]; /* new states of the first HIST events */
} chain;

static void chain_init(chain *c) {
    memset(c, 0, sizeof *c);
    c->last = 99;
}

static bool state_finished(unsigned s) { return bgjob_state_is_finished(s); }

/* DESIGN §1's legal moves, with the one addition the guide (section 3) makes for bgjob's
 * own jobs: the end of the work finishes a job that is still Suspending (work that never
 * reached a checkpoint after a suspend). */
static bool soak_legal(unsigned from, unsigned to) {
    return legal_move(from, to) || (from == BGJOB_STATE_SUSPENDING && state_finished(to));
}

/* Adds an event; returns why it breaks the chain, or NULL. */
static const char *chain_add(chain *c, unsigned prev, unsigned next) {
    const char *why = NULL;
    if (c->n == 0) c->first_prev = prev;
    else if (state_finished(c->last)) why = "a change after a finished state";
    else if (prev != c->last) why = "a gap: its previous state is not the last new state";
    if (why == NULL && !soak_legal(prev, next)) why = "an illegal move";
    if (c->n < HIST) c->hist[c->n] = next;
    c->n++;
    c->last = next;
    if (why) c->bad++;
    return why;
}

/* "NotStarted>Running>Completed". */
static const char *chain_str(const chain *c, char *buf, size_t size) {
    size_t off = 0;
    if (c->n == 0) {
        snprintf(buf, size, "(none)");
        return buf;
    }
    off += (size_t)snprintf(buf, size, "%s", bgjob_state_name(c->first_prev));
    for (int i = 0; i < c->n && i < HIST && off < size; i++)
        off += (size_t)snprintf(buf + off, size - off, ">%s", bgjob_state_name(c->hist[i]));
    if (c->n > HIST && off < size) snprintf(buf + off, size - off, ">...(%d)", c->n);
    return buf;
}

/* Two observers saw the same changes. */
static bool chain_same(const chain *a, const chain *b) {
    if (a->n != b->n || a->last != b->last || a->first_prev != b->first_prev) return false;
    for (int i = 0; i < a->n && i < HIST; i++)
        if (a->hist[i] != b->hist[i]) return false;
    return true;
}

/* ===== records ============================================================================ */

/* Every record a job writes encodes (job tag, writer, sequence): "T<tag>.<writer>:<seq>",
 * where the writer is the child's index (parallel and custom parents), the pipe (process
 * jobs: 0 stdout, 1 stderr) or 0. A progress record carries it as its status text. */
static int fmt_payload(char *buf, size_t size, uint32_t tag, unsigned w, uint32_t seq) {
    return snprintf(buf, size, "T%" PRIu32 ".%u:%" PRIu32, tag, w, seq);
}

static bool parse_payload(const uint8_t *data, size_t len, uint32_t *tag, unsigned *w,
                          uint32_t *seq) {
    char buf[64];
    if (data == NULL || len < 5 || len >= sizeof buf || data[0] != 'T') return false;
    memcpy(buf, data, len);
    buf[len] = '\0';
    char *end;
    unsigned long a = strtoul(buf + 1, &end, 10);
    if (*end != '.') return false;
    unsigned long b = strtoul(end + 1, &end, 10);
    if (*end != ':') return false;
    unsigned long c = strtoul(end + 1, &end, 10);
    if (*end != '\0' || a > UINT32_MAX || b > 64 || c > UINT32_MAX) return false;
    char again[64];
    int n = fmt_payload(again, sizeof again, (uint32_t)a, (unsigned)b, (uint32_t)c);
    if (n < 0 || (size_t)n != len || memcmp(again, buf, len) != 0) return false;
    *tag = (uint32_t)a;
    *w = (unsigned)b;
    *seq = (uint32_t)c;
    return true;
}

/* The stream of record `seq` of a thread or custom job (progress every 7th). */
static bgjob_stream stream_of_seq(uint32_t seq) {
    static const bgjob_stream m[7] = {BGJOB_STREAM_OUTPUT,  BGJOB_STREAM_ERROR,
                                      BGJOB_STREAM_WARNING, BGJOB_STREAM_VERBOSE,
                                      BGJOB_STREAM_DEBUG,   BGJOB_STREAM_INFORMATION,
                                      BGJOB_STREAM_PROGRESS};
    return m[seq % 7];
}

/* ===== what the repository-wide callback and the event queue saw, by job id ============== */

typedef struct entry {
    uint64_t id;
    struct entry *next;
    chain any, q; /* the repository-wide callback's and the global event queue's */
    int in_any;   /* a repository-wide callback of this job is running */
} entry;

#define NSHARD 64
#define NBUCKET 256

typedef struct shard {
    pthread_mutex_t mu;
    entry *b[NBUCKET];
    size_t n;
} shard;

static shard g_shards[NSHARD];

static void shards_init(void) {
    for (int i = 0; i < NSHARD; i++) pthread_mutex_init(&g_shards[i].mu, NULL);
}

static shard *shard_of(uint64_t id) { return &g_shards[id % NSHARD]; }

/* Finds (or makes) the entry of `id`; the caller holds its shard's lock. */
static entry *entry_find(shard *s, uint64_t id, bool create) {
    entry **p = &s->b[(id / NSHARD) % NBUCKET];
    for (entry *e = *p; e != NULL; e = e->next)
        if (e->id == id) return e;
    if (!create) return NULL;
    entry *e = calloc(1, sizeof *e);
    if (e == NULL) abort();
    e->id = id;
    chain_init(&e->any);
    chain_init(&e->q);
    e->next = *p;
    *p = e;
    s->n++;
    return e;
}

/* Takes the entry of `id` out of the map (the caller frees it); NULL if there is none. */
static entry *entry_take(uint64_t id) {
    shard *s = shard_of(id);
    pthread_mutex_lock(&s->mu);
    entry **p = &s->b[(id / NSHARD) % NBUCKET];
    entry *found = NULL;
    for (; *p != NULL; p = &(*p)->next)
        if ((*p)->id == id) {
            found = *p;
            *p = found->next;
            s->n--;
            break;
        }
    pthread_mutex_unlock(&s->mu);
    return found;
}

/* Whether the repository-wide callback saw `id` finish and the event queue caught up. */
static bool entry_settled(uint64_t id) {
    shard *s = shard_of(id);
    pthread_mutex_lock(&s->mu);
    entry *e = entry_find(s, id, false);
    bool settled = e != NULL && e->in_any == 0 && state_finished(e->any.last) && e->q.n >= e->any.n;
    pthread_mutex_unlock(&s->mu);
    return settled;
}

/* How many entries are left, and the lowest id among them (0 if none). */
static size_t entries_left(uint64_t *first) {
    size_t n = 0;
    *first = 0;
    for (int i = 0; i < NSHARD; i++) {
        shard *s = &g_shards[i];
        pthread_mutex_lock(&s->mu);
        n += s->n;
        for (int b = 0; b < NBUCKET; b++)
            for (entry *e = s->b[b]; e != NULL; e = e->next)
                if (*first == 0 || e->id < *first) *first = e->id;
        pthread_mutex_unlock(&s->mu);
    }
    return n;
}

/* ===== process numbers ==================================================================== */

/* A field of /proc/self/status ("VmRSS", "Threads"), as a number (kB for sizes); -1 if
 * it cannot be read. */
static long proc_status(const char *field) {
    FILE *f = fopen("/proc/self/status", "r");
    if (f == NULL) return -1;
    char line[256];
    long v = -1;
    size_t len = strlen(field);
    while (fgets(line, sizeof line, f) != NULL)
        if (strncmp(line, field, len) == 0 && line[len] == ':') {
            v = strtol(line + len + 1, NULL, 10);
            break;
        }
    fclose(f);
    return v;
}

#endif
