"""Sweeps over loads x policies x presets x seeds, serially or on Dask distributed.

A *point* is a pure function of (input document, policy, load, seed, preset):
:func:`evaluate_point` parses the document with that policy (and batch-time
preset), scales its traffic mix to ``load`` times the engine's exact token
capacity, and returns a small flat record: the exact Theorem-2 load verdict
(re-checked in rationals, :func:`llmstab.checkers.single_engine.load_verdict`)
and, for ``kind="simulate"``, a seeded simulation's growth estimate with its
interval, throughput and latency percentiles. Same arguments, same record, on
any machine and in any process.

:class:`SweepExecutor` evaluates many points: in this process (serial), on a
``LocalCluster`` of worker processes with one thread each (numba loops hold the
GIL), or through a running Dask scheduler given by address. Results come back
in input order, so a parallel sweep is identical, point for point, to the
serial one. Millisecond-scale points are sent in chunks, seconds-scale
simulations one per task. Each worker runs a warm-up once at start-up (a
:class:`distributed.WorkerPlugin`) that loads the compiled kernels, so no task
pays the JIT. Any search that evaluates many independent points (an
empirical-capacity bisection probing several loads at once, an SLO capacity
search) can use :meth:`SweepExecutor.map` with its own picklable function.

Examples
--------
>>> doc = {"engine": {"batch_time": {"kind": "staircase", "c": 11.28, "a": 35.47, "b0": 128},
...                   "token_budget": 512},
...        "policy": "sarathi",
...        "workload": {"classes": [{"name": "chat", "rate": 12,
...                                  "prompt": {"dist": "deterministic", "mean": 129},
...                                  "decode": {"dist": "geometric", "mean": 112}}]}}
>>> points = grid_points(parse_loads("0.5:1.1:0.3"), ["sarathi", "vllm"], [0])
>>> [(p.policy, p.load) for p in points]
[('sarathi', '1/2'), ('sarathi', '4/5'), ('sarathi', '11/10'), ('vllm', '1/2'), ('vllm', '4/5'), ('vllm', '11/10')]
>>> with SweepExecutor() as serial:      # no workers, no scheduler: this process
...     records = sweep(doc, points, serial, kind="theory")
>>> [r["verdict"] for r in records]
['stable', 'stable', 'unstable', 'inconclusive', 'inconclusive', 'unstable']
"""

from __future__ import annotations

import functools
import json
import math
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import sympy

from .errors import InputError

__all__ = ["SweepPoint", "SweepExecutor", "evaluate_point", "sweep", "grid_points", "parse_loads", "parse_seeds",
           "parse_names", "validate_grid", "warm_up_for", "default_workers", "RECORD_FIELDS", "POINT_KINDS",
           "MAX_POINTS"]

#: ``theory``: the exact load verdict only (milliseconds); ``simulate``: plus a seeded simulation (seconds).
POINT_KINDS = ("simulate", "theory")
#: A grid larger than this is refused (a typo such as a step of 1e-9 would otherwise exhaust memory).
MAX_POINTS = 1_000_000
#: The columns of a record, in CSV order.
RECORD_FIELDS = (
    "policy", "preset", "load", "load_exact", "seed", "kind", "verdict", "verdict_evidence",
    "capacity_tokens_per_s", "offered_tokens_per_s", "growth", "growth_rate_tokens_per_s",
    "growth_half_width_tokens_per_s", "growth_confidence", "horizon_s", "stopped_early", "requests", "finished",
    "throughput_tokens_per_s", "ttft_p50_s", "ttft_p90_s", "ttft_p99_s", "tbt_p50_s", "tbt_p90_s", "tbt_p99_s",
    "e2e_p50_s", "e2e_p99_s", "llmstab_version",
)


# --- the grid ----------------------------------------------------------------------------------


def _rational(text: str, field: str) -> sympy.Rational:
    try:
        value = sympy.Rational(text.strip())
    except (TypeError, ValueError, SyntaxError, sympy.SympifyError):
        raise InputError(field, f"not a number: {text!r}") from None
    return value


