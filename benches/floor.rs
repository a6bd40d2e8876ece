//! The floor: the cheapest job system that still keeps a record per job, measured with
//! criterion in the same process as bgjob's own Rust API (system `bgjob-rust`).
//!
//! The floor pool is one worker thread per core receiving boxed jobs from one crossbeam
//! unbounded channel. A job is `(Arc<AtomicU8> state, work, completion)`: the worker
//! stores Running, runs the work, stores Completed (plain atomic stores), then signals
//! completion — by counting down a latch (W1, W2) or by calling a boxed callback (W3).
//! The submitter waits on the latch: a short spin, then `thread::park` until the last
//! job's worker unparks it.
//!
//! Workloads (N = 100,000, or `BGJOB_BENCH_N`):
//!   W1 throughput: submit N no-op jobs, wait for all, drop the N records.
//!   W2 round trip: submit one job and wait for it, N/10 times in sequence.
//!   W3 callbacks:  N no-op jobs each calling a completion callback that counts; wait
//!                  until N callbacks ran.
//! bgjob-rust runs W1 (`JobSpec::new(..).start()`, `wait_jobs`, `remove_job`) and W2.
//!
//! One criterion iteration is one round (N jobs, or N/10 round trips); `iter_custom`
//! times the rounds. Besides criterion's own report, each benchmark prints
//! `RESULT <workload> <system> <value> us/job` (`us/roundtrip` for W2): the median over criterion's measurement
//! samples of the time per iteration (the same statistic as criterion's "median"
//! estimate), divided by the jobs per iteration. `benches/run.py` collects these lines.

use criterion::{Criterion, SamplingMode, criterion_group, criterion_main};
use crossbeam_channel::{Receiver, Sender, unbounded};
use std::cell::RefCell;
use std::hint::black_box;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
use std::thread::{self, JoinHandle, Thread};
use std::time::{Duration, Instant};

const SAMPLE_SIZE: usize = 10;
const WARM_UP: Duration = Duration::from_millis(500);
const MEASUREMENT: Duration = Duration::from_secs(2);

const NOT_STARTED: u8 = 0;
const RUNNING: u8 = 1;
const COMPLETED: u8 = 2;

/// Jobs per W1/W3 round (`BGJOB_BENCH_N`, default 100,000); W2 does a tenth of that.
fn n_jobs() -> usize {
    std::env::var("BGJOB_BENCH_N")
        .ok()
        .and_then(|s| s.parse().ok())
        .filter(|&n: &usize| n >= 10)
        .unwrap_or(100_000)
}

// ---------------------------------------------------------------------------------------
// The floor pool

/// Counts down to zero; the thread that waits is unparked by the last count-down.
struct Latch {
    remaining: AtomicUsize,
    waiter: Thread,
}

impl Latch {
    fn new(count: usize) -> Arc<Latch> {
        Arc::new(Latch {
            remaining: AtomicUsize::new(count),
            waiter: thread::current(),
        })
    }

    fn count_down(&self) {
        if self.remaining.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.waiter.unpark();
        }
    }

    /// Spin a little (a round trip is often done by then), then park until done.
    /// `park` may return spuriously, and an `unpark` before it is not lost (a token).
    fn wait(&self) {
        for i in 0..200 {
            if self.remaining.load(Ordering::Acquire) == 0 {
                return;
            }
            if i < 100 {
                std::hint::spin_loop()
            } else {
                thread::yield_now()
            }
        }
        while self.remaining.load(Ordering::Acquire) != 0 {
            thread::park();
        }
    }
}

enum Completion {
    Latch(Arc<Latch>),
    Callback(Box<dyn FnOnce() + Send>),
}

struct FloorJob {
    state: Arc<AtomicU8>,
    work: Box<dyn FnOnce() + Send>,
    completion: Completion,
}

struct FloorPool {
    tx: Option<Sender<FloorJob>>,
    workers: Vec<JoinHandle<()>>,
}

impl FloorPool {
    fn new(threads: usize) -> FloorPool {
        let (tx, rx) = unbounded::<FloorJob>();
        let workers = (0..threads)
            .map(|_| {
                let rx: Receiver<FloorJob> = rx.clone();
                thread::spawn(move || {
                    while let Ok(job) = rx.recv() {
                        job.state.store(RUNNING, Ordering::Release);
                        (job.work)();
                        job.state.store(COMPLETED, Ordering::Release);
                        match job.completion {
                            Completion::Latch(latch) => latch.count_down(),
                            Completion::Callback(callback) => callback(),
                        }
                    }
                })
            })
            .collect();
        FloorPool {
            tx: Some(tx),
            workers,
        }
    }

    /// Submits a job; returns its record.
    fn submit(&self, work: Box<dyn FnOnce() + Send>, completion: Completion) -> Arc<AtomicU8> {
        let state = Arc::new(AtomicU8::new(NOT_STARTED));
        let job = FloorJob {
            state: state.clone(),
            work,
            completion,
        };
        self.tx
            .as_ref()
            .expect("pool is open")
            .send(job)
            .expect("workers are alive");
        state
    }
}

impl Drop for FloorPool {
    fn drop(&mut self) {
        drop(self.tx.take());
        for w in self.workers.drain(..) {
            w.join().expect("floor worker panicked");
        }
    }
}

fn noop() -> Box<dyn FnOnce() + Send> {
    Box::new(|| {
        black_box(());
    })
}

