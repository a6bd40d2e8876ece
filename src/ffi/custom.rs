//! Custom jobs from C (a class derived from PowerShell's `Job`): jobs whose work runs
//! where bgjob does not see it — another machine, another library, an event loop. The host
//! makes one from a spec (`bgjob_create_custom`), then drives it by id: it moves it through
//! legal states, writes its records, reports its progress and ends the foreign work when a
//! stop is asked (the stop callback). Get, wait, receive, stop and remove treat it like any
//! other job.

use super::callbacks::{ForeignData, bgjob_finalizer};
use super::spec::{bgjob_spec, spec_mut, take_spec};
use super::status::bgjob_status;
use super::types::{bgjob_job_state, bgjob_stream, bytes_arg, state_from_c, stream_from_c};
use super::{boundary, c_str, c_str_opt, non_null};
use crate::custom::{CustomJob, CustomJobSpec};
use crate::error::{Error, Result};
use crate::job::{Job, StopHandler};
use crate::record::Payload;
use crate::repository::repository;
use std::ffi::{CStr, c_char, c_void};
use std::sync::Arc;

/// A stop asked of a custom job, as its stop callback receives it. Fields may be added at
/// the end.
#[repr(C)]
pub struct bgjob_stop_event {
    /// The job to stop: the custom job itself, or one child of a custom parent. It is
    /// Stopping now.
    pub job_id: u64,
    /// Its parent's id; 0 for a top-level job.
    pub parent_id: u64,
}

/// A custom job's stop callback (`bgjob_spec_on_stop`). It runs on the thread that asked
/// the stop (inside `bgjob_stop`, or `bgjob_remove` with force), once the job moved to
/// Stopping and the callbacks of that change returned, never under an internal lock. It
/// should end the foreign work and then move the job to Stopped (or Failed/Completed, if
/// the work ended on its own first) with `bgjob_custom_set_state`: right here, or later
/// from any thread.
pub type bgjob_stop_callback =
    Option<unsafe extern "C" fn(event: *const bgjob_stop_event, user_data: *mut c_void)>;

/// What a spec holds that only a custom job has. `bgjob_start` and `bgjob_run_inline`
/// refuse a spec with any of it rather than drop it silently.
#[derive(Default)]
pub(crate) struct CustomSettings {
    location: Option<String>,
    type_name: Option<String>,
    children: Vec<Option<String>>,
    on_stop: Option<StopHandler>,
}

impl CustomSettings {
    /// `InvalidArgument` naming the custom-only settings, if there are any, for `op`.
    pub(crate) fn refuse(&self, op: &str) -> Result<()> {
        let mut set = Vec::new();
        if self.location.is_some() {
            set.push("a location (bgjob_spec_set_location)");
        }
        if self.type_name.is_some() {
            set.push("a type name (bgjob_spec_set_type_name)");
        }
        if !self.children.is_empty() {
            set.push("custom children (bgjob_spec_add_custom_child)");
        }
        if self.on_stop.is_some() {
            set.push("a stop callback (bgjob_spec_on_stop)");
        }
        if set.is_empty() {
            return Ok(());
        }
        Err(Error::InvalidArgument(format!(
            "the spec has {}, which only a custom job has: make it with bgjob_create_custom, \
             not {op}",
            set.join(" and ")
        )))
    }
}

/// Wraps a C stop callback as the core's stop handler, owning its user data.
fn wrap_stop(
    callback: unsafe extern "C" fn(*const bgjob_stop_event, *mut c_void),
    data: ForeignData,
) -> StopHandler {
    Box::new(move |job: &Arc<Job>| {
        let event = bgjob_stop_event {
            job_id: job.id(),
            parent_id: job.parent_id(),
        };
        // SAFETY: the host registered this callback for this user data.
        unsafe { callback(&event, data.get()) }
    })
}

