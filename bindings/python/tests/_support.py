"""Helpers shared by the bgjob test modules (imported as a plain module: pytest puts this
directory on sys.path because the tests directory is not a package)."""

from __future__ import annotations

import os
import selectors
import subprocess
import sys
import threading
import time
from typing import Any, Callable, Optional

import pytest

import bgjob

# Generous bounds: these are limits for "it did not hang", never expected durations.
LONG = 30.0


def cooperative(seconds: float = LONG, started: Optional[threading.Event] = None) -> str:
    """Work that runs until a stop is asked (or ``seconds`` pass, so that a test bug can
    never leave a job running for ever). Returns how it ended."""
    ctx = bgjob.current_job()
    assert ctx is not None
    if started is not None:
        started.set()
    deadline = time.monotonic() + seconds
    while not ctx.stop_requested:
        if time.monotonic() >= deadline:
            return "deadline"
        time.sleep(0.005)
    return "stopped"


def gated(gate: threading.Event, started: Optional[threading.Event] = None,
          value: Any = None) -> Any:
    """Work that blocks until ``gate`` is set (or a stop is asked), then returns ``value``."""
    ctx = bgjob.current_job()
    if started is not None:
        started.set()
    deadline = time.monotonic() + LONG
    while not gate.wait(0.005):
        if (ctx is not None and ctx.stop_requested) or time.monotonic() >= deadline:
            break
    return value


def poll_until(predicate: Callable[[], bool], timeout: float = 10.0,
               what: str = "condition") -> None:
    """A bounded poll of getters: fails the test if ``predicate`` is not true in time."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.002)


def wait_event(event: threading.Event, timeout: float = 10.0, what: str = "event") -> None:
    assert event.wait(timeout), f"timed out after {timeout}s waiting for {what}"


# Child interpreters turn warnings into errors, as pytest does for the tests themselves
# (filterwarnings = error): a warning bgjob causes in a child must fail its test too.
_CHILD_FLAGS = ["-W", "error"]


def run_python(code: str, timeout: float = 60.0, **kwargs: Any) -> subprocess.CompletedProcess:
    """Runs ``code`` in a child interpreter (the same venv, warnings as errors) and returns
    its outcome."""
    env = dict(os.environ)
    env.setdefault("PYTHONFAULTHANDLER", "1")
    return subprocess.run([sys.executable, *_CHILD_FLAGS, "-c", code], capture_output=True,
                          text=True, timeout=timeout, env=env, **kwargs)


def spawn_python(code: str) -> subprocess.Popen:
    """Starts ``code`` in a child interpreter (the same venv, warnings as errors, unbuffered
    output) and returns it running."""
    env = dict(os.environ)
    env.setdefault("PYTHONFAULTHANDLER", "1")
    return subprocess.Popen([sys.executable, *_CHILD_FLAGS, "-u", "-c", code],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=env)


def os_thread_count() -> int:
    """The OS threads of this process now (Linux: one entry per thread in /proc)."""
    return len(os.listdir("/proc/self/task"))


# For the tests that count threads; the count is Linux's.
needs_proc_tasks = pytest.mark.skipif(not os.path.isdir("/proc/self/task"),
                                      reason="counts threads through /proc/self/task")


def read_line(proc: subprocess.Popen, timeout: float) -> str:
    """The next line of ``proc``'s stdout, or "" if none comes within ``timeout``."""
    sel = selectors.DefaultSelector()
    sel.register(proc.stdout, selectors.EVENT_READ)
    try:
        if not sel.select(timeout):
            return ""
        return proc.stdout.readline()
    finally:
        sel.close()


class Recorder:
    """Collects state-change callback calls (thread-safe) and signals when a state is seen."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.calls: list = []
        self.finished = threading.Event()

    def __call__(self, job: Any, info: Any, prev: Any) -> None:
        with self.lock:
            self.calls.append((job, info, prev, threading.get_ident()))
        if info.state.is_finished:
            self.finished.set()

    def transitions(self) -> list:
        with self.lock:
            return [(prev.state, info.state) for (_j, info, prev, _t) in self.calls]


class CapturedUnraisable:
    """A sys.unraisablehook of our own for the duration of a test (pytest's would turn
    the report into a PytestUnraisableExceptionWarning, an error under filterwarnings)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.reports: list = []

    def __call__(self, unraisable) -> None:
        with self.lock:
            self.reports.append((unraisable.exc_type, unraisable.exc_value,
                                 unraisable.object))

    def __enter__(self) -> "CapturedUnraisable":
        self.saved = sys.unraisablehook
        sys.unraisablehook = self
        return self

    def __exit__(self, *exc) -> None:
        sys.unraisablehook = self.saved
