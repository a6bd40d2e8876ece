"""Parallel jobs (PowerShell's ForEach-Object -Parallel -AsJob): one function over many
inputs, a parent job with one child job per input; and ``receive(as_records=True)``,
which tells which child wrote each output record."""

from __future__ import annotations

import asyncio
import datetime as dt
import pydoc
import threading

import pytest

import bgjob
from bgjob import JobState
from _support import LONG, Recorder, cooperative, gated, poll_until, wait_event


def ids(found):
    return {j.id for j in found}


# ----- results and records ------------------------------------------------------------

def test_every_input_runs_once_and_its_output_reaches_the_parent(jobs):
    parent = jobs.start_parallel(lambda x: x, range(1, 11))
    assert parent.wait(timeout=LONG) is True
    assert parent.state_info == bgjob.JobStateInfo(JobState.Completed, None)
    children = parent.children
    assert len(children) == 10
    assert all(c.state is JobState.Completed for c in children)

    values = parent.receive(keep=True)
    assert len(values) == 10
    assert sorted(values) == list(range(1, 11))

    records = parent.receive(as_records=True)
    assert parent.receive() == [] and parent.has_more_data is False
    assert len(records) == 10
    child_ids = ids(children)
    for r in records:
        assert type(r) is bgjob.OutputRecord
        assert r.stream is bgjob.Stream.Output
        assert r.job_id in child_ids
        # Child k runs input k (children are made in input order, ids parent+1..).
        assert r.value == r.job_id - parent.id
        assert isinstance(r.time, dt.datetime) and r.time.tzinfo is not None
    assert sorted(r.value for r in records) == list(range(1, 11))
    assert len({r.job_id for r in records}) == 10
    sequences = [r.sequence for r in records]
    assert sequences == sorted(sequences) and len(set(sequences)) == 10, "not in time order"
    assert [c.result() for c in children] == list(range(1, 11))


def test_records_of_every_stream_from_children_carry_their_child_id(jobs):
    def work(x):
        ctx = bgjob.current_job()
        ctx.write_output(f"out {x}")
        ctx.write_warning(f"warn {x}")
        return f"ret {x}"

    parent = jobs.start_parallel(work, ["a", "b"])
    assert parent.wait(timeout=LONG)
    first, second = parent.children
    by_child = {first.id: [], second.id: []}
    for r in parent.receive(as_records=True):
        by_child[r.job_id].append(r)
    assert by_child[first.id] == [bgjob.OutputRecord("out a"), bgjob.WarningRecord("warn a"),
                                  bgjob.OutputRecord("ret a")]
    assert by_child[second.id] == [bgjob.OutputRecord("out b"), bgjob.WarningRecord("warn b"),
                                   bgjob.OutputRecord("ret b")]


def test_failing_input_fails_its_child_and_the_parent(jobs):
    raised = []

    def work(x):
        if x == 1:
            exc = ValueError("bad 1")
            raised.append(exc)
            raise exc
        return x * 10

    parent = jobs.start_parallel(work, [1, 2])
    assert parent.wait(timeout=LONG)
    bad, good = parent.children
    assert parent.state is JobState.Failed
    assert "bad 1" in parent.state_info.reason
    assert bad.state is JobState.Failed
    assert "bad 1" in bad.state_info.reason
    assert bad.state_info.reason == "ValueError: bad 1"
    with pytest.raises(ValueError) as info:
        bad.result()
    assert info.value is raised[0], "result() must re-raise the work's own exception"
    assert good.state is JobState.Completed
    assert good.result() == 20
    assert parent.receive() == [20]
    with pytest.raises(bgjob.JobFailedError, match="bad 1"):
        parent.result()


def test_inputs_are_passed_as_the_same_objects(jobs):
    class Thing:
        pass

    inputs = [{"k": [1, 2]}, Thing(), None, b"raw"]

    def work(x):
        ctx = bgjob.current_job()
        assert ctx.input is x
        return (x, ctx.job_id, ctx.job.parent.id)

    parent = jobs.start_parallel(work, inputs)
    assert parent.wait(timeout=LONG)
    assert parent.state is JobState.Completed
    for given, child in zip(inputs, parent.children):
        back, job_id, parent_id = child.result()
        assert back is given
        assert (job_id, parent_id) == (child.id, parent.id)


