//! Running one job's work on the current thread: Running, the work under
//! `catch_unwind`, then Completed / Failed / Stopped.

use super::Permit;
use crate::context::WorkContext;
use crate::current;
use crate::error::panic_message;
use crate::job::Job;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;

/// Runs `job` here if it has not started and was not stopped. A panic in the work fails
/// the job; it never unwinds into the caller (a worker, or an inline run's host).
/// `permit` is the worker's throttle permit (`None` inline); it is given back to the
/// caller unless the work handed it off with its end (`WorkContext::hand_off`).
pub(crate) fn run_job(job: &Arc<Job>, permit: Option<Permit>) -> Option<Permit> {
    let Some(work) = job.begin_work() else {
        return permit;
    };
    let ctx = WorkContext::new(job.clone(), permit);
    let result = {
        let _working = current::enter_work(job.id());
        catch_unwind(AssertUnwindSafe(|| work(&ctx)))
    };
    let (handed_off, permit) = ctx.take_hand_off();
    if handed_off {
        // The completion finishes the job; what the work returned after handing off its
        // end has no say (the work that hands off is the library's own).
        return None;
    }
    let failure = ctx.take_failure();
    let outcome = match result {
        Ok(Ok(())) => failure.map_or(Ok(()), Err),
        Ok(Err(reason)) => Err(failure.unwrap_or(reason)),
        Err(payload) => Err(format!("the work panicked: {}", panic_message(&*payload))),
    };
    job.finish_work(outcome);
    permit
}
