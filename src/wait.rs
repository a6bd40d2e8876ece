//! Wait-Job and Stop-Job: blocking until jobs are done, with a timeout.
//!
//! A job is *done* for a wait when its state is persistent (finished, Suspended,
//! Disconnected) and the callbacks of that change have returned. Every wait goes through
//! the executor's `blocking`, so a wait inside a job's work lends its worker to the pool.

use crate::error::{Error, Result};
use crate::events::Signal;
use crate::executor::blocking;
use crate::job::{Job, JobId};
use crate::repository::repository;
use crate::state::JobState;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Wait for all of the jobs, or for any one of them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WaitMode {
    /// Until every job is done.
    All,
    /// Until at least one job is done.
    Any,
}

/// What a wait found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WaitResult {
    /// The ids of the jobs that are done, in the order they were given.
    pub done: Vec<JobId>,
    /// Whether the timeout elapsed before the wait's condition held.
    pub timed_out: bool,
}

/// Waits for `jobs` (all or any) up to `timeout` (`None` = no limit; zero = poll: return
/// the jobs that are done now). `Err(WouldDeadlock)` for a wait that could never end;
/// `Err(Blocked)` when every job it still waits for is Blocked waiting for input (only its
/// host can move it on; PowerShell's `BlockedJobsDeadlockWithWaitJob`).
pub fn wait_jobs(
    jobs: &[Arc<Job>],
    mode: WaitMode,
    timeout: Option<Duration>,
) -> Result<WaitResult> {
    wait_jobs_until(jobs, mode, timeout, JobState::is_persistent)
}

/// Wait-Job -Force: like [`wait_jobs`], but a job is done only when it is finished — a
/// wait does not stop at Suspended or Disconnected.
pub fn wait_jobs_forced(
    jobs: &[Arc<Job>],
    mode: WaitMode,
    timeout: Option<Duration>,
) -> Result<WaitResult> {
    wait_jobs_until(jobs, mode, timeout, JobState::is_finished)
}

/// The wait, with `until` saying which settled states count as done.
fn wait_jobs_until(
    jobs: &[Arc<Job>],
    mode: WaitMode,
    timeout: Option<Duration>,
    until: fn(JobState) -> bool,
) -> Result<WaitResult> {
    let deadline = timeout.map(crate::sync::deadline_after);
    let poll = timeout == Some(Duration::ZERO);
    if !poll {
        for j in jobs {
            if !j.is_done_by(until) {
                j.check_can_wait()?;
            }
        }
    }
    // A wait for one job (a round trip) watches it for a few microseconds first: it is
    // usually done by then, and sleeping costs two context switches. A wait for many
    // does not: its jobs need the cores more than the waiter does.
    if let [job] = jobs
        && !poll
    {
        crate::sync::spin_until(|| job.is_done_by(until));
    }
    let satisfied = match mode {
        // Only a wait that will block lends the worker to its pool.
        WaitMode::All => {
            jobs.iter().all(|j| j.is_done_by(until))
                || (!poll && blocking(|| wait_all(jobs, deadline, until))?)
        }
        WaitMode::Any => {
            jobs.iter().any(|j| j.is_done_by(until))
                || (!poll && blocking(|| wait_any(jobs, deadline, until))?)
        }
    };
    let done: Vec<JobId> = jobs
        .iter()
        .filter(|j| j.is_done_by(until))
        .map(|j| j.id())
        .collect();
    let timed_out = !satisfied
        && match mode {
            WaitMode::All => done.len() < jobs.len(),
            WaitMode::Any => done.is_empty() && !jobs.is_empty(),
        };
    Ok(WaitResult { done, timed_out })
}

/// `Err(Blocked)` if every job not done is Blocked (and some job is not done).
fn check_not_all_blocked(jobs: &[Arc<Job>], until: fn(JobState) -> bool) -> Result<()> {
    let mut waiting = jobs.iter().filter(|j| !j.is_done_by(until)).peekable();
    if waiting.peek().is_some() && waiting.all(|j| j.is_blocked()) {
        let ids: Vec<String> = jobs
            .iter()
            .filter(|j| !j.is_done_by(until))
            .map(|j| j.id().to_string())
            .collect();
        return Err(Error::Blocked(format!(
            "every job waited for is Blocked waiting for input (job {}); send input first",
            ids.join(", ")
        )));
    }
    Ok(())
}

