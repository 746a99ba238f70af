"""What a policy does inside an engine's capacity region: simulation, and the LP's explanation of a failure.

* :func:`check_policy_region`: the policy verdict for an engine with ``k_max``.
  It simulates (issue 3's :func:`llmstab.fluid_models.simulation.simulator.simulate`) at a load
  strictly inside the region; divergence there means ``not-maximally-stable``.
* :func:`explain_policy`: why. The margin LP restricted to the batch types the
  policy forms while whole prompts wait (:func:`policy_batch_types`), exactly
  certified, against the types the region's witness needs.
* :func:`empirical_boundary`: how far along the load's ray the policy stays bounded.

Examples
--------
>>> from llmstab.fluid_models.batch_time import Staircase
>>> from llmstab.fluid_models.engine import Engine
>>> from llmstab.fluid_models.policies import Orca
>>> types = policy_batch_types(Orca(), Engine(Staircase("11.28", "35.47", 128), 128, 100), prompt=290)
>>> sorted({t.label for t in types if t.prefill})
['128p+0d']
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from functools import partial
from typing import TYPE_CHECKING, Callable, Sequence

import numpy as np

from llmstab.fluid_models.engine import Engine
from llmstab.fluid_models.policies import Policy
from llmstab.fluid_models.region import BatchType, CapacityRegion, TypeTable, load_vector, max_prompt_length, region_from_table
from llmstab.fluid_models.state import EngineState
from llmstab.fluid_models.workload import Workload

from .region_check import LoadCertificate, certify_load, region_for
from .verdict import Evidence, Verdict

if TYPE_CHECKING:  # the simulator is compiled: imported only when a simulation runs
    from .growth import GrowthEstimate

#: A load (prefill, decode tokens per ms) -> its exact certificate against one region.
Certifier = Callable[[Sequence[Fraction]], LoadCertificate]

__all__ = ["policy_batch_types", "explain_policy", "DivergenceTest", "simulate_trend", "check_policy_region",
           "empirical_boundary", "Certifier"]


def policy_batch_types(policy: Policy, engine: Engine, prompt: int) -> list[BatchType]:
    """The batch types ``policy`` forms while whole prompts wait (and when none waits).

    States probed: ``D`` decoding requests (every ``D`` up to 129, then 129
    values spread up to ``min(k_max, b_max) + 1``), followed either by enough
    waiting prompts of ``prompt`` tokens to fill any batch, or by none. This is the heavy-traffic regime of a load near the
    region's boundary: it shows which mixes the policy can sustain there.
    """
    b_max, k_max = engine.token_budget, engine.max_batch_requests
    limit = min(engine.request_limit, b_max)
    waiting = min(-(-b_max // max(prompt, 1)), limit) + 1
    decoders = set(range(0, min(limit, 128) + 2)) | set(np.linspace(0, limit + 1, 129).astype(int).tolist())
    types = set()
    for d in sorted(decoders | {limit - 1, limit, limit + 1}):
        for r in (0, waiting):
            if d + r == 0:
                continue
            state = EngineState((0,) * d + (prompt,) * r, (10**9,) * (d + r))
            batch = policy.form_batch(state, b_max, k_max)
            j = sum(1 for p in batch.prefill if p > 0)
            if batch.tokens:
                types.add(BatchType(batch.prefill_tokens, batch.decode_tokens, j))
    return sorted(types, key=lambda t: (t.tokens, t.decode))


def explain_policy(policy: Policy, engine: Engine, workload: Workload,
                   region: CapacityRegion | None = None, certify: Certifier | None = None) -> Evidence:
    """Why ``policy`` fails at a load inside the region: the types it forms vs the types the region needs.

    Solves the margin LP restricted to :func:`policy_batch_types` (exactly
    certified as well). A restricted margin below 1 at a load whose region
    margin exceeds 1 means: in heavy traffic the policy only forms batches that
    cannot carry this load, while the region's witness mixes other types.
    ``certify`` maps a load to its certificate against ``region`` (default:
    :func:`certify_load`; the check pipeline passes its memo, so no load is certified twice).
    """
    region = region or region_for(engine, workload)
    certify = certify or partial(certify_load, region)
    load = load_vector(workload)
    full = certify(load)
    prompt = max_prompt_length(workload) or int(round(float(workload.prefill_rate / workload.rate)))
    formed = policy_batch_types(policy, engine, prompt)
    restricted = _restricted_region(engine, formed)
    part = certify_load(restricted, load)
    needed = sorted(full.witness, key=lambda t: t.tokens)
    missing = [t for t in needed if t not in set(formed)]
    low, high = part.margin_bounds
    bound = part.margin if part.margin is not None else high
    data = {
        "region_margin": full.margin if full.margin is not None else full.margin_bounds[0],
        "policy_margin": bound,
        "region_needs": {t.label: str(f) for t, f in full.witness.items()},
        "policy_forms": [t.label for t in formed],
        "needed_types_not_formed": [t.label for t in missing],
        "policy_best_mix": {t.label: str(f) for t, f in part.witness.items()},
    }
    fails = bound is not None and bound < 1
    with_prefill = sorted((t for t in formed if t.prefill), key=lambda t: (-t.decode, t.tokens))
    summary = (f"the region carries the load with {', '.join(t.label for t in needed) or 'no batches'}; "
               f"{policy.label} (b_max = {engine.token_budget}) with whole prompts waiting forms {len(formed)} batch "
               f"types, those with prefill being {', '.join(t.label for t in with_prefill[:4])}"
               f"{', ...' if len(with_prefill) > 4 else ''}"
               + (f", missing {', '.join(t.label for t in missing)}" if missing else "")
               + (f"; restricted to them the margin is {_fmt(bound)} < 1, so in heavy traffic it cannot keep up"
                  if fails else f"; restricted to them the margin is {_fmt(bound)}, so these types do not explain a failure"))
    return Evidence("counterexample" if fails else "note", summary, data)


def _fmt(value: Fraction | None) -> str:
    return "unknown" if value is None else f"{float(value):.4g}"


def _restricted_region(engine: Engine, types: list[BatchType]) -> CapacityRegion:
    """The region spanned by the given types only (same batch-time model)."""
    x, y, j = (np.array(v, dtype=np.int64) for v in zip(*[(t.prefill, t.decode, t.prefilling) for t in types]))
    return region_from_table(TypeTable(engine.batch_time, engine.token_budget, engine.max_batch_requests, None, x, y, j))


@dataclass(frozen=True)
class DivergenceTest:
    """A simulation at ``load_scale`` times the load, judged by :func:`llmstab.checkers.growth.estimate_growth`.

    ``trend`` is ``diverging`` when the growth rate's whole confidence interval
    lies above the estimate's threshold, ``bounded`` when it lies below, else
    ``undecided`` (a wide interval is no evidence of boundedness).
    """

    policy: str
    load_scale: Fraction
    growth: GrowthEstimate

    @property
    def trend(self) -> str:
        """``diverging``, ``bounded`` or ``undecided``."""
        if self.growth.diverging:
            return "diverging"
        return "bounded" if getattr(self.growth, "bounded", False) else "undecided"

    @property
    def growth_tokens_per_s(self) -> float:
        """The estimated backlog growth rate."""
        return self.growth.rate

    def evidence(self) -> Evidence:
        """The run as a ``simulation`` evidence item."""
        return Evidence("simulation", f"{self.policy} simulated at {float(self.load_scale):.4g} x the load: "
                        f"{self.growth.statement}",
                        {"policy": self.policy, "load_scale": self.load_scale, "trend": self.trend,
                         **self.growth.to_json()})


def simulate_trend(engine: Engine, policy: Policy, workload: Workload, *, horizon_s: float | None = None,
                   seed: int = 0, arrivals: str = "poisson", load_scale: Fraction = Fraction(1)) -> DivergenceTest:
    """Simulate (:func:`llmstab.fluid_models.simulation.simulator.simulate`) and estimate the backlog's growth.

    The default horizon covers about 3000 arrivals, and at least the first
    horizon of :func:`llmstab.checkers.simulation_check.first_horizon` (four
    sojourn times: the ramp-up of a long-decode workload is not read as growth).
    """
    from llmstab.fluid_models.simulation.simulator import simulate

    from .growth import estimate_growth
    from .simulation_check import first_horizon

    horizon = horizon_s if horizon_s is not None else max(3000 / float(workload.rate),
                                                          first_horizon(engine, workload))
    run = simulate(engine, policy, workload, horizon_s=horizon, seed=seed, arrivals=arrivals)
    return DivergenceTest(policy.label, load_scale, estimate_growth(run))


def check_policy_region(engine: Engine, policy: Policy, workload: Workload, region: CapacityRegion | None = None,
                        *, horizon_s: float | None = None, arrivals: str = "poisson", seed: int = 0,
                        certify: Certifier | None = None) -> Verdict:
    """Policy verdict for an engine whose capacity is a region (``k_max`` set).

    Simulates at a load strictly inside the region (the load itself when it is
    inside, else 98% of the boundary point on its ray). Divergence there means
    ``not-maximally-stable``, with the LP explanation; otherwise
    ``inconclusive`` (no theorem covers work-conserving policies with ``k_max``).
    ``certify`` as in :func:`explain_policy`.
    """
    from .simulation_check import first_horizon

    region = region or region_for(engine, workload)
    certify = certify or partial(certify_load, region)
    load = load_vector(workload)
    cert = certify(load)
    bound = cert.margin if cert.margin is not None else cert.margin_bounds[0]
    if cert.position == "inside":
        scale = Fraction(1)
    elif bound is not None and bound > 0:
        scale = bound * Fraction(98, 100)
    else:
        return Verdict("inconclusive", [Evidence("note", "the load's position in the region could not be certified, "
                                                 "so no test load strictly inside was chosen", {})])
    test_load = workload.scaled(scale)
    trend = simulate_trend(engine, policy, test_load, horizon_s=horizon_s, seed=seed, arrivals=arrivals,
                           load_scale=scale)
    if trend.trend == "undecided" and horizon_s is None:  # a wide interval: one run 4 times longer
        longer = 4 * max(3000 / float(test_load.rate), first_horizon(engine, test_load))
        trend = simulate_trend(engine, policy, test_load, horizon_s=longer, seed=seed,
                               arrivals=arrivals, load_scale=scale)
    tested = Evidence("note", f"test load: {float(scale):.4g} x the given load, strictly inside the region "
                      f"(margin there {float(bound / scale) if bound else float('nan'):.4g})" if scale != 1 else
                      "test load: the given load, strictly inside the region", {"load_scale": scale})
    if trend.trend == "diverging":
        return Verdict("not-maximally-stable", [tested, trend.evidence(),
                                                explain_policy(policy, engine, test_load, region, certify)])
    seen = "no divergence seen" if trend.trend == "bounded" else "neither divergence nor boundedness shown"
    return Verdict("inconclusive", [tested, trend.evidence(), Evidence(
        "note", f"{seen} at a load inside the region; with a request limit no theorem makes a "
        "work-conserving policy maximally stable, so maximal stability is not claimed", {"k_max": engine.max_batch_requests})])


def empirical_boundary(engine: Engine, policy: Policy, workload: Workload, region: CapacityRegion, *,
                       arrivals: str = "poisson", steps: int = 4, arrivals_per_run: int = 1500,
                       seed: int = 0) -> tuple[Fraction, Fraction] | None:
    """The largest load on ``workload``'s ray at which ``policy`` stayed bounded in simulation (tokens/ms).

    Bisection on the scale between half the region's margin and the margin, ``steps``
    simulations of about ``arrivals_per_run`` arrivals each; ``None`` if even
    half the margin diverged.
    """
    load = load_vector(workload)
    margin = region.exact_margin(load)
    if margin is None:
        return None
    def bounded_at(scale: Fraction) -> bool:
        test = workload.scaled(scale)
        return simulate_trend(engine, policy, test, horizon_s=arrivals_per_run / float(test.rate),
                              arrivals=arrivals, seed=seed).trend == "bounded"

    lo, hi, best = margin / 2, margin, None
    for _ in range(steps):
        mid = (lo + hi) / 2
        if bounded_at(mid):
            lo, best = mid, mid
        else:
            hi = mid
    if best is None:
        if not bounded_at(lo):
            return None
        best = lo
    return (load[0] * best, load[1] * best)
