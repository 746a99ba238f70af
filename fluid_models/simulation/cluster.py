"""A compiled simulator of a cluster: replicas behind a router, or prefill/decode pools joined by a link.

Every replica is an engine as in :mod:`llmstab.fluid_models.simulation.simulator`,
run by the same compiled step (:mod:`llmstab.fluid_models.simulation.engine_step`):
at the start of each iteration its policy's own kernel (passed as a
first-class function) forms a batch from the replica's running requests and
the head of its waiting queue, the batch lasts ``t(b)`` plus attention, and
at its end its tokens are consumed. Colocated replicas may have a KV cache,
attention and an active-request cap, with preemption by recomputation, as
one engine (a disaggregated cluster does not model them yet: the decode
replica would have to hold the KV cache it receives). One compiled event
loop (:mod:`llmstab.fluid_models.simulation.cluster_loop`) runs all replicas: the next event
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

import numpy as np

from . import cluster_loop as C
from .arrivals import SimulationInputError, Trace, sample_trace
from .engine_step import FST_SIZE, I_QH, I_QLEN, IST_SIZE
from .results import ArrayResult, request_latencies, summary
from .simulator import batch_seconds, kv_vector, token_times
from ..cluster import ROUTERS, Cluster
from ..policies.base import NE, NF, NI, TAKE_COLUMNS
from ..workload import Workload

__all__ = ["simulate_cluster", "ClusterResult"]

_NO_LIMIT = 2**62


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


def _pool_arrays(cluster: Cluster) -> tuple:
    """Kernels and options of the (one or two) pools, and the loop's ``pools`` tuple (see the loop module)."""
    pools = cluster.pools
    width = max(p.engine.token_budget for p in pools) + 1
    batch_s, att = np.full((2, width), np.inf), np.zeros((2, 2))
    b_max, k_max, kv = np.zeros(2, np.int64), np.zeros(2, np.int64), np.zeros((2, 6), np.int64)
    for k, p in enumerate(pools):
        b_max[k] = p.engine.token_budget
        k_max[k] = _NO_LIMIT if p.engine.max_batch_requests is None else p.engine.max_batch_requests
        table, att[k] = batch_seconds(p.engine, int(b_max[k]))
        batch_s[k, : table.size] = table
        kv[k] = kv_vector(p.engine, p.policy, int(k_max[k]), leave_after_prefill=cluster.disaggregated and k == 0)
    last = pools[-1]
    mems = [np.asarray(p.policy.initial_memory(), np.int64) for p in pools for _ in range(p.replicas)]
    memory = np.zeros((cluster.replicas, max(1, max(m.size for m in mems))), np.int64)
    for r, m in enumerate(mems):
        memory[r, : m.size] = m
    kernels = (pools[0].policy.compiled_kernel(), last.policy.compiled_kernel(),
               np.ascontiguousarray(pools[0].policy.parameters(), np.float64),
               np.ascontiguousarray(last.policy.parameters(), np.float64))
    return kernels, (memory, batch_s, att, kv, b_max, k_max)


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
    for pool in cluster.pools if cluster.disaggregated else ():
        for attr in ("attention", "kv_cache", "max_active_requests"):
            if getattr(pool.engine, attr, None) is not None:
                raise SimulationInputError(f"engine.{attr}", "not modelled in a disaggregated cluster yet (the KV "
                                           "cache a decode replica receives is not held); colocated replicas run it")
    rng = np.random.default_rng(int(seed))
    tr, offered = _trace_for(cluster, workload, rng, n_requests, horizon_s, arrivals, trace)
    uniforms = rng.random((tr.size, 4))
    t_end = math.inf if horizon_s is None else float(horizon_s)
    span = t_end if horizon_s is not None else max(float(tr.times[-1]) if tr.size else 0.0, 1e-3) * 1.5 + 1.0
    rec_dt = float(record_every) if record_every is not None else span / 4000.0
    crowd = _NO_LIMIT if max_backlog_requests is None else int(max_backlog_requests)
    return _run(cluster, tr, offered, uniforms, int(seed), t_end, rec_dt, crowd, horizon_s is None)


def _engines(n_rep: int, rows: int, memory: np.ndarray) -> tuple:
    """Per-replica engine state ``(ri, rf, eng, take, evicted, mem0, wq, left, ist, fst)`` with ``rows`` rows."""
    return (np.zeros((n_rep, rows, NI), np.int64), np.zeros((n_rep, rows, NF)), np.zeros((n_rep, NE)),
            np.zeros((n_rep, rows, TAKE_COLUMNS), np.int64), np.full((n_rep, rows), -1, np.int64), memory.copy(),
            np.zeros((n_rep, rows), np.int64), np.zeros((n_rep, rows), np.int64),
            np.zeros((n_rep, IST_SIZE), np.int64), np.zeros((n_rep, FST_SIZE)))


