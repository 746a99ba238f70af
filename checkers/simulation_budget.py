"""The work budget of the simulations a check runs: no input makes a check simulate for minutes.

A batch of the compiled simulator costs about one unit per request present
(the policy sees the running set and the head of the queue) plus a fixed
overhead of about :data:`BATCH_OVERHEAD` units, so a run's work is counted in
*request-batches*: its batches times ``BATCH_OVERHEAD +`` the mean number of
requests present (:func:`run_cost`; one unit is about 0.13 microseconds of CPU, less for
requests that only wait in the queue). Before each run the work is predicted
from the input (:func:`cost_bound`: at most one batch per shortest batch time,
at most the arrivals present) or, better, from the run before it at the same
load (:func:`predicted_cost`: its batch rate and its crowd, extrapolated along
its trend). A run predicted to exceed what is left of the budget is not
started: the question it was to answer stays open (``inconclusive``, with the
budget in the evidence), never a hang.

Examples
--------
>>> b = WorkBudget(limit=1000)
>>> b.left(), b.data()
(1000.0, {'budget_request_batches': 1000, 'spent_request_batches': 0})
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from llmstab.fluid_models.engine import Engine
from llmstab.fluid_models.simulation.simulator import SimulationResult
from llmstab.fluid_models.workload import Workload

__all__ = ["WORK_BUDGET", "BATCH_OVERHEAD", "WorkBudget", "run_cost", "cost_bound", "predicted_cost", "next_cost",
           "crowd_cap", "pilot_horizon"]

#: Request-batches one check may simulate (about 5 s of CPU for the compiled simulator).
WORK_BUDGET = 40_000_000
#: What a batch costs beside its requests, in request-batches (measured: about 2 us a batch, 0.13 us a request).
BATCH_OVERHEAD = 15
#: Arrivals in a run are counted with this margin over their mean (Poisson spread).
ARRIVAL_MARGIN = 2


@dataclass
class WorkBudget:
    """What a check may still simulate: ``limit`` request-batches, of which ``spent`` are used."""

    limit: float = WORK_BUDGET
    spent: float = 0.0

    def left(self) -> float:
        """Request-batches still available."""
        return max(0.0, float(self.limit) - self.spent)

    def charge(self, result: SimulationResult) -> float:
        """Count ``result``'s work against the budget; returns it."""
        cost = run_cost(result)
        self.spent += cost
        return cost

    def data(self) -> dict:
        """The budget and what is spent, for evidence."""
        limit = int(self.limit) if math.isfinite(self.limit) else None
        return {"budget_request_batches": limit, "spent_request_batches": int(self.spent)}


def _mean_present(result: SimulationResult) -> float:
    """The time-average number of requests present over the run."""
    if result.end_time <= 0 or result.times.size < 2:
        return float(result.backlog_requests[-1]) if result.backlog_requests.size else 0.0
    return float(np.trapezoid(result.backlog_requests, result.times)) / result.end_time


def run_cost(result: SimulationResult) -> float:
    """The work of a run in request-batches: its batches times ``BATCH_OVERHEAD +`` the mean requests present.

    >>> from llmstab.fluid_models.batch_time import Staircase
    >>> from llmstab.fluid_models.distributions import Deterministic
    >>> from llmstab.fluid_models.policies import Sarathi
    >>> from llmstab.fluid_models.simulation.simulator import simulate
    >>> from llmstab.fluid_models.workload import RequestClass, Workload
    >>> work = Workload((RequestClass("chat", 1, Deterministic(100), Deterministic(10)),))
    >>> r = simulate(Engine(Staircase(10, 30, 128), 512), Sarathi(), work, horizon_s=100.0, seed=0)
    >>> BATCH_OVERHEAD * r.n_batches < run_cost(r) < (BATCH_OVERHEAD + 10) * r.n_batches
    True
    """
    return result.n_batches * (BATCH_OVERHEAD + _mean_present(result))


def cost_bound(engine: Engine, workload: Workload, horizon_s: float, crowd: int) -> float:
    """An upper bound on a run's work known before it runs: batches times requests present, each bounded.

    Batches: at most one per shortest batch time (:attr:`Engine.shortest_batch_ms`), and at most one per
    token arriving. Requests present: at most the arrivals (twice their mean)
    and at most the crowd limit.

    >>> from llmstab.fluid_models.batch_time import Staircase
    >>> from llmstab.fluid_models.distributions import Deterministic
    >>> from llmstab.fluid_models.workload import RequestClass, Workload
    >>> work = Workload((RequestClass("chat", 1, Deterministic(100), Deterministic(10)),))
    >>> cost_bound(Engine(Staircase(10, 30, 128), 512), work, 100.0, 5000)  # 2500 batches, 210 present
    562500.0
    """
    t_min = float(engine.shortest_batch_ms) / 1000.0
    batches = min(horizon_s / t_min, ARRIVAL_MARGIN * float(workload.token_rate) * horizon_s + 1)
    present = min(float(crowd), ARRIVAL_MARGIN * float(workload.rate) * horizon_s + 10)
    return math.ceil(batches) * (BATCH_OVERHEAD + present)


