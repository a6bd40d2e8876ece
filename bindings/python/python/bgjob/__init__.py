"""bgjob: PowerShell's background-job model for Python.

Start work in the background and get a ``Job`` back at once (``start_job``, or
``start_parallel_job`` for one function over many inputs, each in a child job, or
``start_process_job`` for an external program, whose stdout and stderr lines become its
records), or run it here as a job (``run_job``, ``run_process_job``), or wrap work bgjob
does not run — remote, foreign, event-driven — in a job its host drives
(``create_custom_job``, ``CustomJob``); watch its state change through callbacks; wait
for one, any or all jobs with a timeout (``Job.wait``, ``wait_jobs``); receive every
record the work produced, nothing lost and nothing twice (``Job.receive``); stop runaway
work (``Job.stop``) and free everything (``Job.remove``); suspend and resume work at its
checkpoints (``Job.suspend``, ``Job.resume``) and answer work that asks for input
(``Job.prompt``, ``Job.send_input``). Also: ``await job``, ``wait_jobs_async``,
``EventQueue`` (every state change, drained on the program's own thread, with a
descriptor for ``select`` and ``loop.add_reader``) and ``Executor``, a
``concurrent.futures.Executor``.

Jobs live in a process-wide repository (``get_job``, ``get_jobs``) and run on pools of
worker threads (``Pool``); the work itself runs Python code, so it shares the interpreter
with the rest of the program, but every bgjob wait releases the interpreter and honours
Ctrl-C.
"""

from __future__ import annotations

import atexit as _atexit
from typing import Any, Optional, Union

from . import _native

# Runs after Executor's exit hook (a threading exit hook, and those run before every
# atexit handler): first executors let their work finish, then no bgjob thread may be
# inside Python any more.
# Running Python jobs are asked to stop, then interrupted with SystemExit; each phase
# waits up to BGJOB_EXIT_GRACE seconds (default 1).
def _exit_grace() -> float:
    import os

    try:
        return max(0.0, float(os.environ.get("BGJOB_EXIT_GRACE", "1")))
    except ValueError:
        return 1.0


_atexit.register(lambda: _native._at_exit(_exit_grace()))


def _register_fork_hook() -> None:
    import os

    # Pools heal themselves in a forked child (the core sees the fork); this forgets the
    # parent's threads that were inside Python, which do not exist in the child.
    if hasattr(os, "register_at_fork"):
        os.register_at_fork(after_in_child=_native._after_fork_in_child)


_register_fork_hook()

from ._aio import wait_jobs_async  # noqa: E402
from ._executor import Executor  # noqa: E402
from ._native import (  # noqa: E402
    AlreadyInitializedError,
    ChildJobError,
    CustomJob,
    EventQueue,
    InternalError,
    InvalidArgumentError,
    InvalidJobStateError,
    Job,
    JobContext,
    JobError,
    JobFailedError,
    JobNotFinishedError,
    JobOSError,
    JobStoppedError,
    JobTimeoutError,
    JobsBlockedError,
    NoSuchJobError,
    Pool,
    PoolShutDownError,
    Registration,
    WouldDeadlockError,
    configure_default_pool,
    create_custom_job,
    current_job,
    get_jobs as _get_jobs,
    on_any_state_changed,
    run_job,
    run_process_job,
    start_job,
    start_parallel_job,
    start_process_job,
    wait_jobs,
)
from ._types import (  # noqa: E402
    DebugRecord,
    ErrorRecord,
    InformationRecord,
    JobEvent,
    JobState,
    JobStateInfo,
    OutputRecord,
    ProgressRecord,
    Stream,
    StreamRecord,
    VerboseRecord,
    WarningRecord,
)

__version__ = "0.1.0"

