//! Fork safety: a child made by `fork()` has only the thread that called it. Every other
//! thread — every pool worker — is gone, and a lock one of them held stays held for ever.
//!
//! Two things make the library usable in such a child, registered once with
//! `pthread_atfork`:
//! - around the fork the forking thread holds every repository shard lock and the state
//!   index's, so none is copied locked, and the child can get, list and add jobs;
//! - the child bumps the fork *generation*. A pool remembers the generation it started its
//!   workers in; the first use of a pool from a later generation gives it fresh workers and
//!   a fresh queue (see `Pool` in the executor). The old queue is never read: a thread of
//!   the parent may have been mid-send on it. The parent's queued jobs are found in the
//!   repository instead, by the generation `Pool::submit` marks on each job.
//!
//! What cannot be made safe is left alone: a job's own lock held by a worker at the instant
//! of the fork stays held in the child (the POSIX rule — between `fork` and `exec` call only
//! what the other threads cannot be holding — applies to that job). The child's thread
//! that settles the parent's jobs passes over such a job after a while rather than block
//! on it and leave the others unsettled.

use crate::process::reactor;
use crate::repository::{self, ShardGuards};
use std::cell::RefCell;
use std::sync::Once;
use std::sync::atomic::{AtomicU64, Ordering};

static GENERATION: AtomicU64 = AtomicU64::new(0);
static INSTALL: Once = Once::new();

thread_local! {
    /// The locks the forking thread holds from `prepare` until the fork returns.
    static HELD: RefCell<Option<Held>> = const { RefCell::new(None) };
}

/// How many forks this process descends from since the library was first used here
/// (0 in the process that first used it). Compared by pools on every use, so it is one
/// atomic load.
pub(crate) fn generation() -> u64 {
    GENERATION.load(Ordering::Acquire)
}

/// Registers the fork handlers (once per process; later calls return at once).
pub(crate) fn install() {
    INSTALL.call_once(|| {
        // SAFETY: the three handlers are `extern "C"` functions that never unwind (see
        // each); registering them has no other precondition.
        let rc = unsafe { libc::pthread_atfork(Some(prepare), Some(parent), Some(child)) };
        // ENOMEM is the only documented failure; without the handlers the library still
        // works in every process that does not fork, so this is not fatal.
        debug_assert_eq!(rc, 0, "pthread_atfork failed");
    });
}

/// The process reactor's lock (taken first: its holders take no other lock), then every
/// repository shard's, then the state index's directory and the repository-wide callback
/// list (whose holders take no other lock).
type Held = (
    reactor::ForkGuard,
    ShardGuards,
    std::sync::RwLockWriteGuard<'static, crate::state_index::Directory>,
    std::sync::MutexGuard<'static, Option<crate::events::Snapshot>>,
);

extern "C" fn prepare() {
    // A one-time initialiser another thread is running would stay "running" for ever in
    // the child: finish the library's own first (waits for that thread if it is the one).
    crate::sync::cores();
    // Never unwinds: taking locks and storing the guards cannot panic (poison is ignored).
    let guards = (
        reactor::lock_for_fork(),
        repository::repository().lock_all_for_fork(),
        crate::state_index::lock_for_fork(),
        crate::events::any_job_callbacks().lock_for_fork(),
    );
    // Without the thread-local (a fork during thread teardown) the guards drop here and
    // the fork goes on unprotected, as it would without the handlers.
    let _ = HELD.try_with(move |h| *h.borrow_mut() = Some(guards));
}

extern "C" fn parent() {
    release_held();
}

extern "C" fn child() {
    GENERATION.fetch_add(1, Ordering::AcqRel);
    release_held();
}

fn release_held() {
    // `try_with`: a fork during thread teardown finds no thread-local; nothing was held.
    let _ = HELD.try_with(|h| h.borrow_mut().take());
}
