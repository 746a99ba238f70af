"""Settling load verdicts by simulation, and a policy's empirical capacity.

Where theory is silent (a policy that is not work-conserving, so Theorem 2(b)
does not apply), the engine is simulated with the policy's own kernel and the
backlog's growth rate is estimated with a confidence interval
(:mod:`llmstab.checkers.growth`). Runs start short and are lengthened (x4 each
time, to a cap) until a divergence shows or the longest run is still bounded:
a diverging run is stopped as soon as its backlog is unmistakable, a bounded
run is cheap, so the work goes where the question is hard.

This is statistical evidence, not a proof; the evidence says so and carries
the horizon, the seed, the growth estimate and its interval.

Examples
--------
>>> from llmstab.fluid_models.batch_time import Staircase
>>> from llmstab.fluid_models.distributions import Deterministic, Geometric
>>> from llmstab.fluid_models.engine import Engine
>>> from llmstab.fluid_models.policies import VLLM
>>> from llmstab.fluid_models.workload import RequestClass, Workload
>>> engine = Engine(Staircase("11.28", "35.47", 128), 512)
>>> work = Workload((RequestClass("chat", 12, Deterministic(129), Geometric(112)),))
>>> v = settle_load(engine, VLLM(), work)
>>> v.verdict, v.evidence[0].kind
('unstable', 'simulation')
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from fractions import Fraction
from typing import Callable

from llmstab.fluid_models.batch_time import exact_number
from llmstab.fluid_models.engine import Engine
from llmstab.fluid_models.policies import Policy
from llmstab.fluid_models.simulation.arrivals import Trace
from llmstab.fluid_models.simulation.simulator import SimulationResult, simulate
from llmstab.fluid_models.workload import Workload
from llmstab.theory.exact_linalg import Exact

from .errors import InputError
from .growth import GrowthEstimate, estimate_growth, fluid_prediction, number, seconds
from .simulation_budget import WorkBudget, cost_bound, crowd_cap, next_cost, pilot_horizon
from .single_engine import capacity_of
from .spec import EngineSpec
from .verdict import Evidence, Verdict, plural

__all__ = ["SettleRun", "crowd_limit", "first_horizon", "run_until_settled", "settle_load", "empirical_capacity", "simulate_spec"]

#: Horizons in units of the full-batch time ``t(b_max)``, and at least so many mean
#: interarrival times: the first run, and the longest one.
FIRST_HORIZON_BATCHES, FIRST_HORIZON_ARRIVALS = 2_500, 2_000
LAST_HORIZON_BATCHES, LAST_HORIZON_ARRIVALS = 20_000, 16_000
#: The first run lasts at least this many sojourn times ``W`` (:func:`first_horizon`).
RAMP_UP_SOJOURNS = 4
#: A run still undecided at the longest horizon gets one run this many times longer.
EXTENDED = 4
#: The smallest crowd limit: a run stops once more requests than its limit are present.
CROWD_LIMIT = 5_000
#: The largest crowd limit (memory): a run stopped there is inconclusive.
MAX_CROWD_LIMIT = 1_000_000
#: The share of the work budget the first run of a ramp (:func:`run_until_settled`) may take at most.
PILOT_SHARE = 1 / 20


def crowd_limit(engine: Engine, workload: Workload) -> int:
    """The first crowd limit of a run: ``max(5000, 4 lambda W)``, with ``W = (m_p/b_max + 1 + m_d) t(b_max)``.

    ``W`` is the time a request spends in a saturated engine that serves it a
    chunk of prefill and then one decode token per full batch; by Little's law
    ``lambda W`` is the scale of the crowd a *stable* run may hold, so a limit
    at four times that scale does not stop a run in its ramp-up.

    >>> from llmstab.fluid_models.batch_time import PiecewiseLinear
    >>> from llmstab.fluid_models.distributions import Deterministic
    >>> from llmstab.fluid_models.workload import RequestClass, Workload
    >>> work = Workload((RequestClass("long", "42.4", Deterministic(10), Deterministic(2000)),))
    >>> crowd_limit(Engine(PiecewiseLinear(100, "0.01", 8192), 32768), work)
    117340
    """
    scale = float(workload.rate) * _sojourn_s(engine, workload)
    return int(min(MAX_CROWD_LIMIT, max(CROWD_LIMIT, 4 * scale)))


@dataclass(frozen=True)
class SettleRun:
    """The last run of :func:`run_until_settled`: its growth estimate and how it was obtained.

    ``stopped_early`` says the run stopped at its crowd limit ``crowd_limit``
    (requests present) before its horizon: such a run is evidence of nothing,
    neither divergence nor boundedness (:attr:`outcome` is then ``inconclusive``).
    ``work_limit`` (the next horizon, its predicted work and the budget) says
    the next run the question needed would exceed the simulation work budget
    (:mod:`~llmstab.checkers.simulation_budget`): ``inconclusive`` as well.
    """

    growth: GrowthEstimate | None
    horizon_s: float
    requests: int
    batches: int
    seed: int
    stopped_early: bool
    crowd_limit: int = CROWD_LIMIT
    work_limit: dict | None = None

    @property
    def outcome(self) -> str:
        """``diverging``, ``bounded`` or ``inconclusive`` (a run stopped at a limit, or an undecided interval)."""
        if self.stopped_early or self.work_limit is not None or self.growth is None or \
                self.growth.trend == "undecided":
            return "inconclusive"
        return self.growth.trend

    @property
    def diverging(self) -> bool:
        """Whether the run reached its horizon with a backlog diverging."""
        return self.outcome == "diverging"

    @property
    def bounded(self) -> bool:
        """Whether the run reached its horizon with the whole growth interval below the threshold."""
        return self.outcome == "bounded"

    @property
    def statement(self) -> str:
        """The growth statement, or why the run is no evidence."""
        so_far = "" if self.growth is None else f"; up to there {self.growth.statement}"
        if self.stopped_early:
            return (f"no evidence either way: the run stopped at {seconds(self.horizon_s)}, before its horizon, "
                    f"when more than {self.crowd_limit:,} requests were present (a resource limit, not a "
                    f"divergence{so_far})")
        if self.work_limit is not None:
            w = self.work_limit
            return (f"no evidence either way: the next run ({seconds(w['next_horizon_s'])} simulated, about "
                    f"{w['predicted_request_batches']:,} request-batches) would exceed the simulation work budget "
                    f"({w['spent_request_batches']:,} of {w['budget_request_batches']:,} request-batches spent), "
                    f"so it was not run (a resource limit, not a verdict{so_far})")
        return "no growth estimate" if self.growth is None else self.growth.statement

    def data(self) -> dict:
        """The numbers, for :class:`~llmstab.checkers.verdict.Evidence`."""
        return {"growth": None if self.growth is None else self.growth.to_json(), "outcome": self.outcome, "horizon_s": self.horizon_s,
                "requests_simulated": self.requests, "batches_simulated": self.batches, "seed": self.seed,
                "stopped_early": self.stopped_early, "crowd_limit": self.crowd_limit, "work_limit": self.work_limit}


def first_horizon(engine: Engine, workload: Workload) -> float:
    """The first (shortest) run's horizon in seconds: ``max(2500 t(b_max), 2000 / lambda, 4 W)``.

    ``W = (m_p/b_max + 1 + m_d) t(b_max)`` is a request's time in a saturated
    engine: the second half of the run, where growth is judged, starts after
    the ramp-up (a backlog still filling up is not a divergence).

    >>> from llmstab.fluid_models.batch_time import Staircase
    >>> from llmstab.fluid_models.distributions import Deterministic
    >>> from llmstab.fluid_models.workload import RequestClass, Workload
    >>> work = Workload((RequestClass("chat", 10, Deterministic(100), Deterministic(10)),))
    >>> round(first_horizon(Engine(Staircase("11.28", "35.47", 128), 512), work), 6)
    382.9
    """
    t_full = float(engine.batch_time.exact(engine.token_budget)) / 1000.0
    return max(FIRST_HORIZON_BATCHES * t_full, FIRST_HORIZON_ARRIVALS / float(workload.rate),
               RAMP_UP_SOJOURNS * _sojourn_s(engine, workload))


def _sojourn_s(engine: Engine, workload: Workload) -> float:
    """``W = (m_p/b_max + 1 + m_d) t(b_max)``: a request's time in a saturated engine (s)."""
    t_full = float(engine.batch_time.exact(engine.token_budget)) / 1000.0
    return (float(workload.prefill_rate / workload.rate) / engine.token_budget + 1
            + float(workload.decode_rate / workload.rate)) * t_full


