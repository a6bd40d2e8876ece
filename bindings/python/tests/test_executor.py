"""bgjob.Executor: a concurrent.futures.Executor whose tasks are bgjob jobs, behaving like
ThreadPoolExecutor."""

from __future__ import annotations

import concurrent.futures as cf
import gc
import textwrap
import threading
import time
import weakref

import pytest

import bgjob
from bgjob import JobState
from _support import (LONG, gated, needs_proc_tasks, os_thread_count, poll_until,
                      run_python, wait_event)


@pytest.fixture
def executor():
    made = []

    def make(max_workers=4):
        ex = bgjob.Executor(max_workers=max_workers)
        made.append(ex)
        return ex

    yield make
    for ex in made:
        ex.shutdown(wait=True, cancel_futures=True)


def test_is_a_concurrent_futures_executor(executor):
    ex = executor()
    assert isinstance(ex, cf.Executor)
    fut = ex.submit(pow, 2, 10)
    assert isinstance(fut, cf.Future)
    assert fut.result(timeout=LONG) == 1024
    assert fut.done() and not fut.cancelled() and not fut.running()
    assert fut.exception() is None


def test_max_workers_must_be_positive():
    for bad in (0, -1):
        with pytest.raises(ValueError) as info:
            bgjob.Executor(max_workers=bad)
        assert str(info.value) == "max_workers must be greater than 0"
        with pytest.raises(ValueError) as std:
            cf.ThreadPoolExecutor(max_workers=bad)
        assert str(info.value) == str(std.value)


def test_submit_after_shutdown_raises(executor):
    ex = executor()
    ex.shutdown()
    with pytest.raises(RuntimeError) as info:
        ex.submit(pow, 2, 2)
    assert str(info.value) == "cannot schedule new futures after shutdown"


def test_kwargs_and_positional_only_fn(executor):
    ex = executor()

    def echo(*args, **kwargs):
        return args, kwargs

    assert ex.submit(echo, 1, 2, a=3).result(timeout=LONG) == ((1, 2), {"a": 3})
    # fn is positional-only: a keyword called fn goes to the function.
    assert ex.submit(echo, fn=1).result(timeout=LONG) == ((), {"fn": 1})


def test_keywords_that_start_job_also_takes_reach_the_function(executor):
    ex = executor()

    def echo(**kwargs):
        return kwargs

    # ThreadPoolExecutor hands every keyword to fn; so must Executor, even those that
    # bgjob.start_job would take for itself.
    sent = {"name": "n", "pool": 1, "on_state_changed": 2}
    assert ex.submit(echo, **sent).result(timeout=LONG) == sent
    assert list(ex.map(lambda name: name, ["x"])) == ["x"]


def test_map_is_ordered(executor):
    ex = executor(4)

    def work(i):
        time.sleep(0.002 * (10 - i % 10))  # later items tend to finish first
        return i * 10

    assert list(ex.map(work, range(30))) == [i * 10 for i in range(30)]
    assert list(ex.map(pow, [2, 3], [5, 2])) == [32, 9]
    assert list(ex.map(work, [])) == []


def test_map_timeout(executor):
    ex = executor(2)
    gate = threading.Event()

    def slow(i):
        gate.wait(LONG)
        return i

    try:
        it = ex.map(slow, [1, 2], timeout=0.2)
        t0 = time.monotonic()
        with pytest.raises(TimeoutError):
            next(it)
        assert 0.15 <= time.monotonic() - t0 < 10
        with pytest.raises(cf.TimeoutError):
            list(ex.map(slow, [3], timeout=0))
    finally:
        gate.set()


def test_map_propagates_exceptions(executor):
    ex = executor()

    def inverse(x):
        return 1 / x

    it = ex.map(inverse, [1, 0, 2])
    assert next(it) == 1.0
    with pytest.raises(ZeroDivisionError):
        next(it)


def test_as_completed(executor):
    ex = executor(4)
    gate = threading.Event()

    def quick(x):
        return x

    def slow(x):
        gate.wait(LONG)
        return x

    blocked = ex.submit(slow, "slow")
    quicks = [ex.submit(quick, i) for i in range(5)]
    got = []
    for fut in cf.as_completed(quicks + [blocked], timeout=LONG):
        got.append(fut.result())
        if len(got) == 5:
            assert set(got) == set(range(5))
            assert not blocked.done()
            gate.set()
    assert got[-1] == "slow"


