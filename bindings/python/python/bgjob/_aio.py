"""asyncio support: ``await job``, ``wait_jobs_async`` and ``EventQueue.get``/``events``,
without a thread per waiter.

``await job`` and ``wait_jobs_async``: a state-change callback of each awaited job (run on
a bgjob thread) hands its finished state to the event loop with
``loop.call_soon_threadsafe``; nothing blocks the loop or a thread.

``EventQueue.get`` and ``EventQueue.events``: the loop watches the queue's descriptor with
``loop.add_reader`` while the queue is empty, and drains it on the loop's thread.

Why ``await job`` does not ride on an ``EventQueue``: a queue's choice of jobs is fixed when
it opens, so awaiting jobs one by one would need either one queue per awaited job — a
descriptor each, and ``asyncio.gather`` over a few thousand jobs would run out of them —
or one loop-wide queue of every job, whose cost follows every state change in the process
rather than the jobs awaited. A callback per awaited job costs one short call on the
bgjob thread that delivers the change, only for the jobs awaited, and no descriptor; a
cancelled await unregisters it. The queue is the better tool for a loop that follows the
stream of many jobs' changes; awaiting a result needs only the one change to finished.

``await job`` and ``wait_jobs_async`` wait for jobs to *finish*: a Suspended job is
awaited until it is resumed and finishes, and a Blocked one until another task (or
thread) answers it with ``send_input`` — unlike the blocking waits, which stop at
Suspended and raise ``JobsBlockedError`` for Blocked jobs, since nothing else could run
while they block the thread.
"""

from __future__ import annotations

import asyncio
import os
from typing import Any, AsyncIterator, Iterable, List

from . import _native
from ._types import JobEvent


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
    ``timeout`` seconds, and returns the finished ones in the order given. Suspended and
    Blocked jobs are waited for until they finish (another task may resume or answer
    them meanwhile)."""
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


async def _readable(queue: "_native.EventQueue") -> None:
    """Returns once ``queue``'s descriptor is readable or the queue is closed.

    The loop watches a copy of the descriptor: closing the queue (from any thread) never
    closes a descriptor the loop has registered, and several readers of one queue never
    replace each other's registration. The reader is registered only while waiting: the
    descriptor stays readable until the queue is drained, and a registration kept while
    the consumer is busy elsewhere would wake the loop on every turn."""
    loop = asyncio.get_running_loop()
    fut: asyncio.Future[None] = loop.create_future()

    def wake() -> None:
        if not fut.done():
            fut.set_result(None)

    def on_close() -> None:  # called by close(), on whichever thread closes
        try:
            loop.call_soon_threadsafe(wake)
        except RuntimeError:  # the loop is closed: nobody waits any more
            pass

    try:
        fd = queue._dup_fileno()
    except ValueError:
        return  # closed: the caller sees it
    try:
        token = queue._on_close(on_close)
        if token is None:
            return  # closed
        try:
            loop.add_reader(fd, wake)
            try:
                await fut
            finally:
                loop.remove_reader(fd)
        finally:
            queue._forget_on_close(token)
    finally:
        os.close(fd)


async def event_queue_get(queue: "_native.EventQueue") -> JobEvent:
    """What ``await queue.get()`` runs: the next event, waiting for one if none is
    pending; ``ValueError`` once the queue is closed."""
    while True:
        event = queue.next()
        if event is not None:
            return event
        if queue.closed:
            raise ValueError("the event queue is closed")
        await _readable(queue)


async def event_queue_events(queue: "_native.EventQueue") -> AsyncIterator[JobEvent]:
    """What ``queue.events()`` returns: every event, waiting for each; it ends when the
    queue is closed."""
    while True:
        event = queue.next()
        if event is not None:
            yield event
        elif queue.closed:
            return
        else:
            await _readable(queue)
