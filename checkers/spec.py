"""Loading and validating single-engine input files (YAML or JSON: engine, policy, workload).

Every field is checked when the file is read; a problem raises
:class:`~llmstab.checkers.errors.InputError` naming the field (a dotted path such as
``workload.classes[0].rate``) and what is wrong. Unknown fields are errors too:
a misspelt option is never silently ignored.

Parsers are looked up by ``kind`` / ``dist`` in :data:`BATCH_TIME_PARSERS` and
:data:`DISTRIBUTION_PARSERS`; a new family is one function and one entry.

Examples
--------
>>> spec = engine_spec_from_document({
...     "engine": {"batch_time": {"kind": "staircase", "c": 11.28, "a": 35.47, "b0": 128},
...                "token_budget": 512},
...     "policy": "sarathi",
...     "workload": {"classes": [{"name": "chat", "rate": 14,
...                               "prompt": {"dist": "deterministic", "mean": 129},
...                               "decode": {"dist": "geometric", "mean": 112}}]}})
>>> spec.engine.token_budget, spec.policy.name, spec.workload.token_rate
(512, 'sarathi', Exact(3374, 1))
>>> engine_spec_from_document({"engine": {}})
Traceback (most recent call last):
...
llmstab.fluid_models.errors.InputError: engine.batch_time: missing
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any, Callable

from llmstab.fluid_models.batch_time import BatchTimeModel, PiecewiseLinear, Staircase, Table, Tiled, TiledAttention, exact_number
from llmstab.fluid_models.distributions import Deterministic, Empirical, Geometric, LengthDistribution, Poisson, Uniform
from llmstab.fluid_models.engine import Engine
from llmstab.fluid_models.policies import POLICIES, Policy
from llmstab.fluid_models.workload import RequestClass, Workload

from .documents import load_document, show
from .errors import InputError
from .slo import check_shares, class_rate, parse_slo

__all__ = [
    "EngineSpec",
    "load_document",
    "load_engine_spec",
    "engine_spec_from_document",
    "require_single_engine",
    "parse_batch_time",
    "parse_distribution",
    "parse_engine",
    "parse_policy",
    "parse_workload",
    "read_lengths_csv",
    "BATCH_TIME_PARSERS",
    "DISTRIBUTION_PARSERS",
    "UNITS_IN_MS",
    "MAX_TOKEN_BUDGET",
    "MAX_LENGTH",
    "MAX_CLASSES",
    "MIN_RATE",
    "MAX_RATE",
    "MAX_MAGNITUDE",
    "MIN_MAGNITUDE",
    "MIN_TIME_MS",
    "MAX_TIME_MS",
]

UNITS_IN_MS = {"ms": Fraction(1), "s": Fraction(1000), "us": Fraction(1, 1000)}

# --- limits checked at the door (README, "Input limits"): beyond them the toolkit would run for hours or run out
# of memory (a b_max of 1e9 asks for an 8 TiB array), so an input past one is refused with one line, never half-run.

#: Largest token budget ``b_max`` (and batch-size limit ``k_max``, tile size, ``b0``): 2^20 tokens.
MAX_TOKEN_BUDGET = 2**20
#: Longest prompt or output, in tokens (a mean, a deterministic length, a uniform bound, an empirical value).
MAX_LENGTH = 10**7
#: Most request classes in one workload.
MAX_CLASSES = 1000
#: Arrival rates of a class, requests per second.
MIN_RATE, MAX_RATE = Fraction(1, 10**6), Fraction(10**6)
#: Largest absolute value of any number, and the smallest non-zero one.
MAX_MAGNITUDE, MIN_MAGNITUDE = Fraction(10**12), Fraction(1, 10**12)
#: Batch-time coefficients, in ms: a non-zero one lies in [1e-6, 1e9] ms (a nanosecond to about 11 days).
MIN_TIME_MS, MAX_TIME_MS = Fraction(1, 10**6), Fraction(10**9)


@dataclass(frozen=True)
class EngineSpec:
    """A validated single-engine input: the engine, its scheduler and the traffic."""

    engine: Engine
    policy: Policy
    workload: Workload
    source: str = "<document>"


# --- reading files ---------------------------------------------------------------------------


def read_lengths_csv(path: str | Path, where: str, column: str | None = None) -> list[int]:
    """Positive integer lengths from a CSV: one per row, or the named ``column`` of a headed CSV."""
    p = Path(path)
    try:
        rows = list(csv.reader(p.read_text(encoding="utf-8").splitlines()))
    except FileNotFoundError:
        raise InputError(where, f"no such file: {path}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(where, f"cannot read {path}: {exc.__class__.__name__}") from None
    rows = [r for r in rows if any(cell.strip() for cell in r)]
    if not rows:
        raise InputError(where, f"{path} holds no lengths")
    index, start = 0, 0
    if column is not None:
        header = [h.strip() for h in rows[0]]
        if column not in header:
            raise InputError(where, f"{path} has no column {column!r} (columns: {', '.join(header)})")
        index, start = header.index(column), 1
    elif not _is_integer_text(rows[0][0]):
        start = 1  # a header row
    values = []
    for line, row in enumerate(rows[start:], start=start + 1):
        cell = row[index].strip() if index < len(row) else ""
        if not _is_integer_text(cell):
            raise InputError(where, f"{path} line {line}: {cell!r} is not an integer length")
        value = int(cell)
        if value < 1:
            raise InputError(where, f"{path} line {line}: length {value} is not positive")
        values.append(value)
    if not values:
        raise InputError(where, f"{path} holds no lengths")
    return values


def _is_integer_text(text: str) -> bool:
    return text.strip().lstrip("+-").isdigit()


# --- field helpers -------------------------------------------------------------------------


def _mapping(node: Any, where: str) -> dict:
    if not isinstance(node, dict):
        raise InputError(where, f"must be a mapping, got {_kind_of(node)}")
    return node


def _kind_of(value: Any) -> str:
    return "nothing" if value is None else type(value).__name__


def _only(node: dict, where: str, allowed: set[str]) -> None:
    for key in node:
        if key == "region" and not where and key not in allowed:  # e.g. examples/pointC_boundary.yaml
            raise InputError("region", "this file is for `llmstab region FILE` (its region: section sets the load "
                             "and the policies to simulate); other commands take a file without it")
        if key not in allowed:
            raise InputError(f"{where}.{key}" if where else str(key), f"unknown field (expected one of: {', '.join(sorted(allowed))})")


def _required(node: dict, key: str, where: str) -> Any:
    if key not in node or node[key] is None:
        raise InputError(f"{where}.{key}" if where else key, "missing")
    return node[key]


def _number(value: Any, where: str, *, positive: bool = False, nonnegative: bool = False) -> Fraction:
    """An exact number (int, float read by its decimal text, or text such as ``"3/4"``) of sensible magnitude."""
    if isinstance(value, float) and value in (float("inf"), float("-inf")):
        raise InputError(where, f"must be at most {float(MAX_MAGNITUDE):g} in size, got a number too large for a float")
    try:
        number = exact_number(value)
    except (TypeError, ValueError) as exc:
        why = f" ({exc})" if isinstance(value, str) else ""
        raise InputError(where, f"must be a number, got {show(value)}{why}") from None
    if positive and number <= 0:
        raise InputError(where, f"must be positive, got {show(value)}")
    if nonnegative and number < 0:
        raise InputError(where, f"must not be negative, got {show(value)}")
    if abs(number) > MAX_MAGNITUDE or 0 < abs(number) < MIN_MAGNITUDE:
        raise InputError(where, f"must lie between {float(MIN_MAGNITUDE):g} and {float(MAX_MAGNITUDE):g} in size, "
                                f"got {show(value)}")
    return number


def _integer(value: Any, where: str, *, minimum: int = 1, maximum: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        else:
            raise InputError(where, f"must be an integer, got {show(value)}")
    if value < minimum:
        raise InputError(where, f"must be at least {minimum}, got {show(value)}")
    if maximum is not None and value > maximum:
        raise InputError(where, f"must be at most {maximum:,}, got {show(value)} (see README, Input limits)")
    return value


def _length(value: Any, where: str) -> int:
    """A token count of a prompt or an output: an integer in [1, MAX_LENGTH]."""
    return _integer(value, where, maximum=MAX_LENGTH)


def _tokens(value: Any, where: str, minimum: int = 1) -> int:
    """A batch-size quantity (b_max, k_max, b0, b_col): an integer in [minimum, MAX_TOKEN_BUDGET]."""
    return _integer(value, where, minimum=minimum, maximum=MAX_TOKEN_BUDGET)


# --- batch time ------------------------------------------------------------------------------


def _time(value: Any, where: str, unit: Fraction, **checks: bool) -> Fraction:
    """A batch-time coefficient in ms: zero, or of magnitude in [MIN_TIME_MS, MAX_TIME_MS] once in ms."""
    ms = _number(value, where, **checks) * unit
    if ms and not MIN_TIME_MS <= abs(ms) <= MAX_TIME_MS:
        raise InputError(where, f"{show(value)} is {float(ms):.3g} ms, outside [{float(MIN_TIME_MS):g}, "
                                f"{float(MAX_TIME_MS):g}] ms (see README, Input limits)")
    return ms


def _scaled(node: dict, key: str, where: str, unit: Fraction, **checks: bool) -> Fraction:
    return _time(_required(node, key, where), f"{where}.{key}", unit, **checks)


def _staircase(node: dict, where: str, unit: Fraction, base_dir: Path) -> BatchTimeModel:
    _only(node, where, {"kind", "unit", "c", "a", "b0"})
    return Staircase(
        c=_scaled(node, "c", where, unit, positive=True),
        a=_scaled(node, "a", where, unit, nonnegative=True),
        b0=_tokens(_required(node, "b0", where), f"{where}.b0"),
    )


def _piecewise_linear(node: dict, where: str, unit: Fraction, base_dir: Path) -> BatchTimeModel:
    _only(node, where, {"kind", "unit", "c", "a", "b0"})
    return PiecewiseLinear(
        c=_scaled(node, "c", where, unit, positive=True),
        a=_scaled(node, "a", where, unit, nonnegative=True),
        b0=_tokens(_required(node, "b0", where), f"{where}.b0", minimum=0),
    )


def _tiled(node: dict, where: str, unit: Fraction, base_dir: Path) -> BatchTimeModel:
    _only(node, where, {"kind", "unit", "t_lin", "b_col", "t_nl", "c", "t_attn", "context"})
    fields = dict(
        t_lin=_scaled(node, "t_lin", where, unit, positive=True),
        b_col=_tokens(_required(node, "b_col", where), f"{where}.b_col"),
        t_nl=_time(node.get("t_nl", 0), f"{where}.t_nl", unit, nonnegative=True),
        c=_time(node.get("c", 0), f"{where}.c", unit, nonnegative=True),
    )
    if "t_attn" not in node and "context" not in node:
        return Tiled(**fields)
    # attention: t_attn (time unit per token per context token) times the mean context (tokens)
    return TiledAttention(**fields, t_attn=_scaled(node, "t_attn", where, unit, nonnegative=True),
                          context=_integer(_required(node, "context", where), f"{where}.context", minimum=0,
                                           maximum=MAX_LENGTH))


def _table(node: dict, where: str, unit: Fraction, base_dir: Path) -> BatchTimeModel:
    _only(node, where, {"kind", "unit", "tokens", "times"})
    tokens, times = _required(node, "tokens", where), _required(node, "times", where)
    if not isinstance(tokens, list) or not isinstance(times, list) or not tokens:
        raise InputError(where, "tokens and times must be non-empty lists")
    if len(tokens) != len(times):
        raise InputError(f"{where}.times", f"has {len(times)} entries, tokens has {len(tokens)}")
    xs = [_tokens(v, f"{where}.tokens[{i}]") for i, v in enumerate(tokens)]
    ys = [_time(v, f"{where}.times[{i}]", unit, positive=True) for i, v in enumerate(times)]
    if any(b <= a for a, b in zip(xs, xs[1:])):
        raise InputError(f"{where}.tokens", "must be strictly increasing")
    return Table(tuple(xs), tuple(ys))


def _profile(node: dict, where: str, unit: Fraction, base_dir: Path) -> BatchTimeModel:
    """A model file written by ``llmstab fit`` (path relative to the input file)."""
    from llmstab.fluid_models.profiling.fitting import read_model_file
    from llmstab.fluid_models.profiling.profiles import ProfileError

    _only(node, where, {"kind", "file"})
    path = base_dir / str(_required(node, "file", where))
    try:
        inner = read_model_file(path)
    except ProfileError as exc:
        raise InputError(f"{where}.file", f"{path}: {exc.problem}") from None
    return parse_batch_time(inner, f"{where}.file", base_dir)


def _preset(node: dict, where: str, unit: Fraction, base_dir: Path) -> BatchTimeModel:
    """A named preset shipped with the package (``llmstab presets`` lists them)."""
    from llmstab.fluid_models.profiling.presets import preset_info
    from llmstab.fluid_models.profiling.profiles import ProfileError

    _only(node, where, {"kind", "name"})
    try:
        inner = preset_info(str(_required(node, "name", where)))["batch_time"]
    except ProfileError as exc:
        raise InputError(f"{where}.name", exc.problem) from None
    return parse_batch_time(inner, where, base_dir)


BATCH_TIME_PARSERS: dict[str, Callable[[dict, str, Fraction, Path], BatchTimeModel]] = {
    "staircase": _staircase,
    "piecewise_linear": _piecewise_linear,
    "tiled": _tiled,
    "table": _table,
    "profile": _profile,
    "preset": _preset,
}


def parse_batch_time(node: Any, where: str = "engine.batch_time", base_dir: Path = Path(".")) -> BatchTimeModel:
    """A batch-time model from its mapping (``kind`` selects the family; ``unit`` ms or s)."""
    node = _mapping(node, where)
    kind = _required(node, "kind", where)
    if not isinstance(kind, str) or kind not in BATCH_TIME_PARSERS:
        raise InputError(f"{where}.kind", f"unknown batch-time kind {show(kind)} (known: {', '.join(BATCH_TIME_PARSERS)})")
    unit_name = node.get("unit", "ms")
    if not isinstance(unit_name, str) or unit_name not in UNITS_IN_MS:
        raise InputError(f"{where}.unit", f"unknown unit {show(unit_name)} (known: {', '.join(UNITS_IN_MS)})")
    return BATCH_TIME_PARSERS[kind](node, where, UNITS_IN_MS[unit_name], base_dir)


# --- distributions ---------------------------------------------------------------------------


def _mean_length(node: dict, where: str) -> Fraction:
    mean = _number(_required(node, "mean", where), f"{where}.mean")
    if not 1 <= mean <= MAX_LENGTH:
        raise InputError(f"{where}.mean", f"must lie between 1 and {MAX_LENGTH:,} tokens, got {show(node['mean'])}")
    return mean


def _deterministic(node: dict, where: str, base_dir: Path) -> LengthDistribution:
    _only(node, where, {"dist", "mean"})
    return Deterministic(_length(_required(node, "mean", where), f"{where}.mean"))


def _geometric(node: dict, where: str, base_dir: Path) -> LengthDistribution:
    _only(node, where, {"dist", "mean"})
    return Geometric(_mean_length(node, where))


def _poisson(node: dict, where: str, base_dir: Path) -> LengthDistribution:
    _only(node, where, {"dist", "mean"})
    return Poisson(_mean_length(node, where))


def _uniform(node: dict, where: str, base_dir: Path) -> LengthDistribution:
    _only(node, where, {"dist", "low", "high"})
    low = _length(_required(node, "low", where), f"{where}.low")
    high = _length(_required(node, "high", where), f"{where}.high")
    if high < low:
        raise InputError(f"{where}.high", f"must be at least low = {low}, got {high}")
    return Uniform(low, high)


def _named_trace(node: dict, where: str) -> LengthDistribution:
    """``{dist: empirical, trace: NAME}``: a length trace shipped with the package (prompt or decode column)."""
    from llmstab.fluid_models.traces import TRACES, trace_distribution

    name = node["trace"]
    if "file" in node:
        raise InputError(where, "give either file or trace, not both")
    if not isinstance(name, str) or name not in TRACES:
        raise InputError(f"{where}.trace", f"unknown trace {show(name)} (known: {', '.join(sorted(TRACES))})")
    column = node.get("column", where.rsplit(".", 1)[-1])
    if column not in ("prompt", "decode"):
        raise InputError(f"{where}.column", f"must be prompt or decode for a named trace, got {show(column)}")
    return trace_distribution(name, column)


def _empirical(node: dict, where: str, base_dir: Path) -> LengthDistribution:
    _only(node, where, {"dist", "file", "column", "trace"})
    if "trace" in node:
        return _named_trace(node, where)
    file = _required(node, "file", where)
    if not isinstance(file, str):
        raise InputError(f"{where}.file", f"must be a path, got {show(file)}")
    column = node.get("column")
    if column is not None and not isinstance(column, str):
        raise InputError(f"{where}.column", f"must be a column name, got {show(column)}")
    values = read_lengths_csv(base_dir / file, f"{where}.file", column)
    return Empirical(values, source=file)


DISTRIBUTION_PARSERS: dict[str, Callable[[dict, str, Path], LengthDistribution]] = {
    "deterministic": _deterministic,
    "geometric": _geometric,
    "poisson": _poisson,
    "uniform": _uniform,
    "empirical": _empirical,
}


def parse_distribution(node: Any, where: str, base_dir: Path = Path(".")) -> LengthDistribution:
    """A length distribution from its mapping (``dist`` selects the family)."""
    node = _mapping(node, where)
    dist = _required(node, "dist", where)
    if not isinstance(dist, str) or dist not in DISTRIBUTION_PARSERS:
        raise InputError(f"{where}.dist", f"unknown distribution {show(dist)} (known: {', '.join(DISTRIBUTION_PARSERS)})")
    return DISTRIBUTION_PARSERS[dist](node, where, base_dir)


# --- engine, policy, workload ----------------------------------------------------------------


def parse_engine(node: Any, where: str = "engine", base_dir: Path = Path(".")) -> Engine:
    """An engine: ``batch_time``, ``token_budget`` (b_max), optional ``max_batch_requests`` (k_max),
    ``batch_time.attention``, ``kv_cache`` and ``max_active_requests`` (:mod:`~llmstab.checkers.memory_spec`)."""
    from .memory_spec import MEMORY_KEYS, parse_memory, split_attention

    node = _mapping(node, where)
    _only(node, where, {"batch_time", "token_budget", "max_batch_requests", *MEMORY_KEYS})
    time_node, attention = split_attention(_required(node, "batch_time", where), f"{where}.batch_time")
    batch_time = parse_batch_time(time_node, f"{where}.batch_time", base_dir)
    budget = _tokens(_required(node, "token_budget", where), f"{where}.token_budget")
    k_max = node.get("max_batch_requests")
    if k_max is not None:
        k_max = _tokens(k_max, f"{where}.max_batch_requests")
    if isinstance(batch_time, Staircase) and budget % batch_time.b0:
        raise InputError(
            f"{where}.token_budget",
            f"{budget} is not a multiple of batch_time.b0 = {batch_time.b0} (the staircase model needs b0 | b_max)",
        )
    if isinstance(batch_time, Table) and budget > batch_time.max_tokens:
        raise InputError(f"{where}.token_budget", f"{budget} exceeds the table's largest batch ({batch_time.max_tokens} tokens)")
    return Engine(batch_time, budget, k_max, attention=attention, **parse_memory(node, where))


def parse_policy(node: Any, where: str = "policy") -> Policy:
    """A policy: a registered name, or ``{name: NAME, <option>: value, ...}``."""
    if isinstance(node, str):
        name, options = node, {}
    elif isinstance(node, dict):
        name = _required(node, "name", where)
        options = {k: v for k, v in node.items() if k != "name"}
    else:
        raise InputError(where, f"must be a policy name or a mapping, got {_kind_of(node)}")
    if not isinstance(name, str) or name not in POLICIES:
        raise InputError(where, f"unknown policy {show(name)} (known: {', '.join(sorted(POLICIES))})")
    try:
        return POLICIES[name](**options)
    except TypeError:
        raise InputError(where, f"policy {name!r} does not take options {show(sorted(map(str, options)))}") from None
    except ValueError as exc:
        raise InputError(where, str(exc)) from None


def _rate(rate: Fraction, where: str) -> Fraction:
    """A class's arrival rate (requests/s) within [MIN_RATE, MAX_RATE]."""
    if not MIN_RATE <= rate <= MAX_RATE:
        raise InputError(where, f"{float(rate):.4g} requests/s lies outside [{float(MIN_RATE):g}, {float(MAX_RATE):g}] "
                                "(see README, Input limits)")
    return rate


