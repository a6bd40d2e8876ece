//! Get-Job and Remove-Job from C: job snapshots, filters and id lists.

use super::boundary::to_cstring;
use super::status::bgjob_status;
use super::types::{bgjob_job_state, state_from_c};
use super::{boundary, boundary_value, c_str, non_null};
use crate::error::{Error, Result};
use crate::job::Job;
use crate::repository::{JobFilter, repository};
use crate::state::JobState;
use crate::wildcard::WildcardPattern;
use std::ffi::{CString, c_char};
use std::ptr;
use std::time::{SystemTime, UNIX_EPOCH};

/// A snapshot of one job's fields (Get-Job's output object), taken by `bgjob_get_job`.
/// Its strings live as long as the snapshot; free it with `bgjob_job_info_free`.
pub struct bgjob_job_info {
    id: u64,
    parent_id: u64,
    instance_id: CString,
    name: CString,
    command: CString,
    type_name: CString,
    location: CString,
    status_message: CString,
    state: u32,
    reason: Option<CString>,
    begin_ns: i64,
    end_ns: i64,
    has_more_data: bool,
    children: Vec<u64>,
    progress: Option<(i32, CString, CString)>,
    prompt: Option<CString>,
}

pub(crate) fn unix_ns(t: Option<SystemTime>) -> i64 {
    t.and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_nanos().min(i64::MAX as u128) as i64)
}

fn snapshot(job: &Job) -> bgjob_job_info {
    // One read of state and times: three would race the job's changes (the soak test saw
    // NotStarted with an end time set).
    let (info, begin, end) = job.state_and_times();
    bgjob_job_info {
        id: job.id(),
        parent_id: job.parent_id(),
        instance_id: to_cstring(&job.instance_id().to_string()),
        name: to_cstring(job.name()),
        command: to_cstring(job.command()),
        type_name: to_cstring(job.type_name()),
        location: to_cstring(job.location()),
        status_message: to_cstring(&job.status_message()),
        state: info.state as u32,
        reason: info.reason.as_deref().map(to_cstring),
        begin_ns: unix_ns(begin),
        end_ns: unix_ns(end),
        has_more_data: job.has_more_data(),
        children: job.children().iter().map(|c| c.id()).collect(),
        progress: job.progress().map(|p| {
            (
                p.percent_complete,
                to_cstring(&p.activity),
                to_cstring(&p.status_description),
            )
        }),
        // Only while the snapshot's state is Blocked (a prompt is what a Blocked job asks).
        prompt: (info.state == JobState::Blocked)
            .then(|| job.last_prompt())
            .flatten()
            .as_deref()
            .map(to_cstring),
    }
}

/// # Safety
/// `out` is NULL or writable.
unsafe fn put_info(out: *mut *mut bgjob_job_info, job: &Job) -> Result<()> {
    if out.is_null() {
        return Err(Error::InvalidArgument("out_info is NULL".into()));
    }
    // SAFETY: non-NULL and writable, as the caller guarantees.
    unsafe { *out = Box::into_raw(Box::new(snapshot(job))) };
    Ok(())
}

/// Get-Job by id (top-level or child): a snapshot of its fields in `*out_info`.
///
/// # Safety
/// `out_info` is writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn bgjob_get_job(
    id: u64,
    out_info: *mut *mut bgjob_job_info,
) -> bgjob_status {
    boundary(|| {
        let job = repository().get(id)?;
        // SAFETY: as documented for the caller.
        unsafe { put_info(out_info, &job) }
    })
}

/// Get-Job by instance id (the UUID's text form, any case).
///
/// # Safety
/// `instance_id` is NUL-terminated; `out_info` is writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn bgjob_get_job_by_instance_id(
    instance_id: *const c_char,
    out_info: *mut *mut bgjob_job_info,
) -> bgjob_status {
    boundary(|| {
        // SAFETY: as documented for the caller.
        let text = unsafe { c_str(instance_id, "instance_id") }?;
        let uuid = uuid::Uuid::parse_str(text)
            .map_err(|e| Error::InvalidArgument(format!("instance_id {text:?}: {e}")))?;
        let job = repository().get_by_instance_id(uuid)?;
        // SAFETY: as documented for the caller.
        unsafe { put_info(out_info, &job) }
    })
}

