"""The compiled batch loop of the single-engine simulator, with KV-cache memory and attention.

State between batches (all numpy arrays, so a run can pause and resume):

* the *running* requests (they hold KV blocks) are rows ``0 .. nr-1`` of the
  request matrices ``ri`` / ``rf`` (columns of :mod:`llmstab.fluid_models.policies.base`),
  in arrival order (a replayed request with prompt 0 arrives already
  prefilled and runs at once; its first decode takes its first block);
* the *waiting queue* is a ring buffer ``wq`` of request ids (arrivals join
  its tail, preempted requests its head). Before each batch the loop copies
  the queue's head, at most ``min(b_max, k_max, max_active - nr)`` requests
  (no more can be admitted in one batch), into rows ``nr ..`` for the policy
  to see; the rest of the queue is not touched, so a batch costs about the
  running set plus the batch, however long the queue. A policy whose class
  sets ``sees_whole_queue = True`` (one that reorders the waiting queue, e.g.
  shortest prompt first) is shown the whole queue instead, in queue order;
* per request (by id): outputs generated, current prompt (prompt + outputs
  before the last preemption), the policy's scratch float, token times.

One batch (the step shared with the cluster simulator,
:mod:`llmstab.fluid_models.simulation.engine_step`): the policy's kernel marks
tokens, admissions and evictions; the step checks them against the batch
constraints and the KV rules (whole-prompt admission with the watermark, the active-request cap, one block per
``block_size`` tokens, never more blocks than the cache), times the batch
from its composition (``t(n)`` plus decode attention over each decode's
context plus ``c * (s + c/2)`` prefill attention per chunk), records the
backlog and KV use on a time grid, and applies it: evicted requests free their
blocks and return to the queue's head with prompt := prompt + outputs
(preemption by recomputation), finished requests free theirs and leave.
"""

from __future__ import annotations

import numba
from numba import types

from ..policies.base import ID, PF, TAKE_D, TAKE_P
from ..policies.kernels.blocks import KERNEL_TYPE
from .engine_step import (CROWDED, DONE, F_T, FULL_LOG, FULL_REC, I_BATCHES, I_COMP, I_FINISHED, I_N, I_NEXT,
                          I_NR, I_QLEN, I_REC, I_RECOMP, I_SERVED, I_USED, PAUSED, apply_batch, duration, form_batch,
                          join, record_grid)

__all__ = ["engine_loop", "ROWS_TYPE", "ARR_TYPE", "REQ_TYPE", "TT_TYPE"]

_UNLOGGED = 2**62  # rows a batch may show when its composition is not logged

_i8a, _f8a, _i8, _f8 = types.int64[::1], types.float64[::1], types.int64, types.float64
_i8m, _f8m = types.int64[:, ::1], types.float64[:, ::1]
ROWS_TYPE = types.Tuple((_i8m, _f8m, _f8a, _i8m, _i8a, _i8a, _i8a, _i8a))
ARR_TYPE = types.Tuple((_f8a, _i8a, _i8a, _i8a))
REQ_TYPE = types.Tuple((_i8a, _i8a, _f8a))
TT_TYPE = types.Tuple((_f8a, _f8a, _f8a, _f8a, _f8a, _f8a, _f8a, _i8a, _i8a))


@numba.njit(cache=True)
def _record(ist, rec, rec_dt, limit, arr_t, cum_tok):
    """Backlog (arrived minus served, recomputation counted back) and KV use at the grid points before ``limit``."""
    return record_grid(ist, I_REC, rec, rec_dt, limit, arr_t, cum_tok, ist[I_SERVED] - ist[I_RECOMP],
                       ist[I_FINISHED], ist[I_USED])


@numba.njit(cache=True)
def _log_batch(ri, n, nr, take, res_log, comp, ist, t, tok):
    """Per-batch records: start, tokens, demand, resident, KV blocks in use, composition."""
    log_start, log_tokens, log_demand, log_resident, log_kv = res_log
    comp_off, comp_req, comp_p, comp_d = comp
    nb = ist[I_BATCHES]
    if log_start.size > 0:
        demand = 0
        for i in range(n):
            demand += ri[i, PF] if ri[i, PF] > 0 else 1
        log_start[nb], log_tokens[nb], log_demand[nb] = t, tok, demand
        log_resident[nb], log_kv[nb] = nr + ist[I_QLEN], ist[I_USED]
    if comp_off.size > 0:
        c = ist[I_COMP]
        for i in range(n):
            if take[i, TAKE_P] > 0 or take[i, TAKE_D] > 0:
                comp_req[c], comp_p[c], comp_d[c] = ri[i, ID], take[i, TAKE_P], take[i, TAKE_D]
                c += 1
        ist[I_COMP] = c
        comp_off[nb + 1] = c


