"""Whole-process wall time of ``llmstab check`` on the bundled examples.

Prints the median over ``--runs`` runs of each example, next to the median of a
baseline process that only imports the libraries every check needs (numpy,
sympy, numba, yaml): the ratio is the cost of the check itself over the
interpreter and import floor.

    python benchmarks/bench_check.py --runs 7
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BASELINE = [sys.executable, "-c", "import numpy, sympy, numba, yaml"]


def wall_times(command: list[str], runs: int) -> list[float]:
    """Wall-clock seconds of ``runs`` runs of ``command`` (one warm-up run first, not counted)."""
    subprocess.run(command, check=True, capture_output=True, cwd=ROOT)
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run(command, check=True, capture_output=True, cwd=ROOT)
        times.append(time.perf_counter() - start)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("examples", nargs="*", default=sorted(str(p.relative_to(ROOT)) for p in (ROOT / "examples").glob("codellama34b_a100_*.yaml")))
    args = parser.parse_args()
    base = statistics.median(wall_times(BASELINE, args.runs))
    print(f"baseline (python + import numpy, sympy, numba, yaml): median {base:.3f} s over {args.runs} runs")
    print(f"{'example':48s} {'median s':>9s} {'min s':>7s} {'max s':>7s} {'/ baseline':>10s}")
    for example in args.examples:
        times = wall_times([sys.executable, "-m", "llmstab.checkers.cli.main", "check", example], args.runs)
        median = statistics.median(times)
        print(f"{example:48s} {median:9.3f} {min(times):7.3f} {max(times):7.3f} {median / base:10.2f}")


if __name__ == "__main__":
    main()
