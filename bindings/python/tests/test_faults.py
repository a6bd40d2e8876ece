"""The fault matrix of issue 8, from Python: an ``Exception`` and each kind of
``BaseException`` (``SystemExit``, ``KeyboardInterrupt``, ``GeneratorExit`` and a custom
``BaseException`` subclass) raised in each place Python code runs for bgjob — the work (on a
pool thread, inline, in a parallel child, as an ``Executor`` task), a state-change callback
(on a worker thread, on the main thread, a custom job's stop handler), the "conversion" of
the objects bgjob is handed (records, inputs, return values, reasons, progress numbers,
names) and a finalizer (``__del__`` of every kind of object bgjob holds).

Every cell must end in a defined state — never a hang, never a crash — and leave the
library usable: each cell starts and finishes another job afterwards. Each one returns what
it observed (the final state and reason, the callback sequences the other callbacks saw,
the records, how many times each finalizer ran, what surfaced in the caller, the
``sys.unraisablehook`` reports, what is left in the repository) and the test compares it to
the expected outcome as a whole.

Cells with an ``Exception`` run in this process. Cells with a ``BaseException`` run in a
child interpreter (``sys.executable``, warnings as errors), so that a crash or a stray
``KeyboardInterrupt`` fails the test instead of ending the run; the child imports this very
module and prints its observations as JSON.

What the package documents, and what it does not (flagged in the tests below):

- ``start_job``: "an exception fails the job with it as reason (``result()`` re-raises
  it)". Any ``BaseException`` does, on a pool thread; nothing reaches the main thread.
- ``run_job``: "a ``KeyboardInterrupt`` or ``SystemExit`` it raises fails the job and is
  then raised again from ``run_job``". Undocumented: ``GeneratorExit`` and any other
  ``BaseException`` that is not an ``Exception`` are raised again too.
- callbacks: "an exception goes to ``sys.unraisablehook``, never into the job". Undocumented
  (only in code comments and ``test_interrupt.py``): a ``KeyboardInterrupt`` from a callback
  running on the main thread is handed back to the signal machinery and surfaces in the
  caller as Ctrl-C would; a ``SystemExit`` there does not end the program (it is reported).
- ``create_custom_job(on_stop=...)``: "its exception goes to ``sys.unraisablehook``" — but a
  ``KeyboardInterrupt`` from it, on the main thread, surfaces in the caller of ``stop()``.
- That ``KeyboardInterrupt`` is handed back only once the call that made the change
  returns, so every other callback of the change still runs (DESIGN: each callback is
  called exactly once per change); handed back at once, the next callback got it on entry.
"""

from __future__ import annotations

# ----- the cells --------------------------------------------------------------------------
# Everything down to CELLS_END also runs, on its own, in child interpreters (`observe`):
# it imports neither pytest nor _support, which would cost a child most of its time.

import gc
import json
import os
import sys
import threading
import time
from typing import Any, Callable, Dict, List, Optional

import bgjob
from bgjob import JobState

# Generous bounds: limits for "it did not hang", never expected durations.
LONG = 30.0


class CustomBaseException(BaseException):
    """A BaseException of the program's own (not an Exception)."""


#: The kinds of exception of the matrix, by name. ``Exception`` stands for every ordinary
#: exception (a ``ValueError``).
KINDS: Dict[str, type] = {
    "Exception": ValueError,
    "SystemExit": SystemExit,
    "KeyboardInterrupt": KeyboardInterrupt,
    "GeneratorExit": GeneratorExit,
    "CustomBaseException": CustomBaseException,
}
KIND_NAMES = list(KINDS)
BASE_ONLY = [k for k in KIND_NAMES if k != "Exception"]

CHILD_TIMEOUT = 90.0

S = JobState


# ===== observing ==============================================================================

_prefix_counter = [0]


def new_prefix(tag: str) -> str:
    """A unique job-name prefix (letters, digits and dashes only: no wildcard)."""
    _prefix_counter[0] += 1
    return f"faults{os.getpid()}x{_prefix_counter[0]}-{tag}"


def names(transitions: List[Any]) -> List[List[str]]:
    return [[prev.name, new.name] for prev, new in transitions]


class AnyRecorder:
    """A repository-wide callback recording the changes of the jobs named ``prefix*``: it
    runs after each job's own callbacks, so it sees whether they disturbed the change."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.lock = threading.Lock()
        self.calls: List[Any] = []
        self.registration = bgjob.on_any_state_changed(self)

    def __call__(self, job: Any, info: Any, prev: Any) -> None:
        if job.name.startswith(self.prefix):
            with self.lock:
                self.calls.append((job.id, prev.state, info.state))

    def of(self, job: Any) -> List[List[str]]:
        with self.lock:
            return [[p.name, n.name] for (i, p, n) in self.calls if i == job.id]

    def close(self) -> None:
        self.registration.unregister()


class Unraisables:
    """Captures ``sys.unraisablehook`` reports (where bgjob sends a callback's exception,
    and the interpreter a finalizer's) for the duration of a cell, as (exception type
    name, message) pairs. Under pytest its own hook would turn each into a warning, an
    error under filterwarnings."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.reports: List[List[str]] = []

    def __call__(self, unraisable: Any) -> None:
        with self.lock:
            self.reports.append([unraisable.exc_type.__name__, str(unraisable.exc_value)])

    def __enter__(self) -> "Unraisables":
        self.saved = sys.unraisablehook
        sys.unraisablehook = self
        return self

    def __exit__(self, *exc: Any) -> None:
        sys.unraisablehook = self.saved

    def summary(self) -> List[List[str]]:
        with self.lock:
            return [list(r) for r in self.reports]


