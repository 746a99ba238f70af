"""Sweep speed-up: serial vs a local Dask cluster, measured side by side in the same run.

Two sweeps of the CodeLlama-34B / A100 example, each run serially (this
process) and on a ``LocalCluster`` of ``--workers`` processes (one thread
each), with identical records checked point for point:

1. seconds-scale points: ``--seconds-points`` simulations (loads x {sarathi, vllm}
   x seeds) of ``--horizon`` simulated seconds each, one per task, in
   ``--rounds`` rounds that alternate serial and parallel (so both see the same
   background load), with the CPU seconds each point took where it ran;
2. millisecond-scale points: ``--fast-points`` exact Theorem-2 verdicts
   (``kind="theory"``), sent in chunks (about four tasks per worker), and, for
   contrast, one per task.

Timings exclude the cluster's start-up (printed separately) and each worker's
one-time warm-up; the serial executor is warmed up the same way first. The
load average is printed too: on a shared machine other processes take cores
from both runs, so compare the ratios, and the task CPU seconds (the same
work on both sides means the speed-up is the cores' to give).

    python benchmarks/bench_sweep.py --workers 2
"""

from __future__ import annotations

import argparse
import functools
import os
import statistics
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "codellama34b_a100_sarathi.yaml"


def _timed(function, *args, **kwargs) -> tuple[float, object]:
    start = time.perf_counter()
    out = function(*args, **kwargs)
    return time.perf_counter() - start, out


def _with_cpu(task, point):
    """``task(point)`` and the CPU seconds it took in the process that ran it."""
    start = time.process_time()
    record = task(point)
    return record, time.process_time() - start


def _grid(n_points: int, policies: list[str], loads: list[str], first_seed: int = 0):
    from llmstab.checkers.sweep import grid_points, parse_loads

    per_seed = len(policies) * len(loads)
    return grid_points(parse_loads(",".join(loads)), policies, list(range(first_seed, first_seed - (-n_points // per_seed))))


def _simulations(doc, serial, cluster, args) -> None:
    """Serial and parallel rounds interleaved, so both see the same background load."""
    from llmstab.checkers.sweep import _point_task

    task = functools.partial(_with_cpu, functools.partial(_point_task, doc, "simulate", args.horizon, "."))
    rounds = []
    for r in range(args.rounds):
        points = _grid(args.seconds_points // args.rounds, ["sarathi", "vllm"], ["0.6", "0.8", "1.0", "1.1"], 10 * r)
        t_serial, serial_out = _timed(serial.map, task, points)
        t_par, par_out = _timed(cluster.map, task, points)
        assert [x for x, _ in par_out] == [x for x, _ in serial_out], "parallel records differ from serial ones"
        rounds.append((len(points), t_serial, t_par, sum(c for _, c in serial_out), sum(c for _, c in par_out)))
        print(f"  round {r + 1}: {len(points)} simulations of {args.horizon:g} s: serial {t_serial:7.2f} s, "
              f"parallel {t_par:7.2f} s, speed-up {t_serial / t_par:5.2f}; task CPU serial {rounds[-1][3]:6.2f} s, "
              f"parallel {rounds[-1][4]:6.2f} s; load average {os.getloadavg()[0]:.1f}")
    n, ts, tp, cs, cp = (sum(x) for x in zip(*rounds))
    print(f"{n} simulations, one per task: serial {ts:.2f} s, parallel {tp:.2f} s, speed-up {ts / tp:.2f} "
          f"(median round {statistics.median(r[1] / r[2] for r in rounds):.2f}); task CPU {cs:.2f} s serial vs "
          f"{cp:.2f} s on the workers (ratio {cp / cs:.2f}: the per-point work is the same)")


def _verdicts(doc, serial, cluster, args) -> None:
    from llmstab.checkers.sweep import _point_task, sweep

    fast = _grid(args.fast_points, ["sarathi", "orca", "vllm"], [f"{k / 100}" for k in range(5, 125, 5)])
    sweep(doc, fast[:3], serial, kind="theory")  # the per-process caches, on both sides
    sweep(doc, fast[:3] * cluster.n_workers * 4, cluster, kind="theory")
    t_serial, expected = _timed(sweep, doc, fast, serial, kind="theory")
    t_par, got = _timed(sweep, doc, fast, cluster, kind="theory")
    one_per_task = functools.partial(_point_task, doc, "theory", None, ".")
    t_single, _ = _timed(cluster.map, one_per_task, fast, chunk_size=1)
    assert got == expected, "parallel records differ from serial ones"
    print(f"{len(fast)} exact verdicts: serial {t_serial:.2f} s; parallel, chunked {t_par:.2f} s "
          f"(speed-up {t_serial / t_par:.2f}); one per task {t_single:.2f} s (speed-up {t_serial / t_single:.2f})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--seconds-points", type=int, default=24)
    parser.add_argument("--rounds", type=int, default=3, help="interleaved serial/parallel rounds")
    parser.add_argument("--horizon", type=float, default=10_000.0, help="simulated seconds per point")
    parser.add_argument("--fast-points", type=int, default=1200)
    args = parser.parse_args()

    from llmstab.checkers.spec import load_document
    from llmstab.checkers.sweep import SweepExecutor, warm_up_for

    doc = load_document(EXAMPLE)
    warm = warm_up_for(doc, ["sarathi", "vllm", "orca"], [None], ".")
    print(f"load average before: {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores")
    with SweepExecutor(warm_up=warm) as serial:
        t_start, cluster = _timed(SweepExecutor, workers=args.workers, warm_up=warm)
        print(f"cluster start-up ({args.workers} workers, warm-up included): {t_start:.2f} s")
        with cluster:
            _simulations(doc, serial, cluster, args)
            _verdicts(doc, serial, cluster, args)
    print(f"load average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
