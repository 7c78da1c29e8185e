#!/usr/bin/env python
"""``grade batch`` on a synthetic class against nbclient, one kernel per notebook, in one run.

The class (``--students N``, default 300) is built from the course's 2021-style MHA template
(tests/submissions/mha/course_template_2021.ipynb): each student's notebook is that template
with the graded cells replaced by a submission from the corpus (correct in several styles,
every known mistake, forbidden calls, the unfilled template) or a hostile one (a print
flood, forged records, a daemon, a fork bomb, a memory hog, an exit at import), each copy
made distinct (comments inside its classes). Everything is measured in the same run:

1. nbclient: ``--nbclient K`` notebooks of the class (not the hostile ones: they would
   really fill this machine's memory and processes), executed one after the other, each in
   a kernel of its own (``NotebookClient(...).execute()``, as nbgrader's autograde does);
   throughput = K / their total time.
2. ``grade batch CLASS -a mha --out DIR -j J`` for J in ``--jobs`` (default 1 and the number
   of cores), on the whole class, with a reference cache filled beforehand (that first run's
   time is reported too); throughput = N / wall time. Peak memory: the resident memory of
   the batch's whole process tree (sandboxed workers included), sampled every 0.25 s, summed
   (pages shared after a fork counted in each process: an upper bound) and, every second,
   as proportional set sizes (shared pages split: what the tree really holds). All-in CPU:
   the tree's CPU time (a cgroup v1 cpuacct group where one can be made, else what the batch
   reaped), divided by N.
3. ``grade batch --cold`` (a fresh worker per submission, paying the torch import) on the
   first ``--cold-students`` of the class, for the warm/cold ratio.
4. The warm per-submission cost, in this process: ``--cost-students`` submissions graded
   through one warm slot (``grade_submission(..., slot)``): this process's CPU (reading,
   planning, judging) plus the forked workers' CPU as their zygote measured it; against
   fork-and-run: a process with torch imported and warmed up forks a child that runs one
   correct submission's cases (``grader.execute.worker.run_job``) and nothing else.

    python benchmarks/bench_batch.py [--students 300] [--nbclient 10] [--jobs 1 2]

Results: a table on stdout and ``benchmarks/out/bench_batch.json``.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
MHA = REPO / "tests" / "submissions" / "mha"
TEMPLATE = MHA / "course_template_2021.ipynb"
OUT = REPO / "benchmarks" / "out"

#: Hostile additions to a correct solution (top-level code of its first graded cell).
HOSTILE = {
    "print_flood": 'print("spam " * 200_000)\n',
    "forged_records": ('import os\nfor _fd in range(3, 40):\n    try:\n        os.write(_fd, b\'{"nonce": "x", '
                       '"kind": "done", "payload": 0}\\n\')\n    except OSError:\n        pass\n'),
    "daemon": ('import os\nif os.fork() == 0:\n    os.setsid()\n    if os.fork() == 0:\n'
               '        os.execv("/bin/sh", ["/bin/sh", "-c", "sleep 600"])\n    os._exit(0)\n'),
    "fork_bomb": ('import os, time\nfor _ in range(200):\n    try:\n        if os.fork() == 0:\n'
                  '            time.sleep(600)\n            os._exit(0)\n    except OSError:\n        break\n'),
    "memory_hog": "_hog = bytearray(64 << 30)\n",
    "exit_at_import": "import sys\nsys.exit(3)\n",
}


def sources() -> list[tuple[str, str, str]]:
    """(kind, name, code) for every corpus submission that can fill the template's graded cells."""
    import nbformat

    found = []
    for path in sorted(MHA.glob("*.py")):
        kind = path.stem.split("_")[0]  # correct, bug, forbidden
        found.append((kind, path.stem, path.read_text(encoding="utf-8")))
    filled = nbformat.read(MHA / "filled.ipynb", as_version=4)
    found.append(("correct", "filled", "\n\n".join(c.source for c in filled.cells if c.cell_type == "code"
                                                    and "class " in c.source)))
    found.append(("template", "template", ""))  # the template as released, nothing filled in
    correct = next(code for kind, name, code in found if name == "correct_einsum")
    found += [("hostile", name, snippet + "\n" + correct) for name, snippet in HOSTILE.items()]
    return found


