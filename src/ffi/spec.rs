//! Start-Job from C: the start spec builder, `bgjob_start` (a thread job, a parallel job
//! when the spec has inputs, or a process job when it has argv) and `bgjob_run_inline` (a
//! thread or process job run on the caller's thread). `bgjob_create_custom`
//! (src/ffi/custom.rs) makes a custom job from a spec; the process-only settings are in
//! src/ffi/process.rs.

use super::callbacks::{ForeignData, bgjob_finalizer, bgjob_state_callback, required_callback};
use super::context::{as_c, bgjob_context, bgjob_work_fn};
use super::custom::CustomSettings;
use super::pool::bgjob_pool;
use super::process::{ProcessSettings, process_job_spec};
use super::status::bgjob_status;
use super::types::bytes_arg;
use super::{boundary, c_str, non_null};
use crate::error::{Error, Result};
use crate::events::StateCallback;
use crate::executor::Pool;
use crate::parallel::{ParallelJobSpec, ParallelWork};
use crate::record::Payload;
use crate::spec::JobSpec;
use std::ffi::{c_char, c_void};
use std::sync::Arc;

/// What to start: built with the `bgjob_spec_*` functions, consumed by `bgjob_start`,
/// `bgjob_run_inline` or `bgjob_create_custom`. A spec with work and without inputs starts
/// a thread job; one with inputs (`bgjob_spec_add_input`) a parallel job; one with argv
/// (`bgjob_spec_set_argv`, instead of work) a process job running that program, with the
/// process-only settings (`bgjob_spec_set_env`, `bgjob_spec_clear_env`,
/// `bgjob_spec_set_working_directory`, `bgjob_spec_set_stdin`,
/// `bgjob_spec_set_stop_grace`, `bgjob_spec_set_output_mode`); `bgjob_create_custom`
/// makes a custom job (no work; the host drives it) from its name, command, callbacks and
/// the custom-only settings (`bgjob_spec_set_location`, `bgjob_spec_set_type_name`,
/// `bgjob_spec_add_custom_child`, `bgjob_spec_on_stop`).
pub struct bgjob_spec {
    pub(super) name: Option<String>,
    pub(super) command: Option<String>,
    pub(super) work: Option<(
        unsafe extern "C" fn(*mut super::context::bgjob_context, *mut c_void) -> i32,
        ForeignData,
    )>,
    pub(super) pool: Option<Pool>,
    pub(super) callbacks: Vec<StateCallback>,
    /// With one or more inputs the spec starts a parallel job, one child per input.
    pub(super) inputs: Vec<Payload>,
    /// The parallel job's own throttle (0 = only the pool's limits).
    pub(super) throttle_limit: usize,
    /// What only a custom job has (`bgjob_create_custom`): location, type name, children,
    /// stop callback.
    pub(super) custom: CustomSettings,
    /// What only a process job has: argv (which makes the spec a process job),
    /// environment, working directory, stdin, stop grace, output mode.
    pub(super) process: ProcessSettings,
}

/// # Safety
/// `spec` is NULL or a live spec.
pub(super) unsafe fn spec_mut<'a>(spec: *mut bgjob_spec) -> Result<&'a mut bgjob_spec> {
    // SAFETY: as the caller guarantees.
    unsafe { spec.as_mut() }.ok_or_else(|| Error::InvalidArgument("spec is NULL".into()))
}

/// Creates an empty spec. Give it work with `bgjob_spec_set_work` (or a program with
/// `bgjob_spec_set_argv`), then start it with `bgjob_start` or run it with
/// `bgjob_run_inline`; or, without work, make a custom job of it with
/// `bgjob_create_custom`. Free a spec that is not used with `bgjob_spec_free`.
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
            inputs: Vec::new(),
            throttle_limit: 0,
            custom: CustomSettings::default(),
            process: ProcessSettings::default(),
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

/// Sets the command text shown for the job (UTF-8), e.g. the work function's name. A
/// process job's command is its argv as typed in a shell unless this sets another.
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
/// For a parallel job (a spec with inputs) the work runs once per input, possibly on
/// several threads at once, all with the same `user_data`; the finalizer still runs exactly
/// once, when no child needs the data any more (after the last child's work returned, or
/// when the children left were stopped before they ran), at the latest when the job is
/// removed.
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

