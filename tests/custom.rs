//! Custom (host-driven) jobs and inline runs through the Rust API.
//! See `common/mod.rs` for the shared helpers and the rules every test follows.

mod common;

use JobState::{Completed, Failed, NotStarted, Running, Stopped, Stopping};
use bgjob::{
    CustomJob, CustomJobSpec, Error, JobSpec, JobState, ReceiveOptions, Stream, WaitMode, get_job,
    stop_job, wait_jobs,
};
use common::*;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, mpsc};
use std::thread;

#[test]
fn a_custom_job_driven_by_its_host_is_waited_on_and_received_by_another_thread() {
    let (events, record) = recorder();
    let custom = CustomJobSpec::new()
        .name(unique("remote"))
        .command("sync db")
        .location("db.example")
        .on_state_changed(record)
        .create();
    let job = custom.job().clone();
    assert_eq!(job.state(), NotStarted);
    assert_eq!(
        (job.type_name(), job.location()),
        ("CustomJob", "db.example")
    );
    assert!(
        get_job(job.id()).is_ok(),
        "a custom job is in the repository"
    );

    // Another thread waits for it and receives what the host wrote.
    let waiter = {
        let job = job.clone();
        thread::spawn(move || {
            let r = wait_jobs(std::slice::from_ref(&job), WaitMode::All, Some(LONG)).unwrap();
            assert_eq!(r.done, [job.id()]);
            let records = job.receive(ReceiveOptions::default()).unwrap();
            let kinds: Vec<(Stream, u64)> = records.iter().map(|r| (r.stream, r.job_id)).collect();
            (job.state(), kinds, records)
        })
    };
    custom.set_state(Running, None).unwrap();
    custom.write(Stream::Output, "row 1").unwrap();
    custom.write_progress(50, "Syncing", "half way").unwrap();
    custom.set_status_message("1 of 2 rows");
    custom.write(Stream::Output, "row 2").unwrap();
    assert_eq!(job.status_message(), "1 of 2 rows");
    assert_eq!(job.progress().unwrap().percent_complete, 50);
    custom.set_state(Completed, None).unwrap();

    let (state, kinds, records) = waiter.join().unwrap();
    assert_eq!(state, Completed);
    let id = job.id();
    assert_eq!(
        kinds,
        [
            (Stream::Output, id),
            (Stream::Progress, id),
            (Stream::Output, id)
        ]
    );
    assert_eq!(records[0].bytes(), Some(&b"row 1"[..]));
    assert_eq!(records[2].bytes(), Some(&b"row 2"[..]));
    assert_eq!(
        *events.lock().unwrap(),
        [(NotStarted, Running), (Running, Completed)]
    );
    assert!(
        custom.write(Stream::Output, "late").is_err(),
        "a finished job's streams are closed"
    );
    remove_all(&[job]);
}

#[test]
fn illegal_moves_of_a_custom_job_are_refused_and_change_nothing() {
    let custom = CustomJobSpec::new().create();
    assert!(matches!(
        custom.set_state(Completed, None),
        Err(Error::InvalidState(_))
    ));
    assert_eq!(custom.job().state(), NotStarted);
    custom.set_state(Running, None).unwrap();
    assert!(matches!(
        custom.set_state(NotStarted, None),
        Err(Error::InvalidState(_))
    ));
    assert!(matches!(
        custom.set_state(Stopped, None),
        Err(Error::InvalidState(_))
    ));
    custom
        .set_state(Failed, Some("the remote side hung up"))
        .unwrap();
    let info = custom.job().state_info();
    assert_eq!(
        (info.state, info.reason.as_deref()),
        (Failed, Some("the remote side hung up"))
    );
    assert!(matches!(
        custom.set_state(Running, None),
        Err(Error::InvalidState(_))
    ));
    remove_all(&[custom.job().clone()]);
}

