"""A compiled simulator of a cluster: replicas behind a router, or prefill/decode pools joined by a link.

Every replica is an engine as in :mod:`llmstab.fluid_models.simulation.simulator`:
at the start of each iteration its policy's own kernel (the same compiled
function, passed as a first-class function) forms a batch from the replica's
requests, the batch lasts ``t(b)``, and at its end its tokens are consumed.
Memory is unlimited (as in the single-engine simulator today): a kernel that
evicts is rejected. One compiled event loop runs all replicas: the next event
is the earliest of an arrival, a batch end, a transfer end or a delivery; at
equal times batch ends come first, then transfers, deliveries and arrivals,
and only then do idle replicas with work form their batches (so a request
arriving exactly when a batch ends joins the next one, as on one engine).

* **Routing** happens at arrival (the prefill or only pool) and, when
  disaggregated, at prefill completion (the decode pool): see
  :mod:`llmstab.fluid_models.cluster` for the routers. The uniforms the
  routers use are drawn up front from the run's seeded generator, so a seed
  fixes the whole run.
* **Disaggregated**: a request leaves its prefill replica when its prefill is
  done (``prefill_done``), queues for the shared link, occupies it for
  ``ms_per_token * prompt``, and is *delivered* ``ms_fixed`` later to the
  decode replica chosen at prefill completion, which may schedule it from then
  on (``delivered``). As on a single engine, the batch that completes the
  prefill emits the first token (TTFT ends at ``prefill_done``, as DistServe
  and Splitwise count it), so **the transfer time is part of the first
  time-between-tokens gap**: the second token comes from the decode replica's
  first batch after ``delivered``.

Examples
--------
>>> from llmstab.fluid_models.batch_time import Staircase
>>> from llmstab.fluid_models.cluster import Cluster, Pool
>>> from llmstab.fluid_models.distributions import Deterministic, Geometric
>>> from llmstab.fluid_models.engine import Engine
>>> from llmstab.fluid_models.policies import Sarathi
>>> from llmstab.fluid_models.workload import RequestClass, Workload
>>> pool = Pool(Engine(Staircase("11.28", "35.47", 128), 512), Sarathi(), 4)
>>> work = Workload((RequestClass("chat", 40, Deterministic(129), Geometric(112)),))
>>> r = simulate_cluster(Cluster((pool,), ("jsq",)), work, horizon_s=60.0, seed=1)
>>> r == simulate_cluster(Cluster((pool,), ("jsq",)), work, horizon_s=60.0, seed=1)
True
>>> bool(r.routed.sum() == r.trace.size), r.routed.size
(True, 4)
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numba
import numpy as np
from numba import types

from .arrivals import SimulationInputError, Trace, sample_trace
from .results import ArrayResult, request_latencies, summary
from ..cluster import ROUTERS, Cluster
from ..policies.base import (ARRIVAL, BATCHES, CLOCK, DC, EVICT, ID, KERNEL_TYPE, LAST_BATCH_END, LAST_TOKEN,
                             MEAN_BATCH, NF, NI, PF, PROMPT, SCRATCH, TAKE_COLUMNS, TAKE_D, TAKE_P,
                             unlimited_engine)
from ..workload import Workload

__all__ = ["simulate_cluster", "ClusterResult"]

_NO_LIMIT = 2**62
_DONE, _GROW_ROWS, _GROW_REC, _STALLED, _INVALID, _CROWDED = range(6)
# integer state: next arrival, link queue head/tail, delivery queue head/tail, finished, served tokens,
# grid points recorded, arrivals counted at the last grid point, round-robin counters (2)
_NEXT, _LQH, _LQT, _DQH, _DQT, _FIN, _SERVED, _REC, _KA, _RR0, _RR1 = range(11)
# float state: the clock, the end of the transfer in progress (inf when the link is idle)
_NOW, _TL = range(2)
# per-replica integer counters: batches, tokens served, requests routed
_RB, _RTOK, _RROUTED = range(3)

_i8a, _f8a, _i8, _f8 = types.int64[::1], types.float64[::1], types.int64, types.float64
_i8m, _f8m = types.int64[:, ::1], types.float64[:, ::1]
_i83, _f83 = types.int64[:, :, ::1], types.float64[:, :, ::1]


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
def _append(r, q, ri, rf, res, n, arr_t, prompt_left, decode_left):
    """Request ``q`` joins replica ``r``'s rows (waiting: no KV held)."""
    i = n[r]
    res[r, i] = q
    for c in range(NI):
        ri[r, i, c] = 0
    ri[r, i, PF] = prompt_left
    ri[r, i, DC] = decode_left
    ri[r, i, PROMPT] = prompt_left
    ri[r, i, ID] = q
    rf[r, i, ARRIVAL] = arr_t[q]
    rf[r, i, LAST_TOKEN] = np.nan
    rf[r, i, SCRATCH] = np.nan
    n[r] = i + 1


