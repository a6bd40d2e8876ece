//! The process reactor: one thread serves every running process job — hundreds of them
//! need no thread per job or per pipe. It waits in `epoll` on every job's stdout and
//! stderr (records as the bytes arrive), its stdin (fed without blocking) and a pidfd
//! that becomes readable when the process exits, plus an eventfd that wakes it for new
//! jobs and stop requests, and timers for the SIGKILL that follows a SIGTERM's grace.
//!
//! A job finishes once its process has exited and been reaped and what its pipes held at
//! that moment has become records: a descendant that keeps a pipe open (a daemon, a
//! grandchild in the background) cannot keep the job Running. Reaping goes by pid
//! (`waitpid(pid)`), never `waitpid(-1)`, so a host's own children are left alone; a host
//! that reaps with `waitpid(-1)` itself can steal ours (the job then fails, saying so).
//!
//! The thread starts with the first process job and exits after it has been idle for
//! [`IDLE_LINGER`]; [`shutdown`] ends it sooner once no job is left.

use super::output::{OutputMode, Splitter};
use super::spawn::Spawned;
use crate::error::{Error, Result};
use crate::eventfd::EventFd;
use crate::executor::Completion;
use crate::fork;
use crate::job::{Job, JobId};
use crate::record::Stream;
use crate::sync::{lock, wait_until};
use std::collections::HashMap;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::{Arc, Condvar, Mutex, Weak};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How long the reactor thread stays with no job before it exits.
const IDLE_LINGER: Duration = Duration::from_secs(2);
/// How often a process without a pidfd (a kernel before 5.3) is checked for its exit.
const REAP_TICK: Duration = Duration::from_millis(20);
/// The most read from one pipe per wake-up, so one chatty process cannot starve others.
const READ_CHUNK: usize = 64 * 1024;
/// The most drained from a pipe after its process exited (a descendant may go on writing).
const DRAIN_LIMIT: usize = 4 << 20;
/// What a process job still running in the parent at the instant of a `fork` becomes in
/// the child: its process is the parent's child, not this one's.
const ORPHANED: &str =
    "the process forked while this job's process was running; it is the parent process's child";

/// A started process handed to the reactor with everything needed to finish its job.
pub(super) struct Watch {
    pub completion: Completion,
    pub spawned: Spawned,
    pub stdin_data: Vec<u8>,
    pub grace: Duration,
    pub mode: OutputMode,
    pub text: bool,
}

enum Command {
    Watch(Box<Watch>),
    Stop(JobId),
}

pub(crate) struct Reactor {
    /// The fork generation it serves (a forked child starts a reactor of its own).
    generation: u64,
    epoll: OwnedFd,
    wake: EventFd,
    inbox: Mutex<Inbox>,
    /// Signalled when the thread exits.
    exited: Condvar,
    /// The jobs it serves, for a forked child to fail them.
    jobs: Mutex<HashMap<JobId, Weak<Job>>>,
}

#[derive(Default)]
struct Inbox {
    commands: Vec<Command>,
    alive: bool,
    quit: bool,
    thread: Option<JoinHandle<()>>,
}

static REACTOR: Mutex<Option<Arc<Reactor>>> = Mutex::new(None);

/// The reactor's lock, held by the forking thread around a `fork` (see `fork.rs`).
pub(crate) type ForkGuard = std::sync::MutexGuard<'static, Option<Arc<Reactor>>>;

/// Takes the reactor's lock for a `fork`, so that the child never starts with it held by a
/// thread it does not have.
pub(crate) fn lock_for_fork() -> ForkGuard {
    lock(&REACTOR)
}

/// Hands a started process to the reactor. On error (no thread, no epoll) the process is
/// killed and reaped and the job fails, so nothing is left behind.
pub(super) fn watch(w: Watch) {
    let reactor = match current() {
        Ok(r) => r,
        Err(e) => return abandon(w, e),
    };
    if let Err((w, e)) = reactor.send_watch(w) {
        abandon(*w, e);
    }
}