/// Sets where a custom job's work runs (UTF-8; default `localhost`), e.g. the remote
/// machine's name. Only a custom job has one: `bgjob_start` and `bgjob_run_inline` refuse
/// a spec with a location.
///
/// # Safety
/// `spec` is a live spec; `location` is NUL-terminated.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn bgjob_spec_set_location(
    spec: *mut bgjob_spec,
    location: *const c_char,
) -> bgjob_status {
    boundary(|| {
        // SAFETY: as documented for the caller.
        let (spec, location) = unsafe { (spec_mut(spec)?, c_str(location, "location")?) };
        spec.custom.location = Some(location.to_string());
        Ok(())
    })
}

/// Sets the type name shown for a custom job and its children (UTF-8; default
/// `CustomJob`), e.g. `RemoteJob`. Only a custom job has one of its choosing:
/// `bgjob_start` and `bgjob_run_inline` refuse a spec with a type name.
///
/// # Safety
/// `spec` is a live spec; `type_name` is NUL-terminated.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn bgjob_spec_set_type_name(
    spec: *mut bgjob_spec,
    type_name: *const c_char,
) -> bgjob_status {
    boundary(|| {
        // SAFETY: as documented for the caller.
        let (spec, type_name) = unsafe { (spec_mut(spec)?, c_str(type_name, "type_name")?) };
        spec.custom.type_name = Some(type_name.to_string());
        Ok(())
    })
}

/// Adds a child to the custom job the spec makes, named `name` (UTF-8; NULL = `Job<id>`).
/// A custom job with children is a parent: the host drives each child by its id (the
/// parent is N, child k, 0-based in the order added, is N+1+k), and the parent's state
/// follows theirs (PowerShell's ContainerParentJob rule; `bgjob_custom_set_state` on the
/// parent is refused). Its children share the spec's command, location and type name.
/// `bgjob_start` and `bgjob_run_inline` refuse a spec with custom children.
///
/// # Safety
/// `spec` is a live spec; `name` is NULL or NUL-terminated.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn bgjob_spec_add_custom_child(
    spec: *mut bgjob_spec,
    name: *const c_char,
) -> bgjob_status {
    boundary(|| {
        // SAFETY: as documented for the caller.
        let (spec, name) = unsafe { (spec_mut(spec)?, c_str_opt(name, "name")?) };
        spec.custom.children.push(name.map(str::to_string));
        Ok(())
    })
}

/// Sets the custom job's stop callback (see `bgjob_stop_callback`), replacing any earlier
/// one (whose user data is finalized then). It is called at most once per job, when a stop
/// moves the job from Running, Blocked or Suspended to Stopping; a job still NotStarted
/// (or Disconnected) becomes Stopped at once without a call, and a finished or Stopping
/// one is left alone. For a custom parent it is called for each child being stopped (the
/// event names the child), never for the parent itself.
///
/// `finalizer` (may be NULL) frees `user_data` exactly once: when the job (for a parent:
/// the parent and its children) is removed, or the spec freed or refused unused; it runs
/// even if this call fails. `bgjob_start` and `bgjob_run_inline` refuse a spec with a
/// stop callback.
///
/// # Safety
/// `spec` is a live spec.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn bgjob_spec_on_stop(
    spec: *mut bgjob_spec,
    callback: bgjob_stop_callback,
    user_data: *mut c_void,
    finalizer: bgjob_finalizer,
) -> bgjob_status {
    boundary(|| {
        let data = ForeignData::new(user_data, finalizer);
        // SAFETY: as documented for the caller.
        let spec = unsafe { spec_mut(spec) }?;
        // On a NULL callback `data` drops here: its finalizer runs, as documented.
        let callback = callback.ok_or_else(|| Error::InvalidArgument("callback is NULL".into()))?;
        spec.custom.on_stop = Some(wrap_stop(callback, data));
        Ok(())
    })
}

