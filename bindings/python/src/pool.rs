//! `bgjob.Pool`: worker threads with a throttle limit.

use crate::blocking::{sliced, timeout_arg};
use crate::errors::IntoPy;
use pyo3::prelude::*;

/// A pool of worker threads that runs at most `throttle` jobs at once. `threads=0` means
/// one per core, `throttle=0` no limit beyond the threads. Jobs go to the default pool
/// unless started with `pool=`. A job blocked in a bgjob wait lends its slot, so waiting
/// inside a job never deadlocks its pool. As a context manager it shuts down on exit.
#[pyclass(frozen, module = "bgjob", name = "Pool")]
pub(crate) struct Pool {
    pub(crate) pool: bgjob::Pool,
}

#[pymethods]
impl Pool {
    #[new]
    #[pyo3(signature = (threads = 0, throttle = 0))]
    fn new(threads: usize, throttle: usize) -> PyResult<Pool> {
        Ok(Pool {
            pool: bgjob::Pool::new(threads, throttle).py_err()?,
        })
    }

    /// The pool's id.
    #[getter]
    fn id(&self) -> u64 {
        self.pool.id()
    }

    /// How many worker threads it keeps.
    #[getter]
    fn threads(&self) -> usize {
        self.pool.threads()
    }

    /// Most jobs running at once (None = no limit beyond the threads).
    #[getter]
    fn throttle(&self) -> Option<usize> {
        (self.pool.throttle() != usize::MAX).then_some(self.pool.throttle())
    }

    /// Whether `shutdown` was called.
    #[getter]
    fn is_shut_down(&self) -> bool {
        self.pool.is_shut_down()
    }

    /// Stops accepting jobs (`PoolShutDownError`), stops queued ones (they never run), asks
    /// running ones to stop, then waits up to `timeout` seconds (None = no limit) for the
    /// threads to exit; raises `JobTimeoutError` if work still runs then. Repeatable.
    #[pyo3(signature = (timeout = None))]
    fn shutdown(&self, py: Python<'_>, timeout: Option<f64>) -> PyResult<()> {
        let timeout = timeout_arg(timeout)?;
        let pool = self.pool.clone();
        let done = sliced(py, timeout, |slice| match pool.shutdown(Some(slice)) {
            Ok(()) => Ok(Some(())),
            Err(bgjob::Error::Timeout(_)) => Ok(None),
            Err(e) => Err(e),
        })?;
        match done {
            Some(()) => Ok(()),
            None => Err(crate::errors::JobTimeoutError::new_err(format!(
                "pool {}: work still running after the shutdown timeout",
                self.pool.id()
            ))),
        }
    }

    fn __enter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    fn __exit__(
        &self,
        py: Python<'_>,
        _exc_type: Py<PyAny>,
        _exc: Py<PyAny>,
        _tb: Py<PyAny>,
    ) -> PyResult<bool> {
        self.shutdown(py, None)?;
        Ok(false)
    }

    fn __repr__(&self) -> String {
        format!(
            "<Pool {} threads={} throttle={}>",
            self.pool.id(),
            self.pool.threads(),
            if self.pool.throttle() == usize::MAX {
                "None".to_string()
            } else {
                self.pool.throttle().to_string()
            }
        )
    }
}
