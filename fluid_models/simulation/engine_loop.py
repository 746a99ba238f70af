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

One batch: the policy's kernel marks tokens, admissions and evictions; the
loop checks them against the batch constraints and the KV rules (whole-prompt
admission with the watermark, the active-request cap, one block per
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

from ..policies.base import (ACTIVE, ARRIVAL, BATCHES, BLOCK_SIZE, BLOCKS, CLASS, CLOCK, CTX, DC, EVICT, FREE_BLOCKS,
                             GEN, ID, KERNEL_TYPE, LAST_BATCH_END, LAST_TOKEN, MAX_ACTIVE, MEAN_BATCH, PF, PROMPT,
                             SCRATCH, TAKE_D, TAKE_P, TOTAL_BLOCKS, WAITING, WATERMARK_BLOCKS, admission_blocks)

__all__ = ["engine_loop", "DONE", "PAUSED", "FULL_REC", "FULL_LOG", "FULL_COMP", "STALLED", "INVALID", "CROWDED",
           "NO_FIT", "IST_SIZE", "FST_SIZE", "I_NR", "I_NEXT", "I_REC", "I_KA", "I_SERVED", "I_FINISHED", "I_BATCHES",
           "I_COMP", "I_QH", "I_QLEN", "I_USED", "I_PREEMPT", "I_RECOMP", "I_STALL_MEM", "I_STALL_REQ", "I_PEAK",
           "I_BAD", "F_T", "F_BUSY", "F_LAST_END"]

# loop status codes
DONE, PAUSED, FULL_REC, FULL_LOG, FULL_COMP, STALLED, INVALID, CROWDED, NO_FIT = range(9)
# integer state: running count, next arrival, next record, arrivals counted at the last record, tokens served,
# finished requests, batches, composition entries, queue head, queue length, KV blocks in use, preemptions,
# recomputed tokens, admission stalls (memory / request cap), peak blocks, the request that cannot fit
I_NR, I_NEXT, I_REC, I_KA, I_SERVED, I_FINISHED, I_BATCHES, I_COMP, I_QH, I_QLEN, I_USED, I_PREEMPT, I_RECOMP, \
    I_STALL_MEM, I_STALL_REQ, I_PEAK, I_BAD = range(17)
IST_SIZE = 17
# float state: clock, busy time, end of the last batch
F_T, F_BUSY, F_LAST_END = range(3)
FST_SIZE = 3

_i8a, _f8a, _i8, _f8 = types.int64[::1], types.float64[::1], types.int64, types.float64
_i8m, _f8m = types.int64[:, ::1], types.float64[:, ::1]


@numba.njit(cache=True)
def _fill_window(ri, rf, nr, w, wq, ist, arr_t, arr_d, arr_c, gen, prompt_now, scratch, last_tok):
    """Copy the first ``w`` waiting requests into rows ``nr .. nr+w-1``."""
    cap = wq.size
    for j in range(w):
        r = wq[(ist[I_QH] + j) % cap]
        row = nr + j
        ri[row, PF] = prompt_now[r]
        ri[row, DC] = arr_d[r] - gen[r]
        ri[row, CTX] = 0
        ri[row, BLOCKS] = 0
        ri[row, PROMPT] = prompt_now[r]
        ri[row, CLASS] = arr_c[r]
        ri[row, ID] = r
        ri[row, GEN] = gen[r]
        rf[row, ARRIVAL] = arr_t[r]
        rf[row, LAST_TOKEN] = last_tok[r]
        rf[row, SCRATCH] = scratch[r]


@numba.njit(cache=True)
def _check_batch(ri, n, nr, take, tok, k_max, kv, ist, evicted):
    """Whether the batch obeys the batch constraints and the KV rules; fills ``evicted`` (rows by eviction order).

    Returns the number of evictions, or -1 when the batch breaks a rule.
    """
    total, members, n_ev = 0, 0, 0
    free = kv[0] - ist[I_USED]
    active = nr
    for i in range(n):
        p, d, e = take[i, TAKE_P], take[i, TAKE_D], take[i, EVICT]
        if p < 0 or p > ri[i, PF] or d < 0 or d > 1 or (d == 1 and ri[i, PF] > 0) or e < 0:
            return -1
        if e > 0:
            if i >= nr or p > 0 or d > 0 or e > n or evicted[e - 1] >= 0:
                return -1
            evicted[e - 1] = i
            n_ev += 1
            free += ri[i, BLOCKS]
            active -= 1
        total += p + d
        if p > 0 or d > 0:
            members += 1
    for k in range(n_ev):
        if evicted[k] < 0:
            return -1
    if total != tok or members > k_max:
        return -1
    for i in range(nr, n):  # admissions: the whole prompt, the watermark left free, the request cap
        if take[i, TAKE_P] > 0 or take[i, TAKE_D] > 0:
            need = admission_blocks(ri[i, PROMPT], kv[1])
            if active >= kv[3] or free - need < kv[2]:
                return -1
            free -= need
            active += 1
    for i in range(nr):  # a decode whose context fills its blocks takes one more
        if take[i, TAKE_D] == 1 and ri[i, CTX] + 1 > ri[i, BLOCKS] * kv[1]:
            free -= 1
    return n_ev if free >= 0 else -1


@numba.njit(cache=True)
def _duration(ri, n, take, tok, batch_s, att):
    """The batch's duration (s): ``t(tok)`` plus decode and prefill attention over the members' contexts."""
    dec, pf = 0.0, 0.0
    for i in range(n):
        c = take[i, TAKE_P]
        if c > 0:
            pf += c * (ri[i, CTX] + 0.5 * c)
        if take[i, TAKE_D] == 1:
            dec += ri[i, CTX]
    return batch_s[tok] + att[0] * dec + att[1] * pf


@numba.njit(cache=True)
def _requeue(wq, ist, nr, n, take, evicted, n_ev, ri):
    """Admitted requests leave the queue's head; evicted ones go back to it, the last eviction first."""
    cap = wq.size
    w = n - nr
    keep = 0
    for j in range(w - 1, -1, -1):  # non-admitted window requests slide to the back of the window segment
        i = nr + j
        if take[i, TAKE_P] == 0 and take[i, TAKE_D] == 0:
            wq[(ist[I_QH] + w - 1 - keep) % cap] = ri[i, ID]
            keep += 1
    admitted = w - keep
    ist[I_QH] = (ist[I_QH] + admitted) % cap
    ist[I_QLEN] -= admitted
    for k in range(n_ev):
        ist[I_QH] = (ist[I_QH] - 1) % cap
        wq[ist[I_QH]] = ri[evicted[k], ID]
        ist[I_QLEN] += 1
    return admitted


@numba.njit(cache=True)
def _record(ist, rec_t, rec_tok, rec_req, rec_kv, rec_dt, limit, arr_t, cum_tok):
    """Backlog (arrived minus served, recomputation counted back) and KV use at the grid points before ``limit``."""
    k, ka, n_arr = ist[I_REC], ist[I_KA], arr_t.size
    while k * rec_dt < limit:
        if k >= rec_t.size:
            ist[I_REC], ist[I_KA] = k, ka
            return False
        g = k * rec_dt
        while ka < n_arr and arr_t[ka] <= g:
            ka += 1
        rec_t[k] = g
        rec_tok[k] = cum_tok[ka] - ist[I_SERVED] + ist[I_RECOMP]
        rec_req[k] = ka - ist[I_FINISHED]
        rec_kv[k] = ist[I_USED]
        k += 1
    ist[I_REC], ist[I_KA] = k, ka
    return True


@numba.njit(cache=True, inline="always")
def _serve(ri, rf, i, p, d, t_e, first_tok, finish, last_tok, max_gap, ist, bs):
    """Apply request row ``i``'s tokens; True if it finished."""
    r = ri[i, ID]
    if p > 0 and p == ri[i, PF] and first_tok[r] != first_tok[r]:
        first_tok[r] = t_e  # the batch that completes the prefill emits the first token
        last_tok[r] = t_e
    if d == 1:
        if first_tok[r] != first_tok[r]:
            first_tok[r] = t_e
        else:
            gap = t_e - last_tok[r]
            if gap > max_gap[r]:
                max_gap[r] = gap
        last_tok[r] = t_e
        rf[i, LAST_TOKEN] = t_e
        if ri[i, CTX] + 1 > ri[i, BLOCKS] * bs:
            ri[i, BLOCKS] += 1
            ist[I_USED] += 1
    ri[i, PF] -= p
    ri[i, DC] -= d
    ri[i, GEN] += d
    ri[i, CTX] += p + d
    done = ri[i, DC] == 0
    if done:
        finish[r] = t_e
        ist[I_FINISHED] += 1
        ist[I_USED] -= ri[i, BLOCKS]
    return done


@numba.njit(cache=True)
def _apply(ri, rf, n, nr, take, t_e, kv, ist, arr_p, gen, prompt_now, scratch,
           first_tok, finish, last_tok, max_gap, evicted, n_ev):
    """Evict, admit, serve and release; compacts the running rows and returns their new count."""
    bs = kv[1]
    for k in range(n_ev):  # preemption by recomputation
        i = evicted[k]
        evicted[k] = -1
        r = ri[i, ID]
        ist[I_USED] -= ri[i, BLOCKS]
        ist[I_RECOMP] += ri[i, CTX]
        ist[I_PREEMPT] += 1
        gen[r] = ri[i, GEN]
        prompt_now[r] = arr_p[r] + gen[r]
        scratch[r] = rf[i, SCRATCH]
    m = 0
    for i in range(n):
        p, d = take[i, TAKE_P], take[i, TAKE_D]
        if take[i, EVICT] > 0 or (i >= nr and p == 0 and d == 0):
            if i >= nr:
                scratch[ri[i, ID]] = rf[i, SCRATCH]
            continue
        if i >= nr:  # admitted: blocks for the whole prompt
            ri[i, BLOCKS] = admission_blocks(ri[i, PROMPT], bs)
            ist[I_USED] += ri[i, BLOCKS]
        if _serve(ri, rf, i, p, d, t_e, first_tok, finish, last_tok, max_gap, ist, bs):
            continue
        if m != i:
            _copy_row(ri, rf, i, m)
        m += 1
    if ist[I_USED] > ist[I_PEAK]:
        ist[I_PEAK] = ist[I_USED]
    _sort_by_arrival(ri, rf, m)
    return m


@numba.njit(cache=True, inline="always")
def _copy_row(ri, rf, src, dst):
    """Row ``src`` of both request matrices to row ``dst`` (element by element: cheaper than slices)."""
    for c in range(ri.shape[1]):
        ri[dst, c] = ri[src, c]
    for c in range(rf.shape[1]):
        rf[dst, c] = rf[src, c]


@numba.njit(cache=True)
def _sort_by_arrival(ri, rf, m):
    """Keep the running rows in arrival order (only a re-admitted preempted request is ever out of place)."""
    for i in range(1, m):  # ids are in arrival order
        if ri[i, ID] > ri[i - 1, ID]:
            continue
        row_i, row_f = ri[i, :].copy(), rf[i, :].copy()
        j = i
        while j > 0 and ri[j - 1, ID] > row_i[ID]:
            _copy_row(ri, rf, j - 1, j)
            j -= 1
        ri[j] = row_i
        rf[j] = row_f


@numba.njit(cache=True)
def _arrive(wq, ist, arr_t, arr_p, arr_d, arr_c, t, ri, rf, last_tok, scratch):
    """Arrivals up to ``t`` join the tail of the waiting queue; one with prompt 0 (already prefilled) runs at once."""
    nxt, cap = ist[I_NEXT], wq.size
    while nxt < arr_t.size and arr_t[nxt] <= t:
        if arr_p[nxt] == 0:
            row = ist[I_NR]
            ri[row, :] = 0
            ri[row, DC] = arr_d[nxt]
            ri[row, CLASS] = arr_c[nxt]
            ri[row, ID] = nxt
            rf[row, ARRIVAL] = arr_t[nxt]
            rf[row, LAST_TOKEN] = last_tok[nxt]
            rf[row, SCRATCH] = scratch[nxt]
            ist[I_NR] += 1
        else:
            wq[(ist[I_QH] + ist[I_QLEN]) % cap] = nxt
            ist[I_QLEN] += 1
        nxt += 1
    ist[I_NEXT] = nxt


@numba.njit(cache=True)
def _set_context(eng, kv, ist, fst, t):
    eng[CLOCK] = t
    eng[BATCHES] = ist[I_BATCHES]
    eng[MEAN_BATCH] = fst[F_BUSY] / ist[I_BATCHES] if ist[I_BATCHES] > 0 else 0.0
    eng[LAST_BATCH_END] = fst[F_LAST_END]
    eng[FREE_BLOCKS] = kv[0] - ist[I_USED]
    eng[TOTAL_BLOCKS] = kv[0]
    eng[BLOCK_SIZE] = kv[1]
    eng[WATERMARK_BLOCKS] = kv[2]
    eng[MAX_ACTIVE] = kv[3]
    eng[ACTIVE] = ist[I_NR]
    eng[WAITING] = ist[I_QLEN]


@numba.njit(cache=True)
def _log_batch(ri, n, nr, take, res_log, comp_off, comp_req, comp_p, comp_d, ist, t, tok):
    """Per-batch records: start, tokens, demand, resident, KV blocks in use, composition."""
    log_start, log_tokens, log_demand, log_resident, log_kv = res_log
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
def _stall(ri, n, nr, take, tok, b_max, kv, ist):
    """Count a batch with budget left while the queue's head was not admitted (memory or the request cap)."""
    if ist[I_QLEN] == 0 or tok >= b_max:
        return
    if nr < n and (take[nr, TAKE_P] > 0 or take[nr, TAKE_D] > 0):
        return
    if nr >= kv[3]:
        ist[I_STALL_REQ] += 1
    else:
        ist[I_STALL_MEM] += 1


@numba.njit(cache=True)
def _idle_batch(ri, n_ev, nr, w, evicted, ist):
    """A batch of no tokens: a status to stop with, or -1 when it only evicted (and the loop goes on).

    ``NO_FIT``: a request cannot be served even alone (its prompt does not fit
    an empty cache, or it evicted itself with nothing else running).
    """
    if n_ev == 0:
        if nr == 0 and w > 0:
            ist[I_BAD] = ri[nr, ID]
            return NO_FIT
        return STALLED
    if nr == 1 and n_ev == 1:
        ist[I_BAD] = ri[evicted[0], ID]
        return NO_FIT
    return -1


_LOOP_SIGNATURE = types.int64(
    KERNEL_TYPE, _f8a, _i8a, _f8a, _f8a, _i8a, _i8, _i8,
    _f8a, _i8a, _i8a, _i8a, _i8a, _f8, _f8, _i8, _i8,
    _i8m, _f8m, _f8a, _i8m, _i8a, _i8a, _i8a, _i8a, _i8a, _f8a,
    _f8a, _f8a, _f8a, _f8a,
    types.Tuple((_f8a, _i8a, _i8a, _i8a)), types.Tuple((_f8a, _i8a, _i8a, _i8a, _i8a)), types.UniTuple(_i8a, 4),
    _i8a, _f8a)


@numba.njit(_LOOP_SIGNATURE, cache=True)
def engine_loop(kernel, params, memory, batch_s, att, kv, b_max, k_max,
                arr_t, arr_p, arr_d, arr_c, cum_tok, t_end, rec_dt, pause_at, max_resident,
                ri, rf, eng, take, evicted, mem0, wq, gen, prompt_now, scratch,
                first_tok, finish, last_tok, max_gap, rec, res_log, comp, ist, fst):
    """Run batches until the horizon, the end of the trace, or a status that needs Python (see the codes above).

    ``kv = [total blocks, block size, watermark blocks, max active, waiting rows shown]``; ``att =
    [decode, prefill]`` attention in s per token x context token; ``rec`` =
    (times, backlog tokens, backlog requests, KV blocks) on the grid;
    ``res_log`` the per-batch log, ``comp`` its composition.
    """
    rec_t, rec_tok, rec_req, rec_kv = rec
    comp_off, comp_req, comp_p, comp_d = comp
    n_arr = arr_t.size
    rec_need = int(batch_s.max() / rec_dt) + 2  # without attention a batch never needs more grid points
    while True:
        t = fst[F_T]
        _arrive(wq, ist, arr_t, arr_p, arr_d, arr_c, t, ri, rf, last_tok, scratch)
        nr = ist[I_NR]
        if nr + ist[I_QLEN] > max_resident:
            return CROWDED
        if nr + ist[I_QLEN] == 0:
            nxt = ist[I_NEXT]
            if nxt >= n_arr or arr_t[nxt] > t_end:
                return DONE
            if not _record(ist, rec_t, rec_tok, rec_req, rec_kv, rec_dt, arr_t[nxt], arr_t, cum_tok):
                return FULL_REC
            fst[F_T] = arr_t[nxt]
            continue
        if ist[I_BATCHES] >= pause_at:
            return PAUSED
        if ist[I_REC] + rec_need > rec_t.size:
            return FULL_REC
        if res_log[0].size > 0 and ist[I_BATCHES] >= res_log[0].size:
            return FULL_LOG
        w = max(0, min(ist[I_QLEN], kv[4], kv[3] - nr))
        if comp_off.size > 0 and ist[I_COMP] + nr + w > comp_req.size:
            return FULL_COMP
        _fill_window(ri, rf, nr, w, wq, ist, arr_t, arr_d, arr_c, gen, prompt_now, scratch, last_tok)
        n = nr + w
        _set_context(eng, kv, ist, fst, t)
        mem0[:] = memory
        tok = kernel(ri, rf, n, eng, b_max, k_max, params, memory, take)
        if tok < 0 or tok > b_max:
            return STALLED
        n_ev = _check_batch(ri, n, nr, take, tok, k_max, kv, ist, evicted)
        if n_ev < 0:
            return INVALID
        if tok == 0:
            status = _idle_batch(ri, n_ev, nr, w, evicted, ist)
            if status >= 0:
                return status
            # evictions only: no time passes, the next batch is formed at once
            _requeue(wq, ist, nr, n, take, evicted, n_ev, ri)
            ist[I_NR] = _apply(ri, rf, n, nr, take, t, kv, ist, arr_p, gen, prompt_now, scratch,
                               first_tok, finish, last_tok, max_gap, evicted, n_ev)
            continue
        t_e = t + _duration(ri, n, take, tok, batch_s, att)
        if t_e > t_end:
            return DONE
        if ist[I_REC] + (t_e - t) / rec_dt + 2 > rec_t.size:
            memory[:] = mem0  # the batch is formed again once the records have grown
            return FULL_REC
        _record(ist, rec_t, rec_tok, rec_req, rec_kv, rec_dt, t_e, arr_t, cum_tok)
        _log_batch(ri, n, nr, take, res_log, comp_off, comp_req, comp_p, comp_d, ist, t, tok)
        _stall(ri, n, nr, take, tok, b_max, kv, ist)
        _requeue(wq, ist, nr, n, take, evicted, n_ev, ri)
        ist[I_NR] = _apply(ri, rf, n, nr, take, t_e, kv, ist, arr_p, gen, prompt_now, scratch,
                           first_tok, finish, last_tok, max_gap, evicted, n_ev)
        ist[I_SERVED] += tok
        ist[I_BATCHES] += 1
        fst[F_BUSY] += t_e - t
        fst[F_LAST_END] = t_e
        fst[F_T] = t_e
