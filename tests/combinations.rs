//! Lifecycle combinations, in the style of tokio's `task_combinations` test: every way a job
//! can end, times every way of waiting for it, receiving from it, removing it and running
//! it, each checked against DESIGN.md — 5 × 4 × 4 × 3 × 2 = 480 combinations, one check each.
//!
//! Dimensions:
//! - **ends**: the work returns (Completed); returns an error (Failed, with that reason);
//!   panics (Failed, the reason names the panic); is stopped while queued (Stopped, never
//!   runs); is stopped while running (cooperative work sees the stop; Stopped).
//! - **wait**: nobody (the test only polls the state getter, bounded); one waiter thread
//!   (`wait_jobs` All on the job); wait-any (a waiter thread on the job and on a custom job
//!   that never finishes until the test ends it, so the any-wait can only end by this job);
//!   a state-change callback (the test blocks on a gate the finished-state callback opens).
//! - **receive**: none; keep (a copy, then a consuming receive: both the full set); consume;
//!   consume concurrently (a reader thread receives with wait, one record at a time, while
//!   the work writes: the work writes its second half only after the reader took part of
//!   the first, so the two really interleave).
//! - **remove**: forced, before the job finishes; after it finished; from its own
//!   finished-state callback.
//! - **pool**: throttle 1 (one thread, throttle 1); many (`MANY_THREADS` threads, throttle
//!   `MANY_THROTTLE`). Each combination has a pool of its own, shut down at its end.
//!
//! Every combination asserts: the final state and reason; the exact records (every record
//! the work wrote — streams, texts, this job's id, increasing sequence numbers — received
//! exactly once across the consuming receives, in order; keep then consume both the full
//! set; and nothing left to receive after the removal, which frees the records at once);
//! the exact sequence of state changes the job's callback saw (legal, chained, in order,
//! no duplicates, ending in the expected finished state); that the waiters woke only after
//! that callback ran, and that a removal returned only after it ran; that the work's
//! captured data and the callback's were each dropped exactly once (also for a job stopped
//! while queued, whose work never runs — its data is dropped by the stop itself); and that
//! the repository holds none of the combination's jobs at the end.
//!
//! Determinism: the work is held at gates the test (or the job's Stopping callback) opens;
//! threads hand off through channels, gates and counters; nothing sleeps to synchronise.
//! Every block is bounded by `LONG` (60 s), so a hang fails instead of blocking forever.
//! A job stopped while queued is queued for sure: jobs held at a gate first occupy every
//! throttle slot of its pool.
//!
//! Contradictory combinations, and what each checks instead (none is impossible, none is
//! skipped: all 480 run):
//! - remove=force-before-finish with ends=returns, fails or panics: the forced removal
//!   stops the job while its work is held (Running) at its end gate, so the stop comes
//!   first and "a stop asked before the work ended wins" (guide §8: whatever the work
//!   returns then, the job ends Stopped; DESIGN: Stopping→Stopped, Failed/Completed only
//!   "if the work ended on its own first"). The work still returns / returns its error /
//!   panics after seeing the stop; the job must go Running→Stopping→Stopped with no reason.
//! - remove=force-before-finish with ends=stopped-running: the forced removal is the stop.
//! - remove=force-before-finish with ends=stopped-queued: a forced removal of a queued
//!   job. The library stops it (NotStarted→Stopped at once, its work never runs and its
//!   data is dropped by the stop) and removes it; asserted so.
//! - remove=force-before-finish with receive=keep/consume: a removal frees the records at
//!   once, so the test receives before removing: after the work wrote every record and
//!   while it is still held Running at its end gate.
//! - remove=own-callback with receive=keep/consume: the job is gone as soon as its finished
//!   state is delivered, so the finished-state callback receives first (DESIGN: every
//!   record is readable before the finished callback runs), then removes its job.
//! - receive=consume-concurrently with any removal: the work ends only after the reader
//!   took every record (the reader ends on the empty receive that the finished, or
//!   removed, job gives), so a removal can never free a record the reader has yet to take.
//! - remove=own-callback with wait=callback: the same callback removes the job and then
//!   opens the gate the test waits on.
//! - wait=nobody with remove=force-before-finish: the forced removal itself waits for the
//!   end (DESIGN: it stops the job and removes it once finished); the test adds no wait.

mod common;

