//! `bgjob.CustomJob` and `bgjob.create_custom_job`: jobs whose work runs where bgjob does
//! not see it (another machine, another library, an event loop). The host creates the
//! job, moves it through legal states and writes its records; wait, receive, stop, remove
//! and `await` treat it like any other job. A stop asked of it calls the host's `on_stop`.

use crate::blocking::call_from_bgjob;
use crate::convert;
use crate::errors::{IntoPy, InvalidArgumentError};
use crate::job::{Job, JobHandle, state_callback};
use pyo3::PyClassInitializer;
use pyo3::exceptions::{PyIndexError, PyTypeError};
use pyo3::prelude::*;
use pyo3::types::{PyAny, PyInt, PyString};
use std::sync::Arc;

/// A custom job (PowerShell's class derived from `Job`): a `Job` whose host — this
/// program — does the work elsewhere and drives the job: `set_state` moves it, `write_*`
/// writes its records, `write_progress` and `status_message` report how far it is. Get one
/// from `create_custom_job`; `get_job`, `children` and callbacks give a custom job (or a
/// child of one) as a `CustomJob` too. Wait, receive, stop, remove and `await` work as for
/// any job.
#[pyclass(frozen, extends = Job, module = "bgjob", name = "CustomJob")]
pub(crate) struct CustomJob {
    pub(crate) custom: bgjob::CustomJob,
}

impl CustomJob {
    /// The Python handle of a custom job.
    fn wrap(py: Python<'_>, custom: bgjob::CustomJob) -> PyResult<Bound<'_, CustomJob>> {
        let base = Job {
            job: custom.job().clone(),
        };
        Bound::new(
            py,
            PyClassInitializer::from(base).add_subclass(CustomJob { custom }),
        )
    }

    fn write(&self, stream: bgjob::Stream, obj: &Bound<'_, PyAny>) -> PyResult<()> {
        // A write takes one short lock and never blocks: not worth releasing the
        // interpreter for (the same as `JobContext`'s writes).
        self.custom.write(stream, convert::payload(obj)).py_err()
    }
}

#[pymethods]
impl CustomJob {
    /// The `CustomJob` handle of `job` (a `Job` from anywhere); `InvalidJobStateError`
    /// unless it is a custom job or a child of one. Handles of custom jobs already are
    /// `CustomJob`s: this is for code (and type checkers) that only know it as a `Job`.
    #[staticmethod]
    fn from_job<'py>(job: &Bound<'py, Job>) -> PyResult<Bound<'py, CustomJob>> {
        if let Ok(custom) = job.cast::<CustomJob>() {
            return Ok(custom.clone());
        }
        let custom = bgjob::CustomJob::from_job(job.get().job.clone()).py_err()?;
        CustomJob::wrap(job.py(), custom)
    }

    /// Moves the job to `state` (a `JobState` or its number), with `reason` (for a
    /// failure: why). Only the moves of PowerShell's state machine are allowed: NotStarted
    /// → Running, Stopped or Failed; Running → Completed, Failed, Stopping, Blocked, …;
    /// Stopping → Stopped, Failed or Completed. Any other move, and any move of a parent
    /// (its state follows its children), raises `InvalidJobStateError` and changes nothing.
    /// The job's state-change callbacks run before it returns (unless another thread is
    /// running them already); the interpreter is released meanwhile.
    #[pyo3(signature = (state, reason = None))]
    fn set_state(
        &self,
        py: Python<'_>,
        state: &Bound<'_, PyAny>,
        reason: Option<&str>,
    ) -> PyResult<()> {
        let state = convert::job_state_arg(state)?;
        crate::blocking::detach(py, || self.custom.set_state(state, reason)).py_err()
    }

    /// Writes `obj` (any Python object, kept as it is) to the output stream;
    /// `InvalidJobStateError` once the job is finished.
    fn write_output(&self, obj: &Bound<'_, PyAny>) -> PyResult<()> {
        self.write(bgjob::Stream::Output, obj)
    }

    /// Writes `obj` to the error stream (a non-terminating error: the job may still
    /// complete).
    fn write_error(&self, obj: &Bound<'_, PyAny>) -> PyResult<()> {
        self.write(bgjob::Stream::Error, obj)
    }

    /// Writes `obj` to the warning stream.
    fn write_warning(&self, obj: &Bound<'_, PyAny>) -> PyResult<()> {
        self.write(bgjob::Stream::Warning, obj)
    }

    /// Writes `obj` to the verbose stream.
    fn write_verbose(&self, obj: &Bound<'_, PyAny>) -> PyResult<()> {
        self.write(bgjob::Stream::Verbose, obj)
    }

    /// Writes `obj` to the debug stream.
    fn write_debug(&self, obj: &Bound<'_, PyAny>) -> PyResult<()> {
        self.write(bgjob::Stream::Debug, obj)
    }

    /// Writes `obj` to the information stream.
    fn write_information(&self, obj: &Bound<'_, PyAny>) -> PyResult<()> {
        self.write(bgjob::Stream::Information, obj)
    }

    /// Reports progress: percent complete (0–100, -1 = unknown), activity and status text.
    /// It is a record of the progress stream and the job's `progress`.
    #[pyo3(signature = (percent_complete, activity = "", status = ""))]
    fn write_progress(&self, percent_complete: i32, activity: &str, status: &str) -> PyResult<()> {
        self.custom
            .write_progress(percent_complete, activity, status)
            .py_err()
    }

    /// The job's status message ("" if none); assign to set it.
    #[getter]
    fn get_status_message(&self) -> String {
        self.custom.job().status_message()
    }

    #[setter]
    fn set_status_message(&self, message: &str) {
        self.custom.set_status_message(message);
    }

    /// Child `index` (creation order; negative counts from the end) as a `CustomJob`:
    /// the host drives a parent's children, and the parent follows them. `IndexError` if
    /// there is no such child.
    fn child<'py>(slf: &Bound<'py, Self>, index: isize) -> PyResult<Bound<'py, CustomJob>> {
        let custom = &slf.get().custom;
        let count = custom.job().children().len() as isize;
        let at = if index < 0 { index + count } else { index };
        let child = (0..count)
            .contains(&at)
            .then(|| custom.child(at as usize))
            .flatten()
            .ok_or_else(|| {
                PyIndexError::new_err(format!(
                    "job {} has {count} child jobs, no child {index}",
                    custom.job().id()
                ))
            })?;
        CustomJob::wrap(slf.py(), child)
    }

    fn __repr__(&self) -> String {
        let job = self.custom.job();
        format!("<CustomJob {} {:?} {}>", job.id(), job.name(), job.state())
    }
}