def parse_loads(text: str) -> list[sympy.Rational]:
    """Loads as fractions of capacity: ``START:STOP:STEP`` (STOP included when hit exactly) or ``a,b,c``.

    Arithmetic is exact, so ``0.5:1.0:0.05`` has 11 points ending at 1.

    >>> [str(x) for x in parse_loads("0.5:1.0:0.25")], [str(x) for x in parse_loads("0.9,1.2")]
    (['1/2', '3/4', '1'], ['9/10', '6/5'])
    >>> parse_loads("1.0:0.5:0.1")
    Traceback (most recent call last):
    ...
    llmstab.fluid_models.errors.InputError: --loads: empty grid: no load from 1.0 up to 0.5
    """
    parts = text.split(":")
    if len(parts) == 1:
        loads = [_rational(x, "--loads") for x in text.split(",") if x.strip()]
    elif len(parts) == 3:
        start, stop, step = (_rational(x, "--loads") for x in parts)
        if step <= 0:
            raise InputError("--loads", f"the step must be positive, got {parts[2]!r}")
        count = int(sympy.floor((stop - start) / step)) + 1 if stop >= start else 0
        if count > MAX_POINTS:
            raise InputError("--loads", f"{count} loads: more than {MAX_POINTS}")
        loads = [start + k * step for k in range(count)]
        if not loads:
            raise InputError("--loads", f"empty grid: no load from {parts[0]} up to {parts[1]}")
    else:
        raise InputError("--loads", f"expected START:STOP:STEP or a comma-separated list, got {text!r}")
    if not loads:
        raise InputError("--loads", "empty grid: no load given")
    bad = [x for x in loads if x <= 0]
    if bad:
        raise InputError("--loads", f"loads are positive fractions of capacity, got {bad[0]}")
    return loads


def parse_seeds(text: str) -> list[int]:
    """Seeds: ``A-B`` (inclusive) or ``a,b,c``, each a non-negative integer.

    >>> parse_seeds("0-3"), parse_seeds("7,2")
    ([0, 1, 2, 3], [7, 2])
    """
    try:
        if "-" in text.strip().lstrip("-") and "," not in text:
            low, high = (int(x, 10) for x in text.split("-"))
            seeds = list(range(low, high + 1))
        else:
            seeds = [int(x, 10) for x in text.split(",") if x.strip()]
    except ValueError:
        raise InputError("--seeds", f"expected A-B or a comma-separated list of integers, got {text!r}") from None
    if not seeds:
        raise InputError("--seeds", f"empty grid: no seed in {text!r}")
    if min(seeds) < 0:
        raise InputError("--seeds", f"seeds are non-negative, got {min(seeds)}")
    return seeds


def parse_names(text: str, field: str) -> list[str]:
    """A comma-separated list of names (policies, presets), without duplicates.

    >>> parse_names("sarathi, vllm", "--policies")
    ['sarathi', 'vllm']
    """
    names = list(dict.fromkeys(x.strip() for x in text.split(",") if x.strip()))
    if not names:
        raise InputError(field, "empty grid: no name given")
    return names


@dataclass(frozen=True)
class SweepPoint:
    """One point of a sweep: a policy name, a load (exact fraction of capacity, as text), a seed, a preset.

    A ``policy`` or ``preset`` of ``None`` keeps the document's own.
    """

    policy: str | None
    load: str
    seed: int
    preset: str | None = None


def grid_points(loads: Sequence[sympy.Rational], policies: Sequence[str | None], seeds: Sequence[int],
                presets: Sequence[str | None] = (None,)) -> list[SweepPoint]:
    """The product grid, in the order preset, policy, load, seed (the CSV's row order)."""
    total = len(loads) * len(policies) * len(seeds) * len(presets)
    if total == 0:
        raise InputError("grid", "empty grid: no point to evaluate")
    if total > MAX_POINTS:
        raise InputError("grid", f"{total} points: more than {MAX_POINTS}")
    return [SweepPoint(policy, str(load), seed, preset)
            for preset in presets for policy in policies for load in loads for seed in seeds]


# --- one point ---------------------------------------------------------------------------------


@functools.lru_cache(maxsize=64)
def _prepared(document_json: str, policy: str | None, preset: str | None, base_dir: str) -> tuple:
    """The parsed spec, its exact capacity and its policy's work-conservation result (cached per process)."""
    from .single_engine import capacity_of
    from .spec import engine_spec_from_document
    from .work_conservation import check_work_conservation

    document = json.loads(document_json)
    if policy is not None:
        document["policy"] = policy
    if preset is not None:
        document["engine"] = {**document.get("engine", {}), "batch_time": {"kind": "preset", "name": preset}}
    spec = engine_spec_from_document(document, "<sweep>", Path(base_dir))
    return spec, capacity_of(spec.engine), check_work_conservation(spec.policy)