/// Adds an input, making the spec start a *parallel job* (PowerShell's
/// `ForEach-Object -Parallel -AsJob`): the work function runs once per input, each time in
/// a child job of its own, and reads that input with `bgjob_context_input`. Inputs are
/// used in the order they are added; child k (0-based) gets input k and id parent + 1 + k.
/// The `len` bytes at `data` are copied (any bytes: they need not be text nor end in NUL);
/// `data` may be NULL only if `len` is 0 (an empty input). `BGJOB_E_INVALID_ARGUMENT` if
/// `data` is NULL while `len` is not 0; the spec is unchanged then.
///
/// The work's user data (`bgjob_spec_set_work`) is shared by all the children, which may
/// run at the same time on different threads; its finalizer runs exactly once, when no
/// child needs it any more.
///
/// # Safety
/// `spec` is a live spec; `data` is NULL or points to `len` readable bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn bgjob_spec_add_input(
    spec: *mut bgjob_spec,
    data: *const c_void,
    len: usize,
) -> bgjob_status {
    boundary(|| {
        // SAFETY: as documented for the caller.
        let spec = unsafe { spec_mut(spec) }?;
        // SAFETY: `len` readable bytes at `data`, as documented for the caller.
        let bytes = unsafe { bytes_arg(data, len) }?;
        spec.inputs.push(Payload::from(bytes));
        Ok(())
    })
}

/// Sets a parallel job's throttle limit (`-ThrottleLimit`): at most `limit` of its
/// children run at once; the others wait NotStarted and are handed to the pool one by one
/// as running ones finish. 0 (the default) = only the pool's own limits. The limit is the
/// job's own, on top of its pool's. It matters only for a spec with inputs
/// (`bgjob_spec_add_input`); a thread or process job ignores it.
///
/// # Safety
/// `spec` is a live spec.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn bgjob_spec_set_throttle_limit(
    spec: *mut bgjob_spec,
    limit: u32,
) -> bgjob_status {
    boundary(|| {
        // SAFETY: as documented for the caller.
        let spec = unsafe { spec_mut(spec) }?;
        spec.throttle_limit = usize::try_from(limit).unwrap_or(usize::MAX);
        Ok(())
    })
}

/// Adds a state-change callback, registered before the job can run so that no change is
/// missed (its first call is for NotStarted → Running or → Stopped); for a custom job,
/// before the host can move it. For a parallel job (or a custom job with children) it
/// is registered on the parent, whose state follows its children's; register on a child
/// with `bgjob_on_state_changed`. `finalizer` (may be NULL) frees `user_data` once, when
/// the job is removed or the spec freed unstarted; it runs even if this call fails.
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

/// Starts the job `spec` describes and returns at once with its id in `*out_id`:
///
/// - with work and without inputs, a thread job (type `ThreadJob`) whose work runs once;
/// - with inputs (`bgjob_spec_add_input`), a parallel job (PowerShell's
///   `ForEach-Object -Parallel -AsJob`): a parent of type `ParallelJob` with one child of
///   type `ParallelChildJob` per input, in the order the inputs were added. `*out_id` is the
///   parent's id N; the children get N+1, N+2, … (see `bgjob_job_info_child_id`). Each
///   child runs the work once and reads its input with `bgjob_context_input`; at most the
///   throttle limit of them run at once, the others stay NotStarted until a slot frees.
///   The parent's state follows its children's (Failed if any failed, else Stopped if any
///   stopped, else Completed), its status message reads `finished/total completed`, a
///   receive from it returns its children's records, and removing it removes them;
/// - with argv (`bgjob_spec_set_argv`) instead of work, a process job (PowerShell's
///   `Start-Job`, type `ProcessJob`, location `localhost`, command = the argv as typed in
///   a shell unless the spec sets one): a pool worker starts the program (the pool's
///   throttle counts the job as running until the process ends, without holding a worker
///   meanwhile). Each line it writes to stdout becomes an Output record, each line to
///   stderr an Error record, in the order they arrive (see `bgjob_spec_set_output_mode`).
///   Exit code 0 completes the job; another exit code fails it with the reason
///   `exited with code N`, death by a signal with a reason naming the signal; a program
///   that cannot be started (not found, not executable) fails it with the OS's reason, e.g.
///   `cannot start 'x': No such file or directory (os error 2)`. `bgjob_stop` sends SIGTERM
///   to the process's process group, then SIGKILL after the stop grace
///   (`bgjob_spec_set_stop_grace`), and the job ends Stopped. A process job cannot be
///   suspended.
///
/// The work's return code decides a thread job's (or child's) end: 0 completes it,
/// anything else fails it (see `bgjob_work_fn`). The spec is consumed (freed) whatever the
/// result; on failure nothing is left behind and its user data is finalized. Fails with
/// `BGJOB_E_INVALID_ARGUMENT` if the spec has neither work nor argv, if it has argv
/// together with work or inputs, if it holds settings only a custom job has (see
/// `bgjob_create_custom`), or process-only settings without argv; with `BGJOB_E_SYSTEM` if
/// a process job's working directory does not exist or is not a directory
/// (`bgjob_last_error_errno` gives the error number); and with `BGJOB_E_SHUT_DOWN` if its
/// pool was shut down.
///
/// # Safety
/// `spec` is NULL or a live spec, not used after this call; `out_id` is writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn bgjob_start(spec: *mut bgjob_spec, out_id: *mut u64) -> bgjob_status {
    boundary(|| {
        // SAFETY: as documented for the caller.
        let spec = unsafe { take_spec(spec, out_id) }?;
        let job = if spec.process.is_process() {
            process_job_spec(spec, "bgjob_start")?.start()?
        } else {
            spec.custom.refuse("bgjob_start")?;
            spec.process.refuse_without_argv("bgjob_start")?;
            if spec.inputs.is_empty() {
                start_thread_job(spec)?
            } else {
                start_parallel(spec)?
            }
        };
        // SAFETY: non-NULL (checked by take_spec) and writable, as documented.
        unsafe { *out_id = job.id() };
        Ok(())
    })
}