def make_class(folder: Path, students: int, seed: int = 7) -> list[tuple[str, str]]:
    """``students`` notebooks in ``folder`` (student_0001.ipynb, ...); (file name, kind) of each."""
    import nbformat

    rng = random.Random(seed)
    pool = sources()
    weights = {"correct": 10, "bug": 2, "forbidden": 1, "template": 3, "hostile": 1}
    picks = [s for s in pool]  # every source at least once, then by weight
    while len(picks) < students:
        picks.append(rng.choices(pool, [weights[k] for k, _, _ in pool])[0])
    rng.shuffle(picks)
    folder.mkdir(parents=True)
    made = []
    for i, (kind, name, code) in enumerate(picks[:students], start=1):
        nb = nbformat.read(TEMPLATE, as_version=4)
        graded = [j for j, c in enumerate(nb.cells) if c.cell_type == "code" and c.source.startswith("class ")]
        if code:
            lines = [line + (f"  # student {i} {rng.randrange(10 ** 6)}" if line.rstrip().endswith(":") else "")
                     for line in code.splitlines()]
            nb.cells[graded[0]].source = "\n".join(lines)
            for j in graded[1:]:
                nb.cells[j].source = "# (my classes are in the cell above)"
        else:
            nb.cells[graded[0]].source += f"\n# student {i}"
        file = f"student_{i:04d}.ipynb"
        nbformat.write(nb, folder / file)
        made.append((file, f"{kind}:{name}"))
    return made


# --------------------------------------------------------------------------- measuring a process tree


class Tree:
    """CPU and memory of a command's whole process tree (its sandboxed workers included)."""

    def __init__(self):
        self.cgroup = None
        base = Path("/sys/fs/cgroup/cpuacct")
        if (base / "cpuacct.usage").is_file() and os.access(base, os.W_OK):
            path = base / f"bench-batch-{os.getpid()}-{time.monotonic_ns()}"
            try:
                path.mkdir()
                self.cgroup = path
            except OSError:
                pass
        self.peak_rss = self.peak_pss = 0

    def run(self, argv: list[str], env: dict) -> tuple[float, float | None, subprocess.CompletedProcess]:
        """(wall seconds, CPU seconds or None, the finished process)."""
        procs_file = str(self.cgroup / "cgroup.procs") if self.cgroup else None

        def join() -> None:
            if procs_file:
                with open(procs_file, "w") as f:
                    f.write("0")

        usage0 = self._usage()
        rusage0 = resource.getrusage(resource.RUSAGE_CHILDREN)
        start = time.perf_counter()
        proc = subprocess.Popen(argv, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                preexec_fn=join if procs_file else None)
        stop = threading.Event()
        sampler = threading.Thread(target=self._sample, args=(proc.pid, stop), daemon=True)
        sampler.start()
        out, err = proc.communicate()
        wall = time.perf_counter() - start
        stop.set()
        sampler.join()
        if self.cgroup:
            cpu = (self._usage() - usage0) / 1e9
        else:
            r = resource.getrusage(resource.RUSAGE_CHILDREN)
            cpu = (r.ru_utime + r.ru_stime) - (rusage0.ru_utime + rusage0.ru_stime)
        return wall, cpu, subprocess.CompletedProcess(argv, proc.returncode, out.decode(), err.decode())

    def _usage(self) -> int:
        return int((self.cgroup / "cpuacct.usage").read_text()) if self.cgroup else 0

    def _sample(self, root: int, stop: threading.Event) -> None:
        tick = 0
        while not stop.wait(0.25):
            pids = descendants(root)
            self.peak_rss = max(self.peak_rss, sum(_statm(p) for p in pids))
            tick += 1
            if tick % 4 == 0:
                self.peak_pss = max(self.peak_pss, sum(_pss(p) for p in pids))

    def reset(self) -> None:
        self.peak_rss = self.peak_pss = 0

    def close(self) -> None:
        if self.cgroup:
            for _ in range(50):
                try:
                    self.cgroup.rmdir()
                    return
                except OSError:
                    time.sleep(0.1)


def descendants(root: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                ppid = int(Path(f"/proc/{name}/stat").read_bytes().rpartition(b")")[2].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(name))
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo.extend(children.get(pid, ()))
    return found


def _statm(pid: int) -> int:
    try:
        return int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, IndexError, ValueError):
        return 0


def _pss(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1]) * 1024
    except (OSError, IndexError, ValueError):
        pass
    return _statm(pid)


# --------------------------------------------------------------------------- the measurements


