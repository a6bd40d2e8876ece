"""bgjob demo (Python): PowerShell's background jobs from a Python program.

    make demo        (or: build/venv/bin/python examples/python/demo.py [| cat])

It starts five jobs at once and returns to its own loop at once (Start-Job):
  1. primes       a thread job (ThreadJob): counts primes, reporting progress;
  2. thumbnails   a parallel job (ParallelJob): one child per photo, at most 2 at a time;
  3. build        a process job (ProcessJob): ``sh -c ...`` printing a line every 0.3 s;
                  its stdout lines become output, its stderr lines ErrorRecords;
  4. db-sync      a thread job that raises: it fails, the exception is its reason;
  5. watch-queue  a thread job that would run for a minute: the demo stops it (Stop-Job).
While they run it shows a progress bar per job (and per child), read from the jobs'
properties (Get-Job), and every state change as a state-change callback reports it. When
the others are done it stops watch-queue, awaits one more job with asyncio, prints a
Get-Job table, receives every job's results (Receive-Job) and removes every job.

On a terminal the bars are redrawn in place and the state changes scroll above them; into
a pipe or a file it prints plain lines instead: one per state change, one per progress
step, no escape codes.

Threads: the callback runs on bgjob's worker threads; it only puts the change on a queue.
The main thread does all of the printing.
"""

from __future__ import annotations

import asyncio
import os
import queue
import shutil
import signal
import sys
import time
from typing import Any, List, NamedTuple, Optional, Tuple

import bgjob
from bgjob import JobState

T0 = time.monotonic()


def elapsed() -> float:
    return time.monotonic() - T0


# ----- the terminal ---------------------------------------------------------------------

RESET, BOLD, DIM = "\x1b[0m", "\x1b[1m", "\x1b[2m"
RED, GREEN, YELLOW, CYAN = "\x1b[31m", "\x1b[32m", "\x1b[33m", "\x1b[36m"


class Term:
    """Fancy (stdout is a terminal: a block redrawn in place, the cursor hidden meanwhile,
    colours unless NO_COLOR) or plain (a pipe, a file, TERM=dumb: no escape code at all)."""

    def __init__(self) -> None:
        self.fancy = sys.stdout.isatty() and os.environ.get("TERM") != "dumb"
        self.color = self.fancy and not os.environ.get("NO_COLOR")
        self.drawn = 0  # lines of the live block now on screen
        self.cursor_hidden = False

    def width(self) -> int:
        """Columns of the terminal; 0 (no limit) in plain mode."""
        return shutil.get_terminal_size((80, 24)).columns if self.fancy else 0

    def hide_cursor(self) -> None:
        if self.fancy:
            sys.stdout.write("\x1b[?25l")
            sys.stdout.flush()
            self.cursor_hidden = True

    def show_cursor(self) -> None:
        """Ends the live view: the block stays on screen as it is, the cursor comes back."""
        self.drawn = 0
        if self.cursor_hidden:
            sys.stdout.write("\x1b[?25h" + RESET)
            sys.stdout.flush()
            self.cursor_hidden = False

    def begin_frame(self) -> None:
        """Back to the first line of the block drawn last, clearing to the end of the
        screen: what is printed next lands where the block was (a log that scrolls)."""
        if self.fancy:
            if self.drawn:
                sys.stdout.write(f"\x1b[{self.drawn}A")
            sys.stdout.write("\r\x1b[J")

    def end_frame(self, block_lines: int) -> None:
        self.drawn = block_lines if self.fancy else 0
        sys.stdout.flush()


term = Term()


def clean(text: Any) -> str:
    """Foreign text (a job's output) with its control characters made harmless."""
    return "".join(c if c.isprintable() else "?" for c in str(text))


