"""Suspend-Job / Resume-Job (``Job.suspend``, ``Job.resume``, ``JobContext.checkpoint``) and
work that asks its host for input (``JobContext.read_input``, ``Job.prompt``,
``Job.send_input``), with ``JobsBlockedError`` for waits on jobs that are all Blocked."""

from __future__ import annotations

import signal
import textwrap
import threading
import time

import pytest

import bgjob
from bgjob import JobState
from bgjob import JobState as S
from _support import (LONG, Recorder, gated, poll_until, read_line, run_python,
                      spawn_python, wait_event)


class Checkpointing:
    """Work that passes a checkpoint about every millisecond until ``finish`` is set or a
    stop is asked, and returns how it ended. It counts the checkpoints it got past, so a
    test can tell when a resumed work runs again (``wait_for_pass``)."""

    def __init__(self) -> None:
        self.finish = threading.Event()
        self.passed = threading.Condition()
        self.passes = 0

    def __call__(self, *_input: object) -> str:
        ctx = bgjob.current_job()
        assert ctx is not None
        deadline = time.monotonic() + LONG
        while not self.finish.is_set() and not ctx.stop_requested:
            if time.monotonic() > deadline:
                raise TimeoutError("never finished")
            ctx.checkpoint()
            with self.passed:
                self.passes += 1
                self.passed.notify_all()
            self.finish.wait(0.001)
        return "stopped" if ctx.stop_requested else "finished"

    def wait_for_pass(self) -> None:
        """Returns once the work got past a checkpoint after this call."""
        with self.passed:
            now = self.passes
            assert self.passed.wait_for(lambda: self.passes > now, LONG), "no checkpoint"


def greeter() -> str:
    """Work that asks for a name and greets it."""
    name = bgjob.current_job().read_input("your name?")
    return f"hello {name}"


def state_is(job: bgjob.Job, state: JobState):
    return lambda: job.state is state


# ----- suspend and resume ------------------------------------------------------------

def test_suspend_parks_at_the_checkpoint_and_resume_lets_it_complete(jobs):
    work = Checkpointing()
    rec = Recorder()
    job = jobs.start(work, on_state_changed=rec)
    poll_until(state_is(job, S.Running), LONG, "Running")
    assert job.suspend() is None
    assert job.state in (S.Suspending, S.Suspended)
    poll_until(state_is(job, S.Suspended), LONG, "Suspended at the checkpoint")
    # Suspended is persistent: a wait returns there, at once, with the job done.
    t0 = time.monotonic()
    assert job.wait(timeout=LONG) is True
    assert bgjob.wait_jobs([job], timeout=LONG) == [job]
    assert time.monotonic() - t0 < LONG / 2
    job.suspend()  # again: nothing to do
    assert job.state is S.Suspended
    job.resume()
    work.wait_for_pass()
    assert job.state is S.Running
    work.finish.set()
    assert job.result(timeout=LONG) == "finished"
    assert job.state is S.Completed
    assert rec.transitions() == [
        (S.NotStarted, S.Running),
        (S.Running, S.Suspending),
        (S.Suspending, S.Suspended),
        (S.Suspended, S.Running),
        (S.Running, S.Completed),
    ]


def test_suspend_job_and_resume_job_take_a_job_or_its_id(jobs):
    work = Checkpointing()
    job = jobs.start(work)
    poll_until(state_is(job, S.Running), LONG, "Running")
    bgjob.suspend_job(job.id)
    poll_until(state_is(job, S.Suspended), LONG, "Suspended")
    bgjob.resume_job(job)
    # The core keeps a work parked if it is suspended again before it woke from the
    # resume (it stays Suspending for good): suspend again only once it ran on.
    work.wait_for_pass()
    bgjob.suspend_job(job)
    poll_until(state_is(job, S.Suspended), LONG, "Suspended again")
    bgjob.resume_job(job.id)
    work.finish.set()
    assert job.result(timeout=LONG) == "finished"
    with pytest.raises(TypeError):
        bgjob.suspend_job("1")  # type: ignore[arg-type]
    with pytest.raises(bgjob.NoSuchJobError):
        bgjob.resume_job(2**62)


