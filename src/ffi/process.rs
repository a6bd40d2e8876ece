//! Process jobs from C (PowerShell's Start-Job): a spec with argv (`bgjob_spec_set_argv`)
//! starts an external program instead of a work function. Its environment, working
//! directory, stdin bytes, stop grace and output mode are set with the `bgjob_spec_*`
//! functions below; `bgjob_start` and `bgjob_run_inline` (src/ffi/spec.rs) start or run it.

use super::spec::{bgjob_spec, spec_mut};
use super::status::bgjob_status;
use super::types::bytes_arg;
use super::{boundary, non_null};
use crate::error::{Error, Result};
use crate::process::{OutputMode, ProcessJobSpec};
use std::ffi::{CStr, OsString, c_char, c_void};
use std::os::unix::ffi::OsStringExt;
use std::path::PathBuf;
use std::time::Duration;

/// How a process job's output becomes records: one of the `BGJOB_OUTPUT_*` constants.
pub type bgjob_output_mode = u32;
/// One record per line (the default): the line without its `\n` (or `\r\n`); a last line
/// without a newline is a record too; a line longer than 1 MiB is cut into records of
/// that size.
pub const BGJOB_OUTPUT_LINES: bgjob_output_mode = 0;
/// One record per read from the pipe (up to 64 KiB): the bytes as they came, cut wherever
/// the reads cut them.
pub const BGJOB_OUTPUT_CHUNKS: bgjob_output_mode = 1;

/// What a spec holds that only a process job has. `argv` makes the spec a process job;
/// the other settings without it are refused rather than dropped silently, and
/// `bgjob_create_custom` refuses them all.
#[derive(Default)]
pub(crate) struct ProcessSettings {
    argv: Option<Vec<OsString>>,
    /// In the order set: a value, or `None` to remove the variable.
    env: Vec<(OsString, Option<OsString>)>,
    env_clear: bool,
    cwd: Option<PathBuf>,
    stdin: Option<Vec<u8>>,
    grace: Option<Duration>,
    mode: Option<OutputMode>,
}

impl ProcessSettings {
    /// Whether the spec is a process job (its argv is set).
    pub(crate) fn is_process(&self) -> bool {
        self.argv.is_some()
    }

    /// The process-only settings present, each named with the function that sets it.
    fn settings(&self) -> Vec<&'static str> {
        let mut set = Vec::new();
        if !self.env.is_empty() {
            set.push("environment variables (bgjob_spec_set_env)");
        }
        if self.env_clear {
            set.push("a cleared environment (bgjob_spec_clear_env)");
        }
        if self.cwd.is_some() {
            set.push("a working directory (bgjob_spec_set_working_directory)");
        }
        if self.stdin.is_some() {
            set.push("stdin bytes (bgjob_spec_set_stdin)");
        }
        if self.grace.is_some() {
            set.push("a stop grace (bgjob_spec_set_stop_grace)");
        }
        if self.mode.is_some() {
            set.push("an output mode (bgjob_spec_set_output_mode)");
        }
        set
    }

    /// For a spec without argv: `InvalidArgument` naming the process-only settings it
    /// has, if any, for `op`.
    pub(crate) fn refuse_without_argv(&self, op: &str) -> Result<()> {
        let set = self.settings();
        if set.is_empty() {
            return Ok(());
        }
        Err(Error::InvalidArgument(format!(
            "the spec has {} but no argv: {} applies to a process job: set argv with \
             bgjob_spec_set_argv (or drop it to start a thread job with {op})",
            set.join(" and "),
            if set.len() == 1 { "it" } else { "each" },
        )))
    }

    /// For `bgjob_create_custom`: `InvalidArgument` naming the process settings (argv
    /// included), if there are any.
    pub(crate) fn refuse(&self, op: &str) -> Result<()> {
        let mut set = self.settings();
        if self.argv.is_some() {
            set.insert(0, "argv (bgjob_spec_set_argv)");
        }
        if set.is_empty() {
            return Ok(());
        }
        Err(Error::InvalidArgument(format!(
            "the spec has {}, which only a process job has: start it with bgjob_start or \
             bgjob_run_inline, not {op}",
            set.join(" and ")
        )))
    }
}

