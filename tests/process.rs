//! Process jobs through the Rust API: states, records from stdout and stderr, stdin,
//! environment, working directory, stop with SIGTERM then SIGKILL. Scale and hygiene
//! (threads, descriptors, zombies) are in tests/process_scale.rs.

mod common;

use bgjob::{
    Error, Job, JobState, OutputMode, Payload, Pool, ProcessJobSpec, ReceiveOptions, Stream,
    remove_job, repository, stop_job,
};
use common::{
    LONG, by_name, eventually, finish, sh, take_all_with_streams, take_next, texts, unique,
    wait_all,
};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// Waits for the job to be done; its state.
fn finish_state(job: &Arc<Job>) -> JobState {
    wait_all(std::slice::from_ref(job));
    job.state()
}

#[test]
fn echo_completes_with_its_output_and_reads_like_start_job() {
    let job = ProcessJobSpec::new(["echo", "2"]).start().unwrap();
    assert_eq!(job.type_name(), "ProcessJob");
    assert_eq!(job.location(), "localhost");
    assert_eq!(job.command(), "echo 2");
    assert_eq!(finish_state(&job), JobState::Completed);
    let recs = job.receive(ReceiveOptions::default()).unwrap();
    assert_eq!(recs.len(), 1);
    assert!(matches!(&recs[0].payload, Payload::Text(t) if &**t == "2"));
    assert!(job.begin_time().is_some() && job.end_time().is_some());
    remove_job(job.id(), false).unwrap();
}

#[test]
fn stdout_and_stderr_interleave_in_the_order_they_arrive() {
    // The script waits for the test between writes (through a FIFO), so the order in
    // which its lines reach bgjob is known without any timing assumption.
    let dir = std::env::temp_dir().join(unique("fifo"));
    std::fs::create_dir(&dir).unwrap();
    let fifo = dir.join("go");
    let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
    // SAFETY: a valid path string.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    // One descriptor each, held for the whole test: reopening the FIFO per step could
    // pair the script's next read with the test's previous writer before it closed (end
    // of file instead of a line). Opened read-write, so neither open blocks.
    let mut steps = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&fifo)
        .unwrap();
    let script = "exec 3< \"$F\"; for i in 1 2 3; do echo out$i; read x <&3; \
                  echo err$i >&2; read x <&3; done";
    let job = sh(script).env("F", &fifo).start().unwrap();
    let mut seen = Vec::new();
    for i in 1..=3 {
        for (stream, text) in [(Stream::Output, "out"), (Stream::Error, "err")] {
            let r = take_next(&job, 1);
            assert_eq!(r.len(), 1, "record {text}{i} did not come");
            assert_eq!(r[0].stream, stream);
            assert_eq!(r[0].bytes().unwrap(), format!("{text}{i}").as_bytes());
            seen.push(r[0].sequence);
            std::io::Write::write_all(&mut steps, b"go\n").unwrap();
        }
    }
    assert!(seen.windows(2).all(|w| w[0] < w[1]));
    assert!(finish(&job).is_empty());
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn streams_keep_their_own_order_when_written_fast() {
    let job = sh("i=0; while [ $i -lt 200 ]; do echo o$i; echo e$i >&2; i=$((i+1)); done")
        .start()
        .unwrap();
    wait_all(std::slice::from_ref(&job));
    let recs = take_all_with_streams(&job);
    let of = |s: Stream, p: &str| -> Vec<String> {
        recs.iter()
            .filter(|(st, _)| *st == s)
            .map(|(_, t)| t.clone())
            .inspect(|t| assert!(t.starts_with(p)))
            .collect()
    };
    let expect = |p: &str| (0..200).map(|i| format!("{p}{i}")).collect::<Vec<_>>();
    assert_eq!(of(Stream::Output, "o"), expect("o"));
    assert_eq!(of(Stream::Error, "e"), expect("e"));
    remove_job(job.id(), false).unwrap();
}

#[test]
fn a_non_zero_exit_fails_with_the_code() {
    let job = sh("echo partial; exit 3").start().unwrap();
    assert_eq!(finish_state(&job), JobState::Failed);
    assert_eq!(
        job.state_info().reason.as_deref(),
        Some("exited with code 3")
    );
    assert_eq!(finish(&job), ["partial"]);
}