def test_a_stop_of_a_suspended_job_ends_it_stopped(jobs):
    rec = Recorder()
    job = jobs.start(Checkpointing(), on_state_changed=rec)
    poll_until(state_is(job, S.Running), LONG, "Running")
    job.suspend()
    poll_until(state_is(job, S.Suspended), LONG, "Suspended")
    job.stop(timeout=LONG)
    assert job.state is S.Stopped
    assert rec.transitions()[-2:] == [(S.Suspended, S.Stopping), (S.Stopping, S.Stopped)]
    with pytest.raises(bgjob.JobStoppedError):
        job.result(timeout=0)


def test_only_a_running_job_can_be_suspended(jobs):
    gate = threading.Event()
    pool = jobs.pool(threads=1, throttle=1)
    started = threading.Event()
    blocker = jobs.start(gated, gate, started, pool=pool)
    queued = jobs.start(lambda: 1, pool=pool)
    wait_event(started, LONG, "the blocker to run")
    with pytest.raises(bgjob.InvalidJobStateError):
        queued.suspend()
    with pytest.raises(bgjob.InvalidJobStateError):
        bgjob.suspend_job(queued)
    assert queued.state is S.NotStarted
    gate.set()
    assert bgjob.wait_jobs([blocker, queued], timeout=LONG) == [blocker, queued]
    with pytest.raises(bgjob.InvalidJobStateError, match="Completed"):
        blocker.suspend()
    queued.resume()  # nothing to resume: no error, no change
    assert queued.state is S.Completed


def test_work_that_never_checkpoints_stays_suspending_until_it_ends(jobs):
    gate = threading.Event()
    started = threading.Event()
    job = jobs.start(gated, gate, started, value="done")
    wait_event(started, LONG, "the work to start")
    job.suspend()
    assert job.state is S.Suspending
    assert job.wait(timeout=0) is False  # Suspending is not persistent
    gate.set()
    assert job.result(timeout=LONG) == "done"
    assert job.state is S.Completed


def test_a_suspended_parallel_job_resumes_with_all_its_children(jobs):
    work = Checkpointing()
    pool = jobs.pool(threads=3)
    parent = jobs.start_parallel(work, ["a", "b", "c"], pool=pool)
    poll_until(lambda: all(c.state is S.Running for c in parent.children), LONG,
               "every child Running")
    parent.suspend()
    poll_until(state_is(parent, S.Suspended), LONG, "the parent Suspended")
    assert [c.state for c in parent.children] == [S.Suspended] * 3
    parent.resume()
    poll_until(state_is(parent, S.Running), LONG, "the parent Running again")
    work.finish.set()
    assert parent.wait(timeout=LONG)
    assert parent.state is S.Completed
    assert sorted(parent.receive()) == ["finished"] * 3


def test_parked_work_releases_the_interpreter(jobs):
    # Both park on a worker thread; Python code elsewhere (this thread, another job) runs.
    suspended = jobs.start(Checkpointing())
    blocked = jobs.start(greeter)
    poll_until(state_is(suspended, S.Running), LONG, "Running")
    suspended.suspend()
    poll_until(lambda: suspended.state is S.Suspended and blocked.state is S.Blocked, LONG,
               "both parked")
    other = jobs.start(lambda: sum(range(100_000)))
    assert other.result(timeout=LONG) == sum(range(100_000))
    suspended.stop(timeout=LONG)
    blocked.send_input("ann")
    assert blocked.result(timeout=LONG) == "hello ann"


# ----- input -------------------------------------------------------------------------

