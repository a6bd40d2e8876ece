"""PowerShell's job behaviours (the C tests' scenarios), in Python."""

from __future__ import annotations

import datetime as dt
import threading
import time
import uuid

import pytest

import bgjob
from bgjob import JobState
from _support import LONG, cooperative, gated, poll_until, wait_event


# ----- states -------------------------------------------------------------------------

def test_job_state_numbers_are_powershells():
    # System.Management.Automation.JobState: the numbers are part of the ABI (C, Python).
    assert {s.name: s.value for s in JobState} == {
        "NotStarted": 0, "Running": 1, "Completed": 2, "Failed": 3, "Stopped": 4,
        "Blocked": 5, "Suspended": 6, "Disconnected": 7, "Suspending": 8, "Stopping": 9,
        "AtBreakpoint": 10,
    }
    assert [s for s in JobState if s.is_finished] == [
        JobState.Completed, JobState.Failed, JobState.Stopped]


# ----- results and receive ------------------------------------------------------------

def test_returned_value_is_received_once(jobs):
    job = jobs.start(lambda: 2)
    assert job.wait(timeout=LONG) is True
    assert job.state is JobState.Completed
    assert job.state_info == bgjob.JobStateInfo(JobState.Completed, None)
    assert job.has_more_data is True
    assert job.receive() == [2]
    assert job.has_more_data is False
    assert job.receive() == []
    assert job.result() == 2  # the outcome stays after the records are taken


def test_receive_keep_copies_then_receive_takes(jobs):
    job = jobs.start(lambda: 2)
    assert job.wait(timeout=LONG)
    assert job.receive(keep=True) == [2]
    assert job.receive(keep=True) == [2]
    assert job.receive() == [2]
    assert job.receive() == []
    assert job.receive(keep=True) == []


def test_none_return_writes_no_record(jobs):
    job = jobs.start(lambda: None)
    assert job.wait(timeout=LONG)
    assert job.state is JobState.Completed
    assert job.receive() == []
    assert job.result() is None


def test_streaming_reads_are_gapless_and_keep_is_a_prefix(jobs):
    total = 300
    reader_has_some = threading.Event()

    def producer():
        ctx = bgjob.current_job()
        for i in range(1, total + 1):
            ctx.write_output(i)
            if i == 40:
                # Do not outrun the reader: it must read while the job runs.
                wait_event(reader_has_some, LONG, "the reader's first batch")
            time.sleep(0.002)

    job = jobs.start(producer)
    got = []
    batches_while_running = 0
    snapshot_checked = False
    deadline = time.monotonic() + LONG
    while True:
        assert time.monotonic() < deadline, "producer never finished"
        running = job.state is JobState.Running
        batch = job.receive(wait=True, max=15, timeout=LONG)
        assert len(batch) <= 15
        if batch and running:
            batches_while_running += 1
        got.extend(batch)
        if got:
            reader_has_some.set()
        if not snapshot_checked and len(got) >= 60 and job.state is JobState.Running:
            snap = job.receive(keep=True)
            later = job.receive()
            assert later[:len(snap)] == snap, "a keep snapshot must be a prefix of later reads"
            got.extend(later)
            snapshot_checked = True
        if job.state.is_finished and not job.has_more_data:
            got.extend(job.receive())
            break
    assert job.state is JobState.Completed
    assert got == list(range(1, total + 1)), "records lost, duplicated or reordered"
    assert batches_while_running >= 2
    assert snapshot_checked


def test_receive_max_takes_at_most_n(jobs):
    def work():
        ctx = bgjob.current_job()
        for i in range(10):
            ctx.write_output(i)

    job = jobs.start(work)
    assert job.wait(timeout=LONG)
    assert job.receive(max=3) == [0, 1, 2]
    assert job.receive(max=3, keep=True) == [3, 4, 5]
    assert job.receive(max=3) == [3, 4, 5]
    assert job.receive(max=100) == [6, 7, 8, 9]
    assert job.receive(max=1) == []


