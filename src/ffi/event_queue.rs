//! The event queue from C: state-change events drained on the host's own thread, with a
//! descriptor to hand to `poll(2)`, epoll, libuv (`uv_poll_t`) or GLib.

use super::callbacks::{bgjob_state_event, bgjob_state_info};
use super::status::bgjob_status;
use super::{boundary, boundary_value, non_null};
use crate::error::Error;
use crate::event_queue::EventQueue;
use crate::state::JobStateInfo;
use std::ffi::{CString, c_int};
use std::ptr;

/// A queue of state-change events (see `bgjob_event_queue_open`).
pub struct bgjob_event_queue {
    queue: EventQueue,
    /// The reasons of the last event handed out: valid until the next call on the queue.
    reasons: (Option<CString>, Option<CString>),
}

/// Opens a queue of the state changes of the `count` jobs in `ids` — or, with `ids` NULL
/// and `count` 0, of every job (including jobs started later). From then on each change
/// is queued once, in each job's order, after its records are readable; the queue's
/// descriptor (`bgjob_event_queue_fd`) is readable while events are pending. Drain them
/// with `bgjob_event_queue_next` on your own thread; free the queue with
/// `bgjob_event_queue_free`.
///
/// # Safety
/// `ids` is NULL or points to `count` ids; `out_queue` is writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn bgjob_event_queue_open(
    ids: *const u64,
    count: usize,
    out_queue: *mut *mut bgjob_event_queue,
) -> bgjob_status {
    boundary(|| {
        if out_queue.is_null() {
            return Err(Error::InvalidArgument("out_queue is NULL".into()));
        }
        let jobs: Option<&[u64]> = match (ids.is_null(), count) {
            (true, 0) => None,
            (true, _) => {
                return Err(Error::InvalidArgument(
                    "ids is NULL but count is not 0".into(),
                ));
            }
            // SAFETY: `count` readable ids, as documented for the caller.
            (false, _) => Some(unsafe { std::slice::from_raw_parts(ids, count) }),
        };
        let queue = EventQueue::open(jobs)?;
        let q = Box::new(bgjob_event_queue {
            queue,
            reasons: (None, None),
        });
        // SAFETY: non-NULL and writable, as documented.
        unsafe { *out_queue = Box::into_raw(q) };
        Ok(())
    })
}

/// The queue's descriptor: readable (POLLIN) while events are pending. It belongs to the
/// queue: poll it, never read or close it. -1 for a NULL queue.
///
/// # Safety
/// `queue` is NULL or a live queue.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn bgjob_event_queue_fd(queue: *const bgjob_event_queue) -> c_int {
    // SAFETY: as documented for the caller.
    boundary_value(-1, || Ok(unsafe { non_null(queue, "queue") }?.queue.fd()))
}

/// Takes the next pending event into `*out_event` and sets `*out_got` to true, or sets it
/// to false when none is pending (never blocks; the descriptor is then quiet until the
/// next event). The event's reason texts stay valid until the next call on this queue.
///
/// # Safety
/// `queue` is a live queue; `out_event` and `out_got` are writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn bgjob_event_queue_next(
    queue: *mut bgjob_event_queue,
    out_event: *mut bgjob_state_event,
    out_got: *mut bool,
) -> bgjob_status {
    boundary(|| {
        // SAFETY: as documented for the caller.
        let q = unsafe { queue.as_mut() }
            .ok_or_else(|| Error::InvalidArgument("queue is NULL".into()))?;
        if out_event.is_null() || out_got.is_null() {
            return Err(Error::InvalidArgument(
                "out_event or out_got is NULL".into(),
            ));
        }
        let Some(e) = q.queue.next() else {
            // SAFETY: non-NULL and writable, as documented.
            unsafe { *out_got = false };
            return Ok(());
        };
        let reason = |i: &JobStateInfo| {
            i.reason
                .as_deref()
                .map(|r| CString::new(r.replace('\0', " ")).unwrap_or_default())
        };
        q.reasons = (reason(&e.state_info), reason(&e.previous_state_info));
        let ptr_of = |c: &Option<CString>| c.as_ref().map_or(ptr::null(), |c| c.as_ptr());
        let event = bgjob_state_event {
            job_id: e.job_id,
            state_info: bgjob_state_info {
                state: e.state_info.state as u32,
                reason: ptr_of(&q.reasons.0),
            },
            previous_state_info: bgjob_state_info {
                state: e.previous_state_info.state as u32,
                reason: ptr_of(&q.reasons.1),
            },
        };
        // SAFETY: non-NULL and writable, as documented.
        unsafe {
            *out_event = event;
            *out_got = true;
        }
        Ok(())
    })
}

/// Closes the queue: no more events are queued, its descriptor is closed, pending events
/// are dropped. NULL is a no-op.
///
/// # Safety
/// `queue` is NULL or a live queue, not used after this call.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn bgjob_event_queue_free(queue: *mut bgjob_event_queue) {
    if queue.is_null() {
        return;
    }
    let _ = boundary(|| {
        // SAFETY: a queue from bgjob_event_queue_open, as documented.
        drop(unsafe { Box::from_raw(queue) });
        Ok(())
    });
}
