//! Model checks of the core's races with loom: `make loom` (`RUSTFLAGS="--cfg loom"`,
//! release mode, one test at a time). Under that cfg the core's locks, condition
//! variables, atomics, worker threads and thread-locals are loom's (`src/sync.rs`), so each
//! model below runs the real job state machine, repository, waits and pool, and loom runs
//! it under every interleaving of its threads up to `LOOM_MAX_PREEMPTIONS` preemptions
//! (default 2), checking on each the guarantees DESIGN.md gives. A wait that could never
//! end — a lost wake-up, a job left queued — is reported by loom as a deadlock.
//!
//! The models record what they observe (callback histories, drop counts) in std types:
//! they are touched only between loom operations, never held across one, so no model
//! thread can block on them, and they add no interleavings of their own.
//!
//! Each model prints how many executions (interleavings) loom explored and how long it
//! took: `loom <model>: N executions in S s (preemption bound B)`.
#![cfg(loom)]

use bgjob::{
    CustomJobSpec, JobFilter, JobSpec, JobState, Pool, ReceiveOptions, StateChangedEvent, WaitMode,
    get_job, get_jobs, remove_job, repository, stop_job, wait_jobs,
};
use loom::thread;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// Runs `model` under loom with the preemption bound `LOOM_MAX_PREEMPTIONS` (default 2),
/// then prints how many executions it explored, how long that took, and how often each
/// outcome the model reported came up. With a bound of 2 or more every outcome in
/// `expected` must have come up: a model whose race never goes every way checks nothing.
fn check(
    name: &'static str,
    expected: &[&str],
    model: impl Fn() -> String + Sync + Send + 'static,
) {
    let bound = std::env::var("LOOM_MAX_PREEMPTIONS")
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(2);
    let mut builder = loom::model::Builder::new();
    builder.preemption_bound = Some(bound);
    let executions = Arc::new(AtomicUsize::new(0));
    let outcomes: Arc<Mutex<BTreeMap<String, usize>>> = Arc::default();
    let start = Instant::now();
    let explored = {
        let (executions, outcomes) = (executions.clone(), outcomes.clone());
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            builder.check(move || {
                executions.fetch_add(1, SeqCst);
                let outcome = model();
                *outcomes.lock().unwrap().entry(outcome).or_default() += 1;
            })
        }))
    };
    if let Err(failure) = explored {
        // Which execution failed, for the record (loom's own message came before).
        println!(
            "\nloom {name}: FAILED in execution {} after {:.1} s (preemption bound {bound})",
            executions.load(SeqCst),
            start.elapsed().as_secs_f64()
        );
        std::panic::resume_unwind(failure);
    }
    let outcomes = outcomes.lock().unwrap();
    println!(
        "\nloom {name}: {} executions in {:.1} s (preemption bound {bound})",
        executions.load(SeqCst),
        start.elapsed().as_secs_f64()
    );
    for (outcome, n) in outcomes.iter() {
        println!("    {n:>7} x {outcome}");
    }
    if bound >= 2 {
        for e in expected {
            assert!(outcomes.contains_key(*e), "{name}: no execution ended {e}");
        }
    }
}

/// A history as text: its states joined by arrows (`NotStarted>Running>Completed`).
fn path(history: &History) -> String {
    let history = history.lock().unwrap();
    let mut states = vec![JobState::NotStarted.name()];
    states.extend(history.iter().map(|(_, new)| new.name()));
    states.join(">")
}

/// A job's state changes as its callbacks saw them: (previous, new), in order of calls.
type History = Arc<Mutex<Vec<(JobState, JobState)>>>;

/// A callback that appends each change it is told of to `history`.
fn recorder(history: &History) -> impl Fn(&StateChangedEvent) + Send + Sync + 'static {
    let history = history.clone();
    move |e: &StateChangedEvent| {
        history
            .lock()
            .unwrap()
            .push((e.previous_state_info.state, e.state_info.state))
    }
}