def test_wait_first_completed(executor):
    ex = executor(2)
    gate = threading.Event()
    slow = ex.submit(gate.wait, LONG)
    fast = ex.submit(lambda: "fast")
    try:
        done, not_done = cf.wait([slow, fast], timeout=LONG, return_when=cf.FIRST_COMPLETED)
        assert done == {fast}
        assert not_done == {slow}
    finally:
        gate.set()
    done, not_done = cf.wait([slow, fast], timeout=LONG)
    assert done == {slow, fast} and not not_done


def test_wait_first_exception(executor):
    ex = executor(2)
    gate = threading.Event()

    def boom():
        raise OSError("boom")

    slow = ex.submit(gate.wait, LONG)
    bad = ex.submit(boom)
    try:
        done, not_done = cf.wait([slow, bad], timeout=LONG, return_when=cf.FIRST_EXCEPTION)
        assert done == {bad} and not_done == {slow}
    finally:
        gate.set()


def test_cancel_queued_work(executor):
    ex = executor(1)
    gate = threading.Event()
    started = threading.Event()
    ran = threading.Event()

    def unique_task_for_cancel_test():
        ran.set()

    pattern = "*unique_task_for_cancel_test"
    first = ex.submit(gated, gate, started, "blocker")
    wait_event(started)
    queued = ex.submit(unique_task_for_cancel_test)
    [job] = bgjob.get_jobs(command=pattern)
    assert job.state is JobState.NotStarted
    assert first.running()
    assert not queued.running() and not queued.done()
    assert first.cancel() is False, "running work cannot be cancelled"
    assert queued.cancel() is True
    assert queued.cancelled() and queued.done()
    # Its job is stopped (it never runs) and, delivered as cancelled, leaves the
    # repository as every delivered task's job does: nothing is left behind for ever.
    poll_until(lambda: job.state.is_finished, what="the cancelled job to finish")
    assert job.state is JobState.Stopped
    poll_until(lambda: bgjob.get_jobs(command=pattern) == [],
               what="the cancelled job to leave the repository")
    assert queued.cancel() is True  # cancelling again still says cancelled
    with pytest.raises(cf.CancelledError):
        queued.result(timeout=0)
    gate.set()
    assert first.result(timeout=LONG) == "blocker"
    after = ex.submit(lambda: "after")  # FIFO: runs after the cancelled one's turn
    assert after.result(timeout=LONG) == "after"
    ex.shutdown(wait=True)
    assert not ran.is_set(), "a cancelled future's function ran"
    done, _ = cf.wait([queued], timeout=LONG)
    assert done == {queued}


def test_shutdown_waits_for_running_work(executor):
    ex = executor(2)
    started = threading.Event()
    finished = threading.Event()

    def work():
        started.set()
        time.sleep(0.3)
        finished.set()
        return 1

    fut = ex.submit(work)
    wait_event(started)
    ex.shutdown(wait=True)
    assert finished.is_set()
    assert fut.done() and fut.result(timeout=0) == 1


def test_shutdown_cancel_futures(executor):
    ex = executor(1)
    gate = threading.Event()
    started = threading.Event()
    ran = []

    first = ex.submit(gated, gate, started, "blocker")
    wait_event(started)
    queued = [ex.submit(ran.append, i) for i in range(3)]
    ex.shutdown(wait=False, cancel_futures=True)
    assert all(f.cancelled() for f in queued)
    assert not first.cancelled()
    gate.set()
    assert first.result(timeout=LONG) == "blocker"
    ex.shutdown(wait=True)
    assert ran == []


def test_tasks_are_jobs_while_they_exist(executor):
    ex = executor(1)
    gate = threading.Event()
    started = threading.Event()

    def unique_task_for_visibility_test(i):
        if i == 0:
            started.set()
            gate.wait(LONG)
        return i

    pattern = "*unique_task_for_visibility_test"
    futures = [ex.submit(unique_task_for_visibility_test, i) for i in range(3)]
    wait_event(started)
    try:
        listed = bgjob.get_jobs(command=pattern)
        assert len(listed) == 3
        assert [j.state for j in listed] == [JobState.Running, JobState.NotStarted,
                                             JobState.NotStarted]
        assert all(j.type_name == "ThreadJob" for j in listed)
    finally:
        gate.set()
    assert [f.result(timeout=LONG) for f in futures] == [0, 1, 2]
    ex.shutdown(wait=True)
    assert bgjob.get_jobs(command=pattern) == [], "delivered tasks must leave the repository"


