"""make bench: runs each benchmark and prints one table — for each workload, each
system's median time per job (or process) and its ratio to bgjob's, all measured in the
same run (compare ratios only within one run: single runs on a busy machine vary).

Workloads so far:
  W8 processes: start and reap N `true` processes — bgjob process jobs (from C and from
     Python) against a plain posix_spawn + waitpid loop in C and Python's subprocess.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time

import bgjob

N = int(os.environ.get("BGJOB_BENCH_PROCESSES", "1000"))
ROUNDS = 5
HERE = os.path.dirname(os.path.abspath(__file__))


def per_process(fn) -> float:
    """fn() runs one round of N processes; the median over ROUNDS, in µs per process."""
    times = []
    for _ in range(ROUNDS):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) / N * 1e6)
    return statistics.median(times)


def bgjob_python() -> None:
    jobs = [bgjob.start_process_job(["true"]) for _ in range(N)]
    bgjob.wait_jobs(jobs)
    for j in jobs:
        assert j.state == bgjob.JobState.Completed, j.state_info
        j.remove()


def subprocess_batch() -> None:
    procs = [subprocess.Popen(["true"]) for _ in range(N)]
    for p in procs:
        assert p.wait() == 0


def subprocess_serial() -> None:
    for _ in range(N):
        subprocess.run(["true"], check=True)


def c_side(binary: str) -> dict[str, float]:
    out = subprocess.run([binary, str(N)], check=True, capture_output=True, text=True).stdout
    return {name: float(us) for name, us in (line.split() for line in out.splitlines())}


def table(title: str, rows: list[tuple[str, float]], base: str) -> None:
    ref = dict(rows)[base]
    print(f"\n{title}  (N = {N}, median of {ROUNDS} rounds; ratio = time / {base})")
    print(f"  {'system':<46} {'µs/process':>11} {'ratio':>7}")
    for name, us in rows:
        print(f"  {name:<46} {us:>11.1f} {us / ref:>6.2f}x")


def main() -> None:
    c = c_side(sys.argv[1])
    bgjob_python()  # warm-up
    py = {
        "bgjob.start_process_job + wait_jobs (Python)": per_process(bgjob_python),
        "subprocess.Popen all, then wait (Python)": per_process(subprocess_batch),
        "subprocess.run one at a time (Python)": per_process(subprocess_serial),
    }
    table(
        "W8 processes: start and reap `true`",
        [
            ("bgjob process jobs (C)", c["bgjob_c"]),
            ("posix_spawn all, then waitpid (C)", c["posix_spawn_batch"]),
            ("posix_spawn + waitpid one at a time (C)", c["posix_spawn_serial"]),
            *py.items(),
        ],
        "bgjob process jobs (C)",
    )


if __name__ == "__main__":
    main()
