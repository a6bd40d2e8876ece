"""asyncio_jobs: background jobs awaited from asyncio.

An asyncio program starts thread jobs (Start-ThreadJob) that compute things and a process
job (Start-Job) that runs a small shell loop, then:

1. takes their results as they come (``asyncio.as_completed`` over ``await job``; a job
   whose work raised re-raises that exception when awaited);
2. splits a sum over four thread jobs and combines them with ``asyncio.gather``;
3. gives a job that never ends on its own a deadline (``asyncio.wait_for``), stops it
   when that passes (Stop-Job) and awaits its end (``JobStoppedError``);
4. meanwhile follows every state change of every job through an ``EventQueue``
   (``async for event in queue.events()``), on the event loop's own thread.

The loop is never blocked: an awaited job wakes it through a callback, the queue through
its descriptor. Every result is checked against a direct computation; the exit code is 0
only if all of them match and every job ended as expected.

    build/venv/bin/python examples/python/asyncio_jobs.py
"""

from __future__ import annotations

import asyncio
import hashlib
import sys
import time
from typing import Any, Dict, List, Set, Tuple

import bgjob

T0 = time.monotonic()
# Job ids to names, for the event lines (a removed job can no longer be looked up).
NAMES: Dict[int, str] = {}


def say(text: str) -> None:
    # Everything prints from the loop's thread, so lines never interleave.
    print(f"[{time.monotonic() - T0:5.2f}s] {text}", flush=True)


def track(job: bgjob.Job) -> bgjob.Job:
    NAMES[job.id] = job.name
    return job


# ---- the work of the thread jobs (runs on bgjob's worker threads) ----

def count_primes(limit: int) -> int:
    """Primes below `limit` (a sieve of Eratosthenes)."""
    sieve = bytearray([1]) * limit
    sieve[0:2] = b"\0\0"
    for n in range(2, int(limit**0.5) + 1):
        if sieve[n]:
            sieve[n * n::n] = bytes(len(range(n * n, limit, n)))
    return sum(sieve)


