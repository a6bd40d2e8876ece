//! `bgjob._native`: the Python face of bgjob, a thin layer over the Rust core. The public
//! package `bgjob` (python/bgjob/__init__.py) re-exports it with the pure-Python parts
//! (enums, record classes, asyncio and concurrent.futures support).

mod blocking;
mod context;
mod convert;
mod custom;
mod errors;
mod event_queue;
mod exit;
mod job;
mod pool;
mod process;

use blocking::{sliced, timeout_arg};
use errors::IntoPy;
use job::{Job, JobHandle};
use pool::Pool;
use pyo3::prelude::*;
use pyo3::types::{PyAny, PyDict, PyTuple};
use std::sync::Arc;

/// A callback registration: `unregister()` ends it. Also a context manager.
#[pyclass(frozen, module = "bgjob", name = "Registration")]
pub(crate) struct Registration {
    job: Option<Arc<bgjob::Job>>,
    id: u64,
}

impl Registration {
    pub(crate) fn new(job: Option<Arc<bgjob::Job>>, id: u64) -> Registration {
        Registration { job, id }
    }
}

#[pymethods]
impl Registration {
    /// The registration's id.
    #[getter]
    fn id(&self) -> u64 {
        self.id
    }

    /// Ends the registration; returns False if it had ended already. A call under way on
    /// another thread may still finish; no later change calls the callback.
    fn unregister(&self) -> bool {
        match &self.job {
            Some(j) => j.unregister(self.id),
            None => bgjob::unregister_any(self.id),
        }
    }

    fn __enter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    fn __exit__(&self, _t: Py<PyAny>, _e: Py<PyAny>, _tb: Py<PyAny>) -> bool {
        self.unregister();
        false
    }
}

fn command_of(callable: &Bound<'_, PyAny>) -> String {
    callable
        .getattr("__qualname__")
        .or_else(|_| callable.getattr("__name__"))
        .and_then(|n| n.extract::<String>())
        .unwrap_or_else(|_| callable.repr().map(|r| r.to_string()).unwrap_or_default())
}

/// The spec of a thread job running `callable(*args, **kwargs)`, shown as `command`.
fn work_spec(
    callable: Bound<'_, PyAny>,
    args: Bound<'_, PyTuple>,
    kwargs: Option<Bound<'_, PyDict>>,
    command: String,
) -> bgjob::JobSpec {
    let work = context::PythonWork {
        callable: callable.unbind(),
        args: args.unbind(),
        kwargs: kwargs.map(Bound::unbind),
    };
    bgjob::JobSpec::new(move |ctx| work.run(ctx)).command(command)
}