def run_until_settled(engine: Engine, policy: Policy, workload: Workload, *, seed: int = 0,
                      fluid_rate: object = None, crowd: int | None = None,
                      budget: WorkBudget | None = None) -> SettleRun:
    """Simulate with growing horizons until the backlog diverges or the longest run settles.

    The first horizon is ``max(2500 t(b_max), 2000 / lambda)``; each further run
    is 4 times longer, up to ``max(20000 t(b_max), 16000 / lambda)``. A clear
    divergence is caught by the first, short run; calling a run bounded takes
    the longest, and its whole growth interval below the threshold; a run still
    undecided there is extended once, 4 times longer, and is ``inconclusive`` if
    still undecided. A run stops early once more than ``crowd``
    requests are present (default :func:`crowd_limit`); it is then rerun with
    four times the limit, up to :data:`MAX_CROWD_LIMIT`, and a run stopped at
    that limit is ``inconclusive``: a resource limit is never read as divergence.
    Every run is charged to ``budget`` (default: a fresh
    :class:`~llmstab.checkers.simulation_budget.WorkBudget`); a run predicted
    to exceed what is left is not started and the result is ``inconclusive``.
    """
    budget = WorkBudget() if budget is None else budget
    t_full = float(engine.batch_time.exact(engine.token_budget)) / 1000.0
    horizon = first_horizon(engine, workload)
    last = max(LAST_HORIZON_BATCHES * t_full, LAST_HORIZON_ARRIVALS / float(workload.rate), horizon)
    crowd = crowd_limit(engine, workload) if crowd is None else int(crowd)
    previous, run = _ramp(engine, policy, workload, horizon, crowd, seed, budget), None
    while True:
        need = next_cost(engine, workload, previous, horizon, crowd)
        if need > budget.left():
            return _out_of_budget(run, horizon, need, budget, seed, crowd)
        previous, capped = _budgeted_run(engine, policy, workload, horizon, seed, crowd, previous, budget)
        if capped:  # stopped at the budget's crowd, not the run's: out of budget
            return _out_of_budget(run, horizon, budget.spent, budget, seed, crowd)
        stopped = previous.stopped_at_backlog is not None
        if stopped and crowd < MAX_CROWD_LIMIT:
            crowd = min(4 * crowd, MAX_CROWD_LIMIT)  # a limit is not a verdict: rerun with room
            continue
        try:
            growth = estimate_growth(previous, fluid_rate=fluid_rate)
        except ValueError:  # stopped too early for an estimate
            growth = None
        run = SettleRun(growth, previous.end_time, previous.trace.size, previous.n_batches, seed, stopped, crowd)
        if stopped or run.diverging or (horizon >= last and run.bounded) or horizon >= EXTENDED * last:
            return run
        horizon = min(4 * horizon, last) if horizon < last else EXTENDED * last  # undecided: one longer run


