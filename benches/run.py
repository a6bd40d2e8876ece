"""make bench: runs every benchmark program and prints ONE table — for each workload, each
system's median time per job (or round trip, record, process...) and its ratio to bgjob's,
all measured in the same run. Compare ratios only within one run: single runs on a busy
machine vary. benches/README.md says what each workload measures.

Every program prints `RESULT <workload> <system> <value> <unit>` lines on stdout:
  build/bench/bench_bgjob   W1-W6  bgjob (the C ABI)
  build/bench/bench_uv      W1-W3  libuv (uv_queue_work)
  build/bench/bench_glib    W1-W3  glib (GThreadPool)
  cargo bench --bench floor W1-W3  crossbeam-floor, and bgjob-rust (the Rust API)
  build/bench/process_spawn W8     bgjob, posix_spawn (its own `name value` lines)
and this script measures W7 (Python: bgjob against ThreadPoolExecutor) and the Python
side of W8 itself.

usage: run.py [--bin-dir build/bench] [--skip NAME,...] [--out FILE]
  BGJOB_BENCH_SCALE=0.1   scales every N (a quick run; default 1)
  BGJOB_BENCH_PROCESSES   W8's processes per round (default 1000, scaled)
  CARGO                   the cargo to run the criterion bench with (default cargo)

A program whose source is missing is skipped with a warning. A program that fails (or
prints no RESULT line) makes the run fail: the table of what was measured is printed,
then the failures, and the exit status is 1.
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import datetime
import os
import platform
import re
import statistics
import subprocess
import sys
import threading
import time
from typing import Callable, NamedTuple

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)

SCALE = float(os.environ.get("BGJOB_BENCH_SCALE", "1"))
N = max(10, int(100_000 * SCALE))  # W1-W3 jobs per round
N_PY = max(10, int(20_000 * SCALE))  # W7
N_PROC = max(1, int(int(os.environ.get("BGJOB_BENCH_PROCESSES", "1000")) * min(SCALE, 1)))
ROUNDS = 5  # Python-measured workloads: median of ROUNDS rounds after one warm-up
TIMEOUT = 300  # seconds per program: a hang is a failure, never a stuck bench

WORKLOADS = {
    "W1": "throughput: start N no-op jobs, wait for all, remove",
    "W2": "round trip: start one job and wait for it, N/10 times in sequence",
    "W3": "callbacks: N no-op jobs with a completion callback each, wait for all callbacks",
    "W4": "records: 1,000,000 records written while a reader receives",
    "W5": "many waiters: 10,000 jobs, wait-any until all are done",
    "W6": "repository: 1,000,000 kept jobs: get by id, list by state, by name, bytes per job",
    "W7": "Python: submit N trivial functions, then collect every result",
    "W8": "processes: start and reap N `true` processes",
}
BASE = "bgjob"  # every ratio is value / the `bgjob` row of the same workload
FLOOR = "crossbeam-floor"


class Result(NamedTuple):
    workload: str
    system: str
    value: float
    unit: str
    source: str


results: list[Result] = []
failures: list[str] = []
warnings: list[str] = []


def say(msg: str = "") -> None:
    print(msg, flush=True)


def parse_result(line: str, source: str) -> Result | None:
    parts = line.split()
    if len(parts) != 5 or parts[0] != "RESULT":
        return None
    try:
        value = float(parts[3])
    except ValueError:
        return None
    return Result(parts[1], parts[2], value, parts[4], source)


def run_program(name: str, argv: list[str], env: dict[str, str] | None = None,
                convert: Callable[[str], str | None] | None = None) -> None:
    """Runs one program, echoing its stdout (stderr passes through) and collecting its
    RESULT lines (after `convert`, which may turn another format into one)."""
    say(f"\n==== {name}: {' '.join(argv)}")
    t0 = time.monotonic()
    got = 0
    try:
        proc = subprocess.Popen(argv, cwd=ROOT, stdout=subprocess.PIPE, text=True,
                                env=None if env is None else {**os.environ, **env})
    except OSError as e:
        failures.append(f"{name}: could not start: {e}")
        say(f"!!!! {name}: could not start: {e}")
        return
    timer = threading.Timer(TIMEOUT, proc.kill)
    timer.start()
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            line = line.rstrip("\n")
            say(f"  | {line}")
            if convert is not None:
                line = convert(line) or line
            r = parse_result(line, name)
            if r is not None:
                results.append(r)
                got += 1
        rc = proc.wait()
    finally:
        timer.cancel()
    took = time.monotonic() - t0
    if rc != 0:
        why = f"killed after {TIMEOUT} s" if rc == -9 else f"exit status {rc}"
        failures.append(f"{name}: {why} ({got} results before that)")
        say(f"!!!! {name} FAILED: {why}")
    elif got == 0:
        failures.append(f"{name}: printed no RESULT line")
        say(f"!!!! {name} FAILED: no RESULT line")
    else:
        say(f"==== {name}: {got} results in {took:.1f} s")


def c_program(bin_dir: str, name: str, source: str, args: list[str],
              convert: Callable[[str], str | None] | None = None) -> None:
    binary = os.path.join(bin_dir, name)
    if not os.path.exists(os.path.join(ROOT, source)):
        msg = f"{name}: SKIPPED, its source {source} does not exist"
        warnings.append(msg)
        say(f"\n!!!! WARNING: {msg}")
        return
    if not os.access(binary, os.X_OK):
        failures.append(f"{name}: {source} exists but {binary} was not built")
        say(f"\n!!!! {name}: {binary} was not built")
        return
    run_program(name, [binary, *args], convert=convert)


# W8's C program prints `<name> <µs per process>`; these are its systems.
W8_C_SYSTEMS = {
    "bgjob_c": "bgjob",
    "posix_spawn_batch": "posix_spawn-batch",
    "posix_spawn_serial": "posix_spawn-serial",
}


def w8_convert(line: str) -> str | None:
    parts = line.split()
    if len(parts) == 2 and parts[0] in W8_C_SYSTEMS:
        return f"RESULT W8 {W8_C_SYSTEMS[parts[0]]} {parts[1]} us/process"
    return None


# ---------------------------------------------------------------------------------------
# The Python-side workloads


def median_per_item(fn: Callable[[], None], items: int) -> float:
    """One warm-up round of fn, then the median over ROUNDS rounds, in µs per item."""
    fn()
    times = []
    for _ in range(ROUNDS):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) / items * 1e6)
    return statistics.median(times)


def python_workload(workload: str, system: str, unit: str, items: int,
                    fn: Callable[[], None]) -> None:
    try:
        v = median_per_item(fn, items)
    except Exception as e:  # noqa: BLE001 — any failure is reported, the rest goes on
        failures.append(f"{workload} {system} (Python): {type(e).__name__}: {e}")
        say(f"!!!! {workload} {system} FAILED: {type(e).__name__}: {e}")
        return
    results.append(Result(workload, system, v, unit, "run.py"))
    say(f"  | RESULT {workload} {system} {v:.4g} {unit}")


def trivial() -> int:
    return 1


def w7(bgjob) -> None:
    say(f"\n==== W7 (Python {platform.python_version()}), N = {N_PY}")
    workers = os.cpu_count() or 1

    def bgjob_jobs() -> None:
        jobs = [bgjob.start_job(trivial) for _ in range(N_PY)]
        assert all(j.result() == 1 for j in jobs)
        for j in jobs:
            j.remove()

    python_workload("W7", "bgjob", "us/job", N_PY, bgjob_jobs)

    def executor_round(ex: cf.Executor) -> Callable[[], None]:
        def run() -> None:
            futures = [ex.submit(trivial) for _ in range(N_PY)]
            assert all(f.result() == 1 for f in futures)
        return run

    with bgjob.Executor(max_workers=workers) as ex:
        python_workload("W7", "bgjob.Executor", "us/job", N_PY, executor_round(ex))
    with cf.ThreadPoolExecutor(max_workers=workers) as tpe:
        python_workload("W7", "ThreadPoolExecutor", "us/job", N_PY, executor_round(tpe))


def w8_python(bgjob) -> None:
    say(f"\n==== W8 (Python), N = {N_PROC} processes")

    def bgjob_python() -> None:
        jobs = [bgjob.start_process_job(["true"]) for _ in range(N_PROC)]
        bgjob.wait_jobs(jobs)
        for j in jobs:
            assert j.state == bgjob.JobState.Completed, j.state_info
            j.remove()

    def subprocess_batch() -> None:
        procs = [subprocess.Popen(["true"]) for _ in range(N_PROC)]
        for p in procs:
            assert p.wait() == 0

    def subprocess_serial() -> None:
        for _ in range(N_PROC):
            subprocess.run(["true"], check=True)

    python_workload("W8", "bgjob-python", "us/process", N_PROC, bgjob_python)
    python_workload("W8", "subprocess.Popen-batch", "us/process", N_PROC, subprocess_batch)
    python_workload("W8", "subprocess.run-serial", "us/process", N_PROC, subprocess_serial)


# ---------------------------------------------------------------------------------------
# The table


def machine() -> str:
    model = "unknown CPU"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    try:
        load = "load %.2f %.2f %.2f" % os.getloadavg()
    except OSError:
        load = "load ?"
    return (f"{os.cpu_count()} cores, {model}, Linux {platform.release()}, "
            f"Python {platform.python_version()}, {load}")


def fmt(v: float) -> str:
    a = abs(v)
    if a >= 1000:
        return f"{v:,.0f}"
    if a >= 100:
        return f"{v:.0f}"
    if a >= 10:
        return f"{v:.1f}"
    if a >= 1:
        return f"{v:.2f}"
    return f"{v:.3f}"


def base_workload(token: str) -> str:
    m = re.match(r"W\d+", token)
    return m.group(0) if m else token


def table(started: str, header: str) -> list[str]:
    out = [f"bgjob benchmarks, {started}: {header}",
           f"N = {N} (W1, W3; W2 = N/10), W7 N = {N_PY}, W8 N = {N_PROC}; "
           f"ratio = value / the `{BASE}` row of the same measure (lower is faster "
           f"for times)"]
    # Workloads in numeric order; within one, measures and systems in the order measured.
    tokens = list(dict.fromkeys(r.workload for r in results))
    order = {wl: i for i, wl in enumerate(dict.fromkeys(base_workload(t) for t in tokens))}
    tokens.sort(key=lambda t: (int(base_workload(t)[1:]) if base_workload(t)[1:].isdigit()
                               else 99, order[base_workload(t)]))
    seen_base: set[str] = set()
    for token in tokens:
        wl = base_workload(token)
        if wl not in seen_base:
            seen_base.add(wl)
            out.append("")
            out.append(f"{wl} {WORKLOADS.get(wl, '')}".rstrip())
            out.append(f"  {'system':<36} {'value':>10}  {'unit':<14} {'ratio':>8}")
        rows = [r for r in results if r.workload == token]
        base = next((r for r in rows if r.system == BASE), None)
        note = ""
        if base is None:
            base = next((r for r in rows if r.system.startswith(BASE)), None)
            if base is not None:
                note = f"  (no `{BASE}` row for {token}: ratios to {base.system})"
        measure = f" ({token[len(wl):].lstrip('-_.:/')})" if token != wl else ""
        for r in rows:
            if base is not None and base.unit == r.unit and base.value:
                ratio = f"{r.value / base.value:.2f}x"
            else:
                ratio = "-"
            out.append(f"  {r.system + measure:<36} {fmt(r.value):>10}  {r.unit:<14} "
                       f"{ratio:>8}")
        floor = next((r for r in rows if r.system == FLOOR), None)
        if (floor is not None and base is not None and base.system == BASE
                and floor.unit == base.unit and floor.value):
            out.append(f"  {BASE} / {FLOOR}{measure}: {base.value / floor.value:.2f}x")
        if note:
            out.append(note)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bin-dir", default=os.path.join(ROOT, "build", "bench"))
    ap.add_argument("--skip", default="",
                    help="comma-separated: bench_bgjob,bench_uv,bench_glib,floor,W7,"
                         "process_spawn,W8-python")
    ap.add_argument("--out", help="also write the table and the RESULT lines here")
    args = ap.parse_args()
    skip = {s.strip() for s in args.skip.split(",") if s.strip()}
    started = datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")
    header = machine()
    say(f"bgjob benchmarks, {started}: {header}")
    t0 = time.monotonic()

    programs: list[tuple[str, Callable[[], None]]] = [
        ("bench_bgjob", lambda: c_program(args.bin_dir, "bench_bgjob",
                                          "benches/c/bench_bgjob.c", [repr(SCALE)])),
        ("bench_uv", lambda: c_program(args.bin_dir, "bench_uv", "benches/c/bench_uv.c",
                                       [str(N)])),
        ("bench_glib", lambda: c_program(args.bin_dir, "bench_glib",
                                         "benches/c/bench_glib.c", [str(N)])),
        ("floor", lambda: run_program(
            "floor (criterion)",
            [os.environ.get("CARGO", "cargo"), "bench", "--bench", "floor"],
            env={"BGJOB_BENCH_N": str(N)})),
        ("process_spawn", lambda: c_program(args.bin_dir, "process_spawn",
                                            "benches/process_spawn.c", [str(N_PROC)],
                                            convert=w8_convert)),
    ]
    for name, run in programs:
        if name in skip:
            warnings.append(f"{name}: skipped (--skip)")
            continue
        run()

    if not {"W7", "W8-python"} <= skip:
        try:
            import bgjob
        except ImportError as e:
            failures.append(f"Python workloads: cannot import bgjob ({e}); "
                            "build it with `make python`")
        else:
            if "W7" not in skip:
                w7(bgjob)
            if "W8-python" not in skip:
                w8_python(bgjob)

    lines = table(started, header)
    lines.append("")
    lines.append(f"total bench time {time.monotonic() - t0:.0f} s")
    for w in warnings:
        lines.append(f"WARNING: {w}")
    for failure in failures:
        lines.append(f"FAILED: {failure}")
    say("\n" + "=" * 96)
    for line in lines:
        say(line)
    if args.out:
        os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
        with open(args.out, "w") as out:
            out.write("\n".join(lines) + "\n\n")
            for r in results:
                out.write(f"RESULT {r.workload} {r.system} {r.value:.6g} {r.unit}  # {r.source}\n")
    if failures:
        say(f"\nmake bench: FAILED ({len(failures)} failure(s), see above)")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
