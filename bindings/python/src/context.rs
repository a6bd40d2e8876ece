//! The work side: running a Python callable as a job's work, and `bgjob.current_job()`,
//! the context through which the work writes records and sees a stop request.

use crate::convert;
use crate::errors::IntoPy;
use pyo3::prelude::*;
use pyo3::types::{PyAny, PyDict, PyTuple};
use std::cell::RefCell;

thread_local! {
    /// The contexts of the Python works running on this thread (innermost last: an inline
    /// run inside a work nests).
    static CURRENT: RefCell<Vec<bgjob::WorkContext>> = const { RefCell::new(Vec::new()) };
}

/// How a Python work ended, kept with the job for `Job.result()`.
pub(crate) enum Outcome {
    /// It returned this value.
    Returned(Py<PyAny>),
    /// It raised this exception.
    Raised(Py<PyAny>),
}

/// What `start_job` runs: the callable with its arguments.
pub(crate) struct PythonWork {
    pub(crate) callable: Py<PyAny>,
    pub(crate) args: Py<PyTuple>,
    pub(crate) kwargs: Option<Py<PyDict>>,
}

impl PythonWork {
    /// Runs on a worker thread: see [`run_attached`].
    pub(crate) fn run(self, ctx: &bgjob::WorkContext) -> bgjob::WorkResult {
        run_attached(ctx, move |py| {
            self.callable
                .bind(py)
                .call(self.args.bind(py), self.kwargs.as_ref().map(|k| k.bind(py)))
        })
    }
}

/// What `start_parallel_job` runs in each child: the callable, shared by every child,
/// called with the child's input.
pub(crate) struct PythonParallelWork {
    pub(crate) callable: Py<PyAny>,
}

impl PythonParallelWork {
    /// Runs on a worker thread: `callable(input)`, see [`run_attached`].
    pub(crate) fn run(&self, ctx: &bgjob::WorkContext) -> bgjob::WorkResult {
        run_attached(ctx, |py| {
            let input = convert::input(py, ctx.input())?;
            self.callable.bind(py).call1((input,))
        })
    }
}

/// Runs `call` as the work of `ctx`'s job, on a worker thread: attaches, makes `ctx` the
/// current job, calls, records the outcome. The return value (unless None) becomes the
/// last output record; an exception fails the job with `Type: message` as its reason and
/// is kept to be re-raised by `result()`. `call` (and what it owns) is dropped attached.
fn run_attached(
    ctx: &bgjob::WorkContext,
    call: impl for<'py> FnOnce(Python<'py>) -> PyResult<Bound<'py, PyAny>>,
) -> bgjob::WorkResult {
    let ran = Python::try_attach(|py| {
        let Some(_inside) = crate::exit::Inside::enter(py, ctx.job_id()) else {
            drop(call);
            return Err("the Python interpreter is exiting".to_string());
        };
        crate::blocking::rearm_deferred_interrupt();
        CURRENT.with(|c| c.borrow_mut().push(ctx.clone()));
        let result = call(py);
        CURRENT.with(|c| c.borrow_mut().pop());
        match result {
            Ok(value) => {
                if !value.is_none() {
                    // A finished or removed job refuses the write; nothing to report.
                    let _ = ctx.write_payload(bgjob::Stream::Output, convert::payload(&value));
                }
                ctx.job()
                    .set_attachment(std::sync::Arc::new(Outcome::Returned(value.unbind())));
                Ok(())
            }
            Err(err) => {
                let reason = exception_reason(py, &err);
                let value = err.into_value(py).into_any();
                ctx.job()
                    .set_attachment(std::sync::Arc::new(Outcome::Raised(value)));
                Err(reason)
            }
        }
    });
    ran.unwrap_or_else(|| Err("the Python interpreter is shutting down".to_string()))
}

fn exception_reason(py: Python<'_>, err: &PyErr) -> String {
    let ty = err
        .get_type(py)
        .name()
        .map(|n| n.to_string())
        .unwrap_or_else(|_| "Exception".into());
    let text = err
        .value(py)
        .str()
        .map(|s| s.to_string())
        .unwrap_or_default();
    if text.is_empty() {
        ty
    } else {
        format!("{ty}: {text}")
    }
}

/// The running job's context, from inside its work: `bgjob.current_job()`.
#[pyclass(frozen, module = "bgjob", name = "JobContext")]
pub(crate) struct JobContext {
    ctx: bgjob::WorkContext,
}

impl JobContext {
    fn write(&self, stream: bgjob::Stream, obj: &Bound<'_, PyAny>) -> PyResult<()> {
        self.ctx
            .write_payload(stream, convert::payload(obj))
            .py_err()
    }
}

#[pymethods]
impl JobContext {
    /// The id of the job this work runs for.
    #[getter]
    fn job_id(&self) -> u64 {
        self.ctx.job_id()
    }

