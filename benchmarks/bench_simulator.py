"""Simulator speed: batch iterations per second, against a plain heapq event loop in the same run.

Workload: Sarathi-Serve on the CodeLlama-34B / A100 staircase (b_max = 512),
ShareGPT prompt/output lengths (the shipped trace, drawn as pairs), Poisson
arrivals at 90% of the exact capacity, 100,000 requests (drained).

* ``compiled``: :func:`llmstab.fluid_models.simulation.simulator.simulate` (pre-sampled arrivals,
  one numba loop calling the policy's kernel), timed end to end (sampling
  included), after a warm-up call that loads the compiled code from the cache.
* ``plain``: the same engine written plainly: a ``heapq`` event loop over
  arrival and batch-end events, resident requests in a Python list, each batch
  formed by ``Policy.form_batch`` on an ``EngineState`` (the same scheduler
  code). It serves a prefix of the same requests (``--plain-requests``), and
  its finish times are checked against the compiled run on that prefix.

Run: ``python benchmarks/bench_simulator.py`` (pin one core with ``taskset -c 0``
to measure one core). Prints both rates and their ratio.
"""

from __future__ import annotations

import argparse
import heapq
import time

import numpy as np
import sympy

from llmstab.checkers.single_engine import capacity_of
from llmstab.fluid_models.simulation.arrivals import Trace
from llmstab.fluid_models.batch_time import Staircase
from llmstab.fluid_models.engine import Engine
from llmstab.fluid_models.policies import Sarathi
from llmstab.fluid_models.simulation.simulator import simulate
from llmstab.fluid_models.state import EngineState
from llmstab.fluid_models.traces import trace_distribution
from llmstab.fluid_models.workload import RequestClass, Workload


def plain_engine(engine: Engine, policy, trace: Trace) -> tuple[int, np.ndarray]:
    """A heapq discrete-event simulation of the engine; returns (batches, finish times)."""
    b_max, k_max = engine.token_budget, engine.max_batch_requests
    events = [(float(t), 0, i) for i, t in enumerate(trace.times)]  # kind 0: arrival, 1: batch end
    heapq.heapify(events)
    resident: list[list[int]] = []  # [request, prefill left, decode left], arrival order
    finish = np.full(trace.size, np.nan)
    batches, busy, pending = 0, False, None
    while events:
        t, kind, i = heapq.heappop(events)
        if kind == 0:
            resident.append([i, int(trace.prompt[i]), int(trace.decode[i])])
        else:
            for entry, p, d in zip(resident, pending.prefill, pending.decode):
                entry[1] -= p
                entry[2] -= d
                if entry[2] == 0:
                    finish[entry[0]] = t
            resident = [e for e in resident if e[2] > 0]
            busy, batches = False, batches + 1
        while events and events[0][1] == 0 and events[0][0] <= t:  # arrivals up to now join first
            _, _, j = heapq.heappop(events)
            resident.append([j, int(trace.prompt[j]), int(trace.decode[j])])
        if not busy and resident:
            state = EngineState(tuple(e[1] for e in resident), tuple(e[2] for e in resident))
            pending = policy.form_batch(state, b_max, k_max)
            heapq.heappush(events, (t + float(engine.batch_time(pending.tokens)) / 1000.0, 1, -1))
            busy = True
    return batches, finish


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=100_000)
    parser.add_argument("--plain-requests", type=int, default=3_000)
    parser.add_argument("--load", type=float, default=0.9, help="fraction of capacity (default 0.9)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    engine = Engine(Staircase("11.28", "35.47", 128), 512)
    capacity = capacity_of(engine).tokens_per_s
    one = Workload((RequestClass("sharegpt", 1, trace_distribution("sharegpt", "prompt"),
                                 trace_distribution("sharegpt", "decode")),))
    work = one.scaled(capacity * sympy.Rational(str(args.load)) / one.token_rate)
    policy = Sarathi()
    print(f"Sarathi-Serve, CodeLlama-34B/A100 staircase, b_max 512, ShareGPT lengths, "
          f"{float(work.rate):.4g} req/s = {args.load:.0%} of capacity ({float(capacity):.6g} tokens/s)")

    simulate(engine, policy, work, n_requests=1000, seed=args.seed)  # warm-up: load compiled code
    start = time.perf_counter()
    result = simulate(engine, policy, work, n_requests=args.requests, seed=args.seed)
    compiled_s = time.perf_counter() - start
    compiled_rate = result.n_batches / compiled_s
    print(f"compiled : {args.requests} requests, {result.n_batches} batches in {compiled_s:.3f} s "
          f"= {compiled_rate:,.0f} batch iterations/s; simulated {result.end_time:.0f} s, "
          f"throughput {result.throughput_tokens:.0f} tokens/s")

    prefix = result.trace.head(args.plain_requests)
    reference = simulate(engine, policy, None, arrivals="trace", trace=prefix)
    start = time.perf_counter()
    plain_batches, plain_finish = plain_engine(engine, policy, prefix)
    plain_s = time.perf_counter() - start
    plain_rate = plain_batches / plain_s
    agree = plain_batches == reference.n_batches and np.allclose(plain_finish, reference.finish, rtol=0, atol=1e-9)
    print(f"plain    : {prefix.size} requests, {plain_batches} batches in {plain_s:.3f} s "
          f"= {plain_rate:,.0f} batch iterations/s (heapq loop + Policy.form_batch); "
          f"same batches and finish times as the compiled run: {agree}")
    print(f"ratio    : {compiled_rate / plain_rate:.1f}x")


if __name__ == "__main__":
    main()
