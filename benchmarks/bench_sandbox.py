#!/usr/bin/env python
"""Does the sandbox cost anything? ``grade`` under bubblewrap vs as a plain subprocess.

One run, interleaved (bwrap, none, bwrap, none, ...) so noise hits both alike, on the
reference filled into each template, with a fresh reference cache warmed first. Prints
the median wall time of each mode, their ratio, and checks the scores are identical.

    python benchmarks/bench_sandbox.py [--repeat N]
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
NOTEBOOKS = ("tests/submissions/mha/filled.ipynb", "tests/submissions/lstm/filled.ipynb")
MODES = ("bwrap", "none")


def grade(notebook: str, mode: str, env: dict) -> tuple[float, float, str]:
    """(wall seconds, score, isolation line) of one ``grade`` run."""
    start = time.perf_counter()
    p = subprocess.run([sys.executable, "-m", "grader", notebook, "--sandbox", mode, "--format", "json"],
                       env=env, cwd=REPO, capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    if p.returncode not in (0, 1):
        sys.exit(f"grade --sandbox {mode} {notebook} failed (exit {p.returncode}):\n{p.stderr[-2000:]}")
    report = json.loads(p.stdout)
    return elapsed, report["score"], report["isolation"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-sandbox-cache-") as cache:
        env = {**os.environ, "GRADER_CACHE": cache}
        for nb in NOTEBOOKS:  # warm the reference cache and the page cache
            for mode in MODES:
                grade(nb, mode, env)
        times = {(nb, m): [] for nb in NOTEBOOKS for m in MODES}
        scores = {(nb, m): set() for nb in NOTEBOOKS for m in MODES}
        for _ in range(args.repeat):
            for nb in NOTEBOOKS:
                for mode in MODES:
                    t, score, isolation = grade(nb, mode, env)
                    if not isolation.startswith("bubblewrap" if mode == "bwrap" else "plain"):
                        sys.exit(f"--sandbox {mode} ran as: {isolation}")
                    times[nb, mode].append(t)
                    scores[nb, mode].add(score)
    print(f"grade under bubblewrap vs plain subprocess, median of {args.repeat} interleaved runs")
    for nb in NOTEBOOKS:
        b, n = (statistics.median(times[nb, m]) for m in MODES)
        same = scores[nb, "bwrap"] == scores[nb, "none"] and len(scores[nb, "bwrap"]) == 1
        print(f"  {nb}")
        print(f"    bwrap {b:.3f} s (min {min(times[nb, 'bwrap']):.3f})   none {n:.3f} s "
              f"(min {min(times[nb, 'none']):.3f})   bwrap/none = {b / n:.3f}")
        print(f"    scores: bwrap {sorted(scores[nb, 'bwrap'])}, none {sorted(scores[nb, 'none'])}"
              f" -> {'identical' if same else 'DIFFERENT'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