/// Frees a snapshot. NULL is a no-op.
///
/// # Safety
/// `info` is NULL or a live snapshot, not used after this call.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn bgjob_job_info_free(info: *mut bgjob_job_info) {
    let _ = boundary(|| {
        if !info.is_null() {
            // SAFETY: a live snapshot from bgjob_get_job, as documented.
            drop(unsafe { Box::from_raw(info) });
        }
        Ok(())
    });
}

/// Reads a field of a snapshot; `fallback` (and the last error set) for NULL.
///
/// # Safety
/// `info` is NULL or a live snapshot.
unsafe fn field<T>(
    info: *const bgjob_job_info,
    fallback: T,
    f: impl FnOnce(&bgjob_job_info) -> T,
) -> T {
    // SAFETY: as the caller guarantees.
    boundary_value(fallback, || Ok(f(unsafe { non_null(info, "info") }?)))
}

/// The job's id (0 for NULL).
///
/// # Safety
/// `info` is NULL or a live snapshot.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn bgjob_job_info_id(info: *const bgjob_job_info) -> u64 {
    // SAFETY: as documented for the caller.
    unsafe { field(info, 0, |i| i.id) }
}

/// The parent job's id, or 0 for a top-level job.
///
/// # Safety
/// `info` is NULL or a live snapshot.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn bgjob_job_info_parent_id(info: *const bgjob_job_info) -> u64 {
    // SAFETY: as documented for the caller.
    unsafe { field(info, 0, |i| i.parent_id) }
}

/// The instance id as text (`xxxxxxxx-xxxx-4xxx-yxxx-xxxxxxxxxxxx`).
///
/// # Safety
/// `info` is NULL or a live snapshot.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn bgjob_job_info_instance_id(info: *const bgjob_job_info) -> *const c_char {
    // SAFETY: as documented for the caller.
    unsafe { field(info, ptr::null(), |i| i.instance_id.as_ptr()) }
}

/// The name (UTF-8).
///
/// # Safety
/// `info` is NULL or a live snapshot.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn bgjob_job_info_name(info: *const bgjob_job_info) -> *const c_char {
    // SAFETY: as documented for the caller.
    unsafe { field(info, ptr::null(), |i| i.name.as_ptr()) }
}

/// The command text.
///
/// # Safety
/// `info` is NULL or a live snapshot.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn bgjob_job_info_command(info: *const bgjob_job_info) -> *const c_char {
    // SAFETY: as documented for the caller.
    unsafe { field(info, ptr::null(), |i| i.command.as_ptr()) }
}

/// The type name (`ThreadJob`, …; PowerShell's PSJobTypeName).
///
/// # Safety
/// `info` is NULL or a live snapshot.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn bgjob_job_info_type_name(info: *const bgjob_job_info) -> *const c_char {
    // SAFETY: as documented for the caller.
    unsafe { field(info, ptr::null(), |i| i.type_name.as_ptr()) }
}

/// Where the job runs (`localhost`).
///
/// # Safety
/// `info` is NULL or a live snapshot.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn bgjob_job_info_location(info: *const bgjob_job_info) -> *const c_char {
    // SAFETY: as documented for the caller.
    unsafe { field(info, ptr::null(), |i| i.location.as_ptr()) }
}

/// The status message ("" if none; a parent shows `finished/total completed`).
///
/// # Safety
/// `info` is NULL or a live snapshot.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn bgjob_job_info_status_message(
    info: *const bgjob_job_info,
) -> *const c_char {
    // SAFETY: as documented for the caller.
    unsafe { field(info, ptr::null(), |i| i.status_message.as_ptr()) }
}

/// The state (`BGJOB_STATE_*`) when the snapshot was taken.
///
/// # Safety
/// `info` is NULL or a live snapshot.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn bgjob_job_info_state(info: *const bgjob_job_info) -> bgjob_job_state {
    // SAFETY: as documented for the caller.
    unsafe { field(info, 0, |i| i.state) }
}

