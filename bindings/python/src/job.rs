//! `bgjob.Job`: a handle to one job of the repository, with PowerShell's verbs as methods.

use crate::blocking::{call_from_bgjob, sliced, timeout_arg};
use crate::context::Outcome;
use crate::convert;
use crate::custom::CustomJob;
use crate::errors::{IntoPy, JobFailedError, JobStoppedError, JobTimeoutError};
use bgjob::{JobState, ReceiveOptions, WaitMode};
use pyo3::PyClassInitializer;
use pyo3::prelude::*;
use pyo3::types::{PyAny, PyList};
use std::sync::Arc;
use std::time::Duration;

/// A background job (PowerShell's `Job`). Get one from `start_job`, `get_job` or
/// `get_jobs`; every handle to the same job compares equal. A custom job's handle is a
/// `CustomJob`, the subclass through which its host drives it.
#[pyclass(frozen, subclass, module = "bgjob", name = "Job", weakref)]
pub(crate) struct Job {
    pub(crate) job: Arc<bgjob::Job>,
}

/// A job as Python sees it: a `CustomJob` for a custom job (or a child of one), so that
/// whoever gets it — from `get_job`, `children`, a callback — can drive it; else a `Job`.
pub(crate) struct JobHandle(pub(crate) Arc<bgjob::Job>);

impl<'py> IntoPyObject<'py> for JobHandle {
    type Target = PyAny;
    type Output = Bound<'py, PyAny>;
    type Error = PyErr;

    fn into_pyobject(self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let job = self.0;
        if job.is_host_driven()
            && let Ok(custom) = bgjob::CustomJob::from_job(job.clone())
        {
            let init = PyClassInitializer::from(Job { job }).add_subclass(CustomJob { custom });
            return Ok(Bound::new(py, init)?.into_any());
        }
        Ok(Bound::new(py, Job { job })?.into_any())
    }
}

/// A state-change callback as the core calls it: `callback(job, state_info, previous)`.
pub(crate) fn state_callback(callback: Py<PyAny>) -> bgjob::StateCallback {
    Box::new(move |e: &bgjob::StateChangedEvent| {
        call_from_bgjob(&callback, |py, cb| {
            cb.call1((
                JobHandle(e.job.clone()),
                convert::state_info(py, &e.state_info)?,
                convert::state_info(py, &e.previous_state_info)?,
            ))?;
            Ok(())
        })
    })
}

/// The end of a `bgjob.Executor` task's job: the work itself delivers its result to the
/// future, so only a job that finished without ever running (stopped while queued, or its
/// pool shut down) needs Python: `not_run(job)`. Either way the job is then removed, from
/// here. Every other change returns before taking the GIL: one trip into the interpreter
/// per task, the work's.
pub(crate) fn task_end_callback(not_run: Py<PyAny>) -> bgjob::StateCallback {
    Box::new(move |e: &bgjob::StateChangedEvent| {
        if !e.state_info.state.is_finished() {
            return;
        }
        if e.previous_state_info.state == bgjob::JobState::NotStarted {
            call_from_bgjob(&not_run, |_py, cb| {
                cb.call1((JobHandle(e.job.clone()),))?;
                Ok(())
            });
        }
        // A callback may remove its own job; a failure means someone removed it first.
        let _ = bgjob::remove_job(e.job.id(), false);
    })
}

/// Waits (interruptibly) until `job` is done; false on timeout.
/// With `force` (Wait-Job -Force) it waits until the job is finished: a forced wait does
/// not stop at Suspended or Disconnected.
pub(crate) fn wait_done_with(
    py: Python<'_>,
    job: &Arc<bgjob::Job>,
    timeout: Option<Duration>,
    force: bool,
) -> PyResult<bool> {
    let jobs = [job.clone()];
    Ok(sliced(py, timeout, |slice| {
        let r = if force {
            bgjob::wait_jobs_forced(&jobs, WaitMode::All, Some(slice))?
        } else {
            bgjob::wait_jobs(&jobs, WaitMode::All, Some(slice))?
        };
        Ok((!r.timed_out).then_some(()))
    })?
    .is_some())
}

/// `Err(Blocked)` if `job` is Blocked waiting for input, as the core's wait reports it (a
/// wait of a nanosecond asks it). The core's wait for records does not check: without
/// this, `receive(wait=True)` on a Blocked job would sit out its whole timeout.
fn fail_if_blocked(job: &Arc<bgjob::Job>) -> bgjob::Result<()> {
    bgjob::wait_jobs(
        std::slice::from_ref(job),
        WaitMode::All,
        Some(Duration::from_nanos(1)),
    )
    .map(drop)
}

