//! The fault matrix of issue 8, for the Rust API: {an error return, a panic} in {the work,
//! a state-change callback, a record conversion, a finalizer (a `Drop` of captured data)}.
//!
//! Every cell must end in a defined state — never a hang, never a crash — and leave the
//! library usable: each test starts and finishes another job afterwards (on the same pool
//! when the fault happened on one). Each cell asserts the precise outcome: the job's final
//! state and reason, the complete callback sequence seen by the other callbacks, the
//! records, how many times the captured data was dropped (exactly once), what the caller
//! got, and that the repository holds nothing of the test afterwards.
//!
//! Whatever could hang runs in a thread of its own with a timeout channel (`bounded`), so a
//! hang fails the test instead of the run. Panics injected on purpose carry the prefix
//! `injected`; a panic hook keeps them out of the output (any other panic is reported as
//! usual).
//!
//! Five cells found bugs, since fixed (a panicking drop of unrun work or of callback data,
//! and a panicking custom stop handler, no longer unwind through an undelivered change or
//! out of a worker); they are the tests named `..._drop_panics_...` and
//! `custom_stop_handler_panic_...`.

use bgjob::{
    CustomJobSpec, Error, Job, JobSpec, JobState, ParallelJobSpec, Payload, Pool, ReceiveOptions,
    Stream, WaitMode, WorkContext, get_job, get_jobs, on_any_state_changed, remove_job, stop_job,
    unregister_any, wait_jobs,
};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Once, mpsc};
use std::thread;
use std::time::{Duration, Instant};

mod common;

use JobState::{Completed, Failed, NotStarted, Running, Stopped, Stopping};
use common::*;

/// How long a call that must not hang may take before the test calls it a hang.
const BOUND: Duration = Duration::from_secs(20);

/// Keeps the panics this file injects on purpose (their message starts with `injected`)
/// out of the output; every other panic goes to the default hook.
fn quiet_injected_panics() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let payload = info.payload();
            let text = payload
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| payload.downcast_ref::<String>().cloned());
            if !text.is_some_and(|t| t.starts_with("injected")) {
                default(info);
            }
        }));
    });
}

/// Runs `f` on a thread of its own and returns what it returned (`Err` with the panic
/// message if it panicked); fails the test if it has not returned within `BOUND`.
fn bounded<T: Send + 'static>(
    what: &str,
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, String> {
    let (tx, rx) = mpsc::channel();
    thread::Builder::new()
        .name(format!("bounded {what}"))
        .spawn(move || {
            let r = catch_unwind(AssertUnwindSafe(f)).map_err(|p| {
                p.downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| p.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "a panic with a non-text payload".into())
            });
            let _ = tx.send(r);
        })
        .expect("spawn a thread");
    match rx.recv_timeout(BOUND) {
        Ok(r) => r,
        Err(_) => panic!("hang: {what} did not return within {BOUND:?}"),
    }
}

/// Waits (bounded) until `job` is done; true unless the wait timed out.
fn wait_bounded(job: &Arc<Job>, within: Duration) -> bool {
    let j = job.clone();
    let r = bounded("wait_jobs", move || {
        wait_jobs(&[j], WaitMode::All, Some(within)).map(|r| !r.timed_out)
    });
    r.expect("wait_jobs panicked").expect("wait_jobs failed")
}

/// Captured data whose `Drop` counts, then panics with `message` (which must start with
/// `injected`).
struct PanicOnDrop {
    message: &'static str,
    drops: Arc<AtomicUsize>,
}

impl PanicOnDrop {
    fn new(message: &'static str) -> (PanicOnDrop, Arc<AtomicUsize>) {
        let drops = Arc::new(AtomicUsize::new(0));
        (
            PanicOnDrop {
                message,
                drops: drops.clone(),
            },
            drops,
        )
    }

    /// Makes a closure capture the whole value (not just a field of it).
    fn keep(&self) {}
}

impl Drop for PanicOnDrop {
    fn drop(&mut self) {
        self.drops.fetch_add(1, Ordering::SeqCst);
        panic!("{}", self.message);
    }
}

fn count() -> (DropCount, Arc<AtomicUsize>) {
    let n = Arc::new(AtomicUsize::new(0));
    (DropCount(n.clone()), n)
}

fn drops(n: &AtomicUsize) -> usize {
    n.load(Ordering::SeqCst)
}

/// A repository-wide recorder of the changes of the jobs named `prefix*` (the any-state
/// callbacks run after a job's own: they must see every change too).
struct AnyRecorder {
    registration: bgjob::RegistrationId,
    events: Arc<Mutex<Vec<(u64, JobState, JobState)>>>,
}

impl AnyRecorder {
    fn new(prefix: &str) -> AnyRecorder {
        let events: Arc<Mutex<Vec<(u64, JobState, JobState)>>> = Arc::default();
        let e = events.clone();
        let prefix = prefix.to_string();
        let registration = on_any_state_changed(Box::new(move |ev| {
            if ev.job.name().starts_with(&prefix) {
                e.lock().unwrap().push((
                    ev.job_id,
                    ev.previous_state_info.state,
                    ev.state_info.state,
                ));
            }
        }));
        AnyRecorder {
            registration,
            events,
        }
    }

    fn of(&self, id: u64) -> Vec<(JobState, JobState)> {
        self.events
            .lock()
            .unwrap()
            .iter()
            .filter(|e| e.0 == id)
            .map(|e| (e.1, e.2))
            .collect()
    }
}

impl Drop for AnyRecorder {
    fn drop(&mut self) {
        unregister_any(self.registration);
    }
}

