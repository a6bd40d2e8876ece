"""Process jobs: ``start_process_job`` and ``run_process_job`` run an external program as
a job (PowerShell's Start-Job): stdout lines are output records, stderr lines error
records, exit 0 completes, anything else fails, a stop ends the process group."""

from __future__ import annotations

import asyncio
import errno
import os
import resource
import shutil
import signal
import sys
import time
import uuid
from pathlib import Path

import pytest

import bgjob
from bgjob import ErrorRecord, JobState
from _support import (Recorder, os_thread_count, poll_until, read_line, spawn_python,
                      wait_event)

LONG = 60.0


def sh(jobs, script: str, **kwargs) -> bgjob.Job:
    """A process job running ``sh -c script``, named under the test's prefix."""
    return jobs.track(bgjob.start_process_job(["sh", "-c", script], name=jobs.name(),
                                              **kwargs))


def finish(job: bgjob.Job) -> list:
    assert job.wait(timeout=LONG), f"{job!r} did not finish"
    return job.receive()


# --- basics -----------------------------------------------------------------------------

def test_echo_completes_with_its_line_as_str(jobs):
    job = jobs.track(bgjob.start_process_job(["echo", "2"], name=jobs.name()))
    assert job.wait(timeout=LONG)
    assert job.state is JobState.Completed
    assert job.state_info.reason is None
    assert job.type_name == "ProcessJob"
    assert job.location == "localhost"
    assert job.command == "echo 2"
    assert job.begin_time is not None and job.end_time is not None
    # result() is the output not yet received, kept: receive() still takes it after.
    assert job.result() == ["2"]
    records = job.receive()
    assert records == ["2"] and isinstance(records[0], str)
    assert job.result() == []
    assert not job.has_more_data


def test_argv_takes_bytes_and_paths_and_the_command_is_quoted(jobs):
    echo = shutil.which("echo")
    assert echo is not None
    job = jobs.track(bgjob.start_process_job([Path(echo), b"a b", "c'd"], name=jobs.name()))
    assert finish(job) == ["a b c'd"]
    assert job.command == f"{echo} 'a b' 'c'\\''d'"


def test_callbacks_see_running_then_completed(jobs):
    rec = Recorder()
    job = jobs.track(bgjob.start_process_job(["true"], name=jobs.name(),
                                             on_state_changed=rec))
    wait_event(rec.finished, LONG, "Completed")
    assert job.wait(timeout=LONG)
    assert rec.transitions() == [(JobState.NotStarted, JobState.Running),
                                 (JobState.Running, JobState.Completed)]
    assert all(j == job for (j, _i, _p, _t) in rec.calls)


def test_stdout_and_stderr_interleave_in_arrival_order(jobs, tmp_path):
    fifo = tmp_path / "step"
    os.mkfifo(fifo)
    # Each step waits for a line on the FIFO, so the order of arrival is the test's. The
    # script opens the FIFO once (reopening it per read could pair a new read with the
    # test's previous writer before it closed, and see end of file instead of a line).
    script = ('exec 3< "$F"; echo out1; read x <&3; echo err1 >&2; read x <&3; echo out2; '
              'read x <&3; echo err2 >&2')
    job = sh(jobs, script, add_env={"F": str(fifo)})
    expected = [("out", "out1"), ("err", "err1"), ("out", "out2"), ("err", "err2")]
    with open(fifo, "w") as step:   # blocks until the script opens it for reading
        for i, (stream, text) in enumerate(expected):
            got = job.receive(wait=True, max=1, timeout=LONG)
            assert len(got) == 1, (i, got)
            if stream == "err":
                assert isinstance(got[0], ErrorRecord), got
                assert got[0].value == text
                assert got[0].job_id == job.id
            else:
                assert got == [text]
            if i < len(expected) - 1:
                step.write("go\n")
                step.flush()
    assert job.wait(timeout=LONG)
    assert job.state is JobState.Completed  # error records do not fail a job
    assert job.receive() == []


