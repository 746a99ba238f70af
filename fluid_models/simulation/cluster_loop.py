"""The cluster simulator's compiled event loop: every replica runs the shared engine step.

Each replica keeps the state of one engine of
:mod:`llmstab.fluid_models.simulation.engine_step` (running rows, waiting queue,
KV blocks, counters: arrays with a leading replica axis); the loop routes
requests to replicas (:func:`~llmstab.fluid_models.simulation.engine_step.join`),
and when a replica is idle with work it forms its batch and applies it with
the batch's end time (:func:`~llmstab.fluid_models.simulation.engine_step.form_batch`,
:func:`~llmstab.fluid_models.simulation.engine_step.apply_batch`), as one engine
does. The cluster sees the batch *end* as an event: only then are the replica's
counters (requests present, outstanding work, tokens served) updated and the
requests that left handed over (disaggregated prefill) or counted finished,
so routers and the backlog grid see what a real cluster would. A batch that
would end after the horizon is not applied (the replica stays busy past it).

Per replica ``st = (ri, rf, eng, take, evicted, mem0, wq, left, ist, fst)``;
per pool (0: the only or prefill pool, 1: decode) ``pools = (memory per
replica, batch-time tables, attention, kv vectors, b_max, k_max)``.
"""

from __future__ import annotations

import numba
import numpy as np
from numba import types

from ..policies.kernels.blocks import KERNEL_TYPE
from .engine_loop import ARR_TYPE, REQ_TYPE, TT_TYPE
from .engine_step import (I_LEFT, I_RECOMP, INVALID, STALLED, apply_batch, duration, form_batch, join,
                          record_grid)

__all__ = ["cluster_loop", "DONE", "GROW_ROWS", "GROW_REC", "STALLED_BATCH", "INVALID_BATCH", "CROWDED", "NO_FIT_ALONE",
           "N_IST", "NOW", "SERVED", "FIN", "REC", "RB", "RTOK", "RROUTED"]

DONE, GROW_ROWS, GROW_REC, STALLED_BATCH, INVALID_BATCH, CROWDED, NO_FIT_ALONE = range(7)
# integer state: next arrival, link queue head/tail, delivery queue head/tail, finished, served tokens,
# grid points recorded, arrivals counted at the last grid point (the next index), round-robin counters (2)
_NEXT, _LQH, _LQT, _DQH, _DQT, FIN, SERVED, REC, _KA, _RR0, _RR1 = range(11)
N_IST = 11
# float state: the clock, the end of the transfer in progress (inf when the link is idle)
NOW, _TL = range(2)
# per-replica integer counters: batches, tokens served, requests routed
RB, RTOK, RROUTED = range(3)
_UNLOGGED = 2**62

_i8a, _f8a, _i8, _f8 = types.int64[::1], types.float64[::1], types.int64, types.float64
_i8m, _f8m = types.int64[:, ::1], types.float64[:, ::1]
_i83, _f83 = types.int64[:, :, ::1], types.float64[:, :, ::1]
POOLS_TYPE = types.Tuple((_i8m, _f8m, _f8m, _i8m, _i8a, _i8a))
ST_TYPE = types.Tuple((_i83, _f83, _f8m, _i83, _i8m, _i8m, _i8m, _i8m, _i8m, _f8m))
REP_TYPE = types.Tuple((_i8a, _f8a, _f8a, _i8a, _i8a, _i8a, _i8a, _f8a))


@numba.njit(cache=True)
def _route(k, base, g, router, u1, u2, n, inflight, work, ist):
    """The replica (global index) that pool ``k`` (replicas ``base .. base+g-1``) gives a request."""
    if g == 1:
        return base
    if router == 0:  # random
        return base + min(int(u1 * g), g - 1)
    if router == 1:  # round robin
        r = base + ist[_RR0 + k] % g
        ist[_RR0 + k] += 1
        return r
    if router == 4:  # power of two choices
        a = min(int(u1 * g), g - 1)
        b = min(int(u2 * (g - 1)), g - 2)
        if b >= a:
            b += 1
        ra, rb = base + a, base + b
        return rb if n[rb] + inflight[rb] < n[ra] + inflight[ra] else ra
    start = min(int(u1 * g), g - 1)
    best, best_v = -1, 0
    for j in range(g):
        r = base + (start + j) % g
        v = n[r] + inflight[r] if router == 2 else work[r]
        if best < 0 or v < best_v:
            best, best_v = r, v
    return best




@numba.njit(cache=True)
def _hand_over(ready, n_ready, now, cfg, fcfg, arr_p, arr_d, u, n, inflight, work, assign, rcnt, lq, ist, fst):
    """Requests whose prefill is done: the decode router picks their replica; they queue for the link."""
    for j in range(n_ready):
        q = ready[j]
        rd = _route(1, cfg[0], cfg[1], cfg[3], u[q, 2], u[q, 3], n, inflight, work, ist)
        assign[q, 1] = rd
        inflight[rd] += 1
        work[rd] += arr_d[q]
        rcnt[rd, RROUTED] += 1
        lq[ist[_LQT]] = q
        ist[_LQT] += 1
        if fst[_TL] == np.inf:
            fst[_TL] = now + fcfg[0] * arr_p[lq[ist[_LQH]]]