/// The core's spec of the process job `spec` describes (its argv is set): what
/// `bgjob_start` queues and `bgjob_run_inline` runs in place. Refuses a spec that also
/// has work, inputs or custom-only settings.
pub(super) fn process_job_spec(spec: bgjob_spec, op: &str) -> Result<ProcessJobSpec> {
    if spec.work.is_some() {
        return Err(Error::InvalidArgument(
            "the spec has both argv (bgjob_spec_set_argv) and work (bgjob_spec_set_work): a \
             process job runs its program, a thread job its work function; set only one"
                .into(),
        ));
    }
    if !spec.inputs.is_empty() {
        return Err(Error::InvalidArgument(format!(
            "the spec has argv (bgjob_spec_set_argv) and {} input(s) \
             (bgjob_spec_add_input): a process job runs one program and takes no inputs; \
             give its process bytes with bgjob_spec_set_stdin",
            spec.inputs.len()
        )));
    }
    spec.custom.refuse(op)?;
    let p = spec.process;
    let argv = p
        .argv
        .ok_or_else(|| Error::InvalidArgument("the spec has no argv".into()))?;
    let mut ps = super::spec::common_settings!(ProcessJobSpec::new(argv), spec);
    // Cleared first, then every change in the order given, so that a removal after a
    // set (or a set after a removal) of one name ends as the last call says.
    if p.env_clear {
        ps = ps.env_clear();
    }
    for (key, value) in p.env {
        ps = match value {
            Some(value) => ps.env(key, value),
            None => ps.env_remove(key),
        };
    }
    if let Some(dir) = p.cwd {
        ps = ps.current_dir(dir);
    }
    if let Some(bytes) = p.stdin {
        ps = ps.stdin(bytes);
    }
    if let Some(grace) = p.grace {
        ps = ps.stop_grace(grace);
    }
    if let Some(mode) = p.mode {
        ps = ps.output_mode(mode);
    }
    Ok(ps)
}

/// A NUL-terminated C string as OS bytes (any bytes, not necessarily UTF-8).
///
/// # Safety
/// A non-NULL `ptr` points to a NUL-terminated string.
unsafe fn os_arg(ptr: *const c_char, what: &str) -> Result<OsString> {
    // SAFETY: non-NULL and NUL-terminated, as the caller guarantees.
    let s = unsafe { non_null(ptr, what).map(|p| CStr::from_ptr(p)) }?;
    Ok(OsString::from_vec(s.to_bytes().to_vec()))
}

