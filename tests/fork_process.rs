//! Process jobs across `fork()`: the parent's running process jobs end in the child (their
//! processes are the parent's children) instead of staying Running for ever; the child
//! runs process jobs of its own; the parent's jobs are untouched.
//!
//! One test in its own test binary, for the reason tests/fork.rs gives.

mod common;

use bgjob::{JobState, ProcessJobSpec, default_pool, remove_job, stop_job};
use common::fork::{in_child, run_to_end};
use common::{LONG, take_all, take_next};

#[test]
fn a_forked_child_fails_the_parents_process_jobs_and_runs_its_own() {
    let sleeper = ProcessJobSpec::new(["sh", "-c", "echo up; exec sleep 600"])
        .start()
        .unwrap();
    assert_eq!(take_next(&sleeper, 1).len(), 1);
    let outcome = in_child(|| {
        // Using a pool in the child settles what the parent left running.
        let mine = ProcessJobSpec::new(["echo", "child"])
            .pool(default_pool().map_err(|e| e.to_string())?)
            .start()
            .map_err(|e| e.to_string())?;
        if run_to_end(&mine)? != JobState::Completed || take_all(&mine) != ["child"] {
            return Err(format!("the child's own job ended {}", mine.state()));
        }
        match (run_to_end(&sleeper)?, sleeper.state_info().reason) {
            (JobState::Failed, Some(r)) if r.contains("forked") => Ok(()),
            other => Err(format!("the parent's process job ended as {other:?}")),
        }
    });
    outcome.unwrap();
    // In the parent it still runs, and stops as usual.
    assert_eq!(sleeper.state(), JobState::Running);
    stop_job(&sleeper, Some(LONG)).unwrap();
    assert_eq!(sleeper.state(), JobState::Stopped);
    remove_job(sleeper.id(), false).unwrap();
}
