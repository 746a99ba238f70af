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
[(50, 'k-max', False), (100, 'capacity', False), (200, 'theorem-2', False)]
"""

from __future__ import annotations

from llmstab.fluid_models.batch_time import Tiled

from .memory_check import MemoryStep
from .phase_bound import PhaseBoundStep
from .pipeline import CheckContext, Step
from .verdict import Evidence, Verdict

__all__ = ["CapacityStep", "Theorem2Step", "RegionStep", "RegionPolicyStep", "TilingStep", "SettleLoadStep",
           "EmpiricalCapacityStep", "NonBindingKMaxStep", "ConsistencyStep", "LongPromptsStep", "LongPromptsNoteStep",
           "PhaseBoundStep", "ENGINE_STEPS"]


def _has_k_max(ctx: CheckContext) -> bool:
    return ctx.spec.engine.max_batch_requests is not None


class NonBindingKMaxStep(Step):
    """A ``k_max`` that can never bind (``k_max >= b_max``: every request in a batch brings a token) is dropped.

    The check then runs as without it (Theorem 2 instead of the region), and
    :class:`ConsistencyStep` says so in the evidence of both verdicts.
    """

    name, order = "k-max", 50

    def applies(self, ctx: CheckContext) -> bool:
        k_max = ctx.spec.engine.max_batch_requests
        return k_max is not None and k_max >= ctx.spec.engine.token_budget

    def run(self, ctx: CheckContext) -> None:
        from dataclasses import replace

        engine = ctx.spec.engine
        ctx.extra = {**ctx.extra, "k_max_not_binding": {"k_max": engine.max_batch_requests,
                                                        "b_max": engine.token_budget}}
        ctx.spec = replace(ctx.spec, engine=replace(engine, max_batch_requests=None))


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
        return _has_k_max(ctx) and not _blocked(ctx)

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
        if found.policy.verdict == "inconclusive" and ctx.policy_verdict.verdict == "not-maximally-stable" and \
                getattr(spec.policy, "name", "") == "rad":  # RAD idles on purpose: that refutes nothing
            ctx.policy_verdict = Verdict("inconclusive", [*ctx.policy_verdict.evidence, *found.policy.evidence, Evidence(
                "note", "work conservation is sufficient for Li-Dai-Peng's Theorem 2(b), not necessary: RAD leaves "
                "budget unused to keep whole tiles by design; with Bari's Theorem 2 assumptions not all met, maximal "
                "stability is neither shown nor refuted here", {})])
            return
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
        return ctx.load_verdict.verdict == "inconclusive" and not critical and not _blocked(ctx)

    def run(self, ctx: CheckContext) -> None:
        from .growth import fluid_prediction
        from .simulation_budget import WorkBudget
        from .simulation_check import run_until_settled, settle_load

        spec = ctx.spec
        seen = _diverging_run_at_the_load(ctx.policy_verdict)
        if seen is not None:  # the policy step already saw this very load diverge: the same run decides it
            ctx.load_verdict = Verdict("unstable", [seen, Evidence(
                "note", "theory left this load undecided; the policy step's simulation of this very load diverged",
                {"theory": [e.to_json() for e in ctx.load_verdict.evidence]})])
            return
        scalar = None if _has_k_max(ctx) else ctx.capacity.get("tokens_per_s")  # with k_max: a region
        fluid = None if scalar is None else fluid_prediction(spec.workload, scalar)
        run = ctx.memo("settle-run", lambda: run_until_settled(
            spec.engine, spec.policy, spec.workload, seed=ctx.seed, fluid_rate=fluid,
            budget=ctx.memo("simulation-budget", WorkBudget)))
        settled = settle_load(spec.engine, spec.policy, spec.workload, seed=ctx.seed, capacity_tokens_per_s=scalar,
                              run=run)
        note = Evidence("note", "theory left this load undecided, so it was settled by simulation",
                        {"theory": [e.to_json() for e in ctx.load_verdict.evidence]})
        ctx.load_verdict = Verdict(settled.verdict, [*settled.evidence, note])


class EmpiricalCapacityStep(Step):
    """A policy that is not maximally stable (scalar capacity): the load fraction where it starts to diverge."""

    name, order, simulates = "empirical-capacity", 900, True

    def applies(self, ctx: CheckContext) -> bool:
        return (ctx.policy_verdict.verdict == "not-maximally-stable" and not _has_k_max(ctx)
                and ctx.capacity.get("tokens_per_s") is not None and not _blocked(ctx)
                and not ctx.extra.get("phase_bound"))  # the phase bound already names loads it cannot carry

    def run(self, ctx: CheckContext) -> None:
        from llmstab.theory.exact_linalg import Exact

        from .simulation_budget import WorkBudget
        from .simulation_check import empirical_capacity

        spec, capacity = ctx.spec, ctx.capacity["tokens_per_s"]
        fraction = spec.workload.token_rate / capacity
        unstable_here = ctx.load_verdict.verdict == "unstable" and fraction < 1
        top = fraction if unstable_here else Exact(99, 100)  # start from a load seen to diverge
        found = empirical_capacity(spec.engine, spec.policy, spec.workload, capacity, seed=ctx.seed, top=top, steps=2,
                                   budget=ctx.memo("simulation-budget", WorkBudget),
                                   top_run=ctx.stored("settle-run") if unstable_here else None)
        ctx.policy_verdict = Verdict(ctx.policy_verdict.verdict, [*ctx.policy_verdict.evidence, found])


def _diverging_run_at_the_load(verdict: Verdict) -> Evidence | None:
    """The policy verdict's simulation of the load itself (scale 1) when it diverged, else ``None``."""
    for e in verdict.evidence:
        if e.kind == "simulation" and e.data.get("load_scale") == 1 and e.data.get("trend") == "diverging":
            return e
    return None


