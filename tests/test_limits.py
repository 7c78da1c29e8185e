"""One submission's memory, disk and time on the host stay within its limits, measured from outside.

While ``grade`` runs a hostile submission, a sampler in this test process measures what the
submission holds on the host: the memory of all its processes together (proportional set
size, so pages shared after a fork count once), and the bytes of every file it can write
there. The peaks must stay within the limits, plus what the grader's watchdog can let
through between two of its measurements (``WATCH_SLACK``), and the run must end in time.
"""
from __future__ import annotations

import json
import os
import threading
import time
import uuid
from pathlib import Path

import pytest

from conftest import ROOT, require_bwrap, run_grade
from test_hostile import tagged_processes

HOSTILE = ROOT / "tests" / "hostile"
COURSE = ROOT / "tests" / "fixtures" / "course"
MEMORY_MB, DISK_MB = 1500, 128
#: What may get past a watchdog that measures every 0.2 s (allocation and writing are fast), and past
#: the kernel's own limit (a cgroup's, where one is writable: the report says so).
WATCH_SLACK_MB, KERNEL_SLACK_MB, DISK_SLACK_MB = 1000, 64, 256
MODES = ["bwrap", "none"]


class Sampler:
    """Polls a measurement in a thread and keeps its peak."""

    def __init__(self, measure):
        self.measure, self.peak, self._stop = measure, 0, threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()

    def _run(self):
        while not self._stop.is_set():
            self.peak = max(self.peak, self.measure())
            time.sleep(0.02)


#: What a submission allocates, as /proc/PID/smaps_rollup splits its proportional set size: anonymous and
#: shared memory, and what of it is swapped out. Not ``Pss_File``: torch's libraries mapped from files are
#: page cache that the kernel charges once, to whichever cgroup read them first, and may drop at any
#: time; their proportional share moved the measure by over 100 MB from run to run on one machine.
_ALLOCATED = ("Pss_Anon:", "Pss_Shmem:", "SwapPss:")


def _memory(tag: str) -> int:
    total = 0
    for pid in tagged_processes(tag):
        try:
            with open(f"/proc/{pid}/smaps_rollup") as f:
                fields = {line.split()[0]: int(line.split()[1]) << 10 for line in f if line[:1].isupper()}
        except (OSError, ValueError, IndexError):
            continue
        if "Pss_Anon:" in fields:
            total += sum(fields.get(k, 0) for k in _ALLOCATED)
        else:  # kernels before 5.8 do not split it: the whole, libraries included
            total += fields.get("Pss:", 0) + fields.get("SwapPss:", 0)
    return total


def _disk(tag: str, scratch: Path) -> int:
    """Bytes in every place the worker can write on the host (its folder, /tmp, /var/tmp, /dev/shm)."""
    total = 0
    roots = [scratch] + [Path(d) / f for d in ("/tmp", "/var/tmp", "/dev/shm") if os.path.isdir(d)
                         for f in os.listdir(d) if f.startswith((f"grader-{tag}", "fill-"))]
    for root in roots:
        for folder, _, files in os.walk(root):
            for name in files:
                try:
                    st = os.lstat(os.path.join(folder, name))
                except OSError:
                    continue
                total += max(st.st_size, st.st_blocks * 512)  # blocks may be allocated only at writeback
    return total


def _grade(name: str, mode: str, tmp_path: Path, tag: str, *limits: str):
    if mode == "bwrap":
        require_bwrap()
    scratch = tmp_path / "scratch"
    scratch.mkdir(exist_ok=True)
    start = time.perf_counter()
    p = run_grade(str(HOSTILE / name), "--root", str(COURSE), "--assignment", "toy", "--sandbox", mode,
                  "--format", "json", "--case-timeout", "10", "--timeout", "60", *limits,
                  env={"GRADER_RUN_TAG": tag, "TMPDIR": str(scratch)}, timeout=120)
    assert p.returncode in (0, 1), p.stderr[-2000:]
    return json.loads(p.stdout), time.perf_counter() - start, scratch


@pytest.mark.parametrize("mode", MODES)
def test_memory_of_all_processes_together(tmp_path, mode):
    tag = f"limits{uuid.uuid4().hex[:12]}"
    with Sampler(lambda: _memory(tag)) as sampler:
        report, elapsed, _ = _grade("fork_memory.py", mode, tmp_path, tag, "--memory-mb", str(MEMORY_MB))
    case = next(c for c in report["cases"] if c["case_id"] == "match-big")
    assert case["status"] == "error" and "of memory in total" in case["reason"]
    slack = KERNEL_SLACK_MB if "limits their total memory" in report["isolation"] else WATCH_SLACK_MB
    assert sampler.peak <= (MEMORY_MB + slack) << 20, f"peak {sampler.peak >> 20} MB ({report['isolation']})"
    assert elapsed < 30 and tagged_processes(tag) == []


@pytest.mark.parametrize("mode", MODES)
def test_disk_of_all_files_together(tmp_path, mode):
    tag = f"limits{uuid.uuid4().hex[:12]}"
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    with Sampler(lambda: _disk(tag, scratch)) as sampler:
        report, elapsed, _ = _grade("fill_disk.py", mode, tmp_path, tag, "--disk-mb", str(DISK_MB))
    # Under bubblewrap nothing reaches the host's disk (a sized tmpfs fills up, and writing fails);
    # without it the watchdog stops the code.
    case = next(c for c in report["cases"] if c["case_id"] == "match-big")
    assert (case["status"], "MB of files" in case["reason"]) == (("error", True) if mode == "none" else ("passed", False))
    assert sampler.peak <= ((DISK_MB + DISK_SLACK_MB) << 20 if mode == "none" else 1 << 20), \
        f"peak {sampler.peak >> 20} MB"
    assert _disk(tag, scratch) == 0 and elapsed < 30


@pytest.mark.parametrize("mode", MODES)
def test_time_of_a_submission_that_never_ends(tmp_path, mode):
    tag = f"limits{uuid.uuid4().hex[:12]}"
    report, elapsed, _ = _grade("ignore_sigterm.py", mode, tmp_path, tag, "--case-timeout", "2", "--timeout", "8")
    assert {c["status"] for c in report["cases"]} >= {"error"}
    assert elapsed < 8 + 10  # the submission's limit, plus starting the grader and its workers