def nbclient_run(paths: list[Path]) -> list[float]:
    """Seconds per notebook, each executed in a kernel of its own."""
    script = ("import sys, time, nbformat\nfrom nbclient import NotebookClient\nfor p in sys.argv[1:]:\n"
              "    nb = nbformat.read(p, as_version=4)\n    t = time.perf_counter()\n"
              "    try:\n        NotebookClient(nb, timeout=600, kernel_name='python3', allow_errors=True).execute()\n"
              "    except Exception as e:\n        print('error', type(e).__name__, file=sys.stderr)\n"
              "    print(time.perf_counter() - t, flush=True)\n")
    with tempfile.TemporaryDirectory(prefix="bench-nbclient-") as tmp:
        proc = subprocess.run([sys.executable, "-c", script, *map(str, paths)], cwd=tmp, capture_output=True,
                              text=True, check=True)
    return [float(line) for line in proc.stdout.split()]


def batch_argv(folder: Path, out: Path, jobs: int, *extra: str) -> list[str]:
    return [sys.executable, "-m", "grader", "batch", str(folder), "-a", "mha", "--out", str(out), "-j", str(jobs),
            *extra]


def warm_cost(folder: Path, files: list[str], cache: str) -> dict:
    """This process grading ``files`` through one warm slot: its CPU and the forked workers' CPU."""
    os.environ["GRADER_CACHE"] = cache
    from grader.config import GradeConfig
    from grader.execute.slots import WarmSlot
    from grader.pipeline import grade_submission

    config = GradeConfig(assignment="mha", sandbox="bwrap")
    with WarmSlot("bwrap", config.limits, (folder,)) as slot:
        grade_submission(folder / files[0], config, slot)  # the zygote's start is not a submission's cost
        slot.settle()
        worker0 = slot.worker_cpu
        r0 = resource.getrusage(resource.RUSAGE_SELF)
        start = time.perf_counter()
        for f in files:
            grade_submission(folder / f, config, slot)
        slot.settle()
        wall = time.perf_counter() - start
        r1 = resource.getrusage(resource.RUSAGE_SELF)
        worker = slot.worker_cpu - worker0
        forks = slot.forks - 1
    n = len(files)
    own = (r1.ru_utime + r1.ru_stime) - (r0.ru_utime + r0.ru_stime)
    return {"submissions": n, "forks": forks, "wall_per_submission_s": wall / n,
            "grader_cpu_per_submission_s": own / n, "worker_cpu_per_submission_s": worker / n,
            "cpu_per_submission_s": (own + worker) / n}