/// Every change delivered exactly once and in order: the history is a chain of legal
/// moves from NotStarted (a lost change breaks the chain, a repeated one too), ending at
/// `end`.
fn assert_chain(history: &History, end: JobState) {
    let history = history.lock().unwrap().clone();
    let mut at = JobState::NotStarted;
    for &(previous, new) in &history {
        assert_eq!(previous, at, "history {history:?}");
        assert!(previous.can_move_to(new), "illegal move in {history:?}");
        at = new;
    }
    assert_eq!(at, end, "history {history:?}");
}

/// Counts its drops: stands for the user data of a work or a callback, whose finalizer
/// must run exactly once.
struct Finalizer(Arc<AtomicUsize>);

impl Drop for Finalizer {
    fn drop(&mut self) {
        self.0.fetch_add(1, SeqCst);
    }
}

/// No job is left in the repository (top-level or child), by listing and by id.
fn assert_repository_empty(id: u64) {
    let all = JobFilter {
        include_children: true,
        ..JobFilter::default()
    };
    assert!(get_jobs(&all).is_empty());
    assert!(get_job(id).is_err());
    assert!(repository().state_of(id).is_err());
}

/// Stop vs completion: a job's work finishes on a worker while another thread stops it
/// (Stop-Job, no timeout). The stop returns; the job ends Completed or Stopped (before it
/// ran, as it began, or while it ran); each change reached the callback once, in order,
/// all of them before the stop returned; the work ran at most once, never after a stop
/// that found it queued, and its user data was freed exactly once, whether it ran or not.
#[test]
fn stop_vs_completion() {
    let expected = [
        "NotStarted>Running>Completed (ran)",
        "NotStarted>Stopped",
        "NotStarted>Running>Stopping>Stopped (ran)",
        "NotStarted>Running>Stopping>Stopped",
    ];
    check("stop_vs_completion", &expected, || {
        let pool = Pool::new(1, 0).unwrap();
        let history = History::default();
        let ran = Arc::new(AtomicUsize::new(0));
        let freed = Arc::new(AtomicUsize::new(0));
        let job = {
            let (ran, data) = (ran.clone(), Finalizer(freed.clone()));
            JobSpec::new(move |_ctx| {
                let _data = data;
                ran.fetch_add(1, SeqCst);
                Ok(())
            })
            .pool(&pool)
            .on_state_changed(recorder(&history))
            .start()
            .unwrap()
        };
        let stopper = {
            let job = job.clone();
            thread::spawn(move || stop_job(&job, None))
        };
        stopper.join().unwrap().unwrap();
        let end = job.state();
        // The callbacks of the finishing change ran before the stop returned.
        assert_chain(&history, end);
        let ran = ran.load(SeqCst);
        assert!(ran <= 1);
        let outcome = path(&history) + if ran == 1 { " (ran)" } else { "" };
        match end {
            JobState::Completed => assert_eq!(ran, 1),
            // Stopped while queued: it never runs.
            JobState::Stopped if outcome == "NotStarted>Stopped" => {}
            // Stopped as it began (a stop between its move to Running and the hand-out of
            // its work: it never runs either) or while it ran.
            JobState::Stopped => assert!(outcome.starts_with("NotStarted>Running>Stopping>")),
            other => panic!("the job ended {other}"),
        }
        assert_eq!(freed.load(SeqCst), 1);
        pool.shutdown(None).unwrap();
        remove_job(job.id(), false).unwrap();
        assert_repository_empty(job.id());
        outcome
    });
}

