//! Integration tests of the core Rust API: start, wait, receive, stop, remove, pools,
//! callbacks and the repository.
//!
//! See `common/mod.rs` for the shared helpers and the rules every test follows. Sleeps
//! only make work take time; synchronisation goes through waits, channels, gates and
//! bounded polls of getters.

use bgjob::{
    Error, Job, JobFilter, JobId, JobSpec, JobState, Pool, ReceiveOptions, WaitMode,
    WildcardPattern, get_job, get_jobs, on_any_state_changed, remove_job, stop_job, unregister_any,
    wait_job_ids, wait_jobs,
};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

mod common;

use JobState::{Completed, Failed, NotStarted, Running, Stopped, Stopping};
use common::*;

// ----- failures ---------------------------------------------------------------------------

#[test]
fn a_panic_in_the_work_fails_the_job_and_the_worker_runs_the_next_job() {
    let pool = Pool::new(1, 0).unwrap();
    let bad = JobSpec::new(|ctx| {
        ctx.write_output("before the panic")?;
        panic!("kaboom {}", 42)
    })
    .name(unique("panic"))
    .pool(&pool)
    .start()
    .unwrap();
    wait_all(std::slice::from_ref(&bad));
    let info = bad.state_info();
    assert_eq!(info.state, Failed);
    let reason = info.reason.expect("a Failed job has a reason");
    assert!(reason.contains("panicked"), "reason: {reason}");
    assert!(reason.contains("kaboom 42"), "reason: {reason}");
    assert_eq!(take_all(&bad), ["before the panic"]);

    let good = JobSpec::new(|ctx| Ok(ctx.write_output("after")?))
        .pool(&pool)
        .start()
        .unwrap();
    wait_all(std::slice::from_ref(&good));
    assert_eq!(good.state(), Completed);
    assert_eq!(take_all(&good), ["after"]);
    assert_eq!(pool.live_threads(), 1, "the worker survived the panic");
    remove_all(&[bad, good]);
    pool.shutdown(Some(LONG)).unwrap();
}

#[test]
fn the_works_question_mark_on_a_bgjob_error_fails_the_job_with_its_message() {
    let missing: JobId = u64::MAX;
    let job = JobSpec::new(move |ctx| {
        ctx.write_output("looking")?;
        let found = get_job(missing)?;
        ctx.write_output(format!("found {}", found.id()))?;
        Ok(())
    })
    .name(unique("question-mark"))
    .start()
    .unwrap();
    wait_all(std::slice::from_ref(&job));
    let info = job.state_info();
    assert_eq!(info.state, Failed);
    assert_eq!(
        info.reason.as_deref(),
        Some(Error::NoSuchJob(missing).to_string().as_str())
    );
    assert_eq!(take_all(&job), ["looking"]);
    remove_all(&[job]);
}

// ----- pools --------------------------------------------------------------------------------

#[test]
fn a_pool_throttle_limits_running_jobs_and_shutdown_stops_them() {
    let pool = Pool::new(4, 2).unwrap();
    let name = unique("throttle");
    let running = Arc::new(AtomicUsize::new(0));
    let most = Arc::new(AtomicUsize::new(0));
    let ran = Arc::new(AtomicUsize::new(0));
    let jobs: Vec<Arc<Job>> = (0..4)
        .map(|_| {
            let (running, most, ran) = (running.clone(), most.clone(), ran.clone());
            let (tx, _rx) = mpsc::channel();
            let work = cooperative(tx);
            JobSpec::new(move |ctx| {
                ran.fetch_add(1, Ordering::SeqCst);
                let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                most.fetch_max(now, Ordering::SeqCst);
                let r = work(ctx);
                running.fetch_sub(1, Ordering::SeqCst);
                r
            })
            .name(name.clone())
            .pool(&pool)
            .start()
            .unwrap()
        })
        .collect();
    let count = |s: JobState| jobs.iter().filter(|j| j.state() == s).count();
    assert!(eventually(|| count(Running) == 2), "two jobs never ran");
    // Watch a while: with 4 threads free, a broken throttle would start a third.
    let until = Instant::now() + Duration::from_millis(300);
    while Instant::now() < until {
        assert_eq!(count(Running), 2);
        assert_eq!(count(NotStarted), 2);
        thread::sleep(Duration::from_millis(5));
    }
    let mut filter = by_name(&name);
    filter.state = Some(Running);
    assert_eq!(get_jobs(&filter).len(), 2);

    // Shutdown stops the queued jobs (never run) and asks the running ones to stop.
    pool.shutdown(Some(LONG)).unwrap();
    for j in &jobs {
        assert_eq!(j.state(), Stopped, "job {}", j.id());
    }
    assert_eq!(ran.load(Ordering::SeqCst), 2, "queued jobs never ran");
    assert_eq!(most.load(Ordering::SeqCst), 2);
    assert_eq!(
        jobs.iter().filter(|j| j.begin_time().is_none()).count(),
        2,
        "two jobs never began"
    );
    assert!(pool.is_shut_down());
    pool.shutdown(Some(LONG)).unwrap();
    pool.shutdown(Some(Duration::ZERO)).unwrap();
    remove_all(&jobs);
}