def test_current_job_input_is_the_input_and_none_elsewhere(jobs):
    parent = jobs.start_parallel(lambda x: bgjob.current_job().input, ["x", "y"])
    assert sorted(parent.receive(wait=True, timeout=LONG)) == ["x", "y"]
    thread_job = jobs.start(lambda: ("input", bgjob.current_job().input))
    assert thread_job.result(timeout=LONG) == ("input", None)


def test_inputs_may_be_any_iterable(jobs):
    parent = jobs.start_parallel(lambda x: x.upper(), (c for c in "abc"))
    assert sorted(parent.receive(wait=True, timeout=LONG)) == ["A", "B", "C"]
    assert len(parent.children) == 3


# ----- throttle and stop --------------------------------------------------------------

def test_throttle_limit_runs_two_at_once_and_stop_ends_all(jobs):
    pool = jobs.pool(threads=4)  # the pool would run all four: the job's throttle limits
    lock = threading.Lock()
    ran = []
    started = {x: threading.Event() for x in "abcd"}

    def work(x):
        with lock:
            ran.append(x)
        return cooperative(LONG, started[x])

    parent = jobs.start_parallel(work, "abcd", throttle_limit=2, pool=pool)
    children = parent.children
    wait_event(started["a"], LONG, "the first child")
    wait_event(started["b"], LONG, "the second child")
    poll_until(lambda: parent.state is JobState.Running, what="the parent Running")
    assert [c.state for c in children] == [JobState.Running, JobState.Running,
                                           JobState.NotStarted, JobState.NotStarted]
    with lock:
        assert sorted(ran) == ["a", "b"]

    parent.stop(timeout=LONG)
    assert parent.state is JobState.Stopped
    assert all(c.state in (JobState.Stopped, JobState.Completed) for c in children)
    assert [c.state for c in children[2:]] == [JobState.Stopped, JobState.Stopped]
    assert [c.state for c in children[:2]] == [JobState.Stopped, JobState.Stopped]
    assert children[0].receive() == children[1].receive() == ["stopped"]
    # The two waiting children never ran.
    assert all(c.begin_time is None for c in children[2:])
    assert not started["c"].is_set() and not started["d"].is_set()
    with lock:
        assert sorted(ran) == ["a", "b"], "a waiting child ran after the stop"


def test_stopping_the_parent_never_starts_a_waiting_child(jobs):
    pool = jobs.pool(threads=4)
    started = {x: threading.Event() for x in "abcd"}
    parent = jobs.start_parallel(lambda x: cooperative(LONG, started[x]), "abcd",
                                 throttle_limit=2, pool=pool)
    _a, _b, third, fourth = parent.children
    wait_event(started["a"], LONG, "the first child")
    wait_event(started["b"], LONG, "the second child")

    def hold(_job, info, _prev):
        # Runs during the stop, after the core's own hook for the third child's Stopped
        # (which hands the next waiting child to the pool, unless the parent is stopping):
        # holding the stop here gives a child wrongly handed on the time to start. It
        # should never start, so this wait is a bounded window, not a synchronisation.
        if info.state is JobState.Stopped:
            started["d"].wait(1.0)

    third.on_state_changed(hold)
    parent.stop(timeout=LONG)
    assert parent.state is JobState.Stopped
    assert third.state is fourth.state is JobState.Stopped
    assert not started["d"].is_set(), "a waiting child ran after its parent was stopped"
    assert fourth.begin_time is None