/// Stops `job`, waiting (interruptibly) up to `timeout` for it to finish.
pub(crate) fn stop(
    py: Python<'_>,
    job: &Arc<bgjob::Job>,
    timeout: Option<Duration>,
) -> PyResult<()> {
    let done = sliced(py, timeout, |slice| {
        match bgjob::stop_job(job, Some(slice)) {
            Ok(()) => Ok(Some(())),
            Err(bgjob::Error::Timeout(_)) => Ok(None),
            Err(e) => Err(e),
        }
    })?;
    match done {
        Some(()) => Ok(()),
        None => Err(JobTimeoutError::new_err(format!(
            "job {} is still {} after the stop timeout",
            job.id(),
            job.state()
        ))),
    }
}

/// Removes `job`; with `force` an unfinished one is stopped first (interruptibly).
pub(crate) fn remove(py: Python<'_>, job: &Arc<bgjob::Job>, force: bool) -> PyResult<()> {
    if force && !job.state().is_finished() && !job.is_child() {
        stop(py, job, None)?;
    }
    let id = job.id();
    crate::blocking::detach(py, || bgjob::remove_job(id, force)).py_err()
}

#[pymethods]
impl Job {
    /// The job's id: process-wide, increasing, never reused.
    #[getter]
    fn id(&self) -> u64 {
        self.job.id()
    }