/// Asks the reactor to stop job `id`'s process (SIGTERM to its group, SIGKILL after the
/// grace period). Nothing happens for a job it does not serve.
pub(super) fn stop(id: JobId) {
    let reactor = lock(&REACTOR).clone();
    if let Some(r) = reactor.filter(|r| r.generation == fork::generation()) {
        r.send(Command::Stop(id));
    }
}

/// Ends the reactor thread once it serves no job, waiting for that up to `timeout`
/// (`None` = no limit). For a host that wants every bgjob thread gone before it exits.
pub(crate) fn shutdown(timeout: Option<Duration>) {
    let Some(r) = lock(&REACTOR).clone() else {
        return;
    };
    if r.generation != fork::generation() {
        return;
    }
    let deadline = timeout.map(crate::sync::deadline_after);
    let mut inbox = lock(&r.inbox);
    inbox.quit = true;
    r.notify();
    let (mut inbox, _) = wait_until(&r.exited, inbox, deadline, |i| !i.alive);
    if !inbox.alive {
        if let Some(h) = inbox.thread.take() {
            let _ = h.join();
        }
    }
    inbox.quit = false;
}

/// In a forked child: fails the process jobs the parent's reactor served (called when a
/// pool is first used in the child, so they do not stay Running there for ever).
pub(crate) fn after_fork() {
    drop_stale(&mut lock(&REACTOR), fork::generation());
}

/// The reactor of this process, made on first use (and anew in a forked child).
fn current() -> Result<Arc<Reactor>> {
    let mut slot = lock(&REACTOR);
    let generation = fork::generation();
    drop_stale(&mut slot, generation);
    if let Some(r) = slot.as_ref() {
        return Ok(r.clone());
    }
    let r = Arc::new(Reactor::new(generation)?);
    *slot = Some(r.clone());
    Ok(r)
}

/// Empties `slot` if it holds a reactor of another fork generation (the parent's),
/// failing the jobs that one served.
fn drop_stale(slot: &mut Option<Arc<Reactor>>, generation: u64) {
    if let Some(old) = slot.take_if(|r| r.generation != generation) {
        orphan(old);
    }
}

/// In a forked child: the parent's reactor thread is gone and its processes are not ours.
/// Their jobs fail (on a thread: their callbacks must not run inside the host's call).
fn orphan(old: Arc<Reactor>) {
    // `try_lock`: a lock the vanished thread held stays held for ever.
    let jobs: Vec<Arc<Job>> = match old.jobs.try_lock() {
        Ok(j) => j.values().filter_map(Weak::upgrade).collect(),
        Err(_) => Vec::new(),
    };
    if !jobs.is_empty() {
        let _ = std::thread::Builder::new()
            .name("bgjob-fork".into())
            .spawn(move || {
                for job in jobs {
                    job.finish_work(Err(ORPHANED.to_string()));
                }
            });
    }
}

/// Kills and reaps a process the reactor could not take, and fails its job with `e`.
fn abandon(w: Watch, e: Error) {
    signal_group(w.spawned.pid, libc::SIGKILL);
    let mut status = 0;
    // SAFETY: waiting for our own child by pid; `status` is writable.
    unsafe { libc::waitpid(w.spawned.pid, &mut status, 0) };
    w.completion
        .finish(Err(format!("cannot watch the process: {e}")));
}

impl Reactor {
    fn new(generation: u64) -> Result<Reactor> {
        fork::install();
        // SAFETY: plain syscalls; each result is checked before it is owned.
        let epoll = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
        if epoll < 0 {
            return Err(Error::system(
                "epoll_create1",
                &std::io::Error::last_os_error(),
            ));
        }
        // SAFETY: a new descriptor, owned from here on.
        let epoll = unsafe { OwnedFd::from_raw_fd(epoll) };
        let wake = EventFd::new().map_err(|e| Error::system("eventfd", &e))?;
        epoll_add(&epoll, wake.as_raw_fd(), libc::EPOLLIN as u32, WAKE_TOKEN)
            .map_err(|e| Error::system("epoll_ctl", &e))?;
        Ok(Reactor {
            generation,
            epoll,
            wake,
            inbox: Mutex::new(Inbox::default()),
            exited: Condvar::new(),
            jobs: Mutex::new(HashMap::new()),
        })
    }

