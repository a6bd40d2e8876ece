"""``EventQueue``: every state change of the chosen jobs, each once and in each job's order,
drained on the program's own thread, with a descriptor for ``selectors`` and asyncio's
``loop.add_reader`` (``await queue.get()``, ``async for event in queue.events()``)."""

from __future__ import annotations

import asyncio
import os
import queue as queue_module
import selectors
import threading
from typing import Any, Dict, List

import pytest

import bgjob
from bgjob import JobEvent, JobStateInfo
from bgjob import JobState as S
from _support import LONG, gated, poll_until


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, LONG))


def readable(q: bgjob.EventQueue, timeout: float) -> bool:
    """Whether ``selectors`` sees the queue's descriptor readable within ``timeout``."""
    with selectors.DefaultSelector() as sel:
        sel.register(q, selectors.EVENT_READ)  # through q.fileno()
        return bool(sel.select(timeout))


def transitions(events: List[JobEvent]) -> list:
    return [(e.previous_state_info.state, e.state_info.state) for e in events]


class ReaderCount:
    """Counts the running loop's ``add_reader``/``remove_reader`` calls (the loop's own
    methods still do the work); ``added`` is set after ``wanted`` registrations."""

    def __init__(self, wanted: int = 1) -> None:
        self.loop = asyncio.get_running_loop()
        self.adds = 0
        self.removes = 0
        self.wanted = wanted
        self.added = asyncio.Event()
        add, remove = self.loop.add_reader, self.loop.remove_reader

        def counting_add(fd: Any, cb: Any, *args: Any) -> None:
            add(fd, cb, *args)
            self.adds += 1
            if self.adds >= self.wanted:
                self.added.set()

        def counting_remove(fd: Any) -> bool:
            self.removes += 1
            return remove(fd)

        self.loop.add_reader = counting_add  # type: ignore[method-assign]
        self.loop.remove_reader = counting_remove  # type: ignore[method-assign]


def test_an_asyncio_reader_gets_every_event_of_a_thousand_jobs_once_in_order(jobs):
    pool = jobs.pool(threads=4)
    count = 1000

    def work(i: int) -> int:
        if i % 7 == 0:
            raise ValueError("sevens fail")
        return i

    async def main():
        readers = ReaderCount()
        with bgjob.EventQueue() as q:
            index: Dict[int, int] = {}
            seen: List[List[JobEvent]] = [[] for _ in range(count)]

            async def consume() -> None:
                finished = 0
                async for event in q.events():
                    n = index.get(event.job_id)
                    if n is None:
                        continue  # a job of no concern to this test
                    seen[n].append(event)
                    if event.state_info.state.is_finished:
                        finished += 1
                        if finished == count:
                            return

            consumer = asyncio.ensure_future(consume())
            # The reader waits on the descriptor before the first job starts…
            await asyncio.wait_for(readers.added.wait(), LONG)
            # …and runs again only once all are started (nothing here awaits).
            started = [jobs.start(work, i, pool=pool) for i in range(count)]
            index.update((j.id, n) for n, j in enumerate(started))
            await consumer
        # The loop watched the descriptor (add_reader), and only while waiting on it.
        assert readers.adds > 0 and readers.adds == readers.removes
        return started, seen

    started, seen = run(main())
    for i, events in enumerate(seen):
        end = S.Failed if i % 7 == 0 else S.Completed
        assert transitions(events) == [(S.NotStarted, S.Running), (S.Running, end)], i
        if end is S.Failed:
            assert events[-1].state_info == JobStateInfo(S.Failed, "ValueError: sevens fail")
    assert bgjob.wait_jobs(started, timeout=LONG) == started


def test_a_queue_of_chosen_jobs_sees_only_theirs(jobs):
    gate = threading.Event()
    started = threading.Event()
    pool = jobs.pool(threads=3)
    by_job = jobs.start(gated, gate, started, pool=pool)
    by_id = jobs.start(gated, gate, pool=pool)
    assert started.wait(LONG)
    with bgjob.EventQueue([by_job, by_id.id]) as q:
        other = jobs.start(lambda: "other", pool=pool)
        assert other.wait(timeout=LONG)
        gate.set()
        assert bgjob.wait_jobs([by_job, by_id], timeout=LONG) == [by_job, by_id]
        events = list(q)
    assert {e.job_id for e in events} <= {by_job.id, by_id.id}
    assert transitions([e for e in events if e.job_id == by_job.id])[-1] == \
        (S.Running, S.Completed)
    assert transitions([e for e in events if e.job_id == by_id.id])[-1] == \
        (S.Running, S.Completed)
    assert not any(e.job_id == other.id for e in events)


