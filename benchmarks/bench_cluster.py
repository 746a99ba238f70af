"""Cluster simulator speed: aggregate batch iterations per second for 16 replicas, against one engine in the same run.

Workload: Sarathi-Serve on the CodeLlama-34B / A100 staircase (b_max = 512),
ShareGPT prompt/output lengths (the shipped trace, drawn as pairs), Poisson
arrivals at 90% of the capacity (of one engine for the baseline, of the
pooled 16 replicas for the cluster), the same number of requests per replica.

* ``single``: :func:`llmstab.fluid_models.simulation.simulator.simulate` on one
  engine (``--requests`` requests, drained).
* ``cluster``: :func:`llmstab.fluid_models.simulation.cluster.simulate_cluster`
  on 16 replicas behind a JSQ router (``16 x --requests`` requests, drained):
  the batches of all replicas, per second of wall time.
* ``cluster-1``: the cluster simulator with a single replica (its own
  overhead, without the router scan over replicas).

Each is timed end to end (sampling included) after a warm-up call that loads
the compiled code. The target (issue 13) is ``cluster / single >= 0.5``.

Run: ``python benchmarks/bench_cluster.py`` (``taskset -c 0`` to pin one core).
"""

from __future__ import annotations

import argparse
import time
import warnings

import sympy

from llmstab.checkers.single_engine import capacity_of
from llmstab.fluid_models.batch_time import Staircase
from llmstab.fluid_models.cluster import Cluster, Pool
from llmstab.fluid_models.engine import Engine
from llmstab.fluid_models.policies import Sarathi
from llmstab.fluid_models.simulation.cluster import simulate_cluster
from llmstab.fluid_models.simulation.simulator import simulate
from llmstab.fluid_models.traces import trace_distribution
from llmstab.fluid_models.workload import RequestClass, Workload


def _workload(engine: Engine, replicas: int, load: float) -> Workload:
    prompt, decode = trace_distribution("sharegpt", "prompt"), trace_distribution("sharegpt", "decode")
    per_request = prompt.mean + decode.mean
    rate = sympy.Rational(str(load)) * replicas * capacity_of(engine).tokens_per_s / per_request
    return Workload((RequestClass("sharegpt", rate, prompt, decode),))


def _timed(run) -> tuple[float, int]:
    run()  # warm-up: compile or load from the cache
    start = time.perf_counter()
    batches = run()
    return time.perf_counter() - start, batches


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=5_000, help="requests per replica (default 5000)")
    parser.add_argument("--replicas", type=int, default=16)
    parser.add_argument("--load", type=float, default=0.9, help="fraction of capacity (default 0.9)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    warnings.simplefilter("ignore")  # numba's first-class-function notice
    engine, policy = Engine(Staircase("11.28", "35.47", 128), 512), Sarathi()
    one, many = _workload(engine, 1, args.load), _workload(engine, args.replicas, args.load)
    rows = [
        ("single", *_timed(lambda: simulate(engine, policy, one, n_requests=args.requests, seed=args.seed).n_batches)),
        ("cluster-1", *_timed(lambda: simulate_cluster(Cluster((Pool(engine, policy, 1),), ("jsq",)), one,
                                                       n_requests=args.requests, seed=args.seed).n_batches)),
        (f"cluster-{args.replicas}", *_timed(lambda: simulate_cluster(
            Cluster((Pool(engine, policy, args.replicas),), ("jsq",)), many,
            n_requests=args.replicas * args.requests, seed=args.seed).n_batches)),
    ]
    base = rows[0][2] / rows[0][1]
    for name, seconds, batches in rows:
        rate = batches / seconds
        print(f"{name:>11}: {batches:>9,} batches in {seconds:7.3f} s = {rate:>12,.0f} batches/s "
              f"({rate / base:.2f} x single)")


if __name__ == "__main__":
    main()