def _ramp(engine: Engine, policy: Policy, workload: Workload, horizon: float, crowd: int, seed: int,
          budget: WorkBudget) -> SimulationResult | None:
    """Short runs, each 4 times longer, towards ``horizon``: they size the first run (none if its bound fits).

    The first is as long as :data:`PILOT_SHARE` of the budget surely allows;
    each later one is predicted from the one before, and the ramp stops at the
    first that would not fit. The runs only measure the work; no verdict reads them.
    """
    left = budget.left()
    if cost_bound(engine, workload, horizon, crowd) <= left:
        return None
    h, result, capped = pilot_horizon(engine, workload, horizon / 4, crowd, PILOT_SHARE * left), None, False
    while 0 < h < horizon and not capped and (
            result is None or next_cost(engine, workload, result, h, crowd) <= budget.left()):
        result, capped = _budgeted_run(engine, policy, workload, h, seed, crowd, result, budget)
        h *= 4
    return result


def _budgeted_run(engine: Engine, policy: Policy, workload: Workload, horizon: float, seed: int, crowd: int,
                  previous: SimulationResult | None, budget: WorkBudget) -> tuple[SimulationResult, bool]:
    """One run charged to ``budget``, stopped at the crowd the budget pays for; True if that stopped it."""
    cap = min(crowd, crowd_cap(engine, previous, horizon, budget.left()))
    result = simulate(engine, policy, workload, horizon_s=horizon, seed=seed, max_backlog_requests=cap)
    budget.charge(result)
    return result, result.stopped_at_backlog is not None and cap < crowd


def _out_of_budget(run: SettleRun | None, horizon: float, need: float, budget: WorkBudget, seed: int,
                   crowd: int) -> SettleRun:
    """The settle result when the next run would exceed the budget: the last run's numbers, marked ``work_limit``."""
    limit = {"next_horizon_s": horizon, "predicted_request_batches": int(need), **budget.data()}
    if run is None:
        return SettleRun(None, 0.0, 0, 0, seed, False, crowd, limit)
    return replace(run, work_limit=limit)


