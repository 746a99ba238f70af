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

``alpha`` counts the requests holding KV (:func:`~.base.holding`) plus those the
batch admits.

Examples
--------
>>> from llmstab.fluid_models.state import EngineState
>>> SLAI(tau=4).form_batch(EngineState((0, 5, 2), (1, 1, 1)), b_max=4).describe("ABC")
'{Bp,Cp}'
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numba
import numpy as np

from .base import (ARRIVAL, BLOCKS, CLASS, CLOCK, CTX, DC, EVICT, FREE_BLOCKS, LAST_BATCH_END, LAST_TOKEN,
                   LATEST_PAUSED, MEAN_BATCH, PF, SCRATCH, TAKE_D, TAKE_P, TOTAL_BLOCKS, Policy, add_decodes_in,
                   add_prefills_in, clear, holding, open_room, prefill_order, tokens_taken)

__all__ = ["SLAI", "slai_kernel"]

# params slots
_TAU, _ALPHA, _BETA, _DLO, _DHI, _MEMLIM, _SPF, _PRIORITY, _FIXED, _DEFAULT_TBT = range(10)
_CLASS_TBT = 10
# the building blocks' room slots used here (see base.open_room)
_ACTIVE_LEFT, _WATERMARK, _BS = 3, 4, 5


@numba.njit(cache=True)
def _class_tbt(params, c):
    k = _CLASS_TBT + c
    return params[k] if 0 <= c and k < params.size else params[_DEFAULT_TBT]


@numba.njit(cache=True)
def _set_deadlines(ri, rf, n, eng, params):
    """Step 0: a new LST for each request that decoded, or finished its prefill, in the previous batch."""
    total = eng[TOTAL_BLOCKS]
    used = (total - eng[FREE_BLOCKS]) / total if total > 0 else 0.0
    delta = params[_DHI] if used >= params[_MEMLIM] and params[_FIXED] == 0 else params[_DLO]
    for i in range(n):
        if ri[i, PF] != 0 or ri[i, DC] <= 0:
            continue
        if rf[i, SCRATCH] != rf[i, SCRATCH] or rf[i, LAST_TOKEN] == eng[LAST_BATCH_END]:
            rf[i, SCRATCH] = eng[LAST_BATCH_END] + _class_tbt(params, ri[i, CLASS]) - delta * eng[MEAN_BATCH]


@numba.njit(cache=True)
def _decode_order(ri, rf, n):
    """Decoding rows by (LST, arrival)."""
    rows = np.empty(n, np.int64)
    m = 0
    for i in range(n):
        if ri[i, PF] == 0 and ri[i, DC] > 0:
            rows[m] = i
            m += 1
    rows = rows[:m]
    key = np.empty(m)
    for j in range(m):
        key[j] = rf[rows[j], ARRIVAL]
    rows = rows[np.argsort(key, kind="mergesort")]
    for j in range(m):
        key[j] = rf[rows[j], SCRATCH]
    return rows[np.argsort(key, kind="mergesort")]


@numba.njit(cache=True)
def _growing(ri, rows, take, block_size, cap):
    """Decodes of ``rows`` not yet served whose next token needs a new KV block (at most ``cap``)."""
    count = 0
    for i in rows:
        if count >= cap:
            break
        if take[i, TAKE_P] == 0 and take[i, TAKE_D] == 0 and take[i, EVICT] == 0 and ri[i, BLOCKS] > 0 \
                and ri[i, CTX] + 1 > ri[i, BLOCKS] * block_size:
            count += 1
    return count


@numba.njit(cache=True)
def _new_prefill_rank(ri, n, params):
    """Each row's TBT target if user priority is on (strict users sort first), else nothing."""
    if params[_PRIORITY] == 0:
        return np.empty(0)
    rank = np.empty(n)
    for i in range(n):
        rank[i] = _class_tbt(params, ri[i, CLASS])
    return rank


@numba.njit(cache=True)
def slai_kernel(ri, rf, n, eng, b_max, k_max, params, memory, take):
    clear(n, take)
    budget = min(b_max, np.int64(params[_TAU]))
    room = open_room(eng, budget, k_max)
    holders = 0
    for i in range(n):
        holders += holding(ri, i)
    room[_ACTIVE_LEFT] = min(room[_ACTIVE_LEFT], np.int64(params[_ALPHA]) - holders)
    _set_deadlines(ri, rf, n, eng, params)
    order = _decode_order(ri, rf, n)
    beta = np.int64(params[_BETA])
    crit = add_decodes_in(ri, rf, n, order, room, take, beta, eng[CLOCK], LATEST_PAUSED)
    # admissions leave the blocks the remaining decodes need to grow (vLLM serves running requests before
    # admitting): else a decode short of the block an admission just took evicts itself, and two requests
    # can take turns evicting each other forever
    reserve = _growing(ri, order, take, room[_BS], beta - crit)
    room[_WATERMARK] += reserve
    add_prefills_in(ri, prefill_order(ri, n, _new_prefill_rank(ri, n, params), params[_SPF] != 0), room, take, 0)
    room[_WATERMARK] -= reserve
    add_decodes_in(ri, rf, n, order, room, take, beta - crit, np.inf, LATEST_PAUSED)
    return tokens_taken(budget, room)


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
    kernel = slai_kernel

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
