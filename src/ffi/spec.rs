//! Start-Job from C: the start spec builder and `bgjob_start`.

use super::callbacks::{ForeignData, bgjob_finalizer, bgjob_state_callback, required_callback};
use super::context::{as_c, bgjob_work_fn};
use super::pool::bgjob_pool;
use super::status::bgjob_status;
use super::{boundary, c_str, non_null};
use crate::error::{Error, Result};
use crate::events::StateCallback;
use crate::executor::Pool;
use crate::spec::JobSpec;
use std::ffi::{c_char, c_void};

/// What to start: built with the `bgjob_spec_*` functions, consumed by `bgjob_start`.
pub struct bgjob_spec {
    name: Option<String>,
    command: Option<String>,
    work: Option<(
        unsafe extern "C" fn(*mut super::context::bgjob_context, *mut c_void) -> i32,
        ForeignData,
    )>,
    pool: Option<Pool>,
    callbacks: Vec<StateCallback>,
}

/// # Safety
/// `spec` is NULL or a live spec.
unsafe fn spec_mut<'a>(spec: *mut bgjob_spec) -> Result<&'a mut bgjob_spec> {
    // SAFETY: as the caller guarantees.
    unsafe { spec.as_mut() }.ok_or_else(|| Error::InvalidArgument("spec is NULL".into()))
}

/// Creates an empty spec. Give it work with `bgjob_spec_set_work`, then start it with
/// `bgjob_start` or free it with `bgjob_spec_free`.
///
/// # Safety
/// `out_spec` is writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn bgjob_spec_new(out_spec: *mut *mut bgjob_spec) -> bgjob_status {
    boundary(|| {
        if out_spec.is_null() {
            return Err(Error::InvalidArgument("out_spec is NULL".into()));
        }
        let spec = Box::new(bgjob_spec {
            name: None,
            command: None,
            work: None,
            pool: None,
            callbacks: Vec::new(),
        });
        // SAFETY: non-NULL and writable, as documented.
        unsafe { *out_spec = Box::into_raw(spec) };
        Ok(())
    })
}

/// Frees a spec that was not started, running the finalizers of the user data it holds.
/// NULL is a no-op.
///
/// # Safety
/// `spec` is NULL or a live spec, not used after this call.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn bgjob_spec_free(spec: *mut bgjob_spec) {
    let _ = boundary(|| {
        if !spec.is_null() {
            // SAFETY: a live spec from bgjob_spec_new, as documented.
            drop(unsafe { Box::from_raw(spec) });
        }
        Ok(())
    });
}

/// Sets the job's name (UTF-8; default `Job<id>`). Names need not be unique.
///
/// # Safety
/// `spec` is a live spec; `name` is NUL-terminated.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn bgjob_spec_set_name(
    spec: *mut bgjob_spec,
    name: *const c_char,
) -> bgjob_status {
    boundary(|| {
        // SAFETY: as documented for the caller.
        let (spec, name) = unsafe { (spec_mut(spec)?, c_str(name, "name")?) };
        spec.name = Some(name.to_string());
        Ok(())
    })
}

/// Sets the command text shown for the job (UTF-8), e.g. the work function's name.
///
/// # Safety
/// `spec` is a live spec; `command` is NUL-terminated.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn bgjob_spec_set_command(
    spec: *mut bgjob_spec,
    command: *const c_char,
) -> bgjob_status {
    boundary(|| {
        // SAFETY: as documented for the caller.
        let (spec, command) = unsafe { (spec_mut(spec)?, c_str(command, "command")?) };
        spec.command = Some(command.to_string());
        Ok(())
    })
}

