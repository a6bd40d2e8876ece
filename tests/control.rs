//! Suspend-Job / Resume-Job and work that asks its host for input (Blocked), through the
//! Rust API. See `common/mod.rs` for the shared helpers and the rules every test follows.

mod common;

use JobState::{Blocked, Completed, NotStarted, Running, Stopped, Stopping, Suspended, Suspending};
use bgjob::{
    Error, JobSpec, JobState, ParallelJobSpec, Payload, WaitMode, WorkContext, WorkResult,
    stop_job, wait_jobs,
};
use common::*;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// Work that passes a checkpoint every millisecond until `finish` is set or a stop is asked.
fn checkpointing(finish: Arc<AtomicBool>) -> impl Fn(&WorkContext) -> WorkResult + Send + Sync {
    move |ctx| {
        let deadline = Instant::now() + LONG;
        while !finish.load(Ordering::SeqCst) && !ctx.stop_requested() {
            if Instant::now() > deadline {
                return Err("never finished".into());
            }
            ctx.checkpoint()?;
            std::thread::sleep(Duration::from_millis(1));
        }
        Ok(())
    }
}

#[test]
fn suspend_parks_at_the_checkpoint_and_resume_lets_it_complete() {
    let finish = Arc::new(AtomicBool::new(false));
    let (events, record) = recorder();
    let work = checkpointing(finish.clone());
    let job = JobSpec::new(move |ctx| work(ctx))
        .on_state_changed(record)
        .start()
        .unwrap();
    assert!(eventually(|| job.state() == Running));
    job.suspend().unwrap();
    assert!(
        eventually(|| job.state() == Suspended),
        "never reached its checkpoint"
    );
    // A wait stops at Suspended (a persistent state).
    let r = wait_jobs(std::slice::from_ref(&job), WaitMode::All, Some(LONG)).unwrap();
    assert_eq!(r.done, [job.id()]);
    // Wait-Job -Force does not stop there.
    let forced = bgjob::wait_jobs_forced(
        std::slice::from_ref(&job),
        WaitMode::All,
        Some(Duration::ZERO),
    );
    assert!(forced.unwrap().done.is_empty());
    job.suspend().unwrap(); // again: nothing to do
    let waiter = {
        let job = job.clone();
        std::thread::spawn(move || {
            bgjob::wait_jobs_forced(std::slice::from_ref(&job), WaitMode::All, Some(LONG))
        })
    };
    job.resume().unwrap();
    assert!(eventually(|| job.state() == Running));
    finish.store(true, Ordering::SeqCst);
    let r = waiter.join().unwrap().unwrap();
    assert_eq!(r.done, [job.id()]);
    assert_eq!(job.state(), Completed);
    assert_eq!(job.state(), Completed);
    assert_eq!(
        *events.lock().unwrap(),
        [
            (NotStarted, Running),
            (Running, Suspending),
            (Suspending, Suspended),
            (Suspended, Running),
            (Running, Completed)
        ]
    );
    remove_all(&[job]);
}

#[test]
fn a_suspend_right_after_a_resume_suspends_again_and_can_be_stopped() {
    let work = checkpointing(Arc::new(AtomicBool::new(false)));
    let job = JobSpec::new(move |ctx| work(ctx)).start().unwrap();
    assert!(eventually(|| job.state() == Running));
    for round in 0..20 {
        job.suspend().unwrap();
        assert!(
            eventually(|| job.state() == Suspended),
            "round {round}: {}",
            job.state()
        );
        // Back to back: the parked work may not have woken between the two.
        job.resume().unwrap();
        job.suspend().unwrap();
        assert!(
            eventually(|| job.state() == Suspended),
            "round {round}: {}",
            job.state()
        );
        job.resume().unwrap();
    }
    stop_job(&job, Some(LONG)).unwrap();
    assert_eq!(job.state(), Stopped);
    remove_all(&[job]);
}

#[test]
fn a_stop_of_a_suspended_job_ends_it_stopped() {
    let (events, record) = recorder();
    let work = checkpointing(Arc::new(AtomicBool::new(false)));
    let job = JobSpec::new(move |ctx| work(ctx))
        .on_state_changed(record)
        .start()
        .unwrap();
    assert!(eventually(|| job.state() == Running));
    job.suspend().unwrap();
    assert!(eventually(|| job.state() == Suspended));
    stop_job(&job, Some(LONG)).unwrap();
    assert_eq!(job.state(), Stopped);
    let seen = events.lock().unwrap().clone();
    assert_eq!(
        &seen[seen.len() - 2..],
        [(Suspended, Stopping), (Stopping, Stopped)]
    );
    remove_all(&[job]);
}

