//! Process jobs (PowerShell's Start-Job): an external program run in the background. Its
//! stdout lines become output records and its stderr lines error records, in the order
//! they arrive; exit code 0 completes the job, anything else fails it; a stop sends
//! SIGTERM to its process group, then SIGKILL after a grace period.
//!
//! A pool worker starts the process (so the pool's throttle applies) and hands it to the
//! one reactor thread that watches every running process (see `reactor.rs`): the worker
//! is free at once, while the job keeps its throttle permit until the process ends.
//!
//! Each running process job holds three or four descriptors (stdout, stderr, a pidfd,
//! stdin while it is being fed): hundreds at once need `RLIMIT_NOFILE` above its usual
//! soft limit of 1024, or a throttle.

mod exit;
mod output;
pub(crate) mod reactor;
mod spawn;

pub use output::{MAX_LINE, OutputMode};

use crate::context::WorkContext;
use crate::error::{Error, Result};
use crate::events::StateCallback;
use crate::executor::Pool;
use crate::job::{Job, JobInit, WorkResult};
use std::ffi::OsString;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// How long a stopped process has between SIGTERM and SIGKILL unless its spec says.
pub const DEFAULT_STOP_GRACE: Duration = Duration::from_secs(5);

/// Why a process job cannot be suspended.
const NOT_SUSPENDABLE: &str = "a process job cannot be suspended (its process has no checkpoints)";

/// Everything needed to start a process job: the program and its arguments (no shell
/// unless argv runs one), its environment, working directory and stdin bytes.
pub struct ProcessJobSpec {
    name: Option<String>,
    command: String,
    callbacks: Vec<StateCallback>,
    program: spawn::Program,
    pool: Option<Pool>,
    grace: Duration,
    mode: OutputMode,
    text: bool,
}

impl ProcessJobSpec {
    /// A spec running `argv[0]` (looked up in `PATH` unless it contains a `/`) with the
    /// arguments `argv[1..]`, in the caller's environment and working directory, with
    /// stdin at end of file.
    pub fn new<I, S>(argv: I) -> ProcessJobSpec
    where
        I: IntoIterator<Item = S>,
        S: Into<OsString>,
    {
        ProcessJobSpec {
            name: None,
            command: String::new(),
            callbacks: Vec::new(),
            program: spawn::Program {
                argv: argv.into_iter().map(Into::into).collect(),
                ..Default::default()
            },
            pool: None,
            grace: DEFAULT_STOP_GRACE,
            mode: OutputMode::Lines,
            text: true,
        }
    }

    crate::spec::spec_builder_methods!();

    /// Sets (or overrides) an environment variable of the process.
    pub fn env(mut self, key: impl Into<OsString>, value: impl Into<OsString>) -> Self {
        self.program.env.push((key.into(), Some(value.into())));
        self
    }

    /// Removes an environment variable from the process's environment.
    pub fn env_remove(mut self, key: impl Into<OsString>) -> Self {
        self.program.env.push((key.into(), None));
        self
    }

    /// Starts from an empty environment instead of the caller's: only the variables set
    /// with [`env`](Self::env) (before or after this call, and not removed after being
    /// set) are passed — the environment is replaced. `PATH` lookup of `argv[0]` then uses the `PATH` given, if any.
    pub fn env_clear(mut self) -> Self {
        self.program.env_clear = true;
        self
    }

