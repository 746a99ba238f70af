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

import functools
from dataclasses import dataclass

import numpy as np

from llmstab.fluid_models.engine import Engine
from llmstab.fluid_models.errors import InputError
from llmstab.fluid_models.policies.base import Policy
from llmstab.fluid_models.simulation.latency import latency_metrics
from llmstab.fluid_models.simulation.simulator import simulate
from llmstab.fluid_models.workload import Workload
from llmstab.theory.exact_linalg import Exact, to_fraction
from llmstab.theory.work import expected_work_exact

from .growth import estimate_growth
from .single_engine import capacity_of
from .sweep import SweepExecutor

__all__ = ["StabilityCapacity", "stability_capacity", "evaluate_load", "slo_capacity", "slo_capacities",
           "miss_reasons", "default_loads", "compare_to_baseline"]


@dataclass(frozen=True)
class StabilityCapacity:
    """The largest request rate any scheduler keeps bounded, and what binds it (``compute`` or ``memory``)."""

    rps: float
    compute_rps: float
    memory_rps: float | None
    binds: str

    def to_json(self) -> dict:
        return {"rps": self.rps, "compute_rps": self.compute_rps, "memory_rps": self.memory_rps, "binds": self.binds}


def stability_capacity(engine: Engine, workload: Workload) -> StabilityCapacity:
    """The stability capacity (req/s) of ``engine`` for ``workload``'s mix (see the module)."""
    cap = capacity_of(engine)
    tau = 1 / cap.tokens_per_ms
    att = engine.attention
    k_dec, k_pf = (att.decode_exact, att.prefill_exact) if att is not None else (0, 0)
    rate = workload.rate
    work = sum((c.rate / rate * expected_work_exact(tau, k_pf, k_dec, c.moments) for c in workload.classes),
               Exact(0))
    compute = float(1000 / work)
    memory = None
    if engine.kv_cache is not None:
        held = sum((c.rate / rate * c.kv_token_batches for c in workload.classes), Exact(0))
        t_min = engine.shortest_batch_ms / 1000
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
    scaled = workload.scaled(to_fraction(repr(float(rps))) / workload.rate)
    result = simulate(engine, policy.for_workload(scaled), scaled, n_requests=n_requests, seed=seed,
                      record_latency=True)
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


def _load_task(engine: Engine, workload: Workload, n_requests: int, seed: int, job: tuple[Policy, float]) -> dict:
    """One (policy, load) job for :meth:`~llmstab.checkers.sweep.SweepExecutor.map` (module level: it pickles)."""
    policy, rps = job
    return evaluate_load(engine, policy, workload, rps, n_requests=n_requests, seed=seed)


def _warm_up(engine: Engine, policies: tuple[Policy, ...], workload: Workload) -> None:
    """Load each policy's compiled kernel once per worker (a short run), so no point pays it."""
    for policy in policies:
        evaluate_load(engine, policy, workload, float(workload.rate), n_requests=32, seed=0)


def _executor(workers: int | None, n_jobs: int, engine: Engine, policies: dict[str, Policy],
              workload: Workload) -> SweepExecutor:
    """This process (``workers=None``) or a local Dask cluster of up to ``workers`` processes (no more than
    ``n_jobs``, the largest batch), as ``llmstab sweep`` runs."""
    if workers is None:
        return SweepExecutor()
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise InputError("workers", f"must be a positive integer or None, got {workers!r}")
    return SweepExecutor(workers=min(workers, n_jobs),
                         warm_up=functools.partial(_warm_up, engine, tuple(policies.values()), workload))


def miss_reasons(point: dict) -> str:
    """Which targets a load point missed, with the measured percentile (or that nothing was measured).

    >>> miss_reasons({"slo": {"chat": {"ttft_s": 0.5, "ttft_percentile": 50.0, "ttft_at_percentile_s": 0.75,
    ...                                "met": False},
    ...                       "batch": {"tbt_s": 0.1, "tbt_percentile": 99.0, "tbt_at_percentile_s": None,
    ...                                 "met": False}}})
    'chat: TTFT P50 0.75 s > 0.5 s; batch: TBT P99 not measured (no tokens in this run)'
    """
    out = []
    for name, slo in point["slo"].items():
        for key, label, unit in (("ttft", "TTFT", "requests"), ("tbt", "TBT", "tokens")):
            target, value = slo.get(f"{key}_s"), slo.get(f"{key}_at_percentile_s")
            head = f"{name}: {label} P{slo.get(f'{key}_percentile', 0):g}"
            if target is not None and value is None:
                out.append(f"{head} not measured (no {unit} in this run)")
            elif target is not None and not value <= target:
                out.append(f"{head} {value:.4g} s > {target:g} s")
    return "; ".join(out)


