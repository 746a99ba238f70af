"""The standard steps of the single-engine check pipeline (:mod:`llmstab.checkers.pipeline`).

Each step is small: it says when it applies and delegates the mathematics to
the module that owns it (:mod:`~llmstab.checkers.single_engine`,
:mod:`~llmstab.checkers.region_check`, :mod:`~llmstab.checkers.region_policy`,
:mod:`~llmstab.checkers.tiling`, :mod:`~llmstab.checkers.simulation_check`),
imported only when the step runs: a check on an engine without ``k_max``
never imports the LP solver, and a check that does not simulate never
imports the simulator.

Examples
--------
>>> [(s.order, s.name, s.simulates) for s in ENGINE_STEPS][:3]
[(100, 'capacity', False), (200, 'theorem-2', False), (300, 'region', False)]
"""

from __future__ import annotations

import sympy

from llmstab.fluid_models.batch_time import Tiled

from .memory_check import MemoryStep
from .pipeline import CheckContext, Step
from .verdict import Evidence, Verdict

__all__ = ["CapacityStep", "Theorem2Step", "RegionStep", "RegionPolicyStep", "TilingStep", "SettleLoadStep",
           "EmpiricalCapacityStep", "ENGINE_STEPS"]


def _has_k_max(ctx: CheckContext) -> bool:
    return ctx.spec.engine.max_batch_requests is not None


class CapacityStep(Step):
    """The exact scalar capacity ``max_b b/t_b`` and the offered load against it."""

    name, order = "capacity", 100

    def run(self, ctx: CheckContext) -> None:
        from .single_engine import capacity_summary, load_summary

        spec, cap = ctx.spec, ctx.exact_capacity
        ctx.subject = f"{spec.policy.label} on one engine (b_max = {spec.engine.token_budget})"
        ctx.capacity = capacity_summary(cap, spec.workload)
        ctx.load = load_summary(spec.workload, cap)


class Theorem2Step(Step):
    """Li-Dai-Peng Theorem 2: the load verdict and the policy verdict (engines without ``k_max``)."""

    name, order = "theorem-2", 200

    def applies(self, ctx: CheckContext) -> bool:
        return not _has_k_max(ctx)

    def run(self, ctx: CheckContext) -> None:
        from .single_engine import load_verdict, policy_verdict

        spec, cap = ctx.spec, ctx.exact_capacity
        ctx.load_verdict = load_verdict(spec.engine, spec.workload, cap, ctx.work)
        ctx.policy_verdict = policy_verdict(spec.engine, cap, ctx.work)


class RegionStep(Step):
    """``k_max``: the load against the capacity region (Li-Dai-Peng Section 6), certified exactly.

    A load inside the region is carried by *some* scheduler (the witness's
    static mix), which does not make this policy stable: the load verdict is
    then ``inconclusive``, for the simulation steps to settle. The policy
    verdict stays ``inconclusive`` unless :class:`RegionPolicyStep` simulates.
    """

    name, order = "region", 300

    def applies(self, ctx: CheckContext) -> bool:
        return _has_k_max(ctx)

    def run(self, ctx: CheckContext) -> None:
        from llmstab.fluid_models.region import load_vector

        from .region_check import check_load_region, region_summary

        spec, region = ctx.spec, ctx.region
        cert = ctx.certificate(load_vector(spec.workload))
        load = check_load_region(spec.engine, spec.workload, region, cert=cert)
        ctx.capacity = {**ctx.capacity, "region": region_summary(region), "margin": cert.margin,
                        "exact_margin": None if cert.margin is None else str(cert.margin), "position": cert.position}
        verdict, evidence = load.verdict, [*load.evidence, Evidence(
            "note", "the scalar capacity above ignores k_max; the region's corners bound what the engine carries with it",
            {"k_max": spec.engine.max_batch_requests})]
        if verdict == "stable":  # some scheduler carries the load; that does not make this policy stable
            verdict = "inconclusive"
            evidence.insert(0, Evidence("note", "the load lies inside the capacity region, so some scheduler (the "
                                        f"witness's static batch mix) carries it; no theorem says whether "
                                        f"{spec.policy.label} does", {}))
        ctx.load_verdict = Verdict(verdict, evidence)
        ctx.policy_verdict = Verdict("inconclusive", [Evidence(
            "note", "simulation skipped; with k_max no theorem decides", {"k_max": spec.engine.max_batch_requests})])