#[test]
fn resume_before_the_checkpoint_cancels_the_suspension() {
    let gate = Gate::default();
    let g = gate.clone();
    let (events, record) = recorder();
    let job = JobSpec::new(move |ctx| {
        if !g.pass() {
            return Err("gate never opened".into());
        }
        ctx.checkpoint()?; // no parking: the suspension was cancelled
        ctx.write_output("past the checkpoint")?;
        Ok(())
    })
    .on_state_changed(record)
    .start()
    .unwrap();
    assert!(eventually(|| job.state() == Running));
    job.suspend().unwrap();
    assert_eq!(job.state(), Suspending);
    job.resume().unwrap();
    gate.open();
    // Not a wait: it may return at the passing Suspended (a persistent state).
    assert!(
        eventually(|| job.state() == Completed),
        "job is {}",
        job.state()
    );
    assert_eq!(take_all(&job), ["past the checkpoint"]);
    assert_eq!(
        *events.lock().unwrap(),
        [
            (NotStarted, Running),
            (Running, Suspending),
            (Suspending, Suspended),
            (Suspended, Running),
            (Running, Completed)
        ]
    );
    remove_all(&[job]);
}

#[test]
fn work_that_never_checkpoints_stays_suspending_until_it_ends() {
    let gate = Gate::default();
    let g = gate.clone();
    let job = JobSpec::new(move |_| if g.pass() { Ok(()) } else { Err("gate".into()) })
        .start()
        .unwrap();
    assert!(eventually(|| job.state() == Running));
    job.suspend().unwrap();
    assert_eq!(job.state(), Suspending);
    gate.open();
    wait_all(std::slice::from_ref(&job));
    assert_eq!(job.state(), Completed);
    remove_all(&[job]);
}

#[test]
fn only_a_running_job_can_be_suspended() {
    let gate = Gate::default();
    let g = gate.clone();
    let pool = bgjob::Pool::new(1, 1).unwrap();
    let blocker = JobSpec::new(move |_| if g.pass() { Ok(()) } else { Err("gate".into()) })
        .pool(&pool)
        .start()
        .unwrap();
    let queued = JobSpec::new(|_| Ok(())).pool(&pool).start().unwrap();
    assert!(matches!(queued.suspend(), Err(Error::InvalidState(_))));
    assert_eq!(queued.state(), NotStarted);
    gate.open();
    wait_all(&[blocker.clone(), queued.clone()]);
    assert!(matches!(blocker.suspend(), Err(Error::InvalidState(_))));
    queued.resume().unwrap(); // nothing to resume: no error, no change
    assert_eq!(queued.state(), Completed);
    remove_all(&[blocker, queued]);
    pool.shutdown(Some(LONG)).unwrap();
}

#[test]
fn a_suspended_parallel_job_resumes_with_all_its_children() {
    let finish = Arc::new(AtomicBool::new(false));
    let pool = bgjob::Pool::new(3, 0).unwrap();
    let parent = ParallelJobSpec::new(["a", "b", "c"], checkpointing(finish.clone()))
        .pool(&pool)
        .start()
        .unwrap();
    assert!(eventually(|| parent
        .children()
        .iter()
        .all(|c| c.state() == Running)));
    parent.suspend().unwrap();
    assert!(
        eventually(|| parent.state() == Suspended),
        "parent is {}",
        parent.state()
    );
    assert!(parent.children().iter().all(|c| c.state() == Suspended));
    parent.resume().unwrap();
    assert!(eventually(|| parent.state() == Running));
    finish.store(true, Ordering::SeqCst);
    wait_all(std::slice::from_ref(&parent));
    assert_eq!(parent.state(), Completed);
    remove_all(&[parent]);
    pool.shutdown(Some(LONG)).unwrap();
}

/// Work that asks for a name and greets it.
fn greeter(ctx: &WorkContext) -> WorkResult {
    let name = ctx.read_input("your name?")?;
    let mut greeting = b"hello ".to_vec();
    greeting.extend_from_slice(name.bytes().unwrap_or(b"?"));
    ctx.write_output(&greeting[..])?;
    Ok(())
}