def sha256_hex(size: int) -> str:
    """The SHA-256 of `size` bytes of a fixed pattern (hashlib releases the interpreter)."""
    h = hashlib.sha256()
    block = bytes(range(256)) * 4096  # 1 MiB
    for _ in range(size // len(block)):
        h.update(block)
    return h.hexdigest()


def parse_config(text: str) -> Dict[str, str]:
    """Fails on purpose: a raised exception fails the job and is re-raised by `await`."""
    key, sep, value = text.partition("=")
    if not sep:
        raise ValueError(f"not a key=value line: {text!r}")
    return {key: value}


def sum_of_squares(start: int, stop: int) -> int:
    """One part of a sum split over several jobs."""
    return sum(n * n for n in range(start, stop))


def poll_forever() -> str:
    """Never ends on its own: it checks for a stop (cooperative work) and reports progress."""
    ctx = bgjob.current_job()
    assert ctx is not None  # set inside every job's work
    rounds = 0
    while not ctx.stop_requested:
        rounds += 1
        ctx.write_progress(-1, "Polling", f"round {rounds}")
        time.sleep(0.05)
    return f"stopped after {rounds} rounds"


# ---- the asyncio side ----

async def watch_events(queue: bgjob.EventQueue, expected: Set[int]) -> int:
    """Prints every state change as it comes (Register-ObjectEvent, asyncio style) until
    each job in `expected` has reached a finished state; returns how many it saw."""
    seen = 0
    async for event in queue.events():
        seen += 1
        info, prev = event.state_info, event.previous_state_info
        reason = f"  ({info.reason})" if info.reason else ""
        name = NAMES.get(event.job_id, f"Job{event.job_id}")
        say(f"  event: job {event.job_id} {name:<10} {prev.state!s:>10} -> {info.state}{reason}")
        if info.state.is_finished:
            expected.discard(event.job_id)
            if not expected:
                break
    return seen


async def labelled(job: bgjob.Job) -> Tuple[bgjob.Job, Any]:
    """Awaits a job and returns it with its result, or with the exception its work raised."""
    try:
        return job, await job
    except Exception as e:  # the work's own exception, re-raised by `await job`
        return job, e


async def main() -> int:
    ok = True

    def check(what: str, good: bool) -> None:
        nonlocal ok
        ok = ok and good
        if not good:
            say(f"CHECK FAILED: {what}")

    # Opened before any job starts, with no job list: every change of every job is queued.
    queue = bgjob.EventQueue()
    expected: Set[int] = set()

    say("starting thread jobs and a process job")
    first = [
        track(bgjob.start_job(count_primes, 2_000_000, name="primes")),
        track(bgjob.start_job(sha256_hex, 64 << 20, name="sha256")),
        track(bgjob.start_job(parse_config, "timeout: 30", name="config")),
        # A process job's result, awaited, is its output lines.
        track(bgjob.start_process_job(
            ["sh", "-c", "for i in 1 2 3; do echo tick $i; sleep 0.1; done"], name="ticker")),
    ]
    parts = [track(bgjob.start_job(sum_of_squares, k * 250_000, (k + 1) * 250_000,
                                   name=f"squares{k}")) for k in range(4)]
    forever = track(bgjob.start_job(poll_forever, name="forever"))
    expected.update(NAMES)
    watcher = asyncio.create_task(watch_events(queue, expected))

    # 1. Results as they come, in the order the jobs finish.
    results: Dict[str, Any] = {}
    for next_done in asyncio.as_completed([labelled(j) for j in first]):
        job, result = await next_done
        shown = f"raised {type(result).__name__}: {result}" if isinstance(result, Exception) \
            else repr(result)
        say(f"result: {job.name} ({job.type_name}, {job.state}) {shown}")
        results[job.name] = result

    check("primes", results["primes"] == 148_933)
    check("sha256", results["sha256"] == sha256_hex(64 << 20))
    check("config failed with its ValueError", isinstance(results["config"], ValueError))
    check("ticker output", results["ticker"] == ["tick 1", "tick 2", "tick 3"])

    # 2. One computation split over four jobs, combined with gather (in the order given).
    sums: List[int] = await asyncio.gather(*parts)
    n = 1_000_000
    say(f"gather: sum of squares below {n} = {sum(sums)} (parts {sums})")
    check("sum of squares", sum(sums) == (n - 1) * n * (2 * n - 1) // 6)

    # 3. A deadline: wait_for gives up on the await (the job itself runs on), so we stop
    # it (Stop-Job, off the loop's thread since it waits) and await its end.
    try:
        await asyncio.wait_for(forever, timeout=0.5)
        check("forever should not finish by itself", False)
    except asyncio.TimeoutError:
        progress = forever.progress
        say(f"wait_for: forever still {forever.state} after 0.5s"
            f" ({progress.status_description if progress else 'no progress yet'}); stopping it")
    await asyncio.to_thread(forever.stop, 5.0)
    try:
        await forever
    except bgjob.JobStoppedError as e:
        say(f"await after Stop-Job: {type(e).__name__}: {e}")
    # Its work returned after seeing the stop; what it returned is still received.
    last = [r for r in forever.receive() if not isinstance(r, bgjob.ProgressRecord)]
    say(f"forever's output: {last}")
    check("forever stopped", forever.state == bgjob.JobState.Stopped)

    # 4. The watcher ends once it saw every job finish; then the queue can close.
    seen = await asyncio.wait_for(watcher, timeout=5)
    queue.close()
    say(f"event queue: {seen} state changes seen")
    # At least NotStarted -> Running -> finished for each, and Stopping for the stopped one.
    check("every job's changes seen", not expected and seen >= 2 * len(NAMES) + 1)

    # Remove-Job: everything these jobs held is freed.
    for job in bgjob.get_jobs():
        job.remove()
    say("all jobs removed" + ("; every check passed" if ok else "; SOME CHECKS FAILED"))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
