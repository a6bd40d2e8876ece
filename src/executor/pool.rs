//! A pool of worker threads fed by a crossbeam channel, with a throttle limit.
//! See `README.md` beside this file for the protocol.

use super::handoff::Permit;
use super::queue::{Receiver, Sender};
use super::throttle::Throttle;
use super::worker;
use crate::error::{Error, Result};
use crate::fork;
use crate::job::{Job, JobId};
use crate::state::JobState;
use crate::sync::atomic::{AtomicBool, AtomicPtr, AtomicUsize, Ordering};
use crate::sync::thread::{self, JoinHandle};
use crate::sync::{Condvar, Mutex, lock, wait_until};
use std::cell::RefCell;
use std::collections::HashMap;
use std::mem::ManuallyDrop;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, TryLockError};
use std::time::Duration;

/// How long a spare worker (started while others were blocked) idles before it exits.
const SPARE_IDLE: Duration = Duration::from_secs(2);

static NEXT_POOL_ID: AtomicU64 = AtomicU64::new(1);

crate::sync::thread_locals! {
    /// The pool whose worker this thread is, and how deep it is in blocking waits.
    static WORKER_OF: RefCell<Option<(Arc<PoolInner>, usize)>> = const { RefCell::new(None) };
}

/// What a job still running in the parent at the instant of a `fork` becomes in the child.
const ORPHANED: &str =
    "the process forked while this job was running; its work goes on in the parent process only";

/// A pool of worker threads that runs thread jobs, at most `throttle` at once.
/// Cloning gives another handle to the same pool. A pool made before a `fork` keeps
/// working in the child: its first use there gives it workers of its own.
#[derive(Clone)]
pub struct Pool {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pool")
            .field("id", &self.shared.id)
            .field("threads", &self.shared.threads)
            .field("throttle", &self.shared.throttle_limit)
            .finish()
    }
}

/// What every handle of one pool shares: its settings and its current incarnation (its
/// workers, queue and throttle).
struct Shared {
    id: u64,
    threads: usize,
    throttle_limit: usize,
    /// The first incarnation, owned here: only held, never read (a whole `Arc`, so that
    /// leak checkers see the allocation held from its start).
    _first: Arc<PoolInner>,
    /// The current incarnation: `first`, or in a child process after a `fork` one from
    /// `Arc::into_raw` whose count is never given back. No incarnation `current` ever
    /// pointed to is freed before `Shared` (the parent's workers, copied into the child,
    /// still reference the replaced ones), so a pointer loaded from here stays valid as
    /// long as `Shared` lives.
    current: AtomicPtr<PoolInner>,
    /// Serializes that replacement.
    respawn: Mutex<()>,
}

impl Shared {
    /// The current incarnation, borrowed (no reference count is taken); a fresh one if
    /// this process is a forked child that has not used the pool yet.
    fn inner(&self) -> ManuallyDrop<Arc<PoolInner>> {
        let inner = self.load();
        if inner.generation == fork::generation() {
            inner
        } else {
            self.respawn_after_fork()
        }
    }

    fn load(&self) -> ManuallyDrop<Arc<PoolInner>> {
        // SAFETY: see `current`: the pointee outlives `self`, and ManuallyDrop never gives
        // back the count it did not take.
        ManuallyDrop::new(unsafe { Arc::from_raw(self.current.load(Ordering::Acquire)) })
    }