/// Makes the spec a *process job* (PowerShell's `Start-Job`): `bgjob_start` then runs the
/// program `argv[0]` — looked up in `PATH` unless it contains a `/` — with the arguments
/// `argv[1..argc]`, no shell involved (run `sh -c` for one). Each string is copied; it is
/// NUL-terminated bytes passed to the OS as they are, so it need not be UTF-8. The job's
/// command text is the argv as typed in a shell (unless `bgjob_spec_set_command` gives
/// one). Calling it again replaces the argv.
///
/// A process job has no work function and no inputs (`bgjob_start` refuses a spec with
/// both argv and `bgjob_spec_set_work` or `bgjob_spec_add_input`). Its environment,
/// working directory, stdin, stop grace and output mode are set with
/// `bgjob_spec_set_env`, `bgjob_spec_clear_env`, `bgjob_spec_set_working_directory`,
/// `bgjob_spec_set_stdin`, `bgjob_spec_set_stop_grace` and `bgjob_spec_set_output_mode`.
///
/// `BGJOB_E_INVALID_ARGUMENT` (the spec unchanged) if `argv` is NULL, `argc` is 0, an
/// element among the first `argc` is NULL, or `argv[0]` is empty.
///
/// # Safety
/// `spec` is a live spec; `argv` is NULL or points to `argc` pointers, each NULL or a
/// NUL-terminated string.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn bgjob_spec_set_argv(
    spec: *mut bgjob_spec,
    argv: *const *const c_char,
    argc: usize,
) -> bgjob_status {
    boundary(|| {
        // SAFETY: as documented for the caller.
        let spec = unsafe { spec_mut(spec) }?;
        if argv.is_null() {
            return Err(Error::InvalidArgument("argv is NULL".into()));
        }
        if argc == 0 {
            return Err(Error::InvalidArgument(
                "argc is 0: a process job needs at least the program, argv[0]".into(),
            ));
        }
        // SAFETY: `argc` readable pointers at `argv`, as documented for the caller.
        let ptrs = unsafe { std::slice::from_raw_parts(argv, argc) };
        let mut args = Vec::with_capacity(argc);
        for (i, &p) in ptrs.iter().enumerate() {
            // SAFETY: each element is NULL or NUL-terminated, as documented.
            args.push(unsafe { os_arg(p, &format!("argv[{i}]")) }?);
        }
        if args[0].is_empty() {
            return Err(Error::InvalidArgument(
                "argv[0] is \"\": a process job needs a program".into(),
            ));
        }
        spec.process.argv = Some(args);
        Ok(())
    })
}

/// Sets the environment variable `name` to `value` for the process job's process,
/// overriding the value it would inherit from this process; with `value` NULL, removes
/// `name` from the process's environment instead. Later calls for the same name win.
/// Both are NUL-terminated bytes (not necessarily UTF-8). Applies to a process job only
/// (see `bgjob_spec_set_argv`).
///
/// `BGJOB_E_INVALID_ARGUMENT` (the spec unchanged) if `name` is NULL, empty or contains
/// `=`.
///
/// # Safety
/// `spec` is a live spec; `name` is NUL-terminated; `value` is NULL or NUL-terminated.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn bgjob_spec_set_env(
    spec: *mut bgjob_spec,
    name: *const c_char,
    value: *const c_char,
) -> bgjob_status {
    boundary(|| {
        // SAFETY: as documented for the caller.
        let spec = unsafe { spec_mut(spec) }?;
        // SAFETY: as documented for the caller.
        let name = unsafe { os_arg(name, "name") }?;
        if name.is_empty() || name.as_encoded_bytes().contains(&b'=') {
            return Err(Error::InvalidArgument(format!(
                "environment variable name {name:?}: it must be non-empty and contain no '='"
            )));
        }
        let value = if value.is_null() {
            None
        } else {
            // SAFETY: non-NULL and NUL-terminated, as documented.
            Some(unsafe { os_arg(value, "value") }?)
        };
        spec.process.env.push((name, value));
        Ok(())
    })
}

/// Makes the process job's process start from an empty environment instead of inheriting
/// this process's: only the variables set with `bgjob_spec_set_env` (before or after this
/// call) pass — the environment is replaced. The lookup of a program name without a `/`
/// then uses the `PATH` set that way, if any. Applies to a process job only (see
/// `bgjob_spec_set_argv`).
///
/// # Safety
/// `spec` is a live spec.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn bgjob_spec_clear_env(spec: *mut bgjob_spec) -> bgjob_status {
    boundary(|| {
        // SAFETY: as documented for the caller.
        let spec = unsafe { spec_mut(spec) }?;
        spec.process.env_clear = true;
        Ok(())
    })
}

