//! The throttle: how many of a pool's jobs may run at once.
//!
//! A counting semaphore whose count may go below zero: a worker whose job blocks in a
//! bgjob wait lends its permit to the pool (so the job it waits for can run), and takes
//! it back unconditionally when the wait ends. New jobs start only while the count is
//! positive, so the pool is back under its limit as soon as borrowers return.
//!
//! It is on every job's path, so taking and giving back a permit are one atomic operation
//! each; the lock and the condition variable are touched only when a worker has to sleep
//! (no permit free) or one sleeps. A pool without a limit skips it altogether.

use crate::sync::atomic::{AtomicIsize, AtomicUsize, Ordering::SeqCst};
use crate::sync::{Condvar, Mutex, lock, wait_step};
use std::time::{Duration, Instant};

pub(crate) struct Throttle {
    /// No limit beyond the pool's threads: every operation is a no-op.
    unlimited: bool,
    permits: AtomicIsize,
    /// Workers asleep (or about to sleep) waiting for a permit.
    sleepers: AtomicUsize,
    lock: Mutex<()>,
    cond: Condvar,
}

impl Throttle {
    /// A throttle of `limit` permits (`usize::MAX`: unlimited).
    pub(crate) fn new(limit: usize) -> Self {
        Throttle {
            unlimited: limit == usize::MAX,
            permits: AtomicIsize::new(limit.min(isize::MAX as usize) as isize),
            sleepers: AtomicUsize::new(0),
            lock: Mutex::new(()),
            cond: Condvar::new(),
        }
    }

    /// Takes a permit, blocking while none is free; false once `closed()` says so or
    /// when `patience` (if any) runs out first.
    pub(crate) fn acquire(&self, closed: impl Fn() -> bool, patience: Option<Duration>) -> bool {
        if closed() {
            return false;
        }
        if self.unlimited || self.try_take() {
            return true;
        }
        let deadline = patience.map(crate::sync::deadline_after);
        let mut guard = lock(&self.lock);
        // Counted before the last look (both SeqCst): a `release` after that look sees a
        // sleeper and wakes it; one before it left a permit the look finds.
        self.sleepers.fetch_add(1, SeqCst);
        let took = loop {
            if closed() {
                break false;
            }
            if self.try_take() {
                break true;
            }
            if deadline.is_some_and(|d| Instant::now() >= d) {
                break false;
            }
            guard = wait_step(&self.cond, guard, deadline);
        };
        self.sleepers.fetch_sub(1, SeqCst);
        took
    }

    fn try_take(&self) -> bool {
        self.permits
            .fetch_update(SeqCst, SeqCst, |p| (p > 0).then(|| p - 1))
            .is_ok()
    }

    /// Gives a permit back.
    pub(crate) fn release(&self) {
        if self.unlimited {
            return;
        }
        self.permits.fetch_add(1, SeqCst);
        if self.sleepers.load(SeqCst) > 0 {
            let _g = lock(&self.lock);
            self.cond.notify_one();
        }
    }

    /// Takes a permit back without waiting (after a blocking wait); may go below zero.
    pub(crate) fn reclaim(&self) {
        if !self.unlimited {
            self.permits.fetch_sub(1, SeqCst);
        }
    }

    /// Wakes every waiter so that it re-checks `closed`.
    pub(crate) fn wake_all(&self) {
        let _g = lock(&self.lock);
        self.cond.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::AtomicBool;

    #[test]
    fn at_most_limit_holders_at_once_and_every_waiter_gets_its_turn() {
        let t = Arc::new(Throttle::new(2));
        let held = Arc::new(AtomicUsize::new(0));
        let most = Arc::new(AtomicUsize::new(0));
        let threads: Vec<_> = (0..8)
            .map(|_| {
                let (t, held, most) = (t.clone(), held.clone(), most.clone());
                std::thread::spawn(move || {
                    for _ in 0..2_000 {
                        assert!(t.acquire(|| false, None));
                        let now = held.fetch_add(1, SeqCst) + 1;
                        most.fetch_max(now, SeqCst);
                        held.fetch_sub(1, SeqCst);
                        t.release();
                    }
                })
            })
            .collect();
        for th in threads {
            th.join().unwrap();
        }
        assert!(most.load(SeqCst) <= 2);
        assert_eq!(t.permits.load(SeqCst), 2);
    }

    #[test]
    fn patience_runs_out_and_closing_wakes_sleepers() {
        let t = Arc::new(Throttle::new(1));
        assert!(t.acquire(|| false, None));
        assert!(!t.acquire(|| false, Some(Duration::from_millis(20))));
        let closed = Arc::new(AtomicBool::new(false));
        let sleeper = {
            let (t, closed) = (t.clone(), closed.clone());
            std::thread::spawn(move || t.acquire(|| closed.load(SeqCst), None))
        };
        while t.sleepers.load(SeqCst) == 0 {
            std::thread::yield_now();
        }
        closed.store(true, SeqCst);
        t.wake_all();
        assert!(!sleeper.join().unwrap());
        // Unlimited: never blocks, never counts.
        let u = Throttle::new(usize::MAX);
        for _ in 0..10 {
            assert!(u.acquire(|| false, None));
        }
        assert!(!u.acquire(|| true, None));
    }
}