/// Makes a custom job (PowerShell: a class derived from `Job`) from `spec` and writes its
/// id to `*out_id`. It runs no work of ours: the host drives it with the `bgjob_custom_*`
/// functions — moves it through legal states (`bgjob_custom_set_state`), writes its
/// records, reports its progress and status — while get, wait, receive, stop and remove
/// work on it by id as on any job.
///
/// The job is NotStarted, in the repository, of type `CustomJob` (or the spec's type name)
/// at `localhost` (or the spec's location), with the spec's name, command and state-change
/// callbacks (registered before the host can move it, so none is missed), its stop
/// callback (`bgjob_spec_on_stop`) and its children (`bgjob_spec_add_custom_child`). A
/// stop asked of it moves it to Stopping and calls the stop callback, which ends the
/// foreign work and moves the job to Stopped: `bgjob_stop` returns once it is finished, or
/// `BGJOB_E_TIMEOUT` with the job still Stopping. Without a stop callback nothing ends a
/// Stopping custom job but the host: `bgjob_remove` with force waits until it does.
///
/// The spec is consumed (freed) whatever the result; on failure no job is made and its
/// user data is finalized. `BGJOB_E_INVALID_ARGUMENT` if the spec has work
/// (`bgjob_spec_set_work`), inputs (`bgjob_spec_add_input`) or argv or other process-only
/// settings (`bgjob_spec_set_argv`, `bgjob_spec_set_env`, …): a custom job runs none of
/// ours. A pool or throttle limit on the spec has no effect.
///
/// # Safety
/// `spec` is NULL or a live spec, not used after this call; `out_id` is writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn bgjob_create_custom(
    spec: *mut bgjob_spec,
    out_id: *mut u64,
) -> bgjob_status {
    boundary(|| {
        // SAFETY: as documented for the caller.
        let spec = unsafe { take_spec(spec, out_id) }?;
        if spec.work.is_some() {
            return Err(Error::InvalidArgument(
                "the spec has work (bgjob_spec_set_work): a custom job runs none of ours, its \
                 host drives it; start a thread job with bgjob_start instead"
                    .into(),
            ));
        }
        if !spec.inputs.is_empty() {
            return Err(Error::InvalidArgument(format!(
                "the spec has {} input(s) (bgjob_spec_add_input): a custom job runs no work \
                 over inputs; add children with bgjob_spec_add_custom_child",
                spec.inputs.len()
            )));
        }
        spec.process.refuse("bgjob_create_custom")?;
        let custom = spec.custom;
        let mut cs = CustomJobSpec::new();
        if let Some(name) = spec.name {
            cs = cs.name(name);
        }
        if let Some(command) = spec.command {
            cs = cs.command(command);
        }
        if let Some(location) = custom.location {
            cs = cs.location(location);
        }
        if let Some(type_name) = custom.type_name {
            cs = cs.type_name(type_name);
        }
        for child in custom.children {
            cs = cs.child(child);
        }
        if let Some(handler) = custom.on_stop {
            cs = cs.on_stop_boxed(handler);
        }
        for cb in spec.callbacks {
            cs = cs.on_state_changed_boxed(cb);
        }
        let job = cs.create();
        // SAFETY: non-NULL (checked by take_spec) and writable, as documented.
        unsafe { *out_id = job.job().id() };
        Ok(())
    })
}

/// The driving handle of custom job `id`: `NoSuchJob` if there is none, `InvalidState` if
/// it is not a custom job.
fn custom_job(id: u64) -> Result<CustomJob> {
    CustomJob::from_job(repository().get(id)?)
}

/// Moves custom job `id` (or a child of a custom parent) to `state` (`BGJOB_STATE_*`), with
/// `reason` (UTF-8, may be NULL) as the state info's reason, e.g. why it failed. The change
/// goes as for any job: the state is stored, on a finished state the streams close, the
/// state-change callbacks run (on this thread, unless another is already running this
/// job's), then waiters wake — so this returns after the callbacks, unless it is called
/// from one of them (the change then queues behind it).
///
/// `BGJOB_E_INVALID_STATE` (nothing changes) for a move DESIGN's legal moves do not allow
/// (e.g. NotStarted → Completed, or anything out of a finished state), for a job that is
/// not a custom job, and for a custom parent (its state follows its children's: drive
/// them). `BGJOB_E_INVALID_ARGUMENT` for a state out of range or a reason that is not
/// UTF-8; `BGJOB_E_NO_SUCH_JOB` for an unknown id.
///
/// # Safety
/// `reason` is NULL or NUL-terminated.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn bgjob_custom_set_state(
    id: u64,
    state: bgjob_job_state,
    reason: *const c_char,
) -> bgjob_status {
    boundary(|| {
        let state = state_from_c(state)?;
        // SAFETY: as documented for the caller.
        let reason = unsafe { c_str_opt(reason, "reason") }?;
        custom_job(id)?.set_state(state, reason)
    })
}