/// Runs the process job's process in the directory `dir` (NUL-terminated bytes, not
/// necessarily UTF-8) instead of this process's working directory. It is checked when the
/// job starts: if it does not exist or is not a directory, `bgjob_start` (or
/// `bgjob_run_inline`) fails with `BGJOB_E_SYSTEM` (`bgjob_last_error_errno` gives e.g.
/// `ENOENT` or `ENOTDIR`, the message names the directory) and no job is made. Applies to
/// a process job only (see `bgjob_spec_set_argv`).
///
/// # Safety
/// `spec` is a live spec; `dir` is NUL-terminated.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn bgjob_spec_set_working_directory(
    spec: *mut bgjob_spec,
    dir: *const c_char,
) -> bgjob_status {
    boundary(|| {
        // SAFETY: as documented for the caller.
        let spec = unsafe { spec_mut(spec) }?;
        // SAFETY: as documented for the caller.
        let dir = unsafe { os_arg(dir, "dir") }?;
        spec.process.cwd = Some(PathBuf::from(dir));
        Ok(())
    })
}

/// Feeds the `len` bytes at `data` (copied; any bytes) to the process job's stdin, then
/// closes it, so the process sees end of file after them. Without this call its stdin is
/// at end of file from the start. `data` may be NULL only if `len` is 0. Calling it again
/// replaces the bytes. Applies to a process job only (see `bgjob_spec_set_argv`).
///
/// `BGJOB_E_INVALID_ARGUMENT` (the spec unchanged) if `data` is NULL while `len` is not 0.
///
/// # Safety
/// `spec` is a live spec; `data` is NULL or points to `len` readable bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn bgjob_spec_set_stdin(
    spec: *mut bgjob_spec,
    data: *const c_void,
    len: usize,
) -> bgjob_status {
    boundary(|| {
        // SAFETY: as documented for the caller.
        let spec = unsafe { spec_mut(spec) }?;
        // SAFETY: `len` readable bytes at `data`, as documented for the caller.
        let bytes = unsafe { bytes_arg(data, len) }?;
        spec.process.stdin = Some(bytes.to_vec());
        Ok(())
    })
}

/// Sets how long a stop of the process job waits, after sending SIGTERM to the process's
/// process group, before it sends SIGKILL: `grace_ms` milliseconds (default 5000; 0 kills
/// at once). The job is Stopped once the process has ended either way. Applies to a
/// process job only (see `bgjob_spec_set_argv`).
///
/// `BGJOB_E_INVALID_ARGUMENT` (the spec unchanged) for a negative `grace_ms`.
///
/// # Safety
/// `spec` is a live spec.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn bgjob_spec_set_stop_grace(
    spec: *mut bgjob_spec,
    grace_ms: i64,
) -> bgjob_status {
    boundary(|| {
        // SAFETY: as documented for the caller.
        let spec = unsafe { spec_mut(spec) }?;
        let ms = u64::try_from(grace_ms).map_err(|_| {
            Error::InvalidArgument(format!(
                "stop grace {grace_ms} ms: give 0 (kill at once) or a positive number"
            ))
        })?;
        spec.process.grace = Some(Duration::from_millis(ms));
        Ok(())
    })
}

/// Sets how the process job's stdout and stderr become records: `BGJOB_OUTPUT_LINES`
/// (the default: one record per line) or `BGJOB_OUTPUT_CHUNKS` (one per chunk read).
/// Applies to a process job only (see `bgjob_spec_set_argv`).
///
/// `BGJOB_E_INVALID_ARGUMENT` (the spec unchanged) for any other value.
///
/// # Safety
/// `spec` is a live spec.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn bgjob_spec_set_output_mode(
    spec: *mut bgjob_spec,
    mode: bgjob_output_mode,
) -> bgjob_status {
    boundary(|| {
        // SAFETY: as documented for the caller.
        let spec = unsafe { spec_mut(spec) }?;
        let mode = match mode {
            BGJOB_OUTPUT_LINES => OutputMode::Lines,
            BGJOB_OUTPUT_CHUNKS => OutputMode::Chunks,
            other => {
                return Err(Error::InvalidArgument(format!(
                    "{other} is not an output mode (0 = BGJOB_OUTPUT_LINES, 1 = \
                     BGJOB_OUTPUT_CHUNKS)"
                )));
            }
        };
        spec.process.mode = Some(mode);
        Ok(())
    })
}
