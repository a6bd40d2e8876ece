//! Small helpers over std's `Mutex` and `Condvar`: locking that shrugs off poisoning, and
//! condition waits bounded by an optional deadline.

use std::sync::{
    Condvar, Mutex, MutexGuard, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard,
};
use std::time::{Duration, Instant};

/// Locks `m`. No user code runs under bgjob's locks, so poisoning can only mean a bug of
/// ours panicked mid-update of plain data; carrying on beats poisoning every caller.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
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
    if cores() < 2 {
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
