//! Suspend-Job / Resume-Job, and work that asks its host for input (Blocked).
//!
//! Both are cooperative, like Stop-Job: the job changes state at once, and the work takes
//! part at its next call into the context.
//! - `suspend` moves a running job to Suspending; the work's next `checkpoint` moves it to
//!   Suspended and parks there until `resume` (Running) or a stop (Stopping). Work that
//!   never calls `checkpoint` stays Suspending until it ends. `resume` of a job still
//!   Suspending cancels the suspension: its checkpoint passes through Suspended and
//!   Running without parking.
//! - `read_input` moves the job to Blocked with a prompt and parks until the host sends
//!   input (Running again) or stops it.
//!
//! Parked work waits until the job left Suspended (or Blocked) *and* that change was
//! delivered, so the callbacks of Suspended or Blocked ran before it parks and those of
//! the resume before it goes on. A parked work lends its worker to its pool, as any bgjob
//! wait does.

use crate::error::{Error, Result};
use crate::executor::blocking;
use crate::job::Job;
use crate::record::Payload;
use crate::state::JobState;
use std::sync::Arc;

impl Job {
    /// Suspend-Job: a running job moves to Suspending, and to Suspended at its work's next
    /// checkpoint; a parent suspends its running children. Suspending a job that is
    /// Suspending or Suspended does nothing; `Err(InvalidState)` in any other state.
    pub fn suspend(self: &Arc<Self>) -> Result<()> {
        if !self.children().is_empty() {
            for c in self.children() {
                if c.state() == JobState::Running {
                    c.suspend()?;
                }
            }
            return Ok(());
        }
        if let Some(why) = self.unsuspendable() {
            return Err(Error::InvalidState(format!(
                "job {} is a {}: {why}",
                self.id(),
                self.type_name()
            )));
        }
        self.set_suspend_asked(true);
        if self.change_state_if(JobState::Running, JobState::Suspending)? {
            return Ok(());
        }
        match self.state() {
            JobState::Suspending | JobState::Suspended => Ok(()),
            other => {
                self.set_suspend_asked(false);
                Err(Error::InvalidState(format!(
                    "job {} is {other}: only a Running job can be suspended",
                    self.id()
                )))
            }
        }
    }

    /// Resume-Job: a Suspended job runs again (its checkpoint returns); a Suspending one
    /// will not park. A parent resumes its children. Resuming a job that is neither does
    /// nothing.
    pub fn resume(self: &Arc<Self>) -> Result<()> {
        for c in self.children() {
            c.resume()?;
        }
        self.set_suspend_asked(false);
        if self.children().is_empty() {
            self.change_state_if(JobState::Suspended, JobState::Running)?;
        }
        Ok(())
    }

    /// Sends input to a job whose work waits for it (Blocked): the work's `read_input`
    /// returns `input` and the job runs again. `Err(InvalidState)` if the job is not
    /// Blocked (a parent never waits itself: send to its Blocked child).
    pub fn send_input(self: &Arc<Self>, input: Payload) -> Result<()> {
        if self.put_input_if_blocked(input) {
            Ok(())
        } else {
            Err(Error::InvalidState(format!(
                "job {} is {}, not Blocked waiting for input",
                self.id(),
                self.state()
            )))
        }
    }

    /// The work side of suspension: parks while the job is suspended. Returns at once
    /// unless a suspend was asked; otherwise once resumed or stopped (the work then sees
    /// `stop_requested`).
    pub(crate) fn checkpoint(self: &Arc<Self>) -> Result<()> {
        // Suspending → Suspended, dispatched here: its callbacks run before we park.
        if !self.change_state_if(JobState::Suspending, JobState::Suspended)? {
            return Ok(());
        }
        if self.stop_requested() {
            // A stop asked while Suspending left the job there; it ends now.
            self.change_state_if(JobState::Suspended, JobState::Stopping)?;
        } else if !self.suspend_asked() {
            // Resumed before it reached the checkpoint.
            self.change_state_if(JobState::Suspended, JobState::Running)?;
        }
        // Until the job left Suspended and its latest change was delivered. (Not "until the
        // delivered state left Suspending/Suspended": a resume and a new suspend back to
        // back would keep it parked for ever, at Suspending.)
        blocking(|| {
            self.park_until(|stored, delivered| {
                stored != JobState::Suspended && delivered == stored
            })
        });
        Ok(())
    }

    /// The work side of input: moves the job to Blocked with `prompt` and parks until the
    /// host sends input (returned) or stops the job (`Err(InvalidState)`).
    pub(crate) fn read_input(self: &Arc<Self>, prompt: &str) -> Result<Payload> {
        self.block_for_input(prompt)?;
        blocking(|| {
            self.park_until(|stored, delivered| stored != JobState::Blocked && delivered == stored)
        });
        self.take_input().ok_or_else(|| {
            Error::InvalidState(format!(
                "job {} was stopped while it waited for input",
                self.id()
            ))
        })
    }
}
