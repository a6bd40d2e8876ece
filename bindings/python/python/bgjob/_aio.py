"""asyncio support: ``await job`` and ``wait_jobs_async`` without a thread per waiter.

A state-change callback (run on a bgjob thread) hands the finished state to the event
loop with ``loop.call_soon_threadsafe``; nothing blocks the loop or a thread."""

from __future__ import annotations

import asyncio
from typing import Any, Iterable, List

from . import _native


def _done_future(job: "_native.Job") -> "asyncio.Future[None]":
    """A future of the running loop that is done once ``job`` is finished."""
    loop = asyncio.get_running_loop()
    fut: asyncio.Future[None] = loop.create_future()

    def settle() -> None:
        if not fut.done():
            fut.set_result(None)

    def on_change(_job: Any, info: Any, _prev: Any) -> None:
        if info.state.is_finished:
            try:
                loop.call_soon_threadsafe(settle)
            except RuntimeError:  # the loop is closed: nobody awaits any more
                pass

    registration = job.on_state_changed(on_change)
    fut.add_done_callback(lambda _f: registration.unregister())
    # Registered first, checked second: a change in between is seen either way.
    if job.state.is_finished:
        settle()
    return fut


async def _result(job: "_native.Job") -> Any:
    await _done_future(job)
    return job.result(timeout=0)


def job_result_future(job: "_native.Job") -> "asyncio.Future[Any]":
    """What ``await job`` awaits: the job's result, or its exception raised."""
    return asyncio.ensure_future(_result(job))


async def wait_jobs_async(jobs: Iterable["_native.Job"], any: bool = False,
                          timeout: "float | None" = None) -> "List[_native.Job]":
    """``wait_jobs`` for asyncio: waits for all (or any) of ``jobs`` to finish, up to
    ``timeout`` seconds, and returns the finished ones in the order given."""
    jobs = list(jobs)
    if jobs:
        futures = [_done_future(j) for j in jobs]
        when = asyncio.FIRST_COMPLETED if any else asyncio.ALL_COMPLETED
        try:
            await asyncio.wait(futures, timeout=timeout, return_when=when)
        finally:
            for f in futures:
                f.cancel()
    return [j for j in jobs if j.state.is_finished]