def test_receive_wait_timeout_returns_what_is_there(jobs):
    gate = threading.Event()
    written = threading.Event()

    def work():
        ctx = bgjob.current_job()
        ctx.write_output("a")
        ctx.write_output("b")
        written.set()
        gated(gate)
        return "c"

    job = jobs.start(work)
    wait_event(written)
    t0 = time.monotonic()
    got = job.receive(wait=True, timeout=0.5)
    elapsed = time.monotonic() - t0
    assert got == ["a", "b"]
    assert 0.4 <= elapsed < 10
    assert job.state is JobState.Running
    gate.set()
    assert job.receive(wait=True, timeout=LONG) == ["c"]
    assert job.state is JobState.Completed


def test_receive_wait_blocks_until_finished(jobs):
    gate = threading.Event()

    def work():
        bgjob.current_job().write_output(1)
        gated(gate)
        return 2

    job = jobs.start(work)
    threading.Timer(0.2, gate.set).start()
    assert job.receive(wait=True) == [1, 2]
    assert job.state is JobState.Completed


def test_receive_wait_auto_remove(jobs):
    job = jobs.start(lambda: 7)
    job_id = job.id
    assert job.receive(wait=True, auto_remove=True, timeout=LONG) == [7]
    with pytest.raises(bgjob.NoSuchJobError):
        bgjob.get_job(job_id)


def test_receive_job_function_and_job_id(jobs):
    job = jobs.start(lambda: "x")
    assert job.wait(timeout=LONG)
    assert bgjob.receive_job(job.id, keep=True) == ["x"]
    assert bgjob.receive_job(job) == ["x"]
    bgjob.remove_job(job.id)
    with pytest.raises(bgjob.NoSuchJobError):
        bgjob.get_job(job.id)


# ----- wait ----------------------------------------------------------------------------

def test_wait_timeout_on_long_job(jobs):
    job = jobs.start(cooperative)
    t0 = time.monotonic()
    assert job.wait(timeout=1) is False
    elapsed = time.monotonic() - t0
    assert 0.9 <= elapsed < 5, elapsed
    assert job.state is JobState.Running
    job.stop(timeout=LONG)
    assert job.state is JobState.Stopped
    assert job.wait(timeout=0) is True
    assert job.end_time is not None


def test_wait_jobs_any_returns_first_and_timeout_zero_polls(jobs):
    pool = jobs.pool(threads=3)

    def timed(seconds):
        ctx = bgjob.current_job()
        end = time.monotonic() + seconds
        while time.monotonic() < end and not ctx.stop_requested:
            time.sleep(0.002)
        return seconds

    j1 = jobs.start(timed, 0.1, pool=pool)
    j2 = jobs.start(timed, 0.5, pool=pool)
    j3 = jobs.start(timed, 1.5, pool=pool)
    group = [j3, j2, j1]
    assert bgjob.wait_jobs(group, any=True, timeout=0) == []
    t0 = time.monotonic()
    assert bgjob.wait_jobs(group, any=True, timeout=LONG) == [j1]
    assert time.monotonic() - t0 < 1.0
    # Timeout 0 polls (PowerShell returns nothing here): the jobs done now, in given order.
    t0 = time.monotonic()
    done_now = bgjob.wait_jobs(group, timeout=0)
    assert time.monotonic() - t0 < 0.5
    assert done_now == [j1]
    assert j1.wait(timeout=0) is True
    assert j3.wait(timeout=0) is False
    assert bgjob.wait_jobs(group, timeout=LONG) == [j3, j2, j1]
    assert [j.result() for j in (j1, j2, j3)] == [0.1, 0.5, 1.5]


def test_wait_jobs_all_with_timeout_returns_the_done_ones(jobs):
    gate = threading.Event()
    fast = jobs.start(lambda: 1)
    slow = jobs.start(gated, gate)
    assert fast.wait(timeout=LONG)
    t0 = time.monotonic()
    assert bgjob.wait_jobs([slow, fast], timeout=0.3) == [fast]
    assert 0.25 <= time.monotonic() - t0 < 10
    gate.set()
    assert bgjob.wait_jobs([slow, fast], timeout=LONG) == [slow, fast]