def _grow_engines(st: tuple) -> tuple:
    """Twice the rows; each waiting queue (a ring) is laid out again from its head."""
    n_rep, rows = st[0].shape[:2]
    new = _engines(n_rep, 2 * rows, st[5])
    for k in (0, 1, 3, 4, 7):  # rows, kernel output, evictions, and the leavers of a batch still running
        new[k][:, : rows] = st[k]
    new[2][:] = st[2]
    for r in range(n_rep):
        head, length = int(st[8][r, I_QH]), int(st[8][r, I_QLEN])
        new[6][r, :length] = st[6][r, (head + np.arange(length)) % rows]
    new[8][:], new[9][:] = st[8], st[9]
    new[8][:, I_QH] = 0
    return new[:5] + (st[5],) + new[6:]


def _run(cluster: Cluster, tr: Trace, offered: float | None, uniforms: np.ndarray, seed: int, t_end: float,
         rec_dt: float, crowd: int, drain: bool) -> ClusterResult:
    n, n_rep = tr.size, cluster.replicas
    kernels, pools = _pool_arrays(cluster)
    cfg = np.array([cluster.pools[0].replicas, cluster.pools[1].replicas if cluster.disaggregated else 0,
                    ROUTERS.index(cluster.routers[0]), ROUTERS.index(cluster.routers[-1]), crowd], np.int64)
    link = cluster.transfer
    fcfg = np.array([float(link.ms_per_token) / 1000 if link else 0.0, float(link.ms_fixed) / 1000 if link else 0.0,
                     t_end, rec_dt])
    cum_tok = np.zeros(n + 1, np.int64)
    np.cumsum(tr.prompt + tr.decode, out=cum_tok[1:])
    st = _engines(n_rep, 64, pools[0])
    req, tt = (np.zeros(n, np.int64), tr.prompt.astype(np.int64), np.full(n, np.nan)), token_times(n, 0)
    rep = (np.zeros(n_rep, np.int64), np.full(n_rep, np.inf), np.zeros(n_rep), *(np.zeros(n_rep, np.int64)
           for _ in range(4)), np.zeros(n_rep))
    rcnt, per_req = np.zeros((n_rep, 3), np.int64), (np.full(n, np.nan), np.full(n, np.nan), np.full((n, 2), -1))
    queues = [np.zeros(n + 1, np.int64), np.zeros(n + 1, np.int64), np.zeros(n + 1), np.zeros(64, np.int64)]
    size = int(min(t_end, 1e9) / rec_dt) + 64 if math.isfinite(t_end) else 4096
    rec = [np.zeros(size), np.zeros(size, np.int64), np.zeros(size, np.int64), np.zeros(0, np.int64)]  # no KV grid
    ist, fst = np.zeros(C.N_IST, np.int64), np.array([0.0, np.inf])
    arr = (tr.times, tr.prompt, tr.decode, tr.cls)
    while True:
        status = C.cluster_loop(*kernels, pools, cfg, fcfg, arr, cum_tok, uniforms, st, req, tt, rep, rcnt, per_req,
                                tuple(queues), tuple(rec), ist, fst)
        if status in (C.DONE, C.CROWDED):
            break
        if status == C.GROW_ROWS:
            st = _grow_engines(st)
            queues[3] = np.zeros(st[0].shape[1], np.int64)
        elif status == C.GROW_REC:
            rec = [np.concatenate([a, np.zeros(a.size + 64, a.dtype)]) for a in rec[:3]] + rec[3:]
        else:
            raise SimulationInputError("policy", f"a replica's policy {_FAILURES[status]} at t = {fst[C.NOW]:.6g} s")
    stopped = status == C.CROWDED
    end = float(fst[C.NOW]) if stopped or drain else t_end
    times, tokens, reqs = _trajectory(rec, int(ist[C.REC]), rec_dt, end, tr, cum_tok, int(ist[C.SERVED]),
                                      int(ist[C.FIN]))
    return ClusterResult(cluster.routers, tuple(p.replicas for p in cluster.pools), seed, tr, per_req[2], tt[0],
                         tt[1], tt[3], per_req[0], per_req[1], times, tokens, reqs, end, rcnt[:, C.RB].copy(),
                         rcnt[:, C.RTOK].copy(), rep[7], rcnt[:, C.RROUTED].copy(), offered,
                         crowd if stopped else None)


_FAILURES = {C.STALLED_BATCH: "formed an empty or oversized batch", C.INVALID_BATCH: "broke the batch constraints or "
             "the KV-cache rules", C.NO_FIT_ALONE: "left a request that cannot be served even alone (its prompt does "
             "not fit the KV cache)"}


def _trajectory(rec: list, k: int, rec_dt: float, end: float, tr: Trace, cum_tok: np.ndarray, served: int,
                finished: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The recorded grid, then the grid points after the last event up to ``end``, and ``end`` itself."""
    tail = np.arange(k, int(math.floor(end / rec_dt + 1e-9)) + 1) * rec_dt
    if not tail.size or tail[-1] < end:
        tail = np.append(tail, end)
    arrived = np.searchsorted(tr.times, tail, side="right")
    return (np.concatenate([rec[0][:k], tail]), np.concatenate([rec[1][:k], cum_tok[arrived] - served]),
            np.concatenate([rec[2][:k], arrived - finished]))