    fn send_watch(self: &Arc<Self>, w: Watch) -> std::result::Result<(), (Box<Watch>, Error)> {
        let id = w.completion.job().id();
        lock(&self.jobs).insert(id, Arc::downgrade(w.completion.job()));
        let mut inbox = lock(&self.inbox);
        if !inbox.alive {
            // A thread that was alive has said so last, under this lock: joining is quick.
            if let Some(h) = inbox.thread.take() {
                let _ = h.join();
            }
            let me = self.clone();
            match std::thread::Builder::new()
                .name("bgjob-reactor".into())
                .spawn(move || me.run())
            {
                Ok(h) => {
                    inbox.thread = Some(h);
                    inbox.alive = true;
                }
                Err(e) => {
                    drop(inbox);
                    lock(&self.jobs).remove(&id);
                    return Err((
                        Box::new(w),
                        Error::system("cannot start the reactor thread", &e),
                    ));
                }
            }
        }
        inbox.commands.push(Command::Watch(Box::new(w)));
        drop(inbox);
        self.notify();
        Ok(())
    }

    fn send(&self, cmd: Command) {
        let mut inbox = lock(&self.inbox);
        if !inbox.alive {
            // No thread, so no process it serves: nothing to stop.
            return;
        }
        inbox.commands.push(cmd);
        drop(inbox);
        self.notify();
    }

    fn notify(&self) {
        self.wake.notify();
    }

    /// The reactor thread.
    fn run(self: Arc<Self>) {
        block_signals();
        let mut st = State::default();
        let mut events = vec![libc::epoll_event { events: 0, u64: 0 }; 256];
        let mut idle_since = Instant::now();
        loop {
            let now = Instant::now();
            let timeout = st.timeout(now, idle_since);
            // SAFETY: `events` is a writable array of `events.len()` entries.
            let n = unsafe {
                libc::epoll_wait(
                    self.epoll.as_raw_fd(),
                    events.as_mut_ptr(),
                    events.len() as i32,
                    timeout,
                )
            };
            for ev in events.iter().take(n.max(0) as usize) {
                let (token, flags) = (ev.u64, ev.events);
                if token == WAKE_TOKEN {
                    self.wake.drain();
                } else {
                    st.event(&self, token, flags);
                }
            }
            let commands = {
                let mut inbox = lock(&self.inbox);
                if inbox.commands.is_empty()
                    && st.live == 0
                    && (inbox.quit || idle_since.elapsed() >= IDLE_LINGER)
                {
                    inbox.alive = false;
                    if !inbox.quit {
                        // Idle: nobody will join this thread until the next process job,
                        // maybe never. Dropping its handle detaches it, so the system
                        // frees it as it exits instead of keeping it, finished, until
                        // then (a shutdown's quit joins it instead).
                        drop(inbox.thread.take());
                    }
                    self.exited.notify_all();
                    return;
                }
                std::mem::take(&mut inbox.commands)
            };
            for cmd in commands {
                match cmd {
                    Command::Watch(w) => st.add(&self, *w),
                    Command::Stop(id) => st.stop(id),
                }
            }
            st.timers(&self, Instant::now());
            if st.live == 0 {
                if st.was_busy {
                    idle_since = Instant::now();
                    st.was_busy = false;
                }
            } else {
                st.was_busy = true;
            }
        }
    }
}

const WAKE_TOKEN: u64 = u64::MAX;
/// Token = slot * KINDS + kind.
const KINDS: u64 = 4;
const STDOUT: u64 = 0;
const STDERR: u64 = 1;
const STDIN: u64 = 2;
const PIDFD: u64 = 3;