class _Bisection:
    """One policy's search state: its points, the bracket, the bisections left (the same whatever runs them)."""

    def __init__(self, grid: list[float], points: list[dict], stability_rps: float, refine: int) -> None:
        self.grid, self.points = grid, list(points)
        self.first_miss = next((k for k, pt in enumerate(points) if not pt["met"]), None)
        if self.first_miss == 0:
            self.lo, self.hi, self.left = None, grid[0], 0
        elif self.first_miss is None:  # every load met it: the stability capacity bounds it, no bisection
            self.lo, self.hi, self.left = grid[-1], stability_rps, 0
        else:
            self.lo, self.hi, self.left = grid[self.first_miss - 1], grid[self.first_miss], refine

    def next_load(self) -> float | None:
        """The midpoint to run next, or ``None`` when the search is over."""
        return (self.lo + self.hi) / 2 if self.left else None

    def record(self, point: dict) -> None:
        """Take the midpoint's result: it becomes the new lower end if it met the SLO, else the upper end."""
        self.points.append(point)
        self.lo, self.hi = (point["rps"], self.hi) if point["met"] else (self.lo, point["rps"])
        self.left -= 1

    def to_json(self, policy: Policy, n_requests: int, seed: int, refine: int) -> dict:
        out = {"policy": policy.label, "requests_per_point": n_requests, "seed": seed, "refinements": refine,
               "slo_capacity_rps": self.lo, "bracket_rps": [self.lo, self.hi]}
        if self.lo is None:
            out["note"] = (f"no load meets this SLO: the lowest load tried ({self.grid[0]:.4g} req/s) misses it "
                           f"({miss_reasons(self.points[0])})")
        diverging = [pt["rps"] for pt in self.points if pt["diverging"]]
        out["divergence_rps"] = min(diverging) if diverging else None
        out["points"] = sorted(self.points, key=lambda pt: pt["rps"])
        return out


def slo_capacities(engine: Engine, policies: dict[str, Policy], workload: Workload, loads: list[float], *,
                   n_requests: int, seed: int, refine: int = 4, stability: StabilityCapacity | None = None,
                   workers: int | None = None) -> dict[str, dict]:
    """The SLO capacity of each of ``policies``: the first crossing on ``loads``, narrowed by ``refine`` bisections.

    Parameters
    ----------
    engine, workload
        The engine and the traffic mix (its classes carry the SLOs); each load scales the mix.
    policies
        Name to policy; every policy runs the same seeded arrivals at each load (a paired comparison).
    loads
        The grid (req/s); loads above the stability capacity are dropped.
    n_requests, seed
        Requests per point and the seed of arrivals and lengths (the same at every load).
    refine, stability
        Bisections inside each policy's bracket; the stability capacity, if already computed.
    workers
        Run the points on a local Dask cluster of this many processes (``None``: in this process). All
        policies' grid points go out as one batch, then one batch per bisection step; the result is the
        same whatever the number of workers.

    Returns
    -------
    dict
        Per policy the JSON-ready record: ``slo_capacity_rps`` (``None`` with a ``note`` when even the
        lowest load misses the SLO), ``bracket_rps`` ``[lo, hi]`` (the last load that met the SLO and the
        first that did not; ``hi`` is the stability capacity when every load met it),
        ``divergence_rps`` (the first load whose backlog grew, or ``None``), and every point run, by load.

    Examples
    --------
    >>> from llmstab.checkers.spec import engine_spec_from_document
    >>> from llmstab.fluid_models.policies import Sarathi
    >>> lengths = {"prompt": {"dist": "deterministic", "mean": 100}, "decode": {"dist": "deterministic", "mean": 10}}
    >>> spec = engine_spec_from_document({"engine": {"batch_time": {"kind": "staircase", "c": 10, "a": 10,
    ...     "b0": 64}, "token_budget": 64}, "policy": "sarathi", "workload": {"classes": [{"name": "chat",
    ...     "rate": 1, "slo": {"ttft_s": 0.05}, **lengths}]}})
    >>> out = slo_capacities(spec.engine, {"sarathi": Sarathi()}, spec.workload, [2, 20], n_requests=200, seed=0,
    ...                      refine=2)
    >>> [pt["met"] for pt in out["sarathi"]["points"]], out["sarathi"]["bracket_rps"]
    ([True, True, False, False], [6.5, 11.0])
    """
    stability = stability or stability_capacity(engine, workload)
    grid = sorted(x for x in loads if x <= stability.rps)
    if not grid:
        raise InputError("--loads", f"every load lies above the stability capacity ({stability.rps:.4g} req/s)")
    _slos(workload)  # a file without targets fails before any run
    task = functools.partial(_load_task, engine, workload, n_requests, seed)
    jobs = [(policy, x) for policy in policies.values() for x in grid]
    with _executor(workers, len(jobs), engine, policies, workload) as executor:
        flat = executor.map(task, jobs)
        runs = {name: _Bisection(grid, flat[k * len(grid):(k + 1) * len(grid)], stability.rps, refine)
                for k, name in enumerate(policies)}
        while active := [name for name, run in runs.items() if run.next_load() is not None]:
            found = executor.map(task, [(policies[name], runs[name].next_load()) for name in active])
            for name, point in zip(active, found):
                runs[name].record(point)
    return {name: run.to_json(policies[name], n_requests, seed, refine) for name, run in runs.items()}


