#!/usr/bin/env python
"""``grade batch --scheduler`` on a loopback Dask cluster with 1, 2, ... workers, against the local pool, in one run.

The class is ``bench_batch``'s (``--students N``, default 120: course-style notebooks, correct,
buggy, forbidden, unfilled and hostile ones, each distinct). With the reference cache filled
first, in the same run:

1. the local pool: ``grade batch CLASS -a mha --out DIR -j J`` for J in ``--workers``;
2. a real ``dask scheduler`` on 127.0.0.1 and, for each W in ``--workers``, W ``dask worker``
   processes (``--nthreads 1`` each) joined to it, then ``grade batch ... --scheduler ADDRESS``
   into a fresh out folder. Workers are added, never restarted, between the runs.

Throughput = N / wall time of the ``grade batch`` command (connecting, checking the workers,
shipping the course and the files, grading, writing every output). Ratios: W workers against
1 worker (how the cluster scales), and W workers against the local pool at ``-j W`` (the
cluster's overhead on the same cores). On a machine with fewer cores than workers the
workers share them, and the scaling flattens there.

    python benchmarks/bench_dask.py [--students 120] [--workers 1 2]

Results: lines on stdout and ``benchmarks/out/bench_dask.json``.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from bench_batch import make_class  # noqa: E402

OUT = HERE / "out"


def run_batch(folder: Path, out: Path, env: dict, *extra: str) -> float:
    start = time.perf_counter()
    p = subprocess.run([sys.executable, "-m", "grader", "batch", str(folder), "-a", "mha", "--out", str(out), *extra],
                       env=env, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if p.returncode != 0:
        sys.exit(f"grade batch {' '.join(extra)} exited {p.returncode}:\n{p.stdout[-2000:]}\n{p.stderr[-3000:]}")
    return wall


def start(args: list[str], env: dict, log: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "dask", *args], env=env, stdout=open(log, "ab"),
                            stderr=subprocess.STDOUT, start_new_session=True)


def workers_connected(address: str) -> int:
    from distributed import Client

    with Client(address, set_as_default=False) as client:
        return len(client.scheduler_info(n_workers=-1)["workers"])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--students", type=int, default=120)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    args = parser.parse_args()
    OUT.mkdir(exist_ok=True)
    results: dict = {"students": args.students, "cores": os.cpu_count(), "local": [], "dask": []}
    processes: list[subprocess.Popen] = []
    with tempfile.TemporaryDirectory(prefix="bench-dask-") as tmp_name:
        tmp = Path(tmp_name)
        env = {**os.environ, "GRADER_CACHE": str(tmp / "cache"), "PYTHONPATH": str(HERE.parent)}
        folder = tmp / "class"
        make_class(folder, args.students)
        first = tmp / "first"
        first.mkdir()
        shutil.copy(sorted(folder.iterdir())[0], first)
        run_batch(first, tmp / "first-out", env, "-j", "1")  # the reference's outputs, once
        for j in args.workers:
            wall = run_batch(folder, tmp / f"local-{j}", env, "-j", str(j))
            results["local"].append({"jobs": j, "wall_s": wall, "per_second": args.students / wall})
            print(f"local pool -j {j}: {wall:.1f} s, {args.students / wall:.1f} submissions/s", flush=True)
        try:
            info = tmp / "scheduler.json"
            processes.append(start(["scheduler", "--host", "127.0.0.1", "--port", "0", "--no-dashboard",
                                    "--scheduler-file", str(info)], env, tmp / "scheduler.log"))
            while not info.is_file():
                time.sleep(0.1)
            address = json.loads(info.read_text())["address"]
            for w in args.workers:
                while len(processes) - 1 < w:
                    n = len(processes)
                    processes.append(start(["worker", address, "--host", "127.0.0.1", "--nthreads", "1",
                                            "--no-dashboard", "--local-directory", str(tmp / f"w{n}")], env,
                                           tmp / f"w{n}.log"))
                while workers_connected(address) < w:
                    time.sleep(0.2)
                wall = run_batch(folder, tmp / f"dask-{w}", env, "--scheduler", address)
                for name in ("gradebook.csv", "canvas_import.csv"):
                    if (tmp / f"dask-{w}" / name).read_text() != (tmp / f"local-{args.workers[0]}" / name).read_text():
                        sys.exit(f"the cluster's {name} differs from the local pool's")
                row = {"workers": w, "wall_s": wall, "per_second": args.students / wall}
                results["dask"].append(row)
                print(f"dask, {w} worker(s): {wall:.1f} s, {args.students / wall:.1f} submissions/s", flush=True)
        finally:
            for p in reversed(processes):
                os.killpg(p.pid, signal.SIGTERM)
                try:
                    p.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    os.killpg(p.pid, signal.SIGKILL)
    one = results["dask"][0]["per_second"]
    local = {r["jobs"]: r["per_second"] for r in results["local"]}
    for row in results["dask"]:
        row["ratio_to_1_worker"] = row["per_second"] / one
        row["ratio_to_local_same_jobs"] = row["per_second"] / local[row["workers"]]
        print(f"{row['workers']} worker(s): {row['ratio_to_1_worker']:.2f}x one worker; "
              f"{row['ratio_to_local_same_jobs']:.2f}x the local pool at -j {row['workers']}")
    (OUT / "bench_dask.json").write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
