//! Process jobs at scale, and the process's hygiene around them: threads, descriptors,
//! zombies. A test binary of its own, its tests one at a time: each counts what the whole
//! process holds, which other tests running beside it would change.

mod common;

use bgjob::{JobState, ProcessJobSpec, remove_job, stop_job};
use common::{LONG, eventually, finish, sh, take_all, unique, wait_all};
use std::collections::HashSet;
use std::sync::Mutex;

static EXCLUSIVE: Mutex<()> = Mutex::new(());

fn exclusive() -> std::sync::MutexGuard<'static, ()> {
    EXCLUSIVE.lock().unwrap_or_else(|e| e.into_inner())
}

fn threads() -> usize {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("Threads:"))
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

fn fds() -> HashSet<String> {
    std::fs::read_dir("/proc/self/fd")
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect()
}

/// This process's descriptors above 2 without close-on-exec: what whoever started the
/// tests left open for us, which every child inherits whatever bgjob does.
fn inheritable_fds() -> Vec<String> {
    fds()
        .into_iter()
        .filter(|f| {
            let fd: i32 = f.parse().unwrap();
            // SAFETY: F_GETFD only reads the flags of a descriptor number.
            fd > 2 && unsafe { libc::fcntl(fd, libc::F_GETFD) } & libc::FD_CLOEXEC == 0
        })
        .collect()
}

/// Our children that are zombies (exited, never reaped).
fn zombies() -> Vec<i32> {
    let me = std::process::id().to_string();
    let mut z = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        // "pid (comm) state ppid ...": comm may hold spaces, so split after its ')'.
        let rest = &stat[stat.rfind(')').unwrap() + 2..];
        let f: Vec<&str> = rest.split(' ').collect();
        if f[0] == "Z" && f[1] == me {
            z.push(pid);
        }
    }
    z
}

fn raise_fd_limit(want: u64) {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `lim` is writable; then set to values within the hard limit.
    unsafe {
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim);
        if lim.rlim_cur < want {
            lim.rlim_cur = want.min(lim.rlim_max);
            libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        }
    }
}

#[test]
fn five_hundred_processes_at_once_need_few_threads_and_leave_no_zombies() {
    let _one = exclusive();
    raise_fd_limit(4096);
    let before = threads();
    let gate = std::env::temp_dir().join(unique("gate"));
    // Every process waits until the gate file exists, so all 500 run at the same time.
    let script = "while [ ! -e \"$G\" ]; do sleep 0.05; done; echo done";
    let jobs: Vec<_> = (0..500)
        .map(|_| sh(script).env("G", &gate).start().unwrap())
        .collect();
    assert!(
        eventually(|| jobs.iter().all(|j| j.state() == JobState::Running)),
        "not all 500 came to run"
    );
    let during = threads();
    std::fs::write(&gate, "").unwrap();
    wait_all(&jobs);
    assert!(jobs.iter().all(|j| j.state() == JobState::Completed));
    assert!(jobs.iter().all(|j| take_all(j) == ["done"]));
    // The default pool's workers (one per core), the reactor, and what the test harness
    // runs: nowhere near one per process.
    assert!(
        during <= before + std::thread::available_parallelism().unwrap().get() + 2,
        "{before} threads before, {during} with 500 processes running"
    );
    for j in &jobs {
        remove_job(j.id(), false).unwrap();
    }
    assert_eq!(zombies(), Vec::<i32>::new());
    std::fs::remove_file(&gate).unwrap();
}

#[test]
fn a_thousand_jobs_leave_the_descriptors_as_they_were_and_none_leaks_into_children() {
    let _one = exclusive();
    // Warm up: the default pool and the reactor exist, with their descriptors.
    let job = ProcessJobSpec::new(["true"]).start().unwrap();
    finish(&job);
    let before = fds();
    for _ in 0..10 {
        let jobs: Vec<_> = (0..100)
            .map(|_| ProcessJobSpec::new(["true"]).start().unwrap())
            .collect();
        wait_all(&jobs);
        for j in &jobs {
            assert_eq!(j.state(), JobState::Completed);
            remove_job(j.id(), false).unwrap();
        }
    }
    assert_eq!(fds(), before);
    assert_eq!(zombies(), Vec::<i32>::new());
    // While other process jobs run, a new process sees only its stdin, stdout, stderr.
    let others: Vec<_> = (0..5)
        .map(|_| ProcessJobSpec::new(["sleep", "600"]).start().unwrap())
        .collect();
    let job = sh("ls /proc/$$/fd").start().unwrap();
    let mut seen = finish(&job);
    seen.sort();
    let mut expected: Vec<String> = ["0", "1", "2"].map(String::from).to_vec();
    expected.extend(inheritable_fds());
    expected.sort();
    assert_eq!(seen, expected);
    for j in &others {
        stop_job(j, Some(LONG)).unwrap();
        finish(j);
    }
}