__all__ = [
    "AlreadyInitializedError",
    "ChildJobError",
    "CustomJob",
    "DebugRecord",
    "ErrorRecord",
    "EventQueue",
    "Executor",
    "InformationRecord",
    "InternalError",
    "InvalidArgumentError",
    "InvalidJobStateError",
    "Job",
    "JobContext",
    "JobError",
    "JobEvent",
    "JobLike",
    "JobFailedError",
    "JobNotFinishedError",
    "JobOSError",
    "JobState",
    "JobStateInfo",
    "JobStoppedError",
    "JobTimeoutError",
    "JobsBlockedError",
    "NoSuchJobError",
    "OutputRecord",
    "Pool",
    "PoolShutDownError",
    "ProgressRecord",
    "Registration",
    "Stream",
    "StreamRecord",
    "VerboseRecord",
    "WarningRecord",
    "WouldDeadlockError",
    "configure_default_pool",
    "create_custom_job",
    "current_job",
    "get_job",
    "get_jobs",
    "on_any_state_changed",
    "receive_job",
    "remove_job",
    "resume_job",
    "run_job",
    "run_process_job",
    "start_job",
    "start_parallel_job",
    "start_process_job",
    "stop_job",
    "suspend_job",
    "wait_jobs",
    "wait_jobs_async",
]

#: What the module functions take for a job: a ``Job`` or its id.
JobLike = Union[Job, int]


def _job(job: JobLike) -> Job:
    if isinstance(job, Job):
        return job
    if isinstance(job, int) and not isinstance(job, bool):
        return _native.get_job_by_id(job)
    raise TypeError(f"expected a Job or a job id, not {type(job).__name__}")


def get_job(id: Optional[int] = None, *, name: Optional[str] = None,
            instance_id: Any = None) -> Job:
    """Get-Job for one job: by ``id``, by ``instance_id`` (a ``uuid.UUID`` or its text), or
    by ``name`` (a wildcard pattern that must match exactly one job). Raises
    ``NoSuchJobError`` if there is none (and ``InvalidArgumentError`` if a name matches
    several)."""
    given = [x is not None for x in (id, name, instance_id)]
    if sum(given) != 1:
        raise TypeError("get_job() takes exactly one of id, name or instance_id")
    if id is not None:
        return _native.get_job_by_id(id)
    if instance_id is not None:
        return _native.get_job_by_instance_id(instance_id)
    found = _get_jobs(name=name, include_children=True)
    if not found:
        raise NoSuchJobError(f"no job named {name!r}")
    if len(found) > 1:
        raise InvalidArgumentError(f"{len(found)} jobs match the name {name!r}; use get_jobs()")
    return found[0]


def get_jobs(*, name: Optional[str] = None, state: Optional[JobState] = None,
             has_more_data: Optional[bool] = None, command: Optional[str] = None,
             newest: Optional[int] = None, include_children: bool = False) -> "list[Job]":
    """Get-Job: the jobs matching every filter given, sorted by id. ``name`` and ``command``
    are wildcard patterns (``*``, ``?``, ``[a-z]``; case-insensitive); ``newest`` keeps the
    last N; child jobs are listed only with ``include_children``."""
    return _get_jobs(name=name, state=None if state is None else int(state),
                     has_more_data=has_more_data, command=command, newest=newest,
                     include_children=include_children)


def receive_job(job: JobLike, *, keep: bool = False, max: Optional[int] = None,
                wait: bool = False, timeout: Optional[float] = None,
                auto_remove: bool = False, as_records: bool = False) -> "list[Any]":
    """Receive-Job for a job or job id: see ``Job.receive``."""
    return _job(job).receive(keep=keep, max=max, wait=wait, timeout=timeout,
                             auto_remove=auto_remove, as_records=as_records)


def stop_job(job: JobLike, timeout: Optional[float] = None) -> None:
    """Stop-Job for a job or job id: see ``Job.stop``."""
    _job(job).stop(timeout=timeout)


def remove_job(job: JobLike, force: bool = False) -> None:
    """Remove-Job for a job or job id: see ``Job.remove``."""
    _job(job).remove(force=force)


def suspend_job(job: JobLike) -> None:
    """Suspend-Job for a job or job id: see ``Job.suspend``."""
    _job(job).suspend()


def resume_job(job: JobLike) -> None:
    """Resume-Job for a job or job id: see ``Job.resume``."""
    _job(job).resume()