def predicted_cost(previous: SimulationResult, horizon_s: float, crowd: int) -> float:
    """A run's work predicted from a shorter ``previous`` run at the same load.

    The batch rate is the previous run's; the crowd follows its trend over its
    second half (growing linearly, never shrinking), at most ``crowd``.

    >>> from llmstab.fluid_models.batch_time import Staircase
    >>> from llmstab.fluid_models.distributions import Deterministic
    >>> from llmstab.fluid_models.policies import Sarathi
    >>> from llmstab.fluid_models.simulation.simulator import simulate
    >>> from llmstab.fluid_models.workload import RequestClass, Workload
    >>> work = Workload((RequestClass("chat", 1, Deterministic(100), Deterministic(10)),))
    >>> r = simulate(Engine(Staircase(10, 30, 128), 512), Sarathi(), work, horizon_s=100.0, seed=0)
    >>> 2 < predicted_cost(r, 400.0, 5000) / run_cost(r) < 6  # a bounded crowd: about 4 times the work
    True
    """
    end = float(previous.end_time)
    if end <= 0 or previous.n_batches == 0:
        return 0.0
    mean = _mean_present(previous)
    last = float(previous.backlog_requests[-1])
    mid = float(np.interp(end / 2, previous.times, previous.backlog_requests))
    if horizon_s > end:
        at_horizon = min(float(crowd), last + max(0.0, last - mid) / (end / 2) * (horizon_s - end))
        mean = (mean * end + (last + at_horizon) / 2 * (horizon_s - end)) / horizon_s
    return previous.n_batches / end * horizon_s * (BATCH_OVERHEAD + min(float(crowd), mean))


#: A run with fewer arrivals than this predicts nothing about a longer one (its batch rate is an idle engine's).
MIN_ARRIVALS = 50


def next_cost(engine: Engine, workload: Workload, previous: SimulationResult | None, horizon_s: float,
              crowd: int) -> float:
    """The work expected of the next run: :func:`predicted_cost` from ``previous``, never above :func:`cost_bound`.

    The bound alone when there is no previous run or it saw fewer than :data:`MIN_ARRIVALS` arrivals.

    >>> from llmstab.fluid_models.batch_time import Staircase
    >>> from llmstab.fluid_models.distributions import Deterministic
    >>> from llmstab.fluid_models.workload import RequestClass, Workload
    >>> work = Workload((RequestClass("chat", 1, Deterministic(100), Deterministic(10)),))
    >>> next_cost(Engine(Staircase(10, 30, 128), 512), work, None, 100.0, 5000)
    562500.0
    """
    bound = cost_bound(engine, workload, horizon_s, crowd)
    if previous is None or previous.trace.size < MIN_ARRIVALS:
        return bound
    return min(bound, predicted_cost(previous, horizon_s, crowd))


def crowd_cap(engine: Engine, previous: SimulationResult | None, horizon_s: float, left: float) -> int:
    """The most requests the next run may hold before it stops (a hard stop for a run that outgrows its prediction).

    As many as the budget ``left`` pays for over the run's batches (twice the
    previous run's batch rate, at most one per shortest batch), but never fewer than
    twice the largest crowd the previous run held (plus 10): a near-critical
    queue may swing far above its trend, and such a swing costs at most that.

    >>> from llmstab.fluid_models.batch_time import Staircase
    >>> crowd_cap(Engine(Staircase(10, 30, 128), 512), None, 100.0, 10_000)
    10
    """
    t_min = float(engine.shortest_batch_ms) / 1000.0
    batches = horizon_s / t_min
    floor = 10
    if previous is not None and previous.end_time > 0:
        batches = min(batches, 2 * previous.n_batches / previous.end_time * horizon_s)
        floor += 2 * int(previous.backlog_requests.max(initial=0))
    return max(floor, int(min(left / max(batches, 1.0), 2.0**62)) - BATCH_OVERHEAD)


def pilot_horizon(engine: Engine, workload: Workload, horizon_s: float, crowd: int, allowance: float) -> float:
    """The longest horizon up to ``horizon_s`` whose :func:`cost_bound` fits in ``allowance`` (a short first run).

    >>> from llmstab.fluid_models.batch_time import Staircase
    >>> from llmstab.fluid_models.distributions import Deterministic
    >>> from llmstab.fluid_models.workload import RequestClass, Workload
    >>> work = Workload((RequestClass("chat", 1, Deterministic(100), Deterministic(10)),))
    >>> h = pilot_horizon(Engine(Staircase(10, 30, 128), 512), work, 1000.0, 5000, 100_000)
    >>> 0 < h < 100
    True
    """
    low, high = 0.0, float(horizon_s)
    if cost_bound(engine, workload, high, crowd) <= allowance:
        return high
    for _ in range(60):
        mid = (low + high) / 2
        low, high = (mid, high) if cost_bound(engine, workload, mid, crowd) <= allowance else (low, mid)
    return low
