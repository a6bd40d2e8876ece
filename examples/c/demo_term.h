/* demo_term.h: the terminal side of the bgjob demo (examples/c/demo.c), kept apart from
 * the bgjob side so that demo.c reads as "what a host does with jobs".
 *
 * Two modes, chosen once by term_init():
 *   - fancy: stdout is a terminal (isatty, and TERM is not "dumb"). A block of lines is
 *     redrawn in place (cursor moved up, the rest of the screen cleared, the block
 *     written again); lines printed above the block scroll as in a log. The cursor is
 *     hidden while the block is live and shown again at exit, on a fatal signal and on
 *     every error path (atexit). Colours unless NO_COLOR is set.
 *   - plain: anything else (a pipe, a file, a dumb terminal). No escape code at all:
 *     the caller prints one line per change instead.
 *
 * Everything is `static inline`: a helper the demo does not use costs no warning.
 */
#ifndef BGJOB_DEMO_TERM_H
#define BGJOB_DEMO_TERM_H

#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

/* Select Graphic Rendition codes used by the demo (only ever sent in fancy mode). */
#define SGR_RESET "\x1b[0m"
#define SGR_BOLD "\x1b[1m"
#define SGR_DIM "\x1b[2m"
#define SGR_RED "\x1b[31m"
#define SGR_GREEN "\x1b[32m"
#define SGR_YELLOW "\x1b[33m"
#define SGR_CYAN "\x1b[36m"

static struct {
    bool fancy;                          /* redraw in place (stdout is a terminal) */
    bool color;                          /* fancy, and NO_COLOR is not set */
    volatile sig_atomic_t cursor_hidden; /* read by the signal handler */
    bool hooks_installed;
    int drawn;                           /* lines of the live block now on screen */
} term;

/* Shows the cursor again if it was hidden. Async-signal-safe (write(2) only), so the
 * signal handler and the atexit hook share it. */
static inline void term_restore(void) {
    if (term.cursor_hidden) {
        static const char show[] = "\x1b[?25h" "\x1b[0m";
        ssize_t n = write(STDOUT_FILENO, show, sizeof show - 1);
        (void)n; /* nothing better to do if the terminal is gone */
        term.cursor_hidden = 0;
    }
}

static inline void term_on_exit(void) {
    fflush(stdout); /* what is buffered goes out before the cursor comes back */
    term_restore();
}

/* Ctrl-C, kill, hang-up: restore the terminal, then die of the same signal
 * (SA_RESETHAND put the default action back before this handler ran). */
static inline void term_on_signal(int sig) {
    term_restore();
    raise(sig);
}

/* Chooses the mode. Call once, before any output. */
static inline void term_init(void) {
    const char *t = getenv("TERM");
    const char *no_color = getenv("NO_COLOR");
    term.fancy = isatty(STDOUT_FILENO) && !(t != NULL && strcmp(t, "dumb") == 0);
    term.color = term.fancy && (no_color == NULL || no_color[0] == '\0');
    if (term.fancy) {
        /* One write per frame: the whole frame is buffered, then flushed. */
        setvbuf(stdout, NULL, _IOFBF, 1 << 16);
    }
}

