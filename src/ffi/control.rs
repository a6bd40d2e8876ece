//! Suspend-Job, Resume-Job and input for Blocked jobs, from C: the host's side
//! (`bgjob_suspend`, `bgjob_resume`, `bgjob_send_input`) and the work's side
//! (`bgjob_context_checkpoint`, `bgjob_context_read_input`, `bgjob_buffer_free`).

use super::context::{bgjob_context, context};
use super::status::bgjob_status;
use super::types::bytes_arg;
use super::{boundary, c_str};
use crate::error::Error;
use crate::record::Payload;
use crate::repository::repository;
use std::ffi::{c_char, c_void};

/// Suspend-Job: a Running job moves to Suspending, and to Suspended when its work next
/// calls `bgjob_context_checkpoint` (where the work then parks until resumed or stopped).
/// Work that never calls it stays Suspending until it ends. A parent suspends its running
/// children. A wait stops at Suspended (a persistent state). Suspending a job that is
/// Suspending or Suspended does nothing; `BGJOB_E_INVALID_STATE` in any other state.
#[unsafe(no_mangle)]
pub extern "C" fn bgjob_suspend(id: u64) -> bgjob_status {
    boundary(|| repository().get(id)?.suspend())
}

/// Resume-Job: a Suspended job runs again (its checkpoint returns); one still Suspending
/// will not park at its checkpoint. A parent resumes its children. Resuming a job that is
/// neither does nothing.
#[unsafe(no_mangle)]
pub extern "C" fn bgjob_resume(id: u64) -> bgjob_status {
    boundary(|| repository().get(id)?.resume())
}

/// Sends `len` bytes at `data` (copied; NULL allowed when `len` is 0) to a job that is
/// Blocked waiting for input: its work's `bgjob_context_read_input` returns them and the
/// job runs again. `BGJOB_E_INVALID_STATE` if the job is not Blocked (a parent never waits
/// itself: answer its Blocked child). A wait on jobs that are all Blocked fails with
/// `BGJOB_E_BLOCKED` rather than hang.
///
/// # Safety
/// `data` is NULL or points to `len` readable bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn bgjob_send_input(
    id: u64,
    data: *const c_void,
    len: usize,
) -> bgjob_status {
    boundary(|| {
        // SAFETY: `len` readable bytes at `data`, as documented for the caller.
        let bytes = unsafe { bytes_arg(data, len) }?;
        repository().get(id)?.send_input(Payload::from(bytes))
    })
}

/// A checkpoint: if a suspend was asked, the job becomes Suspended and this call parks
/// (its worker lent to the pool) until the job is resumed or stopped; otherwise it returns
/// at once. After it returns, check `bgjob_context_stop_requested`.
///
/// # Safety
/// `ctx` is the live context of the running work.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn bgjob_context_checkpoint(ctx: *mut bgjob_context) -> bgjob_status {
    boundary(|| {
        // SAFETY: as documented for the caller.
        unsafe { context(ctx) }?.checkpoint()
    })
}

/// Asks the host for input: the job becomes Blocked, showing `prompt` (UTF-8; see
/// `bgjob_job_info_prompt`), and this call parks until the host answers with
/// `bgjob_send_input`. The input's bytes are then in `*out_data` / `*out_len`, owned by the
/// caller: free them with `bgjob_buffer_free`. `BGJOB_E_INVALID_STATE` if the job is
/// stopped instead (or was not Running); the out-pointers are then untouched.
///
/// # Safety
/// `ctx` is the live context of the running work; `prompt` is NUL-terminated; the
/// out-pointers are writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn bgjob_context_read_input(
    ctx: *mut bgjob_context,
    prompt: *const c_char,
    out_data: *mut *mut u8,
    out_len: *mut usize,
) -> bgjob_status {
    boundary(|| {
        // SAFETY: as documented for the caller.
        let (ctx, prompt) = unsafe { (context(ctx)?, c_str(prompt, "prompt")?) };
        if out_data.is_null() || out_len.is_null() {
            return Err(Error::InvalidArgument("out_data or out_len is NULL".into()));
        }
        let input = ctx.read_input(prompt)?;
        let bytes: Box<[u8]> = match input.bytes() {
            Some(b) => b.into(),
            None => {
                return Err(Error::InvalidArgument(
                    "the input sent is not bytes (it came from another binding)".into(),
                ));
            }
        };
        let len = bytes.len();
        // SAFETY: both non-NULL and writable, as documented.
        unsafe {
            *out_len = len;
            *out_data = Box::into_raw(bytes).cast::<u8>();
        }
        Ok(())
    })
}

/// Frees a buffer bgjob handed out (`bgjob_context_read_input`), given its length. NULL is
/// a no-op.
///
/// # Safety
/// `data` is NULL or a buffer from bgjob with this `len`, not freed before.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn bgjob_buffer_free(data: *mut u8, len: usize) {
    if data.is_null() {
        return;
    }
    let _ = boundary(|| {
        // SAFETY: a `Box<[u8]>` of `len` bytes that we leaked, as documented.
        drop(unsafe { Box::from_raw(std::ptr::slice_from_raw_parts_mut(data, len)) });
        Ok(())
    });
}