class Recorder:
    """A state-change callback recording (previous, new) states (thread-safe)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.calls: List[Any] = []

    def __call__(self, job: Any, info: Any, prev: Any) -> None:
        with self.lock:
            self.calls.append((prev.state, info.state))

    def transitions(self) -> List[Any]:
        with self.lock:
            return list(self.calls)


def poll_until(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    """A bounded poll of getters."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.002)


class Counter:
    """Counts finalizations per tag (thread-safe)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.counts: Dict[str, int] = {}

    def bump(self, tag: str) -> None:
        with self.lock:
            self.counts[tag] = self.counts.get(tag, 0) + 1

    def get(self, tag: str) -> int:
        with self.lock:
            return self.counts.get(tag, 0)

    def snapshot(self) -> Dict[str, int]:
        with self.lock:
            return dict(self.counts)


class Tracked:
    """An object whose finalizer only counts (to see bgjob let go of it exactly once)."""

    def __init__(self, counter: Counter, tag: str) -> None:
        self.counter = counter
        self.tag = tag

    def __del__(self) -> None:
        self.counter.bump(self.tag)


def ctx() -> bgjob.JobContext:
    """The running work's context (the work calls this)."""
    context = bgjob.current_job()
    assert context is not None, "not inside a job's work"
    return context


def raiser(exc_type: type, message: str) -> Callable[..., Any]:
    def raise_it(*_args: Any, **_kwargs: Any) -> Any:
        raise exc_type(message)
    return raise_it


def settle() -> None:
    """Gives a pending interrupt (a KeyboardInterrupt handed back to the signal machinery)
    the chance to arrive: it is raised at the latest in here."""
    for _ in range(10):
        time.sleep(0.002)


def step(call: Callable[[], Any]) -> Optional[List[str]]:
    """Calls ``call``, then ``settle()``; returns what surfaced (``[type, message]``) or
    None."""
    try:
        call()
        settle()
        return None
    except BaseException as exc:  # noqa: B036 - the matrix is about every BaseException
        return [type(exc).__name__, str(exc)]


def eventually(predicate: Callable[[], bool], timeout: float = LONG) -> bool:
    """A bounded poll; each round calls into bgjob (which lets Python objects that bgjob
    released without the interpreter go) and collects garbage."""
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return True
        if time.monotonic() >= deadline:
            return False
        bgjob.get_jobs(name="no job is named like this")
        gc.collect()
        time.sleep(0.002)


def usable(prefix: str) -> bool:
    """The library is still usable: a new job starts, completes and is removed."""
    job = bgjob.start_job(lambda: "still usable", name=prefix + "-after")
    ok = job.result(timeout=LONG) == "still usable" and job.state is S.Completed
    job.remove()
    return ok


def leftovers(prefix: str) -> List[str]:
    """The jobs named ``prefix*`` still in the repository (then removes them)."""
    left = bgjob.get_jobs(name=prefix + "*", include_children=True)
    found = sorted(j.name for j in left)
    for j in left:
        if j.parent is None:
            try:
                j.remove(force=True)
            except bgjob.JobError:
                pass
    return found


def exc_summary(exc: BaseException) -> List[str]:
    return [type(exc).__name__, str(exc)]


class BusyPool:
    """A one-thread pool whose worker is held, so that the next job queues."""

    def __init__(self, prefix: str) -> None:
        self.pool = bgjob.Pool(threads=1, throttle=1)
        self.gate = threading.Event()
        started = threading.Event()

        def hold() -> None:
            started.set()
            context = ctx()
            deadline = time.monotonic() + LONG
            while not self.gate.wait(0.005):
                if context.stop_requested or time.monotonic() > deadline:
                    return

        self.blocker = bgjob.start_job(hold, name=prefix + "-blocker", pool=self.pool)
        assert started.wait(LONG), "the blocker never ran"

    def release(self) -> None:
        self.gate.set()
        self.blocker.wait(timeout=LONG)
        self.blocker.remove()

    def close(self) -> None:
        self.pool.shutdown(timeout=LONG)


# ===== the cells ==============================================================================
# Each takes the exception type to raise and returns a JSON-serializable dict.


def cell_work_pool(exc_type: type) -> Dict[str, Any]:
    """The work, on a pool thread, writes records and raises."""
    prefix = new_prefix("work-pool")
    obs: Dict[str, Any] = {}
    counter = Counter()
    with Unraisables() as ur:
        anyrec = AnyRecorder(prefix)
        rec = Recorder()

        def work(_arg: Any) -> None:
            context = ctx()
            context.write_output("before")
            context.write_error("a non-terminating error")
            raise exc_type("boom")

        def main() -> None:
            job = bgjob.start_job(work, Tracked(counter, "args"), name=prefix + "-job",
                                  on_state_changed=rec)
            obs["waited"] = job.wait(timeout=LONG)
            obs["state"] = [job.state.name, job.state_info.reason]
            obs["callback"] = names(rec.transitions())
            obs["any"] = anyrec.of(job)
            obs["records"] = [repr(r) for r in job.receive()]
            try:
                job.result(timeout=0)
                obs["result"] = "returned"
            except BaseException as exc:  # noqa: B036
                obs["result"] = exc_summary(exc)
            job.remove()

        obs["surfaced"] = step(main)
        # The exception kept for result() holds the work's frame, and so its argument,
        # until the removal.
        obs["args_finalized"] = eventually(lambda: counter.get("args") == 1) and counter.get("args")
        obs["usable"] = usable(prefix)
        anyrec.close()
        obs["left"] = leftovers(prefix)
    obs["unraisable"] = ur.summary()
    return obs


