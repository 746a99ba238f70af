"""Simulator speed: batch iterations per second of the compiled simulator against plain-Python models, one run.

Workload: Sarathi-Serve on the CodeLlama-34B / A100 staircase (b_max = 512),
ShareGPT prompt/output lengths (the shipped trace, drawn as pairs), Poisson
arrivals at 90% of capacity. Three measurements, each a ratio inside this run:

1. **compute only** (no KV cache, no attention; capacity ``max_b b/t_b``):
   :func:`~llmstab.fluid_models.simulation.simulator.simulate` against a SimPy 4
   model of the same engine (an arrival process and an engine process, the
   Sarathi rule written in Python over a running list and a waiting deque).
   Target: at least 50x.
2. **KV cache and attention** (14,733 blocks of 16 tokens, 1% watermark, 128
   active requests; attention 1.4e-4 / 2e-5 ms per token x context token;
   90% of the exact capacity ``1/E[W]``): against a plain-Python model with
   the same rules (whole-prompt admission with the watermark, a block per 16
   tokens, preemption of the latest-arrived request with recomputation, batch
   time from the batch's contexts). Target: at least 30x.
3. **waiting queue**: all requests present at time 0 (KV and attention on, so
   128 run and the rest wait); the compiled loop's cost per batch with 10^5
   waiting against 10^3 waiting (timed as the difference of two horizons, so
   set-up is excluded). Target: within 2x.

Both plain models serve a prefix of the compiled run's requests, and their
batch counts and finish times are checked against the compiled simulator on
that prefix (the printed ``agree``).

Run: ``python benchmarks/bench_simulator.py`` (``taskset -c 0`` to pin one core).
"""

from __future__ import annotations

import argparse
import time
from collections import deque

import numpy as np
import sympy

from llmstab.checkers.memory_check import memory_numbers
from llmstab.checkers.single_engine import capacity_of
from llmstab.fluid_models.batch_time import Attention, Staircase
from llmstab.fluid_models.engine import Engine, KVCache
from llmstab.fluid_models.policies import Sarathi
from llmstab.fluid_models.simulation.arrivals import Trace
from llmstab.fluid_models.simulation.simulator import simulate
from llmstab.fluid_models.traces import trace_distribution
from llmstab.fluid_models.workload import RequestClass, Workload


class _Req:
    __slots__ = ("id", "pf", "dc", "ctx", "blocks", "prompt", "gen")

    def __init__(self, i: int, prompt: int, decode: int) -> None:
        self.id, self.pf, self.dc, self.ctx, self.blocks, self.prompt, self.gen = i, prompt, decode, 0, 0, prompt, 0