fn wait_all(
    jobs: &[Arc<Job>],
    deadline: Option<Instant>,
    until: fn(JobState) -> bool,
) -> Result<bool> {
    loop {
        for j in jobs {
            if !j.wait_until(deadline, |s| until(s) || s == JobState::Blocked) {
                return Ok(false);
            }
        }
        if jobs.iter().all(|j| j.is_done_by(until)) {
            return Ok(true);
        }
        check_not_all_blocked(jobs, until)?;
        // A job left Blocked while we waited for another: wait again.
    }
}

fn wait_any(
    jobs: &[Arc<Job>],
    deadline: Option<Instant>,
    until: fn(JobState) -> bool,
) -> Result<bool> {
    if jobs.is_empty() {
        return Ok(true);
    }
    let signal = Signal::new();
    let mut registered = Vec::with_capacity(jobs.len());
    let mut done = false;
    for j in jobs {
        if j.add_waiter(&signal, until) {
            registered.push(j);
        } else {
            done = true;
            break;
        }
    }
    let mut blocked = Ok(());
    while !done {
        blocked = check_not_all_blocked(jobs, until);
        if blocked.is_err() || !signal.wait(deadline) {
            break;
        }
        done = jobs.iter().any(|j| j.is_done_by(until));
        if !done {
            // A job's state went persistent and back (e.g. Suspended, then resumed):
            // register again where needed.
            for j in jobs {
                j.remove_waiter(&signal);
                done |= !j.add_waiter(&signal, until);
            }
        }
    }
    for j in registered {
        j.remove_waiter(&signal);
    }
    blocked.map(|()| done)
}

/// Wait-Job by ids: looks every id up first (`NoSuchJob` if one is unknown).
pub fn wait_job_ids(
    ids: &[JobId],
    mode: WaitMode,
    timeout: Option<Duration>,
) -> Result<WaitResult> {
    wait_job_ids_forced(ids, mode, timeout, false)
}

/// Wait-Job by ids, with `-Force` if `force` (see [`wait_jobs_forced`]).
pub fn wait_job_ids_forced(
    ids: &[JobId],
    mode: WaitMode,
    timeout: Option<Duration>,
    force: bool,
) -> Result<WaitResult> {
    let until: fn(JobState) -> bool = if force {
        JobState::is_finished
    } else {
        JobState::is_persistent
    };
    // Jobs the state index shows done already need no lookup (with many jobs kept each is
    // a cache miss: 12% of W1's time): only the others are found and waited for. Inside a
    // dispatch a wait goes by stored states (`Job::is_done_by`): every job is looked up.
    let done_now: Vec<bool> = if crate::current::is_dispatching_any() {
        vec![false; ids.len()]
    } else {
        crate::state_index::settled_each(ids, until)
    };
    let rest = ids
        .iter()
        .zip(&done_now)
        .filter(|(_, done)| !**done)
        .map(|(&id, _)| repository().get(id))
        .collect::<Result<Vec<_>>>()?;
    if rest.is_empty() {
        return Ok(WaitResult {
            done: ids.to_vec(),
            timed_out: false,
        });
    }
    // One done is enough for Any: the others are only looked at (found, or NoSuchJob).
    let any_done = mode == WaitMode::Any && done_now.contains(&true);
    let timeout = if any_done {
        Some(Duration::ZERO)
    } else {
        timeout
    };
    let waited = wait_jobs_until(&rest, mode, timeout, until)?;
    // The ids done, in the order given: those done at once and those the wait saw done
    // (`waited.done` keeps `rest`'s order, which is `ids`' order without the first).
    let mut later = waited.done.iter().peekable();
    let done = ids
        .iter()
        .zip(&done_now)
        .filter(|&(&id, &now)| now || later.next_if_eq(&&id).is_some())
        .map(|(&id, _)| id)
        .collect();
    Ok(WaitResult {
        done,
        timed_out: waited.timed_out && !any_done,
    })
}

/// Stop-Job: asks the job to stop, then waits until it is finished, up to `timeout`
/// (`None` = no limit). `Err(Timeout)` if it is still Stopping then. From the job's own work
/// or callbacks it only asks (waiting there could never end).
pub fn stop_job(job: &Arc<Job>, timeout: Option<Duration>) -> Result<()> {
    job.request_stop();
    if job.check_can_wait().is_err() {
        return Ok(());
    }
    let deadline = timeout.map(crate::sync::deadline_after);
    let finished_now = job.wait_until(Some(Instant::now()), JobState::is_finished);
    if finished_now || blocking(|| job.wait_until(deadline, JobState::is_finished)) {
        Ok(())
    } else {
        Err(Error::Timeout(format!(
            "job {} is still {} after the stop timeout",
            job.id(),
            job.state()
        )))
    }
}
