//! Helpers shared by the Rust integration tests (each test binary includes this module).
//!
//! The repository is process-wide and tests run in parallel threads of one process, so a
//! test never assumes it is alone: it names its jobs uniquely, filters by those names and
//! removes every job it creates.

// Each test binary uses only some of these.
#![allow(dead_code)]

pub mod fork;

use bgjob::{
    Job, JobFilter, JobId, JobState, ProcessJobSpec, ReceiveOptions, Record, Stream, WaitMode,
    WildcardPattern, remove_job, wait_jobs,
};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Condvar, Mutex};
use std::thread;
use std::time::{Duration, Instant};

/// A bound for waits that should end quickly: reaching it means a hang, not slowness.
pub const LONG: Duration = Duration::from_secs(60);

pub fn unique(tag: &str) -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    format!(
        "jobs-rs-{tag}-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

pub fn by_name(pattern: &str) -> JobFilter {
    JobFilter {
        name: Some(WildcardPattern::new(pattern)),
        include_children: true,
        ..Default::default()
    }
}

pub fn ids(jobs: &[Arc<Job>]) -> Vec<JobId> {
    jobs.iter().map(|j| j.id()).collect()
}

/// Waits for every job to be done; fails the test if that takes longer than `LONG`.
pub fn wait_all(jobs: &[Arc<Job>]) {
    let r = wait_jobs(jobs, WaitMode::All, Some(LONG)).expect("wait");
    assert!(!r.timed_out, "jobs {:?} not done after {LONG:?}", ids(jobs));
    assert_eq!(r.done, ids(jobs));
}

pub fn texts(records: &[Record]) -> Vec<String> {
    records
        .iter()
        .map(|r| String::from_utf8_lossy(r.bytes().expect("a bytes record")).into_owned())
        .collect()
}

pub fn take_all(job: &Arc<Job>) -> Vec<String> {
    texts(&job.receive(ReceiveOptions::default()).unwrap())
}

/// Like `take_all`, each text with the stream it came on.
pub fn take_all_with_streams(job: &Arc<Job>) -> Vec<(Stream, String)> {
    job.receive(ReceiveOptions::default())
        .unwrap()
        .iter()
        .map(|r| {
            (
                r.stream,
                String::from_utf8_lossy(r.bytes().expect("a bytes record")).into_owned(),
            )
        })
        .collect()
}

/// Takes the next `max` records, waiting for them up to `LONG` (fewer if it runs out).
pub fn take_next(job: &Arc<Job>, max: usize) -> Vec<Record> {
    job.receive(ReceiveOptions {
        max: Some(max),
        wait: true,
        timeout: Some(LONG),
        ..Default::default()
    })
    .unwrap()
}

/// `sh -c script`, uniquely named.
pub fn sh(script: &str) -> ProcessJobSpec {
    ProcessJobSpec::new(["sh", "-c", script]).name(unique("sh"))
}

/// Waits for the job to be done, then takes its records' text and removes it.
pub fn finish(job: &Arc<Job>) -> Vec<String> {
    wait_all(std::slice::from_ref(job));
    let out = take_all(job);
    remove_job(job.id(), false).unwrap();
    out
}

/// Polls `cond` until it holds or `LONG` passes; false if it never held.
pub fn eventually(mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + LONG;
    while Instant::now() < deadline {
        if cond() {
            return true;
        }
        thread::sleep(Duration::from_millis(1));
    }
    cond()
}

pub fn remove_all(jobs: &[Arc<Job>]) {
    for j in jobs {
        remove_job(j.id(), true).unwrap_or_else(|e| panic!("remove job {}: {e}", j.id()));
    }
}

/// Work that blocks until the gate opens, ignoring stop requests (uncooperative).
#[derive(Clone, Default)]
pub struct Gate(Arc<(Mutex<bool>, Condvar)>);

impl Gate {
    pub fn open(&self) {
        *self.0.0.lock().unwrap() = true;
        self.0.1.notify_all();
    }

    /// Blocks until opened; gives up after `LONG` so a broken test cannot hang forever.
    pub fn pass(&self) -> bool {
        let g = self.0.0.lock().unwrap();
        let (g, _) = self.0.1.wait_timeout_while(g, LONG, |open| !*open).unwrap();
        *g
    }
}

/// Counts drops: put one in a closure to see when bgjob releases it.
pub struct DropCount(pub Arc<AtomicUsize>);

impl Drop for DropCount {
    fn drop(&mut self) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

pub type Events = Arc<Mutex<Vec<(JobState, JobState)>>>;

/// A callback that records (previous, new) states.
pub fn recorder() -> (
    Events,
    impl Fn(&bgjob::StateChangedEvent) + Send + Sync + 'static,
) {
    let events: Events = Arc::default();
    let e = events.clone();
    (events, move |ev: &bgjob::StateChangedEvent| {
        e.lock()
            .unwrap()
            .push((ev.previous_state_info.state, ev.state_info.state))
    })
}

/// Cooperative work: writes a record every millisecond until a stop is asked.
pub fn cooperative(
    started: mpsc::Sender<()>,
) -> impl FnOnce(&bgjob::WorkContext) -> bgjob::WorkResult {
    move |ctx| {
        let _ = started.send(());
        let deadline = Instant::now() + LONG;
        let mut i = 0u64;
        while !ctx.stop_requested() {
            if Instant::now() > deadline {
                return Err("never asked to stop".into());
            }
            ctx.write_output(i.to_string())?;
            i += 1;
            thread::sleep(Duration::from_millis(1));
        }
        Ok(())
    }
}
