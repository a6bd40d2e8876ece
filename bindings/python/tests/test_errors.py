"""Exceptions: the class hierarchy, which error each misuse raises, and the messages."""

from __future__ import annotations

import threading
import uuid

import pytest

import bgjob
from bgjob import JobState
from _support import LONG, gated, wait_event

ERRORS = [
    "AlreadyInitializedError", "ChildJobError", "InternalError", "InvalidArgumentError",
    "InvalidJobStateError", "JobFailedError", "JobNotFinishedError", "JobOSError",
    "JobStoppedError",
    "JobTimeoutError", "JobsBlockedError", "NoSuchJobError", "PoolShutDownError",
    "WouldDeadlockError",
]

# An id far beyond any this process will ever hand out.
NEVER_AN_ID = 2**62


def test_every_error_subclasses_job_error():
    assert issubclass(bgjob.JobError, Exception)
    for name in ERRORS:
        cls = getattr(bgjob, name)
        assert issubclass(cls, bgjob.JobError), name
        assert cls is not bgjob.JobError
        assert cls.__module__ == "bgjob", name
    assert len({getattr(bgjob, n) for n in ERRORS}) == len(ERRORS)
    # Every exception class the package exports is one of these.
    exported = {n for n in bgjob.__all__
                if isinstance(getattr(bgjob, n), type)
                and issubclass(getattr(bgjob, n), BaseException)}
    assert exported == set(ERRORS) | {"JobError"}


def test_unknown_ids_raise_no_such_job():
    with pytest.raises(bgjob.NoSuchJobError) as info:
        bgjob.get_job(NEVER_AN_ID)
    assert str(info.value), "the error carries the core's message"
    with pytest.raises(bgjob.NoSuchJobError):
        bgjob.get_job(instance_id=uuid.uuid4())
    with pytest.raises(bgjob.NoSuchJobError):
        bgjob.receive_job(NEVER_AN_ID)
    with pytest.raises(bgjob.NoSuchJobError):
        bgjob.stop_job(NEVER_AN_ID)
    with pytest.raises(bgjob.NoSuchJobError):
        bgjob.remove_job(NEVER_AN_ID)
    with pytest.raises(bgjob.NoSuchJobError):
        bgjob.get_job(0)


def test_removed_job_id_raises_no_such_job(jobs):
    job = jobs.start(lambda: 1)
    assert job.wait(timeout=LONG)
    job_id = job.id
    job.remove()
    with pytest.raises(bgjob.NoSuchJobError, match=str(job_id)):
        bgjob.get_job(job_id)
    with pytest.raises(bgjob.NoSuchJobError):
        bgjob.remove_job(job_id)


def test_bad_arguments_raise_invalid_argument(jobs):
    job = jobs.start(lambda: 1)
    assert job.wait(timeout=LONG)
    cases = [
        lambda: job.wait(timeout=-1),
        lambda: job.wait(timeout=float("nan")),
        lambda: job.receive(max=0),
        lambda: job.receive(wait=True, timeout=-1),
        lambda: job.receive(auto_remove=True),             # auto_remove needs wait
        lambda: job.receive(wait=True, keep=True, auto_remove=True),
        lambda: job.stop(timeout=-1),
        lambda: bgjob.wait_jobs([job], timeout=-1),
        lambda: bgjob.get_job(instance_id="not-a-uuid"),
        lambda: bgjob.Pool(threads=2, throttle=2).shutdown(timeout=-0.5),
    ]
    for i, case in enumerate(cases):
        try:
            case()
        except bgjob.InvalidArgumentError as exc:
            assert str(exc), f"case {i}: empty message"
        else:
            pytest.fail(f"case {i} did not raise InvalidArgumentError")
    # Nothing was taken or broken by the refused calls.
    assert job.state is JobState.Completed
    assert job.receive() == [1]


@pytest.mark.parametrize("huge", [1e19, 1e300, float("inf")])
def test_a_timeout_too_long_for_any_clock_means_no_limit(jobs, huge):
    # Once a PanicException (Duration::from_secs_f64, then Instant + Duration, overflowed).
    release = threading.Event()
    job = jobs.start(release.wait, LONG)
    assert job.wait(timeout=0) is False
    release.set()
    assert job.wait(timeout=huge) is True
    assert bgjob.wait_jobs([job], timeout=huge) == [job]
    job.stop(timeout=huge)
    assert job.result(timeout=huge) is True
    assert job.receive(wait=True, timeout=huge) == [True]


def test_type_errors_for_wrong_types(jobs):
    with pytest.raises(TypeError):
        bgjob.start_job(42)
    with pytest.raises(TypeError):
        bgjob.get_job()
    with pytest.raises(TypeError):
        bgjob.get_job(1, name="x")
    with pytest.raises(TypeError):
        bgjob.receive_job("not a job")
    assert jobs.mine() == []


def test_wait_on_itself_from_its_own_work_would_deadlock(jobs):
    def work():
        me = bgjob.current_job().job
        caught = []
        for attempt in (lambda: me.wait(),
                        lambda: me.wait(timeout=5),
                        lambda: bgjob.wait_jobs([me]),
                        lambda: me.receive(wait=True),
                        lambda: me.result()):
            try:
                attempt()
            except bgjob.WouldDeadlockError as exc:
                caught.append(str(exc))
        # A poll is not a wait: it may look at itself.
        polled = me.wait(timeout=0)
        return caught, polled

    job = jobs.start(work)
    assert job.wait(timeout=LONG), "a self-wait must raise, not hang"
    assert job.state is JobState.Completed, job.state_info
    caught, polled = job.result()
    assert len(caught) == 5, caught
    assert all(caught)
    assert polled is False


def test_waiting_on_another_job_from_work_is_fine(jobs):
    pool = jobs.pool(threads=1, throttle=1)

    def outer():
        inner = bgjob.start_job(lambda: "inner", name=jobs.name("inner"), pool=pool)
        # The only slot of the pool is ours; waiting lends it, so the inner job can run.
        return inner.result(timeout=LONG)

    job = jobs.start(outer, pool=pool)
    assert job.result(timeout=LONG) == "inner"


def test_pool_shut_down_refuses_jobs(jobs):
    pool = jobs.pool(threads=1)
    pool.shutdown(timeout=LONG)
    assert pool.is_shut_down
    with pytest.raises(bgjob.PoolShutDownError):
        jobs.start(lambda: 1, pool=pool)


def test_configure_default_pool_too_late(jobs):
    job = jobs.start(lambda: 1)  # the default pool exists from here on
    assert job.wait(timeout=LONG)
    with pytest.raises(bgjob.AlreadyInitializedError):
        bgjob.configure_default_pool(threads=2)


def test_stop_timeout_raises_job_timeout(jobs):
    gate = threading.Event()
    started = threading.Event()

    def stubborn():
        started.set()
        gate.wait(LONG)  # ignores stop requests until the gate opens

    job = jobs.start(stubborn)
    wait_event(started)
    with pytest.raises(bgjob.JobTimeoutError):
        job.stop(timeout=0.2)
    assert job.state is JobState.Stopping
    gate.set()
    job.stop(timeout=LONG)
    assert job.state is JobState.Stopped


def test_errors_carry_the_core_message(jobs):
    # A running job refused for removal is named in the message.
    gate = threading.Event()
    job = jobs.start(gated, gate)
    with pytest.raises(bgjob.JobNotFinishedError) as info:
        job.remove()
    assert str(job.id) in str(info.value)
    gate.set()
    assert job.wait(timeout=LONG)
