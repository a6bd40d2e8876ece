//! What a C work function can do through its `bgjob_context`.

use super::status::bgjob_status;
use super::types::{bgjob_stream, stream_from_c};
use super::{boundary, boundary_value, c_str, c_str_opt, non_null};
use crate::context::WorkContext;
use crate::error::Error;
use crate::record::Payload;
use std::ffi::{c_char, c_void};

/// The context of a running job's work, handed to its work function. Valid only until the
/// work function returns; it may be used from threads of the work's own meanwhile.
pub struct bgjob_context {
    _private: [u8; 0],
}

/// A job's work: runs on a worker thread. Return 0 to complete the job; anything else fails
/// it (reason: the text given to `bgjob_context_fail`, or "the work returned N").
pub type bgjob_work_fn =
    Option<unsafe extern "C" fn(ctx: *mut bgjob_context, user_data: *mut c_void) -> i32>;

pub(crate) fn as_c(ctx: &WorkContext) -> *mut bgjob_context {
    (ctx as *const WorkContext).cast_mut().cast()
}

/// # Safety
/// `ctx` is NULL or came from `as_c` for a context still alive.
unsafe fn context<'a>(ctx: *const bgjob_context) -> crate::Result<&'a WorkContext> {
    // SAFETY: as the caller guarantees; NULL is refused.
    unsafe { non_null(ctx.cast::<WorkContext>(), "ctx") }
}

/// Writes a record of `len` bytes from `data` (may be NULL when `len` is 0) to `stream`
/// (`BGJOB_STREAM_*`). The bytes are copied. `BGJOB_E_INVALID_STATE` once the job finished.
///
/// # Safety
/// `ctx` is the live context of the running work; `data` points to `len` readable bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn bgjob_context_write(
    ctx: *mut bgjob_context,
    stream: bgjob_stream,
    data: *const c_void,
    len: usize,
) -> bgjob_status {
    boundary(|| {
        // SAFETY: as documented for the caller.
        let ctx = unsafe { context(ctx) }?;
        let stream = stream_from_c(stream)?;
        let bytes: &[u8] = if len == 0 {
            &[]
        } else if data.is_null() {
            return Err(Error::InvalidArgument(
                "data is NULL but len is not 0".into(),
            ));
        } else {
            // SAFETY: non-NULL, `len` readable bytes, as documented.
            unsafe { std::slice::from_raw_parts(data.cast::<u8>(), len) }
        };
        ctx.write(stream, Payload::from(bytes))
    })
}

/// Writes a NUL-terminated string (without its NUL) as a record to `stream`. The text need
/// not be UTF-8: records are bytes.
///
/// # Safety
/// `ctx` is the live context of the running work; `text` is NULL or NUL-terminated.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn bgjob_context_write_text(
    ctx: *mut bgjob_context,
    stream: bgjob_stream,
    text: *const c_char,
) -> bgjob_status {
    boundary(|| {
        // SAFETY: as documented for the caller.
        let ctx = unsafe { context(ctx) }?;
        let stream = stream_from_c(stream)?;
        // SAFETY: non-NULL and NUL-terminated, as documented.
        let text = unsafe { non_null(text, "text").map(|t| std::ffi::CStr::from_ptr(t)) }?;
        ctx.write(stream, Payload::from(text.to_bytes()))
    })
}

/// Reports progress: `percent_complete` 0–100 (-1 = unknown; others are clamped), what is
/// being done and its status (either text may be NULL = empty). Also a progress record.
///
/// # Safety
/// `ctx` is the live context of the running work; texts are NULL or NUL-terminated.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn bgjob_context_progress(
    ctx: *mut bgjob_context,
    percent_complete: i32,
    activity: *const c_char,
    status: *const c_char,
) -> bgjob_status {
    boundary(|| {
        // SAFETY: as documented for the caller.
        let ctx = unsafe { context(ctx) }?;
        // SAFETY: as documented for the caller.
        let activity = unsafe { c_str_opt(activity, "activity") }?.unwrap_or("");
        // SAFETY: as documented for the caller.
        let status = unsafe { c_str_opt(status, "status") }?.unwrap_or("");
        ctx.write_progress(percent_complete, activity, status)
    })
}

/// Sets the job's status message (UTF-8).
///
/// # Safety
/// `ctx` is the live context of the running work; `message` is NUL-terminated.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn bgjob_context_set_status_message(
    ctx: *mut bgjob_context,
    message: *const c_char,
) -> bgjob_status {
    boundary(|| {
        // SAFETY: as documented for the caller.
        let ctx = unsafe { context(ctx) }?;
        // SAFETY: as documented for the caller.
        ctx.set_status_message(unsafe { c_str(message, "message") }?);
        Ok(())
    })
}

/// Whether a stop was asked of the job: cooperative work checks it and returns early.
/// False for a NULL context.
///
/// # Safety
/// `ctx` is NULL or the live context of the running work.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn bgjob_context_stop_requested(ctx: *mut bgjob_context) -> bool {
    // SAFETY: as documented for the caller.
    boundary_value(false, || Ok(unsafe { context(ctx) }?.stop_requested()))
}

/// Fails the job with `reason` (UTF-8) when the work returns, whatever it returns.
///
/// # Safety
/// `ctx` is the live context of the running work; `reason` is NUL-terminated.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn bgjob_context_fail(
    ctx: *mut bgjob_context,
    reason: *const c_char,
) -> bgjob_status {
    boundary(|| {
        // SAFETY: as documented for the caller.
        let ctx = unsafe { context(ctx) }?;
        // SAFETY: as documented for the caller.
        ctx.fail(unsafe { c_str(reason, "reason") }?);
        Ok(())
    })
}

/// The id of the job this work runs for; 0 for a NULL context.
///
/// # Safety
/// `ctx` is NULL or the live context of the running work.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn bgjob_context_job_id(ctx: *mut bgjob_context) -> u64 {
    // SAFETY: as documented for the caller.
    boundary_value(0, || Ok(unsafe { context(ctx) }?.job_id()))
}
