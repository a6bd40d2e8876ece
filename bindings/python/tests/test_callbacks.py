"""State-change callbacks, called from bgjob's threads."""

from __future__ import annotations

import threading
import time

import pytest

import bgjob
from bgjob import JobState, JobStateInfo
from _support import LONG, CapturedUnraisable, Recorder, cooperative, gated, wait_event

S = JobState


def test_start_job_callback_sees_every_change_and_every_record(jobs):
    calls = []
    received_in_callback = []
    main_thread = threading.get_ident()

    def on_change(job, info, prev):
        calls.append((job.id, info, prev, threading.get_ident()))
        if info.state is S.Completed:
            received_in_callback.append(job.receive(keep=True))

    def work():
        ctx = bgjob.current_job()
        for i in range(100):
            ctx.write_output(i)
        ctx.write_warning("w")
        return "last"

    job = jobs.start(work, on_state_changed=on_change)
    assert job.wait(timeout=LONG)
    assert [(c[2], c[1]) for c in calls] == [
        (JobStateInfo(S.NotStarted), JobStateInfo(S.Running)),
        (JobStateInfo(S.Running), JobStateInfo(S.Completed)),
    ]
    for job_id, info, prev, thread in calls:
        assert job_id == job.id
        assert type(info) is JobStateInfo and type(prev) is JobStateInfo
        assert type(info.state) is JobState
        assert thread != main_thread
    assert received_in_callback == [list(range(100)) + [bgjob.WarningRecord("w"), "last"]]
    assert job.receive() == received_in_callback[0]  # keep=True took nothing


def test_failed_change_carries_the_reason(jobs):
    rec = Recorder()

    def work():
        raise KeyError("nope")

    job = jobs.start(work, on_state_changed=rec)
    assert job.wait(timeout=LONG)
    last = rec.calls[-1]
    assert last[1] == JobStateInfo(S.Failed, "KeyError: 'nope'")
    assert last[2] == JobStateInfo(S.Running, None)


def test_stop_changes_in_order_each_once(jobs):
    rec = Recorder()
    started = threading.Event()
    job = jobs.start(cooperative, LONG, started, on_state_changed=rec)
    wait_event(started)
    job.stop(timeout=LONG)
    assert rec.finished.is_set(), "stop() returned before the Stopped callback ran"
    moves = rec.transitions()
    assert moves == [(S.NotStarted, S.Running), (S.Running, S.Stopping),
                     (S.Stopping, S.Stopped)]


def test_wait_returns_only_after_the_completed_callback_returned(jobs):
    # (receive(wait=True) waits for the records, which are all there before the
    # callbacks run: it is not a Wait-Job and may return earlier.)
    for how in ("wait", "wait_jobs", "result"):
        returned = threading.Event()

        def on_change(job, info, prev, returned=returned):
            if info.state is S.Completed:
                time.sleep(0.3)  # makes the callback slow, not a synchronisation
                returned.set()

        job = jobs.start(lambda: 1, on_state_changed=on_change)
        if how == "wait":
            assert job.wait(timeout=LONG)
        elif how == "wait_jobs":
            assert bgjob.wait_jobs([job], timeout=LONG) == [job]
        else:
            assert job.result(timeout=LONG) == 1
        assert returned.is_set(), f"{how}() returned before the Completed callback"


def test_registration_unregister_stops_calls(jobs):
    gate = threading.Event()
    started = threading.Event()
    job = jobs.start(gated, gate, started)
    wait_event(started)
    dropped = Recorder()
    kept = Recorder()
    reg = job.on_state_changed(dropped)
    reg_kept = job.on_state_changed(kept)
    assert isinstance(reg, bgjob.Registration)
    assert reg.id != reg_kept.id
    assert reg.unregister() is True
    assert reg.unregister() is False
    gate.set()
    assert job.wait(timeout=LONG)
    assert dropped.calls == []
    assert kept.transitions() == [(S.Running, S.Completed)]
    assert reg_kept.unregister() is True


def test_registration_as_context_manager(jobs):
    gate, started = threading.Event(), threading.Event()
    job = jobs.start(gated, gate, started)
    # Once the work runs, the Running change has been delivered: the registration below
    # cannot catch it in delivery (a call already under way may finish after an
    # unregister, as documented), so it must see nothing at all.
    assert started.wait(LONG)
    rec = Recorder()
    with job.on_state_changed(rec) as reg:
        assert isinstance(reg, bgjob.Registration)
    gate.set()
    assert job.wait(timeout=LONG)
    assert rec.calls == []
    assert reg.unregister() is False


