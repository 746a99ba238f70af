"""An exact bound on what a scheduler that never mixes phases carries (vLLM, FasterTransformer).

Such a policy (:attr:`Policy.separates_phases`) forms every batch prefill-only
or decode-only, and a prefill-only batch holds whole prompts. With every prompt
no longer than ``b_max`` and memory unlimited (no preemption, so no recomputed
prompt of another length), the token count of a prefill-only batch is a sum of
prompt lengths, at most ``b_max``. So prefill-only batches run at most

    P = max { b / t_b : b <= b_max a sum of possible prompt lengths }

prefill tokens per ms, and decode-only batches at most the capacity
``C = max_b b / t_b`` (context-dependent attention only adds time). Serving a
load of ``lambda_p`` prefill and ``lambda_d`` decode tokens per ms then keeps
the engine busy at least

    F = lambda_p / P + lambda_d / C

of the time: ``F > 1`` asks for more time than there is, and the backlog
grows (Theorem 2(a)'s argument, phase by phase). When ``P < C`` the bound cuts
into the capacity region: ``F`` exceeds the utilisation ``rho = (lambda_p +
lambda_d) / C``, and the same traffic mix diverges at every load between
``rho / F`` of the capacity and the capacity, which some scheduler carries.

Examples
--------
>>> from llmstab.checkers.single_engine import capacity_of
>>> from llmstab.fluid_models.batch_time import Staircase
>>> from llmstab.fluid_models.distributions import Deterministic, Geometric
>>> from llmstab.fluid_models.engine import Engine
>>> from llmstab.fluid_models.workload import RequestClass, Workload
>>> engine = Engine(Staircase("11.28", "35.47", 128), 512)
>>> work = Workload((RequestClass("chat", 12, Deterministic(129), Geometric(112)),))
>>> bound = phase_bound(engine, work, capacity_of(engine))
>>> bound.best_prefill_batch, bound.prefill_tokens_per_ms, bound.busy_fraction > 1
(387, Exact(9675, 3829), True)
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction

import numpy as np

from llmstab.fluid_models.batch_time import BatchTimeModel
from llmstab.fluid_models.engine import Engine
from llmstab.fluid_models.workload import Workload
from llmstab.theory.capacity import EngineCapacity
from llmstab.theory.exact_linalg import Exact

from .pipeline import CheckContext, Step
from .verdict import Evidence, Verdict

__all__ = ["PhaseBound", "phase_bound", "witness_bound", "prompt_sums", "readable", "PhaseBoundStep"]

#: The largest (sizes x budget) the sums of prompt lengths are enumerated for; beyond it no bound is given.
MAX_SUM_WORK = 20_000_000
#: Relative tolerance of the floating-point screen before the exact comparison.
_SCREEN = 1e-9


def prompt_sums(lengths: np.ndarray, b_max: int) -> np.ndarray:
    """Whether each token count ``0..b_max`` is a sum of ``lengths`` (each used any number of times).

    >>> np.flatnonzero(prompt_sums(np.array([129]), 512)).tolist()
    [0, 129, 258, 387]
    >>> np.flatnonzero(prompt_sums(np.array([3, 5]), 9)).tolist()
    [0, 3, 5, 6, 8, 9]
    """
    reach = np.zeros(b_max + 1, dtype=bool)
    reach[0] = True
    for v in (int(x) for x in lengths if 0 < x <= b_max):
        step = v
        while step <= b_max:  # doubling: after it, reach is closed under adding v
            reach[step:] |= reach[:b_max + 1 - step]
            step *= 2
    return reach


@dataclass(frozen=True)
class PhaseBound:
    """The bound of this module for one engine and workload (exact numbers, tokens per ms)."""

    best_prefill_batch: int
    prefill_tokens_per_ms: Exact
    capacity_tokens_per_ms: Exact
    prefill_load_per_ms: Exact
    decode_load_per_ms: Exact

    @property
    def busy_fraction(self) -> Exact:
        """``F``: the least fraction of the time the load keeps the engine busy."""
        return self.prefill_load_per_ms / self.prefill_tokens_per_ms + \
            self.decode_load_per_ms / self.capacity_tokens_per_ms

    @property
    def utilisation(self) -> Exact:
        """``rho``: the load over the capacity."""
        return (self.prefill_load_per_ms + self.decode_load_per_ms) / self.capacity_tokens_per_ms

    @property
    def cuts_capacity(self) -> bool:
        """Whether the bound excludes loads inside the capacity (``F > rho``: prefill batches fall short)."""
        return self.busy_fraction > self.utilisation

    def data(self) -> dict:
        """The exact numbers, for evidence."""
        return {"best_prefill_batch_tokens": self.best_prefill_batch,
                "prefill_tokens_per_ms": self.prefill_tokens_per_ms,
                "capacity_tokens_per_ms": self.capacity_tokens_per_ms,
                "prefill_load_tokens_per_ms": self.prefill_load_per_ms,
                "decode_load_tokens_per_ms": self.decode_load_per_ms,
                "busy_fraction": self.busy_fraction, "utilisation": self.utilisation,
                "diverges_above_fraction_of_capacity": self.utilisation / self.busy_fraction}


def _extreme_rate(model: BatchTimeModel, sizes: np.ndarray, *, largest: bool) -> int:
    """The batch size of ``sizes`` whose rate ``b/t_b`` is the largest (else the smallest), exactly: screened in
    floating point, the near-extreme sizes compared in Fractions (ties to the larger size, else the smaller)."""
    rates = sizes / np.asarray(model(sizes), dtype=float)
    near = sizes[rates >= rates.max() * (1 - _SCREEN)] if largest else sizes[rates <= rates.min() * (1 + _SCREEN)]
    pick = max if largest else min
    return int(pick(near.tolist(), key=lambda b: (Fraction(b) / model.exact(b), b)))


def phase_bound(engine: Engine, workload: Workload, capacity: EngineCapacity) -> PhaseBound | None:
    """The bound for ``workload`` on ``engine``, or None where it does not hold or says nothing.

    None when a prompt may exceed ``b_max`` (it is served in budget-sized
    pieces), KV memory is limited (a preempted request is recomputed with a
    longer prompt), there is no prefill, or the sums are too many to enumerate
    (:data:`MAX_SUM_WORK`).
    """
    b_max = engine.token_budget
    prompts = [c.prompt for c in workload.classes]
    if engine.has_memory_model or any(p.max is None or p.max > b_max for p in prompts) or not workload.prefill_rate:
        return None
    lengths = np.unique(np.concatenate([p.support_up_to(b_max) for p in prompts]))
    if lengths.size * b_max > MAX_SUM_WORK:
        return None
    best = _extreme_rate(engine.batch_time, np.flatnonzero(prompt_sums(lengths, b_max)[1:]) + 1, largest=True)
    return PhaseBound(best, Exact(best / engine.batch_time.exact(best)), Exact(capacity.tokens_per_ms),
                      Exact(workload.prefill_rate / 1000), Exact(workload.decode_rate / 1000))


def witness_bound(engine: Engine, capacity: EngineCapacity) -> PhaseBound | None:
    """The bound for a traffic mix of this module's choosing, one that the capacity region holds and a policy that
    never mixes phases cannot carry near capacity; None when there is none (or memory is limited).

    The mix: prompts of ``p`` tokens, ``b_max/2 < p <= b_max`` (two never share a prefill batch, so
    ``P = p/t_p``), the least efficient such ``p``, and one output token each. Its loads are per request per ms.

    >>> from llmstab.checkers.single_engine import capacity_of
    >>> from llmstab.fluid_models.batch_time import Staircase
    >>> engine = Engine(Staircase("11.28", "35.47", 128), 512)
    >>> w = witness_bound(engine, capacity_of(engine))
    >>> w.best_prefill_batch, w.utilisation / w.busy_fraction
    (257, Exact(987882, 1510261))
    """
    if engine.has_memory_model:
        return None
    b_max, model = engine.token_budget, engine.batch_time
    p = _extreme_rate(model, np.arange(b_max // 2 + 1, b_max + 1), largest=False)
    bound = PhaseBound(p, Exact(p / model.exact(p)), Exact(capacity.tokens_per_ms), Exact(p), Exact(1))
    return bound if bound.cuts_capacity else None


class PhaseBoundStep(Step):
    """A policy that never mixes phases: the load is unstable when ``F > 1``, and the policy is not maximally
    stable when ``F > rho`` (exact), whatever theory said before."""

    name, order = "phase-bound", 307

    def applies(self, ctx: CheckContext) -> bool:
        return (ctx.spec.policy.separates_phases and ctx.spec.engine.max_batch_requests is None
                and not ctx.extra.get("long_prompts_blocked"))

    def run(self, ctx: CheckContext) -> None:
        label = ctx.spec.policy.label
        bound = phase_bound(ctx.spec.engine, ctx.spec.workload, ctx.exact_capacity)
        if bound is None or not bound.cuts_capacity:  # this mix proves nothing: one of the module's choosing may
            witness = witness_bound(ctx.spec.engine, ctx.exact_capacity)
            if witness is not None:
                ctx.policy_verdict = Verdict("not-maximally-stable", [*ctx.policy_verdict.evidence,
                                                                       _witness_evidence(label, witness)])
        if bound is None:
            return
        if bound.busy_fraction > 1 and ctx.load_verdict.verdict == "inconclusive":
            ctx.load_verdict = Verdict("unstable", [_load_evidence(label, bound), Evidence(
                "note", "Theorem 2 leaves this load undecided for a policy that is not work-conserving; the "
                "phase bound decides it", {"theory": [e.to_json() for e in ctx.load_verdict.evidence]})])
        if bound.cuts_capacity:
            ctx.extra = {**ctx.extra, "phase_bound": bound.data()}
            ctx.policy_verdict = Verdict("not-maximally-stable", [*ctx.policy_verdict.evidence,
                                                                   _policy_evidence(label, bound)])


def _why(label: str, bound: PhaseBound) -> str:
    from .growth import duration

    took_s = float(bound.best_prefill_batch / bound.prefill_tokens_per_ms) / 1000
    return (f"{label} never mixes phases and its prefill-only batches hold whole prompts, so they hold at best "
            f"{bound.best_prefill_batch:,} tokens per {duration(took_s)} = {float(bound.prefill_tokens_per_ms):.4g} "
            "prefill tokens/ms (sums of prompt lengths up to b_max), and its decode-only batches at most the "
            f"capacity {float(bound.capacity_tokens_per_ms):.4g} tokens/ms")


def readable(x: Fraction, scale: int = 1, unit: str = "") -> str:
    """``x * scale`` with enough digits to tell it from 1 (``scale`` 100: a percentage), never in e-notation.

    >>> readable(Fraction(723, 848), 100, "%"), readable(Fraction(10**7 + 1, 10**7), 1, " x")
    ('85.3%', '1.0000001 x')
    """
    gap = abs(float(x) - 1)
    digits = 1 if gap == 0 else max(1, min(15, -math.floor(math.log10(gap)) - (2 if scale == 100 else 0) + 1))
    text = f"{float(x) * scale:.{max(digits, 1 if scale == 100 else 3)}f}".rstrip("0").rstrip(".")
    return text + unit


def _load_evidence(label: str, bound: PhaseBound) -> Evidence:
    share_p = bound.prefill_load_per_ms / bound.prefill_tokens_per_ms
    return Evidence("certificate", f"{_why(label, bound)}: this load keeps prefill batches busy {float(share_p):.1%} "
                    f"of the time and decode batches {float(bound.busy_fraction - share_p):.1%}, together "
                    f"{readable(bound.busy_fraction, 100, '%')} > 100% (exact comparison), so the backlog grows",
                    bound.data())


def _policy_evidence(label: str, bound: PhaseBound) -> Evidence:
    above = bound.utilisation / bound.busy_fraction
    return Evidence("certificate", f"{_why(label, bound)}: this traffic mix takes "
                    f"{readable(bound.busy_fraction / bound.utilisation, 1, ' x')} the engine time a work-conserving "
                    f"policy needs, so at every load above {readable(above, 100, '%')} of the capacity {label} needs "
                    "more than all the time and diverges, while a work-conserving policy carries every load below "
                    "the capacity (exact comparison)", bound.data())


def _witness_evidence(label: str, bound: PhaseBound) -> Evidence:
    above = bound.utilisation / bound.busy_fraction
    p = bound.best_prefill_batch
    return Evidence("certificate", f"{label} never mixes phases and its prefill-only batches hold whole prompts: "
                    f"with prompts of {p:,} tokens (two never fit in b_max) and one output token each, its prefill "
                    f"batches run at most {float(bound.prefill_tokens_per_ms):.4g} tokens/ms, below the capacity "
                    f"{float(bound.capacity_tokens_per_ms):.4g} tokens/ms, so that traffic mix diverges at every "
                    f"load above {readable(above, 100, '%')} of the capacity, which a work-conserving policy "
                    "carries (exact comparison; the same bound as for this load's mix, on a mix chosen to show it)",
                    {**bound.data(), "witness_prompt_tokens": p, "witness_output_tokens": 1})
