"""Ctrl-C during bgjob's blocking calls, and interpreter exit with jobs still running,
each in a child interpreter."""

from __future__ import annotations

import signal
import textwrap
import time

import pytest

from _support import read_line, run_python, spawn_python

CHILD = textwrap.dedent("""
    import asyncio, sys, threading, time
    import bgjob

    MODE = {mode!r}
    release = threading.Event()

    def work(started=None):
        ctx = bgjob.current_job()
        if started is not None:
            started.set()
        end = time.monotonic() + 60
        while not release.is_set() and time.monotonic() < end:
            if ctx.stop_requested and MODE != "stop":
                return
            time.sleep(0.01)

    def main():
        if MODE == "executor_shutdown":
            ex = bgjob.Executor(max_workers=1)
            ex.submit(work)
            print("ready", flush=True)
            ex.shutdown(wait=True)
            return
        started = threading.Event()
        job = bgjob.start_job(work, started, name="ctrlc")
        other = bgjob.start_job(work, name="ctrlc-other")
        # Running, not queued: a stop of a queued job would end it at once (and rightly).
        started.wait(30)
        print("ready", flush=True)
        if MODE == "wait":
            job.wait()
        elif MODE == "wait_jobs":
            bgjob.wait_jobs([job, other])
        elif MODE == "wait_jobs_any":
            bgjob.wait_jobs([job, other], any=True)
        elif MODE == "receive":
            job.receive(wait=True)
        elif MODE == "result":
            job.result()
        elif MODE == "stop":
            job.stop()
        elif MODE == "await":
            async def waiter():
                await job
            asyncio.run(waiter())
        else:
            raise SystemExit("unknown mode " + MODE)

    try:
        main()
    except KeyboardInterrupt:
        sys.stderr.write("caught KeyboardInterrupt\\n")
        sys.stderr.flush()
        release.set()
        for j in bgjob.get_jobs(name="ctrlc*"):
            j.stop(timeout=10)
        raise
    print("returned without an interrupt", flush=True)
""")

MODES = ["wait", "wait_jobs", "wait_jobs_any", "receive", "result", "stop", "await",
         "executor_shutdown"]


@pytest.mark.parametrize("mode", MODES)
def test_ctrl_c_interrupts_blocking_call(mode):
    proc = spawn_python(CHILD.format(mode=mode))
    try:
        line = read_line(proc, 30)
        assert line.strip() == "ready", (line, proc.poll())
        assert proc.poll() is None
        proc.send_signal(signal.SIGINT)
        t0 = time.monotonic()
        out, err = proc.communicate(timeout=30)
        elapsed = time.monotonic() - t0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert "caught KeyboardInterrupt" in err, err
    assert "KeyboardInterrupt" in err.replace("caught KeyboardInterrupt", "")
    assert "returned without an interrupt" not in out
    assert proc.returncode == -signal.SIGINT, (proc.returncode, err)
    assert elapsed < 5, f"took {elapsed:.1f}s to answer Ctrl-C"
    for bad in ("Fatal Python error", "panicked", "Segmentation fault", "Aborted"):
        assert bad not in err, err


EXIT_CASES = {
    # The case of the issue: a short job still running when the script ends.
    "sleeping": """
        job = bgjob.start_job(time.sleep, 0.5)
    """,
    # Work that keeps taking the interpreter while it shuts down.
    "busy_python": """
        def busy():
            ctx = bgjob.current_job()
            end = time.monotonic() + 60
            n = 0
            while time.monotonic() < end and not ctx.stop_requested:
                ctx.write_output(n)
                n += 1
                time.sleep(0.001)
        job = bgjob.start_job(busy)
        job.receive(wait=True, max=5, timeout=30)
    """,
    # Callbacks that would run during or after shutdown.
    "callbacks": """
        def cb(job, info, prev):
            print("callback", info.state.name, flush=True)
        def short():
            time.sleep(0.2)
            return 1
        jobs = [bgjob.start_job(short, on_state_changed=cb) for _ in range(4)]
        bgjob.on_any_state_changed(cb)
    """,
    # Jobs still queued behind running ones.
    "queued": """
        pool = bgjob.Pool(threads=1, throttle=1)
        jobs = [bgjob.start_job(time.sleep, 0.1, pool=pool) for _ in range(20)]
    """,
}


@pytest.mark.parametrize("case", sorted(EXIT_CASES))
def test_interpreter_exit_with_running_jobs_is_clean(case):
    code = "import time, bgjob\n" + textwrap.dedent(EXIT_CASES[case]) + \
        "\nprint('exiting', flush=True)\n"
    t0 = time.monotonic()
    proc = run_python(code, timeout=60)
    elapsed = time.monotonic() - t0
    assert "exiting" in proc.stdout
    assert proc.returncode == 0, (proc.returncode, proc.stderr)
    for bad in ("Fatal Python error", "panicked", "Traceback", "Segmentation fault",
                "Aborted", "Exception ignored"):
        assert bad not in proc.stderr, proc.stderr
    assert elapsed < 20, f"exit took {elapsed:.1f}s"


# Ctrl-C landing while a state-change callback runs on the main thread (an inline run's
# own changes run their callbacks there): simulated by the callback raising
# KeyboardInterrupt, the exception a SIGINT raises at that instant. It must reach the
# caller as Ctrl-C would, not be swallowed as an "Exception ignored" while the run goes on:
# a process run is stopped (Stopped); a thread run's work is plain Python on this thread,
# so the interrupt lands in it and fails it (Failed), as documented for `run_job`.
INLINE_CTRL_C = """
import bgjob, sys
def changed(job, info, prev):
    if info.state == bgjob.JobState.Running:
        raise KeyboardInterrupt
def work():
    ctx = bgjob.current_job()
    while not ctx.stop_requested:
        ctx.checkpoint()
        import time; time.sleep(0.01)
run = {
    "thread": lambda: bgjob.run_job(work, name="inline", on_state_changed=changed),
    "process": lambda: bgjob.run_process_job(["sleep", "600"], name="inline",
                                             stop_grace=0.2, on_state_changed=changed),
}[sys.argv[1]]
try:
    run()
except KeyboardInterrupt:
    job = bgjob.get_job(name="inline")
    job.wait(timeout=30)
    print("caught", job.state.name, flush=True)
    sys.exit(0)
print("returned without an interrupt", flush=True)
sys.exit(1)
"""


@pytest.mark.parametrize("kind,ends", [("thread", "Failed"), ("process", "Stopped")])
def test_ctrl_c_inside_a_main_thread_callback_interrupts_the_inline_run(kind, ends):
    t0 = time.monotonic()
    proc = run_python(INLINE_CTRL_C.replace("sys.argv[1]", repr(kind)), timeout=60)
    elapsed = time.monotonic() - t0
    assert proc.returncode == 0, (proc.stdout, proc.stderr)
    assert proc.stdout.strip() == f"caught {ends}", (proc.stdout, proc.stderr)
    assert "Exception ignored" not in proc.stderr, proc.stderr
    assert elapsed < 30, f"took {elapsed:.1f}s"
