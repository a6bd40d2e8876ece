//! Blocking calls with the interpreter released and Ctrl-C honoured: the wait runs in
//! slices of at most `SLICE` outside the interpreter, and between slices
//! `check_signals` lets a `KeyboardInterrupt` (or any signal handler's exception) out.

use pyo3::prelude::*;
use pyo3::types::PyAny;
use std::cell::Cell;
use std::time::{Duration, Instant};

const SLICE: Duration = Duration::from_millis(50);

/// A Python timeout in seconds (`None` = no limit) as a duration; negative or NaN is
/// refused. Infinity, or a number of seconds too large for a `Duration` (1e300), is no
/// limit, not an error: a caller who asks to wait that long means forever.
pub(crate) fn timeout_arg(timeout: Option<f64>) -> PyResult<Option<Duration>> {
    match timeout {
        None => Ok(None),
        Some(t) if t >= 0.0 => Ok(Duration::try_from_secs_f64(t).ok()),
        Some(t) => Err(crate::errors::InvalidArgumentError::new_err(format!(
            "timeout must be None or a number of seconds >= 0, not {t}"
        ))),
    }
}

/// Runs `step(slice)` with the interpreter released until it returns `Some`, or `timeout`
/// elapses (then `None`). Each step must return within about `slice`.
pub(crate) fn sliced<T: Send>(
    py: Python<'_>,
    timeout: Option<Duration>,
    mut step: impl FnMut(Duration) -> Result<Option<T>, bgjob::Error> + Send,
) -> PyResult<Option<T>> {
    // A timeout too long for the clock to hold its end (1e19 s) is no deadline at all.
    let deadline = timeout.and_then(|t| Instant::now().checked_add(t));
    loop {
        let slice = match deadline {
            None => SLICE,
            Some(d) => d.saturating_duration_since(Instant::now()).min(SLICE),
        };
        let out = detach(py, || step(slice)).map_err(crate::errors::to_py)?;
        if out.is_some() {
            return Ok(out);
        }
        if deadline.is_some_and(|d| Instant::now() >= d) {
            return Ok(None);
        }
        py.check_signals()?;
    }
}

thread_local! {
    /// How deep this thread is in [`detach`]ed core calls.
    static DETACHED: Cell<usize> = const { Cell::new(0) };
    /// A main-thread callback's `KeyboardInterrupt`, held until the outermost core call
    /// returns (see `call_from_bgjob`).
    static INTERRUPT_DEFERRED: Cell<bool> = const { Cell::new(false) };
}

/// Runs the core call `f` with the interpreter released (`Python::detach`). The state
/// changes it makes may run Python callbacks on this thread; a `KeyboardInterrupt` one of
/// them raised on the main thread is handed back to the signal machinery once `f` returns,
/// so the caller's next signal check raises it — and not the next callback.
pub(crate) fn detach<T: pyo3::marker::Ungil>(
    py: Python<'_>,
    f: impl pyo3::marker::Ungil + FnOnce() -> T,
) -> T {
    /// Leaves the detached scope even if `f` unwinds.
    struct Depth;
    impl Drop for Depth {
        fn drop(&mut self) {
            let depth = DETACHED.get() - 1;
            DETACHED.set(depth);
            if depth == 0 && INTERRUPT_DEFERRED.replace(false) {
                rearm_interrupt();
            }
        }
    }
    DETACHED.set(DETACHED.get() + 1);
    let _depth = Depth;
    py.detach(f)
}

/// Hands a deferred `KeyboardInterrupt` back now: called as Python work starts on this
/// thread (an inline run), which is the program's code, not another callback of the
/// change — Ctrl-C must interrupt it as it would any Python code.
pub(crate) fn rearm_deferred_interrupt() {
    if INTERRUPT_DEFERRED.replace(false) {
        rearm_interrupt();
    }
}

/// Sets the flag a SIGINT sets: the interpreter raises `KeyboardInterrupt` at its next
/// signal check.
fn rearm_interrupt() {
    // SAFETY: callable from any thread, attached or not (even from a signal handler); it
    // only sets the signal-tripped flag.
    unsafe { pyo3::ffi::PyErr_SetInterrupt() };
}

