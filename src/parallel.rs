//! Parallel jobs (PowerShell's `ForEach-Object -Parallel -AsJob`): one work function over
//! N inputs. The job is a parent with one child per input (ids N+1.. after the parent's
//! N); the children do the work on a pool, at most `throttle_limit` of them at once, and
//! the parent's state follows theirs (DESIGN §1 "Parent jobs").
//!
//! The throttle is the job's own, on top of its pool's: children are handed to the pool
//! one by one as earlier ones finish (a *feeder*), so a parallel job with a throttle of 2
//! holds at most 2 of the pool's workers, and its other children wait NotStarted. Stopping
//! a waiting child makes it Stopped at once, as for any queued job.

use crate::context::WorkContext;
use crate::error::Result;
use crate::events::StateCallback;
use crate::executor::{Pool, default_pool};
use crate::job::{Job, JobInit, WorkResult};
use crate::record::Payload;
use crate::repository::repository;
use crate::state::StateChangedEvent;
use crate::sync::atomic::{AtomicU8, Ordering};
use crate::sync::{Mutex, lock};
use std::collections::VecDeque;
// Std's even under loom: set once, before the feeder is shared, and only read after.
use std::sync::{Arc, OnceLock, Weak};

/// The work of a parallel job: runs once per input, which it reads with
/// [`WorkContext::input`]. Shared by every child.
pub type ParallelWork = Arc<dyn Fn(&WorkContext) -> WorkResult + Send + Sync>;

/// Everything needed to start a parallel job.
pub struct ParallelJobSpec {
    name: Option<String>,
    command: String,
    inputs: Vec<Payload>,
    work: ParallelWork,
    pool: Option<Pool>,
    throttle_limit: usize,
    callbacks: Vec<StateCallback>,
}

impl ParallelJobSpec {
    /// A spec running `work` once for each of `inputs`.
    pub fn new<I, P>(
        inputs: I,
        work: impl Fn(&WorkContext) -> WorkResult + Send + Sync + 'static,
    ) -> ParallelJobSpec
    where
        I: IntoIterator<Item = P>,
        P: Into<Payload>,
    {
        ParallelJobSpec::from_shared(inputs.into_iter().map(Into::into).collect(), Arc::new(work))
    }

    /// A spec from inputs already made payloads and shared work (what the bindings use).
    pub fn from_shared(inputs: Vec<Payload>, work: ParallelWork) -> ParallelJobSpec {
        ParallelJobSpec {
            name: None,
            command: String::new(),
            inputs,
            work,
            pool: None,
            throttle_limit: 0,
            callbacks: Vec::new(),
        }
    }

    crate::spec::spec_builder_methods!();

    /// Runs the children on `pool` instead of the default pool.
    pub fn pool(mut self, pool: &Pool) -> Self {
        self.pool = Some(pool.clone());
        self
    }

    /// At most `limit` children run at once (`-ThrottleLimit`); 0 (the default) = only the
    /// pool's own limits.
    pub fn throttle_limit(mut self, limit: usize) -> Self {
        self.throttle_limit = limit;
        self
    }

    /// Starts the job: see [`start_parallel_job`].
    pub fn start(self) -> Result<Arc<Job>> {
        start_parallel_job(self)
    }
}

/// A child's place in the throttle: waiting for a slot, handed to the pool (holding a
/// slot), or ended. Only the end of a child that held a slot frees one, so a child stopped
/// while it waited does not let an extra one start.
const WAITING: u8 = 0;
const HANDED: u8 = 1;
const ENDED: u8 = 2;

/// Hands a parallel job's waiting children to its pool, one each time a running one ends.
struct Feeder {
    pool: Pool,
    /// Children not yet handed to the pool, with their index.
    waiting: Mutex<VecDeque<(usize, Arc<Job>)>>,
    /// Each child's place (`WAITING`, `HANDED`, `ENDED`), by index.
    places: Vec<AtomicU8>,
    /// The parent (set once it exists): after a stop of it, no waiting child may start.
    parent: OnceLock<Weak<Job>>,
}

impl Feeder {
    /// Submits the next child that can still run; true if one was submitted.
    fn feed_one(&self) -> bool {
        loop {
            // A stop of the parent sets its flag before it stops the children one by one:
            // a child finishing meanwhile must not start one that is about to be stopped.
            let stopping = self.parent.get().and_then(Weak::upgrade);
            if stopping.is_some_and(|p| p.stop_requested()) {
                return false;
            }
            let Some((index, child)) = lock(&self.waiting).pop_front() else {
                return false;
            };
            // A child whose stop was already reported takes no slot. (One stopped but not
            // yet reported is handed on: its report then frees the slot it took.)
            let place = &self.places[index];
            if place
                .compare_exchange(WAITING, HANDED, Ordering::AcqRel, Ordering::Acquire)
                .is_err()
            {
                continue;
            }
            if self.pool.submit(child.clone()).is_ok() {
                return true;
            }
            // The pool was shut down: the child can never run, and frees no slot.
            place.store(ENDED, Ordering::Release);
            child.request_stop();
        }
    }

    /// A child finished: if it held a slot, the next waiting child gets it.
    fn ended(&self, index: usize) {
        if self.places[index].swap(ENDED, Ordering::AcqRel) == HANDED {
            self.feed_one();
        }
    }
}

/// ForEach-Object -Parallel -AsJob: creates the parent and its children, adds them to the
/// repository, hands the first `throttle_limit` children to the pool and returns the
/// parent at once. With no inputs the parent completes at once.
pub fn start_parallel_job(spec: ParallelJobSpec) -> Result<Arc<Job>> {
    let pool = match spec.pool {
        Some(p) => p,
        None => default_pool()?.clone(),
    };
    let feeder = Arc::new(Feeder {
        pool,
        waiting: Mutex::new(VecDeque::new()),
        places: spec.inputs.iter().map(|_| AtomicU8::new(WAITING)).collect(),
        parent: OnceLock::new(),
    });
    let children: Vec<JobInit> = spec
        .inputs
        .into_iter()
        .enumerate()
        .map(|(index, input)| {
            let work = spec.work.clone();
            let feeder = feeder.clone();
            // The feeder's hook runs first among the child's callbacks: a slot frees as
            // soon as the child is finished.
            let feed_next: StateCallback = Box::new(move |e: &StateChangedEvent| {
                if e.state_info.state.is_finished() {
                    feeder.ended(index);
                }
            });
            JobInit {
                work: Some(Box::new(move |ctx: &WorkContext| work(ctx))),
                callbacks: vec![feed_next],
                input: Some(input),
                ..JobInit::new(None, spec.command.clone(), "ParallelChildJob")
            }
        })
        .collect();
    let parent = Job::new_parent(
        JobInit {
            callbacks: spec.callbacks,
            ..JobInit::new(spec.name, spec.command, "ParallelJob")
        },
        children,
    );
    let _ = feeder.parent.set(Arc::downgrade(&parent));
    repository().add(&parent);
    if feeder.pool.is_shut_down() {
        // Nothing is left behind: the same outcome as a thread job's start on it.
        let err = crate::error::Error::ShutDown(feeder.pool.id());
        repository().detach(&parent);
        parent.release();
        return Err(err);
    }
    lock(&feeder.waiting).extend(parent.children().iter().cloned().enumerate());
    let first = match spec.throttle_limit {
        0 => parent.children().len(),
        n => n.min(parent.children().len()),
    };
    for _ in 0..first {
        if !feeder.feed_one() {
            break;
        }
    }
    // With no children nothing else would move the parent (to Completed).
    parent.follow_children();
    Ok(parent)
}