#[test]
fn a_signal_not_sent_by_a_stop_fails_the_job_naming_it() {
    let job = sh("kill -SEGV $$").start().unwrap();
    assert_eq!(finish_state(&job), JobState::Failed);
    let reason = job.state_info().reason.unwrap();
    assert!(reason.contains("SIGSEGV"), "{reason}");
    finish(&job);
}

#[test]
fn a_missing_program_fails_with_the_os_reason() {
    let job = ProcessJobSpec::new(["/nonexistent/bgjob-no-such-program"])
        .start()
        .unwrap();
    assert_eq!(finish_state(&job), JobState::Failed);
    let reason = job.state_info().reason.unwrap();
    assert!(
        reason.contains("cannot start '/nonexistent/bgjob-no-such-program'")
            && reason.contains("No such file or directory"),
        "{reason}"
    );
    finish(&job);
    let job = ProcessJobSpec::new(["bgjob-no-such-program-in-path"])
        .start()
        .unwrap();
    assert_eq!(finish_state(&job), JobState::Failed);
    finish(&job);
}

#[test]
fn a_program_that_is_not_executable_fails_with_the_os_reason() {
    let path = std::env::temp_dir().join(unique("noexec"));
    std::fs::write(&path, "#!/bin/sh\necho hi\n").unwrap();
    let job = ProcessJobSpec::new([&path]).start().unwrap();
    assert_eq!(finish_state(&job), JobState::Failed);
    let reason = job.state_info().reason.unwrap();
    assert!(reason.contains("Permission denied"), "{reason}");
    finish(&job);
    std::fs::remove_file(&path).unwrap();
}

#[test]
fn a_bad_working_directory_fails_the_start_and_leaves_nothing() {
    let name = unique("badcwd");
    let err = ProcessJobSpec::new(["true"])
        .name(&name)
        .current_dir("/nonexistent/bgjob-dir")
        .start()
        .unwrap_err();
    match &err {
        Error::System { message, errno } => {
            assert_eq!(*errno, libc::ENOENT);
            assert!(message.contains("/nonexistent/bgjob-dir"), "{message}");
        }
        other => panic!("{other:?}"),
    }
    let err = ProcessJobSpec::new(["true"])
        .current_dir("/etc/passwd")
        .start()
        .unwrap_err();
    assert!(matches!(err, Error::System { errno, .. } if errno == libc::ENOTDIR));
    assert!(repository().find(&by_name(&name)).is_empty());
    let job = ProcessJobSpec::new(["pwd"])
        .current_dir("/")
        .start()
        .unwrap();
    assert_eq!(finish(&job), ["/"]);
}

#[test]
fn bad_arguments_are_refused_before_anything_starts() {
    let empty: [&str; 0] = [];
    assert!(matches!(
        ProcessJobSpec::new(empty).start(),
        Err(Error::InvalidArgument(_))
    ));
    assert!(matches!(
        ProcessJobSpec::new(["echo", "a\0b"]).start(),
        Err(Error::InvalidArgument(_))
    ));
    assert!(matches!(
        ProcessJobSpec::new(["true"]).env("A=B", "c").start(),
        Err(Error::InvalidArgument(_))
    ));
}

#[test]
fn stdin_bytes_are_read_by_the_program() {
    let job = ProcessJobSpec::new(["cat"])
        .stdin(b"one\ntwo\nthree".to_vec())
        .start()
        .unwrap();
    assert_eq!(finish(&job), ["one", "two", "three"]);
    // More than a pipe holds: fed as the program reads.
    let big: Vec<u8> = (0..20_000)
        .flat_map(|i| format!("{i}\n").into_bytes())
        .collect();
    let job = ProcessJobSpec::new(["cat"]).stdin(big).start().unwrap();
    let out = finish(&job);
    assert_eq!(out.len(), 20_000);
    assert_eq!(out[19_999], "19999");
    // A program that does not read its stdin does not hang the job (nor kill the host
    // with SIGPIPE).
    let job = ProcessJobSpec::new(["true"])
        .stdin(vec![b'x'; 1 << 20])
        .start()
        .unwrap();
    assert_eq!(finish_state(&job), JobState::Completed);
    finish(&job);
}

