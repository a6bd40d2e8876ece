"""Fixtures for the bgjob tests.

The job repository is process-wide and pytest runs every test in one process, so no test
counts the jobs of the repository: each test names its jobs with a prefix of its own
(``jobs.prefix``) and the ``jobs`` fixture force-removes whatever is left under it."""

from __future__ import annotations

import uuid
from typing import Any, Iterator, List, Optional

import pytest

import bgjob


class JobFactory:
    """Starts uniquely named jobs for one test and removes them all afterwards."""

    def __init__(self) -> None:
        # Only letters and digits: the prefix must not contain wildcard characters.
        self.prefix = "pyt" + uuid.uuid4().hex[:12]
        self.started: List[bgjob.Job] = []
        self.pools: List[bgjob.Pool] = []
        self._n = 0

    def name(self, suffix: Optional[str] = None) -> str:
        self._n += 1
        return f"{self.prefix}-{suffix if suffix is not None else self._n}"

    def start(self, fn: Any, *args: Any, name: Optional[str] = None, **kwargs: Any) -> bgjob.Job:
        job = bgjob.start_job(fn, *args, name=name if name is not None else self.name(),
                              **kwargs)
        self.started.append(job)
        return job

    def start_parallel(self, fn: Any, inputs: Any, name: Optional[str] = None,
                       **kwargs: Any) -> bgjob.Job:
        """A parallel job named under this test's prefix (its children are removed with it)."""
        job = bgjob.start_parallel_job(fn, inputs,
                                       name=name if name is not None else self.name(),
                                       **kwargs)
        self.started.append(job)
        return job

    def track(self, job: bgjob.Job) -> bgjob.Job:
        self.started.append(job)
        return job

    def pool(self, threads: int = 0, throttle: int = 0) -> bgjob.Pool:
        pool = bgjob.Pool(threads=threads, throttle=throttle)
        self.pools.append(pool)
        return pool

    def mine(self) -> List[bgjob.Job]:
        return bgjob.get_jobs(name=self.prefix + "*")

    def cleanup(self) -> None:
        leftovers = self.mine() + self.started
        for job in leftovers:
            try:
                job.remove(force=True)
            except (bgjob.NoSuchJobError, bgjob.ChildJobError):
                pass
        for pool in self.pools:
            pool.shutdown(timeout=30)
        assert self.mine() == [], "jobs of this test were left in the repository"


@pytest.fixture
def jobs() -> Iterator[JobFactory]:
    factory = JobFactory()
    try:
        yield factory
    finally:
        factory.cleanup()
