"""``bgjob.Executor``: a true ``concurrent.futures.Executor`` whose futures are real
``concurrent.futures.Future`` objects tied to bgjob jobs."""

from __future__ import annotations

import atexit
import concurrent.futures as _cf
import concurrent.futures.thread as _cft
import os
import threading
import weakref
from typing import Any, Callable, Optional, Set

from . import _native

_executors: "weakref.WeakSet[Executor]" = weakref.WeakSet()
_exiting = False


def _python_exit() -> None:
    """At interpreter exit, let running work finish (as ThreadPoolExecutor does)."""
    global _exiting
    _exiting = True
    for ex in list(_executors):
        ex._at_interpreter_exit()


# As concurrent.futures.thread does: threading's exit hooks run before any atexit handler,
# so a submit from an atexit handler already sees the interpreter exiting.
_register_exit = getattr(threading, "_register_atexit", atexit.register)
_register_exit(_python_exit)


def _close_pool(pool: "_native.Pool") -> None:
    """Shuts an executor's pool down without waiting: idle workers exit now, one still in
    the tail of a task's job (past its delivery) when that ends. Only for a pool with no
    pending task: a shutdown stops queued jobs and asks running ones to stop. This is the
    executor's finalizer, so it must not refer to the executor."""
    try:
        pool.shutdown(timeout=0)
    except _native.JobTimeoutError:
        pass  # workers still finishing a job: each exits as its job ends


class _JobFuture(_cf.Future):  # type: ignore[type-arg]
    """A Future whose ``cancel()`` stops its queued job (it then never runs)."""

    def __init__(self) -> None:
        super().__init__()
        self.job: Optional[_native.Job] = None
        self._notified = False

    def _start_or_notify_cancel(self) -> bool:
        """``set_running_or_notify_cancel`` at most once (a second call would raise)."""
        if self._notified:
            return False
        self._notified = True
        return self.set_running_or_notify_cancel()

    def cancel(self) -> bool:
        cancelled = super().cancel()
        if cancelled and self.job is not None:
            # Queued: it becomes Stopped at once and never runs.
            try:
                self.job.stop(timeout=0)
            except _native.JobError:
                pass
        return cancelled