def parse_workload(node: Any, where: str = "workload", base_dir: Path = Path(".")) -> Workload:
    """Traffic: ``classes``, each with ``name``, ``rate`` (requests/s; or a ``share`` of the workload's ``rate``),
    ``prompt``, ``decode`` and optional latency targets ``slo`` (:mod:`llmstab.checkers.slo`)."""
    node = _mapping(node, where)
    _only(node, where, {"classes", "rate"})
    classes = _required(node, "classes", where)
    if not isinstance(classes, list) or not classes:
        raise InputError(f"{where}.classes", "must be a non-empty list of request classes")
    if len(classes) > MAX_CLASSES:
        raise InputError(f"{where}.classes", f"{len(classes):,} classes exceed the limit of {MAX_CLASSES:,} "
                                             "(see README, Input limits)")
    parsed, names = [], set()
    for i, item in enumerate(classes):
        at = f"{where}.classes[{i}]"
        item = _mapping(item, at)
        _only(item, at, {"name", "rate", "share", "prompt", "decode", "slo"})
        name = item.get("name", f"class{i}")
        if not isinstance(name, str) or not name:
            raise InputError(f"{at}.name", f"must be a non-empty string, got {show(name)}")
        if name in names:
            raise InputError(f"{at}.name", f"{show(name)} is used twice")
        names.add(name)
        rate = _rate(class_rate(node, item, at, where), f"{at}.rate")
        prompt = parse_distribution(_required(item, "prompt", at), f"{at}.prompt", base_dir)
        decode = parse_distribution(_required(item, "decode", at), f"{at}.decode", base_dir)
        parsed.append(RequestClass(name, rate, prompt, decode, parse_slo(item.get("slo"), f"{at}.slo")))
    check_shares(node, where)
    return Workload(tuple(parsed))


