"""SLAI's kernel: deadline-aware decodes, shortest prompts first (see :mod:`llmstab.fluid_models.policies.slai`)."""

from __future__ import annotations

import numba
import numpy as np

from ..base import (ARRIVAL, CLASS, CLOCK, DC, FREE_BLOCKS, LAST_BATCH_END, LAST_TOKEN, LATEST_PAUSED, MEAN_BATCH, PF,
                    SCRATCH, TOTAL_BLOCKS)
from .blocks import (add_decodes_in, add_prefills_leaving_room, clear, holding, open_room, prefill_order,
                     tokens_taken, _ACTIVE_LEFT)

# params slots (the order of :meth:`SLAI.parameters`)
_TAU, _ALPHA, _BETA, _DLO, _DHI, _MEMLIM, _SPF, _PRIORITY, _FIXED, _DEFAULT_TBT = range(10)
_CLASS_TBT = 10


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
    # admissions leave the blocks the remaining decodes need to grow (see add_prefills_leaving_room)
    add_prefills_leaving_room(ri, prefill_order(ri, n, _new_prefill_rank(ri, n, params), params[_SPF] != 0), order,
                              room, take, 0, beta - crit)
    add_decodes_in(ri, rf, n, order, room, take, beta - crit, np.inf, LATEST_PAUSED)
    return tokens_taken(budget, room)
