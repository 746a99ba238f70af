"""Sweep speed-up: serial vs a local Dask cluster, measured side by side in the same run.

Two sweeps of the CodeLlama-34B / A100 example, each run serially (this
process) and on a ``LocalCluster`` of ``--workers`` processes (one thread
each), with identical records checked point for point:

1. seconds-scale points: ``--seconds-points`` simulations (loads x {sarathi, vllm}
   x seeds) of ``--horizon`` simulated seconds each, one per task;
2. millisecond-scale points: ``--fast-points`` exact Theorem-2 verdicts
   (``kind="theory"``), sent in chunks (about four tasks per worker), and, for
   contrast, one per task.

Timings exclude the cluster's start-up (printed separately) and each worker's
one-time warm-up; the serial executor is warmed up the same way first. The
load average is printed too: on a shared machine other processes take cores
from both runs, and the ratio is what to compare.

    python benchmarks/bench_sweep.py --workers 2
"""

from __future__ import annotations

import argparse
import functools
import os
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "codellama34b_a100_sarathi.yaml"


def _timed(function, *args, **kwargs) -> tuple[float, object]:
    start = time.perf_counter()
    out = function(*args, **kwargs)
    return time.perf_counter() - start, out


def _grid(n_points: int, policies: list[str], loads: list[str]):
    from llmstab.checkers.sweep import grid_points, parse_loads

    seeds = list(range(-(-n_points // (len(policies) * len(loads)))))
    return grid_points(parse_loads(",".join(loads)), policies, seeds)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--seconds-points", type=int, default=24)
    parser.add_argument("--horizon", type=float, default=10_000.0, help="simulated seconds per point")
    parser.add_argument("--fast-points", type=int, default=1200)
    args = parser.parse_args()

    from llmstab.checkers.spec import load_document
    from llmstab.checkers.sweep import SweepExecutor, _point_task, sweep, warm_up_for

    doc = load_document(EXAMPLE)
    policies = ["sarathi", "vllm"]
    warm = warm_up_for(doc, policies, [None], str(EXAMPLE.parent))
    slow = _grid(args.seconds_points, policies, ["0.6", "0.7", "0.8", "0.9", "1.0", "1.1"])
    fast = _grid(args.fast_points, ["sarathi", "orca", "vllm"], [f"{k / 100}" for k in range(5, 125, 5)])
    print(f"load average before: {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores")
    with SweepExecutor(warm_up=warm) as serial:
        t_slow_serial, slow_serial = _timed(sweep, doc, slow, serial, horizon_s=args.horizon)
        t_fast_serial, fast_serial = _timed(sweep, doc, fast, serial, kind="theory")
    t_start, cluster = _timed(SweepExecutor, workers=args.workers, warm_up=warm)
    with cluster:
        t_slow_par, slow_par = _timed(sweep, doc, slow, cluster, horizon_s=args.horizon)
        t_fast_par, fast_par = _timed(sweep, doc, fast, cluster, kind="theory")
        one_per_task = functools.partial(_point_task, doc, "theory", None, ".")
        t_fast_single, _ = _timed(cluster.map, one_per_task, fast, chunk_size=1)
    assert slow_par == slow_serial and fast_par == fast_serial, "parallel records differ from serial ones"
    print(f"cluster start-up ({args.workers} workers, warm-up included): {t_start:.2f} s")
    print(f"{'sweep':52s} {'serial s':>9s} {'parallel s':>10s} {'speed-up':>9s}")
    print(f"{f'{len(slow)} simulations of {args.horizon:g} s, one per task':52s} {t_slow_serial:9.2f} "
          f"{t_slow_par:10.2f} {t_slow_serial / t_slow_par:9.2f}")
    print(f"{f'{len(fast)} exact verdicts, chunked':52s} {t_fast_serial:9.2f} {t_fast_par:10.2f} "
          f"{t_fast_serial / t_fast_par:9.2f}")
    print(f"{f'{len(fast)} exact verdicts, one per task (contrast)':52s} {t_fast_serial:9.2f} {t_fast_single:10.2f} "
          f"{t_fast_serial / t_fast_single:9.2f}")
    print(f"records identical to the serial run: yes ({len(slow) + len(fast)} points)")
    print(f"load average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