use bgjob::{
    CustomJob, CustomJobSpec, Error, Job, JobId, JobSpec, JobState, Pool, ReceiveOptions, Record,
    StateChangedEvent, Stream, WaitMode, WorkContext, WorkResult, get_job, get_jobs, remove_job,
    stop_job, wait_jobs,
};
use common::{DropCount, Gate, LONG, by_name, eventually, unique, wait_all};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Condvar, Mutex, Once};
use std::thread;
use std::time::{Duration, Instant};

use JobState::{Completed, Failed, NotStarted, Running, Stopped, Stopping};

/// The records every work that runs writes, in this order: mixed streams, so a receive
/// must merge them in write order.
const STREAMS: [Stream; 6] = [
    Stream::Output,
    Stream::Error,
    Stream::Warning,
    Stream::Verbose,
    Stream::Information,
    Stream::Output,
];
const FAIL_REASON: &str = "combo-fail: the work returned this error";
/// The message of the planned panics (the panic hook keeps them off stderr).
const BOOM: &str = "combo-boom: the work panicked on purpose";
const MANY_THREADS: usize = 4;
const MANY_THROTTLE: usize = 3;

// ----- the dimensions ---------------------------------------------------------------------

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Ends {
    Returns,
    Fails,
    Panics,
    StoppedQueued,
    StoppedRunning,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Waits {
    Nobody,
    One,
    Any,
    Callback,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Receives {
    Nothing,
    Keep,
    Consume,
    ConsumeConcurrently,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Removes {
    ForceBeforeFinish,
    AfterFinish,
    OwnCallback,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Pools {
    Throttle1,
    Many,
}

const ENDS: [Ends; 5] = [
    Ends::Returns,
    Ends::Fails,
    Ends::Panics,
    Ends::StoppedQueued,
    Ends::StoppedRunning,
];
const WAITS: [Waits; 4] = [Waits::Nobody, Waits::One, Waits::Any, Waits::Callback];
const RECEIVES: [Receives; 4] = [
    Receives::Nothing,
    Receives::Keep,
    Receives::Consume,
    Receives::ConsumeConcurrently,
];
const REMOVES: [Removes; 3] = [
    Removes::ForceBeforeFinish,
    Removes::AfterFinish,
    Removes::OwnCallback,
];
const POOLS: [Pools; 2] = [Pools::Throttle1, Pools::Many];

#[derive(Clone, Copy, Debug)]
struct Combo {
    ends: Ends,
    wait: Waits,
    receive: Receives,
    remove: Removes,
    pool: Pools,
}

impl Combo {
    /// The combination's name in failure messages, e.g. "ends=panics wait=any
    /// receive=consume-concurrently remove=own-callback pool=throttle1".
    fn name(&self) -> String {
        let ends = match self.ends {
            Ends::Returns => "returns",
            Ends::Fails => "fails",
            Ends::Panics => "panics",
            Ends::StoppedQueued => "stopped-queued",
            Ends::StoppedRunning => "stopped-running",
        };
        let wait = match self.wait {
            Waits::Nobody => "nobody",
            Waits::One => "one",
            Waits::Any => "any",
            Waits::Callback => "callback",
        };
        let receive = match self.receive {
            Receives::Nothing => "none",
            Receives::Keep => "keep",
            Receives::Consume => "consume",
            Receives::ConsumeConcurrently => "consume-concurrently",
        };
        let remove = match self.remove {
            Removes::ForceBeforeFinish => "force-before-finish",
            Removes::AfterFinish => "after-finish",
            Removes::OwnCallback => "own-callback",
        };
        let pool = match self.pool {
            Pools::Throttle1 => "throttle1",
            Pools::Many => "many",
        };
        format!("ends={ends} wait={wait} receive={receive} remove={remove} pool={pool}")
    }

    fn all() -> Vec<Combo> {
        let mut out = Vec::new();
        for ends in ENDS {
            for wait in WAITS {
                for receive in RECEIVES {
                    for remove in REMOVES {
                        for pool in POOLS {
                            out.push(Combo {
                                ends,
                                wait,
                                receive,
                                remove,
                                pool,
                            });
                        }
                    }
                }
            }
        }
        out
    }

    /// Whether the job is stopped while its work runs (by a stop, or by a forced removal).
    fn stopped_while_running(&self) -> bool {
        self.ends == Ends::StoppedRunning
            || (self.remove == Removes::ForceBeforeFinish && self.ends != Ends::StoppedQueued)
    }

    /// The state changes the job's callback must see, in order, as (previous, new).
    fn expected_changes(&self) -> Vec<(JobState, JobState)> {
        if self.ends == Ends::StoppedQueued {
            vec![(NotStarted, Stopped)]
        } else if self.stopped_while_running() {
            vec![
                (NotStarted, Running),
                (Running, Stopping),
                (Stopping, Stopped),
            ]
        } else if self.ends == Ends::Returns {
            vec![(NotStarted, Running), (Running, Completed)]
        } else {
            vec![(NotStarted, Running), (Running, Failed)]
        }
    }

    /// Checks the reason of the finished state.
    fn check_reason(&self, reason: Option<&str>) -> Result<(), String> {
        let ok = match (self.ends, self.stopped_while_running()) {
            (_, true) | (Ends::Returns | Ends::StoppedQueued, _) => reason.is_none(),
            (Ends::Fails, false) => reason == Some(FAIL_REASON),
            // The reason names the panic (and says it was one).
            (Ends::Panics, false) => {
                reason.is_some_and(|r| r.contains(BOOM) && r.contains("panicked"))
            }
            (Ends::StoppedRunning, false) => unreachable!("stopped while running"),
        };
        if ok {
            Ok(())
        } else {
            Err(format!("unexpected reason {reason:?}"))
        }
    }
}

// ----- helpers ----------------------------------------------------------------------------

/// What a receive gave, reduced to what is compared: stream, text, sequence, job id.
type Rec = (Stream, String, u64, JobId);

fn recs(records: &[Record]) -> Vec<Rec> {
    records
        .iter()
        .map(|r| {
            let text = r
                .bytes()
                .map(|b| String::from_utf8_lossy(b).into_owned())
                .unwrap_or_else(|| "<not a bytes record>".into());
            (r.stream, text, r.sequence, r.job_id)
        })
        .collect()
}

/// What the receive dimension received (on the test thread or in the callback).
#[derive(Debug, Default)]
struct Received {
    /// The keep receive's copies.
    kept: Option<Vec<Rec>>,
    /// The consuming receive's records.
    taken: Option<Vec<Rec>>,
    /// A consuming receive right after it (must be empty: each record is taken once).
    after: Option<Vec<Rec>>,
}

/// The receives of `mode` (the concurrent reader is a thread of its own, not done here).
fn receive_now(job: &Arc<Job>, mode: Receives) -> Result<Received, String> {
    let take = |keep: bool| {
        job.receive(ReceiveOptions {
            keep,
            ..Default::default()
        })
        .map(|r| recs(&r))
        .map_err(|e| format!("receive (keep {keep}): {e}"))
    };
    let mut got = Received::default();
    match mode {
        Receives::Nothing | Receives::ConsumeConcurrently => {}
        Receives::Keep => {
            got.kept = Some(take(true)?);
            got.taken = Some(take(false)?);
            got.after = Some(take(false)?);
        }
        Receives::Consume => {
            got.taken = Some(take(false)?);
            got.after = Some(take(false)?);
        }
    }
    Ok(got)
}

/// A count that threads can wait on (how many records the concurrent reader took).
#[derive(Default)]
struct Counter {
    n: Mutex<usize>,
    changed: Condvar,
}

impl Counter {
    fn add(&self, k: usize) {
        *self.n.lock().unwrap() += k;
        self.changed.notify_all();
    }

    /// Blocks until the count is at least `k`; false if that takes longer than `LONG`.
    fn wait_at_least(&self, k: usize) -> bool {
        let n = self.n.lock().unwrap();
        let (n, _) = self
            .changed
            .wait_timeout_while(n, LONG, |n| *n < k)
            .unwrap();
        *n >= k
    }
}

/// The gates of one combination. Dropped (at the end, or when a check panics) they all
/// open, so no thread of a failed combination stays blocked.
#[derive(Default)]
struct Gates {
    /// The work writes its records once this opens.
    write: Gate,
    /// The work ends once this opens (the test opens it, or the Stopping callback does).
    end: Gate,
    /// Opened by the job's callback once it handled the finished state.
    finished: Gate,
    /// Holds the jobs that occupy the pool's slots (stopped-queued only).
    blockers: Gate,
}

impl Drop for Gates {
    fn drop(&mut self) {
        self.write.open();
        self.end.open();
        self.finished.open();
        self.blockers.open();
    }
}

/// What the job's callback saw and did.
#[derive(Default)]
struct Seen {
    /// Every change as (previous, new, reason of the new state).
    changes: Mutex<Vec<(JobState, JobState, Option<String>)>>,
    /// remove=own-callback: what the finished-state callback received before removing.
    in_callback: Mutex<Option<Result<Received, String>>>,
    /// remove=own-callback: the removal's result, and whether the job was gone right after.
    own_remove: Mutex<Option<(Result<(), String>, bool)>>,
    /// What a keep receive in the finished-state callback saw (before anything else there).
    at_finish: Mutex<Option<Result<Vec<Rec>, String>>>,
    /// Set as the finished-state callback returns: waits and removals must see it set.
    finish_returned: AtomicBool,
    /// Callbacks of this job running now, and whether two ever overlapped.
    inside: AtomicUsize,
    overlapped: AtomicBool,
}

impl Seen {
    fn states(&self) -> Vec<(JobState, JobState)> {
        self.changes
            .lock()
            .unwrap()
            .iter()
            .map(|(p, n, _)| (*p, *n))
            .collect()
    }

    /// Whether the callback for the job's finished state has returned.
    fn finish_delivered(&self) -> bool {
        self.finish_returned.load(Ordering::SeqCst)
    }
}

/// Keeps the planned panics of the work off stderr (480 combinations would print ~100
/// backtraces); every other panic goes to the default hook.
fn quiet_planned_panics() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let p = info.payload();
            let msg = p
                .downcast_ref::<String>()
                .map(String::as_str)
                .or_else(|| p.downcast_ref::<&str>().copied())
                .unwrap_or("");
            if !msg.contains(BOOM) {
                default(info);
            }
        }));
    });
}