    /// Runs the process in `dir`. Starting fails at once (`Error::System`) if it is not a
    /// directory that exists.
    pub fn current_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.program.cwd = Some(dir.into());
        self
    }

    /// Feeds `bytes` to the process's stdin, then closes it (it sees end of file).
    pub fn stdin(mut self, bytes: impl Into<Vec<u8>>) -> Self {
        self.program.stdin = Some(bytes.into());
        self
    }

    /// Starts the process from `pool` instead of the default pool: the pool's throttle
    /// counts it as running until it ends (it takes no worker thread meanwhile).
    pub fn pool(mut self, pool: &Pool) -> Self {
        self.pool = Some(pool.clone());
        self
    }

    /// Sets how long a stop waits after SIGTERM before it sends SIGKILL (default
    /// [`DEFAULT_STOP_GRACE`]; zero kills at once).
    pub fn stop_grace(mut self, grace: Duration) -> Self {
        self.grace = grace;
        self
    }

    /// Sets how output becomes records: lines (the default) or chunks as they arrive.
    pub fn output_mode(mut self, mode: OutputMode) -> Self {
        self.mode = mode;
        self
    }

    /// Whether records that decode as UTF-8 are [`Payload::Text`](crate::Payload::Text)
    /// (the default) or all [`Payload::Bytes`](crate::Payload::Bytes). Bytes that are
    /// not UTF-8 are kept as bytes either way.
    pub fn text(mut self, text: bool) -> Self {
        self.text = text;
        self
    }

    /// Starts the job: see [`start_process_job`].
    pub fn start(self) -> Result<Arc<Job>> {
        start_process_job(self)
    }

    /// Runs the job on this thread: the process starts here, and this returns once it has
    /// ended, its records are readable and the callbacks of its finished state have run.
    /// The same checks as [`start`](Self::start) apply first.
    pub fn run_inline(self) -> Result<Arc<Job>> {
        let (job, _pool) = self.into_job()?;
        Ok(crate::spec::run_here(job))
    }

    /// The first half of [`run_inline`](Self::run_inline): starts the process on this
    /// thread (no pool, so no throttle) and returns the job as soon as the process runs —
    /// or has failed to start. For a caller that waits in its own way, e.g. one that must
    /// notice signals meanwhile.
    pub fn start_here(self) -> Result<Arc<Job>> {
        let (job, _pool) = self.into_job()?;
        crate::spec::start_here(&job);
        Ok(job)
    }

    /// The job this spec describes, not yet started; errors for a spec that cannot start.
    fn into_job(self) -> Result<(Arc<Job>, Option<Pool>)> {
        self.check()?;
        let command = if self.command.is_empty() {
            spawn::command_line(&self.program.argv)
        } else {
            self.command
        };
        let launch = Launch {
            program: self.program,
            grace: self.grace,
            mode: self.mode,
            text: self.text,
        };
        let job = Job::new_leaf(JobInit {
            work: Some(Box::new(move |ctx: &WorkContext| launch.run(ctx))),
            callbacks: self.callbacks,
            on_stop: Some(Box::new(|job: &Arc<Job>| reactor::stop(job.id()))),
            unsuspendable: Some(NOT_SUSPENDABLE),
            ..JobInit::new(self.name, command, "ProcessJob")
        });
        Ok((job, self.pool))
    }

    /// What can be known wrong before anything starts.
    fn check(&self) -> Result<()> {
        let argv = &self.program.argv;
        if argv.first().is_none_or(|a| a.is_empty()) {
            return Err(Error::InvalidArgument(
                "a process job needs a program: argv is empty or argv[0] is \"\"".into(),
            ));
        }
        let nul = |s: &OsString| s.as_encoded_bytes().contains(&0);
        if argv.iter().any(nul)
            || self.program.env.iter().any(|(k, v)| {
                nul(k)
                    || k.is_empty()
                    || k.as_encoded_bytes().contains(&b'=')
                    || v.as_ref().is_some_and(nul)
            })
        {
            return Err(Error::InvalidArgument(
                "argv and environment entries must not contain NUL, and variable names \
                 must be non-empty and contain no '='"
                    .into(),
            ));
        }
        if let Some(dir) = &self.program.cwd {
            let what = || format!("working directory '{}'", dir.display());
            match std::fs::metadata(dir) {
                Ok(m) if m.is_dir() => {}
                Ok(_) => {
                    return Err(Error::system(
                        what(),
                        &std::io::Error::from_raw_os_error(libc::ENOTDIR),
                    ));
                }
                Err(e) => return Err(Error::system(what(), &e)),
            }
        }
        Ok(())
    }
}

/// Start-Job for a program: creates the process job (type `ProcessJob`, location
/// `localhost`, command = argv as typed in a shell), adds it to the repository and queues
/// it on its pool; returns at once. A program that cannot be started (not found, not
/// executable) fails the job with the OS's reason; a working directory that does not
/// exist fails this call (`Error::System`) and leaves nothing behind.
pub fn start_process_job(spec: ProcessJobSpec) -> Result<Arc<Job>> {
    let (job, pool) = spec.into_job()?;
    crate::spec::queue(job, pool)
}

/// What the job's work needs: run on a pool worker, it starts the process and hands it
/// (with the job's end) to the reactor.
struct Launch {
    program: spawn::Program,
    grace: Duration,
    mode: OutputMode,
    text: bool,
}

impl Launch {
    fn run(self, ctx: &WorkContext) -> WorkResult {
        let Launch {
            mut program,
            grace,
            mode,
            text,
        } = self;
        let spawned = spawn::spawn(&program)
            .map_err(|e| format!("cannot start '{}': {e}", program.argv[0].to_string_lossy()))?;
        let completion = ctx.hand_off()?;
        reactor::watch(reactor::Watch {
            completion,
            spawned,
            stdin_data: program.stdin.take().unwrap_or_default(),
            grace,
            mode,
            text,
        });
        Ok(())
    }
}