#[test]
fn shutdown_times_out_while_uncooperative_work_runs_and_succeeds_once_it_ends() {
    let pool = Pool::new(1, 0).unwrap();
    let gate = Gate::default();
    let (started_tx, started) = mpsc::channel();
    let g = gate.clone();
    let stuck = JobSpec::new(move |_| {
        started_tx.send(()).unwrap();
        g.pass();
        Ok(())
    })
    .name(unique("stuck"))
    .pool(&pool)
    .start()
    .unwrap();
    let queued_ran = Arc::new(AtomicBool::new(false));
    let q = queued_ran.clone();
    let queued = JobSpec::new(move |_| {
        q.store(true, Ordering::SeqCst);
        Ok(())
    })
    .name(unique("queued"))
    .pool(&pool)
    .start()
    .unwrap();
    started.recv_timeout(LONG).expect("the stuck job runs");

    let t0 = Instant::now();
    let r = pool.shutdown(Some(Duration::from_millis(200)));
    assert!(matches!(r, Err(Error::Timeout(_))), "{r:?}");
    assert!(t0.elapsed() >= Duration::from_millis(190));
    assert_eq!(queued.state(), Stopped);
    assert!(queued.begin_time().is_none());
    assert!(stuck.stop_requested());
    assert_eq!(stuck.state(), Stopping);
    // Again: still running, still a timeout, nothing else changes.
    let r = pool.shutdown(Some(Duration::ZERO));
    assert!(matches!(r, Err(Error::Timeout(_))), "{r:?}");
    assert_eq!(stuck.state(), Stopping);

    gate.open();
    pool.shutdown(Some(LONG)).unwrap();
    assert_eq!(
        stuck.state(),
        Stopped,
        "a stop asked before the work ended wins"
    );
    pool.shutdown(None).unwrap();
    assert!(
        !queued_ran.load(Ordering::SeqCst),
        "a stopped queued job never runs"
    );
    remove_all(&[stuck, queued]);
}

#[test]
fn starting_on_a_shut_down_pool_fails_and_leaves_nothing_behind() {
    let pool = Pool::new(1, 0).unwrap();
    pool.shutdown(Some(LONG)).unwrap();
    let name = unique("shut-down-start");
    let work_dropped = Arc::new(AtomicUsize::new(0));
    let callback_dropped = Arc::new(AtomicUsize::new(0));
    let called = Arc::new(AtomicBool::new(false));
    let guard = DropCount(work_dropped.clone());
    let cb_guard = DropCount(callback_dropped.clone());
    let c = called.clone();
    let r = JobSpec::new(move |_| {
        let _keep = &guard;
        Ok(())
    })
    .name(name.clone())
    .pool(&pool)
    .on_state_changed(move |_| {
        let _keep = &cb_guard;
        c.store(true, Ordering::SeqCst);
    })
    .start();
    assert_eq!(r.unwrap_err(), Error::ShutDown(pool.id()));
    assert!(get_jobs(&by_name(&name)).is_empty());
    assert_eq!(
        work_dropped.load(Ordering::SeqCst),
        1,
        "the work was released"
    );
    assert_eq!(
        callback_dropped.load(Ordering::SeqCst),
        1,
        "the callback was released"
    );
    assert!(!called.load(Ordering::SeqCst));
}

// ----- waits --------------------------------------------------------------------------------