def test_throttle_limit_frees_a_slot_when_a_child_ends(jobs):
    pool = jobs.pool(threads=3)
    lock = threading.Lock()
    running = 0
    most = 0
    gates = [threading.Event() for _ in range(5)]
    started = [threading.Event() for _ in range(5)]

    def work(i):
        nonlocal running, most
        with lock:
            running += 1
            most = max(most, running)
        try:
            return gated(gates[i], started[i], value=i)
        finally:
            with lock:
                running -= 1

    parent = jobs.start_parallel(work, range(5), throttle_limit=2, pool=pool)
    children = parent.children
    wait_event(started[0], LONG, "child 0")
    wait_event(started[1], LONG, "child 1")
    assert [c.state for c in children[2:]] == [JobState.NotStarted] * 3
    # Let the children end one at a time: each end lets exactly the next waiting one start.
    for i in range(5):
        gates[i].set()
        if i + 2 < 5:
            wait_event(started[i + 2], LONG, f"child {i + 2}")
            assert [c.state for c in children[i + 3:]] == [JobState.NotStarted] * (2 - i)
    assert parent.wait(timeout=LONG)
    assert parent.state is JobState.Completed
    assert most == 2
    assert sorted(parent.receive()) == [0, 1, 2, 3, 4]


def test_no_throttle_limit_runs_every_child_at_once(jobs):
    pool = jobs.pool(threads=4)
    gate = threading.Event()
    started = [threading.Event() for _ in range(4)]
    parent = jobs.start_parallel(lambda i: gated(gate, started[i], value=i), range(4),
                                 pool=pool)
    # Each child blocks until the gate opens: all four started means all four run at once.
    for i, ev in enumerate(started):
        wait_event(ev, LONG, f"child {i}")
    assert [c.state for c in parent.children] == [JobState.Running] * 4
    gate.set()
    assert sorted(parent.receive(wait=True, timeout=LONG)) == [0, 1, 2, 3]
    assert parent.state is JobState.Completed


def test_remove_force_of_running_parent_stops_its_children(jobs):
    started = threading.Event()
    parent = jobs.start_parallel(lambda _x: cooperative(LONG, started), [1])
    child = parent.children[0]
    wait_event(started)
    with pytest.raises(bgjob.JobNotFinishedError):
        parent.remove()
    parent.remove(force=True)
    assert parent.state is JobState.Stopped
    assert child.state is JobState.Stopped
    with pytest.raises(bgjob.NoSuchJobError):
        bgjob.get_job(child.id)


# ----- identity, lookup and removal ---------------------------------------------------

def test_ids_type_names_command_and_status_message(jobs):
    def triple(x):
        return 3 * x

    parent = jobs.start_parallel(triple, [1, 2, 3])
    children = parent.children
    assert [c.id for c in children] == [parent.id + 1, parent.id + 2, parent.id + 3]
    assert parent.type_name == "ParallelJob"
    assert all(c.type_name == "ParallelChildJob" for c in children)
    assert parent.parent is None
    assert all(c.parent == parent for c in children)
    assert all(c.children == [] for c in children)
    assert [c.name for c in children] == [f"Job{c.id}" for c in children]
    assert parent.command == triple.__qualname__
    assert all(c.command == parent.command for c in children)
    assert parent.location == "localhost"
    assert parent.wait(timeout=LONG)
    assert parent.status_message == "3/3 completed"
    assert parent.begin_time is not None and parent.end_time is not None
    # The next job's id follows the last child's.
    after = jobs.start(lambda: 1)
    assert after.id == children[-1].id + 1
    assert after.wait(timeout=LONG)


def test_get_job_finds_a_child_by_id_instance_id_and_name(jobs):
    parent = jobs.start_parallel(lambda x: x, [1, 2])
    child = parent.children[1]
    assert bgjob.get_job(child.id) == child
    assert bgjob.get_job(instance_id=child.instance_id) == child
    assert bgjob.get_job(instance_id=str(child.instance_id)) == child
    assert bgjob.get_job(name=f"Job{child.id}") == child
    assert bgjob.get_job(child.id).parent == parent
    assert parent.wait(timeout=LONG)