def test_wait_jobs_empty_list(jobs):
    assert bgjob.wait_jobs([], timeout=0) == []
    assert bgjob.wait_jobs([], any=True, timeout=1) == []


# ----- errors and failures ------------------------------------------------------------

def test_error_record_does_not_fail_the_job(jobs):
    def work():
        ctx = bgjob.current_job()
        ctx.write_output(1)
        ctx.write_error("bad thing")
        ctx.write_output(2)
        return 3

    job = jobs.start(work)
    assert job.wait(timeout=LONG)
    assert job.state is JobState.Completed
    assert job.state_info.reason is None
    got = job.receive()
    assert got == [1, bgjob.ErrorRecord("bad thing"), 2, 3]
    err = got[1]
    assert type(err) is bgjob.ErrorRecord
    assert isinstance(err, bgjob.StreamRecord)
    assert err.stream is bgjob.Stream.Error
    assert err.value == "bad thing"
    assert err.job_id == job.id
    assert isinstance(err.time, dt.datetime) and err.time.tzinfo is not None
    assert job.result() == 3


def test_raised_exception_fails_the_job(jobs):
    raised = []

    def work():
        bgjob.current_job().write_output("before")
        exc = ValueError("bad value 42")
        raised.append(exc)
        raise exc

    job = jobs.start(work)
    assert job.wait(timeout=LONG)
    assert job.state is JobState.Failed
    assert job.state_info.reason == "ValueError: bad value 42"
    assert job.receive() == ["before"]
    with pytest.raises(ValueError) as info:
        job.result()
    assert info.value is raised[0], "result() must re-raise the work's own exception object"
    with pytest.raises(ValueError):
        job.result(timeout=0)


def test_exception_without_message_reason_is_type_name(jobs):
    class Custom(Exception):
        pass

    def work():
        raise Custom()

    job = jobs.start(work)
    assert job.wait(timeout=LONG)
    assert job.state_info == bgjob.JobStateInfo(JobState.Failed, "Custom")
    with pytest.raises(Custom):
        job.result()


def test_fail_from_work(jobs):
    def work():
        bgjob.current_job().fail("disk full")
        return 5

    job = jobs.start(work)
    assert job.wait(timeout=LONG)
    assert job.state is JobState.Failed
    assert job.state_info.reason == "disk full"
    with pytest.raises(bgjob.JobFailedError, match="disk full"):
        job.result()


def test_result_of_stopped_job_raises_job_stopped(jobs):
    job = jobs.start(cooperative)
    job.stop(timeout=LONG)
    assert job.state is JobState.Stopped
    with pytest.raises(bgjob.JobStoppedError):
        job.result()


def test_result_timeout_raises_job_timeout(jobs):
    gate = threading.Event()
    job = jobs.start(gated, gate, value="v")
    t0 = time.monotonic()
    with pytest.raises(bgjob.JobTimeoutError):
        job.result(timeout=0.2)
    assert time.monotonic() - t0 < 10
    with pytest.raises(bgjob.JobTimeoutError):
        job.result(timeout=0)
    gate.set()
    assert job.result(timeout=LONG) == "v"


# ----- stop and remove ----------------------------------------------------------------

def test_remove_running_job_refused_then_forced(jobs):
    started = threading.Event()
    job = jobs.start(cooperative, LONG, started)
    wait_event(started)
    with pytest.raises(bgjob.JobNotFinishedError):
        job.remove()
    assert bgjob.get_job(job.id) == job
    assert job.state is JobState.Running
    job.remove(force=True)
    assert job.state is JobState.Stopped
    with pytest.raises(bgjob.NoSuchJobError):
        bgjob.get_job(job.id)
    with pytest.raises(bgjob.NoSuchJobError):
        bgjob.get_job(instance_id=job.instance_id)
    assert job not in jobs.mine()


