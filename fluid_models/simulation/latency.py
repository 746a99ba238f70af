"""Latency as serving systems count it: TTFT at the prefill's last batch, TBT per token, goodput.

From a run with ``record_latency=True`` (or ``record_batches=True``, which implies
it), whose compiled loop records every output token's time as it is emitted:

* a request's **first output token** is emitted by the batch that completes its
  prefill (Sarathi-Serve and vLLM count it so): TTFT = end of the last batch
  that gave it prefill tokens before its first decode, minus its arrival (a
  request with no prompt gets its first token from its first decode);
* every later output token is one decode batch; its **TBT** is the gap since
  the same request's previous token, preemption and recomputation included,
  so a request with ``d`` decode tokens (and a prompt) contributes ``d`` gaps;
  percentiles are taken over the tokens of a class, not per request;
* **goodput** is the rate of finished requests that met their class's SLO on
  their own: TTFT within target, and no more than ``100 - tbt_percentile`` %
  of their gaps above the TBT target.

:func:`batch_ends` recovers the end of every logged batch exactly from a batch
log: a batch after which a member is still present is followed at once by the
next batch (the engine idles only when nothing is present), and a batch after
which nothing is left ends when its last member finished.

Examples
--------
>>> from llmstab.fluid_models.batch_time import Staircase
>>> from llmstab.fluid_models.engine import Engine
>>> from llmstab.fluid_models.policies import Sarathi
>>> from .arrivals import Trace
>>> from .simulator import simulate
>>> tr = Trace([0.0, 0.0], [3, 2], [2, 1])
>>> r = simulate(Engine(Staircase(1, 1, 4), 4), Sarathi(), None, arrivals="trace", trace=tr, record_batches=True)
>>> lat = token_latencies(r)
>>> r.batches.describe(["A", "B"])        # each batch lasts 2 ms
['{Ap,Bp}', '{Ad,Bp}', '{Ad,Bd}']
>>> lat.ttft.tolist(), lat.gaps.tolist()   # A's first token ends batch 1, B's batch 2
([0.002, 0.004], [0.002, 0.002, 0.002])
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..slo import SLO
from .simulator import SimulationResult

__all__ = ["TokenLatencies", "token_latencies", "batch_ends", "latency_metrics", "class_percentiles"]


@dataclass(frozen=True)
class TokenLatencies:
    """Per request: ``ttft`` (s, NaN without a first token); per token: ``gaps`` (s) and their ``request``."""

    ttft: np.ndarray
    gaps: np.ndarray
    request: np.ndarray


def batch_ends(result: SimulationResult) -> np.ndarray:
    """The end time of every logged batch of ``result`` (which must have ``record_batches=True``)."""
    log = result.batches
    if log is None:
        raise ValueError("token latencies need a run with record_batches=True")
    nb = log.start.size
    ends = np.empty(nb)
    ends[:-1] = log.start[1:]
    if nb:
        ends[-1] = np.nan
    decoded = log.served_decode > 0
    entry_batch = np.searchsorted(log.offsets, np.arange(log.served_request.size), side="right") - 1
    last = np.full(result.trace.size, -1, np.int64)
    last[log.served_request[decoded]] = entry_batch[decoded]  # entries are in time order: the last write wins
    done = (last >= 0) & np.isfinite(result.finish)
    ends[last[done]] = result.finish[done]
    if nb and np.isnan(ends[-1]):  # the run stopped after this batch with requests left: busy time closes it
        ends[-1] = log.start[-1] + result.busy_time - float(np.sum(ends[:-1] - log.start[:-1]))
    return ends


def token_latencies(result: SimulationResult) -> TokenLatencies:
    """TTFT per request and the TBT gap of every output token after the first (see the module).

    Read from the run's :class:`~llmstab.fluid_models.simulation.simulator.TokenRecord`
    (recorded by the compiled loop when ``record_latency`` or ``record_batches`` was set).
    """
    if result.tokens is None:
        raise ValueError("token latencies need a run with record_latency=True (or record_batches=True)")
    rec = result.tokens
    return TokenLatencies(rec.first_token - result.trace.times, rec.gaps, rec.request)


def class_percentiles(values: np.ndarray, percentiles: tuple[float, ...] = (50, 90, 99)) -> dict:
    """``n``, ``mean`` and ``p<q>`` of the finite ``values`` (``None`` when there are none).

    >>> class_percentiles(np.array([1.0, 2.0, 3.0, np.nan]), (50, 100))
    {'n': 3, 'mean': 2.0, 'p50': 2.0, 'p100': 3.0}
    """
    v = values[np.isfinite(values)]  # a copy, so the quantiles may work in place
    out = {"n": int(v.size), "mean": float(v.mean()) if v.size else None}
    qs = np.percentile(v, percentiles, overwrite_input=True) if v.size else [None] * len(percentiles)
    out.update({f"p{q:g}": (float(x) if x is not None else None) for q, x in zip(percentiles, qs)})
    return out


def _met_per_request(lat: TokenLatencies, slo: SLO | None, n: int) -> np.ndarray:
    """Requests meeting ``slo`` on their own (TTFT, and the share of their gaps above the TBT target)."""
    met = np.ones(n, bool)
    if slo is None:
        return met
    if slo.ttft_s is not None:
        met &= lat.ttft <= slo.ttft_s
    if slo.tbt_s is not None:
        over = np.bincount(lat.request, weights=lat.gaps > slo.tbt_s, minlength=n)
        count = np.bincount(lat.request, minlength=n)
        met &= over <= (1 - slo.tbt_percentile / 100) * count + 1e-9
    return met


def _with(slo: SLO | None, field: str) -> tuple[float, ...]:
    """P50, P90, P99 and the SLO's own percentile ``field``, if it is another."""
    qs = (50.0, 90.0, 99.0)
    return qs if slo is None or getattr(slo, field) in qs else qs + (getattr(slo, field),)


