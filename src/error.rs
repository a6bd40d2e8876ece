//! The errors of the core. Each maps to one fixed status number of the C ABI
//! (and, later, one Python exception class).

use thiserror::Error;

/// Every error the core reports. The message is what `bgjob_last_error_message()` returns.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum Error {
    /// An argument was malformed: NULL, invalid UTF-8, an out-of-range enum value, …
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// No job has this id (it never existed or was removed).
    #[error("no job with id {0}")]
    NoSuchJob(u64),
    /// No job has this instance id.
    #[error("no job with instance id {0}")]
    NoSuchInstance(String),
    /// The job is not finished and `force` was not given.
    #[error("job {0} is not finished; stop it first or remove it with force")]
    NotFinished(u64),
    /// The job is a child job: it is removed with its parent.
    #[error("job {0} is a child job; remove its parent job instead")]
    ChildJob(u64),
    /// A timeout elapsed before the operation could complete.
    #[error("timed out: {0}")]
    Timeout(String),
    /// The operation is not allowed in the job's current state.
    #[error("invalid state: {0}")]
    InvalidState(String),
    /// The pool was shut down and accepts no more jobs.
    #[error("pool {0} has been shut down")]
    ShutDown(u64),
    /// Waiting here could never end (a job waiting on itself or an ancestor).
    #[error("would deadlock: {0}")]
    WouldDeadlock(String),
    /// Configuration came after the thing it configures was created.
    #[error("already initialized: {0}")]
    AlreadyInitialized(String),
    /// The caller's buffer is too small for the result.
    #[error("buffer too small: {needed} bytes needed")]
    BufferTooSmall {
        /// The size needed, in bytes, without the terminating NUL.
        needed: usize,
    },
    /// Every job a wait still waits for is Blocked waiting for input: only its host can
    /// move it on, so the wait would never end.
    #[error("blocked: {0}")]
    Blocked(String),
    /// The operating system refused a request the caller made: the message names what was
    /// asked and the OS's reason; `errno` is the OS error number.
    #[error("{message}")]
    System {
        /// What was asked and why it failed, e.g. `working directory '/x': No such file
        /// or directory (os error 2)`.
        message: String,
        /// The OS error number (`ENOENT`, …).
        errno: i32,
    },
    /// A panic inside the library was caught at the boundary.
    #[error("panic inside bgjob: {0}")]
    Panic(String),
}

impl Error {
    /// An [`Error::System`] for `what` failing with `err`.
    pub(crate) fn system(what: impl std::fmt::Display, err: &std::io::Error) -> Error {
        Error::System {
            message: format!("{what}: {err}"),
            errno: err.raw_os_error().unwrap_or(0),
        }
    }
}

/// A `Result` whose error is the core's [`Error`].
pub type Result<T> = std::result::Result<T, Error>;

/// A panic payload as text (`panic!` carries a `&str` or a `String`).
pub(crate) fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "panic with a non-text payload".to_string()
    }
}

/// Runs user code `f` (`what` says whose, for the report) where a panic must not unwind:
/// through a state change stored but not yet delivered (its waiters would wait for ever),
/// or out of a pool's worker (the pool would lose the thread). The panic is reported on
/// stderr, as a panicking state-change callback's is, and the library goes on.
pub(crate) fn guard_user_code(what: std::fmt::Arguments<'_>, f: impl FnOnce()) {
    if let Err(payload) = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)) {
        eprintln!("bgjob: {what} panicked: {}", panic_message(&*payload));
    }
}

/// Lets a work function use `?` on bgjob calls: the error's message becomes the reason.
impl From<Error> for String {
    fn from(e: Error) -> String {
        e.to_string()
    }
}
