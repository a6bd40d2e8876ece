//! The process-wide job repository (PowerShell's JobRepository): every job, top-level and
//! child, by id; listing, filtering and removal.
//!
//! Sharded by id so that starts and lookups from many threads rarely meet on one lock.

use crate::error::{Error, Result};
use crate::executor::blocking;
use crate::job::{Job, JobId};
use crate::state::JobState;
use crate::sync::{RwLock, read, write};
use crate::wildcard::WildcardPattern;
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::Arc;
use uuid::Uuid;

const SHARDS: usize = 16;

/// The job repository. There is one per process: [`repository()`].
pub struct Repository {
    shards: [Shard; SHARDS],
}

/// A shard's map from job id to job.
type JobMap = HashMap<JobId, Arc<Job>, BuildHasherDefault<IdHasher>>;

type Shard = RwLock<JobMap>;

/// The hash of a job id: ids are small consecutive integers made by the library, not
/// input an attacker picks, so one multiplication (Fibonacci hashing) spreads them as
/// well as SipHash does, at a fraction of its cost on every get, add and remove.
#[derive(Default)]
pub(crate) struct IdHasher(u64);

impl Hasher for IdHasher {
    fn write(&mut self, bytes: &[u8]) {
        // Only u64 keys are hashed here; fold anything else in, byte by byte.
        for &b in bytes {
            self.write_u64(u64::from(b) ^ self.0.rotate_left(8));
        }
    }