    /// The job this work runs for.
    #[getter]
    fn job(&self) -> crate::job::JobHandle {
        crate::job::JobHandle(self.ctx.job().clone())
    }

    /// Writes `obj` (any Python object, kept as it is) to the output stream.
    fn write_output(&self, obj: &Bound<'_, PyAny>) -> PyResult<()> {
        self.write(bgjob::Stream::Output, obj)
    }

    /// Writes `obj` to the error stream. The job still completes if the work returns.
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
    #[pyo3(signature = (percent_complete, activity = "", status = ""))]
    fn write_progress(&self, percent_complete: i32, activity: &str, status: &str) -> PyResult<()> {
        self.ctx
            .write_progress(percent_complete, activity, status)
            .py_err()
    }

    /// The job's status message; assign to set it.
    #[getter]
    fn get_status_message(&self) -> String {
        self.ctx.job().status_message()
    }

    #[setter]
    fn set_status_message(&self, message: &str) {
        self.ctx.set_status_message(message);
    }

    /// The input this work runs for, in a child of a parallel job (the very object given
    /// to `start_parallel_job`); None in any other job.
    #[getter]
    fn input<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        convert::input(py, self.ctx.input())
    }

    /// Whether a stop was asked: cooperative work checks it and returns early.
    #[getter]
    fn stop_requested(&self) -> bool {
        self.ctx.stop_requested()
    }

    /// A checkpoint (Suspend-Job's cooperation): returns at once unless a suspend of the
    /// job was asked; then the job becomes Suspended here and this parks, with the
    /// interpreter released, until the job is resumed (it returns and the work goes on) or
    /// stopped (it returns: check `stop_requested` after it, and return). Work that never
    /// calls it cannot be suspended: its job stays Suspending until the work ends.
    ///
    /// Ctrl-C reaches Python only on the main thread, so only an inline run there
    /// (`run_job`) can be interrupted while parked: the interrupt stops the job (a job
    /// cannot leave Suspended any other way without a resume) and `KeyboardInterrupt` is
    /// raised from here; the job ends Stopped. On a pool's worker thread it parks until a
    /// resume or stop (at interpreter exit bgjob stops it, so it returns).
    fn checkpoint(&self, py: Python<'_>) -> PyResult<()> {
        // The core's checkpoint acts only on a Suspending job and passes any other state
        // at once, so that case is answered here: a work that checkpoints in a tight loop
        // does not hand the interpreter to other threads at every call. A suspend asked
        // after this look is taken at the next checkpoint, as it would be by the core.
        if self.ctx.job().state() != bgjob::JobState::Suspending {
            return Ok(());
        }
        if crate::blocking::on_main_thread(py)? {
            let ctx = self.ctx.clone();
            return crate::blocking::park_interruptibly(py, self.ctx.job(), move || {
                ctx.checkpoint()
            });
        }
        crate::blocking::detach(py, || self.ctx.checkpoint()).py_err()
    }

    /// Asks the job's host for input: the job becomes Blocked, showing `prompt` (its
    /// `Job.prompt`), and this parks, with the interpreter released, until the host sends
    /// input with `Job.send_input(obj)` — it returns that very object (`bytes` if a C
    /// host sent it) and the job runs again — or stops the job: then it raises
    /// `InvalidJobStateError` (and `stop_requested` is true). A wait on jobs that are all
    /// Blocked raises `JobsBlockedError` instead of hanging.
    ///
    /// Ctrl-C while parked: as for `checkpoint`, only an inline run on the main thread can
    /// be interrupted; the interrupt stops the job and raises `KeyboardInterrupt` here.
    #[pyo3(signature = (prompt = ""))]
    fn read_input<'py>(&self, py: Python<'py>, prompt: &str) -> PyResult<Bound<'py, PyAny>> {
        let input = if crate::blocking::on_main_thread(py)? {
            let ctx = self.ctx.clone();
            let prompt = prompt.to_string();
            crate::blocking::park_interruptibly(py, self.ctx.job(), move || {
                ctx.read_input(&prompt)
            })?
        } else {
            crate::blocking::detach(py, || self.ctx.read_input(prompt)).py_err()?
        };
        convert::payload_value(py, &input)
    }

    /// Fails the job with `reason` when the work returns, whatever it returns.
    fn fail(&self, reason: &str) {
        self.ctx.fail(reason);
    }

    fn __repr__(&self) -> String {
        format!("<JobContext of job {}>", self.ctx.job_id())
    }
}

/// The context of the job whose work is running on this thread, or None outside a job.
#[pyfunction]
pub(crate) fn current_job() -> Option<JobContext> {
    CURRENT.with(|c| c.borrow().last().cloned().map(|ctx| JobContext { ctx }))
}
