"""SLAI (SLO-Aware LLM Inference; Bari, Hegde, de Veciana): deadline-aware decodes, shortest prompts first.

One batch, in the order of the reference scheduler (``../shared/specs/SLAI.md`` §3):

0. every request that decoded (or finished its prefill) in the previous batch
   gets a *last schedulable time* ``LST = end of that batch + TBT target -
   delta x mean batch time``, kept in its scratch float; ``delta`` is
   ``delta_high`` once the KV use reaches ``memory_limit``, else ``delta_low``;
1. *critical* decodes (``LST <= now``), earliest LST first, at most ``beta``;
2. *paused* prefills (admitted, prompt unfinished), in admission order, chunked;
3. *new* prefills, shortest prompt first (strict users first: a tighter TBT
   target sorts first), while memory admits the whole prompt with the
   watermark and fewer than ``alpha`` requests hold KV;
4. the other decodes fill the rest of the budget in LST order, at most
   ``beta`` decodes in all.

A decode that needs a new KV block and finds none preempts the most recently
paused prefill, or, if none, itself (SLAI's victim rule, unlike vLLM's latest
arrival). Two departures from the reference, both vLLM's behaviour, keep
requests from evicting each other forever in a small cache: a decode whose last
block has room needs no free block (the reference checks the free pool even
then), and new prompts are admitted only while the blocks the remaining decodes
need to grow stay free (vLLM serves running requests before admitting; in the
reference an admission can take the block a later decode needs, and that
decode evicts itself).

``alpha`` counts the requests holding KV (:func:`~.kernels.blocks.holding`) plus those the
batch admits.

Examples
--------
>>> from llmstab.fluid_models.state import EngineState
>>> SLAI(tau=4).form_batch(EngineState((0, 5, 2), (1, 1, 1)), b_max=4).describe("ABC")
'{Bp,Cp}'
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from .base import KernelRef, Policy

__all__ = ["SLAI"]


@dataclass(frozen=True)
class SLAI(Policy):
    """SLAI: critical decodes, paused prefills, new prefills shortest-first (strict users first), other decodes.

    Options (the reference's names in brackets): ``tau`` token budget
    (``token_budget``; the engine's own budget still caps it), ``alpha``
    requests holding KV (``max_num_seqs``), ``beta`` decodes per batch
    (``limit_total_decodes``), ``delta_low`` / ``delta_high`` offsets in mean
    batch times below / at ``memory_limit`` KV use (``fixed_offset``: always
    ``delta_low``), ``order`` ``"spf"`` or ``"fcfs"`` for new prompts,
    ``user_priority`` (tighter TBT targets first), ``default_tbt_s`` for a
    class without a TBT target. ``class_tbt_s`` (set by :meth:`for_workload`)
    are the classes' TBT targets. Not work-conserving: ``beta`` caps the decodes
    of a batch even when nothing else is waiting.

    >>> SLAI().label
    'slai(tau=512, alpha=128, beta=128, delta=5/10 at 0.96, spf, user priority)'
    >>> SLAI(tau=0)
    Traceback (most recent call last):
    ...
    ValueError: tau must be at least 1 (a batch needs a token), got 0
    """

    tau: int = 512
    alpha: int = 128
    beta: int = 128
    delta_low: float = 5.0
    delta_high: float = 10.0
    memory_limit: float = 0.96
    order: str = "spf"
    user_priority: bool = True
    fixed_offset: bool = False
    default_tbt_s: float = 0.2
    class_tbt_s: tuple[float, ...] = ()

    name = "slai"
    summary = "critical decodes, paused prefills, shortest new prompts (strict users first), other decodes"
    kernel = KernelRef("slai", "slai_kernel")

    def __post_init__(self) -> None:
        for field, low, why in (("tau", 1, "a batch needs a token"), ("alpha", 1, "a request must hold KV to run"),
                                ("beta", 0, "a count of decodes")):
            value = getattr(self, field)
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ValueError(f"{field} must be at least {low} ({why}), got {value!r}")
        for field in ("delta_low", "delta_high", "default_tbt_s"):
            value = getattr(self, field)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0:
                raise ValueError(f"{field} must be a number >= 0, got {value!r}")
        if isinstance(self.memory_limit, bool) or not isinstance(self.memory_limit, (int, float)) \
                or not 0 < self.memory_limit <= 1:
            raise ValueError(f"memory_limit must lie in (0, 1], got {self.memory_limit!r}")
        if self.order not in ("spf", "fcfs"):
            raise ValueError(f"order must be 'spf' or 'fcfs', got {self.order!r}")

    def token_budget(self, b_max: int) -> int:
        """``min(b_max, tau)``: SLAI's own token budget caps its batches.

        >>> SLAI(tau=512).token_budget(513)
        512
        """
        return min(b_max, self.tau)

    def decode_cap(self) -> int:
        """``min(alpha, beta)``: at most ``beta`` decodes per batch, and a decoding request holds KV (``alpha``).

        >>> SLAI(alpha=64, beta=128).decode_cap()
        64
        """
        return min(self.alpha, self.beta)

    def for_workload(self, workload: object) -> "SLAI":
        """This policy with each class's TBT target (``default_tbt_s`` where a class has none)."""
        targets = tuple(float(c.slo.tbt_s) if c.slo is not None and c.slo.tbt_s is not None else self.default_tbt_s
                        for c in workload.classes)
        return replace(self, class_tbt_s=targets)

    def parameters(self) -> np.ndarray:
        head = [self.tau, self.alpha, self.beta, self.delta_low, self.delta_high, self.memory_limit,
                self.order == "spf", self.user_priority, self.fixed_offset, self.default_tbt_s]
        return np.array(head + list(self.class_tbt_s), dtype=np.float64)

    @property
    def label(self) -> str:
        delta = f"{self.delta_low:g}" if self.fixed_offset else f"{self.delta_low:g}/{self.delta_high:g} at {self.memory_limit:g}"
        extra = ", user priority" if self.user_priority else ""
        return f"slai(tau={self.tau}, alpha={self.alpha}, beta={self.beta}, delta={delta}, {self.order}{extra})"
