//! The state index: every repository job's state and settled state, a byte each per id,
//! in pages of 4,096 consecutive ids.
//!
//! Get-Job by id for a state (`bgjob_get_state`, what a host polls) would otherwise find
//! the job in its shard's hash map and lock the job: with a million jobs kept, two or three
//! cache misses per call (the map's bucket, the job's reference count and lock), 20-40
//! times the cost of the same call with a thousand (W6 in benches/README.md). Ids are the
//! library's own consecutive integers, so their states pack densely: a million jobs take
//! two megabytes here, which stay in the caches, and a get is a directory lookup in a map
//! of a few hundred pages plus one byte load, whatever the number of jobs kept. The
//! settled state (what waits go by: `Job::is_done_by`) lets a wait on jobs that are done
//! already answer without finding them at all (W1: the lookups of a wait on 100,000 jobs
//! were 12% of its time, each a cache miss).
//!
//! A page lives while it holds a job, and once its ids are all handed out and every job
//! in it is removed, it is freed: the index costs two bytes per id between the oldest kept
//! job and the newest, never one per job ever made. Each job holds its page (set in its
//! state cell when it is added to the repository), so a state change writes its byte
//! without touching the directory; only gets, adds and removals read the directory, and
//! only a page's birth and death write it.

use crate::job::JobId;
use crate::state::JobState;
use crate::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
use crate::sync::{RwLock, read, write};
use std::collections::HashMap;
use std::sync::Arc;

#[cfg(not(loom))]
const PAGE_BITS: u32 = 12;
/// Under loom a page is 4 ids: its bytes are loom atomics, each of which every execution
/// makes and tracks (8,192 of them per page would dwarf the model), and a model's few
/// jobs then also make and free pages, a path the full size would leave unexplored.
#[cfg(loom)]
const PAGE_BITS: u32 = 2;
const PAGE_LEN: u64 = 1 << PAGE_BITS;
/// The byte of an id that has no job in the repository (never added, or removed).
const ABSENT: u8 = u8::MAX;

/// The states of the jobs with ids `n * PAGE_LEN .. (n + 1) * PAGE_LEN`.
pub(crate) struct Page {
    states: Box<[AtomicU8]>,
    /// Each job's settled state (`Job::settled`'s byte: a state, or unsettled).
    settled: Box<[AtomicU8]>,
    /// Jobs of this page in the repository now.
    live: AtomicUsize,
}

impl Page {
    fn new() -> Page {
        Page {
            states: (0..PAGE_LEN).map(|_| AtomicU8::new(ABSENT)).collect(),
            settled: (0..PAGE_LEN).map(|_| AtomicU8::new(ABSENT)).collect(),
            live: AtomicUsize::new(0),
        }
    }

    /// Records job `id`'s state (the job's lock is held: its changes are written in order).
    pub(crate) fn set(&self, id: JobId, state: JobState) {
        self.states[slot(id)].store(state as u8, Ordering::Release);
    }

    /// Records job `id`'s settled state byte (the job's lock is held).
    pub(crate) fn set_settled(&self, id: JobId, settled: u8) {
        self.settled[slot(id)].store(settled, Ordering::Release);
    }
}

fn slot(id: JobId) -> usize {
    (id & (PAGE_LEN - 1)) as usize
}

/// The directory: page number → page.
pub(crate) type Directory =
    HashMap<u64, Arc<Page>, std::hash::BuildHasherDefault<crate::repository::IdHasher>>;

crate::sync::lazy_static! {
    static DIRECTORY: RwLock<Directory> = Default::default();
}

