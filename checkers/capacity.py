"""Capacity under latency targets, bracketed by the exact stability capacity.

Two numbers per engine and traffic mix:

* the **stability capacity** (theory, the same for every scheduler): the largest
  request rate any scheduler can keep bounded, ``1000 / E[W]`` req/s with
  ``E[W]`` the GPU time per request at the most efficient batch size, attention
  included (:mod:`llmstab.theory.work`), and, with a KV cache, no more than the
  memory bound ``M / (E[d p + d (d-1)/2] t_min)`` (each request holds ``p + k``
  KV tokens for at least one batch per output token);
* the **SLO capacity** of each scheduler: the largest rate at which every class
  meets its SLO in a finite run of ``n`` requests (seeded), read as the first
  crossing on a load grid, then narrowed by bisection inside that bracket. It
  can never exceed the stability capacity: the grid stops there.

Beside them, the **empirical divergence boundary**: the first grid load whose
backlog grows over the arrival period (:func:`~llmstab.checkers.growth.estimate_growth`).

Examples
--------
>>> from llmstab.fluid_models.batch_time import Staircase
>>> from llmstab.fluid_models.distributions import Deterministic
>>> from llmstab.fluid_models.engine import Engine
>>> from llmstab.fluid_models.workload import RequestClass, Workload
>>> w = Workload((RequestClass("chat", 1, Deterministic(100), Deterministic(10)),))
>>> round(stability_capacity(Engine(Staircase(10, 10, 64), 64), w).rps, 3)
29.091
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import sympy

from llmstab.fluid_models.distributions import product_moment
from llmstab.fluid_models.engine import Engine
from llmstab.fluid_models.errors import InputError
from llmstab.fluid_models.policies.base import Policy
from llmstab.fluid_models.simulation.latency import latency_metrics
from llmstab.fluid_models.simulation.simulator import simulate
from llmstab.fluid_models.workload import Workload
from llmstab.theory.work import expected_work

from .growth import estimate_growth
from .single_engine import capacity_of

__all__ = ["StabilityCapacity", "stability_capacity", "evaluate_load", "slo_capacity", "default_loads", "compare_to_baseline"]


@dataclass(frozen=True)
class StabilityCapacity:
    """The largest request rate any scheduler keeps bounded, and what binds it (``compute`` or ``memory``)."""

    rps: float
    compute_rps: float
    memory_rps: float | None
    binds: str

    def to_json(self) -> dict:
        return {"rps": self.rps, "compute_rps": self.compute_rps, "memory_rps": self.memory_rps, "binds": self.binds}


def _class_moments(c: object) -> dict:
    p, d = c.prompt, c.decode
    return {"p": p.mean, "d": d.mean, "p2": p.second_moment, "d2": d.second_moment, "pd": product_moment(p, d)}


def stability_capacity(engine: Engine, workload: Workload) -> StabilityCapacity:
    """The stability capacity (req/s) of ``engine`` for ``workload``'s mix (see the module)."""
    cap = capacity_of(engine)
    tau = 1 / cap.tokens_per_ms
    att = engine.attention
    k_dec, k_pf = (att.decode_exact, att.prefill_exact) if att is not None else (0, 0)
    rate = workload.rate
    work = sum((c.rate / rate * expected_work(tau, k_pf, k_dec, _class_moments(c)) for c in workload.classes),
               sympy.Integer(0))
    compute = float(1000 / work)
    memory = None
    if engine.kv_cache is not None:
        held = sum((c.rate / rate * (_class_moments(c)["pd"] + (c.decode.second_moment - c.decode.mean) / 2)
                    for c in workload.classes), sympy.Integer(0))
        t_min = engine.batch_time.exact(1) / 1000
        memory = float(engine.kv_cache.tokens / (held * t_min)) if held > 0 else None
    binds = "memory" if memory is not None and memory < compute else "compute"
    return StabilityCapacity(min(compute, memory) if memory is not None else compute, compute, memory, binds)


def _slos(workload: Workload) -> dict:
    slos = {c.name: c.slo for c in workload.classes if c.slo is not None}
    if not slos:
        raise InputError("workload.classes", "no class has an slo (capacity needs latency targets, e.g. "
                         "slo: {ttft_s: 0.5, tbt_s: 0.1})")
    return slos


def evaluate_load(engine: Engine, policy: Policy, workload: Workload, rps: float, *, n_requests: int,
                  seed: int) -> dict:
    """One load point: ``n_requests`` seeded Poisson arrivals at ``rps``; percentiles and the SLO verdict.

    ``ttft_p50_s`` is the median TTFT over all requests, ``tbt_p99_s`` the P99
    TBT over each class's tokens, ``met`` whether every class meets its SLO,
    ``diverging`` whether the backlog grew over the arrival period.
    """
    slos = _slos(workload)
    scaled = workload.scaled(sympy.Rational(repr(float(rps))) / workload.rate)
    result = simulate(engine, policy.for_workload(scaled), scaled, n_requests=n_requests, seed=seed,
                      record_batches=True)
    metrics = latency_metrics(result, slos)
    names = [c.name for c in workload.classes]
    overall = metrics["all"] if len(names) > 1 else metrics[names[0]]
    try:
        diverging = estimate_growth(result, until=float(result.trace.times[-1])).diverging
    except ValueError:  # too few trajectory points to judge
        diverging = None
    return {
        "rps": float(rps),
        "ttft_p50_s": overall["ttft_s"]["p50"],
        "tbt_p99_s": {name: metrics[name]["tbt_s"]["p99"] for name in names},
        "met": all(metrics[name]["slo"]["met"] for name in slos),
        "diverging": diverging,
        "throughput_rps": overall["throughput_rps"],
        "goodput_rps": overall["goodput_rps"],
        "slo": {name: metrics[name]["slo"] for name in slos},
    }