def slo_capacity(engine: Engine, policy: Policy, workload: Workload, loads: list[float], *, n_requests: int,
                 seed: int, refine: int = 4, stability: StabilityCapacity | None = None,
                 workers: int | None = None) -> dict:
    """The SLO capacity of one ``policy``: :func:`slo_capacities` with that policy alone (see there)."""
    return slo_capacities(engine, {policy.label: policy}, workload, loads, n_requests=n_requests, seed=seed,
                          refine=refine, stability=stability, workers=workers)[policy.label]


def compare_to_baseline(engine: Engine, baseline: Policy, challengers: dict[str, Policy], workload: Workload,
                        loads: list[float], *, n_requests: int, seed: int, refine: int = 4,
                        workers: int | None = None) -> dict:
    """The two ratios a scheduler paper reports, for each challenger against ``baseline``.

    ``ttft_change`` is the challenger's median TTFT at the load where the
    baseline reaches its SLO capacity, relative to the baseline's there (-0.53
    is "53 % lower"); ``capacity_change`` is the ratio of SLO capacities minus
    one, ``capacity_change_is_lower_bound`` when the challenger met the SLO at
    every load up to the stability capacity (its own capacity is then only
    known to be at least that). ``None`` where a capacity does not exist.
    All searches run as one :func:`slo_capacities` (on ``workers`` processes, if given).

    Examples
    --------
    >>> from llmstab.fluid_models.batch_time import Staircase
    >>> from llmstab.fluid_models.distributions import Deterministic
    >>> from llmstab.fluid_models.policies import Sarathi
    >>> from llmstab.fluid_models.slo import SLO
    >>> from llmstab.fluid_models.workload import RequestClass
    >>> chat = RequestClass("chat", 1, Deterministic(100), Deterministic(10), SLO(ttft_s=0.05))
    >>> out = compare_to_baseline(Engine(Staircase(10, 10, 64), 64), Sarathi(), {"same": Sarathi()},
    ...                           Workload((chat,)), [2, 20], n_requests=200, seed=0, refine=1)
    >>> out["challengers"]["same"]["capacity_change"], out["challengers"]["same"]["ttft_change"]
    (0.0, 0.0)
    """
    stability = stability_capacity(engine, workload)
    names = {"baseline": baseline, **{f"challenger:{name}": policy for name, policy in challengers.items()}}
    runs = slo_capacities(engine, names, workload, loads, n_requests=n_requests, seed=seed, refine=refine,
                          stability=stability, workers=workers)
    base = runs["baseline"]
    out = {"stability_capacity_rps": stability.rps, "baseline": base, "challengers": {}}
    cap = base["slo_capacity_rps"]
    base_ttft = next((pt["ttft_p50_s"] for pt in base["points"] if pt["rps"] == cap), None)
    for name, policy in challengers.items():
        run = runs[f"challenger:{name}"]
        row = {"run": run, "ttft_change": None, "capacity_change": None}
        if cap is not None and run["slo_capacity_rps"] is not None:
            ttft = next((pt["ttft_p50_s"] for pt in run["points"] if pt["rps"] == cap), None)
            if ttft is None:  # the challenger did not run the baseline's capacity load
                ttft = evaluate_load(engine, policy, workload, cap, n_requests=n_requests, seed=seed)["ttft_p50_s"]
            row.update(ttft_at_baseline_capacity_s=ttft, ttft_change=ttft / base_ttft - 1,
                       capacity_change=run["slo_capacity_rps"] / cap - 1,
                       capacity_change_is_lower_bound=all(pt["met"] for pt in run["points"]))
        out["challengers"][name] = row
    out["baseline_ttft_at_capacity_s"] = base_ttft
    return out