/// What the job's work asked its host for (`bgjob_context_read_input`) while the job is
/// Blocked waiting for input; NULL otherwise. Answer with `bgjob_send_input`.
///
/// # Safety
/// `info` is NULL or a live snapshot.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn bgjob_job_info_prompt(info: *const bgjob_job_info) -> *const c_char {
    // SAFETY: as documented for the caller.
    unsafe {
        field(info, ptr::null(), |i| {
            i.prompt.as_ref().map_or(ptr::null(), |p| p.as_ptr())
        })
    }
}

/// The reason for the state, if an error caused it; NULL otherwise.
///
/// # Safety
/// `info` is NULL or a live snapshot.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn bgjob_job_info_reason(info: *const bgjob_job_info) -> *const c_char {
    // SAFETY: as documented for the caller.
    unsafe {
        field(info, ptr::null(), |i| {
            i.reason.as_ref().map_or(ptr::null(), |r| r.as_ptr())
        })
    }
}

/// When the job first ran, in nanoseconds since the Unix epoch; 0 if it never ran.
///
/// # Safety
/// `info` is NULL or a live snapshot.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn bgjob_job_info_begin_time_ns(info: *const bgjob_job_info) -> i64 {
    // SAFETY: as documented for the caller.
    unsafe { field(info, 0, |i| i.begin_ns) }
}

/// When the job finished, in nanoseconds since the Unix epoch; 0 if it has not.
///
/// # Safety
/// `info` is NULL or a live snapshot.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn bgjob_job_info_end_time_ns(info: *const bgjob_job_info) -> i64 {
    // SAFETY: as documented for the caller.
    unsafe { field(info, 0, |i| i.end_ns) }
}

/// Whether the job or its children held unread records.
///
/// # Safety
/// `info` is NULL or a live snapshot.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn bgjob_job_info_has_more_data(info: *const bgjob_job_info) -> bool {
    // SAFETY: as documented for the caller.
    unsafe { field(info, false, |i| i.has_more_data) }
}

/// How many child jobs it has.
///
/// # Safety
/// `info` is NULL or a live snapshot.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn bgjob_job_info_child_count(info: *const bgjob_job_info) -> usize {
    // SAFETY: as documented for the caller.
    unsafe { field(info, 0, |i| i.children.len()) }
}

/// The id of child `index` (creation order), or 0 if `index` is out of range.
///
/// # Safety
/// `info` is NULL or a live snapshot.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn bgjob_job_info_child_id(info: *const bgjob_job_info, index: usize) -> u64 {
    boundary_value(0, || {
        // SAFETY: as documented for the caller.
        let i = unsafe { non_null(info, "info") }?;
        Ok(i.children.get(index).copied().unwrap_or(0))
    })
}

/// The latest progress report: returns false if there is none. Each out-pointer may be
/// NULL; the strings live as long as the snapshot.
///
/// # Safety
/// `info` is NULL or a live snapshot; non-NULL out-pointers are writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn bgjob_job_info_progress(
    info: *const bgjob_job_info,
    out_percent_complete: *mut i32,
    out_activity: *mut *const c_char,
    out_status: *mut *const c_char,
) -> bool {
    boundary_value(false, || {
        // SAFETY: as documented for the caller.
        let i = unsafe { non_null(info, "info") }?;
        let Some((percent, activity, status)) = &i.progress else {
            return Ok(false);
        };
        // SAFETY: each non-NULL out-pointer is writable, as documented.
        unsafe {
            if !out_percent_complete.is_null() {
                *out_percent_complete = *percent;
            }
            if !out_activity.is_null() {
                *out_activity = activity.as_ptr();
            }
            if !out_status.is_null() {
                *out_status = status.as_ptr();
            }
        }
        Ok(true)
    })
}

/// The job's current state, without taking a snapshot.
///
/// # Safety
/// `out_state` is writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn bgjob_get_state(id: u64, out_state: *mut bgjob_job_state) -> bgjob_status {
    boundary(|| {
        if out_state.is_null() {
            return Err(Error::InvalidArgument("out_state is NULL".into()));
        }
        let state = repository().state_of(id)?;
        // SAFETY: non-NULL and writable, as documented.
        unsafe { *out_state = state as u32 };
        Ok(())
    })
}

