//! Process jobs from Python (PowerShell's Start-Job for a program): `start_process_job`
//! and its inline run `run_process_job`. Arguments are checked here, as `subprocess`
//! checks them (`TypeError` for a wrong type, `ValueError` for a wrong value), before the
//! core sees them.

use crate::errors::os_error;
use crate::job::{JobHandle, state_callback};
use crate::pool::Pool;
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyAny, PyByteArray, PyBytes, PyMapping, PyString};
use std::ffi::OsString;
use std::os::unix::ffi::OsStringExt;
use std::time::Duration;

/// `obj` (str, bytes or os.PathLike) as the OS sees it, encoded as `os.fsencode` does;
/// `what` names it in errors.
fn os_bytes(obj: &Bound<'_, PyAny>, what: &dyn Fn() -> String) -> PyResult<Vec<u8>> {
    let py = obj.py();
    let encoded = match py.import("os")?.call_method1("fsencode", (obj,)) {
        Ok(b) => b,
        Err(e) if e.is_instance_of::<PyTypeError>(py) => {
            return Err(PyTypeError::new_err(format!(
                "{}: expected str, bytes or os.PathLike, not {}",
                what(),
                obj.get_type().name()?
            )));
        }
        Err(e) => return Err(e),
    };
    let bytes = encoded.cast::<PyBytes>()?.as_bytes().to_vec();
    if bytes.contains(&0) {
        return Err(PyValueError::new_err(format!(
            "{}: embedded null byte",
            what()
        )));
    }
    Ok(bytes)
}

/// The argv given: a sequence (any iterable) of str/bytes/os.PathLike, at least a program.
fn argv_arg(func: &str, argv: &Bound<'_, PyAny>) -> PyResult<Vec<OsString>> {
    if argv.is_instance_of::<PyString>()
        || argv.is_instance_of::<PyBytes>()
        || argv.is_instance_of::<PyByteArray>()
    {
        return Err(PyTypeError::new_err(format!(
            "{func}() takes argv as a list of arguments, not a single {} such as {}: no \
             shell splits it (pass ['ls', '-l'] or shlex.split('ls -l'), or \
             ['sh', '-c', 'ls -l'] to run a shell)",
            argv.get_type().name()?,
            argv.repr()?
        )));
    }
    let items = argv.try_iter().map_err(|_| {
        PyTypeError::new_err(format!(
            "{func}() takes argv as a list of arguments (str, bytes or os.PathLike), not {}",
            type_name(argv)
        ))
    })?;
    let mut out = Vec::new();
    for (i, item) in items.enumerate() {
        let bytes = os_bytes(&item?, &|| format!("argv[{i}]"))?;
        out.push(OsString::from_vec(bytes));
    }
    match out.first() {
        None => Err(PyValueError::new_err(format!(
            "{func}() needs a program: argv is empty"
        ))),
        Some(p) if p.is_empty() => Err(PyValueError::new_err(format!(
            "{func}() needs a program: argv[0] is empty"
        ))),
        Some(_) => Ok(out),
    }
}

/// The variables of a mapping given as `env` or `add_env` (named `what`), in its order.
fn env_arg(what: &str, env: &Bound<'_, PyAny>) -> PyResult<Vec<(OsString, OsString)>> {
    let mapping = env.cast::<PyMapping>().map_err(|_| {
        PyTypeError::new_err(format!(
            "{what} must be a mapping of variable names to values (such as a dict or \
             os.environ), not {}",
            type_name(env)
        ))
    })?;
    let mut out = Vec::new();
    for pair in mapping.items()?.iter() {
        let (k, v): (Bound<'_, PyAny>, Bound<'_, PyAny>) = pair.extract()?;
        let key = os_bytes(&k, &|| format!("{what} key {}", repr(&k)))?;
        if key.is_empty() || key.contains(&b'=') {
            return Err(PyValueError::new_err(format!(
                "{what}: illegal environment variable name {}: it must be non-empty and \
                 contain no '='",
                repr(&k)
            )));
        }
        let value = os_bytes(&v, &|| format!("{what}[{}]", repr(&k)))?;
        out.push((OsString::from_vec(key), OsString::from_vec(value)));
    }
    Ok(out)
}

fn repr(obj: &Bound<'_, PyAny>) -> String {
    obj.repr().map(|r| r.to_string()).unwrap_or_default()
}

fn type_name(obj: &Bound<'_, PyAny>) -> String {
    obj.get_type()
        .name()
        .map(|n| n.to_string())
        .unwrap_or_default()
}