/// Remove vs a running callback: a job is removed with force while its state-change
/// callbacks run on the worker (the callback itself looks the job up in the repository as
/// the removal takes it out). No crash; the callback saw a consistent history, through
/// the finished change (a removal lets those callbacks run first); the repository is
/// empty after; the callback's user data is freed exactly once. Outcomes marked "removal
/// began in a callback" are those where the removal's stop came while a callback ran.
#[test]
fn remove_vs_running_callback() {
    let expected = [
        "NotStarted>Running>Completed",
        "NotStarted>Stopped",
        "NotStarted>Running>Stopping>Stopped",
        "NotStarted>Running>Stopping>Stopped (removal began in a callback)",
    ];
    check("remove_vs_running_callback", &expected, || {
        let pool = Pool::new(1, 0).unwrap();
        let history = History::default();
        let freed = Arc::new(AtomicUsize::new(0));
        let overlapped = Arc::new(AtomicBool::new(false));
        let callback = {
            let (record, data) = (recorder(&history), Finalizer(freed.clone()));
            let overlapped = overlapped.clone();
            move |e: &StateChangedEvent| {
                let _data = &data;
                let before = e.job.stop_requested();
                // Found, or already taken out: never a crash nor a hang.
                let _ = get_job(e.job_id);
                record(e);
                if !before && e.job.stop_requested() {
                    overlapped.store(true, SeqCst);
                }
            }
        };
        let job = JobSpec::new(|_ctx| Ok(()))
            .pool(&pool)
            .on_state_changed(callback)
            .start()
            .unwrap();
        let id = job.id();
        let remover = thread::spawn(move || remove_job(id, true));
        remover.join().unwrap().unwrap();
        assert!(job.is_removed());
        assert_repository_empty(id);
        let end = job.state();
        assert!(
            matches!(end, JobState::Completed | JobState::Stopped),
            "{end}"
        );
        assert_chain(&history, end);
        pool.shutdown(None).unwrap();
        // The worker's dispatch is over: nothing holds the registration any more.
        assert_eq!(freed.load(SeqCst), 1);
        let during = if overlapped.load(SeqCst) {
            " (removal began in a callback)"
        } else {
            ""
        };
        path(&history) + during
    });
}

/// Wait-any vs completion: a thread waits for any of two running jobs (Wait-Job -Any, no
/// timeout) while two other threads finish them (one Completed, one Failed). The wait
/// never misses its wake-up (loom would report the waiter deadlocked), returns at least
/// one job, and only finished ones, each of whose finishing callbacks already ran.
#[test]
fn wait_any_vs_completion() {
    let expected = ["done: a", "done: b", "done: a b"];
    check("wait_any_vs_completion", &expected, || {
        let histories = [History::default(), History::default()];
        let jobs: Vec<_> = histories
            .iter()
            .map(|h| {
                let job = CustomJobSpec::new().on_state_changed(recorder(h)).create();
                job.set_state(JobState::Running, None).unwrap();
                job
            })
            .collect();
        let finishers: Vec<_> = jobs
            .iter()
            .cloned()
            .zip([
                (JobState::Completed, None),
                (JobState::Failed, Some("broke")),
            ])
            .map(|(job, (state, reason))| {
                thread::spawn(move || job.set_state(state, reason).unwrap())
            })
            .collect();
        let handles: Vec<_> = jobs.iter().map(|j| j.job().clone()).collect();
        let any = wait_jobs(&handles, WaitMode::Any, None).unwrap();
        assert!(!any.timed_out);
        assert!(!any.done.is_empty());
        let mut outcome = String::from("done:");
        for ((job, history), name) in handles.iter().zip(&histories).zip([" a", " b"]) {
            if any.done.contains(&job.id()) {
                let end = job.state();
                assert!(end.is_finished(), "{end}");
                assert_chain(history, end);
                outcome += name;
            }
        }
        for f in finishers {
            f.join().unwrap();
        }
        let all = wait_jobs(&handles, WaitMode::All, None).unwrap();
        assert_eq!(all.done.len(), 2);
        for job in &handles {
            remove_job(job.id(), false).unwrap();
        }
        assert_repository_empty(handles[0].id());
        outcome
    });
}