def test_remove_finished_job_frees_it(jobs):
    job = jobs.start(lambda: 1)
    assert job.wait(timeout=LONG)
    job.remove()
    with pytest.raises(bgjob.NoSuchJobError):
        bgjob.get_job(job.id)
    with pytest.raises(bgjob.NoSuchJobError):
        job.remove()


def test_stop_running_job(jobs):
    started = threading.Event()
    job = jobs.start(cooperative, LONG, started)
    wait_event(started)
    bgjob.stop_job(job.id, timeout=LONG)
    assert job.state is JobState.Stopped
    assert job.state_info.reason is None
    job.stop()  # stopping a finished job is a no-op
    assert job.state is JobState.Stopped


def test_stop_queued_job_never_runs(jobs):
    pool = jobs.pool(threads=1, throttle=1)
    started = threading.Event()
    ran = threading.Event()
    blocker = jobs.start(cooperative, LONG, started, pool=pool)
    wait_event(started)
    queued = jobs.start(ran.set, pool=pool)
    assert queued.state is JobState.NotStarted
    assert queued.begin_time is None
    queued.stop(timeout=LONG)
    assert queued.state is JobState.Stopped
    assert blocker.state is JobState.Running
    blocker.stop(timeout=LONG)
    # The pool runs FIFO on one thread: had the stopped job stayed queued, it would run
    # before this one.
    after = jobs.start(lambda: "after", pool=pool)
    assert after.result(timeout=LONG) == "after"
    assert not ran.is_set(), "a stopped queued job ran"
    assert queued.state is JobState.Stopped
    assert queued.begin_time is None


def test_pool_throttle_limits_running_jobs(jobs):
    pool = jobs.pool(threads=4, throttle=2)
    assert pool.threads == 4
    assert pool.throttle == 2
    started = [threading.Event() for _ in range(4)]
    group = [jobs.start(cooperative, LONG, ev, pool=pool) for ev in started]

    def states():
        return sorted(j.state for j in group)

    poll_until(lambda: sum(ev.is_set() for ev in started) >= 2, what="two jobs running")
    assert states() == [JobState.NotStarted, JobState.NotStarted,
                        JobState.Running, JobState.Running]
    running = [j for j in group if j.state is JobState.Running]
    queued = [j for j in group if j.state is JobState.NotStarted]
    for j in queued:
        j.stop(timeout=LONG)
    for j in running:
        j.stop(timeout=LONG)
    assert all(j.state is JobState.Stopped for j in group)
    assert sum(ev.is_set() for ev in started) == 2


# ----- identity and properties --------------------------------------------------------

def test_ids_increase_by_one(jobs):
    a = jobs.start(lambda: 1)
    b = jobs.start(lambda: 1)
    c = jobs.start(lambda: 1)
    assert b.id == a.id + 1
    assert c.id == b.id + 1
    assert bgjob.wait_jobs([a, b, c], timeout=LONG) == [a, b, c]


def test_default_name_is_job_id(jobs):
    job = jobs.track(bgjob.start_job(lambda: 1))
    assert job.name == f"Job{job.id}"
    assert job.wait(timeout=LONG)


def test_names_match_wildcards_case_insensitively(jobs):
    p = jobs.prefix
    alpha1 = jobs.start(lambda: 1, name=f"{p}-Alpha-1")
    alpha2 = jobs.start(lambda: 1, name=f"{p}-alpha-2")
    beta = jobs.start(lambda: 1, name=f"{p}-Beta")
    assert bgjob.get_jobs(name=f"{p.upper()}-ALPHA-*") == [alpha1, alpha2]
    assert bgjob.get_jobs(name=f"{p}-?eta") == [beta]
    assert bgjob.get_jobs(name=f"{p}-*") == [alpha1, alpha2, beta]
    assert bgjob.get_jobs(name=f"{p}-alpha-1") == [alpha1]
    assert bgjob.get_jobs(name=f"{p}-gamma*") == []
    assert bgjob.get_job(name=f"{p}-BETA") == beta
    with pytest.raises(bgjob.NoSuchJobError):
        bgjob.get_job(name=f"{p}-gamma")
    with pytest.raises(bgjob.InvalidArgumentError):
        bgjob.get_job(name=f"{p}-alpha-*")
    assert bgjob.wait_jobs([alpha1, alpha2, beta], timeout=LONG)