/// Runs `call(py, callable)` from a bgjob thread (a worker or a state change's
/// dispatcher). Declines quietly during interpreter shutdown; an exception goes to
/// `sys.unraisablehook`, never into the job — except a `KeyboardInterrupt` on the main
/// thread (see below).
pub(crate) fn call_from_bgjob(
    callable: &Py<PyAny>,
    call: impl for<'py> FnOnce(Python<'py>, &Bound<'py, PyAny>) -> PyResult<()>,
) {
    if crate::exit::exiting() {
        return;
    }
    let _ = Python::try_attach(|py| {
        let Some(_inside) = crate::exit::Inside::enter(py, 0) else {
            return;
        };
        let cb = callable.bind(py);
        if let Err(err) = call(py, cb) {
            if err.is_instance_of::<pyo3::exceptions::PyKeyboardInterrupt>(py)
                && on_main_thread(py).unwrap_or(false)
            {
                // Ctrl-C arrived while a callback ran on the main thread (the changes of
                // an inline run, or of a stop the main thread made): it was meant for the
                // program, not for the callback. Swallowing it would leave the caller's
                // wait running on; handing it back to the signal machinery makes the
                // caller's next signal check raise it.
                // Not at once, though: the other callbacks of this change would get it
                // on entry, and never run their bodies. `detach` re-arms it when the core
                // call that ran these callbacks returns.
                if DETACHED.get() > 0 {
                    INTERRUPT_DEFERRED.set(true);
                } else {
                    rearm_interrupt();
                }
            } else {
                err.write_unraisable(py, Some(cb));
            }
        }
    });
}

/// Whether the calling thread is the interpreter's main thread: the only thread on which
/// Python runs signal handlers, so the only one where Ctrl-C can interrupt a wait.
pub(crate) fn on_main_thread(py: Python<'_>) -> PyResult<bool> {
    let threading = py.import("threading")?;
    let main = threading.call_method0("main_thread")?.getattr("ident")?;
    main.eq(threading.call_method0("get_ident")?)
}

/// Parks a job's work on the main thread (an inline run there) with Ctrl-C honoured: `park`
/// — the core's checkpoint or input read, which parks without a deadline — runs on a
/// helper thread while this thread waits in slices, checking signals. A parked job can
/// leave Suspended or Blocked only by a resume, input or stop, so on an interrupt `job` is
/// stopped (its park then ends, as for any stop) and the signal handler's exception
/// (`KeyboardInterrupt`) is raised once the helper is done: the job ends Stopped, never
/// stuck in a state its work has left.
pub(crate) fn park_interruptibly<T: Send + 'static>(
    py: Python<'_>,
    job: &std::sync::Arc<bgjob::Job>,
    park: impl FnOnce() -> Result<T, bgjob::Error> + Send + 'static,
) -> PyResult<T> {
    let (tx, rx) = std::sync::mpsc::channel();
    let helper = std::thread::Builder::new()
        .name("bgjob-park".into())
        .spawn(move || {
            // Fails only if the waiting side is gone, and then nobody needs the answer.
            let _ = tx.send(park());
        })
        .map_err(|e| {
            crate::errors::InternalError::new_err(format!("cannot start a thread to park on: {e}"))
        })?;
    // In a mutex only to be shared with the slices (a receiver is not `Sync`).
    let rx = std::sync::Mutex::new(rx);
    let answer = |timeout: Option<Duration>| {
        let rx = rx.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        match timeout {
            Some(t) => rx.recv_timeout(t),
            None => rx
                .recv()
                .map_err(|_| std::sync::mpsc::RecvTimeoutError::Disconnected),
        }
    };
    let waited = sliced(py, None, |slice| match answer(Some(slice)) {
        Ok(parked) => Ok(Some(parked)),
        Err(std::sync::mpsc::RecvTimeoutError::Timeout) => Ok(None),
        Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => Err(bgjob::Error::Panic(
            "the thread parked for the job's work ended without an answer".into(),
        )),
    });
    match waited {
        Ok(Some(parked)) => {
            // It has sent its answer: it is ending.
            detach(py, || helper.join()).ok();
            parked.map_err(crate::errors::to_py)
        }
        // A wait without a timeout ends with an answer or an error.
        Ok(None) => Err(crate::errors::InternalError::new_err(
            "a park without a timeout ended without an answer",
        )),
        Err(interrupt) => {
            detach(py, || {
                job.request_stop();
                let _ = answer(None);
                let _ = helper.join();
            });
            Err(interrupt)
        }
    }
}
