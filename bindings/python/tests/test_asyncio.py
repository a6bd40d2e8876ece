"""asyncio: ``await job`` and ``wait_jobs_async``, without blocking the event loop."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

import bgjob
from bgjob import JobState
from _support import LONG, cooperative, gated, needs_proc_tasks, os_thread_count


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, LONG))


def test_await_job_returns_its_result(jobs):
    job = jobs.start(lambda: {"x": 1})

    async def main():
        return await job

    assert run(main()) == {"x": 1}
    assert job.state is JobState.Completed


def test_await_finished_job(jobs):
    job = jobs.start(lambda: 5)
    assert job.wait(timeout=LONG)

    async def main():
        return await job, await job

    assert run(main()) == (5, 5)


def test_await_job_raises_its_exception(jobs):
    raised = []

    def work():
        exc = LookupError("missing")
        raised.append(exc)
        raise exc

    job = jobs.start(work)

    async def main():
        await job

    with pytest.raises(LookupError) as info:
        run(main())
    assert info.value is raised[0]


def test_await_failed_and_stopped_jobs(jobs):
    def fails():
        bgjob.current_job().fail("reason here")

    failed = jobs.start(fails)
    stopped = jobs.start(cooperative)
    stopped.stop(timeout=LONG)

    async def main(job):
        await job

    with pytest.raises(bgjob.JobFailedError, match="reason here"):
        run(main(failed))
    with pytest.raises(bgjob.JobStoppedError):
        run(main(stopped))


def test_wait_jobs_async_any_returns_the_first(jobs):
    gate = threading.Event()
    pool = jobs.pool(threads=3)
    slow1 = jobs.start(gated, gate, pool=pool)
    slow2 = jobs.start(gated, gate, pool=pool)

    def quick():
        time.sleep(0.1)
        return "quick"

    fast = jobs.start(quick, pool=pool)

    async def main():
        return await bgjob.wait_jobs_async([slow1, fast, slow2], any=True)

    try:
        assert run(main()) == [fast]
        assert slow1.state is JobState.Running and slow2.state is JobState.Running
    finally:
        gate.set()

    async def all_of():
        return await bgjob.wait_jobs_async([slow2, fast, slow1])

    assert run(all_of()) == [slow2, fast, slow1]


def test_wait_jobs_async_timeout(jobs):
    gate = threading.Event()
    slow = jobs.start(gated, gate)
    done = jobs.start(lambda: 1)
    assert done.wait(timeout=LONG)

    async def main():
        t0 = time.monotonic()
        got = await bgjob.wait_jobs_async([slow, done], timeout=0.3)
        return got, time.monotonic() - t0

    try:
        got, elapsed = run(main())
        assert got == [done]
        assert 0.25 <= elapsed < 10
    finally:
        gate.set()

    async def empty():
        return await bgjob.wait_jobs_async([])

    assert run(empty()) == []


def test_await_many_jobs_concurrently(jobs):
    pool = jobs.pool(threads=4)

    def work(i):
        time.sleep(0.001)
        return i * i

    group = [jobs.start(work, i, pool=pool) for i in range(200)]

    async def main():
        return await asyncio.gather(*group)

    t0 = time.monotonic()
    assert run(main()) == [i * i for i in range(200)]
    assert time.monotonic() - t0 < 20
    assert all(j.state is JobState.Completed for j in group)


@needs_proc_tasks
def test_awaiting_many_gated_jobs_takes_no_thread_per_waiter(jobs):
    pool = jobs.pool(threads=4)
    gate = threading.Event()
    group = [jobs.start(gated, gate, None, i, pool=pool) for i in range(200)]
    start = os_thread_count()  # the pool's workers included
    counts = []

    async def main():
        waiters = [asyncio.ensure_future(_await(job)) for job in group]
        # Every waiter runs up to its await (registering on its job), then the count is
        # taken over a few turns of the loop while all 200 wait.
        for _ in range(10):
            await asyncio.sleep(0.005)
            counts.append(os_thread_count())
        assert not any(w.done() for w in waiters)
        gate.set()
        done = await asyncio.gather(*waiters)
        counts.append(os_thread_count())
        return done

    try:
        assert run(main()) == list(range(200))
    finally:
        gate.set()
    # None is needed (the pool's workers deliver the changes), but leave room for a
    # helper thread or two; one per waiter would be 200, a pool of waiters (asyncio's
    # default executor) min(32, cpu_count + 4).
    assert max(counts) - start <= 4, (start, counts)


def test_awaiting_does_not_block_the_loop(jobs):
    gate = threading.Event()
    job = jobs.start(gated, gate, value="done")
    ticks = []

    async def ticker(stop):
        while not stop.is_set():
            ticks.append(time.monotonic())
            if len(ticks) == 20:
                gate.set()  # the loop ticked 20 times while the job was awaited
            await asyncio.sleep(0.005)

    async def main():
        stop = asyncio.Event()
        task = asyncio.create_task(ticker(stop))
        result = await job
        stop.set()
        await task
        return result

    assert run(main()) == "done"
    assert len(ticks) >= 20


def test_many_awaiters_of_one_job(jobs):
    gate = threading.Event()
    job = jobs.start(gated, gate, value=3)

    async def main():
        waiters = [asyncio.ensure_future(_await(job)) for _ in range(50)]
        await asyncio.sleep(0)
        assert not any(w.done() for w in waiters)
        gate.set()
        return await asyncio.gather(*waiters)

    assert run(main()) == [3] * 50


async def _await(job):
    return await job


def test_cancelled_await_leaves_the_job_alone(jobs):
    gate = threading.Event()
    job = jobs.start(gated, gate, value=1)

    async def main():
        try:
            await asyncio.wait_for(_await(job), 0.1)
        except asyncio.TimeoutError:
            return "timed out"
        return "finished"

    assert run(main()) == "timed out"
    assert job.state is JobState.Running
    gate.set()
    assert job.result(timeout=LONG) == 1
