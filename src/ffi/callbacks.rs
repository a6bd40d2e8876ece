//! State-change callbacks from C, and user data that travels with a finalizer.

use super::boundary;
use super::status::bgjob_status;
use super::types::bgjob_job_state;
use crate::error::Error;
use crate::events::{self, StateCallback};
use crate::repository::repository;
use crate::state::{JobStateInfo, StateChangedEvent};
use std::ffi::{CString, c_char, c_void};

/// Frees user data handed to bgjob. Called exactly once, when bgjob no longer needs it,
/// on whichever thread drops it last; it must not call back into a job it belonged to
/// expecting that job to still hold the data.
pub type bgjob_finalizer = Option<unsafe extern "C" fn(user_data: *mut c_void)>;

/// A state and, if an error caused the change to it, the error's message.
#[repr(C)]
pub struct bgjob_state_info {
    /// The state (`BGJOB_STATE_*`).
    pub state: bgjob_job_state,
    /// Why, if an error caused it; NULL otherwise. Valid during the callback only.
    pub reason: *const c_char,
}

/// One state change, as a callback receives it. Fields may be added at the end.
#[repr(C)]
pub struct bgjob_state_event {
    /// The job that changed.
    pub job_id: u64,
    /// Its new state info.
    pub state_info: bgjob_state_info,
    /// Its state info before the change.
    pub previous_state_info: bgjob_state_info,
}

/// A state-change callback. It runs on the thread that made the change (often a worker),
/// never under an internal lock: it may call any bgjob function, including removing its
/// own job. Callbacks of one job run one at a time, in order; each change's callbacks
/// return before waiters on that change wake, and for a finished state every record is
/// already receivable.
pub type bgjob_state_callback =
    Option<unsafe extern "C" fn(event: *const bgjob_state_event, user_data: *mut c_void)>;

/// User data and its finalizer; the finalizer runs once, when this is dropped.
pub(crate) struct ForeignData {
    ptr: *mut c_void,
    finalizer: bgjob_finalizer,
}

// SAFETY: the C API documents that user data is handed to other threads (workers,
// callbacks) and that the host makes it safe to use from them.
unsafe impl Send for ForeignData {}
// SAFETY: as above.
unsafe impl Sync for ForeignData {}

impl ForeignData {
    pub(crate) fn new(ptr: *mut c_void, finalizer: bgjob_finalizer) -> Self {
        ForeignData { ptr, finalizer }
    }

    /// The user data pointer. A method, not a field access, so that closures capture the
    /// whole `ForeignData` (and its finalizer) rather than the bare pointer.
    pub(crate) fn get(&self) -> *mut c_void {
        self.ptr
    }
}

impl Drop for ForeignData {
    fn drop(&mut self) {
        if let Some(f) = self.finalizer.take() {
            // SAFETY: the host gave us this finalizer for this pointer.
            unsafe { f(self.ptr) }
        }
    }
}

fn reason_cstring(info: &JobStateInfo) -> Option<CString> {
    info.reason.as_deref().map(super::boundary::to_cstring)
}

/// Wraps a C callback as a core callback owning its user data.
pub(crate) fn wrap_callback(
    callback: unsafe extern "C" fn(*const bgjob_state_event, *mut c_void),
    data: ForeignData,
) -> StateCallback {
    Box::new(move |e: &StateChangedEvent| {
        let reason = reason_cstring(&e.state_info);
        let previous = reason_cstring(&e.previous_state_info);
        let event = bgjob_state_event {
            job_id: e.job_id,
            state_info: bgjob_state_info {
                state: e.state_info.state as u32,
                reason: reason.as_ref().map_or(std::ptr::null(), |r| r.as_ptr()),
            },
            previous_state_info: bgjob_state_info {
                state: e.previous_state_info.state as u32,
                reason: previous.as_ref().map_or(std::ptr::null(), |r| r.as_ptr()),
            },
        };
        // SAFETY: the host registered this callback for this user data.
        unsafe { callback(&event, data.get()) }
    })
}

pub(crate) fn required_callback(
    callback: bgjob_state_callback,
    data: ForeignData,
) -> crate::Result<StateCallback> {
    match callback {
        Some(cb) => Ok(wrap_callback(cb, data)),
        // `data` drops here: its finalizer runs, as the header promises.
        None => Err(Error::InvalidArgument("callback is NULL".into())),
    }
}

/// Registers `callback` for every state change of job `job_id` from now on, with
/// `user_data` freed by `finalizer` (may be NULL) once the registration ends (unregistered,
/// or the job removed). Writes the registration's id to `*out_registration` (may be NULL).
/// To miss no change, register through `bgjob_spec_on_state_changed` before the start.
/// The finalizer runs even when this fails.
///
/// # Safety
/// `out_registration` is NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn bgjob_on_state_changed(
    job_id: u64,
    callback: bgjob_state_callback,
    user_data: *mut c_void,
    finalizer: bgjob_finalizer,
    out_registration: *mut u64,
) -> bgjob_status {
    boundary(|| {
        let data = ForeignData::new(user_data, finalizer);
        let cb = required_callback(callback, data)?;
        let job = repository().get(job_id)?;
        let id = job.on_state_changed(cb);
        if !out_registration.is_null() {
            // SAFETY: non-NULL and writable, as documented.
            unsafe { *out_registration = id };
        }
        Ok(())
    })
}

/// Registers `callback` for every state change of every job (repository-wide; called after
/// the job's own callbacks). See `bgjob_on_state_changed` for the rest.
///
/// # Safety
/// `out_registration` is NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn bgjob_on_any_state_changed(
    callback: bgjob_state_callback,
    user_data: *mut c_void,
    finalizer: bgjob_finalizer,
    out_registration: *mut u64,
) -> bgjob_status {
    boundary(|| {
        let data = ForeignData::new(user_data, finalizer);
        let cb = required_callback(callback, data)?;
        let id = events::on_any_state_changed(cb);
        if !out_registration.is_null() {
            // SAFETY: non-NULL and writable, as documented.
            unsafe { *out_registration = id };
        }
        Ok(())
    })
}

/// Ends a registration: of job `job_id`, or repository-wide if `job_id` is 0. A call under
/// way on another thread may still finish; no later change calls it. Its finalizer runs
/// once no call holds it. `BGJOB_E_INVALID_ARGUMENT` if there is no such registration.
#[unsafe(no_mangle)]
pub extern "C" fn bgjob_unregister(job_id: u64, registration: u64) -> bgjob_status {
    boundary(|| {
        let found = if job_id == 0 {
            events::unregister_any(registration)
        } else {
            repository().get(job_id)?.unregister(registration)
        };
        if found {
            Ok(())
        } else {
            Err(Error::InvalidArgument(format!(
                "no registration {registration} on {}",
                if job_id == 0 {
                    "the repository".to_string()
                } else {
                    format!("job {job_id}")
                }
            )))
        }
    })
}