/// Writes a record of `len` bytes from `data` (may be NULL when `len` is 0) to `stream`
/// (`BGJOB_STREAM_*`) of custom job `id`. The bytes are copied. `BGJOB_E_INVALID_STATE`
/// once the job finished (its streams are closed) and for a job that is not a custom job;
/// `BGJOB_E_INVALID_ARGUMENT` for a stream out of range or NULL data with a length;
/// `BGJOB_E_NO_SUCH_JOB` for an unknown id.
///
/// # Safety
/// `data` is NULL or points to `len` readable bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn bgjob_custom_write(
    id: u64,
    stream: bgjob_stream,
    data: *const c_void,
    len: usize,
) -> bgjob_status {
    boundary(|| {
        let stream = stream_from_c(stream)?;
        // SAFETY: `len` readable bytes at `data`, as documented for the caller.
        let bytes = unsafe { bytes_arg(data, len) }?;
        custom_job(id)?.write(stream, Payload::from(bytes))
    })
}

/// Writes a NUL-terminated string (without its NUL) as a record to `stream` of custom job
/// `id`. The text need not be UTF-8: records are bytes. Fails as `bgjob_custom_write` does,
/// and with `BGJOB_E_INVALID_ARGUMENT` for a NULL text.
///
/// # Safety
/// `text` is NULL or NUL-terminated.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn bgjob_custom_write_text(
    id: u64,
    stream: bgjob_stream,
    text: *const c_char,
) -> bgjob_status {
    boundary(|| {
        let stream = stream_from_c(stream)?;
        // SAFETY: non-NULL and NUL-terminated, as documented.
        let text = unsafe { non_null(text, "text").map(|t| CStr::from_ptr(t)) }?;
        custom_job(id)?.write(stream, Payload::from(text.to_bytes()))
    })
}

/// Reports progress of custom job `id`: `percent_complete` 0–100 (-1 = unknown; others are
/// clamped), what is being done and its status (either text may be NULL = empty; UTF-8).
/// Also a progress record, so `BGJOB_E_INVALID_STATE` once the job finished, as for
/// `bgjob_custom_write`.
///
/// # Safety
/// `activity` and `status` are NULL or NUL-terminated.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn bgjob_custom_progress(
    id: u64,
    percent_complete: i32,
    activity: *const c_char,
    status: *const c_char,
) -> bgjob_status {
    boundary(|| {
        // SAFETY: as documented for the caller.
        let activity = unsafe { c_str_opt(activity, "activity") }?.unwrap_or("");
        // SAFETY: as documented for the caller.
        let status = unsafe { c_str_opt(status, "status") }?.unwrap_or("");
        custom_job(id)?.write_progress(percent_complete, activity, status)
    })
}

/// Sets the status message (UTF-8) of custom job `id`. `BGJOB_E_INVALID_ARGUMENT` for a
/// NULL or non-UTF-8 message, `BGJOB_E_INVALID_STATE` for a job that is not a custom job,
/// `BGJOB_E_NO_SUCH_JOB` for an unknown id.
///
/// # Safety
/// `message` is NUL-terminated.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn bgjob_custom_set_status_message(
    id: u64,
    message: *const c_char,
) -> bgjob_status {
    boundary(|| {
        // SAFETY: as documented for the caller.
        let message = unsafe { c_str(message, "message") }?;
        custom_job(id)?.set_status_message(message);
        Ok(())
    })
}
