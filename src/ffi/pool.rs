//! Pools from C: create, shut down, free; configure the default pool.

use super::status::bgjob_status;
use super::{boundary, non_null, timeout_from_ms};
use crate::error::Error;
use crate::executor::{Pool, configure_default_pool, shutdown_default_pool};

/// A pool of worker threads with a throttle limit. Jobs started on it with
/// `bgjob_spec_set_pool` run there instead of the default pool.
pub struct bgjob_pool {
    pub(crate) pool: Pool,
}

/// Creates a pool of `threads` workers (0 = one per core) running at most `throttle` jobs
/// at once (0 = no limit beyond the threads). A job blocked in a bgjob wait lends its slot,
/// so waiting inside a job never deadlocks the pool.
///
/// # Safety
/// `out_pool` is writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn bgjob_pool_new(
    threads: u32,
    throttle: u32,
    out_pool: *mut *mut bgjob_pool,
) -> bgjob_status {
    boundary(|| {
        if out_pool.is_null() {
            return Err(Error::InvalidArgument("out_pool is NULL".into()));
        }
        let pool = Pool::new(threads as usize, throttle as usize)?;
        // SAFETY: non-NULL and writable, as documented.
        unsafe { *out_pool = Box::into_raw(Box::new(bgjob_pool { pool })) };
        Ok(())
    })
}

/// Shuts the pool down: no more starts (`BGJOB_E_SHUT_DOWN`), queued jobs become Stopped
/// without running, running jobs are asked to stop; then waits up to `timeout_ms` (-1 = no
/// limit) for its threads to exit. `BGJOB_E_TIMEOUT` if work still runs then. Repeatable.
///
/// # Safety
/// `pool` is NULL or a live pool.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn bgjob_pool_shutdown(
    pool: *const bgjob_pool,
    timeout_ms: i64,
) -> bgjob_status {
    boundary(|| {
        // SAFETY: as documented for the caller.
        let pool = unsafe { non_null(pool, "pool") }?;
        pool.pool.shutdown(timeout_from_ms(timeout_ms)?)
    })
}

/// Frees a pool handle. If the pool was not shut down, this shuts it down without waiting:
/// queued jobs become Stopped, running ones are asked to stop, and its threads exit as
/// their jobs end. NULL is a no-op.
///
/// # Safety
/// `pool` is NULL or a live pool, not used after this call.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn bgjob_pool_free(pool: *mut bgjob_pool) {
    let _ = boundary(|| {
        if !pool.is_null() {
            // SAFETY: a live pool from bgjob_pool_new, as documented.
            let pool = unsafe { Box::from_raw(pool) };
            let _ = pool.pool.shutdown(Some(std::time::Duration::ZERO));
        }
        Ok(())
    });
}

/// Configures the default pool before its first use (the first start without a pool):
/// `threads` (0 = one per core) and `throttle` (0 = none). Wins over the `BGJOB_THREADS` and
/// `BGJOB_THROTTLE` environment variables. `BGJOB_E_ALREADY_INITIALIZED` once it exists.
#[unsafe(no_mangle)]
pub extern "C" fn bgjob_configure_default_pool(threads: u32, throttle: u32) -> bgjob_status {
    boundary(|| configure_default_pool(threads as usize, throttle as usize))
}

/// Shuts the default pool down, if it was created: queued jobs become Stopped, running ones
/// are asked to stop, then waits up to `timeout_ms` (-1 = no limit) for its threads to exit
/// (`BGJOB_E_TIMEOUT` if work still runs). For hosts that want every bgjob thread gone
/// before they exit (and, once every job is removed, every allocation: leak checkers find
/// nothing); later starts without a pool fail with `BGJOB_E_SHUT_DOWN`. Repeatable.
#[unsafe(no_mangle)]
pub extern "C" fn bgjob_shutdown(timeout_ms: i64) -> bgjob_status {
    boundary(|| shutdown_default_pool(timeout_from_ms(timeout_ms)?))
}