#[test]
fn environment_is_inherited_added_to_and_replaced() {
    // SAFETY: no other thread of this test binary reads this variable.
    unsafe { std::env::set_var("BGJOB_TEST_INHERITED", "yes") };
    let job = sh("echo \"$BGJOB_TEST_INHERITED/$ADDED\"")
        .env("ADDED", "more")
        .start()
        .unwrap();
    assert_eq!(finish(&job), ["yes/more"]);
    let job = ProcessJobSpec::new(["/usr/bin/env"])
        .env_clear()
        .env("ONLY", "this")
        .start()
        .unwrap();
    assert_eq!(finish(&job), ["ONLY=this"]);
    // Set, removed, then the environment cleared: the removal still holds.
    let job = ProcessJobSpec::new(["/usr/bin/env"])
        .env("GONE", "x")
        .env_remove("GONE")
        .env_clear()
        .env("KEPT", "y")
        .start()
        .unwrap();
    assert_eq!(finish(&job), ["KEPT=y"]);
    let job = sh("echo \"${BGJOB_TEST_INHERITED-unset}\"")
        .env_remove("BGJOB_TEST_INHERITED")
        .start()
        .unwrap();
    assert_eq!(finish(&job), ["unset"]);
    // With the environment replaced, argv[0] is looked up in the PATH given.
    let job = ProcessJobSpec::new(["env"])
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .start()
        .unwrap();
    assert_eq!(finish(&job), ["PATH=/usr/bin:/bin"]);
}

#[test]
fn stop_ends_a_sleeping_process_with_sigterm() {
    let job = ProcessJobSpec::new(["sleep", "600"]).start().unwrap();
    assert!(eventually(|| job.state() == JobState::Running));
    stop_job(&job, Some(LONG)).unwrap();
    assert_eq!(job.state(), JobState::Stopped);
    finish(&job);
}

#[test]
fn a_program_that_ignores_sigterm_is_killed_after_the_grace_period() {
    // The script says it is ready once SIGTERM is ignored, so the stop cannot come first.
    let job = sh("trap '' TERM; echo ready; sleep 600")
        .stop_grace(Duration::from_millis(300))
        .start()
        .unwrap();
    assert_eq!(texts(&take_next(&job, 1)), ["ready"]);
    let asked = Instant::now();
    stop_job(&job, Some(LONG)).unwrap();
    assert_eq!(job.state(), JobState::Stopped);
    // It outlived SIGTERM: only SIGKILL, after the grace period, ended it.
    assert!(asked.elapsed() >= Duration::from_millis(300));
    finish(&job);
}

#[test]
fn a_grandchild_holding_stdout_does_not_keep_a_stopped_job_running() {
    let job = sh("sleep 600 & echo started; wait").start().unwrap();
    assert_eq!(texts(&take_next(&job, 1)), ["started"]);
    stop_job(&job, Some(LONG)).unwrap();
    assert_eq!(job.state(), JobState::Stopped);
    finish(&job);
}

#[test]
fn a_background_grandchild_does_not_keep_a_finished_job_running() {
    // The grandchild leaves the process group, so nothing of ours would signal it; it
    // keeps stdout open for 600 s. The job ends when its own process does.
    let job = sh("setsid sleep 600 & echo $!").start().unwrap();
    let out = finish(&job);
    let pid: i32 = out[0].parse().unwrap();
    // SAFETY: signalling the grandchild we were told about, to clean up.
    unsafe { libc::kill(pid, libc::SIGKILL) };
}

#[test]
fn a_stop_before_the_process_starts_means_it_never_runs() {
    let pool = Pool::new(1, 1).unwrap();
    let blocker = ProcessJobSpec::new(["sleep", "600"])
        .pool(&pool)
        .start()
        .unwrap();
    let queued = ProcessJobSpec::new(["sh", "-c", "echo ran"])
        .pool(&pool)
        .start()
        .unwrap();
    assert_eq!(queued.state(), JobState::NotStarted);
    stop_job(&queued, Some(LONG)).unwrap();
    assert_eq!(queued.state(), JobState::Stopped);
    stop_job(&blocker, Some(LONG)).unwrap();
    assert!(finish(&queued).is_empty());
    finish(&blocker);
    pool.shutdown(Some(LONG)).unwrap();
}