@numba.njit(cache=True)
def _start_batch(r, k, now, kern, params, memory, batch_s, b_max, k_max, ri, rf, take, eng, pf0, n, nb, te, tok,
                 rcnt, busy):
    c = n[r]
    for i in range(c):
        pf0[r, i] = ri[r, i, PF]
    e = eng[r]
    e[CLOCK] = now
    e[BATCHES] = rcnt[r, _RB]
    e[MEAN_BATCH] = busy[r] / rcnt[r, _RB] if rcnt[r, _RB] > 0 else 0.0
    t = kern(ri[r], rf[r], c, e, b_max[k], k_max[k], params, memory[r], take[r])
    if t <= 0 or t > b_max[k]:
        return False
    nb[r], tok[r], te[r] = c, t, now + batch_s[k, t]
    return True


@numba.njit(cache=True)
def _deliver_tokens(r, i, q, t_e, d, first_tok, last_tok, max_gap, rf):
    if d == 1:
        if first_tok[q] != first_tok[q]:
            first_tok[q] = t_e
        else:
            gap = t_e - last_tok[q]
            if gap > max_gap[q]:
                max_gap[q] = gap
        last_tok[q] = t_e
        rf[r, i, LAST_TOKEN] = t_e


@numba.njit(cache=True)
def _end_batch(r, k, disagg, t_e, ri, rf, take, res, pf0, n, nb, te, tok, k_max, eng, rcnt, work,
               first_tok, finish, last_tok, max_gap, prefill_done, ready, ist):
    """Consume replica ``r``'s batch; requests done with their pool go to ``ready`` (disaggregated prefill)."""
    c, m, total, members, n_ready = nb[r], 0, 0, 0, 0
    for i in range(n[r]):
        q = res[r, i]
        if i < c:
            p, d = take[r, i, TAKE_P], take[r, i, TAKE_D]
            if p < 0 or p > pf0[r, i] or d < 0 or d > 1 or (d == 1 and pf0[r, i] > 0) or take[r, i, EVICT] != 0:
                return -1
            total += p + d
            if p > 0 or d > 0:
                members += 1
            if p > 0 and p == pf0[r, i] and first_tok[q] != first_tok[q]:
                first_tok[q] = t_e  # the batch that completes the prefill emits the first token
                last_tok[q] = t_e
            _deliver_tokens(r, i, q, t_e, d, first_tok, last_tok, max_gap, rf)
            ri[r, i, PF] -= p
            ri[r, i, DC] -= d
            if disagg and k == 0 and ri[r, i, PF] == 0:
                prefill_done[q] = t_e
                ready[n_ready] = q
                n_ready += 1
                continue
            if ri[r, i, DC] == 0:
                finish[q] = t_e
                ist[_FIN] += 1
                continue
        res[r, m] = q
        if m != i:
            for col in range(NI):
                ri[r, m, col] = ri[r, i, col]
            for col in range(NF):
                rf[r, m, col] = rf[r, i, col]
        m += 1
    if total != tok[r] or members > k_max[k]:
        return -1
    n[r], nb[r], te[r] = m, 0, np.inf
    rcnt[r, _RB] += 1
    rcnt[r, _RTOK] += total
    work[r] -= total
    eng[r, LAST_BATCH_END] = t_e
    return n_ready


