//! Conversions between the core's values and the Python-side types of `bgjob._types`
//! (JobState, JobStateInfo, the record classes), looked up once.

use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyAny, PyType};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

/// A Python object written as a record; the core keeps it opaque.
pub(crate) struct PyValue(pub(crate) Py<PyAny>);

macro_rules! cached_type {
    ($fn:ident, $name:literal) => {
        pub(crate) fn $fn(py: Python<'_>) -> PyResult<&Bound<'_, PyType>> {
            static CELL: PyOnceLock<Py<PyType>> = PyOnceLock::new();
            CELL.import(py, "bgjob._types", $name)
        }
    };
}

cached_type!(job_state_type, "JobState");
cached_type!(state_info_type, "JobStateInfo");
cached_type!(progress_type, "ProgressRecord");
cached_type!(output_record_type, "OutputRecord");
cached_type!(error_record_type, "ErrorRecord");
cached_type!(warning_record_type, "WarningRecord");
cached_type!(verbose_record_type, "VerboseRecord");
cached_type!(debug_record_type, "DebugRecord");
cached_type!(information_record_type, "InformationRecord");
cached_type!(job_event_type, "JobEvent");
fn from_ns_fn(py: Python<'_>) -> PyResult<&Bound<'_, PyAny>> {
    static CELL: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
    CELL.import(py, "bgjob._types", "_datetime_from_ns")
}

/// A core state as `bgjob.JobState`.
pub(crate) fn job_state<'py>(py: Python<'py>, s: bgjob::JobState) -> PyResult<Bound<'py, PyAny>> {
    job_state_type(py)?.call1((s as u32,))
}

/// A state given from Python (a `JobState` or its number) as a core state;
/// `InvalidArgumentError` for a number that is no state.
pub(crate) fn job_state_arg(obj: &Bound<'_, PyAny>) -> PyResult<bgjob::JobState> {
    let n: i64 = obj.extract()?;
    u32::try_from(n)
        .ok()
        .and_then(bgjob::JobState::from_u32)
        .ok_or_else(|| {
            crate::errors::InvalidArgumentError::new_err(format!("{n} is not a JobState"))
        })
}

/// A core state info as `bgjob.JobStateInfo(state, reason)`.
pub(crate) fn state_info<'py>(
    py: Python<'py>,
    i: &bgjob::JobStateInfo,
) -> PyResult<Bound<'py, PyAny>> {
    state_info_type(py)?.call1((job_state(py, i.state)?, i.reason.as_deref()))
}

/// An event queue's event as `bgjob.JobEvent(job_id, state_info, previous_state_info)`.
pub(crate) fn job_event<'py>(py: Python<'py>, e: &bgjob::JobEvent) -> PyResult<Bound<'py, PyAny>> {
    job_event_type(py)?.call1((
        e.job_id,
        state_info(py, &e.state_info)?,
        state_info(py, &e.previous_state_info)?,
    ))
}

/// Nanoseconds since the epoch.
pub(crate) fn unix_ns(t: SystemTime) -> i128 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => d.as_nanos() as i128,
        Err(e) => -(e.duration().as_nanos() as i128),
    }
}

/// An aware UTC `datetime`, or `None`.
pub(crate) fn datetime<'py>(py: Python<'py>, t: Option<SystemTime>) -> PyResult<Bound<'py, PyAny>> {
    match t {
        None => Ok(py.None().into_bound(py)),
        Some(t) => from_ns_fn(py)?.call1((unix_ns(t),)),
    }
}

/// The payload's Python value: the object written from Python, `bytes` written from C,
/// or a `ProgressRecord`.
pub(crate) fn payload_value<'py>(
    py: Python<'py>,
    p: &bgjob::Payload,
) -> PyResult<Bound<'py, PyAny>> {
    Ok(match p {
        bgjob::Payload::Object(o) => match o.downcast_ref::<PyValue>() {
            Some(v) => v.0.clone_ref(py).into_bound(py),
            None => py.None().into_bound(py),
        },
        bgjob::Payload::Bytes(b) => pyo3::types::PyBytes::new(py, b).into_any(),
        bgjob::Payload::Text(t) => pyo3::types::PyString::new(py, t).into_any(),
        bgjob::Payload::Progress(pr) => progress_type(py)?.call1((
            pr.percent_complete,
            pr.activity.as_str(),
            pr.status_description.as_str(),
        ))?,
    })
}

/// A parallel child's input as Python sees it (the object given, `bytes` from C), or None.
pub(crate) fn input<'py>(
    py: Python<'py>,
    input: Option<&bgjob::Payload>,
) -> PyResult<Bound<'py, PyAny>> {
    match input {
        Some(p) => payload_value(py, p),
        None => Ok(py.None().into_bound(py)),
    }
}

/// A received record as Python sees it: output values as they are (or, with
/// `as_records`, as `OutputRecord`s); records of the other streams wrapped in their record
/// class (`ErrorRecord(value, job_id, sequence, time)`…), so one list keeps every stream
/// in time order and tells which job wrote each record.
pub(crate) fn record<'py>(
    py: Python<'py>,
    r: &bgjob::Record,
    as_records: bool,
) -> PyResult<Bound<'py, PyAny>> {
    let value = payload_value(py, &r.payload)?;
    let cls = match r.stream {
        bgjob::Stream::Output if !as_records => return Ok(value),
        bgjob::Stream::Output => output_record_type(py)?,
        bgjob::Stream::Progress => {
            value.setattr("job_id", r.job_id)?;
            value.setattr("sequence", r.sequence)?;
            value.setattr("time", datetime(py, Some(r.time))?)?;
            return Ok(value);
        }
        bgjob::Stream::Error => error_record_type(py)?,
        bgjob::Stream::Warning => warning_record_type(py)?,
        bgjob::Stream::Verbose => verbose_record_type(py)?,
        bgjob::Stream::Debug => debug_record_type(py)?,
        bgjob::Stream::Information => information_record_type(py)?,
    };
    cls.call1((value, r.job_id, r.sequence, datetime(py, Some(r.time))?))
}

/// A Python object as a record payload.
pub(crate) fn payload(obj: &Bound<'_, PyAny>) -> bgjob::Payload {
    bgjob::Payload::Object(Arc::new(PyValue(obj.clone().unbind())))
}
