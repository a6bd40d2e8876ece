//! Running one job's work on the current thread: Running, the work under
//! `catch_unwind`, then Completed / Failed / Stopped.

use crate::context::WorkContext;
use crate::current;
use crate::error::panic_message;
use crate::job::Job;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;

/// Runs `job` here if it has not started and was not stopped. A panic in the work fails
/// the job; it never unwinds into the caller (a worker, or an inline run's host).
pub(crate) fn run_job(job: &Arc<Job>) {
    let Some(work) = job.begin_work() else {
        return;
    };
    let ctx = WorkContext::new(job.clone());
    let result = {
        let _working = current::enter_work(job.id());
        catch_unwind(AssertUnwindSafe(|| work(&ctx)))
    };
    let failure = ctx.take_failure();
    let outcome = match result {
        Ok(Ok(())) => failure.map_or(Ok(()), Err),
        Ok(Err(reason)) => Err(failure.unwrap_or(reason)),
        Err(payload) => Err(format!("the work panicked: {}", panic_message(&*payload))),
    };
    job.finish_work(outcome);
}
