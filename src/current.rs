//! What the calling thread is doing for bgjob right now: running a job's work, or
//! dispatching a job's state-change callbacks. Waits consult it to refuse a wait that
//! could never end (a job waiting on itself) instead of hanging.

use crate::job::JobId;
use std::cell::{Cell, RefCell};

crate::sync::thread_locals! {
    static WORKING: Cell<JobId> = const { Cell::new(0) };
    static DISPATCHING: RefCell<Vec<JobId>> = const { RefCell::new(Vec::new()) };
}

/// The job whose work runs on this thread, or 0.
pub(crate) fn working_job() -> JobId {
    WORKING.with(Cell::get)
}

/// Marks this thread as running `id`'s work until the guard drops.
pub(crate) fn enter_work(id: JobId) -> WorkGuard {
    WorkGuard(WORKING.with(|w| w.replace(id)))
}

pub(crate) struct WorkGuard(JobId);

impl Drop for WorkGuard {
    fn drop(&mut self) {
        WORKING.with(|w| w.set(self.0));
    }
}

/// Whether this thread is inside a state-change callback of `id`.
pub(crate) fn is_dispatching(id: JobId) -> bool {
    DISPATCHING.with(|d| d.borrow().contains(&id))
}

/// Whether this thread is dispatching any job's callbacks (where a wait reads a job's
/// stored state, not its settled one: see `Job::is_done_by`).
pub(crate) fn is_dispatching_any() -> bool {
    DISPATCHING.with(|d| !d.borrow().is_empty())
}

/// Marks this thread as dispatching `id`'s callbacks until the guard drops.
pub(crate) fn enter_dispatch(id: JobId) -> DispatchGuard {
    DISPATCHING.with(|d| d.borrow_mut().push(id));
    DispatchGuard
}

pub(crate) struct DispatchGuard;

impl Drop for DispatchGuard {
    fn drop(&mut self) {
        DISPATCHING.with(|d| {
            d.borrow_mut().pop();
        });
    }
}