    fn write_u64(&mut self, id: u64) {
        self.0 = id.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

/// Every shard, write-locked (held across a `fork`, see `fork.rs`).
#[cfg(not(loom))]
pub(crate) type ShardGuards = [crate::sync::RwLockWriteGuard<'static, JobMap>; SHARDS];

crate::sync::lazy_static! {
    static REPOSITORY: Repository = {
        crate::fork::install();
        Repository {
            shards: std::array::from_fn(|_| RwLock::new(JobMap::default())),
        }
    };
}

/// The process-wide repository.
pub fn repository() -> &'static Repository {
    &REPOSITORY
}

/// Which jobs [`Repository::find`] returns (Get-Job's parameters). Empty = all top-level jobs.
#[derive(Clone, Debug, Default)]
pub struct JobFilter {
    /// Names matching this wildcard pattern (case-insensitive).
    pub name: Option<WildcardPattern>,
    /// Commands matching this wildcard pattern (case-insensitive).
    pub command: Option<WildcardPattern>,
    /// Jobs in this state.
    pub state: Option<JobState>,
    /// Jobs whose `has_more_data` is this.
    pub has_more_data: Option<bool>,
    /// Only the newest N of the jobs that match (highest ids).
    pub newest: Option<usize>,
    /// Child jobs too, not only top-level ones.
    pub include_children: bool,
}

impl JobFilter {
    fn matches(&self, job: &Job) -> bool {
        (self.include_children || !job.is_child())
            && self.state.is_none_or(|s| job.state() == s)
            && self.name.as_ref().is_none_or(|p| p.is_match(job.name()))
            && self
                .command
                .as_ref()
                .is_none_or(|p| p.is_match(job.command()))
            && self.has_more_data.is_none_or(|h| job.has_more_data() == h)
    }
}

impl Repository {
    fn shard(&self, id: JobId) -> &Shard {
        &self.shards[(id as usize) % SHARDS]
    }

    /// Write-locks every shard, in index order (the only place that holds more than one).
    #[cfg(not(loom))]
    pub(crate) fn lock_all_for_fork(&'static self) -> ShardGuards {
        std::array::from_fn(|i| write(&self.shards[i]))
    }

    /// Adds a job and its descendants.
    pub(crate) fn add(&self, job: &Arc<Job>) {
        job.for_each_in_subtree(&mut |j| {
            let mut shard = write(self.shard(j.id()));
            shard.insert(j.id(), j.clone());
            // Under the shard lock, as in `detach`: a get and a state get agree.
            j.join_index();
        });
    }

    /// Takes a job and its descendants out; false if the job was not there (someone else
    /// removed it first). The caller releases the job outside every lock.
    pub(crate) fn detach(&self, job: &Arc<Job>) -> bool {
        let mut found = false;
        job.for_each_in_subtree(&mut |j| {
            let taken = {
                let mut shard = write(self.shard(j.id()));
                let taken = shard.remove(&j.id());
                if taken.is_some() {
                    // Under the shard lock (order: shard, job, state index): once a get or
                    // a removal finds the job gone, a state get does too.
                    j.leave_index();
                }
                if shard.is_empty() {
                    // An empty repository holds no memory: everything is freed when done.
                    shard.shrink_to_fit();
                }
                taken
            };
            // The Arc drops here, after the shard lock: the job itself still holds its user
            // data until `release`, so nothing of the user's runs under the lock.
            found |= taken.is_some() && j.id() == job.id();
        });
        found
    }

    /// The job (top-level or child) with this id.
    pub fn get(&self, id: JobId) -> Result<Arc<Job>> {
        read(self.shard(id))
            .get(&id)
            .cloned()
            .ok_or(Error::NoSuchJob(id))
    }

    /// The state of the job (top-level or child) with this id: what [`Repository::get`]
    /// and [`Job::state`] give, from the state index, which costs the same with a thousand
    /// jobs kept or a million (no hash map bucket, no job lock to touch).
    pub fn state_of(&self, id: JobId) -> Result<JobState> {
        crate::state_index::get(id).ok_or(Error::NoSuchJob(id))
    }

    /// The job with this instance id. Scans the repository (instance ids are rare lookups).
    pub fn get_by_instance_id(&self, instance_id: Uuid) -> Result<Arc<Job>> {
        for shard in &self.shards {
            let shard = read(shard);
            if let Some(j) = shard.values().find(|j| j.instance_id() == instance_id) {
                return Ok(j.clone());
            }
        }
        Err(Error::NoSuchInstance(instance_id.to_string()))
    }

    /// The jobs that match `filter`, sorted by id.
    pub fn find(&self, filter: &JobFilter) -> Vec<Arc<Job>> {
        // The filter reads job state; it runs without any shard lock held.
        let mut all = self.all();
        all.retain(|j| filter.matches(j));
        all.sort_unstable_by_key(|j| j.id());
        if let Some(n) = filter.newest {
            let skip = all.len().saturating_sub(n);
            all.drain(..skip);
        }
        all
    }

    /// Every job it holds, children included, in no order.
    pub(crate) fn all(&self) -> Vec<Arc<Job>> {
        let mut all = Vec::new();
        for shard in &self.shards {
            all.extend(read(shard).values().cloned());
        }
        all
    }

    /// How many jobs the repository holds, children included.
    pub fn len(&self) -> usize {
        self.shards.iter().map(|s| read(s).len()).sum()
    }

    /// Whether the repository holds no job.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Removes a top-level job and its children and frees their records at once.
    ///
    /// An unfinished job is refused (`NotFinished`) unless `force`: then it is stopped and
    /// removed once it has finished. Either way the callbacks of its finishing change run
    /// before it goes (removal ends its callback registrations). From the job's own work or callbacks, where waiting
    /// for it could never end, a forced removal takes it out at once and its work ends in
    /// the background (its user data is freed when it does).
    pub fn remove(&self, id: JobId, force: bool) -> Result<()> {
        if let Some(job) = self.take_if_done(id) {
            job.release();
            return Ok(());
        }
        let job = self.get(id)?;
        if job.is_child() {
            return Err(Error::ChildJob(id));
        }
        if !job.state().is_finished() {
            if !force {
                return Err(Error::NotFinished(id));
            }
            job.request_stop();
        }
        // Removal ends the job's callback registrations: first let the callbacks of its
        // finishing change run (the stored state can be ahead of the delivered one).
        if job.check_can_wait().is_ok() {
            // Only a wait that will block lends the worker to its pool.
            if !job.wait_until(Some(std::time::Instant::now()), JobState::is_finished) {
                blocking(|| job.wait_until(None, JobState::is_finished));
            }
        }
        if !self.detach(&job) {
            return Err(Error::NoSuchJob(id));
        }
        job.release();
        Ok(())
    }
}

impl Repository {
    /// The common removal in one lookup: a top-level job without children whose finished
    /// state is settled (its callbacks ran) is taken out under its shard's lock at once.
    /// `None` for any other job (the general path then decides), and for an unknown id.
    fn take_if_done(&self, id: JobId) -> Option<Arc<Job>> {
        let mut shard = write(self.shard(id));
        // Not `entry`: it reserves room for an insert, so a removal of an unknown id would
        // allocate a table for an empty shard (and keep it).
        let job = shard.get(&id)?;
        if job.is_child() || !job.children().is_empty() || !job.is_done_by(JobState::is_finished) {
            return None;
        }
        let job = shard.remove(&id)?; // the probe's bucket is still in the cache
        job.leave_index(); // under the shard lock, as in `detach`
        if shard.is_empty() {
            shard.shrink_to_fit();
        }
        Some(job)
    }
}

/// Get-Job by id.
pub fn get_job(id: JobId) -> Result<Arc<Job>> {
    repository().get(id)
}

/// Get-Job with a filter: the matching jobs sorted by id.
pub fn get_jobs(filter: &JobFilter) -> Vec<Arc<Job>> {
    repository().find(filter)
}

/// Remove-Job: see [`Repository::remove`].
pub fn remove_job(id: JobId, force: bool) -> Result<()> {
    repository().remove(id, force)
}
