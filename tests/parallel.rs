//! Parallel jobs through the Rust API (ForEach-Object -Parallel -AsJob): a parent with one
//! child per input, its state following theirs, throttled, stopped and removed as one.
//! See `common/mod.rs` for the shared helpers and the rules every test follows.

mod common;

use JobState::{Completed, Failed, NotStarted, Running, Stopped};
use bgjob::{
    Error, JobSpec, JobState, ParallelJobSpec, Payload, Pool, ReceiveOptions, get_job, get_jobs,
    remove_job, stop_job,
};
use common::*;
use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// The work every test uses unless it needs more: writes its input back as output.
fn echo(ctx: &bgjob::WorkContext) -> bgjob::WorkResult {
    let input = ctx.input().and_then(Payload::bytes);
    let bytes = input.ok_or("a parallel child without bytes input")?;
    ctx.write_output(bytes)?;
    Ok(())
}

fn inputs(range: std::ops::RangeInclusive<u32>) -> Vec<String> {
    range.map(|i| i.to_string()).collect()
}

#[test]
fn a_parallel_job_over_ten_inputs_gives_ten_records_each_from_its_child() {
    let name = unique("ten");
    let parent = ParallelJobSpec::new(inputs(1..=10), echo)
        .name(&name)
        .command("echo")
        .start()
        .unwrap();
    wait_all(std::slice::from_ref(&parent));
    assert_eq!(parent.state(), Completed);
    assert_eq!(parent.type_name(), "ParallelJob");
    assert_eq!(parent.status_message(), "10/10 completed");

    // Children: ids right after the parent's, one per input in order, each Completed.
    let children = parent.children();
    assert_eq!(children.len(), 10);
    for (i, c) in children.iter().enumerate() {
        assert_eq!(c.id(), parent.id() + 1 + i as u64);
        assert_eq!(c.parent_id(), parent.id());
        assert!(c.is_child());
        assert_eq!(c.type_name(), "ParallelChildJob");
        assert_eq!(c.command(), "echo");
        assert_eq!(c.state(), Completed);
        assert_eq!(
            c.input().and_then(Payload::bytes),
            Some((i + 1).to_string().as_bytes())
        );
    }

    // Receive from the parent: every input once, each record naming the child that wrote it.
    let records = parent.receive(ReceiveOptions::default()).unwrap();
    assert!(
        records.windows(2).all(|w| w[0].sequence < w[1].sequence),
        "time order"
    );
    let got: BTreeSet<(u64, String)> = records
        .iter()
        .map(|r| {
            (
                r.job_id,
                String::from_utf8_lossy(r.bytes().unwrap()).into_owned(),
            )
        })
        .collect();
    let want: BTreeSet<(u64, String)> = (1..=10)
        .map(|i| (parent.id() + i as u64, i.to_string()))
        .collect();
    assert_eq!(records.len(), 10);
    assert_eq!(got, want);
    assert!(
        parent
            .receive(ReceiveOptions::default())
            .unwrap()
            .is_empty()
    );
    assert!(!parent.has_more_data());
    remove_all(&[parent]);
}

#[test]
fn one_failing_child_fails_the_parent_and_the_others_output_stays() {
    let parent = ParallelJobSpec::new(inputs(1..=2), |ctx| {
        if ctx.input().and_then(Payload::bytes) == Some(b"1") {
            return Err("input 1 is bad".into());
        }
        echo(ctx)
    })
    .name(unique("fail"))
    .start()
    .unwrap();
    wait_all(std::slice::from_ref(&parent));
    let (one, two) = (&parent.children()[0], &parent.children()[1]);
    assert_eq!(parent.state(), Failed);
    assert_eq!(one.state(), Failed);
    assert_eq!(one.state_info().reason.as_deref(), Some("input 1 is bad"));
    assert_eq!(two.state(), Completed);
    let records = parent.receive(ReceiveOptions::default()).unwrap();
    assert_eq!(texts(&records), ["2"]);
    assert_eq!(records[0].job_id, two.id());
    remove_all(&[parent]);
}