fn panic_text(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_else(|| "a panic without a message".into())
}

/// Joins a helper thread of the combination; its failure (or panic) fails the combination.
fn join<T>(name: &str, what: &str, h: thread::JoinHandle<Result<T, String>>) -> T {
    match h.join() {
        Ok(Ok(v)) => v,
        Ok(Err(e)) => panic!("{name}: {what}: {e}"),
        Err(p) => panic!("{name}: {what} panicked: {}", panic_text(&*p)),
    }
}

// ----- one combination --------------------------------------------------------------------

fn run(c: Combo) {
    let name = c.name();
    let name = name.as_str();
    let prefix = unique("combo");
    let queued = c.ends == Ends::StoppedQueued;
    let concurrent = c.receive == Receives::ConsumeConcurrently;
    let want: Vec<(Stream, String)> = if queued {
        Vec::new()
    } else {
        STREAMS
            .iter()
            .enumerate()
            .map(|(i, s)| (*s, format!("{prefix}-record-{i}")))
            .collect()
    };

    let (pool, slots) = match c.pool {
        Pools::Throttle1 => (Pool::new(1, 1).unwrap(), 1),
        Pools::Many => (
            Pool::new(MANY_THREADS, MANY_THROTTLE).unwrap(),
            MANY_THROTTLE,
        ),
    };
    let gates = Gates::default();

    // stopped-queued: occupy every throttle slot first, so the job stays queued for sure.
    let blockers: Vec<Arc<Job>> = if queued {
        let (tx, rx) = mpsc::channel();
        let jobs: Vec<Arc<Job>> = (0..slots)
            .map(|i| {
                let (tx, gate) = (tx.clone(), gates.blockers.clone());
                JobSpec::new(move |_| {
                    let _ = tx.send(());
                    if gate.pass() {
                        Ok(())
                    } else {
                        Err("the blockers' gate never opened".into())
                    }
                })
                .name(format!("{prefix}-blocker-{i}"))
                .pool(&pool)
                .start()
                .unwrap()
            })
            .collect();
        for _ in 0..slots {
            rx.recv_timeout(LONG)
                .unwrap_or_else(|_| panic!("{name}: a blocker never ran"));
        }
        jobs
    } else {
        Vec::new()
    };

    // wait=any: another job that never finishes until the test ends it.
    let other: Option<CustomJob> = (c.wait == Waits::Any).then(|| {
        let other = CustomJobSpec::new()
            .name(format!("{prefix}-other"))
            .create();
        other.set_state(Running, None).unwrap();
        other
    });

    // The job's callback: records every change, lets a stopped work end, and on the
    // finished state (remove=own-callback) receives and removes its own job.
    let seen = Arc::new(Seen::default());
    let callback_drops = Arc::new(AtomicUsize::new(0));
    let on_change = {
        let held = DropCount(callback_drops.clone());
        let (seen, end, finished) = (seen.clone(), gates.end.clone(), gates.finished.clone());
        let (remove, receive) = (c.remove, c.receive);
        move |ev: &StateChangedEvent| {
            let _held = &held;
            if seen.inside.fetch_add(1, Ordering::SeqCst) != 0 {
                seen.overlapped.store(true, Ordering::SeqCst);
            }
            let new = ev.state_info.state;
            seen.changes.lock().unwrap().push((
                ev.previous_state_info.state,
                new,
                ev.state_info.reason.as_deref().map(str::to_owned),
            ));
            if new == Stopping {
                end.open(); // cooperative work: it now sees the stop
            }
            if new.is_finished() {
                // DESIGN §1: every record the work wrote is readable before this runs.
                let copies = ev.job.receive(ReceiveOptions {
                    keep: true,
                    ..Default::default()
                });
                *seen.at_finish.lock().unwrap() =
                    Some(copies.map(|r| recs(&r)).map_err(|e| e.to_string()));
                if remove == Removes::OwnCallback {
                    *seen.in_callback.lock().unwrap() = Some(receive_now(&ev.job, receive));
                    let removed = remove_job(ev.job_id, false).map_err(|e| e.to_string());
                    let gone = matches!(get_job(ev.job_id), Err(Error::NoSuchJob(_)));
                    *seen.own_remove.lock().unwrap() = Some((removed, gone));
                }
                seen.finish_returned.store(true, Ordering::SeqCst);
                finished.open();
            }
            seen.inside.fetch_sub(1, Ordering::SeqCst);
        }
    };

    // The work: says it runs, writes its records once let, ends once let.
    let work_drops = Arc::new(AtomicUsize::new(0));
    let ran = Arc::new(AtomicBool::new(false));
    let saw_stop = Arc::new(AtomicBool::new(false));
    let taken = Arc::new(Counter::default());
    let (running_tx, running_rx) = mpsc::channel::<()>();
    let (written_tx, written_rx) = mpsc::channel::<()>();
    let work = {
        let held = DropCount(work_drops.clone());
        let (ran, saw_stop, taken) = (ran.clone(), saw_stop.clone(), taken.clone());
        let (write, end) = (gates.write.clone(), gates.end.clone());
        let (records, ends) = (want.clone(), c.ends);
        move |ctx: &WorkContext| -> WorkResult {
            let _held = &held;
            ran.store(true, Ordering::SeqCst);
            let _ = running_tx.send(());
            if !write.pass() {
                return Err("the write gate never opened".into());
            }
            let half = records.len() / 2;
            for (i, (stream, text)) in records.iter().enumerate() {
                ctx.write(*stream, text.as_str())
                    .map_err(|e| format!("write {i}: {e}"))?;
                // The reader takes part of the first half before the rest is written.
                if concurrent && i + 1 == half && !taken.wait_at_least(1) {
                    return Err("the concurrent reader took nothing".into());
                }
            }
            // Every record is taken before the job can end (and be removed).
            if concurrent && !taken.wait_at_least(records.len()) {
                return Err("the concurrent reader did not take every record".into());
            }
            let _ = written_tx.send(());
            if !end.pass() {
                return Err("the end gate never opened".into());
            }
            saw_stop.store(ctx.stop_requested(), Ordering::SeqCst);
            match ends {
                Ends::Returns | Ends::StoppedRunning => Ok(()),
                Ends::Fails => Err(FAIL_REASON.into()),
                Ends::Panics => panic!("{}", BOOM),
                Ends::StoppedQueued => Err("a job stopped while queued ran".into()),
            }
        }
    };

    let job = JobSpec::new(work)
        .name(format!("{prefix}-subject"))
        .pool(&pool)
        .on_state_changed(on_change)
        .start()
        .unwrap();
    let id = job.id();
    if queued {
        assert_eq!(job.state(), NotStarted, "{name}: the job is queued");
    }

    // receive=consume-concurrently: the reader, one record per receive, until the
    // finished (or removed) job has none left.
    let reader = concurrent.then(|| {
        let (job, taken) = (job.clone(), taken.clone());
        thread::spawn(move || -> Result<Vec<Rec>, String> {
            let mut got = Vec::new();
            loop {
                let batch = job
                    .receive(ReceiveOptions {
                        max: Some(1),
                        wait: true,
                        timeout: Some(LONG),
                        keep: false,
                    })
                    .map_err(|e| format!("receive: {e}"))?;
                if batch.is_empty() {
                    if !job.state().is_finished() {
                        return Err(format!("no record after {LONG:?}, job {}", job.state()));
                    }
                    return Ok(got);
                }
                taken.add(batch.len());
                got.extend(recs(&batch));
            }
        })
    });

    // wait=one / wait=any: the waiter thread. It must wake only after the callbacks of
    // the finished state returned (DESIGN §1: callbacks run, then waiters wake).
    let waiter = match c.wait {
        Waits::One | Waits::Any => {
            let mut on: Vec<Arc<Job>> = Vec::new();
            if let Some(o) = &other {
                on.push(o.job().clone());
            }
            on.push(job.clone());
            // Any: over the job and a job that cannot finish first, so only this one ends it.
            let mode = if c.wait == Waits::One {
                WaitMode::All
            } else {
                WaitMode::Any
            };
            let seen = seen.clone();
            Some(thread::spawn(move || -> Result<(), String> {
                let r = wait_jobs(&on, mode, Some(LONG)).map_err(|e| format!("wait: {e}"))?;
                if r.timed_out || r.done != [id] {
                    return Err(format!("wait gave {r:?}, want done [{id}]"));
                }
                if !seen.finish_delivered() {
                    return Err(format!(
                        "the wait returned before the finished callback returned: {:?}",
                        seen.states()
                    ));
                }
                Ok(())
            }))
        }
        Waits::Nobody | Waits::Callback => None,
    };

    // Drive the job to its end.
    if c.remove == Removes::ForceBeforeFinish {
        if !queued {
            gates.write.open();
            written_rx
                .recv_timeout(LONG)
                .unwrap_or_else(|_| panic!("{name}: the work never wrote its records"));
            assert_eq!(job.state(), Running, "{name}: held at its end gate");
        }
        // Receive before the removal frees the records (the job is Running, or queued).
        let got = receive_now(&job, c.receive);
        let removed = remove_job(id, true);
        assert!(removed.is_ok(), "{name}: forced remove: {removed:?}");
        assert_registration_ended(name, &callback_drops);
        assert!(
            seen.finish_delivered(),
            "{name}: the forced remove returned before the finished callback returned: {:?}",
            seen.states()
        );
        check_received(name, got, &want, id);
    } else {
        match c.ends {
            Ends::Returns | Ends::Fails | Ends::Panics => {
                gates.write.open();
                gates.end.open();
            }
            Ends::StoppedQueued => {
                // Timeout 0: ask, do not wait; a queued job is Stopped at once.
                let stop = stop_job(&job, Some(Duration::ZERO));
                assert!(stop.is_ok(), "{name}: stop of a queued job: {stop:?}");
                assert_eq!(job.state(), Stopped, "{name}: Stopped at once");
            }
            Ends::StoppedRunning => {
                running_rx
                    .recv_timeout(LONG)
                    .unwrap_or_else(|_| panic!("{name}: the work never ran"));
                gates.write.open();
                // Asks only; the Stopping callback opens the end gate.
                job.request_stop();
            }
        }
    }
    if queued {
        // DESIGN: "stopping a queued job makes it Stopped at once and it never runs"; its
        // work (and what it captured) is dropped by the stop itself.
        assert_eq!(
            work_drops.load(Ordering::SeqCst),
            1,
            "{name}: the unrun work's data is dropped by the stop"
        );
    }

    // Who waits.
    match c.wait {
        Waits::Nobody => {
            if c.remove != Removes::ForceBeforeFinish {
                assert!(
                    eventually(|| job.state().is_finished()),
                    "{name}: not finished after {LONG:?}: {}",
                    job.state()
                );
            }
        }
        Waits::One | Waits::Any => {
            join(name, "the waiter", waiter.expect("a waiter"));
        }
        Waits::Callback => {
            assert!(
                gates.finished.pass(),
                "{name}: the finished callback never ran"
            );
        }
    }

    match c.remove {
        Removes::ForceBeforeFinish => {}
        Removes::AfterFinish => {
            assert!(job.state().is_finished(), "{name}: {}", job.state());
            // The finished state is stored before its callbacks run, so with nobody waiting
            // the job can look finished while the callback's keep receive (checked below)
            // has not run yet: a consume now would take its records first (seen under
            // AddressSanitizer's slower timing).
            assert!(
                gates.finished.pass(),
                "{name}: the finished callback never ran"
            );
            // DESIGN §1 step 2: every record is readable once the finished state is stored.
            check_received(name, receive_now(&job, c.receive), &want, id);
            assert_eq!(
                callback_drops.load(Ordering::SeqCst),
                0,
                "{name}: the callback's registration ended before the removal"
            );
            let removed = remove_job(id, false);
            assert!(removed.is_ok(), "{name}: remove: {removed:?}");
            assert_registration_ended(name, &callback_drops);
            assert!(
                seen.finish_delivered(),
                "{name}: the remove returned before the finished callback returned: {:?}",
                seen.states()
            );
        }
        Removes::OwnCallback => {
            assert!(
                gates.finished.pass(),
                "{name}: the finished callback never ran"
            );
            let (removed, gone) = seen
                .own_remove
                .lock()
                .unwrap()
                .take()
                .unwrap_or_else(|| panic!("{name}: the callback did not remove its job"));
            assert!(
                removed.is_ok(),
                "{name}: remove from own callback: {removed:?}"
            );
            assert!(
                gone,
                "{name}: the job is still there after its callback removed it"
            );
            let got = seen.in_callback.lock().unwrap().take();
            check_received(name, got.expect("received in the callback"), &want, id);
        }
    }

    // Every thread of the combination is done before the last checks.
    assert!(
        gates.finished.pass(),
        "{name}: the finished callback never ran"
    );
    if let Some(reader) = reader {
        let got = join(name, "the concurrent reader", reader);
        assert_records(name, "the concurrent reader", &got, &want, id);
    }
    if queued {
        gates.blockers.open();
        wait_all(&blockers);
        for b in &blockers {
            assert_eq!(b.state(), Completed, "{name}: a blocker");
            remove_job(b.id(), false).unwrap();
        }
    }
    if let Some(o) = &other {
        assert!(
            !o.job().is_done(),
            "{name}: the other job of the any-wait ended by itself"
        );
        o.set_state(Completed, None).unwrap();
        remove_job(o.job().id(), false).unwrap();
    }
    let shut = pool.shutdown(Some(LONG));
    assert!(shut.is_ok(), "{name}: pool shutdown: {shut:?}");

    // The final state and its reason.
    let changes = c.expected_changes();
    let final_state = changes.last().expect("some change").1;
    let info = job.state_info();
    assert_eq!(info.state, final_state, "{name}: final state");
    if let Err(e) = c.check_reason(info.reason.as_deref()) {
        panic!("{name}: {e}");
    }

    // The callback saw exactly the expected changes: legal, chained, in order, no duplicates.
    let seen_changes = seen.changes.lock().unwrap().clone();
    let mut at = NotStarted;
    for (prev, new, _) in &seen_changes {
        assert!(
            *prev == at && prev.can_move_to(*new),
            "{name}: illegal or unchained change {prev} -> {new} in {seen_changes:?}"
        );
        at = *new;
    }
    assert_eq!(seen.states(), changes, "{name}: the callback's changes");
    assert!(
        !seen.overlapped.load(Ordering::SeqCst),
        "{name}: two callbacks of the job ran at once"
    );
    // What a keep receive in the finished-state callback saw: every record not taken yet
    // (the concurrent reader took all before the end; a forced removal's keep or consume
    // receive took them before the stop).
    let untaken: &[(Stream, String)] = if concurrent
        || (c.remove == Removes::ForceBeforeFinish
            && matches!(c.receive, Receives::Keep | Receives::Consume))
    {
        &[]
    } else {
        &want
    };
    let at_finish = seen.at_finish.lock().unwrap().take();
    match at_finish {
        Some(Ok(got)) => assert_records(
            name,
            "a keep receive in the finished callback",
            &got,
            untaken,
            id,
        ),
        other => panic!("{name}: the keep receive in the finished callback: {other:?}"),
    }
    for (_, new, reason) in &seen_changes {
        if new.is_finished() {
            assert_eq!(
                reason.as_deref(),
                info.reason.as_deref(),
                "{name}: the finished change's reason"
            );
        } else {
            assert_eq!(reason.as_deref(), None, "{name}: a reason for {new}");
        }
    }

    // The work ran (or not), saw the stop (or not), and its data and the callback's were
    // dropped exactly once.
    assert_eq!(ran.load(Ordering::SeqCst), !queued, "{name}: the work ran");
    assert_eq!(
        saw_stop.load(Ordering::SeqCst),
        c.stopped_while_running(),
        "{name}: the work saw a stop"
    );
    assert_eq!(
        job.begin_time().is_some(),
        !queued,
        "{name}: a begin time iff it ran"
    );
    assert!(job.end_time().is_some(), "{name}: an end time");
    assert_eq!(
        work_drops.load(Ordering::SeqCst),
        1,
        "{name}: the work's data dropped"
    );
    assert_eq!(
        callback_drops.load(Ordering::SeqCst),
        1,
        "{name}: the callback's data dropped (the removal ends its registration)"
    );

    // Removed: gone from the repository, its records freed.
    assert!(job.is_removed(), "{name}: removed");
    assert!(
        matches!(get_job(id), Err(Error::NoSuchJob(_))),
        "{name}: the id still finds a job"
    );
    let left = get_jobs(&by_name(&format!("{prefix}-*")));
    assert!(
        left.is_empty(),
        "{name}: jobs left in the repository: {left:?}"
    );
    assert!(!job.has_more_data(), "{name}: records left after removal");
    let after = job.receive(ReceiveOptions::default()).unwrap();
    assert!(
        after.is_empty(),
        "{name}: {} records after removal",
        after.len()
    );
    drop(gates);
}

