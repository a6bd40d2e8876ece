//! Receive-Job from C: record batches.

use super::job::unix_ns;
use super::status::bgjob_status;
use super::types::bgjob_stream;
use super::{boundary, boundary_value, non_null, timeout_from_ms};
use crate::error::Error;
use crate::job::ReceiveOptions;
use crate::record::{Payload, Record};
use crate::repository::repository;
use std::ffi::{CString, c_char};
use std::ptr;

/// `bgjob_receive` flag: copy the records instead of taking them (Receive-Job -Keep).
pub const BGJOB_RECEIVE_KEEP: u32 = 1;
/// `bgjob_receive` flag: block until the job is finished, `max` records are there, or the
/// timeout elapses (Receive-Job -Wait).
pub const BGJOB_RECEIVE_WAIT: u32 = 2;
/// `bgjob_receive` flag, with `BGJOB_RECEIVE_WAIT`: remove the job once it is finished and
/// all its records are taken (Receive-Job -AutoRemoveJob).
pub const BGJOB_RECEIVE_AUTO_REMOVE: u32 = 4;

/// One record, as seen from C. Owned by its batch. Fields may be added at the end.
#[repr(C)]
pub struct bgjob_record {
    /// The stream it was written to (`BGJOB_STREAM_*`).
    pub stream: bgjob_stream,
    /// Its bytes, followed by a NUL that `len` does not count (so text can be used as a C
    /// string). For a progress record: its status text. NULL for a record that holds a
    /// foreign object (e.g. one written from Python) that has no bytes.
    pub data: *const u8,
    /// The number of bytes at `data`.
    pub len: usize,
    /// Process-wide, increasing in write order: orders records across streams and jobs.
    pub sequence: u64,
    /// The job that wrote it (a child's id when received from a parent).
    pub job_id: u64,
    /// When it was written, in nanoseconds since the Unix epoch.
    pub time_ns: i64,
    /// For a progress record: percent complete (0–100, or -1 = unknown); otherwise -1.
    pub percent_complete: i32,
    /// For a progress record: its activity (NUL-terminated); otherwise NULL.
    pub activity: *const c_char,
}

/// The records one receive took, in time order. Free it with `bgjob_records_free`.
pub struct bgjob_records {
    views: Vec<bgjob_record>,
    // What the views point into: every record's bytes (each followed by a NUL) in one
    // allocation per batch, not one per record; boxed so the addresses never move.
    _bytes: Box<[u8]>,
    _texts: Vec<CString>,
}

/// The bytes a record shows C (progress: its status text), if it has any.
fn data_of(payload: &Payload) -> Option<&[u8]> {
    match payload {
        Payload::Bytes(b) => Some(b),
        Payload::Text(t) => Some(t.as_bytes()),
        Payload::Progress(p) => Some(p.status_description.as_bytes()),
        Payload::Object(_) => None,
    }
}

fn batch_of(records: Vec<Record>) -> bgjob_records {
    let total: usize = records
        .iter()
        .filter_map(|r| data_of(&r.payload))
        .map(|d| d.len() + 1)
        .sum();
    let mut buf = Vec::with_capacity(total);
    let mut spans = Vec::with_capacity(records.len());
    for r in &records {
        spans.push(data_of(&r.payload).map(|d| {
            let at = buf.len();
            buf.extend_from_slice(d);
            buf.push(0);
            (at, d.len())
        }));
    }
    let bytes = buf.into_boxed_slice();
    let mut views = Vec::with_capacity(records.len());
    let mut texts = Vec::new();
    for (r, span) in records.into_iter().zip(spans) {
        let (percent, activity) = match &r.payload {
            Payload::Progress(p) => (
                p.percent_complete,
                Some(super::boundary::to_cstring(&p.activity)),
            ),
            _ => (-1, None),
        };
        let (data, len) = match span {
            // In bounds: `at + len` < `bytes.len()` by construction above.
            Some((at, len)) => (bytes[at..].as_ptr(), len),
            None => (ptr::null(), 0),
        };
        let activity_ptr = activity.as_ref().map_or(ptr::null(), |a| a.as_ptr());
        if let Some(a) = activity {
            texts.push(a);
        }
        views.push(bgjob_record {
            stream: r.stream as u32,
            data,
            len,
            sequence: r.sequence,
            job_id: r.job_id,
            time_ns: unix_ns(Some(r.time)),
            percent_complete: percent,
            activity: activity_ptr,
        });
    }
    bgjob_records {
        views,
        _bytes: bytes,
        _texts: texts,
    }
}

