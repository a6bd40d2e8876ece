//! A fuzzer of the C ABI (issue 8): random sequences of `bgjob_*` calls with random and bad
//! arguments (unknown, removed and 0 ids, NULLs, out-of-range enums and flags, negative and
//! huge timeouts, names that are not UTF-8), checked against a reference model after every
//! step. The calls are the `extern "C"` functions themselves (`bgjob::ffi::*`), called as a
//! C host would call them.
//!
//! What the model checks, after every operation:
//! - every status is a documented code and one the operation may return; every failure
//!   leaves a fresh, non-empty `bgjob_last_error_message()`;
//! - ids are unique and increasing (a parallel job's children follow their parent); a
//!   removed id gives `BGJOB_E_NO_SUCH_JOB` for ever; the repository holds exactly the jobs
//!   the model says are alive;
//! - records: each consuming receive takes, per job that wrote, the next records in write
//!   order (so none is received twice), a keep receive copies the next ones without taking
//!   them, and once a job is finished a receive of everything takes exactly what its work
//!   wrote (nothing lost); a finished-state callback can already read all of them;
//! - states move only along DESIGN's legal moves as every callback sees them, each change
//!   once and in order; a finished state never changes; a job ends in a state its work
//!   allows (Completed, Failed with the right reason, Stopped only after a stop);
//! - a wait or stop that reports a job done returns after that change's callbacks; inside a
//!   job's own callback a wait for a later change is refused (`BGJOB_E_WOULD_DEADLOCK`);
//! - concurrent consuming receives from several threads take each record once; two
//!   removes (or a stop and a forced remove) racing on one job remove it once;
//! - every finalizer runs exactly once (at the latest when its job is removed, or at once
//!   when a call that takes user data fails);
//! - at the end of every case, once everything is stopped, drained and removed, the
//!   repository is empty and every finalizer has run.
//!
//! The operations: starts (thread jobs whose C work writes records and then completes,
//! fails, panics through `bgjob_selftest_panic`, waits for a stop, asks for input or passes
//! checkpoints; parallel jobs; `true`/`false`/`echo`/missing-program process jobs; inline
//! runs; a score of malformed specs), get_state, get_job, lookups by instance id, get_jobs
//! with filters, receive (keep/consume/max/wait/auto-remove), wait (all/any/force), stop,
//! remove (force or not), suspend/resume, send_input, (un)registering callbacks (some of
//! which remove their own job), pools, races between threads — with ids drawn from live
//! jobs, removed ones, 0, `u64::MAX` and random numbers.
//!
//! Runs: `cargo test --release --test fuzz_api` (the short run `make test` makes:
//! `DEFAULT_CASES` cases, about 5 s); `BGJOB_FUZZ_CASES=20000 cargo test --release --test
//! fuzz_api -- --nocapture` for a long one (it prints the seed, cases, operations and time;
//! `BGJOB_FUZZ_STATS=1` adds every function's count of each status); `BGJOB_FUZZ_SEED=n`
//! replays the same sequences (timing aside). A failure prints the shrunk (minimal) sequence
//! of operations. The same operations, decoded from bytes, are the cargo-fuzz target
//! `fuzz/fuzz_targets/api.rs`; `BGJOB_FUZZ_REPLAY=file` replays one of its inputs.
//!
//! One bug found, since fixed: a waiting receive inside a job's own callback was not
//! refused while the job was Suspended (it blocked for its whole timeout, for ever with -1);
//! `receive_wait_in_own_suspending_callback_is_refused` is its regression test.

use bgjob::ffi::callbacks::{
    bgjob_on_any_state_changed, bgjob_on_state_changed, bgjob_state_event, bgjob_unregister,
};
use bgjob::ffi::context::{
    bgjob_context, bgjob_context_fail, bgjob_context_input, bgjob_context_job_id,
    bgjob_context_progress, bgjob_context_set_status_message, bgjob_context_stop_requested,
    bgjob_context_write, bgjob_context_write_text,
};
use bgjob::ffi::control::{
    bgjob_buffer_free, bgjob_context_checkpoint, bgjob_context_read_input, bgjob_resume,
    bgjob_send_input, bgjob_suspend,
};
use bgjob::ffi::custom::bgjob_spec_set_location;
use bgjob::ffi::job::{
    bgjob_filter, bgjob_filter_free, bgjob_filter_new, bgjob_filter_set_command,
    bgjob_filter_set_has_more_data, bgjob_filter_set_include_children, bgjob_filter_set_name,
    bgjob_filter_set_newest, bgjob_filter_set_state, bgjob_get_job, bgjob_get_job_by_instance_id,
    bgjob_get_jobs, bgjob_get_state, bgjob_job_info, bgjob_job_info_begin_time_ns,
    bgjob_job_info_child_count, bgjob_job_info_child_id, bgjob_job_info_command,
    bgjob_job_info_end_time_ns, bgjob_job_info_free, bgjob_job_info_has_more_data,
    bgjob_job_info_id, bgjob_job_info_instance_id, bgjob_job_info_location, bgjob_job_info_name,
    bgjob_job_info_parent_id, bgjob_job_info_reason, bgjob_job_info_state,
    bgjob_job_info_type_name, bgjob_job_list, bgjob_job_list_count, bgjob_job_list_free,
    bgjob_job_list_get, bgjob_remove,
};
use bgjob::ffi::pool::{
    bgjob_configure_default_pool, bgjob_pool, bgjob_pool_free, bgjob_pool_new, bgjob_pool_shutdown,
};
use bgjob::ffi::process::{
    bgjob_spec_set_argv, bgjob_spec_set_output_mode, bgjob_spec_set_stop_grace,
    bgjob_spec_set_working_directory,
};
use bgjob::ffi::records::{
    BGJOB_RECEIVE_AUTO_REMOVE, BGJOB_RECEIVE_KEEP, BGJOB_RECEIVE_WAIT, bgjob_receive,
    bgjob_records, bgjob_records_count, bgjob_records_free, bgjob_records_get,
};
use bgjob::ffi::spec::{
    bgjob_run_inline, bgjob_spec, bgjob_spec_add_input, bgjob_spec_free, bgjob_spec_new,
    bgjob_spec_on_state_changed, bgjob_spec_set_command, bgjob_spec_set_name, bgjob_spec_set_pool,
    bgjob_spec_set_throttle_limit, bgjob_spec_set_work, bgjob_start, bgjob_start_fn,
};
use bgjob::ffi::status::{
    BGJOB_E_ALREADY_INITIALIZED, BGJOB_E_BLOCKED, BGJOB_E_CHILD_JOB, BGJOB_E_INVALID_ARGUMENT,
    BGJOB_E_INVALID_STATE, BGJOB_E_NO_SUCH_JOB, BGJOB_E_NOT_FINISHED, BGJOB_E_PANIC,
    BGJOB_E_SHUT_DOWN, BGJOB_E_SYSTEM, BGJOB_E_TIMEOUT, BGJOB_E_WOULD_DEADLOCK, BGJOB_OK,
    bgjob_last_error_errno, bgjob_last_error_message, bgjob_selftest_panic, bgjob_status_name,
};
use bgjob::ffi::types::{bgjob_state_is_finished, bgjob_state_name, bgjob_stream_name};
use bgjob::ffi::wait::{BGJOB_WAIT_ALL, BGJOB_WAIT_ANY, BGJOB_WAIT_FORCE, bgjob_stop, bgjob_wait};
use proptest::prelude::*;
use proptest::test_runner::{Config, RngSeed, TestCaseError, TestError, TestRunner};
use std::collections::{BTreeMap, BTreeSet};
use std::ffi::{CStr, CString, c_char, c_void};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::ptr::{null, null_mut};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, Once};
use std::time::{Duration, Instant};

// ----- states (DESIGN §1, written out here as an oracle independent of src/state.rs) ------

const NOT_STARTED: u32 = 0;
const RUNNING: u32 = 1;
const COMPLETED: u32 = 2;
const FAILED: u32 = 3;
const STOPPED: u32 = 4;
const BLOCKED: u32 = 5;
const SUSPENDED: u32 = 6;
const DISCONNECTED: u32 = 7;
const SUSPENDING: u32 = 8;
const STOPPING: u32 = 9;
const AT_BREAKPOINT: u32 = 10;

const STATE_NAMES: [&str; 11] = [
    "NotStarted",
    "Running",
    "Completed",
    "Failed",
    "Stopped",
    "Blocked",
    "Suspended",
    "Disconnected",
    "Suspending",
    "Stopping",
    "AtBreakpoint",
];

fn finished(s: u32) -> bool {
    matches!(s, COMPLETED | FAILED | STOPPED)
}

fn persistent(s: u32) -> bool {
    finished(s) || matches!(s, SUSPENDED | DISCONNECTED)
}

/// DESIGN §1's legal moves.
fn legal(from: u32, to: u32) -> bool {
    match from {
        NOT_STARTED => matches!(to, RUNNING | STOPPED | FAILED),
        RUNNING => matches!(
            to,
            COMPLETED | FAILED | STOPPING | BLOCKED | SUSPENDING | AT_BREAKPOINT | DISCONNECTED
        ),
        STOPPING => matches!(to, STOPPED | FAILED | COMPLETED),
        BLOCKED => matches!(to, RUNNING | STOPPING),
        SUSPENDING => matches!(to, SUSPENDED),
        SUSPENDED => matches!(to, RUNNING | STOPPING),
        AT_BREAKPOINT => matches!(to, RUNNING),
        DISCONNECTED => matches!(to, RUNNING | FAILED | STOPPED),
        _ => false,
    }
}

/// The moves a leaf job may make: the legal ones, plus (guide §3) the end of the work
/// finishing a job that is still Suspending (work that never reached a checkpoint).
fn legal_for_leaf(from: u32, to: u32) -> bool {
    legal(from, to) || (from == SUSPENDING && finished(to))
}

fn sname(s: u32) -> String {
    STATE_NAMES
        .get(s as usize)
        .map_or_else(|| format!("state#{s}"), |n| n.to_string())
}

fn status_text(st: u32) -> String {
    // SAFETY: bgjob_status_name returns a static NUL-terminated string.
    unsafe { CStr::from_ptr(bgjob_status_name(st)) }
        .to_string_lossy()
        .into_owned()
}

fn last_error() -> String {
    // SAFETY: never NULL, valid until this thread's next failing call.
    unsafe { CStr::from_ptr(bgjob_last_error_message()) }
        .to_string_lossy()
        .into_owned()
}

// ----- process-wide bookkeeping shared with work functions and callbacks --------------------

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// User data handed to bgjob is a token (a number, not a pointer): a finalizer called twice
/// is counted, never a double free.
static NEXT_TOKEN: AtomicU64 = AtomicU64::new(1);
static TOKENS: Mutex<BTreeMap<u64, Token>> = Mutex::new(BTreeMap::new());
/// How many times each token's finalizer ran.
static FINALIZED: Mutex<BTreeMap<u64, u32>> = Mutex::new(BTreeMap::new());
/// Records each job's work wrote successfully (by the id of the job that wrote them).
static WRITTEN: Mutex<BTreeMap<u64, u64>> = Mutex::new(BTreeMap::new());
/// Records of each job taken by consuming receives: the next one expected has this index.
/// The test thread holds the lock across a receive and its bookkeeping, so a callback that
/// gets it sees a consistent count.
static CONSUMED: Mutex<BTreeMap<u64, u64>> = Mutex::new(BTreeMap::new());
/// What each callback registration saw of each job: (first previous state, last state).
static SEEN: Mutex<BTreeMap<(u64, u64), (u32, u32)>> = Mutex::new(BTreeMap::new());
/// Broken promises noticed on other threads (work functions, callbacks, finalizers).
static VIOLATIONS: Mutex<Vec<String>> = Mutex::new(Vec::new());
/// Jobs that removed themselves from a callback.
static SELF_REMOVED: Mutex<BTreeSet<u64>> = Mutex::new(BTreeSet::new());
/// Repository-wide registrations and the pool of the case running, for the clean-up after a
/// failed case.
static LEFTOVER_ANY: Mutex<Vec<u64>> = Mutex::new(Vec::new());
static LEFTOVER_POOL: Mutex<usize> = Mutex::new(0);
/// The operation running now, for the watchdog.
static CURRENT: Mutex<Option<(Instant, String)>> = Mutex::new(None);
/// One case at a time: the repository is process-wide.
static SERIAL: Mutex<()> = Mutex::new(());
/// Totals, printed at the end of a run.
static CASES_RUN: AtomicU64 = AtomicU64::new(0);
/// Calls made, by function and status (printed with `BGJOB_FUZZ_STATS=1`).
static CALLS: Mutex<BTreeMap<(String, u32), u64>> = Mutex::new(BTreeMap::new());
static OPS_RUN: AtomicU64 = AtomicU64::new(0);

fn violation(msg: String) {
    lock(&VIOLATIONS).push(msg);
}

#[derive(Clone, Debug)]
enum Token {
    Work(WorkParams),
    Callback(CallbackParams),
}

#[derive(Clone, Debug)]
struct WorkParams {
    behaviour: Behaviour,
    records: u8,
    salt: u8,
    bad_calls: bool,
    parallel: bool,
    /// Its job removes itself from a callback: its writes may fail after that.
    volatile: bool,
}

#[derive(Clone, Debug)]
struct CallbackParams {
    /// Registered on the spec: sees every change from NotStarted on, of one job.
    spec: bool,
    /// The only job it may hear of (None: any, or a spec's job, learnt from its first call).
    job: Option<u64>,
    /// The work's token, for a (non-parallel) thread job: finalized before it finishes.
    thread_work: Option<u64>,
    /// A thread or parallel job: every record it wrote is known (WRITTEN).
    records_known: bool,
    /// The callback removes its own job (guide §5: a callback may).
    self_remove: Option<SelfRemove>,
}

/// A spec callback that removes its own job.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SelfRemove {
    /// `bgjob_remove(id, false)` in the callback of its finished state.
    OnFinished,
    /// `bgjob_remove(id, true)` in the callback of NotStarted -> Running: the job goes at
    /// once and its work ends in the background (at its finished state if it never ran).
    OnRunningForced,
}

fn new_token(t: Token) -> u64 {
    let id = NEXT_TOKEN.fetch_add(1, Ordering::Relaxed);
    lock(&TOKENS).insert(id, t);
    id
}

fn finalized(token: u64) -> u32 {
    lock(&FINALIZED).get(&token).copied().unwrap_or(0)
}

fn written(job: u64) -> u64 {
    lock(&WRITTEN).get(&job).copied().unwrap_or(0)
}

unsafe extern "C" fn finalize(user_data: *mut c_void) {
    let token = user_data as u64;
    let mut f = lock(&FINALIZED);
    let n = f.entry(token).or_insert(0);
    *n += 1;
    let n = *n;
    drop(f);
    if n > 1 {
        violation(format!("the finalizer of token {token} ran {n} times"));
    }
}

// ----- the work: a C work function driven by its token ---------------------------------------

/// What a job's work does once it wrote its records.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Behaviour {
    /// Returns 0: Completed.
    Complete,
    /// Returns this (non-zero) code: Failed, "the work returned N".
    ReturnCode(i32),
    /// Calls `bgjob_context_fail`, then returns 0: Failed with that reason.
    FailReason,
    /// Calls `bgjob_selftest_panic` (a panic caught at the boundary) and returns its status.
    SelftestPanic,
    /// Passes checkpoints until a stop is asked.
    WaitStop,
    /// Asks the host for input (Blocked) and returns when answered or stopped.
    AskInput,
    /// Passes a few checkpoints, then completes (gives suspend/resume something to do).
    Checkpoints,
}

const FAIL_REASON: &str = "fuzz fail reason";
/// What `bgjob_selftest_panic` panics with here (the last: for a NULL message).
const SELFTEST_MESSAGES: [&str; 3] = [
    "fuzz-selftest in a work",
    "fuzz-selftest from the host",
    "selftest",
];
const PROMPT: &CStr = c"fuzz prompt?";
const ANSWER: &[u8] = b"answer";
const PERCENTS: [i32; 6] = [-1, 0, 50, 100, 250, -7];

unsafe extern "C" fn work_fn(ctx: *mut bgjob_context, user_data: *mut c_void) -> i32 {
    let token = user_data as u64;
    // SAFETY: `ctx` is the live context of this work.
    match catch_unwind(AssertUnwindSafe(|| unsafe { work_body(ctx, token) })) {
        Ok(rc) => rc,
        Err(_) => {
            violation(format!("the work of token {token} panicked"));
            98
        }
    }
}

/// `status` must be `want`, with a message if it is a failure.
fn expect_in_work(what: &str, status: u32, want: u32) {
    if status != want {
        violation(format!(
            "in a work: {what} gave {}, expected {}",
            status_text(status),
            status_text(want)
        ));
    } else if status != BGJOB_OK && last_error().is_empty() {
        violation(format!("in a work: {what} failed without a message"));
    }
}

unsafe fn write_record(ctx: *mut bgjob_context, job: u64, k: &mut u64, salt: u8, volatile: bool) {
    let text = CString::new(format!("r:{job}:{k}")).expect("no NUL");
    let stream = ((*k + u64::from(salt)) % 7) as u32;
    // SAFETY: a live context; NUL-terminated texts and `len` readable bytes.
    let st = unsafe {
        if stream == 6 {
            let pct = PERCENTS[(*k as usize + salt as usize) % PERCENTS.len()];
            bgjob_context_progress(ctx, pct, c"act".as_ptr(), text.as_ptr())
        } else if (*k + u64::from(salt)) % 2 == 0 {
            bgjob_context_write_text(ctx, stream, text.as_ptr())
        } else {
            let b = text.as_bytes();
            bgjob_context_write(ctx, stream, b.as_ptr().cast(), b.len())
        }
    };
    if st == BGJOB_OK {
        *lock(&WRITTEN).entry(job).or_insert(0) += 1;
        *k += 1;
    } else if !volatile {
        violation(format!(
            "job {job}: writing record {k} to stream {stream} gave {}: {}",
            status_text(st),
            last_error()
        ));
    }
}

/// Calls a work may get wrong: each must be refused with the documented status.
unsafe fn bad_context_calls(ctx: *mut bgjob_context, job: u64, parallel: bool, salt: u8) {
    // SAFETY (whole block): a live context and NULL or valid pointers, as documented.
    unsafe {
        let st = bgjob_context_write(ctx, 7 + u32::from(salt), c"x".as_ptr().cast(), 1);
        expect_in_work("write to stream 7+", st, BGJOB_E_INVALID_ARGUMENT);
        let st = bgjob_context_write(ctx, 0, null(), 3);
        expect_in_work(
            "write of NULL data with a length",
            st,
            BGJOB_E_INVALID_ARGUMENT,
        );
        let st = bgjob_context_write_text(ctx, 0, null());
        expect_in_work("write_text NULL", st, BGJOB_E_INVALID_ARGUMENT);
        let st = bgjob_context_set_status_message(ctx, c"\xff\xfe".as_ptr());
        expect_in_work("status message not UTF-8", st, BGJOB_E_INVALID_ARGUMENT);
        let st = bgjob_context_set_status_message(ctx, null());
        expect_in_work("status message NULL", st, BGJOB_E_INVALID_ARGUMENT);
        let st = bgjob_context_set_status_message(ctx, c"fuzz status".as_ptr());
        expect_in_work("status message", st, BGJOB_OK);
        let st = bgjob_context_fail(ctx, null());
        expect_in_work("fail NULL reason", st, BGJOB_E_INVALID_ARGUMENT);
        let st = bgjob_context_fail(ctx, c"\xc3\x28".as_ptr());
        expect_in_work("fail with a reason not UTF-8", st, BGJOB_E_INVALID_ARGUMENT);
        let st = bgjob_context_progress(ctx, 5, c"\xff".as_ptr(), null());
        expect_in_work("progress activity not UTF-8", st, BGJOB_E_INVALID_ARGUMENT);
        let mut data: *const u8 = null();
        let mut len = 0usize;
        let st = bgjob_context_input(ctx, &mut data, &mut len);
        if parallel {
            expect_in_work("input of a parallel child", st, BGJOB_OK);
            if st == BGJOB_OK {
                if data.is_null() {
                    violation(format!("job {job}: input data NULL"));
                } else {
                    let input = std::slice::from_raw_parts(data, len);
                    if !(input.is_empty() || input.starts_with(b"in:")) {
                        violation(format!("job {job}: input {input:?} is not one given"));
                    }
                }
            }
        } else {
            expect_in_work("input of a thread job", st, BGJOB_E_INVALID_ARGUMENT);
        }
        let st = bgjob_context_input(ctx, null_mut(), null_mut());
        expect_in_work("input with NULL out-pointers", st, BGJOB_E_INVALID_ARGUMENT);
        if bgjob_context_stop_requested(null_mut()) {
            violation("stop_requested(NULL) is true".into());
        }
        if bgjob_context_job_id(null_mut()) != 0 {
            violation("job_id(NULL) is not 0".into());
        }
        let ids = [job];
        let mut n = 0usize;
        let st = bgjob_wait(ids.as_ptr(), 1, BGJOB_WAIT_ALL, 10, null_mut(), &mut n);
        expect_in_work("a work's wait on its own job", st, BGJOB_E_WOULD_DEADLOCK);
    }
}

