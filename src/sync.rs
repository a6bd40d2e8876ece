//! The core's synchronisation primitives, and small helpers over them: locking that
//! shrugs off poisoning, and condition waits bounded by an optional deadline.
//!
//! This module is also the core's *sync facade*. Every lock, condition variable, atomic
//! (but the process-wide counters, see `atomic`), thread and thread-local that the core's
//! races go through is named here, so that a model check can swap them all at once:
//! - normally they are std's (and the pool's queue crossbeam's, `executor/queue.rs`),
//!   re-exported as they are: the names below are aliases, so the library compiles to the
//!   same code as if it named std directly;
//! - with `RUSTFLAGS="--cfg loom"` (`make loom`, `tests/loom.rs`) they are loom's, which
//!   explores every interleaving of the operations on them. All of them must be: loom runs
//!   its model threads one at a time on a single OS thread, so a std lock held across a
//!   loom operation and wanted by another model thread would block that OS thread for
//!   good. What is made once per process (the repository, the state index, the callbacks
//!   of every job) is a loom `lazy_static` there, made anew in each execution, since a
//!   loom object must not outlive the execution that made it.
//!
//! `Arc` and `Weak` stay std's even under loom (loom's `Arc` has no `Weak`); loom still
//! sees every synchronisation they take part in through the locks and atomics around them.

