"""parallel_files: a parallel job over files (PowerShell's ``ForEach-Object -Parallel
-AsJob``), each child counting the lines, words and bytes of one file like ``wc``.

It shows ``bgjob.start_parallel_job`` with a throttle limit, progress reported by each
child (``current_job().write_progress``), a live progress bar driven by the parent's
status message and its children's states and progress, Receive-Job on the parent (which
returns its children's records), and Remove-Job.

    build/venv/bin/python examples/python/parallel_files.py            # its own temp data
    build/venv/bin/python examples/python/parallel_files.py DIRECTORY  # the files in DIRECTORY
    build/venv/bin/python examples/python/parallel_files.py --delay 0  # full speed

On a terminal the bar is one line redrawn with '\\r'; piped, it prints plain lines now
and then (no control characters). It ends with a ``wc``-like table and checks the totals
against a direct computation: the exit code is 1 if they differ, or if any child failed.
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import tempfile
import time
from pathlib import Path
from typing import List, NamedTuple, Optional

import bgjob

# Files are read in chunks so that a child can report progress part way through one.
CHUNK = 8 * 1024
# At most this many children run at once (-ThrottleLimit); the others wait NotStarted.
THROTTLE = 4
# How often the bar is redrawn on a terminal, and how often a plain line is printed
# when the output is not one (a log wants fewer lines than a screen wants frames).
TTY_INTERVAL = 0.1
PLAIN_INTERVAL = 0.25
BAR_WIDTH = 30


class Counts(NamedTuple):
    """What one child returns; it comes back from ``receive`` as this very object."""

    name: str
    lines: int
    words: int
    bytes: int


def count_file(path: str, delay: float) -> Counts:
    """The work of one child: ``wc`` of one file, reading it chunk by chunk. Words are
    runs of bytes other than ASCII whitespace, as ``wc`` counts them in a UTF-8 locale."""
    ctx = bgjob.current_job()
    assert ctx is not None  # always set inside a job's work
    name = os.path.basename(path)
    size = os.path.getsize(path)
    lines = words = done = 0
    # A word may straddle two chunks: remember whether the last chunk ended inside one.
    in_word = False
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            lines += chunk.count(b"\n")
            words += len(chunk.split())
            if in_word and not chunk[:1].isspace():
                words -= 1  # the first word of this chunk was already counted
            in_word = not chunk[-1:].isspace()
            done += len(chunk)
            percent = done * 100 // size if size else 100
            ctx.write_progress(percent, "wc", f"{name}: {done}/{size} bytes")
            # Stop-Job on the parent stops its children: leave early if asked.
            if ctx.stop_requested:
                raise InterruptedError(f"stopped while counting {name}")
            if delay:
                time.sleep(delay)  # stands in for slow storage, so the bar has time to show
    return Counts(name, lines, words, done)


def make_sample_files(directory: Path, count: int = 40) -> None:
    """Writes `count` text files of varying sizes (one empty, one without a final newline)."""
    rng = random.Random(20240607)  # the same data every run
    vocabulary = ("job state wait receive stop remove child parent pool throttle "
                  "progress record stream callback output error warning").split()
    for i in range(count):
        # Log-normal line counts: mostly a few KiB to a few hundred KiB, now and then more.
        n_lines = 0 if i == 0 else min(int(rng.lognormvariate(7, 1.2)), 20000)
        text = "\n".join(
            " ".join(rng.choices(vocabulary, k=rng.randint(0, 14)))
            + ("\t" + "-" * rng.randint(1, 3) if rng.random() < 0.1 else "")
            for _ in range(n_lines)
        )
        if text and i != 7:  # file 07 ends without a newline: wc does not count that line
            text += "\n"
        (directory / f"file{i:02d}.txt").write_text(text, encoding="utf-8")


def direct_counts(path: Path) -> Counts:
    """The same counts computed another way, in one go, to check the job's answer."""
    data = path.read_bytes()
    return Counts(path.name, data.count(b"\n"), len(data.split()), len(data))


