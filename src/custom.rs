//! Custom jobs (a class derived from PowerShell's `Job`): jobs whose work runs somewhere
//! bgjob does not see — another machine, another library, an event loop. The host creates
//! the job, moves it through legal states, writes its records and reports its progress;
//! get, wait, receive, stop and remove treat it like any other job. A stop asked of it
//! moves it to Stopping and calls the host's stop handler, which ends the foreign work and
//! then moves the job to Stopped.

use crate::error::{Error, Result};
use crate::events::StateCallback;
use crate::job::{Job, JobInit, StopHandler};
use crate::record::{Payload, ProgressRecord, Stream};
use crate::repository::repository;
use crate::state::JobState;
use std::sync::Arc;

/// Everything needed to create a custom job (and its children, if it has any).
pub struct CustomJobSpec {
    name: Option<String>,
    command: String,
    type_name: String,
    location: String,
    callbacks: Vec<StateCallback>,
    on_stop: Option<StopHandler>,
    children: Vec<Option<String>>,
}

impl Default for CustomJobSpec {
    fn default() -> Self {
        CustomJobSpec::new()
    }
}

impl CustomJobSpec {
    /// A spec for a custom job of type `CustomJob` at `localhost`, with no children.
    pub fn new() -> CustomJobSpec {
        CustomJobSpec {
            name: None,
            command: String::new(),
            type_name: "CustomJob".to_string(),
            location: "localhost".to_string(),
            callbacks: Vec::new(),
            on_stop: None,
            children: Vec::new(),
        }
    }

    crate::spec::spec_builder_methods!();

    /// Sets the type name shown for the job and its children (default `CustomJob`).
    pub fn type_name(mut self, type_name: impl Into<String>) -> Self {
        self.type_name = type_name.into();
        self
    }

    /// Sets where the work runs (default `localhost`), e.g. a remote machine's name.
    pub fn location(mut self, location: impl Into<String>) -> Self {
        self.location = location.into();
        self
    }

    /// Adds a child job (named `name`, or `Job<id>`). A job with children is a parent: the
    /// host drives the children, and the parent's state follows theirs.
    pub fn child(mut self, name: Option<String>) -> Self {
        self.children.push(name);
        self
    }

    /// Sets the stop handler: called once per stop, on the thread that asked it, as soon as
    /// the job is Stopping (after the Stopping callbacks, unless another thread is running
    /// the job's callbacks just then), with the job being stopped — the job itself, or
    /// each child of a parent. It should end the foreign work, then move the job to
    /// Stopped.
    pub fn on_stop(mut self, handler: impl Fn(&Arc<Job>) + Send + Sync + 'static) -> Self {
        self.on_stop = Some(Box::new(handler));
        self
    }

    /// Sets an already-boxed stop handler.
    pub fn on_stop_boxed(mut self, handler: StopHandler) -> Self {
        self.on_stop = Some(handler);
        self
    }

    /// Creates the job, NotStarted, in the repository: see [`CustomJob`].
    pub fn create(self) -> CustomJob {
        let init = |name, callbacks, on_stop| JobInit {
            location: self.location.clone().into(),
            callbacks,
            host_driven: true,
            on_stop,
            ..JobInit::new(name, self.command.clone(), self.type_name.clone())
        };
        let job = if self.children.is_empty() {
            Job::new_leaf(init(self.name.clone(), self.callbacks, self.on_stop))
        } else {
            // Each child gets the handler (it tells which job is stopping); the parent
            // itself has no work to stop: it stops its children.
            let shared: Option<Arc<StopHandler>> = self.on_stop.map(Arc::new);
            let children = self
                .children
                .iter()
                .map(|name| {
                    let handler = shared
                        .clone()
                        .map(|h| -> StopHandler { Box::new(move |job: &Arc<Job>| h(job)) });
                    init(name.clone(), Vec::new(), handler)
                })
                .collect();
            Job::new_parent(init(self.name.clone(), self.callbacks, None), children)
        };
        repository().add(&job);
        CustomJob { job }
    }
}

/// A custom job's driving handle: what the host does in place of work. Every other
/// operation (get, wait, receive, stop, remove) goes through the job as for any job.
#[derive(Clone)]
pub struct CustomJob {
    job: Arc<Job>,
}

impl std::fmt::Debug for CustomJob {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("CustomJob").field(&self.job).finish()
    }
}

impl CustomJob {
    /// The handle of `job`; `Err(InvalidState)` unless it is a custom job (or a child of
    /// one).
    pub fn from_job(job: Arc<Job>) -> Result<CustomJob> {
        if !job.is_host_driven() {
            return Err(Error::InvalidState(format!(
                "job {} is a {}: only a custom job is driven by its host",
                job.id(),
                job.type_name()
            )));
        }
        Ok(CustomJob { job })
    }

    /// The job.
    pub fn job(&self) -> &Arc<Job> {
        &self.job
    }

    /// Moves the job to `state` (with `reason`, for a failure). `Err(InvalidState)` for a
    /// move DESIGN §1 does not allow, and for a parent (its state follows its children).
    pub fn set_state(&self, state: JobState, reason: Option<&str>) -> Result<()> {
        if !self.job.children().is_empty() {
            return Err(Error::InvalidState(format!(
                "job {} is a parent: its state follows its children; drive them instead",
                self.job.id()
            )));
        }
        self.job.change_state(state, reason.map(Arc::from))
    }

    /// Writes a record; `Err(InvalidState)` once the job is finished.
    pub fn write(&self, stream: Stream, payload: impl Into<Payload>) -> Result<()> {
        self.job.write(stream, payload.into())
    }

    /// Reports progress: percent complete (-1 = unknown, clamped to 100), activity, status.
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

    /// The handle of child `index` (creation order), if there is one.
    pub fn child(&self, index: usize) -> Option<CustomJob> {
        self.job
            .children()
            .get(index)
            .map(|c| CustomJob { job: c.clone() })
    }
}