#[test]
fn a_wait_inside_a_job_on_a_job_queued_on_its_one_thread_pool_does_not_deadlock() {
    let pool = Pool::new(1, 0).unwrap();
    let (tx, rx) = mpsc::channel::<Arc<Job>>();
    let p = pool.clone();
    let name = unique("nested");
    let n = name.clone();
    let outer = JobSpec::new(move |ctx| {
        let inner = JobSpec::new(|c| Ok(c.write_output("inner")?))
            .name(n)
            .pool(&p)
            .start()?;
        tx.send(inner.clone()).unwrap();
        // The pool's only thread runs this job: the inner one is queued.
        ctx.write_output(format!("inner was {}", inner.state()))?;
        let r = wait_jobs(std::slice::from_ref(&inner), WaitMode::All, Some(LONG))?;
        if r.timed_out {
            return Err("the inner job never ran".into());
        }
        ctx.write_output(format!("inner said {}", take_all(&inner).join(",")))?;
        Ok(())
    })
    .name(name.clone())
    .pool(&pool)
    .start()
    .unwrap();
    wait_all(std::slice::from_ref(&outer));
    assert_eq!(outer.state_info().reason, None);
    assert_eq!(outer.state(), Completed);
    assert_eq!(
        take_all(&outer),
        ["inner was NotStarted", "inner said inner"]
    );
    let inner = rx.recv_timeout(LONG).unwrap();
    assert_eq!(inner.state(), Completed);
    remove_all(&[outer, inner]);
    pool.shutdown(Some(LONG)).unwrap();
}

fn chain_link(
    pool: Pool,
    depth: u32,
    max: u32,
    name: String,
    started: Arc<Mutex<Vec<Arc<Job>>>>,
) -> JobSpec {
    let p = pool.clone();
    let n = name.clone();
    JobSpec::new(move |ctx| {
        if depth == max {
            ctx.write_output(format!("deepest {depth}"))?;
            return Ok(());
        }
        let child = chain_link(p, depth + 1, max, n, started.clone()).start()?;
        started.lock().unwrap().push(child.clone());
        let r = wait_jobs(std::slice::from_ref(&child), WaitMode::All, Some(LONG))?;
        if r.timed_out || child.state() != Completed {
            return Err(format!("job at depth {} is {}", depth + 1, child.state()));
        }
        for t in take_all(&child) {
            ctx.write_output(t)?;
        }
        ctx.write_output(format!("depth {depth}"))?;
        Ok(())
    })
    .name(name)
    .pool(&pool)
}

#[test]
fn a_chain_of_eight_nested_waits_on_a_one_thread_pool_completes() {
    let pool = Pool::new(1, 0).unwrap();
    let name = unique("chain");
    let started = Arc::new(Mutex::new(Vec::new()));
    let top = chain_link(pool.clone(), 1, 8, name.clone(), started.clone())
        .start()
        .unwrap();
    wait_all(std::slice::from_ref(&top));
    assert_eq!(top.state_info().reason, None);
    assert_eq!(top.state(), Completed);
    let mut want = vec!["deepest 8".to_string()];
    want.extend((1..8).rev().map(|d| format!("depth {d}")));
    assert_eq!(take_all(&top), want);
    let mut all = vec![top];
    all.extend(started.lock().unwrap().iter().cloned());
    assert_eq!(all.len(), 8);
    assert!(all.iter().all(|j| j.state() == Completed));
    let mut mine = ids(&all);
    mine.sort_unstable();
    assert_eq!(ids(&get_jobs(&by_name(&name))), mine);
    // The spare workers lent to the waits go away again.
    assert!(
        eventually(|| pool.live_threads() == 1),
        "{} threads",
        pool.live_threads()
    );
    remove_all(&all);
    pool.shutdown(Some(LONG)).unwrap();
}