def test_each_stream_keeps_its_own_order(jobs):
    script = ('i=0; while [ $i -lt 200 ]; do echo "o$i"; echo "e$i" >&2; i=$((i+1)); '
              'done')
    job = sh(jobs, script)
    records = finish(job)
    assert job.state is JobState.Completed
    out = [r for r in records if not isinstance(r, ErrorRecord)]
    err = [r.value for r in records if isinstance(r, ErrorRecord)]
    assert out == [f"o{i}" for i in range(200)]
    assert err == [f"e{i}" for i in range(200)]


# --- failures ---------------------------------------------------------------------------

def test_a_non_zero_exit_fails_the_job(jobs):
    job = sh(jobs, "echo partial; exit 3")
    assert job.wait(timeout=LONG)
    assert job.state is JobState.Failed
    assert job.state_info.reason == "exited with code 3"
    with pytest.raises(bgjob.JobFailedError, match="exited with code 3"):
        job.result()
    assert job.receive() == ["partial"]   # what it wrote before failing is kept


def test_a_missing_program_fails_the_job(jobs):
    missing = "bgjob-no-such-program-" + uuid.uuid4().hex[:8]
    job = jobs.track(bgjob.start_process_job([missing, "x"], name=jobs.name()))
    assert job.wait(timeout=LONG)
    assert job.state is JobState.Failed
    assert "No such file or directory" in job.state_info.reason
    assert missing in job.state_info.reason
    with pytest.raises(bgjob.JobFailedError, match="No such file or directory"):
        job.result()


@pytest.mark.parametrize("sig", ["SEGV", "TERM", "KILL"])
def test_a_signal_it_was_not_sent_by_us_fails_the_job_naming_it(jobs, sig):
    # ulimit -c 0: no core file; the signal is what counts.
    job = sh(jobs, f"ulimit -c 0; echo before; kill -{sig} $$; echo after")
    assert job.wait(timeout=LONG)
    assert job.state is JobState.Failed   # not Stopped: no stop was asked
    reason = job.state_info.reason
    assert f"SIG{sig}" in reason and "signal" in reason, reason
    with pytest.raises(bgjob.JobFailedError, match=f"SIG{sig}"):
        job.result()
    assert job.receive() == ["before"]


def test_a_file_that_is_not_executable_fails_the_job(jobs, tmp_path):
    script = tmp_path / "not-executable.sh"
    script.write_text("#!/bin/sh\necho should-not-run\n")
    script.chmod(0o644)
    job = jobs.track(bgjob.start_process_job([script], name=jobs.name()))
    assert job.wait(timeout=LONG)
    assert job.state is JobState.Failed
    reason = job.state_info.reason
    assert os.strerror(errno.EACCES) in reason, reason   # "Permission denied"
    assert str(script) in reason, reason
    with pytest.raises(bgjob.JobFailedError, match="Permission denied"):
        job.result()
    assert job.receive() == []


@pytest.mark.parametrize("run", ["start", "run"])
def test_a_bad_working_directory_raises_job_os_error_and_starts_nothing(jobs, tmp_path, run):
    missing = tmp_path / "missing"
    name = jobs.name()
    start = bgjob.start_process_job if run == "start" else bgjob.run_process_job
    with pytest.raises(bgjob.JobOSError) as info:
        start(["true"], cwd=missing, name=name)
    e = info.value
    assert isinstance(e, OSError) and isinstance(e, bgjob.JobError)
    assert e.errno == errno.ENOENT
    assert e.strerror == os.strerror(errno.ENOENT)
    assert e.filename == missing
    assert str(missing) in str(e) and "working directory" in str(e)
    assert bgjob.get_jobs(name=name) == []
    # A file is not a directory either; `except OSError` is enough to catch it.
    afile = tmp_path / "file"
    afile.write_text("")
    try:
        start(["true"], cwd=str(afile), name=name)
    except OSError as e2:
        assert e2.errno == errno.ENOTDIR
        assert e2.filename == str(afile)
    else:
        raise AssertionError("a file as working directory was accepted")
    assert bgjob.get_jobs(name=name) == []