def test_the_descriptor_is_readable_while_events_are_pending_and_quiet_after_draining(jobs):
    gate = threading.Event()
    group = [jobs.start(gated, gate) for _ in range(3)]
    with bgjob.EventQueue(group) as q:
        assert isinstance(q.fileno(), int)
        gate.set()
        assert bgjob.wait_jobs(group, timeout=LONG) == group
        assert readable(q, LONG), "events are pending but the descriptor is quiet"
        assert len(q) >= len(group)  # at least each one's change to Completed
        events = list(q)  # iteration drains what is pending
        assert len(q) == 0
        assert [e.state_info.state for e in events].count(S.Completed) == len(group)
        assert not readable(q, 0), "drained, every job done, yet readable"
        assert q.next() is None
        assert not readable(q, 0)


def test_next_get_nowait_len_and_the_event_type(jobs):
    gate = threading.Event()
    started = threading.Event()
    job = jobs.start(gated, gate, started, value=1)
    assert started.wait(LONG)  # Running: no change comes before the gate opens
    with bgjob.EventQueue([job]) as q:
        assert q.next() is None
        with pytest.raises(queue_module.Empty):
            q.get_nowait()
        assert len(q) == 0
        gate.set()
        assert job.wait(timeout=LONG)
        assert len(q) == 1
        assert "pending=1" in repr(q)
        event = q.get_nowait()
        assert len(q) == 0
        assert list(q) == []
    assert isinstance(event, JobEvent) and isinstance(event, tuple)
    assert event == JobEvent(job.id, JobStateInfo(S.Completed), JobStateInfo(S.Running))
    assert event.job_id == job.id
    assert event.state_info.state is S.Completed
    assert bgjob.get_job(event.job_id) == job
    with pytest.raises(AttributeError):
        event.job_id = 0  # type: ignore[misc]


def test_suspend_and_input_changes_reach_the_queue_in_order(jobs):
    suspended_once = threading.Event()

    def work():
        ctx = bgjob.current_job()
        while not ctx.stop_requested:
            ctx.checkpoint()
            if suspended_once.wait(0.001):
                break
        return ctx.read_input("name?")

    job = jobs.start(work)
    with bgjob.EventQueue([job.id]) as q:
        poll_until(lambda: job.state is S.Running, LONG, "Running")
        job.suspend()
        poll_until(lambda: job.state is S.Suspended, LONG, "Suspended")
        suspended_once.set()
        job.resume()
        poll_until(lambda: job.state is S.Blocked, LONG, "Blocked")
        job.send_input("zed")
        assert job.result(timeout=LONG) == "zed"
        got = transitions(list(q))
    assert got[-6:] == [
        (S.Running, S.Suspending),
        (S.Suspending, S.Suspended),
        (S.Suspended, S.Running),
        (S.Running, S.Blocked),
        (S.Blocked, S.Running),
        (S.Running, S.Completed),
    ]


def test_closing_is_idempotent_and_stops_the_events(jobs):
    q = bgjob.EventQueue()
    assert q.closed is False
    first = jobs.start(lambda: 1)
    assert first.wait(timeout=LONG)
    q.close()
    q.close()
    assert q.closed is True
    assert repr(q) == "<EventQueue closed>"
    later = jobs.start(lambda: 2)
    assert later.wait(timeout=LONG)
    assert len(q) == 0  # pending events were dropped, later ones never came
    assert q.next() is None
    assert list(q) == []
    with pytest.raises(queue_module.Empty):
        q.get_nowait()
    with pytest.raises(ValueError):
        q.fileno()

    async def after_close():
        with pytest.raises(ValueError, match="closed"):
            await q.get()
        return [e async for e in q.events()]

    assert run(after_close()) == []
    with bgjob.EventQueue() as q2:
        pass
    assert q2.closed


def test_await_get_returns_the_events_in_order(jobs):
    gate = threading.Event()
    started = threading.Event()
    job = jobs.start(gated, gate, started, value="v")
    assert started.wait(LONG)  # Running: no change comes before the gate opens

    async def main():
        with bgjob.EventQueue([job]) as q:
            getter = asyncio.ensure_future(q.get())
            await asyncio.sleep(0)
            assert not getter.done()
            gate.set()  # from here on the job finishes
            got = [await getter]
            while got[-1].state_info.state is not S.Completed:
                got.append(await q.get())
            return got

    got = run(main())
    assert transitions(got)[-1] == (S.Running, S.Completed)
    assert job.result(timeout=LONG) == "v"


