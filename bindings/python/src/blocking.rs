//! Blocking calls with the interpreter released and Ctrl-C honoured: the wait runs in
//! slices of at most `SLICE` outside the interpreter, and between slices
//! `check_signals` lets a `KeyboardInterrupt` (or any signal handler's exception) out.

use pyo3::prelude::*;
use pyo3::types::PyAny;
use std::time::{Duration, Instant};

const SLICE: Duration = Duration::from_millis(50);

/// A Python timeout in seconds (`None` = no limit) as a duration; negative is refused.
pub(crate) fn timeout_arg(timeout: Option<f64>) -> PyResult<Option<Duration>> {
    match timeout {
        None => Ok(None),
        Some(t) if t.is_finite() && t >= 0.0 => Ok(Some(Duration::from_secs_f64(t))),
        Some(t) if t.is_infinite() && t > 0.0 => Ok(None),
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
    let deadline = timeout.map(|t| Instant::now() + t);
    loop {
        let slice = match deadline {
            None => SLICE,
            Some(d) => d.saturating_duration_since(Instant::now()).min(SLICE),
        };
        let out = py.detach(|| step(slice)).map_err(crate::errors::to_py)?;
        if out.is_some() {
            return Ok(out);
        }
        if deadline.is_some_and(|d| Instant::now() >= d) {
            return Ok(None);
        }
        py.check_signals()?;
    }
}

/// Runs `call(py, callable)` from a bgjob thread (a worker or a state change's
/// dispatcher). Declines quietly during interpreter shutdown; an exception goes to
/// `sys.unraisablehook`, never into the job.
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
            err.write_unraisable(py, Some(cb));
        }
    });
}