#[test]
fn only_custom_jobs_are_driven_by_their_host() {
    let job = JobSpec::new(|_| Ok(())).start().unwrap();
    assert!(matches!(
        CustomJob::from_job(job.clone()),
        Err(Error::InvalidState(_))
    ));
    wait_all(std::slice::from_ref(&job));
    remove_all(&[job]);
}

#[test]
fn a_stop_of_a_custom_job_calls_its_stop_handler_which_ends_it() {
    let calls = Arc::new(AtomicUsize::new(0));
    let c = calls.clone();
    let custom = CustomJobSpec::new()
        .on_stop(move |job| {
            c.fetch_add(1, Ordering::SeqCst);
            assert_eq!(
                job.state(),
                Stopping,
                "the handler runs once Stopping is stored"
            );
            // The foreign work ends; the host reports it.
            CustomJob::from_job(job.clone())
                .unwrap()
                .set_state(Stopped, None)
                .unwrap();
        })
        .create();
    custom.set_state(Running, None).unwrap();
    stop_job(custom.job(), Some(LONG)).unwrap();
    assert_eq!(custom.job().state(), Stopped);
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    // A second stop of a finished job calls nothing.
    stop_job(custom.job(), Some(LONG)).unwrap();
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    remove_all(&[custom.job().clone()]);
}

#[test]
fn the_stop_handler_runs_even_while_another_thread_delivers_the_jobs_changes() {
    let (entered_tx, entered) = mpsc::channel();
    let (release, release_rx) = mpsc::channel::<()>();
    let release_rx = std::sync::Mutex::new(release_rx);
    let calls = Arc::new(AtomicUsize::new(0));
    let c = calls.clone();
    let custom = CustomJobSpec::new()
        .on_state_changed(move |e| {
            if e.state_info.state == Running {
                // Holds the job's dispatch on the driver's thread while the stop comes in.
                entered_tx.send(()).unwrap();
                let _ = release_rx.lock().unwrap().recv_timeout(LONG);
            }
        })
        .on_stop(move |job| {
            c.fetch_add(1, Ordering::SeqCst);
            CustomJob::from_job(job.clone())
                .unwrap()
                .set_state(Stopped, None)
                .unwrap();
        })
        .create();
    let job = custom.job().clone();
    let driver = thread::spawn(move || custom.set_state(Running, None).unwrap());
    entered.recv_timeout(LONG).unwrap();
    let j = job.clone();
    let stopper = thread::spawn(move || stop_job(&j, Some(LONG)));
    assert!(
        eventually(|| job.state() != Running),
        "the stop never stored Stopping"
    );
    release.send(()).unwrap();
    driver.join().unwrap();
    stopper.join().unwrap().unwrap();
    assert_eq!(job.state(), Stopped);
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    remove_all(&[job]);
}

#[test]
fn a_custom_parent_follows_the_children_its_host_drives() {
    let stopped = Arc::new(AtomicUsize::new(0));
    let s = stopped.clone();
    let custom = CustomJobSpec::new()
        .child(Some("east".into()))
        .child(None)
        .on_stop(move |job| {
            s.fetch_add(1, Ordering::SeqCst);
            CustomJob::from_job(job.clone())
                .unwrap()
                .set_state(Stopped, None)
                .unwrap();
        })
        .create();
    let parent = custom.job().clone();
    let (east, west) = (custom.child(0).unwrap(), custom.child(1).unwrap());
    assert_eq!(east.job().name(), "east");
    assert_eq!(west.job().id(), parent.id() + 2);
    assert!(matches!(
        custom.set_state(Running, None),
        Err(Error::InvalidState(_))
    ));
    east.set_state(Running, None).unwrap();
    assert!(eventually(|| parent.state() == Running));
    east.write(Stream::Output, "from east").unwrap();
    east.set_state(Completed, None).unwrap();
    west.set_state(Running, None).unwrap();
    // Stopping the parent stops its running child through the handler.
    stop_job(&parent, Some(LONG)).unwrap();
    assert_eq!(
        (parent.state(), east.job().state(), west.job().state()),
        (Stopped, Completed, Stopped)
    );
    assert_eq!(
        stopped.load(Ordering::SeqCst),
        1,
        "only the running child had work to stop"
    );
    assert_eq!(take_all(&parent), ["from east"]);
    remove_all(&[parent]);
}

