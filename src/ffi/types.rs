//! Enumerations shared with C (as `uint32_t` typedefs and constants, so that a value
//! arriving from C is checked instead of trusted), their names, and the version.

use crate::error::{Error, Result};
use crate::record::Stream;
use crate::state::JobState;
use std::ffi::{c_char, c_void};

/// A job state (PowerShell's `JobState` numbers): one of the `BGJOB_STATE_*` constants.
pub type bgjob_job_state = u32;
/// Created and queued; its work has not begun.
pub const BGJOB_STATE_NOT_STARTED: bgjob_job_state = 0;
/// Its work is running.
pub const BGJOB_STATE_RUNNING: bgjob_job_state = 1;
/// Its work returned normally (finished).
pub const BGJOB_STATE_COMPLETED: bgjob_job_state = 2;
/// Its work failed; the state info's reason says why (finished).
pub const BGJOB_STATE_FAILED: bgjob_job_state = 3;
/// It was stopped (finished).
pub const BGJOB_STATE_STOPPED: bgjob_job_state = 4;
/// It waits for input from the host.
pub const BGJOB_STATE_BLOCKED: bgjob_job_state = 5;
/// It is paused at a checkpoint.
pub const BGJOB_STATE_SUSPENDED: bgjob_job_state = 6;
/// Its remote end is out of reach.
pub const BGJOB_STATE_DISCONNECTED: bgjob_job_state = 7;
/// A suspend was asked; the work has not reached a checkpoint yet.
pub const BGJOB_STATE_SUSPENDING: bgjob_job_state = 8;
/// A stop was asked; the work has not ended yet.
pub const BGJOB_STATE_STOPPING: bgjob_job_state = 9;
/// It is halted at a breakpoint.
pub const BGJOB_STATE_AT_BREAKPOINT: bgjob_job_state = 10;

/// A record stream: one of the `BGJOB_STREAM_*` constants.
pub type bgjob_stream = u32;
/// Results.
pub const BGJOB_STREAM_OUTPUT: bgjob_stream = 0;
/// Non-terminating errors (the job can still complete).
pub const BGJOB_STREAM_ERROR: bgjob_stream = 1;
/// Warnings.
pub const BGJOB_STREAM_WARNING: bgjob_stream = 2;
/// Verbose messages.
pub const BGJOB_STREAM_VERBOSE: bgjob_stream = 3;
/// Debug messages.
pub const BGJOB_STREAM_DEBUG: bgjob_stream = 4;
/// Informational messages.
pub const BGJOB_STREAM_INFORMATION: bgjob_stream = 5;
/// Progress reports (see `bgjob_record.percent_complete` and `activity`).
pub const BGJOB_STREAM_PROGRESS: bgjob_stream = 6;

/// A timeout that never elapses (for every `timeout_ms` parameter; 0 means "poll").
pub const BGJOB_INFINITE: i64 = -1;

pub(crate) fn state_from_c(value: u32) -> Result<JobState> {
    JobState::from_u32(value)
        .ok_or_else(|| Error::InvalidArgument(format!("{value} is not a job state (0..=10)")))
}

pub(crate) fn stream_from_c(value: u32) -> Result<Stream> {
    Stream::from_u32(value)
        .ok_or_else(|| Error::InvalidArgument(format!("{value} is not a stream (0..=6)")))
}

fn static_name(name: &'static str) -> *const c_char {
    // The names are static and end in NUL through the table below.
    name.as_ptr().cast()
}

/// The name of a job state as PowerShell spells it (`"Running"`), or `"Unknown"` for a
/// number out of range. Never NULL; static.
#[unsafe(no_mangle)]
pub extern "C" fn bgjob_state_name(state: bgjob_job_state) -> *const c_char {
    static_name(match JobState::from_u32(state) {
        Some(JobState::NotStarted) => "NotStarted\0",
        Some(JobState::Running) => "Running\0",
        Some(JobState::Completed) => "Completed\0",
        Some(JobState::Failed) => "Failed\0",
        Some(JobState::Stopped) => "Stopped\0",
        Some(JobState::Blocked) => "Blocked\0",
        Some(JobState::Suspended) => "Suspended\0",
        Some(JobState::Disconnected) => "Disconnected\0",
        Some(JobState::Suspending) => "Suspending\0",
        Some(JobState::Stopping) => "Stopping\0",
        Some(JobState::AtBreakpoint) => "AtBreakpoint\0",
        None => "Unknown\0",
    })
}

