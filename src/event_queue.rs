//! An event queue for event loops: state-change events of all jobs (or chosen ones),
//! queued for the host to drain on its own thread, with a file descriptor that is readable
//! while events are pending — so libuv, epoll, GLib and asyncio programs get job events
//! without callbacks on foreign threads.
//!
//! The queue is fed by a repository-wide callback, so it sees each change once, in each
//! job's order, after the change's records are readable. The descriptor is an `eventfd`:
//! every event adds to its counter; draining resets the counter *before* it takes the
//! last events, so an event queued meanwhile leaves the descriptor readable (none is ever
//! pending behind a quiet descriptor).

use crate::error::{Error, Result};
use crate::eventfd::EventFd;
use crate::events::{RegistrationId, on_any_state_changed, unregister_any};
use crate::job::JobId;
use crate::state::{JobStateInfo, StateChangedEvent};
use crate::sync::{Mutex, lock};
use std::collections::{HashSet, VecDeque};
use std::os::fd::{AsRawFd, RawFd};
use std::sync::Arc;

/// One state change, as the queue keeps it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JobEvent {
    /// The job that changed.
    pub job_id: JobId,
    /// Its new state info.
    pub state_info: JobStateInfo,
    /// Its state info before the change.
    pub previous_state_info: JobStateInfo,
}

struct Inner {
    /// Only these jobs' events (`None`: every job's).
    jobs: Option<HashSet<JobId>>,
    events: Mutex<VecDeque<JobEvent>>,
    fd: EventFd,
}

impl Inner {
    fn push(&self, e: &StateChangedEvent) {
        if self.jobs.as_ref().is_some_and(|j| !j.contains(&e.job_id)) {
            return;
        }
        lock(&self.events).push_back(JobEvent {
            job_id: e.job_id,
            state_info: e.state_info.clone(),
            previous_state_info: e.previous_state_info.clone(),
        });
        self.fd.notify();
    }
}

/// A queue of state-change events with a pollable descriptor. Dropping it stops the
/// events and closes the descriptor.
pub struct EventQueue {
    inner: Arc<Inner>,
    registration: RegistrationId,
}

impl std::fmt::Debug for EventQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventQueue")
            .field("fd", &self.fd())
            .field("pending", &self.len())
            .finish()
    }
}

impl EventQueue {
    /// Opens a queue of the events of `jobs` (their ids; `None` = every job, including
    /// jobs started later). Events before this call are not in it. `Err(NoSuchJob)` for an
    /// id that names no job (never started, or removed): its queue would never hear a thing.
    pub fn open(jobs: Option<&[JobId]>) -> Result<EventQueue> {
        for &id in jobs.unwrap_or_default() {
            crate::repository::get_job(id)?;
        }
        let fd = EventFd::new().map_err(|e| {
            Error::InvalidState(format!("cannot create the event queue's descriptor: {e}"))
        })?;
        let inner = Arc::new(Inner {
            jobs: jobs.map(|ids| ids.iter().copied().collect()),
            events: Mutex::new(VecDeque::new()),
            fd,
        });
        let feed = inner.clone();
        let registration = on_any_state_changed(Box::new(move |e| feed.push(e)));
        Ok(EventQueue {
            inner,
            registration,
        })
    }

    /// The descriptor to poll: readable while events are pending. It stays owned by the
    /// queue (do not close it); read events with [`next`](Self::next), not from it.
    pub fn fd(&self) -> RawFd {
        self.inner.fd.as_raw_fd()
    }

    /// The next pending event, if any (never blocks). Once it returns `None` the
    /// descriptor is not readable until a new event arrives.
    pub fn next(&self) -> Option<JobEvent> {
        if let Some(e) = lock(&self.inner.events).pop_front() {
            return Some(e);
        }
        // Reset first, then look again: an event queued between the two is returned now,
        // and one queued after the reset makes the descriptor readable again.
        self.inner.fd.drain();
        lock(&self.inner.events).pop_front()
    }

    /// How many events are pending.
    pub fn len(&self) -> usize {
        lock(&self.inner.events).len()
    }

    /// Whether no event is pending.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Drop for EventQueue {
    fn drop(&mut self) {
        unregister_any(self.registration);
    }
}