@numba.njit(cache=True)
def _record(until, arr_t, cum_tok, rec_t, rec_tok, rec_req, rec_dt, ist):
    """Grid points before ``until``: arrived minus served tokens, arrived minus finished requests."""
    k, ka, n_arr = ist[_REC], ist[_KA], arr_t.size
    while k * rec_dt < until:
        if k >= rec_t.size:
            ist[_REC], ist[_KA] = k, ka
            return False
        g = k * rec_dt
        while ka < n_arr and arr_t[ka] <= g:
            ka += 1
        rec_t[k] = g
        rec_tok[k] = cum_tok[ka] - ist[_SERVED]
        rec_req[k] = ka - ist[_FIN]
        k += 1
    ist[_REC], ist[_KA] = k, ka
    return True


@numba.njit(cache=True)
def _hand_over(ready, n_ready, now, cfg, fcfg, arr_p, arr_d, u, n, inflight, work, assign, rcnt, lq, ist, fst):
    """Requests whose prefill is done: the decode router picks their replica; they queue for the link."""
    for j in range(n_ready):
        q = ready[j]
        rd = _route(1, cfg[0], cfg[1], cfg[3], u[q, 2], u[q, 3], n, inflight, work, ist)
        assign[q, 1] = rd
        inflight[rd] += 1
        work[rd] += arr_d[q]
        rcnt[rd, _RROUTED] += 1
        lq[ist[_LQT]] = q
        ist[_LQT] += 1
        if fst[_TL] == np.inf:
            fst[_TL] = now + fcfg[0] * arr_p[lq[ist[_LQH]]]


@numba.njit(cache=True)
def _arrive(t_a, cfg, fcfg, arr_t, arr_p, arr_d, u, ri, rf, res, n, inflight, work, rcnt, assign, prefill_done,
            ready, lq, ist, fst):
    """The next arrival: routed to the first pool, or (disaggregated, no prompt) straight to the link."""
    q, r0, disagg = ist[_NEXT], cfg[0], cfg[1] > 0
    if disagg and arr_p[q] == 0:
        ist[_NEXT] += 1
        prefill_done[q] = t_a
        ready[0] = q
        _hand_over(ready, 1, t_a, cfg, fcfg, arr_p, arr_d, u, n, inflight, work, assign, rcnt, lq, ist, fst)
        return _DONE
    for r in range(r0):  # room first: a router (round robin) changes state when it decides
        if n[r] >= res.shape[1]:
            return _GROW_ROWS
    r = _route(0, 0, r0, cfg[2], u[q, 0], u[q, 1], n, inflight, work, ist)
    ist[_NEXT] += 1
    assign[q, 0] = r
    rcnt[r, _RROUTED] += 1
    work[r] += arr_p[q] if disagg else arr_p[q] + arr_d[q]
    _append(r, q, ri, rf, res, n, arr_t, arr_p[q], arr_d[q])
    return _CROWDED if n[r] > cfg[4] else _DONE


@numba.njit(cache=True)
def _transfer_done(now, fcfg, arr_p, lq, dq, dtime, ist, fst):
    """The link finishes the head transfer (delivery ``ms_fixed`` later) and starts the next one."""
    q = lq[ist[_LQH]]
    ist[_LQH] += 1
    dq[ist[_DQT]], dtime[ist[_DQT]] = q, now + fcfg[1]
    ist[_DQT] += 1
    fst[_TL] = now + fcfg[0] * arr_p[lq[ist[_LQH]]] if ist[_LQH] < ist[_LQT] else np.inf


@numba.njit(cache=True)
def _deliver(now, cfg, arr_t, arr_p, arr_d, ri, rf, res, n, inflight, assign, delivered, dq, ist):
    """The head of the delivery queue joins its decode replica (its prompt is in the KV cache)."""
    q = dq[ist[_DQH]]
    rd = assign[q, 1]
    if n[rd] >= res.shape[1]:
        return _GROW_ROWS
    ist[_DQH] += 1
    delivered[q] = now
    inflight[rd] -= 1
    _append(rd, q, ri, rf, res, n, arr_t, 0, arr_d[q])
    ri[rd, n[rd] - 1, PROMPT] = arr_p[q]
    return _CROWDED if n[rd] > cfg[4] else _DONE


