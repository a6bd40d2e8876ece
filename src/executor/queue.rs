//! The pool's queue: crossbeam's unbounded channel, re-exported as it is.
//!
//! Under loom (`make loom`, see `sync.rs`) crossbeam cannot be modelled (its waits park
//! OS threads behind loom's back, and loom runs every model thread on one), so there the
//! queue is a small channel made of a loom `Mutex<VecDeque>` and `Condvar`, offering the
//! part of crossbeam's API the pool uses, with the same meaning.

#[cfg(not(loom))]
pub(crate) use crossbeam_channel::{Receiver, Sender, unbounded};

#[cfg(loom)]
pub(crate) use model::{Receiver, Sender, unbounded};

/// The channel the models run the pool on.
#[cfg(loom)]
mod model {
    use crate::sync::{Condvar, Mutex, lock};
    use crossbeam_channel::{RecvError, RecvTimeoutError, SendError, TryRecvError};
    use std::collections::VecDeque;
    use std::sync::Arc;
    use std::time::Duration;

    /// What both ends share.
    struct Chan<T> {
        queue: Mutex<VecDeque<T>>,
        /// Notified on every send.
        ready: Condvar,
    }

    /// The sending end.
    pub(crate) struct Sender<T>(Arc<Chan<T>>);

    /// The receiving end.
    pub(crate) struct Receiver<T>(Arc<Chan<T>>);

    /// An unbounded channel. Disconnection is not modelled: a pool holds both ends of its
    /// queue as long as it lives, so neither ever sees the other gone.
    pub(crate) fn unbounded<T>() -> (Sender<T>, Receiver<T>) {
        let chan = Arc::new(Chan {
            queue: Mutex::new(VecDeque::new()),
            ready: Condvar::new(),
        });
        (Sender(chan.clone()), Receiver(chan))
    }

    impl<T> Sender<T> {
        /// Queues `msg` and wakes a receiver; never fails (see `unbounded`).
        pub(crate) fn send(&self, msg: T) -> Result<(), SendError<T>> {
            lock(&self.0.queue).push_back(msg);
            self.0.ready.notify_one();
            Ok(())
        }
    }

    impl<T> Receiver<T> {
        /// The oldest message, waiting for one if none is queued.
        pub(crate) fn recv(&self) -> Result<T, RecvError> {
            let mut queue = lock(&self.0.queue);
            loop {
                if let Some(msg) = queue.pop_front() {
                    return Ok(msg);
                }
                queue = self
                    .0
                    .ready
                    .wait(queue)
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
            }
        }

        /// As `recv`: loom's condition variables never time out, so neither does this
        /// (only a spare worker waits with a timeout, and no model makes one).
        pub(crate) fn recv_timeout(&self, _timeout: Duration) -> Result<T, RecvTimeoutError> {
            self.recv().map_err(|_| RecvTimeoutError::Disconnected)
        }

        /// The oldest message, if one is queued now.
        pub(crate) fn try_recv(&self) -> Result<T, TryRecvError> {
            lock(&self.0.queue).pop_front().ok_or(TryRecvError::Empty)
        }

        /// Every message queued now, taken one at a time.
        pub(crate) fn try_iter(&self) -> impl Iterator<Item = T> + '_ {
            std::iter::from_fn(|| self.try_recv().ok())
        }

        /// Whether no message is queued now.
        pub(crate) fn is_empty(&self) -> bool {
            lock(&self.0.queue).is_empty()
        }
    }
}