class Line:
    """A line of segments, each maybe coloured and padded, cut to the terminal width so
    that it never wraps (a wrapped line would break the cursor arithmetic of a redraw)."""

    def __init__(self) -> None:
        self.parts: List[Tuple[str, Optional[str]]] = []

    def add(self, text: Any, style: Optional[str] = None, width: int = 0) -> "Line":
        text = clean(text)
        self.parts.append((text, style))
        if len(text) < width:
            self.parts.append((" " * (width - len(text)), None))
        return self

    def render(self) -> str:
        room = term.width() - 1 if term.fancy else sys.maxsize
        cut = sum(len(text) for text, _ in self.parts) > room
        if cut:
            room -= 3  # a cut line ends with "..."
        out = []
        for text, style in self.parts:
            text = text[:max(room, 0)]
            room -= len(text)
            out.append(f"{style}{text}{RESET}" if style and term.color and text else text)
        return "".join(out) + ("..." if cut else "")

    def print(self) -> None:
        print(self.render())


def state_style(state: JobState) -> str:
    return {JobState.Completed: GREEN, JobState.Failed: RED, JobState.Stopped: YELLOW,
            JobState.Stopping: YELLOW, JobState.Running: CYAN}.get(state, DIM)


def bar(percent: int, moving: bool, frame: int, width: int = 20) -> str:
    """Filled to `percent`; for an unknown percent (-1) of a running job, a bouncing block."""
    if percent >= 0:
        filled = percent * width // 100
        return "#" * filled + "-" * (width - filled)
    if not moving:
        return " " * width
    span = width - 3
    pos = frame % (2 * span)
    pos = 2 * span - pos if pos > span else pos
    return " " * pos + "<=>" + " " * (width - 3 - pos)


# ----- the work (runs on bgjob's worker threads) ----------------------------------------

def context() -> bgjob.JobContext:
    """The running job's context: what its work writes records and progress through."""
    ctx = bgjob.current_job()
    assert ctx is not None, "called outside a job's work"
    return ctx


def count_primes(limit: int) -> str:
    """primes: counts the primes below `limit` in ten steps; the count is its output."""
    ctx = context()
    found, step = 0, limit // 10
    for n in range(2, limit):
        if all(n % d for d in range(2, int(n ** 0.5) + 1)):
            found += 1
        if (n + 1) % step == 0:
            ctx.write_progress((n + 1) // step * 10, "Counting primes",
                               f"{found} found below {n + 1}")
            if ctx.stop_requested:
                return "stopped early"
            time.sleep(0.11)  # slow enough to watch
    return f"{found} primes below {limit}"


def make_thumbnail(photo: str) -> str:
    """thumbnails: one child job per photo (its input)."""
    ctx = context()
    activity = f"Thumbnail of {photo}"
    for i, step in enumerate(["decoding", "scaling", "sharpening", "encoding"]):
        ctx.write_progress(i * 25, activity, step)
        if ctx.stop_requested:
            return f"{photo}: stopped"
        time.sleep(0.13)
    ctx.write_progress(100, activity, "done")
    if photo == "harbour.jpg":  # a warning: the job still Completes
        ctx.write_warning("harbour.jpg: no EXIF orientation, assumed upright")
    return f"{photo}: 4032x3024 -> thumbs/{photo} (256x192)"


def db_sync(server: str) -> None:
    """db-sync: tries three times, then raises: the job Fails with the exception as reason."""
    ctx = context()
    for attempt in range(1, 4):
        ctx.write_progress(attempt * 15, "Syncing orders", f"attempt {attempt} of 3")
        time.sleep(0.22)
        ctx.write_warning(f"attempt {attempt}: {server} refused the connection")
    raise ConnectionRefusedError(f"{server} (3 attempts)")


def watch_queue(name: str) -> str:
    """watch-queue: polls for up to a minute, until a stop is asked; progress unknown."""
    ctx = context()
    ctx.status_message = f"watching {name}"
    polls = 0
    while not ctx.stop_requested and polls < 1200:
        time.sleep(0.05)
        polls += 1
        if polls % 5 == 0:
            ctx.write_progress(-1, f"Watching {name}", f"{polls} polls, 0 new messages")
    ctx.write_verbose("stop requested: closing the queue connection")
    return f"0 messages in {polls} polls"  # a stop was asked, so the job ends Stopped