unsafe fn work_body(ctx: *mut bgjob_context, token: u64) -> i32 {
    let Some(Token::Work(p)) = lock(&TOKENS).get(&token).cloned() else {
        violation(format!("a work ran with unknown token {token}"));
        return 97;
    };
    // SAFETY: a live context.
    let job = unsafe { bgjob_context_job_id(ctx) };
    if job == 0 {
        violation(format!("token {token}: bgjob_context_job_id gave 0"));
    }
    if finalized(token) != 0 {
        violation(format!(
            "job {job}: its work runs after its user data was finalized"
        ));
    }
    if p.bad_calls {
        // SAFETY: a live context.
        unsafe { bad_context_calls(ctx, job, p.parallel, p.salt) };
    }
    let mut k = 0u64;
    for _ in 0..p.records {
        // SAFETY: a live context.
        unsafe { write_record(ctx, job, &mut k, p.salt, p.volatile) };
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    // SAFETY (the calls below): a live context; NUL-terminated texts; writable out-pointers.
    match p.behaviour {
        Behaviour::Complete => 0,
        Behaviour::ReturnCode(rc) => rc,
        Behaviour::FailReason => {
            let reason = CString::new(FAIL_REASON).expect("no NUL");
            let st = unsafe { bgjob_context_fail(ctx, reason.as_ptr()) };
            expect_in_work("fail", st, BGJOB_OK);
            0
        }
        Behaviour::SelftestPanic => {
            let st = unsafe { bgjob_selftest_panic(c"fuzz-selftest in a work".as_ptr()) };
            expect_in_work("selftest_panic", st, BGJOB_E_PANIC);
            if !last_error().contains("fuzz-selftest in a work") {
                violation(format!(
                    "selftest_panic's message is {:?}, not the panic's",
                    last_error()
                ));
            }
            st as i32
        }
        Behaviour::WaitStop => loop {
            let st = unsafe { bgjob_context_checkpoint(ctx) };
            expect_in_work("checkpoint", st, BGJOB_OK);
            if unsafe { bgjob_context_stop_requested(ctx) } {
                return 0;
            }
            if Instant::now() > deadline {
                return 99;
            }
            std::thread::sleep(Duration::from_millis(1));
        },
        Behaviour::Checkpoints => {
            for _ in 0..8 {
                let st = unsafe { bgjob_context_checkpoint(ctx) };
                expect_in_work("checkpoint", st, BGJOB_OK);
                if unsafe { bgjob_context_stop_requested(ctx) } {
                    break;
                }
                std::thread::sleep(Duration::from_millis(1));
            }
            0
        }
        Behaviour::AskInput => {
            let mut data: *mut u8 = null_mut();
            let mut len = 0usize;
            let st = unsafe { bgjob_context_read_input(ctx, PROMPT.as_ptr(), &mut data, &mut len) };
            match st {
                BGJOB_OK => {
                    let input = if data.is_null() {
                        violation(format!("job {job}: read_input gave NULL data"));
                        Vec::new()
                    } else {
                        unsafe { std::slice::from_raw_parts(data, len) }.to_vec()
                    };
                    if input != ANSWER && !input.is_empty() {
                        violation(format!(
                            "job {job}: read_input gave {input:?}, not what was sent"
                        ));
                    }
                    unsafe { bgjob_buffer_free(data, len) };
                    unsafe { write_record(ctx, job, &mut k, p.salt, p.volatile) };
                }
                // Stopped while Blocked, or not Running when it asked (Suspending).
                BGJOB_E_INVALID_STATE => {}
                other => violation(format!(
                    "job {job}: read_input gave {}: {}",
                    status_text(other),
                    last_error()
                )),
            }
            0
        }
    }
}

// ----- callbacks --------------------------------------------------------------------------

unsafe extern "C" fn on_change(event: *const bgjob_state_event, user_data: *mut c_void) {
    let token = user_data as u64;
    // SAFETY: bgjob passes a live event for the duration of the call.
    let r = catch_unwind(AssertUnwindSafe(|| unsafe {
        on_change_body(&*event, token)
    }));
    if r.is_err() {
        violation(format!("the callback of token {token} panicked"));
    }
}

unsafe fn reason_of(p: *const c_char) -> Option<String> {
    // SAFETY: NULL or NUL-terminated during the call.
    (!p.is_null()).then(|| unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned())
}

unsafe fn on_change_body(e: &bgjob_state_event, token: u64) {
    let Some(Token::Callback(p)) = lock(&TOKENS).get(&token).cloned() else {
        violation(format!("a callback ran with unknown token {token}"));
        return;
    };
    let (job, prev, new) = (e.job_id, e.previous_state_info.state, e.state_info.state);
    let what = format!(
        "callback {token} ({}) of job {job}: {} -> {}",
        if p.spec {
            "spec"
        } else if p.job.is_some() {
            "job"
        } else {
            "any"
        },
        sname(prev),
        sname(new)
    );
    if prev > 10 || new > 10 {
        violation(format!("{what}: a state out of range"));
        return;
    }
    if let Some(j) = p.job {
        if j != job {
            violation(format!("{what}: registered for job {j}"));
        }
    }
    // SAFETY: the reasons live during the call.
    let reason = unsafe { reason_of(e.state_info.reason) };
    if new == FAILED && reason.as_deref().is_none_or(str::is_empty) {
        violation(format!("{what}: Failed without a reason"));
    }
    if let Some(sr) = p.self_remove {
        // A thread job that goes away under the test's feet: only the moves are checked.
        if !legal_for_leaf(prev, new) {
            violation(format!("{what}: not a legal move"));
        }
        see(&what, &p, token, job, prev, new);
        // A job stopped while queued never runs: it goes at its finished state then.
        let force = match sr {
            SelfRemove::OnRunningForced if new == RUNNING => true,
            _ if finished(new) => false,
            _ => return,
        };
        if !lock(&SELF_REMOVED).insert(job) {
            violation(format!("{what}: a callback after its job removed itself"));
            return;
        }
        let st = bgjob_remove(job, force);
        if st != BGJOB_OK {
            violation(format!(
                "{what}: remove({job}, force {force}) of its own job gave {}: {}",
                status_text(st),
                last_error()
            ));
        }
        return;
    }
    // A parent (it has children) must keep strictly to the legal moves (guide §3).
    let mut children = Vec::new();
    let mut info: *mut bgjob_job_info = null_mut();
    // SAFETY: a writable out-pointer; the snapshot is freed below.
    if unsafe { bgjob_get_job(job, &mut info) } == BGJOB_OK {
        // SAFETY: a live snapshot.
        unsafe {
            for i in 0..bgjob_job_info_child_count(info) {
                children.push(bgjob_job_info_child_id(info, i));
            }
            bgjob_job_info_free(info);
        }
    } else if !lock(&SELF_REMOVED).contains(&job) {
        // (A job's own callback that removed it runs before the repository-wide ones.)
        violation(format!(
            "{what}: bgjob_get_job failed in the callback: {}",
            last_error()
        ));
    }
    let ok = if children.is_empty() {
        legal_for_leaf(prev, new)
    } else {
        legal(prev, new)
    };
    if !ok {
        violation(format!("{what}: not a legal move"));
    }
    see(&what, &p, token, job, prev, new);
    if p.spec || p.job.is_some() {
        // SAFETY: as documented.
        unsafe { check_waits_in_callback(&what, job, new) };
    }
    if !finished(new) {
        return;
    }
    if let Some(w) = p.thread_work {
        // "after the work returns (before the job's finished state)".
        if prev != NOT_STARTED && finalized(w) != 1 {
            violation(format!(
                "{what}: the work's user data (token {w}) was not finalized before the finished state"
            ));
        }
    }
    if p.records_known {
        // Guide §4: a callback for a finished state can receive every record.
        // SAFETY: as documented.
        unsafe { check_all_readable(&what, job, &children) };
    }
}

/// Records a change a registration saw: changes of one job come once each, in order; a
/// spec callback hears of one job only, from NotStarted on.
fn see(what: &str, p: &CallbackParams, token: u64, job: u64, prev: u32, new: u32) {
    let mut seen = lock(&SEEN);
    if p.spec {
        if let Some(((_, other), _)) = seen.range((token, 0)..=(token, u64::MAX)).next() {
            if *other != job {
                violation(format!(
                    "{what}: a spec callback also called for job {other}"
                ));
            }
        }
    }
    match seen.get_mut(&(token, job)) {
        Some((_, last)) => {
            if *last != prev {
                violation(format!(
                    "{what}: the previous change it saw ended at {} (a change lost, \
                     repeated or out of order)",
                    sname(*last)
                ));
            }
            *last = new;
        }
        None => {
            if p.spec && prev != NOT_STARTED {
                violation(format!(
                    "{what}: a spec callback's first change is not from NotStarted"
                ));
            }
            seen.insert((token, job), (prev, new));
        }
    }
}

/// Guide §5: in a job's own callback, the change being delivered counts as done (a wait
/// for it returns at once), a wait for a later change is refused rather than hang, and a
/// poll is never refused. Two refinements the implementation makes, both consistent with
/// the guide: a wait goes by the *stored* state, which may be ahead of the change delivered
/// (the work ended, or a stop came, meanwhile), so a wait may find the job done — or, for a
/// poll, not done — by then; and the callback of Suspended runs on the work's own thread
/// (at its checkpoint), where a wait on the job is refused as a wait from its work.
unsafe fn check_waits_in_callback(what: &str, job: u64, new: u32) {
    let state = || {
        let mut s = u32::MAX;
        // SAFETY: a writable out-pointer.
        unsafe { bgjob_get_state(job, &mut s) };
        s
    };
    let ids = [job];
    let mut n = usize::MAX;
    let mut done = [0u64];
    let before = state();
    // SAFETY: one id; room for one done id.
    let waited = unsafe {
        bgjob_wait(
            ids.as_ptr(),
            1,
            BGJOB_WAIT_ALL,
            10,
            done.as_mut_ptr(),
            &mut n,
        )
    };
    let waited_msg = last_error();
    // SAFETY: as above.
    let polled = unsafe {
        bgjob_wait(
            ids.as_ptr(),
            1,
            BGJOB_WAIT_ANY,
            0,
            done.as_mut_ptr(),
            &mut n,
        )
    };
    // A waiting receive waits for a *finished* job: refused from a callback of the job
    // while it is unfinished, Suspended included (found by this fuzzer: it once blocked).
    let mut received = BGJOB_OK;
    let receive_wait = !finished(new);
    if receive_wait {
        let mut recs: *mut bgjob_records = null_mut();
        let flags = BGJOB_RECEIVE_WAIT | BGJOB_RECEIVE_KEEP;
        // SAFETY: a writable out-pointer.
        received = unsafe { bgjob_receive(job, flags, 0, 10, &mut recs) };
        if received == BGJOB_OK {
            // SAFETY: a live batch.
            unsafe { bgjob_records_free(recs) };
        }
    }
    let after = state();
    let seen = [new, before, after];
    let any = |f: fn(u32) -> bool| seen.iter().any(|&s| f(s));
    let all = |f: fn(u32) -> bool| seen.iter().all(|&s| f(s));
    let ok = match waited {
        BGJOB_OK => any(persistent),
        BGJOB_E_WOULD_DEADLOCK => !persistent(new) || new == SUSPENDED,
        _ => false,
    };
    if !ok {
        violation(format!(
            "{what}: a wait (10 ms) on its own job gave {} ({waited_msg}); stored state {} \
             then {}",
            status_text(waited),
            sname(before),
            sname(after)
        ));
    }
    let ok = match polled {
        BGJOB_OK => any(persistent),
        BGJOB_E_TIMEOUT => !all(persistent),
        _ => false,
    };
    if !ok {
        violation(format!(
            "{what}: a poll of its own job gave {}; stored state {} then {}",
            status_text(polled),
            sname(before),
            sname(after)
        ));
    }
    let ok = match received {
        _ if !receive_wait => true,
        BGJOB_OK => finished(before) || finished(after),
        BGJOB_E_WOULD_DEADLOCK => true,
        _ => false,
    };
    if !ok {
        violation(format!(
            "{what}: a waiting receive of its own job gave {}; stored state {} then {}",
            status_text(received),
            sname(before),
            sname(after)
        ));
    }
}

/// In a finished-state callback: a keep receive shows every record not taken yet.
unsafe fn check_all_readable(what: &str, job: u64, children: &[u64]) {
    // The test thread holds CONSUMED across its receives: skip the check rather than wait.
    let Ok(consumed) = CONSUMED.try_lock() else {
        return;
    };
    let mut recs: *mut bgjob_records = null_mut();
    // SAFETY: a writable out-pointer.
    let st = unsafe { bgjob_receive(job, BGJOB_RECEIVE_KEEP, 0, 0, &mut recs) };
    if st != BGJOB_OK {
        violation(format!(
            "{what}: keep receive gave {}: {}",
            status_text(st),
            last_error()
        ));
        return;
    }
    let mut got: BTreeMap<u64, Vec<u64>> = BTreeMap::new();
    // SAFETY: a live batch, freed below.
    unsafe {
        for i in 0..bgjob_records_count(recs) {
            let r = &*bgjob_records_get(recs, i);
            if let Some((w, k)) = parse_record(r) {
                got.entry(w).or_default().push(k);
            }
        }
        bgjob_records_free(recs);
    }
    let writers: Vec<u64> = if children.is_empty() {
        vec![job]
    } else {
        children.to_vec()
    };
    for w in writers {
        let from = consumed.get(&w).copied().unwrap_or(0);
        let want: Vec<u64> = (from..written(w)).collect();
        let have = got.remove(&w).unwrap_or_default();
        if have != want {
            violation(format!(
                "{what}: job {w}'s records readable in its finished callback are {have:?}, \
                 expected {want:?} (all written not yet taken)"
            ));
        }
    }
}

/// (writer, index) of a record a thread job wrote ("r:<job>:<k>"); a process job's record
/// ("p") is (its job, 0).
unsafe fn parse_record(r: &bgjob_record_view) -> Option<(u64, u64)> {
    if r.data.is_null() {
        return None;
    }
    // SAFETY: `len` bytes at `data`, in a live batch.
    let data = unsafe { std::slice::from_raw_parts(r.data, r.len) };
    if data == b"p" {
        return Some((r.job_id, 0));
    }
    let text = std::str::from_utf8(data).ok()?;
    let mut parts = text.strip_prefix("r:")?.split(':');
    let w = parts.next()?.parse().ok()?;
    let k = parts.next()?.parse().ok()?;
    Some((w, k))
}

use bgjob::ffi::records::bgjob_record as bgjob_record_view;

// ----- the operations ---------------------------------------------------------------------

/// A job id as an operation names it: resolved against the model when the operation runs,
/// so a shrunk sequence still means something.
#[derive(Clone, Copy, Debug)]
pub enum IdRef {
    /// A live job (children included), by index.
    Live(u8),
    /// A live top-level job, by index.
    Top(u8),
    /// A removed job, by index (an id never used if none was removed).
    Removed(u8),
    Zero,
    Max,
    Random(u64),
}

#[derive(Clone, Copy, Debug)]
pub enum Timeout {
    /// 0..=50 ms.
    Ms(u8),
    /// -1 (no limit); 50 ms unless the call cannot block for ever.
    Infinite,
    /// A negative number other than -1: refused.
    Negative(i64),
    /// i64::MAX; 50 ms unless the call cannot block for ever.
    Huge,
}

#[derive(Clone, Copy, Debug)]
pub enum NameArg {
    Default,
    Fz(u8),
    FzUpper(u8),
    Empty,
    InvalidUtf8,
    Null,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Program {
    True,
    False,
    Echo,
    Missing,
}

#[derive(Clone, Copy, Debug)]
pub enum StartHow {
    Spec,
    StartFn,
    OnPool,
}

#[derive(Clone, Copy, Debug)]
pub enum Pattern {
    Star,
    Exact(u8),
    Upper(u8),
    Prefix,
    JobPrefix,
    Bracket,
    Question,
    Cmd,
    Echo,
    InvalidUtf8,
    Null,
}

#[derive(Clone, Copy, Debug)]
pub enum InstanceForm {
    Exact,
    Upper,
    Garbage,
    RandomUuid(u64),
    InvalidUtf8,
    Null,
    NullOut,
}

#[derive(Clone, Copy, Debug)]
pub enum Unreg {
    /// A job registration made by this case, by index.
    Job(u8),
    /// A repository-wide registration made by this case, by index.
    Any(u8),
    /// A registration that never existed, on this job (0: repository-wide).
    Bogus(IdRef, u16),
}

/// The misuses of a start: each kind once in `ALL`, which the proptest strategy and the
/// byte decoder both draw from (a kind added here is drawn by both).
macro_rules! bad_starts {
    ($($kind:ident),* $(,)?) => {
        #[derive(Clone, Copy, Debug)]
        pub enum BadStart {
            $($kind),*
        }

        impl BadStart {
            const ALL: &'static [BadStart] = &[$(BadStart::$kind),*];
        }
    };
}

bad_starts! {
    NullSpec,
    NullOutId,
    NoWork,
    ArgvAndWork,
    ArgvAndInputs,
    LocationOnThread,
    GraceWithoutArgv,
    MissingWorkDir,
    ArgcZero,
    ArgvNull,
    InputNullWithLen,
    StartFnNullWork,
    StartFnNullOut,
    FreeUnstarted,
    SetWorkNull,
    SetWorkTwice,
    CallbackNull,
    NullSpecSetters,
    InlineWithInputs,
    SpecNewNullOut,
}

#[derive(Clone, Debug)]
pub enum Op {
    StartThread {
        behaviour: Behaviour,
        records: u8,
        salt: u8,
        name: NameArg,
        spec_cb: bool,
        how: StartHow,
        bad_calls: bool,
        self_remove: Option<SelfRemove>,
    },
    StartParallel {
        behaviour: Behaviour,
        records: u8,
        inputs: u8,
        empty_input: bool,
        throttle: u8,
        name: NameArg,
        spec_cb: bool,
        bad_calls: bool,
    },
    StartProcess {
        program: Program,
        name: NameArg,
        spec_cb: bool,
        grace: i64,
        mode: u32,
    },
    RunInline {
        behaviour: Behaviour,
        records: u8,
        program: Option<Program>,
        spec_cb: bool,
    },
    BadStart(BadStart),
    GetState {
        id: IdRef,
        null_out: bool,
    },
    GetJob {
        id: IdRef,
        null_out: bool,
    },
    ByInstanceId {
        id: IdRef,
        form: InstanceForm,
    },
    GetJobs {
        name: Option<Pattern>,
        command: Option<Pattern>,
        state: Option<u32>,
        has_more: Option<bool>,
        newest: Option<u8>,
        children: bool,
        null_filter: bool,
        null_out: bool,
    },
    Receive {
        id: IdRef,
        flags: u32,
        max: u8,
        timeout: Timeout,
        null_out: bool,
    },
    Wait {
        ids: Vec<IdRef>,
        mode: u32,
        timeout: Timeout,
        null_ids: bool,
        null_done: bool,
        null_count: bool,
    },
    Stop {
        id: IdRef,
        timeout: Timeout,
    },
    Remove {
        id: IdRef,
        force: bool,
    },
    Suspend(IdRef),
    Resume(IdRef),
    SendInput {
        id: IdRef,
        empty: bool,
        null_with_len: bool,
    },
    OnStateChanged {
        id: IdRef,
        null_cb: bool,
        null_out: bool,
    },
    OnAnyStateChanged {
        null_cb: bool,
    },
    Unregister(Unreg),
    PoolNew {
        threads: u8,
        throttle: u8,
        null_out: bool,
    },
    PoolShutdown {
        timeout: Timeout,
        null_pool: bool,
    },
    ConfigureDefaultPool {
        threads: u8,
        throttle: u8,
    },
    Names {
        state: u32,
        status: u32,
        stream: u32,
    },
    SelftestPanic {
        null_message: bool,
    },
    /// Lets the jobs run for a few milliseconds.
    Pause(u8),
    /// Consuming receives of one job from several threads at once.
    RaceReceive {
        id: IdRef,
        threads: u8,
        max: u8,
    },
    /// Two removes of one job at once, from two threads.
    RaceRemove {
        id: IdRef,
        force: [bool; 2],
    },
    /// A stop and a forced remove of one job at once, from two threads.
    RaceStopRemove {
        id: IdRef,
        timeout: Timeout,
    },
}

// ----- the model --------------------------------------------------------------------------

#[derive(Clone, Debug)]
enum Kind {
    Thread {
        work: u64,
        behaviour: Behaviour,
    },
    Parallel {
        work: u64,
        behaviour: Behaviour,
        children: Vec<u64>,
    },
    Child {
        parent: u64,
        behaviour: Behaviour,
    },
    Process {
        program: Program,
    },
}

#[derive(Clone, Debug)]
struct JobM {
    kind: Kind,
    name: String,
    command: Option<String>,
    spec_cb: Option<u64>,
    finished: Option<u32>,
    stop_asked: bool,
    on_pool: bool,
    instance: Option<String>,
    /// Removes itself from its callback: the test leaves it alone (the model cannot know
    /// when it goes) and only checks that it goes.
    volatile: bool,
}

#[derive(Clone, Debug)]
struct RegM {
    job: u64,
    reg: u64,
    unregistered: bool,
}

struct Model {
    jobs: BTreeMap<u64, JobM>,
    removed: Vec<u64>,
    removed_instances: Vec<String>,
    max_id: u64,
    tokens: Vec<(u64, String)>,
    job_regs: Vec<RegM>,
    any_regs: Vec<RegM>,
    pool: *mut bgjob_pool,
    pool_shut: bool,
    sentinel: String,
}

type R<T = ()> = Result<T, String>;
/// Records one receive took: (writer, index, sequence).
type Batch = Vec<(u64, u64, u64)>;

macro_rules! ensure {
    ($cond:expr, $($arg:tt)+) => {
        if !$cond {
            return Err(format!($($arg)+));
        }
    };
}

const SENTINEL_REG: u64 = 0x5EED_F00D_0000_0001;

impl Model {
    fn new() -> Model {
        Model {
            jobs: BTreeMap::new(),
            removed: Vec::new(),
            removed_instances: Vec::new(),
            max_id: 0,
            tokens: Vec::new(),
            job_regs: Vec::new(),
            any_regs: Vec::new(),
            pool: null_mut(),
            pool_shut: false,
            sentinel: String::new(),
        }
    }

    // ----- ids -----

    /// Live jobs (children included) the test may act on: not the volatile ones.
    fn live_ids(&self) -> Vec<u64> {
        self.jobs
            .iter()
            .filter(|(_, j)| !j.volatile)
            .map(|(&id, _)| id)
            .collect()
    }

    /// Live top-level jobs the test may act on.
    fn top_ids(&self) -> Vec<u64> {
        self.jobs
            .iter()
            .filter(|(_, j)| !j.volatile && !matches!(j.kind, Kind::Child { .. }))
            .map(|(&id, _)| id)
            .collect()
    }

    fn volatile_ids(&self) -> Vec<u64> {
        self.jobs
            .iter()
            .filter(|(_, j)| j.volatile)
            .map(|(&id, _)| id)
            .collect()
    }

    /// A job that removes itself: no status about it can be foretold.
    fn volatile(&self, id: u64) -> bool {
        self.jobs.get(&id).is_some_and(|j| j.volatile)
    }

    fn resolve(&self, r: IdRef) -> u64 {
        let pick = |v: Vec<u64>, i: u8| {
            if v.is_empty() {
                u64::MAX - 1
            } else {
                v[i as usize % v.len()]
            }
        };
        match r {
            IdRef::Live(i) => pick(self.live_ids(), i),
            IdRef::Top(i) => pick(self.top_ids(), i),
            IdRef::Removed(i) => {
                if self.removed.is_empty() {
                    self.max_id + 1 + u64::from(i)
                } else {
                    self.removed[i as usize % self.removed.len()]
                }
            }
            IdRef::Zero => 0,
            IdRef::Max => u64::MAX,
            IdRef::Random(x) => x,
        }
    }

    /// The job and its descendants.
    fn subtree(&self, id: u64) -> Vec<u64> {
        match self.jobs.get(&id).map(|j| &j.kind) {
            Some(Kind::Parallel { children, .. }) => {
                let mut v = vec![id];
                v.extend(children);
                v
            }
            Some(_) => vec![id],
            None => Vec::new(),
        }
    }

    fn parent_of(&self, id: u64) -> Option<u64> {
        match self.jobs.get(&id)?.kind {
            Kind::Child { parent, .. } => Some(parent),
            _ => None,
        }
    }

    fn is_process(&self, id: u64) -> bool {
        matches!(
            self.jobs.get(&id).map(|j| &j.kind),
            Some(Kind::Process { .. })
        )
    }

    fn behaviour_of(&self, id: u64) -> Option<Behaviour> {
        match self.jobs.get(&id)?.kind {
            Kind::Thread { behaviour, .. }
            | Kind::Parallel { behaviour, .. }
            | Kind::Child { behaviour, .. } => Some(behaviour),
            Kind::Process { .. } => None,
        }
    }

    /// How many records job `w` wrote, if that is known for sure (its work's count, or
    /// what a finished process printed).
    fn written_known(&self, w: u64) -> Option<u64> {
        let j = self.jobs.get(&w)?;
        match j.kind {
            Kind::Thread { .. } | Kind::Child { .. } => Some(written(w)),
            Kind::Parallel { .. } => Some(0),
            Kind::Process { program } => match (program, j.finished) {
                (Program::Echo, Some(COMPLETED)) => Some(1),
                (Program::True, Some(COMPLETED)) | (Program::False, Some(FAILED)) => Some(0),
                _ => None,
            },
        }
    }

    fn mark_stop(&mut self, id: u64) {
        for j in self.subtree(id) {
            if let Some(m) = self.jobs.get_mut(&j) {
                m.stop_asked = true;
            }
        }
    }

    // ----- calls -----

    /// Makes this thread's last error a known one, so that a failure that sets no message
    /// of its own shows.
    fn arm(&mut self) {
        let st = bgjob_unregister(0, SENTINEL_REG);
        if self.sentinel.is_empty() && st == BGJOB_E_INVALID_ARGUMENT {
            self.sentinel = last_error();
        }
    }

    /// `st` must be one of `allowed`; a failure must come with a message of its own.
    fn check(&self, what: &str, st: u32, allowed: &[u32]) -> R<u32> {
        let f = what.split(['(', ' ']).next().unwrap_or(what).to_string();
        *lock(&CALLS).entry((f, st)).or_insert(0) += 1;
        ensure!(
            st <= BGJOB_E_SYSTEM,
            "{what}: status {st} is not a documented code"
        );
        ensure!(
            allowed.contains(&st),
            "{what}: gave {} ({}), expected one of {:?}",
            status_text(st),
            if st == BGJOB_OK {
                String::new()
            } else {
                last_error()
            },
            allowed.iter().map(|&s| status_text(s)).collect::<Vec<_>>()
        );
        if st != BGJOB_OK {
            let msg = last_error();
            ensure!(
                !msg.is_empty() && msg != self.sentinel,
                "{what}: failed with {} but set no message of its own (message: {msg:?})",
                status_text(st)
            );
        }
        Ok(st)
    }

    /// Arms the sentinel, makes the call, checks its status.
    fn call(&mut self, what: &str, allowed: &[u32], f: impl FnOnce() -> u32) -> R<u32> {
        self.arm();
        let st = f();
        self.check(what, st, allowed)
    }

    fn new_work_token(&mut self, p: WorkParams) -> u64 {
        let t = new_token(Token::Work(p));
        self.tokens.push((t, "work".into()));
        t
    }

    fn new_cb_token(&mut self, p: CallbackParams, what: &str) -> u64 {
        let t = new_token(Token::Callback(p));
        self.tokens.push((t, what.into()));
        t
    }

    fn state_of(&mut self, id: u64) -> R<Option<u32>> {
        let mut s = u32::MAX;
        let st = self.call(
            &format!("get_state({id})"),
            &[BGJOB_OK, BGJOB_E_NO_SUCH_JOB],
            // SAFETY: a writable out-pointer.
            || unsafe { bgjob_get_state(id, &mut s) },
        )?;
        if st != BGJOB_OK {
            return Ok(None);
        }
        ensure!(s <= 10, "get_state({id}) gave state {s}, out of range");
        Ok(Some(s))
    }

    /// The expected status of a call on `id` that looks the job up: NO_SUCH_JOB unless it
    /// is alive.
    fn known(&self, id: u64) -> bool {
        self.jobs.contains_key(&id)
    }

    // ----- invariants checked after every step -----

    fn list(&mut self, children: bool) -> R<Vec<u64>> {
        // SAFETY: out-pointers writable; the filter and list are freed below.
        unsafe {
            let mut f: *mut bgjob_filter = null_mut();
            self.call("filter_new", &[BGJOB_OK], || bgjob_filter_new(&mut f))?;
            self.call("filter_set_include_children", &[BGJOB_OK], || {
                bgjob_filter_set_include_children(f, children)
            })?;
            let mut l: *mut bgjob_job_list = null_mut();
            let r = self.call("get_jobs", &[BGJOB_OK], || bgjob_get_jobs(f, &mut l));
            bgjob_filter_free(f);
            r?;
            let v = list_ids(l);
            bgjob_job_list_free(l);
            Ok(v)
        }
    }

    fn check_world(&mut self) -> R {
        let v = std::mem::take(&mut *lock(&VIOLATIONS));
        ensure!(
            v.is_empty(),
            "broken promises seen by works/callbacks: {v:#?}"
        );
        let volatile = self.volatile_ids();
        let listed: Vec<u64> = self
            .list(true)?
            .into_iter()
            .filter(|i| !volatile.contains(i))
            .collect();
        let live = self.live_ids();
        ensure!(
            listed == live,
            "the repository lists {listed:?}, the model expects {live:?}"
        );
        // A removed id gives NO_SUCH_JOB for ever.
        for id in self.removed.clone() {
            ensure!(
                self.state_of(id)?.is_none(),
                "job {id} was removed but get_state finds it again"
            );
        }
        for id in volatile {
            if self.state_of(id)?.is_none() {
                // It removed itself.
                self.jobs.remove(&id);
                self.removed.push(id);
            }
        }
        for id in live {
            match self.state_of(id)? {
                None => return Err(format!("job {id} is alive but get_state says no such job")),
                Some(s) => self.observe(id, s)?,
            }
        }
        Ok(())
    }

    /// Records the state a job was seen in: a finished state must be one its work allows,
    /// and never changes.
    fn observe(&mut self, id: u64, s: u32) -> R {
        let Some(j) = self.jobs.get(&id) else {
            return Ok(());
        };
        if let Some(f) = j.finished {
            ensure!(
                s == f,
                "job {id} was seen {} and is now {}: a finished state changed",
                sname(f),
                sname(s)
            );
            return Ok(());
        }
        if !finished(s) {
            return Ok(());
        }
        let stop = j.stop_asked
            || self
                .parent_of(id)
                .and_then(|p| self.jobs.get(&p))
                .is_some_and(|p| p.stop_asked)
            || self
                .subtree(id)
                .iter()
                .any(|c| self.jobs.get(c).is_some_and(|c| c.stop_asked));
        let mut allowed: Vec<u32> = match &j.kind {
            Kind::Thread { behaviour, .. }
            | Kind::Parallel { behaviour, .. }
            | Kind::Child { behaviour, .. } => match behaviour {
                Behaviour::Complete | Behaviour::Checkpoints | Behaviour::AskInput => {
                    vec![COMPLETED]
                }
                Behaviour::ReturnCode(_) | Behaviour::FailReason | Behaviour::SelftestPanic => {
                    vec![FAILED]
                }
                Behaviour::WaitStop => vec![],
            },
            Kind::Process { program } => match program {
                Program::True | Program::Echo => vec![COMPLETED],
                Program::False | Program::Missing => vec![FAILED],
            },
        };
        if stop {
            allowed.push(STOPPED);
        }
        ensure!(
            allowed.contains(&s),
            "job {id} ({:?}) ended {}; allowed: {:?}",
            j.kind,
            sname(s),
            allowed.iter().map(|&a| sname(a)).collect::<Vec<_>>()
        );
        let kind = j.kind.clone();
        let info = self.info(id)?;
        let reason = info.reason.clone();
        match (s, &kind) {
            (COMPLETED, _) => ensure!(
                reason.is_none(),
                "job {id} Completed with a reason {reason:?}"
            ),
            (FAILED, Kind::Thread { behaviour, .. } | Kind::Child { behaviour, .. }) => {
                let want = match behaviour {
                    Behaviour::ReturnCode(rc) => format!("the work returned {rc}"),
                    Behaviour::FailReason => FAIL_REASON.to_string(),
                    Behaviour::SelftestPanic => format!("the work returned {BGJOB_E_PANIC}"),
                    _ => String::new(),
                };
                ensure!(
                    reason.as_deref() == Some(want.as_str()),
                    "job {id} Failed with reason {reason:?}, expected {want:?}"
                );
            }
            (FAILED, Kind::Parallel { .. }) => ensure!(
                reason
                    .as_deref()
                    .is_some_and(|r| r.starts_with("a child job failed: ")),
                "parallel job {id} Failed with reason {reason:?}"
            ),
            (FAILED, Kind::Process { program }) => {
                let ok = match program {
                    Program::False => reason.as_deref() == Some("exited with code 1"),
                    _ => reason
                        .as_deref()
                        .is_some_and(|r| r.contains("cannot start")),
                };
                ensure!(
                    ok,
                    "process job {id} ({program:?}) Failed with reason {reason:?}"
                );
            }
            _ => {}
        }
        ensure!(
            info.end_ns != 0 && (info.begin_ns == 0 || info.end_ns >= info.begin_ns),
            "finished job {id}: begin {} end {}",
            info.begin_ns,
            info.end_ns
        );
        if let Kind::Thread { work, .. } = kind {
            if info.begin_ns != 0 {
                // It ran: its user data was finalized before the finished state.
                ensure!(
                    finalized(work) == 1,
                    "thread job {id} is {} but its work's user data (token {work}) was \
                     finalized {} times",
                    sname(s),
                    finalized(work)
                );
            }
        }
        if let Some(m) = self.jobs.get_mut(&id) {
            m.finished = Some(s);
        }
        Ok(())
    }

    fn info(&mut self, id: u64) -> R<Info> {
        let mut p: *mut bgjob_job_info = null_mut();
        // SAFETY: a writable out-pointer.
        self.call(&format!("get_job({id})"), &[BGJOB_OK], || unsafe {
            bgjob_get_job(id, &mut p)
        })?;
        // SAFETY: a live snapshot, freed here.
        let info = unsafe { Info::of(p) };
        // SAFETY: as above.
        unsafe { bgjob_job_info_free(p) };
        Ok(info)
    }

    /// After a stop or wait reported `id` done: the callbacks of its current state ran.
    fn check_callbacks_ran(&mut self, what: &str, id: u64) -> R {
        let Some(s) = self.state_of(id)? else {
            return Ok(());
        };
        self.observe(id, s)?;
        let Some(tok) = self.jobs.get(&id).and_then(|j| j.spec_cb) else {
            return Ok(());
        };
        let seen = lock(&SEEN).get(&(tok, id)).copied();
        ensure!(
            seen.map(|(_, last)| last) == Some(s),
            "{what}: job {id} is done ({}) but its spec callback has seen only up to {:?}",
            sname(s),
            seen.map(|(_, last)| sname(last))
        );
        Ok(())
    }

    // ----- removal -----

    /// The job (a top-level one) was removed: check it is gone with everything it held.
    fn removed_job(&mut self, id: u64, what: &str) -> R {
        let ids = self.subtree(id);
        for &j in &ids {
            let m = self.jobs.remove(&j).expect("in the model");
            self.removed.push(j);
            if let Some(i) = m.instance {
                self.removed_instances.push(i);
            }
            match m.kind {
                Kind::Thread { work, .. } | Kind::Parallel { work, .. } => ensure!(
                    finalized(work) == 1,
                    "{what}: job {j} removed but its work's user data (token {work}) \
                     finalized {} times",
                    finalized(work)
                ),
                _ => {}
            }
            if let Some(t) = m.spec_cb {
                ensure!(
                    finalized(t) == 1,
                    "{what}: job {j} removed but its spec callback's user data (token {t}) \
                     finalized {} times",
                    finalized(t)
                );
                let seen = lock(&SEEN).get(&(t, j)).copied();
                if let Some((first, last)) = seen {
                    ensure!(
                        first == NOT_STARTED && finished(last),
                        "{what}: job {j} removed; its spec callback saw {} .. {}",
                        sname(first),
                        sname(last)
                    );
                } else {
                    return Err(format!(
                        "{what}: job {j} removed and its spec callback never ran"
                    ));
                }
            }
            for r in &mut self.job_regs {
                if r.job == j {
                    r.unregistered = true;
                }
            }
            let s = self.state_of(j)?;
            ensure!(
                s.is_none(),
                "{what}: job {j} removed but get_state finds it"
            );
        }
        Ok(())
    }

    // ----- records -----

    /// Checks a batch a receive of `target` returned and, for a consuming one, counts
    /// what it took. The caller holds CONSUMED (passed in).
    unsafe fn check_batch(
        &self,
        what: &str,
        target: u64,
        recs: *mut bgjob_records,
        keep: bool,
        max: usize,
        consumed: &mut BTreeMap<u64, u64>,
    ) -> R {
        // SAFETY: a live batch.
        let n = unsafe { bgjob_records_count(recs) };
        if max > 0 {
            ensure!(n <= max, "{what}: {n} records, more than max {max}");
        }
        // SAFETY: as above.
        ensure!(
            unsafe { bgjob_records_get(recs, n) }.is_null(),
            "{what}: records_get past the end is not NULL"
        );
        let writers: BTreeSet<u64> = self.subtree(target).into_iter().collect();
        let mut next = consumed.clone();
        let mut last_seq = 0u64;
        for i in 0..n {
            // SAFETY: in range of a live batch.
            let p = unsafe { bgjob_records_get(recs, i) };
            ensure!(!p.is_null(), "{what}: record {i} of {n} is NULL");
            // SAFETY: non-NULL, valid until the batch is freed.
            let r = unsafe { &*p };
            ensure!(
                i == 0 || r.sequence > last_seq,
                "{what}: record {i} has sequence {} after {last_seq} (not in time order)",
                r.sequence
            );
            last_seq = r.sequence;
            ensure!(
                writers.contains(&r.job_id),
                "{what}: a record of job {} in a receive of {target}",
                r.job_id
            );
            ensure!(r.stream <= 6, "{what}: stream {}", r.stream);
            ensure!(r.time_ns > 0, "{what}: record time {}", r.time_ns);
            ensure!(!r.data.is_null(), "{what}: record {i} has no data");
            // SAFETY: `len` bytes and a NUL at `data`.
            ensure!(
                unsafe { *r.data.add(r.len) } == 0,
                "{what}: record {i} not followed by a NUL"
            );
            if r.stream == 6 {
                ensure!(
                    (-1..=100).contains(&r.percent_complete) && !r.activity.is_null(),
                    "{what}: progress record {i}: percent {} activity NULL {}",
                    r.percent_complete,
                    r.activity.is_null()
                );
                // SAFETY: NUL-terminated, in the batch.
                let act = unsafe { CStr::from_ptr(r.activity) };
                ensure!(act == c"act", "{what}: progress activity {act:?}");
            } else {
                ensure!(
                    r.percent_complete == -1 && r.activity.is_null(),
                    "{what}: a non-progress record with percent {}",
                    r.percent_complete
                );
            }
            // SAFETY: a live record.
            let Some((w, k)) = (unsafe { parse_record(r) }) else {
                // SAFETY: `len` bytes at `data`.
                let data = unsafe { std::slice::from_raw_parts(r.data, r.len) };
                return Err(format!(
                    "{what}: a record not written by a work: {:?}",
                    String::from_utf8_lossy(data)
                ));
            };
            ensure!(
                w == r.job_id,
                "{what}: record {k} of job {w} says it came from job {}",
                r.job_id
            );
            if self.is_process(w) {
                ensure!(
                    r.stream == 0,
                    "{what}: process output on stream {}",
                    r.stream
                );
            }
            let e = next.entry(w).or_insert(0);
            ensure!(
                k == *e,
                "{what}: job {w}'s record {k} where its record {} was due (lost, \
                 received twice or out of order)",
                *e
            );
            *e += 1;
        }
        if !keep {
            *consumed = next;
        }
        Ok(())
    }

    /// For a finished job: every record its subtree wrote has been consumed.
    fn check_drained(&self, what: &str, id: u64, consumed: &BTreeMap<u64, u64>) -> R {
        for w in self.subtree(id) {
            if let Some(n) = self.written_known(w) {
                let c = consumed.get(&w).copied().unwrap_or(0);
                ensure!(
                    c == n,
                    "{what}: job {w} wrote {n} records, {c} were received"
                );
            }
        }
        Ok(())
    }
}

unsafe fn list_ids(l: *const bgjob_job_list) -> Vec<u64> {
    // SAFETY: a live list.
    unsafe {
        (0..bgjob_job_list_count(l))
            .map(|i| bgjob_job_list_get(l, i))
            .collect()
    }
}

#[derive(Debug)]
struct Info {
    id: u64,
    parent: u64,
    instance: String,
    name: String,
    command: String,
    type_name: String,
    location: String,
    state: u32,
    reason: Option<String>,
    begin_ns: i64,
    end_ns: i64,
    has_more: bool,
    children: Vec<u64>,
}

impl Info {
    unsafe fn of(p: *const bgjob_job_info) -> Info {
        // SAFETY: a live snapshot; its strings are NUL-terminated.
        unsafe {
            let s = |c: *const c_char| {
                if c.is_null() {
                    "<NULL>".to_string()
                } else {
                    CStr::from_ptr(c).to_string_lossy().into_owned()
                }
            };
            Info {
                id: bgjob_job_info_id(p),
                parent: bgjob_job_info_parent_id(p),
                instance: s(bgjob_job_info_instance_id(p)),
                name: s(bgjob_job_info_name(p)),
                command: s(bgjob_job_info_command(p)),
                type_name: s(bgjob_job_info_type_name(p)),
                location: s(bgjob_job_info_location(p)),
                state: bgjob_job_info_state(p),
                reason: reason_of(bgjob_job_info_reason(p)),
                begin_ns: bgjob_job_info_begin_time_ns(p),
                end_ns: bgjob_job_info_end_time_ns(p),
                has_more: bgjob_job_info_has_more_data(p),
                children: (0..bgjob_job_info_child_count(p))
                    .map(|i| bgjob_job_info_child_id(p, i))
                    .collect(),
            }
        }
    }
}

fn instance_ok(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 36
        && b.iter().enumerate().all(|(i, &c)| match i {
            8 | 13 | 18 | 23 => c == b'-',
            14 => c == b'4',
            19 => matches!(c, b'8' | b'9' | b'a' | b'b'),
            _ => c.is_ascii_digit() || (b'a'..=b'f').contains(&c),
        })
}

/// Wildcards as bgjob documents them (`*`, `?`, `[a-z]`), case-insensitive (ASCII here).
fn glob(p: &[u8], s: &[u8]) -> bool {
    match p.first() {
        None => s.is_empty(),
        Some(b'*') => (0..=s.len()).any(|i| glob(&p[1..], &s[i..])),
        Some(b'?') => !s.is_empty() && glob(&p[1..], &s[1..]),
        Some(b'[') => {
            let Some(end) = p.iter().position(|&c| c == b']') else {
                return false;
            };
            let set = &p[1..end];
            let Some(&c) = s.first() else {
                return false;
            };
            let c = c.to_ascii_lowercase();
            let mut hit = false;
            let mut i = 0;
            while i < set.len() {
                if i + 2 < set.len() && set[i + 1] == b'-' {
                    hit |= (set[i].to_ascii_lowercase()..=set[i + 2].to_ascii_lowercase())
                        .contains(&c);
                    i += 3;
                } else {
                    hit |= set[i].to_ascii_lowercase() == c;
                    i += 1;
                }
            }
            hit && glob(&p[end + 1..], &s[1..])
        }
        Some(&c) => !s.is_empty() && c.eq_ignore_ascii_case(&s[0]) && glob(&p[1..], &s[1..]),
    }
}

impl Pattern {
    /// The pattern's bytes, or None for NULL.
    fn bytes(self) -> Option<Vec<u8>> {
        Some(match self {
            Pattern::Star => b"*".to_vec(),
            Pattern::Exact(i) => format!("fz-{}", i % 10).into_bytes(),
            Pattern::Upper(i) => format!("FZ-{}", i % 10).into_bytes(),
            Pattern::Prefix => b"fz-*".to_vec(),
            Pattern::JobPrefix => b"job*".to_vec(),
            Pattern::Bracket => b"fz-[0-4]*".to_vec(),
            Pattern::Question => b"fz-?".to_vec(),
            Pattern::Cmd => b"cmd-*".to_vec(),
            Pattern::Echo => b"ECHO *".to_vec(),
            Pattern::InvalidUtf8 => b"fz-\xff*".to_vec(),
            Pattern::Null => return None,
        })
    }

    fn valid(self) -> bool {
        !matches!(self, Pattern::InvalidUtf8 | Pattern::Null)
    }
}

impl NameArg {
    /// What to pass to `bgjob_spec_set_name` (None: do not call it; Some(None): NULL).
    fn arg(self) -> Option<Option<Vec<u8>>> {
        match self {
            NameArg::Default => None,
            NameArg::Fz(i) => Some(Some(format!("fz-{}", i % 10).into_bytes())),
            NameArg::FzUpper(i) => Some(Some(format!("FZ-{}", i % 10).into_bytes())),
            NameArg::Empty => Some(Some(Vec::new())),
            NameArg::InvalidUtf8 => Some(Some(b"fz-\xc3\x28".to_vec())),
            NameArg::Null => Some(None),
        }
    }

    /// The command a thread job gets with this name (None: none set).
    fn command(self) -> Option<String> {
        match self {
            NameArg::Fz(i) | NameArg::FzUpper(i) => Some(format!("cmd-{}", i % 10)),
            _ => None,
        }
    }
}

impl Timeout {
    /// The milliseconds to pass: no limit (or a huge one) only where the call cannot block
    /// for ever (`safe`), 50 ms otherwise.
    fn ms(self, safe: bool) -> i64 {
        match self {
            Timeout::Ms(n) => i64::from(n.min(50)),
            Timeout::Negative(v) => v.min(-2),
            Timeout::Infinite if safe => -1,
            Timeout::Huge if safe => i64::MAX,
            Timeout::Infinite | Timeout::Huge => 50,
        }
    }
}

fn program_argv(p: Program) -> Vec<CString> {
    let v: &[&str] = match p {
        Program::True => &["true"],
        Program::False => &["false"],
        Program::Echo => &["echo", "p"],
        Program::Missing => &["/nonexistent/bgjob-fuzz-program"],
    };
    v.iter()
        .map(|s| CString::new(*s).expect("no NUL"))
        .collect()
}

fn program_command(p: Program) -> String {
    match p {
        Program::True => "true".into(),
        Program::False => "false".into(),
        Program::Echo => "echo p".into(),
        Program::Missing => "/nonexistent/bgjob-fuzz-program".into(),
    }
}

// ----- running one operation --------------------------------------------------------------

impl Model {
    /// Sets the spec's name as `name` says; returns the name the job should have (None:
    /// the default `Job<id>`).
    unsafe fn set_name(&mut self, spec: *mut bgjob_spec, name: NameArg) -> R<Option<String>> {
        let Some(arg) = name.arg() else {
            return Ok(None);
        };
        let c = arg.map(|b| CString::new(b).expect("no NUL"));
        let valid = c.as_ref().is_some_and(|c| c.to_str().is_ok());
        let ptr = c.as_ref().map_or(null(), |c| c.as_ptr());
        self.call(
            &format!("spec_set_name({name:?})"),
            &[if valid {
                BGJOB_OK
            } else {
                BGJOB_E_INVALID_ARGUMENT
            }],
            // SAFETY: a live spec; NULL or a NUL-terminated name.
            || unsafe { bgjob_spec_set_name(spec, ptr) },
        )?;
        Ok(if valid {
            c.map(|c| c.into_string().expect("UTF-8"))
        } else {
            None
        })
    }

    /// Adds a spec callback; returns its token.
    unsafe fn add_spec_cb(&mut self, spec: *mut bgjob_spec, p: CallbackParams) -> R<u64> {
        let t = self.new_cb_token(p, "spec callback");
        self.call("spec_on_state_changed", &[BGJOB_OK], || {
            // SAFETY: a live spec.
            unsafe {
                bgjob_spec_on_state_changed(spec, Some(on_change), t as *mut c_void, Some(finalize))
            }
        })?;
        Ok(t)
    }

    /// A started job's spec callback if the case asks for one (`wanted`): it hears the
    /// spec's one job from NotStarted on and removes nothing. Its token, if added.
    unsafe fn spec_cb_if(
        &mut self,
        spec: *mut bgjob_spec,
        wanted: bool,
        thread_work: Option<u64>,
        records_known: bool,
    ) -> R<Option<u64>> {
        if !wanted {
            return Ok(None);
        }
        let p = CallbackParams {
            spec: true,
            job: None,
            thread_work,
            records_known,
            self_remove: None,
        };
        // SAFETY: a live spec, as the caller's own contract says.
        unsafe { self.add_spec_cb(spec, p) }.map(Some)
    }

    /// Sets a filter's name or command pattern `p` with `set` (named `what`), which refuses
    /// NULL and invalid UTF-8; the pattern the filter then holds, if it took it.
    unsafe fn set_filter_pattern(
        &mut self,
        f: *mut bgjob_filter,
        p: Pattern,
        what: &str,
        set: unsafe extern "C" fn(*mut bgjob_filter, *const c_char) -> u32,
    ) -> R<Option<Vec<u8>>> {
        let c = p.bytes().map(|b| CString::new(b).expect("no NUL"));
        let ptr = c.as_ref().map_or(null(), |c| c.as_ptr());
        let want = if p.valid() {
            BGJOB_OK
        } else {
            BGJOB_E_INVALID_ARGUMENT
        };
        // SAFETY: a live filter; the pattern outlives the call.
        self.call(&format!("{what}({p:?})"), &[want], || unsafe {
            set(f, ptr)
        })?;
        Ok(if p.valid() { p.bytes() } else { None })
    }

    fn new_spec(&mut self) -> R<*mut bgjob_spec> {
        let mut spec: *mut bgjob_spec = null_mut();
        // SAFETY: a writable out-pointer.
        self.call("spec_new", &[BGJOB_OK], || unsafe {
            bgjob_spec_new(&mut spec)
        })?;
        ensure!(!spec.is_null(), "spec_new gave NULL");
        Ok(spec)
    }

    /// A job was started with id `id`: the ids must go up.
    fn new_id(&mut self, id: u64, children: u64) -> R {
        ensure!(
            id > self.max_id,
            "a new job got id {id}, not above the last one {}",
            self.max_id
        );
        self.max_id = id + children;
        Ok(())
    }

    /// Tokens that a failed call must have finalized at once.
    fn all_finalized_now(&self, what: &str, tokens: &[u64]) -> R {
        for &t in tokens {
            ensure!(
                finalized(t) == 1,
                "{what}: user data (token {t}) finalized {} times, expected once at once",
                finalized(t)
            );
        }
        Ok(())
    }

    /// Whether the operation names a volatile job (it is then skipped).
    fn names_volatile(&self, op: &Op) -> bool {
        let ids: Vec<IdRef> = match op {
            Op::GetState { id, .. }
            | Op::GetJob { id, .. }
            | Op::ByInstanceId { id, .. }
            | Op::Receive { id, .. }
            | Op::Stop { id, .. }
            | Op::Remove { id, .. }
            | Op::Suspend(id)
            | Op::Resume(id)
            | Op::SendInput { id, .. }
            | Op::OnStateChanged { id, .. }
            | Op::Unregister(Unreg::Bogus(id, _))
            | Op::RaceReceive { id, .. }
            | Op::RaceRemove { id, .. }
            | Op::RaceStopRemove { id, .. } => vec![*id],
            Op::Wait { ids, .. } => ids.clone(),
            _ => vec![],
        };
        ids.into_iter().any(|r| self.volatile(self.resolve(r)))
    }

    fn run(&mut self, op: &Op) -> R {
        if self.names_volatile(op) {
            return Ok(());
        }
        match *op {
            Op::StartThread {
                behaviour,
                records,
                salt,
                name,
                spec_cb,
                how,
                bad_calls,
                self_remove,
            } => self.start_thread(
                behaviour,
                records,
                salt,
                name,
                spec_cb,
                how,
                bad_calls,
                self_remove,
            ),
            Op::StartParallel {
                behaviour,
                records,
                inputs,
                empty_input,
                throttle,
                name,
                spec_cb,
                bad_calls,
            } => self.start_parallel(
                behaviour,
                records,
                inputs,
                empty_input,
                throttle,
                name,
                spec_cb,
                bad_calls,
            ),
            Op::StartProcess {
                program,
                name,
                spec_cb,
                grace,
                mode,
            } => self.start_process(program, name, spec_cb, grace, mode),
            Op::RunInline {
                behaviour,
                records,
                program,
                spec_cb,
            } => self.run_inline(behaviour, records, program, spec_cb),
            Op::BadStart(b) => self.bad_start(b),
            Op::GetState { id, null_out } => {
                let id = self.resolve(id);
                if null_out {
                    // SAFETY: NULL is refused.
                    self.call(
                        "get_state(NULL out)",
                        &[BGJOB_E_INVALID_ARGUMENT],
                        || unsafe { bgjob_get_state(id, null_mut()) },
                    )?;
                    return Ok(());
                }
                let s = self.state_of(id)?;
                ensure!(
                    s.is_some() == self.known(id),
                    "get_state({id}): found {} but the model says {}",
                    s.is_some(),
                    self.known(id)
                );
                if let Some(s) = s {
                    self.observe(id, s)?;
                }
                Ok(())
            }
            Op::GetJob { id, null_out } => self.get_job(id, null_out),
            Op::ByInstanceId { id, form } => self.by_instance(id, form),
            Op::GetJobs {
                name,
                command,
                state,
                has_more,
                newest,
                children,
                null_filter,
                null_out,
            } => self.get_jobs(
                name,
                command,
                state,
                has_more,
                newest,
                children,
                null_filter,
                null_out,
            ),
            Op::Receive {
                id,
                flags,
                max,
                timeout,
                null_out,
            } => self.receive(id, flags, max, timeout, null_out),
            Op::Wait {
                ref ids,
                mode,
                timeout,
                null_ids,
                null_done,
                null_count,
            } => self.wait(ids, mode, timeout, null_ids, null_done, null_count),
            Op::Stop { id, timeout } => self.stop(id, timeout),
            Op::Remove { id, force } => self.remove(id, force),
            Op::Suspend(id) => self.suspend(id),
            Op::Resume(id) => {
                let id = self.resolve(id);
                let want = if self.known(id) {
                    BGJOB_OK
                } else {
                    BGJOB_E_NO_SUCH_JOB
                };
                self.call(&format!("resume({id})"), &[want], || bgjob_resume(id))?;
                Ok(())
            }
            Op::SendInput {
                id,
                empty,
                null_with_len,
            } => self.send_input(id, empty, null_with_len),
            Op::OnStateChanged {
                id,
                null_cb,
                null_out,
            } => self.on_state_changed(id, null_cb, null_out),
            Op::OnAnyStateChanged { null_cb } => self.on_any(null_cb),
            Op::Unregister(u) => self.unregister(u),
            Op::PoolNew {
                threads,
                throttle,
                null_out,
            } => self.pool_new(threads, throttle, null_out),
            Op::PoolShutdown { timeout, null_pool } => self.pool_shutdown(timeout, null_pool),
            Op::ConfigureDefaultPool { threads, throttle } => {
                self.call(
                    "configure_default_pool after first use",
                    &[BGJOB_E_ALREADY_INITIALIZED],
                    || bgjob_configure_default_pool(u32::from(threads), u32::from(throttle)),
                )?;
                Ok(())
            }
            Op::Names {
                state,
                status,
                stream,
            } => names(state, status, stream),
            Op::RaceReceive { id, threads, max } => self.race_receive(id, threads, max),
            Op::RaceRemove { id, force } => self.race_remove(id, force),
            Op::RaceStopRemove { id, timeout } => self.race_stop_remove(id, timeout),
            Op::Pause(ms) => {
                std::thread::sleep(Duration::from_millis(u64::from(ms)));
                Ok(())
            }
            Op::SelftestPanic { null_message } => {
                let msg = if null_message {
                    null()
                } else {
                    c"fuzz-selftest from the host".as_ptr()
                };
                // SAFETY: NULL or a NUL-terminated message.
                self.call("selftest_panic", &[BGJOB_E_PANIC], || unsafe {
                    bgjob_selftest_panic(msg)
                })?;
                let want = if null_message {
                    "selftest"
                } else {
                    "fuzz-selftest from the host"
                };
                ensure!(
                    last_error().contains(want),
                    "selftest_panic's message {:?} lacks {want:?}",
                    last_error()
                );
                Ok(())
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn start_thread(
        &mut self,
        behaviour: Behaviour,
        records: u8,
        salt: u8,
        name: NameArg,
        spec_cb: bool,
        how: StartHow,
        bad_calls: bool,
        self_remove: Option<SelfRemove>,
    ) -> R {
        let work = self.new_work_token(WorkParams {
            behaviour,
            records,
            salt,
            bad_calls,
            parallel: false,
            volatile: self_remove.is_some(),
        });
        let cbp = CallbackParams {
            spec: true,
            job: None,
            thread_work: Some(work),
            records_known: true,
            self_remove,
        };
        // start_fn has no spec to register the removing callback on.
        let how = if self_remove.is_some() {
            StartHow::Spec
        } else {
            how
        };
        let spec_cb = spec_cb || self_remove.is_some();
        let on_pool = matches!(how, StartHow::OnPool) && !self.pool.is_null();
        let shut = on_pool && self.pool_shut;
        let want = if shut { BGJOB_E_SHUT_DOWN } else { BGJOB_OK };
        let mut id = 0u64;
        let (expected_name, command, cb) = if let StartHow::StartFn = how {
            // SAFETY: a writable out-pointer; NULL pool = the default pool.
            self.call("start_fn", &[BGJOB_OK], || unsafe {
                bgjob_start_fn(
                    Some(work_fn),
                    work as *mut c_void,
                    Some(finalize),
                    null(),
                    &mut id,
                )
            })?;
            (None, None, None)
        } else {
            let spec = self.new_spec()?;
            // SAFETY (block): `spec` is live until bgjob_start consumes it.
            unsafe {
                let n = self.set_name(spec, name)?;
                let command = name.command();
                if let Some(c) = &command {
                    let c = CString::new(c.as_str()).expect("no NUL");
                    self.call("spec_set_command", &[BGJOB_OK], || {
                        bgjob_spec_set_command(spec, c.as_ptr())
                    })?;
                }
                self.call("spec_set_work", &[BGJOB_OK], || {
                    bgjob_spec_set_work(spec, Some(work_fn), work as *mut c_void, Some(finalize))
                })?;
                let cb = if spec_cb {
                    Some(self.add_spec_cb(spec, cbp)?)
                } else {
                    None
                };
                if on_pool {
                    let pool = self.pool;
                    self.call("spec_set_pool", &[BGJOB_OK], || {
                        bgjob_spec_set_pool(spec, pool)
                    })?;
                }
                self.call("start", &[want], || bgjob_start(spec, &mut id))?;
                (n, command, cb)
            }
        };
        if shut {
            let mut t = vec![work];
            t.extend(cb);
            return self.all_finalized_now("start on a shut-down pool", &t);
        }
        self.new_id(id, 0)?;
        self.jobs.insert(
            id,
            JobM {
                kind: Kind::Thread { work, behaviour },
                name: expected_name.unwrap_or_else(|| format!("Job{id}")),
                command: Some(command.unwrap_or_default()),
                spec_cb: cb,
                finished: None,
                stop_asked: false,
                on_pool,
                instance: None,
                volatile: self_remove.is_some(),
            },
        );
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    fn start_parallel(
        &mut self,
        behaviour: Behaviour,
        records: u8,
        inputs: u8,
        empty_input: bool,
        throttle: u8,
        name: NameArg,
        spec_cb: bool,
        bad_calls: bool,
    ) -> R {
        let work = self.new_work_token(WorkParams {
            behaviour,
            records,
            salt: inputs,
            bad_calls,
            parallel: true,
            volatile: false,
        });
        let spec = self.new_spec()?;
        let mut id = 0u64;
        let n_inputs = u64::from(inputs.clamp(1, 4)) + u64::from(empty_input);
        // SAFETY (block): `spec` is live until bgjob_start consumes it.
        let (expected_name, command, cb) = unsafe {
            let n = self.set_name(spec, name)?;
            let command = name.command();
            if let Some(c) = &command {
                let c = CString::new(c.as_str()).expect("no NUL");
                self.call("spec_set_command", &[BGJOB_OK], || {
                    bgjob_spec_set_command(spec, c.as_ptr())
                })?;
            }
            self.call("spec_set_work", &[BGJOB_OK], || {
                bgjob_spec_set_work(spec, Some(work_fn), work as *mut c_void, Some(finalize))
            })?;
            for i in 0..inputs.clamp(1, 4) {
                let b = format!("in:{i}");
                self.call("spec_add_input", &[BGJOB_OK], || {
                    bgjob_spec_add_input(spec, b.as_ptr().cast(), b.len())
                })?;
            }
            if empty_input {
                self.call("spec_add_input(NULL, 0)", &[BGJOB_OK], || {
                    bgjob_spec_add_input(spec, null(), 0)
                })?;
            }
            self.call("spec_set_throttle_limit", &[BGJOB_OK], || {
                bgjob_spec_set_throttle_limit(spec, u32::from(throttle))
            })?;
            let cb = self.spec_cb_if(spec, spec_cb, None, true)?;
            self.call("start (parallel)", &[BGJOB_OK], || {
                bgjob_start(spec, &mut id)
            })?;
            (n, command, cb)
        };
        self.new_id(id, n_inputs)?;
        let children: Vec<u64> = (id + 1..=id + n_inputs).collect();
        self.jobs.insert(
            id,
            JobM {
                kind: Kind::Parallel {
                    work,
                    behaviour,
                    children: children.clone(),
                },
                name: expected_name.unwrap_or_else(|| format!("Job{id}")),
                command: Some(command.unwrap_or_default()),
                spec_cb: cb,
                finished: None,
                stop_asked: false,
                on_pool: false,
                instance: None,
                volatile: false,
            },
        );
        for c in children {
            self.jobs.insert(
                c,
                JobM {
                    kind: Kind::Child {
                        parent: id,
                        behaviour,
                    },
                    name: format!("Job{c}"),
                    command: None,
                    spec_cb: None,
                    finished: None,
                    stop_asked: false,
                    on_pool: false,
                    instance: None,
                    volatile: false,
                },
            );
        }
        let info = self.info(id)?;
        let want: Vec<u64> = (id + 1..=id + n_inputs).collect();
        ensure!(
            info.children == want,
            "parallel job {id}: children {:?}, expected {want:?}",
            info.children
        );
        Ok(())
    }

    fn start_process(
        &mut self,
        program: Program,
        name: NameArg,
        spec_cb: bool,
        grace: i64,
        mode: u32,
    ) -> R {
        let spec = self.new_spec()?;
        let argv = program_argv(program);
        let ptrs: Vec<*const c_char> = argv.iter().map(|a| a.as_ptr()).collect();
        let mut id = 0u64;
        // SAFETY (block): `spec` is live until bgjob_start consumes it; argv outlives it.
        let (expected_name, cb) = unsafe {
            let n = self.set_name(spec, name)?;
            self.call("spec_set_argv", &[BGJOB_OK], || {
                bgjob_spec_set_argv(spec, ptrs.as_ptr(), ptrs.len())
            })?;
            let want = if grace < 0 {
                BGJOB_E_INVALID_ARGUMENT
            } else {
                BGJOB_OK
            };
            self.call(&format!("spec_set_stop_grace({grace})"), &[want], || {
                bgjob_spec_set_stop_grace(spec, grace)
            })?;
            let want = if mode == 0 {
                BGJOB_OK
            } else {
                BGJOB_E_INVALID_ARGUMENT
            };
            self.call(&format!("spec_set_output_mode({mode})"), &[want], || {
                bgjob_spec_set_output_mode(spec, mode)
            })?;
            let cb = self.spec_cb_if(spec, spec_cb, None, false)?;
            self.call("start (process)", &[BGJOB_OK], || {
                bgjob_start(spec, &mut id)
            })?;
            (n, cb)
        };
        self.new_id(id, 0)?;
        self.jobs.insert(
            id,
            JobM {
                kind: Kind::Process { program },
                name: expected_name.unwrap_or_else(|| format!("Job{id}")),
                command: Some(program_command(program)),
                spec_cb: cb,
                finished: None,
                stop_asked: false,
                on_pool: false,
                instance: None,
                volatile: false,
            },
        );
        Ok(())
    }

    fn run_inline(
        &mut self,
        behaviour: Behaviour,
        records: u8,
        program: Option<Program>,
        spec_cb: bool,
    ) -> R {
        // Work that waits for a stop or for input would block this thread for ever.
        let behaviour = match behaviour {
            Behaviour::WaitStop | Behaviour::AskInput => Behaviour::Complete,
            b => b,
        };
        let spec = self.new_spec()?;
        let mut id = 0u64;
        let (kind, cb) = match program {
            Some(p) => {
                let argv = program_argv(p);
                let ptrs: Vec<*const c_char> = argv.iter().map(|a| a.as_ptr()).collect();
                // SAFETY: a live spec; argv outlives the call.
                self.call("spec_set_argv", &[BGJOB_OK], || unsafe {
                    bgjob_spec_set_argv(spec, ptrs.as_ptr(), ptrs.len())
                })?;
                // SAFETY: a live spec.
                let cb = unsafe { self.spec_cb_if(spec, spec_cb, None, false) }?;
                (Kind::Process { program: p }, cb)
            }
            None => {
                let work = self.new_work_token(WorkParams {
                    behaviour,
                    records,
                    salt: records,
                    bad_calls: false,
                    parallel: false,
                    volatile: false,
                });
                // SAFETY: a live spec.
                self.call("spec_set_work", &[BGJOB_OK], || unsafe {
                    bgjob_spec_set_work(spec, Some(work_fn), work as *mut c_void, Some(finalize))
                })?;
                // SAFETY: a live spec.
                let cb = unsafe { self.spec_cb_if(spec, spec_cb, Some(work), true) }?;
                (Kind::Thread { work, behaviour }, cb)
            }
        };
        // SAFETY: a live spec, consumed; a writable out-pointer.
        self.call("run_inline", &[BGJOB_OK], || unsafe {
            bgjob_run_inline(spec, &mut id)
        })?;
        self.new_id(id, 0)?;
        let command = match kind {
            Kind::Process { program } => program_command(program),
            _ => String::new(),
        };
        self.jobs.insert(
            id,
            JobM {
                kind,
                name: format!("Job{id}"),
                command: Some(command),
                spec_cb: cb,
                finished: None,
                stop_asked: false,
                on_pool: false,
                instance: None,
                volatile: false,
            },
        );
        // It returned once finished, after the callbacks of its finished state.
        let s = self.state_of(id)?;
        ensure!(
            s.is_some_and(finished),
            "run_inline returned with job {id} {:?}",
            s.map(sname)
        );
        self.check_callbacks_ran("run_inline", id)
    }

    fn bad_start(&mut self, b: BadStart) -> R {
        let what = format!("{b:?}");
        let mut id = 0u64;
        let plain_work = |m: &mut Model| {
            m.new_work_token(WorkParams {
                behaviour: Behaviour::Complete,
                records: 1,
                salt: 0,
                bad_calls: false,
                parallel: false,
                volatile: false,
            })
        };
        let echo = program_argv(Program::Echo);
        let echo_ptrs: Vec<*const c_char> = echo.iter().map(|a| a.as_ptr()).collect();
        // SAFETY (block): live specs until consumed or freed; NULL where the call refuses it.
        unsafe {
            match b {
                BadStart::NullSpec => {
                    self.call(&what, &[BGJOB_E_INVALID_ARGUMENT], || {
                        bgjob_start(null_mut(), &mut id)
                    })?;
                }
                BadStart::SpecNewNullOut => {
                    self.call(&what, &[BGJOB_E_INVALID_ARGUMENT], || {
                        bgjob_spec_new(null_mut())
                    })?;
                }
                BadStart::NullOutId
                | BadStart::NoWork
                | BadStart::ArgvAndWork
                | BadStart::ArgvAndInputs
                | BadStart::LocationOnThread
                | BadStart::GraceWithoutArgv
                | BadStart::MissingWorkDir
                | BadStart::InlineWithInputs => {
                    let spec = self.new_spec()?;
                    let mut tokens = Vec::new();
                    let with_work = !matches!(b, BadStart::NoWork | BadStart::ArgvAndInputs);
                    if with_work {
                        let w = plain_work(self);
                        tokens.push(w);
                        self.call("spec_set_work", &[BGJOB_OK], || {
                            bgjob_spec_set_work(
                                spec,
                                Some(work_fn),
                                w as *mut c_void,
                                Some(finalize),
                            )
                        })?;
                        let cb = self.add_spec_cb(
                            spec,
                            CallbackParams {
                                spec: true,
                                job: None,
                                thread_work: Some(w),
                                records_known: true,
                                self_remove: None,
                            },
                        )?;
                        tokens.push(cb);
                    }
                    if matches!(
                        b,
                        BadStart::ArgvAndWork | BadStart::ArgvAndInputs | BadStart::MissingWorkDir
                    ) {
                        self.call("spec_set_argv", &[BGJOB_OK], || {
                            bgjob_spec_set_argv(spec, echo_ptrs.as_ptr(), echo_ptrs.len())
                        })?;
                    }
                    if matches!(b, BadStart::ArgvAndInputs | BadStart::InlineWithInputs) {
                        self.call("spec_add_input", &[BGJOB_OK], || {
                            bgjob_spec_add_input(spec, c"in:x".as_ptr().cast(), 4)
                        })?;
                    }
                    if matches!(b, BadStart::LocationOnThread) {
                        self.call("spec_set_location", &[BGJOB_OK], || {
                            bgjob_spec_set_location(spec, c"far".as_ptr())
                        })?;
                    }
                    if matches!(b, BadStart::GraceWithoutArgv) {
                        self.call("spec_set_stop_grace", &[BGJOB_OK], || {
                            bgjob_spec_set_stop_grace(spec, 10)
                        })?;
                    }
                    if matches!(b, BadStart::MissingWorkDir) {
                        self.call("spec_set_working_directory", &[BGJOB_OK], || {
                            bgjob_spec_set_working_directory(
                                spec,
                                c"/nonexistent/bgjob-fuzz-dir".as_ptr(),
                            )
                        })?;
                    }
                    // Every one is refused (argv with work, in the missing directory's case).
                    let want = BGJOB_E_INVALID_ARGUMENT;
                    let out: *mut u64 = if matches!(b, BadStart::NullOutId) {
                        null_mut()
                    } else {
                        &raw mut id
                    };
                    if matches!(b, BadStart::InlineWithInputs) {
                        self.call(&what, &[want], || bgjob_run_inline(spec, out))?;
                    } else {
                        self.call(&what, &[want], || bgjob_start(spec, out))?;
                    }
                    self.all_finalized_now(&what, &tokens)?;
                }
                BadStart::ArgcZero | BadStart::ArgvNull | BadStart::InputNullWithLen => {
                    let spec = self.new_spec()?;
                    match b {
                        BadStart::ArgcZero => {
                            self.call(&what, &[BGJOB_E_INVALID_ARGUMENT], || {
                                bgjob_spec_set_argv(spec, echo_ptrs.as_ptr(), 0)
                            })?;
                        }
                        BadStart::ArgvNull => {
                            self.call(&what, &[BGJOB_E_INVALID_ARGUMENT], || {
                                bgjob_spec_set_argv(spec, null(), 2)
                            })?;
                        }
                        _ => {
                            self.call(&what, &[BGJOB_E_INVALID_ARGUMENT], || {
                                bgjob_spec_add_input(spec, null(), 3)
                            })?;
                        }
                    }
                    // The spec is unchanged (still empty): starting it is refused.
                    self.call(
                        "start of the unchanged spec",
                        &[BGJOB_E_INVALID_ARGUMENT],
                        || bgjob_start(spec, &mut id),
                    )?;
                }
                BadStart::StartFnNullWork => {
                    let w = plain_work(self);
                    self.call(&what, &[BGJOB_E_INVALID_ARGUMENT], || {
                        bgjob_start_fn(None, w as *mut c_void, Some(finalize), null(), &mut id)
                    })?;
                    self.all_finalized_now(&what, &[w])?;
                }
                BadStart::StartFnNullOut => {
                    let w = plain_work(self);
                    self.call(&what, &[BGJOB_E_INVALID_ARGUMENT], || {
                        bgjob_start_fn(
                            Some(work_fn),
                            w as *mut c_void,
                            Some(finalize),
                            null(),
                            null_mut(),
                        )
                    })?;
                    self.all_finalized_now(&what, &[w])?;
                }
                BadStart::FreeUnstarted | BadStart::SetWorkTwice => {
                    let spec = self.new_spec()?;
                    let w = plain_work(self);
                    self.call("spec_set_work", &[BGJOB_OK], || {
                        bgjob_spec_set_work(spec, Some(work_fn), w as *mut c_void, Some(finalize))
                    })?;
                    let cb = self.add_spec_cb(
                        spec,
                        CallbackParams {
                            spec: true,
                            job: None,
                            thread_work: Some(w),
                            records_known: true,
                            self_remove: None,
                        },
                    )?;
                    if matches!(b, BadStart::SetWorkTwice) {
                        let w2 = plain_work(self);
                        self.call("spec_set_work again", &[BGJOB_OK], || {
                            bgjob_spec_set_work(
                                spec,
                                Some(work_fn),
                                w2 as *mut c_void,
                                Some(finalize),
                            )
                        })?;
                        self.all_finalized_now("the first work replaced", &[w])?;
                        bgjob_spec_free(spec);
                        self.all_finalized_now("spec_free", &[w2, cb])?;
                    } else {
                        bgjob_spec_free(spec);
                        self.all_finalized_now("spec_free", &[w, cb])?;
                    }
                    bgjob_spec_free(null_mut());
                }
                BadStart::SetWorkNull | BadStart::CallbackNull => {
                    let spec = self.new_spec()?;
                    let w = plain_work(self);
                    if matches!(b, BadStart::SetWorkNull) {
                        self.call(&what, &[BGJOB_E_INVALID_ARGUMENT], || {
                            bgjob_spec_set_work(spec, None, w as *mut c_void, Some(finalize))
                        })?;
                    } else {
                        self.call(&what, &[BGJOB_E_INVALID_ARGUMENT], || {
                            bgjob_spec_on_state_changed(
                                spec,
                                None,
                                w as *mut c_void,
                                Some(finalize),
                            )
                        })?;
                    }
                    self.all_finalized_now(&what, &[w])?;
                    bgjob_spec_free(spec);
                }
                BadStart::NullSpecSetters => {
                    let bad = [
                        bgjob_spec_set_name(null_mut(), c"x".as_ptr()),
                        bgjob_spec_set_command(null_mut(), c"x".as_ptr()),
                        bgjob_spec_add_input(null_mut(), null(), 0),
                        bgjob_spec_set_throttle_limit(null_mut(), 1),
                        bgjob_spec_set_argv(null_mut(), echo_ptrs.as_ptr(), 1),
                        bgjob_spec_set_stop_grace(null_mut(), 1),
                        bgjob_spec_set_pool(null_mut(), null()),
                    ];
                    for (i, st) in bad.into_iter().enumerate() {
                        self.check(
                            &format!("spec setter #{i} on NULL"),
                            st,
                            &[BGJOB_E_INVALID_ARGUMENT],
                        )?;
                    }
                    let w = plain_work(self);
                    self.call(
                        "spec_set_work(NULL spec)",
                        &[BGJOB_E_INVALID_ARGUMENT],
                        || {
                            bgjob_spec_set_work(
                                null_mut(),
                                Some(work_fn),
                                w as *mut c_void,
                                Some(finalize),
                            )
                        },
                    )?;
                    self.all_finalized_now("spec_set_work on a NULL spec", &[w])?;
                }
            }
        }
        if matches!(b, BadStart::MissingWorkDir) {
            // (Checked above as refused: argv together with work.) Now the real thing.
            let spec = self.new_spec()?;
            // SAFETY: a live spec, consumed by bgjob_start.
            unsafe {
                self.call("spec_set_argv", &[BGJOB_OK], || {
                    bgjob_spec_set_argv(spec, echo_ptrs.as_ptr(), echo_ptrs.len())
                })?;
                self.call("spec_set_working_directory", &[BGJOB_OK], || {
                    bgjob_spec_set_working_directory(spec, c"/nonexistent/bgjob-fuzz-dir".as_ptr())
                })?;
                self.call(
                    "start with a missing working directory",
                    &[BGJOB_E_SYSTEM],
                    || bgjob_start(spec, &mut id),
                )?;
            }
            let errno = bgjob_last_error_errno();
            ensure!(
                errno == 2,
                "a missing working directory gave errno {errno}, not ENOENT"
            );
        }
        Ok(())
    }

    fn get_job(&mut self, id: IdRef, null_out: bool) -> R {
        let id = self.resolve(id);
        let known = self.known(id);
        if null_out {
            let want: &[u32] = if known {
                &[BGJOB_E_INVALID_ARGUMENT]
            } else {
                &[BGJOB_E_INVALID_ARGUMENT, BGJOB_E_NO_SUCH_JOB]
            };
            // SAFETY: NULL is refused.
            self.call("get_job(NULL out)", want, || unsafe {
                bgjob_get_job(id, null_mut())
            })?;
            return Ok(());
        }
        if !known {
            let mut p: *mut bgjob_job_info = null_mut();
            // SAFETY: a writable out-pointer.
            self.call(
                &format!("get_job({id})"),
                &[BGJOB_E_NO_SUCH_JOB],
                || unsafe { bgjob_get_job(id, &mut p) },
            )?;
            return Ok(());
        }
        let info = self.info(id)?;
        self.observe(id, info.state)?;
        let j = self.jobs.get(&id).expect("known").clone();
        ensure!(
            info.id == id,
            "get_job({id}) gave a snapshot of {}",
            info.id
        );
        ensure!(
            instance_ok(&info.instance),
            "job {id}: instance id {:?}",
            info.instance
        );
        if let Some(i) = &j.instance {
            ensure!(*i == info.instance, "job {id}: its instance id changed");
        } else if let Some(m) = self.jobs.get_mut(&id) {
            m.instance = Some(info.instance.clone());
        }
        ensure!(
            info.name == j.name,
            "job {id}: name {:?}, expected {:?}",
            info.name,
            j.name
        );
        if let Some(c) = &j.command {
            ensure!(
                info.command == *c,
                "job {id}: command {:?}, expected {c:?}",
                info.command
            );
        }
        ensure!(
            info.location == "localhost",
            "job {id}: location {:?}",
            info.location
        );
        let (ty, parent, children) = match &j.kind {
            Kind::Thread { .. } => ("ThreadJob", 0, vec![]),
            Kind::Parallel { children, .. } => ("ParallelJob", 0, children.clone()),
            Kind::Child { parent, .. } => ("ParallelChildJob", *parent, vec![]),
            Kind::Process { .. } => ("ProcessJob", 0, vec![]),
        };
        ensure!(
            info.type_name == ty,
            "job {id}: type {:?}, expected {ty}",
            info.type_name
        );
        ensure!(
            info.parent == parent,
            "job {id}: parent {}, expected {parent}",
            info.parent
        );
        ensure!(
            info.children == children,
            "job {id}: children {:?}, expected {children:?}",
            info.children
        );
        // The snapshot reads the state first: the times are set with the state or before.
        ensure!(
            !finished(info.state) || info.end_ns != 0,
            "job {id} is {} with end time {}",
            sname(info.state),
            info.end_ns
        );
        ensure!(
            matches!(info.state, NOT_STARTED | STOPPED | FAILED) || info.begin_ns != 0,
            "job {id} is {} with begin time {}",
            sname(info.state),
            info.begin_ns
        );
        if finished(info.state) {
            // Its records are final: has_more_data says whether any is unread.
            let consumed = lock(&CONSUMED).clone();
            let mut unread = Some(0u64);
            for w in self.subtree(id) {
                unread = match (unread, self.written_known(w)) {
                    (Some(u), Some(n)) => {
                        Some(u + n.saturating_sub(consumed.get(&w).copied().unwrap_or(0)))
                    }
                    _ => None,
                };
            }
            if let Some(u) = unread {
                ensure!(
                    info.has_more == (u > 0),
                    "finished job {id}: has_more_data {} with {u} records unread",
                    info.has_more
                );
            }
        }
        // A NULL snapshot gives the documented fallbacks.
        // SAFETY: NULL is allowed for every accessor.
        unsafe {
            ensure!(bgjob_job_info_id(null()) == 0, "job_info_id(NULL) is not 0");
            ensure!(
                bgjob_job_info_name(null()).is_null(),
                "job_info_name(NULL) is not NULL"
            );
            ensure!(
                bgjob_job_info_child_id(null(), 0) == 0,
                "child_id(NULL) is not 0"
            );
            bgjob_job_info_free(null_mut());
        }
        Ok(())
    }

    fn by_instance(&mut self, id: IdRef, form: InstanceForm) -> R {
        let id = self.resolve(id);
        let text: Option<String> = if self.known(id) {
            Some(self.info(id)?.instance)
        } else if !self.removed_instances.is_empty() {
            let i = (id as usize) % self.removed_instances.len();
            Some(self.removed_instances[i].clone())
        } else {
            None
        };
        let known = self.known(id);
        let (arg, want): (Option<Vec<u8>>, &[u32]) = match form {
            InstanceForm::Exact | InstanceForm::Upper | InstanceForm::NullOut => {
                let Some(t) = text else {
                    return Ok(());
                };
                let t = if matches!(form, InstanceForm::Upper) {
                    t.to_uppercase()
                } else {
                    t
                };
                let want: &[u32] = match (form, known) {
                    (InstanceForm::NullOut, true) => &[BGJOB_E_INVALID_ARGUMENT],
                    (InstanceForm::NullOut, false) => {
                        &[BGJOB_E_INVALID_ARGUMENT, BGJOB_E_NO_SUCH_JOB]
                    }
                    (_, true) => &[BGJOB_OK],
                    (_, false) => &[BGJOB_E_NO_SUCH_JOB],
                };
                (Some(t.into_bytes()), want)
            }
            InstanceForm::Garbage => (Some(b"not-a-uuid".to_vec()), &[BGJOB_E_INVALID_ARGUMENT]),
            InstanceForm::RandomUuid(x) => (
                Some(
                    format!(
                        "{:08x}-{:04x}-4{:03x}-8{:03x}-{:012x}",
                        x >> 32,
                        x & 0xffff,
                        (x >> 16) & 0xfff,
                        (x >> 28) & 0xfff,
                        x & 0xffff_ffff_ffff
                    )
                    .into_bytes(),
                ),
                &[BGJOB_E_NO_SUCH_JOB],
            ),
            InstanceForm::InvalidUtf8 => (Some(b"\xff\xfe".to_vec()), &[BGJOB_E_INVALID_ARGUMENT]),
            InstanceForm::Null => (None, &[BGJOB_E_INVALID_ARGUMENT]),
        };
        let c = arg.map(|a| CString::new(a).expect("no NUL"));
        let ptr = c.as_ref().map_or(null(), |c| c.as_ptr());
        let mut p: *mut bgjob_job_info = null_mut();
        let out: *mut *mut bgjob_job_info = if matches!(form, InstanceForm::NullOut) {
            null_mut()
        } else {
            &mut p
        };
        // SAFETY: NULL or a NUL-terminated text; NULL or a writable out-pointer.
        let st = self.call(
            &format!("get_job_by_instance_id({form:?})"),
            want,
            || unsafe { bgjob_get_job_by_instance_id(ptr, out) },
        )?;
        if st == BGJOB_OK {
            // SAFETY: a live snapshot, freed here.
            let got = unsafe { bgjob_job_info_id(p) };
            // SAFETY: as above.
            unsafe { bgjob_job_info_free(p) };
            ensure!(
                got == id,
                "get_job_by_instance_id found job {got}, not {id}"
            );
        }
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    fn get_jobs(
        &mut self,
        name: Option<Pattern>,
        command: Option<Pattern>,
        state: Option<u32>,
        has_more: Option<bool>,
        newest: Option<u8>,
        children: bool,
        null_filter: bool,
        null_out: bool,
    ) -> R {
        let mut list: *mut bgjob_job_list = null_mut();
        let out: *mut *mut bgjob_job_list = if null_out { null_mut() } else { &mut list };
        let want = if null_out {
            BGJOB_E_INVALID_ARGUMENT
        } else {
            BGJOB_OK
        };
        if null_filter {
            // SAFETY: NULL filter = every top-level job.
            let st = self.call("get_jobs(NULL)", &[want], || unsafe {
                bgjob_get_jobs(null(), out)
            })?;
            if st == BGJOB_OK {
                // SAFETY: a live list, freed here.
                let ids = unsafe { list_ids(list) };
                // SAFETY: as above.
                unsafe { bgjob_job_list_free(list) };
                let ids: Vec<u64> = ids.into_iter().filter(|&i| !self.volatile(i)).collect();
                let top = self.top_ids();
                ensure!(ids == top, "get_jobs(NULL) gave {ids:?}, expected {top:?}");
            }
            return Ok(());
        }
        let mut f: *mut bgjob_filter = null_mut();
        // SAFETY (block): a live filter, freed below; patterns NULL or NUL-terminated.
        let ids = unsafe {
            self.call("filter_new", &[BGJOB_OK], || bgjob_filter_new(&mut f))?;
            let mut exact = true;
            let mut name_pat = None;
            let mut cmd_pat = None;
            if let Some(p) = name {
                name_pat =
                    self.set_filter_pattern(f, p, "filter_set_name", bgjob_filter_set_name)?;
            }
            if let Some(p) = command {
                cmd_pat =
                    self.set_filter_pattern(f, p, "filter_set_command", bgjob_filter_set_command)?;
            }
            if let Some(s) = state {
                let want = if s <= 10 {
                    BGJOB_OK
                } else {
                    BGJOB_E_INVALID_ARGUMENT
                };
                self.call(&format!("filter_set_state({s})"), &[want], || {
                    bgjob_filter_set_state(f, s)
                })?;
                exact &= s > 10;
            }
            if let Some(h) = has_more {
                self.call("filter_set_has_more_data", &[BGJOB_OK], || {
                    bgjob_filter_set_has_more_data(f, h)
                })?;
                exact = false;
            }
            if let Some(n) = newest {
                self.call("filter_set_newest", &[BGJOB_OK], || {
                    bgjob_filter_set_newest(f, usize::from(n))
                })?;
            }
            self.call("filter_set_include_children", &[BGJOB_OK], || {
                bgjob_filter_set_include_children(f, children)
            })?;
            // Setters on a NULL filter are refused.
            self.call(
                "filter_set_newest(NULL)",
                &[BGJOB_E_INVALID_ARGUMENT],
                || bgjob_filter_set_newest(null_mut(), 1),
            )?;
            let st = self.call("get_jobs", &[want], || bgjob_get_jobs(f, out));
            bgjob_filter_free(f);
            bgjob_filter_free(null_mut());
            if st? != BGJOB_OK {
                return Ok(());
            }
            let ids = list_ids(list);
            bgjob_job_list_free(list);
            ensure!(
                ids.windows(2).all(|w| w[0] < w[1]),
                "get_jobs gave {ids:?}: not sorted"
            );
            // Jobs that remove themselves may or may not be listed; `newest` may count them.
            if !self.volatile_ids().is_empty() && newest.is_some() {
                exact = false;
            }
            let ids: Vec<u64> = ids.into_iter().filter(|&i| !self.volatile(i)).collect();
            // What the model expects, by name and command.
            let candidates: Vec<u64> = if children {
                self.live_ids()
            } else {
                self.top_ids()
            };
            let mut expected = Vec::new();
            for id in candidates {
                let j = &self.jobs[&id];
                if let Some(p) = &name_pat {
                    if !glob(p, j.name.as_bytes()) {
                        continue;
                    }
                }
                if let Some(p) = &cmd_pat {
                    match &j.command {
                        Some(c) => {
                            if !glob(p, c.as_bytes()) {
                                continue;
                            }
                        }
                        // A child's command is not modelled: only a subset check then.
                        None => exact = false,
                    }
                }
                expected.push(id);
            }
            if let (Some(n), true) = (newest, exact) {
                let n = usize::from(n);
                if expected.len() > n {
                    expected.drain(..expected.len() - n);
                }
            }
            if exact {
                ensure!(
                    ids == expected,
                    "get_jobs(name {name:?}, command {command:?}, newest {newest:?}, children \
                     {children}) gave {ids:?}, expected {expected:?}"
                );
            } else {
                ensure!(
                    ids.iter().all(|i| expected.contains(i)),
                    "get_jobs(name {name:?}, command {command:?}, state {state:?}, has_more \
                     {has_more:?}, newest {newest:?}, children {children}) gave {ids:?}, not \
                     within {expected:?}"
                );
            }
            ids
        };
        if !children {
            for i in &ids {
                ensure!(
                    self.parent_of(*i).is_none(),
                    "get_jobs without children listed child {i}"
                );
            }
        }
        Ok(())
    }

    fn receive(&mut self, id: IdRef, flags: u32, max: u8, timeout: Timeout, null_out: bool) -> R {
        let id = self.resolve(id);
        let known = self.known(id);
        let keep = flags & BGJOB_RECEIVE_KEEP != 0;
        let wait = flags & BGJOB_RECEIVE_WAIT != 0;
        let auto = flags & BGJOB_RECEIVE_AUTO_REMOVE != 0;
        let finished_before = known && self.state_of(id)?.is_some_and(finished);
        let ms = timeout.ms(finished_before || !wait);
        let bad = null_out
            || flags & !(BGJOB_RECEIVE_KEEP | BGJOB_RECEIVE_WAIT | BGJOB_RECEIVE_AUTO_REMOVE) != 0
            || (auto && (keep || !wait))
            || ms < -1;
        let want: &[u32] = match (bad, known) {
            (true, true) => &[BGJOB_E_INVALID_ARGUMENT],
            (true, false) => &[BGJOB_E_INVALID_ARGUMENT, BGJOB_E_NO_SUCH_JOB],
            (false, true) => &[BGJOB_OK],
            (false, false) => &[BGJOB_E_NO_SUCH_JOB],
        };
        let what = format!("receive({id}, flags {flags:#x}, max {max}, timeout {ms})");
        let mut recs: *mut bgjob_records = null_mut();
        let out: *mut *mut bgjob_records = if null_out { null_mut() } else { &mut recs };
        let mut consumed = lock(&CONSUMED);
        self.arm();
        // SAFETY: NULL or a writable out-pointer.
        let st = unsafe { bgjob_receive(id, flags, usize::from(max), ms, out) };
        self.check(&what, st, want)?;
        if st != BGJOB_OK {
            return Ok(());
        }
        // SAFETY: a live batch, freed below.
        let r = unsafe { self.check_batch(&what, id, recs, keep, usize::from(max), &mut consumed) };
        // SAFETY: as above.
        unsafe { bgjob_records_free(recs) };
        r?;
        if !keep && max == 0 && finished_before {
            self.check_drained(&what, id, &consumed)?;
        }
        drop(consumed);
        if auto {
            let gone = self.state_of(id)?.is_none();
            let top = self.parent_of(id).is_none();
            if gone {
                ensure!(top, "{what}: auto-remove removed child job {id}");
                let c = lock(&CONSUMED).clone();
                self.check_drained(&what, id, &c)?;
                self.removed_job(id, &what)?;
            } else {
                ensure!(
                    !(top && finished_before && max == 0),
                    "{what}: a finished job drained with auto-remove was not removed"
                );
            }
        }
        Ok(())
    }

    fn wait(
        &mut self,
        ids: &[IdRef],
        mode: u32,
        timeout: Timeout,
        null_ids: bool,
        null_done: bool,
        null_count: bool,
    ) -> R {
        let ids: Vec<u64> = ids.iter().map(|&r| self.resolve(r)).collect();
        let force = mode & BGJOB_WAIT_FORCE != 0;
        let any = mode & !BGJOB_WAIT_FORCE == BGJOB_WAIT_ANY;
        let mode_ok = matches!(mode & !BGJOB_WAIT_FORCE, BGJOB_WAIT_ALL | BGJOB_WAIT_ANY);
        let all_known = ids.iter().all(|&i| self.known(i));
        // May a no-limit wait be passed? Only if the condition holds already.
        let mut done_now = Vec::new();
        for &i in &ids {
            let s = if self.known(i) {
                self.state_of(i)?
            } else {
                None
            };
            done_now.push(s.is_some_and(|s| if force { finished(s) } else { persistent(s) }));
        }
        let safe = !all_known
            || if any {
                done_now.contains(&true)
            } else {
                done_now.iter().all(|&d| d)
            };
        let ms = timeout.ms(safe);
        let bad = !mode_ok || (null_ids && !ids.is_empty()) || ms < -1;
        let blocked_possible = ids.iter().any(|&i| {
            self.subtree(i)
                .iter()
                .any(|&j| self.behaviour_of(j) == Some(Behaviour::AskInput))
        });
        let want: Vec<u32> = match (bad, all_known) {
            (true, true) => vec![BGJOB_E_INVALID_ARGUMENT],
            (true, false) => vec![BGJOB_E_INVALID_ARGUMENT, BGJOB_E_NO_SUCH_JOB],
            (false, false) => vec![BGJOB_E_NO_SUCH_JOB],
            (false, true) => {
                let mut v = vec![BGJOB_OK, BGJOB_E_TIMEOUT];
                if blocked_possible {
                    v.push(BGJOB_E_BLOCKED);
                }
                v
            }
        };
        let mut done = vec![0u64; ids.len()];
        let mut count = usize::MAX;
        let what = format!("wait({ids:?}, mode {mode:#x}, timeout {ms})");
        // SAFETY: `ids.len()` ids (or NULL); room for as many done ids; writable count.
        let st = self.call(&what, &want, || unsafe {
            bgjob_wait(
                if null_ids { null() } else { ids.as_ptr() },
                ids.len(),
                mode,
                ms,
                if null_done {
                    null_mut()
                } else {
                    done.as_mut_ptr()
                },
                if null_count { null_mut() } else { &mut count },
            )
        })?;
        if !matches!(st, BGJOB_OK | BGJOB_E_TIMEOUT) || null_count {
            return Ok(());
        }
        ensure!(count <= ids.len(), "{what}: {count} done of {}", ids.len());
        done.truncate(count);
        if !null_done {
            // In the order given: a subsequence of `ids`.
            let mut it = ids.iter();
            ensure!(
                done.iter().all(|d| it.any(|i| i == d)),
                "{what}: done {done:?} is not in the order given"
            );
        }
        match (st, any) {
            (BGJOB_OK, false) => ensure!(count == ids.len(), "{what}: OK with {count} done"),
            (BGJOB_OK, true) => ensure!(count > 0 || ids.is_empty(), "{what}: OK with none done"),
            (_, false) => ensure!(count < ids.len(), "{what}: timed out with all done"),
            (_, true) => ensure!(count == 0, "{what}: timed out with {count} done"),
        }
        if !null_done {
            for d in done {
                let s = self.state_of(d)?;
                ensure!(
                    s.is_some_and(|s| if force { finished(s) } else { persistent(s) }),
                    "{what}: job {d} reported done but is {:?}",
                    s.map(sname)
                );
                self.check_callbacks_ran(&what, d)?;
            }
        }
        Ok(())
    }

    fn stop(&mut self, id: IdRef, timeout: Timeout) -> R {
        let id = self.resolve(id);
        // A stop always ends: every work here stops when asked.
        let ms = timeout.ms(true);
        let known = self.known(id);
        let want: &[u32] = match (ms < -1, known) {
            (true, true) => &[BGJOB_E_INVALID_ARGUMENT],
            (true, false) => &[BGJOB_E_INVALID_ARGUMENT, BGJOB_E_NO_SUCH_JOB],
            (false, true) => &[BGJOB_OK, BGJOB_E_TIMEOUT],
            (false, false) => &[BGJOB_E_NO_SUCH_JOB],
        };
        if known && ms >= -1 {
            self.mark_stop(id);
        }
        let what = format!("stop({id}, {ms})");
        let st = self.call(&what, want, || bgjob_stop(id, ms))?;
        if st == BGJOB_OK {
            let s = self.state_of(id)?;
            ensure!(
                s.is_some_and(finished),
                "{what}: OK but the job is {:?}",
                s.map(sname)
            );
            self.check_callbacks_ran(&what, id)?;
        }
        if st == BGJOB_E_TIMEOUT {
            ensure!(ms >= 0, "{what}: timed out without a limit");
        }
        Ok(())
    }

    fn remove(&mut self, id: IdRef, force: bool) -> R {
        let id = self.resolve(id);
        let what = format!("remove({id}, force {force})");
        if !self.known(id) {
            self.call(&what, &[BGJOB_E_NO_SUCH_JOB], || bgjob_remove(id, force))?;
            return Ok(());
        }
        if self.parent_of(id).is_some() {
            self.call(&what, &[BGJOB_E_CHILD_JOB], || bgjob_remove(id, force))?;
            return Ok(());
        }
        let before = self.state_of(id)?;
        let want: &[u32] = if force || before.is_some_and(finished) {
            &[BGJOB_OK]
        } else {
            &[BGJOB_OK, BGJOB_E_NOT_FINISHED]
        };
        if force {
            self.mark_stop(id);
        }
        let st = self.call(&what, want, || bgjob_remove(id, force))?;
        if st == BGJOB_OK {
            self.removed_job(id, &what)?;
        }
        Ok(())
    }

    fn suspend(&mut self, id: IdRef) -> R {
        let id = self.resolve(id);
        let what = format!("suspend({id})");
        // A process job cannot be suspended; a finished leaf job neither.
        let want: &[u32] = if !self.known(id) {
            &[BGJOB_E_NO_SUCH_JOB]
        } else if self.is_process(id)
            || (self.state_of(id)?.is_some_and(finished) && self.subtree(id).len() == 1)
        {
            &[BGJOB_E_INVALID_STATE]
        } else {
            &[BGJOB_OK, BGJOB_E_INVALID_STATE]
        };
        self.call(&what, want, || bgjob_suspend(id))?;
        Ok(())
    }

    fn send_input(&mut self, id: IdRef, empty: bool, null_with_len: bool) -> R {
        let id = self.resolve(id);
        let known = self.known(id);
        let (data, len): (*const c_void, usize) = if null_with_len {
            (null(), 3)
        } else if empty {
            (null(), 0)
        } else {
            (ANSWER.as_ptr().cast(), ANSWER.len())
        };
        let want: &[u32] = match (null_with_len, known) {
            (true, true) => &[BGJOB_E_INVALID_ARGUMENT],
            (true, false) => &[BGJOB_E_INVALID_ARGUMENT, BGJOB_E_NO_SUCH_JOB],
            (false, false) => &[BGJOB_E_NO_SUCH_JOB],
            (false, true) => {
                if self.behaviour_of(id) == Some(Behaviour::AskInput) && self.subtree(id).len() == 1
                {
                    &[BGJOB_OK, BGJOB_E_INVALID_STATE]
                } else {
                    &[BGJOB_E_INVALID_STATE]
                }
            }
        };
        // SAFETY: NULL or `len` readable bytes.
        self.call(&format!("send_input({id}, {len} bytes)"), want, || unsafe {
            bgjob_send_input(id, data, len)
        })?;
        Ok(())
    }

    fn on_state_changed(&mut self, id: IdRef, null_cb: bool, null_out: bool) -> R {
        let id = self.resolve(id);
        let known = self.known(id);
        let (thread_work, records_known) = match self.jobs.get(&id).map(|j| &j.kind) {
            Some(Kind::Thread { work, .. }) => (Some(*work), true),
            Some(Kind::Parallel { .. } | Kind::Child { .. }) => (None, true),
            _ => (None, false),
        };
        let t = self.new_cb_token(
            CallbackParams {
                spec: false,
                job: Some(id),
                thread_work,
                records_known,
                self_remove: None,
            },
            "job callback",
        );
        let want: &[u32] = match (null_cb, known) {
            (true, true) => &[BGJOB_E_INVALID_ARGUMENT],
            (true, false) => &[BGJOB_E_INVALID_ARGUMENT, BGJOB_E_NO_SUCH_JOB],
            (false, true) => &[BGJOB_OK],
            (false, false) => &[BGJOB_E_NO_SUCH_JOB],
        };
        let mut reg = 0u64;
        let cb = if null_cb { None } else { Some(on_change as _) };
        let out: *mut u64 = if null_out { null_mut() } else { &mut reg };
        let what = format!("on_state_changed({id})");
        // SAFETY: NULL or a writable out-pointer.
        let st = self.call(&what, want, || unsafe {
            bgjob_on_state_changed(id, cb, t as *mut c_void, Some(finalize), out)
        })?;
        if st != BGJOB_OK {
            return self.all_finalized_now(&what, &[t]);
        }
        self.job_regs.push(RegM {
            job: id,
            reg,
            unregistered: null_out,
        });
        Ok(())
    }

    fn on_any(&mut self, null_cb: bool) -> R {
        let t = self.new_cb_token(
            CallbackParams {
                spec: false,
                job: None,
                thread_work: None,
                records_known: false,
                self_remove: None,
            },
            "repository-wide callback",
        );
        let mut reg = 0u64;
        let cb = if null_cb { None } else { Some(on_change as _) };
        let want = if null_cb {
            BGJOB_E_INVALID_ARGUMENT
        } else {
            BGJOB_OK
        };
        // SAFETY: a writable out-pointer.
        let st = self.call("on_any_state_changed", &[want], || unsafe {
            bgjob_on_any_state_changed(cb, t as *mut c_void, Some(finalize), &mut reg)
        })?;
        if st != BGJOB_OK {
            return self.all_finalized_now("on_any_state_changed(NULL)", &[t]);
        }
        lock(&LEFTOVER_ANY).push(reg);
        self.any_regs.push(RegM {
            job: 0,
            reg,
            unregistered: false,
        });
        Ok(())
    }

    fn unregister(&mut self, u: Unreg) -> R {
        match u {
            Unreg::Job(i) => {
                if self.job_regs.is_empty() {
                    return Ok(());
                }
                let k = usize::from(i) % self.job_regs.len();
                let r = self.job_regs[k].clone();
                if self.volatile(r.job) {
                    return Ok(());
                }
                let want = if !self.known(r.job) {
                    BGJOB_E_NO_SUCH_JOB
                } else if r.unregistered {
                    BGJOB_E_INVALID_ARGUMENT
                } else {
                    BGJOB_OK
                };
                self.call(
                    &format!("unregister({}, {})", r.job, r.reg),
                    &[want],
                    || bgjob_unregister(r.job, r.reg),
                )?;
                self.job_regs[k].unregistered = true;
            }
            Unreg::Any(i) => {
                if self.any_regs.is_empty() {
                    return Ok(());
                }
                let k = usize::from(i) % self.any_regs.len();
                let r = self.any_regs[k].clone();
                let want = if r.unregistered {
                    BGJOB_E_INVALID_ARGUMENT
                } else {
                    BGJOB_OK
                };
                self.call(&format!("unregister(0, {})", r.reg), &[want], || {
                    bgjob_unregister(0, r.reg)
                })?;
                self.any_regs[k].unregistered = true;
            }
            Unreg::Bogus(id, reg) => {
                let id = match id {
                    IdRef::Zero => 0,
                    other => self.resolve(other),
                };
                let reg = (1u64 << 48) + u64::from(reg);
                let want = if id == 0 || self.known(id) {
                    BGJOB_E_INVALID_ARGUMENT
                } else {
                    BGJOB_E_NO_SUCH_JOB
                };
                self.call(&format!("unregister({id}, {reg})"), &[want], || {
                    bgjob_unregister(id, reg)
                })?;
            }
        }
        Ok(())
    }

    fn race_receive(&mut self, id: IdRef, threads: u8, max: u8) -> R {
        let id = self.resolve(id);
        let n = usize::from(threads.clamp(2, 4));
        let known = self.known(id);
        let writers: BTreeSet<u64> = self.subtree(id).into_iter().collect();
        let mut consumed = lock(&CONSUMED);
        // Each thread: three consuming receives; each batch as (writer, index, sequence).
        let results: Vec<R<Vec<Batch>>> = std::thread::scope(|sc| {
            let handles: Vec<_> = (0..n)
                .map(|_| {
                    sc.spawn(move || {
                        let mut batches = Vec::new();
                        for _ in 0..3 {
                            let mut recs: *mut bgjob_records = null_mut();
                            // SAFETY: a writable out-pointer.
                            let st =
                                unsafe { bgjob_receive(id, 0, usize::from(max), 0, &mut recs) };
                            let want = if known { BGJOB_OK } else { BGJOB_E_NO_SUCH_JOB };
                            if st != want {
                                return Err(format!(
                                    "receive from a racing thread gave {} ({})",
                                    status_text(st),
                                    last_error()
                                ));
                            }
                            if st != BGJOB_OK {
                                if last_error().is_empty() {
                                    return Err("a failed receive set no message".into());
                                }
                                return Ok(batches);
                            }
                            let mut batch = Vec::new();
                            // SAFETY: a live batch, freed below.
                            unsafe {
                                for i in 0..bgjob_records_count(recs) {
                                    let r = &*bgjob_records_get(recs, i);
                                    match parse_record(r) {
                                        Some((w, k)) => batch.push((w, k, r.sequence)),
                                        None => {
                                            bgjob_records_free(recs);
                                            return Err("a record no work wrote".into());
                                        }
                                    }
                                }
                                bgjob_records_free(recs);
                            }
                            batches.push(batch);
                        }
                        Ok(batches)
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| {
                    h.join()
                        .unwrap_or_else(|_| Err("a racing thread panicked".into()))
                })
                .collect()
        });
        let what = format!("{n} racing receives of job {id} (max {max})");
        let mut taken: BTreeMap<u64, Vec<u64>> = BTreeMap::new();
        for r in results {
            for batch in r.map_err(|e| format!("{what}: {e}"))? {
                if max > 0 {
                    ensure!(batch.len() <= usize::from(max), "{what}: a batch over max");
                }
                let mut last: BTreeMap<u64, u64> = BTreeMap::new();
                for (i, &(w, k, seq)) in batch.iter().enumerate() {
                    ensure!(writers.contains(&w), "{what}: a record of job {w}");
                    ensure!(
                        i == 0 || seq > batch[i - 1].2,
                        "{what}: a batch not in time order"
                    );
                    if let Some(&l) = last.get(&w) {
                        ensure!(k > l, "{what}: job {w}'s records out of order in a batch");
                    }
                    last.insert(w, k);
                    taken.entry(w).or_default().push(k);
                }
            }
        }
        // Together they took, per job, the next records: each exactly once.
        for (w, mut ks) in taken {
            ks.sort_unstable();
            let from = consumed.get(&w).copied().unwrap_or(0);
            let want: Vec<u64> = (from..from + ks.len() as u64).collect();
            ensure!(
                ks == want,
                "{what}: job {w}'s records taken {ks:?}, expected each of {want:?} once"
            );
            consumed.insert(w, from + ks.len() as u64);
        }
        Ok(())
    }

    fn race_remove(&mut self, id: IdRef, force: [bool; 2]) -> R {
        let id = self.resolve(id);
        if !self.known(id) || self.parent_of(id).is_some() {
            return Ok(());
        }
        let finished_before = self.state_of(id)?.is_some_and(finished);
        if force.iter().any(|&f| f) {
            self.mark_stop(id);
        }
        let sts: Vec<(u32, String)> = std::thread::scope(|sc| {
            let hs: Vec<_> = force
                .iter()
                .map(|&f| {
                    sc.spawn(move || {
                        let st = bgjob_remove(id, f);
                        (st, last_error())
                    })
                })
                .collect();
            hs.into_iter()
                .map(|h| h.join().unwrap_or((u32::MAX, "panicked".into())))
                .collect()
        });
        let what = format!("racing remove({id}, force {force:?}) gave {sts:?}");
        for (&(st, ref msg), &f) in sts.iter().zip(&force) {
            let ok = match st {
                BGJOB_OK | BGJOB_E_NO_SUCH_JOB => true,
                BGJOB_E_NOT_FINISHED => !f && !finished_before,
                _ => false,
            };
            ensure!(ok, "{what}: a status not allowed");
            ensure!(st == BGJOB_OK || !msg.is_empty(), "{what}: no message");
        }
        let oks = sts.iter().filter(|(st, _)| *st == BGJOB_OK).count();
        ensure!(oks <= 1, "{what}: removed twice");
        if finished_before || force.iter().any(|&f| f) {
            ensure!(oks == 1, "{what}: not removed");
        }
        if oks == 1 {
            self.removed_job(id, &what)?;
        }
        Ok(())
    }

    fn race_stop_remove(&mut self, id: IdRef, timeout: Timeout) -> R {
        let id = self.resolve(id);
        if !self.known(id) || self.parent_of(id).is_some() {
            return Ok(());
        }
        let ms = timeout.ms(true).max(-1);
        self.mark_stop(id);
        let (stop, remove) = std::thread::scope(|sc| {
            let s = sc.spawn(move || (bgjob_stop(id, ms), last_error()));
            let r = sc.spawn(move || (bgjob_remove(id, true), last_error()));
            (
                s.join().unwrap_or((u32::MAX, "panicked".into())),
                r.join().unwrap_or((u32::MAX, "panicked".into())),
            )
        });
        let what = format!("racing stop({id}, {ms}) {stop:?} and forced remove {remove:?}");
        ensure!(remove.0 == BGJOB_OK, "{what}: the remove failed");
        ensure!(
            matches!(stop.0, BGJOB_OK | BGJOB_E_NO_SUCH_JOB | BGJOB_E_TIMEOUT),
            "{what}: a stop status not allowed"
        );
        ensure!(
            stop.0 == BGJOB_OK || !stop.1.is_empty(),
            "{what}: no message"
        );
        self.removed_job(id, &what)
    }

    fn pool_new(&mut self, threads: u8, throttle: u8, null_out: bool) -> R {
        let threads = u32::from(threads % 3 + 1);
        let throttle = u32::from(throttle % 3);
        if null_out {
            // SAFETY: NULL is refused.
            self.call(
                "pool_new(NULL out)",
                &[BGJOB_E_INVALID_ARGUMENT],
                || unsafe { bgjob_pool_new(threads, throttle, null_mut()) },
            )?;
            return Ok(());
        }
        let mut p: *mut bgjob_pool = null_mut();
        // SAFETY: a writable out-pointer.
        self.call("pool_new", &[BGJOB_OK], || unsafe {
            bgjob_pool_new(threads, throttle, &mut p)
        })?;
        if self.pool.is_null() {
            self.pool = p;
            *lock(&LEFTOVER_POOL) = p as usize;
        } else {
            // SAFETY: a live pool with no jobs, freed once.
            unsafe { bgjob_pool_free(p) };
        }
        Ok(())
    }

    fn pool_shutdown(&mut self, timeout: Timeout, null_pool: bool) -> R {
        if null_pool {
            // SAFETY: NULL is refused.
            self.call(
                "pool_shutdown(NULL)",
                &[BGJOB_E_INVALID_ARGUMENT],
                || unsafe { bgjob_pool_shutdown(null(), 0) },
            )?;
            return Ok(());
        }
        if self.pool.is_null() {
            return Ok(());
        }
        // Running work on it (a job waiting for a stop) keeps a no-limit shutdown waiting.
        let ms = timeout.ms(false);
        let on_pool: Vec<u64> = self
            .jobs
            .iter()
            .filter(|(_, j)| j.on_pool)
            .map(|(&id, _)| id)
            .collect();
        let want: &[u32] = if ms < -1 {
            &[BGJOB_E_INVALID_ARGUMENT]
        } else {
            &[BGJOB_OK, BGJOB_E_TIMEOUT]
        };
        let pool = self.pool;
        // SAFETY: a live pool.
        let st = self.call(&format!("pool_shutdown({ms})"), want, || unsafe {
            bgjob_pool_shutdown(pool, ms)
        })?;
        if st != BGJOB_E_INVALID_ARGUMENT {
            self.pool_shut = true;
            // Its queued jobs are Stopped.
            for id in on_pool {
                self.mark_stop(id);
            }
        }
        Ok(())
    }

    // ----- the end of a case -----

    /// Stops, drains and removes everything; then the repository is empty and every
    /// finalizer ran exactly once.
    fn finish(&mut self) -> R {
        // Jobs that remove themselves: stop them (they may be gone) and see them go.
        for id in self.volatile_ids() {
            self.call(
                &format!("final stop({id}) of a self-removing job"),
                &[BGJOB_OK, BGJOB_E_NO_SUCH_JOB],
                || bgjob_stop(id, -1),
            )?;
            let deadline = Instant::now() + Duration::from_secs(10);
            while self.state_of(id)?.is_some() {
                ensure!(
                    Instant::now() < deadline,
                    "job {id}, which removes itself from its callback, is still there ({}); \
                     seen by works/callbacks: {:#?}",
                    self.state_of(id)?.map_or_else(|| "gone".into(), sname),
                    lock(&VIOLATIONS)
                );
                std::thread::sleep(Duration::from_millis(1));
            }
            self.jobs.remove(&id);
            self.removed.push(id);
        }
        let top = self.top_ids();
        for &id in &top {
            self.mark_stop(id);
            self.call(&format!("final stop({id})"), &[BGJOB_OK], || {
                bgjob_stop(id, -1)
            })?;
        }
        if !top.is_empty() {
            let mut done = vec![0u64; top.len()];
            let mut n = 0usize;
            // SAFETY: room for every id.
            self.call("final wait", &[BGJOB_OK], || unsafe {
                bgjob_wait(
                    top.as_ptr(),
                    top.len(),
                    BGJOB_WAIT_ALL | BGJOB_WAIT_FORCE,
                    -1,
                    done.as_mut_ptr(),
                    &mut n,
                )
            })?;
            ensure!(done == top, "final wait: done {done:?} of {top:?}");
        }
        self.check_world()?;
        for &id in &top {
            let what = format!("final receive({id})");
            let mut recs: *mut bgjob_records = null_mut();
            let mut consumed = lock(&CONSUMED);
            // SAFETY: a writable out-pointer.
            self.call(&what, &[BGJOB_OK], || unsafe {
                bgjob_receive(id, 0, 0, 0, &mut recs)
            })?;
            // SAFETY: a live batch, freed below.
            let r = unsafe { self.check_batch(&what, id, recs, false, 0, &mut consumed) };
            // SAFETY: as above.
            unsafe { bgjob_records_free(recs) };
            r?;
            self.check_drained(&what, id, &consumed)?;
            drop(consumed);
            let info = self.info(id)?;
            ensure!(
                !info.has_more,
                "{what}: job {id} still has more data after a full receive"
            );
            self.call(&format!("final remove({id})"), &[BGJOB_OK], || {
                bgjob_remove(id, false)
            })?;
            self.removed_job(id, &format!("final remove({id})"))?;
        }
        for k in 0..self.any_regs.len() {
            if !self.any_regs[k].unregistered {
                let reg = self.any_regs[k].reg;
                self.call("final unregister", &[BGJOB_OK], || bgjob_unregister(0, reg))?;
                self.any_regs[k].unregistered = true;
            }
        }
        lock(&LEFTOVER_ANY).clear();
        if !self.pool.is_null() {
            let pool = self.pool;
            // SAFETY: a live pool, freed once.
            unsafe {
                self.call("final pool_shutdown", &[BGJOB_OK], || {
                    bgjob_pool_shutdown(pool, -1)
                })?;
                bgjob_pool_free(pool);
            }
            self.pool = null_mut();
            *lock(&LEFTOVER_POOL) = 0;
        }
        let listed = self.list(true)?;
        ensure!(
            listed.is_empty(),
            "after removing everything the repository holds {listed:?}"
        );
        // A registration's finalizer runs once no call holds it: a call under way on another
        // thread may still be finishing.
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let bad: Vec<(u64, String, u32)> = self
                .tokens
                .iter()
                .filter(|(t, _)| finalized(*t) != 1)
                .map(|(t, w)| (*t, w.clone(), finalized(*t)))
                .collect();
            if bad.is_empty() {
                break;
            }
            ensure!(
                Instant::now() < deadline,
                "at the end, finalizers that did not run exactly once (token, what, times): {bad:?}"
            );
            std::thread::sleep(Duration::from_millis(1));
        }
        let v = std::mem::take(&mut *lock(&VIOLATIONS));
        ensure!(
            v.is_empty(),
            "broken promises seen by works/callbacks: {v:#?}"
        );
        Ok(())
    }
}

fn names(state: u32, status: u32, stream: u32) -> R {
    // SAFETY: each returns a static NUL-terminated string.
    let text = |p: *const c_char| unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned();
    let want = STATE_NAMES
        .get(state as usize)
        .copied()
        .unwrap_or("Unknown");
    ensure!(
        text(bgjob_state_name(state)) == want,
        "state_name({state}) = {:?}",
        text(bgjob_state_name(state))
    );
    ensure!(
        bgjob_state_is_finished(state) == finished(state),
        "state_is_finished({state})"
    );
    let st = text(bgjob_status_name(status));
    ensure!(
        if status <= BGJOB_E_SYSTEM {
            st.starts_with("BGJOB_") && st != "BGJOB_E_UNKNOWN"
        } else {
            st == "BGJOB_E_UNKNOWN"
        },
        "status_name({status}) = {st:?}"
    );
    const STREAMS: [&str; 7] = [
        "Output",
        "Error",
        "Warning",
        "Verbose",
        "Debug",
        "Information",
        "Progress",
    ];
    let want = STREAMS.get(stream as usize).copied().unwrap_or("Unknown");
    ensure!(
        text(bgjob_stream_name(stream)) == want,
        "stream_name({stream}) = {:?}",
        text(bgjob_stream_name(stream))
    );
    Ok(())
}

// ----- the driver ---------------------------------------------------------------------------

fn setup() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // Panics made on purpose (bgjob_selftest_panic, with the messages below) are caught
        // by bgjob: keep their report off stderr; report every other panic as before.
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let p = info.payload();
            let msg = p
                .downcast_ref::<String>()
                .map(String::as_str)
                .or_else(|| p.downcast_ref::<&str>().copied())
                .unwrap_or("");
            if !SELFTEST_MESSAGES.contains(&msg) {
                default(info);
            }
        }));
        // Enough workers that jobs waiting for a stop do not hold up every other one (some
        // still queue: stopping queued jobs is part of the test).
        let st = bgjob_configure_default_pool(4, 0);
        assert!(
            st == BGJOB_OK || st == BGJOB_E_ALREADY_INITIALIZED,
            "configure_default_pool: {}",
            status_text(st)
        );
        // The pool is made on first use: use it now, so that configuring it again is
        // refused from the first case on.
        unsafe extern "C" fn nothing(_: *mut bgjob_context, _: *mut c_void) -> i32 {
            0
        }
        let mut id = 0u64;
        // SAFETY: a writable out-pointer; one id to wait for.
        unsafe {
            let st = bgjob_start_fn(Some(nothing), null_mut(), None, null(), &mut id);
            assert_eq!(st, BGJOB_OK, "start_fn: {}", last_error());
            let st = bgjob_wait(&id, 1, BGJOB_WAIT_ALL, -1, null_mut(), null_mut());
            assert_eq!(st, BGJOB_OK, "wait: {}", last_error());
        }
        assert_eq!(
            bgjob_remove(id, false),
            BGJOB_OK,
            "remove: {}",
            last_error()
        );
        // The watchdog: "never hangs" is a property too.
        std::thread::spawn(|| {
            loop {
                std::thread::sleep(Duration::from_millis(500));
                if let Some((since, what)) = lock(&CURRENT).clone() {
                    if since.elapsed() > Duration::from_secs(120) {
                        eprintln!("fuzz_api: HANG: {what} has run for {:?}", since.elapsed());
                        std::process::abort();
                    }
                }
            }
        });
    });
}

/// Removes what a failed case left behind, and resets the bookkeeping.
fn reset() {
    let mut l: *mut bgjob_job_list = null_mut();
    // SAFETY: a writable out-pointer; the list is freed here.
    if unsafe { bgjob_get_jobs(null(), &mut l) } == BGJOB_OK {
        // SAFETY: a live list.
        let ids = unsafe { list_ids(l) };
        // SAFETY: as above.
        unsafe { bgjob_job_list_free(l) };
        for id in ids {
            bgjob_remove(id, true);
        }
    }
    for reg in std::mem::take(&mut *lock(&LEFTOVER_ANY)) {
        bgjob_unregister(0, reg);
    }
    let pool = std::mem::take(&mut *lock(&LEFTOVER_POOL));
    if pool != 0 {
        // SAFETY: the pool the failed case left, freed once.
        unsafe {
            bgjob_pool_shutdown(pool as *const bgjob_pool, -1);
            bgjob_pool_free(pool as *mut bgjob_pool);
        }
    }
    lock(&TOKENS).clear();
    lock(&FINALIZED).clear();
    lock(&WRITTEN).clear();
    lock(&CONSUMED).clear();
    lock(&SEEN).clear();
    lock(&VIOLATIONS).clear();
    lock(&SELF_REMOVED).clear();
}

/// Runs one sequence of operations from a clean repository, checking the model after each.
pub fn run_case(ops: &[Op]) -> Result<(), String> {
    setup();
    let _serial = lock(&SERIAL);
    reset();
    CASES_RUN.fetch_add(1, Ordering::Relaxed);
    let mut m = Model::new();
    let r = (|| {
        m.check_world()?;
        for (i, op) in ops.iter().enumerate() {
            *lock(&CURRENT) = Some((Instant::now(), format!("op #{i}: {op:?}")));
            OPS_RUN.fetch_add(1, Ordering::Relaxed);
            m.run(op).map_err(|e| format!("op #{i} {op:?}: {e}"))?;
            m.check_world()
                .map_err(|e| format!("after op #{i} {op:?}: {e}"))?;
        }
        *lock(&CURRENT) = Some((Instant::now(), "the end of the case".into()));
        m.finish().map_err(|e| format!("at the end: {e}"))
    })();
    *lock(&CURRENT) = None;
    if r.is_err() && !m.pool.is_null() {
        *lock(&LEFTOVER_POOL) = m.pool as usize;
    }
    r
}

// ----- the strategies (proptest) and the byte decoder (cargo-fuzz) -----------------------------

fn id_ref() -> impl Strategy<Value = IdRef> {
    prop_oneof![
        6 => any::<u8>().prop_map(IdRef::Live),
        3 => any::<u8>().prop_map(IdRef::Top),
        2 => any::<u8>().prop_map(IdRef::Removed),
        1 => Just(IdRef::Zero),
        1 => Just(IdRef::Max),
        1 => any::<u64>().prop_map(IdRef::Random),
    ]
}

fn timeout() -> impl Strategy<Value = Timeout> {
    prop_oneof![
        8 => (0u8..=20).prop_map(Timeout::Ms),
        1 => (21u8..=50).prop_map(Timeout::Ms),
        1 => Just(Timeout::Infinite),
        1 => (i64::MIN..=-2).prop_map(Timeout::Negative),
        1 => Just(Timeout::Huge),
    ]
}

fn behaviour() -> impl Strategy<Value = Behaviour> {
    prop_oneof![
        4 => Just(Behaviour::Complete),
        1 => prop_oneof![Just(1), Just(-1), Just(42), Just(i32::MIN)].prop_map(Behaviour::ReturnCode),
        1 => Just(Behaviour::FailReason),
        1 => Just(Behaviour::SelftestPanic),
        2 => Just(Behaviour::WaitStop),
        1 => Just(Behaviour::AskInput),
        2 => Just(Behaviour::Checkpoints),
    ]
}

fn name_arg() -> impl Strategy<Value = NameArg> {
    prop_oneof![
        3 => Just(NameArg::Default),
        3 => (0u8..10).prop_map(NameArg::Fz),
        1 => (0u8..10).prop_map(NameArg::FzUpper),
        1 => Just(NameArg::Empty),
        1 => Just(NameArg::InvalidUtf8),
        1 => Just(NameArg::Null),
    ]
}

fn program() -> impl Strategy<Value = Program> {
    prop_oneof![
        Just(Program::True),
        Just(Program::False),
        Just(Program::Echo),
        Just(Program::Missing)
    ]
}

fn pattern() -> impl Strategy<Value = Pattern> {
    prop_oneof![
        Just(Pattern::Star),
        (0u8..10).prop_map(Pattern::Exact),
        (0u8..10).prop_map(Pattern::Upper),
        Just(Pattern::Prefix),
        Just(Pattern::JobPrefix),
        Just(Pattern::Bracket),
        Just(Pattern::Question),
        Just(Pattern::Cmd),
        Just(Pattern::Echo),
        Just(Pattern::InvalidUtf8),
        Just(Pattern::Null),
    ]
}

fn bad_start() -> impl Strategy<Value = BadStart> {
    proptest::sample::select(BadStart::ALL.to_vec())
}

fn receive_flags() -> impl Strategy<Value = u32> {
    prop_oneof![
        4 => Just(0),
        2 => Just(BGJOB_RECEIVE_KEEP),
        2 => Just(BGJOB_RECEIVE_WAIT),
        2 => Just(BGJOB_RECEIVE_WAIT | BGJOB_RECEIVE_AUTO_REMOVE),
        1 => Just(BGJOB_RECEIVE_KEEP | BGJOB_RECEIVE_WAIT),
        1 => Just(BGJOB_RECEIVE_AUTO_REMOVE),
        1 => Just(BGJOB_RECEIVE_KEEP | BGJOB_RECEIVE_WAIT | BGJOB_RECEIVE_AUTO_REMOVE),
        1 => any::<u32>(),
    ]
}

fn wait_mode() -> impl Strategy<Value = u32> {
    prop_oneof![
        3 => Just(BGJOB_WAIT_ALL),
        3 => Just(BGJOB_WAIT_ANY),
        1 => Just(BGJOB_WAIT_ALL | BGJOB_WAIT_FORCE),
        1 => Just(BGJOB_WAIT_ANY | BGJOB_WAIT_FORCE),
        1 => any::<u32>(),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    let start_thread = (
        behaviour(),
        0u8..=6,
        any::<u8>(),
        name_arg(),
        any::<bool>(),
        prop_oneof![
            3 => Just(StartHow::Spec),
            1 => Just(StartHow::StartFn),
            1 => Just(StartHow::OnPool)
        ],
        proptest::bool::weighted(0.2),
        proptest::option::weighted(
            0.15,
            prop_oneof![
                Just(SelfRemove::OnFinished),
                Just(SelfRemove::OnRunningForced)
            ],
        ),
    )
        .prop_map(
            |(behaviour, records, salt, name, spec_cb, how, bad_calls, self_remove)| {
                Op::StartThread {
                    behaviour,
                    records,
                    salt,
                    name,
                    spec_cb,
                    how,
                    bad_calls,
                    self_remove,
                }
            },
        );
    let start_parallel = (
        behaviour(),
        0u8..=3,
        1u8..=4,
        any::<bool>(),
        0u8..=3,
        name_arg(),
        any::<bool>(),
        proptest::bool::weighted(0.2),
    )
        .prop_map(
            |(behaviour, records, inputs, empty_input, throttle, name, spec_cb, bad_calls)| {
                Op::StartParallel {
                    behaviour,
                    records,
                    inputs,
                    empty_input,
                    throttle,
                    name,
                    spec_cb,
                    bad_calls,
                }
            },
        );
    let start_process = (
        program(),
        name_arg(),
        any::<bool>(),
        prop_oneof![Just(0i64), Just(10), Just(5000), Just(-5), Just(i64::MIN)],
        prop_oneof![4 => Just(0u32), 1 => 2u32..],
    )
        .prop_map(|(program, name, spec_cb, grace, mode)| Op::StartProcess {
            program,
            name,
            spec_cb,
            grace,
            mode,
        });
    let run_inline = (
        behaviour(),
        0u8..=4,
        proptest::option::weighted(0.3, program()),
        any::<bool>(),
    )
        .prop_map(|(behaviour, records, program, spec_cb)| Op::RunInline {
            behaviour,
            records,
            program,
            spec_cb,
        });
    let get_jobs = (
        proptest::option::of(pattern()),
        proptest::option::weighted(0.3, pattern()),
        proptest::option::weighted(0.2, prop_oneof![0u32..=10, Just(11), Just(u32::MAX)]),
        proptest::option::weighted(0.2, any::<bool>()),
        proptest::option::weighted(0.3, 0u8..4),
        any::<bool>(),
        proptest::bool::weighted(0.1),
        proptest::bool::weighted(0.05),
    )
        .prop_map(
            |(name, command, state, has_more, newest, children, null_filter, null_out)| {
                Op::GetJobs {
                    name,
                    command,
                    state,
                    has_more,
                    newest,
                    children,
                    null_filter,
                    null_out,
                }
            },
        );
    let receive = (
        id_ref(),
        receive_flags(),
        prop_oneof![3 => Just(0u8), 1 => 1u8..4],
        timeout(),
        proptest::bool::weighted(0.05),
    )
        .prop_map(|(id, flags, max, timeout, null_out)| Op::Receive {
            id,
            flags,
            max,
            timeout,
            null_out,
        });
    let wait = (
        proptest::collection::vec(id_ref(), 0..4),
        wait_mode(),
        timeout(),
        proptest::bool::weighted(0.05),
        proptest::bool::weighted(0.1),
        proptest::bool::weighted(0.1),
    )
        .prop_map(
            |(ids, mode, timeout, null_ids, null_done, null_count)| Op::Wait {
                ids,
                mode,
                timeout,
                null_ids,
                null_done,
                null_count,
            },
        );
    let unreg = prop_oneof![
        2 => any::<u8>().prop_map(Unreg::Job),
        1 => any::<u8>().prop_map(Unreg::Any),
        1 => (id_ref(), any::<u16>()).prop_map(|(i, r)| Unreg::Bogus(i, r)),
    ];
    prop_oneof![
        10 => start_thread,
        4 => start_parallel,
        4 => start_process,
        2 => run_inline,
        3 => bad_start().prop_map(Op::BadStart),
        3 => (id_ref(), proptest::bool::weighted(0.1))
            .prop_map(|(id, null_out)| Op::GetState { id, null_out }),
        3 => (id_ref(), proptest::bool::weighted(0.1))
            .prop_map(|(id, null_out)| Op::GetJob { id, null_out }),
        1 => (
            id_ref(),
            prop_oneof![
                3 => Just(InstanceForm::Exact),
                1 => Just(InstanceForm::Upper),
                1 => Just(InstanceForm::Garbage),
                1 => any::<u64>().prop_map(InstanceForm::RandomUuid),
                1 => Just(InstanceForm::InvalidUtf8),
                1 => Just(InstanceForm::Null),
                1 => Just(InstanceForm::NullOut),
            ]
        )
            .prop_map(|(id, form)| Op::ByInstanceId { id, form }),
        3 => get_jobs,
        8 => receive,
        5 => wait,
        5 => (id_ref(), timeout()).prop_map(|(id, timeout)| Op::Stop { id, timeout }),
        5 => (id_ref(), any::<bool>()).prop_map(|(id, force)| Op::Remove { id, force }),
        3 => id_ref().prop_map(Op::Suspend),
        3 => id_ref().prop_map(Op::Resume),
        2 => (id_ref(), any::<bool>(), proptest::bool::weighted(0.1)).prop_map(
            |(id, empty, null_with_len)| Op::SendInput {
                id,
                empty,
                null_with_len
            }
        ),
        3 => (id_ref(), proptest::bool::weighted(0.1), proptest::bool::weighted(0.2)).prop_map(
            |(id, null_cb, null_out)| Op::OnStateChanged {
                id,
                null_cb,
                null_out
            }
        ),
        1 => proptest::bool::weighted(0.2).prop_map(|null_cb| Op::OnAnyStateChanged { null_cb }),
        3 => unreg.prop_map(Op::Unregister),
        1 => (any::<u8>(), any::<u8>(), proptest::bool::weighted(0.1)).prop_map(
            |(threads, throttle, null_out)| Op::PoolNew {
                threads,
                throttle,
                null_out
            }
        ),
        1 => (timeout(), proptest::bool::weighted(0.1))
            .prop_map(|(timeout, null_pool)| Op::PoolShutdown { timeout, null_pool }),
        1 => (any::<u8>(), any::<u8>())
            .prop_map(|(threads, throttle)| Op::ConfigureDefaultPool { threads, throttle }),
        1 => (0u32..16, 0u32..16, 0u32..9).prop_map(|(state, status, stream)| Op::Names {
            state,
            status,
            stream
        }),
        1 => proptest::bool::weighted(0.3).prop_map(|null_message| Op::SelftestPanic { null_message }),
        2 => (0u8..20).prop_map(Op::Pause),
        2 => (id_ref(), 2u8..=4, 0u8..4)
            .prop_map(|(id, threads, max)| Op::RaceReceive { id, threads, max }),
        1 => (id_ref(), any::<[bool; 2]>()).prop_map(|(id, force)| Op::RaceRemove { id, force }),
        1 => (id_ref(), timeout()).prop_map(|(id, timeout)| Op::RaceStopRemove { id, timeout }),
    ]
}

/// Most operations in one case.
pub const MAX_OPS: usize = 40;

fn ops() -> impl Strategy<Value = Vec<Op>> {
    proptest::collection::vec(op(), 1..=MAX_OPS)
}

/// Reads a fuzzer's bytes as a sequence of operations (0 once the bytes run out).
pub struct ByteReader<'a> {
    data: &'a [u8],
}

impl ByteReader<'_> {
    fn u8(&mut self) -> u8 {
        match self.data.split_first() {
            Some((&b, rest)) => {
                self.data = rest;
                b
            }
            None => 0,
        }
    }

    fn bool(&mut self) -> bool {
        self.u8() & 1 == 1
    }

    fn u16(&mut self) -> u16 {
        u16::from_le_bytes([self.u8(), self.u8()])
    }

    fn u32(&mut self) -> u32 {
        u32::from_le_bytes([self.u8(), self.u8(), self.u8(), self.u8()])
    }

    fn u64(&mut self) -> u64 {
        u64::from(self.u32()) | (u64::from(self.u32()) << 32)
    }

    fn id(&mut self) -> IdRef {
        let i = self.u8();
        match self.u8() % 16 {
            0..=5 => IdRef::Live(i),
            6..=8 => IdRef::Top(i),
            9..=10 => IdRef::Removed(i),
            11 => IdRef::Zero,
            12 => IdRef::Max,
            13 => IdRef::Random(u64::from(i)),
            _ => IdRef::Random(self.u64()),
        }
    }

    fn timeout(&mut self) -> Timeout {
        let b = self.u8();
        match b % 12 {
            0..=8 => Timeout::Ms(b % 21),
            9 => Timeout::Infinite,
            10 => Timeout::Negative(-2 - i64::from(self.u8()) * 1_000_000_007),
            _ => Timeout::Huge,
        }
    }

    fn behaviour(&mut self) -> Behaviour {
        match self.u8() % 12 {
            0..=3 => Behaviour::Complete,
            4 => Behaviour::ReturnCode([1, -1, 42, i32::MIN][usize::from(self.u8() % 4)]),
            5 => Behaviour::FailReason,
            6 => Behaviour::SelftestPanic,
            7 | 8 => Behaviour::WaitStop,
            9 => Behaviour::AskInput,
            _ => Behaviour::Checkpoints,
        }
    }

    fn name(&mut self) -> NameArg {
        let i = self.u8();
        match i % 10 {
            0..=2 => NameArg::Default,
            3..=5 => NameArg::Fz(i / 10 % 10),
            6 => NameArg::FzUpper(i / 10 % 10),
            7 => NameArg::Empty,
            8 => NameArg::InvalidUtf8,
            _ => NameArg::Null,
        }
    }

    fn program(&mut self) -> Program {
        [
            Program::True,
            Program::False,
            Program::Echo,
            Program::Missing,
        ][usize::from(self.u8() % 4)]
    }

    fn pattern(&mut self) -> Option<Pattern> {
        let i = self.u8();
        Some(match i % 13 {
            0 | 1 => return None,
            2 => Pattern::Star,
            3 => Pattern::Exact(i / 13),
            4 => Pattern::Upper(i / 13),
            5 => Pattern::Prefix,
            6 => Pattern::JobPrefix,
            7 => Pattern::Bracket,
            8 => Pattern::Question,
            9 => Pattern::Cmd,
            10 => Pattern::Echo,
            11 => Pattern::InvalidUtf8,
            _ => Pattern::Null,
        })
    }

    fn op(&mut self) -> Op {
        match self.u8() % 30 {
            0..=4 => Op::StartThread {
                behaviour: self.behaviour(),
                records: self.u8() % 7,
                salt: self.u8(),
                name: self.name(),
                spec_cb: self.bool(),
                how: [
                    StartHow::Spec,
                    StartHow::Spec,
                    StartHow::StartFn,
                    StartHow::OnPool,
                ][usize::from(self.u8() % 4)],
                bad_calls: self.u8() % 5 == 0,
                self_remove: match self.u8() % 8 {
                    0 => Some(SelfRemove::OnFinished),
                    1 => Some(SelfRemove::OnRunningForced),
                    _ => None,
                },
            },
            5 | 6 => Op::StartParallel {
                behaviour: self.behaviour(),
                records: self.u8() % 4,
                inputs: self.u8() % 4 + 1,
                empty_input: self.bool(),
                throttle: self.u8() % 4,
                name: self.name(),
                spec_cb: self.bool(),
                bad_calls: self.u8() % 5 == 0,
            },
            7 | 8 => Op::StartProcess {
                program: self.program(),
                name: self.name(),
                spec_cb: self.bool(),
                grace: [0, 10, 5000, -5, i64::MIN][usize::from(self.u8() % 5)],
                mode: if self.u8() % 5 == 0 {
                    self.u32() | 2
                } else {
                    0
                },
            },
            9 => Op::RunInline {
                behaviour: self.behaviour(),
                records: self.u8() % 5,
                program: if self.u8() % 3 == 0 {
                    Some(self.program())
                } else {
                    None
                },
                spec_cb: self.bool(),
            },
            10 => Op::BadStart(BadStart::ALL[usize::from(self.u8()) % BadStart::ALL.len()]),
            11 => Op::GetState {
                id: self.id(),
                null_out: self.u8() % 10 == 0,
            },
            12 => Op::GetJob {
                id: self.id(),
                null_out: self.u8() % 10 == 0,
            },
            13 => Op::ByInstanceId {
                id: self.id(),
                form: match self.u8() % 7 {
                    0 => InstanceForm::Exact,
                    1 => InstanceForm::Upper,
                    2 => InstanceForm::Garbage,
                    3 => InstanceForm::RandomUuid(self.u64()),
                    4 => InstanceForm::InvalidUtf8,
                    5 => InstanceForm::Null,
                    _ => InstanceForm::NullOut,
                },
            },
            14 => Op::GetJobs {
                name: self.pattern(),
                command: self.pattern(),
                state: match self.u8() {
                    b @ 0..=10 => Some(u32::from(b)),
                    11..=20 => Some(11),
                    21 => Some(u32::MAX),
                    _ => None,
                },
                has_more: match self.u8() % 5 {
                    0 => Some(false),
                    1 => Some(true),
                    _ => None,
                },
                newest: match self.u8() {
                    b @ 0..=3 => Some(b),
                    _ => None,
                },
                children: self.bool(),
                null_filter: self.u8() % 10 == 0,
                null_out: self.u8() % 20 == 0,
            },
            15..=17 => Op::Receive {
                id: self.id(),
                flags: match self.u8() % 10 {
                    0..=3 => 0,
                    4 => BGJOB_RECEIVE_KEEP,
                    5 => BGJOB_RECEIVE_WAIT,
                    6 => BGJOB_RECEIVE_WAIT | BGJOB_RECEIVE_AUTO_REMOVE,
                    7 => BGJOB_RECEIVE_KEEP | BGJOB_RECEIVE_WAIT,
                    8 => BGJOB_RECEIVE_AUTO_REMOVE,
                    _ => self.u32(),
                },
                max: self.u8() % 4,
                timeout: self.timeout(),
                null_out: self.u8() % 20 == 0,
            },
            18 | 19 => {
                let n = self.u8() % 4;
                Op::Wait {
                    ids: (0..n).map(|_| self.id()).collect(),
                    mode: match self.u8() % 9 {
                        0..=2 => BGJOB_WAIT_ALL,
                        3..=5 => BGJOB_WAIT_ANY,
                        6 => BGJOB_WAIT_ALL | BGJOB_WAIT_FORCE,
                        7 => BGJOB_WAIT_ANY | BGJOB_WAIT_FORCE,
                        _ => self.u32(),
                    },
                    timeout: self.timeout(),
                    null_ids: self.u8() % 20 == 0,
                    null_done: self.u8() % 10 == 0,
                    null_count: self.u8() % 10 == 0,
                }
            }
            20 | 21 => Op::Stop {
                id: self.id(),
                timeout: self.timeout(),
            },
            22 | 23 => Op::Remove {
                id: self.id(),
                force: self.bool(),
            },
            24 => Op::Suspend(self.id()),
            25 => Op::Resume(self.id()),
            26 => Op::SendInput {
                id: self.id(),
                empty: self.bool(),
                null_with_len: self.u8() % 10 == 0,
            },
            27 => Op::OnStateChanged {
                id: self.id(),
                null_cb: self.u8() % 10 == 0,
                null_out: self.u8() % 5 == 0,
            },
            28 => match self.u8() % 4 {
                0 => Op::Unregister(Unreg::Job(self.u8())),
                1 => Op::Unregister(Unreg::Any(self.u8())),
                2 => Op::Unregister(Unreg::Bogus(self.id(), self.u16())),
                _ => Op::OnAnyStateChanged {
                    null_cb: self.u8() % 5 == 0,
                },
            },
            _ => match self.u8() % 10 {
                0 => Op::PoolNew {
                    threads: self.u8(),
                    throttle: self.u8(),
                    null_out: self.u8() % 10 == 0,
                },
                1 => Op::PoolShutdown {
                    timeout: self.timeout(),
                    null_pool: self.u8() % 10 == 0,
                },
                2 => Op::ConfigureDefaultPool {
                    threads: self.u8(),
                    throttle: self.u8(),
                },
                3 => Op::Names {
                    state: u32::from(self.u8() % 16),
                    status: u32::from(self.u8() % 16),
                    stream: u32::from(self.u8() % 9),
                },
                4 => Op::SelftestPanic {
                    null_message: self.bool(),
                },
                5 => Op::Pause(self.u8() % 20),
                6 | 7 => Op::RaceReceive {
                    id: self.id(),
                    threads: self.u8() % 3 + 2,
                    max: self.u8() % 4,
                },
                8 => Op::RaceRemove {
                    id: self.id(),
                    force: [self.bool(), self.bool()],
                },
                _ => Op::RaceStopRemove {
                    id: self.id(),
                    timeout: self.timeout(),
                },
            },
        }
    }
}

/// The operations a fuzzer's input stands for (at most `MAX_OPS`).
pub fn ops_from_bytes(data: &[u8]) -> Vec<Op> {
    let mut r = ByteReader { data };
    let mut v = Vec::new();
    while !r.data.is_empty() && v.len() < MAX_OPS {
        v.push(r.op());
    }
    v
}

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.trim().parse().ok())
}