def test_the_working_directory_is_used(jobs, tmp_path):
    job = jobs.track(bgjob.start_process_job(["pwd"], cwd=tmp_path, name=jobs.name()))
    assert finish(job) == [os.path.realpath(tmp_path)]


# --- stdin and environment --------------------------------------------------------------

def test_input_is_fed_to_stdin(jobs):
    job = jobs.track(bgjob.start_process_job(["cat"], input=b"a\nb\n", name=jobs.name()))
    assert finish(job) == ["a", "b"]
    job = jobs.track(bgjob.start_process_job(["cat"], input="h\u00e9llo\nno newline",
                                             name=jobs.name()))
    assert finish(job) == ["h\u00e9llo", "no newline"]
    # Without input, stdin is at end of file: cat ends at once.
    job = jobs.track(bgjob.start_process_job(["cat"], name=jobs.name()))
    assert finish(job) == []
    assert job.state is JobState.Completed


def test_add_env_adds_to_the_inherited_environment(jobs, monkeypatch):
    monkeypatch.setenv("BGJOB_INHERITED", "yes")
    job = sh(jobs, 'echo "$BGJOB_ADDED $BGJOB_INHERITED"', add_env={"BGJOB_ADDED": "42"})
    assert finish(job) == ["42 yes"]


def test_env_replaces_the_environment(jobs):
    env = shutil.which("env") or "/usr/bin/env"
    job = jobs.track(bgjob.start_process_job([env], env={"ONLY": "this"}, name=jobs.name()))
    assert finish(job) == ["ONLY=this"]
    # add_env goes on top of env (and overrides it).
    job = jobs.track(bgjob.start_process_job([env], env={"A": "1", "B": "0"},
                                             add_env={b"B": b"2"}, name=jobs.name()))
    assert sorted(finish(job)) == ["A=1", "B=2"]


# --- stopping ---------------------------------------------------------------------------

def test_stop_ends_a_sleeping_process(jobs):
    job = jobs.track(bgjob.start_process_job(["sleep", "30"], name=jobs.name()))
    poll_until(lambda: job.state is JobState.Running, LONG, "Running")
    t0 = time.monotonic()
    job.stop(timeout=LONG)
    assert job.state is JobState.Stopped
    assert time.monotonic() - t0 < 5  # SIGTERM ended it: no grace was needed
    with pytest.raises(bgjob.JobStoppedError):
        job.result()


def test_a_process_ignoring_sigterm_is_killed_after_the_grace(jobs):
    job = sh(jobs, "trap '' TERM; echo ready; sleep 600", stop_grace=0.3)
    assert job.receive(wait=True, max=1, timeout=LONG) == ["ready"]
    t0 = time.monotonic()
    job.stop(timeout=LONG)
    elapsed = time.monotonic() - t0
    assert job.state is JobState.Stopped
    assert elapsed >= 0.3, elapsed
    assert elapsed < 0.3 + 10, elapsed


def test_stop_ends_a_grandchild_holding_stdout(jobs):
    job = sh(jobs, "sleep 600 & echo started; wait")
    assert job.receive(wait=True, max=1, timeout=LONG) == ["started"]
    job.stop(timeout=LONG)
    assert job.state is JobState.Stopped


@pytest.mark.skipif(shutil.which("setsid") is None, reason="needs setsid(1)")
def test_stop_ends_the_job_when_a_grandchild_left_the_group_holding_stdout(jobs):
    # The grandchild starts a session of its own, so the stop's signals to the job's
    # process group never reach it, and it keeps the job's stdout open for 600 s.
    job = sh(jobs, "setsid sh -c 'echo $$; exec sleep 600' & wait")
    got = job.receive(wait=True, max=1, timeout=LONG)
    assert len(got) == 1 and got[0].isdigit(), got
    grandchild = int(got[0])
    try:
        assert os.getpgid(grandchild) == grandchild   # it did leave the job's group
        t0 = time.monotonic()
        job.stop(timeout=LONG)
        elapsed = time.monotonic() - t0
        assert job.state is JobState.Stopped
        assert elapsed < 10, elapsed   # well under the grandchild's 600 s
        os.kill(grandchild, 0)   # still alive (and holding the pipe): the job did not wait
    finally:
        try:
            os.kill(grandchild, signal.SIGKILL)
        except ProcessLookupError:
            pass