def test_a_blocked_job_runs_again_with_the_very_object_sent(jobs):
    received = []

    def asks():
        obj = bgjob.current_job().read_input("what shall I keep?")
        received.append(obj)
        return obj

    rec = Recorder()
    job = jobs.start(asks, on_state_changed=rec)
    poll_until(state_is(job, S.Blocked), LONG, "Blocked for input")
    assert job.prompt == "what shall I keep?"
    sent = {"a": [1, 2]}
    job.send_input(sent)
    assert job.result(timeout=LONG) is sent
    assert received[0] is sent
    assert job.state is S.Completed
    assert job.prompt is None
    assert rec.transitions() == [
        (S.NotStarted, S.Running),
        (S.Running, S.Blocked),
        (S.Blocked, S.Running),
        (S.Running, S.Completed),
    ]
    with pytest.raises(bgjob.InvalidJobStateError):
        job.send_input("late")


def test_read_input_without_a_prompt_and_with_none_sent(jobs):
    def asks():
        return ("got", bgjob.current_job().read_input())

    job = jobs.start(asks)
    poll_until(state_is(job, S.Blocked), LONG, "Blocked for input")
    assert job.prompt == ""
    job.send_input(None)
    assert job.result(timeout=LONG) == ("got", None)


def test_a_blocked_job_stopped_makes_read_input_raise(jobs):
    seen = []

    def asks():
        ctx = bgjob.current_job()
        try:
            ctx.read_input("anything?")
        except bgjob.InvalidJobStateError as exc:
            seen.append((exc, ctx.stop_requested))
            return "gave up"
        return "got input nobody sent"

    job = jobs.start(asks)
    poll_until(state_is(job, S.Blocked), LONG, "Blocked for input")
    job.stop(timeout=LONG)
    assert job.state is S.Stopped
    assert len(seen) == 1
    exc, stop_requested = seen[0]
    assert isinstance(exc, bgjob.InvalidJobStateError)
    assert "stopped" in str(exc)
    assert stop_requested is True
    assert job.prompt is None


def test_input_goes_only_to_a_blocked_job(jobs):
    gate = threading.Event()
    started = threading.Event()
    job = jobs.start(gated, gate, started)
    wait_event(started, LONG, "the work to start")
    with pytest.raises(bgjob.InvalidJobStateError, match="not Blocked"):
        job.send_input("x")
    assert job.prompt is None
    gate.set()
    assert job.wait(timeout=LONG)


def test_waits_on_jobs_that_are_all_blocked_raise_jobs_blocked_error(jobs):
    a = jobs.start(greeter)
    b = jobs.start(greeter)
    poll_until(lambda: a.state is S.Blocked and b.state is S.Blocked, LONG, "both Blocked")
    calls = {  # what: (the call, a job its message names)
        "wait_jobs all": (lambda: bgjob.wait_jobs([a, b], timeout=LONG), a),
        "wait_jobs any": (lambda: bgjob.wait_jobs([a, b], any=True, timeout=LONG), b),
        "wait_jobs no timeout": (lambda: bgjob.wait_jobs([a, b]), a),
        "wait": (lambda: a.wait(timeout=LONG), a),
        "result": (lambda: b.result(timeout=LONG), b),
        "receive(wait=True)": (lambda: a.receive(wait=True, timeout=LONG), a),
        "receive_job(wait=True, max=1)": (lambda: bgjob.receive_job(b, wait=True, max=1), b),
    }
    for what, (call, named) in calls.items():
        t0 = time.monotonic()
        with pytest.raises(bgjob.JobsBlockedError, match="Blocked") as info:
            call()
        assert time.monotonic() - t0 < LONG / 2, f"{what}: ran into its timeout"
        assert str(named.id) in str(info.value), (what, info.value)
    # A poll does not wait, so it does not raise.
    assert bgjob.wait_jobs([a, b], timeout=0) == []
    # Once one is answered and done, waiting for all still ends Blocked (on the other)…
    a.send_input("ann")
    assert a.result(timeout=LONG) == "hello ann"
    with pytest.raises(bgjob.JobsBlockedError, match=str(b.id)):
        bgjob.wait_jobs([a, b], timeout=LONG)
    # …while any is satisfied by the answered one.
    assert bgjob.wait_jobs([a, b], any=True, timeout=LONG) == [a]
    b.send_input("bea")
    assert bgjob.wait_jobs([a, b], timeout=LONG) == [a, b]
    assert b.result() == "hello bea"


