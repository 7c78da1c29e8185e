#!/usr/bin/env python
"""What does naming known mistakes cost? Buggy submissions (diagnosed) vs a correct one.

One buggy submission matches a mistake's variant; the other is named by a signature detector
(softmax over dim=1), where every failing case also runs the detectors.

Both graded with a warm cache (reference outputs and mistake variants computed by a warm-up),
interleaved, as fresh ``grade`` processes. Prints the medians and their ratio.

    python benchmarks/bench_diagnosis.py [--repeat N]
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
FILES = {"correct (no diagnosis)": "tests/submissions/mha/filled.ipynb",
         "buggy (diagnosed)": "tests/submissions/mha/bug_sqrt_dfeat.py",
         "buggy (by a signature)": "tests/submissions/mha/bug_softmax_dim1.py"}


def run(path: str, env: dict) -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "grader", path, "--format", "json"], cwd=REPO, env=env,
                   capture_output=True, check=False)
    return time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-diagnosis-cache-") as cache:
        env = {**os.environ, "GRADER_CACHE": cache}
        cold = {name: run(path, env) for name, path in FILES.items()}  # fills reference + variant caches
        times: dict[str, list[float]] = {name: [] for name in FILES}
        for _ in range(args.repeat):
            for name, path in FILES.items():
                times[name].append(run(path, env))
    med = {name: statistics.median(v) for name, v in times.items()}
    for name in FILES:
        print(f"{name:24s} median {med[name]:.3f} s (min {min(times[name]):.3f}); first run {cold[name]:.3f} s")
    a, b, c = (med[n] for n in FILES)
    print(f"buggy / correct = {b / a:.3f}; named by a signature / correct = {c / a:.3f}  "
          f"(warm cache, {args.repeat} interleaved runs)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