/// The bytes to feed to stdin: bytes-like as they are, str encoded as UTF-8.
fn input_arg(input: &Bound<'_, PyAny>) -> PyResult<Vec<u8>> {
    if let Ok(s) = input.cast::<PyString>() {
        return Ok(s.to_str()?.as_bytes().to_vec());
    }
    if let Ok(b) = input.cast::<PyBytes>() {
        return Ok(b.as_bytes().to_vec());
    }
    if let Ok(b) = input.cast::<PyByteArray>() {
        return Ok(b.to_vec());
    }
    Err(PyTypeError::new_err(format!(
        "input must be bytes, bytearray or str (encoded as UTF-8), not {}",
        input.get_type().name()?
    )))
}

/// `stop_grace` in seconds as a duration (None: the core's default, 5 s).
fn grace_arg(grace: Option<f64>) -> PyResult<Option<Duration>> {
    // `try_from_secs_f64` refuses what is negative, not finite or too large.
    grace
        .map(|g| {
            Duration::try_from_secs_f64(g).map_err(|_| {
                PyValueError::new_err(format!(
                    "stop_grace must be None or a finite number of seconds >= 0, not {g}"
                ))
            })
        })
        .transpose()
}

/// What `start_process_job` and `run_process_job` share, checked and converted.
struct Args<'py> {
    spec: bgjob::ProcessJobSpec,
    /// The working directory as given, for the `filename` of a `JobOSError`.
    cwd: Option<Bound<'py, PyAny>>,
}

/// Builds the spec, with `on_state_changed` registered before the job can change state.
#[allow(clippy::too_many_arguments)]
fn process_spec<'py>(
    func: &str,
    argv: &Bound<'py, PyAny>,
    env: Option<&Bound<'py, PyAny>>,
    add_env: Option<&Bound<'py, PyAny>>,
    cwd: Option<&Bound<'py, PyAny>>,
    input: Option<&Bound<'py, PyAny>>,
    name: Option<String>,
    text: bool,
    chunks: bool,
    stop_grace: Option<f64>,
    on_state_changed: Option<Py<PyAny>>,
) -> PyResult<Args<'py>> {
    let mut spec = bgjob::ProcessJobSpec::new(argv_arg(func, argv)?);
    if let Some(env) = env {
        let vars = env_arg("env", env)?;
        spec = spec.env_clear();
        for (k, v) in vars {
            spec = spec.env(k, v);
        }
    }
    if let Some(add) = add_env {
        for (k, v) in env_arg("add_env", add)? {
            spec = spec.env(k, v);
        }
    }
    if let Some(dir) = cwd {
        let bytes = os_bytes(dir, &|| "cwd".to_string())?;
        spec = spec.current_dir(std::path::PathBuf::from(OsString::from_vec(bytes)));
    }
    if let Some(data) = input {
        spec = spec.stdin(input_arg(data)?);
    }
    if let Some(grace) = grace_arg(stop_grace)? {
        spec = spec.stop_grace(grace);
    }
    if let Some(n) = name {
        spec = spec.name(n);
    }
    spec = spec.text(text).output_mode(if chunks {
        bgjob::OutputMode::Chunks
    } else {
        bgjob::OutputMode::Lines
    });
    if let Some(cb) = on_state_changed {
        spec = spec.on_state_changed_boxed(state_callback(cb));
    }
    Ok(Args {
        spec,
        cwd: cwd.cloned(),
    })
}

/// The Python exception for a failed start: a `JobOSError` about the working directory
/// names it as its `filename`.
fn start_error(py: Python<'_>, e: bgjob::Error, cwd: Option<&Bound<'_, PyAny>>) -> PyErr {
    match e {
        bgjob::Error::System { message, errno } => {
            let about_cwd = cwd.filter(|_| message.starts_with("working directory "));
            os_error(py, &message, errno, about_cwd)
        }
        e => crate::errors::to_py(e),
    }
}