def test_exceptions_propagate(executor):
    ex = executor()
    raised = []

    def work():
        exc = KeyError("k")
        raised.append(exc)
        raise exc

    fut = ex.submit(work)
    with pytest.raises(KeyError) as info:
        fut.result(timeout=LONG)
    assert info.value is raised[0]
    assert fut.exception(timeout=0) is raised[0]
    assert not fut.cancelled()


def test_add_done_callback(executor):
    ex = executor()
    called = threading.Event()
    seen = []

    def cb(fut):
        seen.append(fut)
        called.set()

    fut = ex.submit(lambda: 1)
    fut.add_done_callback(cb)
    wait_event(called)
    assert seen == [fut]
    late = []
    fut.add_done_callback(late.append)  # already done: called at once
    assert late == [fut]


def test_context_manager_waits(executor):
    finished = threading.Event()

    def work():
        time.sleep(0.3)
        finished.set()
        return "ok"

    with bgjob.Executor(max_workers=2) as ex:
        fut = ex.submit(work)
    assert finished.is_set()
    assert fut.result(timeout=0) == "ok"
    with pytest.raises(RuntimeError):
        ex.submit(work)


def _freed(ref: "weakref.ref[object]") -> bool:
    gc.collect()
    return ref() is None


def test_references_are_dropped_once_delivered(executor):
    ex = executor(1)

    class Arg:
        pass

    class Result:
        pass

    results = []

    class Work:
        """A callable that only the executor holds once submitted."""

        def __call__(self, a):
            r = Result()
            results.append(weakref.ref(r))
            return r

    arg = Arg()
    work = Work()
    refs = {"argument": weakref.ref(arg), "callable": weakref.ref(work)}
    fut = ex.submit(work, arg)
    del arg, work
    assert isinstance(fut.result(timeout=LONG), Result)
    refs["result"] = results[0]
    del fut
    # While the executor is still open, as with ThreadPoolExecutor: nothing of a call
    # outlives its delivery (the worker lets go of it just after, hence the poll).
    for what, ref in refs.items():
        poll_until(lambda: _freed(ref), what=f"the executor to let go of the {what}")
    assert ex.submit(pow, 2, 3).result(timeout=LONG) == 8  # still open


@needs_proc_tasks
def test_shutdown_without_wait_frees_the_threads_once_the_work_is_done():
    start = os_thread_count()
    ex = bgjob.Executor(max_workers=2)
    gate = threading.Event()
    started = threading.Barrier(3)

    def work(i):
        if i < 2:
            started.wait(LONG)  # both workers busy: the others are queued at shutdown
        assert gate.wait(LONG)
        return i, bgjob.current_job().stop_requested

    try:
        futures = [ex.submit(work, i) for i in range(8)]
        started.wait(LONG)
        ex.shutdown(wait=False)
        assert os_thread_count() >= start + 2, "the workers left with work to do"
        assert not any(f.done() for f in futures)
        gate.set()
        # Everything submitted before runs and delivers, and nothing was asked to stop,
        # as with ThreadPoolExecutor.
        assert [f.result(timeout=LONG) for f in futures] == [(i, False) for i in range(8)]
        poll_until(lambda: os_thread_count() <= start, what="the executor's threads to exit")
    finally:
        gate.set()
        ex.shutdown(wait=True)


@needs_proc_tasks
def test_shutdown_without_wait_of_an_idle_executor_frees_its_threads():
    start = os_thread_count()
    ex = bgjob.Executor(max_workers=3)
    assert ex.submit(pow, 2, 5).result(timeout=LONG) == 32
    ex.shutdown(wait=False)
    poll_until(lambda: os_thread_count() <= start, what="the executor's threads to exit")
    with pytest.raises(RuntimeError, match="after shutdown"):
        ex.submit(pow, 2, 2)


@needs_proc_tasks
def test_a_collected_executor_frees_its_threads():
    start = os_thread_count()
    ex = bgjob.Executor(max_workers=4)
    ref = weakref.ref(ex)
    del ex
    gc.collect()
    assert ref() is None
    poll_until(lambda: os_thread_count() <= start, what="an unused executor's threads to exit")

    ex = bgjob.Executor(max_workers=4)
    ref = weakref.ref(ex)
    futures = [ex.submit(pow, 3, i) for i in range(20)]
    assert [f.result(timeout=LONG) for f in futures] == [3 ** i for i in range(20)]
    del ex
    # The workers let go of the executor just after the last delivery, hence the polls.
    poll_until(lambda: _freed(ref), what="the used executor to be collected")
    poll_until(lambda: os_thread_count() <= start, what="a used executor's threads to exit")