fn floor_w1(pool: &FloorPool, n: usize) -> Duration {
    let t0 = Instant::now();
    let latch = Latch::new(n);
    let states: Vec<Arc<AtomicU8>> = (0..n)
        .map(|_| pool.submit(noop(), Completion::Latch(latch.clone())))
        .collect();
    latch.wait();
    debug_assert!(
        states
            .iter()
            .all(|s| s.load(Ordering::Acquire) == COMPLETED)
    );
    drop(states);
    t0.elapsed()
}

fn floor_w2(pool: &FloorPool, trips: usize) -> Duration {
    let t0 = Instant::now();
    for _ in 0..trips {
        let latch = Latch::new(1);
        let state = pool.submit(noop(), Completion::Latch(latch.clone()));
        latch.wait();
        debug_assert_eq!(state.load(Ordering::Acquire), COMPLETED);
    }
    t0.elapsed()
}

fn floor_w3(pool: &FloorPool, n: usize) -> Duration {
    let t0 = Instant::now();
    let latch = Latch::new(n);
    let states: Vec<Arc<AtomicU8>> = (0..n)
        .map(|_| {
            let latch = latch.clone();
            pool.submit(
                noop(),
                Completion::Callback(Box::new(move || latch.count_down())),
            )
        })
        .collect();
    latch.wait();
    drop(states);
    t0.elapsed()
}

// ---------------------------------------------------------------------------------------
// bgjob through its Rust API

fn bgjob_w1(n: usize) -> Duration {
    let t0 = Instant::now();
    let jobs: Vec<Arc<bgjob::Job>> = (0..n)
        .map(|_| bgjob::JobSpec::new(|_| Ok(())).start().expect("start_job"))
        .collect();
    let r = bgjob::wait_jobs(&jobs, bgjob::WaitMode::All, None).expect("wait_jobs");
    assert!(!r.timed_out);
    for job in &jobs {
        bgjob::remove_job(job.id(), false).expect("remove_job");
    }
    drop(jobs);
    t0.elapsed()
}

fn bgjob_w2(trips: usize) -> Duration {
    let t0 = Instant::now();
    for _ in 0..trips {
        let job = bgjob::JobSpec::new(|_| Ok(())).start().expect("start_job");
        bgjob::wait_jobs(std::slice::from_ref(&job), bgjob::WaitMode::All, None)
            .expect("wait_jobs");
        bgjob::remove_job(job.id(), false).expect("remove_job");
    }
    t0.elapsed()
}

// ---------------------------------------------------------------------------------------
// Harness

/// Runs one benchmark (one iteration = one call of `round`, covering `jobs` jobs) and
/// prints its RESULT line. Criterion calls the `iter_custom` routine during warm-up,
/// then exactly `SAMPLE_SIZE` times for its measurement samples: the last `SAMPLE_SIZE`
/// calls are the samples criterion's median is taken over.
fn measure(
    c: &mut Criterion,
    workload: &str,
    system: &str,
    jobs: usize,
    unit: &str,
    mut round: impl FnMut() -> Duration,
) {
    let calls: RefCell<Vec<(u64, Duration)>> = RefCell::new(Vec::new());
    let mut group = c.benchmark_group(workload);
    group
        .sample_size(SAMPLE_SIZE)
        .sampling_mode(SamplingMode::Flat);
    group.bench_function(system, |b| {
        b.iter_custom(|iters| {
            let total: Duration = (0..iters).map(|_| round()).sum();
            calls.borrow_mut().push((iters, total));
            total
        })
    });
    group.finish();
    let calls = calls.into_inner();
    if calls.len() <= SAMPLE_SIZE {
        return; // filtered out, or a --test run (one iteration): no median to report
    }
    let mut per_iter: Vec<f64> = calls[calls.len() - SAMPLE_SIZE..]
        .iter()
        .map(|&(iters, total)| total.as_secs_f64() / iters as f64)
        .collect();
    per_iter.sort_by(f64::total_cmp);
    let mid = per_iter.len() / 2;
    let median = if per_iter.len() % 2 == 0 {
        (per_iter[mid - 1] + per_iter[mid]) / 2.0
    } else {
        per_iter[mid]
    };
    println!(
        "RESULT {workload} {system} {:.4} {unit}",
        median * 1e6 / jobs as f64
    );
}

fn benches(c: &mut Criterion) {
    let n = n_jobs();
    let trips = n / 10;
    let threads = thread::available_parallelism().map_or(2, |p| p.get());
    let pool = FloorPool::new(threads);

    measure(c, "W1", "crossbeam-floor", n, "us/job", || {
        floor_w1(&pool, n)
    });
    measure(c, "W1", "bgjob-rust", n, "us/job", || bgjob_w1(n));
    let rt = "us/roundtrip";
    measure(c, "W2", "crossbeam-floor", trips, rt, || {
        floor_w2(&pool, trips)
    });
    measure(c, "W2", "bgjob-rust", trips, rt, || bgjob_w2(trips));
    measure(c, "W3", "crossbeam-floor", n, "us/job", || {
        floor_w3(&pool, n)
    });
}

criterion_group! {
    name = floor;
    config = Criterion::default()
        .sample_size(SAMPLE_SIZE)
        .warm_up_time(WARM_UP)
        .measurement_time(MEASUREMENT)
        .without_plots();
    targets = benches
}
criterion_main!(floor);