def test_get_jobs_filters_and_sorting(jobs):
    gate = threading.Event()
    done = jobs.start(lambda: 1)
    assert done.wait(timeout=LONG)
    running = jobs.start(gated, gate)
    pattern = jobs.prefix + "*"
    poll_until(lambda: running.state is JobState.Running, what="Running")
    assert bgjob.get_jobs(name=pattern) == [done, running]
    assert bgjob.get_jobs(name=pattern, state=JobState.Completed) == [done]
    assert bgjob.get_jobs(name=pattern, state=JobState.Running) == [running]
    assert bgjob.get_jobs(name=pattern, has_more_data=True) == [done]
    assert bgjob.get_jobs(name=pattern, newest=1) == [running]
    assert bgjob.get_jobs(name=pattern, command="*GATED") == [running]
    gate.set()
    assert running.wait(timeout=LONG)


def test_instance_id_is_uuid4_and_found(jobs):
    job = jobs.start(lambda: 1)
    iid = job.instance_id
    assert isinstance(iid, uuid.UUID)
    assert iid.version == 4
    assert iid == job.instance_id
    assert bgjob.get_job(instance_id=iid) == job
    assert bgjob.get_job(instance_id=str(iid)) == job
    other = jobs.start(lambda: 1)
    assert other.instance_id != iid
    assert bgjob.wait_jobs([job, other], timeout=LONG)


def test_handles_compare_equal_and_hash(jobs):
    job = jobs.start(lambda: 1)
    again = bgjob.get_job(job.id)
    assert again == job and hash(again) == hash(job)
    assert again != jobs.start(lambda: 1)
    assert str(job.id) in repr(job)


def test_type_location_command(jobs):
    def my_work():
        return 1

    job = jobs.start(my_work)
    assert job.type_name == "ThreadJob"
    assert job.location == "localhost"
    assert job.command == my_work.__qualname__
    assert job.command == "test_type_location_command.<locals>.my_work"
    assert job.children == []
    assert job.parent is None
    assert job.wait(timeout=LONG)


def test_begin_and_end_times(jobs):
    gate = threading.Event()
    job = jobs.start(gated, gate)
    before = dt.datetime.now(dt.timezone.utc)
    poll_until(lambda: job.begin_time is not None, what="begin_time")
    assert job.end_time is None
    gate.set()
    assert job.wait(timeout=LONG)
    after = dt.datetime.now(dt.timezone.utc)
    begin, end = job.begin_time, job.end_time
    for t in (begin, end):
        assert isinstance(t, dt.datetime)
        assert t.tzinfo is not None and t.utcoffset() == dt.timedelta(0)
    slack = dt.timedelta(seconds=1)
    assert before - slack <= begin <= end <= after + slack
    assert job.begin_time == begin and job.end_time == end  # set once


def test_progress_and_status_message(jobs):
    gate = threading.Event()
    reported = threading.Event()

    def work():
        ctx = bgjob.current_job()
        ctx.write_progress(40, "Copying", "file 4 of 10")
        ctx.status_message = "copying"
        assert ctx.status_message == "copying"
        reported.set()
        gated(gate)
        ctx.write_progress(100, "Copying", "done")

    job = jobs.start(work)
    assert job.progress is None or isinstance(job.progress, bgjob.ProgressRecord)
    wait_event(reported)
    assert job.state is JobState.Running
    progress = job.progress
    assert isinstance(progress, bgjob.ProgressRecord)
    assert (progress.percent_complete, progress.activity, progress.status_description) == (
        40, "Copying", "file 4 of 10")
    assert job.status_message == "copying"
    gate.set()
    assert job.wait(timeout=LONG)
    assert job.progress == bgjob.ProgressRecord(100, "Copying", "done")
    got = job.receive()
    assert got == [bgjob.ProgressRecord(40, "Copying", "file 4 of 10"),
                   bgjob.ProgressRecord(100, "Copying", "done")]
    assert all(type(r) is bgjob.ProgressRecord and r.job_id == job.id for r in got)
    assert got[0].stream is bgjob.Stream.Progress
    assert job.status_message == "copying"


