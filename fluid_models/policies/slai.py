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

A decode that finds no free KV block preempts the most recently paused prefill,
or, if none, itself (SLAI's victim rule, unlike vLLM's latest arrival).

Requests are *holding KV* when they hold blocks or have started: with memory
unlimited (the checkers' view) a row holds nothing, so a started request is
told apart from a waiting one by its progress.

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
                   MEAN_BATCH, PF, PROMPT, SCRATCH, TAKE_D, TAKE_P, TOTAL_BLOCKS, Policy, admit, clear, evict,
                   open_room, tokens_taken)

__all__ = ["SLAI", "slai_kernel", "holding", "waiting_order", "chunked_prefills"]

# params slots
_TAU, _ALPHA, _BETA, _DLO, _DHI, _MEMLIM, _SPF, _PRIORITY, _FIXED, _DEFAULT_TBT = range(10)
_CLASS_TBT = 10
# the building blocks' room slots used here (see base.open_room)
_BUDGET, _SLOTS, _FREE, _ACTIVE_LEFT, _BS = 0, 1, 2, 3, 5


@numba.njit(cache=True)
def holding(ri, i):
    """Whether request ``i`` holds KV: it holds blocks, or its prefill has started (or is done)."""
    return ri[i, BLOCKS] > 0 or ri[i, PF] < ri[i, PROMPT] or ri[i, PF] == 0


@numba.njit(cache=True)
def _class_tbt(params, c):
    k = _CLASS_TBT + c
    return params[k] if 0 <= c and k < params.size else params[_DEFAULT_TBT]


@numba.njit(cache=True)
def waiting_order(ri, n, params, spf, priority):
    """Waiting rows (not holding KV, prompt left): in queue order, or by ``(TBT target if priority, prompt)`` if ``spf``."""
    rows = np.empty(n, np.int64)
    m = 0
    for i in range(n):
        if not holding(ri, i) and ri[i, PF] > 0:
            rows[m] = i
            m += 1
    rows = rows[:m]
    if not spf or m < 2:
        return rows
    key = np.empty(m)
    for j in range(m):
        key[j] = ri[rows[j], PROMPT]
    rows = rows[np.argsort(key, kind="mergesort")]
    if priority:
        for j in range(m):
            key[j] = _class_tbt(params, ri[rows[j], CLASS])
        rows = rows[np.argsort(key, kind="mergesort")]
    return rows


@numba.njit(cache=True)
def chunked_prefills(ri, rows, room, take):
    """Prefill chunks for ``rows`` in order: ``min(pf, budget)`` each; a waiting row must be admitted first,
    and the first one memory cannot admit stops the rest. Returns the tokens added."""
    added = 0
    for i in rows:
        if room[_BUDGET] <= 0 or room[_SLOTS] <= 0:
            break
        if ri[i, BLOCKS] == 0 and not holding(ri, i) and not admit(ri, i, room):
            break
        x = min(ri[i, PF], room[_BUDGET])
        take[i, TAKE_P] = x
        room[_BUDGET] -= x
        room[_SLOTS] -= 1
        added += x
    return added


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
def _paused_victim(ri, n, take):
    """The most recently paused prefill not yet in this batch, or -1."""
    for j in range(n - 1, -1, -1):
        if ri[j, BLOCKS] > 0 and ri[j, PF] > 0 and take[j, TAKE_P] == 0 and take[j, EVICT] == 0:
            return j
    return -1


@numba.njit(cache=True)
def _slai_secure(ri, rf, n, i, room, take):
    """Room for one decode token of ``i``; SLAI preempts the latest paused prefill, else ``i`` itself."""
    if ri[i, BLOCKS] == 0:
        return admit(ri, i, room)
    while room[_FREE] <= 0:  # the reference checks the pool, even when i's last block has room
        victim = _paused_victim(ri, n, take)
        if victim < 0:
            evict(ri, i, room, take)
            rf[i, SCRATCH] = np.nan
            return False
        evict(ri, victim, room, take)
        rf[victim, SCRATCH] = np.nan
    if ri[i, CTX] + 1 > ri[i, BLOCKS] * room[_BS]:
        room[_FREE] -= 1
    return True


@numba.njit(cache=True)
def _decodes(ri, rf, n, rows, room, take, now, critical, cap):
    """Decodes of ``rows`` in order (only those with ``LST <= now`` if ``critical``), at most ``cap``."""
    added = 0
    for i in rows:
        if added >= cap or room[_BUDGET] <= 0 or room[_SLOTS] <= 0:
            break
        if critical and now < rf[i, SCRATCH]:
            break
        if take[i, TAKE_D] or take[i, EVICT]:
            continue
        if not _slai_secure(ri, rf, n, i, room, take):
            continue
        take[i, TAKE_D] = 1
        room[_BUDGET] -= 1
        room[_SLOTS] -= 1
        added += 1
    return added


@numba.njit(cache=True)
def slai_kernel(ri, rf, n, eng, b_max, k_max, params, memory, take):
    clear(n, take)
    room = open_room(eng, min(b_max, np.int64(params[_TAU])), k_max)
    holders = 0
    for i in range(n):
        holders += holding(ri, i)
    room[_ACTIVE_LEFT] = min(room[_ACTIVE_LEFT], np.int64(params[_ALPHA]) - holders)
    _set_deadlines(ri, rf, n, eng, params)
    order = _decode_order(ri, rf, n)
    beta = np.int64(params[_BETA])
    crit = _decodes(ri, rf, n, order, room, take, eng[CLOCK], True, beta)
    paused = np.empty(n, np.int64)
    m = 0
    for i in range(n):
        if holding(ri, i) and ri[i, PF] > 0 and take[i, EVICT] == 0:
            paused[m] = i
            m += 1
    chunked_prefills(ri, paused[:m], room, take)
    chunked_prefills(ri, waiting_order(ri, n, params, params[_SPF] != 0, params[_PRIORITY] != 0), room, take)
    _decodes(ri, rf, n, order, room, take, eng[CLOCK], False, beta - crit)
    return tokens_taken(min(b_max, np.int64(params[_TAU])), room)


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