@numba.njit(cache=True)
def _transfer_done(now, fcfg, arr_p, lq, dq, dtime, ist, fst):
    """The link finishes the head transfer (delivery ``ms_fixed`` later) and starts the next one."""
    q = lq[ist[_LQH]]
    ist[_LQH] += 1
    dq[ist[_DQT]], dtime[ist[_DQT]] = q, now + fcfg[1]
    ist[_DQT] += 1
    fst[_TL] = now + fcfg[0] * arr_p[lq[ist[_LQH]]] if ist[_LQH] < ist[_LQT] else np.inf




@numba.njit(cache=True)
def _engine(st, r):
    """Replica ``r``'s engine rows (the ``rows`` of :mod:`~llmstab.fluid_models.simulation.engine_step`)."""
    return st[0][r], st[1][r], st[2][r], st[3][r], st[4][r], st[5][r], st[6][r], st[7][r]


@numba.njit(cache=True)
def _start_batch(r, k, now, t_end, kern, params, pools, st, arr, req, tt, rep):
    """Replica ``r`` (pool ``k``) forms its batch at ``now`` and applies it at its end (unless past ``t_end``)."""
    rows, ist_r, fst_r = _engine(st, r), st[8][r], st[9][r]
    kv, b_max = pools[3][k], pools[4][k]
    recomp = ist_r[I_RECOMP]
    tok = form_batch(kern, params, pools[0][r], kv, b_max, pools[5][k], now, _UNLOGGED, rows, arr, req, tt,
                     ist_r, fst_r)
    if tok < 0:
        status = -1 - tok
        return STALLED_BATCH if status == STALLED else INVALID_BATCH if status == INVALID else NO_FIT_ALONE
    t_e = now + duration(rows, ist_r, tok, pools[1][k], pools[2][k])
    te, tb, btok, net = rep[1], rep[2], rep[3], rep[4]
    te[r], tb[r], btok[r] = t_e, now, tok
    if t_e <= t_end:
        apply_batch(kv, b_max, tok, now, t_e, rows, arr, req, tt, ist_r, fst_r)
    net[r] = tok - (ist_r[I_RECOMP] - recomp)  # recomputed tokens count back into the backlog
    return DONE


@numba.njit(cache=True)
def _end_batch(r, k, disagg, t_b, st, rep, rcnt, prefill_done, ready, ist):
    """Replica ``r``'s batch ends: its leavers go (``ready`` when a prefill pool hands them over); counters move."""
    n, te, tb, btok, net, work, busy = rep[0], rep[1], rep[2], rep[3], rep[4], rep[5], rep[7]
    left, n_left = st[7][r], st[8][r, I_LEFT]
    n_ready = 0
    for j in range(n_left):
        q = left[j]
        if disagg and k == 0:
            prefill_done[q] = t_b
            ready[n_ready] = q
            n_ready += 1
        else:
            ist[FIN] += 1
    n[r] -= n_left
    te[r] = np.inf
    rcnt[r, RB] += 1
    rcnt[r, RTOK] += btok[r]
    work[r] -= net[r]
    busy[r] += t_b - tb[r]
    ist[SERVED] += net[r]
    return n_ready


@numba.njit(cache=True)
def _arrive(t_a, cfg, fcfg, arr, u, st, req, tt, rep, rcnt, assign, prefill_done, ready, lq, ist, fst):
    """The next arrival: routed to the first pool, or (disaggregated, no prompt) straight to the link."""
    q, r0, disagg = ist[_NEXT], cfg[0], cfg[1] > 0
    arr_p, arr_d, n, work, inflight = arr[1], arr[2], rep[0], rep[5], rep[6]
    if disagg and arr_p[q] == 0:
        ist[_NEXT] += 1
        prefill_done[q] = t_a
        ready[0] = q
        _hand_over(ready, 1, t_a, cfg, fcfg, arr_p, arr_d, u, n, inflight, work, assign, rcnt, lq, ist, fst)
        return DONE
    for r in range(r0):  # room first: a router (round robin) changes state when it decides
        if n[r] >= st[0].shape[1]:
            return GROW_ROWS
    r = _route(0, 0, r0, cfg[2], u[q, 0], u[q, 1], n, inflight, work, ist)
    ist[_NEXT] += 1
    assign[q, 0] = r
    rcnt[r, RROUTED] += 1
    work[r] += arr_p[q] if disagg else arr_p[q] + arr_d[q]
    join(q, False, _engine(st, r), arr, req, tt, st[8][r])
    n[r] += 1
    return CROWDED if n[r] > cfg[4] else DONE