@numba.njit(types.int64(KERNEL_TYPE, KERNEL_TYPE, _f8a, _f8a, _i8m, _f8m, _i8a, _i8a, _i8a, _f8a,
                        _f8a, _i8a, _i8a, _i8a, _f8m,
                        _i83, _f83, _i83, _i8m, _i8m, _f8m,
                        _i8a, _i8a, _i8a, _i8a, _i8a, _f8a, _f8a, _i8m,
                        _f8a, _f8a, _f8a, _f8a, _f8a, _f8a, _i8m,
                        _i8a, _i8a, _f8a, _i8a,
                        _f8a, _i8a, _i8a, _i8a, _f8a), cache=True)
def _cluster_loop(kern_p, kern_d, params_p, params_d, memory, batch_s, b_max, k_max, cfg, fcfg,
                  arr_t, arr_p, arr_d, cum_tok, u,
                  ri, rf, take, res, pf0, eng,
                  n, nb, tok, work, inflight, te, busy, rcnt,
                  first_tok, finish, last_tok, max_gap, prefill_done, delivered, assign,
                  lq, dq, dtime, ready,
                  rec_t, rec_tok, rec_req, ist, fst):
    r0, n_rep = cfg[0], n.size
    disagg = cfg[1] > 0
    t_end, rec_dt, n_arr = fcfg[2], fcfg[3], arr_t.size
    while True:
        now = fst[_NOW]
        t_a = arr_t[ist[_NEXT]] if ist[_NEXT] < n_arr else np.inf
        rb, t_b = -1, np.inf
        for r in range(n_rep):
            if te[r] < t_b:
                rb, t_b = r, te[r]
        t_d = dtime[ist[_DQH]] if ist[_DQH] < ist[_DQT] else np.inf
        t_next = min(t_a, t_b, fst[_TL], t_d)
        if t_next > now:  # every event at `now` is done: idle replicas with work form their batches
            started = False
            for r in range(n_rep):
                if te[r] == np.inf and n[r] > 0:
                    k = 0 if r < r0 else 1
                    kern, params = (kern_p, params_p) if k == 0 else (kern_d, params_d)
                    if not _start_batch(r, k, now, kern, params, memory, batch_s, b_max, k_max, ri, rf, take, eng,
                                        pf0, n, nb, te, tok, rcnt, busy):
                        return _STALLED
                    started = True
            if started:
                continue
        if t_next > t_end or t_next == np.inf:
            return _DONE
        if not _record(t_next, arr_t, cum_tok, rec_t, rec_tok, rec_req, rec_dt, ist):
            return _GROW_REC
        if t_b == t_next:  # a batch ends
            k = 0 if rb < r0 else 1
            busy[rb] += batch_s[k, tok[rb]]
            ist[_SERVED] += tok[rb]
            n_ready = _end_batch(rb, k, disagg, t_b, ri, rf, take, res, pf0, n, nb, te, tok, k_max, eng, rcnt, work,
                                 first_tok, finish, last_tok, max_gap, prefill_done, ready, ist)
            if n_ready < 0:
                return _INVALID
            _hand_over(ready, n_ready, t_b, cfg, fcfg, arr_p, arr_d, u, n, inflight, work, assign, rcnt, lq, ist, fst)
        elif fst[_TL] == t_next:  # a transfer ends; its latency follows
            _transfer_done(t_next, fcfg, arr_p, lq, dq, dtime, ist, fst)
        elif t_d == t_next:  # a request reaches its decode replica
            status = _deliver(t_next, cfg, arr_t, arr_p, arr_d, ri, rf, res, n, inflight, assign, delivered, dq, ist)
            if status != _DONE:
                return status
        else:  # an arrival
            status = _arrive(t_a, cfg, fcfg, arr_t, arr_p, arr_d, u, ri, rf, res, n, inflight, work, rcnt, assign,
                             prefill_done, ready, lq, ist, fst)
            if status != _DONE:
                return status
        fst[_NOW] = t_next