def cell_work_inline(exc_type: type) -> Dict[str, Any]:
    """The work of an inline run (``run_job``, on this thread) writes and raises."""
    prefix = new_prefix("work-inline")
    obs: Dict[str, Any] = {}
    with Unraisables() as ur:
        anyrec = AnyRecorder(prefix)
        rec = Recorder()

        def work() -> None:
            ctx().write_output("before")
            raise exc_type("boom")

        obs["surfaced"] = step(lambda: bgjob.run_job(work, name=prefix + "-job",
                                                     on_state_changed=rec))
        job = bgjob.get_job(name=prefix + "-job")
        obs["state"] = [job.state.name, job.state_info.reason]
        obs["callback"] = names(rec.transitions())
        obs["any"] = anyrec.of(job)
        obs["records"] = [repr(r) for r in job.receive()]
        job.remove()
        obs["usable"] = usable(prefix)
        anyrec.close()
        obs["left"] = leftovers(prefix)
    obs["unraisable"] = ur.summary()
    return obs


def cell_work_parallel(exc_type: type) -> Dict[str, Any]:
    """One child of a parallel job raises; the others return their input."""
    prefix = new_prefix("work-parallel")
    obs: Dict[str, Any] = {}
    with Unraisables() as ur:
        rec = Recorder()

        def work(item: str) -> str:
            if item == "bad":
                raise exc_type("boom")
            return item

        def main() -> None:
            parent = bgjob.start_parallel_job(work, ["a", "bad", "c"], name=prefix + "-job",
                                              throttle_limit=1, on_state_changed=rec)
            obs["waited"] = parent.wait(timeout=LONG)
            obs["state"] = [parent.state.name, parent.state_info.reason]
            obs["children"] = [[c.state.name, c.state_info.reason] for c in parent.children]
            obs["callback"] = names(rec.transitions())
            obs["records"] = parent.receive()
            parent.remove()

        obs["surfaced"] = step(main)
        obs["usable"] = usable(prefix)
        obs["left"] = leftovers(prefix)
    obs["unraisable"] = ur.summary()
    return obs


def cell_executor_task(exc_type: type) -> Dict[str, Any]:
    """A ``bgjob.Executor`` task raises; the executor runs the next task."""
    prefix = new_prefix("executor")
    obs: Dict[str, Any] = {}
    with Unraisables() as ur:
        def main() -> None:
            with bgjob.Executor(max_workers=1) as ex:
                failed = ex.submit(raiser(exc_type, "boom"))
                exc = failed.exception(timeout=LONG)
                obs["exception"] = None if exc is None else exc_summary(exc)
                obs["next"] = ex.submit(lambda: 6 * 7).result(timeout=LONG)

        obs["surfaced"] = step(main)
        obs["usable"] = usable(prefix)
        obs["left"] = leftovers(prefix)
    obs["unraisable"] = ur.summary()
    return obs


def cell_callback_worker(exc_type: type) -> Dict[str, Any]:
    """The job's first callback raises on every change; its changes run on a worker."""
    prefix = new_prefix("cb-worker")
    obs: Dict[str, Any] = {}
    with Unraisables() as ur:
        anyrec = AnyRecorder(prefix)
        rec = Recorder()
        seen: List[str] = []

        def bad(_job: Any, info: Any, _prev: Any) -> None:
            seen.append(info.state.name)
            raise exc_type("callback on " + info.state.name)

        def work() -> str:
            ctx().write_output("written")
            return "done"

        def main() -> None:
            busy = BusyPool(prefix)
            job = bgjob.start_job(work, name=prefix + "-job", pool=busy.pool,
                                  on_state_changed=bad)
            job.on_state_changed(rec)  # registered second, before the job runs
            busy.release()
            obs["waited"] = job.wait(timeout=LONG)
            obs["state"] = [job.state.name, job.state_info.reason]
            obs["bad_called"] = list(seen)
            obs["callback"] = names(rec.transitions())
            obs["any"] = anyrec.of(job)
            obs["records"] = job.receive()
            obs["result"] = job.result(timeout=0)
            job.remove()
            busy.close()

        obs["surfaced"] = step(main)
        obs["usable"] = usable(prefix)
        anyrec.close()
        obs["left"] = leftovers(prefix)
    obs["unraisable"] = ur.summary()
    return obs