/// The library is still usable: a new job on `pool` (or the default pool) starts, writes,
/// completes and is removed.
fn still_usable(pool: Option<&Pool>) {
    let mut spec = JobSpec::new(|ctx| Ok(ctx.write_output("still usable")?)).name(unique("after"));
    if let Some(p) = pool {
        spec = spec.pool(p);
    }
    let job = spec.start().expect("start a job after the fault");
    assert!(
        wait_bounded(&job, BOUND),
        "a job started after the fault did not finish: {:?}",
        job.state_info()
    );
    assert_eq!(job.state(), Completed);
    assert_eq!(take_all(&job), ["still usable"]);
    remove_job(job.id(), false).unwrap();
}

/// Nothing named `prefix*` is left in the repository (children included).
fn assert_clean(prefix: &str) {
    let left: Vec<_> = get_jobs(&by_name(&format!("{prefix}*")))
        .iter()
        .map(|j| (j.id(), j.state()))
        .collect();
    assert!(left.is_empty(), "left in the repository: {left:?}");
}

/// A one-thread pool whose only worker is held by a gated job, so the next job queues.
struct BusyPool {
    pool: Pool,
    gate: Gate,
    blocker: Arc<Job>,
}

impl BusyPool {
    /// Queues behind the blocker a job whose work's data panics when dropped (the work
    /// only keeps it): the job, the changes its callback saw, and the data's drop count.
    fn queue_panicking_drop(
        &self,
        prefix: &str,
        message: &'static str,
    ) -> (Arc<Job>, Events, Arc<AtomicUsize>) {
        let (data, dropped) = PanicOnDrop::new(message);
        let (events, rec) = recorder();
        let job = JobSpec::new(move |_| {
            data.keep();
            Ok(())
        })
        .name(format!("{prefix}-job"))
        .on_state_changed(rec)
        .pool(&self.pool)
        .start()
        .unwrap();
        (job, events, dropped)
    }

    fn new(prefix: &str) -> BusyPool {
        let pool = Pool::new(1, 0).unwrap();
        let gate = Gate::default();
        let g = gate.clone();
        let (started_tx, started_rx) = mpsc::channel();
        let blocker = JobSpec::new(move |_| {
            let _ = started_tx.send(());
            g.pass();
            Ok(())
        })
        .name(format!("{prefix}-blocker"))
        .pool(&pool)
        .start()
        .unwrap();
        started_rx
            .recv_timeout(BOUND)
            .expect("the blocker never ran");
        BusyPool {
            pool,
            gate,
            blocker,
        }
    }

    /// Lets the blocker finish and removes it.
    fn release(&self) {
        self.gate.open();
        assert!(wait_bounded(&self.blocker, BOUND));
        remove_job(self.blocker.id(), false).unwrap();
    }
}

// ===== the work =============================================================================

#[test]
fn work_error_return_fails_the_job_with_its_reason_and_keeps_every_record() {
    let prefix = unique("work-err");
    let any = AnyRecorder::new(&prefix);
    let pool = Pool::new(1, 0).unwrap();
    let (data, dropped) = count();
    let (events, rec) = recorder();
    let job = JobSpec::new(move |ctx| {
        let _data = &data;
        ctx.write_output("one")?;
        ctx.write_error("a non-terminating error")?;
        ctx.write_output("two")?;
        Err("disk full".to_string())
    })
    .name(format!("{prefix}-job"))
    .on_state_changed(rec)
    .pool(&pool)
    .start()
    .unwrap();
    assert!(wait_bounded(&job, BOUND));
    let info = job.state_info();
    assert_eq!(info.state, Failed);
    assert_eq!(info.reason.as_deref(), Some("disk full"));
    assert_eq!(
        *events.lock().unwrap(),
        [(NotStarted, Running), (Running, Failed)]
    );
    assert_eq!(any.of(job.id()), [(NotStarted, Running), (Running, Failed)]);
    assert_eq!(
        drops(&dropped),
        1,
        "the work's data is dropped exactly once"
    );
    assert_eq!(
        take_all_with_streams(&job),
        [
            (Stream::Output, "one".to_string()),
            (Stream::Error, "a non-terminating error".to_string()),
            (Stream::Output, "two".to_string()),
        ]
    );
    assert!(!job.has_more_data());
    remove_job(job.id(), false).unwrap();
    assert!(matches!(get_job(job.id()), Err(Error::NoSuchJob(_))));
    assert_eq!(drops(&dropped), 1);
    still_usable(Some(&pool));
    drop(any);
    assert_clean(&prefix);
    pool.shutdown(Some(BOUND)).unwrap();
}

#[test]
fn work_fail_reason_wins_over_the_return_and_fails_a_normal_return() {
    let prefix = unique("work-fail");
    // fail() then an error return: the reason given to fail() is the job's reason.
    let both = JobSpec::new(|ctx| {
        ctx.fail("the reason given to fail");
        Err("the returned reason".into())
    })
    .name(format!("{prefix}-both"))
    .start()
    .unwrap();
    // fail() then a normal return: still Failed.
    let ok = JobSpec::new(|ctx| {
        ctx.write_output("written")?;
        ctx.fail("failed on purpose");
        Ok(())
    })
    .name(format!("{prefix}-ok"))
    .start()
    .unwrap();
    // A `?` on a bgjob error: its message is the reason.
    let question = JobSpec::new(|_| {
        let _ = get_job(u64::MAX)?;
        Ok(())
    })
    .name(format!("{prefix}-question"))
    .start()
    .unwrap();
    for j in [&both, &ok, &question] {
        assert!(wait_bounded(j, BOUND));
        assert_eq!(j.state(), Failed);
    }
    assert_eq!(
        both.state_info().reason.as_deref(),
        Some("the reason given to fail")
    );
    assert_eq!(ok.state_info().reason.as_deref(), Some("failed on purpose"));
    assert_eq!(take_all(&ok), ["written"]);
    assert_eq!(
        question.state_info().reason.as_deref(),
        Some(Error::NoSuchJob(u64::MAX).to_string().as_str())
    );
    remove_all(&[both, ok, question]);
    still_usable(None);
    assert_clean(&prefix);
}