def test_a_throttled_pool_holds_the_next_process_until_one_ends(jobs):
    pool = jobs.pool(threads=2, throttle=1)
    first = jobs.track(bgjob.start_process_job(["sleep", "30"], pool=pool, name=jobs.name()))
    poll_until(lambda: first.state is JobState.Running, LONG, "first Running")
    second = jobs.track(bgjob.start_process_job(["echo", "x"], pool=pool, name=jobs.name()))
    assert not second.wait(timeout=0.2)
    assert second.state is JobState.NotStarted
    first.stop(timeout=LONG)
    assert finish(second) == ["x"]


# --- text, bytes, chunks ----------------------------------------------------------------

def test_text_false_gives_bytes(jobs):
    job = jobs.track(bgjob.start_process_job(["echo", "2"], text=False, name=jobs.name()))
    assert finish(job) == [b"2"]


def test_lines_that_are_not_utf8_stay_bytes(jobs):
    job = sh(jobs, r"printf '\377\nok\n'")
    assert finish(job) == [b"\xff", "ok"]


def test_chunks_concatenate_to_the_output(jobs):
    script = r"printf 'a\nb\n'; printf 'c' >&2; printf 'no newline'"
    job = sh(jobs, script, chunks=True, text=False)
    records = finish(job)
    out = [r for r in records if not isinstance(r, ErrorRecord)]
    err = [r.value for r in records if isinstance(r, ErrorRecord)]
    assert all(isinstance(r, bytes) for r in out + err)
    assert b"".join(out) == b"a\nb\nno newline"
    assert b"".join(err) == b"c"


# --- inline runs ------------------------------------------------------------------------

def test_run_process_job_returns_the_finished_job(jobs):
    rec = Recorder()
    job = jobs.track(bgjob.run_process_job(["sh", "-c", "echo one; echo two >&2; exit 0"],
                                           name=jobs.name(), on_state_changed=rec))
    assert job.state is JobState.Completed
    assert rec.finished.is_set()   # its finished callbacks ran before it returned
    assert job.type_name == "ProcessJob"
    assert job.result() == ["one"]
    records = job.receive()
    assert sorted(map(repr, records)) == sorted(map(repr, ["one", ErrorRecord("two")]))
    job = jobs.track(bgjob.run_process_job(["sh", "-c", "exit 7"], name=jobs.name()))
    assert job.state is JobState.Failed and job.state_info.reason == "exited with code 7"


def test_run_process_job_can_be_stopped_from_another_thread(jobs):
    import threading

    name = jobs.name()

    def stopper() -> None:
        poll_until(lambda: bool(bgjob.get_jobs(name=name)) and
                   bgjob.get_jobs(name=name)[0].state is JobState.Running, LONG, "Running")
        bgjob.get_jobs(name=name)[0].stop()

    t = threading.Thread(target=stopper)
    t.start()
    try:
        job = jobs.track(bgjob.run_process_job(["sleep", "60"], name=name))
    finally:
        t.join(LONG)
    assert job.state is JobState.Stopped


CTRL_C_CHILD = """
import bgjob, sys
def changed(job, info, prev):
    if info.state == bgjob.JobState.Running:
        print("ready", flush=True)
try:
    bgjob.run_process_job(["sh", "-c", "sleep 600"], name="ctrlc", stop_grace=0.2,
                          on_state_changed=changed)
except KeyboardInterrupt:
    job = bgjob.get_job(name="ctrlc")
    print("caught", job.state, file=sys.stderr, flush=True)
    raise
print("returned without an interrupt", flush=True)
"""