/// A spec whose work writes the same records each time, and reports every state change.
fn scripted(events: mpsc::Sender<(JobState, JobState)>) -> JobSpec {
    JobSpec::new(|ctx| {
        ctx.write_output("one")?;
        ctx.write(Stream::Warning, "careful")?;
        ctx.write_output("two")?;
        Ok(())
    })
    .on_state_changed(move |e| {
        let _ = events.send((e.previous_state_info.state, e.state_info.state));
    })
}

#[test]
fn an_inline_run_gives_the_same_records_and_callbacks_as_a_job() {
    let (tx, rx) = mpsc::channel();
    let started = scripted(tx).start().unwrap();
    wait_all(std::slice::from_ref(&started));
    let as_job: Vec<_> = rx.try_iter().collect();

    let (tx, rx) = mpsc::channel();
    let here = thread::current().id();
    let ran_on = Arc::new(std::sync::Mutex::new(None));
    let r = ran_on.clone();
    let inline = scripted(tx)
        .on_state_changed(move |_| *r.lock().unwrap() = Some(thread::current().id()))
        .run_inline();
    let inline_events: Vec<_> = rx.try_iter().collect();
    assert_eq!(inline.state(), Completed);
    assert_eq!(inline_events, as_job);
    assert_eq!(inline_events, [(NotStarted, Running), (Running, Completed)]);
    assert_eq!(
        *ran_on.lock().unwrap(),
        Some(here),
        "the callbacks ran on the caller's thread"
    );

    let shape = |job: &Arc<bgjob::Job>| -> Vec<(Stream, String)> {
        job.receive(ReceiveOptions::default())
            .unwrap()
            .iter()
            .map(|r| {
                (
                    r.stream,
                    String::from_utf8_lossy(r.bytes().unwrap()).into_owned(),
                )
            })
            .collect()
    };
    assert_eq!(shape(&inline), shape(&started));
    assert!(
        get_job(inline.id()).is_ok(),
        "an inline run is a job in the repository"
    );
    remove_all(&[started, inline]);
}

#[test]
fn a_stop_of_a_suspending_custom_job_reaches_its_host() {
    let calls = Arc::new(AtomicUsize::new(0));
    let c = calls.clone();
    let custom = CustomJobSpec::new()
        .on_stop(move |job| {
            c.fetch_add(1, Ordering::SeqCst);
            // From Suspending the host's way out is Suspended, then Stopping, then Stopped.
            let h = CustomJob::from_job(job.clone()).unwrap();
            for s in [JobState::Suspended, Stopping, Stopped] {
                h.set_state(s, None).unwrap();
            }
        })
        .create();
    custom.set_state(Running, None).unwrap();
    custom.set_state(JobState::Suspending, None).unwrap();
    stop_job(custom.job(), Some(LONG)).unwrap();
    assert_eq!(
        (custom.job().state(), calls.load(Ordering::SeqCst)),
        (Stopped, 1)
    );
    remove_all(&[custom.job().clone()]);
}

#[test]
fn a_progress_report_refused_after_the_end_changes_nothing() {
    let custom = CustomJobSpec::new().create();
    custom.set_state(Running, None).unwrap();
    custom.write_progress(40, "Copying", "").unwrap();
    custom.set_state(Completed, None).unwrap();
    assert!(custom.write_progress(99, "after the end", "").is_err());
    let p = custom.job().progress().unwrap();
    assert_eq!((p.percent_complete, p.activity.as_str()), (40, "Copying"));
    remove_all(&[custom.job().clone()]);
}
