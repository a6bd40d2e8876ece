//! Running part of a test in a forked child process.

use super::LONG;
use bgjob::{JobState, WaitMode, wait_jobs};

/// Runs `child` in a forked child process; its return value is the child's exit status.
pub fn in_child(child: impl FnOnce() -> Result<(), String>) -> Result<(), String> {
    // SAFETY: the child only runs `child` and then `_exit`s; no unwinding leaves it.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork failed");
    if pid == 0 {
        let code = match std::panic::catch_unwind(std::panic::AssertUnwindSafe(child)) {
            Ok(Ok(())) => 0,
            Ok(Err(msg)) => {
                eprintln!("child: {msg}");
                1
            }
            Err(_) => 2,
        };
        // SAFETY: ends the child without running the parent's atexit handlers twice.
        unsafe { libc::_exit(code) };
    }
    let mut status = 0;
    // SAFETY: waits for the child forked above.
    let rc = unsafe { libc::waitpid(pid, &mut status, 0) };
    assert_eq!(rc, pid);
    match libc::WIFEXITED(status).then(|| libc::WEXITSTATUS(status)) {
        Some(0) => Ok(()),
        other => Err(format!("child ended with {other:?} (raw status {status})")),
    }
}

pub fn run_to_end(job: &std::sync::Arc<bgjob::Job>) -> Result<JobState, String> {
    let r = wait_jobs(std::slice::from_ref(job), WaitMode::All, Some(LONG))
        .map_err(|e| e.to_string())?;
    if r.done.len() != 1 {
        return Err(format!(
            "job {} still {} after {LONG:?}",
            job.id(),
            job.state()
        ));
    }
    Ok(job.state())
}
