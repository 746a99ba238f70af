"""One engine's batch, compiled: form it with the policy's kernel, check it, apply it (shared by both simulators).

The single-engine loop (:mod:`llmstab.fluid_models.simulation.engine_loop`) and
the cluster loop (:mod:`llmstab.fluid_models.simulation.cluster`) keep, per
engine, the same state and call the same three steps:

* :func:`join` a request to the engine (the tail of its waiting queue, or at
  once a running row when it arrives already prefilled);
* :func:`form_batch`: show the policy the running rows and the head of the
  waiting queue, run its kernel, check the batch against the batch constraints
  and the KV rules (a batch that only evicts is applied at once and the next
  one formed);
* :func:`apply_batch` at the batch's end time ``t_e``: evicted requests go back
  to the queue's head (recomputation), admitted ones take their blocks, tokens
  are consumed, finished requests (and, in a disaggregated prefill pool,
  requests whose prefill is done) leave and are listed in ``left``.

The state of one engine:

* ``rows = (ri, rf, eng, take, evicted, mem0, wq, left)``: the request matrices
  (running rows ``0 .. nr-1`` in arrival order, then the shown waiting rows),
  the engine context, the kernel's output, the evictions, the policy memory
  before the batch, the waiting queue (a ring of request ids) and the requests
  that left with the last batch;
* ``ist`` / ``fst``: the integer and float counters below (``I_*``, ``F_*``);
* ``kv = [total blocks, block size, watermark blocks, max active, waiting rows
  shown, leave when the prefill is done (0/1)]``.

Per request, by id (shared by all engines of a cluster: a request is on one at
a time): ``req = (gen, prompt_now, scratch)`` (outputs so far, the prompt to
prefill, the policy's scratch float) and the token times ``tt = (first_tok,
finish, last_tok, max_gap, pf_end, lat_first, gaps, gap_req, n_gaps)``. The
first token is emitted by the batch that completes the prefill (``first_tok``,
TTFT's end); ``max_gap`` is the largest gap between output tokens. For the
per-token latencies (:mod:`llmstab.fluid_models.simulation.latency`) the
step also keeps ``lat_first`` (the end of the last prefill batch before the
first decode, the first decode without a prompt) and, when ``gaps`` has room,
every decode token's gap since the request's previous token (``gaps``, its
request ``gap_req``; ``n_gaps[0]`` of them), in the order the batch log lists them.
"""

from __future__ import annotations

import numba

from ..policies.base import (ACTIVE, ARRIVAL, BATCHES, BLOCK_SIZE, BLOCKS, CLASS, CLOCK, CTX, DC, EVICT, FREE_BLOCKS,
                             GEN, ID, LAST_BATCH_END, LAST_TOKEN, MAX_ACTIVE, MEAN_BATCH, PF, PROMPT, SCRATCH,
                             TAKE_D, TAKE_P, TOTAL_BLOCKS, WAITING, WATERMARK_BLOCKS)
from ..policies.kernels.blocks import admission_blocks

__all__ = ["join", "form_batch", "apply_batch", "duration", "record_grid", "DONE", "PAUSED", "FULL_REC", "FULL_LOG", "FULL_COMP",
           "STALLED", "INVALID", "CROWDED", "NO_FIT", "IST_SIZE", "FST_SIZE", "I_NR", "I_NEXT", "I_REC", "I_KA",
           "I_SERVED", "I_FINISHED", "I_BATCHES", "I_COMP", "I_QH", "I_QLEN", "I_USED", "I_PREEMPT", "I_RECOMP",
           "I_STALL_MEM", "I_STALL_REQ", "I_PEAK", "I_BAD", "I_N", "I_NEV", "I_LEFT", "F_T", "F_BUSY", "F_LAST_END"]

# status codes (a loop returns them to Python)
DONE, PAUSED, FULL_REC, FULL_LOG, FULL_COMP, STALLED, INVALID, CROWDED, NO_FIT = range(9)
# integer state: running count, next arrival, next record, arrivals counted at the last record, tokens served,
# finished requests, batches, composition entries, queue head, queue length, KV blocks in use, preemptions,
# recomputed tokens, admission stalls (memory / request cap), peak blocks, the request that cannot fit,
# rows shown to the last kernel call, its evictions, requests that left with the last batch
I_NR, I_NEXT, I_REC, I_KA, I_SERVED, I_FINISHED, I_BATCHES, I_COMP, I_QH, I_QLEN, I_USED, I_PREEMPT, I_RECOMP, \
    I_STALL_MEM, I_STALL_REQ, I_PEAK, I_BAD, I_N, I_NEV, I_LEFT = range(20)
IST_SIZE = 20
# float state: clock, busy time, end of the last batch
F_T, F_BUSY, F_LAST_END = range(3)
FST_SIZE = 3


