//! Every bgjob error as a Python exception: one base class, one subclass per C status.
//! All error mapping lives here.

use pyo3::create_exception;
use pyo3::exceptions::PyException;
use pyo3::prelude::*;

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
    Ok(())
}