def _strictly_inside(ctx: CheckContext) -> bool:
    """Whether the load lies strictly inside the capacity (the region's interior when ``k_max`` binds)."""
    capacity = ctx.capacity.get("tokens_per_s")
    below = capacity is not None and ctx.spec.workload.token_rate < capacity
    return below and (not _has_k_max(ctx) or ctx.capacity.get("position") == "inside")


def _long_prompt_classes(ctx: CheckContext) -> list[dict]:
    """The classes whose prompts may exceed ``b_max``, for a policy with the ``long_prompts`` option."""
    if getattr(ctx.spec.policy, "long_prompts", None) is None:
        return []
    b_max = ctx.spec.engine.token_budget
    return [{"class": c.name, "longest_prompt": c.prompt.max} for c in ctx.spec.workload.classes
            if c.prompt.max is None or c.prompt.max > b_max]


def _prompts_text(ctx: CheckContext, classes: list[dict]) -> str:
    """``class long (prompts up to 290 tokens), longer than b_max = 128``: the classes with prompts over ``b_max``."""
    def one(c: dict) -> str:
        top = "unbounded" if c["longest_prompt"] is None else f"up to {c['longest_prompt']:,} tokens"
        return f"{c['class']} (prompts {top})"

    names = ", ".join(one(c) for c in classes)
    return f"class{'es' if len(classes) > 1 else ''} {names}, longer than b_max = {ctx.spec.engine.token_budget:,}"


def _blocked(ctx: CheckContext) -> bool:
    """Whether :class:`LongPromptsStep` found the queue blocked for good (nothing left to simulate)."""
    return bool(ctx.extra.get("long_prompts_blocked"))


class LongPromptsStep(Step):
    """``long_prompts: reject``: a prompt longer than ``b_max`` is never admitted and blocks the queue behind it.

    The literal whole-prompt rule of a scheduler that never chunks a prefill
    (vLLM, FasterTransformer) admits prompts first come, first served while
    they fit whole in the budget; a prompt longer than ``b_max`` never fits, so
    once one arrives no later prompt is ever admitted and the backlog grows
    without bound, however light the load. The input is valid (the user asks
    what this rule does with this traffic), so the answer is a verdict, not an
    input error: the load is ``unstable`` and the policy ``not-maximally-stable``
    (the same mix at any lower rate lies inside the capacity region and blocks
    too), and the simulation steps are skipped (the engine would only stall).
    """

    name, order = "long-prompts", 305

    def applies(self, ctx: CheckContext) -> bool:
        return getattr(ctx.spec.policy, "long_prompts", None) == "reject" and bool(_long_prompt_classes(ctx))

    def run(self, ctx: CheckContext) -> None:
        classes = _long_prompt_classes(ctx)
        data = {"long_prompts": "reject", "b_max": ctx.spec.engine.token_budget, "classes": classes}
        ctx.extra = {**ctx.extra, "long_prompts_blocked": data}
        why = (f"with long_prompts: reject, {_prompts_text(ctx, classes)}: such a prompt never fits whole in a "
               "batch, so it is never admitted, and whole-prompt admission being first come, first served, "
               "no prompt behind it is admitted either")
        ctx.load_verdict = Verdict("unstable", [Evidence(
            "counterexample", f"{why}; once one arrives the backlog grows without bound", data),
            *ctx.load_verdict.evidence])
        ctx.policy_verdict = Verdict("not-maximally-stable", [Evidence(
            "counterexample", f"{why}; this mix at any lower rate, inside the capacity region, blocks the same way",
            data), *ctx.policy_verdict.evidence])


