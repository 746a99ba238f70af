"""Arrival streams for the simulator: sampled from a workload, or replayed from a trace.

A :class:`Trace` is the list of requests a simulation serves: arrival times
(seconds, non-decreasing), prompt and decode lengths, and a class index. It is
either *sampled* from a :class:`~llmstab.fluid_models.workload.Workload` with a seeded
numpy ``Generator`` (Poisson or deterministic arrivals), or *replayed* as given
(a CSV file, or arrays built by hand).

A replayed prompt length may be ``0``: the request arrives with its prefill
already done and starts decoding at once (this is how a worked example with
requests "already decoding at time 0" is written).

Examples
--------
>>> import numpy as np
>>> from llmstab.fluid_models.distributions import Deterministic
>>> from llmstab.fluid_models.workload import RequestClass, Workload
>>> w = Workload((RequestClass("chat", 2, Deterministic(5), Deterministic(3)),))
>>> tr = sample_trace(w, np.random.default_rng(0), kind="deterministic", n_requests=3)
>>> tr.times.tolist(), tr.prompt.tolist()
([0.0, 0.5, 1.0], [5, 5, 5])
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..distributions import drawn_as_pairs
from ..errors import InputError
from ..workload import Workload

__all__ = ["SimulationInputError", "Trace", "sample_trace", "read_trace_csv", "ARRIVAL_KINDS"]

ARRIVAL_KINDS = ("poisson", "deterministic", "trace")


class SimulationInputError(InputError):
    """Bad simulation input: ``str(err)`` is one line ``field: problem``.

    An :class:`~llmstab.fluid_models.errors.InputError`: the CLI prints it and exits with status 2.

    >>> str(SimulationInputError("seed", "must be an integer, got 1.5"))
    'seed: must be an integer, got 1.5'
    """


@dataclass(frozen=True)
class Trace:
    """Requests in arrival order: ``times`` (s), ``prompt`` (>= 0), ``decode`` (>= 1) tokens, class index.

    ``class_names[k]`` names class ``k``. Construction checks the arrays and
    raises :class:`SimulationInputError` naming the first problem.

    >>> Trace([0.0, 1.0], [3, 0], [2, 1]).size
    2
    >>> Trace([1.0, 0.0], [3, 1], [2, 1])
    Traceback (most recent call last):
    ...
    llmstab.fluid_models.simulation.arrivals.SimulationInputError: trace.arrival_time: not sorted (row 1 arrives before row 0)
    """

    times: np.ndarray
    prompt: np.ndarray
    decode: np.ndarray
    cls: np.ndarray | None = None
    class_names: tuple[str, ...] = ("all",)

    def __post_init__(self) -> None:
        t = np.asarray(self.times, dtype=np.float64).ravel()
        p = _integers(self.prompt, "trace.prompt_tokens")
        d = _integers(self.decode, "trace.decode_tokens")
        c = np.zeros(t.size, np.int64) if self.cls is None else _integers(self.cls, "trace.class")
        if not (t.size == p.size == d.size == c.size):
            raise SimulationInputError("trace", f"columns differ in length ({t.size}, {p.size}, {d.size}, {c.size})")
        if not np.isfinite(t).all() or (t < 0).any():
            raise SimulationInputError("trace.arrival_time", f"must be finite and >= 0 (row {_first(~np.isfinite(t) | (t < 0))})")
        if t.size > 1 and (np.diff(t) < 0).any():
            i = _first(np.diff(t) < 0) + 1
            raise SimulationInputError("trace.arrival_time", f"not sorted (row {i} arrives before row {i - 1})")
        if (p < 0).any():
            raise SimulationInputError("trace.prompt_tokens", f"negative length {p[p < 0][0]} (row {_first(p < 0)})")
        if (d < 1).any():
            raise SimulationInputError("trace.decode_tokens", f"must be >= 1, got {d[d < 1][0]} (row {_first(d < 1)})")
        names = tuple(self.class_names)
        if c.size and (c.min() < 0 or c.max() >= len(names)):
            raise SimulationInputError("trace.class", f"class index outside 0..{len(names) - 1}")
        for name, value in (("times", t), ("prompt", p), ("decode", d), ("cls", c), ("class_names", names)):
            object.__setattr__(self, name, value)

    @property
    def size(self) -> int:
        """Number of requests."""
        return int(self.times.size)

    def head(self, n: int) -> "Trace":
        """The first ``n`` requests."""
        return Trace(self.times[:n], self.prompt[:n], self.decode[:n], self.cls[:n], self.class_names)


def _first(mask: np.ndarray) -> int:
    return int(np.flatnonzero(mask)[0])


def _integers(values: object, field: str) -> np.ndarray:
    a = np.asarray(values).ravel()
    if a.size and a.dtype.kind == "f":
        if not np.isfinite(a).all() or (a != np.round(a)).any():
            raise SimulationInputError(field, "must be whole numbers")
    elif a.size and a.dtype.kind not in "iu":
        raise SimulationInputError(field, f"must be integers, got {a.dtype}")
    return a.astype(np.int64)


def _lengths(workload: Workload, cls: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    prompt, decode = np.empty(cls.size, np.int64), np.empty(cls.size, np.int64)
    for k, c in enumerate(workload.classes):
        idx = np.flatnonzero(cls == k)
        if drawn_as_pairs(c.prompt, c.decode):
            rows = rng.integers(0, c.prompt.values.size, idx.size)
            prompt[idx], decode[idx] = c.prompt.values[rows], c.decode.values[rows]
        else:
            prompt[idx] = c.prompt.sample(rng, idx.size)
            decode[idx] = c.decode.sample(rng, idx.size)
    return prompt, decode


def _poisson_times(total_rate: float, rng: np.random.Generator, n: int | None, horizon: float | None) -> np.ndarray:
    if n is not None:
        times = np.cumsum(rng.exponential(1.0 / total_rate, n))
        return times if horizon is None else times[times <= horizon]
    chunks, last = [], 0.0
    block = int(total_rate * horizon * 1.05) + 64
    while last <= horizon:
        c = last + np.cumsum(rng.exponential(1.0 / total_rate, block))
        chunks.append(c)
        last = float(c[-1])
    times = np.concatenate(chunks)
    return times[times <= horizon]


def _deterministic_times(rates: np.ndarray, n: int | None, horizon: float | None) -> tuple[np.ndarray, np.ndarray]:
    per_class = []
    for k, r in enumerate(rates):
        count = n if n is not None else int(np.floor(horizon * r)) + 1
        t = np.arange(count) / r
        per_class.append((t, np.full(count, k, np.int64)))
    times = np.concatenate([t for t, _ in per_class])
    cls = np.concatenate([c for _, c in per_class])
    order = np.argsort(times, kind="stable")
    times, cls = times[order], cls[order]
    keep = np.ones(times.size, bool) if horizon is None else times <= horizon
    times, cls = times[keep], cls[keep]
    return (times[:n], cls[:n]) if n is not None else (times, cls)


def sample_trace(workload: Workload, rng: np.random.Generator, *, kind: str = "poisson",
                 n_requests: int | None = None, horizon_s: float | None = None) -> Trace:
    """Draw the requests of ``workload``: arrivals up to ``n_requests`` and/or ``horizon_s``.

    ``kind="poisson"``: the classes' independent Poisson streams, merged (one
    exponential stream at the total rate, each request's class drawn by rate).
    ``kind="deterministic"``: class ``k`` arrives at ``0, 1/rate_k, 2/rate_k, ...``.
    Lengths are drawn per class from the workload's distributions; when a
    class's prompt and decode lengths both come from the same named trace
    (``Empirical`` with source ``trace:NAME``), they are drawn as pairs from
    the same trace row, keeping their correlation (the marginals, and so the
    means, are unchanged).

    Examples
    --------
    >>> from llmstab.fluid_models.distributions import Geometric
    >>> from llmstab.fluid_models.workload import RequestClass, Workload
    >>> w = Workload((RequestClass("a", 10, Geometric(4), Geometric(2)),))
    >>> tr = sample_trace(w, np.random.default_rng(1), horizon_s=100.0)
    >>> 900 < tr.size < 1100, bool(tr.times[-1] <= 100.0)
    (True, True)
    """
    if n_requests is None and horizon_s is None:
        raise SimulationInputError("horizon", "give n_requests or horizon_s")
    rates = np.array([float(c.rate) for c in workload.classes])
    names = tuple(c.name for c in workload.classes)
    if kind == "poisson":
        times = _poisson_times(float(rates.sum()), rng, n_requests, horizon_s)
        cls = rng.choice(len(rates), times.size, p=rates / rates.sum()) if len(rates) > 1 else np.zeros(times.size, np.int64)
    elif kind == "deterministic":
        times, cls = _deterministic_times(rates, n_requests, horizon_s)
    else:
        raise SimulationInputError("arrivals", f"unknown kind {kind!r} for a workload (poisson or deterministic)")
    prompt, decode = _lengths(workload, cls, rng)
    return Trace(times, prompt, decode, cls, names)


_COLUMNS = ("arrival_time", "prompt_tokens", "decode_tokens")


def read_trace_csv(path: str | Path) -> Trace:
    """Read a trace CSV with columns ``arrival_time`` (s), ``prompt_tokens``, ``decode_tokens`` [, ``class``].

    ``class`` holds class names (any text); classes are numbered in order of
    first appearance. Raises :class:`SimulationInputError` for a missing file or
    column, a malformed number, negative lengths or unsorted times.

    Examples
    --------
    >>> import tempfile, os
    >>> f = tempfile.NamedTemporaryFile("w", suffix=".csv", delete=False)
    >>> _ = f.write("arrival_time,prompt_tokens,decode_tokens\\n0.0,4,2\\n0.5,3,1\\n"); f.close()
    >>> read_trace_csv(f.name).decode.tolist()
    [2, 1]
    >>> os.unlink(f.name)
    """
    import csv

    path = Path(path)
    try:
        with path.open(newline="") as handle:
            rows = list(csv.reader(handle))
    except OSError as err:
        raise SimulationInputError("trace", f"cannot read {path}: {err.strerror}") from None
    if not rows:
        raise SimulationInputError("trace", f"{path} is empty")
    header = [h.strip() for h in rows[0]]
    missing = [c for c in _COLUMNS if c not in header]
    if missing:
        raise SimulationInputError("trace", f"missing column {missing[0]!r} in {path} (needs {', '.join(_COLUMNS)})")
    body = [r for r in rows[1:] if any(cell.strip() for cell in r)]
    if not body:
        raise SimulationInputError("trace", f"{path} has no rows")
    cols = {}
    for name in _COLUMNS:
        j = header.index(name)
        try:
            cols[name] = np.array([float(r[j]) for r in body])
        except (ValueError, IndexError):
            raise SimulationInputError(f"trace.{name}", "a row has a missing or non-numeric value") from None
    names: tuple[str, ...] = ("all",)
    cls = None
    if "class" in header:
        j = header.index("class")
        labels = [r[j].strip() if j < len(r) else "" for r in body]
        names = tuple(dict.fromkeys(labels))
        cls = np.array([names.index(label) for label in labels], np.int64)
    return Trace(cols["arrival_time"], cols["prompt_tokens"], cols["decode_tokens"], cls, names)