def latency_metrics(result: SimulationResult, slos: dict[str, SLO | None] | None = None) -> dict[str, dict]:
    """Per class (and ``"all"`` when there are several): TTFT over requests, TBT over tokens
    (``n, mean, p50, p90, p99``), finished requests and goodput per second, and each class's SLO verdict.

    ``slos`` maps class names to targets (default: none). A class's ``slo.met``
    is the class-level verdict: the TTFT at ``ttft_percentile`` (over its
    requests) and the TBT at ``tbt_percentile`` (over its tokens) within their
    targets. Goodput counts finished requests that met their own class's SLO.
    """
    lat, tr, slos = token_latencies(result), result.trace, slos or {}
    span = result.end_time if result.end_time > 0 else float("nan")
    groups = {name: tr.cls == k for k, name in enumerate(tr.class_names)}
    met = result.finished.copy()
    for name, mask in groups.items():
        met[mask] &= _met_per_request(lat, slos.get(name), tr.size)[mask]
    if len(groups) > 1:
        groups["all"] = np.ones(tr.size, bool)
    out = {}
    for name, mask in groups.items():
        slo = slos.get(name) if name in tr.class_names else None
        gaps = lat.gaps[mask[lat.request]]
        done = mask & result.finished
        row = {"requests": int(mask.sum()), "finished": int(done.sum()),
               "without_first_token": int(np.isnan(lat.ttft[mask]).sum()),
               "throughput_rps": float(done.sum() / span), "goodput_rps": float((met & mask).sum() / span),
               "ttft_s": class_percentiles(lat.ttft[mask], _with(slo, "ttft_percentile")),
               "tbt_s": class_percentiles(gaps, _with(slo, "tbt_percentile"))}
        if slo is not None:
            ttft, tbt = row["ttft_s"][f"p{slo.ttft_percentile:g}"], row["tbt_s"][f"p{slo.tbt_percentile:g}"]
            row["slo"] = {**slo.as_dict(), "ttft_at_percentile_s": ttft, "tbt_at_percentile_s": tbt,
                          "met": slo.met(ttft_s=ttft if slo.ttft_s is not None else None,
                                         tbt_s=tbt if slo.tbt_s is not None else None)}
        out[name] = row
    return out