@needs_proc_tasks
def test_an_executor_dropped_with_work_pending_runs_it_then_frees_its_threads():
    start = os_thread_count()
    ex = bgjob.Executor(max_workers=2)
    ref = weakref.ref(ex)
    gate = threading.Event()

    def work(i):
        assert gate.wait(LONG)
        return i, bgjob.current_job().stop_requested

    futures = [ex.submit(work, i) for i in range(6)]
    del ex
    gc.collect()
    try:
        assert ref() is not None, "the work pending keeps the executor"
    finally:
        gate.set()
    assert [f.result(timeout=LONG) for f in futures] == [(i, False) for i in range(6)]
    poll_until(lambda: _freed(ref), what="the executor to be collected")
    poll_until(lambda: os_thread_count() <= start, what="the executor's threads to exit")


def test_many_submits(executor):
    ex = executor(4)
    futs = [ex.submit(pow, i, 2) for i in range(500)]
    assert [f.result(timeout=LONG) for f in futs] == [i * i for i in range(500)]


def test_running_work_finishes_at_interpreter_exit():
    code = textwrap.dedent("""
        import time, bgjob
        ex = bgjob.Executor(max_workers=2)
        def work():
            time.sleep(0.3)
            print("work finished", flush=True)
        ex.submit(work)
        print("exiting", flush=True)
    """)
    proc = run_python(code, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["exiting", "work", "finished"], proc.stdout
    assert "Traceback" not in proc.stderr and "Fatal" not in proc.stderr, proc.stderr


def test_submit_during_interpreter_exit_raises():
    # ThreadPoolExecutor's message depends on whether the executor ran work (its threads
    # mark it shut down at exit; an unused one has none): each of ours against its twin.
    code = textwrap.dedent("""
        import atexit, concurrent.futures as cf, bgjob
        executors = {}
        for kind in ("used", "unused"):
            executors[kind] = {"bgjob": bgjob.Executor(max_workers=1),
                               "std": cf.ThreadPoolExecutor(max_workers=1)}
        for ex in executors["used"].values():
            ex.submit(int).result()
        def late_submit():
            for kind, pair in executors.items():
                for who, ex in pair.items():
                    try:
                        ex.submit(int)
                    except RuntimeError as exc:
                        print(f"{kind}|{who}|RuntimeError: {exc}", flush=True)
                    else:
                        print(f"{kind}|{who}|accepted", flush=True)
        atexit.register(late_submit)
    """)
    proc = run_python(code, timeout=60)
    assert proc.returncode == 0, proc.stderr
    said = {}
    for line in proc.stdout.splitlines():
        kind, who, what = line.split("|", 2)
        said[kind, who] = what
    assert len(said) == 4, proc.stdout
    for kind in ("used", "unused"):
        assert said[kind, "bgjob"].startswith(
            "RuntimeError: cannot schedule new futures after"), proc.stdout
        assert said[kind, "bgjob"] == said[kind, "std"], proc.stdout


def test_works_in_a_child_after_fork():
    code = textwrap.dedent("""
        import os, sys, warnings, bgjob
        # Forking with bgjob's threads running is the point here: Python 3.12+ warns about
        # any fork of a threaded process, an error under -W error.
        warnings.filterwarnings("ignore", "This process .* is multi-threaded",
                                DeprecationWarning)
        ex = bgjob.Executor(max_workers=2)
        assert ex.submit(pow, 2, 3).result(timeout=30) == 8
        job = bgjob.start_job(lambda: "parent")
        assert job.result(timeout=30) == "parent"
        pid = os.fork()
        if pid == 0:
            try:
                ok = bgjob.start_job(lambda: "child").result(timeout=30) == "child"
                ex2 = bgjob.Executor(max_workers=2)
                ok = ok and ex2.submit(pow, 3, 2).result(timeout=30) == 9
                ex2.shutdown()
            except BaseException as exc:
                print("child failed:", repr(exc), flush=True)
                ok = False
            os._exit(0 if ok else 1)
        _, status = os.waitpid(pid, 0)
        print("child status", os.waitstatus_to_exitcode(status), flush=True)
        ex.shutdown()
    """)
    proc = run_python(code, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "child status 0" in proc.stdout, (proc.stdout, proc.stderr)