/// Cases of the default run (`make test`): about 5 s in release mode on 2 cores (20,000
/// take about 200 s), well under the 30 s budget even on a loaded machine.
const DEFAULT_CASES: u32 = 500;

#[test]
fn random_call_sequences_keep_every_promise() {
    let cases = env_u64("BGJOB_FUZZ_CASES").map_or(DEFAULT_CASES, |n| n as u32);
    let seed = env_u64("BGJOB_FUZZ_SEED").unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos() as u64)
    });
    let config = Config {
        cases,
        failure_persistence: None,
        max_shrink_iters: 2000,
        rng_seed: RngSeed::Fixed(seed),
        ..Config::default()
    };
    let start = Instant::now();
    let (c0, o0) = (
        CASES_RUN.load(Ordering::Relaxed),
        OPS_RUN.load(Ordering::Relaxed),
    );
    let mut runner = TestRunner::new(config);
    let result = runner.run(&ops(), |ops| run_case(&ops).map_err(TestCaseError::fail));
    eprintln!(
        "fuzz_api: seed {seed} (BGJOB_FUZZ_SEED), {cases} cases asked: {} sequences run, {} \
         operations, in {:.1?}",
        CASES_RUN.load(Ordering::Relaxed) - c0,
        OPS_RUN.load(Ordering::Relaxed) - o0,
        start.elapsed()
    );
    if std::env::var_os("BGJOB_FUZZ_STATS").is_some() {
        for ((f, st), n) in lock(&CALLS).iter() {
            eprintln!("  {f:<40} {:<28} {n}", status_text(*st));
        }
    }
    match result {
        Ok(()) => {}
        Err(TestError::Fail(why, ops)) => panic!(
            "a sequence of {} operations breaks a promise (seed {seed}); shrunk to:\n{ops:#?}\n\
             {why}",
            ops.len()
        ),
        Err(e) => panic!("{e}"),
    }
}