def default_loads(stability: StabilityCapacity, points: int = 10) -> list[float]:
    """``points`` loads evenly spaced from a tenth of the stability capacity up to it (as the SLAI sweep spaces them)."""
    return [float(x) for x in np.linspace(0.1, 1.0, points) * stability.rps]


def slo_capacity(engine: Engine, policy: Policy, workload: Workload, loads: list[float], *, n_requests: int,
                 seed: int, refine: int = 4, stability: StabilityCapacity | None = None) -> dict:
    """The SLO capacity of ``policy``: the first crossing on ``loads``, narrowed by ``refine`` bisections.

    Returns the JSON-ready record: ``slo_capacity_rps`` (``None`` with a
    ``note`` when even the lowest load misses the SLO), ``bracket_rps``
    ``[lo, hi]`` (the last load that met the SLO and the first that did not;
    ``hi`` is the stability capacity when every load met it),
    ``divergence_rps`` (the first load whose backlog grew, or ``None``), and
    every point run, in the order run.
    """
    stability = stability or stability_capacity(engine, workload)
    grid = sorted(x for x in loads if x <= stability.rps)
    if not grid:
        raise InputError("--loads", f"every load lies above the stability capacity ({stability.rps:.4g} req/s)")
    points = [evaluate_load(engine, policy, workload, x, n_requests=n_requests, seed=seed) for x in grid]
    first_miss = next((k for k, pt in enumerate(points) if not pt["met"]), None)
    out = {"policy": policy.label, "requests_per_point": n_requests, "seed": seed, "refinements": refine}
    if first_miss == 0:
        out.update(slo_capacity_rps=None, bracket_rps=[None, grid[0]],
                   note=f"no load meets this SLO: the lowest load tried ({grid[0]:.4g} req/s) misses it")
    else:
        lo = grid[len(grid) - 1 if first_miss is None else first_miss - 1]
        hi = stability.rps if first_miss is None else grid[first_miss]
        for _ in range(refine if first_miss is not None else 0):
            mid = (lo + hi) / 2
            points.append(evaluate_load(engine, policy, workload, mid, n_requests=n_requests, seed=seed))
            lo, hi = (mid, hi) if points[-1]["met"] else (lo, mid)
        out.update(slo_capacity_rps=lo, bracket_rps=[lo, hi])
    diverging = [pt["rps"] for pt in points if pt["diverging"]]
    out["divergence_rps"] = min(diverging) if diverging else None
    out["points"] = sorted(points, key=lambda pt: pt["rps"])
    return out


def compare_to_baseline(engine: Engine, baseline: Policy, challengers: dict[str, Policy], workload: Workload,
                        loads: list[float], *, n_requests: int, seed: int, refine: int = 4) -> dict:
    """The two ratios a scheduler paper reports, for each challenger against ``baseline``.

    ``ttft_change`` is the challenger's median TTFT at the load where the
    baseline reaches its SLO capacity, relative to the baseline's there (-0.53
    is "53 % lower"); ``capacity_change`` is the ratio of SLO capacities minus
    one, ``capacity_change_is_lower_bound`` when the challenger met the SLO at
    every load up to the stability capacity (its own capacity is then only
    known to be at least that). ``None`` where a capacity does not exist.
    """
    stability = stability_capacity(engine, workload)
    base = slo_capacity(engine, baseline, workload, loads, n_requests=n_requests, seed=seed, refine=refine,
                        stability=stability)
    out = {"stability_capacity_rps": stability.rps, "baseline": base, "challengers": {}}
    cap = base["slo_capacity_rps"]
    base_ttft = next((pt["ttft_p50_s"] for pt in base["points"] if pt["rps"] == cap), None)
    for name, policy in challengers.items():
        run = slo_capacity(engine, policy, workload, loads, n_requests=n_requests, seed=seed, refine=refine,
                           stability=stability)
        row = {"run": run, "ttft_change": None, "capacity_change": None}
        if cap is not None and run["slo_capacity_rps"] is not None:
            ttft = evaluate_load(engine, policy, workload, cap, n_requests=n_requests, seed=seed)["ttft_p50_s"]
            row.update(ttft_at_baseline_capacity_s=ttft, ttft_change=ttft / base_ttft - 1,
                       capacity_change=run["slo_capacity_rps"] / cap - 1,
                       capacity_change_is_lower_bound=all(pt["met"] for pt in run["points"]))
        out["challengers"][name] = row
    out["baseline_ttft_at_capacity_s"] = base_ttft
    return out
