//! The event queue for event loops: a pollable descriptor and every state change of the
//! chosen jobs, each once, in each job's order.
//! See `common/mod.rs` for the shared helpers and the rules every test follows.

mod common;

use bgjob::{EventQueue, JobSpec, JobState, Pool};
use common::*;
use std::collections::HashMap;
use std::time::Instant;

/// Waits (with `poll(2)`, at most `LONG`) until the queue's descriptor is readable.
fn readable(q: &EventQueue, timeout_ms: i32) -> bool {
    let mut pfd = libc::pollfd {
        fd: q.fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid pollfd.
    let n = unsafe { libc::poll(&mut pfd, 1, timeout_ms) };
    n == 1 && pfd.revents & libc::POLLIN != 0
}

#[test]
fn a_thousand_jobs_deliver_every_event_once_in_order_through_a_polled_descriptor() {
    let pool = Pool::new(4, 0).unwrap();
    // The queue of chosen jobs: ids are known only after the start, so the test opens a
    // queue of every job and keeps only its own (others run in parallel in this process).
    let q = EventQueue::open(None).unwrap();
    assert!(!readable(&q, 0), "readable before any event");
    let jobs: Vec<_> = (0..1000)
        .map(|i| {
            JobSpec::new(move |_| {
                if i % 7 == 0 {
                    Err("sevens fail".into())
                } else {
                    Ok(())
                }
            })
            .pool(&pool)
            .start()
            .unwrap()
        })
        .collect();
    let mine: HashMap<u64, usize> = jobs.iter().enumerate().map(|(i, j)| (j.id(), i)).collect();
    let mut seen: Vec<Vec<(JobState, JobState)>> = vec![Vec::new(); jobs.len()];
    let mut finished = 0;
    let deadline = Instant::now() + LONG;
    while finished < jobs.len() {
        assert!(
            Instant::now() < deadline,
            "only {finished} jobs finished in time"
        );
        if !readable(&q, 1000) {
            continue;
        }
        while let Some(e) = q.next() {
            let Some(&i) = mine.get(&e.job_id) else {
                continue;
            };
            seen[i].push((e.previous_state_info.state, e.state_info.state));
            if e.state_info.state.is_finished() {
                finished += 1;
            }
        }
        // Drained: the descriptor is quiet until the next event.
    }
    for (i, events) in seen.iter().enumerate() {
        let end = if i % 7 == 0 {
            JobState::Failed
        } else {
            JobState::Completed
        };
        assert_eq!(
            *events,
            [
                (JobState::NotStarted, JobState::Running),
                (JobState::Running, end)
            ],
            "job {i}"
        );
    }
    wait_all(&jobs);
    remove_all(&jobs);
    pool.shutdown(Some(LONG)).unwrap();
}

#[test]
fn a_queue_of_chosen_jobs_sees_only_them_and_stops_when_dropped() {
    let gate = Gate::default();
    let g = gate.clone();
    let watched = JobSpec::new(move |_| if g.pass() { Ok(()) } else { Err("gate".into()) })
        .start()
        .unwrap();
    let q = EventQueue::open(Some(&[watched.id()])).unwrap();
    let other = JobSpec::new(|_| Ok(())).start().unwrap();
    wait_all(std::slice::from_ref(&other));
    gate.open();
    wait_all(std::slice::from_ref(&watched));
    let events: Vec<_> = std::iter::from_fn(|| q.next()).collect();
    assert!(
        events.iter().all(|e| e.job_id == watched.id()),
        "{events:?}"
    );
    assert_eq!(
        events.last().map(|e| e.state_info.state),
        Some(JobState::Completed)
    );
    assert!(!readable(&q, 0), "readable with nothing pending");
    assert!(q.is_empty());
    drop(q);
    remove_all(&[watched, other]);
}