def require_single_engine(document: dict, source: str) -> dict:
    """``document`` itself when it is not a network file; else an ``InputError`` that says which file type it is.

    >>> require_single_engine({"engines": {}, "classes": []}, "net.yaml")
    Traceback (most recent call last):
    ...
    llmstab.fluid_models.errors.InputError: net.yaml: this is a network file (top-level engines and classes), \
not a single-engine one (engine, policy, workload): use llmstab check or llmstab fluid on it
    """
    if "engines" in document or "classes" in document:
        raise InputError(source, "this is a network file (top-level engines and classes), not a single-engine "
                                 "one (engine, policy, workload): use llmstab check or llmstab fluid on it")
    return document


def engine_spec_from_document(document: Any, source: str = "<document>", base_dir: Path = Path(".")) -> EngineSpec:
    """Validate a single-engine document (already parsed from YAML/JSON)."""
    document = require_single_engine(_mapping(document, source), source)
    _only(document, "", {"engine", "policy", "workload"})
    engine = parse_engine(_required(document, "engine", ""), "engine", base_dir)
    policy = parse_policy(_required(document, "policy", ""), "policy")
    workload = parse_workload(_required(document, "workload", ""), "workload", base_dir)
    return EngineSpec(engine, policy.for_workload(workload), workload, source)


def load_engine_spec(path: str | Path) -> EngineSpec:
    """Read and validate a single-engine input file; relative paths inside it are relative to it."""
    p = Path(path)
    return engine_spec_from_document(load_document(p), str(p), p.parent)