def _latency_fields(result: Any) -> dict:
    metrics = result.metrics()
    m = metrics.get("all") or next(iter(metrics.values()))
    out = {}
    for name, key, quantiles in (("ttft", "ttft_s", ("p50", "p90", "p99")), ("tbt", "tbt_s", ("p50", "p90", "p99")),
                                 ("e2e", "e2e_s", ("p50", "p99"))):
        for q in quantiles:
            out[f"{name}_{q}_s"] = m[key][q]
    out["finished"] = m["finished"]
    return out


def _simulated_fields(spec: Any, workload: Any, capacity: Any, seed: int, horizon_s: float | None) -> dict:
    from llmstab.fluid_models.simulation.simulator import simulate

    from .growth import estimate_growth, fluid_prediction
    from .simulation_check import CROWD_LIMIT

    if horizon_s is None:
        t_full = float(spec.engine.batch_time.exact(spec.engine.token_budget)) / 1000.0
        horizon_s = max(2500 * t_full, 2000 / float(workload.rate))
    result = simulate(spec.engine, spec.policy, workload, horizon_s=horizon_s, seed=seed,
                      max_backlog_requests=CROWD_LIMIT)
    try:
        growth = estimate_growth(result, fluid_rate=fluid_prediction(workload, capacity.tokens_per_s))
    except ValueError as err:
        raise InputError("--horizon", f"too short for a growth estimate: {err}") from None
    return {"growth": growth.trend, "growth_rate_tokens_per_s": growth.rate,
            "growth_half_width_tokens_per_s": growth.half_width, "growth_confidence": growth.confidence,
            "horizon_s": result.end_time, "stopped_early": result.stopped_at_backlog is not None,
            "requests": int(result.trace.size),
            "throughput_tokens_per_s": result.throughput_tokens, **_latency_fields(result)}


def evaluate_point(document: dict, point: SweepPoint, *, kind: str = "simulate", horizon_s: float | None = None,
                   base_dir: str = ".") -> dict:
    """The record of one sweep point (a dict over :data:`RECORD_FIELDS`; absent values are ``None``).

    ``point.load`` is the offered token rate as a fraction of the engine's exact
    capacity ``max_b b/t_b``; the document's traffic mix is scaled to it. The
    ``verdict`` is the exact Theorem-2 load verdict (``verdict_evidence`` names
    the kinds of its evidence); ``kind="simulate"`` adds a simulation of
    ``horizon_s`` seconds (default ``max(2500 t(b_max), 2000/lambda)``) seeded
    with ``point.seed``, stopped early (``stopped_early``, ``horizon_s`` then the
    time it stopped) once more than 5,000 requests are present, as in
    :func:`~llmstab.checkers.simulation_check.run_until_settled`: the backlog's
    growth with its interval (``growth`` is ``diverging``, ``bounded`` or ``undecided``,
    statistical evidence, never a proof), throughput and latency percentiles.

    >>> doc = {"engine": {"batch_time": {"kind": "staircase", "c": 11.28, "a": 35.47, "b0": 128},
    ...                   "token_budget": 512}, "policy": "orca",
    ...        "workload": {"classes": [{"name": "c", "rate": 1, "prompt": {"dist": "deterministic", "mean": 100},
    ...                                  "decode": {"dist": "deterministic", "mean": 100}}]}}
    >>> r = evaluate_point(doc, SweepPoint("sarathi", "6/5", 0), horizon_s=300.0)
    >>> r["verdict"], r["growth"], r["load_exact"], r["requests"] > 1000
    ('unstable', 'diverging', '6/5', True)
    """
    from llmstab import __version__
    from .single_engine import load_verdict

    if kind not in POINT_KINDS:
        raise InputError("--kind", f"unknown point kind {kind!r} (one of {', '.join(POINT_KINDS)})")
    spec, capacity, work = _prepared(json.dumps(document, sort_keys=True, default=str), point.policy, point.preset,
                                     base_dir)
    load = sympy.Rational(point.load)
    workload = spec.workload.scaled(load * capacity.tokens_per_s / spec.workload.token_rate)
    verdict = load_verdict(spec.engine, workload, capacity, work)
    record = dict.fromkeys(RECORD_FIELDS)
    record.update(policy=spec.policy.name, preset=point.preset, load=float(load), load_exact=str(load), seed=point.seed,
                  kind=kind, verdict=verdict.verdict,
                  verdict_evidence="+".join(dict.fromkeys(e.kind for e in verdict.evidence)),
                  capacity_tokens_per_s=float(capacity.tokens_per_s), offered_tokens_per_s=float(workload.token_rate),
                  llmstab_version=__version__)
    if kind == "simulate":
        record.update(_simulated_fields(spec, workload, capacity, point.seed, horizon_s))
    return record