def test_current_job_outside_and_inside_work(jobs):
    assert bgjob.current_job() is None

    def work():
        ctx = bgjob.current_job()
        return (ctx.job_id, ctx.job.id, ctx.stop_requested)

    job = jobs.start(work)
    assert job.result(timeout=LONG) == (job.id, job.id, False)


def test_arguments_are_passed(jobs):
    def work(a, b, *, c):
        return (a, b, c)

    job = jobs.start(work, 1, [2], c={"three": 3})
    assert job.result(timeout=LONG) == (1, [2], {"three": 3})


# ----- records as objects, in time order ----------------------------------------------

def test_records_are_the_same_objects(jobs):
    class Thing:
        pass

    written = [{"k": [1, 2]}, [1, "two"], Thing(), b"bytes", 3.5]

    def work():
        ctx = bgjob.current_job()
        for obj in written:
            ctx.write_output(obj)
        ctx.write_warning(written[0])
        return written[2]

    job = jobs.start(work)
    assert job.wait(timeout=LONG)
    got = job.receive()
    assert len(got) == len(written) + 2
    for obj, back in zip(written, got):
        assert back is obj
    assert type(got[5]) is bgjob.WarningRecord and got[5].value is written[0]
    assert got[6] is written[2]
    assert job.result() is written[2]


def test_records_of_all_streams_in_time_order(jobs):
    def work():
        ctx = bgjob.current_job()
        ctx.write_output("o1")
        ctx.write_verbose("v1")
        ctx.write_error("e1")
        ctx.write_progress(10, "act", "st")
        ctx.write_debug("d1")
        ctx.write_output("o2")
        ctx.write_warning("w1")
        ctx.write_information("i1")
        ctx.write_error("e2")
        return "o3"

    job = jobs.start(work)
    assert job.wait(timeout=LONG)
    kept = job.receive(keep=True)
    got = job.receive()
    assert kept == got
    expected = ["o1", bgjob.VerboseRecord("v1"), bgjob.ErrorRecord("e1"),
                bgjob.ProgressRecord(10, "act", "st"), bgjob.DebugRecord("d1"), "o2",
                bgjob.WarningRecord("w1"), bgjob.InformationRecord("i1"),
                bgjob.ErrorRecord("e2"), "o3"]
    assert got == expected
    assert [type(r) for r in got] == [type(r) for r in expected]
    streams = [r.stream for r in got if not isinstance(r, str)]
    assert streams == [bgjob.Stream.Verbose, bgjob.Stream.Error, bgjob.Stream.Progress,
                       bgjob.Stream.Debug, bgjob.Stream.Warning, bgjob.Stream.Information,
                       bgjob.Stream.Error]
    sequences = [r.sequence for r in got if not isinstance(r, str)]
    assert sequences == sorted(sequences) and len(set(sequences)) == len(sequences)
    times = [r.time for r in got if not isinstance(r, str)]
    assert times == sorted(times)


def test_records_written_concurrently_by_many_jobs_are_all_received(jobs):
    pool = jobs.pool(threads=4)

    def work(k):
        ctx = bgjob.current_job()
        for i in range(200):
            ctx.write_output((k, i))

    group = [jobs.start(work, k, pool=pool) for k in range(8)]
    assert bgjob.wait_jobs(group, timeout=LONG) == group
    for k, job in enumerate(group):
        assert job.receive() == [(k, i) for i in range(200)]