def test_a_wait_ends_blocked_when_its_last_running_job_blocks(jobs):
    gate = threading.Event()

    def later():
        if not gate.wait(LONG):
            raise TimeoutError("gate never opened")
        return greeter()

    asker = jobs.start(greeter)
    late = jobs.start(later)
    poll_until(state_is(asker, S.Blocked), LONG, "the first job Blocked")
    outcome = []

    def waiter():
        try:
            outcome.append(bgjob.wait_jobs([asker, late], timeout=LONG))
        except bgjob.JobError as exc:
            outcome.append(exc)

    t = threading.Thread(target=waiter)
    t.start()
    gate.set()  # `late` now runs, then blocks too: the wait must give up
    t.join(LONG)
    assert not t.is_alive()
    assert isinstance(outcome[0], bgjob.JobsBlockedError), outcome
    for j in (asker, late):
        j.send_input("x")
    assert bgjob.wait_jobs([asker, late], timeout=LONG) == [asker, late]


def test_receive_wait_returns_what_a_blocked_job_wrote_when_that_is_enough(jobs):
    def writes_then_asks():
        ctx = bgjob.current_job()
        ctx.write_output(1)
        ctx.write_output(2)
        return ctx.read_input("more?")

    job = jobs.start(writes_then_asks)
    poll_until(state_is(job, S.Blocked), LONG, "Blocked for input")
    assert job.receive(wait=True, max=2, timeout=LONG) == [1, 2]
    with pytest.raises(bgjob.JobsBlockedError):
        job.receive(wait=True, max=1, timeout=LONG)
    job.send_input(3)
    assert job.receive(wait=True, timeout=LONG) == [3]


def test_jobs_blocked_error_is_its_own_kind_of_job_error():
    assert issubclass(bgjob.JobsBlockedError, bgjob.JobError)
    # Not a WouldDeadlockError: that one is a bug of the program; this one asks the host
    # to answer the jobs' prompts (C: BGJOB_E_BLOCKED, a status of its own).
    assert not issubclass(bgjob.JobsBlockedError, bgjob.WouldDeadlockError)
    assert bgjob.JobsBlockedError.__module__ == "bgjob"


# ----- inline runs on the main thread ------------------------------------------------

def test_an_inline_run_parks_at_its_checkpoint_until_resumed():
    rec = Recorder()
    suspended = threading.Event()
    me = []

    def work():
        ctx = bgjob.current_job()
        me.append(ctx.job)
        ctx.job.suspend()
        ctx.checkpoint()  # parks here until the thread below resumes it
        return "resumed"

    def on_change(job, info, prev):
        rec(job, info, prev)
        if info.state is S.Suspended:
            suspended.set()

    def resumer():
        if suspended.wait(LONG):
            me[0].resume()

    t = threading.Thread(target=resumer)
    t.start()
    job = bgjob.run_job(work, name="inline-checkpoint", on_state_changed=on_change)
    try:
        t.join(LONG)
        assert job.result() == "resumed"
        assert rec.transitions() == [
            (S.NotStarted, S.Running),
            (S.Running, S.Suspending),
            (S.Suspending, S.Suspended),
            (S.Suspended, S.Running),
            (S.Running, S.Completed),
        ]
    finally:
        job.remove(force=True)


def test_an_inline_run_reads_input_another_thread_sends():
    sent = object()
    blocked = threading.Event()
    me = []

    def work():
        ctx = bgjob.current_job()
        me.append(ctx.job)
        return ctx.read_input("ok?")

    def on_change(_job, info, _prev):
        if info.state is S.Blocked:
            blocked.set()

    def answer():
        if blocked.wait(LONG):
            assert me[0].prompt == "ok?"
            me[0].send_input(sent)

    t = threading.Thread(target=answer)
    t.start()
    job = bgjob.run_job(work, name="inline-input", on_state_changed=on_change)
    try:
        t.join(LONG)
        assert job.result() is sent
    finally:
        job.remove(force=True)


