//! `bgjob.EventQueue`: the core's event queue for event loops — state changes queued for
//! the program to drain on its own thread, with a descriptor for `select`, `selectors` and
//! `loop.add_reader`. The asyncio side (`get`, `events`) is in `bgjob/_aio.py`.
//!
//! Closing while an asyncio reader waits: each reader watches a copy (`dup`) of the
//! descriptor, so closing the queue never closes a descriptor an event loop still has
//! registered, and the close calls the readers' wakers so that they stop waiting.

use crate::convert;
use crate::errors::IntoPy;
use crate::job::Job;
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyAny, PyBool, PyType};
use std::os::fd::{BorrowedFd, IntoRawFd};
use std::sync::{Mutex, MutexGuard, PoisonError};

/// A queue of job state-change events, for event loops: every state change of the chosen
/// jobs (or of all jobs), each once and in each job's order, read on the program's own
/// thread — no callback on a bgjob thread. `fileno()` is readable while events are
/// pending, so it works with `select`, `selectors` and asyncio's `loop.add_reader`;
/// `await queue.get()` and `async for event in queue.events()` do that for asyncio.
///
/// `EventQueue(jobs=None)`: `jobs` is None for every job (including jobs started later),
/// or an iterable of `Job`s or job ids (`NoSuchJobError` for an unknown one; a parent's
/// children are jobs of their own: name them too to see their changes). Only changes
/// after the queue opened are in it. Each event is a `JobEvent(job_id, state_info,
/// previous_state_info)`, queued after that change's records are readable and its
/// callbacks have run. Close it (`close()`, or use it as a context manager) to stop the
/// events; pending events are then dropped.
#[pyclass(frozen, module = "bgjob", name = "EventQueue")]
pub(crate) struct EventQueue {
    /// None once closed.
    queue: Mutex<Option<bgjob::EventQueue>>,
    wakers: Mutex<Wakers>,
}

/// What `close` calls: the asyncio readers waiting on a copy of the descriptor.
#[derive(Default)]
struct Wakers {
    next: u64,
    calls: Vec<(u64, Py<PyAny>)>,
}

fn locked<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

fn closed_error() -> PyErr {
    PyValueError::new_err("I/O operation on a closed event queue")
}