/// One running process.
struct Entry {
    completion: Completion,
    pid: libc::pid_t,
    pidfd: Option<OwnedFd>,
    out: Option<Pipe>,
    err: Option<Pipe>,
    stdin: Option<Feed>,
    grace: Duration,
    /// When SIGKILL follows the SIGTERM a stop sent (`None`: no stop yet).
    kill_at: Option<Instant>,
    killed: bool,
}

struct Pipe {
    fd: OwnedFd,
    split: Splitter,
    stream: Stream,
}

struct Feed {
    fd: OwnedFd,
    data: Vec<u8>,
    at: usize,
}

/// The reactor thread's own state (no lock: only it touches this).
#[derive(Default)]
struct State {
    slots: Vec<Option<Entry>>,
    free: Vec<usize>,
    by_job: HashMap<JobId, usize>,
    /// Entries alive.
    live: usize,
    /// Entries without a pidfd, checked every `REAP_TICK`.
    polled: usize,
    /// Entries whose SIGKILL is due later. With neither these nor polled entries, no
    /// wake-up has to look at every entry.
    armed: usize,
    was_busy: bool,
    buf: Vec<u8>,
}

impl State {
    /// The epoll timeout in ms: the nearest SIGKILL, the reap tick, or the idle linger.
    fn timeout(&self, now: Instant, idle_since: Instant) -> i32 {
        let mut next: Option<Duration> = None;
        let mut consider = |d: Duration| next = Some(next.map_or(d, |n| n.min(d)));
        if self.armed > 0 {
            for e in self.slots.iter().flatten() {
                if let (Some(at), false) = (e.kill_at, e.killed) {
                    consider(at.saturating_duration_since(now));
                }
            }
        }
        if self.polled > 0 {
            consider(REAP_TICK);
        }
        if self.live == 0 {
            consider((idle_since + IDLE_LINGER).saturating_duration_since(now));
        }
        // Round up, so a timer is not polled for again just before it is due.
        next.map_or(-1, |d| {
            d.as_micros().div_ceil(1000).min(i32::MAX as u128) as i32
        })
    }

    fn add(&mut self, r: &Reactor, w: Watch) {
        let Watch {
            completion,
            spawned,
            stdin_data,
            grace,
            mode,
            text,
        } = w;
        let slot = self.free.pop().unwrap_or_else(|| {
            self.slots.push(None);
            self.slots.len() - 1
        });
        let base = slot as u64 * KINDS;
        let pid = spawned.pid;
        let pidfd = pidfd_open(pid);
        let mut entry = Entry {
            completion,
            pid,
            pidfd,
            out: Some(Pipe {
                fd: spawned.stdout,
                split: Splitter::new(mode, text),
                stream: Stream::Output,
            }),
            err: Some(Pipe {
                fd: spawned.stderr,
                split: Splitter::new(mode, text),
                stream: Stream::Error,
            }),
            stdin: spawned.stdin.map(|fd| Feed {
                fd,
                data: stdin_data,
                at: 0,
            }),
            grace,
            kill_at: None,
            killed: false,
        };
        let mut ok = epoll_add(
            &r.epoll,
            raw(&entry.out),
            libc::EPOLLIN as u32,
            base + STDOUT,
        )
        .and_then(|()| {
            epoll_add(
                &r.epoll,
                raw(&entry.err),
                libc::EPOLLIN as u32,
                base + STDERR,
            )
        });
        if ok.is_ok() {
            if let Some(fd) = entry.pidfd.as_ref() {
                ok = epoll_add(&r.epoll, fd.as_raw_fd(), libc::EPOLLIN as u32, base + PIDFD);
            }
        }
        if ok.is_ok() && entry.stdin.as_ref().is_some_and(|f| !f.data.is_empty()) {
            let fd = entry.stdin.as_ref().map_or(-1, |f| f.fd.as_raw_fd());
            ok = epoll_add(&r.epoll, fd, libc::EPOLLOUT as u32, base + STDIN);
        } else {
            // Nothing to feed: the process sees end of file at once.
            entry.stdin = None;
        }
        if entry.pidfd.is_none() {
            self.polled += 1;
        }
        let id = entry.completion.job().id();
        self.slots[slot] = Some(entry);
        self.by_job.insert(id, slot);
        self.live += 1;
        if let Err(e) = ok {
            // Out of epoll resources: this process cannot be watched; end it.
            let e = Error::system("epoll_ctl", &e);
            self.end(
                r,
                slot,
                Some(format!("cannot watch the process: {e}")),
                true,
            );
            return;
        }
        let stop_asked = self.slots[slot]
            .as_ref()
            .is_some_and(|e| e.completion.job().stop_requested());
        if stop_asked {
            // The stop came before the process was handed over: its request found nothing.
            self.stop(id);
        }
    }