    /// The job's instance id, a random `uuid.UUID` (version 4).
    #[getter]
    fn instance_id<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        py.import("uuid")?
            .getattr("UUID")?
            .call1((self.job.instance_id().to_string(),))
    }

    /// The job's name (default `Job<id>`).
    #[getter]
    fn name(&self) -> &str {
        self.job.name()
    }

    /// What the job runs, as text (the callable's qualified name for a Python job; the
    /// argv as typed in a shell, quoted where needed, for a process job).
    #[getter]
    fn command(&self) -> &str {
        self.job.command()
    }

    /// `ThreadJob`, `ProcessJob`, … (PowerShell's PSJobTypeName).
    #[getter]
    fn type_name(&self) -> &str {
        self.job.type_name()
    }

    /// Where the job runs: `localhost`, or what a custom job's host said.
    #[getter]
    fn location(&self) -> &str {
        self.job.location()
    }

    /// The current state, a `JobState`.
    #[getter]
    fn state<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        convert::job_state(py, self.job.state())
    }

    /// The current state and, if an error caused it, the reason: a `JobStateInfo`.
    #[getter]
    fn state_info<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        convert::state_info(py, &self.job.state_info())
    }

    /// The child jobs, in creation order (empty for a leaf job).
    #[getter]
    fn children(&self) -> Vec<JobHandle> {
        self.job.children().iter().cloned().map(JobHandle).collect()
    }

    /// The parent job, or None for a top-level job.
    #[getter]
    fn parent(&self) -> Option<JobHandle> {
        self.job.parent().map(JobHandle)
    }

    /// The status message the work (or a custom job's host) set ("" if none; a parent
    /// shows `n/total completed`).
    #[getter]
    fn status_message(&self) -> String {
        self.job.status_message()
    }

    /// When the job first ran (an aware UTC `datetime`), or None.
    #[getter]
    fn begin_time<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        convert::datetime(py, self.job.begin_time())
    }

    /// When the job finished (an aware UTC `datetime`), or None.
    #[getter]
    fn end_time<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        convert::datetime(py, self.job.end_time())
    }

    /// True while the job or its children hold records not yet received.
    #[getter]
    fn has_more_data(&self) -> bool {
        self.job.has_more_data()
    }

    /// The latest progress report (`ProgressRecord`), or None.
    #[getter]
    fn progress<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        match self.job.progress() {
            None => Ok(py.None().into_bound(py)),
            Some(p) => convert::progress_type(py)?.call1((
                p.percent_complete,
                p.activity.as_str(),
                p.status_description.as_str(),
            )),
        }
    }

    /// Wait-Job: blocks until the job is finished (or Suspended/Disconnected) and the
    /// callbacks of that change have run, or `timeout` seconds pass (None = no limit,
    /// 0 = poll). Returns whether it is done. Raises `JobsBlockedError` rather than hang
    /// when the job is Blocked waiting for input. Releases the interpreter; Ctrl-C
    /// interrupts. With `force` (Wait-Job -Force) it waits until the job is finished: it
    /// does not stop at Suspended or Disconnected.
    #[pyo3(signature = (timeout = None, force = false))]
    fn wait(&self, py: Python<'_>, timeout: Option<f64>, force: bool) -> PyResult<bool> {
        let done = if force {
            self.job.is_done_forced()
        } else {
            self.job.is_done()
        };
        if timeout != Some(0.0) && !done {
            // Refuse, rather than hang on, a wait that could never end.
            self.job.check_can_wait().py_err()?;
        }
        wait_done_with(py, &self.job, timeout_arg(timeout)?, force)
    }

    /// Receive-Job: the records the job (and its children) wrote, in time order. Output
    /// values come as they were written (with `as_records`, wrapped as `OutputRecord`s,
    /// whose `job_id` tells which child of a parent wrote them); records of other streams
    /// as `ErrorRecord`, `WarningRecord`, …, progress as `ProgressRecord`. `keep` copies
    /// instead of taking; `max` takes at most that many (the rest stay); `wait` first
    /// blocks until the job is finished or `max` records are there, up to `timeout`
    /// seconds (`JobsBlockedError` if they cannot come: the job is Blocked waiting for
    /// input); `auto_remove` (with `wait`) removes the finished job afterwards.
    #[pyo3(signature = (keep = false, max = None, wait = false, timeout = None, auto_remove = false, as_records = false))]
    // Each is a keyword argument of the Python method, not a Rust API to bundle.
    #[allow(clippy::too_many_arguments)]
    fn receive<'py>(
        &self,
        py: Python<'py>,
        keep: bool,
        max: Option<usize>,
        wait: bool,
        timeout: Option<f64>,
        auto_remove: bool,
        as_records: bool,
    ) -> PyResult<Bound<'py, PyList>> {
        if auto_remove && (keep || !wait) {
            return Err(crate::errors::InvalidArgumentError::new_err(
                "auto_remove=True goes with wait=True and keep=False",
            ));
        }
        if max == Some(0) {
            return Err(crate::errors::InvalidArgumentError::new_err(
                "max must be a positive number or None",
            ));
        }
        if wait {
            let timeout = timeout_arg(timeout)?;
            sliced(py, timeout, |slice| {
                if let Err(blocked) = fail_if_blocked(&self.job) {
                    // Blocked with the records asked for already there: they are the answer.
                    return if self.job.wait_for_records(max, Some(Duration::ZERO))? {
                        Ok(Some(()))
                    } else {
                        Err(blocked)
                    };
                }
                Ok(self.job.wait_for_records(max, Some(slice))?.then_some(()))
            })?;
        }
        let records = self
            .job
            .receive(ReceiveOptions {
                keep,
                max,
                wait: false,
                timeout: None,
            })
            .py_err()?;
        let out = PyList::empty(py);
        for r in &records {
            out.append(convert::record(py, r, as_records)?)?;
        }
        drop(records);
        if auto_remove && self.job.state().is_finished() && !self.job.has_more_data() {
            // Someone else may have removed it meanwhile; the records are ours either way.
            let _ = remove(py, &self.job, false);
        }
        Ok(out)
    }

    /// Stop-Job: asks the job to stop and waits up to `timeout` seconds (None = no limit)
    /// until it is finished; raises `JobTimeoutError` if it is still Stopping then. A
    /// queued job becomes Stopped at once and never runs.
    #[pyo3(signature = (timeout = None))]
    fn stop(&self, py: Python<'_>, timeout: Option<f64>) -> PyResult<()> {
        stop(py, &self.job, timeout_arg(timeout)?)
    }

    /// Remove-Job: removes the finished job and frees its records. An unfinished job raises
    /// `JobNotFinishedError` unless `force`, which stops it first.
    #[pyo3(signature = (force = false))]
    fn remove(&self, py: Python<'_>, force: bool) -> PyResult<()> {
        remove(py, &self.job, force)
    }

    /// Suspend-Job: a Running job becomes Suspending, and Suspended when its work reaches
    /// its next `JobContext.checkpoint()`, where the work parks until `resume()` (or a
    /// stop). A parent suspends its running children and is Suspended once each is
    /// Suspended or finished. Suspended is persistent: `wait()` returns there. Returns at
    /// once; suspending a Suspending or Suspended job does nothing; any other state (a
    /// queued or finished job) raises `InvalidJobStateError`. Work that never checkpoints
    /// stays Suspending until it ends.
    fn suspend(&self, py: Python<'_>) -> PyResult<()> {
        // Released: the change's callbacks run on this thread and attach by themselves.
        crate::blocking::detach(py, || self.job.suspend()).py_err()
    }

    /// Resume-Job: a Suspended job runs again (its work's checkpoint returns); a job still
    /// Suspending will not park. A parent resumes its children. Resuming a job that is
    /// neither does nothing.
    fn resume(&self, py: Python<'_>) -> PyResult<()> {
        crate::blocking::detach(py, || self.job.resume()).py_err()
    }

    /// Answers a job that is Blocked waiting for input (its `prompt` says what it asks):
    /// its work's `JobContext.read_input()` returns `obj` — the very object, not a copy —
    /// and the job runs again. Raises `InvalidJobStateError` if the job is not Blocked (a
    /// parent never asks itself: answer its Blocked child).
    fn send_input(&self, py: Python<'_>, obj: &Bound<'_, PyAny>) -> PyResult<()> {
        let input = convert::payload(obj);
        crate::blocking::detach(py, || self.job.send_input(input)).py_err()
    }

    /// What the job's work asks its host while the job is Blocked waiting for input (the
    /// `prompt` given to `JobContext.read_input`); None in any other state.
    #[getter]
    fn prompt(&self) -> Option<String> {
        self.job.prompt()
    }

    /// Registers `callback(job, state_info, previous_state_info)` for the job's later state
    /// changes. It runs on a bgjob thread; an exception goes to `sys.unraisablehook`.
    /// Returns a `Registration` whose `unregister()` ends it.
    fn on_state_changed(&self, callback: Py<PyAny>) -> crate::Registration {
        let id = self.job.on_state_changed(state_callback(callback));
        crate::Registration::new(Some(self.job.clone()), id)
    }

    /// Like `concurrent.futures.Future.result`: waits up to `timeout` seconds, then returns
    /// the work's return value, or re-raises its exception (`JobFailedError` if it has
    /// none), or raises `JobStoppedError` if it was stopped; `JobTimeoutError` if it is not
    /// finished by then (also when it stops at Suspended); `JobsBlockedError` if it is
    /// Blocked waiting for input.
    /// A process job has no return value: its result is the list of its output records
    /// (stdout lines) not yet received — kept, not taken, so call it before `receive()` —
    /// and a process that exited non-zero (or could not start) raises `JobFailedError`
    /// with the job's reason.
    #[pyo3(signature = (timeout = None))]
    fn result(&self, py: Python<'_>, timeout: Option<f64>) -> PyResult<Py<PyAny>> {
        if timeout != Some(0.0) && !self.job.state().is_finished() {
            self.wait(py, timeout, false)?;
        }
        outcome(py, &self.job)
    }

    /// `await job`: the result (as `result()`), without blocking the event loop.
    fn __await__<'py>(slf: Bound<'py, Self>) -> PyResult<Bound<'py, PyAny>> {
        let py = slf.py();
        py.import("bgjob._aio")?
            .call_method1("job_result_future", (slf,))?
            .call_method0("__await__")
    }

    fn __repr__(&self) -> String {
        format!(
            "<Job {} {:?} {}>",
            self.job.id(),
            self.job.name(),
            self.job.state()
        )
    }

    fn __eq__(&self, other: &Bound<'_, PyAny>) -> bool {
        other
            .cast::<Job>()
            .is_ok_and(|o| o.get().job.id() == self.job.id())
    }

    fn __hash__(&self) -> u64 {
        self.job.id()
    }
}