#[cfg(loom)]
pub(crate) use loom::sync::{
    Condvar, Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard,
};
use std::sync::PoisonError;
#[cfg(not(loom))]
pub(crate) use std::sync::{Condvar, Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::{Duration, Instant};

/// The atomics of the core's shared state. The process-wide counters (`static`s handing
/// out job, registration, pool and record numbers) stay std atomics under loom: a loom
/// atomic cannot live in a plain `static` (nor outlive an execution), and they only hand
/// out unique numbers, whose interleaving no model's outcome depends on. (The job id
/// counter is still made anew per execution there: see `NEXT_ID` in `job.rs`.)
pub(crate) mod atomic {
    #[cfg(loom)]
    pub(crate) use loom::sync::atomic::{
        AtomicBool, AtomicIsize, AtomicPtr, AtomicU8, AtomicUsize,
    };
    pub(crate) use std::sync::atomic::Ordering;
    #[cfg(not(loom))]
    pub(crate) use std::sync::atomic::{AtomicBool, AtomicIsize, AtomicPtr, AtomicU8, AtomicUsize};
}

/// The threads the core spawns (the pool's workers): loom's under loom, so that they are
/// model threads too.
pub(crate) mod thread {
    #[cfg(loom)]
    pub(crate) use loom::thread::{Builder, JoinHandle, current};
    #[cfg(not(loom))]
    pub(crate) use std::thread::{Builder, JoinHandle, current};

    /// Whether `h`'s thread has ended (so joining it will not block).
    #[cfg(not(loom))]
    #[inline]
    pub(crate) fn is_finished<T>(h: &JoinHandle<T>) -> bool {
        h.is_finished()
    }

    /// Under loom a join handle cannot tell: "not yet", so a shutdown joins only once
    /// every worker counted itself out (which the models wait for: no timeouts there).
    #[cfg(loom)]
    pub(crate) fn is_finished<T>(_h: &JoinHandle<T>) -> bool {
        false
    }
}

/// A lazily made `static`: std's `LazyLock` normally; under loom a loom `lazy_static`,
/// made anew in each execution (what it holds are loom objects, which must not outlive
/// the execution that made them). Either way the static derefs to the value.
macro_rules! lazy_static {
    ($(#[$attr:meta])* static $name:ident: $t:ty = $init:expr;) => {
        #[cfg(not(loom))]
        $(#[$attr])*
        static $name: std::sync::LazyLock<$t> = std::sync::LazyLock::new(|| $init);
        #[cfg(loom)]
        loom::lazy_static! {
            $(#[$attr])*
            static ref $name: $t = $init;
        }
    };
}
pub(crate) use lazy_static;

/// A thread-local with a `const` initialiser: std's normally; under loom loom's, one per
/// model thread (the model threads all run on one OS thread, so std's would be shared).
macro_rules! thread_locals {
    ($($(#[$attr:meta])* static $name:ident: $t:ty = const $init:block;)*) => {
        #[cfg(not(loom))]
        std::thread_local! {
            $($(#[$attr])* static $name: $t = const $init;)*
        }
        #[cfg(loom)]
        loom::thread_local! {
            $($(#[$attr])* static $name: $t = $init;)*
        }
    };
}
pub(crate) use thread_locals;

/// Locks `m`. No user code runs under bgjob's locks, so poisoning can only mean a bug of
/// ours panicked mid-update of plain data; carrying on beats poisoning every caller.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Whether no thread holds `m` now (a poisoned lock is free). For a forked child, which
/// must not block on a lock a vanished thread of its parent held at the fork.
pub(crate) fn is_unlocked<T>(m: &Mutex<T>) -> bool {
    !matches!(m.try_lock(), Err(std::sync::TryLockError::WouldBlock))
}

/// Read-locks `l`, shrugging off poisoning as [`lock`] does.
pub(crate) fn read<T>(l: &RwLock<T>) -> RwLockReadGuard<'_, T> {
    l.read().unwrap_or_else(PoisonError::into_inner)
}

/// Write-locks `l`, shrugging off poisoning as [`lock`] does.
pub(crate) fn write<T>(l: &RwLock<T>) -> RwLockWriteGuard<'_, T> {
    l.write().unwrap_or_else(PoisonError::into_inner)
}

/// The instant `d` from now. A C caller may pass a timeout of millions of years, which
/// `Instant + Duration` cannot represent (it panics): such a deadline becomes a century
/// from now, which is to say never, as the caller meant.
pub(crate) fn deadline_after(d: Duration) -> Instant {
    const CENTURY: Duration = Duration::from_secs(100 * 365 * 24 * 3600);
    let now = Instant::now();
    now.checked_add(d.min(CENTURY)).unwrap_or(now)
}

/// Waits once on `cond` (spurious wake-ups included), at most until `deadline`.
pub(crate) fn wait_step<'a, T>(
    cond: &Condvar,
    guard: MutexGuard<'a, T>,
    deadline: Option<Instant>,
) -> MutexGuard<'a, T> {
    match deadline {
        None => cond.wait(guard).unwrap_or_else(PoisonError::into_inner),
        Some(d) => {
            let left = d.saturating_duration_since(Instant::now());
            cond.wait_timeout(guard, left)
                .unwrap_or_else(PoisonError::into_inner)
                .0
        }
    }
}

/// Waits on `cond` until `done` holds for the guarded value or `deadline` passes; returns
/// the guard and whether `done` held.
pub(crate) fn wait_until<'a, T>(
    cond: &Condvar,
    mut guard: MutexGuard<'a, T>,
    deadline: Option<Instant>,
    mut done: impl FnMut(&mut T) -> bool,
) -> (MutexGuard<'a, T>, bool) {
    loop {
        if done(&mut guard) {
            return (guard, true);
        }
        if deadline.is_some_and(|d| Instant::now() >= d) {
            return (guard, false);
        }
        guard = wait_step(cond, guard, deadline);
    }
}

/// The cores this process may run on, read once. `fork.rs` reads it before every fork,
/// so that a child never inherits its initialisation half done.
pub(crate) fn cores() -> usize {
    static CORES: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *CORES.get_or_init(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
}

/// How long a waiter watches for its condition before it sleeps.
const SPIN_FOR: Duration = Duration::from_micros(20);

/// Watches `done` for up to `SPIN_FOR` (only with more than one core: on one, the thread
/// that would make it true cannot run meanwhile); true as soon as it holds.
pub(crate) fn spin_until(done: impl Fn() -> bool) -> bool {
    if done() {
        return true;
    }
    // Under loom there is nothing to watch for: no other thread runs while this one spins
    // (they take turns on one OS thread), and a loop of loads is a model that never ends.
    if cfg!(loom) || cores() < 2 {
        return false;
    }
    let start = Instant::now();
    loop {
        for _ in 0..16 {
            std::hint::spin_loop();
        }
        if done() {
            return true;
        }
        if start.elapsed() >= SPIN_FOR {
            return false;
        }
    }
}
