//! State-change callbacks: registrations and the copy-on-write lists that hold them.
//!
//! A dispatcher takes a snapshot (one `Arc` clone) of a list and calls it with no lock
//! held, so a callback may register, unregister or remove anything, its own job included.
//! A registration is dropped — running its user data's finalizer — once it is unregistered
//! and no dispatch still holds it.

use crate::state::StateChangedEvent;
use crate::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use crate::sync::{Condvar, Mutex, lock, wait_until};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::sync::atomic::AtomicU64;

/// A state-change callback: gets the job id, its new and its previous state info.
pub type StateCallback = Box<dyn Fn(&StateChangedEvent) + Send + Sync>;

/// Identifies one registration, for unregistering it. Never 0, never reused.
pub type RegistrationId = u64;

static NEXT_REGISTRATION: AtomicU64 = AtomicU64::new(1);

pub(crate) struct Registration {
    id: RegistrationId,
    active: AtomicBool,
    callback: StateCallback,
}

pub(crate) type Snapshot = Arc<[Arc<Registration>]>;

/// The callbacks of one job, or of the whole repository.
pub(crate) struct CallbackList {
    /// `None` while empty: most jobs never get a callback, and an empty `Arc<[_]>` would
    /// still cost an allocation per job.
    list: Mutex<Option<Snapshot>>,
    count: AtomicUsize,
}

impl CallbackList {
    pub(crate) fn new() -> Self {
        CallbackList {
            list: Mutex::new(None),
            count: AtomicUsize::new(0),
        }
    }

    pub(crate) fn add(&self, callback: StateCallback) -> RegistrationId {
        let id = NEXT_REGISTRATION.fetch_add(1, Ordering::Relaxed);
        let reg = Arc::new(Registration {
            id,
            active: AtomicBool::new(true),
            callback,
        });
        let mut list = lock(&self.list);
        let mut v: Vec<_> = list.iter().flat_map(|l| l.iter().cloned()).collect();
        v.push(reg);
        *list = Some(Arc::from(v));
        self.count.fetch_add(1, Ordering::Release);
        id
    }

    /// Unregisters `id`; false if it is not in this list. A dispatch already under way
    /// on another thread may still be calling it; it is never called by a later one.
    pub(crate) fn remove(&self, id: RegistrationId) -> bool {
        let old = {
            let mut list = lock(&self.list);
            let Some(found) = list.iter().flat_map(|l| l.iter()).find(|r| r.id == id) else {
                return false;
            };
            found.active.store(false, Ordering::Release);
            let v: Vec<_> = list
                .iter()
                .flat_map(|l| l.iter())
                .filter(|r| r.id != id)
                .cloned()
                .collect();
            self.count.fetch_sub(1, Ordering::Release);
            std::mem::replace(&mut *list, (!v.is_empty()).then(|| Arc::from(v)))
        };
        drop(old);
        true
    }

    /// Takes every registration out, so no later change calls them; the caller drops the
    /// result outside any lock. Unlike `remove`, a dispatch under way still calls them all:
    /// a callback that removes its own job must not rob the job's other callbacks of the
    /// change they are being told about.
    pub(crate) fn clear(&self) -> Option<Snapshot> {
        let mut list = lock(&self.list);
        self.count.store(0, Ordering::Release);
        list.take()
    }

    /// Whether no thread holds the list's lock now (see `Job::locks_free`).
    pub(crate) fn is_unlocked(&self) -> bool {
        crate::sync::is_unlocked(&self.list)
    }

    /// Held across a `fork()` (see `fork.rs`): a child that inherited it locked would
    /// block every dispatch once a repository-wide callback or event queue exists. Its
    /// holders take no other lock, so it can be taken in any order.
    #[cfg(not(loom))]
    pub(crate) fn lock_for_fork(&self) -> std::sync::MutexGuard<'_, Option<Snapshot>> {
        lock(&self.list)
    }

    pub(crate) fn snapshot(&self) -> Option<Snapshot> {
        if self.count.load(Ordering::Acquire) == 0 {
            return None;
        }
        lock(&self.list).clone()
    }

    /// Calls every active callback of `snapshot` with `event`. A panic in one is caught,
    /// reported on stderr and does not stop the others nor disturb the job.
    pub(crate) fn call(snapshot: &Snapshot, event: &StateChangedEvent) {
        for reg in snapshot.iter() {
            if !reg.active.load(Ordering::Acquire) {
                continue;
            }
            if let Err(payload) = catch_unwind(AssertUnwindSafe(|| (reg.callback)(event))) {
                eprintln!(
                    "bgjob: a state-change callback for job {} panicked: {}",
                    event.job_id,
                    crate::error::panic_message(&*payload)
                );
            }
        }
    }
}

/// A one-shot wake-up shared by a waiter and the jobs it waits on (wait-any, wait-all).
pub(crate) struct Signal {
    fired: Mutex<bool>,
    cond: Condvar,
}

impl Signal {
    pub(crate) fn new() -> Arc<Signal> {
        Arc::new(Signal {
            fired: Mutex::new(false),
            cond: Condvar::new(),
        })
    }

    pub(crate) fn fire(&self) {
        *lock(&self.fired) = true;
        self.cond.notify_all();
    }

    /// Waits until fired (then re-arms) or until `deadline`; true if fired.
    pub(crate) fn wait(&self, deadline: Option<std::time::Instant>) -> bool {
        let (mut fired, ok) = wait_until(&self.cond, lock(&self.fired), deadline, |f| *f);
        *fired = false;
        ok
    }
}

crate::sync::lazy_static! {
    static ANY_JOB_CALLBACKS: CallbackList = CallbackList::new();
}

/// The repository-wide callbacks: called for every state change of every job.
pub(crate) fn any_job_callbacks() -> &'static CallbackList {
    &ANY_JOB_CALLBACKS
}

/// Registers a callback for every state change of every job (after the job's own).
pub fn on_any_state_changed(callback: StateCallback) -> RegistrationId {
    ANY_JOB_CALLBACKS.add(callback)
}

/// Unregisters a repository-wide callback; false if `id` is not one.
pub fn unregister_any(id: RegistrationId) -> bool {
    ANY_JOB_CALLBACKS.remove(id)
}