def cell_callback_main(exc_type: type, via: str) -> Dict[str, Any]:
    """The job's first callback raises (once, on the first change it sees) while the main
    thread makes the change: a stop of a queued job, a custom job's set_state, or an
    inline run."""
    prefix = new_prefix("cb-main-" + via)
    obs: Dict[str, Any] = {}
    with Unraisables() as ur:
        anyrec = AnyRecorder(prefix)
        rec = Recorder()
        seen: List[str] = []
        main_thread = threading.get_ident()
        threads: List[bool] = []

        def bad(_job: Any, info: Any, _prev: Any) -> None:
            seen.append(info.state.name)
            threads.append(threading.get_ident() == main_thread)
            if len(seen) == 1:
                raise exc_type("callback on " + info.state.name)

        surfaced: List[Any] = []
        job: Any = None
        if via == "stop":
            busy = BusyPool(prefix)
            job = bgjob.start_job(lambda: "never runs", name=prefix + "-job", pool=busy.pool,
                                  on_state_changed=bad)
            job.on_state_changed(rec)
            surfaced.append(step(lambda: job.stop(timeout=LONG)))
            busy.release()
            busy.close()
        elif via == "set_state":
            job = bgjob.create_custom_job(name=prefix + "-job", on_state_changed=bad)
            job.on_state_changed(rec)
            surfaced.append(step(lambda: job.set_state(S.Running)))
            surfaced.append(step(lambda: job.write_output("written")))
            surfaced.append(step(lambda: job.set_state(S.Completed)))
        elif via == "run_job":
            def work() -> str:
                ctx().write_output("written")
                return "done"

            surfaced.append(step(lambda: bgjob.run_job(work, name=prefix + "-job",
                                                       on_state_changed=bad)))
            job = bgjob.get_job(name=prefix + "-job")
        else:
            raise AssertionError(via)
        obs["surfaced"] = [s for s in surfaced if s is not None]
        obs["waited"] = job.wait(timeout=LONG)
        obs["state"] = [job.state.name, job.state_info.reason]
        obs["bad_called"] = list(seen)
        obs["bad_on_main_thread"] = all(threads)
        if via != "run_job":
            obs["callback"] = names(rec.transitions())
        obs["any"] = anyrec.of(job)
        obs["records"] = job.receive()
        job.remove()
        obs["usable"] = usable(prefix)
        anyrec.close()
        obs["left"] = leftovers(prefix)
    obs["unraisable"] = ur.summary()
    return obs


def cell_on_stop(exc_type: type) -> Dict[str, Any]:
    """A custom job's stop handler raises; the host then ends the job itself."""
    prefix = new_prefix("on-stop")
    obs: Dict[str, Any] = {}
    with Unraisables() as ur:
        rec = Recorder()
        calls: List[int] = []

        def on_stop(job: Any) -> None:
            calls.append(job.id)
            raise exc_type("stop handler")

        job = bgjob.create_custom_job(name=prefix + "-job", on_stop=on_stop,
                                      on_state_changed=rec)
        job.set_state(S.Running)
        obs["surfaced"] = step(lambda: job.stop(timeout=0.3))
        obs["after_stop"] = job.state.name
        obs["handler_calls"] = len(calls)
        job.set_state(S.Stopped)
        obs["state"] = [job.state.name, job.state_info.reason]
        obs["callback"] = names(rec.transitions())
        job.remove()
        obs["usable"] = usable(prefix)
        obs["left"] = leftovers(prefix)
    obs["unraisable"] = ur.summary()
    return obs


class Evil:
    """An object every conversion of which raises: bgjob must call none of them."""

    called: List[str] = []
    exc_type: type = ValueError


def _evil_method(what: str) -> Callable[..., Any]:
    def method(self: Evil, *args: Any) -> Any:
        Evil.called.append(what)
        raise Evil.exc_type(what)

    return method


# Every conversion and protocol a binding might reach for, each recording its name and
# raising (set on the class: Python looks special methods up there).
for _what in ("repr", "str", "format", "eq", "ne", "hash", "bool", "len", "iter", "index",
              "int", "float", "getstate", "reduce_ex", "copy", "deepcopy"):
    setattr(Evil, f"__{_what}__", _evil_method(_what))


def cell_records_evil(exc_type: type) -> Dict[str, Any]:
    """Objects whose every conversion raises, handed to bgjob as records (every stream, a
    custom job's too), as the return value, as input sent to a Blocked job and as a
    parallel child's input: bgjob keeps them as they are and calls nothing on them."""
    prefix = new_prefix("records")
    obs: Dict[str, Any] = {}
    Evil.called = []
    Evil.exc_type = exc_type
    with Unraisables() as ur:
        objs = [Evil() for _ in range(10)]

        def work() -> Any:
            context = ctx()
            context.write_output(objs[0])
            context.write_error(objs[1])
            context.write_warning(objs[2])
            context.write_verbose(objs[3])
            context.write_debug(objs[4])
            context.write_information(objs[5])
            got = context.read_input("an object, please")
            context.write_output(got)
            return objs[6]

        def main() -> None:
            job = bgjob.start_job(work, name=prefix + "-job")
            poll_until(lambda: job.state is S.Blocked, LONG, "Blocked")
            job.send_input(objs[7])
            obs["waited"] = job.wait(timeout=LONG)
            obs["state"] = [job.state.name, job.state_info.reason]
            kept = job.receive(keep=True, as_records=True)
            got = job.receive()
            obs["count"] = [len(kept), len(got)]
            wanted = [objs[0], objs[1], objs[2], objs[3], objs[4], objs[5], objs[7], objs[6]]
            obs["same_objects"] = (
                all(r.value is o for r, o in zip(kept, wanted))
                and got[0] is objs[0] and all(r.value is o for r, o in zip(got[1:6], wanted[1:6]))
                and got[6] is objs[7] and got[7] is objs[6])
            obs["record_types"] = [type(r).__name__ for r in got[1:6]]
            obs["result_is_the_object"] = job.result(timeout=0) is objs[6]
            job.remove()

            parent = bgjob.start_parallel_job(lambda item: item, [objs[8]],
                                              name=prefix + "-parallel")
            parent.wait(timeout=LONG)
            child = parent.children[0]
            obs["parallel"] = [parent.state.name, child.result(timeout=0) is objs[8],
                               parent.receive()[0] is objs[8]]
            parent.remove()

            custom = bgjob.create_custom_job(name=prefix + "-custom")
            custom.set_state(S.Running)
            custom.write_output(objs[9])
            custom.set_state(S.Completed)
            obs["custom"] = [custom.state.name, custom.receive()[0] is objs[9]]
            custom.remove()

        obs["surfaced"] = step(main)
        obs["called"] = list(Evil.called)
        obs["usable"] = usable(prefix)
        obs["left"] = leftovers(prefix)
    obs["unraisable"] = ur.summary()
    return obs


