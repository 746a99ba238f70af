"""Stability of one engine without a request limit: the capacity and Li-Dai-Peng Theorem 2's verdicts.

The functions the check pipeline's first steps call
(:mod:`llmstab.checkers.engine_steps`):

1. the engine's exact capacity ``max_b b / t_b`` (:func:`capacity_of`,
   :func:`llmstab.theory.capacity.engine_capacity`);
2. the verdicts, given the policy's work conservation
   (:func:`llmstab.checkers.work_conservation.check_work_conservation`), each
   citing the theorem whose hypotheses were checked:

* load above capacity: ``unstable`` for every scheduler (Li-Dai-Peng Theorem 2(a),
  in the form "no batch sequence serves more than ``max_b b/t_b`` tokens per ms");
* load below ``b_max / t_{b_max}`` with a work-conserving policy: ``stable``
  (Theorem 2(b)), with the negative Foster drift of ``V`` per full batch;
* a work-conserving policy when a full batch is not the most efficient one:
  loads between ``b_max / t_{b_max}`` and the capacity diverge under it (it fills
  every batch once the backlog is large) though another scheduler carries them;
* otherwise ``inconclusive``, saying why.

Examples
--------
>>> from llmstab.checkers.spec import load_engine_spec
>>> from llmstab.checkers.work_conservation import check_work_conservation
>>> spec = load_engine_spec("examples/codellama34b_a100_sarathi.yaml")
>>> cap, work = capacity_of(spec.engine), check_work_conservation(spec.policy, random_states=0)
>>> load_verdict(spec.engine, spec.workload, cap, work).verdict, policy_verdict(spec.engine, cap, work).verdict
('stable', 'maximally-stable')
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from llmstab.fluid_models.engine import Engine
from llmstab.fluid_models.workload import Workload
from llmstab.theory.capacity import EngineCapacity

from .verdict import Evidence, Verdict

if TYPE_CHECKING:  # the scan is compiled: its module is imported where a scan runs
    from .work_conservation import WorkConservationResult

__all__ = ["capacity_of", "load_verdict", "policy_verdict", "capacity_summary", "load_summary"]

THEOREM_2A = "Li-Dai-Peng (arXiv 2504.07347) Theorem 2(a)"
THEOREM_2B = "Li-Dai-Peng (arXiv 2504.07347) Theorem 2(b)"


def capacity_of(engine: Engine) -> EngineCapacity:
    """The exact token capacity of ``engine`` (without a request limit): :attr:`Engine.capacity`.

    >>> from llmstab.fluid_models.batch_time import Staircase
    >>> capacity_of(Engine(Staircase("11.28", "35.47", 128), token_budget=512)).tokens_per_ms
    Exact(12800, 3829)
    """
    return engine.capacity


def capacity_summary(capacity: EngineCapacity, workload: Workload) -> dict:
    """The capacity in tokens per ms and per s, and in requests per s for this traffic mix."""
    tokens_per_request = workload.token_rate / workload.rate
    return {
        "tokens_per_ms": capacity.tokens_per_ms,
        "tokens_per_s": capacity.tokens_per_s,
        "exact_tokens_per_ms": str(capacity.tokens_per_ms),
        "best_batch_tokens": capacity.best_batch,
        "full_batch_tokens_per_ms": capacity.full_batch_rate,
        "full_batch_is_best": capacity.full_batch_is_best,
        "requests_per_s": capacity.tokens_per_s / tokens_per_request,
        "mean_tokens_per_request": tokens_per_request,
    }


def load_summary(workload: Workload, capacity: EngineCapacity) -> dict:
    """The offered load in tokens and requests per second, and as a fraction of capacity."""
    return {
        "tokens_per_s": workload.token_rate,
        "exact_tokens_per_s": str(workload.token_rate),
        "requests_per_s": workload.rate,
        "prefill_tokens_per_s": workload.prefill_rate,
        "decode_tokens_per_s": workload.decode_rate,
        "utilisation": workload.token_rate / capacity.tokens_per_s,
    }


def policy_verdict(engine: Engine, capacity: EngineCapacity, work: WorkConservationResult) -> Verdict:
    """Is the policy maximally stable on this engine?"""
    if engine.max_batch_requests is not None:
        return Verdict("inconclusive", [Evidence(
            "note", "with a request limit k_max the capacity is a region (Li-Dai-Peng Section 6) and "
            "Theorem 2(b) does not apply; work conservation alone does not decide maximal stability",
            {"k_max": engine.max_batch_requests})])
    if not work.work_conserving and work.capped_by_design:
        return work.capped_verdict()
    evidence = [work.evidence()]
    if not work.work_conserving:
        evidence.append(Evidence(
            "note", "Theorem 2(b) needs work conservation, which the counterexample breaks; "
            "the policy leaves budget unused with work waiting, which is how it loses throughput",
            {"theorem": THEOREM_2B}))
        return Verdict("not-maximally-stable", evidence)
    if not capacity.full_batch_is_best:
        evidence.append(_inefficient_full_batch(engine, capacity))
        return Verdict("not-maximally-stable", evidence)
    evidence.append(Evidence(
        "theorem",
        f"{THEOREM_2B}: a work-conserving policy is stable for every load below b_max/t_(b_max) = "
        f"{capacity.full_batch_rate} tokens/ms, and (Theorem 2(a)) no policy is stable above it, "
        f"since b*t_(b_max) <= b_max*t_b for all b <= b_max (every b screened in floating point, {_leading(capacity.candidates_checked)} compared exactly)",
        {"theorem": THEOREM_2B, "capacity_tokens_per_ms": capacity.tokens_per_ms}))
    return Verdict("maximally-stable", evidence)


def _leading(count: int) -> str:
    """``the leading candidate`` or ``the N leading candidates``.

    >>> _leading(1), _leading(3)
    ('the leading candidate', 'the 3 leading candidates')
    """
    return "the leading candidate" if count == 1 else f"the {count} leading candidates"


def _inefficient_full_batch(engine: Engine, capacity: EngineCapacity) -> Evidence:
    return Evidence(
        "counterexample",
        f"a full batch is not the most efficient: {capacity.best_batch} tokens serve "
        f"{capacity.tokens_per_ms} tokens/ms but {engine.token_budget} tokens only {capacity.full_batch_rate}; "
        "once the backlog is large a work-conserving policy fills every batch, so loads between the two rates "
        "diverge under it while a scheduler that holds batches to "
        f"{capacity.best_batch} tokens carries them",
        {"best_batch_tokens": capacity.best_batch, "best_rate_tokens_per_ms": capacity.tokens_per_ms,
         "full_batch_rate_tokens_per_ms": capacity.full_batch_rate})


def load_verdict(engine: Engine, workload: Workload, capacity: EngineCapacity,
                 work: WorkConservationResult) -> Verdict:
    """Is this load stable under this policy? Decided by Theorem 2 where it applies."""
    load_per_ms = workload.token_rate / 1000
    numbers = {"load_tokens_per_ms": load_per_ms, "capacity_tokens_per_ms": capacity.tokens_per_ms}
    if load_per_ms > capacity.tokens_per_ms:
        return Verdict("unstable", [Evidence(
            "certificate",
            f"{THEOREM_2A}: the load lambda(m_p+m_d) = {load_per_ms} tokens/ms exceeds the capacity "
            f"max_b b/t_b = {capacity.tokens_per_ms} tokens/ms (exact comparison); every scheduler's backlog "
            f"grows at least {load_per_ms - capacity.tokens_per_ms} tokens/ms",
            {**numbers, "theorem": THEOREM_2A, "growth_tokens_per_ms": load_per_ms - capacity.tokens_per_ms})])
    if load_per_ms == capacity.tokens_per_ms:
        return Verdict("inconclusive", [Evidence(
            "note", "the load equals the capacity exactly: a critically loaded system, where neither part of "
            "Theorem 2 applies (the backlog is at best null-recurrent)", numbers)])
    if engine.max_batch_requests is not None:
        return Verdict("inconclusive", [Evidence(
            "note", "with a request limit k_max the capacity is a region; the scalar theorem does not decide "
            "this load", {**numbers, "k_max": engine.max_batch_requests})])
    if not work.work_conserving:
        return Verdict("inconclusive", [Evidence(
            "note", f"the load is {float(load_per_ms / capacity.tokens_per_ms):.1%} of capacity, but the policy is "
            "not work-conserving, so Theorem 2(b) does not apply", numbers)])
    if load_per_ms >= capacity.full_batch_rate:
        return Verdict("unstable", [_inefficient_full_batch(engine, capacity), Evidence(
            "certificate", f"this load {load_per_ms} tokens/ms is at least what full batches serve "
            f"({capacity.full_batch_rate} tokens/ms), so the work-conserving policy's backlog does not drain",
            numbers)])
    t_full = engine.batch_time.exact(engine.token_budget)
    drift = load_per_ms * t_full - engine.token_budget
    return Verdict("stable", [
        Evidence("theorem",
                 f"{THEOREM_2B}: the policy is work-conserving and the load {load_per_ms} tokens/ms is below "
                 f"b_max/t_(b_max) = {capacity.full_batch_rate} tokens/ms (exact comparison)",
                 {**numbers, "theorem": THEOREM_2B, "work_conservation_states": work.states_examined}),
        Evidence("certificate",
                 f"Foster drift of V = unprocessed tokens over one full batch: lambda(m_p+m_d)*t_(b_max) - b_max = "
                 f"{drift} tokens < 0" + ("" if workload.bounded else
                 " (lengths are unbounded here, so the fluid-limit proof of Theorem 2(b), not this drift, is the argument)"),
                 {"drift_tokens_per_batch": drift, "t_bmax_ms": t_full, "bounded_lengths": workload.bounded}),
    ])