#[test]
fn a_throttle_of_two_runs_two_children_and_a_stop_of_the_parent_stops_them_all() {
    let pool = Pool::new(4, 0).unwrap();
    let ran = Arc::new(AtomicUsize::new(0));
    let r = ran.clone();
    let (events, record) = recorder();
    let parent = ParallelJobSpec::new(inputs(1..=4), move |ctx| {
        r.fetch_add(1, Ordering::SeqCst);
        let deadline = Instant::now() + LONG;
        while !ctx.stop_requested() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(1));
        }
        Ok(())
    })
    .pool(&pool)
    .throttle_limit(2)
    .on_state_changed(record)
    .start()
    .unwrap();
    let children = parent.children().to_vec();
    let count = |s: JobState| children.iter().filter(|c| c.state() == s).count();
    assert!(eventually(|| count(Running) == 2), "two children never ran");
    assert_eq!(count(NotStarted), 2, "the throttle let more than two run");
    // The parent follows once its children's Running callbacks have run.
    assert!(
        eventually(|| parent.state() == Running),
        "the parent never ran"
    );

    stop_job(&parent, Some(LONG)).unwrap();
    assert_eq!(parent.state(), Stopped);
    for c in &children {
        assert!(
            matches!(c.state(), Stopped | Completed),
            "child {} is {}",
            c.id(),
            c.state()
        );
    }
    assert_eq!(
        ran.load(Ordering::SeqCst),
        2,
        "a waiting child ran after the stop"
    );
    assert_eq!(
        *events.lock().unwrap(),
        [
            (NotStarted, Running),
            (Running, JobState::Stopping),
            (JobState::Stopping, Stopped)
        ]
    );
    remove_all(&[parent]);
    pool.shutdown(Some(LONG)).unwrap();
}

#[test]
fn stopping_a_waiting_child_does_not_let_another_start_past_the_throttle() {
    let pool = Pool::new(4, 0).unwrap();
    let running = Arc::new(AtomicUsize::new(0));
    let most = Arc::new(AtomicUsize::new(0));
    let (r, m) = (running.clone(), most.clone());
    let parent = ParallelJobSpec::new(inputs(1..=5), move |ctx| {
        m.fetch_max(r.fetch_add(1, Ordering::SeqCst) + 1, Ordering::SeqCst);
        let deadline = Instant::now() + LONG;
        while !ctx.stop_requested() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(1));
        }
        r.fetch_sub(1, Ordering::SeqCst);
        Ok(())
    })
    .pool(&pool)
    .throttle_limit(2)
    .start()
    .unwrap();
    let children = parent.children().to_vec();
    assert!(eventually(|| children[..2]
        .iter()
        .all(|c| c.state() == Running)));
    // Child 3 never held a slot: its stop frees none, so child 4 keeps waiting.
    stop_job(&children[2], Some(LONG)).unwrap();
    assert_eq!(children[2].state(), Stopped);
    assert_eq!(children[3].state(), NotStarted);
    // Child 1 held one: its end lets child 4 (not the stopped 3) run.
    stop_job(&children[0], Some(LONG)).unwrap();
    assert!(
        eventually(|| children[3].state() == Running),
        "child 4 never ran"
    );
    assert_eq!(children[4].state(), NotStarted);
    stop_job(&parent, Some(LONG)).unwrap();
    assert_eq!(
        most.load(Ordering::SeqCst),
        2,
        "more than the throttle ran at once"
    );
    remove_all(&[parent]);
    pool.shutdown(Some(LONG)).unwrap();
}

