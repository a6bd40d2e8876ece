"""``bgjob.Executor``: a true ``concurrent.futures.Executor`` whose futures are real
``concurrent.futures.Future`` objects tied to bgjob jobs."""

from __future__ import annotations

import atexit
import concurrent.futures as _cf
import concurrent.futures.thread as _cft
import functools
import os
import threading
import weakref
from typing import Any, Callable, Optional, Set

from . import _native
from ._types import JobState

_executors: "weakref.WeakSet[Executor]" = weakref.WeakSet()
_exiting = False


def _python_exit() -> None:
    """At interpreter exit, let running work finish (as ThreadPoolExecutor does)."""
    global _exiting
    _exiting = True
    for ex in list(_executors):
        ex.shutdown(wait=True)


# As concurrent.futures.thread does: threading's exit hooks run before any atexit handler,
# so a submit from an atexit handler already sees the interpreter exiting.
_register_exit = getattr(threading, "_register_atexit", atexit.register)
_register_exit(_python_exit)


def _bind(fn: Callable[..., Any], args: "tuple[Any, ...]",
          kwargs: "dict[str, Any]") -> Callable[[], Any]:
    """``fn`` with its arguments bound, keeping its name (the job's command)."""

    @functools.wraps(fn)
    def call() -> Any:
        return fn(*args, **kwargs)

    return call


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
    (``get_jobs()`` lists it); its job is removed once its result is delivered."""

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
        self._lock = threading.Lock()
        self._shutdown = False
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
            # Every keyword belongs to fn (as with ThreadPoolExecutor), even one that
            # start_job would take for itself (name=, pool=): bind them all here.
            call = _bind(fn, args, kwargs)
            if self._initializer is not None:
                call = self._with_initializer(call)
            future.job = _native.start_job(call, pool=self._pool,
                                           on_state_changed=self._on_change_for(future))
            # Only a started job is pending: a start that raised leaves nothing to wait for.
            self._pending.add(future)
            return future

    def _with_initializer(self, fn: Callable[..., Any]) -> Callable[..., Any]:
        """``fn`` preceded, once per worker thread, by the executor's initializer."""

        @functools.wraps(fn)
        def run(*args: Any, **kwargs: Any) -> Any:
            me = threading.get_ident()
            if me not in self._initialized:
                try:
                    self._initializer(*self._initargs)  # type: ignore[misc]
                except BaseException as exc:
                    self._broken = ("A thread initializer failed, the thread pool is not "
                                    "usable anymore")
                    raise _cft.BrokenThreadPool(self._broken) from exc
                self._initialized.add(me)
            return fn(*args, **kwargs)

        return run

    def _on_change_for(self, future: _JobFuture) -> Callable[[Any, Any, Any], None]:
        # The callback holds the future weakly: a dropped future does not keep results.
        ref = weakref.ref(future)

        def on_change(job: _native.Job, info: Any, _prev: Any) -> None:
            f = ref()
            if f is None:
                return
            state = info.state
            if state == JobState.Running:
                if not f._start_or_notify_cancel():
                    job.stop(timeout=0)
                return
            if not state.is_finished:
                return
            if f.cancelled():
                # CANCELLED -> CANCELLED_AND_NOTIFIED: wait() and as_completed() see it.
                f._start_or_notify_cancel()
            else:
                try:
                    f.set_result(job.result(timeout=0))
                except _native.JobStoppedError as exc:
                    if f.cancel():
                        f._start_or_notify_cancel()
                    else:
                        f.set_exception(exc)
                except BaseException as exc:  # the work's exception, delivered as is
                    f.set_exception(exc)
            # Delivered: drop the job (and with it the callable, arguments and result).
            try:
                job.remove()
            except _native.JobError:
                pass
            f.job = None
            with self._lock:
                self._pending.discard(f)
                self._idle.notify_all()

        return on_change

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """No more submits; with ``cancel_futures`` the queued calls are cancelled (never
        run); with ``wait`` blocks until the others are done, then frees the threads."""
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
