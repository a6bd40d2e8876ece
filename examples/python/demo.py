"""bgjob demo, Python side: start real background jobs, watch their state changes and
progress live, stop one, await one with asyncio, then print a Get-Job style table and
every job's results.

    make demo
"""

import asyncio
import threading
import time

import bgjob

print_lock = threading.Lock()


def say(text: str) -> None:
    with print_lock:
        print(text, flush=True)


def on_change(job: bgjob.Job, info: bgjob.JobStateInfo, previous: bgjob.JobStateInfo) -> None:
    reason = f"  reason: {info.reason}" if info.reason else ""
    say(f"  [event] job {job.id:<3} {previous.state!s:<10} -> {info.state!s:<10}{reason}")


def count_primes(limit: int) -> str:
    """Counts primes below `limit`, reporting progress; returns a sentence."""
    ctx = bgjob.current_job()
    found = 0
    for n in range(2, limit):
        if all(n % d for d in range(2, int(n**0.5) + 1)):
            found += 1
        if n % (limit // 10) == 0:
            ctx.write_progress(n * 100 // limit, "Counting primes", f"{found} primes so far")
            if ctx.stop_requested:
                return "stopped early"
            time.sleep(0.05)  # make the demo watchable
    return f"{found} primes below {limit}"


def scan_files() -> dict:
    """Writes a warning and an error record but returns: it still Completes."""
    ctx = bgjob.current_job()
    ctx.write_warning("disk is 91% full")
    ctx.write_error("could not read /etc/shadow (skipped)")
    return {"files": 42, "largest": "core.img"}


def db_sync() -> None:
    """Raises: the job Fails with the exception as its reason."""
    time.sleep(0.3)
    raise ConnectionRefusedError("db.example:5432 refused the connection")


def poller() -> None:
    """Runs until stopped."""
    ctx = bgjob.current_job()
    ctx.status_message = "polling"
    while not ctx.stop_requested:
        time.sleep(0.02)
    ctx.write_verbose("stop seen, cleaning up")


def show_progress(jobs: list) -> None:
    for job in jobs:
        p = job.progress
        if p is not None and not job.state.is_finished:
            bar = "#" * (max(p.percent_complete, 0) // 5)
            say(f"  [progress] {job.name:<14} [{bar:<20}] {p.percent_complete:3d}%  "
                f"{p.status_description}")


async def awaited() -> int:
    job = bgjob.start_job(sum, range(1_000_001), name="awaited-sum")
    return await job


def main() -> None:
    print(f"bgjob {bgjob.__version__} demo (Python): starting background jobs\n", flush=True)
    registration = bgjob.on_any_state_changed(on_change)
    jobs = [
        bgjob.start_job(count_primes, 60_000, name="primes-small"),
        bgjob.start_job(count_primes, 150_000, name="primes-large"),
        bgjob.start_job(scan_files, name="scan-files"),
        bgjob.start_job(db_sync, name="db-sync"),
    ]
    poll = bgjob.start_job(poller, name="poller")

    while len(bgjob.wait_jobs(jobs, timeout=0.5)) < len(jobs):
        show_progress(jobs)

    say("\n  stopping the poller (Stop-Job)...")
    poll.stop(timeout=5)
    say(f"  awaited with asyncio: {asyncio.run(awaited())}")
    registration.unregister()

    print(f"\n{'Id':<4} {'Name':<14} {'PSJobTypeName':<14} {'State':<10} {'HasMoreData':<12} "
          f"{'Location':<10} Command")
    print(f"{'--':<4} {'----':<14} {'-------------':<14} {'-----':<10} {'-----------':<12} "
          f"{'--------':<10} -------")
    for job in bgjob.get_jobs():
        print(f"{job.id:<4} {job.name:<14} {job.type_name:<14} {job.state!s:<10} "
              f"{job.has_more_data!s:<12} {job.location:<10} {job.command}")

    print("\nResults (Receive-Job):")
    for job in bgjob.get_jobs():
        for record in job.receive():
            if isinstance(record, bgjob.ProgressRecord):
                continue
            kind = type(record).__name__ if isinstance(record, bgjob.StreamRecord) else "Output"
            print(f"  job {job.id} {kind:<14} {record}")
        if job.state == bgjob.JobState.Failed:
            print(f"  job {job.id} {'Failed':<14} {job.state_info.reason}")
        job.remove()
    print("\nAll jobs removed. Done.")


if __name__ == "__main__":
    main()