def test_ctrl_c_stops_an_inline_process_job():
    proc = spawn_python(CTRL_C_CHILD)
    try:
        line = read_line(proc, 30)
        assert line.strip() == "ready", (line, proc.poll())
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert "caught Stopped" in err, err
    assert "returned without an interrupt" not in out
    assert proc.returncode == -signal.SIGINT, (proc.returncode, err)


# --- asyncio ----------------------------------------------------------------------------

def test_await_a_process_job(jobs):
    async def main() -> list:
        job = jobs.track(bgjob.start_process_job(["sh", "-c", "echo a; echo b"],
                                                 name=jobs.name()))
        return await job

    assert asyncio.run(main()) == ["a", "b"]


# --- arguments --------------------------------------------------------------------------

def test_argument_errors_are_clear(jobs):
    name = jobs.name()
    with pytest.raises(TypeError, match=r"list of arguments, not a single str.*'ls -l'"):
        bgjob.start_process_job("ls -l", name=name)
    with pytest.raises(TypeError, match="not a single bytes"):
        bgjob.run_process_job(b"ls", name=name)
    with pytest.raises(TypeError, match="list of arguments"):
        bgjob.start_process_job(42, name=name)
    with pytest.raises(ValueError, match="argv is empty"):
        bgjob.start_process_job([], name=name)
    with pytest.raises(ValueError, match=r"argv\[0\] is empty"):
        bgjob.start_process_job([""], name=name)
    with pytest.raises(TypeError, match=r"argv\[1\]: expected str, bytes or os.PathLike"):
        bgjob.start_process_job(["echo", 1], name=name)
    with pytest.raises(ValueError, match=r"argv\[1\]: embedded null byte"):
        bgjob.start_process_job(["echo", "a\0b"], name=name)
    with pytest.raises(ValueError, match="stop_grace"):
        bgjob.start_process_job(["true"], stop_grace=-0.1, name=name)
    with pytest.raises(ValueError, match="stop_grace"):
        bgjob.start_process_job(["true"], stop_grace=float("nan"), name=name)
    with pytest.raises(TypeError, match="env must be a mapping"):
        bgjob.start_process_job(["true"], env=["A=1"], name=name)
    with pytest.raises(TypeError, match=r"env\['A'\]: expected str"):
        bgjob.start_process_job(["true"], env={"A": 1}, name=name)
    with pytest.raises(TypeError, match="add_env key 1"):
        bgjob.start_process_job(["true"], add_env={1: "x"}, name=name)
    with pytest.raises(ValueError, match="illegal environment variable name"):
        bgjob.start_process_job(["true"], add_env={"A=B": "x"}, name=name)
    with pytest.raises(TypeError, match="input must be bytes"):
        bgjob.start_process_job(["cat"], input=123, name=name)
    with pytest.raises(TypeError):
        bgjob.start_process_job(["true"], "positional", name=name)
    with pytest.raises(TypeError):
        bgjob.run_process_job(["true"], pool=jobs.pool(threads=1))  # type: ignore[call-arg]
    assert bgjob.get_jobs(name=name) == []


# --- scale ------------------------------------------------------------------------------

def _zombie_children() -> list:
    me = os.getpid()
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                stat = f.read()
        except OSError:
            continue   # it ended meanwhile
        fields = stat[stat.rindex(")") + 2:].split()
        if fields[0] == "Z" and int(fields[1]) == me:
            found.append(entry)
    return found


def test_500_processes_run_at_once_on_a_few_threads(jobs, tmp_path):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = 4096 if hard == resource.RLIM_INFINITY else min(hard, 4096)
    if soft != resource.RLIM_INFINITY and soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    gate = tmp_path / "gate"
    script = 'while [ ! -e "$G" ]; do sleep 0.05; done; echo done'
    before = os_thread_count()
    started = [sh(jobs, script, add_env={"G": str(gate)}) for _ in range(500)]
    poll_until(lambda: all(j.state is JobState.Running for j in started), LONG,
               what="all 500 to run")
    during = os_thread_count()
    assert during <= before + (os.cpu_count() or 1) + 3, (before, during)
    gate.write_text("")
    done = bgjob.wait_jobs(started, timeout=LONG * 2)
    assert len(done) == 500
    for j in started:
        assert j.state is JobState.Completed, (j, j.state_info)
        assert j.receive() == ["done"]
        j.remove()
    assert _zombie_children() == []