#[test]
fn a_blocked_job_runs_again_with_the_input_its_host_sends() {
    let (events, record) = recorder();
    let job = JobSpec::new(greeter)
        .on_state_changed(record)
        .start()
        .unwrap();
    assert!(
        eventually(|| job.state() == Blocked),
        "never asked for input"
    );
    assert_eq!(job.prompt().as_deref(), Some("your name?"));
    job.send_input(Payload::from("bob")).unwrap();
    wait_all(std::slice::from_ref(&job));
    assert_eq!(job.state(), Completed);
    assert_eq!(job.prompt(), None);
    assert_eq!(take_all(&job), ["hello bob"]);
    assert_eq!(
        *events.lock().unwrap(),
        [
            (NotStarted, Running),
            (Running, Blocked),
            (Blocked, Running),
            (Running, Completed)
        ]
    );
    assert!(matches!(
        job.send_input(Payload::from("late")),
        Err(Error::InvalidState(_))
    ));
    remove_all(&[job]);
}

#[test]
fn a_blocked_job_can_be_stopped_and_its_read_fails() {
    let job = JobSpec::new(|ctx| match ctx.read_input("anything?") {
        Ok(_) => Err("got input nobody sent".into()),
        Err(e) => {
            assert!(ctx.stop_requested(), "read failed without a stop: {e}");
            Ok(())
        }
    })
    .start()
    .unwrap();
    assert!(eventually(|| job.state() == Blocked));
    stop_job(&job, Some(LONG)).unwrap();
    assert_eq!(job.state(), Stopped);
    remove_all(&[job]);
}

#[test]
fn input_goes_only_to_a_blocked_job() {
    let gate = Gate::default();
    let g = gate.clone();
    let job = JobSpec::new(move |_| if g.pass() { Ok(()) } else { Err("gate".into()) })
        .start()
        .unwrap();
    assert!(eventually(|| job.state() == Running));
    assert!(matches!(
        job.send_input(Payload::from("x")),
        Err(Error::InvalidState(_))
    ));
    gate.open();
    wait_all(std::slice::from_ref(&job));
    remove_all(&[job]);
}

#[test]
fn a_wait_on_jobs_that_are_all_blocked_ends_with_blocked() {
    let jobs: Vec<_> = (0..2)
        .map(|_| JobSpec::new(greeter).start().unwrap())
        .collect();
    assert!(eventually(|| jobs.iter().all(|j| j.state() == Blocked)));
    for mode in [WaitMode::All, WaitMode::Any] {
        let t0 = Instant::now();
        let r = wait_jobs(&jobs, mode, Some(LONG));
        assert!(matches!(r, Err(Error::Blocked(_))), "{mode:?}: {r:?}");
        assert!(
            t0.elapsed() < LONG / 2,
            "{mode:?}: the wait ran into its timeout"
        );
    }
    // Once one is answered and done, waiting for all still ends Blocked (on the other).
    jobs[0].send_input(Payload::from("ann")).unwrap();
    let r = wait_jobs(&jobs, WaitMode::All, Some(LONG));
    assert!(matches!(r, Err(Error::Blocked(ref m)) if m.contains(&jobs[1].id().to_string())));
    // Any: the answered job is done, so the wait succeeds.
    let r = wait_jobs(&jobs, WaitMode::Any, Some(LONG)).unwrap();
    assert_eq!(r.done, [jobs[0].id()]);
    jobs[1].send_input(Payload::from("bea")).unwrap();
    wait_all(&jobs);
    remove_all(&jobs);
}

#[test]
fn a_wait_ends_blocked_when_its_last_running_job_blocks() {
    let gate = Gate::default();
    let g = gate.clone();
    let asker = JobSpec::new(greeter).start().unwrap();
    let later = JobSpec::new(move |ctx| {
        if !g.pass() {
            return Err("gate".into());
        }
        greeter(ctx)
    })
    .start()
    .unwrap();
    assert!(eventually(|| asker.state() == Blocked));
    let waiter = {
        let jobs = vec![asker.clone(), later.clone()];
        std::thread::spawn(move || wait_jobs(&jobs, WaitMode::All, Some(LONG)))
    };
    gate.open(); // `later` now runs, then blocks too: the waiter must wake and give up
    let r = waiter.join().unwrap();
    assert!(matches!(r, Err(Error::Blocked(_))), "{r:?}");
    for j in [&asker, &later] {
        j.send_input(Payload::from("x")).unwrap();
    }
    wait_all(&[asker.clone(), later.clone()]);
    remove_all(&[asker, later]);
}