    fn stop(&mut self, id: JobId) {
        let Some(&slot) = self.by_job.get(&id) else {
            return;
        };
        let Some(e) = self.slots[slot].as_mut() else {
            return;
        };
        if e.kill_at.is_none() {
            signal_group(e.pid, libc::SIGTERM);
            // A stopped (SIGSTOP) process handles SIGTERM only once it continues.
            signal_group(e.pid, libc::SIGCONT);
            e.kill_at = Some(crate::sync::deadline_after(e.grace));
            self.armed += 1;
        }
    }

    fn timers(&mut self, r: &Reactor, now: Instant) {
        if self.armed == 0 && self.polled == 0 {
            return;
        }
        for slot in 0..self.slots.len() {
            let Some(e) = self.slots[slot].as_mut() else {
                continue;
            };
            if let (Some(at), false) = (e.kill_at, e.killed) {
                if at <= now {
                    signal_group(e.pid, libc::SIGKILL);
                    e.killed = true;
                    self.armed -= 1;
                }
            }
            if e.pidfd.is_none() {
                self.check_exit(r, slot);
            }
        }
    }

    fn event(&mut self, r: &Reactor, token: u64, flags: u32) {
        let slot = (token / KINDS) as usize;
        if self.slots.get(slot).is_none_or(Option::is_none) {
            return;
        }
        match token % KINDS {
            which @ (STDOUT | STDERR) => {
                let e = self.slots[slot].as_mut().expect("checked above");
                let pipe = if which == STDOUT {
                    &mut e.out
                } else {
                    &mut e.err
                };
                if read_pipe(pipe, e.completion.job(), &mut self.buf, READ_CHUNK) {
                    close_pipe(r, pipe);
                }
            }
            STDIN => {
                let e = self.slots[slot].as_mut().expect("checked above");
                if feed(&mut e.stdin, flags) {
                    if let Some(f) = e.stdin.take() {
                        epoll_del(&r.epoll, f.fd.as_raw_fd());
                    }
                }
            }
            _ => self.check_exit(r, slot),
        }
    }

    /// If the process of `slot` has exited: reap it, turn what its pipes hold into
    /// records and finish its job.
    fn check_exit(&mut self, r: &Reactor, slot: usize) {
        let Some(e) = self.slots[slot].as_ref() else {
            return;
        };
        let pid = e.pid;
        // SAFETY: siginfo_t is plain data; waitid fills it for our own child by pid.
        let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
        // WNOWAIT: the exited process stays a zombie, so its pid and group id cannot be
        // reused until we reap it below — signalling the group stays safe until then.
        // SAFETY: `info` is writable.
        let rc = unsafe {
            libc::waitid(
                libc::P_PID,
                pid as libc::id_t,
                &mut info,
                libc::WEXITED | libc::WNOHANG | libc::WNOWAIT,
            )
        };
        if rc < 0 {
            // ECHILD: someone else reaped it (a host's `waitpid(-1)`). Its pid may belong
            // to another process by now: it must not be signalled.
            let err = std::io::Error::last_os_error();
            self.end(
                r,
                slot,
                Some(format!(
                    "lost track of process {pid}: {err} (was it reaped by another waitpid?)"
                )),
                false,
            );
            return;
        }
        // SAFETY: waitid filled `info` (si_pid is 0 when the child has not exited).
        if unsafe { info.si_pid() } == 0 {
            return;
        }
        if e.kill_at.is_some() {
            // A stop was asked: what is left of the group goes with its leader.
            signal_group(pid, libc::SIGKILL);
        }
        self.end(r, slot, None, false);
    }