@dataclass(frozen=True, eq=False)
class ClusterResult(ArrayResult):
    """What a cluster run produced (times in seconds; NaN for what had not happened when the run stopped).

    ``assignment[q]`` is request ``q``'s replica in the first pool and, when
    disaggregated, its decode replica (global index, ``-1`` when none).
    ``prefill_done`` / ``delivered`` (disaggregated) are when its prefill ended
    and when its KV cache reached the decode replica. ``times``,
    ``backlog_tokens`` (arrived minus served tokens) and ``backlog_requests``
    are the cluster's backlog on a regular grid, as for one engine, so
    :func:`llmstab.checkers.growth.estimate_growth` reads a cluster run too.
    Per replica: ``batches``, ``tokens``, ``busy_time`` and ``routed`` (requests
    its router sent it). Two results are equal when every recorded array is.
    """

    routers: tuple[str, ...]
    pool_sizes: tuple[int, ...]
    seed: int
    trace: Trace
    assignment: np.ndarray
    first_token: np.ndarray
    finish: np.ndarray
    worst_gap: np.ndarray
    prefill_done: np.ndarray
    delivered: np.ndarray
    times: np.ndarray
    backlog_tokens: np.ndarray
    backlog_requests: np.ndarray
    end_time: float
    batches: np.ndarray
    tokens: np.ndarray
    busy_time: np.ndarray
    routed: np.ndarray
    offered_token_rate: float | None
    stopped_at_backlog: int | None = None
    extra: dict = field(default_factory=dict, repr=False)

    _ARRAYS = ("assignment", "first_token", "finish", "worst_gap", "prefill_done", "delivered", "times",
               "backlog_tokens", "batches", "tokens", "routed")

    @property
    def n_batches(self) -> int:
        """Batches run by all replicas together."""
        return int(self.batches.sum())

    @property
    def disaggregated(self) -> bool:
        """Whether the run had separate prefill and decode pools."""
        return len(self.pool_sizes) == 2

    def replica_backlog(self, times: np.ndarray) -> np.ndarray:
        """Requests present at each replica (rows) at ``times`` (columns); in transfer counts nowhere."""
        tr, out = self.trace, np.zeros((self.batches.size, times.size), np.int64)
        leave_first = self.prefill_done if self.disaggregated else self.finish
        stays = [(self.assignment[:, 0], tr.times, leave_first)]
        if self.disaggregated:
            stays.append((self.assignment[:, 1], self.delivered, self.finish))
        for replica, start, stop in stays:
            for r in np.unique(replica[replica >= 0]):
                mine = replica == r
                s = np.sort(start[mine][np.isfinite(start[mine])])
                e = np.sort(stop[mine][np.isfinite(stop[mine])])
                out[r] += np.searchsorted(s, times, side="right") - np.searchsorted(e, times, side="right")
        return out

    def metrics(self) -> dict:
        """Cluster and per-replica metrics: throughput, TTFT / TBT / end-to-end percentiles, backlog, imbalance.

        ``cluster.lost`` counts requests that arrived before the end and are
        neither finished nor present anywhere (always 0: nothing is lost between pools).
        """
        tr, span = self.trace, self.end_time if self.end_time > 0 else float("nan")
        arrived = tr.times <= self.end_time
        done = np.isfinite(self.finish)
        grid = np.linspace(0.0, self.end_time, 512)
        per_replica = self.replica_backlog(grid)
        present_end = int(self.replica_backlog(np.array([self.end_time])).sum())
        in_link = int((np.isfinite(self.prefill_done) & ~(self.delivered <= self.end_time) & arrived).sum()) \
            if self.disaggregated else 0
        cluster = {
            "arrived": int(arrived.sum()), "finished": int(done.sum()), "present_at_end": present_end,
            "in_transfer_at_end": in_link,
            "lost": int(arrived.sum() - done.sum() - present_end - in_link),
            "throughput_requests_per_s": float(done.sum() / span),
            "throughput_tokens_per_s": float((tr.prompt[done] + tr.decode[done]).sum() / span),
            **request_latencies(tr, self.first_token, self.finish, self.worst_gap, done),
            "batches": self.n_batches,
            "router_imbalance": {
                "routed_max_over_mean": _ratio(self.routed, self.pool_sizes),
                "mean_backlog_spread_requests": _spread(per_replica, self.pool_sizes)},
        }
        if self.disaggregated:
            moved = np.isfinite(self.delivered)
            cluster["transfer_s"] = summary(self.delivered[moved] - self.prefill_done[moved])
        replicas = [{"replica": r, "pool": self._pool_name(r), "routed": int(self.routed[r]),
                     "batches": int(self.batches[r]), "tokens_per_s": float(self.tokens[r] / span),
                     "utilisation": float(self.busy_time[r] / span),
                     "backlog_mean_requests": float(per_replica[r].mean()),
                     "backlog_max_requests": int(per_replica[r].max())} for r in range(self.batches.size)]
        return {"cluster": cluster, "replicas": replicas}

    def _pool_name(self, r: int) -> str:
        if not self.disaggregated:
            return "replicas"
        return "prefill" if r < self.pool_sizes[0] else "decode"