/// Receive-Job: takes the records of job `id` and of its children present now, in time
/// order, at most `max` of them (0 = no limit; the rest stay). `flags` combines
/// `BGJOB_RECEIVE_KEEP` (copy, leave them), `BGJOB_RECEIVE_WAIT` (block up to `timeout_ms`,
/// -1 = no limit, until the job is finished or `max` records are there) and
/// `BGJOB_RECEIVE_AUTO_REMOVE` (with WAIT, not with KEEP: remove the finished job after).
/// A consuming receive hands each record out once. `*out_records` gets a batch, possibly
/// empty; a wait that times out is not an error (the batch holds what was there).
///
/// # Safety
/// `out_records` is writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn bgjob_receive(
    id: u64,
    flags: u32,
    max: usize,
    timeout_ms: i64,
    out_records: *mut *mut bgjob_records,
) -> bgjob_status {
    boundary(|| {
        if out_records.is_null() {
            return Err(Error::InvalidArgument("out_records is NULL".into()));
        }
        let known = BGJOB_RECEIVE_KEEP | BGJOB_RECEIVE_WAIT | BGJOB_RECEIVE_AUTO_REMOVE;
        if flags & !known != 0 {
            return Err(Error::InvalidArgument(format!(
                "unknown receive flags {flags:#x}"
            )));
        }
        let keep = flags & BGJOB_RECEIVE_KEEP != 0;
        let wait = flags & BGJOB_RECEIVE_WAIT != 0;
        let auto_remove = flags & BGJOB_RECEIVE_AUTO_REMOVE != 0;
        if auto_remove && (keep || !wait) {
            return Err(Error::InvalidArgument(
                "BGJOB_RECEIVE_AUTO_REMOVE goes with BGJOB_RECEIVE_WAIT and without KEEP".into(),
            ));
        }
        let timeout = timeout_from_ms(timeout_ms)?;
        let job = repository().get(id)?;
        let options = ReceiveOptions {
            keep,
            max: (max != 0).then_some(max),
            wait,
            timeout,
        };
        let records = job.receive(options)?;
        if auto_remove && job.state().is_finished() && !job.has_more_data() {
            // Someone else may have removed it meanwhile; the records are ours either way.
            let _ = repository().remove(id, false);
        }
        // SAFETY: non-NULL and writable, as documented.
        unsafe { *out_records = Box::into_raw(Box::new(batch_of(records))) };
        Ok(())
    })
}

/// How many records the batch holds (0 for NULL).
///
/// # Safety
/// `records` is NULL or a live batch.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn bgjob_records_count(records: *const bgjob_records) -> usize {
    // SAFETY: as documented for the caller.
    boundary_value(0, || {
        Ok(unsafe { non_null(records, "records") }?.views.len())
    })
}

/// The record at `index` (time order), or NULL if out of range. Valid until the batch is
/// freed.
///
/// # Safety
/// `records` is NULL or a live batch.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn bgjob_records_get(
    records: *const bgjob_records,
    index: usize,
) -> *const bgjob_record {
    boundary_value(ptr::null(), || {
        // SAFETY: as documented for the caller.
        let b = unsafe { non_null(records, "records") }?;
        Ok(b.views
            .get(index)
            .map_or(ptr::null(), |r| r as *const bgjob_record))
    })
}

/// Frees a batch and everything its records point to. NULL is a no-op.
///
/// # Safety
/// `records` is NULL or a live batch, not used after this call.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn bgjob_records_free(records: *mut bgjob_records) {
    let _ = boundary(|| {
        if !records.is_null() {
            // SAFETY: a live batch from bgjob_receive, as documented.
            drop(unsafe { Box::from_raw(records) });
        }
        Ok(())
    });
}