    /// In a forked child: the parent's workers do not exist here, and its queue and
    /// throttle may have been copied mid-operation. Start over with a fresh incarnation;
    /// what the old one held belongs to the parent: its queued jobs are stopped here (they
    /// run in the parent) and its running ones fail (their work goes on in the parent).
    fn respawn_after_fork(&self) -> ManuallyDrop<Arc<PoolInner>> {
        let _one = lock(&self.respawn);
        let old = self.load();
        let generation = fork::generation();
        if old.generation == generation {
            return old;
        }
        let fresh = Arc::new(PoolInner::new(
            self.id,
            self.threads,
            self.throttle_limit,
            generation,
        ));
        if old.shut_down.load(Ordering::SeqCst) {
            fresh.close();
        }
        // Not by draining the old queue: a thread that was mid-send on it at the fork left
        // a slot reserved and never written, and a receive would wait for it for ever.
        let queued = queued_elsewhere(generation);
        // `try_lock`: a lock a vanished worker held stays held for ever; skip what it guards.
        let running: Vec<Arc<Job>> = match old.slots.try_lock() {
            Ok(slots) => slots.iter().filter_map(try_lock_clone).collect(),
            Err(_) => Vec::new(),
        };
        // The new incarnation's count is never given back (see `current`).
        self.current
            .store(Arc::into_raw(fresh.clone()).cast_mut(), Ordering::Release);
        if !fresh.shut_down.load(Ordering::SeqCst) {
            for _ in 0..self.threads {
                if fresh.spawn_worker().is_err() {
                    break;
                }
            }
        }
        // The parent's process jobs are not this process's either. (Under loom, which has
        // neither forks nor process jobs, this is never reached.)
        #[cfg(not(loom))]
        crate::process::reactor::after_fork();
        if !(queued.is_empty() && running.is_empty()) {
            // Their callbacks must not run inside whatever call of the host found the pool
            // stale (it may hold a lock of its own that a callback takes): a thread does it.
            let _ = thread::Builder::new()
                .name("bgjob-fork".into())
                .spawn(move || settle_orphans(queued, running));
        }
        self.load()
    }
}

/// The fork generation whose child has collected `queued_elsewhere` (0: none yet).
static SWEPT: AtomicU64 = AtomicU64::new(0);

/// In a forked child, once per fork generation (by the first pool used there): the jobs
/// of every pool that another process queued and this one copied NotStarted. Found in the
/// repository, by the mark `Pool::submit` leaves on a job, and the lock-free state index.
fn queued_elsewhere(generation: u64) -> Vec<Arc<Job>> {
    if SWEPT.swap(generation, Ordering::AcqRel) == generation {
        return Vec::new();
    }
    let mut jobs = crate::repository::repository().all();
    jobs.retain(|j| {
        j.queued_elsewhere(generation)
            && crate::state_index::get(j.id()) == Some(JobState::NotStarted)
    });
    jobs
}

/// How long a forked child keeps trying to end a parent's job whose lock is held. A thread
/// of the child lets go in far less; one of the parent's held it at the fork and never will.
const ORPHAN_PATIENCE: Duration = Duration::from_secs(2);

