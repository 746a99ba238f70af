"""The building blocks of the policies' kernels, and the kernel signature (importing this imports numba).

The kernel interface is described in :mod:`llmstab.fluid_models.policies.base`.
A kernel's bookkeeping (budget, slots, free
blocks, ...) is a small ``room`` vector, so a policy is a few lines that
compose the blocks: :func:`add_decodes_in` and :func:`add_prefills_in` fill a
batch from rows in the order a policy chooses, and a decode short of a KV block
preempts under a victim rule (:data:`LATEST_ARRIVED`, vLLM's, the default of
:func:`add_decodes`; or :data:`LATEST_PAUSED`, SLAI's), or its own request when
the rule finds none.

Examples
--------
>>> import numpy as np
>>> from llmstab.fluid_models.policies.base import TAKE_COLUMNS, TAKE_D, TAKE_P, unlimited_engine
>>> ri, rf = rows_from_lengths(np.array([0, 5]), np.array([1, 1]))
>>> take = np.zeros((2, TAKE_COLUMNS), np.int64)
>>> from llmstab.fluid_models.policies.kernels.sarathi import sarathi_kernel
>>> int(sarathi_kernel(ri, rf, 2, unlimited_engine(), 4, 2**62, np.zeros(0), np.zeros(0, np.int64), take))
4
>>> take[:, TAKE_P].tolist(), take[:, TAKE_D].tolist()
([0, 3], [1, 0])
"""

from __future__ import annotations

import numba
import numpy as np
from numba import types

from ..base import (ACTIVE, ARRIVAL, BLOCK_SIZE, BLOCKS, CTX, DC, EVICT, FREE_BLOCKS, ID, LAST_TOKEN, LATEST_ARRIVED,
                    LATEST_PAUSED, MAX_ACTIVE, NE, NF, NI, NO_LIMIT, PF, PROMPT, SCRATCH, TAKE_COLUMNS, TAKE_D, TAKE_P,
                    TOTAL_BLOCKS, WATERMARK_BLOCKS)

__all__ = ["KERNEL_SIGNATURE", "KERNEL_TYPE", "run_on_lengths", "rows_from_lengths", "admission_blocks", "open_room",
           "admit", "add_decodes", "add_decodes_in", "add_prefills", "add_prefills_in", "add_whole_prefills", "holding",
           "prefill_order", "latest_arrived_victim", "latest_paused_victim", "evict", "secure_decode", "any_decoding",
           "any_prefilling", "clear", "tokens_taken", "growing_decodes", "add_prefills_leaving_room"]

# slots of the building blocks' bookkeeping vector
_BUDGET, _SLOTS, _FREE, _ACTIVE_LEFT, _WATERMARK, _BS, _EVICTIONS = range(7)

_i8a, _f8a, _i8 = types.int64[::1], types.float64[::1], types.int64
_i8m, _f8m = types.int64[:, ::1], types.float64[:, ::1]
#: The signature of every policy kernel: ``(ri, rf, n, eng, b_max, k_max, params, memory, take) -> tokens``.
KERNEL_SIGNATURE = types.int64(_i8m, _f8m, _i8, _f8a, _i8, _i8, _f8a, _i8a, _i8m)
#: The kernel as a first-class function type, for compiled loops that take any policy's kernel.
KERNEL_TYPE = types.FunctionType(KERNEL_SIGNATURE)


@numba.njit(cache=True)
def rows_from_lengths(pf, dc):
    """Request rows for remaining prefill ``pf`` and decode ``dc`` tokens, none holding KV (arrival = index).

    >>> ri, rf = rows_from_lengths(np.array([3, 0]), np.array([2, 1]))
    >>> ri[:, PF].tolist(), ri[:, PROMPT].tolist(), ri[:, BLOCKS].tolist(), rf[:, ARRIVAL].tolist()
    ([3, 0], [3, 0], [0, 0], [0.0, 1.0])
    """
    n = pf.size
    ri = np.zeros((n, NI), np.int64)
    rf = np.zeros((n, NF))
    for i in range(n):
        ri[i, PF] = pf[i]
        ri[i, DC] = dc[i]
        ri[i, PROMPT] = pf[i]
        ri[i, ID] = i
        rf[i, ARRIVAL] = i
        rf[i, LAST_TOKEN] = np.nan
        rf[i, SCRATCH] = np.nan
    return ri, rf