/// Whether a state is finished (Completed, Failed or Stopped). False for out-of-range numbers.
#[unsafe(no_mangle)]
pub extern "C" fn bgjob_state_is_finished(state: bgjob_job_state) -> bool {
    JobState::from_u32(state).is_some_and(JobState::is_finished)
}

/// The name of a stream (`"Output"`), or `"Unknown"`. Never NULL; static.
#[unsafe(no_mangle)]
pub extern "C" fn bgjob_stream_name(stream: bgjob_stream) -> *const c_char {
    static_name(match Stream::from_u32(stream) {
        Some(Stream::Output) => "Output\0",
        Some(Stream::Error) => "Error\0",
        Some(Stream::Warning) => "Warning\0",
        Some(Stream::Verbose) => "Verbose\0",
        Some(Stream::Debug) => "Debug\0",
        Some(Stream::Information) => "Information\0",
        Some(Stream::Progress) => "Progress\0",
        None => "Unknown\0",
    })
}

/// The version of the library running (such as `"0.1.0"`), to compare with the
/// `BGJOB_VERSION_STRING` of the header a program was compiled with. Never NULL; static.
#[unsafe(no_mangle)]
pub extern "C" fn bgjob_version() -> *const c_char {
    concat!(env!("CARGO_PKG_VERSION"), "\0").as_ptr().cast()
}

/// `len` bytes at `data` (which may be NULL only when `len` is 0).
///
/// # Safety
/// `data` is NULL or points to `len` readable bytes that stay valid for `'a`.
pub(crate) unsafe fn bytes_arg<'a>(data: *const c_void, len: usize) -> Result<&'a [u8]> {
    if len == 0 {
        Ok(&[])
    } else if data.is_null() {
        Err(Error::InvalidArgument(
            "data is NULL but len is not 0".into(),
        ))
    } else {
        // SAFETY: non-NULL, `len` readable bytes, as the caller guarantees.
        Ok(unsafe { std::slice::from_raw_parts(data.cast::<u8>(), len) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::CStr;

    #[test]
    fn constants_match_the_core() {
        let states = [
            BGJOB_STATE_NOT_STARTED,
            BGJOB_STATE_RUNNING,
            BGJOB_STATE_COMPLETED,
            BGJOB_STATE_FAILED,
            BGJOB_STATE_STOPPED,
            BGJOB_STATE_BLOCKED,
            BGJOB_STATE_SUSPENDED,
            BGJOB_STATE_DISCONNECTED,
            BGJOB_STATE_SUSPENDING,
            BGJOB_STATE_STOPPING,
            BGJOB_STATE_AT_BREAKPOINT,
        ];
        for (c, s) in states.iter().zip(JobState::ALL) {
            assert_eq!(*c, s as u32);
            let name = unsafe { CStr::from_ptr(bgjob_state_name(*c)) };
            assert_eq!(name.to_str().unwrap(), s.name());
        }
        let streams = [
            BGJOB_STREAM_OUTPUT,
            BGJOB_STREAM_ERROR,
            BGJOB_STREAM_WARNING,
            BGJOB_STREAM_VERBOSE,
            BGJOB_STREAM_DEBUG,
            BGJOB_STREAM_INFORMATION,
            BGJOB_STREAM_PROGRESS,
        ];
        for (c, s) in streams.iter().zip(Stream::ALL) {
            assert_eq!(*c, s as u32);
            let name = unsafe { CStr::from_ptr(bgjob_stream_name(*c)) };
            assert_eq!(name.to_str().unwrap(), s.name());
        }
        assert!(state_from_c(11).is_err());
        assert!(stream_from_c(7).is_err());
    }
}
