//! What a C work function can do through its `bgjob_context`.

use super::status::bgjob_status;
use super::types::{bgjob_stream, bytes_arg, stream_from_c};
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

/// A job's work: runs on a worker thread (for a parallel job: once per input, in that
/// input's child job). Return 0 to complete the job; anything else fails it (reason: the
/// text given to `bgjob_context_fail`, or "the work returned N").
pub type bgjob_work_fn =
    Option<unsafe extern "C" fn(ctx: *mut bgjob_context, user_data: *mut c_void) -> i32>;

pub(crate) fn as_c(ctx: &WorkContext) -> *mut bgjob_context {
    (ctx as *const WorkContext).cast_mut().cast()
}

/// # Safety
/// `ctx` is NULL or came from `as_c` for a context still alive.
pub(crate) unsafe fn context<'a>(ctx: *const bgjob_context) -> crate::Result<&'a WorkContext> {
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
        // SAFETY: `len` readable bytes at `data`, as documented for the caller.
        let bytes = unsafe { bytes_arg(data, len) }?;
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

/// The input this work runs for, in a child of a parallel job (added to the spec with
/// `bgjob_spec_add_input`): `*out_data` gets a pointer to its bytes and `*out_len` their
/// number. The bytes belong to the job and stay valid while the work runs; they are not
/// NUL-terminated (copy them to use them as a C string). For an empty input `*out_len` is
/// 0 and `*out_data` a valid, non-NULL pointer to read nothing from.
///
/// `BGJOB_E_INVALID_ARGUMENT` (with `bgjob_last_error_message()` saying why, out-pointers
/// left unchanged) if `ctx`, `out_data` or `out_len` is NULL, or if the job is not a child
/// of a parallel job (a plain thread job has no input).
///
/// # Safety
/// `ctx` is NULL or the live context of the running work; `out_data` and `out_len` are
/// NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn bgjob_context_input(
    ctx: *mut bgjob_context,
    out_data: *mut *const u8,
    out_len: *mut usize,
) -> bgjob_status {
    // What an empty input points to: a real byte, so a C caller may pass it on safely.
    static EMPTY: [u8; 1] = [0];
    boundary(|| {
        // SAFETY: as documented for the caller.
        let ctx = unsafe { context(ctx) }?;
        if out_data.is_null() {
            return Err(Error::InvalidArgument("out_data is NULL".into()));
        }
        if out_len.is_null() {
            return Err(Error::InvalidArgument("out_len is NULL".into()));
        }
        let bytes: &[u8] = match ctx.input() {
            Some(Payload::Bytes(b)) => b,
            Some(_) => {
                return Err(Error::InvalidArgument(format!(
                    "the input of job {} holds no bytes (it was not given from C)",
                    ctx.job_id()
                )));
            }
            None => {
                return Err(Error::InvalidArgument(format!(
                    "job {} has no input: only a child of a parallel job (a spec with \
                     bgjob_spec_add_input) has one",
                    ctx.job_id()
                )));
            }
        };
        let data = if bytes.is_empty() {
            EMPTY.as_ptr()
        } else {
            bytes.as_ptr()
        };
        // SAFETY: both non-NULL and writable, as documented; the bytes live in the job,
        // which the context keeps alive while the work runs.
        unsafe {
            *out_data = data;
            *out_len = bytes.len();
        }
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
