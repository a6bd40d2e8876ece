"""Custom jobs (driven by their host: ``create_custom_job``, ``CustomJob``) and inline runs
(``run_job``)."""

from __future__ import annotations

import asyncio
import signal
import sys
import textwrap
import threading
import time
from typing import Any, Iterator, List

import pytest

import bgjob
from bgjob import CustomJob, JobState, JobStateInfo
from _support import (LONG, CapturedUnraisable, Recorder, cooperative, gated, poll_until,
                      read_line, spawn_python, wait_event)

S = JobState


class Customs:
    """Creates a test's custom jobs (named under its prefix). A custom job only finishes
    when its host says so, and removing an unfinished one would wait for that: so at the
    end of the test, before the ``jobs`` fixture removes them, every job still unfinished
    (after a failed assertion) is moved to a finished state."""

    def __init__(self, jobs: Any) -> None:
        self.jobs = jobs
        self.made: List[CustomJob] = []

    def create(self, **kwargs: Any) -> CustomJob:
        kwargs.setdefault("name", self.jobs.name())
        job = bgjob.create_custom_job(**kwargs)
        self.made.append(job)
        self.jobs.track(job)
        return job

    def end_leftovers(self) -> None:
        for job in self.made:
            for leaf in job.children or [job]:
                moves = {S.NotStarted: S.Stopped, S.Running: S.Failed, S.Stopping: S.Stopped}
                target = moves.get(leaf.state)
                if target is not None:
                    try:
                        leaf.set_state(target, "the test ended")
                    except bgjob.InvalidJobStateError:
                        pass


@pytest.fixture
def customs(jobs: Any) -> Iterator[Customs]:
    factory = Customs(jobs)
    try:
        yield factory
    finally:
        factory.end_leftovers()


class Token:
    """An object only identity can match (no __eq__): records must be the very objects."""

    def __init__(self, n: int) -> None:
        self.n = n


# ----- custom jobs ---------------------------------------------------------------------

def test_a_custom_job_driven_here_is_waited_on_and_received_by_another_thread(customs):
    events = Recorder()
    job = customs.create(command="sync db", location="db.example", on_state_changed=events)
    assert isinstance(job, CustomJob) and isinstance(job, bgjob.Job)
    assert (job.state, job.type_name, job.location, job.command) == \
        (S.NotStarted, "CustomJob", "db.example", "sync db")
    assert job.begin_time is None
    assert bgjob.get_job(job.id) == job, "a custom job is in the repository"
    assert isinstance(bgjob.get_job(job.id), CustomJob), "get_job gives a drivable handle"

    waiting = threading.Event()
    seen: dict = {}

    def waiter() -> None:
        mine = bgjob.get_job(job.id)
        waiting.set()
        seen["done"] = mine.wait(timeout=LONG)
        seen["state"] = mine.state
        seen["progress"] = mine.progress
        seen["status"] = mine.status_message
        seen["records"] = mine.receive()
        seen["thread"] = threading.get_ident()

    other = threading.Thread(target=waiter)
    other.start()
    try:
        wait_event(waiting, what="the other thread's wait")
        first, second, note = Token(1), Token(2), {"rows": 2}
        job.set_state(S.Running)
        assert job.begin_time is not None
        job.write_output(first)
        job.write_progress(50, "Syncing", "half way")
        job.status_message = "1 of 2 rows"
        job.write_warning(note)
        job.write_output(second)
        assert job.progress == bgjob.ProgressRecord(50, "Syncing", "half way")
        assert job.status_message == "1 of 2 rows"
        assert job.state is S.Running
        assert other.is_alive(), "the other thread's wait ended before the job finished"
        job.set_state(S.Completed)
    finally:
        other.join(LONG)
    assert seen["done"] is True and seen["state"] is S.Completed
    assert seen["thread"] != threading.get_ident()
    assert seen["progress"] == bgjob.ProgressRecord(50, "Syncing", "half way")
    assert seen["status"] == "1 of 2 rows"
    records = seen["records"]
    assert [type(r) for r in records] == \
        [Token, bgjob.ProgressRecord, bgjob.WarningRecord, Token]
    assert records[0] is first and records[3] is second, "the very objects, in order"
    assert records[2].value is note
    assert records[1].job_id == job.id
    assert events.transitions() == [(S.NotStarted, S.Running), (S.Running, S.Completed)]
    assert job.end_time is not None
    assert job.result(timeout=0) is None
    with pytest.raises(bgjob.InvalidJobStateError):
        job.write_output("late")  # a finished job's streams are closed