/// The spec of a thread job running `fn(*args, **kwargs)`, for `start_job` and `run_job`.
fn thread_spec(
    what: &str,
    r#fn: Bound<'_, PyAny>,
    args: Bound<'_, PyTuple>,
    kwargs: Option<Bound<'_, PyDict>>,
    name: Option<String>,
    on_state_changed: Option<Py<PyAny>>,
) -> PyResult<bgjob::JobSpec> {
    if !r#fn.is_callable() {
        return Err(pyo3::exceptions::PyTypeError::new_err(format!(
            "{what}() needs a callable, not {}",
            r#fn.get_type().name()?
        )));
    }
    let command = command_of(&r#fn);
    let mut spec = work_spec(r#fn, args, kwargs, command);
    if let Some(n) = name {
        spec = spec.name(n);
    }
    if let Some(cb) = on_state_changed {
        spec = spec.on_state_changed_boxed(job::state_callback(cb));
    }
    Ok(spec)
}

/// Start-Job: runs `fn(*args, **kwargs)` as a thread job on `pool` (default: the default
/// pool) and returns its `Job` at once. The return value (unless None) becomes the job's
/// last output record; an exception fails the job with it as reason (`result()` re-raises
/// it). `on_state_changed(job, state_info, previous)` is registered before the job can run,
/// so it sees every change.
#[pyfunction]
#[pyo3(signature = (r#fn, /, *args, name = None, pool = None, on_state_changed = None, **kwargs))]
fn start_job(
    r#fn: Bound<'_, PyAny>,
    args: Bound<'_, PyTuple>,
    name: Option<String>,
    pool: Option<PyRef<'_, Pool>>,
    on_state_changed: Option<Py<PyAny>>,
    kwargs: Option<Bound<'_, PyDict>>,
) -> PyResult<JobHandle> {
    let mut spec = thread_spec("start_job", r#fn, args, kwargs, name, on_state_changed)?;
    if let Some(p) = &pool {
        spec = spec.pool(&p.pool);
    }
    Ok(JobHandle(spec.start().py_err()?))
}

/// For `bgjob.Executor`: starts `fn()` as a thread job on `pool`, shown with the command
/// of `shown_as` (the callable the user submitted). `fn` delivers its own result; when the
/// job finishes it is removed, and `not_run(job)` is called first if it finished without
/// ever running (see `job::task_end_callback`).
#[pyfunction]
fn _start_task(
    r#fn: Bound<'_, PyAny>,
    pool: PyRef<'_, Pool>,
    shown_as: Bound<'_, PyAny>,
    not_run: Py<PyAny>,
) -> PyResult<JobHandle> {
    let args = PyTuple::empty(r#fn.py());
    let spec = work_spec(r#fn, args, None, command_of(&shown_as))
        .pool(&pool.pool)
        .on_state_changed_boxed(job::task_end_callback(not_run));
    Ok(JobHandle(spec.start().py_err()?))
}

/// An inline run (a cmdlet without `-AsJob`): runs `fn(*args, **kwargs)` as a job on the
/// calling thread and returns the finished `Job`. It is the job `start_job` would make —
/// in the repository, with the same states, callbacks (on this thread) and records, the
/// return value as last output record, an exception failing it (`result()` re-raises it)
/// — but it runs here and now, as plain Python code: Ctrl-C reaches it as it would reach
/// any code, and a `KeyboardInterrupt` or `SystemExit` it raises fails the job and is then
/// raised again from `run_job`, so it ends the program as it would without a job. A stop
/// asked from another thread meanwhile works as for any job (the work sees
/// `current_job().stop_requested`). Receive and remove the job as usual. A function of
/// its own, not `start_job(..., inline=True)`: it blocks and returns a finished job where
/// `start_job` returns at once, it has no pool, and it takes no extra keyword away from
/// `fn`'s own `**kwargs`.
#[pyfunction]
#[pyo3(signature = (r#fn, /, *args, name = None, on_state_changed = None, **kwargs))]
fn run_job(
    py: Python<'_>,
    r#fn: Bound<'_, PyAny>,
    args: Bound<'_, PyTuple>,
    name: Option<String>,
    on_state_changed: Option<Py<PyAny>>,
    kwargs: Option<Bound<'_, PyDict>>,
) -> PyResult<JobHandle> {
    let spec = thread_spec("run_job", r#fn, args, kwargs, name, on_state_changed)?;
    // Released around the run: the work and the callbacks attach again by themselves (on
    // this same thread, so the work is this thread's Python code, signals included), and
    // the core may wait for a finished change that another thread (one that asked a stop)
    // dispatches, whose Python callbacks need the interpreter.
    let job = crate::blocking::detach(py, move || spec.run_inline());
    if let Some(a) = job.attachment()
        && let Some(context::Outcome::Raised(e)) = a.downcast_ref::<context::Outcome>()
        && !e.bind(py).is_instance_of::<pyo3::exceptions::PyException>()
    {
        return Err(PyErr::from_value(e.bind(py).clone()));
    }
    Ok(JobHandle(job))
}

/// ForEach-Object -Parallel -AsJob: runs `fn(input)` for each item of `inputs` (the items
/// are passed as they are, not copied), each in a child job of the parent `Job` it returns
/// at once. At most `throttle_limit` children run at once (0 = only the pool's limits);
/// the others wait NotStarted. A child's return value (unless None) becomes its last
/// output record; an exception fails that child with it as reason (the parent then ends
/// Failed). `parent.receive()` returns every child's records in time order (with
/// `as_records=True`, each tells its child's id). `on_state_changed(job, state_info,
/// previous)` is registered on the parent before any child runs.
#[pyfunction]
#[pyo3(signature = (r#fn, inputs, /, *, name = None, pool = None, throttle_limit = 0, on_state_changed = None))]
fn start_parallel_job(
    py: Python<'_>,
    r#fn: Bound<'_, PyAny>,
    inputs: Bound<'_, PyAny>,
    name: Option<String>,
    pool: Option<PyRef<'_, Pool>>,
    throttle_limit: usize,
    on_state_changed: Option<Py<PyAny>>,
) -> PyResult<JobHandle> {
    if !r#fn.is_callable() {
        return Err(pyo3::exceptions::PyTypeError::new_err(format!(
            "start_parallel_job() needs a callable, not {}",
            r#fn.get_type().name()?
        )));
    }
    // Every input is taken before anything starts: an iterator that raises starts nothing.
    let inputs = inputs
        .try_iter()?
        .map(|item| item.map(|obj| convert::payload(&obj)))
        .collect::<PyResult<Vec<bgjob::Payload>>>()?;
    let command = command_of(&r#fn);
    let work = context::PythonParallelWork {
        callable: r#fn.unbind(),
    };
    let work: bgjob::ParallelWork = Arc::new(move |ctx: &bgjob::WorkContext| work.run(ctx));
    let mut spec = bgjob::ParallelJobSpec::from_shared(inputs, work)
        .command(command)
        .throttle_limit(throttle_limit);
    if let Some(n) = name {
        spec = spec.name(n);
    }
    if let Some(p) = &pool {
        spec = spec.pool(&p.pool);
    }
    if let Some(cb) = on_state_changed {
        spec = spec.on_state_changed_boxed(job::state_callback(cb));
    }
    // Creating the children and handing them to the pool needs no Python (with no inputs
    // the parent's callbacks run here, and attach by themselves).
    Ok(JobHandle(
        crate::blocking::detach(py, move || spec.start()).py_err()?,
    ))
}

/// Get-Job by id (top-level or child job); `NoSuchJobError` if there is none.
#[pyfunction]
fn get_job_by_id(id: u64) -> PyResult<JobHandle> {
    Ok(JobHandle(bgjob::get_job(id).py_err()?))
}

/// Get-Job by instance id (a `uuid.UUID` or its text).
#[pyfunction]
fn get_job_by_instance_id(instance_id: &Bound<'_, PyAny>) -> PyResult<JobHandle> {
    let text = instance_id.str()?.to_string();
    let uuid = bgjob_uuid(&text)?;
    Ok(JobHandle(
        bgjob::repository().get_by_instance_id(uuid).py_err()?,
    ))
}

fn bgjob_uuid(text: &str) -> PyResult<bgjob::Uuid> {
    bgjob::Uuid::parse_str(text)
        .map_err(|e| errors::InvalidArgumentError::new_err(format!("instance_id {text:?}: {e}")))
}

/// Get-Job: the jobs matching every given filter, sorted by id (top-level only unless
/// `include_children`).
#[pyfunction]
#[pyo3(signature = (*, name = None, state = None, has_more_data = None, command = None, newest = None, include_children = false))]
fn get_jobs(
    name: Option<&str>,
    state: Option<u32>,
    has_more_data: Option<bool>,
    command: Option<&str>,
    newest: Option<usize>,
    include_children: bool,
) -> PyResult<Vec<JobHandle>> {
    let state = match state {
        None => None,
        Some(s) => Some(bgjob::JobState::from_u32(s).ok_or_else(|| {
            errors::InvalidArgumentError::new_err(format!("{s} is not a JobState"))
        })?),
    };
    let filter = bgjob::JobFilter {
        name: name.map(bgjob::WildcardPattern::new),
        command: command.map(bgjob::WildcardPattern::new),
        state,
        has_more_data,
        newest,
        include_children,
    };
    Ok(bgjob::get_jobs(&filter)
        .into_iter()
        .map(JobHandle)
        .collect())
}

/// Wait-Job: waits until all (or, with `any`, one) of `jobs` are done, or `timeout` seconds
/// pass (None = no limit, 0 = poll). Returns the jobs that are done, in the order given.
/// A job is done when finished, Suspended or Disconnected — with `force` (Wait-Job
/// -Force) only when finished. Raises `JobsBlockedError` rather than hang when every job
/// it still waits for is Blocked waiting for input.
#[pyfunction]
#[pyo3(signature = (jobs, any = false, timeout = None, force = false))]
fn wait_jobs(
    py: Python<'_>,
    jobs: Vec<PyRef<'_, Job>>,
    any: bool,
    timeout: Option<f64>,
    force: bool,
) -> PyResult<Vec<JobHandle>> {
    let timeout = timeout_arg(timeout)?;
    let core: Vec<Arc<bgjob::Job>> = jobs.iter().map(|j| j.job.clone()).collect();
    let mode = if any {
        bgjob::WaitMode::Any
    } else {
        bgjob::WaitMode::All
    };
    if timeout != Some(std::time::Duration::ZERO) {
        for j in core.iter().filter(|j| !done(j, force)) {
            j.check_can_wait().py_err()?;
        }
    }
    let waited = core.clone();
    sliced(py, timeout, move |slice| {
        let r = if force {
            bgjob::wait_jobs_forced(&waited, mode, Some(slice))?
        } else {
            bgjob::wait_jobs(&waited, mode, Some(slice))?
        };
        Ok((!r.timed_out).then_some(()))
    })?;
    Ok(core
        .into_iter()
        .filter(|j| done(j, force))
        .map(JobHandle)
        .collect())
}

/// Whether a wait (forced or not) on `job` is over.
fn done(job: &bgjob::Job, force: bool) -> bool {
    if force {
        job.is_done_forced()
    } else {
        job.is_done()
    }
}

/// Registers `callback(job, state_info, previous_state_info)` for every state change of
/// every job (after each job's own callbacks). Returns a `Registration`.
#[pyfunction]
fn on_any_state_changed(callback: Py<PyAny>) -> Registration {
    Registration::new(
        None,
        bgjob::on_any_state_changed(job::state_callback(callback)),
    )
}

/// Configures the default pool before its first use (threads 0 = one per core, throttle
/// 0 = none); `AlreadyInitializedError` once it exists.
#[pyfunction]
#[pyo3(signature = (threads = 0, throttle = 0))]
fn configure_default_pool(threads: usize, throttle: usize) -> PyResult<()> {
    bgjob::configure_default_pool(threads, throttle).py_err()
}

#[pymodule(gil_used = false)]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    // gil_used = false is honest: every object here is Rust data behind its own locks or
    // atomics; nothing relies on the GIL for exclusion.
    errors::register(m)?;
    m.add_class::<Job>()?;
    m.add_class::<custom::CustomJob>()?;
    m.add_class::<Pool>()?;
    m.add_class::<Registration>()?;
    m.add_class::<context::JobContext>()?;
    m.add_class::<event_queue::EventQueue>()?;
    m.add_function(wrap_pyfunction!(start_job, m)?)?;
    m.add_function(wrap_pyfunction!(_start_task, m)?)?;
    m.add_function(wrap_pyfunction!(start_parallel_job, m)?)?;
    m.add_function(wrap_pyfunction!(run_job, m)?)?;
    m.add_function(wrap_pyfunction!(process::start_process_job, m)?)?;
    m.add_function(wrap_pyfunction!(process::run_process_job, m)?)?;
    m.add_function(wrap_pyfunction!(custom::create_custom_job, m)?)?;
    m.add_function(wrap_pyfunction!(get_job_by_id, m)?)?;
    m.add_function(wrap_pyfunction!(get_job_by_instance_id, m)?)?;
    m.add_function(wrap_pyfunction!(get_jobs, m)?)?;
    m.add_function(wrap_pyfunction!(wait_jobs, m)?)?;
    m.add_function(wrap_pyfunction!(on_any_state_changed, m)?)?;
    m.add_function(wrap_pyfunction!(configure_default_pool, m)?)?;
    m.add_function(wrap_pyfunction!(context::current_job, m)?)?;
    m.add_function(wrap_pyfunction!(exit::_at_exit, m)?)?;
    m.add_function(wrap_pyfunction!(exit::_after_fork_in_child, m)?)?;
    Ok(())
}