def cell_conversions_that_raise(exc_type: type) -> Dict[str, Any]:
    """The conversions bgjob does make, each raising: the reason text of the work's
    exception (its ``__str__``), a progress percentage (``__index__``), the parallel
    inputs (the iterator), a custom job's children names (the iterator) and the callable's
    name (``__qualname__``, ``__name__``, ``__repr__``)."""
    prefix = new_prefix("convert")
    obs: Dict[str, Any] = {}
    counter = Counter()
    with Unraisables() as ur:
        # The reason: str() of the exception raises; the reason is then its type's name.
        bad_str = type("BadStr" + exc_type.__name__, (exc_type,),
                       {"__str__": lambda self: raiser(exc_type, "str of the exception")()})

        def work_bad_str() -> None:
            ctx().write_output("before")
            raise bad_str("boom")

        def reason() -> None:
            job = bgjob.start_job(work_bad_str, name=prefix + "-reason")
            job.wait(timeout=LONG)
            obs["reason"] = [job.state.name, job.state_info.reason, job.receive()]
            try:
                job.result(timeout=0)
                obs["reason_result"] = "returned"
            except BaseException as exc:  # noqa: B036
                obs["reason_result"] = type(exc).__name__
            job.remove()

        obs["reason_surfaced"] = step(reason)

        # A progress percentage whose __index__ raises: raised in the work, failing it.
        class BadIndex:
            def __index__(self) -> int:
                raise exc_type("index")

        def work_progress() -> None:
            context = ctx()
            context.write_output("before")
            context.write_progress(BadIndex(), "activity", "status")  # type: ignore[arg-type]

        def progress() -> None:
            job = bgjob.start_job(work_progress, name=prefix + "-progress")
            job.wait(timeout=LONG)
            obs["progress"] = [job.state.name, job.state_info.reason, job.receive(),
                               job.progress is None]
            job.remove()

        obs["progress_surfaced"] = step(progress)

        # Parallel inputs from an iterator that raises: the start raises, nothing starts.
        def inputs() -> Any:
            yield Tracked(counter, "input")
            raise exc_type("iterator")

        def parallel() -> None:
            bgjob.start_parallel_job(lambda item: item, inputs(), name=prefix + "-parallel")

        obs["parallel_surfaced"] = step(parallel)
        obs["parallel_jobs"] = [j.name for j in bgjob.get_jobs(name=prefix + "-parallel*",
                                                               include_children=True)]
        obs["parallel_input_finalized"] = (eventually(lambda: counter.get("input") == 1)
                                           and counter.get("input"))

        # A custom job's children names from an iterator that raises: nothing is made.
        def children() -> Any:
            yield "first"
            raise exc_type("children")

        obs["custom_surfaced"] = step(lambda: bgjob.create_custom_job(
            name=prefix + "-custom", children=children()))
        obs["custom_jobs"] = [j.name for j in bgjob.get_jobs(name=prefix + "-custom*",
                                                             include_children=True)]

        # A callable whose name and repr raise: it runs, shown with an empty command.
        class Nameless:
            def __getattr__(self, name: str) -> Any:
                raise exc_type(name)

            def __repr__(self) -> str:
                raise exc_type("repr")

            def __call__(self) -> int:
                return 7

        def nameless() -> None:
            job = bgjob.start_job(Nameless(), name=prefix + "-nameless")
            obs["nameless"] = [job.command, job.result(timeout=LONG), job.state.name]
            job.remove()

        obs["nameless_surfaced"] = step(nameless)
        obs["usable"] = usable(prefix)
        obs["left"] = leftovers(prefix)
    obs["unraisable"] = ur.summary()
    return obs


