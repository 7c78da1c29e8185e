#!/usr/bin/env python
"""``grade batch`` on a synthetic class against nbclient, otter-grader and nbgrader, in one run.

The class (``--students N``, default 128) is built from the course's 2021-style MHA template
(tests/submissions/mha/course_template_2021.ipynb): each student's notebook is that template
with the graded cells replaced by a submission from the corpus (correct in several styles,
every known mistake, forbidden calls, the unfilled template) or a hostile one (a print
flood, forged records, a daemon, a fork bomb, a memory hog, an exit at import), each copy
made distinct (comments inside its classes), so nothing can be reused from one to the next.
Everything is measured in the same run:

1. the first batch a TA meets: the first ``--first-students`` (64) graded with an empty
   reference cache (the reference's outputs and every mistake variant computed), then again
   with the cache filled; the ratio;
2. nbclient: ``--nbclient K`` notebooks of the class (an even sample, not the hostile ones:
   they would really fill this machine), one after the other, each in a kernel of its own
   (``NotebookClient(...).execute()``, as nbgrader's autograde does); then otter-grader
   (``otter run``) and nbgrader (``nbgrader autograde``) on the same sample, each in an
   environment of its own, checking the same cases (``benchmarks/peers.py``; ``--no-peers``
   skips them);
3. one ``grade NOTEBOOK`` against ``grade batch`` of 8, each a whole command;
4. ``grade batch CLASS -a mha --out DIR -j J`` for J in ``--jobs`` (default: the cores), the
   whole command, the cache filled: throughput, the ratio to nbclient and to each peer, the
   start-up (the command's start to its first stored result, the store watched every 10 ms),
   peak memory (resident sizes summed every 0.25 s; proportional set sizes every second) and
   all-in CPU (a cgroup v1 cpuacct group where one can be made, else what the batch reaped);
5. ``--cold-students`` (default 0: skipped): ``grade batch --cold`` against warm;
6. the warm per-submission cost in this process: ``--cost-students`` submissions through one
   warm slot (this process's CPU plus the forked workers' CPU as their zygote measured it),
   against fork-and-run: a process with torch imported and warmed up forks a child that runs
   one correct submission's cases (``grader.execute.worker.run_job``) and nothing else.

A slow path is never counted as a speed: when a batch's ``class.txt`` reports anything but
every slot warm (a cold fallback, a zygote replaced), the run says so and exits 1.

    python benchmarks/bench_batch.py [--students 128] [--nbclient 6] [--jobs 2] [--first-students 64]

Results: lines on stdout and ``benchmarks/out/bench_batch.json``.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import re
import resource
import shutil
import sqlite3
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

    def run(self, argv: list[str], env: dict, store: Path | None = None
            ) -> tuple[float, float | None, subprocess.CompletedProcess]:
        """(wall seconds, CPU seconds or None, the finished process). ``store``: the batch's
        grades.sqlite, watched every 10 ms; ``self.first_result`` is then the seconds from the
        command's start to its first stored result (its start-up and one submission)."""
        procs_file = str(self.cgroup / "cgroup.procs") if self.cgroup else None
        self.first_result = None

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
        watcher = threading.Thread(target=self._watch, args=(store, start, stop), daemon=True) if store else None
        if watcher:
            watcher.start()
        out, err = proc.communicate()
        wall = time.perf_counter() - start
        stop.set()
        sampler.join()
        if watcher:
            watcher.join()
        if self.cgroup:
            cpu = (self._usage() - usage0) / 1e9
        else:
            r = resource.getrusage(resource.RUSAGE_CHILDREN)
            cpu = (r.ru_utime + r.ru_stime) - (rusage0.ru_utime + rusage0.ru_stime)
        return wall, cpu, subprocess.CompletedProcess(argv, proc.returncode, out.decode(), err.decode())

    def _watch(self, store: Path, start: float, stop: threading.Event) -> None:
        while not stop.wait(0.01):
            if stored(store):
                self.first_result = time.perf_counter() - start
                return

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


def stored(store: Path) -> int:
    """How many results a batch's store holds (0 before it exists; read-only)."""
    if not store.is_file():
        return 0
    try:
        db = sqlite3.connect(f"{store.as_uri()}?mode=ro", uri=True, timeout=0.05)
        try:
            return db.execute("SELECT count(*) FROM results").fetchone()[0]
        finally:
            db.close()
    except sqlite3.Error:
        return 0


#: class.txt's workers line when every slot stayed warm: anything else (a cold fallback, a zygote
#: replaced) is a slow path the benchmark refuses to report as a speed.
ALL_WARM = re.compile(r"workers: (\d+) warm slots?, (\d+) zygotes? started \(torch imported once in each\), "
                      r"(\d+) workers forked from them(?: for (\d+) submissions)?")