/// Sets the work: `work(ctx, user_data)` runs on a worker thread. `finalizer` (may be NULL)
/// frees `user_data` exactly once, when the job no longer needs it: after the work returns
/// (before the job's finished state), when it is stopped before running, or when the spec
/// is freed unstarted. The spec owns `user_data` from this call on, even if it fails.
///
/// # Safety
/// `spec` is a live spec.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn bgjob_spec_set_work(
    spec: *mut bgjob_spec,
    work: bgjob_work_fn,
    user_data: *mut c_void,
    finalizer: bgjob_finalizer,
) -> bgjob_status {
    boundary(|| {
        let data = ForeignData::new(user_data, finalizer);
        // SAFETY: as documented for the caller.
        let spec = unsafe { spec_mut(spec) }?;
        let work = work.ok_or_else(|| Error::InvalidArgument("work is NULL".into()))?;
        // A previous work's user data is finalized here.
        spec.work = Some((work, data));
        Ok(())
    })
}

/// Runs the job on `pool` instead of the default pool. The spec keeps its own reference:
/// the pool handle may be freed afterwards.
///
/// # Safety
/// `spec` is a live spec; `pool` is a live pool.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn bgjob_spec_set_pool(
    spec: *mut bgjob_spec,
    pool: *const bgjob_pool,
) -> bgjob_status {
    boundary(|| {
        // SAFETY: as documented for the caller.
        let (spec, pool) = unsafe { (spec_mut(spec)?, non_null(pool, "pool")?) };
        spec.pool = Some(pool.pool.clone());
        Ok(())
    })
}

/// Adds a state-change callback, registered before the job can run so that no change is
/// missed (its first call is for NotStarted → Running or → Stopped). `finalizer` (may be
/// NULL) frees `user_data` once, when the job is removed or the spec freed unstarted; it
/// runs even if this call fails.
///
/// # Safety
/// `spec` is a live spec.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn bgjob_spec_on_state_changed(
    spec: *mut bgjob_spec,
    callback: bgjob_state_callback,
    user_data: *mut c_void,
    finalizer: bgjob_finalizer,
) -> bgjob_status {
    boundary(|| {
        let data = ForeignData::new(user_data, finalizer);
        // SAFETY: as documented for the caller.
        let spec = unsafe { spec_mut(spec) }?;
        spec.callbacks.push(required_callback(callback, data)?);
        Ok(())
    })
}

/// Starts a thread job from `spec` and returns at once with its id in `*out_id`. The spec is
/// consumed (freed) whatever the result; on failure nothing is left behind and its user
/// data is finalized. Fails with `BGJOB_E_INVALID_ARGUMENT` if the spec has no work and
/// `BGJOB_E_SHUT_DOWN` if its pool was shut down.
///
/// # Safety
/// `spec` is NULL or a live spec, not used after this call; `out_id` is writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn bgjob_start(spec: *mut bgjob_spec, out_id: *mut u64) -> bgjob_status {
    boundary(|| {
        if spec.is_null() {
            return Err(Error::InvalidArgument("spec is NULL".into()));
        }
        // SAFETY: a live spec from bgjob_spec_new, as documented; we take it over.
        let spec = unsafe { Box::from_raw(spec) };
        if out_id.is_null() {
            return Err(Error::InvalidArgument("out_id is NULL".into()));
        }
        let spec = *spec;
        let (work, data) = spec
            .work
            .ok_or_else(|| Error::InvalidArgument("the spec has no work".into()))?;
        let mut js = JobSpec::new(move |ctx| {
            let data = data;
            // SAFETY: the host gave us this function for this user data.
            let rc = unsafe { work(as_c(ctx), data.get()) };
            // Finalized here, before the job's finished state is stored.
            drop(data);
            if rc == 0 {
                Ok(())
            } else {
                Err(format!("the work returned {rc}"))
            }
        });
        if let Some(name) = spec.name {
            js = js.name(name);
        }
        if let Some(command) = spec.command {
            js = js.command(command);
        }
        if let Some(pool) = &spec.pool {
            js = js.pool(pool);
        }
        for cb in spec.callbacks {
            js = js.on_state_changed_boxed(cb);
        }
        let job = js.start()?;
        // SAFETY: non-NULL and writable, as documented.
        unsafe { *out_id = job.id() };
        Ok(())
    })
}