def test_get_jobs_lists_children_only_on_request(jobs):
    gate = threading.Event()
    slow_started = threading.Event()

    def work(x):
        if x == "slow":
            gated(gate, slow_started)
        return x

    parent = jobs.start_parallel(work, ["quick", "slow"])
    quick, slow = parent.children
    wait_event(slow_started)
    poll_until(lambda: quick.state is JobState.Completed, what="the quick child Completed")
    assert slow.state is JobState.Running and parent.state is JobState.Running

    top = ids(bgjob.get_jobs())
    assert parent.id in top
    assert quick.id not in top and slow.id not in top
    assert bgjob.get_jobs(name=parent.name) == [parent]
    assert bgjob.get_jobs(name=f"Job{slow.id}") == []
    assert bgjob.get_jobs(name=f"Job{slow.id}", include_children=True) == [slow]

    everything = ids(bgjob.get_jobs(include_children=True))
    assert {parent.id, quick.id, slow.id} <= everything

    assert quick.id not in ids(bgjob.get_jobs(state=JobState.Completed))
    completed = ids(bgjob.get_jobs(state=JobState.Completed, include_children=True))
    assert quick.id in completed
    assert slow.id not in completed and parent.id not in completed
    running = ids(bgjob.get_jobs(state=JobState.Running, include_children=True))
    assert {slow.id, parent.id} <= running
    assert quick.id not in running

    gate.set()
    assert parent.wait(timeout=LONG)
    assert parent.state is JobState.Completed


def test_removing_a_child_alone_is_refused_and_the_parent_removes_all(jobs):
    parent = jobs.start_parallel(lambda x: x, [1, 2])
    assert parent.wait(timeout=LONG)
    children = parent.children
    child = children[0]
    with pytest.raises(bgjob.ChildJobError):
        child.remove()
    with pytest.raises(bgjob.ChildJobError):
        child.remove(force=True)
    with pytest.raises(bgjob.ChildJobError):
        bgjob.remove_job(child.id)
    assert bgjob.get_job(child.id) == child
    assert child.state is JobState.Completed
    assert child.receive(keep=True) == [1]

    parent.remove()
    for job in [parent, *children]:
        with pytest.raises(bgjob.NoSuchJobError):
            bgjob.get_job(job.id)
        with pytest.raises(bgjob.NoSuchJobError):
            bgjob.get_job(instance_id=job.instance_id)
    assert parent not in jobs.mine()


# ----- callbacks, empty inputs, asyncio, misuse ---------------------------------------

def test_parent_callback_sees_not_started_running_completed(jobs):
    rec = Recorder()
    parent = jobs.start_parallel(lambda x: x, range(5), on_state_changed=rec)
    assert parent.wait(timeout=LONG)
    assert rec.finished.is_set()
    assert rec.transitions() == [(JobState.NotStarted, JobState.Running),
                                 (JobState.Running, JobState.Completed)]
    assert all(job == parent for (job, _i, _p, _t) in rec.calls)


def test_parent_callback_of_a_failed_child(jobs):
    rec = Recorder()

    def work(x):
        raise RuntimeError(f"no {x}")

    parent = jobs.start_parallel(work, ["x"], on_state_changed=rec)
    assert parent.wait(timeout=LONG)
    assert rec.transitions() == [(JobState.NotStarted, JobState.Running),
                                 (JobState.Running, JobState.Failed)]
    last_info = rec.calls[-1][1]
    assert "no x" in last_info.reason


def test_empty_inputs_give_a_completed_parent_without_children(jobs):
    rec = Recorder()
    parent = jobs.start_parallel(lambda x: x, [], on_state_changed=rec)
    assert parent.wait(timeout=LONG)
    assert parent.state_info == bgjob.JobStateInfo(JobState.Completed, None)
    assert parent.children == []
    assert parent.receive() == []
    assert parent.status_message == "0/0 completed"
    assert parent.type_name == "ParallelJob"
    assert rec.transitions() == [(JobState.NotStarted, JobState.Running),
                                 (JobState.Running, JobState.Completed)]
    from_iterator = jobs.start_parallel(lambda x: x, iter(()))
    assert from_iterator.wait(timeout=LONG)
    assert from_iterator.state is JobState.Completed


