"""Capacity search speed on the SLAI setup, against the bare simulations of the same points in the same run.

Setup: ``examples/slai_sharegpt_slo.yaml`` (Mistral-7B / RTX 6000 Ada preset with
decode attention, 14,733 KV blocks of 16 tokens, alpha = 128, ShareGPT lengths,
5 %/95 % classes), two policies (Sarathi-Serve FCFS and SLAI), 10 loads from 10 %
to 100 % of the stability capacity, 16,384 requests per point.

* ``search``: :func:`llmstab.checkers.capacity.slo_capacity` for both policies
  (10 grid points each, no bisection: ``--refine 0``), i.e. 20 simulations with
  their batch logs, per-token latencies and SLO verdicts;
* ``baseline``: the same 20 simulations alone (``simulate`` without a batch
  log), the floor any search over these points pays.

Run: ``taskset -c 0 python benchmarks/bench_capacity.py [--requests N] [--refine K]``.
Prints both times (wall clock and this process's CPU time, which is what one core would take on an idle
machine) and their ratio (the issue's target: the search under 60 s on one core).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import sympy

from llmstab.checkers.capacity import default_loads, slo_capacity, stability_capacity
from llmstab.checkers.spec import load_engine_spec
from llmstab.fluid_models.policies import Sarathi
from llmstab.fluid_models.simulation.simulator import simulate

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "slai_sharegpt_slo.yaml"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=16384)
    parser.add_argument("--refine", type=int, default=0)
    args = parser.parse_args()
    spec = load_engine_spec(EXAMPLE)
    policies = {"sarathi": Sarathi(), "slai": spec.policy}
    loads = default_loads(stability_capacity(spec.engine, spec.workload), 10)
    slo_capacity(spec.engine, spec.policy, spec.workload, loads[:1], n_requests=64, seed=0, refine=0)  # warm-up

    start, cpu = time.perf_counter(), time.process_time()
    for policy in policies.values():
        for rps in loads:
            w = spec.workload.scaled(sympy.Rational(repr(rps)) / spec.workload.rate)
            simulate(spec.engine, policy.for_workload(w), w, n_requests=args.requests, seed=0)
    baseline, baseline_cpu = time.perf_counter() - start, time.process_time() - cpu

    start, cpu = time.perf_counter(), time.process_time()
    found = {name: slo_capacity(spec.engine, policy, spec.workload, loads, n_requests=args.requests, seed=0,
                                refine=args.refine) for name, policy in policies.items()}
    search, search_cpu = time.perf_counter() - start, time.process_time() - cpu

    for name, run in found.items():
        print(f"{name:>8}: SLO capacity {run['slo_capacity_rps']} req/s, bracket {run['bracket_rps']}")
    print(f"baseline (20 bare simulations): {baseline:.1f} s wall, {baseline_cpu:.1f} s CPU")
    print(f"search   (2 policies x {len(loads)} loads x {args.requests} requests, refine {args.refine}): "
          f"{search:.1f} s wall, {search_cpu:.1f} s CPU")
    print(f"ratio search / baseline: {search / baseline:.2f} wall, {search_cpu / baseline_cpu:.2f} CPU")


if __name__ == "__main__":
    main()
