//! Every bgjob error as a Python exception: one base class, one subclass per C status.
//! All error mapping lives here.

use pyo3::create_exception;
use pyo3::exceptions::PyException;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyDict, PyTuple, PyType};

create_exception!(
    bgjob,
    JobError,
    PyException,
    "Base class of every error bgjob raises."
);
create_exception!(
    bgjob,
    InvalidArgumentError,
    JobError,
    "An argument was malformed (a bad value, type or combination)."
);
create_exception!(
    bgjob,
    NoSuchJobError,
    JobError,
    "No job has this id or instance id: it never existed, or it was removed."
);
create_exception!(
    bgjob,
    JobNotFinishedError,
    JobError,
    "The job is not finished: stop it first, or remove it with force=True."
);
create_exception!(
    bgjob,
    ChildJobError,
    JobError,
    "The job is a child job: remove its parent instead."
);
create_exception!(
    bgjob,
    JobTimeoutError,
    JobError,
    "The timeout elapsed before the operation could complete."
);
create_exception!(
    bgjob,
    InvalidJobStateError,
    JobError,
    "The operation is not allowed in the job's current state."
);
create_exception!(
    bgjob,
    PoolShutDownError,
    JobError,
    "The pool was shut down and accepts no more jobs."
);
create_exception!(
    bgjob,
    WouldDeadlockError,
    JobError,
    "The wait could never end (a job waiting on itself, or a callback on a later change of its own job)."
);
// A sibling of WouldDeadlockError, not a subclass: the C ABI gives it a status of its own
// (BGJOB_E_BLOCKED), and the fitting reaction differs. WouldDeadlockError is a bug of the
// program (no one can ever end that wait); JobsBlockedError is a request of the jobs: their
// host answers the prompts (`Job.send_input`) and waits again. A handler of the first must
// not swallow the second as a bug.
create_exception!(
    bgjob,
    JobsBlockedError,
    JobError,
    "Every job the wait still waits for is Blocked waiting for input (PowerShell's BlockedJobsDeadlockWithWaitJob): only its host can move it on, so the wait gives up rather than hang. Answer each job's `prompt` with `Job.send_input`, then wait again."
);
create_exception!(
    bgjob,
    AlreadyInitializedError,
    JobError,
    "Configuration came too late: the default pool already exists."
);
create_exception!(
    bgjob,
    JobFailedError,
    JobError,
    "The job failed without a Python exception of its own to re-raise; the message is its reason."
);
create_exception!(
    bgjob,
    JobStoppedError,
    JobError,
    "The job was stopped, so it has no result."
);
create_exception!(
    bgjob,
    InternalError,
    JobError,
    "A bug inside bgjob was caught (a Rust panic); please report it."
);

/// The docstring of `JobOSError`.
const JOB_OS_ERROR_DOC: &str = "The operating system refused something the call asked for (a process job's \
working directory that does not exist or is not a directory, ...): nothing was started. \
Both a `JobError` and an `OSError`, so `except OSError` catches it too. `errno` is the OS \
error number (compare with the `errno` module), `strerror` its text, `filename` the path \
concerned (the working directory given) or None; `str()` is bgjob's message, which says \
what was asked and why it failed.";