/// The stop handler of a custom job: `on_stop(job)` on the thread that asked the stop.
fn stop_handler(on_stop: Py<PyAny>) -> bgjob::StopHandler {
    Box::new(move |job: &Arc<bgjob::Job>| {
        call_from_bgjob(&on_stop, |_py, cb| {
            cb.call1((JobHandle(job.clone()),))?;
            Ok(())
        })
    })
}

/// The child jobs asked for: a number of unnamed ones, or one per name (None: `Job<id>`).
fn child_names(children: Option<&Bound<'_, PyAny>>) -> PyResult<Vec<Option<String>>> {
    let Some(children) = children else {
        return Ok(Vec::new());
    };
    if children.is_instance_of::<PyString>() {
        return Err(PyTypeError::new_err(
            "children must be a number of child jobs or an iterable of their names, not a str",
        ));
    }
    if children.is_instance_of::<PyInt>() {
        let count: i64 = children.extract()?;
        let count = usize::try_from(count).map_err(|_| {
            InvalidArgumentError::new_err(format!("children must be >= 0, not {count}"))
        })?;
        return Ok(vec![None; count]);
    }
    children
        .try_iter()?
        .map(|name| name?.extract::<Option<String>>())
        .collect()
}

/// Creates a custom job, NotStarted, in the repository, and returns its `CustomJob`: the
/// host does the work (elsewhere) and drives the job with `set_state` and `write_*`.
/// `name` defaults to `Job<id>`; `command`, `type_name` and `location` are what `Job`
/// shows (e.g. the remote command and machine). `children` makes it a parent: a number of
/// child jobs, or an iterable of their names (None for `Job<id>`); the host then drives
/// the children (`child(i)`, `children`) and the parent's state follows theirs.
/// `on_state_changed(job, state_info, previous)` is registered before the job can change.
/// `on_stop(job)` is called once a stop (`job.stop()`, `remove(force=True)`, a parent's
/// stop) moved the job — or each running child — to Stopping, on the thread that asked
/// the stop, after the Stopping callbacks: it should end the foreign work and then call
/// `job.set_state(JobState.Stopped)` (now, or later from another thread); its exception
/// goes to `sys.unraisablehook` and the job stays Stopping. Without `on_stop`, a stop
/// leaves a running job Stopping until its host moves it on. A NotStarted job is Stopped
/// at once, without a call.
#[pyfunction]
#[pyo3(signature = (*, name = None, command = "", type_name = "CustomJob", location = "localhost", children = None, on_stop = None, on_state_changed = None))]
#[pyo3(
    text_signature = "(*, name=None, command='', type_name='CustomJob', location='localhost', children=0, on_stop=None, on_state_changed=None)"
)]
// Each is a keyword argument of the Python function, not a Rust API to bundle.
#[allow(clippy::too_many_arguments)]
pub(crate) fn create_custom_job<'py>(
    py: Python<'py>,
    name: Option<String>,
    command: &str,
    type_name: &str,
    location: &str,
    children: Option<&Bound<'py, PyAny>>,
    on_stop: Option<Bound<'py, PyAny>>,
    on_state_changed: Option<Py<PyAny>>,
) -> PyResult<Bound<'py, CustomJob>> {
    let children = child_names(children)?;
    let mut spec = bgjob::CustomJobSpec::new()
        .command(command)
        .type_name(type_name)
        .location(location);
    if let Some(n) = name {
        spec = spec.name(n);
    }
    for child in children {
        spec = spec.child(child);
    }
    if let Some(cb) = on_stop {
        if !cb.is_callable() {
            return Err(PyTypeError::new_err(format!(
                "on_stop must be a callable, not {}",
                cb.get_type().name()?
            )));
        }
        spec = spec.on_stop_boxed(stop_handler(cb.unbind()));
    }
    if let Some(cb) = on_state_changed {
        spec = spec.on_state_changed_boxed(state_callback(cb));
    }
    // Creating it (and its children) runs no Python: nothing moves before the host does.
    let custom = crate::blocking::detach(py, move || spec.create());
    CustomJob::wrap(py, custom)
}