/* Terminal width in columns (80 if unknown); 0 in plain mode = no limit. */
static inline int term_width(void) {
    if (!term.fancy) return 0;
    struct winsize ws;
    if (ioctl(STDOUT_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_col > 0) return ws.ws_col;
    return 80;
}

/* Terminal height in lines (24 if unknown). */
static inline int term_height(void) {
    struct winsize ws;
    if (ioctl(STDOUT_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_row > 0) return ws.ws_row;
    return 24;
}

/* Hides the cursor (fancy mode only), with the hooks that show it again whatever happens. */
static inline void term_hide_cursor(void) {
    if (!term.fancy) return;
    if (!term.hooks_installed) {
        term.hooks_installed = true;
        atexit(term_on_exit);
        struct sigaction sa;
        memset(&sa, 0, sizeof sa);
        sa.sa_handler = term_on_signal;
        sigemptyset(&sa.sa_mask);
        sa.sa_flags = SA_RESETHAND;
        static const int sigs[] = {SIGINT, SIGTERM, SIGHUP, SIGQUIT};
        for (size_t i = 0; i < sizeof sigs / sizeof sigs[0]; i++) sigaction(sigs[i], &sa, NULL);
    }
    fputs("\x1b[?25l", stdout);
    fflush(stdout);
    term.cursor_hidden = 1;
}

/* Ends the live view: the block stays on screen as it is, the cursor comes back. */
static inline void term_show_cursor(void) {
    term.drawn = 0;
    if (!term.fancy) return;
    fflush(stdout);
    term_restore();
}

/* Starts a frame: moves the cursor back to the first line of the live block drawn last
 * time and clears from there to the end of the screen. Lines printed next appear where
 * the block was (a log that scrolls), then the caller prints the new block and ends the
 * frame with term_end_frame(number of block lines). */
static inline void term_begin_frame(void) {
    if (!term.fancy) return;
    if (term.drawn > 0) printf("\x1b[%dA", term.drawn);
    fputs("\r\x1b[J", stdout);
}

static inline void term_end_frame(int block_lines) {
    term.drawn = term.fancy ? block_lines : 0;
    fflush(stdout);
}

/* ----- one output line, cut to the terminal width ---------------------------------------- */

/* A line being built: text and colour codes, cut at `max` visible columns (0 = no limit)
 * so that it never wraps (a wrapped line would break the cursor arithmetic of a redraw);
 * a cut line ends with "...". Control characters in the text (job output is foreign
 * text) become '?'. */
typedef struct term_line {
    char buf[1024];
    size_t len; /* bytes */
    int col;    /* visible columns */
    int max;
    bool cut;   /* text was left out at the edge */
} term_line;

static inline void tl_reset(term_line *l, int max) {
    l->len = 0;
    l->col = 0;
    l->max = max;
    l->cut = false;
    l->buf[0] = '\0';
}

static inline void tl_text(term_line *l, const char *s) {
    for (; s != NULL && *s != '\0'; s++) {
        unsigned char c = (unsigned char)*s;
        bool lead = (c & 0xC0) != 0x80; /* a UTF-8 continuation byte takes no column */
        if (lead && l->max > 0 && l->col >= l->max) {
            l->cut = true;
            break;
        }
        if (l->len + 1 >= sizeof l->buf) break;
        if (c < 0x20 || c == 0x7f) c = '?';
        l->buf[l->len++] = (char)c;
        if (lead) l->col++;
    }
    l->buf[l->len] = '\0';
}

static inline void tl_textf(term_line *l, const char *fmt, ...) {
    char tmp[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    tl_text(l, tmp);
}

/* Spaces up to visible column `col`. */
static inline void tl_pad(term_line *l, int col) {
    while (l->col < col && (l->max == 0 || l->col < l->max) &&
           l->len + 1 < sizeof l->buf) {
        l->buf[l->len++] = ' ';
        l->col++;
    }
    l->buf[l->len] = '\0';
}

/* A colour code: takes no column; left out unless colours are on. */
static inline void tl_sgr(term_line *l, const char *sgr) {
    if (!term.color) return;
    size_t n = strlen(sgr);
    if (l->len + n + 1 >= sizeof l->buf) return;
    memcpy(l->buf + l->len, sgr, n);
    l->len += n;
    l->buf[l->len] = '\0';
}

/* Text in a colour, padded to `width` columns (the padding outside the colour). */
static inline void tl_colored(term_line *l, const char *sgr, const char *text, int width) {
    int start = l->col;
    if (sgr != NULL) tl_sgr(l, sgr);
    tl_text(l, text);
    if (sgr != NULL) tl_sgr(l, SGR_RESET);
    tl_pad(l, start + width);
}

/* If text was cut at the edge, makes the last three columns "..." (colour codes before
 * them are kept: they take no column). */
static inline void tl_mark_cut(term_line *l) {
    if (!l->cut || l->max < 4) return;
    int keep = l->max - 3, col = 0;
    size_t i = 0;
    while (i < l->len) {
        if (l->buf[i] == '\x1b') { /* a colour code: ESC [ ... m */
            while (i < l->len && l->buf[i] != 'm') i++;
            i++;
            continue;
        }
        bool lead = ((unsigned char)l->buf[i] & 0xC0) != 0x80;
        if (lead && col == keep) break;
        col += lead;
        i++;
    }
    l->len = i < l->len ? i : l->len;
    l->col = col;
    l->buf[l->len] = '\0';
    tl_sgr(l, SGR_RESET);
    for (; l->col < l->max && l->len + 1 < sizeof l->buf; l->col++) l->buf[l->len++] = '.';
    l->buf[l->len] = '\0';
}

/* Prints the line and a newline. */
static inline void tl_print(term_line *l) {
    tl_mark_cut(l);
    if (term.color && l->len + 5 < sizeof l->buf) {
        /* never leave a colour on past the line, even if the cut fell inside it */
        memcpy(l->buf + l->len, SGR_RESET, sizeof SGR_RESET);
        l->len += sizeof SGR_RESET - 1;
    }
    fwrite(l->buf, 1, l->len, stdout);
    fputc('\n', stdout);
}

/* A progress bar of `width` cells between brackets: filled to `percent`, or, for an
 * unknown percent (-1) while the job runs, a block bouncing with the frame counter. */
static inline void tl_bar(term_line *l, int percent, bool moving, unsigned frame, int width,
                          const char *sgr) {
    char cells[128];
    if (width > (int)sizeof cells - 1) width = (int)sizeof cells - 1;
    if (percent >= 0) {
        int filled = percent * width / 100;
        for (int i = 0; i < width; i++) cells[i] = i < filled ? '#' : '-';
    } else {
        for (int i = 0; i < width; i++) cells[i] = ' ';
        if (moving) {
            int span = width - 3, pos = (int)(frame % (unsigned)(2 * span));
            if (pos > span) pos = 2 * span - pos;
            memcpy(cells + pos, "<=>", 3);
        }
    }
    cells[width] = '\0';
    tl_text(l, "[");
    tl_colored(l, sgr, cells, width);
    tl_text(l, "]");
}

#endif /* BGJOB_DEMO_TERM_H */