def test_an_illegal_move_raises_and_changes_nothing(customs):
    events = Recorder()
    job = customs.create(on_state_changed=events)
    with pytest.raises(bgjob.InvalidJobStateError, match="cannot move from NotStarted to Completed"):
        job.set_state(S.Completed)
    assert job.state_info == JobStateInfo(S.NotStarted, None)
    assert job.begin_time is None and events.calls == []

    job.set_state(1)  # a plain number is a state too
    assert job.state is S.Running
    for bad in (S.NotStarted, S.Stopped, S.Suspended):
        with pytest.raises(bgjob.InvalidJobStateError, match=f"from Running to {bad.name}"):
            job.set_state(bad)
        assert job.state is S.Running
    with pytest.raises(bgjob.InvalidArgumentError):
        job.set_state(99)
    with pytest.raises(TypeError):
        job.set_state("Running")
    assert job.state is S.Running

    job.set_state(S.Failed, "the remote side hung up")
    assert job.state_info == JobStateInfo(S.Failed, "the remote side hung up")
    with pytest.raises(bgjob.InvalidJobStateError, match="from Failed to Running"):
        job.set_state(S.Running)
    assert job.state_info == JobStateInfo(S.Failed, "the remote side hung up")
    assert events.transitions() == [(S.NotStarted, S.Running), (S.Running, S.Failed)]
    with pytest.raises(bgjob.JobFailedError, match="the remote side hung up"):
        job.result(timeout=0)


def test_set_state_of_a_thread_job_is_refused(jobs):
    gate = threading.Event()
    job = jobs.start(gated, gate)
    assert not isinstance(job, CustomJob)
    with pytest.raises(bgjob.InvalidJobStateError, match="only a custom job is driven"):
        CustomJob.from_job(job)
    with pytest.raises(TypeError):
        CustomJob.set_state(job, S.Completed)  # type: ignore[arg-type]
    assert not hasattr(job, "set_state")
    assert job.state in (S.NotStarted, S.Running)
    gate.set()
    assert job.wait(timeout=LONG) and job.state is S.Completed
    inline = jobs.track(bgjob.run_job(lambda: None, name=jobs.name()))
    with pytest.raises(bgjob.InvalidJobStateError):
        CustomJob.from_job(inline)


def test_from_job_gives_the_drivable_handle_of_a_custom_job(customs):
    job = customs.create(children=1)
    as_job: bgjob.Job = bgjob.get_jobs(name=job.name)[0]
    assert CustomJob.from_job(as_job) is as_job
    assert CustomJob.from_job(job.children[0]) == job.child(0)


def test_on_stop_is_called_once_with_the_job_stopping_and_ends_it_stopped(customs):
    calls = []
    events = Recorder()

    def on_stop(job):
        calls.append((job, job.state, threading.get_ident()))
        job.set_state(S.Stopped)  # the foreign work has ended

    job = customs.create(on_stop=on_stop, on_state_changed=events)
    job.set_state(S.Running)
    # Asked from another thread: on_stop runs on that thread.
    stopper_ident: List[int] = []

    def stopper() -> None:
        stopper_ident.append(threading.get_ident())
        job.stop(timeout=LONG)

    t = threading.Thread(target=stopper)
    t.start()
    t.join(LONG)
    assert not t.is_alive()
    assert calls == [(job, S.Stopping, stopper_ident[0])]
    assert isinstance(calls[0][0], CustomJob)
    assert job.state is S.Stopped
    assert events.transitions() == [(S.NotStarted, S.Running), (S.Running, S.Stopping),
                                    (S.Stopping, S.Stopped)]
    job.stop(timeout=LONG)  # a finished job: nothing more to stop
    assert len(calls) == 1
    with pytest.raises(bgjob.JobStoppedError):
        job.result(timeout=0)

    # remove(force=True) stops it first, on this thread.
    second = customs.create(on_stop=on_stop)
    second.set_state(S.Running)
    second.remove(force=True)
    assert calls[1][1:] == (S.Stopping, threading.get_ident())
    assert len(calls) == 2
    with pytest.raises(bgjob.NoSuchJobError):
        bgjob.get_job(second.id)

    # A job that never ran is Stopped at once: its host has nothing to end.
    third = customs.create(on_stop=on_stop)
    third.stop(timeout=LONG)
    assert third.state is S.Stopped and len(calls) == 2