def _spread(backlog: np.ndarray, sizes: tuple[int, ...]) -> list[float]:
    """Per pool: the time-average of (most - fewest requests present) over its replicas."""
    bounds = np.cumsum((0,) + sizes)
    return [float((backlog[a:b].max(0) - backlog[a:b].min(0)).mean()) for a, b in zip(bounds[:-1], bounds[1:])]


def _ratio(routed: np.ndarray, sizes: tuple[int, ...]) -> list[float]:
    """Per pool: the most requests any replica was sent over the pool's mean (1 = perfectly even)."""
    out, base = [], 0
    for g in sizes:
        part = routed[base: base + g].astype(float)
        out.append(float(part.max() / part.mean()) if part.mean() > 0 else 1.0)
        base += g
    return out


def _trace_for(cluster: Cluster, workload: Workload | None, rng: np.random.Generator, n_requests: int | None,
               horizon_s: float | None, arrivals: str, trace: Trace | None) -> tuple[Trace, float | None]:
    if arrivals == "trace":
        if trace is None:
            raise SimulationInputError("trace", "arrivals='trace' needs a trace")
        return (trace if n_requests is None else trace.head(n_requests)), None
    if workload is None:
        raise SimulationInputError("workload", "needed unless arrivals='trace'")
    if n_requests is None and horizon_s is None:
        raise SimulationInputError("horizon", "give a horizon or a number of requests")
    return sample_trace(workload, rng, kind=arrivals, n_requests=n_requests, horizon_s=horizon_s), float(workload.token_rate)


def _pool_arrays(cluster: Cluster) -> dict:
    """Kernels, options, batch-time tables and limits of the (one or two) pools, as the loop takes them."""
    pools = cluster.pools
    width = max(p.engine.token_budget for p in pools) + 1
    batch_s = np.full((2, width), np.inf)
    b_max, k_max = np.zeros(2, np.int64), np.zeros(2, np.int64)
    for k, p in enumerate(pools):
        table = np.asarray(p.engine.batch_time.table(p.engine.token_budget), dtype=np.float64) / 1000.0
        if not (np.isfinite(table[1:]).all() and (table[1:] > 0).all()):
            raise SimulationInputError("engine.batch_time", "batch times must be positive and finite for 1..b_max tokens")
        batch_s[k, : table.size] = table
        b_max[k] = p.engine.token_budget
        k_max[k] = _NO_LIMIT if p.engine.max_batch_requests is None else p.engine.max_batch_requests
    last = pools[-1]
    mems = [np.asarray(p.policy.initial_memory(), np.int64) for p in pools for _ in range(p.replicas)]
    memory = np.zeros((cluster.replicas, max(1, max(m.size for m in mems))), np.int64)
    for r, m in enumerate(mems):
        memory[r, : m.size] = m
    return {"kern_p": pools[0].policy.compiled_kernel(), "kern_d": last.policy.compiled_kernel(),
            "params_p": np.ascontiguousarray(pools[0].policy.parameters(), np.float64),
            "params_d": np.ascontiguousarray(last.policy.parameters(), np.float64),
            "memory": memory, "batch_s": batch_s, "b_max": b_max, "k_max": k_max}


