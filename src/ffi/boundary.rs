//! The panic boundary every export goes through, the thread-local last error, and the
//! checks of what C hands us (NULL, UTF-8, timeouts).

use super::status::{BGJOB_OK, bgjob_status, status_of};
use crate::error::{Error, Result, panic_message};
use std::cell::RefCell;
use std::ffi::{CStr, CString, c_char};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::time::Duration;

thread_local! {
    static LAST_ERROR: RefCell<CString> = RefCell::new(CString::default());
    static LAST_ERRNO: std::cell::Cell<i32> = const { std::cell::Cell::new(0) };
}

/// Records `error` as this thread's last error and returns its status.
pub(crate) fn set_last_error(error: &Error) -> bgjob_status {
    let text = error.to_string().replace('\0', "\u{FFFD}");
    LAST_ERROR.with(|e| *e.borrow_mut() = CString::new(text).unwrap_or_default());
    let errno = match error {
        Error::System { errno, .. } => *errno,
        _ => 0,
    };
    LAST_ERRNO.with(|e| e.set(errno));
    status_of(error)
}

/// This thread's last error's OS error number (0 unless it was `BGJOB_E_SYSTEM`).
pub(crate) fn last_errno() -> i32 {
    LAST_ERRNO.with(|e| e.get())
}

/// A pointer to this thread's last error message (valid until its next failing call).
pub(crate) fn last_error_ptr() -> *const c_char {
    LAST_ERROR.with(|e| e.borrow().as_ptr())
}

/// Runs an export's body: `Ok` → `BGJOB_OK`; an error or a caught panic → its status,
/// with the message kept for `bgjob_last_error_message()`.
pub(crate) fn boundary(body: impl FnOnce() -> Result<()>) -> bgjob_status {
    match catch_unwind(AssertUnwindSafe(body)) {
        Ok(Ok(())) => BGJOB_OK,
        Ok(Err(e)) => set_last_error(&e),
        Err(p) => set_last_error(&Error::Panic(panic_message(&*p))),
    }
}

/// Like [`boundary`] for exports that return a value: `fallback` on error or panic.
pub(crate) fn boundary_value<T>(fallback: T, body: impl FnOnce() -> Result<T>) -> T {
    match catch_unwind(AssertUnwindSafe(body)) {
        Ok(Ok(v)) => v,
        Ok(Err(e)) => {
            set_last_error(&e);
            fallback
        }
        Err(p) => {
            set_last_error(&Error::Panic(panic_message(&*p)));
            fallback
        }
    }
}

/// `ptr` as a reference, or `InvalidArgument` naming `what` if it is NULL.
///
/// # Safety
/// A non-NULL `ptr` must point to a live `T` for `'a`.
pub(crate) unsafe fn non_null<'a, T>(ptr: *const T, what: &str) -> Result<&'a T> {
    // SAFETY: the caller guarantees a non-NULL pointer is valid.
    unsafe { ptr.as_ref() }.ok_or_else(|| Error::InvalidArgument(format!("{what} is NULL")))
}

/// A C string as UTF-8 text; `InvalidArgument` if NULL or not UTF-8.
///
/// # Safety
/// A non-NULL `ptr` must point to a NUL-terminated string.
pub(crate) unsafe fn c_str<'a>(ptr: *const c_char, what: &str) -> Result<&'a str> {
    // SAFETY: as the caller guarantees.
    unsafe { c_str_opt(ptr, what) }?
        .ok_or_else(|| Error::InvalidArgument(format!("{what} is NULL")))
}

/// Like [`c_str`], with NULL meaning "not given".
///
/// # Safety
/// A non-NULL `ptr` must point to a NUL-terminated string.
pub(crate) unsafe fn c_str_opt<'a>(ptr: *const c_char, what: &str) -> Result<Option<&'a str>> {
    if ptr.is_null() {
        return Ok(None);
    }
    // SAFETY: non-NULL and NUL-terminated, as the caller guarantees.
    let s = unsafe { CStr::from_ptr(ptr) };
    s.to_str()
        .map(Some)
        .map_err(|e| Error::InvalidArgument(format!("{what} is not valid UTF-8: {e}")))
}

/// A C timeout in milliseconds: -1 = no limit (`None`), 0 = poll, other negatives refused.
pub(crate) fn timeout_from_ms(ms: i64) -> Result<Option<Duration>> {
    match ms {
        -1 => Ok(None),
        ms if ms >= 0 => Ok(Some(Duration::from_millis(ms as u64))),
        ms => Err(Error::InvalidArgument(format!(
            "timeout {ms} ms: give -1 (BGJOB_INFINITE), 0 (poll) or a positive number"
        ))),
    }
}

/// Text for C: interior NULs (possible in names given from Python) become U+FFFD.
pub(crate) fn to_cstring(s: &str) -> CString {
    CString::new(s.replace('\0', "\u{FFFD}")).unwrap_or_default()
}
