//! Wait-Job and Stop-Job from C.

use super::status::bgjob_status;
use super::{boundary, timeout_from_ms};
use crate::error::Error;
use crate::repository::repository;
use crate::wait::{WaitMode, stop_job, wait_job_ids_forced};

/// `bgjob_wait` mode: until every job is done.
pub const BGJOB_WAIT_ALL: u32 = 0;
/// `bgjob_wait` mode: until at least one job is done.
pub const BGJOB_WAIT_ANY: u32 = 1;
/// `bgjob_wait` flag, OR-ed into the mode (Wait-Job -Force): a job is done only when it
/// is finished; the wait does not stop at Suspended or Disconnected.
pub const BGJOB_WAIT_FORCE: u32 = 0x100;

/// Wait-Job: waits until all (`BGJOB_WAIT_ALL`) or any (`BGJOB_WAIT_ANY`) of the `count`
/// jobs in `ids` are done — finished (or Suspended/Disconnected, unless the mode has
/// `BGJOB_WAIT_FORCE`), with the callbacks of that change returned — or `timeout_ms`
/// elapses (-1 = no limit, 0 = poll now). `BGJOB_E_BLOCKED` if every job it still waits
/// for is Blocked waiting for input.
///
/// The ids of the jobs that are done are written, in the order given, to `out_done_ids`
/// (room for `count` ids; may be NULL) and their number to `*out_done_count` (may be NULL),
/// also on `BGJOB_E_TIMEOUT`. `BGJOB_E_NO_SUCH_JOB` if an id is unknown (nothing waited);
/// `BGJOB_E_WOULD_DEADLOCK` for a wait from a job's own work on itself.
///
/// # Safety
/// `ids` points to `count` ids (may be NULL if `count` is 0); `out_done_ids` is NULL or has
/// room for `count` ids; `out_done_count` is NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn bgjob_wait(
    ids: *const u64,
    count: usize,
    mode: u32,
    timeout_ms: i64,
    out_done_ids: *mut u64,
    out_done_count: *mut usize,
) -> bgjob_status {
    boundary(|| {
        let force = mode & BGJOB_WAIT_FORCE != 0;
        let mode = match mode & !BGJOB_WAIT_FORCE {
            BGJOB_WAIT_ALL => WaitMode::All,
            BGJOB_WAIT_ANY => WaitMode::Any,
            m => {
                return Err(Error::InvalidArgument(format!(
                    "wait mode {m} (give BGJOB_WAIT_ALL or BGJOB_WAIT_ANY, optionally | \
                     BGJOB_WAIT_FORCE)"
                )));
            }
        };
        let ids: &[u64] = if count == 0 {
            &[]
        } else if ids.is_null() {
            return Err(Error::InvalidArgument(
                "ids is NULL but count is not 0".into(),
            ));
        } else {
            // SAFETY: `count` readable ids, as documented.
            unsafe { std::slice::from_raw_parts(ids, count) }
        };
        let result = wait_job_ids_forced(ids, mode, timeout_from_ms(timeout_ms)?, force)?;
        // SAFETY: out-pointers are NULL or have room, as documented; done.len() <= count.
        unsafe {
            if !out_done_ids.is_null() {
                std::ptr::copy_nonoverlapping(
                    result.done.as_ptr(),
                    out_done_ids,
                    result.done.len(),
                );
            }
            if !out_done_count.is_null() {
                *out_done_count = result.done.len();
            }
        }
        if result.timed_out {
            return Err(Error::Timeout(format!(
                "{} of {} job(s) done when the wait's timeout elapsed",
                result.done.len(),
                ids.len()
            )));
        }
        Ok(())
    })
}

/// Stop-Job: asks the job (and its children) to stop and waits until it is finished, up to
/// `timeout_ms` (-1 = no limit, 0 = do not wait). A queued job becomes Stopped at once and
/// never runs; a running one is Stopping until its work sees the request and returns.
/// `BGJOB_E_TIMEOUT` if it is still Stopping then. Stopping a finished job does nothing.
#[unsafe(no_mangle)]
pub extern "C" fn bgjob_stop(id: u64, timeout_ms: i64) -> bgjob_status {
    boundary(|| {
        let timeout = timeout_from_ms(timeout_ms)?;
        let job = repository().get(id)?;
        stop_job(&job, timeout)
    })
}
