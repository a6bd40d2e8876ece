//! The executor: pools of worker threads that run thread jobs, and the process-wide
//! default pool.

mod handoff;
mod pool;
mod queue;
mod throttle;
pub(crate) mod worker;

pub(crate) use handoff::{Completion, Permit};
pub use pool::Pool;
pub(crate) use pool::blocking;

use crate::error::{Error, Result};
#[cfg(not(loom))]
use crate::sync::lock;
#[cfg(not(loom))]
use std::sync::{Mutex, OnceLock};

// Under loom there is no default pool (see `default_pool`): a pool in a process-wide
// `static` would outlive the loom execution its workers and locks belong to.
#[cfg(not(loom))]
static DEFAULT_POOL: OnceLock<Pool> = OnceLock::new();
#[cfg(not(loom))]
static DEFAULT_CONFIG: Mutex<Option<(usize, usize)>> = Mutex::new(None);

/// Sets the default pool's thread count (0 = one per core) and throttle limit (0 = none)
/// before its first use; they win over `BGJOB_THREADS` and `BGJOB_THROTTLE`.
/// `Err(AlreadyInitialized)` once the default pool exists.
#[cfg(not(loom))]
pub fn configure_default_pool(threads: usize, throttle: usize) -> Result<()> {
    let mut cfg = lock(&DEFAULT_CONFIG);
    if DEFAULT_POOL.get().is_some() {
        return Err(Error::AlreadyInitialized(
            "the default pool is already running; configure it before the first job".into(),
        ));
    }
    *cfg = Some((threads, throttle));
    Ok(())
}

#[cfg(not(loom))]
fn env_count(name: &str) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.trim().parse::<usize>().ok())
        .unwrap_or(0)
}

/// The process-wide default pool, created on first use: `BGJOB_THREADS` workers (default:
/// one per core) and a throttle of `BGJOB_THROTTLE` (default: none), unless
/// [`configure_default_pool`] said otherwise.
#[cfg(not(loom))]
pub fn default_pool() -> Result<&'static Pool> {
    if let Some(p) = DEFAULT_POOL.get() {
        return Ok(p);
    }
    // Holding the config lock makes configure-vs-first-use race free.
    let cfg = lock(&DEFAULT_CONFIG);
    if let Some(p) = DEFAULT_POOL.get() {
        return Ok(p);
    }
    let (threads, throttle) =
        cfg.unwrap_or_else(|| (env_count("BGJOB_THREADS"), env_count("BGJOB_THROTTLE")));
    let pool = Pool::new(threads, throttle)?;
    Ok(DEFAULT_POOL.get_or_init(|| pool))
}

/// Shuts the default pool down (see [`Pool::shutdown`]) if it was ever created, then
/// ends the process reactor's thread once no process job is left (within what is left of
/// `timeout`), and frees the state index's empty pages: for a host that wants every bgjob
/// thread and allocation gone before it exits (e.g. to be leak-checker clean). Later
/// starts on the default pool fail with `ShutDown`.
#[cfg(not(loom))]
pub fn shutdown_default_pool(timeout: Option<std::time::Duration>) -> Result<()> {
    let deadline = timeout.map(crate::sync::deadline_after);
    let result = {
        // Taking the config lock orders this after a concurrent first creation.
        let _cfg = lock(&DEFAULT_CONFIG);
        match DEFAULT_POOL.get() {
            Some(p) => p.shutdown(timeout),
            None => Ok(()),
        }
    };
    crate::process::reactor::shutdown(
        deadline.map(|d| d.saturating_duration_since(std::time::Instant::now())),
    );
    crate::state_index::free_empty_pages();
    result
}

/// Under loom there is no default pool: a model makes its own pools, which end with the
/// execution (see `sync.rs`). Configuring it is refused.
#[cfg(loom)]
pub fn configure_default_pool(_threads: usize, _throttle: usize) -> Result<()> {
    Err(no_default_pool())
}

/// Under loom there is no default pool: a start must name its pool.
#[cfg(loom)]
pub fn default_pool() -> Result<&'static Pool> {
    Err(no_default_pool())
}

/// Under loom there is no default pool to shut down.
#[cfg(loom)]
pub fn shutdown_default_pool(_timeout: Option<std::time::Duration>) -> Result<()> {
    Ok(())
}

/// What a use of the default pool gets under loom.
#[cfg(loom)]
fn no_default_pool() -> Error {
    Error::InvalidState("no default pool under loom: give the job a pool of its own".into())
}