def _open_fds() -> list:
    return sorted(int(fd) for fd in os.listdir("/proc/self/fd"))


def test_finished_process_jobs_leave_no_descriptors(jobs):
    warm = jobs.track(bgjob.start_process_job(["true"], name=jobs.name()))
    assert warm.wait(timeout=LONG)
    warm.remove()
    before = _open_fds()
    for _ in range(10):
        batch = [bgjob.start_process_job(["true"], name=jobs.name()) for _ in range(100)]
        assert len(bgjob.wait_jobs(batch, timeout=LONG)) == 100
        for j in batch:
            assert j.state is JobState.Completed, j.state_info
            j.remove()
    # The same descriptors, not just as many.
    assert _open_fds() == before
    assert _zombie_children() == []


def _inheritable_fds() -> dict:
    """This process's open descriptors, each with whether a child would inherit it."""
    found = {}
    for fd in _open_fds():
        try:
            found[fd] = os.get_inheritable(fd)
        except OSError:
            pass   # closed meanwhile (the listing's own descriptor)
    return found


def test_no_descriptor_leaks_into_another_jobs_process(jobs):
    before = _inheritable_fds()
    # What a child of this process inherits without bgjob's help: 0, 1, 2 (which the job
    # replaces with its own) and whatever this process holds inheritable.
    expected = sorted({0, 1, 2} | {fd for fd, inh in before.items() if inh})
    # Other process jobs running, with their pipes (and pidfds) open in this process.
    sleepers = [jobs.track(bgjob.start_process_job(["sleep", "30"], name=jobs.name()))
                for _ in range(3)]
    for j in sleepers:
        poll_until(lambda j=j: j.state is JobState.Running, LONG, "sleeper Running")
    during = _inheritable_fds()
    assert len(during) > len(before)
    opened_inheritable = [fd for fd, inh in during.items() if fd not in before and inh]
    assert opened_inheritable == [], "bgjob opened descriptors without close-on-exec"
    # The shell lists its own descriptors from a child (`ls`, which is not exec'd in the
    # shell's place because of the `:` after it), so the listing's own descriptor is not
    # among them: exactly what the job's process inherited.
    lister = sh(jobs, "ls /proc/$$/fd; :")
    listed = finish(lister)
    assert lister.state is JobState.Completed, lister.state_info
    assert sorted(int(fd) for fd in listed) == expected
    for j in sleepers:
        j.stop(timeout=LONG)
        assert j.state is JobState.Stopped


def test_job_os_error_is_documented_and_exported():
    assert "JobOSError" in bgjob.__all__
    assert issubclass(bgjob.JobOSError, bgjob.JobError)
    assert issubclass(bgjob.JobOSError, OSError)
    assert bgjob.JobOSError.__module__ == "bgjob"
    assert "OSError" in (bgjob.JobOSError.__doc__ or "")
    assert sys.modules["bgjob"].start_process_job.__doc__


def test_the_readme_process_example_prints_what_it_says(capsys):
    readme = (Path(__file__).parent.parent / "README.md").read_text()
    section = readme.split("## Process jobs", 1)[1].split("\n## ", 1)[0]
    code = section.split("```python\n", 1)[1].split("```", 1)[0]
    exec(compile(code, "README.md (process jobs)", "exec"), {})
    printed = capsys.readouterr().out.splitlines()
    promised = [line.split("# ", 1)[1].split(" (", 1)[0] for line in code.splitlines()
                if line.startswith("print(") or line.lstrip().startswith("print(")]
    assert printed == promised
