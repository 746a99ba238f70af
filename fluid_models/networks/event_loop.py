"""The compiled event loop of the network simulator (see :mod:`llmstab.fluid_models.networks.simulator`).

Everything is flat arrays, so that numba compiles the loop once (cached on
disk) for every network. The engines' kernels come as a tuple of
:data:`KERNEL_SLOTS` first-class functions (the policies' own kernels, padded
with repeats); engine ``e`` calls slot ``station[e, SLOT]``.

Layout:

* ``station[e, :]``: ``OFF`` / ``CAP`` (its slice of the resident arrays),
  ``N`` residents, ``BUSY``, ``BATCHES``, ``SERVED`` tokens, kernel ``SLOT``,
  ``B_MAX``, ``K_MAX``;
* ``step[s, :]``: ``ENGINE``, ``RANK`` (priority at the engine), ``NPRED``,
  ``LEN_OFF`` (its slice of the drawn lengths and join counters, indexed by a
  request's number within its class), ``SUCC0`` / ``SUCC1`` (its slice of
  ``succ``);
* ``res[field, i]`` for residents, kept in service order (priority rank, then
  arrival at the engine): ``PF``, ``DC``, ``REQ``, ``STEP``, ``TP`` / ``TD``
  (the running batch's tokens), ``RANK``;
* ``count``: ``ARRIVED``, ``COMPLETED``, ``TOKENS`` (unprocessed, network-wide),
  ``REC`` (grid points recorded), ``ENTERED`` (tokens of every step started).

Examples
--------
>>> res = np.zeros((7, 6), np.int64)
>>> res[RES_RANK, :5] = [0, 0, 1, 1, 2]          # five residents in service order
>>> int(_insertion_point(res, 0, 5, 1))         # a new rank-1 request goes after the rank-1 ones
4
"""

from __future__ import annotations

import heapq

import numba
import numpy as np
from numba import types

from ..policies.kernels.blocks import KERNEL_TYPE, run_on_lengths

__all__ = ["KERNEL_SLOTS", "run_loop"]

#: How many distinct scheduler kernels one network may use.
KERNEL_SLOTS = 8

OFF, CAP, N, BUSY, BATCHES, SERVED, SLOT, B_MAX, K_MAX = range(9)
ENGINE, RANK, NPRED, LEN_OFF, SUCC0, SUCC1 = range(6)
PF, DC, REQ, STEP, TP, TD, RES_RANK = range(7)
ARRIVED, COMPLETED, TOKENS, REC, ENTERED = range(5)

_i8a, _f8a, _f8 = types.int64[::1], types.float64[::1], types.float64
_i8m, _f8m = types.int64[:, ::1], types.float64[:, ::1]


@numba.njit(cache=True)
def _insertion_point(res, off, n, rank):
    """First position after every resident of rank ``<= rank`` (arrival order within a rank)."""
    i = n
    while i > 0 and res[RES_RANK, off + i - 1] > rank:
        i -= 1
    return off + i


@numba.njit(cache=True)
def _record(until, horizon, rec_dt, station, rec_b, rec_tok, count):
    """Record the backlog at every grid point ``k * rec_dt <= min(until, horizon)`` not yet recorded."""
    k = count[REC]
    while k < rec_tok.size and k * rec_dt <= until and k * rec_dt <= horizon:
        for e in range(station.shape[0]):
            rec_b[e, k] = station[e, N]
        rec_tok[k] = count[TOKENS]
        k += 1
    count[REC] = k


@numba.njit(cache=True)
def _begin(t, e, kernels, station, res, batch_s, params, memory, scratch, heap):
    """Form engine ``e``'s next batch at time ``t`` (or leave it idle) and schedule its end."""
    off, n = station[e, OFF], station[e, N]
    station[e, BUSY] = 0
    if n == 0:
        return
    pf, dc, tp, td = scratch[0], scratch[1], scratch[2], scratch[3]
    pf[:n] = res[PF, off:off + n]
    dc[:n] = res[DC, off:off + n]
    tokens = run_on_lengths(kernels[station[e, SLOT]], pf, dc, n, station[e, B_MAX], station[e, K_MAX],
                            params[e], memory[e], tp, td)
    if tokens == 0:  # the policy forms no batch: wait for the next arrival
        return
    res[TP, off:off + n] = tp[:n]
    res[TD, off:off + n] = td[:n]
    station[e, BUSY] = 1
    station[e, BATCHES] += 1
    station[e, SERVED] += tokens
    heapq.heappush(heap, (t + batch_s[e, tokens], e))