#[test]
fn work_panic_fails_the_job_and_the_only_worker_survives() {
    quiet_injected_panics();
    let prefix = unique("work-panic");
    let any = AnyRecorder::new(&prefix);
    let pool = Pool::new(1, 0).unwrap();
    type Case = (
        &'static str,
        Box<dyn FnOnce(&WorkContext) -> bgjob::WorkResult + Send>,
        &'static str,
    );
    let cases: Vec<Case> = vec![
        (
            "str",
            Box::new(|ctx: &WorkContext| {
                ctx.write_output("before")?;
                panic!("injected: a &str panic")
            }),
            "the work panicked: injected: a &str panic",
        ),
        (
            "string",
            Box::new(|ctx: &WorkContext| {
                ctx.write_output("before")?;
                panic!("injected: a String panic {}", 42)
            }),
            "the work panicked: injected: a String panic 42",
        ),
        (
            "non-text",
            Box::new(|ctx: &WorkContext| {
                ctx.write_output("before")?;
                std::panic::resume_unwind(Box::new(42_u32))
            }),
            "the work panicked: panic with a non-text payload",
        ),
    ];
    for (tag, work, reason) in cases {
        let (data, dropped) = count();
        let (events, rec) = recorder();
        let job = JobSpec::new(move |ctx| {
            let _data = &data;
            work(ctx)
        })
        .name(format!("{prefix}-{tag}"))
        .on_state_changed(rec)
        .pool(&pool)
        .start()
        .unwrap();
        assert!(wait_bounded(&job, BOUND), "{tag}");
        let info = job.state_info();
        assert_eq!(info.state, Failed, "{tag}");
        assert_eq!(info.reason.as_deref(), Some(reason), "{tag}");
        assert_eq!(
            *events.lock().unwrap(),
            [(NotStarted, Running), (Running, Failed)],
            "{tag}"
        );
        assert_eq!(any.of(job.id()), [(NotStarted, Running), (Running, Failed)]);
        assert_eq!(drops(&dropped), 1, "{tag}: data dropped exactly once");
        assert_eq!(take_all(&job), ["before"], "{tag}");
        remove_job(job.id(), false).unwrap();
        assert_eq!(pool.live_threads(), 1, "{tag}: the worker survived");
        still_usable(Some(&pool));
    }
    drop(any);
    assert_clean(&prefix);
    pool.shutdown(Some(BOUND)).unwrap();
}

#[test]
fn inline_run_error_or_panic_never_unwinds_into_the_caller() {
    quiet_injected_panics();
    let prefix = unique("inline");
    let (events, rec) = recorder();
    let (data, dropped) = count();
    let run = bounded("run_inline with a panicking work", {
        let name = format!("{prefix}-panic");
        move || {
            JobSpec::new(move |ctx| {
                let _data = &data;
                ctx.write_output("inline")?;
                panic!("injected: inline panic")
            })
            .name(name)
            .on_state_changed(rec)
            .run_inline()
        }
    });
    let job = run.expect("run_inline must not unwind into its caller");
    assert_eq!(job.state(), Failed);
    assert_eq!(
        job.state_info().reason.as_deref(),
        Some("the work panicked: injected: inline panic")
    );
    assert_eq!(
        *events.lock().unwrap(),
        [(NotStarted, Running), (Running, Failed)]
    );
    assert_eq!(drops(&dropped), 1);
    assert_eq!(take_all(&job), ["inline"]);
    remove_job(job.id(), false).unwrap();

    let job = JobSpec::new(|_| Err("inline error".into()))
        .name(format!("{prefix}-err"))
        .run_inline();
    assert_eq!(job.state(), Failed);
    assert_eq!(job.state_info().reason.as_deref(), Some("inline error"));
    remove_job(job.id(), false).unwrap();
    still_usable(None);
    assert_clean(&prefix);
}

#[test]
fn parallel_children_that_fail_or_panic_fail_only_themselves_and_the_parent() {
    quiet_injected_panics();
    let prefix = unique("parallel");
    let (events, rec) = recorder();
    let parent = ParallelJobSpec::new(["ok", "err", "panic", "ok2"], |ctx: &WorkContext| {
        let input = ctx.input().and_then(|p| p.bytes()).unwrap_or_default();
        let input = String::from_utf8_lossy(input).into_owned();
        ctx.write_output(format!("{input} ran"))?;
        match input.as_str() {
            "err" => Err("child error".into()),
            "panic" => panic!("injected: child panic"),
            _ => Ok(()),
        }
    })
    .name(format!("{prefix}-parent"))
    .throttle_limit(1) // in input order: the first failed child is "err"
    .on_state_changed(rec)
    .start()
    .unwrap();
    assert!(wait_bounded(&parent, BOUND));
    let kids = parent.children().to_vec();
    let states: Vec<_> = kids.iter().map(|k| k.state_info()).collect();
    assert_eq!(states[0].state, Completed);
    assert_eq!(states[1].state, Failed);
    assert_eq!(states[1].reason.as_deref(), Some("child error"));
    assert_eq!(states[2].state, Failed);
    assert_eq!(
        states[2].reason.as_deref(),
        Some("the work panicked: injected: child panic")
    );
    assert_eq!(states[3].state, Completed);
    let info = parent.state_info();
    assert_eq!(info.state, Failed);
    assert_eq!(
        info.reason.as_deref(),
        Some("a child job failed: child error")
    );
    assert_eq!(
        *events.lock().unwrap(),
        [(NotStarted, Running), (Running, Failed)]
    );
    assert_eq!(
        take_all(&parent),
        ["ok ran", "err ran", "panic ran", "ok2 ran"]
    );
    remove_job(parent.id(), false).unwrap();
    still_usable(None);
    assert_clean(&prefix);
}