def settle_load(engine: Engine, policy: Policy, workload: Workload, *, seed: int = 0,
                capacity_tokens_per_s: object = None, run: SettleRun | None = None,
                budget: WorkBudget | None = None) -> Verdict:
    """A load verdict from simulation: ``unstable`` if the backlog diverges, ``stable`` if it is bounded.

    ``inconclusive`` when the longest run's growth interval straddles the
    threshold, a run stopped at the crowd limit, or the next run would exceed
    the work ``budget``. The evidence (kind ``simulation``) states the growth
    estimate with its interval and horizon, and, when the capacity is given,
    the fluid prediction. ``run`` reuses a :func:`run_until_settled` result of
    this very load (the check pipeline's memo).
    """
    fluid = None if capacity_tokens_per_s is None else fluid_prediction(workload, capacity_tokens_per_s)
    run = run or run_until_settled(engine, policy, workload, seed=seed, fluid_rate=fluid, budget=budget)
    how = (f"simulated {policy.label} with its own batch kernel on {plural(run.requests, 'request')} "
           f"({plural(run.batches, 'batch')}, seed {seed}, crowd limit {plural(run.crowd_limit, 'request')})"
           if run.batches else f"{policy.label} was not simulated at this load")
    if run.diverging:
        return Verdict("unstable", [Evidence("simulation", f"{how}: the backlog is {run.statement}", run.data())])
    if run.bounded:
        return Verdict("stable", [Evidence("simulation", f"{how}: the backlog is {run.statement} "
                                           "(statistical evidence from a finite run, not a proof)", run.data())])
    return Verdict("inconclusive", [Evidence("simulation", f"{how}: {run.statement}; the load is left undecided",
                                             run.data())])




@dataclass
class _Search:
    """The state of :func:`empirical_capacity`'s search: the bracket of load fractions and every run tried."""

    probe: Callable[[Fraction], SettleRun]
    high: Fraction
    high_run: SettleRun
    low: Fraction = Exact(0)

    def halve(self, times: int) -> None:
        """Halve the diverging fraction until a bounded run appears (or no evidence either way)."""
        for _ in range(times):
            run = self.probe(self.high / 2)
            if run.bounded:
                self.low = self.high / 2
                return
            if not run.diverging:  # no evidence at this load: stop narrowing
                return
            self.high, self.high_run = self.high / 2, run

    def bisect(self, steps: int) -> None:
        """Narrow ``[low, high]`` by bisection while the runs decide."""
        for _ in range(steps if self.low > 0 else 0):
            mid = (self.low + self.high) / 2
            run = self.probe(mid)
            if run.diverging:
                self.high, self.high_run = mid, run
            elif run.bounded:
                self.low = mid
            else:
                return


def empirical_capacity(engine: Engine, policy: Policy, workload: Workload, capacity_tokens_per_s: object, *,
                       seed: int = 0, steps: int = 4, top: object = "0.99", budget: WorkBudget | None = None,
                       top_run: SettleRun | None = None) -> Evidence:
    """Search the load scale for a load inside capacity where ``policy`` diverges.

    The traffic mix of ``workload`` is scaled to a fraction ``rho`` of the true
    capacity. ``rho = top`` is tried first (``top_run``: its run, already
    simulated); while it diverges, ``rho`` is halved until a bounded run appears
    (at most 10 times), then ``steps`` bisection steps narrow the bracket
    between the largest bounded and the smallest diverging fraction. Every run
    is charged to one work ``budget`` (default: a fresh one); a probe that would
    exceed it is inconclusive and ends the search. The evidence reports the
    smallest fraction seen to diverge (a load inside the capacity region, with
    its growth estimate) and the policy's empirical capacity as the bracket
    ``[bounded, diverging]`` of fractions of the true capacity. The search
    assumes that divergence is monotone in the load.

    Examples
    --------
    >>> from llmstab.fluid_models.batch_time import Staircase
    >>> from llmstab.fluid_models.distributions import Deterministic, Geometric
    >>> from llmstab.fluid_models.engine import Engine
    >>> from llmstab.fluid_models.policies import VLLM
    >>> from llmstab.fluid_models.workload import RequestClass, Workload
    >>> engine = Engine(Staircase("11.28", "35.47", 128), 512)
    >>> work = Workload((RequestClass("chat", 12, Deterministic(129), Geometric(112)),))
    >>> from fractions import Fraction
    >>> e = empirical_capacity(engine, VLLM(), work, Fraction(51_200_000, 15316))
    >>> e.kind, 0.6 < e.data["empirical_capacity_fraction"] < 0.9
    ('counterexample', True)
    """
    capacity, budget = exact_number(capacity_tokens_per_s), WorkBudget() if budget is None else budget
    tried: list[tuple[float, str]] = []

    def probe(rho: Fraction) -> SettleRun:
        scaled = workload.scaled(rho * capacity / workload.token_rate)
        run = run_until_settled(engine, policy, scaled, seed=seed, fluid_rate=fluid_prediction(scaled, capacity),
                                budget=budget)
        tried.append((float(rho), run.outcome))
        return run

    high = exact_number(top)
    if top_run is not None:
        tried.append((float(high), top_run.outcome))
    search = _Search(probe, high, top_run or probe(high))
    if not search.high_run.diverging:
        return _no_divergence(policy, search, capacity, tried)
    search.halve(10)
    search.bisect(steps)
    return _counterexample(policy, search, capacity, tried)