/// Starts a thread job running `work(ctx, user_data)` on `pool` (NULL = the default pool)
/// and writes its id to `*out_id`: `bgjob_spec_new`, `bgjob_spec_set_work`,
/// `bgjob_spec_set_pool` and `bgjob_start` in one call, without a spec to allocate and free
/// — for the many small jobs where that is a real part of the cost (benches/README.md,
/// W1). The job has the default name (`Job<id>`), no command text and no callbacks of its
/// own; register one with `bgjob_on_state_changed` after the start (changes before it are
/// not replayed) or use a spec.
///
/// `finalizer` (may be NULL) frees `user_data` exactly once, as for `bgjob_spec_set_work`:
/// after the work returns, or when the job is stopped before running, or at once if the
/// start fails. `BGJOB_E_INVALID_ARGUMENT` for a NULL `work` or `out_id`;
/// `BGJOB_E_SHUT_DOWN` if the pool was shut down.
///
/// # Safety
/// `pool` is NULL or a live pool; `out_id` is NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn bgjob_start_fn(
    work: bgjob_work_fn,
    user_data: *mut c_void,
    finalizer: bgjob_finalizer,
    pool: *const bgjob_pool,
    out_id: *mut u64,
) -> bgjob_status {
    boundary(|| {
        // Owned from here on: finalized whatever happens below.
        let data = ForeignData::new(user_data, finalizer);
        let work = work.ok_or_else(|| Error::InvalidArgument("work is NULL".into()))?;
        if out_id.is_null() {
            return Err(Error::InvalidArgument("out_id is NULL".into()));
        }
        let mut js = c_work_spec(work, data);
        if !pool.is_null() {
            // SAFETY: non-NULL and live, as documented for the caller.
            js = js.pool(&unsafe { &*pool }.pool);
        }
        let job = js.start()?;
        // SAFETY: non-NULL (checked above) and writable, as documented.
        unsafe { *out_id = job.id() };
        Ok(())
    })
}

/// An inline run (PowerShell's cmdlet without `-AsJob`): the thread or process job
/// `bgjob_start` would start from `spec`, but it runs here, on the calling thread — a
/// thread job's work is called here, a process job's program is started from here — and
/// this returns only once the job is finished and the callbacks of its finished state have
/// run. It is the same job: in the repository (its id in `*out_id`), with the same states,
/// callbacks (NotStarted → Running, then Running → Completed or Failed, called on this
/// thread) and records (for a process job: one per line, as for `bgjob_start`). Receive its
/// records and remove it as for any job. A stop asked from another thread meanwhile works
/// as for any running job (the work sees it with `bgjob_context_stop_requested`; a process
/// gets SIGTERM, then SIGKILL after the grace; the callbacks of the changes that stop makes
/// may run on that thread). The spec's pool, if any, is not used.
///
/// The status says whether the run happened, not how the job ended: `BGJOB_OK` also for a
/// job whose work failed or whose process exited with a code other than 0 or could not be
/// started (read its state with `bgjob_get_state`).
///
/// The spec is consumed (freed) whatever the result; on failure no job is made and its
/// user data is finalized. `BGJOB_E_INVALID_ARGUMENT` if the spec has neither work nor
/// argv, if it has argv together with work or inputs, if it has inputs
/// (`bgjob_spec_add_input`: a parallel job's children run on a pool, so a parallel job
/// cannot run inline; start it with `bgjob_start`), if it holds settings only a custom
/// job has (see `bgjob_create_custom`), or process-only settings without argv.
/// `BGJOB_E_SYSTEM` if a process job's working directory does not exist or is not a
/// directory.
///
/// # Safety
/// `spec` is NULL or a live spec, not used after this call; `out_id` is writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn bgjob_run_inline(spec: *mut bgjob_spec, out_id: *mut u64) -> bgjob_status {
    boundary(|| {
        // SAFETY: as documented for the caller.
        let spec = unsafe { take_spec(spec, out_id) }?;
        let job = if spec.process.is_process() {
            process_job_spec(spec, "bgjob_run_inline")?.run_inline()?
        } else {
            if !spec.inputs.is_empty() {
                return Err(Error::InvalidArgument(format!(
                    "the spec has {} input(s): a parallel job cannot run inline (its \
                     children run on a pool); start it with bgjob_start",
                    spec.inputs.len()
                )));
            }
            spec.custom.refuse("bgjob_run_inline")?;
            spec.process.refuse_without_argv("bgjob_run_inline")?;
            thread_job_spec(spec)?.run_inline()
        };
        // SAFETY: non-NULL (checked by take_spec) and writable, as documented.
        unsafe { *out_id = job.id() };
        Ok(())
    })
}

