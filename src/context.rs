//! The work context: what a job's work can do while it runs (write records, report
//! progress, set its status message, see a stop request, fail, know its id).

use crate::error::{Error, Result};
use crate::executor::{Completion, Permit};
use crate::job::{Job, JobId};
use crate::record::{Payload, ProgressRecord, Stream};
use crate::sync::{Mutex, lock};
use std::sync::Arc;

/// Handed to a job's work while it runs. It is `Send + Sync` and cheap to clone: the work
/// may hand copies to threads or objects of its own (a binding keeps one as the "current
/// job"). Once the job is finished, writes through any copy fail with `InvalidState`.
#[derive(Clone)]
pub struct WorkContext {
    job: Arc<Job>,
    /// One allocation for what copies of the context share.
    shared: Arc<Mutex<Shared>>,
}

/// What every copy of one work's context shares.
#[derive(Default)]
struct Shared {
    /// The reason given to `fail`.
    failure: Option<String>,
    /// The worker's throttle permit, until the work hands its end off (and the permit
    /// with it).
    permit: Option<Permit>,
    handed_off: bool,
}

impl WorkContext {
    /// The context of `job`'s work, running under `permit` of its pool (`None`: inline).
    pub(crate) fn new(job: Arc<Job>, permit: Option<Permit>) -> Self {
        WorkContext {
            job,
            shared: Arc::new(Mutex::new(Shared {
                failure: None,
                permit,
                handed_off: false,
            })),
        }
    }

    /// The id of the job this work runs for.
    pub fn job_id(&self) -> JobId {
        self.job.id()
    }

    /// The job this work runs for.
    pub fn job(&self) -> &Arc<Job> {
        &self.job
    }

    /// The input this work runs for, in a child of a parallel job (`None` otherwise).
    pub fn input(&self) -> Option<&Payload> {
        self.job.input()
    }

    /// Writes any record payload (bytes, a progress report, or a binding's object).
    pub fn write_payload(&self, stream: Stream, payload: Payload) -> Result<()> {
        self.job.write(stream, payload)
    }

    /// Writes a record to `stream`.
    pub fn write(&self, stream: Stream, payload: impl Into<Payload>) -> Result<()> {
        self.job.write(stream, payload.into())
    }

    /// Writes a record to the output stream.
    pub fn write_output(&self, payload: impl Into<Payload>) -> Result<()> {
        self.write(Stream::Output, payload)
    }

    /// Writes a record to the error stream. The job still completes if the work returns.
    pub fn write_error(&self, payload: impl Into<Payload>) -> Result<()> {
        self.write(Stream::Error, payload)
    }

    /// Reports progress: percent complete (-1 = unknown), activity and status text.
    pub fn write_progress(
        &self,
        percent_complete: i32,
        activity: &str,
        status: &str,
    ) -> Result<()> {
        self.job.write_progress(ProgressRecord {
            percent_complete: percent_complete.clamp(-1, 100),
            activity: activity.to_string(),
            status_description: status.to_string(),
        })
    }

    /// Sets the job's status message.
    pub fn set_status_message(&self, message: &str) {
        self.job.set_status_message(message.to_string());
    }

    /// Whether a stop was asked: cooperative work checks this and returns early.
    pub fn stop_requested(&self) -> bool {
        self.job.stop_requested()
    }

    /// A checkpoint (Suspend-Job's cooperation): parks while the job is suspended, and
    /// returns once it is resumed or stopped (check [`stop_requested`](Self::stop_requested)
    /// after it). Returns at once when no suspend was asked. Work that never calls it
    /// cannot be suspended: its job stays Suspending until the work ends.
    pub fn checkpoint(&self) -> Result<()> {
        self.job.checkpoint()
    }

    /// Asks the host for input: the job is Blocked, showing `prompt`, until the host sends
    /// input ([`Job::send_input`]), which this returns; `Err(InvalidState)` if the job was
    /// stopped instead.
    pub fn read_input(&self, prompt: &str) -> Result<Payload> {
        self.job.read_input(prompt)
    }

    /// Fails the job with `reason` when the work returns, whatever it returns.
    pub fn fail(&self, reason: &str) {
        lock(&self.shared).failure = Some(reason.to_string());
    }

    pub(crate) fn take_failure(&self) -> Option<String> {
        lock(&self.shared).failure.take()
    }

    /// Hands the job's end off: the work's return no longer finishes the job, the returned
    /// completion does (and gives the throttle permit back then). Once per work.
    pub(crate) fn hand_off(&self) -> Result<Completion> {
        let mut h = lock(&self.shared);
        if std::mem::replace(&mut h.handed_off, true) {
            return Err(Error::InvalidState(format!(
                "job {}: its end was handed off already",
                self.job.id()
            )));
        }
        Ok(Completion::new(self.job.clone(), h.permit.take()))
    }

    /// After the work returned: whether it handed its end off, and the permit if it did not.
    pub(crate) fn take_hand_off(&self) -> (bool, Option<Permit>) {
        let mut h = lock(&self.shared);
        (h.handed_off, h.permit.take())
    }
}
