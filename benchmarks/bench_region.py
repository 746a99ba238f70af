"""Solve time of the capacity-region LP against b_max: reduced batch types vs full enumeration.

For the CodeLlama-34B staircase with ``k_max = min(512, b_max)`` (as in the issue:
``b_max = 8192, k_max = 512``) it times, per ``b_max``:

* ``reduced``: enumerate the 2 endpoint types per total, reduce to the hull,
  solve the margin LP over what is left and certify it exactly (all of
  :func:`llmstab.checkers.region_check.certify_load`);
* ``full``: the same LP over every feasible ``(x, y)`` batch type (quadratic in
  ``b_max``), solved by the same cvxpy/HiGHS call, for ``b_max`` up to
  ``--full-up-to`` (it grows too slow beyond).

The ratio full/reduced is the same-run baseline. Times are medians of ``--runs``.

    python benchmarks/bench_region.py --runs 3
"""

from __future__ import annotations

import argparse
import statistics
import time
from fractions import Fraction

from llmstab.checkers.region_check import certify_load
from llmstab.fluid_models.batch_time import Staircase
from llmstab.fluid_models.region import capacity_region, enumerate_types, solve_margin_lp

MODEL = Staircase("11.28", "35.47", 128)
LOAD = (Fraction(1, 2), Fraction(1))  # tokens per ms


def reduced_seconds(b_max: int, k_max: int) -> tuple[float, int, str]:
    start = time.perf_counter()
    region = capacity_region(MODEL, b_max, k_max)
    cert = certify_load(region, LOAD)
    return time.perf_counter() - start, len(region.candidates), cert.position


def full_seconds(b_max: int, k_max: int) -> tuple[float, int]:
    start = time.perf_counter()
    table = enumerate_types(MODEL, b_max, k_max, full=True)
    solve_margin_lp(table.points, [float(v) for v in LOAD])
    return time.perf_counter() - start, len(table)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--full-up-to", type=int, default=1024)
    parser.add_argument("budgets", nargs="*", type=int, default=[128, 256, 512, 1024, 2048, 4096, 8192])
    args = parser.parse_args()
    reduced_seconds(128, 100)  # warm-up: imports, cvxpy canonicalisation caches
    print(f"{'b_max':>6} {'k_max':>6} {'types':>9} {'kept':>5} {'reduced s':>10} {'full s':>9} {'full/reduced':>13}")
    for b_max in args.budgets:
        k_max = min(512, b_max)
        runs = [reduced_seconds(b_max, k_max) for _ in range(args.runs)]
        red = statistics.median(r[0] for r in runs)
        kept = runs[0][1]
        n_types = len(enumerate_types(MODEL, b_max, k_max, full=True)) if b_max <= 2048 else None
        if b_max <= args.full_up_to:
            full = [full_seconds(b_max, k_max) for _ in range(args.runs)]
            f = statistics.median(r[0] for r in full)
            print(f"{b_max:>6} {k_max:>6} {full[0][1]:>9} {kept:>5} {red:>10.4f} {f:>9.4f} {f / red:>13.1f}")
        else:
            types = "-" if n_types is None else str(n_types)
            print(f"{b_max:>6} {k_max:>6} {types:>9} {kept:>5} {red:>10.4f} {'-':>9} {'-':>13}")


if __name__ == "__main__":
    main()
