//! Start-Job: a start spec (what to run, how to call it, where) and starting it.

use crate::context::WorkContext;
use crate::error::Result;
use crate::events::StateCallback;
use crate::executor::{Pool, default_pool, worker};
use crate::job::{Job, JobInit, Work, WorkResult};
use crate::repository::repository;
use crate::state::JobState;
use std::sync::Arc;
use std::time::Instant;

/// The builder methods every start spec shares (its `name: Option<String>`,
/// `command: String` and `callbacks: Vec<StateCallback>` fields), written once.
macro_rules! spec_builder_methods {
    () => {
        /// Sets the job's name (default `Job<id>`).
        pub fn name(mut self, name: impl Into<String>) -> Self {
            self.name = Some(name.into());
            self
        }

        /// Sets the command text shown for the job (and its children, if it has any).
        pub fn command(mut self, command: impl Into<String>) -> Self {
            self.command = command.into();
            self
        }

        /// Adds a state-change callback for the job, registered before it can change
        /// state, so that none of its changes is missed.
        pub fn on_state_changed(
            mut self,
            callback: impl Fn(&$crate::StateChangedEvent) + Send + Sync + 'static,
        ) -> Self {
            self.callbacks.push(Box::new(callback));
            self
        }

        /// Adds an already-boxed state-change callback.
        pub fn on_state_changed_boxed(mut self, callback: $crate::StateCallback) -> Self {
            self.callbacks.push(callback);
            self
        }
    };
}
pub(crate) use spec_builder_methods;

/// Everything needed to start a thread job. Callbacks given here are registered before the
/// job can run, so none of its state changes is missed.
pub struct JobSpec {
    name: Option<String>,
    command: String,
    work: Work,
    pool: Option<Pool>,
    callbacks: Vec<StateCallback>,
}

impl JobSpec {
    /// A spec for a thread job running `work`.
    pub fn new(work: impl FnOnce(&WorkContext) -> WorkResult + Send + 'static) -> JobSpec {
        JobSpec {
            name: None,
            command: String::new(),
            work: Box::new(work),
            pool: None,
            callbacks: Vec::new(),
        }
    }

    /// A spec for already-boxed work.
    pub fn from_work(work: Work) -> JobSpec {
        JobSpec {
            name: None,
            command: String::new(),
            work,
            pool: None,
            callbacks: Vec::new(),
        }
    }

    spec_builder_methods!();

    /// Runs the job on `pool` instead of the default pool.
    pub fn pool(mut self, pool: &Pool) -> Self {
        self.pool = Some(pool.clone());
        self
    }

    /// Starts the job: see [`start_job`].
    pub fn start(self) -> Result<Arc<Job>> {
        start_job(self)
    }

    /// Runs the job here and now: see [`run_inline`].
    pub fn run_inline(self) -> Arc<Job> {
        run_inline(self)
    }
}

impl JobSpec {
    /// The job this spec describes, not yet started.
    fn into_job(self) -> (Arc<Job>, Option<Pool>) {
        let job = Job::new_leaf(JobInit {
            work: Some(self.work),
            callbacks: self.callbacks,
            ..JobInit::new(self.name, self.command, "ThreadJob")
        });
        (job, self.pool)
    }
}

/// Start-Job: creates the job, adds it to the repository, queues it on its pool and returns
/// at once. On error nothing is left behind (the spec's user data is freed).
pub fn start_job(spec: JobSpec) -> Result<Arc<Job>> {
    let (job, pool) = spec.into_job();
    queue(job, pool)
}

/// Adds a new job to the repository and queues it on `pool` (or the default pool). On
/// error nothing is left behind: the job is taken out again and released.
pub(crate) fn queue(job: Arc<Job>, pool: Option<Pool>) -> Result<Arc<Job>> {
    let pool = match pool {
        Some(p) => p,
        None => match default_pool() {
            Ok(p) => p.clone(),
            Err(e) => {
                job.release();
                return Err(e);
            }
        },
    };
    repository().add(&job);
    if let Err(e) = pool.submit(job.clone()) {
        repository().detach(&job);
        job.release();
        return Err(e);
    }
    Ok(job)
}

/// An inline run (the cmdlet without `-AsJob`): the same job as [`start_job`] would make,
/// in the repository with the same states, callbacks and records, but its work runs on
/// the calling thread (the spec's pool is not used). Returns the finished job once the
/// callbacks of its finished state have run; receive its records and remove it as usual.
/// A stop asked from another thread meanwhile works as for any running job.
pub fn run_inline(spec: JobSpec) -> Arc<Job> {
    let (job, _pool) = spec.into_job();
    run_here(job)
}

/// Adds a new job to the repository and runs it on this thread (see [`run_inline`]).
pub(crate) fn run_here(job: Arc<Job>) -> Arc<Job> {
    start_here(&job);
    wait_finished(job)
}

/// Adds a new job to the repository and runs its work on this thread; returns when the
/// work does (a process job's work returns once its process runs).
pub(crate) fn start_here(job: &Arc<Job>) {
    repository().add(job);
    worker::run_job(job, None);
}

/// Returns `job` once it is finished and the callbacks of that change have run.
pub(crate) fn wait_finished(job: Arc<Job>) -> Arc<Job> {
    // The finished change may be dispatched by another thread (one that asked a stop):
    // return only once its callbacks ran, as a wait would.
    if !job.wait_until(Some(Instant::now()), JobState::is_finished) {
        crate::executor::blocking(|| job.wait_until(None, JobState::is_finished));
    }
    job
}