def validate_grid(document: dict, policies: Sequence[str | None], presets: Sequence[str | None],
                  base_dir: str = ".") -> list:
    """Parse the document once per (policy, preset), so bad input fails here, before any work is sent;
    the parsed specs, in grid order."""
    text = json.dumps(document, sort_keys=True, default=str)
    return [_prepared(text, policy, preset, base_dir)[0] for preset in presets for policy in policies]


def _warm_up(document: dict, policies: Sequence[str | None], presets: Sequence[str | None], base_dir: str) -> None:
    """Load every policy's compiled kernel and fill the per-process caches (run once per worker)."""
    from llmstab.fluid_models.simulation.simulator import simulate

    for spec in validate_grid(document, policies, presets, base_dir):
        simulate(spec.engine, spec.policy, spec.workload, n_requests=20, seed=0)


def _point_task(document: dict, kind: str, horizon_s: float | None, base_dir: str, point: SweepPoint) -> dict:
    return evaluate_point(document, point, kind=kind, horizon_s=horizon_s, base_dir=base_dir)


def sweep(document: dict, points: Sequence[SweepPoint], executor: "SweepExecutor", *, kind: str = "simulate",
          horizon_s: float | None = None, base_dir: str = ".", progress: bool = False) -> list[dict]:
    """Evaluate ``points`` on ``executor``; the records in the order of ``points``.

    Simulations go one per task; exact-verdict points in chunks of half the
    points per worker (each worker gets two tasks: few round trips, and a
    worker that finishes first can take the last one).
    """
    if not points:
        raise InputError("grid", "empty grid: no point to evaluate")
    task = functools.partial(_point_task, document, kind, horizon_s, base_dir)
    chunk = 1 if kind == "simulate" else max(1, math.ceil(len(points) / (2 * executor.n_workers)))
    return executor.map(task, points, chunk_size=chunk, progress=progress)


# --- the executor ------------------------------------------------------------------------------


def _run_chunk(function: Callable[[Any], Any], items: Sequence[Any]) -> list:
    """Run ``function`` on each item; an :class:`InputError` comes back as data (it does not pickle)."""
    out = []
    for item in items:
        try:
            out.append(("ok", function(item)))
        except InputError as err:
            return [("input-error", err.field, err.problem)]
    return out


def _unpack(results: Iterable[list]) -> list:
    out = []
    for chunk in results:
        for entry in chunk:
            if entry[0] == "input-error":
                raise InputError(entry[1], entry[2])
            out.append(entry[1])
    return out


def _probe_scheduler(address: str, timeout: float) -> None:
    """Fail fast, with one line, on a malformed address or one where no Dask scheduler answers.

    One ``identity`` call over Dask's own comm layer, before any ``Client`` exists
    (a failed ``Client`` leaves warnings behind at exit).

    >>> _probe_scheduler("localhost", 1.0)
    Traceback (most recent call last):
    ...
    llmstab.fluid_models.errors.InputError: --scheduler: not a Dask scheduler address: 'localhost' (expected tcp://HOST:PORT)
    """
    import asyncio

    from distributed.comm import parse_address, parse_host_port

    try:
        _, location = parse_address(address)
        parse_host_port(location)
    except (ValueError, TypeError):
        raise InputError("--scheduler", f"not a Dask scheduler address: {address!r} (expected tcp://HOST:PORT)") from None
    try:
        identity = asyncio.run(asyncio.wait_for(_identity(address, timeout), timeout))
    except Exception as err:  # refused, timed out, or something that is not a Dask scheduler answered
        raise InputError("--scheduler", f"cannot reach the Dask scheduler at {address!r} within {timeout:g} s "
                                        f"({getattr(err, 'strerror', None) or err.__class__.__name__})") from None
    if not isinstance(identity, dict) or identity.get("type") != "Scheduler":
        raise InputError("--scheduler", f"{address!r} answered, but not as a Dask scheduler")


async def _identity(address: str, timeout: float) -> dict:
    from distributed.core import rpc

    async with rpc(address, timeout=timeout) as scheduler:
        return await scheduler.identity()


