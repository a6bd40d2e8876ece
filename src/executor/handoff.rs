//! Work that outlives its turn on a worker: a job whose work starts something that runs on
//! by itself (a process job's process) hands its outcome — and its throttle permit — to a
//! [`Completion`], and frees the worker at once. The job stays Running, and keeps counting
//! against its pool's throttle, until the completion is finished.

use super::pool::PoolInner;
use crate::job::{Job, WorkResult};
use std::sync::Arc;

/// One throttle permit of a pool, held while a job of it runs; given back when dropped.
pub(crate) struct Permit {
    pool: Arc<PoolInner>,
}

impl Permit {
    /// Wraps a permit the caller has just taken from `pool`'s throttle.
    pub(super) fn taken(pool: Arc<PoolInner>) -> Permit {
        Permit { pool }
    }

    pub(super) fn pool(&self) -> &Arc<PoolInner> {
        &self.pool
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        self.pool.release_permit();
    }
}

/// The end of a job whose work handed it off (`WorkContext::hand_off`): whoever holds it
/// finishes the job when the outside work ends. The job's throttle permit (if it ran on a
/// pool) is given back then, and until then the pool's shutdown sees the job as running.
/// Dropped unfinished, it fails the job, so a job can never be left Running by a lost
/// completion.
pub(crate) struct Completion {
    job: Arc<Job>,
    permit: Option<Permit>,
    finished: bool,
}

impl Completion {
    pub(crate) fn new(job: Arc<Job>, permit: Option<Permit>) -> Completion {
        if let Some(p) = &permit {
            p.pool().track_handed_off(&job);
        }
        Completion {
            job,
            permit,
            finished: false,
        }
    }

    /// The job.
    pub(crate) fn job(&self) -> &Arc<Job> {
        &self.job
    }

    /// Finishes the job with `outcome` (a stop asked before wins, as for any work), then
    /// gives its permit back.
    pub(crate) fn finish(mut self, outcome: WorkResult) {
        self.finish_now(outcome);
    }

    fn finish_now(&mut self, outcome: WorkResult) {
        if std::mem::replace(&mut self.finished, true) {
            return;
        }
        self.job.finish_work(outcome);
        if let Some(p) = self.permit.take() {
            let pool = p.pool().clone();
            drop(p);
            pool.untrack_handed_off(self.job.id());
        }
    }
}

impl Drop for Completion {
    fn drop(&mut self) {
        self.finish_now(Err(
            "the job's outside work was lost before it reported its end".to_string(),
        ));
    }
}