def slow_path(out: Path) -> str | None:
    """What class.txt says went slower than planned in a batch (None when every slot stayed warm)."""
    text = (out / "class.txt").read_text(encoding="utf-8")
    lines = [line for line in text.splitlines() if line.startswith("workers:")]
    if len(lines) == 1 and ALL_WARM.fullmatch(lines[0]):
        slots, zygotes = ALL_WARM.fullmatch(lines[0]).groups()[:2]
        if slots == zygotes:
            return None
    return text[text.find("This run:"):].strip() or "no workers line in class.txt"


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
from grader.course.reference_outputs import expected_outputs
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


def peer_rates(sample: list[Path], tmp: Path, skip: bool) -> dict:
    """otter-grader and nbgrader on ``sample`` (``benchmarks/peers.py``, in an environment of their own):
    per tool, its seconds per notebook and scores, or why it was not measured."""
    if skip:
        return {}
    try:
        sys.path.insert(0, str(REPO / "benchmarks"))
        import peers
        versions = peers.setup(tmp / "peers")
    except Exception as e:  # noqa: BLE001 - a peer that cannot be installed here is reported, not fatal
        return {"otter": {"error": f"{type(e).__name__}: {e}"}, "nbgrader": {"error": f"{type(e).__name__}: {e}"}}
    found = {}
    for name, run in (("otter", peers.otter_run), ("nbgrader", peers.nbgrader_run)):
        try:
            rows = run(sample, tmp / f"peer-{name}")
            seconds = [t for t, _ in rows]
            found[name] = {"version": versions.get(name), "seconds": seconds, "scores": [f for _, f in rows],
                           "per_minute": 60 * len(seconds) / sum(seconds)}
        except Exception as e:  # noqa: BLE001
            found[name] = {"version": versions.get(name), "error": f"{type(e).__name__}: {e}"}
    return found


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--students", type=int, default=128)
    parser.add_argument("--nbclient", type=int, default=6, help="notebooks executed by nbclient and each peer")
    parser.add_argument("--jobs", type=int, nargs="+", default=None, help="-j values [default: the cores]")
    parser.add_argument("--first-students", type=int, default=64,
                        help="the class whose first batch (empty reference cache) is timed against a warm one")
    parser.add_argument("--cold-students", type=int, default=0, help="--cold against warm on this many (0: skip)")
    parser.add_argument("--cost-students", type=int, default=40)
    parser.add_argument("--no-peers", action="store_true", help="skip otter-grader and nbgrader")
    args = parser.parse_args()
    jobs = args.jobs or [os.cpu_count() or 1]
    OUT.mkdir(exist_ok=True)
    results: dict = {"students": args.students, "cores": os.cpu_count(), "jobs": jobs}
    slow: list[str] = []
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
            # The first batch a TA meets: the reference's outputs and every mistake variant not cached yet,
            # against the same class again with them cached.
            first = tmp / "first-class"
            first.mkdir()
            for f, _ in made[:args.first_students]:
                shutil.copy(folder / f, first)
            n_first = len(list(first.iterdir()))
            cold_cache, _, p = tree.run(batch_argv(first, tmp / "first-out", max(jobs)), env)
            warm_cache, _, _ = tree.run(batch_argv(first, tmp / "first-again", max(jobs)), env)
            results["first_batch"] = {"students": n_first, "jobs": max(jobs), "empty_cache_s": cold_cache,
                                      "filled_cache_s": warm_cache, "ratio": cold_cache / warm_cache}
            print(f"first batch of {n_first} at -j {max(jobs)}: {cold_cache:.1f} s with an empty reference cache, "
                  f"{warm_cache:.1f} s with it filled: {cold_cache / warm_cache:.2f}x", flush=True)
            # nbclient, then the peers, on an even sample of the class's non-hostile notebooks
            plain = [f for f, k in made if not k.startswith("hostile")]
            sample = [folder / plain[i * len(plain) // args.nbclient] for i in range(args.nbclient)]
            times = nbclient_run(sample)
            nb_rate = len(times) / sum(times)
            results["nbclient"] = {"notebooks": len(times), "seconds": times, "per_minute": nb_rate * 60}
            print(f"nbclient: {len(times)} notebooks, {statistics.mean(times):.2f} s each "
                  f"({nb_rate * 60:.1f} per minute)", flush=True)
            results["peers"] = peer_rates(sample, tmp, args.no_peers)
            for name, row in results["peers"].items():
                if "error" in row:
                    print(f"{name}: not measured: {row['error']}", flush=True)
                else:
                    print(f"{name} {row['version']}: {len(row['seconds'])} notebooks, "
                          f"{statistics.mean(row['seconds']):.2f} s each ({row['per_minute']:.1f} per minute)",
                          flush=True)
            # one `grade` of one notebook, and a class of 8, each a whole command
            eight = tmp / "eight"
            eight.mkdir()
            for f in plain[:8]:
                shutil.copy(folder / f, eight)
            one, _, _ = tree.run([sys.executable, "-m", "grader", str(eight / plain[0]), "-a", "mha"], env)
            batch8, _, _ = tree.run(batch_argv(eight, tmp / "out-eight", max(jobs)), env, tmp / "out-eight" / "grades.sqlite")
            results["small"] = {"grade_one_s": one, "batch_of_8_s": batch8, "batch_of_8_first_result_s": tree.first_result}
            print(f"grade ONE: {one:.2f} s; grade batch of 8 at -j {max(jobs)}: {batch8:.2f} s "
                  f"({batch8 / one:.2f}x one grade), its first result after {tree.first_result:.2f} s", flush=True)
            results["batch"] = []
            for j in jobs:
                tree.reset()
                out = tmp / f"out-j{j}"
                wall, cpu, p = tree.run(batch_argv(folder, out, j), env, out / "grades.sqlite")
                if p.returncode not in (0, 1):
                    print(p.stderr[-3000:], file=sys.stderr)
                    return 1
                why = slow_path(out)
                if why:
                    slow.append(f"-j {j}: {why}")
                rate = args.students / wall
                row = {"jobs": j, "wall_s": wall, "per_second": rate, "ratio_to_nbclient": rate / nb_rate,
                       "startup_s": tree.first_result,
                       "cpu_per_submission_s": cpu / args.students if cpu is not None else None,
                       "peak_rss_mb": tree.peak_rss / 2 ** 20, "peak_pss_mb": tree.peak_pss / 2 ** 20,
                       "exit": p.returncode, "slow_path": why}
                for name, peer in results["peers"].items():
                    if "per_minute" in peer:
                        row[f"ratio_to_{name}"] = rate * 60 / peer["per_minute"]
                results["batch"].append(row)
                peers_words = "".join(f", {row[f'ratio_to_{n}']:.0f}x {n}" for n in results["peers"]
                                      if f"ratio_to_{n}" in row)
                print(f"grade batch -j {j}: {wall:.1f} s for {args.students}, {rate:.1f} submissions/s, "
                      f"{rate / nb_rate:.0f}x nbclient{peers_words}; start-up (to the first result) "
                      f"{tree.first_result:.2f} s; CPU {row['cpu_per_submission_s'] * 1000:.0f} ms per submission "
                      f"(all-in); peak memory {row['peak_pss_mb']:.0f} MB PSS ({row['peak_rss_mb']:.0f} MB RSS "
                      f"summed)", flush=True)
            if args.cold_students:
                cold_folder = tmp / "cold-class"
                cold_folder.mkdir()
                for f, _ in made[:args.cold_students]:
                    shutil.copy(folder / f, cold_folder)
                j = max(jobs)
                warm_wall, _, _ = tree.run(batch_argv(cold_folder, tmp / "out-warm-subset", j), env)
                cold_wall, _, _ = tree.run(batch_argv(cold_folder, tmp / "out-cold-subset", j, "--cold"), env)
                results["cold"] = {"students": args.cold_students, "jobs": j, "warm_s": warm_wall,
                                   "cold_s": cold_wall, "ratio": cold_wall / warm_wall}
                print(f"{args.cold_students} submissions at -j {j}: warm {warm_wall:.1f} s, cold (--cold) "
                      f"{cold_wall:.1f} s: {cold_wall / warm_wall:.1f}x", flush=True)
        finally:
            tree.close()
        if args.cost_students:
            cost_files = [f for f, _ in made[:args.cost_students]]
            cost = warm_cost(folder, cost_files, cache)
            baseline = fork_and_run(7, cache)
            cost["fork_and_run_cpu_s"] = statistics.median(baseline)
            cost["ratio_to_fork_and_run"] = cost["cpu_per_submission_s"] / cost["fork_and_run_cpu_s"]
            results["warm_cost"] = cost
            print(f"warm cost per submission ({cost['submissions']} through one slot, {cost['forks']} workers "
                  f"forked): {cost['cpu_per_submission_s'] * 1000:.0f} ms CPU = "
                  f"{cost['grader_cpu_per_submission_s'] * 1000:.0f} ms grader + "
                  f"{cost['worker_cpu_per_submission_s'] * 1000:.0f} ms forked workers; wall "
                  f"{cost['wall_per_submission_s'] * 1000:.0f} ms; fork-and-run (one worker, every case) "
                  f"{cost['fork_and_run_cpu_s'] * 1000:.0f} ms: {cost['ratio_to_fork_and_run']:.2f}x", flush=True)
    results["slow_paths"] = slow
    (OUT / "bench_batch.json").write_text(json.dumps(results, indent=1))
    if slow:
        print("a slow path was taken (the benchmark does not count it as a speed):\n" + "\n".join(slow),
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