@numba.njit(cache=True)
def _arrive(t, rows, arr, req, tt, ist):
    """Arrivals up to ``t`` join the engine (the waiting queue's tail; with prompt 0 a running row)."""
    arr_t = arr[0]
    while ist[I_NEXT] < arr_t.size and arr_t[ist[I_NEXT]] <= t:
        join(ist[I_NEXT], False, rows, arr, req, tt, ist)
        ist[I_NEXT] += 1


@numba.njit(cache=True)
def _before_batch(t, arr, t_end, rec, rec_dt, rec_need, cum_tok, pause_at, max_resident, res_log, ist, fst):
    """The checks before a batch: a status to return, -2 when the engine idled to the next arrival, else -1."""
    present = ist[I_NR] + ist[I_QLEN]
    if present > max_resident:
        return CROWDED
    if present == 0:
        nxt, arr_t = ist[I_NEXT], arr[0]
        if nxt >= arr_t.size or arr_t[nxt] > t_end:
            return DONE
        if not _record(ist, rec, rec_dt, arr_t[nxt], arr_t, cum_tok):
            return FULL_REC
        fst[F_T] = arr_t[nxt]
        return -2
    if ist[I_BATCHES] >= pause_at:
        return PAUSED
    if ist[I_REC] + rec_need > rec[0].size:
        return FULL_REC
    if res_log[0].size > 0 and ist[I_BATCHES] >= res_log[0].size:
        return FULL_LOG
    return -1


_LOOP_SIGNATURE = types.int64(
    KERNEL_TYPE, _f8a, _i8a, _f8a, _f8a, _i8a, _i8, _i8,
    ARR_TYPE, _i8a, _f8, _f8, _i8, _i8,
    ROWS_TYPE, REQ_TYPE, TT_TYPE,
    types.Tuple((_f8a, _i8a, _i8a, _i8a)), types.Tuple((_f8a, _i8a, _i8a, _i8a, _i8a)), types.UniTuple(_i8a, 4),
    _i8a, _f8a)


@numba.njit(_LOOP_SIGNATURE, cache=True)
def engine_loop(kernel, params, memory, batch_s, att, kv, b_max, k_max, arr, cum_tok, t_end, rec_dt, pause_at,
                max_resident, rows, req, tt, rec, res_log, comp, ist, fst):
    """Run batches until the horizon, the end of the trace, or a status that needs Python (see the codes above).

    ``arr = (arrival times, prompts, outputs, classes)`` of the trace; ``kv``,
    ``rows``, ``req`` and ``tt`` as in :mod:`llmstab.fluid_models.simulation.engine_step`;
    ``att = [decode, prefill]`` attention in s per token x context token; ``rec`` =
    (times, backlog tokens, backlog requests, KV blocks) on the grid;
    ``res_log`` the per-batch log, ``comp`` its composition.
    """
    rec_need = int(batch_s.max() / rec_dt) + 2  # without attention a batch never needs more grid points
    while True:
        t = fst[F_T]
        _arrive(t, rows, arr, req, tt, ist)
        status = _before_batch(t, arr, t_end, rec, rec_dt, rec_need, cum_tok, pause_at, max_resident, res_log, ist,
                               fst)
        if status == -2:
            continue
        if status >= 0:
            return status
        comp_room = comp[1].size - ist[I_COMP] if comp[0].size > 0 else _UNLOGGED
        tok = form_batch(kernel, params, memory, kv, b_max, k_max, t, comp_room, rows, arr, req, tt, ist, fst)
        if tok < 0:
            return -1 - tok
        t_e = t + duration(rows, ist, tok, batch_s, att)
        if t_e > t_end:
            return DONE
        if ist[I_REC] + (t_e - t) / rec_dt + 2 > rec[0].size:
            memory[:] = rows[5]  # the batch is formed again once the records have grown
            return FULL_REC
        _record(ist, rec, rec_dt, t_e, arr[0], cum_tok)
        _log_batch(rows[0], ist[I_N], ist[I_NR], rows[3], res_log, comp, ist, t, tok)
        apply_batch(kv, b_max, tok, t, t_e, rows, arr, req, tt, ist, fst)
        fst[F_T] = t_e