@numba.njit(cache=True)
def _deliver(now, cfg, arr, st, req, tt, rep, assign, delivered, dq, ist):
    """The head of the delivery queue joins its decode replica (its prompt is in the KV cache)."""
    q = dq[ist[_DQH]]
    rd, n = assign[q, 1], rep[0]
    if n[rd] >= st[0].shape[1]:
        return GROW_ROWS
    ist[_DQH] += 1
    delivered[q] = now
    rep[6][rd] -= 1
    join(q, True, _engine(st, rd), arr, req, tt, st[8][rd])
    n[rd] += 1
    return CROWDED if n[rd] > cfg[4] else DONE


@numba.njit(cache=True)
def _start_idle(now, t_end, kern_p, kern_d, params_p, params_d, pools, cfg, st, arr, req, tt, rep):
    """Every idle replica with work forms its batch: ``DONE`` and whether any started, or a status."""
    started = False
    te, n = rep[1], rep[0]
    for r in range(n.size):
        if te[r] == np.inf and n[r] > 0:
            k = 0 if r < cfg[0] else 1
            kern, params = (kern_p, params_p) if k == 0 else (kern_d, params_d)
            status = _start_batch(r, k, now, t_end, kern, params, pools, st, arr, req, tt, rep)
            if status != DONE:
                return status, started
            started = True
    return DONE, started


@numba.njit(types.int64(KERNEL_TYPE, KERNEL_TYPE, _f8a, _f8a, POOLS_TYPE, _i8a, _f8a, ARR_TYPE, _i8a, _f8m,
                        ST_TYPE, REQ_TYPE, TT_TYPE, REP_TYPE, _i8m, types.Tuple((_f8a, _f8a, _i8m)),
                        types.Tuple((_i8a, _i8a, _f8a, _i8a)), types.Tuple((_f8a, _i8a, _i8a, _i8a)), _i8a, _f8a),
           cache=True)
def cluster_loop(kern_p, kern_d, params_p, params_d, pools, cfg, fcfg, arr, cum_tok, u, st, req, tt, rep, rcnt,
                 per_req, queues, rec, ist, fst):
    """Run the cluster's events until the horizon, the end of the trace, or a status that needs Python.

    ``cfg = [prefill/only pool size, decode pool size, routers (2), crowd limit]``,
    ``fcfg = [link s per prompt token, link fixed s, horizon, grid spacing]``;
    ``rep = (present, batch end, batch start, batch tokens, net served, work, in flight, busy)`` per replica.
    """
    n, te = rep[0], rep[1]
    prefill_done, delivered, assign = per_req
    lq, dq, dtime, ready = queues
    disagg = cfg[1] > 0
    arr_t, arr_p, arr_d = arr[0], arr[1], arr[2]
    t_end, rec_dt, n_arr = fcfg[2], fcfg[3], arr_t.size
    while True:
        now = fst[NOW]
        t_a = arr_t[ist[_NEXT]] if ist[_NEXT] < n_arr else np.inf
        rb, t_b = -1, np.inf
        for r in range(n.size):
            if te[r] < t_b:
                rb, t_b = r, te[r]
        t_d = dtime[ist[_DQH]] if ist[_DQH] < ist[_DQT] else np.inf
        t_next = min(t_a, t_b, fst[_TL], t_d)
        if t_next > now:  # every event at `now` is done: idle replicas with work form their batches
            status, started = _start_idle(now, t_end, kern_p, kern_d, params_p, params_d, pools, cfg, st, arr, req,
                                          tt, rep)
            if status != DONE:
                return status
            if started:
                continue
        if t_next > t_end or t_next == np.inf:
            return DONE
        if not record_grid(ist, REC, rec, rec_dt, t_next, arr_t, cum_tok, ist[SERVED], ist[FIN], 0):
            return GROW_REC
        if t_b == t_next:  # a batch ends
            k = 0 if rb < cfg[0] else 1
            n_ready = _end_batch(rb, k, disagg, t_b, st, rep, rcnt, prefill_done, ready, ist)
            _hand_over(ready, n_ready, t_b, cfg, fcfg, arr_p, arr_d, u, n, rep[6], rep[5], assign, rcnt, lq, ist, fst)
        elif fst[_TL] == t_next:  # a transfer ends; its latency follows
            _transfer_done(t_next, fcfg, arr_p, lq, dq, dtime, ist, fst)
        elif t_d == t_next:  # a request reaches its decode replica
            status = _deliver(t_next, cfg, arr, st, req, tt, rep, assign, delivered, dq, ist)
            if status != DONE:
                return status
        else:  # an arrival
            status = _arrive(t_a, cfg, fcfg, arr, u, st, req, tt, rep, rcnt, assign, prefill_done, ready, lq, ist,
                             fst)
            if status != DONE:
                return status
        fst[NOW] = t_next
