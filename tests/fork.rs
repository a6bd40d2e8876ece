//! The library in a child process made by `fork()`: pools made before the fork work in the
//! child, and the parent's jobs that were queued or running at the fork end in the child
//! (their work belongs to the parent) instead of hanging a wait for ever.
//!
//! One test in its own test binary: the child it forks must not inherit other tests'
//! threads in the middle of their work.

mod common;

use bgjob::{JobSpec, JobState, Pool, default_pool};
use common::LONG;
use common::fork::{in_child, run_to_end};
use std::sync::mpsc;

#[test]
fn pools_made_before_a_fork_work_in_the_child() {
    let pool = Pool::new(2, 1).unwrap();
    let default = default_pool().unwrap();
    // Both pools have run work (and have idle workers) before the fork.
    for p in [&pool, default] {
        let job = JobSpec::new(|_| Ok(())).pool(p).start().unwrap();
        assert_eq!(run_to_end(&job).unwrap(), JobState::Completed);
    }

    // At the fork: one job running on `pool` (throttle 1) and one queued behind it.
    let (started_tx, started_rx) = mpsc::channel();
    let (release_tx, release_rx) = mpsc::channel::<()>();
    let running = JobSpec::new(move |_| {
        started_tx.send(()).unwrap();
        release_rx.recv_timeout(LONG).map_err(|e| e.to_string())
    })
    .pool(&pool)
    .start()
    .unwrap();
    started_rx.recv_timeout(LONG).unwrap();
    let queued = JobSpec::new(|_| Ok(())).pool(&pool).start().unwrap();
    assert_eq!(queued.state(), JobState::NotStarted);

    let outcome = in_child(|| {
        // New work on both pools runs here, on workers of the child's own.
        for p in [&pool, default] {
            let job = JobSpec::new(|ctx| Ok(ctx.write_output("child")?))
                .pool(p)
                .start()
                .map_err(|e| e.to_string())?;
            let state = run_to_end(&job)?;
            if state != JobState::Completed {
                return Err(format!("child job is {state}"));
            }
        }
        // The parent's jobs end here without running: the queued one is stopped, the
        // running one fails with a reason that says why.
        if run_to_end(&queued)? != JobState::Stopped {
            return Err(format!("queued job is {}", queued.state()));
        }
        let info = (run_to_end(&running)?, running.state_info().reason);
        match info {
            (JobState::Failed, Some(r)) if r.contains("forked") => Ok(()),
            other => Err(format!("running job ended as {other:?}")),
        }
    });
    outcome.unwrap();

    // The parent is untouched: its jobs run on as if nothing happened.
    release_tx.send(()).unwrap();
    assert_eq!(run_to_end(&running).unwrap(), JobState::Completed);
    assert_eq!(run_to_end(&queued).unwrap(), JobState::Completed);
    pool.shutdown(Some(LONG)).unwrap();
}