def test_on_any_state_changed_sees_all_jobs(jobs):
    lock = threading.Lock()
    seen: dict = {}

    def on_any(job, info, prev):
        with lock:
            seen.setdefault(job.id, []).append((prev.state, info.state))

    reg = bgjob.on_any_state_changed(on_any)
    try:
        assert isinstance(reg, bgjob.Registration)
        a = jobs.start(lambda: 1)
        b = jobs.start(lambda: 2)
        assert bgjob.wait_jobs([a, b], timeout=LONG) == [a, b]
        with lock:
            for job in (a, b):
                assert seen.get(job.id) == [(S.NotStarted, S.Running),
                                            (S.Running, S.Completed)], seen.get(job.id)
    finally:
        assert reg.unregister() is True
    c = jobs.start(lambda: 3)
    assert c.wait(timeout=LONG)
    with lock:
        assert c.id not in seen, "an unregistered global callback was called"


def test_raising_callback_goes_to_unraisablehook_and_spares_the_job(jobs):
    class CallbackBoom(RuntimeError):
        pass

    def bad_callback(job, info, prev):
        raise CallbackBoom(f"callback failed on {info.state.name}")

    after = Recorder()
    with CapturedUnraisable() as hook:
        job = jobs.start(lambda: {"answer": 42}, on_state_changed=bad_callback)
        job.on_state_changed(after)  # later callbacks still run
        assert job.wait(timeout=LONG)
        with hook.lock:
            reports = list(hook.reports)
    assert job.state is S.Completed
    assert job.state_info.reason is None
    assert job.result() == {"answer": 42}
    assert job.receive() == [{"answer": 42}]
    assert reports, "the callback's exception was not reported to sys.unraisablehook"
    assert all(t is CallbackBoom for t, _v, _o in reports)
    assert "callback failed on Completed" in [str(v) for _t, v, _o in reports]
    assert after.transitions()[-1] == (S.Running, S.Completed)


def test_callback_removes_its_own_job(jobs):
    outcome = {}

    def on_change(job, info, prev):
        if info.state is S.Completed:
            try:
                outcome["records"] = job.receive()
                job.remove()
                outcome["removed"] = True
            except BaseException as exc:  # reported below
                outcome["error"] = exc

    job = jobs.start(lambda: "r", on_state_changed=on_change)
    assert job.wait(timeout=LONG)
    assert outcome == {"records": ["r"], "removed": True}
    with pytest.raises(bgjob.NoSuchJobError):
        bgjob.get_job(job.id)


def test_callback_waiting_for_a_later_change_of_its_job_raises(jobs):
    outcome = {}

    def on_change(job, info, prev):
        if info.state is S.Running:
            for label, attempt in (("wait", lambda: job.wait()),
                                   ("wait_timeout", lambda: job.wait(timeout=5)),
                                   ("wait_jobs", lambda: bgjob.wait_jobs([job])),
                                   ("receive", lambda: job.receive(wait=True)),
                                   ("result", lambda: job.result())):
                try:
                    outcome[label] = attempt()
                except BaseException as exc:
                    outcome[label] = exc
            outcome["poll"] = job.wait(timeout=0)
        elif info.state is S.Completed:
            # The state it is told about counts as delivered here: no deadlock, no wait.
            outcome["completed_wait"] = job.wait(timeout=LONG)

    job = jobs.start(lambda: 1, on_state_changed=on_change)
    assert job.wait(timeout=LONG), "the callback hung its job"
    for label in ("wait", "wait_timeout", "wait_jobs", "receive", "result"):
        assert isinstance(outcome.get(label), bgjob.WouldDeadlockError), (label, outcome)
    assert outcome["poll"] is False
    assert outcome["completed_wait"] is True
    assert job.state is S.Completed
    assert job.result() == 1


def test_callback_may_call_the_api(jobs):
    outcome = {}

    def on_change(job, info, prev):
        if info.state is S.Completed:
            outcome["found"] = bgjob.get_job(job.id) == job
            outcome["listed"] = job in bgjob.get_jobs(name=jobs.prefix + "*")
            outcome["result"] = job.result()
            inner = bgjob.start_job(lambda: "inner", name=jobs.name("inner"))
            outcome["inner"] = inner.result(timeout=LONG)

    job = jobs.start(lambda: "outer", on_state_changed=on_change)
    assert job.wait(timeout=LONG)
    assert outcome == {"found": True, "listed": True, "result": "outer", "inner": "inner"}


def test_callbacks_of_one_job_never_overlap(jobs):
    lock = threading.Lock()
    active = [0]
    overlaps = []
    order = []

    def slow(job, info, prev):
        with lock:
            active[0] += 1
            if active[0] > 1:
                overlaps.append(info)
        time.sleep(0.02)  # widens the window in which an overlap would show
        with lock:
            order.append(info.state)
            active[0] -= 1

    started = threading.Event()
    job = jobs.start(cooperative, LONG, started, on_state_changed=slow)
    job.on_state_changed(slow)
    wait_event(started)
    job.stop(timeout=LONG)
    assert overlaps == []
    # Each registered callback gets each change, in the order of the changes.
    assert order[0] is S.Running
    assert order[-2:] == [S.Stopped, S.Stopped]