def test_closing_wakes_asyncio_readers_from_another_thread(jobs):
    gate = threading.Event()
    started = threading.Event()
    job = jobs.start(gated, gate, started)
    assert started.wait(LONG)  # Running: no change comes before the gate opens

    async def main():
        readers = ReaderCount(wanted=2)
        q = bgjob.EventQueue([job])
        got: List[JobEvent] = []

        async def iterate():
            async for event in q.events():
                got.append(event)
            return "ended"

        getter = asyncio.ensure_future(q.get())
        iterator = asyncio.ensure_future(iterate())
        await asyncio.wait_for(readers.added.wait(), LONG)  # both wait on the descriptor
        closer = threading.Thread(target=q.close)
        closer.start()
        done, _ = await asyncio.wait([getter, iterator], timeout=LONG)
        closer.join(LONG)
        assert len(done) == 2, "a reader kept waiting on a closed queue"
        with pytest.raises(ValueError, match="closed"):
            getter.result()
        assert iterator.result() == "ended"
        assert got == []
        assert readers.removes == readers.adds == 2
        return q.closed

    assert run(main()) is True
    gate.set()
    assert job.wait(timeout=LONG)


def test_readers_sharing_a_queue_get_each_event_once(jobs):
    pool = jobs.pool(threads=4)
    gate = threading.Event()
    group = [jobs.start(gated, gate, pool=pool) for _ in range(40)]

    async def main():
        readers = ReaderCount(wanted=2)
        q = bgjob.EventQueue(group)
        got: List[List[JobEvent]] = [[], []]
        finished = [0]

        async def read(mine: List[JobEvent]):
            async for event in q.events():
                mine.append(event)
                if event.state_info.state.is_finished:
                    finished[0] += 1
                    if finished[0] == len(group):
                        q.close()  # on the loop's thread: ends the other reader too
            return "ended"

        tasks = [asyncio.ensure_future(read(g)) for g in got]
        await asyncio.wait_for(readers.added.wait(), LONG)
        gate.set()
        assert await asyncio.gather(*tasks) == ["ended", "ended"]
        return got

    got = run(main())
    everything = got[0] + got[1]
    started_after = [(S.NotStarted, S.Running), (S.Running, S.Completed)]
    for job in group:
        # Queued jobs start after the queue opened; the first four ran before it.
        mine = sorted(transitions([e for e in everything if e.job_id == job.id]))
        assert mine in ([(S.Running, S.Completed)], sorted(started_after)), (job, mine)
        for reader in got:  # what one reader got of a job is in the job's order
            order = transitions([e for e in reader if e.job_id == job.id])
            assert order == [t for t in started_after if t in order], (job, order)


def test_a_cancelled_get_unregisters_its_reader_and_closes_its_descriptor(jobs):
    gate = threading.Event()
    started = threading.Event()
    job = jobs.start(gated, gate, started)
    assert started.wait(LONG)  # Running: no change comes before the gate opens

    async def main():
        readers = ReaderCount()
        with bgjob.EventQueue([job]) as q:
            fds_before = len(os.listdir("/proc/self/fd"))
            with pytest.raises(asyncio.TimeoutError):
                await asyncio.wait_for(q.get(), 0.05)
            assert readers.adds == readers.removes == 1
            assert len(os.listdir("/proc/self/fd")) == fds_before
            gate.set()  # the queue still works
            while True:
                event = await q.get()
                if event.state_info.state is S.Completed:
                    return event

    assert run(main()).job_id == job.id


def test_bad_jobs_arguments(jobs):
    with pytest.raises(bgjob.NoSuchJobError):
        bgjob.EventQueue([2**62])
    with pytest.raises(TypeError):
        bgjob.EventQueue(["1"])  # type: ignore[list-item]
    with pytest.raises(TypeError):
        bgjob.EventQueue([True])
    with pytest.raises(TypeError):
        bgjob.EventQueue(5)  # type: ignore[arg-type]
    job = jobs.start(lambda: 1)
    with pytest.raises(TypeError):
        bgjob.EventQueue(job)  # type: ignore[arg-type]  # a Job, not an iterable of them
    with bgjob.EventQueue([]) as q:  # no jobs: no events
        assert job.wait(timeout=LONG)
        assert q.next() is None