class ProgressView:
    """Draws the progress of a parallel job: a redrawn line on a terminal, plain lines
    otherwise."""

    def __init__(self, job: bgjob.Job, files: List[Path]) -> None:
        self.job = job
        # Child k works on input k: the children come in the order of the inputs.
        self.files = [(p.name, p.stat().st_size) for p in files]
        self.total = sum(size for _, size in self.files) or 1
        self.tty = sys.stdout.isatty()
        self.width = 0  # of the last line drawn on the terminal, to blank what is left of it

    def line(self) -> str:
        done = 0.0
        running: List[str] = []
        for child, (name, size) in zip(self.job.children, self.files):
            state = child.state
            if state.is_finished:
                done += size
            elif state == bgjob.JobState.Running:
                p = child.progress  # its latest write_progress, if any yet
                done += size * max(p.percent_complete, 0) / 100 if p else 0
                running.append(name)
        fraction = done / self.total
        filled = int(fraction * BAR_WIDTH)
        bar = "#" * filled + "." * (BAR_WIDTH - filled)
        # The parent's status message reads "finished/total completed".
        text = f"[{bar}] {fraction:4.0%}  {self.job.status_message}"
        return text + (f"  counting {', '.join(running)}" if running else "")

    def draw(self, final: bool = False) -> None:
        text = self.line()
        if self.tty:
            pad = " " * max(self.width - len(text), 0)
            self.width = len(text)
            sys.stdout.write("\r" + text + pad + ("\n" if final else ""))
        else:
            sys.stdout.write(text + "\n")
        sys.stdout.flush()


def run(directory: Path, delay: float) -> int:
    paths = sorted(p for p in directory.iterdir() if p.is_file())
    if not paths:
        print(f"no files in {directory}", file=sys.stderr)
        return 1
    print(f"counting {len(paths)} files ({sum(p.stat().st_size for p in paths)} bytes) in {directory}, "
          f"{THROTTLE} at a time")

    # The default pool has one thread per core; reading files mostly waits (and releases
    # the interpreter), so this job gets a pool of its own, with a thread per slot.
    with bgjob.Pool(threads=THROTTLE) as pool:
        # Start-Job for a family: one parent, one child per file, at most THROTTLE running.
        job = bgjob.start_parallel_job(lambda path: count_file(path, delay),
                                       [str(p) for p in paths], name="wc", pool=pool,
                                       throttle_limit=THROTTLE)
        view = ProgressView(job, paths)
        interval = TTY_INTERVAL if view.tty else PLAIN_INTERVAL
        # Wait-Job with a timeout, used as the bar's clock: it returns early when the job
        # ends.
        while not job.wait(timeout=interval):
            view.draw()
        view.draw(final=True)

    failed = [c for c in job.children if c.state != bgjob.JobState.Completed]
    for child in failed:
        print(f"child {child.id} {child.state}: {child.state_info.reason}", file=sys.stderr)

    # Receive-Job on the parent: its children's records in time order — their progress
    # records and their results (each child's return value is its last output record).
    results = {r.name: r for r in job.receive() if isinstance(r, Counts)}
    job.remove()  # Remove-Job: the parent and its children, and any records left

    print(f"\n{'lines':>8} {'words':>8} {'bytes':>9}  file")
    for name in sorted(results):
        r = results[name]
        print(f"{r.lines:8d} {r.words:8d} {r.bytes:9d}  {name}")
    got = Counts("total", *(sum(getattr(r, f) for r in results.values())
                            for f in ("lines", "words", "bytes")))
    print(f"{got.lines:8d} {got.words:8d} {got.bytes:9d}  {got.name}")

    expected_each = {p.name: direct_counts(p) for p in paths}
    want = Counts("total", *(sum(getattr(c, f) for c in expected_each.values())
                             for f in ("lines", "words", "bytes")))
    wrong = [n for n, c in expected_each.items() if results.get(n) != c]
    if failed or wrong or got != want:
        print(f"\nMISMATCH: totals {tuple(got)[1:]} != direct {tuple(want)[1:]}; "
              f"files differing: {', '.join(wrong) or 'none'}", file=sys.stderr)
        return 1
    print(f"\ntotals match a direct computation: {want.lines} lines, {want.words} words, "
          f"{want.bytes} bytes")
    return 0


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("directory", nargs="?", type=Path,
                        help="count the files in this directory (default: generated sample files)")
    parser.add_argument("--delay", type=float, default=0.01,
                        help="seconds to pause after each 8 KiB chunk (default 0.01), to "
                             "make the progress visible; 0 for full speed")
    args = parser.parse_args(argv)
    if args.directory is not None:
        return run(args.directory, args.delay)
    with tempfile.TemporaryDirectory(prefix="bgjob-files-") as tmp:
        make_sample_files(Path(tmp))
        return run(Path(tmp), args.delay)


if __name__ == "__main__":
    sys.exit(main())