/// Which jobs `bgjob_get_jobs` lists: built with the `bgjob_filter_*` setters; an empty
/// filter lists every top-level job. Every filter, a name filter too, leaves child jobs
/// out unless `bgjob_filter_set_include_children` asks for them.
pub struct bgjob_filter {
    filter: JobFilter,
}

/// Creates an empty filter.
///
/// # Safety
/// `out_filter` is writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn bgjob_filter_new(out_filter: *mut *mut bgjob_filter) -> bgjob_status {
    boundary(|| {
        if out_filter.is_null() {
            return Err(Error::InvalidArgument("out_filter is NULL".into()));
        }
        let f = Box::new(bgjob_filter {
            filter: JobFilter::default(),
        });
        // SAFETY: non-NULL and writable, as documented.
        unsafe { *out_filter = Box::into_raw(f) };
        Ok(())
    })
}

/// Frees a filter. NULL is a no-op.
///
/// # Safety
/// `filter` is NULL or a live filter, not used after this call.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn bgjob_filter_free(filter: *mut bgjob_filter) {
    let _ = boundary(|| {
        if !filter.is_null() {
            // SAFETY: a live filter from bgjob_filter_new, as documented.
            drop(unsafe { Box::from_raw(filter) });
        }
        Ok(())
    });
}

/// # Safety
/// `filter` is NULL or a live filter.
unsafe fn filter_mut<'a>(filter: *mut bgjob_filter) -> Result<&'a mut JobFilter> {
    // SAFETY: as the caller guarantees.
    unsafe { filter.as_mut() }
        .map(|f| &mut f.filter)
        .ok_or_else(|| Error::InvalidArgument("filter is NULL".into()))
}

/// Only jobs whose name matches `pattern` (`*`, `?`, `[a-z]`; case-insensitive).
///
/// Like every filter it lists top-level jobs only. To find a child job by its name (a
/// parallel job's child is named `Job<id>`; a custom job's child as given to
/// `bgjob_spec_add_custom_child`), also call `bgjob_filter_set_include_children(filter,
/// true)`: this is the C form of the lookup by name that finds children (Python's
/// `get_job(name=...)`). Names are not unique, so the answer is a list; the lookups by id
/// (`bgjob_get_job`) and by instance id (`bgjob_get_job_by_instance_id`) find children
/// without a filter.
///
/// # Safety
/// `filter` is a live filter; `pattern` is NUL-terminated.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn bgjob_filter_set_name(
    filter: *mut bgjob_filter,
    pattern: *const c_char,
) -> bgjob_status {
    boundary(|| {
        // SAFETY: as documented for the caller.
        let (f, p) = unsafe { (filter_mut(filter)?, c_str(pattern, "pattern")?) };
        f.name = Some(WildcardPattern::new(p));
        Ok(())
    })
}

/// Only jobs whose command matches `pattern` (wildcards as for names).
///
/// # Safety
/// `filter` is a live filter; `pattern` is NUL-terminated.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn bgjob_filter_set_command(
    filter: *mut bgjob_filter,
    pattern: *const c_char,
) -> bgjob_status {
    boundary(|| {
        // SAFETY: as documented for the caller.
        let (f, p) = unsafe { (filter_mut(filter)?, c_str(pattern, "pattern")?) };
        f.command = Some(WildcardPattern::new(p));
        Ok(())
    })
}

/// Only jobs in `state` (`BGJOB_STATE_*`; others are refused).
///
/// # Safety
/// `filter` is a live filter.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn bgjob_filter_set_state(
    filter: *mut bgjob_filter,
    state: bgjob_job_state,
) -> bgjob_status {
    boundary(|| {
        // SAFETY: as documented for the caller.
        let f = unsafe { filter_mut(filter) }?;
        f.state = Some(state_from_c(state)?);
        Ok(())
    })
}

