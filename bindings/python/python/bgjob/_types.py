"""The pure-Python types of bgjob: JobState, JobStateInfo, Stream and the record classes."""

from __future__ import annotations

import datetime as _dt
import enum
from typing import Any, NamedTuple, Optional

__all__ = [
    "JobState",
    "JobStateInfo",
    "JobEvent",
    "Stream",
    "StreamRecord",
    "OutputRecord",
    "ErrorRecord",
    "WarningRecord",
    "VerboseRecord",
    "DebugRecord",
    "InformationRecord",
    "ProgressRecord",
]


class JobState(enum.IntEnum):
    """A job's state, with PowerShell's ``JobState`` numbers."""

    NotStarted = 0
    Running = 1
    Completed = 2
    Failed = 3
    Stopped = 4
    Blocked = 5
    Suspended = 6
    Disconnected = 7
    Suspending = 8
    Stopping = 9
    AtBreakpoint = 10

    @property
    def is_finished(self) -> bool:
        """Completed, Failed or Stopped: nothing leaves a finished state."""
        return self in (JobState.Completed, JobState.Failed, JobState.Stopped)

    def __str__(self) -> str:
        return self.name


class JobStateInfo(NamedTuple):
    """A job's state and, if an error caused the change to it, that error's message."""

    state: JobState
    reason: Optional[str] = None


class JobEvent(NamedTuple):
    """One state change, as an ``EventQueue`` delivers it: the job's id, its new state info
    and its state info before the change (the same ``JobStateInfo`` a state-change
    callback gets). Immutable; ``get_job(event.job_id)`` gives the job while it is in the
    repository."""

    job_id: int
    state_info: JobStateInfo
    previous_state_info: JobStateInfo


def _document_fields(cls: type, docs: "dict[str, str]") -> None:
    """Replaces a NamedTuple's "Alias for field number N" with what each field means."""
    for field, doc in docs.items():
        getattr(cls, field).__doc__ = doc


_document_fields(JobEvent, {
    "job_id": "The id of the job that changed.",
    "state_info": "Its new state info (a JobStateInfo).",
    "previous_state_info": "Its state info before the change (a JobStateInfo).",
})


class Stream(enum.IntEnum):
    """The stream a record was written to (the numbers are the C ABI's)."""

    Output = 0
    Error = 1
    Warning = 2
    Verbose = 3
    Debug = 4
    Information = 5
    Progress = 6


def _datetime_from_ns(ns: int) -> _dt.datetime:
    """An aware UTC datetime from nanoseconds since the Unix epoch."""
    epoch = _dt.datetime(1970, 1, 1, tzinfo=_dt.timezone.utc)
    return epoch + _dt.timedelta(microseconds=ns // 1000)


class StreamRecord:
    """A record as ``receive()`` returns it (for the output stream only with
    ``as_records=True``): the object the work wrote (``value``), the job that wrote it,
    its sequence number and time."""

    stream: Stream = Stream.Output
    __slots__ = {
        "value": "The object the work wrote (the very object, not a copy).",
        "job_id": "The id of the job that wrote it (a child's id for a parent's records).",
        "sequence": "Its sequence number: a record written later has a larger one.",
        "time": "When it was written (a timezone-aware datetime, UTC).",
    }

    def __init__(self, value: Any, job_id: int = 0, sequence: int = 0,
                 time: Optional[_dt.datetime] = None) -> None:
        self.value = value
        self.job_id = job_id
        self.sequence = sequence
        self.time = time

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.value!r})"

    def __str__(self) -> str:
        return str(self.value)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, StreamRecord) and type(other) is type(self):
            return bool(self.value == other.value)
        return NotImplemented

    def __hash__(self) -> int:
        # Consistent with __eq__ (equal records hash alike); unhashable values raise
        # TypeError, as a tuple holding them would.
        return hash((type(self), self.value))


class OutputRecord(StreamRecord):
    """A record of the output stream, as ``receive(as_records=True)`` returns it: its
    ``job_id`` tells which child of a parent job wrote it."""

    stream = Stream.Output
    __slots__ = ()


class ErrorRecord(StreamRecord):
    """A record of the error stream (a non-terminating error: the job may still complete)."""

    stream = Stream.Error
    __slots__ = ()


class WarningRecord(StreamRecord):
    """A record of the warning stream."""

    stream = Stream.Warning
    __slots__ = ()


class VerboseRecord(StreamRecord):
    """A record of the verbose stream."""

    stream = Stream.Verbose
    __slots__ = ()


class DebugRecord(StreamRecord):
    """A record of the debug stream."""

    stream = Stream.Debug
    __slots__ = ()


class InformationRecord(StreamRecord):
    """A record of the information stream."""

    stream = Stream.Information
    __slots__ = ()


class ProgressRecord:
    """A progress report (PowerShell's ``ProgressRecord``)."""

    stream = Stream.Progress
    __slots__ = {
        "percent_complete": "How far the work is, 0 to 100 (-1: not known).",
        "activity": "What the work is doing (PowerShell's Activity).",
        "status_description": "The current step of that activity (PowerShell's StatusDescription).",
        "job_id": "The id of the job that reported it.",
        "sequence": "Its sequence number: a record written later has a larger one.",
        "time": "When it was reported (a timezone-aware datetime, UTC).",
    }

    def __init__(self, percent_complete: int = -1, activity: str = "",
                 status_description: str = "") -> None:
        self.percent_complete = percent_complete
        self.activity = activity
        self.status_description = status_description
        self.job_id = 0
        self.sequence = 0
        self.time: Optional[_dt.datetime] = None

    def __repr__(self) -> str:
        return (f"ProgressRecord({self.percent_complete!r}, {self.activity!r}, "
                f"{self.status_description!r})")

    def __eq__(self, other: object) -> bool:
        if isinstance(other, ProgressRecord):
            return (self.percent_complete, self.activity, self.status_description) == (
                other.percent_complete, other.activity, other.status_description)
        return NotImplemented

    def __hash__(self) -> int:
        return hash((self.percent_complete, self.activity, self.status_description))