    /// Reaps the process of `slot` (killing it first if `kill`), drains its pipes, frees
    /// the slot and finishes the job (failed with `failure`, if given).
    fn end(&mut self, r: &Reactor, slot: usize, failure: Option<String>, kill: bool) {
        let Some(mut e) = self.slots[slot].take() else {
            return;
        };
        self.free.push(slot);
        self.live -= 1;
        if e.pidfd.is_none() {
            self.polled -= 1;
        }
        if e.kill_at.is_some() && !e.killed {
            self.armed -= 1;
        }
        let job = e.completion.job().clone();
        self.by_job.remove(&job.id());
        if kill {
            signal_group(e.pid, libc::SIGKILL);
        }
        let mut status = 0;
        // SAFETY: reaping our own child by pid; `status` is writable. It has exited (or
        // was just killed), so this does not block for long.
        let reaped = unsafe { libc::waitpid(e.pid, &mut status, 0) } == e.pid;
        for pipe in [&mut e.out, &mut e.err] {
            // What the process wrote before it exited is in the pipe now; a descendant
            // still holding it open cannot keep the job waiting.
            if !read_pipe(pipe, &job, &mut self.buf, DRAIN_LIMIT) {
                if let Some(p) = pipe.as_mut() {
                    p.split.finish(&mut writer(&job, p.stream));
                }
            }
            close_pipe(r, pipe);
        }
        if let Some(f) = e.stdin.take() {
            epoll_del(&r.epoll, f.fd.as_raw_fd());
        }
        if let Some(fd) = e.pidfd.take() {
            epoll_del(&r.epoll, fd.as_raw_fd());
        }
        let outcome = match failure {
            Some(f) => Err(f),
            None if reaped => super::exit::outcome(status),
            None => Err(format!(
                "lost track of process {}: {}",
                e.pid,
                std::io::Error::last_os_error()
            )),
        };
        {
            let mut jobs = lock(&r.jobs);
            jobs.remove(&job.id());
            if jobs.is_empty() {
                // Give the table back when idle (see `untrack_handed_off` in the pool).
                jobs.shrink_to_fit();
            }
        }
        e.completion.finish(outcome);
    }
}

fn raw(p: &Option<Pipe>) -> RawFd {
    p.as_ref().map_or(-1, |p| p.fd.as_raw_fd())
}

/// Writes each payload it is given as a record of `job` on `stream`.
fn writer(job: &Arc<Job>, stream: Stream) -> impl FnMut(crate::record::Payload) + '_ {
    move |payload| {
        // Fails only once the job was removed: then nobody can read the record anyway.
        let _ = job.write(stream, payload);
    }
}