/// The cargo-fuzz decoder, on fixed and pseudo-random bytes; `BGJOB_FUZZ_REPLAY=file` runs
/// one fuzzer input (a crash file from `cargo fuzz run api`).
#[test]
fn byte_decoded_sequences_keep_every_promise() {
    if let Ok(path) = std::env::var("BGJOB_FUZZ_REPLAY") {
        let data = std::fs::read(&path).expect("BGJOB_FUZZ_REPLAY file");
        let ops = ops_from_bytes(&data);
        if let Err(e) = run_case(&ops) {
            panic!("{path}: {ops:#?}\n{e}");
        }
        return;
    }
    let mut x = 0x9E37_79B9_7F4A_7C15u64;
    for n in [0usize, 1, 7, 64, 200] {
        let data: Vec<u8> = (0..n)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect();
        let ops = ops_from_bytes(&data);
        assert!(ops.len() <= MAX_OPS);
        if let Err(e) = run_case(&ops) {
            panic!("bytes {data:?}: {ops:#?}\n{e}");
        }
    }
}

// ----- the bug the fuzzer found, as a plain reproduction ---------------------------------

/// What the Suspending callback of `receive_wait_in_own_suspending_callback_is_refused` got:
/// (status, time taken).
static SUSPENDING_RECEIVE: Mutex<Vec<(u32, Duration)>> = Mutex::new(Vec::new());