#[test]
fn a_throttle_limits_how_many_processes_run_at_once() {
    let pool = Pool::new(4, 2).unwrap();
    let running = Arc::new(AtomicUsize::new(0));
    let most = Arc::new(AtomicUsize::new(0));
    let jobs: Vec<_> = (0..8)
        .map(|_| {
            let (running, most) = (running.clone(), most.clone());
            sh("sleep 0.1")
                .pool(&pool)
                .on_state_changed(move |e| {
                    if e.state_info.state == JobState::Running {
                        let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                        most.fetch_max(now, Ordering::SeqCst);
                    } else if e.state_info.state.is_finished() {
                        running.fetch_sub(1, Ordering::SeqCst);
                    }
                })
                .start()
                .unwrap()
        })
        .collect();
    wait_all(&jobs);
    assert!(jobs.iter().all(|j| j.state() == JobState::Completed));
    let most = most.load(Ordering::SeqCst);
    assert!((1..=2).contains(&most), "{most} ran at once");
    for j in &jobs {
        remove_job(j.id(), false).unwrap();
    }
    pool.shutdown(Some(LONG)).unwrap();
}

#[test]
fn pool_shutdown_stops_its_running_processes() {
    let pool = Pool::new(1, 0).unwrap();
    let job = ProcessJobSpec::new(["sleep", "600"])
        .pool(&pool)
        .start()
        .unwrap();
    assert!(eventually(|| job.state() == JobState::Running));
    pool.shutdown(Some(LONG)).unwrap();
    assert_eq!(job.state(), JobState::Stopped);
    finish(&job);
}

#[test]
fn suspend_is_refused_with_a_reason() {
    let job = ProcessJobSpec::new(["sleep", "600"]).start().unwrap();
    assert!(eventually(|| job.state() == JobState::Running));
    let err = job.suspend().unwrap_err();
    assert!(err.to_string().contains("cannot be suspended"), "{err}");
    stop_job(&job, Some(LONG)).unwrap();
    finish(&job);
}

#[test]
fn bytes_that_are_not_utf8_are_kept_and_chunks_mode_keeps_reads() {
    let job = sh("printf 'ok\\n\\377\\376\\nlast'").start().unwrap();
    wait_all(std::slice::from_ref(&job));
    let recs = job.receive(ReceiveOptions::default()).unwrap();
    assert!(matches!(&recs[0].payload, Payload::Text(t) if &**t == "ok"));
    assert!(matches!(&recs[1].payload, Payload::Bytes(b) if **b == [0xff, 0xfe]));
    assert!(matches!(&recs[2].payload, Payload::Text(t) if &**t == "last"));
    remove_job(job.id(), false).unwrap();

    let job = sh("printf 'a\\nb\\n'")
        .output_mode(OutputMode::Chunks)
        .text(false)
        .start()
        .unwrap();
    wait_all(std::slice::from_ref(&job));
    let all: Vec<u8> = job
        .receive(ReceiveOptions::default())
        .unwrap()
        .iter()
        .inspect(|r| assert!(matches!(r.payload, Payload::Bytes(_))))
        .flat_map(|r| r.bytes().unwrap().to_vec())
        .collect();
    assert_eq!(all, b"a\nb\n");
    remove_job(job.id(), false).unwrap();
}

#[test]
fn an_inline_run_returns_the_finished_job() {
    let job = sh("echo inline; echo warn >&2").run_inline().unwrap();
    assert_eq!(job.state(), JobState::Completed);
    assert_eq!(
        take_all_with_streams(&job),
        [
            (Stream::Output, "inline".to_string()),
            (Stream::Error, "warn".to_string())
        ]
    );
    remove_job(job.id(), false).unwrap();
}

#[test]
fn a_forced_remove_of_a_running_process_job_stops_it() {
    let job = ProcessJobSpec::new(["sleep", "600"]).start().unwrap();
    assert!(eventually(|| job.state() == JobState::Running));
    remove_job(job.id(), true).unwrap();
    assert!(job.state().is_finished());
}
