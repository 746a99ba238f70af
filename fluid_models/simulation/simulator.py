"""A batch-level stochastic simulator of one engine, compiled with numba.

The engine runs in iterations. At the start of each one the policy's own
kernel (``type(policy).kernel``, the same compiled function the checkers call
through :meth:`~llmstab.fluid_models.policies.base.Policy.form_batch`) forms a batch from
the resident requests in arrival order; the batch lasts ``t(b)`` (the engine's
batch-time model, ``b`` its token count); at its end its tokens are consumed
and requests with no decode token left leave. Requests that arrive during a
batch join at its end. An empty engine idles until the next arrival.

Conventions (Li-Dai-Peng's model): a request's ``v_d`` decode tokens are its
output tokens, one per batch once its prefill is done. Its *first token* is the
end of the first batch that decodes it (TTFT = first token - arrival); its
*time between tokens* (TBT) is the mean gap between its successive output
tokens, ``(finish - first token) / (v_d - 1)``; ``worst TBT`` the largest gap.

Arrivals and lengths are drawn up front with ``numpy.random.default_rng(seed)``
(:func:`llmstab.fluid_models.simulation.arrivals.sample_trace`), then one compiled loop runs the
engine, so a seed fixes the whole run: same seed, identical output. The loop is
compiled once for the kernel *type* (a first-class function signature), cached
on disk, and resumable, which gives the progress bar and growable records.

Examples
--------
>>> from llmstab.fluid_models.batch_time import Staircase
>>> from llmstab.fluid_models.distributions import Deterministic, Geometric
>>> from llmstab.fluid_models.engine import Engine
>>> from llmstab.fluid_models.policies import Sarathi
>>> from llmstab.fluid_models.workload import RequestClass, Workload
>>> engine = Engine(Staircase("11.28", "35.47", 128), token_budget=512)
>>> work = Workload((RequestClass("chat", 10, Deterministic(129), Geometric(112)),))
>>> r = simulate(engine, Sarathi(), work, horizon_s=200.0, seed=1)
>>> r == simulate(engine, Sarathi(), work, horizon_s=200.0, seed=1)
True
>>> 1800 < r.trace.size < 2200, r.n_batches > 1000
(True, True)
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable

import numba
import numpy as np
from numba import types

from .arrivals import ARRIVAL_KINDS, SimulationInputError, Trace, sample_trace
from ..engine import Engine
from ..policies.base import (ARRIVAL, CLOCK, DC, EVICT, ID, KERNEL_TYPE, LAST_BATCH_END, LAST_TOKEN, MEAN_BATCH, NF,
                             NI, PF, PROMPT, SCRATCH, TAKE_COLUMNS, TAKE_D, TAKE_P, BATCHES, Policy, unlimited_engine)
from ..state import Batch
from ..workload import Workload

__all__ = ["simulate", "SimulationResult", "BatchLog"]

_i8a, _f8a, _i8, _f8 = types.int64[::1], types.float64[::1], types.int64, types.float64
_i8m, _f8m = types.int64[:, ::1], types.float64[:, ::1]

_NO_LIMIT = 2**62

# loop status codes
_DONE, _PAUSED, _FULL_REC, _FULL_LOG, _FULL_COMP, _STALLED, _INVALID, _CROWDED = range(8)
# integer state slots: resident count, next arrival, next record, arrivals counted at the
# last record, tokens served, finished requests, batches, composition entries
_N, _NEXT, _REC, _KA, _SERVED, _FINISHED, _BATCHES, _COMP = range(8)
# float state slots: clock, busy time
_T, _BUSY = range(2)


@numba.njit(types.int64(KERNEL_TYPE, _f8a, _i8a, _f8a, _i8, _i8,
                        _f8a, _i8a, _i8a, _i8a, _f8, _f8, _i8, _i8,
                        _i8a, _i8m, _f8m, _f8a, _i8m, _i8a,
                        _f8a, _f8a, _f8a, _f8a,
                        _f8a, _i8a, _i8a,
                        _f8a, _i8a, _i8a, _i8a,
                        _i8a, _i8a, _i8a, _i8a,
                        _i8a, _f8a), cache=True)
def _engine_loop(kernel, params, memory, batch_s, b_max, k_max,
                 arr_t, arr_p, arr_d, cum_tok, t_end, rec_dt, pause_at, max_resident,
                 res, ri, rf, eng, take, pf0,
                 first_tok, finish, last_tok, max_gap,
                 rec_t, rec_tok, rec_req,
                 log_start, log_tokens, log_demand, log_resident,
                 comp_off, comp_req, comp_p, comp_d,
                 ist, fst):
    n_arr = arr_t.size
    n = ist[_N]
    t = fst[_T]
    max_dt = 0.0
    for b in range(1, b_max + 1):
        max_dt = max(max_dt, batch_s[b])
    rec_need = int(max_dt / rec_dt) + 2
    while True:
        nxt = ist[_NEXT]
        while nxt < n_arr and arr_t[nxt] <= t:
            res[n] = nxt
            ri[n, :] = 0
            ri[n, PF] = arr_p[nxt]
            ri[n, DC] = arr_d[nxt]
            ri[n, PROMPT] = arr_p[nxt]
            ri[n, ID] = nxt
            rf[n, ARRIVAL] = arr_t[nxt]
            rf[n, LAST_TOKEN] = np.nan
            rf[n, SCRATCH] = np.nan
            n += 1
            nxt += 1
        ist[_NEXT] = nxt
        ist[_N] = n
        if n > max_resident:
            return _CROWDED
        if n == 0:
            if nxt >= n_arr or arr_t[nxt] > t_end:
                return _DONE
            limit = arr_t[nxt]
        else:
            if ist[_BATCHES] >= pause_at:
                return _PAUSED
            if ist[_REC] + rec_need > rec_t.size:
                return _FULL_REC
            if log_start.size > 0 and ist[_BATCHES] >= log_start.size:
                return _FULL_LOG
            if comp_off.size > 0 and ist[_COMP] + n > comp_req.size:
                return _FULL_COMP
            for i in range(n):
                pf0[i] = ri[i, PF]
            eng[CLOCK] = t
            eng[BATCHES] = ist[_BATCHES]
            eng[MEAN_BATCH] = fst[_BUSY] / ist[_BATCHES] if ist[_BATCHES] > 0 else 0.0
            tok = kernel(ri, rf, n, eng, b_max, k_max, params, memory, take)
            if tok <= 0 or tok > b_max:
                return _STALLED
            t_e = t + batch_s[tok]
            if t_e > t_end:
                return _DONE
            limit = t_e
        # backlog at the grid points before the next change: arrived minus served
        k, ka = ist[_REC], ist[_KA]
        while k * rec_dt < limit:
            if k >= rec_t.size:
                ist[_REC], ist[_KA] = k, ka
                return _FULL_REC
            g = k * rec_dt
            while ka < n_arr and arr_t[ka] <= g:
                ka += 1
            rec_t[k] = g
            rec_tok[k] = cum_tok[ka] - ist[_SERVED]
            rec_req[k] = ka - ist[_FINISHED]
            k += 1
        ist[_REC], ist[_KA] = k, ka
        if n == 0:
            t = limit
            fst[_T] = t
            continue
        # the batch: log it, check it, consume its tokens, release finished requests
        nb = ist[_BATCHES]
        if log_start.size > 0:
            demand = 0
            for i in range(n):
                demand += pf0[i] if pf0[i] > 0 else 1
            log_start[nb], log_tokens[nb], log_demand[nb], log_resident[nb] = t, tok, demand, n
        if comp_off.size > 0:
            c = ist[_COMP]
            for i in range(n):
                if take[i, TAKE_P] > 0 or take[i, TAKE_D] > 0:
                    comp_req[c], comp_p[c], comp_d[c] = res[i], take[i, TAKE_P], take[i, TAKE_D]
                    c += 1
            ist[_COMP] = c
            comp_off[nb + 1] = c
        total, members, m = 0, 0, 0
        for i in range(n):
            p, d, r = take[i, TAKE_P], take[i, TAKE_D], res[i]
            if p < 0 or p > pf0[i] or d < 0 or d > 1 or (d == 1 and pf0[i] > 0) or take[i, EVICT] != 0:
                return _INVALID
            total += p + d
            if p > 0 or d > 0:
                members += 1
            if d == 1:
                if first_tok[r] != first_tok[r]:
                    first_tok[r] = t_e
                else:
                    gap = t_e - last_tok[r]
                    if gap > max_gap[r]:
                        max_gap[r] = gap
                last_tok[r] = t_e
                rf[i, LAST_TOKEN] = t_e
            ri[i, PF] -= p
            ri[i, DC] -= d
            if ri[i, DC] == 0:
                finish[r] = t_e
                ist[_FINISHED] += 1
            else:
                res[m] = r
                ri[m, :] = ri[i, :]
                rf[m, :] = rf[i, :]
                m += 1
        if total != tok or members > k_max:
            return _INVALID
        n = m
        ist[_N] = n
        ist[_SERVED] += tok
        ist[_BATCHES] = nb + 1
        fst[_BUSY] += t_e - t
        eng[LAST_BATCH_END] = t_e
        t = t_e
        fst[_T] = t


@dataclass(frozen=True)
class BatchLog:
    """Per-batch records (kept when ``record_batches=True``).

    ``start`` (s), ``tokens``, the ``demand`` ``sum_i (p_i + 1{p_i=0})`` and the
    number of ``resident`` requests when the batch was formed, and its
    composition, stored flat: batch ``k`` gave ``served_prefill[j]`` prefill and
    ``served_decode[j]`` decode tokens to request ``served_request[j]`` for
    ``offsets[k] <= j < offsets[k + 1]``.
    """

    start: np.ndarray
    tokens: np.ndarray
    demand: np.ndarray
    resident: np.ndarray
    offsets: np.ndarray = field(repr=False)
    served_request: np.ndarray = field(repr=False)
    served_prefill: np.ndarray = field(repr=False)
    served_decode: np.ndarray = field(repr=False)

    @property
    def members(self) -> tuple[tuple[tuple[int, int, int], ...], ...]:
        """For each batch, its ``(request, prefill tokens, decode tokens)`` entries in service order."""
        req, p, d = self.served_request.tolist(), self.served_prefill.tolist(), self.served_decode.tolist()
        off = self.offsets.tolist()
        return tuple(tuple(zip(req[a:b], p[a:b], d[a:b])) for a, b in zip(off[:-1], off[1:]))

    def describe(self, labels: list[str] | None = None) -> list[str]:
        """Each batch as ``{Ad,Bd,Cp}`` (request labels default to their indices)."""
        out = []
        for batch in self.members:
            names = [labels[r] if labels else str(r) for r, _, _ in batch]
            out.append(Batch(tuple(p for _, p, _ in batch), tuple(d for _, _, d in batch)).describe(names))
        return out


def _summary(values: np.ndarray) -> dict:
    v = values[np.isfinite(values)]
    if v.size == 0:
        return {"n": 0, "mean": None, "p50": None, "p90": None, "p99": None}
    p50, p90, p99 = np.percentile(v, [50, 90, 99])
    return {"n": int(v.size), "mean": float(v.mean()), "p50": float(p50), "p90": float(p90), "p99": float(p99)}


@dataclass(frozen=True, eq=False)
class SimulationResult:
    """What a run produced: the trace served, per-request times, the backlog trajectory.

    Times are in seconds. ``first_token`` and ``finish`` are NaN for requests
    not yet there when the run stopped. ``backlog_tokens`` (unprocessed tokens
    of the requests present, arrived ones included) and ``backlog_requests``
    are sampled at ``times`` (a regular grid, plus ``end_time``). ``end_time`` is the horizon (or
    the time the last request left when the run drained, or the time the run
    stopped because more than ``stopped_at_backlog`` requests were present). ``offered_token_rate``
    is ``lambda (m_p + m_d)`` in tokens/s (``None`` for a replayed trace).
    Two results are equal when every recorded array is identical.
    """

    policy: str
    token_budget: int
    seed: int
    arrivals: str
    trace: Trace
    first_token: np.ndarray
    finish: np.ndarray
    worst_gap: np.ndarray
    times: np.ndarray
    backlog_tokens: np.ndarray
    backlog_requests: np.ndarray
    end_time: float
    n_batches: int
    busy_time: float
    tokens_served: int
    offered_token_rate: float | None
    batches: BatchLog | None = field(default=None, repr=False)
    stopped_at_backlog: int | None = None

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, SimulationResult):
            return NotImplemented
        arrays = ("first_token", "finish", "worst_gap", "times", "backlog_tokens", "backlog_requests")
        return (all(np.array_equal(getattr(self, a), getattr(other, a), equal_nan=True) for a in arrays)
                and np.array_equal(self.trace.times, other.trace.times)
                and (self.end_time, self.n_batches, self.tokens_served) == (other.end_time, other.n_batches, other.tokens_served))

    @property
    def finished(self) -> np.ndarray:
        """Mask of the requests that left before the end."""
        return np.isfinite(self.finish)

    @property
    def throughput_tokens(self) -> float:
        """Tokens processed per second over the run."""
        return self.tokens_served / self.end_time if self.end_time > 0 else 0.0

    def metrics(self) -> dict[str, dict]:
        """Per class (and ``"all"`` when there are several): counts, throughput, TTFT, TBT, worst TBT, end-to-end latency.

        Latencies are summarised by ``n, mean, p50, p90, p99`` (seconds) over
        the requests that finished; throughputs are finished requests and their
        tokens per second of the run.
        """
        tr = self.trace
        groups = {name: tr.cls == k for k, name in enumerate(tr.class_names)}
        if len(groups) > 1:
            groups["all"] = np.ones(tr.size, bool)
        out = {}
        span = self.end_time if self.end_time > 0 else float("nan")
        for name, mask in groups.items():
            done = mask & self.finished
            ttft = self.first_token[done] - tr.times[done]
            multi = done & (tr.decode > 1)
            tbt = (self.finish[multi] - self.first_token[multi]) / (tr.decode[multi] - 1)
            out[name] = {
                "arrived": int(mask.sum()),
                "finished": int(done.sum()),
                "throughput_requests_per_s": float(done.sum() / span),
                "throughput_tokens_per_s": float((tr.prompt[done] + tr.decode[done]).sum() / span),
                "ttft_s": _summary(ttft),
                "tbt_s": _summary(tbt),
                "worst_tbt_s": _summary(self.worst_gap[multi]),
                "e2e_s": _summary(self.finish[done] - tr.times[done]),
            }
        return out

    def trajectory_csv(self) -> str:
        """The backlog trajectory as CSV text: ``time_s,backlog_tokens,backlog_requests``."""
        lines = ["time_s,backlog_tokens,backlog_requests"]
        lines += [f"{t:.6f},{v},{q}" for t, v, q in zip(self.times, self.backlog_tokens, self.backlog_requests)]
        return "\n".join(lines) + "\n"


def _check_options(n_requests: object, horizon_s: object, seed: object, record_every: object) -> None:
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise SimulationInputError("seed", f"must be an integer, got {seed!r}")
    if seed < 0:
        raise SimulationInputError("seed", f"must be >= 0, got {seed}")
    if n_requests is not None and (isinstance(n_requests, bool) or not isinstance(n_requests, (int, np.integer)) or n_requests < 1):
        raise SimulationInputError("n_requests", f"must be a positive integer, got {n_requests!r}")
    for name, value in (("horizon", horizon_s), ("record_every", record_every)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float, np.number))
                                  or not math.isfinite(value) or value <= 0):
            raise SimulationInputError(name, f"must be a positive number of seconds, got {value!r}")


def _grow(a: np.ndarray, size: int) -> np.ndarray:
    out = np.zeros(size, a.dtype)
    out[: a.size] = a
    return out


def simulate(engine: Engine, policy: Policy, workload: Workload | None, *, n_requests: int | None = None,
             horizon_s: float | None = None, seed: int = 0, arrivals: str = "poisson", trace: Trace | None = None,
             record_every: float | None = None, record_batches: bool = False,
             max_backlog_requests: int | None = None, progress: Callable[[float, float], None] | None = None) -> SimulationResult:
    """Simulate ``engine`` under ``policy`` serving ``workload`` (or replaying ``trace``).

    Parameters
    ----------
    engine, policy
        The engine (batch time in ms, ``b_max``, optional ``k_max``) and the scheduler.
    workload
        The traffic to sample (ignored, may be ``None``, when ``arrivals="trace"``).
    n_requests, horizon_s
        Serve ``n_requests`` arrivals and/or stop at ``horizon_s`` seconds. With
        only ``n_requests`` the run goes on until every request has left.
    seed
        Seed of the ``numpy.random.Generator`` that draws arrivals and lengths.
    arrivals
        ``"poisson"``, ``"deterministic"`` or ``"trace"`` (replay ``trace`` as given).
    record_every
        Spacing (s) of the backlog trajectory; default: 1/4000 of the run.
    record_batches
        Keep a :class:`BatchLog` (start, tokens, demand, composition of every batch);
        its memory grows with the total number of batch entries (3 int64 each).
    max_backlog_requests
        Stop early once more requests than this are present (a run that is
        clearly diverging need not be followed to the horizon).
    progress
        Called as ``progress(done, total)`` between compiled segments (simulated
        seconds when a horizon is set, else finished requests).

    Raises
    ------
    SimulationInputError
        For a bad option (a non-integer seed, a horizon that is not positive,
        an unknown arrival kind, an invalid trace) or a policy that stalls.

    Examples
    --------
    Replay three requests by hand (a prompt of 0 tokens means "already decoding"):

    >>> from llmstab.fluid_models.batch_time import Staircase
    >>> from llmstab.fluid_models.engine import Engine
    >>> from llmstab.fluid_models.policies import Orca
    >>> tr = Trace([0.0, 0.0, 0.0], [0, 0, 2], [2, 1, 1])
    >>> r = simulate(Engine(Staircase(1, 1, 4), 4), Orca(), None, arrivals="trace", trace=tr, record_batches=True)
    >>> r.batches.describe(["A", "B", "C"])
    ['{Ad,Bd,Cp}', '{Ad,Cd}']
    """
    _check_options(n_requests, horizon_s, seed, record_every)
    if arrivals not in ARRIVAL_KINDS:
        raise SimulationInputError("arrivals", f"unknown kind {arrivals!r} (one of {', '.join(ARRIVAL_KINDS)})")
    rng = np.random.default_rng(int(seed))
    offered = None
    if arrivals == "trace":
        if trace is None:
            raise SimulationInputError("trace", "arrivals='trace' needs a trace")
        tr = trace if n_requests is None else trace.head(n_requests)
        if horizon_s is not None:
            tr = tr.head(int(np.searchsorted(tr.times, horizon_s, side="right")))
    else:
        if workload is None:
            raise SimulationInputError("workload", "needed unless arrivals='trace'")
        if n_requests is None and horizon_s is None:
            raise SimulationInputError("horizon", "give a horizon or a number of requests")
        tr = sample_trace(workload, rng, kind=arrivals, n_requests=n_requests, horizon_s=horizon_s)
        offered = float(workload.token_rate)
    return _run(engine, policy, tr, horizon_s, int(seed), arrivals, offered, record_every, record_batches,
                max_backlog_requests, progress)


def _run(engine: Engine, policy: Policy, tr: Trace, horizon_s: float | None, seed: int, arrivals: str,
         offered: float | None, record_every: float | None, record_batches: bool,
         max_backlog_requests: int | None, progress: Callable[[float, float], None] | None) -> SimulationResult:
    b_max = int(engine.token_budget)
    k_max = _NO_LIMIT if engine.max_batch_requests is None else int(engine.max_batch_requests)
    batch_s = np.ascontiguousarray(engine.batch_time.table(b_max) / 1000.0, dtype=np.float64)
    if not (np.isfinite(batch_s[1:]).all() and (batch_s[1:] > 0).all()):
        raise SimulationInputError("engine.batch_time", "batch times must be positive and finite for 1..b_max tokens")
    n = tr.size
    t_end = math.inf if horizon_s is None else float(horizon_s)
    span_guess = t_end if horizon_s is not None else max(float(tr.times[-1]) if n else 0.0, 1e-3) * 1.5 + 1.0
    rec_dt = float(record_every) if record_every is not None else span_guess / 4000.0

    kernel = policy.compiled_kernel()
    params = np.ascontiguousarray(policy.parameters(), dtype=np.float64)
    memory = np.ascontiguousarray(policy.initial_memory(), dtype=np.int64).copy()
    cum_tok = np.zeros(n + 1, np.int64)
    np.cumsum(tr.prompt + tr.decode, out=cum_tok[1:])
    work = [np.zeros(n + 1, np.int64), np.zeros((n + 1, NI), np.int64), np.zeros((n + 1, NF)), unlimited_engine(),
            np.zeros((n + 1, TAKE_COLUMNS), np.int64), np.zeros(n + 1, np.int64)]
    first_tok, finish = np.full(n, np.nan), np.full(n, np.nan)
    last_tok, max_gap = np.zeros(n), np.zeros(n)
    rec = [np.zeros(int(span_guess / rec_dt) + 64), np.zeros(int(span_guess / rec_dt) + 64, np.int64),
           np.zeros(int(span_guess / rec_dt) + 64, np.int64)]
    log_size = 1024 if record_batches else 0
    log = [np.zeros(log_size), np.zeros(log_size, np.int64), np.zeros(log_size, np.int64), np.zeros(log_size, np.int64)]
    comp = [np.zeros(log_size + 1 if record_batches else 0, np.int64)] + [np.zeros(4 * log_size, np.int64) for _ in range(3)]
    ist, fst = np.zeros(8, np.int64), np.zeros(2)
    chunk = 200_000 if progress is not None else _NO_LIMIT
    pause_at = chunk
    crowd = _NO_LIMIT if max_backlog_requests is None else int(max_backlog_requests)
    while True:
        status = _engine_loop(kernel, params, memory, batch_s, b_max, k_max, tr.times, tr.prompt, tr.decode, cum_tok,
                              t_end, rec_dt, pause_at, crowd, *work, first_tok, finish, last_tok, max_gap, *rec, *log, *comp, ist, fst)
        if status in (_DONE, _CROWDED):
            break
        if status == _PAUSED:
            pause_at += chunk
            if horizon_s is not None:
                progress(float(fst[_T]), t_end)
            else:
                progress(float(ist[_FINISHED]), float(n))
        elif status == _FULL_REC:
            rec = [_grow(a, 2 * a.size + 64) for a in rec]
        elif status == _FULL_LOG:
            log = [_grow(a, 2 * a.size) for a in log]
            comp[0] = _grow(comp[0], log[0].size + 1)
        elif status == _FULL_COMP:
            comp[1:] = [_grow(a, 2 * a.size + n) for a in comp[1:]]
        elif status == _STALLED:
            raise SimulationInputError("policy", f"{policy.label} formed an empty or oversized batch at t = {fst[_T]:.6g} s "
                                       f"with {ist[_N]} requests waiting")
        else:
            raise SimulationInputError("policy", f"{policy.label} formed a batch that breaks the batch constraints "
                                       f"at t = {fst[_T]:.6g} s")
    stopped = status == _CROWDED
    end = float(fst[_T]) if stopped or horizon_s is None else t_end
    times, tokens, reqs = _finish_trajectory(rec, int(ist[_REC]), rec_dt, end, tr, cum_tok, int(ist[_SERVED]),
                                             int(ist[_FINISHED]))
    if progress is not None:
        progress(end if horizon_s is not None else float(n), end if horizon_s is not None else float(n))
    batches = _batch_log(log, comp, int(ist[_BATCHES])) if record_batches else None
    return SimulationResult(policy.label, b_max, seed, arrivals, tr, first_tok, finish, max_gap, times, tokens, reqs,
                            end, int(ist[_BATCHES]), float(fst[_BUSY]), int(ist[_SERVED]), offered, batches,
                            max_backlog_requests if stopped else None)


def _finish_trajectory(rec: list, k: int, rec_dt: float, end: float, tr: Trace, cum_tok: np.ndarray,
                       served: int, finished: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The recorded grid points, those after the last batch up to ``end`` (nothing served there), and ``end``."""
    tail = np.arange(k, int(math.floor(end / rec_dt + 1e-9)) + 1) * rec_dt
    if not (tail.size and tail[-1] >= end) and not (tail.size == 0 and k and rec[0][k - 1] >= end):
        tail = np.append(tail, end)
    arrived = np.searchsorted(tr.times, tail, side="right")
    times = np.concatenate([rec[0][:k], tail])
    tokens = np.concatenate([rec[1][:k], cum_tok[arrived] - served])
    reqs = np.concatenate([rec[2][:k], arrived - finished])
    return times, tokens, reqs


def _batch_log(log: list, comp: list, nb: int) -> BatchLog:
    off, req, p, d = comp
    used = int(off[nb])
    return BatchLog(*(a[:nb].copy() for a in log), off[: nb + 1].copy(), req[:used].copy(), p[:used].copy(),
                    d[:used].copy())