@numba.njit(cache=True)
def _enter(t, req, s, kernels, station, step, res, plen, dlen, local, batch_s, params, memory, scratch, heap,
           count):
    """Request ``req`` starts step ``s``: it joins the step's engine in service order."""
    e = step[s, ENGINE]
    off, n, rank = station[e, OFF], station[e, N], step[s, RANK]
    at = _insertion_point(res, off, n, rank)
    res[:, at + 1:off + n + 1] = res[:, at:off + n].copy()
    k = step[s, LEN_OFF] + local[req]
    res[PF, at], res[DC, at], res[REQ, at], res[STEP, at] = plen[k], dlen[k], req, s
    res[TP, at], res[TD, at], res[RES_RANK, at] = 0, 0, rank
    station[e, N] = n + 1
    count[TOKENS] += plen[k] + dlen[k]
    count[ENTERED] += plen[k] + dlen[k]
    if station[e, BUSY] == 0:
        _begin(t, e, kernels, station, res, batch_s, params, memory, scratch, heap)


@numba.njit(cache=True)
def _finish(e, station, res, finished, count):
    """Apply engine ``e``'s running batch; drop and return the number of residents it finished.

    Their ``(request, step)`` pairs go to ``finished[0, :]`` / ``finished[1, :]``.
    """
    off, n = station[e, OFF], station[e, N]
    kept, done = 0, 0
    for i in range(off, off + n):
        count[TOKENS] -= res[TP, i] + res[TD, i]
        res[PF, i] -= res[TP, i]
        res[DC, i] -= res[TD, i]
        res[TP, i] = res[TD, i] = 0
        if res[DC, i] == 0:
            finished[0, done], finished[1, done] = res[REQ, i], res[STEP, i]
            done += 1
        else:
            res[:, off + kept] = res[:, i]
            kept += 1
    station[e, N] = kept
    return done


@numba.njit(cache=True)
def _complete(t, req, s, kernels, station, step, succ, res, plen, dlen, local, joined, sinks_left, batch_s,
              params, memory, scratch, heap, count):
    """Request ``req`` finished step ``s``: it moves on to every successor that is ready, or leaves."""
    if step[s, SUCC0] == step[s, SUCC1]:
        sinks_left[req] -= 1
        if sinks_left[req] == 0:
            count[COMPLETED] += 1
        return
    for j in range(step[s, SUCC0], step[s, SUCC1]):
        nxt = succ[j]
        if step[nxt, NPRED] > 1:  # a join: it starts once every predecessor is done
            k = step[nxt, LEN_OFF] + local[req]
            joined[k] += 1
            if joined[k] < step[nxt, NPRED]:
                continue
        _enter(t, req, nxt, kernels, station, step, res, plen, dlen, local, batch_s, params, memory, scratch,
               heap, count)


@numba.njit(types.void(types.UniTuple(KERNEL_TYPE, KERNEL_SLOTS), _i8m, _i8m, _i8a, _i8a, _i8a, _f8a, _i8a,
                       _i8a, _i8a, _i8a, _i8m, _i8a, _i8a, _i8a, _f8m, _f8m, _i8m, _f8, _f8, _i8m, _i8a, _i8a),
            cache=True)
def run_loop(kernels, station, step, succ, roots, root_ptr, arr_t, arr_c, local, sinks, sinks_left, res, plen,
             dlen, joined, batch_s, params, memory, horizon, rec_dt, rec_b, rec_tok, count):
    """Run the network from its current state until ``horizon`` (s); see the module docstring for the layout."""
    width = res.shape[1]
    scratch = np.zeros((4, width), np.int64)
    finished = np.zeros((2, width), np.int64)
    heap = [(np.inf, np.int64(-1))]
    heap.pop()
    ai, n_arr = 0, arr_t.size
    while True:
        t_arr = arr_t[ai] if ai < n_arr else np.inf
        t_end = heap[0][0] if len(heap) > 0 else np.inf
        t = min(t_arr, t_end)
        if t > horizon:
            break
        _record(t, horizon, rec_dt, station, rec_b, rec_tok, count)
        if t_arr <= t_end:
            c = arr_c[ai]
            count[ARRIVED] += 1
            sinks_left[ai] = sinks[c]
            for j in range(root_ptr[c], root_ptr[c + 1]):
                _enter(t, ai, roots[j], kernels, station, step, res, plen, dlen, local, batch_s, params, memory,
                       scratch, heap, count)
            ai += 1
            continue
        e = heapq.heappop(heap)[1]
        for i in range(_finish(e, station, res, finished, count)):
            _complete(t, finished[0, i], finished[1, i], kernels, station, step, succ, res, plen, dlen, local,
                      joined, sinks_left, batch_s, params, memory, scratch, heap, count)
        _begin(t, e, kernels, station, res, batch_s, params, memory, scratch, heap)
    _record(horizon, horizon, rec_dt, station, rec_b, rec_tok, count)