def cell_finalizers(exc_type: type) -> Dict[str, Any]:
    """``__del__`` raises in every kind of object bgjob holds and lets go of: a job's
    arguments (after its work ran, on the worker), a queued job's arguments (stopped from
    this thread), a record, a return value, a callback (at removal, and at unregister), a
    parallel child's input, a custom job's stop handler."""
    prefix = new_prefix("finalizers")
    obs: Dict[str, Any] = {}
    counter = Counter()

    class Doomed:
        def __init__(self, tag: str) -> None:
            self.tag = tag

        def __del__(self) -> None:
            counter.bump(self.tag)
            raise exc_type("del " + self.tag)

    class DoomedCallback(Doomed):
        def __call__(self, *args: Any) -> None:
            pass

    tags = ["args", "queued-args", "record", "result", "callback", "unregistered",
            "parallel-input", "on-stop"]
    with Unraisables() as ur:
        def main() -> None:
            states: Dict[str, Any] = {}
            job = bgjob.start_job(lambda _d: "ran", Doomed("args"), name=prefix + "-args")
            job.wait(timeout=LONG)
            states["args"] = job.state.name
            job.remove()

            busy = BusyPool(prefix)
            queued = bgjob.start_job(lambda _d: "never", Doomed("queued-args"),
                                     name=prefix + "-queued", pool=busy.pool)
            queued.stop(timeout=LONG)
            states["queued-args"] = queued.state.name
            queued.remove()
            busy.release()
            busy.close()

            def work() -> Any:
                ctx().write_output(Doomed("record"))
                return Doomed("result")

            job = bgjob.start_job(work, name=prefix + "-records",
                                  on_state_changed=DoomedCallback("callback"))
            reg = job.on_state_changed(DoomedCallback("unregistered"))
            job.wait(timeout=LONG)
            states["records"] = job.state.name
            states["unregister"] = reg.unregister()
            del reg
            job.remove()

            parent = bgjob.start_parallel_job(lambda _item: None, [Doomed("parallel-input")],
                                              name=prefix + "-parallel")
            parent.wait(timeout=LONG)
            states["parallel"] = parent.state.name
            parent.remove()
            del parent

            custom = bgjob.create_custom_job(name=prefix + "-custom",
                                             on_stop=DoomedCallback("on-stop"))
            custom.set_state(S.Running)
            custom.set_state(S.Completed)
            states["custom"] = custom.state.name
            custom.remove()
            del custom
            obs["states"] = states

        obs["surfaced"] = step(main)
        eventually(lambda: all(counter.get(t) >= 1 for t in tags))
        settle()
        obs["finalized"] = counter.snapshot()
        obs["usable"] = usable(prefix)
        obs["left"] = leftovers(prefix)
    obs["unraisable"] = sorted(ur.summary())
    return obs


CELLS: Dict[str, Callable[..., Dict[str, Any]]] = {
    "work_pool": cell_work_pool,
    "work_inline": cell_work_inline,
    "work_parallel": cell_work_parallel,
    "executor_task": cell_executor_task,
    "callback_worker": cell_callback_worker,
    "callback_main_stop": lambda e: cell_callback_main(e, "stop"),
    "callback_main_set_state": lambda e: cell_callback_main(e, "set_state"),
    "callback_main_run_job": lambda e: cell_callback_main(e, "run_job"),
    "on_stop": cell_on_stop,
    "records_evil": cell_records_evil,
    "conversions": cell_conversions_that_raise,
    "finalizers": cell_finalizers,
}

# ----- CELLS_END --------------------------------------------------------------------------

import pytest  # noqa: E402

from _support import run_python  # noqa: E402

# A child runs the cells part of this file (everything above CELLS_END) and prints what
# one cell observed.
_CHILD = """
import json, sys
path = {path!r}
with open(path, encoding="utf-8") as f:
    source = f.read().split("# ----- CELLS_END", 1)[0]
cells = {{"__name__": "test_faults_cells", "__file__": path}}
exec(compile(source, path, "exec"), cells)
print("RESULT " + json.dumps(cells["CELLS"][{cell!r}](cells["KINDS"][{kind!r}])), flush=True)
"""

_BAD_OUTPUT = ("Fatal Python error", "panicked", "Segmentation fault", "Aborted",
               "Exception ignored", "Traceback")


def observe(cell: str, kind: str) -> Dict[str, Any]:
    """Runs ``cell`` for ``kind``: here for an Exception, in a child interpreter for a
    BaseException (a crash, a hang or an escaped exception there fails the test)."""
    if kind == "Exception":
        return CELLS[cell](KINDS[kind])
    proc = run_python(_CHILD.format(path=os.path.abspath(__file__), cell=cell, kind=kind),
                      timeout=CHILD_TIMEOUT)
    results = [line[len("RESULT "):] for line in proc.stdout.splitlines()
               if line.startswith("RESULT ")]
    assert proc.returncode == 0 and len(results) == 1, (
        f"the child ended with {proc.returncode}\nstdout:\n{proc.stdout}\n"
        f"stderr:\n{proc.stderr}")
    for bad in _BAD_OUTPUT:
        assert bad not in proc.stderr, proc.stderr
    return json.loads(results[0])


def reason_of(kind: str, message: str) -> str:
    return f"{KINDS[kind].__name__}: {message}"


def is_exception(kind: str) -> bool:
    return issubclass(KINDS[kind], Exception)


# ===== the work ===============================================================================


@pytest.mark.timeout(120)
@pytest.mark.parametrize("kind", KIND_NAMES)
def test_work_on_a_pool_thread(kind):
    # Documented: an exception fails the job with "Type: message" as reason; result()
    # re-raises it. Any BaseException does the same on a pool thread: nothing reaches the
    # main thread (not even a KeyboardInterrupt or a SystemExit).
    obs = observe("work_pool", kind)
    assert obs == {
        "waited": True,
        "state": ["Failed", reason_of(kind, "boom")],
        "callback": [["NotStarted", "Running"], ["Running", "Failed"]],
        "any": [["NotStarted", "Running"], ["Running", "Failed"]],
        "records": ["'before'", "ErrorRecord('a non-terminating error')"],
        "result": [KINDS[kind].__name__, "boom"],
        "surfaced": None,
        "args_finalized": 1,
        "usable": True,
        "left": [],
        "unraisable": [],
    }