#[test]
fn wait_any_returns_the_first_finished_and_wait_all_reports_in_the_given_order() {
    let pool = Pool::new(3, 0).unwrap();
    let name = unique("wait-any");
    let (gate_a, gate_c) = (Gate::default(), Gate::default());
    let start_gated = |g: &Gate| {
        let g = g.clone();
        JobSpec::new(move |ctx| {
            g.pass();
            Ok(ctx.write_output("gated")?)
        })
        .name(name.clone())
        .pool(&pool)
        .start()
        .unwrap()
    };
    let a = start_gated(&gate_a);
    let b = JobSpec::new(|ctx| {
        thread::sleep(Duration::from_millis(20));
        Ok(ctx.write_output("quick")?)
    })
    .name(name.clone())
    .pool(&pool)
    .start()
    .unwrap();
    let c = start_gated(&gate_c);
    let jobs = vec![a.clone(), b.clone(), c.clone()];

    let r = wait_jobs(&jobs, WaitMode::Any, Some(LONG)).unwrap();
    assert!(!r.timed_out);
    assert_eq!(r.done, vec![b.id()]);
    // Poll (timeout 0): the jobs done now.
    let r = wait_jobs(&jobs, WaitMode::Any, Some(Duration::ZERO)).unwrap();
    assert_eq!((r.done, r.timed_out), (vec![b.id()], false));
    let r = wait_jobs(&jobs, WaitMode::All, Some(Duration::ZERO)).unwrap();
    assert_eq!((r.done, r.timed_out), (vec![b.id()], true));
    let r = wait_jobs(&jobs, WaitMode::All, Some(Duration::from_millis(50))).unwrap();
    assert_eq!((r.done, r.timed_out), (vec![b.id()], true));
    assert_eq!(a.state(), Running);

    gate_c.open();
    let r = wait_job_ids(&[a.id(), c.id()], WaitMode::Any, Some(LONG)).unwrap();
    assert_eq!((r.done, r.timed_out), (vec![c.id()], false));
    gate_a.open();
    wait_all(&jobs);
    remove_all(&jobs);
    pool.shutdown(Some(LONG)).unwrap();
}

#[test]
fn a_wait_on_its_own_job_from_its_work_would_deadlock() {
    let job = JobSpec::new(|ctx| {
        let me = ctx.job().clone();
        match wait_jobs(&[me], WaitMode::All, Some(Duration::from_secs(5))) {
            Err(Error::WouldDeadlock(_)) => {}
            other => return Err(format!("wait_jobs on itself gave {other:?}")),
        }
        match wait_job_ids(&[ctx.job_id()], WaitMode::Any, Some(Duration::from_secs(5))) {
            Err(Error::WouldDeadlock(_)) => {}
            other => return Err(format!("wait_job_ids on itself gave {other:?}")),
        }
        Ok(())
    })
    .name(unique("self-wait"))
    .start()
    .unwrap();
    wait_all(std::slice::from_ref(&job));
    assert_eq!(job.state_info().reason, None);
    assert_eq!(job.state(), Completed);
    remove_all(&[job]);
}

// ----- stop and remove ----------------------------------------------------------------------

#[test]
fn stop_of_a_running_cooperative_job_returns_once_it_is_stopped() {
    let (events, cb) = recorder();
    let (tx, started) = mpsc::channel();
    let job = JobSpec::new(cooperative(tx))
        .name(unique("stop-coop"))
        .on_state_changed(cb)
        .start()
        .unwrap();
    started.recv_timeout(LONG).unwrap();
    stop_job(&job, Some(LONG)).unwrap();
    assert_eq!(job.state(), Stopped);
    assert!(job.is_done(), "stop returns after the Stopped callbacks");
    assert_eq!(
        *events.lock().unwrap(),
        [
            (NotStarted, Running),
            (Running, Stopping),
            (Stopping, Stopped)
        ]
    );
    // Stopping a finished job does nothing.
    stop_job(&job, Some(Duration::ZERO)).unwrap();
    assert_eq!(events.lock().unwrap().len(), 3);
    remove_all(&[job]);
}

#[test]
fn stop_with_a_short_timeout_on_uncooperative_work_times_out_and_leaves_it_stopping() {
    let (events, cb) = recorder();
    let gate = Gate::default();
    let g = gate.clone();
    let (tx, started) = mpsc::channel();
    let job = JobSpec::new(move |_| {
        tx.send(()).unwrap();
        g.pass();
        Ok(())
    })
    .name(unique("stop-stuck"))
    .on_state_changed(cb)
    .start()
    .unwrap();
    started.recv_timeout(LONG).unwrap();
    let t0 = Instant::now();
    let r = stop_job(&job, Some(Duration::from_millis(100)));
    assert!(matches!(r, Err(Error::Timeout(_))), "{r:?}");
    assert!(t0.elapsed() >= Duration::from_millis(90));
    assert_eq!(job.state(), Stopping);
    assert!(!job.is_done());
    gate.open();
    wait_all(std::slice::from_ref(&job));
    assert_eq!(job.state(), Stopped);
    assert_eq!(
        *events.lock().unwrap(),
        [
            (NotStarted, Running),
            (Running, Stopping),
            (Stopping, Stopped)
        ]
    );
    remove_all(&[job]);
}