class SweepExecutor:
    """Where the points run: this process, a local cluster of ``workers`` processes, or ``scheduler``.

    Parameters
    ----------
    workers
        Start a ``LocalCluster`` of this many worker processes, one thread each
        (on 127.0.0.1, no dashboard).
    scheduler
        Address of a running Dask scheduler (``tcp://HOST:PORT``); its workers run the points.
    warm_up
        A picklable function run once on every worker as it starts (and in this
        process for a serial executor), e.g. to load compiled kernels.
    connect_timeout
        Seconds to wait for the scheduler (an unreachable address is an :class:`InputError`).

    Without ``workers`` or ``scheduler`` the executor is serial. Use it as a
    context manager: the cluster or connection closes on exit.
    """

    def __init__(self, workers: int | None = None, scheduler: str | None = None, *,
                 warm_up: Callable[[], None] | None = None, connect_timeout: float = 5.0) -> None:
        if workers is not None and scheduler is not None:
            raise InputError("--workers", "give --workers or --scheduler, not both")
        if workers is not None and (isinstance(workers, bool) or not isinstance(workers, int) or workers < 1):
            raise InputError("--workers", f"must be a positive integer, got {workers!r}")
        self.client = self.cluster = None
        if workers is not None:
            self._start_local(workers)
        elif scheduler is not None:
            self._connect(scheduler, connect_timeout)
        elif warm_up is not None:
            warm_up()
        if self.client is not None and warm_up is not None:
            self._register_warm_up(warm_up)

    def _start_local(self, workers: int) -> None:
        import logging

        from distributed import Client, LocalCluster

        self.cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, host="127.0.0.1",
                                    dashboard_address=None, silence_logs=logging.CRITICAL)
        self.client = Client(self.cluster)

    def _connect(self, address: str, timeout: float) -> None:
        from distributed import Client

        _probe_scheduler(address, timeout)
        try:
            self.client = Client(address, timeout=timeout)
        except (OSError, TimeoutError, ValueError) as err:
            raise InputError("--scheduler", f"cannot reach the Dask scheduler at {address!r} "
                                            f"within {timeout:g} s ({err.__class__.__name__})") from None
        if not self.client.scheduler_info().get("workers"):
            try:
                self.client.wait_for_workers(1, timeout=timeout)
            except (TimeoutError, OSError):
                self.close()
                raise InputError("--scheduler", f"the scheduler at {address!r} has no workers") from None

    def _register_warm_up(self, warm_up: Callable[[], None]) -> None:
        from distributed import WorkerPlugin

        class WarmUp(WorkerPlugin):
            name = "llmstab-warm-up"

            def setup(self, worker: Any) -> None:
                warm_up()

        self.client.register_plugin(WarmUp())

    @property
    def n_workers(self) -> int:
        """Worker processes available (1 for a serial executor)."""
        if self.client is None:
            return 1
        return max(1, len(self.client.scheduler_info().get("workers", {})))

    def map(self, function: Callable[[Any], Any], items: Sequence[Any], *, chunk_size: int = 1,
            progress: bool = False) -> list:
        """``[function(x) for x in items]``, in order; ``chunk_size`` items per task.

        ``function`` must be picklable (a module-level function or a
        ``functools.partial`` of one) for a parallel executor. A progress bar
        (tqdm, on stderr) counts finished items when ``progress`` is set.
        """
        from tqdm import tqdm

        chunks = [list(items[i:i + chunk_size]) for i in range(0, len(items), chunk_size)]
        with tqdm(total=len(items), file=sys.stderr, disable=not progress, unit="point", leave=False) as bar:
            if self.client is None:
                results = []
                for chunk in chunks:
                    results.append(_run_chunk(function, chunk))
                    bar.update(len(chunk))
                return _unpack(results)
            from distributed import as_completed

            futures = [self.client.submit(_run_chunk, function, chunk, pure=False) for chunk in chunks]
            sizes = {f.key: len(c) for f, c in zip(futures, chunks)}
            for future in as_completed(futures):
                bar.update(sizes[future.key])
            return _unpack(self.client.gather(futures))

    def close(self) -> None:
        """Close the connection and the local cluster, if any."""
        if self.client is not None:
            self.client.close()
        if self.cluster is not None:
            self.cluster.close()
        self.client = self.cluster = None

    def __enter__(self) -> "SweepExecutor":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def warm_up_for(document: dict, policies: Sequence[str | None], presets: Sequence[str | None],
                base_dir: str = ".") -> Callable[[], None]:
    """A picklable warm-up for :class:`SweepExecutor`: each worker loads these policies' kernels once."""
    return functools.partial(_warm_up, document, tuple(policies), tuple(presets), base_dir)


def default_workers(n_tasks: int) -> int:
    """Local workers when none are asked for: one per core, no more than there are tasks."""
    return max(1, min(os.cpu_count() or 1, n_tasks))