def _no_divergence(policy: Policy, search: _Search, capacity: Fraction, tried: list) -> Evidence:
    """The evidence when the top load did not diverge: bounded there, or no evidence either way."""
    high, run = search.high, search.high_run
    found = "no divergence" if run.bounded else "no evidence either way"
    return Evidence("simulation", f"{found} of {policy.label} at {float(high):.0%} of capacity (there: {run.statement})",
                    {"bounded_fraction": high if run.bounded else None, "runs": tried, "capacity_tokens_per_s": capacity,
                     "empirical_capacity_fraction": float(high) if run.bounded else None})


def _counterexample(policy: Policy, search: _Search, capacity: Fraction, tried: list) -> Evidence:
    """The evidence of a divergence inside capacity, with the empirical capacity's bracket."""
    low, high = search.low, search.high
    if low > 0:
        frac = float((low + high) / 2)
        tail = (f"bounded at {float(low):.1%}, so its empirical capacity is about {frac:.1%} of the true capacity "
                f"(between {float(low):.1%} and {float(high):.1%}, by simulation)")
    else:
        frac = None
        tail = "no bounded run was seen below it, so its empirical capacity is below that (not narrowed further)"
    return Evidence(
        "counterexample",
        f"{policy.label} diverges at {float(high):.1%} of capacity ({number(float(high * capacity))} of "
        f"{number(float(capacity))} tokens/s, a load inside the capacity region): its backlog is "
        f"{search.high_run.statement}; {tail}",
        {"diverging_fraction": high, "bounded_fraction": low, "empirical_capacity_fraction": frac,
         "diverging_load_tokens_per_s": high * capacity, "capacity_tokens_per_s": capacity,
         "diverging_run": search.high_run.data(), "runs": tried})


def simulate_spec(spec: EngineSpec, *, horizon_s: float | None = None, n_requests: int | None = None, seed: int = 0,
                  arrivals: str = "poisson", trace: Trace | None = None,
                  progress: Callable[[float, float], None] | None = None) -> tuple[SimulationResult, GrowthEstimate]:
    """Simulate a single-engine input once; returns the run and its backlog's growth estimate.

    Without ``horizon_s``, ``n_requests`` or ``trace`` the horizon is
    ``max(2500 t(b_max), 2000 / lambda)`` seconds (the first run of
    :func:`run_until_settled`). A run that serves a number of requests (or a
    trace) and then drains is judged for growth over its arrival period only.
    The fluid prediction ``max(0, lambda (m_p + m_d) - capacity)`` is given only
    without a binding ``k_max`` (with one the capacity is a region, and the
    scalar prediction would say 0 where policies diverge); it is the growth of a
    policy that fills every batch, which a policy that is not work-conserving
    exceeds.
    A run too short for a growth estimate raises :class:`InputError`.

    Examples
    --------
    >>> from llmstab.checkers.spec import load_engine_spec
    >>> run, growth = simulate_spec(load_engine_spec("examples/codellama34b_a100_vllm.yaml"), seed=1)
    >>> run.seed, growth.diverging
    (1, True)
    """
    if trace is not None:
        arrivals = "trace"
    elif horizon_s is None and n_requests is None:
        horizon_s = first_horizon(spec.engine, spec.workload)
    k_max = spec.engine.max_batch_requests
    binding = k_max is not None and k_max < spec.engine.token_budget  # the scalar capacity is then not the limit
    fluid = None if trace is not None or binding else \
        fluid_prediction(spec.workload, capacity_of(spec.engine).tokens_per_s)
    try:
        result = simulate(spec.engine, spec.policy, spec.workload, n_requests=n_requests, horizon_s=horizon_s,
                          seed=seed, arrivals=arrivals, trace=trace, progress=progress)
        drained = horizon_s is None and result.trace.size > 0  # judge growth while requests were arriving
        until = float(result.trace.times[-1]) if drained else None
        return result, estimate_growth(result, fluid_rate=fluid, until=until)
    except InputError:
        raise
    except ValueError as err:  # too short a run for a growth estimate
        raise InputError("horizon", str(err)) from None