class RegionPolicyStep(Step):
    """``k_max``: the policy simulated at a load strictly inside the region, a divergence explained by the LP."""

    name, order, simulates = "region-policy", 310, True

    def applies(self, ctx: CheckContext) -> bool:
        return _has_k_max(ctx)

    def run(self, ctx: CheckContext) -> None:
        from .region_policy import check_policy_region

        spec = ctx.spec
        ctx.policy_verdict = check_policy_region(spec.engine, spec.policy, spec.workload, ctx.region, seed=ctx.seed,
                                                 certify=ctx.certificate)


class TilingStep(Step):
    """Tiled batch time: optimal tiling and Bari-Hegde-de Veciana Theorems 1-2.

    When RAD meets Theorem 2's assumptions its policy verdict becomes
    ``maximally-stable`` (work conservation is sufficient for Li-Dai-Peng's
    theorem, not necessary) and an undecided load below Theorem 1's bound is
    ``stable`` by Theorem 2; otherwise the tiling findings join the policy's evidence.
    """

    name, order = "tiling", 400

    def applies(self, ctx: CheckContext) -> bool:
        return isinstance(ctx.spec.engine.batch_time, Tiled)

    def run(self, ctx: CheckContext) -> None:
        from .errors import InputError
        from .tiling import tiling_findings

        spec = ctx.spec
        try:
            found = tiling_findings(spec.engine, spec.policy, spec.workload, simulate=False, seed=ctx.seed)
        except InputError as exc:
            ctx.policy_verdict = Verdict(ctx.policy_verdict.verdict, [
                *ctx.policy_verdict.evidence, Evidence("note", f"optimal tiling not checked: {exc}", {})])
            return
        ctx.extra = {**ctx.extra, "tiling": found.numbers}
        if found.policy.verdict != "maximally-stable":
            ctx.policy_verdict = Verdict(ctx.policy_verdict.verdict, [*ctx.policy_verdict.evidence,
                                                                      *found.policy.evidence])
            return
        ctx.policy_verdict = found.policy
        if ctx.load_verdict.verdict == "inconclusive" and found.load.verdict == "stable":
            ctx.load_verdict = Verdict("stable", [*found.load.evidence, found.decisive])


class SettleLoadStep(Step):
    """An ``inconclusive`` load settled by simulation (never a critically loaded one: no finite run tells)."""

    name, order, simulates = "settle-load", 800, True

    def applies(self, ctx: CheckContext) -> bool:
        capacity = ctx.capacity.get("tokens_per_s")
        critical = (capacity is not None and ctx.spec.workload.token_rate == capacity) or \
            ctx.capacity.get("position") == "boundary"
        return ctx.load_verdict.verdict == "inconclusive" and not critical

    def run(self, ctx: CheckContext) -> None:
        from .simulation_check import settle_load

        spec = ctx.spec
        scalar = None if _has_k_max(ctx) else ctx.capacity.get("tokens_per_s")  # with k_max: a region
        settled = settle_load(spec.engine, spec.policy, spec.workload, seed=ctx.seed, capacity_tokens_per_s=scalar)
        note = Evidence("note", "theory left this load undecided, so it was settled by simulation",
                        {"theory": [e.to_json() for e in ctx.load_verdict.evidence]})
        ctx.load_verdict = Verdict(settled.verdict, [*settled.evidence, note])


class EmpiricalCapacityStep(Step):
    """A policy that is not maximally stable (scalar capacity): the load fraction where it starts to diverge."""

    name, order, simulates = "empirical-capacity", 900, True

    def applies(self, ctx: CheckContext) -> bool:
        return (ctx.policy_verdict.verdict == "not-maximally-stable" and not _has_k_max(ctx)
                and ctx.capacity.get("tokens_per_s") is not None)

    def run(self, ctx: CheckContext) -> None:
        from .simulation_check import empirical_capacity

        spec, capacity = ctx.spec, ctx.capacity["tokens_per_s"]
        fraction = spec.workload.token_rate / capacity
        unstable_here = ctx.load_verdict.verdict == "unstable" and fraction < 1
        top = fraction if unstable_here else sympy.Rational(99, 100)  # start from a load seen to diverge
        found = empirical_capacity(spec.engine, spec.policy, spec.workload, capacity, seed=ctx.seed, top=top, steps=2)
        ctx.policy_verdict = Verdict(ctx.policy_verdict.verdict, [*ctx.policy_verdict.evidence, found])


#: The standard chain, run by :func:`llmstab.checkers.pipeline.run_steps` in ``order``.
ENGINE_STEPS: list[Step] = [CapacityStep(), Theorem2Step(), RegionStep(), RegionPolicyStep(), TilingStep(),
                            MemoryStep(), SettleLoadStep(), EmpiricalCapacityStep()]