/// Receive vs write at the finish: the work writes two records and finishes while the
/// receiver takes them one at a time with a waiting receive. Every record arrives exactly
/// once, in order, none is lost across the finish, and an empty receive comes only once
/// the job is finished (the wait never misses the records' nor the finish's wake-up).
#[test]
fn receive_vs_write_at_finish() {
    // The job's state as each record was received: before or after the finish.
    let expected = [
        "1 Running, 2 Running",
        "1 Running, 2 Completed",
        "1 Completed, 2 Completed",
    ];
    check("receive_vs_write_at_finish", &expected, || {
        let pool = Pool::new(1, 0).unwrap();
        let job = JobSpec::new(|ctx| {
            ctx.write_output("1").unwrap();
            ctx.write_output("2").unwrap();
            Ok(())
        })
        .pool(&pool)
        .start()
        .unwrap();
        let one_waiting = ReceiveOptions {
            wait: true,
            max: Some(1),
            ..ReceiveOptions::default()
        };
        let mut got = Vec::new();
        let mut seen = Vec::new();
        loop {
            let records = job.receive(one_waiting).unwrap();
            assert!(records.len() <= 1);
            let Some(r) = records.first() else { break };
            let text = String::from_utf8(r.bytes().unwrap().to_vec()).unwrap();
            seen.push(format!("{text} {}", job.state()));
            got.push(text);
        }
        // An empty waiting receive: the job is finished and nothing is left.
        assert_eq!(job.state(), JobState::Completed);
        assert_eq!(got, ["1", "2"]);
        assert!(job.receive(ReceiveOptions::default()).unwrap().is_empty());
        pool.shutdown(None).unwrap();
        remove_job(job.id(), false).unwrap();
        assert_repository_empty(job.id());
        seen.join(", ")
    });
}

/// Shutdown vs start: a pool is shut down while another thread starts a job on it. The
/// shutdown returns; the start either fails with the shut-down error, leaving nothing
/// behind, or gives a job that ends — it ran, or it was Stopped without running — and is
/// never left NotStarted (a wait for it would then never end: loom reports it). The work's
/// user data is freed exactly once either way.
#[test]
fn shutdown_vs_start() {
    let expected = [
        "refused",
        "NotStarted>Stopped",
        "NotStarted>Running>Completed (ran)",
    ];
    check("shutdown_vs_start", &expected, || {
        let pool = Pool::new(1, 0).unwrap();
        let ran = Arc::new(AtomicBool::new(false));
        let freed = Arc::new(AtomicUsize::new(0));
        let history = History::default();
        let starter = {
            let (pool, ran, data) = (pool.clone(), ran.clone(), Finalizer(freed.clone()));
            let record = recorder(&history);
            thread::spawn(move || {
                JobSpec::new(move |_ctx| {
                    let _data = data;
                    ran.store(true, SeqCst);
                    Ok(())
                })
                .pool(&pool)
                .on_state_changed(record)
                .start()
            })
        };
        pool.shutdown(None).unwrap();
        let outcome = match starter.join().unwrap() {
            Ok(job) => {
                let done = wait_jobs(std::slice::from_ref(&job), WaitMode::All, None).unwrap();
                assert_eq!(done.done, [job.id()]);
                let end = job.state();
                assert_chain(&history, end);
                let ran = ran.load(SeqCst);
                let outcome = path(&history) + if ran { " (ran)" } else { "" };
                match end {
                    JobState::Completed => assert!(ran),
                    // Stopped while queued: never ran.
                    JobState::Stopped if outcome == "NotStarted>Stopped" => {}
                    // Taken by the worker just before the shutdown asked it to stop.
                    JobState::Stopped => assert!(outcome.starts_with("NotStarted>Running>")),
                    other => panic!("the job ended {other}"),
                }
                remove_job(job.id(), false).unwrap();
                assert_repository_empty(job.id());
                outcome
            }
            Err(e) => {
                assert!(matches!(e, bgjob::Error::ShutDown(_)), "{e}");
                assert!(!ran.load(SeqCst));
                let all = JobFilter {
                    include_children: true,
                    ..JobFilter::default()
                };
                assert!(get_jobs(&all).is_empty());
                "refused".to_string()
            }
        };
        assert_eq!(freed.load(SeqCst), 1);
        // A start after the shutdown is refused.
        let late = JobSpec::new(|_ctx| Ok(())).pool(&pool).start();
        assert!(matches!(late, Err(bgjob::Error::ShutDown(_))));
        outcome
    });
}