unsafe extern "C" fn receive_when_suspending(e: *const bgjob_state_event, _: *mut c_void) {
    // SAFETY: a live event during the call.
    let e = unsafe { &*e };
    if e.state_info.state != SUSPENDING {
        return;
    }
    // Let the work reach its checkpoint: the stored state becomes Suspended, its callbacks
    // queued behind this one.
    std::thread::sleep(Duration::from_millis(50));
    let t = Instant::now();
    let mut recs: *mut bgjob_records = null_mut();
    // SAFETY: a writable out-pointer.
    let st = unsafe { bgjob_receive(e.job_id, BGJOB_RECEIVE_WAIT, 0, 2000, &mut recs) };
    if st == BGJOB_OK {
        // SAFETY: a live batch.
        unsafe { bgjob_records_free(recs) };
    }
    lock(&SUSPENDING_RECEIVE).push((st, t.elapsed()));
}

/// A regression test for a bug the fuzzer found (see `check_waits_in_callback`): a waiting
/// receive in a job's own Suspending callback, once the work parked (stored state
/// Suspended), blocked for its whole timeout (for ever with -1: the work stays parked until
/// the Suspended change, queued behind this callback, is delivered) instead of giving
/// BGJOB_E_WOULD_DEADLOCK as guide §5 says.
#[test]
fn receive_wait_in_own_suspending_callback_is_refused() {
    setup();
    let _serial = lock(&SERIAL);
    reset();
    let mut m = Model::new();
    let work = m.new_work_token(WorkParams {
        behaviour: Behaviour::WaitStop,
        records: 0,
        salt: 0,
        bad_calls: false,
        parallel: false,
        volatile: false,
    });
    let mut spec: *mut bgjob_spec = null_mut();
    let mut id = 0;
    // SAFETY: writable out-pointers; a live spec, consumed by bgjob_start.
    unsafe {
        assert_eq!(bgjob_spec_new(&mut spec), BGJOB_OK);
        let st = bgjob_spec_set_work(spec, Some(work_fn), work as *mut c_void, Some(finalize));
        assert_eq!(st, BGJOB_OK);
        let cb = Some(receive_when_suspending as _);
        assert_eq!(
            bgjob_spec_on_state_changed(spec, cb, null_mut(), None),
            BGJOB_OK
        );
        assert_eq!(bgjob_start(spec, &mut id), BGJOB_OK);
    }
    let mut s = NOT_STARTED;
    // SAFETY: a writable out-pointer.
    while unsafe { bgjob_get_state(id, &mut s) } == BGJOB_OK && s == NOT_STARTED {
        std::thread::sleep(Duration::from_millis(1));
    }
    assert_eq!(s, RUNNING);
    // The Suspending callback runs here, on this thread, inside bgjob_suspend.
    assert_eq!(bgjob_suspend(id), BGJOB_OK);
    assert_eq!(bgjob_stop(id, -1), BGJOB_OK);
    assert_eq!(bgjob_remove(id, false), BGJOB_OK);
    let got = lock(&SUSPENDING_RECEIVE).clone();
    assert!(!got.is_empty(), "the Suspending callback made no receive");
    assert!(
        got.iter().all(|&(st, _)| st == BGJOB_E_WOULD_DEADLOCK),
        "a waiting receive in the job's own Suspending callback gave (status, time) {:?}, \
         expected BGJOB_E_WOULD_DEADLOCK at once",
        got.iter()
            .map(|&(st, t)| (status_text(st), t))
            .collect::<Vec<_>>()
    );
}