def test_on_stop_may_end_the_job_later_from_the_hosts_thread(customs):
    stop_asked = threading.Event()
    job = customs.create(on_stop=lambda _job: stop_asked.set())
    job.set_state(S.Running)

    def host() -> None:
        wait_event(stop_asked, LONG, "the stop request")
        job.write_output("cleaned up")
        job.set_state(S.Stopped)

    t = threading.Thread(target=host)
    t.start()
    try:
        job.stop(timeout=LONG)
    finally:
        t.join(LONG)
    assert job.state is S.Stopped
    assert job.receive() == ["cleaned up"]


def test_an_on_stop_that_raises_goes_to_unraisablehook_and_the_job_stays_stopping(customs):
    calls = []

    def on_stop(job):
        calls.append(job)
        raise RuntimeError("the remote side is unreachable")

    job = customs.create(on_stop=on_stop)
    job.set_state(S.Running)
    with CapturedUnraisable() as hook:
        with pytest.raises(bgjob.JobTimeoutError, match="still Stopping"):
            job.stop(timeout=0.2)
        assert job.state is S.Stopping
        with pytest.raises(bgjob.JobTimeoutError):
            job.stop(timeout=0)
    assert len(calls) == 1, "a second stop of a Stopping job calls nothing"
    [(exc_type, exc, obj)] = hook.reports
    assert exc_type is RuntimeError and "unreachable" in str(exc)
    assert obj is on_stop
    # The host ends it anyway; the job is then Stopped like any other.
    job.set_state(S.Stopped)
    assert job.wait(timeout=0) and job.state is S.Stopped


def test_a_custom_parent_follows_its_children_and_stops_only_the_running_one(customs):
    stopped = []
    events = Recorder()

    def on_stop(job):
        stopped.append(job)
        job.set_state(S.Stopped)

    parent = customs.create(children=["east", "west", None], on_stop=on_stop,
                            on_state_changed=events)
    east, west, third = parent.children
    assert all(isinstance(c, CustomJob) for c in parent.children)
    assert [c.id for c in parent.children] == [parent.id + 1, parent.id + 2, parent.id + 3]
    assert (east.name, west.name, third.name) == ("east", "west", f"Job{parent.id + 3}")
    assert parent.child(0) == east and parent.child(-1) == third
    assert east.parent == parent and isinstance(east.parent, CustomJob)
    with pytest.raises(IndexError):
        parent.child(3)
    assert bgjob.get_job(west.id) == west and isinstance(bgjob.get_job(west.id), CustomJob)
    assert parent.status_message == "0/3 completed"

    with pytest.raises(bgjob.InvalidJobStateError, match="is a parent"):
        parent.set_state(S.Running)
    assert parent.state is S.NotStarted

    east.set_state(S.Running)
    poll_until(lambda: parent.state is S.Running, LONG, "the parent to run")
    with pytest.raises(bgjob.InvalidJobStateError, match="is a parent"):
        parent.set_state(S.Completed)
    east.write_output("from east")
    east.set_state(S.Completed)
    west.set_state(S.Running)
    west.write_output("from west")
    assert parent.state is S.Running
    assert parent.status_message == "1/3 completed"

    parent.stop(timeout=LONG)
    assert stopped == [west], "only the running child had work to stop"
    assert (parent.state, east.state, west.state, third.state) == \
        (S.Stopped, S.Completed, S.Stopped, S.Stopped)
    assert events.transitions() == [(S.NotStarted, S.Running), (S.Running, S.Stopping),
                                    (S.Stopping, S.Stopped)]
    records = parent.receive(as_records=True)
    assert [(r.value, r.job_id) for r in records] == \
        [("from east", east.id), ("from west", west.id)]


