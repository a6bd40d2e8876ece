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
    Bytes(Box<[u8]>),
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
        Payload::Bytes(s.into_bytes().into_boxed_slice())
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
