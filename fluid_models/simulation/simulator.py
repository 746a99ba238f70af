"""A batch-level stochastic simulator of one engine, compiled with numba.

The engine runs in iterations. At the start of each one the policy's own
kernel (``type(policy).kernel``, the same compiled function the checkers call
through :meth:`~llmstab.fluid_models.policies.base.Policy.form_batch`) forms a batch from
the resident requests in arrival order; the batch lasts ``t(b)`` (the engine's
batch-time model, ``b`` its token count); at its end its tokens are consumed
and requests with no decode token left leave. Requests that arrive during a
batch join at its end. An empty engine idles until the next arrival.

Conventions (Li-Dai-Peng's model): a request's ``v_d`` decode tokens are its
output tokens, one per batch once its prefill is done. Its *first token* is
emitted by the batch that completes its prefill, as Sarathi-Serve and vLLM
count it (TTFT = that batch's end - arrival; a request with no prompt: its
first decode); its *time between tokens* (TBT) is the mean gap between its
successive output tokens, ``(finish - first token) / v_d`` (``v_d - 1`` gaps
without a prompt); ``worst TBT`` the largest gap.

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

import numpy as np

from .arrivals import ARRIVAL_KINDS, SimulationInputError, Trace, sample_trace
from . import engine_step as S
from .engine_loop import engine_loop
from .results import ArrayResult, request_latencies
from ..engine import Engine
from ..policies.base import NF, NI, NO_LIMIT, TAKE_COLUMNS, Policy
from ..state import Batch
from ..workload import Workload

__all__ = ["simulate", "SimulationResult", "BatchLog", "MemoryRecord", "TokenRecord"]


@dataclass(frozen=True)
class BatchLog:
    """Per-batch records (kept when ``record_batches=True``).

    ``start`` (s), ``tokens``, the ``demand`` ``sum_i (p_i + 1{p_i=0})`` of the
    requests the policy saw, the number of ``resident`` requests (running and
    waiting) and the KV blocks in use (``kv_blocks``) when the batch was formed, and its
    composition, stored flat: batch ``k`` gave ``served_prefill[j]`` prefill and
    ``served_decode[j]`` decode tokens to request ``served_request[j]`` for
    ``offsets[k] <= j < offsets[k + 1]``.
    """

    start: np.ndarray
    tokens: np.ndarray
    demand: np.ndarray
    resident: np.ndarray
    kv_blocks: np.ndarray
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


@dataclass(frozen=True, eq=False)
class MemoryRecord:
    """KV-cache use over a run and what it cost.

    ``total_blocks`` / ``block_size`` describe the cache (``None``: memory
    unlimited, then blocks count one token each), ``max_active`` the request
    cap; ``kv_blocks`` the blocks in use at the result's ``times``;
    ``preemptions`` how many times a request was evicted and
    ``recomputed_tokens`` the KV tokens those evictions threw away (they are
    processed again); ``admission_stalls_memory`` / ``_requests`` count
    batches that had budget left while the waiting queue's head could not be
    admitted, for lack of KV blocks or because ``max_active`` requests held KV.
    """

    total_blocks: int | None
    block_size: int | None
    max_active: int | None
    kv_blocks: np.ndarray
    peak_blocks: int
    preemptions: int
    recomputed_tokens: int
    admission_stalls_memory: int
    admission_stalls_requests: int

    def summary(self) -> dict:
        """The counts and the KV use (mean and peak, in blocks and as a fraction of the cache) for reports."""
        mean = float(self.kv_blocks.mean()) if self.kv_blocks.size else 0.0
        out = {"total_blocks": self.total_blocks, "block_size": self.block_size, "max_active_requests": self.max_active,
               "mean_blocks_in_use": mean, "peak_blocks_in_use": self.peak_blocks, "preemptions": self.preemptions,
               "recomputed_tokens": self.recomputed_tokens,
               "admission_stalls": {"memory": self.admission_stalls_memory, "request_limit": self.admission_stalls_requests}}
        if self.total_blocks:
            out["mean_use_fraction"] = mean / self.total_blocks
            out["peak_use_fraction"] = self.peak_blocks / self.total_blocks
        return out


@dataclass(frozen=True, eq=False)
class TokenRecord:
    """Per-token latency inputs recorded by the compiled loop (``record_latency=True``).

    ``first_token[q]``: when request ``q``'s first output token came, as
    :mod:`~llmstab.fluid_models.simulation.latency` counts it (the end of the
    last batch that gave it prefill tokens before its first decode; its first
    decode without a prompt; NaN before its first decode); ``gaps`` (s): every
    later output token's gap since the same request's previous token, in batch
    order, and ``request`` the request of each.
    """

    first_token: np.ndarray
    gaps: np.ndarray
    request: np.ndarray


@dataclass(frozen=True, eq=False)
class SimulationResult(ArrayResult):
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
    memory: MemoryRecord | None = field(default=None, repr=False)
    tokens: TokenRecord | None = field(default=None, repr=False)

    _ARRAYS = ("first_token", "finish", "worst_gap", "times", "backlog_tokens", "backlog_requests", "trace.times")
    _SCALARS = ("end_time", "n_batches", "tokens_served")

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
            out[name] = {
                "arrived": int(mask.sum()),
                "finished": int(done.sum()),
                "throughput_requests_per_s": float(done.sum() / span),
                "throughput_tokens_per_s": float((tr.prompt[done] + tr.decode[done]).sum() / span),
                **request_latencies(tr, self.first_token, self.finish, self.worst_gap, mask),
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
             record_every: float | None = None, record_batches: bool = False, record_latency: bool = False,
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
        Implies ``record_latency``.
    record_latency
        Keep a :class:`TokenRecord` (every output token's gap, 16 bytes per
        token): what :mod:`~llmstab.fluid_models.simulation.latency` needs,
        without the batch log.
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
    tr, offered = _trace_to_serve(workload, n_requests, horizon_s, seed, arrivals, trace)
    return _run(engine, policy, tr, horizon_s, int(seed), arrivals, offered, record_every,
                (record_batches, record_batches or record_latency), max_backlog_requests, progress)


def _trace_to_serve(workload: Workload | None, n_requests: int | None, horizon_s: float | None, seed: int,
                    arrivals: str, trace: Trace | None) -> tuple[Trace, float | None]:
    """The requests to serve (the given trace's head, or drawn from ``workload``) and the offered token rate."""
    if arrivals not in ARRIVAL_KINDS:
        raise SimulationInputError("arrivals", f"unknown kind {arrivals!r} (one of {', '.join(ARRIVAL_KINDS)})")
    if arrivals == "trace":
        if trace is None:
            raise SimulationInputError("trace", "arrivals='trace' needs a trace")
        tr = trace if n_requests is None else trace.head(n_requests)
        if horizon_s is not None:
            tr = tr.head(int(np.searchsorted(tr.times, horizon_s, side="right")))
        return tr, None
    if workload is None:
        raise SimulationInputError("workload", "needed unless arrivals='trace'")
    if n_requests is None and horizon_s is None:
        raise SimulationInputError("horizon", "give a horizon or a number of requests")
    rng = np.random.default_rng(int(seed))
    return sample_trace(workload, rng, kind=arrivals, n_requests=n_requests, horizon_s=horizon_s), \
        float(workload.token_rate)


def kv_vector(engine: Engine, policy: Policy, k_max: int, leave_after_prefill: bool = False) -> np.ndarray:
    """``[total blocks, block size, watermark blocks, max active, waiting rows shown, leave after the prefill]``.

    Unlimited: ``2**62`` blocks of one token. ``leave_after_prefill`` (a
    disaggregated prefill pool): a request leaves the engine once its prefill is done.

    >>> from llmstab.fluid_models.batch_time import Staircase
    >>> from llmstab.fluid_models.policies import Sarathi
    >>> kv_vector(Engine(Staircase(1, 1, 4), 8), Sarathi(), 4).tolist()[1:]
    [1, 0, 4611686018427387904, 4, 0]
    """
    kv = engine.kv_cache
    active = NO_LIMIT if engine.max_active_requests is None else int(engine.max_active_requests)
    shown = NO_LIMIT if policy.sees_whole_queue else min(int(engine.token_budget), k_max)
    blocks = (NO_LIMIT, 1, 0) if kv is None else (kv.blocks, kv.block_size, kv.watermark_blocks)
    return np.array([*blocks, active, shown, int(leave_after_prefill)], np.int64)


def batch_seconds(engine: Engine, b_max: int) -> tuple[np.ndarray, np.ndarray]:
    """The batch-time table ``t(0 .. b_max)`` and the attention coefficients ``[decode, prefill]``, in seconds."""
    batch_s = np.ascontiguousarray(engine.batch_time.table(b_max) / 1000.0, dtype=np.float64)
    if not (np.isfinite(batch_s[1:]).all() and (batch_s[1:] > 0).all()):
        raise SimulationInputError("engine.batch_time", "batch times must be positive and finite for 1..b_max tokens")
    att = engine.attention
    coeffs = np.zeros(2) if att is None else np.array([float(att.decode_exact), float(att.prefill_exact)]) / 1000.0
    return batch_s, coeffs


def token_times(n: int, n_gaps: int) -> tuple[np.ndarray, ...]:
    """The compiled step's per-request token times for ``n`` requests, with room for ``n_gaps`` per-token gaps.

    ``(first_tok, finish, last_tok, max_gap, pf_end, lat_first, gaps, gap_req, n_gaps)``
    (see :mod:`llmstab.fluid_models.simulation.engine_step`).

    >>> [a.size for a in token_times(3, 5)]
    [3, 3, 3, 3, 3, 3, 5, 5, 1]
    """
    return (np.full(n, np.nan), np.full(n, np.nan), np.full(n, np.nan), np.zeros(n), np.full(n, np.nan),
            np.full(n, np.nan), np.zeros(n_gaps), np.zeros(n_gaps, np.int64), np.zeros(1, np.int64))


class _Buffers:
    """The compiled loop's arrays: per request, per row, records, logs and state (growable between segments)."""

    def __init__(self, tr: Trace, policy: Policy, span_guess: float, rec_dt: float, record_batches: bool,
                 record_latency: bool) -> None:
        n = tr.size
        self.memory = np.ascontiguousarray(policy.initial_memory(), dtype=np.int64).copy()
        self.cum_tok = np.zeros(n + 1, np.int64)
        np.cumsum(tr.prompt + tr.decode, out=self.cum_tok[1:])
        rows = n + 1
        self.rows = (np.zeros((rows, NI), np.int64), np.zeros((rows, NF)), np.zeros(16),
                     np.zeros((rows, TAKE_COLUMNS), np.int64), np.full(rows, -1, np.int64), self.memory.copy(),
                     np.zeros(rows, np.int64), np.zeros(rows, np.int64))
        self.per_request = (np.zeros(n, np.int64), tr.prompt.astype(np.int64).copy(), np.full(n, np.nan))
        self.times = token_times(n, int(tr.decode.sum()) if record_latency else 0)
        size = int(span_guess / rec_dt) + 64
        self.rec = [np.zeros(size), np.zeros(size, np.int64), np.zeros(size, np.int64), np.zeros(size, np.int64)]
        log_size = 1024 if record_batches else 0
        self.log = [np.zeros(log_size)] + [np.zeros(log_size, np.int64) for _ in range(4)]
        self.comp = [np.zeros(log_size + 1 if record_batches else 0, np.int64)] + \
            [np.zeros(4 * log_size, np.int64) for _ in range(3)]
        self.ist, self.fst = np.zeros(S.IST_SIZE, np.int64), np.zeros(S.FST_SIZE)

    def grow(self, status: int, n: int) -> None:
        """Make room after a ``FULL_*`` status."""
        if status == S.FULL_REC:
            self.rec = [_grow(a, 2 * a.size + 64) for a in self.rec]
        elif status == S.FULL_LOG:
            self.log = [_grow(a, 2 * a.size) for a in self.log]
            self.comp[0] = _grow(self.comp[0], self.log[0].size + 1)
        elif status == S.FULL_COMP:
            self.comp[1:] = [_grow(a, 2 * a.size + n) for a in self.comp[1:]]


#: A replayed trace whose preemptions recompute more than this many times its own tokens is thrashing.
THRASH_FACTOR = 100


def _thrashing_error(policy: Policy, buf: _Buffers) -> SimulationInputError:
    return SimulationInputError(
        "engine.kv_cache", f"{policy.label} thrashes: its preemptions recomputed {int(buf.ist[S.I_RECOMP]):,} tokens, "
        f"over {THRASH_FACTOR} times the trace's work, with {int(buf.ist[S.I_FINISHED])} requests finished at "
        f"t = {buf.fst[S.F_T]:.6g} s (requests evict each other: the cache is too small for this policy)")


def _stop_error(status: int, policy: Policy, buf: _Buffers, tr: Trace, engine: Engine) -> SimulationInputError:
    t, waiting = buf.fst[S.F_T], buf.ist[S.I_NR] + buf.ist[S.I_QLEN]
    if status == S.STALLED:
        return SimulationInputError("policy", f"{policy.label} formed an empty or oversized batch at t = {t:.6g} s "
                                    f"with {waiting} requests waiting")
    if status == S.NO_FIT:
        r = int(buf.ist[S.I_BAD])
        kv = engine.kv_cache
        return SimulationInputError(
            "engine.kv_cache", f"request {r} (prompt {int(tr.prompt[r])}, output {int(tr.decode[r])} tokens) can never "
            f"be served: it needs more than the {kv.blocks if kv else 'unlimited'} blocks of {kv.block_size if kv else 1} "
            f"tokens ({kv.admissible_blocks if kv else 'all'} admissible) even alone (at t = {t:.6g} s)")
    return SimulationInputError("policy", f"{policy.label} formed a batch that breaks the batch constraints "
                                f"or the KV-cache rules at t = {t:.6g} s")


def _run(engine: Engine, policy: Policy, tr: Trace, horizon_s: float | None, seed: int, arrivals: str,
         offered: float | None, record_every: float | None, records: tuple[bool, bool],
         max_backlog_requests: int | None, progress: Callable[[float, float], None] | None) -> SimulationResult:
    """Run the compiled loop segment by segment; ``records`` = (keep the batch log, keep the per-token gaps)."""
    b_max = int(engine.token_budget)
    k_max = NO_LIMIT if engine.max_batch_requests is None else int(engine.max_batch_requests)
    batch_s, att = batch_seconds(engine, b_max)
    kv = kv_vector(engine, policy, k_max)
    n = tr.size
    t_end = math.inf if horizon_s is None else float(horizon_s)
    span_guess = t_end if horizon_s is not None else max(float(tr.times[-1]) if n else 0.0, 1e-3) * 1.5 + 1.0
    rec_dt = float(record_every) if record_every is not None else span_guess / 4000.0
    kernel, params = policy.compiled_kernel(), np.ascontiguousarray(policy.parameters(), dtype=np.float64)
    buf = _Buffers(tr, policy, span_guess, rec_dt, *records)
    chunk = 200_000  # batches between pauses: progress, and the thrashing guard
    pause_at = chunk
    thrash_limit = THRASH_FACTOR * int(tr.prompt.sum() + tr.decode.sum()) + 10**6
    crowd = NO_LIMIT if max_backlog_requests is None else int(max_backlog_requests)
    while True:
        status = engine_loop(kernel, params, buf.memory, batch_s, att, kv, b_max, k_max,
                             (tr.times, tr.prompt, tr.decode, tr.cls), buf.cum_tok, t_end, rec_dt, pause_at, crowd,
                             buf.rows, buf.per_request, buf.times, tuple(buf.rec), tuple(buf.log), tuple(buf.comp),
                             buf.ist, buf.fst)
        if status in (S.DONE, S.CROWDED):
            break
        if status == S.PAUSED:
            pause_at += chunk
            if horizon_s is None and buf.ist[S.I_RECOMP] > thrash_limit:
                raise _thrashing_error(policy, buf)
            done = (float(buf.fst[S.F_T]), t_end) if horizon_s is not None else (float(buf.ist[S.I_FINISHED]), float(n))
            if progress is not None:
                progress(*done)
        elif status in (S.FULL_REC, S.FULL_LOG, S.FULL_COMP):
            buf.grow(status, n)
        else:
            raise _stop_error(status, policy, buf, tr, engine)
    return _result(engine, policy, tr, buf, status, horizon_s, t_end, seed, arrivals, offered, rec_dt,
                   records[0], max_backlog_requests, progress)


def _result(engine: Engine, policy: Policy, tr: Trace, buf: _Buffers, status: int, horizon_s: float | None,
            t_end: float, seed: int, arrivals: str, offered: float | None, rec_dt: float, record_batches: bool,
            max_backlog_requests: int | None, progress: Callable[[float, float], None] | None) -> SimulationResult:
    ist, fst, n = buf.ist, buf.fst, tr.size
    stopped = status == S.CROWDED
    end = float(fst[S.F_T]) if stopped or horizon_s is None else t_end
    outstanding = int(ist[S.I_SERVED] - ist[S.I_RECOMP])
    times, tokens, reqs, kv_used = _finish_trajectory(buf.rec, int(ist[S.I_REC]), rec_dt, end, tr, buf.cum_tok,
                                                      outstanding, int(ist[S.I_FINISHED]), int(ist[S.I_USED]))
    if progress is not None:
        progress(end if horizon_s is not None else float(n), end if horizon_s is not None else float(n))
    batches = _batch_log(buf.log, buf.comp, int(ist[S.I_BATCHES])) if record_batches else None
    kv = engine.kv_cache
    memory = MemoryRecord(kv.blocks if kv else None, kv.block_size if kv else None, engine.max_active_requests,
                          kv_used, int(ist[S.I_PEAK]), int(ist[S.I_PREEMPT]), int(ist[S.I_RECOMP]),
                          int(ist[S.I_STALL_MEM]), int(ist[S.I_STALL_REQ]))
    first_tok, finish, _, max_gap, _, lat_first, gaps, gap_req, n_gaps = buf.times
    record = TokenRecord(lat_first, gaps[: n_gaps[0]], gap_req[: n_gaps[0]]) if gaps.size else None
    return SimulationResult(policy.label, int(engine.token_budget), seed, arrivals, tr, first_tok, finish,
                            max_gap, times, tokens, reqs, end, int(ist[S.I_BATCHES]),
                            float(fst[S.F_BUSY]), int(ist[S.I_SERVED]), offered, batches,
                            max_backlog_requests if stopped else None, memory, record)


def _finish_trajectory(rec: list, k: int, rec_dt: float, end: float, tr: Trace, cum_tok: np.ndarray,
                       served: int, finished: int, used: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The recorded grid points, those after the last batch up to ``end`` (nothing served there), and ``end``."""
    tail = np.arange(k, int(math.floor(end / rec_dt + 1e-9)) + 1) * rec_dt
    if not (tail.size and tail[-1] >= end) and not (tail.size == 0 and k and rec[0][k - 1] >= end):
        tail = np.append(tail, end)
    arrived = np.searchsorted(tr.times, tail, side="right")
    times = np.concatenate([rec[0][:k], tail])
    tokens = np.concatenate([rec[1][:k], cum_tok[arrived] - served])
    reqs = np.concatenate([rec[2][:k], arrived - finished])
    kv_used = np.concatenate([rec[3][:k], np.full(tail.size, used, np.int64)])
    return times, tokens, reqs, kv_used


def _batch_log(log: list, comp: list, nb: int) -> BatchLog:
    off, req, p, d = comp
    used = int(off[nb])
    return BatchLog(*(a[:nb].copy() for a in log), off[: nb + 1].copy(), req[:used].copy(), p[:used].copy(),
                    d[:used].copy())