def test_create_custom_job_checks_its_arguments():
    with pytest.raises(TypeError, match="not a str"):
        bgjob.create_custom_job(children="abc")
    with pytest.raises(bgjob.InvalidArgumentError):
        bgjob.create_custom_job(children=-1)
    with pytest.raises(TypeError):
        bgjob.create_custom_job(children=[1])
    with pytest.raises(TypeError, match="on_stop must be a callable"):
        bgjob.create_custom_job(on_stop=5)
    with pytest.raises(TypeError):
        bgjob.create_custom_job("positional")  # type: ignore[misc]


def test_await_of_a_custom_job_finished_by_another_thread(customs):
    job = customs.create()
    failing = customs.create()
    job.set_state(S.Running)
    failing.set_state(S.Running)

    def host() -> None:
        job.write_output("done remotely")
        job.set_state(S.Completed)
        failing.set_state(S.Failed, "remote failure")

    async def main():
        async def awaiter():
            return await job

        task = asyncio.ensure_future(awaiter())
        # Plain yields to the loop (no timing): the await registers its callback.
        for _ in range(3):
            await asyncio.sleep(0)
        assert not task.done(), "awaiting a Running job must not complete"
        thread = threading.Thread(target=host)
        thread.start()
        try:
            result = await task
            with pytest.raises(bgjob.JobFailedError, match="remote failure"):
                await failing
        finally:
            await asyncio.get_running_loop().run_in_executor(None, thread.join, LONG)
        return result

    assert asyncio.run(asyncio.wait_for(main(), LONG)) is None
    assert job.state is S.Completed
    assert job.receive() == ["done remotely"]


# ----- inline runs ---------------------------------------------------------------------

def scripted(first: Any, warning: Any, last: Any) -> Any:
    """Work that writes the same records each run, and returns ``last``."""
    ctx = bgjob.current_job()
    assert ctx is not None
    ctx.write_output(first)
    ctx.write_warning(warning)
    ctx.write_progress(50, "Scripted", "half way")
    ctx.write_information({"info": True})
    return last


def test_an_inline_run_gives_the_same_records_and_callbacks_as_start_job(jobs):
    objs = (Token(1), Token(2), Token(3))
    started_events = Recorder()
    started = jobs.start(scripted, *objs, on_state_changed=started_events)
    assert started.wait(timeout=LONG)

    inline_events = Recorder()
    here = threading.get_ident()
    inline = bgjob.run_job(scripted, *objs, name=jobs.name("inline"),
                           on_state_changed=inline_events)
    jobs.track(inline)
    # Returned finished, its finished callbacks done.
    assert inline.state is S.Completed
    assert inline_events.finished.is_set()
    assert inline.wait(timeout=0) is True

    assert (inline.type_name, inline.command) == (started.type_name, started.command)
    assert inline_events.transitions() == started_events.transitions() == \
        [(S.NotStarted, S.Running), (S.Running, S.Completed)]
    assert all(call[0] == inline for call in inline_events.calls)
    assert all(call[3] == here for call in inline_events.calls), \
        "an inline run's callbacks run on the calling thread"
    assert all(call[3] != here for call in started_events.calls)

    got, want = inline.receive(), started.receive()
    assert [type(r) for r in got] == [type(r) for r in want] == \
        [Token, bgjob.WarningRecord, bgjob.ProgressRecord, bgjob.InformationRecord, Token]
    assert got[0] is want[0] is objs[0]
    assert got[1].value is want[1].value is objs[1]
    assert got[2] == want[2] and got[3] == want[3]
    assert got[4] is want[4] is objs[2]
    assert inline.result() is objs[2]

    assert bgjob.get_job(inline.id) == inline, "an inline run is a job in the repository"
    assert inline in bgjob.get_jobs(name=jobs.prefix + "*")