def simulate_cluster(cluster: Cluster, workload: Workload | None, *, n_requests: int | None = None,
                     horizon_s: float | None = None, seed: int = 0, arrivals: str = "poisson",
                     trace: Trace | None = None, record_every: float | None = None,
                     max_backlog_requests: int | None = None) -> ClusterResult:
    """Simulate ``cluster`` serving ``workload`` (or replaying ``trace``); see the module text for the model.

    Parameters
    ----------
    cluster
        The pools, routers and (disaggregated) link.
    workload
        Traffic to sample (``None`` with ``arrivals="trace"``).
    n_requests, horizon_s
        Serve that many arrivals and/or stop at the horizon (with only
        ``n_requests`` the run lasts until every request has left).
    seed
        Seed of the ``numpy.random.Generator`` drawing arrivals, lengths (the
        same trace :func:`~llmstab.fluid_models.simulation.simulator.simulate`
        draws with that seed) and then the routers' uniforms.
    arrivals
        ``"poisson"``, ``"deterministic"`` or ``"trace"``.
    record_every
        Spacing (s) of the backlog grid; default 1/4000 of the run.
    max_backlog_requests
        Stop once a replica holds more requests than this (a clearly diverging run).

    Raises
    ------
    SimulationInputError
        For a bad option or a policy that stalls or breaks the batch constraints.
    """
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise SimulationInputError("seed", f"must be a non-negative integer, got {seed!r}")
    if horizon_s is not None and not (isinstance(horizon_s, (int, float)) and math.isfinite(horizon_s) and horizon_s > 0):
        raise SimulationInputError("horizon", f"must be a positive number of seconds, got {horizon_s!r}")
    for pool in cluster.pools:
        for attr in ("attention", "kv_cache", "max_active_requests"):
            if getattr(pool.engine, attr, None) is not None:
                raise SimulationInputError(f"engine.{attr}", "not modelled by the cluster simulator yet (it runs "
                                           "the batch time of the token count, memory unlimited)")
    rng = np.random.default_rng(int(seed))
    tr, offered = _trace_for(cluster, workload, rng, n_requests, horizon_s, arrivals, trace)
    uniforms = rng.random((tr.size, 4))
    t_end = math.inf if horizon_s is None else float(horizon_s)
    span = t_end if horizon_s is not None else max(float(tr.times[-1]) if tr.size else 0.0, 1e-3) * 1.5 + 1.0
    rec_dt = float(record_every) if record_every is not None else span / 4000.0
    crowd = _NO_LIMIT if max_backlog_requests is None else int(max_backlog_requests)
    return _run(cluster, tr, offered, uniforms, int(seed), t_end, rec_dt, crowd, horizon_s is None)


def _rows(n_rep: int, rows: int) -> list[np.ndarray]:
    """Per-replica request rows: ri, rf, take, request ids, prefill at batch start."""
    return [np.zeros((n_rep, rows, NI), np.int64), np.zeros((n_rep, rows, NF)),
            np.zeros((n_rep, rows, TAKE_COLUMNS), np.int64), np.zeros((n_rep, rows), np.int64),
            np.zeros((n_rep, rows), np.int64)]


def _grow_rows(state: list[np.ndarray]) -> list[np.ndarray]:
    out = _rows(state[0].shape[0], 2 * state[0].shape[1])
    for new, old in zip(out, state):
        new[:, : old.shape[1]] = old
    return out