// ===== state-change callbacks ===============================================================

#[test]
fn callback_panic_is_caught_and_the_other_callbacks_see_every_change() {
    quiet_injected_panics();
    let prefix = unique("cb-panic");
    let any = AnyRecorder::new(&prefix);
    let pool = Pool::new(1, 0).unwrap();
    let calls = Arc::new(AtomicUsize::new(0));
    let c = calls.clone();
    let (events, rec) = recorder();
    let (cb_data, cb_dropped) = count();
    let job = JobSpec::new(|ctx| {
        ctx.write_output("a")?;
        ctx.write_output("b")?;
        Ok(())
    })
    .name(format!("{prefix}-job"))
    // Registered first: it panics on every change, before the others run.
    .on_state_changed(move |e| {
        let _data = &cb_data;
        c.fetch_add(1, Ordering::SeqCst);
        panic!("injected: callback panic on {}", e.state_info.state)
    })
    .on_state_changed(rec)
    .pool(&pool)
    .start()
    .unwrap();
    assert!(wait_bounded(&job, BOUND));
    assert_eq!(job.state_info(), bgjob::JobStateInfo::new(Completed));
    assert_eq!(calls.load(Ordering::SeqCst), 2, "called once per change");
    assert_eq!(
        *events.lock().unwrap(),
        [(NotStarted, Running), (Running, Completed)]
    );
    assert_eq!(
        any.of(job.id()),
        [(NotStarted, Running), (Running, Completed)]
    );
    assert_eq!(take_all(&job), ["a", "b"]);
    assert_eq!(pool.live_threads(), 1, "the worker survived");
    assert_eq!(
        drops(&cb_dropped),
        0,
        "the registration lives until the removal"
    );
    remove_job(job.id(), false).unwrap();
    assert_eq!(drops(&cb_dropped), 1, "the removal drops the callback once");
    still_usable(Some(&pool));
    drop(any);
    assert_clean(&prefix);
    pool.shutdown(Some(BOUND)).unwrap();
}

#[test]
fn callback_panic_on_the_callers_thread_never_unwinds_into_the_call_that_made_the_change() {
    quiet_injected_panics();
    let prefix = unique("cb-panic-caller");
    let busy = BusyPool::new(&prefix);
    // A queued job stopped from this thread: its NotStarted -> Stopped callbacks run here.
    let (events, rec) = recorder();
    let (data, dropped) = count();
    let queued = JobSpec::new(move |_| {
        let _data = &data;
        Ok(())
    })
    .name(format!("{prefix}-queued"))
    .on_state_changed(|_| panic!("injected: callback panic on the stopping thread"))
    .on_state_changed(rec)
    .pool(&busy.pool)
    .start()
    .unwrap();
    let q = queued.clone();
    let stopped = bounded("stop_job", move || stop_job(&q, Some(BOUND)));
    assert_eq!(stopped, Ok(Ok(())), "stop_job neither unwinds nor fails");
    assert_eq!(queued.state_info(), bgjob::JobStateInfo::new(Stopped));
    assert_eq!(*events.lock().unwrap(), [(NotStarted, Stopped)]);
    assert_eq!(drops(&dropped), 1, "the unrun work's data is dropped once");
    assert!(queued.begin_time().is_none(), "it never ran");
    remove_job(queued.id(), false).unwrap();
    busy.release();
    still_usable(Some(&busy.pool));

    // A custom job driven from this thread: set_state's callbacks run here.
    let (events, rec) = recorder();
    let custom = CustomJobSpec::new()
        .name(format!("{prefix}-custom"))
        .on_state_changed(|_| panic!("injected: callback panic in set_state"))
        .on_state_changed(rec)
        .create();
    let c = custom.clone();
    let moved = bounded("set_state", move || {
        (
            c.set_state(Running, None),
            c.write(Stream::Output, "custom record"),
            c.set_state(Failed, Some("the host's reason")),
        )
    });
    assert_eq!(moved, Ok((Ok(()), Ok(()), Ok(()))));
    let info = custom.job().state_info();
    assert_eq!(info.state, Failed);
    assert_eq!(info.reason.as_deref(), Some("the host's reason"));
    assert_eq!(
        *events.lock().unwrap(),
        [(NotStarted, Running), (Running, Failed)]
    );
    assert_eq!(take_all(custom.job()), ["custom record"]);
    remove_job(custom.job().id(), false).unwrap();
    still_usable(None);
    assert_clean(&prefix);
    busy.pool.shutdown(Some(BOUND)).unwrap();
}