#[test]
fn children_are_found_by_id_name_and_instance_id_but_listed_only_when_asked() {
    let name = unique("find");
    let parent = ParallelJobSpec::new(inputs(1..=3), echo)
        .name(&name)
        .start()
        .unwrap();
    wait_all(std::slice::from_ref(&parent));
    let child = parent.children()[1].clone();
    assert_eq!(get_job(child.id()).unwrap().id(), child.id());
    let by_uuid = bgjob::repository()
        .get_by_instance_id(child.instance_id())
        .unwrap();
    assert_eq!(by_uuid.id(), child.id());
    assert_eq!(child.name(), format!("Job{}", child.id()));
    let by_child_name = get_jobs(&bgjob::JobFilter {
        name: Some(bgjob::WildcardPattern::new(child.name())),
        include_children: true,
        ..Default::default()
    });
    assert_eq!(by_child_name.len(), 1);

    // Listing: the parent only, unless children are asked for (optionally by state).
    let top = get_jobs(&bgjob::JobFilter {
        name: Some(bgjob::WildcardPattern::new(&name)),
        ..Default::default()
    });
    assert_eq!(
        top.iter().map(|j| j.id()).collect::<Vec<_>>(),
        [parent.id()]
    );
    let completed_children: Vec<u64> = get_jobs(&bgjob::JobFilter {
        state: Some(Completed),
        include_children: true,
        ..Default::default()
    })
    .iter()
    .filter(|j| j.parent_id() == parent.id())
    .map(|j| j.id())
    .collect();
    assert_eq!(
        completed_children,
        [parent.id() + 1, parent.id() + 2, parent.id() + 3]
    );
    remove_all(&[parent]);
}

#[test]
fn a_child_cannot_be_removed_alone_and_removing_the_parent_frees_the_children() {
    let finalized = Arc::new(AtomicUsize::new(0));
    let guard = DropCount(finalized.clone());
    let parent = ParallelJobSpec::new(inputs(1..=3), move |ctx| {
        let _held = &guard; // the shared work (and what it holds) lives until no child needs it
        echo(ctx)
    })
    .start()
    .unwrap();
    wait_all(std::slice::from_ref(&parent));
    let child_ids: Vec<u64> = parent.children().iter().map(|c| c.id()).collect();
    assert!(
        matches!(remove_job(child_ids[0], false), Err(Error::ChildJob(id)) if id == child_ids[0])
    );
    assert!(
        get_job(child_ids[0]).is_ok(),
        "a refused removal took the child"
    );
    remove_job(parent.id(), false).unwrap();
    for id in child_ids {
        assert!(matches!(get_job(id), Err(Error::NoSuchJob(_))));
    }
    assert!(matches!(get_job(parent.id()), Err(Error::NoSuchJob(_))));
    assert_eq!(
        finalized.load(Ordering::SeqCst),
        1,
        "the shared work was not freed once"
    );
}

#[test]
fn no_inputs_make_a_parent_that_completes_at_once() {
    let (events, record) = recorder();
    let parent = ParallelJobSpec::new(Vec::<String>::new(), echo)
        .on_state_changed(record)
        .start()
        .unwrap();
    wait_all(std::slice::from_ref(&parent));
    assert_eq!(parent.state(), Completed);
    assert!(parent.children().is_empty());
    assert_eq!(parent.status_message(), "0/0 completed");
    assert_eq!(
        *events.lock().unwrap(),
        [(NotStarted, Running), (Running, Completed)]
    );
    remove_all(&[parent]);
}

#[test]
fn a_parallel_job_on_a_shut_down_pool_fails_to_start_and_leaves_nothing() {
    let pool = Pool::new(1, 0).unwrap();
    pool.shutdown(Some(LONG)).unwrap();
    let name = unique("shut");
    let started = ParallelJobSpec::new(inputs(1..=2), echo)
        .name(&name)
        .pool(&pool)
        .start();
    assert!(matches!(started, Err(Error::ShutDown(_))));
    assert!(get_jobs(&by_name(&name)).is_empty());
}

#[test]
fn a_thread_job_has_no_input() {
    let job = JobSpec::new(|ctx| match ctx.input() {
        None => Ok(()),
        Some(_) => Err("a thread job with an input".into()),
    })
    .start()
    .unwrap();
    wait_all(std::slice::from_ref(&job));
    assert_eq!(job.state(), Completed);
    remove_all(&[job]);
}