@numba.njit(cache=True)
def record_grid(ist, i_rec, rec, rec_dt, limit, arr_t, cum_tok, served, finished, used):
    """The backlog at the grid points ``k * rec_dt`` before ``limit``: False when ``rec`` is full.

    ``ist[i_rec]`` is the next grid point, ``ist[i_rec + 1]`` the arrivals
    counted at the last one; ``rec = (times, arrived - served tokens, arrived -
    finished requests, KV blocks used)`` (the last may have size 0: not kept).
    """
    k, ka, n_arr = ist[i_rec], ist[i_rec + 1], arr_t.size
    while k * rec_dt < limit:
        if k >= rec[0].size:
            ist[i_rec], ist[i_rec + 1] = k, ka
            return False
        g = k * rec_dt
        while ka < n_arr and arr_t[ka] <= g:
            ka += 1
        rec[0][k] = g
        rec[1][k] = cum_tok[ka] - served
        rec[2][k] = ka - finished
        if rec[3].size > 0:
            rec[3][k] = used
        k += 1
    ist[i_rec], ist[i_rec + 1] = k, ka
    return True


@numba.njit(cache=True)
def join(q, prefilled, rows, arr, req, tt, ist):
    """Request ``q`` joins: the waiting queue's tail, or a running row when it has nothing to prefill.

    ``prefilled``: its prompt is already in the KV cache (a disaggregated decode
    replica); a request whose trace prompt is 0 runs at once too.
    """
    ri, rf, wq = rows[0], rows[1], rows[6]
    arr_p = arr[1]
    if not prefilled and arr_p[q] > 0:
        wq[(ist[I_QH] + ist[I_QLEN]) % wq.size] = q
        ist[I_QLEN] += 1
        return
    row = ist[I_NR]
    ri[row, :] = 0
    ri[row, DC] = arr[2][q]
    ri[row, CLASS] = arr[3][q]
    ri[row, ID] = q
    ri[row, PROMPT] = arr_p[q] if prefilled else 0
    rf[row, ARRIVAL] = arr[0][q]
    rf[row, LAST_TOKEN] = tt[2][q]
    rf[row, SCRATCH] = req[2][q]
    ist[I_NR] += 1


@numba.njit(cache=True)
def _fill_window(ri, rf, nr, w, wq, ist, arr, req, last_tok):
    """Copy the first ``w`` waiting requests into rows ``nr .. nr+w-1``."""
    cap = wq.size
    gen, prompt_now, scratch = req
    arr_t, arr_d, arr_c = arr[0], arr[2], arr[3]  # out of the tuples once: each take costs a reference count
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
def duration(rows, ist, tok, batch_s, att):
    """The formed batch's duration (s): ``t(tok)`` plus decode and prefill attention over the members' contexts."""
    ri, take = rows[0], rows[3]
    dec, pf = 0.0, 0.0
    for i in range(ist[I_N]):
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
def _evict(ri, rf, ist, arr_p, req, evicted, n_ev):
    """Preemption by recomputation: the evicted rows free their blocks; their prompt becomes prompt + outputs."""
    gen, prompt_now, scratch = req
    for k in range(n_ev):
        i = evicted[k]
        evicted[k] = -1
        r = ri[i, ID]
        ist[I_USED] -= ri[i, BLOCKS]
        ist[I_RECOMP] += ri[i, CTX]
        ist[I_PREEMPT] += 1
        gen[r] = ri[i, GEN]
        prompt_now[r] = arr_p[r] + gen[r]
        scratch[r] = rf[i, SCRATCH]


@numba.njit(cache=True)
def _apply(rows, nr, t_e, kv, ist, arr_p, req, tt):
    """Evict, admit, serve and release; compacts the running rows and returns their new count."""
    ri, rf = rows[0], rows[1]
    _evict(ri, rf, ist, arr_p, req, rows[4], ist[I_NEV])
    first_tok, finish, last_tok, max_gap, pf_end, lat_first, gaps, gap_req, n_gaps = tt
    m = _serve(ri, rf, rows[3], nr, t_e, kv, ist, arr_p, req[2], rows[7], first_tok, finish, last_tok, max_gap,
               pf_end, lat_first, gaps, gap_req, n_gaps)
    if ist[I_USED] > ist[I_PEAK]:
        ist[I_PEAK] = ist[I_USED]
    _sort_by_arrival(ri, rf, m)
    return m