fn queue_empty(py: Python<'_>) -> PyResult<&Bound<'_, PyType>> {
    static CELL: PyOnceLock<Py<PyType>> = PyOnceLock::new();
    CELL.import(py, "queue", "Empty")
}

/// The ids of `jobs` (Jobs or ids), each checked to name a job.
fn job_ids(jobs: &Bound<'_, PyAny>) -> PyResult<Vec<bgjob::JobId>> {
    let mut ids = Vec::new();
    for item in jobs.try_iter()? {
        let item = item?;
        let id = if let Ok(job) = item.cast::<Job>() {
            job.get().job.id()
        } else if item.is_instance_of::<PyBool>() {
            return Err(PyTypeError::new_err("expected a Job or a job id, not bool"));
        } else if let Ok(id) = item.extract::<bgjob::JobId>() {
            bgjob::get_job(id).py_err()?.id()
        } else {
            return Err(PyTypeError::new_err(format!(
                "expected a Job or a job id, not {}",
                item.get_type().name()?
            )));
        };
        ids.push(id);
    }
    Ok(ids)
}

impl EventQueue {
    fn pop(&self) -> Option<bgjob::JobEvent> {
        locked(&self.queue)
            .as_ref()
            .and_then(bgjob::EventQueue::next)
    }
}

#[pymethods]
impl EventQueue {
    #[new]
    #[pyo3(signature = (jobs = None))]
    fn new(py: Python<'_>, jobs: Option<&Bound<'_, PyAny>>) -> PyResult<EventQueue> {
        let ids = jobs.map(job_ids).transpose()?;
        let queue =
            crate::blocking::detach(py, || bgjob::EventQueue::open(ids.as_deref())).py_err()?;
        Ok(EventQueue {
            queue: Mutex::new(Some(queue)),
            wakers: Mutex::new(Wakers::default()),
        })
    }

    /// The descriptor to poll: readable while events are pending (and after a `next()`
    /// that found none, not until a new event comes). It stays the queue's: do not read
    /// or close it. `ValueError` once the queue is closed.
    fn fileno(&self) -> PyResult<i32> {
        locked(&self.queue)
            .as_ref()
            .map(bgjob::EventQueue::fd)
            .ok_or_else(closed_error)
    }

    /// The next pending event (a `JobEvent`), or None if none is pending (never blocks).
    /// Once it returns None the descriptor is not readable until a new event comes.
    /// None once the queue is closed.
    fn next<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyAny>>> {
        self.pop().map(|e| convert::job_event(py, &e)).transpose()
    }

    /// The next pending event (a `JobEvent`); raises `queue.Empty` if none is pending, as
    /// `queue.Queue.get_nowait` does (never blocks).
    fn get_nowait<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        match self.pop() {
            Some(e) => convert::job_event(py, &e),
            None => Err(PyErr::from_type(
                queue_empty(py)?.clone(),
                "no job event is pending",
            )),
        }
    }

    /// `await queue.get()`: the next event, waiting for it without blocking the event
    /// loop (through `loop.add_reader` on the descriptor; no thread). `ValueError` if the
    /// queue is closed, before or while it waits.
    fn get<'py>(slf: Bound<'py, Self>) -> PyResult<Bound<'py, PyAny>> {
        let py = slf.py();
        py.import("bgjob._aio")?
            .call_method1("event_queue_get", (slf,))
    }

    /// `async for event in queue.events()`: every event, waiting for each without blocking
    /// the event loop (through `loop.add_reader` on the descriptor; no thread). It ends
    /// when the queue is closed. Several readers may share a queue: each event goes to one.
    fn events<'py>(slf: Bound<'py, Self>) -> PyResult<Bound<'py, PyAny>> {
        let py = slf.py();
        py.import("bgjob._aio")?
            .call_method1("event_queue_events", (slf,))
    }

    /// Whether the queue is closed.
    #[getter]
    fn closed(&self) -> bool {
        locked(&self.queue).is_none()
    }

    /// Stops the events, drops the pending ones and closes the descriptor; asyncio readers
    /// waiting on it stop (`get()` raises `ValueError`, `events()` ends). Closing a closed
    /// queue does nothing.
    fn close(&self, py: Python<'_>) {
        let Some(queue) = locked(&self.queue).take() else {
            return;
        };
        // Unregistering and closing run no Python.
        crate::blocking::detach(py, move || drop(queue));
        let wakers = std::mem::take(&mut locked(&self.wakers).calls);
        for (_, waker) in wakers {
            if let Err(e) = waker.bind(py).call0() {
                e.write_unraisable(py, Some(waker.bind(py)));
            }
        }
    }

    /// A copy of the descriptor, owned by the caller (who must close it): what an asyncio
    /// reader registers, so that closing the queue never closes a descriptor an event loop
    /// watches. `ValueError` once closed.
    #[pyo3(name = "_dup_fileno")]
    fn dup_fileno(&self) -> PyResult<i32> {
        let guard = locked(&self.queue);
        let queue = guard.as_ref().ok_or_else(closed_error)?;
        // SAFETY: the descriptor belongs to the queue, which the lock keeps open meanwhile.
        let fd = unsafe { BorrowedFd::borrow_raw(queue.fd()) };
        let copy = fd.try_clone_to_owned()?;
        Ok(copy.into_raw_fd())
    }

    /// Registers `waker()` to be called by `close()`; returns its token, or None if the
    /// queue is closed already (it is not called then).
    #[pyo3(name = "_on_close")]
    fn on_close(&self, waker: Py<PyAny>) -> Option<u64> {
        // Looked at under the wakers' lock, which `close` takes after closing: either the
        // waker is registered before, and called, or it sees the queue closed.
        let mut wakers = locked(&self.wakers);
        if self.closed() {
            return None;
        }
        wakers.next += 1;
        let token = wakers.next;
        wakers.calls.push((token, waker));
        Some(token)
    }

    /// Forgets the waker `_on_close` registered with `token`.
    #[pyo3(name = "_forget_on_close")]
    fn forget_on_close(&self, token: u64) {
        locked(&self.wakers).calls.retain(|(t, _)| *t != token);
    }

    /// How many events are pending (0 once closed).
    fn __len__(&self) -> usize {
        locked(&self.queue)
            .as_ref()
            .map_or(0, bgjob::EventQueue::len)
    }

    fn __iter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    /// Iteration drains the events pending now, then ends.
    fn __next__<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyAny>>> {
        self.next(py)
    }

    fn __enter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    fn __exit__(&self, py: Python<'_>, _t: Py<PyAny>, _e: Py<PyAny>, _tb: Py<PyAny>) -> bool {
        self.close(py);
        false
    }

    fn __repr__(&self) -> String {
        match locked(&self.queue).as_ref() {
            Some(q) => format!("<EventQueue fd={} pending={}>", q.fd(), q.len()),
            None => "<EventQueue closed>".to_string(),
        }
    }
}