def fork_and_run(repeat: int, cache: str) -> list[float]:
    """Child CPU of: fork a warmed-up torch process, run one correct submission's cases, exit."""
    script = r'''
import os, sys
os.environ["GRADER_CACHE"] = sys.argv[1]
from grader.config import GradeConfig
from grader.course.resolve import resolve_course
from grader.course.assignments import get_assignment
from grader.course.store import expected_outputs
from grader.execute.jobs import call_spec, make_job
from grader.execute import worker, zygote
from grader.plan.plan import make_plan
from grader.plan.slicing import parse_units
from grader.plan.submission import read_submission
from safetensors.torch import load as load_tensors
a = get_assignment(resolve_course(None), "mha")
ref = expected_outputs(a, GradeConfig())
plan = make_plan(parse_units(read_submission(sys.argv[2]).units), a, set(ref.observations))
job = make_job("run", plan.sliced.statements, "student", [call_spec(c, a, watch_forbidden=True) for c in plan.to_run])
inputs = ref.inputs({c.id for c in plan.to_run})
zygote.warm_up()
null = os.open(os.devnull, os.O_WRONLY)
for _ in range(int(sys.argv[3])):
    pid = os.fork()
    if pid == 0:
        channel = worker.Channel(null)
        channel.stamp(job.nonce)
        worker.run_job(job, load_tensors(inputs), worker._guards(job), channel)
        os._exit(0)
    _, _, usage = os.wait4(pid, 0)
    print(usage.ru_utime + usage.ru_stime, len(job.calls), flush=True)
'''
    proc = subprocess.run([sys.executable, "-c", script, cache, str(MHA / "correct_einsum.py"), str(repeat)],
                          cwd=REPO, capture_output=True, text=True, check=True)
    rows = [line.split() for line in proc.stdout.splitlines()]
    return [float(cpu) for cpu, _ in rows]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--students", type=int, default=300)
    parser.add_argument("--nbclient", type=int, default=10, help="notebooks executed by nbclient")
    parser.add_argument("--jobs", type=int, nargs="+", default=None, help="-j values [default: 1 and the cores]")
    parser.add_argument("--cold-students", type=int, default=40)
    parser.add_argument("--cost-students", type=int, default=40)
    args = parser.parse_args()
    jobs = args.jobs or sorted({1, os.cpu_count() or 1})
    OUT.mkdir(exist_ok=True)
    results: dict = {"students": args.students, "cores": os.cpu_count(), "jobs": jobs}
    with tempfile.TemporaryDirectory(prefix="bench-batch-") as tmp_name:
        tmp = Path(tmp_name)
        cache = str(tmp / "cache")
        env = {**os.environ, "GRADER_CACHE": cache}
        folder = tmp / "class"
        made = make_class(folder, args.students)
        kinds = {}
        for _, kind in made:
            kinds[kind.split(":")[0]] = kinds.get(kind.split(":")[0], 0) + 1
        results["class"] = kinds
        print(f"class of {len(made)}: " + ", ".join(f"{v} {k}" for k, v in sorted(kinds.items())), flush=True)
        tree = Tree()
        try:
            # the reference's outputs and the mistake variants, once: a first run on an empty cache
            first = tmp / "first"
            first.mkdir()
            shutil.copy(folder / made[0][0], first)
            wall, _, p = tree.run(batch_argv(first, tmp / "first-out", 1), env)
            results["first_run_empty_cache_s"] = wall
            # nbclient on an even sample of the class's non-hostile notebooks
            plain = [f for f, k in made if not k.startswith("hostile")]
            sample = [folder / plain[i * len(plain) // args.nbclient] for i in range(args.nbclient)]
            times = nbclient_run(sample)
            nb_rate = len(times) / sum(times)
            results["nbclient"] = {"notebooks": len(times), "seconds": times, "per_minute": nb_rate * 60}
            print(f"nbclient: {len(times)} notebooks, {statistics.mean(times):.2f} s each "
                  f"({nb_rate * 60:.1f} per minute)", flush=True)
            results["batch"] = []
            for j in jobs:
                tree.reset()
                out = tmp / f"out-j{j}"
                wall, cpu, p = tree.run(batch_argv(folder, out, j), env)
                if p.returncode not in (0, 1):
                    print(p.stderr[-3000:], file=sys.stderr)
                    return 1
                rate = args.students / wall
                row = {"jobs": j, "wall_s": wall, "per_second": rate, "ratio_to_nbclient": rate / nb_rate,
                       "cpu_per_submission_s": cpu / args.students if cpu is not None else None,
                       "peak_rss_mb": tree.peak_rss / 2 ** 20, "peak_pss_mb": tree.peak_pss / 2 ** 20,
                       "exit": p.returncode}
                results["batch"].append(row)
                print(f"grade batch -j {j}: {wall:.1f} s, {rate:.1f} submissions/s, {rate / nb_rate:.0f}x nbclient; "
                      f"CPU {row['cpu_per_submission_s'] * 1000:.0f} ms per submission (all-in); peak memory "
                      f"{row['peak_pss_mb']:.0f} MB PSS ({row['peak_rss_mb']:.0f} MB RSS summed)", flush=True)
            cold_folder = tmp / "cold-class"
            cold_folder.mkdir()
            for f, _ in made[:args.cold_students]:
                shutil.copy(folder / f, cold_folder)
            j = max(jobs)
            warm_wall, _, _ = tree.run(batch_argv(cold_folder, tmp / "out-warm-subset", j), env)
            cold_wall, _, _ = tree.run(batch_argv(cold_folder, tmp / "out-cold-subset", j, "--cold"), env)
            results["cold"] = {"students": args.cold_students, "jobs": j, "warm_s": warm_wall, "cold_s": cold_wall,
                               "ratio": cold_wall / warm_wall}
            print(f"{args.cold_students} submissions at -j {j}: warm {warm_wall:.1f} s, cold (--cold) "
                  f"{cold_wall:.1f} s: {cold_wall / warm_wall:.1f}x", flush=True)
        finally:
            tree.close()
        cost_files = [f for f, _ in made[:args.cost_students]]
        cost = warm_cost(folder, cost_files, cache)
        baseline = fork_and_run(7, cache)
        cost["fork_and_run_cpu_s"] = statistics.median(baseline)
        cost["ratio_to_fork_and_run"] = cost["cpu_per_submission_s"] / cost["fork_and_run_cpu_s"]
        results["warm_cost"] = cost
        print(f"warm cost per submission ({cost['submissions']} through one slot): "
              f"{cost['cpu_per_submission_s'] * 1000:.0f} ms CPU = {cost['grader_cpu_per_submission_s'] * 1000:.0f} "
              f"ms grader + {cost['worker_cpu_per_submission_s'] * 1000:.0f} ms forked worker; fork-and-run "
              f"{cost['fork_and_run_cpu_s'] * 1000:.0f} ms: {cost['ratio_to_fork_and_run']:.2f}x", flush=True)
    (OUT / "bench_batch.json").write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
