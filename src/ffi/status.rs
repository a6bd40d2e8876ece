//! Status codes (fixed numbers, never reused), their names, and the last error message.

use super::boundary::last_error_ptr;
use crate::error::Error;
use std::ffi::c_char;

/// The result of every fallible function: `BGJOB_OK` (0) or one of the `BGJOB_E_*` codes.
pub type bgjob_status = u32;

/// Success.
pub const BGJOB_OK: bgjob_status = 0;
/// An argument was malformed: NULL, invalid UTF-8, an out-of-range enum value or flag.
pub const BGJOB_E_INVALID_ARGUMENT: bgjob_status = 1;
/// No job has this id or instance id (it never existed, or it was removed).
pub const BGJOB_E_NO_SUCH_JOB: bgjob_status = 2;
/// The job is not finished; remove it with force, or stop it first.
pub const BGJOB_E_NOT_FINISHED: bgjob_status = 3;
/// The job is a child job; remove its parent instead.
pub const BGJOB_E_CHILD_JOB: bgjob_status = 4;
/// The timeout elapsed first. Out-parameters still hold what was found.
pub const BGJOB_E_TIMEOUT: bgjob_status = 5;
/// Not allowed in the job's current state (e.g. writing after the job finished).
pub const BGJOB_E_INVALID_STATE: bgjob_status = 6;
/// The pool was shut down and accepts no more jobs.
pub const BGJOB_E_SHUT_DOWN: bgjob_status = 7;
/// The wait could never end (a job waiting on itself or on its parent).
pub const BGJOB_E_WOULD_DEADLOCK: bgjob_status = 8;
/// Configuration came too late (the default pool already exists).
pub const BGJOB_E_ALREADY_INITIALIZED: bgjob_status = 9;
/// The caller's buffer is too small.
pub const BGJOB_E_BUFFER_TOO_SMALL: bgjob_status = 10;
/// A bug: a panic inside bgjob was caught at the boundary. The message says where.
pub const BGJOB_E_PANIC: bgjob_status = 11;
/// Every job the wait still waits for is Blocked waiting for input (see
/// `bgjob_send_input`): only the host can move them on, so the wait would never end.
pub const BGJOB_E_BLOCKED: bgjob_status = 12;
/// The operating system refused what was asked, e.g. a process job's working directory
/// does not exist. The message names the request and the OS's reason
/// (`bgjob_last_error_errno` gives the error number).
pub const BGJOB_E_SYSTEM: bgjob_status = 13;

pub(crate) fn status_of(e: &Error) -> bgjob_status {
    match e {
        Error::InvalidArgument(_) => BGJOB_E_INVALID_ARGUMENT,
        Error::NoSuchJob(_) | Error::NoSuchInstance(_) => BGJOB_E_NO_SUCH_JOB,
        Error::NotFinished(_) => BGJOB_E_NOT_FINISHED,
        Error::ChildJob(_) => BGJOB_E_CHILD_JOB,
        Error::Timeout(_) => BGJOB_E_TIMEOUT,
        Error::InvalidState(_) => BGJOB_E_INVALID_STATE,
        Error::ShutDown(_) => BGJOB_E_SHUT_DOWN,
        Error::WouldDeadlock(_) => BGJOB_E_WOULD_DEADLOCK,
        Error::AlreadyInitialized(_) => BGJOB_E_ALREADY_INITIALIZED,
        Error::BufferTooSmall { .. } => BGJOB_E_BUFFER_TOO_SMALL,
        Error::Panic(_) => BGJOB_E_PANIC,
        Error::Blocked(_) => BGJOB_E_BLOCKED,
        Error::System { .. } => BGJOB_E_SYSTEM,
    }
}

/// The name of a status code (`"BGJOB_E_TIMEOUT"`), or `"BGJOB_E_UNKNOWN"`. Never NULL;
/// the string is static.
#[unsafe(no_mangle)]
pub extern "C" fn bgjob_status_name(status: bgjob_status) -> *const c_char {
    let name: &'static [u8] = match status {
        BGJOB_OK => b"BGJOB_OK\0",
        BGJOB_E_INVALID_ARGUMENT => b"BGJOB_E_INVALID_ARGUMENT\0",
        BGJOB_E_NO_SUCH_JOB => b"BGJOB_E_NO_SUCH_JOB\0",
        BGJOB_E_NOT_FINISHED => b"BGJOB_E_NOT_FINISHED\0",
        BGJOB_E_CHILD_JOB => b"BGJOB_E_CHILD_JOB\0",
        BGJOB_E_TIMEOUT => b"BGJOB_E_TIMEOUT\0",
        BGJOB_E_INVALID_STATE => b"BGJOB_E_INVALID_STATE\0",
        BGJOB_E_SHUT_DOWN => b"BGJOB_E_SHUT_DOWN\0",
        BGJOB_E_WOULD_DEADLOCK => b"BGJOB_E_WOULD_DEADLOCK\0",
        BGJOB_E_ALREADY_INITIALIZED => b"BGJOB_E_ALREADY_INITIALIZED\0",
        BGJOB_E_BUFFER_TOO_SMALL => b"BGJOB_E_BUFFER_TOO_SMALL\0",
        BGJOB_E_PANIC => b"BGJOB_E_PANIC\0",
        BGJOB_E_BLOCKED => b"BGJOB_E_BLOCKED\0",
        BGJOB_E_SYSTEM => b"BGJOB_E_SYSTEM\0",
        _ => b"BGJOB_E_UNKNOWN\0",
    };
    name.as_ptr().cast()
}

/// The message of the calling thread's last failed call ("" if none yet). Never NULL; valid
/// until the thread's next failing call. Calls that succeed leave it unchanged.
#[unsafe(no_mangle)]
pub extern "C" fn bgjob_last_error_message() -> *const c_char {
    last_error_ptr()
}

/// The OS error number (`errno` value, e.g. `ENOENT`) of the calling thread's last failed
/// call if it failed with `BGJOB_E_SYSTEM`; 0 if it failed otherwise (or none failed yet).
#[unsafe(no_mangle)]
pub extern "C" fn bgjob_last_error_errno() -> i32 {
    super::boundary::last_errno()
}

/// Whether this build of the library catches its own panics at the C boundary: true when
/// built with Rust's default `panic = "unwind"` (a panic becomes `BGJOB_E_PANIC` and the
/// library goes on), false when built with `panic = "abort"` (a panic ends the process, as
/// `abort()` would). Nothing in the library panics on purpose; this says what a bug would do.
#[unsafe(no_mangle)]
pub extern "C" fn bgjob_catches_panics() -> bool {
    cfg!(panic = "unwind")
}

/// Panics inside the library on purpose and returns what the panic boundary makes of it:
/// always `BGJOB_E_PANIC`, with `message` in the last error message. For hosts and tests
/// that check that no panic crosses into C. `message` may be NULL. In a build where
/// `bgjob_catches_panics()` is false the panic ends the process instead.
///
/// # Safety
/// `message` is NULL or a NUL-terminated string.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn bgjob_selftest_panic(message: *const c_char) -> bgjob_status {
    super::boundary(|| {
        // SAFETY: as documented for the caller.
        let m = unsafe { super::c_str_opt(message, "message") }?.unwrap_or("selftest");
        panic!("{m}")
    })
}