class PlainEngine:
    """The engine in plain Python: Sarathi's rule, KV blocks, preemption by recomputation, attention."""

    def __init__(self, engine: Engine, trace: Trace) -> None:
        kv = engine.kv_cache
        self.b_max = engine.token_budget
        self.total = 2**62 if kv is None else kv.blocks
        self.bs, self.wm = (1, 0) if kv is None else (kv.block_size, kv.watermark_blocks)
        self.max_active = engine.max_active_requests or 2**62
        self.table = engine.batch_time.table(self.b_max) / 1000.0
        att = engine.attention
        self.k_dec, self.k_pf = (0.0, 0.0) if att is None else (float(att.decode_exact) / 1000, float(att.prefill_exact) / 1000)
        self.trace, self.used = trace, 0
        self.running: list[_Req] = []
        self.waiting: deque[_Req] = deque()
        self.finish = np.full(trace.size, np.nan)

    def _need(self, req: _Req) -> int:
        return max(1, -(-req.prompt // self.bs))

    def _victim(self, req: _Req, taken: dict, evicted: list) -> _Req | None:
        best = None
        for other in self.running:
            if other is not req and other.id > req.id and other.id not in taken and other not in evicted:
                best = other if best is None or other.id > best.id else best
        return best

    def form(self) -> tuple[dict, list, list]:
        """Sarathi's batch: ``{id: (prefill, decode)}``, evictions in order, admitted requests."""
        budget, free, active_left = self.b_max, self.total - self.used, self.max_active - len(self.running)
        taken, evicted, admitted = {}, [], []
        for req in self.running:
            if budget <= 0:
                break
            if req.pf == 0 and req.dc > 0 and req not in evicted:
                if req.ctx + 1 > req.blocks * self.bs:
                    while free <= 0:
                        victim = self._victim(req, taken, evicted)
                        if victim is None:
                            break
                        evicted.append(victim)
                        free, active_left = free + victim.blocks, active_left + 1
                    if free <= 0:
                        evicted.append(req)
                        free, active_left = free + req.blocks, active_left + 1
                        continue
                    free -= 1
                taken[req.id] = (0, 1)
                budget -= 1
        window = [self.waiting[j] for j in range(min(len(self.waiting), self.b_max, max(0, self.max_active - len(self.running))))]
        for req in self.running + window:
            if budget <= 0:
                break
            if req.pf > 0 and req.id not in taken and req not in evicted:
                if req.blocks == 0:
                    need = self._need(req)
                    if active_left < 1 or free - need < self.wm:
                        break
                    free, active_left = free - need, active_left - 1
                    admitted.append(req)
                x = min(req.pf, budget)
                taken[req.id] = (x, 0)
                budget -= x
        return taken, evicted, admitted

    def duration(self, taken: dict, rows: list[_Req]) -> float:
        dec, pf = 0.0, 0.0
        for req in rows:
            if req.id in taken:
                p, d = taken[req.id]
                if p > 0:
                    pf += p * (req.ctx + 0.5 * p)
                if d == 1:
                    dec += req.ctx
        return self.table[sum(p + d for p, d in taken.values())] + self.k_dec * dec + self.k_pf * pf

    def apply(self, taken: dict, evicted: list, admitted: list, t_end: float) -> None:
        for req in evicted:
            self.used -= req.blocks
            req.prompt = int(self.trace.prompt[req.id]) + req.gen
            req.pf, req.ctx, req.blocks = req.prompt, 0, 0
            self.running.remove(req)
        for req in admitted:
            self.waiting.remove(req)
            req.blocks = self._need(req)
            self.used += req.blocks
        for req in evicted:
            self.waiting.appendleft(req)
        self.running = sorted(self.running + admitted, key=lambda r: r.id)
        keep = []
        for req in self.running:
            p, d = taken.get(req.id, (0, 0))
            if d == 1 and req.ctx + 1 > req.blocks * self.bs:
                req.blocks += 1
                self.used += 1
            req.pf, req.dc, req.gen, req.ctx = req.pf - p, req.dc - d, req.gen + d, req.ctx + p + d
            if req.dc == 0:
                self.finish[req.id] = t_end
                self.used -= req.blocks
            else:
                keep.append(req)
        self.running = keep


def plain_kv_run(engine: Engine, trace: Trace) -> tuple[int, np.ndarray]:
    """A plain-Python discrete-time loop over batches; returns (batches, finish times)."""
    sim, t, nxt, batches = PlainEngine(engine, trace), 0.0, 0, 0
    while True:
        while nxt < trace.size and trace.times[nxt] <= t:
            sim.waiting.append(_Req(nxt, int(trace.prompt[nxt]), int(trace.decode[nxt])))
            nxt += 1
        if not sim.running and not sim.waiting:
            if nxt >= trace.size:
                return batches, sim.finish
            t = float(trace.times[nxt])
            continue
        taken, evicted, admitted = sim.form()
        if not taken:
            sim.apply(taken, evicted, admitted, t)
            continue
        t_end = t + sim.duration(taken, sim.running + admitted)
        sim.apply(taken, evicted, admitted, t_end)
        t, batches = t_end, batches + 1


def simpy_run(engine: Engine, trace: Trace) -> tuple[int, np.ndarray]:
    """The compute-only engine as a SimPy 4 model: an arrival process and an engine process."""
    import simpy

    env, sim = simpy.Environment(), PlainEngine(engine, trace)
    wake = {"event": env.event()}
    count = {"batches": 0}

    def arrivals():
        for i in range(trace.size):
            yield env.timeout(float(trace.times[i]) - env.now)
            sim.waiting.append(_Req(i, int(trace.prompt[i]), int(trace.decode[i])))
            if not wake["event"].triggered:
                wake["event"].succeed()

    def engine_process():
        while True:
            if not sim.running and not sim.waiting:
                wake["event"] = env.event()
                yield wake["event"]
            taken, evicted, admitted = sim.form()
            start = env.now
            yield env.timeout(sim.duration(taken, sim.running + admitted))
            sim.apply(taken, evicted, admitted, start + (env.now - start))
            count["batches"] += 1

    env.process(arrivals())
    env.process(engine_process())
    env.run()
    return count["batches"], sim.finish


def _compare(label: str, engine: Engine, work: Workload, requests: int, plain_requests: int, plain, seed: int) -> None:
    policy = Sarathi()
    simulate(engine, policy, work, n_requests=1000, seed=seed)  # warm-up: load compiled code
    start = time.process_time()
    result = simulate(engine, policy, work, n_requests=requests, seed=seed)
    compiled_s = time.process_time() - start
    compiled_rate = result.n_batches / compiled_s
    prefix = result.trace.head(plain_requests)
    reference = simulate(engine, policy, None, arrivals="trace", trace=prefix)
    start = time.process_time()
    batches, finish = plain(engine, prefix)
    plain_s = time.process_time() - start
    agree = batches == reference.n_batches and np.allclose(finish, reference.finish, rtol=1e-9, atol=1e-9)
    m = result.memory.summary()
    print(f"{label}\n  compiled : {requests} requests, {result.n_batches} batches in {compiled_s:.3f} s = "
          f"{compiled_rate:,.0f} batches/s (preemptions {m['preemptions']}, peak KV {m['peak_blocks_in_use']} blocks)\n"
          f"  plain    : {prefix.size} requests, {batches} batches in {plain_s:.3f} s = {batches / plain_s:,.0f} "
          f"batches/s; agree with the compiled run: {agree}\n  ratio    : {compiled_rate / (batches / plain_s):.1f}x")


def _per_batch_cost(engine: Engine, waiting: int, seed: int) -> float:
    """Seconds per batch with ``waiting`` requests present at time 0 (difference of two horizons)."""
    rng = np.random.default_rng(seed)
    prompt, decode = (trace_distribution("sharegpt", c).sample(rng, waiting + 128) for c in ("prompt", "decode"))
    trace = Trace(np.zeros(prompt.size), prompt, decode)
    runs = []
    for horizon in (50.0, 500.0):  # the least of three CPU times: the least disturbed run
        best = np.inf
        for _ in range(3):
            start = time.process_time()
            r = simulate(engine, Sarathi(), None, arrivals="trace", trace=trace, horizon_s=horizon)
            best = min(best, time.process_time() - start)
        runs.append((best, r.n_batches))
    return (runs[1][0] - runs[0][0]) / (runs[1][1] - runs[0][1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=100_000)
    parser.add_argument("--plain-requests", type=int, default=2_000)
    parser.add_argument("--load", type=float, default=0.9, help="fraction of capacity (default 0.9)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    load = sympy.Rational(str(args.load))
    one = Workload((RequestClass("sharegpt", 1, trace_distribution("sharegpt", "prompt"),
                                 trace_distribution("sharegpt", "decode")),))
    staircase = Staircase("11.28", "35.47", 128)

    plain = Engine(staircase, 512)
    work = one.scaled(capacity_of(plain).tokens_per_s * load / one.token_rate)
    _compare(f"1. compute only, {float(work.rate):.4g} req/s ({args.load:.0%} of capacity) vs SimPy 4", plain, work,
             args.requests, args.plain_requests, simpy_run, args.seed)

    kv = Engine(staircase, 512, attention=Attention("1.4e-4", "2e-5"), kv_cache=KVCache(14733, 16, "0.01"),
                max_active_requests=128)
    work_kv = one.scaled(load * 1000 / memory_numbers(kv, one).work_ms["sharegpt"])
    _compare(f"2. KV cache + attention, {float(work_kv.rate):.4g} req/s ({args.load:.0%} of 1/E[W]) vs plain Python",
             kv, work_kv, args.requests // 4, args.plain_requests, plain_kv_run, args.seed)

    small, large = (_per_batch_cost(kv, n, args.seed) for n in (1_000, 100_000))
    print(f"3. waiting queue: {1 / small:,.0f} batches/s with 10^3 waiting, {1 / large:,.0f} with 10^5 "
          f"(ratio {large / small:.2f}x; target within 2x)")


if __name__ == "__main__":
    main()