def _run(cluster: Cluster, tr: Trace, offered: float | None, uniforms: np.ndarray, seed: int, t_end: float,
         rec_dt: float, crowd: int, drain: bool) -> ClusterResult:
    pools, n, n_rep = cluster.pools, tr.size, cluster.replicas
    arrays = _pool_arrays(cluster)
    r0, r1 = pools[0].replicas, (pools[1].replicas if cluster.disaggregated else 0)
    cfg = np.array([r0, r1, ROUTERS.index(cluster.routers[0]), ROUTERS.index(cluster.routers[-1]), crowd], np.int64)
    link = cluster.transfer
    fcfg = np.array([float(link.ms_per_token) / 1000 if link else 0.0, float(link.ms_fixed) / 1000 if link else 0.0,
                     t_end, rec_dt])
    cum_tok = np.zeros(n + 1, np.int64)
    np.cumsum(tr.prompt + tr.decode, out=cum_tok[1:])
    rows = _rows(n_rep, 64)
    eng = np.tile(unlimited_engine(), (n_rep, 1))
    per_rep = [np.zeros(n_rep, np.int64) for _ in range(5)] + [np.full(n_rep, np.inf), np.zeros(n_rep),
                                                               np.zeros((n_rep, 3), np.int64)]
    per_req = [np.full(n, np.nan), np.full(n, np.nan), np.zeros(n), np.zeros(n), np.full(n, np.nan),
               np.full(n, np.nan), np.full((n, 2), -1, np.int64)]
    queues = [np.zeros(n + 1, np.int64), np.zeros(n + 1, np.int64), np.zeros(n + 1), np.zeros(64, np.int64)]
    size = int(min(t_end, 1e9) / rec_dt) + 64 if math.isfinite(t_end) else 4096
    rec = [np.zeros(size), np.zeros(size, np.int64), np.zeros(size, np.int64)]
    ist, fst = np.zeros(11, np.int64), np.array([0.0, np.inf])
    while True:
        status = _cluster_loop(*arrays.values(), cfg, fcfg, tr.times, tr.prompt, tr.decode, cum_tok, uniforms,
                               *rows, eng, *per_rep, *per_req, *queues, *rec, ist, fst)
        if status in (_DONE, _CROWDED):
            break
        if status == _GROW_ROWS:
            rows = _grow_rows(rows)
            queues[3] = np.zeros(rows[0].shape[1], np.int64)
        elif status == _GROW_REC:
            rec = [np.concatenate([a, np.zeros(a.size + 64, a.dtype)]) for a in rec]
        else:
            what = "formed an empty or oversized batch" if status == _STALLED else "broke the batch constraints"
            raise SimulationInputError("policy", f"a replica's policy {what} at t = {fst[_NOW]:.6g} s")
    stopped = status == _CROWDED
    end = float(fst[_NOW]) if stopped or drain else t_end
    times, tokens, reqs = _trajectory(rec, int(ist[_REC]), rec_dt, end, tr, cum_tok, int(ist[_SERVED]), int(ist[_FIN]))
    rcnt = per_rep[7]
    first, finish, _, gap, pre, dlv, assign = per_req
    return ClusterResult(cluster.routers, tuple(p.replicas for p in pools), seed, tr, assign, first, finish, gap, pre,
                         dlv, times, tokens, reqs, end, rcnt[:, _RB].copy(), rcnt[:, _RTOK].copy(), per_rep[6],
                         rcnt[:, _RROUTED].copy(), offered, crowd if stopped else None)


def _trajectory(rec: list, k: int, rec_dt: float, end: float, tr: Trace, cum_tok: np.ndarray, served: int,
                finished: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The recorded grid, then the grid points after the last event up to ``end``, and ``end`` itself."""
    tail = np.arange(k, int(math.floor(end / rec_dt + 1e-9)) + 1) * rec_dt
    if not tail.size or tail[-1] < end:
        tail = np.append(tail, end)
    arrived = np.searchsorted(tr.times, tail, side="right")
    return (np.concatenate([rec[0][:k], tail]), np.concatenate([rec[1][:k], cum_tok[arrived] - served]),
            np.concatenate([rec[2][:k], arrived - finished]))