/// `bgjob.JobOSError`, a subclass of both `JobError` and the builtin `OSError`: made once
/// with `type()`, since `create_exception!` takes one base. Its `__str__` is
/// `BaseException.__str__`, so that it shows bgjob's message rather than `OSError`'s
/// `[Errno n] strerror` built from the attributes.
pub(crate) fn job_os_error_type(py: Python<'_>) -> PyResult<&Bound<'_, PyType>> {
    static CELL: PyOnceLock<Py<PyType>> = PyOnceLock::new();
    CELL.get_or_try_init(py, || {
        let builtins = py.import("builtins")?;
        let namespace = PyDict::new(py);
        namespace.set_item("__module__", "bgjob")?;
        namespace.set_item("__doc__", JOB_OS_ERROR_DOC)?;
        namespace.set_item(
            "__str__",
            builtins.getattr("BaseException")?.getattr("__str__")?,
        )?;
        let bases = PyTuple::new(
            py,
            [
                py.get_type::<JobError>().into_any(),
                py.get_type::<pyo3::exceptions::PyOSError>().into_any(),
            ],
        )?;
        let ty = builtins
            .getattr("type")?
            .call1(("JobOSError", bases, namespace))?;
        Ok::<_, PyErr>(ty.cast_into::<PyType>()?.unbind())
    })
    .map(|t| t.bind(py))
}

/// A `JobOSError` with bgjob's `message` as its text and `errno`, `strerror` (the OS's text
/// for `errno`) and `filename` (None unless given) set.
pub(crate) fn os_error(
    py: Python<'_>,
    message: &str,
    errno: i32,
    filename: Option<&Bound<'_, PyAny>>,
) -> PyErr {
    let build = || -> PyResult<Bound<'_, PyAny>> {
        let e = job_os_error_type(py)?.call1((message,))?;
        e.setattr("errno", errno)?;
        e.setattr(
            "strerror",
            py.import("os")?.call_method1("strerror", (errno,))?,
        )?;
        if let Some(f) = filename {
            e.setattr("filename", f)?;
        }
        Ok(e)
    };
    match build() {
        Ok(e) => PyErr::from_value(e),
        Err(failed) => failed,
    }
}

/// The Python exception for a core error, carrying the core's message.
pub(crate) fn to_py(e: bgjob::Error) -> PyErr {
    use bgjob::Error as E;
    let msg = e.to_string();
    match e {
        E::InvalidArgument(_) | E::BufferTooSmall { .. } => InvalidArgumentError::new_err(msg),
        E::NoSuchJob(_) | E::NoSuchInstance(_) => NoSuchJobError::new_err(msg),
        E::NotFinished(_) => JobNotFinishedError::new_err(msg),
        E::ChildJob(_) => ChildJobError::new_err(msg),
        E::Timeout(_) => JobTimeoutError::new_err(msg),
        E::InvalidState(_) => InvalidJobStateError::new_err(msg),
        E::ShutDown(_) => PoolShutDownError::new_err(msg),
        E::WouldDeadlock(_) => WouldDeadlockError::new_err(msg),
        E::Blocked(_) => JobsBlockedError::new_err(msg),
        E::AlreadyInitialized(_) => AlreadyInitializedError::new_err(msg),
        E::Panic(_) => InternalError::new_err(msg),
        // Raised where a Python thread waits for the answer: attaching is a no-op there.
        E::System { message, errno } => Python::attach(|py| os_error(py, &message, errno, None)),
    }
}

/// `Result<T, bgjob::Error>` → `PyResult<T>`.
pub(crate) trait IntoPy<T> {
    fn py_err(self) -> PyResult<T>;
}

impl<T> IntoPy<T> for Result<T, bgjob::Error> {
    fn py_err(self) -> PyResult<T> {
        self.map_err(to_py)
    }
}

pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    m.add("JobError", py.get_type::<JobError>())?;
    m.add(
        "InvalidArgumentError",
        py.get_type::<InvalidArgumentError>(),
    )?;
    m.add("NoSuchJobError", py.get_type::<NoSuchJobError>())?;
    m.add("JobNotFinishedError", py.get_type::<JobNotFinishedError>())?;
    m.add("ChildJobError", py.get_type::<ChildJobError>())?;
    m.add("JobTimeoutError", py.get_type::<JobTimeoutError>())?;
    m.add(
        "InvalidJobStateError",
        py.get_type::<InvalidJobStateError>(),
    )?;
    m.add("PoolShutDownError", py.get_type::<PoolShutDownError>())?;
    m.add("WouldDeadlockError", py.get_type::<WouldDeadlockError>())?;
    m.add("JobsBlockedError", py.get_type::<JobsBlockedError>())?;
    m.add(
        "AlreadyInitializedError",
        py.get_type::<AlreadyInitializedError>(),
    )?;
    m.add("JobFailedError", py.get_type::<JobFailedError>())?;
    m.add("JobStoppedError", py.get_type::<JobStoppedError>())?;
    m.add("InternalError", py.get_type::<InternalError>())?;
    m.add("JobOSError", job_os_error_type(py)?)?;
    Ok(())
}