@pytest.mark.timeout(120)
@pytest.mark.parametrize("kind", KIND_NAMES)
def test_work_of_an_inline_run(kind):
    # Documented: a KeyboardInterrupt or SystemExit from run_job's work fails the job and
    # is raised again from run_job. Undocumented: GeneratorExit and a custom BaseException
    # subclass are raised again too (every BaseException that is not an Exception).
    obs = observe("work_inline", kind)
    assert obs == {
        "surfaced": None if is_exception(kind) else [KINDS[kind].__name__, "boom"],
        "state": ["Failed", reason_of(kind, "boom")],
        "callback": [["NotStarted", "Running"], ["Running", "Failed"]],
        "any": [["NotStarted", "Running"], ["Running", "Failed"]],
        "records": ["'before'"],
        "usable": True,
        "left": [],
        "unraisable": [],
    }


@pytest.mark.timeout(120)
@pytest.mark.parametrize("kind", KIND_NAMES)
def test_work_of_a_parallel_child(kind):
    obs = observe("work_parallel", kind)
    assert obs == {
        "waited": True,
        "state": ["Failed", "a child job failed: " + reason_of(kind, "boom")],
        "children": [["Completed", None], ["Failed", reason_of(kind, "boom")],
                     ["Completed", None]],
        "callback": [["NotStarted", "Running"], ["Running", "Failed"]],
        "records": ["a", "c"],
        "surfaced": None,
        "usable": True,
        "left": [],
        "unraisable": [],
    }


@pytest.mark.timeout(120)
@pytest.mark.parametrize("kind", KIND_NAMES)
def test_work_of_an_executor_task(kind):
    # As concurrent.futures.ThreadPoolExecutor: the future holds the exception, whatever
    # its kind, and the executor runs the next task.
    obs = observe("executor_task", kind)
    assert obs == {
        "exception": [KINDS[kind].__name__, "boom"],
        "next": 42,
        "surfaced": None,
        "usable": True,
        "left": [],
        "unraisable": [],
    }


# ===== state-change callbacks ================================================================


@pytest.mark.timeout(120)
@pytest.mark.parametrize("kind", KIND_NAMES)
def test_callback_on_a_worker_thread(kind):
    # Documented: a callback's exception goes to sys.unraisablehook, never into the job.
    # On a worker thread that holds for every kind, KeyboardInterrupt and SystemExit
    # included: nothing reaches the main thread, and the other callbacks see every change.
    obs = observe("callback_worker", kind)
    name = KINDS[kind].__name__
    assert obs == {
        "waited": True,
        "state": ["Completed", None],
        "bad_called": ["Running", "Completed"],
        "callback": [["NotStarted", "Running"], ["Running", "Completed"]],
        "any": [["NotStarted", "Running"], ["Running", "Completed"]],
        "records": ["written", "done"],
        "result": "done",
        "surfaced": None,
        "usable": True,
        "left": [],
        "unraisable": [[name, "callback on Running"], [name, "callback on Completed"]],
    }


def expected_main_thread_callback(kind: str, via: str) -> Dict[str, Any]:
    """What a callback raising on the main thread leads to, as documented (and, for
    KeyboardInterrupt, as the bindings' comments and test_interrupt.py say)."""
    name = KINDS[kind].__name__
    interrupt = kind == "KeyboardInterrupt"
    first = {"stop": "Stopped", "set_state": "Running", "run_job": "Running"}[via]
    exp: Dict[str, Any] = {
        "waited": True,
        "bad_on_main_thread": True,
        "usable": True,
        "left": [],
        # Every kind but KeyboardInterrupt is reported; KeyboardInterrupt is handed back to
        # the signal machinery and surfaces in the caller, as Ctrl-C would.
        "unraisable": [] if interrupt else [[name, "callback on " + first]],
        "surfaced": [["KeyboardInterrupt", ""]] if interrupt else [],
    }
    if via == "stop":
        exp.update(state=["Stopped", None], bad_called=["Stopped"], records=[],
                   callback=[["NotStarted", "Stopped"]], any=[["NotStarted", "Stopped"]])
    elif via == "set_state":
        exp.update(state=["Completed", None], bad_called=["Running", "Completed"],
                   records=["written"],
                   callback=[["NotStarted", "Running"], ["Running", "Completed"]],
                   any=[["NotStarted", "Running"], ["Running", "Completed"]])
    else:
        if interrupt:
            # The interrupt lands in the work, plain Python on this thread: it fails the
            # job, and run_job raises it again (test_interrupt.py).
            exp.update(state=["Failed", "KeyboardInterrupt"], bad_called=["Running", "Failed"],
                       records=[], any=[["NotStarted", "Running"], ["Running", "Failed"]])
        else:
            exp.update(state=["Completed", None], bad_called=["Running", "Completed"],
                       records=["written", "done"],
                       any=[["NotStarted", "Running"], ["Running", "Completed"]])
    return exp


def main_thread_params() -> List[Any]:
    params = []
    for via in ("stop", "set_state", "run_job"):
        for kind in KIND_NAMES:
            params.append(pytest.param(via, kind, id=f"{via}-{kind}"))
    return params