class Executor(_cf.Executor):
    """A ``concurrent.futures.Executor`` running each submitted call as a bgjob job on a
    pool of its own with ``max_workers`` threads (default ``min(32, cpu_count + 4)``, as
    ``ThreadPoolExecutor``). Every pending or running task is a job in the repository
    (``get_jobs()`` lists it); its job is removed once its result is delivered. As with
    ``ThreadPoolExecutor``, the threads go once the executor is shut down (or collected)
    and no submitted call is left to run."""

    def __init__(self, max_workers: Optional[int] = None, thread_name_prefix: str = "",
                 initializer: Optional[Callable[..., Any]] = None,
                 initargs: "tuple[Any, ...]" = ()) -> None:
        if max_workers is None:
            max_workers = min(32, (os.cpu_count() or 1) + 4)
        if max_workers <= 0:
            raise ValueError("max_workers must be greater than 0")
        if initializer is not None and not callable(initializer):
            raise TypeError("initializer must be a callable")
        self._max_workers = max_workers
        # Accepted for compatibility: bgjob names its worker threads bgjob-<pool>-<n>.
        self._thread_name_prefix = thread_name_prefix
        self._initializer = initializer
        self._initargs = initargs
        # Threads that ran the initializer, by OS thread id (a threading.local would not
        # survive between jobs: each job attaches to the interpreter anew).
        self._initialized: Set[int] = set()
        self._broken: Optional[str] = None
        self._pool = _native.Pool(threads=max_workers)
        # The pool's threads must not outlive the executor's use: closed (without waiting)
        # once it is shut down and nothing is pending, or when it is collected. Calling it
        # closes the pool at most once. Not at exit: `_python_exit` sees to every executor.
        self._close = weakref.finalize(self, _close_pool, self._pool)
        self._close.atexit = False
        self._lock = threading.Lock()
        self._shutdown = False
        # Whether a call was ever submitted: at interpreter exit, as for ThreadPoolExecutor
        # (whose threads start with the first submit), only such an executor is shut down.
        self._used = False
        self._pending: Set[_JobFuture] = set()
        self._idle = threading.Condition(self._lock)
        _executors.add(self)

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> "_cf.Future[Any]":
        """Schedules ``fn(*args, **kwargs)`` and returns its Future."""
        with self._lock:
            if self._broken:
                raise _cft.BrokenThreadPool(self._broken)
            if self._shutdown:
                raise RuntimeError("cannot schedule new futures after shutdown")
            if _exiting:
                raise RuntimeError("cannot schedule new futures after interpreter shutdown")
            future = _JobFuture()
            # One trip into the interpreter per task on its worker: the work, which also
            # completes the future (as ThreadPoolExecutor's work item does). The native
            # side removes the job when it finishes, and calls back into Python only for
            # a job that finished without running.
            # Pending before it starts: its work may deliver (and discard it) at once.
            self._pending.add(future)
            try:
                job = _native._start_task(self._task(future, fn, args, kwargs), self._pool,
                                          fn, self._not_run_for(future))
            except BaseException:
                # A start that raised leaves nothing to wait for.
                self._pending.discard(future)
                raise
            self._used = True
            future.job = job  # for cancel(): stops the job if it is still queued
            if future.done():
                # Its work delivered already (and `_delivered` may have cleared `job`
                # before the line above): keep no job for a delivered future.
                future.job = None
            return future

    def _initialize_thread(self) -> None:
        """Runs the executor's initializer once per worker thread."""
        me = threading.get_ident()
        if me not in self._initialized:
            try:
                self._initializer(*self._initargs)  # type: ignore[misc]
            except BaseException as exc:
                self._broken = ("A thread initializer failed, the thread pool is not "
                                "usable anymore")
                raise _cft.BrokenThreadPool(self._broken) from exc
            self._initialized.add(me)

    def _task(self, future: _JobFuture, fn: Callable[..., Any], args: "tuple[Any, ...]",
              kwargs: "dict[str, Any]") -> Callable[[], None]:
        """The work of a submitted call's job: the future turns running (unless it was
        cancelled: then ``fn`` never runs), the worker's initializer runs if it has not
        yet, and the future gets the result of ``fn(*args, **kwargs)`` or the exception
        right here, on the worker. An exception also fails the job. Every keyword belongs
        to ``fn``, as with ThreadPoolExecutor (the job shows ``fn``'s name: see
        ``submit``)."""

        def run() -> None:
            try:
                if not future._start_or_notify_cancel():
                    return
                try:
                    if self._initializer is not None:
                        self._initialize_thread()
                    result = fn(*args, **kwargs)
                except BaseException as exc:
                    future.set_exception(exc)
                    raise
                future.set_result(result)
            finally:
                self._delivered(future)

        return run

    def _not_run_for(self, future: _JobFuture) -> Callable[[Any], None]:
        # The callback holds the future weakly: a dropped future does not keep results.
        ref = weakref.ref(future)
        # And the executor too: the job's callbacks are freed off the interpreter, so
        # Python sees them go only at its next call into bgjob, and till then a strong
        # reference would keep an executor nobody uses (and its threads) alive. A task that
        # has not run yet holds the executor through its work (see `_task`) anyway.
        executor = weakref.ref(self)

        def not_run(job: _native.Job) -> None:
            """The job finished without running (stopped while queued, or its pool shut
            down): a stop cancels the future; any other end is delivered."""
            f = ref()
            if f is None:
                return
            if f.cancelled():
                f._start_or_notify_cancel()  # CANCELLED -> CANCELLED_AND_NOTIFIED
            elif not f.done():
                try:
                    value = job.result(timeout=0)
                except _native.JobStoppedError as exc:
                    if f.cancel():
                        f._start_or_notify_cancel()
                    else:
                        f.set_exception(exc)
                except BaseException as exc:
                    f.set_exception(exc)
                else:
                    f.set_result(value)
            ex = executor()
            if ex is not None:
                ex._delivered(f)

        return not_run

    def _delivered(self, future: _JobFuture) -> None:
        """The future has its outcome: it no longer counts as pending. Runs on a worker
        for every task, so it takes the executor's lock (which ``submit`` holds) only
        when ``shutdown`` may be waiting for the last ones. The last one delivered after a
        shutdown closes the pool, so a ``shutdown(wait=False)`` frees the threads once
        the work submitted before it is done."""
        future.job = None
        # Discarded before `_shutdown` is read, as `shutdown` sets it before reading
        # `_pending`: of a concurrent delivery and shutdown, one sees the other's write,
        # so the pool closes once nothing is pending.
        self._pending.discard(future)  # one operation under the GIL
        if self._shutdown:
            with self._lock:
                self._idle.notify_all()
                idle = not self._pending
            if idle:
                # Without waiting: this is often a worker of the pool, which cannot wait
                # for itself, and the others are past their deliveries (they exit as
                # their jobs end).
                self._close()

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """No more submits; with ``cancel_futures`` the queued calls are cancelled (never
        run); with ``wait`` blocks until the others are done, then frees the threads.
        Without ``wait`` it returns at once: the calls still run and deliver their
        results, and the threads go once the last one is delivered."""
        with self._lock:
            self._shutdown = True
            pending = list(self._pending)
        if cancel_futures:
            for f in pending:
                f.cancel()
        if wait:
            with self._lock:
                while self._pending:
                    # A timed wait keeps Ctrl-C deliverable while blocked here.
                    self._idle.wait(0.1)
            self._pool.shutdown()
            self._close.detach()
        else:
            with self._lock:
                idle = not self._pending
            if idle:
                # Otherwise the last delivery closes it (see `_delivered`).
                self._close()

    def _at_interpreter_exit(self) -> None:
        """At interpreter exit (new submits are refused by now): as ThreadPoolExecutor,
        whose workers mark a used executor shut down there while an unused one has no
        workers, a used executor is shut down once its work is done — a later submit says
        "after shutdown" — and an unused one only loses its idle threads, so a later
        submit says "after interpreter shutdown"."""
        with self._lock:
            used = self._used
        if used:
            self.shutdown(wait=True)
        else:
            self._pool.shutdown()
            self._close.detach()