BUILD_SCRIPT = ('for f in main util net db ui; do echo "cc -c $f.c"; sleep 0.3; done; '
                'echo "net.c:42: warning: unused variable" >&2; echo "linked app"')
BUILD_LINES = 6  # what it prints on stdout: its progress


# ----- state changes: put on a queue by the callback, printed by the main thread --------

class Event(NamedTuple):
    at: float
    job_id: int
    previous: bgjob.JobStateInfo
    info: bgjob.JobStateInfo


events: "queue.SimpleQueue[Event]" = queue.SimpleQueue()


def on_state_changed(job: bgjob.Job, info: bgjob.JobStateInfo,
                     previous: bgjob.JobStateInfo) -> None:
    """Every state change of every job, children too; runs on a worker thread."""
    events.put(Event(elapsed(), job.id, previous, info))


# ----- the live view --------------------------------------------------------------------

class Row(NamedTuple):
    job: bgjob.Job
    depth: int
    state: JobState
    percent: int
    status: str
    step: str  # plain mode prints a progress line when this changes


def process_progress(job: bgjob.Job) -> Tuple[int, str]:
    """A process job reports no progress: its lines are its progress. receive(keep=True)
    copies them without taking them; the last one is its status."""
    records = job.receive(keep=True)
    lines = sum(1 for r in records if isinstance(r, str))
    last = records[-1] if records else ""
    status = f"stderr: {last.value}" if isinstance(last, bgjob.ErrorRecord) else str(last)
    return min(100, lines * 100 // BUILD_LINES), status


def leaf_row(job: bgjob.Job, depth: int) -> Row:
    state, progress = job.state, job.progress
    percent, status = -1, ""
    if progress is not None:
        percent = progress.percent_complete
        status = progress.status_description
        if depth and progress.activity:
            status = f"{progress.activity}: {status}"
    elif job.type_name == "ProcessJob":
        percent, status = process_progress(job)
    if not status:  # no progress yet: what the work says it does, if anything
        status = job.status_message
    if state == JobState.NotStarted:
        status = "queued (throttle limit)"
    elif state == JobState.Completed:
        percent = 100
    elif state == JobState.Failed:
        status = job.state_info.reason or "failed"
    elif state == JobState.Stopped:
        status = "stopped by the demo (Stop-Job)"
    return Row(job, depth, state, percent, status, f"{percent}|{status}")


def snapshot_rows(jobs: List[bgjob.Job]) -> List[Row]:
    rows: List[Row] = []
    for job in jobs:
        children = job.children
        if not children:
            rows.append(leaf_row(job, 0))
            continue
        # A parent reports no progress of its own: its bar is its children's mean, its
        # status message says "k/n completed".
        child_rows = [leaf_row(child, 1) for child in children]
        mean = sum(max(r.percent, 0) for r in child_rows) // len(child_rows)
        message = job.status_message
        rows.append(Row(job, 0, job.state, mean, message, message))
        rows.extend(child_rows)
    return rows


def label(job_id: int, rows: List[Row]) -> str:
    """'#3 thumbnails/Job3': a child is named after its parent."""
    for row in rows:
        if row.job.id == job_id:
            parent = row.job.parent
            return f"#{job_id} " + (f"{parent.name}/" if parent else "") + row.job.name
    return f"#{job_id}"


def event_line(e: Event, rows: List[Row]) -> Line:
    line = Line().add(f"  {e.at:5.2f}s  ").add(label(e.job_id, rows), width=24)
    line.add(f" {e.previous.state} -> ").add(str(e.info.state), BOLD + state_style(e.info.state))
    if e.info.reason:
        line.add(f"  reason: {e.info.reason}")
    return line


def note(text: str) -> None:
    term.begin_frame()
    Line().add(f"  {elapsed():5.2f}s  ").add(f"demo: {text}", BOLD).print()
    term.end_frame(0)


class LiveView:
    def __init__(self, jobs: List[bgjob.Job]) -> None:
        self.jobs = jobs
        self.frame = 0
        self.printed_steps: dict = {}

    def draw(self, final: bool = False) -> None:
        """One frame. Fancy: new events scroll above the block, the block is redrawn in
        place. Plain: one line per new event and per new progress step."""
        fresh = []
        while True:
            try:
                fresh.append(events.get_nowait())
            except queue.Empty:
                break
        rows = snapshot_rows(self.jobs)
        term.begin_frame()
        for e in fresh:
            event_line(e, rows).print()
        if term.fancy:
            hint = "" if final else " (live; Ctrl-C restores the cursor)"
            Line().add(f"   Id  Name           State      Progress{hint}", DIM).print()
            # The block must fit on the screen to be redrawn in place: on a short terminal
            # the children are left out.
            if len(rows) + 2 > shutil.get_terminal_size((80, 24)).lines:
                rows = [row for row in rows if row.depth == 0]
            for row in rows:
                self.row_line(row).print()
            term.end_frame(len(rows) + 1)
        else:
            for row in rows:
                self.plain_progress(row, rows)
            term.end_frame(0)
        self.frame += 1

    def row_line(self, row: Row) -> Line:
        style = state_style(row.state)
        line = Line().add(f"  {row.job.id:3}  " + "  " * row.depth)
        line.add(row.job.name, width=14 - 2 * row.depth).add(" ")
        line.add(str(row.state), style, width=11)
        line.add("[").add(bar(row.percent, row.state == JobState.Running, self.frame), style)
        line.add("]").add(f" {row.percent:3}%  " if row.percent >= 0 else "   ?   ")
        return line.add(row.status)

    def plain_progress(self, row: Row, rows: List[Row]) -> None:
        """A progress step worth a line: it changed, and the job has begun."""
        if (self.printed_steps.get(row.job.id) == row.step or row.state == JobState.NotStarted
                or (row.percent < 0 and not row.status)):
            return
        self.printed_steps[row.job.id] = row.step
        if row.state in (JobState.Failed, JobState.Stopped):
            return  # the state-change line says it
        line = Line().add(f"  {elapsed():5.2f}s  ").add(label(row.job.id, rows), width=24)
        line.add(f" [{bar(row.percent, False, 0)}]")
        line.add(f" {row.percent:3}%  " if row.percent >= 0 else "   ?   ").add(row.status)
        line.print()


# ----- Get-Job, Receive-Job, Remove-Job -------------------------------------------------

def print_job_table() -> None:
    heads = ["Id", "Name", "PSJobTypeName", "State", "HasMoreData", "Location", "Command"]
    table: List[Tuple[List[str], JobState]] = []
    for job in bgjob.get_jobs():  # every top-level job, each followed by its children
        for depth, j in [(0, job)] + [(1, child) for child in job.children]:
            cells = [str(j.id), "  " * depth + j.name, j.type_name, str(j.state),
                     str(j.has_more_data), j.location, j.command]
            table.append((cells, j.state))
    widths = [max([len(h)] + [len(cells[c]) for cells, _ in table]) for c, h in enumerate(heads)]
    print("\nGet-Job (children indented under their parent):\n")
    for cells, state in [(heads, None), (["-" * len(h) for h in heads], None)] + table:
        line = Line()
        for c, text in enumerate(cells):
            style = BOLD if cells is heads else state_style(state) if c == 3 and state else None
            line.add(text, style, width=widths[c] + 2 if c + 1 < len(cells) else 0)
        line.print()  # on a terminal a long command is cut at its edge, marked "..."


def receive_and_remove_all() -> None:
    print("\nReceive-Job, job by job (progress records counted, not shown):")
    for job in bgjob.get_jobs():
        state = job.state
        print(f"\n  {job.name} (#{job.id}, {job.type_name}, {state})")
        progress = 0
        # as_records: every record with its stream and the id of the (child) job that wrote it
        for record in job.receive(as_records=True):
            if isinstance(record, bgjob.ProgressRecord):
                progress += 1
                continue
            who = f"[#{record.job_id}] " if record.job_id != job.id else ""
            print(f"    {record.stream.name:<8}{who}{clean(record.value)}")
        if state == JobState.Failed:
            print(f"    {'Reason':<8}{job.state_info.reason}")
        if state == JobState.Stopped:
            print(f"    {'Stopped':<8}by the demo")
        if progress:
            print(f"    ({progress} progress records)")
        job.remove()  # Remove-Job: frees its records, its children's too
    left = bgjob.get_jobs(include_children=True)
    if left:
        raise SystemExit(f"demo: {len(left)} jobs are still in the repository")


# ----- main -----------------------------------------------------------------------------

async def awaited_sum() -> int:
    """`await job` in asyncio: the event loop runs on while the job does."""
    return await bgjob.start_job(sum, range(1_000_001), name="awaited-sum")


def main() -> None:
    mode = "" if term.fancy else " (stdout is not a terminal: one line per change)"
    print(f"bgjob {bgjob.__version__} demo (Python): five background jobs, watched live{mode}\n")

    # Enough workers for every thread job at once (a process job holds none while its
    # program runs). Must come before the first start.
    bgjob.configure_default_pool(threads=8)
    registration = bgjob.on_any_state_changed(on_state_changed)

    primes = bgjob.start_job(count_primes, 60_000, name="primes")
    photos = ["beach.jpg", "harbour.jpg", "market.jpg", "summit.jpg"]
    thumbs = bgjob.start_parallel_job(make_thumbnail, photos, name="thumbnails",
                                      throttle_limit=2)
    build = bgjob.start_process_job(["sh", "-c", BUILD_SCRIPT], name="build",
                                    add_env={"LC_ALL": "C"})
    sync = bgjob.start_job(db_sync, "db.example:5432", name="db-sync")
    watch = bgjob.start_job(watch_queue, "jobs.incoming", name="watch-queue")
    jobs = [primes, thumbs, build, sync, watch]
    for job, what in zip(jobs, ["a thread job", "a parallel job over 4 photos, 2 at a time",
                                "a process job (sh -c ...)", "a thread job that fails",
                                "a thread job the demo stops"]):
        print(f"  Start-Job #{job.id}: {what}")
    print(flush=True)

    view = LiveView(jobs)
    others = [primes, thumbs, build, sync]
    term.hide_cursor()
    try:
        # Watch until every job but watch-queue is finished: wait_jobs is the frame clock
        # (it returns after 80 ms, or as soon as they are all done).
        while True:
            done = bgjob.wait_jobs(others, timeout=0.08)
            view.draw()
            if len(done) == len(others):
                break
        note("the other jobs are done: stopping watch-queue (Stop-Job)")
        watch.stop(timeout=5)
        view.draw(final=True)
    finally:
        term.show_cursor()  # also after Ctrl-C or an error

    note(f"await job (asyncio): sum(range(1_000_001)) = {asyncio.run(awaited_sum())}")
    registration.unregister()

    print_job_table()
    receive_and_remove_all()
    print("\nAll jobs removed. Done.")


def _terminate(signum: int, _frame: Any) -> None:
    raise SystemExit(128 + signum)  # unwinds through the finally that shows the cursor


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, _terminate)
    signal.signal(signal.SIGHUP, _terminate)
    try:
        main()
    except KeyboardInterrupt:  # Ctrl-C: the cursor is back already (finally in main)
        print("\ndemo: interrupted", file=sys.stderr)
        sys.exit(130)