@numba.njit(cache=True)
def _serve(ri, rf, take, nr, t_e, kv, ist, arr_p, scratch, left, first_tok, finish, last_tok, max_gap, pf_end,
           lat_first, gaps, gap_req, n_gaps):
    """Admit and serve the rows, record their token times; leavers (finished, or prefilled in a prefill pool) go.

    One loop with every array passed in: a call per row, or arrays taken out
    of tuples inside the loop, cost reference counts that doubled the batch's time.
    """
    ist[I_LEFT] = 0
    m = 0
    for i in range(ist[I_N]):
        p, d, r = take[i, TAKE_P], take[i, TAKE_D], ri[i, ID]
        if take[i, EVICT] > 0 or (i >= nr and p == 0 and d == 0):
            if i >= nr:
                scratch[r] = rf[i, SCRATCH]
            continue
        if i >= nr:  # admitted: blocks for the whole prompt
            ri[i, BLOCKS] = admission_blocks(ri[i, PROMPT], kv[1])
            ist[I_USED] += ri[i, BLOCKS]
        if p > 0:
            pf_end[r] = t_e
            if p == ri[i, PF] and first_tok[r] != first_tok[r]:
                first_tok[r] = last_tok[r] = t_e  # the batch that completes the prefill emits the first token
        if d == 1:
            first_decode = lat_first[r] != lat_first[r]
            if first_decode:  # the latency module's first token: the last prefill batch before it
                lat_first[r] = pf_end[r] if arr_p[r] > 0 else t_e
            g = n_gaps[0]
            if g < gaps.size and (arr_p[r] > 0 or not first_decode):
                gaps[g], gap_req[g], n_gaps[0] = t_e - (pf_end[r] if first_decode else last_tok[r]), r, g + 1
            if first_tok[r] != first_tok[r]:
                first_tok[r] = t_e
            elif t_e - last_tok[r] > max_gap[r]:
                max_gap[r] = t_e - last_tok[r]
            last_tok[r] = rf[i, LAST_TOKEN] = t_e
            if ri[i, CTX] + 1 > ri[i, BLOCKS] * kv[1]:
                ri[i, BLOCKS] += 1
                ist[I_USED] += 1
        ri[i, PF] -= p
        ri[i, DC] -= d
        ri[i, GEN] += d
        ri[i, CTX] += p + d
        if ri[i, DC] == 0:
            finish[r] = t_e
            ist[I_FINISHED] += 1
        if ri[i, DC] == 0 or (kv[5] == 1 and p > 0 and ri[i, PF] == 0):
            ist[I_USED] -= ri[i, BLOCKS]
            left[ist[I_LEFT]] = r
            ist[I_LEFT] += 1
            continue
        if m != i:
            _copy_row(ri, rf, i, m)
        m += 1
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


@numba.njit(cache=True)
def form_batch(kernel, params, memory, kv, b_max, k_max, t, comp_room, rows, arr, req, tt, ist, fst):
    """Form, check (and, if it only evicts, apply) the engine's next batch at time ``t``.

    Returns its token count (> 0; ``ist[I_N]`` rows shown, ``ist[I_NEV]``
    evictions), or ``-1 - status`` with ``FULL_COMP`` when more than
    ``comp_room`` rows could be shown, ``STALLED``, ``INVALID`` or ``NO_FIT``.
    The policy memory before the kernel call is kept in ``rows[5]``.
    """
    ri, rf, eng, take, evicted, mem0 = rows[0], rows[1], rows[2], rows[3], rows[4], rows[5]
    while True:
        nr = ist[I_NR]
        w = max(0, min(ist[I_QLEN], kv[4], kv[3] - nr))
        if nr + w > comp_room:
            return -1 - FULL_COMP
        _fill_window(ri, rf, nr, w, rows[6], ist, arr, req, tt[2])
        n = nr + w
        _set_context(eng, kv, ist, fst, t)
        mem0[:] = memory
        tok = kernel(ri, rf, n, eng, b_max, k_max, params, memory, take)
        if tok < 0 or tok > b_max:
            return -1 - STALLED
        n_ev = _check_batch(ri, n, nr, take, tok, k_max, kv, ist, evicted)
        if n_ev < 0:
            return -1 - INVALID
        ist[I_N], ist[I_NEV] = n, n_ev
        if tok > 0:
            return tok
        status = _idle_batch(ri, n_ev, nr, w, evicted, ist)
        if status >= 0:
            return -1 - status
        _requeue(rows[6], ist, nr, n, take, evicted, n_ev, ri)  # evictions only: no time passes
        ist[I_NR] = _apply(rows, nr, t, kv, ist, arr[1], req, tt)


@numba.njit(cache=True)
def apply_batch(kv, b_max, tok, t, t_e, rows, arr, req, tt, ist, fst):
    """Apply the batch :func:`form_batch` formed at ``t``, ending at ``t_e``; the leavers are ``rows[7][:ist[I_LEFT]]``."""
    ri, take = rows[0], rows[3]
    nr, n = ist[I_NR], ist[I_N]
    _stall(ri, n, nr, take, tok, b_max, kv, ist)
    _requeue(rows[6], ist, nr, n, take, rows[4], ist[I_NEV], ri)
    ist[I_NR] = _apply(rows, nr, t_e, kv, ist, arr[1], req, tt)
    ist[I_SERVED] += tok
    ist[I_BATCHES] += 1
    fst[F_BUSY] += t_e - t
    fst[F_LAST_END] = t_e
