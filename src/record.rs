//! Records: what a job's work writes. Every record carries the stream it was written
//! to and a process-wide sequence number, so a receive is one time-ordered sequence
//! across streams and child jobs.

use std::any::Any;
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::SystemTime;

/// The stream a record belongs to. The numbers are part of the ABI.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Stream {
    /// Results (PowerShell's success stream).
    Output = 0,
    /// Non-terminating errors: the job may still complete.
    Error = 1,
    /// Warnings.
    Warning = 2,
    /// Verbose messages.
    Verbose = 3,
    /// Debug messages.
    Debug = 4,
    /// Informational messages.
    Information = 5,
    /// Progress reports.
    Progress = 6,
}

impl Stream {
    /// Every stream, in numeric order.
    pub const ALL: [Stream; 7] = [
        Stream::Output,
        Stream::Error,
        Stream::Warning,
        Stream::Verbose,
        Stream::Debug,
        Stream::Information,
        Stream::Progress,
    ];

    /// The stream with this number, or `None` if out of range.
    pub fn from_u32(value: u32) -> Option<Stream> {
        Stream::ALL.get(value as usize).copied()
    }

    /// The stream's name (`Output`, `Error`, …).
    pub fn name(self) -> &'static str {
        match self {
            Stream::Output => "Output",
            Stream::Error => "Error",
            Stream::Warning => "Warning",
            Stream::Verbose => "Verbose",
            Stream::Debug => "Debug",
            Stream::Information => "Information",
            Stream::Progress => "Progress",
        }
    }
}

/// A progress report (PowerShell's `ProgressRecord`).
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct ProgressRecord {
    /// Percent complete, 0–100, or -1 when unknown.
    pub percent_complete: i32,
    /// What is being done.
    pub activity: String,
    /// The current status of the activity.
    pub status_description: String,
}

/// What a record holds.
#[derive(Clone)]
pub enum Payload {
    /// Bytes, as written from C (usually text, but not necessarily UTF-8).
    Bytes(Bytes),
    /// Text known to be UTF-8 (a process job's line that decoded). C reads its bytes;
    /// Python gets a `str`.
    Text(Box<str>),
    /// A progress report (on the progress stream). Boxed: it is rare, and every record
    /// is as big as the biggest payload.
    Progress(Box<ProgressRecord>),
    /// An object of a binding (e.g. a Python object), opaque to the core.
    Object(Arc<dyn Any + Send + Sync>),
}

impl fmt::Debug for Payload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Payload::Bytes(b) => write!(f, "Bytes({:?})", String::from_utf8_lossy(b)),
            Payload::Text(t) => write!(f, "Text({t:?})"),
            Payload::Progress(p) => write!(f, "Progress({p:?})"),
            Payload::Object(_) => f.write_str("Object(..)"),
        }
    }
}

impl From<&[u8]> for Payload {
    fn from(b: &[u8]) -> Self {
        Payload::Bytes(b.into())
    }
}

impl From<&str> for Payload {
    fn from(s: &str) -> Self {
        Payload::Bytes(s.as_bytes().into())
    }
}

impl From<String> for Payload {
    fn from(s: String) -> Self {
        Payload::Bytes(s.into_bytes().into())
    }
}

/// The bytes of a record: up to 22 of them held in place, more on the
/// heap. Most records are short lines; holding them in place saves an allocation when
/// written and a free — often on another thread, which glibc's allocator makes slow —
/// when received. Dereferences to `[u8]`.
#[derive(Clone)]
pub struct Bytes(Repr);

#[derive(Clone)]
enum Repr {
    Inline { len: u8, data: [u8; Bytes::INLINE] },
    Heap(Box<[u8]>),
}

impl Bytes {
    /// The most bytes held in place (the rest of the record's payload slot).
    pub(crate) const INLINE: usize = 22;
}

impl std::ops::Deref for Bytes {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        match &self.0 {
            Repr::Inline { len, data } => &data[..usize::from(*len)],
            Repr::Heap(b) => b,
        }
    }
}

impl From<&[u8]> for Bytes {
    fn from(b: &[u8]) -> Self {
        if b.len() <= Bytes::INLINE {
            let mut data = [0; Bytes::INLINE];
            data[..b.len()].copy_from_slice(b);
            Bytes(Repr::Inline {
                len: b.len() as u8,
                data,
            })
        } else {
            Bytes(Repr::Heap(b.into()))
        }
    }
}

impl From<Vec<u8>> for Bytes {
    fn from(v: Vec<u8>) -> Self {
        if v.len() <= Bytes::INLINE {
            Bytes::from(v.as_slice())
        } else {
            Bytes(Repr::Heap(v.into_boxed_slice()))
        }
    }
}

impl PartialEq for Bytes {
    fn eq(&self, other: &Self) -> bool {
        **self == **other
    }
}

impl Eq for Bytes {}

impl fmt::Debug for Bytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&**self, f)
    }
}

/// One record written by a job's work.
#[derive(Clone, Debug)]
pub struct Record {
    /// The stream it was written to.
    pub stream: Stream,
    /// What it holds.
    pub payload: Payload,
    /// Process-wide, strictly increasing in write order; orders records across jobs.
    pub sequence: u64,
    /// The job whose work wrote it (a child's id when received from a parent).
    pub job_id: u64,
    /// When it was written.
    pub time: SystemTime,
}

impl Record {
    /// The payload's bytes, if it holds bytes or text.
    pub fn bytes(&self) -> Option<&[u8]> {
        self.payload.bytes()
    }
}

impl Payload {
    /// The bytes, if it holds bytes or text.
    pub fn bytes(&self) -> Option<&[u8]> {
        match self {
            Payload::Bytes(b) => Some(b),
            Payload::Text(t) => Some(t.as_bytes()),
            _ => None,
        }
    }
}

static NEXT_SEQUENCE: AtomicU64 = AtomicU64::new(1);

/// The next record sequence number (process-wide, starting at 1).
pub(crate) fn next_sequence() -> u64 {
    NEXT_SEQUENCE.fetch_add(1, Ordering::Relaxed)
}

#[cfg(test)]
mod bytes_tests {
    use super::*;

    #[test]
    fn bytes_are_the_same_held_in_place_or_on_the_heap() {
        for len in [
            0,
            1,
            Bytes::INLINE - 1,
            Bytes::INLINE,
            Bytes::INLINE + 1,
            1000,
        ] {
            let data: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
            let from_slice = Bytes::from(data.as_slice());
            let from_vec = Bytes::from(data.clone());
            assert_eq!(&*from_slice, data.as_slice());
            assert_eq!(from_slice, from_vec);
            assert_eq!(
                Payload::from(data.as_slice()).bytes(),
                Some(data.as_slice())
            );
            let inline = matches!(from_slice.0, Repr::Inline { .. });
            assert_eq!(inline, len <= Bytes::INLINE, "len {len}");
        }
    }
}