@pytest.mark.timeout(120)
@pytest.mark.parametrize("via,kind", main_thread_params())
def test_callback_on_the_main_thread(via, kind):
    # The change is made by the main thread (a stop of a queued job, a custom job's
    # set_state, an inline run): its callbacks run there. Undocumented: a SystemExit there
    # does not end the program (it is reported, like any exception); a KeyboardInterrupt
    # surfaces in the caller (in the user docs only as "Python waits answer Ctrl-C").
    obs = observe(f"callback_main_{via}", kind)
    assert obs == expected_main_thread_callback(kind, via)


@pytest.mark.timeout(120)
@pytest.mark.parametrize("kind", KIND_NAMES)
def test_custom_job_stop_handler(kind):
    # Documented: the stop handler's exception goes to sys.unraisablehook and the job stays
    # Stopping (stop() then times out). Undocumented: a KeyboardInterrupt from it (it runs
    # on the thread that asked the stop, here the main thread) surfaces in stop() instead.
    obs = observe("on_stop", kind)
    name = KINDS[kind].__name__
    interrupt = kind == "KeyboardInterrupt"
    surfaced = obs.pop("surfaced")
    assert surfaced is not None and surfaced[0] == (
        "KeyboardInterrupt" if interrupt else "JobTimeoutError"), surfaced
    assert obs == {
        "after_stop": "Stopping",
        "handler_calls": 1,
        "state": ["Stopped", None],
        "callback": [["NotStarted", "Running"], ["Running", "Stopping"],
                     ["Stopping", "Stopped"]],
        "usable": True,
        "left": [],
        "unraisable": [] if interrupt else [[name, "stop handler"]],
    }


# ===== record conversion ======================================================================


@pytest.mark.timeout(120)
@pytest.mark.parametrize("kind", KIND_NAMES)
def test_records_are_kept_as_they_are_and_never_converted(kind):
    # Python objects written as records (every stream, a custom job's too), returned,
    # sent as input and given as parallel inputs are kept as the very objects: bgjob calls
    # none of repr/str/format/eq/hash/bool/len/iter/index/int/float/copy/pickle on them.
    obs = observe("records_evil", kind)
    assert obs == {
        "waited": True,
        "state": ["Completed", None],
        "count": [8, 8],
        "same_objects": True,
        "record_types": ["ErrorRecord", "WarningRecord", "VerboseRecord", "DebugRecord",
                         "InformationRecord"],
        "result_is_the_object": True,
        "parallel": ["Completed", True, True],
        "custom": ["Completed", True],
        "surfaced": None,
        "called": [],
        "usable": True,
        "left": [],
        "unraisable": [],
    }


@pytest.mark.timeout(120)
@pytest.mark.parametrize("kind", KIND_NAMES)
def test_conversions_that_raise(kind):
    name = KINDS[kind].__name__
    obs = observe("conversions", kind)
    assert obs == {
        # str() of the work's exception raised: the reason is its type's name alone, and
        # the exception raised by __str__ is dropped (even a KeyboardInterrupt).
        "reason": ["Failed", "BadStr" + name, ["before"]],
        "reason_result": "BadStr" + name,
        "reason_surfaced": None,
        # The percentage's __index__ raised in the work: the work fails with it.
        "progress": ["Failed", f"{name}: index", ["before"], True],
        "progress_surfaced": None,
        # The inputs' iterator raised: start_parallel_job raises it; nothing was started,
        # and the input taken before is released.
        "parallel_surfaced": [name, "iterator"],
        "parallel_jobs": [],
        "parallel_input_finalized": 1,
        # The children names' iterator raised: create_custom_job raises it; nothing made.
        "custom_surfaced": [name, "children"],
        "custom_jobs": [],
        # The callable's name and repr raised: it runs, with an empty command.
        "nameless": ["", 7, "Completed"],
        "nameless_surfaced": None,
        "usable": True,
        "left": [],
        "unraisable": [],
    }


# ===== finalizers ==============================================================================


@pytest.mark.timeout(120)
@pytest.mark.parametrize("kind", KIND_NAMES)
def test_finalizers_that_raise(kind):
    # A __del__ that raises — any kind, KeyboardInterrupt and SystemExit included — is
    # reported to sys.unraisablehook by the interpreter, wherever bgjob lets go of the
    # object (a worker, the thread that stops or removes the job): exactly once per object,
    # with no effect on the job, the caller or the library.
    name = KINDS[kind].__name__
    obs = observe("finalizers", kind)
    tags = ["args", "queued-args", "record", "result", "callback", "unregistered",
            "parallel-input", "on-stop"]
    assert obs == {
        "states": {"args": "Completed", "queued-args": "Stopped", "records": "Completed",
                   "unregister": True, "parallel": "Completed", "custom": "Completed"},
        "surfaced": None,
        "finalized": {t: 1 for t in tags},
        "usable": True,
        "left": [],
        "unraisable": sorted([name, "del " + t] for t in tags),
    }


# ===== afterwards =============================================================================


@pytest.mark.timeout(120)
def test_this_process_is_still_healthy(jobs):
    # After the in-process cells above (and whatever order they ran in): ordinary jobs,
    # callbacks and waits still work here.
    rec = Recorder()
    started = [jobs.start(lambda i=i: i * i, on_state_changed=rec) for i in range(20)]
    assert bgjob.wait_jobs(started, timeout=LONG) == started
    assert [j.result(timeout=0) for j in started] == [i * i for i in range(20)]
    assert len(rec.calls) == 40