/// Start-Job for a program: runs `argv[0]` (looked up in `PATH` unless it contains a `/`)
/// with the arguments `argv[1:]` as a process job and returns its `Job` at once. `argv` is
/// a list of str, bytes or os.PathLike (a single str is refused: no shell splits it; run
/// `['sh', '-c', line]` for one). The process's stdout lines become output records and
/// its stderr lines error records (`ErrorRecord`s), in the order they arrive; each line
/// without its newline, a `str` — or `bytes` when it is not UTF-8 (or with `text=False`).
/// `chunks=True` makes one record per read from the pipe instead of one per line.
///
/// `env` (a mapping) replaces the environment, as in `subprocess`; `add_env` adds
/// variables to the inherited environment (or to `env`); `cwd` is the working directory;
/// `input` (bytes, or str encoded as UTF-8) is fed to stdin, which is then closed (without
/// `input`, stdin is at end of file). Exit code 0 completes the job; any other exit fails
/// it with reason `exited with code N` (a signal, `killed by signal N (SIGNAME)`), and a program
/// that cannot be started fails it with the OS's reason (`cannot start 'x': No such file
/// or directory (os error 2)`). A working directory that does not exist raises
/// `JobOSError` (an `OSError`) and starts nothing. `stop()` sends SIGTERM to the
/// process's group, then SIGKILL after `stop_grace` seconds (default 5): the job ends
/// Stopped. The job is a `ProcessJob` at `localhost` whose command is argv as typed in a
/// shell. It runs from `pool` (default: the default pool): the pool's throttle counts it
/// until the process ends, but it holds no worker thread meanwhile. `result()` of a
/// Completed process job is the list of its output records not yet received (without
/// taking them); a Failed one raises `JobFailedError`. `on_state_changed(job,
/// state_info, previous)` is registered before the job can run. Each running process job
/// holds 3 or 4 file descriptors: hundreds at once may need a higher `RLIMIT_NOFILE`.
#[pyfunction]
#[pyo3(signature = (argv, *, env = None, add_env = None, cwd = None, input = None, name = None, pool = None, text = true, chunks = false, stop_grace = None, on_state_changed = None))]
// Each is a keyword argument of the Python function, not a Rust API to bundle.
#[allow(clippy::too_many_arguments)]
pub(crate) fn start_process_job(
    py: Python<'_>,
    argv: &Bound<'_, PyAny>,
    env: Option<&Bound<'_, PyAny>>,
    add_env: Option<&Bound<'_, PyAny>>,
    cwd: Option<&Bound<'_, PyAny>>,
    input: Option<&Bound<'_, PyAny>>,
    name: Option<String>,
    pool: Option<PyRef<'_, Pool>>,
    text: bool,
    chunks: bool,
    stop_grace: Option<f64>,
    on_state_changed: Option<Py<PyAny>>,
) -> PyResult<JobHandle> {
    let Args { mut spec, cwd } = process_spec(
        "start_process_job",
        argv,
        env,
        add_env,
        cwd,
        input,
        name,
        text,
        chunks,
        stop_grace,
        on_state_changed,
    )?;
    if let Some(p) = &pool {
        spec = spec.pool(&p.pool);
    }
    // Checking the working directory and queueing need no Python (a callback of a change
    // made here attaches by itself).
    match crate::blocking::detach(py, move || spec.start()) {
        Ok(job) => Ok(JobHandle(job)),
        Err(e) => Err(start_error(py, e, cwd.as_ref())),
    }
}

/// An inline run of a program (Start-Job's cmdlet without `-AsJob`, like
/// `subprocess.run`): the job `start_process_job` would make — in the repository, with
/// the same states, callbacks and records — started without a pool, and returned once it
/// has finished, its records are readable and the callbacks of its finished state have
/// run. Takes the same arguments but `pool`. The interpreter is released meanwhile; Ctrl-C
/// (on the main thread) stops the job — SIGTERM, then SIGKILL after `stop_grace` — and
/// raises `KeyboardInterrupt` once it has ended Stopped. A stop asked from another thread
/// works as for any job. Receive and remove the job as usual.
#[pyfunction]
#[pyo3(signature = (argv, *, env = None, add_env = None, cwd = None, input = None, name = None, text = true, chunks = false, stop_grace = None, on_state_changed = None))]
#[allow(clippy::too_many_arguments)]
pub(crate) fn run_process_job(
    py: Python<'_>,
    argv: &Bound<'_, PyAny>,
    env: Option<&Bound<'_, PyAny>>,
    add_env: Option<&Bound<'_, PyAny>>,
    cwd: Option<&Bound<'_, PyAny>>,
    input: Option<&Bound<'_, PyAny>>,
    name: Option<String>,
    text: bool,
    chunks: bool,
    stop_grace: Option<f64>,
    on_state_changed: Option<Py<PyAny>>,
) -> PyResult<JobHandle> {
    let Args { spec, cwd } = process_spec(
        "run_process_job",
        argv,
        env,
        add_env,
        cwd,
        input,
        name,
        text,
        chunks,
        stop_grace,
        on_state_changed,
    )?;
    // The process starts on this thread, which then waits in slices (signals are checked
    // between them) instead of inside the core's inline run, which has no deadline.
    let job = crate::blocking::detach(py, || spec.start_here())
        .map_err(|e| start_error(py, e, cwd.as_ref()))?;
    match crate::job::wait_done_with(py, &job, None, true) {
        Ok(_) => Ok(JobHandle(job)),
        Err(interrupt) => {
            // Stop the job and wait until it has ended, then let the interrupt out: the
            // job ends Stopped, not left running behind the exception.
            let _ = crate::blocking::detach(py, || bgjob::stop_job(&job, None));
            Err(interrupt)
        }
    }
}