class LongPromptsNoteStep(Step):
    """``long_prompts: split`` (the default) with prompts longer than ``b_max``: both verdicts name the choice.

    Serving such a prompt in budget-sized pieces is a modelling choice (the
    literal rule would block, :class:`LongPromptsStep`) on which the verdicts
    may depend, so the evidence of each says it was made.
    """

    name, order = "long-prompts-note", 995

    def applies(self, ctx: CheckContext) -> bool:
        return getattr(ctx.spec.policy, "long_prompts", None) == "split" and bool(_long_prompt_classes(ctx))

    def run(self, ctx: CheckContext) -> None:
        classes = _long_prompt_classes(ctx)
        note = Evidence("note", f"with long_prompts: split (the default), {_prompts_text(ctx, classes)}, are served "
                        "alone in budget-sized pieces over consecutive prefill-only batches; under long_prompts: "
                        "reject (the literal whole-prompt rule) they would block the queue and the load would be "
                        "unstable", {"long_prompts": "split", "b_max": ctx.spec.engine.token_budget, "classes": classes})
        ctx.load_verdict = Verdict(ctx.load_verdict.verdict, [*ctx.load_verdict.evidence, note])
        ctx.policy_verdict = Verdict(ctx.policy_verdict.verdict, [*ctx.policy_verdict.evidence, note])


class ConsistencyStep(Step):
    """The two verdicts agree: a load seen to diverge strictly inside capacity makes the policy not maximally stable.

    Also names a ``k_max`` dropped by :class:`NonBindingKMaxStep` in both verdicts.
    """

    name, order = "consistency", 990

    def applies(self, ctx: CheckContext) -> bool:
        return bool(ctx.extra.get("k_max_not_binding")) or (
            ctx.load_verdict.verdict == "unstable" and ctx.policy_verdict.verdict == "inconclusive")

    def run(self, ctx: CheckContext) -> None:
        load, policy = ctx.load_verdict, ctx.policy_verdict
        runs = [e for e in load.evidence if e.kind == "simulation"]
        if load.verdict == "unstable" and runs and policy.verdict == "inconclusive" and _strictly_inside(ctx):
            ctx.policy_verdict = Verdict("not-maximally-stable", [*policy.evidence, Evidence(
                "counterexample", f"{ctx.spec.policy.label} diverges at this load, which lies strictly inside "
                "the capacity region (some scheduler carries it): the load verdict's run is the counterexample",
                {"run": runs[0].data})])
        dropped = ctx.extra.get("k_max_not_binding")
        if dropped:
            note = Evidence("note", f"k_max = {dropped['k_max']} is not binding: a batch of at most b_max = "
                            f"{dropped['b_max']} tokens never holds more than {dropped['b_max']} requests, so the "
                            "engine was checked as without k_max", dict(dropped))
            ctx.load_verdict = Verdict(ctx.load_verdict.verdict, [*ctx.load_verdict.evidence, note])
            ctx.policy_verdict = Verdict(ctx.policy_verdict.verdict, [*ctx.policy_verdict.evidence, note])


#: The standard chain, run by :func:`llmstab.checkers.pipeline.run_steps` in ``order``.
ENGINE_STEPS: list[Step] = [NonBindingKMaxStep(), CapacityStep(), Theorem2Step(), RegionStep(), LongPromptsStep(),
                            PhaseBoundStep(), RegionPolicyStep(), TilingStep(), MemoryStep(), SettleLoadStep(),
                            EmpiricalCapacityStep(), ConsistencyStep(), LongPromptsNoteStep()]
