//! The throttle: how many of a pool's jobs may run at once.
//!
//! A counting semaphore whose count may go below zero: a worker whose job blocks in a
//! bgjob wait lends its permit to the pool (so the job it waits for can run), and takes
//! it back unconditionally when the wait ends. New jobs start only while the count is
//! positive, so the pool is back under its limit as soon as borrowers return.

use crate::sync::{lock, wait_until};
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

pub(crate) struct Throttle {
    permits: Mutex<isize>,
    cond: Condvar,
}

impl Throttle {
    pub(crate) fn new(limit: usize) -> Self {
        Throttle {
            permits: Mutex::new(limit.min(isize::MAX as usize) as isize),
            cond: Condvar::new(),
        }
    }

    /// Takes a permit, blocking while none is free; false once `closed()` says so or
    /// when `patience` (if any) runs out first.
    pub(crate) fn acquire(&self, closed: impl Fn() -> bool, patience: Option<Duration>) -> bool {
        let deadline = patience.map(|d| Instant::now() + d);
        let (mut p, ok) = wait_until(&self.cond, lock(&self.permits), deadline, |p| {
            closed() || *p > 0
        });
        if !ok || closed() {
            return false;
        }
        *p -= 1;
        true
    }

    /// Gives a permit back.
    pub(crate) fn release(&self) {
        *lock(&self.permits) += 1;
        self.cond.notify_one();
    }

    /// Takes a permit back without waiting (after a blocking wait); may go below zero.
    pub(crate) fn reclaim(&self) {
        *lock(&self.permits) -= 1;
    }

    /// Wakes every waiter so that it re-checks `closed`.
    pub(crate) fn wake_all(&self) {
        let _p = lock(&self.permits);
        self.cond.notify_all();
    }
}