#[test]
fn callback_error_returns_from_the_api_are_defined_and_disturb_nothing() {
    let prefix = unique("cb-err");
    type Outcomes = Vec<(JobState, &'static str, Result<(), Error>)>;
    let results: Arc<Mutex<Outcomes>> = Arc::default();
    let r = results.clone();
    let (events, rec) = recorder();
    let (release_tx, release_rx) = mpsc::channel::<()>();
    let job = JobSpec::new(move |ctx| {
        // Its Running callbacks ran before it began; it ends once the test has its handle.
        let _ = release_rx.recv_timeout(BOUND);
        ctx.write_output("done")?;
        Ok(())
    })
    .name(format!("{prefix}-job"))
    .on_state_changed(rec)
    .on_state_changed(move |e| {
        let state = e.state_info.state;
        let me = e.job.clone();
        let mut out = r.lock().unwrap();
        let wait = wait_jobs(std::slice::from_ref(&me), WaitMode::All, Some(BOUND));
        out.push((state, "wait", wait.map(|_| ())));
        if state == Running {
            out.push((state, "remove", remove_job(me.id(), false)));
            out.push((
                state,
                "wait id 0",
                bgjob::wait_job_ids(&[0], WaitMode::All, None).map(|_| ()),
            ));
        } else {
            // The change being delivered counts as done: a receive and a removal work.
            let got = me.receive(ReceiveOptions {
                keep: true,
                ..Default::default()
            });
            out.push((
                state,
                "receive",
                got.map(|v| assert_eq!(texts(&v), ["done"])),
            ));
            out.push((state, "remove", remove_job(me.id(), false)));
        }
    })
    .start()
    .unwrap();
    release_tx.send(()).unwrap();
    // The job removes itself from its Completed callback: poll the handle, not the id.
    assert!(
        eventually(|| job.is_removed()),
        "the job never removed itself"
    );
    assert!(wait_bounded(&job, BOUND));
    assert_eq!(job.state(), Completed);
    assert_eq!(
        *events.lock().unwrap(),
        [(NotStarted, Running), (Running, Completed)]
    );
    let got = results.lock().unwrap().clone();
    assert_eq!(got.len(), 6, "{got:?}");
    assert_eq!(got[0].0, Running);
    assert!(matches!(got[0].2, Err(Error::WouldDeadlock(_))), "{got:?}");
    assert_eq!(got[1].2, Err(Error::NotFinished(job.id())));
    assert_eq!(got[2].2, Err(Error::NoSuchJob(0)));
    assert_eq!(got[3], (Completed, "wait", Ok(())));
    assert_eq!(got[4], (Completed, "receive", Ok(())));
    assert_eq!(got[5], (Completed, "remove", Ok(())));
    assert!(matches!(get_job(job.id()), Err(Error::NoSuchJob(_))));
    still_usable(None);
    assert_clean(&prefix);
}

#[test]
fn custom_stop_handler_panic_is_caught_and_the_job_stays_stopping() {
    quiet_injected_panics();
    let prefix = unique("on-stop-panic");
    let (events, rec) = recorder();
    let custom = CustomJobSpec::new()
        .name(format!("{prefix}-custom"))
        .on_stop(|_| panic!("injected: stop handler panic"))
        .on_state_changed(rec)
        .create();
    custom.set_state(Running, None).unwrap();
    let j = custom.job().clone();
    let stopped = bounded("stop_job", move || {
        stop_job(&j, Some(Duration::from_millis(200)))
    });
    // Correct: the panic is caught (as a callback's is) and the stop times out, since the
    // handler never moved the job on. Observed: stop_job unwinds with the handler's panic.
    assert!(
        matches!(stopped, Ok(Err(Error::Timeout(_)))),
        "stop_job gave {stopped:?}"
    );
    assert_eq!(custom.job().state(), Stopping);
    custom.set_state(Stopped, None).unwrap();
    assert_eq!(
        *events.lock().unwrap(),
        [
            (NotStarted, Running),
            (Running, Stopping),
            (Stopping, Stopped)
        ]
    );
    remove_job(custom.job().id(), false).unwrap();
    still_usable(None);
    assert_clean(&prefix);
}

// ===== record conversion ====================================================================

/// A value whose conversion into a record payload panics.
struct Unconvertible;

impl From<Unconvertible> for Payload {
    fn from(_: Unconvertible) -> Payload {
        panic!("injected: conversion into a payload")
    }
}

/// A value whose conversion into a record payload is refused: the work maps it to an error.
struct Refused;

impl TryFrom<Refused> for Payload {
    type Error = String;
    fn try_from(_: Refused) -> Result<Payload, String> {
        Err("the value cannot be a record".into())
    }
}

#[test]
fn record_conversion_panic_or_error_fails_the_job_and_keeps_the_earlier_records() {
    quiet_injected_panics();
    let prefix = unique("convert");
    let (events, rec) = recorder();
    let panics = JobSpec::new(|ctx| {
        ctx.write_output("before")?;
        ctx.write_output(Unconvertible)?;
        ctx.write_output("never")?;
        Ok(())
    })
    .name(format!("{prefix}-panic"))
    .on_state_changed(rec)
    .start()
    .unwrap();
    let refused = JobSpec::new(|ctx| {
        ctx.write_output("before")?;
        ctx.write_output(Payload::try_from(Refused)?)?;
        ctx.write_output("never")?;
        Ok(())
    })
    .name(format!("{prefix}-error"))
    .start()
    .unwrap();
    assert!(wait_bounded(&panics, BOUND));
    assert!(wait_bounded(&refused, BOUND));
    let info = panics.state_info();
    assert_eq!(info.state, Failed);
    assert_eq!(
        info.reason.as_deref(),
        Some("the work panicked: injected: conversion into a payload")
    );
    assert_eq!(
        *events.lock().unwrap(),
        [(NotStarted, Running), (Running, Failed)]
    );
    assert_eq!(take_all(&panics), ["before"]);
    let info = refused.state_info();
    assert_eq!(info.state, Failed);
    assert_eq!(info.reason.as_deref(), Some("the value cannot be a record"));
    assert_eq!(take_all(&refused), ["before"]);
    remove_all(&[panics, refused]);
    still_usable(None);
    assert_clean(&prefix);
}

#[test]
fn writes_after_the_end_are_refused_and_change_no_record() {
    let prefix = unique("late-write");
    let (ctx_tx, ctx_rx) = mpsc::channel::<WorkContext>();
    let job = JobSpec::new(move |ctx| {
        ctx.write_output("in time")?;
        ctx_tx.send(ctx.clone()).unwrap();
        Ok(())
    })
    .name(format!("{prefix}-job"))
    .start()
    .unwrap();
    let kept = ctx_rx.recv_timeout(BOUND).unwrap();
    assert!(wait_bounded(&job, BOUND));
    assert_eq!(job.state(), Completed);
    assert!(matches!(
        kept.write_output("late"),
        Err(Error::InvalidState(_))
    ));
    assert!(matches!(
        kept.write_payload(Stream::Warning, Payload::Object(Arc::new(7_u8))),
        Err(Error::InvalidState(_))
    ));
    assert!(matches!(
        kept.write_progress(50, "late", "late"),
        Err(Error::InvalidState(_))
    ));
    assert_eq!(job.state(), Completed, "a refused write changes no state");
    assert_eq!(take_all(&job), ["in time"]);
    assert!(Stream::from_u32(7).is_none(), "no stream 7");

    let custom = CustomJobSpec::new()
        .name(format!("{prefix}-custom"))
        .create();
    custom.set_state(Running, None).unwrap();
    custom.write(Stream::Output, "in time").unwrap();
    custom.set_state(Completed, None).unwrap();
    assert!(matches!(
        custom.write(Stream::Output, "late"),
        Err(Error::InvalidState(_))
    ));
    assert!(matches!(
        custom.set_state(Running, None),
        Err(Error::InvalidState(_))
    ));
    assert_eq!(custom.job().state(), Completed);
    assert_eq!(take_all(custom.job()), ["in time"]);
    remove_job(job.id(), false).unwrap();
    remove_job(custom.job().id(), false).unwrap();
    still_usable(None);
    assert_clean(&prefix);
}

/// A record payload whose `Drop` panics (a binding's object, opaque to the core).
struct PanickingRecord(Arc<AtomicUsize>);

impl Drop for PanickingRecord {
    fn drop(&mut self) {
        self.0.fetch_add(1, Ordering::SeqCst);
        panic!("injected: a record's drop");
    }
}

#[test]
fn a_record_whose_drop_panics_unwinds_out_of_remove_after_the_job_is_gone() {
    quiet_injected_panics();
    let prefix = unique("record-drop");
    let record_drops = Arc::new(AtomicUsize::new(0));
    let rd = record_drops.clone();
    let (cb_data, cb_dropped) = count();
    let job = JobSpec::new(move |ctx| {
        ctx.write_output("plain")?;
        ctx.write_payload(
            Stream::Output,
            Payload::Object(Arc::new(PanickingRecord(rd))),
        )?;
        ctx.write_output("plain too")?;
        Ok(())
    })
    .name(format!("{prefix}-job"))
    .on_state_changed(move |_| {
        let _data = &cb_data;
    })
    .start()
    .unwrap();
    assert!(wait_bounded(&job, BOUND));
    assert_eq!(job.state(), Completed);
    let id = job.id();
    // Rust semantics: the user's Drop panics inside remove_job and the panic reaches its
    // caller — but only after the job left the repository, and the rest of what the job
    // held (the callback's data) is still dropped, once.
    let removed = bounded("remove_job", move || remove_job(id, false));
    assert_eq!(removed, Err("injected: a record's drop".to_string()));
    assert_eq!(drops(&record_drops), 1);
    assert_eq!(drops(&cb_dropped), 1);
    assert!(matches!(get_job(id), Err(Error::NoSuchJob(_))));
    assert!(job.is_removed());
    still_usable(None);
    assert_clean(&prefix);
}

#[test]
fn a_record_whose_drop_panics_in_a_self_removing_callback_is_caught_there() {
    quiet_injected_panics();
    let prefix = unique("record-drop-cb");
    let pool = Pool::new(1, 0).unwrap();
    let record_drops = Arc::new(AtomicUsize::new(0));
    let rd = record_drops.clone();
    let (events, rec) = recorder();
    let job = JobSpec::new(move |ctx| {
        ctx.write_payload(
            Stream::Output,
            Payload::Object(Arc::new(PanickingRecord(rd))),
        )?;
        Ok(())
    })
    .name(format!("{prefix}-job"))
    .on_state_changed(rec)
    .on_state_changed(|e| {
        if e.state_info.state.is_finished() {
            // Frees the records here, on the worker: the drop's panic is this callback's.
            let _ = remove_job(e.job_id, false);
        }
    })
    .pool(&pool)
    .start()
    .unwrap();
    assert!(eventually(|| job.is_removed()));
    assert!(wait_bounded(&job, BOUND));
    assert_eq!(job.state(), Completed);
    assert_eq!(
        *events.lock().unwrap(),
        [(NotStarted, Running), (Running, Completed)]
    );
    assert_eq!(drops(&record_drops), 1);
    assert_eq!(pool.live_threads(), 1);
    still_usable(Some(&pool));
    assert_clean(&prefix);
    pool.shutdown(Some(BOUND)).unwrap();
}

// ===== finalizers: a Drop of captured data that panics ======================================

#[test]
fn work_data_whose_drop_panics_after_the_work_returned_fails_the_job() {
    quiet_injected_panics();
    let prefix = unique("work-drop");
    let pool = Pool::new(1, 0).unwrap();
    let (data, dropped) = PanicOnDrop::new("injected: the work's data dropped");
    let (events, rec) = recorder();
    let job = JobSpec::new(move |ctx| {
        data.keep();
        ctx.write_output("returned Ok")?;
        Ok(())
    })
    .name(format!("{prefix}-job"))
    .on_state_changed(rec)
    .pool(&pool)
    .start()
    .unwrap();
    assert!(wait_bounded(&job, BOUND));
    // The closure's captures are dropped as the call ends, inside the work's panic guard:
    // the panic is the work's, whatever it returned.
    let info = job.state_info();
    assert_eq!(info.state, Failed);
    assert_eq!(
        info.reason.as_deref(),
        Some("the work panicked: injected: the work's data dropped")
    );
    assert_eq!(
        *events.lock().unwrap(),
        [(NotStarted, Running), (Running, Failed)]
    );
    assert_eq!(drops(&dropped), 1);
    assert_eq!(take_all(&job), ["returned Ok"]);
    remove_job(job.id(), false).unwrap();
    assert_eq!(pool.live_threads(), 1);
    still_usable(Some(&pool));
    assert_clean(&prefix);
    pool.shutdown(Some(BOUND)).unwrap();
}

#[test]
fn work_data_whose_drop_panics_when_stopped_while_queued() {
    quiet_injected_panics();
    let prefix = unique("queued-drop");
    let busy = BusyPool::new(&prefix);
    let (job, events, dropped) =
        busy.queue_panicking_drop(&prefix, "injected: unrun work's data dropped");
    let j = job.clone();
    let stopped = bounded("stop_job", move || stop_job(&j, Some(BOUND)));
    assert_eq!(drops(&dropped), 1);
    assert_eq!(job.state(), Stopped);
    // Correct: the Stopped change is delivered whatever the drop did.
    assert!(
        wait_bounded(&job, Duration::from_secs(2)),
        "the Stopped change was never delivered (stop_job gave {stopped:?})"
    );
    assert_eq!(*events.lock().unwrap(), [(NotStarted, Stopped)]);
    assert!(stopped.is_ok(), "stop_job unwound: {stopped:?}");
    let id = job.id();
    assert_eq!(
        bounded("remove_job", move || remove_job(id, false)),
        Ok(Ok(()))
    );
    busy.release();
    still_usable(Some(&busy.pool));
    assert_clean(&prefix);
    busy.pool.shutdown(Some(BOUND)).unwrap();
}

#[test]
fn pool_shutdown_with_a_queued_job_whose_data_drop_panics() {
    quiet_injected_panics();
    let prefix = unique("shutdown-drop");
    let busy = BusyPool::new(&prefix);
    let (job, events, dropped) =
        busy.queue_panicking_drop(&prefix, "injected: drained work's data dropped");
    let p = busy.pool.clone();
    let shut = bounded("Pool::shutdown", move || p.shutdown(Some(Duration::ZERO)));
    busy.gate.open();
    assert_eq!(drops(&dropped), 1);
    assert_eq!(job.state(), Stopped);
    assert!(
        wait_bounded(&job, Duration::from_secs(2)),
        "the Stopped change was never delivered (shutdown gave {shut:?})"
    );
    assert_eq!(*events.lock().unwrap(), [(NotStarted, Stopped)]);
    assert!(shut.is_ok(), "Pool::shutdown unwound: {shut:?}");
    let p = busy.pool.clone();
    assert_eq!(
        bounded("Pool::shutdown", move || p.shutdown(Some(BOUND))),
        Ok(Ok(()))
    );
    remove_job(job.id(), false).unwrap();
    remove_job(busy.blocker.id(), false).unwrap();
    still_usable(None);
    assert_clean(&prefix);
}

#[test]
fn work_data_whose_drop_panics_when_a_running_callback_stops_the_job() {
    quiet_injected_panics();
    let prefix = unique("begin-drop");
    let pool = Pool::new(1, 0).unwrap();
    let (data, dropped) = PanicOnDrop::new("injected: work dropped by begin_work");
    let (events, rec) = recorder();
    let job = JobSpec::new(move |_| {
        data.keep();
        Ok(())
    })
    .name(format!("{prefix}-job"))
    .on_state_changed(|e| {
        if e.state_info.state == Running {
            e.job.request_stop();
        }
    })
    .on_state_changed(rec)
    .pool(&pool)
    .start()
    .unwrap();
    assert!(
        wait_bounded(&job, Duration::from_secs(2)),
        "the job never finished: {:?}",
        job.state_info()
    );
    assert_eq!(job.state(), Stopped);
    assert_eq!(
        *events.lock().unwrap(),
        [
            (NotStarted, Running),
            (Running, Stopping),
            (Stopping, Stopped)
        ]
    );
    assert_eq!(drops(&dropped), 1);
    remove_job(job.id(), false).unwrap();
    still_usable(Some(&pool));
    let p = pool.clone();
    assert_eq!(
        bounded("Pool::shutdown", move || p.shutdown(Some(BOUND))),
        Ok(Ok(()))
    );
    assert_clean(&prefix);
}

#[test]
fn callback_data_whose_drop_panics_unwinds_out_of_unregister_or_remove_and_only_there() {
    quiet_injected_panics();
    let prefix = unique("cb-drop");
    // Unregistered: the panic reaches the caller of unregister; the callback is gone. It is
    // registered once the job runs its work, blocked: no dispatch of the job can hold the
    // registration meanwhile, so the unregister drops it (the dispatcher's drop is
    // callback_data_whose_drop_panics_after_the_callback_removed_its_own_job).
    let (data, dropped) = PanicOnDrop::new("injected: callback data dropped by unregister");
    let calls = Arc::new(AtomicUsize::new(0));
    let c = calls.clone();
    let (started_tx, started_rx) = mpsc::channel::<()>();
    let (gate_tx, gate_rx) = mpsc::channel::<()>();
    let job = JobSpec::new(move |_| {
        started_tx.send(()).unwrap();
        let _ = gate_rx.recv_timeout(BOUND);
        Ok(())
    })
    .name(format!("{prefix}-unregister"))
    .start()
    .unwrap();
    started_rx.recv_timeout(BOUND).expect("the work never ran");
    let reg = job.on_state_changed(Box::new(move |_| {
        data.keep();
        c.fetch_add(1, Ordering::SeqCst);
    }));
    let j = job.clone();
    let out = bounded("unregister", move || j.unregister(reg));
    assert_eq!(
        out,
        Err("injected: callback data dropped by unregister".to_string())
    );
    assert_eq!(drops(&dropped), 1);
    gate_tx.send(()).unwrap();
    assert!(wait_bounded(&job, BOUND));
    assert_eq!(job.state(), Completed);
    assert_eq!(
        calls.load(Ordering::SeqCst),
        0,
        "unregistered before any change"
    );
    assert!(!job.unregister(reg), "the registration is gone");
    remove_job(job.id(), false).unwrap();

    // (A repository-wide callback is left out on purpose: other tests' jobs dispatch
    // concurrently, and a dispatch holding the registration when it is unregistered makes
    // that dispatcher — another test's worker — drop it, reported on stderr as in
    // callback_data_whose_drop_panics_after_the_callback_removed_its_own_job.)

    // Dropped by a removal from the test's thread: the panic reaches remove_job's caller
    // after the job left the repository; the other user data is still dropped once.
    let (data, dropped) = PanicOnDrop::new("injected: callback data dropped by remove");
    let (other, other_dropped) = count();
    let (events, rec) = recorder();
    let job = JobSpec::new(|ctx| Ok(ctx.write_output("kept")?))
        .name(format!("{prefix}-remove"))
        .on_state_changed(move |_| data.keep())
        .on_state_changed(move |e| {
            let _other = &other;
            rec(e)
        })
        .start()
        .unwrap();
    assert!(wait_bounded(&job, BOUND));
    assert_eq!(
        *events.lock().unwrap(),
        [(NotStarted, Running), (Running, Completed)]
    );
    let id = job.id();
    let out = bounded("remove_job", move || remove_job(id, false));
    assert_eq!(
        out,
        Err("injected: callback data dropped by remove".to_string())
    );
    assert_eq!(drops(&dropped), 1);
    assert_eq!(drops(&other_dropped), 1);
    assert!(matches!(get_job(id), Err(Error::NoSuchJob(_))));
    still_usable(None);
    assert_clean(&prefix);
}

#[test]
fn callback_data_whose_drop_panics_after_the_callback_removed_its_own_job() {
    quiet_injected_panics();
    let prefix = unique("cb-drop-self");
    let pool = Pool::new(1, 0).unwrap();
    let (data, dropped) = PanicOnDrop::new("injected: callback data dropped by the dispatcher");
    let (events, rec) = recorder();
    let job = JobSpec::new(|_| Ok(()))
        .name(format!("{prefix}-job"))
        .on_state_changed(rec)
        .on_state_changed(move |e| {
            data.keep();
            if e.state_info.state.is_finished() {
                let _ = remove_job(e.job_id, false);
            }
        })
        .pool(&pool)
        .start()
        .unwrap();
    assert!(eventually(|| job.is_removed()));
    assert!(
        wait_bounded(&job, Duration::from_secs(2)),
        "the Completed change was never delivered"
    );
    assert_eq!(
        *events.lock().unwrap(),
        [(NotStarted, Running), (Running, Completed)]
    );
    assert_eq!(drops(&dropped), 1);
    still_usable(Some(&pool));
    let p = pool.clone();
    assert_eq!(
        bounded("Pool::shutdown", move || p.shutdown(Some(BOUND))),
        Ok(Ok(()))
    );
    assert_clean(&prefix);
}

// ===== afterwards ===========================================================================

#[test]
fn the_process_is_still_healthy_after_every_fault() {
    // Runs alongside (or after) the others: whatever they did, a batch of ordinary jobs
    // on a fresh pool and on the default pool completes, in time.
    let prefix = unique("healthy");
    let pool = Pool::new(2, 0).unwrap();
    let started = Instant::now();
    let jobs: Vec<_> = (0..20)
        .map(|i| {
            let mut spec = JobSpec::new(move |ctx| Ok(ctx.write_output(format!("{i}"))?))
                .name(format!("{prefix}-{i}"));
            if i % 2 == 0 {
                spec = spec.pool(&pool);
            }
            spec.start().unwrap()
        })
        .collect();
    for (i, j) in jobs.iter().enumerate() {
        assert!(wait_bounded(j, BOUND));
        assert_eq!(j.state(), Completed);
        assert_eq!(take_all(j), [format!("{i}")]);
    }
    remove_all(&jobs);
    assert!(started.elapsed() < BOUND);
    assert_clean(&prefix);
    pool.shutdown(Some(BOUND)).unwrap();
}