/// DESIGN's legal moves have no Running → Stopped: a stop of running work goes through
/// Stopping, however the stop request and the end of the work interleave. Many stops at
/// once make the interleavings vary.
#[test]
fn every_stop_of_running_work_passes_through_stopping() {
    const THREADS: usize = 8;
    const ROUNDS: usize = 3000;
    let pool = Pool::new(2, 0).unwrap();
    let name = unique("stop-moves");
    let wrong = Arc::new(Mutex::new(Vec::new()));
    let threads: Vec<_> = (0..THREADS)
        .map(|_| {
            let (pool, name, wrong) = (pool.clone(), name.clone(), wrong.clone());
            thread::spawn(move || {
                for _ in 0..ROUNDS {
                    let (events, cb) = recorder();
                    let (tx, started) = mpsc::channel();
                    let job = JobSpec::new(move |ctx| {
                        tx.send(()).unwrap();
                        let deadline = Instant::now() + LONG;
                        while !ctx.stop_requested() && Instant::now() < deadline {
                            std::hint::spin_loop();
                        }
                        Ok(())
                    })
                    .name(name.clone())
                    .pool(&pool)
                    .on_state_changed(cb)
                    .start()
                    .unwrap();
                    started.recv_timeout(LONG).unwrap();
                    stop_job(&job, Some(LONG)).unwrap();
                    let seen = events.lock().unwrap().clone();
                    if seen
                        != [
                            (NotStarted, Running),
                            (Running, Stopping),
                            (Stopping, Stopped),
                        ]
                    {
                        wrong.lock().unwrap().push((job.id(), seen));
                    }
                    remove_job(job.id(), false).unwrap();
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let wrong = wrong.lock().unwrap();
    assert!(
        wrong.is_empty(),
        "{} of {} stops went another way, e.g. {:?}",
        wrong.len(),
        THREADS * ROUNDS,
        wrong.first()
    );
    pool.shutdown(Some(LONG)).unwrap();
}

#[test]
fn remove_refuses_an_unfinished_job_unless_forced_and_frees_it() {
    let name = unique("remove");
    let (tx, started) = mpsc::channel();
    let job = JobSpec::new(cooperative(tx))
        .name(name.clone())
        .start()
        .unwrap();
    started.recv_timeout(LONG).unwrap();
    assert_eq!(
        remove_job(job.id(), false),
        Err(Error::NotFinished(job.id()))
    );
    assert_eq!(get_job(job.id()).unwrap().id(), job.id());
    remove_job(job.id(), true).unwrap();
    assert_eq!(job.state(), Stopped);
    assert!(job.is_removed());
    assert!(!job.has_more_data(), "remove frees the records at once");
    assert_eq!(get_job(job.id()).unwrap_err(), Error::NoSuchJob(job.id()));
    assert_eq!(remove_job(job.id(), true), Err(Error::NoSuchJob(job.id())));
    assert!(get_jobs(&by_name(&name)).is_empty());
}

/// A forced remove that comes after a job's finished state is stored but while that
/// change's callbacks are still queued (an earlier change's callback is running) must not
/// make the job's callbacks miss the change: every change reaches them exactly once.
#[test]
fn a_remove_racing_the_finished_callbacks_does_not_drop_them() {
    let gate = Gate::default();
    let (in_cb_tx, in_cb) = mpsc::channel();
    let (events, record) = recorder();
    let g = gate.clone();
    let (tx, started) = mpsc::channel();
    let job = JobSpec::new(cooperative(tx))
        .name(unique("remove-race"))
        .on_state_changed(move |e| {
            record(e);
            if e.state_info.state == Stopping {
                // Hold the Stopping callback: the Stopped change queues behind it.
                in_cb_tx.send(()).unwrap();
                g.pass();
            }
        })
        .start()
        .unwrap();
    started.recv_timeout(LONG).unwrap();
    let j = job.clone();
    let stopper = thread::spawn(move || stop_job(&j, Some(Duration::ZERO)));
    in_cb
        .recv_timeout(LONG)
        .expect("the Stopping callback runs");
    // The work sees the stop and ends: Stopped is stored, its callbacks wait their turn.
    assert!(eventually(|| job.state() == Stopped));
    let (done_tx, removed) = mpsc::channel();
    let id = job.id();
    let remover = thread::spawn(move || done_tx.send(remove_job(id, true)).unwrap());
    // A remove that returns before the gate opens took the job while a change was still
    // undelivered; either way the check below decides.
    let early = removed.recv_timeout(Duration::from_millis(500)).ok();
    gate.open();
    let returned_early = early.is_some();
    let r = early.unwrap_or_else(|| removed.recv_timeout(LONG).expect("remove returns"));
    remover.join().unwrap();
    let _ = stopper.join().unwrap();
    assert_eq!(r, Ok(()));
    assert_eq!(
        *events.lock().unwrap(),
        [
            (NotStarted, Running),
            (Running, Stopping),
            (Stopping, Stopped)
        ],
        "the job's callbacks missed a change (remove returned before the queued \
         Stopped callbacks could run: {returned_early})"
    );
}

// ----- receive ------------------------------------------------------------------------------

#[test]
fn receive_with_wait_and_max_returns_as_soon_as_max_records_are_there() {
    let gate = Gate::default();
    let g = gate.clone();
    let job = JobSpec::new(move |ctx| {
        for t in ["1", "2", "3"] {
            thread::sleep(Duration::from_millis(5));
            ctx.write_output(t)?;
        }
        g.pass();
        Ok(ctx.write_output("4")?)
    })
    .name(unique("receive-max"))
    .start()
    .unwrap();
    let got = job
        .receive(ReceiveOptions {
            wait: true,
            max: Some(3),
            timeout: Some(LONG),
            keep: false,
        })
        .unwrap();
    assert_eq!(texts(&got), ["1", "2", "3"]);
    assert_eq!(
        job.state(),
        Running,
        "it did not wait for the job to finish"
    );
    gate.open();
    wait_all(std::slice::from_ref(&job));
    assert_eq!(take_all(&job), ["4"]);
    remove_all(&[job]);
}

#[test]
fn receive_with_wait_on_a_running_job_times_out_with_what_is_present() {
    let gate = Gate::default();
    let g = gate.clone();
    let (tx, written) = mpsc::channel();
    let job = JobSpec::new(move |ctx| {
        ctx.write_output("a")?;
        ctx.write_output("b")?;
        tx.send(()).unwrap();
        g.pass();
        Ok(())
    })
    .name(unique("receive-timeout"))
    .start()
    .unwrap();
    written.recv_timeout(LONG).unwrap();
    assert!(job.parent().is_none() && job.children().is_empty());
    let t0 = Instant::now();
    let got = job
        .receive(ReceiveOptions {
            wait: true,
            timeout: Some(Duration::from_millis(300)),
            keep: true,
            ..Default::default()
        })
        .unwrap();
    let waited = t0.elapsed();
    assert_eq!(texts(&got), ["a", "b"]);
    assert!(
        waited >= Duration::from_millis(290),
        "returned after {waited:?}"
    );
    assert!(waited < LONG);
    // With a max that is not reached, the same.
    let got = job
        .receive(ReceiveOptions {
            wait: true,
            max: Some(5),
            timeout: Some(Duration::from_millis(100)),
            keep: false,
        })
        .unwrap();
    assert_eq!(texts(&got), ["a", "b"]);
    assert_eq!(job.state(), Running);
    gate.open();
    wait_all(std::slice::from_ref(&job));
    assert!(take_all(&job).is_empty());
    remove_all(&[job]);
}

#[test]
fn has_more_data_is_true_until_the_records_are_consumed() {
    let name = unique("more-data");
    let job = JobSpec::new(|ctx| {
        ctx.write_output("x")?;
        ctx.write_error("y")?;
        Ok(())
    })
    .name(name.clone())
    .start()
    .unwrap();
    wait_all(std::slice::from_ref(&job));
    assert_eq!(job.state(), Completed, "error records do not fail a job");
    let with = |more: bool| {
        let mut f = by_name(&name);
        f.has_more_data = Some(more);
        ids(&get_jobs(&f))
    };
    assert!(job.has_more_data());
    assert_eq!(with(true), [job.id()]);
    let kept = job
        .receive(ReceiveOptions {
            keep: true,
            ..Default::default()
        })
        .unwrap();
    assert_eq!(texts(&kept), ["x", "y"]);
    assert!(job.has_more_data(), "keep leaves the records");
    let first = job
        .receive(ReceiveOptions {
            max: Some(1),
            ..Default::default()
        })
        .unwrap();
    assert_eq!(texts(&first), ["x"]);
    assert!(job.has_more_data());
    let rest = job.receive(ReceiveOptions::default()).unwrap();
    assert_eq!(texts(&rest), ["y"]);
    assert_eq!(rest[0].stream, bgjob::Stream::Error);
    assert!(first[0].sequence < rest[0].sequence);
    assert!(!job.has_more_data());
    assert_eq!(with(false), [job.id()]);
    assert!(with(true).is_empty());
    remove_all(&[job]);
}

// ----- callbacks and the repository -----------------------------------------------------------

#[test]
fn repository_wide_callbacks_see_every_change_after_the_jobs_own() {
    type Log = Arc<Mutex<Vec<(&'static str, JobId, JobState, JobState)>>>;
    let log: Log = Arc::default();
    let l = log.clone();
    let reg = on_any_state_changed(Box::new(move |e| {
        l.lock().unwrap().push((
            "any",
            e.job_id,
            e.previous_state_info.state,
            e.state_info.state,
        ))
    }));
    let own = |log: &Log| {
        let l = log.clone();
        move |e: &bgjob::StateChangedEvent| {
            l.lock().unwrap().push((
                "own",
                e.job_id,
                e.previous_state_info.state,
                e.state_info.state,
            ))
        }
    };
    let job = JobSpec::new(|_| Ok(()))
        .name(unique("any-callback"))
        .on_state_changed(own(&log))
        .start()
        .unwrap();
    wait_all(std::slice::from_ref(&job));
    assert!(unregister_any(reg));
    assert!(!unregister_any(reg));
    let later = JobSpec::new(|_| Ok(()))
        .name(unique("any-callback-later"))
        .on_state_changed(own(&log))
        .start()
        .unwrap();
    wait_all(std::slice::from_ref(&later));
    let of = |id: JobId| -> Vec<_> {
        log.lock()
            .unwrap()
            .iter()
            .filter(|e| e.1 == id)
            .map(|e| (e.0, e.2, e.3))
            .collect()
    };
    assert_eq!(
        of(job.id()),
        [
            ("own", NotStarted, Running),
            ("any", NotStarted, Running),
            ("own", Running, Completed),
            ("any", Running, Completed),
        ]
    );
    assert_eq!(
        of(later.id()),
        [("own", NotStarted, Running), ("own", Running, Completed)]
    );
    remove_all(&[job, later]);
}

#[test]
fn get_jobs_filters_by_name_wildcards_state_and_newest() {
    let base = unique("filter");
    let start = |suffix: &str, ok: bool| {
        JobSpec::new(move |_| if ok { Ok(()) } else { Err("planned".into()) })
            .name(format!("{base}-{suffix}"))
            .command(format!("cmd-{suffix}"))
            .start()
            .unwrap()
    };
    let a1 = start("a-1", true);
    let a2 = start("a-2", true);
    let b1 = start("b-1", false);
    let all = vec![a1.clone(), a2.clone(), b1.clone()];
    wait_all(&all);
    let find = |f: JobFilter| ids(&get_jobs(&f));
    let mut sorted = ids(&all);
    sorted.sort_unstable();
    assert_eq!(find(by_name(&format!("{base}-*"))), sorted);
    let upper = format!("{}-A-?", base.to_uppercase());
    assert_eq!(
        find(by_name(&upper)),
        [a1.id(), a2.id()],
        "case-insensitive"
    );
    let mut failed = by_name(&format!("{base}*"));
    failed.state = Some(Failed);
    assert_eq!(find(failed), [b1.id()]);
    let mut newest = by_name(&format!("{base}*"));
    newest.newest = Some(2);
    assert_eq!(find(newest), sorted[1..]);
    let mut by_command = by_name(&format!("{base}*"));
    by_command.command = Some(WildcardPattern::new("CMD-B*"));
    assert_eq!(find(by_command), [b1.id()]);
    assert_eq!(get_job(b1.id()).unwrap().name(), format!("{base}-b-1"));
    remove_all(&all);
    assert!(find(by_name(&format!("{base}*"))).is_empty());
}

// ----- many threads ---------------------------------------------------------------------------

#[test]
fn eight_threads_start_and_consume_two_thousand_jobs_each_on_a_shared_pool() {
    const THREADS: usize = 8;
    const JOBS: usize = 2000;
    const RECORDS: usize = 3;
    let pool = Pool::new(4, 0).unwrap();
    let name = unique("hammer");
    let events = Arc::new(AtomicUsize::new(0));
    let ran = Arc::new(AtomicUsize::new(0));
    let work_dropped = Arc::new(AtomicUsize::new(0));
    let callbacks_dropped = Arc::new(AtomicUsize::new(0));
    let received = Arc::new(AtomicUsize::new(0));
    let threads: Vec<_> = (0..THREADS)
        .map(|t| {
            let (pool, name) = (pool.clone(), name.clone());
            let (events, ran, received) = (events.clone(), ran.clone(), received.clone());
            let (work_dropped, callbacks_dropped) =
                (work_dropped.clone(), callbacks_dropped.clone());
            thread::spawn(move || {
                let jobs: Vec<Arc<Job>> = (0..JOBS)
                    .map(|i| {
                        let (ran, events) = (ran.clone(), events.clone());
                        let guard = DropCount(work_dropped.clone());
                        let cb_guard = DropCount(callbacks_dropped.clone());
                        JobSpec::new(move |ctx| {
                            let _keep = &guard;
                            ran.fetch_add(1, Ordering::SeqCst);
                            for k in 0..RECORDS {
                                ctx.write_output(format!("{t}:{i}:{k}"))?;
                            }
                            Ok(())
                        })
                        .name(name.clone())
                        .pool(&pool)
                        .on_state_changed(move |_| {
                            let _keep = &cb_guard;
                            events.fetch_add(1, Ordering::SeqCst);
                        })
                        .start()
                        .unwrap()
                    })
                    .collect();
                let r = wait_jobs(&jobs, WaitMode::All, Some(LONG)).unwrap();
                assert!(!r.timed_out);
                for (i, job) in jobs.iter().enumerate() {
                    assert_eq!(job.state(), Completed);
                    let want: Vec<String> = (0..RECORDS).map(|k| format!("{t}:{i}:{k}")).collect();
                    let got = take_all(job);
                    assert_eq!(got, want, "job {}", job.id());
                    received.fetch_add(got.len(), Ordering::SeqCst);
                    assert!(take_all(job).is_empty());
                    remove_job(job.id(), false).unwrap();
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let total = THREADS * JOBS;
    assert_eq!(ran.load(Ordering::SeqCst), total);
    assert_eq!(received.load(Ordering::SeqCst), total * RECORDS);
    assert_eq!(
        events.load(Ordering::SeqCst),
        total * 2,
        "Running and Completed, once each"
    );
    assert_eq!(work_dropped.load(Ordering::SeqCst), total);
    assert_eq!(callbacks_dropped.load(Ordering::SeqCst), total);
    assert!(get_jobs(&by_name(&name)).is_empty());
    pool.shutdown(Some(LONG)).unwrap();
}

#[test]
fn a_timeout_too_long_for_the_clock_means_no_deadline() {
    // `Instant + Duration::MAX` overflows (a panic); the library must read it as "forever".
    let (tx, started) = mpsc::channel();
    let job = JobSpec::new(cooperative(tx))
        .name(unique("huge-timeout"))
        .start()
        .unwrap();
    started.recv_timeout(LONG).unwrap();
    stop_job(&job, Some(Duration::MAX)).unwrap();
    assert_eq!(job.state(), Stopped);
    let done = wait_jobs(
        std::slice::from_ref(&job),
        WaitMode::All,
        Some(Duration::MAX),
    )
    .unwrap();
    assert_eq!(done.done.len(), 1);
    remove_all(&[job]);
}