def test_an_inline_run_runs_here_with_its_arguments_and_current_job(jobs):
    ran = {}

    def work(a, b, *, c):
        ctx = bgjob.current_job()
        ran["thread"] = threading.get_ident()
        ran["job_id"] = ctx.job_id
        return (a, b, c)

    job = jobs.track(bgjob.run_job(work, 1, 2, c=3, name=jobs.name()))
    assert job.result() == (1, 2, 3)
    assert ran == {"thread": threading.get_ident(), "job_id": job.id}
    assert bgjob.current_job() is None, "outside the run, this thread is in no job"
    with pytest.raises(TypeError, match="run_job\\(\\) needs a callable"):
        bgjob.run_job(5)  # type: ignore[arg-type]


def test_an_inline_run_whose_work_raises_fails_and_result_reraises(jobs):
    raised = []

    def work():
        exc = LookupError("missing")
        raised.append(exc)
        raise exc

    events = Recorder()
    job = jobs.track(bgjob.run_job(work, name=jobs.name(), on_state_changed=events))
    assert job.state_info == JobStateInfo(S.Failed, "LookupError: missing")
    assert events.transitions() == [(S.NotStarted, S.Running), (S.Running, S.Failed)]
    with pytest.raises(LookupError) as info:
        job.result()
    assert info.value is raised[0]
    assert bgjob.get_job(job.id) == job


def test_an_inline_run_inside_a_job_nests(jobs):
    def outer():
        me = bgjob.current_job().job_id
        inner = bgjob.run_job(lambda: bgjob.current_job().job_id, name=jobs.name())
        return me, inner.id, inner.result(), bgjob.current_job().job_id

    job = jobs.start(outer)
    me, inner_id, inner_saw, me_after = job.result(timeout=LONG)
    assert me == job.id == me_after
    assert inner_saw == inner_id != job.id


def test_an_inline_run_stopped_from_another_thread_ends_stopped(jobs):
    name = jobs.name("inline")
    started = threading.Event()

    def stopper() -> None:
        wait_event(started, LONG, "the inline work")
        bgjob.get_job(name=name).stop(timeout=LONG)

    t = threading.Thread(target=stopper)
    t.start()
    try:
        job = jobs.track(bgjob.run_job(cooperative, LONG, started, name=name))
    finally:
        t.join(LONG)
    assert job.state is S.Stopped
    with pytest.raises(bgjob.JobStoppedError):
        job.result()


def test_system_exit_in_an_inline_run_fails_it_and_is_raised_again(jobs):
    name = jobs.name()
    with pytest.raises(SystemExit) as info:
        bgjob.run_job(sys.exit, 3, name=name)
    assert info.value.code == 3
    job = bgjob.get_job(name=name)
    assert job.state_info == JobStateInfo(S.Failed, "SystemExit: 3")


CTRL_C_CHILD = textwrap.dedent("""
    import sys, time
    import bgjob

    def work():
        print("ready", flush=True)
        end = time.monotonic() + 60
        while time.monotonic() < end:
            time.sleep(0.01)
        return "not interrupted"

    try:
        bgjob.run_job(work, name="inline")
    except KeyboardInterrupt:
        job = bgjob.get_job(name="inline")
        print("caught KeyboardInterrupt", job.state.name, job.state_info.reason, flush=True)
        job.remove()
        sys.exit(0)
    print("returned without an interrupt", flush=True)
""")


def test_ctrl_c_reaches_the_work_of_an_inline_run():
    proc = spawn_python(CTRL_C_CHILD)
    try:
        line = read_line(proc, 30)
        assert line.strip() == "ready", (line, proc.poll(), proc.stderr)
        proc.send_signal(signal.SIGINT)
        t0 = time.monotonic()
        out, err = proc.communicate(timeout=30)
        elapsed = time.monotonic() - t0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert "caught KeyboardInterrupt Failed KeyboardInterrupt" in out, (out, err)
    assert proc.returncode == 0, (proc.returncode, err)
    assert elapsed < 5, f"took {elapsed:.1f}s to answer Ctrl-C"
    for bad in ("Fatal Python error", "panicked", "Segmentation fault", "Aborted"):
        assert bad not in err, err