/// In a forked child, on a thread of its own: stops the parent's queued jobs (they run
/// there) and fails its running ones (their work goes on there). A job whose lock a
/// vanished thread holds is left as it is (see `fork.rs`), without holding up the others.
fn settle_orphans(mut queued: Vec<Arc<Job>>, mut running: Vec<Arc<Job>>) {
    let deadline = crate::sync::deadline_after(ORPHAN_PATIENCE);
    loop {
        queued.retain(|job| {
            if !job.locks_free() {
                return true;
            }
            if job.state() == JobState::NotStarted {
                job.request_stop();
            }
            false
        });
        running.retain(|job| {
            if !job.locks_free() {
                return true;
            }
            job.finish_work(Err(ORPHANED.to_string()));
            false
        });
        if (queued.is_empty() && running.is_empty()) || std::time::Instant::now() >= deadline {
            return;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// The job in a worker's slot, unless the slot's lock is held (by a worker that vanished).
fn try_lock_clone(slot: &Slot) -> Option<Arc<Job>> {
    match slot.try_lock() {
        Ok(job) => job.clone(),
        Err(TryLockError::Poisoned(p)) => p.into_inner().clone(),
        Err(TryLockError::WouldBlock) => None,
    }
}

type Slot = Arc<Mutex<Option<Arc<Job>>>>;

/// What a worker receives.
enum Msg {
    /// Run this job.
    Run(Arc<Job>),
    /// The pool shut down: exit (one is sent per worker).
    Quit,
}

pub(crate) struct PoolInner {
    id: u64,
    /// The fork generation (`fork::generation`) this incarnation's workers belong to.
    generation: u64,
    threads: usize,
    /// The queue. One channel for jobs and the shutdown signal alike, so a worker waits
    /// with a plain `recv` (a `select` over two channels costs every job more).
    tx: Sender<Msg>,
    rx: Receiver<Msg>,
    shut_down: AtomicBool,
    throttle: Throttle,
    /// Worker threads alive.
    live: AtomicUsize,
    /// Workers running a job (blocked ones included).
    busy: AtomicUsize,
    /// Workers ever started (they are named by this count).
    started: AtomicUsize,
    /// Workers whose job is blocked in a bgjob wait.
    blocked: AtomicUsize,
    /// Each worker's current job, so shutdown can stop them.
    slots: Mutex<Vec<Slot>>,
    /// Jobs whose work handed its end off (process jobs): running, holding a permit, on
    /// no worker. Shutdown stops them and waits for them too.
    handed_off: Mutex<HashMap<JobId, Arc<Job>>>,
    handles: Mutex<Vec<JoinHandle<()>>>,
    exited: (Mutex<()>, Condvar),
}

impl Pool {
    /// Creates a pool. `threads` = 0 means one per core; `throttle` = 0 means no limit
    /// beyond the thread count.
    pub fn new(threads: usize, throttle: usize) -> Result<Pool> {
        let threads = if threads == 0 {
            std::thread::available_parallelism().map_or(1, |n| n.get())
        } else {
            threads
        };
        let throttle_limit = if throttle == 0 { usize::MAX } else { throttle };
        fork::install();
        let id = NEXT_POOL_ID.fetch_add(1, Ordering::Relaxed);
        let inner = Arc::new(PoolInner::new(
            id,
            threads,
            throttle_limit,
            fork::generation(),
        ));
        let pool = Pool {
            shared: Arc::new(Shared {
                id,
                threads,
                throttle_limit,
                current: AtomicPtr::new(Arc::as_ptr(&inner).cast_mut()),
                _first: inner.clone(),
                respawn: Mutex::new(()),
            }),
        };
        for _ in 0..threads {
            if let Err(e) = inner.spawn_worker() {
                let _ = pool.shutdown(Some(Duration::from_secs(5)));
                return Err(e);
            }
        }
        Ok(pool)
    }

    /// The pool's id (process-wide, from 1).
    pub fn id(&self) -> u64 {
        self.shared.id
    }

    /// The number of worker threads it keeps.
    pub fn threads(&self) -> usize {
        self.shared.threads
    }

    /// Most jobs running at once (`usize::MAX` = no limit beyond the threads).
    pub fn throttle(&self) -> usize {
        self.shared.throttle_limit
    }

    /// Worker threads alive now (more than `threads` while jobs are blocked in waits).
    pub fn live_threads(&self) -> usize {
        self.shared.inner().live.load(Ordering::Acquire)
    }

    /// Whether `shutdown` was called.
    pub fn is_shut_down(&self) -> bool {
        self.shared.load().shut_down.load(Ordering::SeqCst)
    }

    /// Queues `job` to run.
    pub(crate) fn submit(&self, job: Arc<Job>) -> Result<()> {
        let p = self.shared.inner();
        if p.shut_down.load(Ordering::SeqCst) {
            return Err(Error::ShutDown(p.id));
        }
        job.mark_queued(p.generation);
        // The receiver lives as long as the pool, so this cannot fail.
        let _ = p.tx.send(Msg::Run(job));
        // A shutdown that began after our check may have drained the queue already; then
        // we drain it, so no job is left queued forever (either it or we see the job).
        if p.shut_down.load(Ordering::SeqCst) {
            p.drain();
        } else if p.blocked.load(Ordering::Acquire) > 0 {
            p.add_spare_if_starved();
        }
        Ok(())
    }

    /// Stops accepting jobs, stops the queued ones (Stopped, never run) and asks the running
    /// ones to stop, then waits up to `timeout` (`None` = no limit) for the workers to exit.
    /// Calling it again is harmless. `Err(Timeout)` if workers are still running work.
    pub fn shutdown(&self, timeout: Option<Duration>) -> Result<()> {
        let p = self.shared.inner();
        p.close();
        p.drain();
        let mut running: Vec<Arc<Job>> = lock(&p.slots)
            .iter()
            .filter_map(|s| lock(s).clone())
            .collect();
        running.extend(lock(&p.handed_off).values().cloned());
        for job in running {
            job.request_stop();
        }
        // A worker of this pool shutting it down cannot wait for itself.
        let me = WORKER_OF.with(|w| {
            w.borrow()
                .as_ref()
                .is_some_and(|(inner, _)| Arc::ptr_eq(inner, &*p))
        });
        let target = usize::from(me);
        let deadline = timeout.map(crate::sync::deadline_after);
        drop(wait_until(&p.exited.1, lock(&p.exited.0), deadline, |_| {
            p.live.load(Ordering::Acquire) <= target && lock(&p.handed_off).is_empty()
        }));
        // Every worker that counted itself out is past its last job: join those threads
        // (all but this one, if it is a worker) so none outlives the shutdown. On a timeout,
        // join only those already finished; the rest exit when their work ends.
        let all_out = p.live.load(Ordering::Acquire) <= target;
        // Only a worker asks for its own id: on a host's thread `current()` would allocate
        // a handle that lives until the process ends.
        let me_id = me.then(|| thread::current().id());
        let joinable: Vec<JoinHandle<()>> = {
            let mut hs = lock(&p.handles);
            let (join, keep): (Vec<_>, Vec<_>) = hs.drain(..).partition(|h| {
                Some(h.thread().id()) != me_id && (all_out || thread::is_finished(h))
            });
            *hs = keep;
            join
        };
        for h in joinable {
            let _ = h.join();
        }
        p.drain();
        let left = p.live.load(Ordering::Acquire).saturating_sub(target);
        let outside = lock(&p.handed_off).len();
        if left > 0 || outside > 0 {
            return Err(Error::Timeout(format!(
                "pool {}: {left} worker(s) still running work and {outside} job(s) still \
                 running outside the pool (processes) after the shutdown timeout",
                p.id,
            )));
        }
        Ok(())
    }
}

impl PoolInner {
    /// An incarnation with no workers yet.
    fn new(id: u64, threads: usize, throttle_limit: usize, generation: u64) -> PoolInner {
        let (tx, rx) = super::queue::unbounded();
        PoolInner {
            id,
            generation,
            threads,
            tx,
            rx,
            shut_down: AtomicBool::new(false),
            throttle: Throttle::new(throttle_limit),
            live: AtomicUsize::new(0),
            busy: AtomicUsize::new(0),
            started: AtomicUsize::new(0),
            blocked: AtomicUsize::new(0),
            slots: Mutex::new(Vec::new()),
            handed_off: Mutex::new(HashMap::new()),
            handles: Mutex::new(Vec::new()),
            exited: (Mutex::new(()), Condvar::new()),
        }
    }

    /// Stops accepting jobs and tells every worker (idempotent).
    fn close(&self) {
        if !self.shut_down.swap(true, Ordering::SeqCst) {
            self.throttle.wake_all();
            // One `Quit` per worker alive now; one started later sees `shut_down` before
            // it waits. Extra ones are harmless.
            self.send_quits(self.live.load(Ordering::Acquire));
        }
    }

    fn send_quits(&self, n: usize) {
        for _ in 0..n {
            // The receiver lives as long as the pool, so this cannot fail.
            let _ = self.tx.send(Msg::Quit);
        }
    }

    fn spawn_worker(self: &Arc<Self>) -> Result<()> {
        let slot: Slot = Arc::new(Mutex::new(None));
        lock(&self.slots).push(slot.clone());
        self.live.fetch_add(1, Ordering::AcqRel);
        let pool = self.clone();
        let n = self.started.fetch_add(1, Ordering::Relaxed) + 1;
        // Held across the spawn: a worker that retires looks its handle up under this lock
        // (`forget_worker`), so it must be there before the worker can look.
        let mut handles = lock(&self.handles);
        let spawned = thread::Builder::new()
            .name(format!("bgjob-{}-{}", self.id, n))
            .spawn(move || pool.worker_loop(slot));
        match spawned {
            Ok(h) => {
                handles.push(h);
                Ok(())
            }
            Err(e) => {
                drop(handles);
                self.worker_exited();
                Err(Error::InvalidState(format!(
                    "cannot start a worker thread: {e}"
                )))
            }
        }
    }

    fn worker_loop(self: Arc<Self>, slot: Slot) {
        WORKER_OF.with(|w| *w.borrow_mut() = Some((self.clone(), 0)));
        let retired = self.serve(&slot);
        WORKER_OF.with(|w| *w.borrow_mut() = None);
        if retired {
            self.forget_worker(&slot);
            // try_retire counted this worker out already; shutdown may be waiting.
            let _g = lock(&self.exited.0);
            self.exited.1.notify_all();
        } else {
            self.worker_exited();
        }
    }

    /// A spare that retired gives back what the pool kept for it: its slot, and its
    /// thread's handle, dropped, which detaches the thread. Kept, the handle would hold the
    /// finished thread (its stack) until a join at shutdown — never, for the default pool —
    /// and every spare that came and went would add one.
    fn forget_worker(&self, slot: &Slot) {
        lock(&self.slots).retain(|s| !Arc::ptr_eq(s, slot));
        let me = thread::current().id();
        lock(&self.handles).retain(|h| h.thread().id() != me);
    }

    /// Gives a throttle permit back (a [`Permit`] dropped).
    pub(super) fn release_permit(&self) {
        self.throttle.release();
    }

    /// Counts `job` as running outside the workers until [`untrack_handed_off`].
    pub(super) fn track_handed_off(&self, job: &Arc<Job>) {
        lock(&self.handed_off).insert(job.id(), job.clone());
    }

    /// The handed-off job `id` has finished: a shutdown may be waiting for it.
    pub(super) fn untrack_handed_off(&self, id: JobId) {
        {
            let mut h = lock(&self.handed_off);
            h.remove(&id);
            if h.is_empty() {
                // An empty map gives its table back (as repository shards do), so a
                // leak checker sees no table that only an interior pointer reaches.
                h.shrink_to_fit();
            }
        }
        let _g = lock(&self.exited.0);
        self.exited.1.notify_all();
    }

    /// Runs jobs until shutdown (false) or until this worker retires as a spare (true).
    fn serve(self: &Arc<Self>, slot: &Slot) -> bool {
        let closed = || self.shut_down.load(Ordering::SeqCst);
        loop {
            let spare = self.live.load(Ordering::Acquire) > self.threads;
            if !self.throttle.acquire(closed, spare.then_some(SPARE_IDLE)) {
                if closed() {
                    return false;
                }
                if self.try_retire() {
                    return true;
                }
                continue;
            }
            let permit = Permit::taken(self.clone());
            let next = if spare {
                self.rx.recv_timeout(SPARE_IDLE).ok()
            } else {
                // A job that comes within microseconds (the next of a sequence of round
                // trips) is taken without parking: being woken costs more than watching.
                crate::sync::spin_until(|| !self.rx.is_empty());
                self.rx.recv().ok()
            };
            let Some(Msg::Run(job)) = next else {
                drop(permit);
                if closed() {
                    return false;
                }
                if self.try_retire() {
                    return true;
                }
                continue;
            };
            self.busy.fetch_add(1, Ordering::AcqRel);
            *lock(slot) = Some(job.clone());
            // `None` when the work handed its end (and the permit) off.
            let permit = if closed() {
                // Taken from the queue as shutdown began: it is stopped, not run.
                job.request_stop();
                Some(permit)
            } else {
                worker::run_job(&job, Some(permit))
            };
            *lock(slot) = None;
            self.busy.fetch_sub(1, Ordering::AcqRel);
            drop(permit);
            drop(job);
            if self.live.load(Ordering::Acquire) > self.threads && self.try_retire() {
                return true;
            }
        }
    }

    /// Leaves the pool if it has more workers than it keeps; true if this one left.
    fn try_retire(&self) -> bool {
        let blocked = self.blocked.load(Ordering::Acquire);
        self.live
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |l| {
                (l > self.threads + blocked).then(|| l - 1)
            })
            .is_ok()
    }

    fn worker_exited(&self) {
        let _g = lock(&self.exited.0);
        self.live.fetch_sub(1, Ordering::AcqRel);
        self.exited.1.notify_all();
    }

    /// Stops every queued job: it becomes Stopped and never runs. The shutdown signals
    /// it meets are put back for the workers.
    fn drain(&self) {
        let mut quits = 0;
        while let Ok(msg) = self.rx.try_recv() {
            match msg {
                Msg::Run(job) => job.request_stop(),
                Msg::Quit => quits += 1,
            }
        }
        self.send_quits(quits);
    }

    /// Starts a spare worker when every worker is busy, some are blocked in waits, and
    /// work is queued: a wait inside a job must never starve the jobs it waits for.
    fn add_spare_if_starved(self: &Arc<Self>) {
        let blocked = self.blocked.load(Ordering::Acquire);
        let live = self.live.load(Ordering::Acquire);
        let free = live.saturating_sub(self.busy.load(Ordering::Acquire));
        if blocked > 0
            && free == 0
            && live < self.threads + blocked
            && !self.rx.is_empty()
            && !self.shut_down.load(Ordering::SeqCst)
        {
            let _ = self.spawn_worker();
        }
    }
}

/// Runs `wait` — a bgjob wait of any kind — such that, on a worker thread, the job's
/// throttle permit and thread are lent to the pool for the duration: waiting inside a
/// job never deadlocks its pool.
pub(crate) fn blocking<R>(wait: impl FnOnce() -> R) -> R {
    let pool = WORKER_OF.with(|w| {
        let mut w = w.borrow_mut();
        let (pool, depth) = w.as_mut()?;
        *depth += 1;
        (*depth == 1).then(|| pool.clone())
    });
    let Some(pool) = pool else {
        let r = wait();
        WORKER_OF.with(|w| {
            if let Some((_, depth)) = w.borrow_mut().as_mut() {
                *depth -= 1;
            }
        });
        return r;
    };
    pool.blocked.fetch_add(1, Ordering::AcqRel);
    pool.throttle.release();
    pool.add_spare_if_starved();
    let r = wait();
    pool.throttle.reclaim();
    pool.blocked.fetch_sub(1, Ordering::AcqRel);
    WORKER_OF.with(|w| {
        if let Some((_, depth)) = w.borrow_mut().as_mut() {
            *depth -= 1;
        }
    });
    r
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::JobSpec;
    use crate::state::JobState;
    use crate::wait::{WaitMode, wait_jobs};
    use std::time::Instant;

    const LONG: Duration = Duration::from_secs(60);

    /// Polls `cond` until it holds or a minute passes (retiring is asynchronous: a spare
    /// leaves after idling `SPARE_IDLE`; there is no event to wait on).
    fn eventually(cond: impl Fn() -> bool) -> bool {
        let deadline = Instant::now() + LONG;
        while Instant::now() < deadline {
            if cond() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        cond()
    }

    #[test]
    fn a_retired_spare_leaves_no_slot_and_no_handle_behind() {
        let pool = Pool::new(1, 0).unwrap();
        for round in 0..2 {
            // The outer job waits for the inner one, queued behind it on this one-thread
            // pool: the pool lends a spare worker, which retires once idle.
            let p = pool.clone();
            let outer = JobSpec::new(move |_| {
                let inner = JobSpec::new(|_| Ok(())).pool(&p).start()?;
                let r = wait_jobs(std::slice::from_ref(&inner), WaitMode::All, Some(LONG))?;
                if r.timed_out {
                    return Err("inner job did not finish".into());
                }
                crate::repository::remove_job(inner.id(), false)?;
                Ok(())
            })
            .pool(&pool)
            .start()
            .unwrap();
            let r = wait_jobs(std::slice::from_ref(&outer), WaitMode::All, Some(LONG)).unwrap();
            assert!(!r.timed_out);
            assert_eq!(outer.state(), JobState::Completed, "round {round}");
            crate::repository::remove_job(outer.id(), false).unwrap();
            let inner = pool.shared.load();
            assert!(
                inner.started.load(Ordering::Relaxed) >= 2 + round,
                "no spare was lent"
            );
            assert!(
                eventually(|| lock(&inner.slots).len() == 1 && lock(&inner.handles).len() == 1),
                "round {round}: {} slots, {} handles for one worker",
                lock(&inner.slots).len(),
                lock(&inner.handles).len()
            );
        }
        pool.shutdown(Some(LONG)).unwrap();
    }
}