/// Only jobs whose `has_more_data` equals `has_more_data`.
///
/// # Safety
/// `filter` is a live filter.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn bgjob_filter_set_has_more_data(
    filter: *mut bgjob_filter,
    has_more_data: bool,
) -> bgjob_status {
    boundary(|| {
        // SAFETY: as documented for the caller.
        unsafe { filter_mut(filter) }?.has_more_data = Some(has_more_data);
        Ok(())
    })
}

/// Only the newest `count` matching jobs (highest ids).
///
/// # Safety
/// `filter` is a live filter.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn bgjob_filter_set_newest(
    filter: *mut bgjob_filter,
    count: usize,
) -> bgjob_status {
    boundary(|| {
        // SAFETY: as documented for the caller.
        unsafe { filter_mut(filter) }?.newest = Some(count);
        Ok(())
    })
}

/// Whether child jobs are listed too (default: top-level jobs only). Needed to find a
/// child by name (`bgjob_filter_set_name`), by state or by any other filter.
///
/// # Safety
/// `filter` is a live filter.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn bgjob_filter_set_include_children(
    filter: *mut bgjob_filter,
    include_children: bool,
) -> bgjob_status {
    boundary(|| {
        // SAFETY: as documented for the caller.
        unsafe { filter_mut(filter) }?.include_children = include_children;
        Ok(())
    })
}

/// A list of job ids, sorted ascending. Free it with `bgjob_job_list_free`.
pub struct bgjob_job_list {
    ids: Vec<u64>,
}

/// Get-Job: the ids of the jobs matching `filter` (NULL = every top-level job), sorted.
/// Child jobs are listed only with `bgjob_filter_set_include_children(filter, true)`.
///
/// # Safety
/// `filter` is NULL or a live filter; `out_list` is writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn bgjob_get_jobs(
    filter: *const bgjob_filter,
    out_list: *mut *mut bgjob_job_list,
) -> bgjob_status {
    boundary(|| {
        if out_list.is_null() {
            return Err(Error::InvalidArgument("out_list is NULL".into()));
        }
        let default = JobFilter::default();
        // SAFETY: as documented for the caller.
        let f = unsafe { filter.as_ref() }.map_or(&default, |f| &f.filter);
        let ids = repository().find(f).iter().map(|j| j.id()).collect();
        // SAFETY: non-NULL and writable, as documented.
        unsafe { *out_list = Box::into_raw(Box::new(bgjob_job_list { ids })) };
        Ok(())
    })
}

/// How many ids the list holds (0 for NULL).
///
/// # Safety
/// `list` is NULL or a live list.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn bgjob_job_list_count(list: *const bgjob_job_list) -> usize {
    // SAFETY: as documented for the caller.
    boundary_value(0, || Ok(unsafe { non_null(list, "list") }?.ids.len()))
}

/// The id at `index`, or 0 if out of range.
///
/// # Safety
/// `list` is NULL or a live list.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn bgjob_job_list_get(list: *const bgjob_job_list, index: usize) -> u64 {
    boundary_value(0, || {
        // SAFETY: as documented for the caller.
        let l = unsafe { non_null(list, "list") }?;
        Ok(l.ids.get(index).copied().unwrap_or(0))
    })
}

/// Frees a list. NULL is a no-op.
///
/// # Safety
/// `list` is NULL or a live list, not used after this call.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn bgjob_job_list_free(list: *mut bgjob_job_list) {
    let _ = boundary(|| {
        if !list.is_null() {
            // SAFETY: a live list from bgjob_get_jobs, as documented.
            drop(unsafe { Box::from_raw(list) });
        }
        Ok(())
    });
}

/// Remove-Job: removes a finished top-level job and its children and frees their records
/// at once. An unfinished job gives `BGJOB_E_NOT_FINISHED` unless `force`: then it is
/// stopped and removed once finished (from its own work or callbacks it is removed at once
/// and its work ends in the background). A child job gives `BGJOB_E_CHILD_JOB`.
#[unsafe(no_mangle)]
pub extern "C" fn bgjob_remove(id: u64, force: bool) -> bgjob_status {
    boundary(|| repository().remove(id, force))
}
