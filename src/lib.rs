//! bgjob: PowerShell's background-job model — Start-Job, Get-Job, Receive-Job, Wait-Job,
//! Stop-Job, Remove-Job — for Rust, C (see `include/bgjob.h`) and Python.
//!
//! A [`Job`] lives in the process-wide [`Repository`]; thread jobs run on a [`Pool`];
//! state changes reach callbacks in order, after the records are readable and before
//! waiters wake. `DESIGN.md` (shared with the project) defines every term.
//!
//! ```
//! use bgjob::{JobSpec, JobState, ReceiveOptions, WaitMode, remove_job, wait_jobs};
//!
//! // Start-Job: returns at once; the work runs on the default pool.
//! let job = JobSpec::new(|ctx| {
//!     ctx.write_progress(50, "Adding", "half way")?;
//!     ctx.write_output("2")?;
//!     Ok(())
//! })
//! .name("adder")
//! .start()?;
//!
//! // Wait-Job, then Receive-Job: every record the work wrote, in order.
//! wait_jobs(&[job.clone()], WaitMode::All, None)?;
//! assert_eq!(job.state(), JobState::Completed);
//! let output: Vec<_> = job
//!     .receive(ReceiveOptions::default())?
//!     .into_iter()
//!     .filter_map(|r| r.bytes().map(|b| b.to_vec()))
//!     .collect();
//! assert_eq!(output, vec![b"2".to_vec()]);
//!
//! // Remove-Job frees it.
//! remove_job(job.id(), false)?;
//! # Ok::<(), bgjob::Error>(())
//! ```

// Under loom the process jobs are left out (see `ffi` below), and with them the only users
// of a few items (a work's hand-off of its end, `Error::system`, ...): not dead code in
// any build that ships.
#![cfg_attr(loom, allow(dead_code))]

pub mod context;
mod control;
mod current;
pub mod custom;
pub mod error;
pub mod event_queue;
mod eventfd;
pub mod events;
pub mod executor;
// Under loom (`make loom`, see `sync.rs`) the C ABI, process jobs and fork handling are left
// out: no model reaches them, and each holds process-wide state (a reactor thread, its
// `static` lock, last-error thread-locals, `pthread_atfork` handlers taking the
// repository's locks) that would have to outlive a loom execution or run outside one.
#[cfg(not(loom))]
pub mod ffi;
#[cfg(not(loom))]
mod fork;
/// Under loom there is no fork: the generation never changes, so a pool's first workers
/// are its only ones, and nothing is registered with `pthread_atfork`.
#[cfg(loom)]
mod fork {
    /// Always the first generation.
    pub(crate) fn generation() -> u64 {
        0
    }

    /// Nothing to install.
    pub(crate) fn install() {}
}
pub mod job;
pub mod parallel;
#[cfg(not(loom))]
pub mod process;
pub mod record;
pub mod repository;
mod short_str;
pub mod spec;
pub mod state;
mod state_index;
mod sync;
pub mod wait;
pub mod wildcard;

pub use context::WorkContext;
pub use custom::{CustomJob, CustomJobSpec};
pub use error::{Error, Result};
pub use event_queue::{EventQueue, JobEvent};
pub use events::{RegistrationId, StateCallback, on_any_state_changed, unregister_any};
pub use executor::{Pool, configure_default_pool, default_pool, shutdown_default_pool};
pub use job::{Attachment, Job, JobId, ReceiveOptions, StopHandler, Work, WorkResult};
pub use parallel::{ParallelJobSpec, ParallelWork, start_parallel_job};
#[cfg(not(loom))]
pub use process::{DEFAULT_STOP_GRACE, OutputMode, ProcessJobSpec, start_process_job};
pub use record::{Bytes, Payload, ProgressRecord, Record, Stream};
pub use repository::{JobFilter, Repository, get_job, get_jobs, remove_job, repository};
pub use spec::{JobSpec, start_job};
pub use state::{JobState, JobStateInfo, StateChangedEvent};
/// The type of [`Job::instance_id`].
pub use uuid::Uuid;
pub use wait::{
    WaitMode, WaitResult, stop_job, wait_job_ids, wait_job_ids_forced, wait_jobs, wait_jobs_forced,
};
pub use wildcard::WildcardPattern;
