"""``llmstab sweep FILE``: evaluate a grid of loads x policies x presets x seeds, in parallel.

Each point scales the file's traffic mix to a fraction of the engine's exact
capacity (``--loads``), swaps in a policy (``--policies``) and a batch-time
preset (``--presets``), and records the exact Theorem-2 load verdict and, with
``--kind simulate`` (the default), a seeded simulation: backlog growth with its
interval, throughput, latency percentiles. Points run on a local Dask cluster
(``--workers``, default one per core), on a running scheduler
(``--scheduler tcp://HOST:PORT``), or in this process (``--serial``); the
records are the same whichever. ``--out`` writes them as CSV, ``--json``
prints them, ``--plot`` draws growth and throughput against the load.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from collections import defaultdict
from pathlib import Path

from ..errors import InputError
from ..spec import load_document
from ..sweep import (POINT_KINDS, RECORD_FIELDS, SweepExecutor, default_workers, grid_points, parse_loads, parse_names,
                     parse_seeds, sweep, validate_grid, warm_up_for)
from .arguments import parse_positive, save_plot

__all__ = ["register", "write_csv", "write_plot", "summary_lines"]


def write_csv(records: list[dict], path: str) -> None:
    """The records as CSV, one row per point, columns :data:`~llmstab.checkers.sweep.RECORD_FIELDS`."""
    try:
        with open(path, "w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=RECORD_FIELDS)
            writer.writeheader()
            writer.writerows({k: ("" if v is None else v) for k, v in r.items()} for r in records)
    except OSError as err:
        raise InputError("--out", f"cannot write {path}: {err.strerror}") from None


def _groups(records: list[dict]) -> dict:
    groups: dict = defaultdict(lambda: defaultdict(list))
    for r in records:
        groups[(r["preset"], r["policy"])][r["load"]].append(r)
    return groups


def summary_lines(records: list[dict]) -> list[str]:
    """Per (preset, policy, load): the exact verdict, and the share of seeds whose backlog diverged.

    >>> summary_lines([{"preset": None, "policy": "vllm", "load": 0.9, "verdict": "inconclusive",
    ...                 "growth": "diverging", "throughput_tokens_per_s": 100.0}])[1]
    '  vllm  load 0.9: inconclusive (exact); diverging in 1/1 seeds, mean throughput 100 tokens/s'
    """
    lines = [f"llmstab sweep: {len(records)} points"]
    for (preset, policy), by_load in _groups(records).items():
        name = policy if preset is None else f"{policy} on {preset}"
        for load, rs in sorted(by_load.items()):
            line = f"  {name}  load {load:.4g}: {'/'.join(sorted({r['verdict'] for r in rs}))} (exact)"
            if rs[0]["growth"] is not None:
                div = sum(r["growth"] == "diverging" for r in rs)
                thr = sum(r["throughput_tokens_per_s"] for r in rs) / len(rs)
                line += f"; diverging in {div}/{len(rs)} seeds, mean throughput {thr:.4g} tokens/s"
            lines.append(line)
    return lines


def write_plot(records: list[dict], path: str) -> None:
    """Share of seeds diverging (or the exact verdict, for theory points) and throughput against the load."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (top, bottom) = plt.subplots(2, 1, figsize=(7, 6), sharex=True)
    for (preset, policy), by_load in _groups(records).items():
        loads = sorted(by_load)
        label = policy if preset is None else f"{policy} / {preset}"
        simulated = by_load[loads[0]][0]["growth"] is not None
        share = [sum((r["growth"] == "diverging") if simulated else (r["verdict"] == "unstable") for r in by_load[x])
                 / len(by_load[x]) for x in loads]
        top.plot(loads, share, marker="o", label=label)
        if simulated:
            bottom.plot(loads, [sum(r["throughput_tokens_per_s"] for r in by_load[x]) / len(by_load[x])
                                for x in loads], marker="o", label=label)
    top.set_ylabel("share diverging" if simulated else "exact verdict unstable")
    bottom.set_ylabel("throughput (tokens/s)")
    bottom.set_xlabel("load (fraction of capacity)")
    top.legend(fontsize=8)
    fig.tight_layout()
    save_plot(fig, path)


def _executor(args: argparse.Namespace, n_tasks: int, warm_up) -> SweepExecutor:
    if args.serial:
        return SweepExecutor(warm_up=warm_up)
    if args.scheduler is not None:
        return SweepExecutor(scheduler=args.scheduler, warm_up=warm_up, connect_timeout=args.connect_timeout)
    workers = default_workers(n_tasks) if args.workers is None else parse_positive(args.workers, "--workers", int)
    return SweepExecutor(workers=workers, warm_up=warm_up)


def run(args: argparse.Namespace) -> int:
    path = Path(args.file)
    document = load_document(path)
    if not isinstance(document, dict):
        raise InputError(str(path), "must be a mapping with engine, policy and workload")
    policies = parse_names(args.policies, "--policies") if args.policies is not None else [None]
    presets = parse_names(args.presets, "--presets") if args.presets is not None else [None]
    points = grid_points(parse_loads(args.loads), policies, parse_seeds(args.seeds), presets)
    horizon = parse_positive(args.horizon, "--horizon")
    base_dir = str(path.parent.resolve())
    validate_grid(document, policies, presets, base_dir)
    warm = warm_up_for(document, policies, presets, base_dir) if args.kind == "simulate" else None
    with _executor(args, len(points), warm) as executor:
        records = sweep(document, points, executor, kind=args.kind, horizon_s=horizon, base_dir=base_dir,
                        progress=not args.no_progress and sys.stderr.isatty())
    if args.out:
        write_csv(records, args.out)
    if args.plot:
        write_plot(records, args.plot)
    print(json.dumps({"points": records}, indent=1) if args.json else "\n".join(summary_lines(records)))
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("sweep", help="evaluate loads x policies x presets x seeds on Dask",
                                   description=__doc__)
    parser.add_argument("file", help="single-engine input file (YAML or JSON)")
    parser.add_argument("--loads", required=True, help="fractions of capacity: START:STOP:STEP or a,b,c")
    parser.add_argument("--policies", help="comma-separated policy names (default: the file's policy)")
    parser.add_argument("--seeds", default="0", help="seeds: A-B or a,b,c (default 0)")
    parser.add_argument("--presets", help="comma-separated batch-time presets replacing the file's batch_time")
    parser.add_argument("--kind", choices=POINT_KINDS, default="simulate",
                        help="simulate (exact verdict and a simulation, default) or theory (exact verdict only)")
    parser.add_argument("--horizon", metavar="SECONDS", help="simulated seconds per point "
                        "(default max(2500 t(b_max), 2000/lambda))")
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--workers", metavar="N", help="local Dask worker processes (default: one per core)")
    where.add_argument("--scheduler", metavar="ADDRESS", help="a running Dask scheduler, e.g. tcp://10.0.0.5:8786")
    where.add_argument("--serial", action="store_true", help="run every point in this process")
    parser.add_argument("--connect-timeout", type=float, default=5.0, metavar="SECONDS",
                        help="how long to wait for --scheduler (default 5)")
    parser.add_argument("--out", metavar="CSV", help="write one row per point")
    parser.add_argument("--plot", metavar="PATH", help="draw divergence and throughput against the load")
    parser.add_argument("--json", action="store_true", help="print the records as one JSON object")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.set_defaults(run=run)
