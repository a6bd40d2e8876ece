"""The README's quick start, as a test: start, wait, receive, result, remove."""

import bgjob


def add(a, b):
    bgjob.current_job().write_progress(50, "Adding", "half way")
    return a + b


def test_quick_start():
    job = bgjob.start_job(add, 1, 1, name="smoke-adder")
    assert job.wait(timeout=30)
    assert job.state is bgjob.JobState.Completed
    records = job.receive()
    assert records[-1] == 2
    assert isinstance(records[0], bgjob.ProgressRecord)
    assert records[0].percent_complete == 50
    assert job.receive() == []
    assert job.result() == 2
    job.remove()
    try:
        bgjob.get_job(job.id)
    except bgjob.NoSuchJobError:
        pass
    else:
        raise AssertionError("a removed job is still found")