CTRL_C_CHILD = textwrap.dedent("""
    import sys
    import bgjob

    MODE = {mode!r}

    def work():
        ctx = bgjob.current_job()
        if MODE == "checkpoint":
            ctx.job.suspend()
            ctx.checkpoint()
        else:
            ctx.read_input("never answered")
        return "returned"

    def on_change(job, info, prev):
        if info.state in (bgjob.JobState.Suspended, bgjob.JobState.Blocked):
            print("ready", flush=True)

    try:
        bgjob.run_job(work, name="ctrlc-park", on_state_changed=on_change)
    except KeyboardInterrupt:
        job = bgjob.get_job(name="ctrlc-park")
        print("caught KeyboardInterrupt", job.state.name, flush=True)
        job.remove()
        sys.exit(0)
    print("returned without an interrupt", flush=True)
""")


@pytest.mark.parametrize("mode", ["checkpoint", "read_input"])
def test_ctrl_c_stops_an_inline_run_parked_on_the_main_thread(mode):
    proc = spawn_python(CTRL_C_CHILD.format(mode=mode))
    try:
        line = read_line(proc, LONG)
        assert line.strip() == "ready", (line, proc.poll())
        proc.send_signal(signal.SIGINT)
        t0 = time.monotonic()
        out, err = proc.communicate(timeout=LONG)
        elapsed = time.monotonic() - t0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert "caught KeyboardInterrupt Stopped" in out, (out, err)
    assert proc.returncode == 0, (proc.returncode, err)
    assert elapsed < 5, f"took {elapsed:.1f}s to answer Ctrl-C"
    for bad in ("Fatal Python error", "panicked", "Traceback", "Exception ignored"):
        assert bad not in err, err


def test_interpreter_exit_with_parked_jobs_is_clean():
    code = textwrap.dedent("""
        import threading, time, bgjob
        S = bgjob.JobState

        def checkpointing():
            ctx = bgjob.current_job()
            end = time.monotonic() + 60
            while not ctx.stop_requested and time.monotonic() < end:
                ctx.checkpoint()
                time.sleep(0.001)

        def asks():
            return bgjob.current_job().read_input("never answered")

        suspended = bgjob.start_job(checkpointing)
        blocked = bgjob.start_job(asks)
        end = time.monotonic() + 30
        while suspended.state is not S.Running and time.monotonic() < end:
            time.sleep(0.001)
        suspended.suspend()
        while not (suspended.state is S.Suspended and blocked.state is S.Blocked) \\
                and time.monotonic() < end:
            time.sleep(0.001)
        print("parked", suspended.state.name, blocked.state.name, flush=True)
    """)
    t0 = time.monotonic()
    proc = run_python(code, timeout=LONG * 2)
    assert "parked Suspended Blocked" in proc.stdout, (proc.stdout, proc.stderr)
    assert proc.returncode == 0, (proc.returncode, proc.stderr)
    for bad in ("Fatal Python error", "panicked", "Traceback", "Segmentation fault",
                "Aborted", "Exception ignored"):
        assert bad not in proc.stderr, proc.stderr
    assert time.monotonic() - t0 < 20


def test_a_forced_wait_does_not_stop_at_suspended(jobs):
    finish = threading.Event()

    def work():
        ctx = bgjob.current_job()
        deadline = time.monotonic() + LONG
        while not finish.is_set() and time.monotonic() < deadline:
            ctx.checkpoint()
            time.sleep(0.001)

    job = jobs.start(work)
    poll_until(lambda: job.state == JobState.Running, what="Running")
    job.suspend()
    poll_until(lambda: job.state == JobState.Suspended, what="Suspended")
    assert job.wait(timeout=LONG) is True  # a plain wait stops at Suspended
    assert job.wait(timeout=0, force=True) is False
    assert bgjob.wait_jobs([job], timeout=0, force=True) == []
    assert bgjob.wait_jobs([job], timeout=0) == [job]
    result = []
    waiter = threading.Thread(target=lambda: result.append(job.wait(timeout=LONG, force=True)))
    waiter.start()
    job.resume()
    finish.set()
    waiter.join(LONG)
    assert result == [True]
    assert job.state == JobState.Completed