/// Guide §9: removal waits for the callbacks of the job's finishing change, then ends its
/// callback registrations (their data is dropped) before it returns.
fn assert_registration_ended(name: &str, callback_drops: &AtomicUsize) {
    assert_eq!(
        callback_drops.load(Ordering::SeqCst),
        1,
        "{name}: the callback's data is not dropped when the removal returns"
    );
}

/// Checks what the receive dimension got against every record the work wrote.
fn check_received(name: &str, got: Result<Received, String>, want: &[(Stream, String)], id: JobId) {
    let got = got.unwrap_or_else(|e| panic!("{name}: {e}"));
    if let Some(kept) = &got.kept {
        assert_records(name, "the keep receive", kept, want, id);
    }
    if let Some(taken) = &got.taken {
        assert_records(name, "the consuming receive", taken, want, id);
    }
    if let Some(after) = &got.after {
        assert_records(name, "a second consuming receive", after, &[], id);
    }
}

fn assert_records(name: &str, what: &str, got: &[Rec], want: &[(Stream, String)], id: JobId) {
    let texts: Vec<(Stream, String)> = got.iter().map(|(s, t, _, _)| (*s, t.clone())).collect();
    assert_eq!(texts, want, "{name}: {what}");
    assert!(
        got.iter().all(|r| r.3 == id),
        "{name}: {what}: a record of another job"
    );
    assert!(
        got.windows(2).all(|w| w[0].2 < w[1].2),
        "{name}: {what}: sequence numbers not increasing"
    );
}

// ----- the test ---------------------------------------------------------------------------

#[test]
fn every_combination_of_end_wait_receive_remove_and_pool() {
    quiet_planned_panics();
    let combos = Combo::all();
    assert_eq!(combos.len(), 5 * 4 * 4 * 3 * 2);
    let started = Instant::now();
    let mut failed: Vec<String> = Vec::new();
    for c in &combos {
        if let Err(p) = catch_unwind(AssertUnwindSafe(|| run(*c))) {
            let msg = panic_text(&*p);
            // An assertion of `run` names its combination; a panic elsewhere may not.
            failed.push(if msg.contains(&c.name()) {
                msg
            } else {
                format!("{}: {msg}", c.name())
            });
        }
    }
    let elapsed = started.elapsed();
    if failed.is_empty() {
        println!("combinations: {} run, all passed", combos.len());
    } else {
        println!(
            "combinations: {} run, {} failed",
            combos.len(),
            failed.len()
        );
    }
    println!("combinations: took {:.2} s", elapsed.as_secs_f64());
    assert!(
        failed.is_empty(),
        "{} of {} combinations failed:\n{}",
        failed.len(),
        combos.len(),
        failed.join("\n")
    );
}
