"""Capacity search speed on the SLAI setup, against the bare simulations of the same points in the same run.

Setup (issue 12): ``examples/slai_sharegpt_slo.yaml`` (Mistral-7B / RTX 6000 Ada preset with
decode attention, 14,733 KV blocks of 16 tokens, alpha = 128, ShareGPT lengths,
5 %/95 % classes), two policies (Sarathi-Serve FCFS and SLAI), 10 loads from 10 %
to 100 % of the stability capacity, 16,384 requests per point.

* ``search``: :func:`llmstab.checkers.capacity.slo_capacities` for both policies in one
  batch (10 grid points each, no bisection: ``--refine 0``), i.e. 20 simulations
  recording every token's latency, their percentiles, SLO verdicts and growth estimates;
* ``baseline``: the same 20 simulations alone (``simulate`` recording no latency),
  the floor any search over these points pays.

Run: ``taskset -c 0 python benchmarks/bench_capacity.py [--requests N] [--loads K] [--refine K] [--workers N]``.
Prints the configuration, both times (wall clock and this process's CPU time, which is what one core would
take on an idle machine; with ``--workers`` the search's CPU time is spent in the worker processes, so
compare wall clocks) and their ratio (the issue's target: the search under 60 s on one core).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import sympy

from llmstab.checkers.capacity import default_loads, slo_capacities, stability_capacity
from llmstab.checkers.spec import load_engine_spec
from llmstab.fluid_models.policies import Sarathi
from llmstab.fluid_models.simulation.simulator import simulate

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "slai_sharegpt_slo.yaml"


def _timed(function) -> tuple[object, float, float]:
    """``function()``, its wall-clock and CPU seconds."""
    start, cpu = time.perf_counter(), time.process_time()
    out = function()
    return out, time.perf_counter() - start, time.process_time() - cpu


def _bare(spec, policies: dict, loads: list[float], n_requests: int) -> None:
    for policy in policies.values():
        for rps in loads:
            w = spec.workload.scaled(sympy.Rational(repr(rps)) / spec.workload.rate)
            simulate(spec.engine, policy.for_workload(w), w, n_requests=n_requests, seed=0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=16384)
    parser.add_argument("--loads", type=int, default=10)
    parser.add_argument("--refine", type=int, default=0)
    parser.add_argument("--workers", type=int, default=None, help="Dask worker processes for the search")
    args = parser.parse_args()
    spec = load_engine_spec(EXAMPLE)
    policies = {"sarathi": Sarathi(), "slai": spec.policy}
    loads = default_loads(stability_capacity(spec.engine, spec.workload), args.loads)
    _bare(spec, policies, loads[:1], 64)  # warm-up: load both kernels, with and without latency recording
    slo_capacities(spec.engine, policies, spec.workload, loads[:1], n_requests=64, seed=0, refine=0)
    print(f"configuration: {args.loads} loads x {len(policies)} policies x {args.requests:,} requests "
          f"({EXAMPLE.name}, refine {args.refine}, workers {args.workers or 'none: this process'})")

    _, baseline, baseline_cpu = _timed(lambda: _bare(spec, policies, loads, args.requests))
    found, search, search_cpu = _timed(lambda: slo_capacities(
        spec.engine, policies, spec.workload, loads, n_requests=args.requests, seed=0, refine=args.refine,
        workers=args.workers))

    for name, run in found.items():
        print(f"{name:>8}: SLO capacity {run['slo_capacity_rps']} req/s, bracket {run['bracket_rps']}")
    print(f"baseline ({len(policies) * len(loads)} bare simulations): {baseline:.1f} s wall, {baseline_cpu:.1f} s CPU")
    print(f"search   ({len(policies)} policies x {len(loads)} loads x {args.requests:,} requests, refine "
          f"{args.refine}): {search:.1f} s wall, {search_cpu:.1f} s CPU")
    print(f"ratio search / baseline: {search / baseline:.2f} wall, {search_cpu / baseline_cpu:.2f} CPU")


if __name__ == "__main__":
    main()
