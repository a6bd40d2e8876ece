//! Interpreter exit with jobs running.
//!
//! A bgjob worker that is inside Python when the interpreter finalizes is torn down by
//! CPython (it unwinds the thread when it next asks for the interpreter), and the unwinding
//! aborts the process. So no bgjob thread may be inside Python by then. `bgjob` registers
//! `at_exit` with `atexit` (it runs before finalization, after `Executor`s have let their
//! work finish): from then on new Python work and callbacks decline to run; running Python
//! jobs are asked to stop; after a grace period those still inside Python get `SystemExit`
//! raised in their thread (as a pure-Python loop would from Ctrl-C); then it waits for
//! them to leave. Work blocked in a long C call (a sleep) is left there: the process ends
//! before it wakes.

use pyo3::prelude::*;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Condvar, LazyLock, Mutex, PoisonError};
use std::time::{Duration, Instant};

static EXITING: AtomicBool = AtomicBool::new(false);
static NEXT_TOKEN: AtomicU64 = AtomicU64::new(1);

/// Who is inside Python now, on a bgjob thread: token → (thread ident, job id or 0).
struct Active {
    inside: Mutex<HashMap<u64, (u64, u64)>>,
    left: Condvar,
}

static ACTIVE: LazyLock<Active> = LazyLock::new(|| Active {
    inside: Mutex::new(HashMap::new()),
    left: Condvar::new(),
});

/// Whether the interpreter is exiting: bgjob threads must not enter Python any more.
pub(crate) fn exiting() -> bool {
    EXITING.load(Ordering::Acquire)
}

/// Marks the calling (attached) bgjob thread as inside Python until dropped.
pub(crate) struct Inside(u64);

impl Inside {
    /// `None` once the interpreter is exiting: the caller must not run Python code.
    pub(crate) fn enter(_py: Python<'_>, job_id: u64) -> Option<Inside> {
        // SAFETY: a plain query of the current thread's id; the thread is attached.
        let ident = unsafe { pyo3::ffi::PyThread_get_thread_ident() } as u64;
        let token = NEXT_TOKEN.fetch_add(1, Ordering::Relaxed);
        let mut inside = ACTIVE.inside.lock().unwrap_or_else(PoisonError::into_inner);
        // Checked under the lock at_exit takes first: after it, nobody new gets in.
        if exiting() {
            return None;
        }
        inside.insert(token, (ident, job_id));
        Some(Inside(token))
    }
}

impl Drop for Inside {
    fn drop(&mut self) {
        let mut inside = ACTIVE.inside.lock().unwrap_or_else(PoisonError::into_inner);
        inside.remove(&self.0);
        ACTIVE.left.notify_all();
    }
}

fn wait_until_empty(py: Python<'_>, grace: Duration) -> Vec<(u64, u64)> {
    py.detach(|| {
        let deadline = Instant::now() + grace;
        let mut inside = ACTIVE.inside.lock().unwrap_or_else(PoisonError::into_inner);
        while !inside.is_empty() {
            let now = Instant::now();
            if now >= deadline {
                break;
            }
            inside = ACTIVE
                .left
                .wait_timeout(inside, deadline - now)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
        inside.values().copied().collect()
    })
}

/// Called by `atexit` (registered by `bgjob/__init__.py`): see the module docs. `grace` is
/// how long, in seconds, each of the two phases may take.
#[pyfunction]
#[pyo3(signature = (grace = 1.0))]
pub(crate) fn _at_exit(py: Python<'_>, grace: f64) {
    let grace = Duration::from_secs_f64(grace.clamp(0.0, 60.0));
    let running: Vec<u64> = {
        let inside = ACTIVE.inside.lock().unwrap_or_else(PoisonError::into_inner);
        EXITING.store(true, Ordering::Release);
        inside
            .values()
            .map(|&(_, job)| job)
            .filter(|&j| j != 0)
            .collect()
    };
    for id in running {
        if let Ok(job) = bgjob::get_job(id) {
            job.request_stop();
        }
    }
    let stuck = wait_until_empty(py, grace);
    if stuck.is_empty() {
        return;
    }
    for (ident, _) in stuck {
        // SAFETY: attached; PyExc_SystemExit is a valid exception type; an ident that has
        // left Python meanwhile is simply not found (0 threads affected).
        unsafe {
            pyo3::ffi::PyThreadState_SetAsyncExc(ident as _, pyo3::ffi::PyExc_SystemExit);
        }
    }
    wait_until_empty(py, grace);
}

/// Called in a child process after `os.fork()` (registered by `bgjob/__init__.py`): the
/// bgjob threads that were inside Python in the parent do not exist here, so exit must
/// not wait for them.
#[pyfunction]
pub(crate) fn _after_fork_in_child() {
    ACTIVE
        .inside
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .clear();
}