/// Whether `job` is a process job (started by `start_process_job` or `run_process_job`;
/// a custom job's host may name its type `ProcessJob` too).
fn is_process_job(job: &bgjob::Job) -> bool {
    job.type_name() == "ProcessJob" && !job.is_host_driven()
}

/// A process job's result: its output records not yet received (kept, not taken).
fn process_output<'py>(py: Python<'py>, job: &Arc<bgjob::Job>) -> PyResult<Bound<'py, PyList>> {
    let records = job
        .receive(ReceiveOptions {
            keep: true,
            ..ReceiveOptions::default()
        })
        .py_err()?;
    let out = PyList::empty(py);
    for r in records.iter().filter(|r| r.stream == bgjob::Stream::Output) {
        out.append(convert::payload_value(py, &r.payload)?)?;
    }
    Ok(out)
}

/// The outcome of a finished job: its value, or its exception raised.
pub(crate) fn outcome(py: Python<'_>, job: &Arc<bgjob::Job>) -> PyResult<Py<PyAny>> {
    let info = job.state_info();
    match info.state {
        JobState::Completed => Ok(match job.attachment() {
            Some(a) => match a.downcast_ref::<Outcome>() {
                Some(Outcome::Returned(v)) => v.clone_ref(py),
                _ => py.None(),
            },
            None if is_process_job(job) => process_output(py, job)?.into_any().unbind(),
            None => py.None(),
        }),
        JobState::Failed => {
            if let Some(a) = job.attachment()
                && let Some(Outcome::Raised(e)) = a.downcast_ref::<Outcome>()
            {
                return Err(PyErr::from_value(e.bind(py).clone()));
            }
            Err(JobFailedError::new_err(
                info.reason
                    .as_deref()
                    .unwrap_or("the job failed")
                    .to_string(),
            ))
        }
        JobState::Stopped => Err(JobStoppedError::new_err(format!(
            "job {} was stopped",
            job.id()
        ))),
        s => Err(JobTimeoutError::new_err(format!(
            "job {} is {s}, not finished",
            job.id()
        ))),
    }
}