/// Job `id` was added to the repository in `state`: its byte is set and its page (made if
/// needed) returned for the job to keep, so that its later changes write here directly.
/// Called with the job's lock held.
pub(crate) fn add(id: JobId, state: JobState, settled: u8) -> Arc<Page> {
    let number = id >> PAGE_BITS;
    let page = {
        // Counted under the read lock: a removal frees a page only under the write lock,
        // after checking it is still empty, so it never frees one this job is joining.
        let dir = read(&DIRECTORY);
        dir.get(&number)
            .inspect(|p| {
                p.live.fetch_add(1, Ordering::AcqRel);
            })
            .cloned()
    };
    let page = page.unwrap_or_else(|| {
        let mut dir = write(&DIRECTORY);
        let p = dir
            .entry(number)
            .or_insert_with(|| Arc::new(Page::new()))
            .clone();
        p.live.fetch_add(1, Ordering::AcqRel);
        p
    });
    page.set(id, state);
    page.set_settled(id, settled);
    page
}

/// Job `id` left the repository: its byte reads absent again, and its page goes once every
/// id of it was handed out and none of its jobs is left. Called with the job's lock held.
pub(crate) fn remove(id: JobId, page: Arc<Page>) {
    page.states[slot(id)].store(ABSENT, Ordering::Release);
    page.settled[slot(id)].store(ABSENT, Ordering::Release);
    if page.live.fetch_sub(1, Ordering::AcqRel) != 1 {
        return;
    }
    let number = id >> PAGE_BITS;
    let page_end = (number + 1) << PAGE_BITS;
    if crate::job::next_id() < page_end {
        return; // ids of this page are still to come: it stays for them
    }
    let mut dir = write(&DIRECTORY);
    // Another job of the page may have been added since (ids are handed out before their
    // jobs are added): only a page that is still empty, and still this page, goes.
    if page.live.load(Ordering::Acquire) == 0
        && dir.get(&number).is_some_and(|p| Arc::ptr_eq(p, &page))
    {
        dir.remove(&number);
        if dir.is_empty() {
            dir.shrink_to_fit();
        }
    }
}

/// Frees every page that holds no job, also the newest ones, kept otherwise while their
/// later ids are still to come (a job added there later makes its page again). For a
/// shutdown: a leak checker finds nothing of the index left once the repository is empty.
pub(crate) fn free_empty_pages() {
    let mut dir = write(&DIRECTORY);
    // Stable under the write lock: `add` counts a job under the read lock.
    dir.retain(|_, page| page.live.load(Ordering::Acquire) > 0);
    if dir.is_empty() {
        dir.shrink_to_fit();
    }
}

/// The state of job `id` if it is in the repository.
pub(crate) fn get(id: JobId) -> Option<JobState> {
    let dir = read(&DIRECTORY);
    let byte = dir.get(&(id >> PAGE_BITS))?.states[slot(id)].load(Ordering::Acquire);
    JobState::from_u32(u32::from(byte))
}

/// For each of `ids`, whether the job is in the repository with a settled state that
/// `until` accepts. One look at the directory for the whole batch (a wait may name 100,000
/// ids), and one per page change in it, not one per id.
pub(crate) fn settled_each(ids: &[JobId], until: fn(JobState) -> bool) -> Vec<bool> {
    let dir = read(&DIRECTORY);
    let mut page: Option<(u64, Option<&Arc<Page>>)> = None;
    ids.iter()
        .map(|&id| {
            let number = id >> PAGE_BITS;
            let p = match page {
                Some((n, p)) if n == number => p,
                _ => page.insert((number, dir.get(&number))).1,
            };
            p.and_then(|p| {
                JobState::from_u32(u32::from(p.settled[slot(id)].load(Ordering::Acquire)))
            })
            .is_some_and(until)
        })
        .collect()
}