/// Reads up to `limit` bytes from `pipe` into records of `job`. True at end of file (or
/// on an error that ends the pipe); false when it would block or the limit was reached.
fn read_pipe(pipe: &mut Option<Pipe>, job: &Arc<Job>, buf: &mut Vec<u8>, limit: usize) -> bool {
    let Some(p) = pipe.as_mut() else {
        return false;
    };
    buf.resize(READ_CHUNK, 0);
    let mut total = 0;
    let mut emit = writer(job, p.stream);
    loop {
        // SAFETY: reading into our own buffer of `buf.len()` bytes.
        let n = unsafe { libc::read(p.fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
        if n > 0 {
            p.split.push(&buf[..n as usize], &mut emit);
            total += n as usize;
            if total >= limit {
                return false;
            }
            continue;
        }
        if n < 0 {
            let err = std::io::Error::last_os_error();
            match err.raw_os_error() {
                Some(libc::EINTR) => continue,
                Some(libc::EAGAIN) => return false,
                _ => {}
            }
        }
        // End of file (or a read error, which ends the pipe just the same).
        p.split.finish(&mut emit);
        return true;
    }
}

fn close_pipe(r: &Reactor, pipe: &mut Option<Pipe>) {
    if let Some(p) = pipe.take() {
        epoll_del(&r.epoll, p.fd.as_raw_fd());
    }
}

/// Writes what stdin can take now; true once it is all written (or the process closed
/// its end): then stdin is closed, and the process sees end of file.
fn feed(stdin: &mut Option<Feed>, flags: u32) -> bool {
    let Some(f) = stdin.as_mut() else {
        return false;
    };
    if flags & (libc::EPOLLERR as u32) != 0 {
        return true;
    }
    while f.at < f.data.len() {
        let rest = &f.data[f.at..];
        // SAFETY: writing from our own buffer. SIGPIPE is blocked on this thread, so a
        // closed reader gives EPIPE here instead of killing the host.
        let n = unsafe { libc::write(f.fd.as_raw_fd(), rest.as_ptr().cast(), rest.len()) };
        if n >= 0 {
            f.at += n as usize;
            continue;
        }
        let err = std::io::Error::last_os_error();
        match err.raw_os_error() {
            Some(libc::EINTR) => continue,
            Some(libc::EAGAIN) => return false,
            Some(libc::EPIPE) => {
                clear_pending_sigpipe();
                return true;
            }
            _ => return true,
        }
    }
    true
}

/// SIGPIPE raised by our own write is pending on this thread (blocked): take it, so it
/// never reaches the host.
fn clear_pending_sigpipe() {
    // SAFETY: sigset_t is plain data, set up by sigemptyset/sigaddset before use; a zero
    // timeout makes sigtimedwait return at once.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGPIPE);
        let zero = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        libc::sigtimedwait(&set, std::ptr::null_mut(), &zero);
    }
}

/// The reactor thread takes no signal meant for the host's threads (SIGINT, SIGCHLD, …),
/// and the SIGPIPE of a write to a closed stdin stays with it.
fn block_signals() {
    // SAFETY: a full set, filled before use; changes only this thread's mask.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigfillset(&mut set);
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
    }
}

/// Sends `sig` to the process group led by `pid`, and to `pid` itself if it has left the
/// group. `pid` must not have been reaped (so neither id can have been reused).
fn signal_group(pid: libc::pid_t, sig: libc::c_int) {
    // SAFETY: plain syscalls on ids of an unreaped child of ours.
    unsafe {
        libc::kill(-pid, sig);
        if libc::getpgid(pid) != pid {
            libc::kill(pid, sig);
        }
    }
}

/// A pidfd for `pid` (readable once it exits), or `None` on a kernel without them.
fn pidfd_open(pid: libc::pid_t) -> Option<OwnedFd> {
    // SAFETY: the syscall takes a pid and flags; the result is checked before it is owned.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    // SAFETY: a new descriptor (close-on-exec, as pidfds always are), owned from here on.
    (fd >= 0).then(|| unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

fn epoll_add(epoll: &OwnedFd, fd: RawFd, events: u32, token: u64) -> std::io::Result<()> {
    let mut ev = libc::epoll_event { events, u64: token };
    // SAFETY: registering a descriptor we own with our epoll; `ev` is live.
    if unsafe { libc::epoll_ctl(epoll.as_raw_fd(), libc::EPOLL_CTL_ADD, fd, &mut ev) } < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

fn epoll_del(epoll: &OwnedFd, fd: RawFd) {
    // SAFETY: removing a descriptor we own (still open) from our epoll.
    unsafe {
        libc::epoll_ctl(
            epoll.as_raw_fd(),
            libc::EPOLL_CTL_DEL,
            fd,
            std::ptr::null_mut(),
        )
    };
}