/// Gives a core spec builder (`JobSpec`, `ParallelJobSpec`, `ProcessJobSpec`: each has
/// these builder methods) what every kind of job takes from a C spec: its name, command,
/// pool and callbacks. Moves those fields out of `$spec`.
macro_rules! common_settings {
    ($builder:expr, $spec:expr) => {{
        let mut b = $builder;
        if let Some(name) = $spec.name {
            b = b.name(name);
        }
        if let Some(command) = $spec.command {
            b = b.command(command);
        }
        if let Some(pool) = &$spec.pool {
            b = b.pool(pool);
        }
        for cb in $spec.callbacks {
            b = b.on_state_changed_boxed(cb);
        }
        b
    }};
}
pub(super) use common_settings;

/// Takes over a spec handed to a function that consumes it: from here on it is freed (and
/// its user data finalized) whatever happens, also when `out_id` is NULL.
///
/// # Safety
/// `spec` is NULL or a live spec from `bgjob_spec_new`, not used by the caller afterwards.
pub(super) unsafe fn take_spec(spec: *mut bgjob_spec, out_id: *mut u64) -> Result<bgjob_spec> {
    if spec.is_null() {
        return Err(Error::InvalidArgument("spec is NULL".into()));
    }
    // SAFETY: a live spec from bgjob_spec_new, as the caller guarantees; we take it over.
    let spec = *unsafe { Box::from_raw(spec) };
    if out_id.is_null() {
        return Err(Error::InvalidArgument("out_id is NULL".into()));
    }
    Ok(spec)
}

/// The C convention for a work's return code: 0 completes the job, anything else fails it
/// (a reason given to `bgjob_context_fail` takes precedence, in the worker).
fn outcome(rc: i32) -> crate::job::WorkResult {
    if rc == 0 {
        Ok(())
    } else {
        Err(format!("the work returned {rc}"))
    }
}

/// A thread job's spec running the C function `work` with `data`.
fn c_work_spec(
    work: unsafe extern "C" fn(*mut bgjob_context, *mut c_void) -> i32,
    data: ForeignData,
) -> JobSpec {
    JobSpec::new(move |ctx| {
        let data = data;
        // SAFETY: the host gave us this function for this user data.
        let rc = unsafe { work(as_c(ctx), data.get()) };
        // Finalized here, before the job's finished state is stored.
        drop(data);
        outcome(rc)
    })
}

/// The core's spec of the thread job `spec` describes: what `bgjob_start` queues and
/// `bgjob_run_inline` runs in place.
fn thread_job_spec(spec: bgjob_spec) -> Result<JobSpec> {
    let (work, data) = spec.work.ok_or_else(|| {
        Error::InvalidArgument(
            "the spec has no work: give it a work function with bgjob_spec_set_work, \
                 or a program with bgjob_spec_set_argv"
                .into(),
        )
    })?;
    Ok(common_settings!(c_work_spec(work, data), spec))
}

fn start_thread_job(spec: bgjob_spec) -> Result<Arc<crate::job::Job>> {
    thread_job_spec(spec)?.start()
}

fn start_parallel(spec: bgjob_spec) -> Result<Arc<crate::job::Job>> {
    let (work, data) = spec
        .work
        .ok_or_else(|| Error::InvalidArgument("the spec has no work".into()))?;
    // One user data for every child: the shared work owns it, so its finalizer runs once,
    // when the last reference goes (the last child's work returned, or the children left
    // were stopped before running, or the job was removed, or the start failed).
    let shared: ParallelWork = Arc::new(move |ctx| {
        // SAFETY: the host gave us this function for this user data.
        outcome(unsafe { work(as_c(ctx), data.get()) })
    });
    let ps = ParallelJobSpec::from_shared(spec.inputs, shared).throttle_limit(spec.throttle_limit);
    // The spec's callbacks watch the parent (a child's changes show in the parent's).
    let ps = common_settings!(ps, spec);
    ps.start()
}