def test_await_parent_and_children(jobs):
    gate = threading.Event()
    parent = jobs.start_parallel(lambda x: gated(gate, value=x * 2), [1, 2, 3])
    failing = jobs.start_parallel(lambda x: 1 / x, [0])

    async def main():
        loop = asyncio.get_running_loop()
        loop.call_soon(gate.set)  # opens only once the loop runs: the awaits must not block
        parent_result = await parent
        child_results = [await c for c in parent.children]
        return parent_result, child_results

    assert asyncio.run(asyncio.wait_for(main(), LONG)) == (None, [2, 4, 6])
    assert parent.state is JobState.Completed

    async def await_failing():
        await failing

    with pytest.raises(bgjob.JobFailedError, match="ZeroDivisionError"):
        asyncio.run(asyncio.wait_for(await_failing(), LONG))
    with pytest.raises(ZeroDivisionError):
        asyncio.run(asyncio.wait_for(_await(failing.children[0]), LONG))


async def _await(job):
    return await job


def test_wait_on_the_parent_from_a_child_would_deadlock(jobs):
    def work(_x):
        return bgjob.current_job().job.parent.wait(timeout=LONG)

    parent = jobs.start_parallel(work, [1])
    assert parent.wait(timeout=LONG)
    child = parent.children[0]
    assert child.state is JobState.Failed
    with pytest.raises(bgjob.WouldDeadlockError):
        child.result()


def test_bad_arguments_raise_type_error_and_start_nothing(jobs):
    name = jobs.name("bad")
    with pytest.raises(TypeError, match="callable"):
        bgjob.start_parallel_job(42, [1], name=name)
    with pytest.raises(TypeError):
        bgjob.start_parallel_job(lambda x: x, 5, name=name)
    with pytest.raises(TypeError):
        bgjob.start_parallel_job(lambda x: x, None, name=name)

    def broken():
        yield 1
        raise LookupError("no more inputs")

    with pytest.raises(LookupError, match="no more inputs"):
        bgjob.start_parallel_job(lambda x: x, broken(), name=name)
    with pytest.raises(TypeError):
        bgjob.start_parallel_job(lambda x: x, [1], name=name, throttle_limit="2")
    assert jobs.mine() == []


def test_shut_down_pool_raises_and_leaves_nothing(jobs):
    pool = jobs.pool(threads=1)
    pool.shutdown(timeout=LONG)
    with pytest.raises(bgjob.PoolShutDownError):
        jobs.start_parallel(lambda x: x, [1, 2], pool=pool)
    assert jobs.mine() == []


# ----- receive(as_records=True) on any job, and the documentation ---------------------

def test_receive_as_records_wraps_output_of_a_thread_job(jobs):
    def work():
        ctx = bgjob.current_job()
        ctx.write_output(1)
        ctx.write_error("e")
        return 2

    job = jobs.start(work)
    assert job.wait(timeout=LONG)
    got = bgjob.receive_job(job.id, keep=True, as_records=True)
    assert got == [bgjob.OutputRecord(1), bgjob.ErrorRecord("e"), bgjob.OutputRecord(2)]
    assert [type(r) for r in got] == [bgjob.OutputRecord, bgjob.ErrorRecord,
                                      bgjob.OutputRecord]
    assert all(isinstance(r, bgjob.StreamRecord) and r.job_id == job.id for r in got)
    assert got[0].sequence < got[1].sequence < got[2].sequence
    assert got[0] != bgjob.ErrorRecord(1)
    assert repr(got[0]) == "OutputRecord(1)"
    assert job.receive() == [1, bgjob.ErrorRecord("e"), 2]


def test_help_of_start_parallel_job_tells_how_to_use_it():
    text = pydoc.render_doc(bgjob.start_parallel_job, renderer=pydoc.plaintext)
    assert ("start_parallel_job(fn, inputs, /, *, name=None, pool=None, throttle_limit=0, "
            "on_state_changed=None)") in text
    for words in ("ForEach-Object -Parallel -AsJob", "throttle_limit", "as_records=True"):
        assert words in text, words