/// The directory, write-locked (held across a `fork`, see `fork.rs`).
#[cfg(not(loom))]
pub(crate) fn lock_for_fork() -> crate::sync::RwLockWriteGuard<'static, Directory> {
    write(&DIRECTORY)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::job::allocate_ids;

    /// Held by every test here: `free_empty_pages` frees other tests' emptied pages.
    static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

    fn serial() -> std::sync::MutexGuard<'static, ()> {
        SERIAL
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// A whole page of fresh ids for this test alone (other tests share the directory).
    fn fresh_page() -> u64 {
        let first = allocate_ids(3 * PAGE_LEN);
        (first >> PAGE_BITS) + 1
    }

    fn page_exists(number: u64) -> bool {
        read(&DIRECTORY).contains_key(&number)
    }

    #[test]
    fn states_read_back_until_removed_and_an_emptied_page_goes() {
        let _serial = serial();
        let number = fresh_page();
        let ids: Vec<JobId> = (0..PAGE_LEN).map(|i| (number << PAGE_BITS) + i).collect();
        assert_eq!(get(ids[0]), None);
        let pages: Vec<Arc<Page>> = ids
            .iter()
            .map(|&id| add(id, JobState::NotStarted, JobState::NotStarted as u8))
            .collect();
        assert!(page_exists(number));
        pages[7].set(ids[7], JobState::Running);
        assert_eq!(get(ids[7]), Some(JobState::Running));
        assert_eq!(get(ids[8]), Some(JobState::NotStarted));
        // A batch look: across pages, absent ids (an unused page) are not done.
        pages[7].set_settled(ids[7], JobState::Completed as u8);
        let elsewhere = ((number + 1) << PAGE_BITS) + 3;
        assert_eq!(
            settled_each(&[ids[7], elsewhere, ids[8], ids[7]], JobState::is_finished),
            [true, false, false, true]
        );
        for (&id, page) in ids.iter().zip(pages).rev() {
            remove(id, page);
            assert_eq!(get(id), None);
            // The page stays while any of its jobs is left.
            assert_eq!(page_exists(number), id != ids[0]);
        }
    }

    #[test]
    fn a_page_whose_ids_are_still_to_come_stays_when_emptied() {
        let _serial = serial();
        // The newest page: its later ids are not handed out yet.
        let id = allocate_ids(1);
        let number = id >> PAGE_BITS;
        if crate::job::next_id() >= (number + 1) << PAGE_BITS {
            return; // the id was the page's last: nothing is still to come
        }
        let page = add(id, JobState::Completed, JobState::Completed as u8);
        remove(id, page);
        assert!(page_exists(number));
        assert_eq!(get(id), None);
    }

    #[test]
    fn freeing_empty_pages_keeps_the_ones_with_jobs() {
        let _serial = serial();
        let kept = fresh_page();
        let emptied = fresh_page();
        let id = kept << PAGE_BITS;
        let page = add(id, JobState::Running, JobState::Running as u8);
        let other = (emptied << PAGE_BITS) + 5;
        let p = add(other, JobState::Completed, JobState::Completed as u8);
        // Emptied while (for this test) treated as the newest page: still there.
        p.live.fetch_sub(1, Ordering::AcqRel);
        p.states[slot(other)].store(ABSENT, Ordering::Release);
        drop(p);
        free_empty_pages();
        assert!(page_exists(kept) && !page_exists(emptied));
        assert_eq!(get(id), Some(JobState::Running));
        remove(id, page);
        // A job added to a freed page makes it again.
        let again = add(other, JobState::NotStarted, JobState::NotStarted as u8);
        assert_eq!(get(other), Some(JobState::NotStarted));
        remove(other, again);
    }

    #[test]
    fn adds_and_removes_racing_on_one_page_never_lose_a_present_job() {
        let _serial = serial();
        let number = fresh_page();
        let threads: Vec<_> = (0..4u64)
            .map(|t| {
                std::thread::spawn(move || {
                    for round in 0..200u64 {
                        // Each thread owns ids t, t+4, …; each round re-adds them.
                        let ids: Vec<JobId> = (0..8)
                            .map(|i| (number << PAGE_BITS) + t + 4 * (i + 8 * (round % 100)))
                            .collect();
                        let pages: Vec<_> = ids
                            .iter()
                            .map(|&id| add(id, JobState::Running, JobState::Running as u8))
                            .collect();
                        for &id in &ids {
                            assert_eq!(get(id), Some(JobState::Running), "id {id}");
                        }
                        for (&id, p) in ids.iter().zip(pages) {
                            remove(id, p);
                            assert_eq!(get(id), None);
                        }
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert!(
            !page_exists(number),
            "an emptied page that was handed out whole stays"
        );
    }
}
