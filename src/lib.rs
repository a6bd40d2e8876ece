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

pub mod context;
mod control;
mod current;
pub mod custom;
pub mod error;
pub mod event_queue;
mod eventfd;
pub mod events;
pub mod executor;
pub mod ffi;
mod fork;
pub mod job;
pub mod parallel;
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