@numba.njit(types.int64(KERNEL_TYPE, _i8a, _i8a, _i8, _i8, _i8, _f8a, _i8a, _i8a, _i8a), cache=True)
def run_on_lengths(kernel, pf, dc, n, b_max, k_max, params, memory, take_p, take_d):
    """Run ``kernel`` on the first ``n`` requests of ``(pf, dc)`` with memory unlimited.

    The checkers' view of a state (remaining prefill and decode tokens only):
    writes ``take_p`` / ``take_d`` and returns the batch's tokens.
    """
    ri, rf = rows_from_lengths(pf[:n].copy(), dc[:n].copy())
    eng = np.zeros(NE)
    eng[FREE_BLOCKS] = eng[TOTAL_BLOCKS] = eng[MAX_ACTIVE] = float(NO_LIMIT)
    eng[BLOCK_SIZE] = 1.0
    take = np.zeros((max(n, 1), TAKE_COLUMNS), np.int64)
    tokens = kernel(ri, rf, n, eng, b_max, k_max, params, memory, take)
    for i in range(n):
        take_p[i] = take[i, TAKE_P]
        take_d[i] = take[i, TAKE_D]
    return tokens


@numba.njit(cache=True, inline="always")
def admission_blocks(prompt, block_size):
    """KV blocks a request needs to be admitted: its whole prompt, at least one block.

    >>> admission_blocks(33, 16), admission_blocks(0, 16)
    (3, 1)
    """
    return max(1, (prompt + block_size - 1) // block_size)


@numba.njit(cache=True)
def open_room(eng, b_max, k_max):
    """The building blocks' bookkeeping: ``[budget, slots, free, active left, watermark, block size, evictions]``."""
    room = np.empty(7, np.int64)
    room[_BUDGET] = b_max
    room[_SLOTS] = k_max
    room[_FREE] = np.int64(eng[FREE_BLOCKS])
    room[_ACTIVE_LEFT] = np.int64(eng[MAX_ACTIVE]) - np.int64(eng[ACTIVE])
    room[_WATERMARK] = np.int64(eng[WATERMARK_BLOCKS])
    room[_BS] = np.int64(eng[BLOCK_SIZE])
    room[_EVICTIONS] = 0
    return room


@numba.njit(cache=True)
def clear(n, take):
    """Zero the first ``n`` rows of the output."""
    for i in range(n):
        take[i, TAKE_P] = 0
        take[i, TAKE_D] = 0
        take[i, EVICT] = 0


@numba.njit(cache=True)
def tokens_taken(b_max, room):
    """The batch's token count: the budget used."""
    return b_max - room[_BUDGET]


@numba.njit(cache=True, inline="always")
def admit(ri, i, room):
    """Admit waiting request ``i`` if memory allows (its whole prompt, the watermark left free); True if admitted."""
    need = admission_blocks(ri[i, PROMPT], room[_BS])
    if room[_ACTIVE_LEFT] < 1 or room[_FREE] - need < room[_WATERMARK]:
        return False
    room[_FREE] -= need
    room[_ACTIVE_LEFT] -= 1
    return True


@numba.njit(cache=True, inline="always")
def _untouched(take, j):
    return take[j, TAKE_P] == 0 and take[j, TAKE_D] == 0 and take[j, EVICT] == 0


@numba.njit(cache=True)
def latest_arrived_victim(ri, rf, n, i, take):
    """The preemption victim for request ``i`` (vLLM's and Sarathi-Serve's rule), or -1.

    The latest-arrived running request that arrived after ``i`` and has no token
    in this batch yet; -1 if there is none (then ``i`` itself is preempted).
    """
    best = -1
    for j in range(n):
        if j == i or ri[j, BLOCKS] == 0 or not _untouched(take, j):
            continue
        later = rf[j, ARRIVAL] > rf[i, ARRIVAL] or (rf[j, ARRIVAL] == rf[i, ARRIVAL] and j > i)
        if later and (best < 0 or rf[j, ARRIVAL] >= rf[best, ARRIVAL]):
            best = j
    return best


@numba.njit(cache=True)
def latest_paused_victim(ri, n, take):
    """The preemption victim under SLAI's rule: the most recently paused prefill not yet in this batch, or -1.

    A paused prefill holds blocks and has prompt tokens left; running rows are in
    admission order, so the last such row is the most recent one.
    """
    for j in range(n - 1, -1, -1):
        if ri[j, BLOCKS] > 0 and ri[j, PF] > 0 and _untouched(take, j):
            return j
    return -1


@numba.njit(cache=True)
def evict(ri, j, room, take):
    """Preempt running request ``j``: its blocks return to the free pool."""
    room[_EVICTIONS] += 1
    take[j, EVICT] = room[_EVICTIONS]
    room[_FREE] += ri[j, BLOCKS]
    room[_ACTIVE_LEFT] += 1


@numba.njit(cache=True)
def _preempt_for_block(ri, rf, n, i, room, take, rule):
    """No block is free: preempt victims under ``rule`` until one is (or ``i`` itself); True if ``i`` got its block.

    An evicted request's scratch float is cleared: it is recomputed, and starts afresh.
    """
    while room[_FREE] <= 0:
        if rule == LATEST_PAUSED:
            victim = latest_paused_victim(ri, n, take)
        else:
            victim = latest_arrived_victim(ri, rf, n, i, take)
        victim = i if victim < 0 else victim
        evict(ri, victim, room, take)
        rf[victim, SCRATCH] = np.nan
        if victim == i:
            return False
    room[_FREE] -= 1
    return True


@numba.njit(cache=True)
def secure_decode(ri, rf, n, i, room, take, rule):
    """Make room for one decode token of ``i`` (admit it, or find a block); False if ``i`` cannot decode now.

    A decode whose last block has room takes nothing; one that needs a block takes
    a free one, or preempts victims under ``rule`` (:data:`LATEST_ARRIVED` or
    :data:`LATEST_PAUSED`), or, if there is none, its own request. Callers in a
    loop check the common cases first (see :func:`add_decodes_in`): a call per
    request costs more than the check.
    """
    if ri[i, BLOCKS] == 0:
        return admit(ri, i, room)
    if ri[i, CTX] + 1 <= ri[i, BLOCKS] * room[_BS]:
        return True
    if room[_FREE] > 0:
        room[_FREE] -= 1
        return True
    return _preempt_for_block(ri, rf, n, i, room, take, rule)


@numba.njit(cache=True)
def add_decodes_in(ri, rf, n, rows, room, take, cap, deadline, rule):
    """One decode token for each decoding request of ``rows``, in that order, while budget, slots and ``cap`` last.

    The loop stops at the first row whose scratch float (e.g. a last schedulable
    time) exceeds ``deadline`` (``np.inf``: never). A decode short of a KV block
    preempts under ``rule`` (:func:`secure_decode`). Returns the decodes added.
    """
    added = 0
    for i in rows:
        if room[_BUDGET] <= 0 or room[_SLOTS] <= 0 or added >= cap or rf[i, SCRATCH] > deadline:
            break
        if ri[i, PF] == 0 and ri[i, DC] > 0 and _untouched(take, i):
            blocks = ri[i, BLOCKS]
            if blocks > 0 and ri[i, CTX] + 1 <= blocks * room[_BS]:
                pass  # its last block has room
            elif blocks > 0 and room[_FREE] > 0:
                room[_FREE] -= 1  # a free block
            elif not secure_decode(ri, rf, n, i, room, take, rule):
                continue
            take[i, TAKE_D] = 1
            room[_BUDGET] -= 1
            room[_SLOTS] -= 1
            added += 1
    return added


@numba.njit(cache=True)
def add_decodes(ri, rf, n, room, take, cap):
    """One decode token for each decoding request, in row order, while budget, slots and ``cap`` last.

    A decode that needs a KV block and finds none preempts the latest-arrived
    request (:func:`latest_arrived_victim`), or its own request if none arrived
    later. Returns the decodes added.
    """
    return add_decodes_in(ri, rf, n, np.arange(n), room, take, cap, np.inf, LATEST_ARRIVED)


@numba.njit(cache=True)
def holding(ri, i):
    """Whether request ``i`` holds KV before this batch: it holds blocks, or its prefill has started.

    With memory unlimited (the checkers' view) no row holds blocks, so a started
    prompt is told apart from a waiting one by its progress; a row with no
    prefill left and no blocks (a decoding request in that view) is counted when
    :func:`secure_decode` admits it.
    """
    return ri[i, BLOCKS] > 0 or ri[i, PF] < ri[i, PROMPT]


@numba.njit(cache=True)
def add_prefills_in(ri, rows, room, take, chunk):
    """Prefill tokens for ``rows`` in that order; the last request served may be cut to a chunk.

    Each prefilling row not yet in the batch takes ``min(pf, budget)`` tokens,
    at most ``chunk`` (``chunk <= 0``: no per-request cap). A waiting row must be
    admitted first; the first that memory cannot admit stops admission (and the
    loop). Returns the prefill tokens added.
    """
    added = 0
    for i in rows:
        if room[_BUDGET] <= 0 or room[_SLOTS] <= 0:
            break
        if ri[i, PF] > 0 and _untouched(take, i):
            if ri[i, BLOCKS] == 0 and not holding(ri, i) and not admit(ri, i, room):
                break
            x = min(ri[i, PF], room[_BUDGET])
            if chunk > 0:
                x = min(x, chunk)
            take[i, TAKE_P] = x
            room[_BUDGET] -= x
            room[_SLOTS] -= 1
            added += x
    return added


@numba.njit(cache=True)
def growing_decodes(ri, rows, take, block_size, cap):
    """Decoding rows of ``rows`` not yet in the batch whose next token needs a new KV block (at most ``cap``)."""
    count = 0
    for i in rows:
        if count >= cap:
            break
        if ri[i, PF] == 0 and ri[i, DC] > 0 and _untouched(take, i) and ri[i, BLOCKS] > 0 \
                and ri[i, CTX] + 1 > ri[i, BLOCKS] * block_size:
            count += 1
    return count


@numba.njit(cache=True)
def add_prefills_leaving_room(ri, rows, decoding, room, take, chunk, cap):
    """:func:`add_prefills_in`, admitting only while the blocks the decodes of ``decoding`` (at most ``cap``)
    need to grow stay free.

    For a policy that admits prompts before it serves decodes: else an admission
    can take the block a decode needs, the decode then evicts a request (or
    itself), and two requests can take turns evicting each other forever. vLLM
    serves running requests before it admits; this keeps that order's outcome.
    """
    reserve = growing_decodes(ri, decoding, take, room[_BS], cap)
    room[_WATERMARK] += reserve
    added = add_prefills_in(ri, rows, room, take, chunk)
    room[_WATERMARK] -= reserve
    return added


@numba.njit(cache=True)
def add_prefills(ri, n, room, take, chunk):
    """Prefill tokens in row order (running rows first, then the waiting queue): :func:`add_prefills_in`."""
    return add_prefills_in(ri, np.arange(n), room, take, chunk)


@numba.njit(cache=True)
def prefill_order(ri, n, rank, spf):
    """Prefilling rows: started ones (holding KV) in row order, then waiting ones.

    Waiting rows keep queue order, or, if ``spf``, go shortest prompt first, ties
    (and, when ``rank`` has ``n`` entries, the primary key) broken by ``rank``
    ascending, e.g. a class's TBT target so that strict users come first.
    """
    rows = np.empty(n, np.int64)
    m = 0
    for i in range(n):
        if ri[i, PF] > 0 and holding(ri, i):
            rows[m] = i
            m += 1
    started = m
    for i in range(n):
        if ri[i, PF] > 0 and not holding(ri, i):
            rows[m] = i
            m += 1
    if not spf or m - started < 2:
        return rows[:m]
    waiting = rows[started:m]
    key = np.empty(waiting.size)
    for j in range(waiting.size):
        key[j] = ri[waiting[j], PROMPT]
    waiting = waiting[np.argsort(key, kind="mergesort")]
    if rank.size == n:
        for j in range(waiting.size):
            key[j] = rank[waiting[j]]
        waiting = waiting[np.argsort(key, kind="mergesort")]
    rows[started:m] = waiting
    return rows[:m]


@numba.njit(cache=True)
def add_whole_prefills(ri, n, room, take):
    """Whole prompts in order while they fit (no chunking); stops at the first that does not.

    If nothing fits because the first waiting prompt alone exceeds the budget, that
    prompt is cut to the budget, so that a prompt longer than ``b_max`` is still
    served (in consecutive prefill-only batches) instead of blocking the engine.
    Admission stops at the first request memory cannot admit. Returns the tokens added.
    """
    added, taken = 0, 0
    for i in range(n):
        if room[_BUDGET] <= 0 or room[_SLOTS] <= 0:
            break
        if ri[i, PF] > 0 and _untouched(take, i):
            if ri[i, PF] > room[_BUDGET] and taken > 0:
                break
            if ri[i, BLOCKS] == 0 and not admit(ri, i, room):
                break
            x = min(ri[i, PF], room[_BUDGET])
            take[i, TAKE_P] = x
            room[_BUDGET] -= x
            room[_SLOTS] -= 1
            added += x
            taken += 1
            if x < ri[i, PF]:
                break
    return added


@numba.njit(cache=True)
def any_decoding(ri, n):
    """Whether some request has finished its prefill and has decode tokens left."""
    for i in range(n):
        if ri[i, PF] == 0 and ri[i, DC] > 0:
            return True
    return False


@numba.njit(cache=True)
def any_prefilling(ri, n):
    """Whether some request has prefill tokens left."""
    for i in range(n):
        if ri[i, PF] > 0:
            return True
    return False
