"""Batch-time profiles: measured iteration times, read, validated and imported.

A *profile* is a table of measured iterations: how many tokens each batch held
and how long it took. The toolkit's own format (written by ``llmstab profile``,
read by ``llmstab fit``) is a CSV with one row per grid point:

=================  ========  ====================================================
column             required  meaning
=================  ========  ====================================================
``tokens``         yes       tokens in the batch (prefill + decode), integer >= 1
``time_ms``        yes       median iteration time over the repetitions, ms, > 0
``kind``           no        ``prefill`` | ``decode`` | ``mixed`` (default prefill)
``prefill_tokens`` no        prefill tokens in the batch (default ``tokens``)
``decode_tokens``  no        decode tokens, one per decoding request (default 0)
``context_len``    no        context of each decoding request; in a ``prefill`` row,
                             the prompt's tokens already cached before the chunk
                             (default 0)
``reps``           no        timed repetitions behind ``time_ms``
``time_ms_min``    no        fastest repetition, ms
``time_ms_max``    no        slowest repetition, ms
``time_ms_std``    no        standard deviation of the repetitions, ms
=================  ========  ====================================================

A grid point is ``(kind, prefill_tokens, decode_tokens, context_len)``; a file
that repeats one is rejected, as is a missing column or a non-positive time.

Importers turn public data into the same :class:`Profile`:
:func:`read_vidur_mlp` (Vidur's per-layer ``mlp.csv``),
:func:`~llmstab.fluid_models.profiling.attention.read_vidur_attention` (Vidur's
``attention.csv`` + ``mlp.csv``, with contexts), :func:`read_sarathi`
(Sarathi-Serve batch-metrics CSVs) and :func:`read_slai` (SLAI's batch time
against chunk size); :func:`detect_format` tells them apart by their header.

Examples
--------
>>> p = Profile(tokens=[64, 128, 192], time_ms=[10.0, 10.5, 14.0])
>>> p.select("prefill").tokens.tolist()
[64, 128, 192]
>>> import io
>>> buf = io.StringIO(); write_profile_csv(p, buf); _ = buf.seek(0)
>>> read_profile_csv(buf).time_ms.tolist()
[10.0, 10.5, 14.0]
"""

from __future__ import annotations

import csv
import io
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Iterable, Sequence

import numpy as np

from ..errors import InputError


__all__ = [
    "ProfileError",
    "Profile",
    "COLUMNS",
    "KINDS",
    "read_profile_csv",
    "write_profile_csv",
    "read_vidur_mlp",
    "read_sarathi",
    "read_slai",
    "read_any",
    "detect_format",
    "FORMATS",
]

COLUMNS = (
    "kind",
    "tokens",
    "prefill_tokens",
    "decode_tokens",
    "context_len",
    "reps",
    "time_ms",
    "time_ms_min",
    "time_ms_max",
    "time_ms_std",
)
KINDS = ("prefill", "decode", "mixed")
_REQUIRED = ("tokens", "time_ms")


class ProfileError(InputError):
    """A bad profile, configuration or model file: ``str(err)`` is one line ``field: problem``.

    An :class:`~llmstab.fluid_models.errors.InputError`: the CLI prints it and exits with status 2.

    >>> str(ProfileError("profile.csv line 3 column time_ms", "must be positive, got -1"))
    'profile.csv line 3 column time_ms: must be positive, got -1'
    """


_OPTIONAL_FLOATS = ("time_ms_min", "time_ms_max", "time_ms_std")


@dataclass(frozen=True)
class Profile:
    """Measured batch times, one entry per grid point (arrays of equal length).

    ``source`` says where the numbers came from (file, importer, options).
    """

    tokens: np.ndarray
    time_ms: np.ndarray
    kind: np.ndarray | None = None
    prefill_tokens: np.ndarray | None = None
    decode_tokens: np.ndarray | None = None
    context_len: np.ndarray | None = None
    extra: dict = field(default_factory=dict)
    source: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        tokens = np.asarray(self.tokens, dtype=np.int64)
        n = tokens.size
        object.__setattr__(self, "tokens", tokens)
        object.__setattr__(self, "time_ms", np.asarray(self.time_ms, dtype=float))
        defaults = {
            "kind": np.full(n, "prefill", dtype=object),
            "prefill_tokens": tokens.copy(),
            "decode_tokens": np.zeros(n, dtype=np.int64),
            "context_len": np.zeros(n, dtype=np.int64),
        }
        for name, default in defaults.items():
            value = getattr(self, name)
            if value is None:
                value = default
            else:
                value = np.asarray(value, dtype=object if name == "kind" else np.int64)
            object.__setattr__(self, name, value)
        for name in ("time_ms", "kind", "prefill_tokens", "decode_tokens", "context_len"):
            if getattr(self, name).shape != (n,):
                raise ValueError(f"{name} must have one entry per grid point ({n})")

    def __len__(self) -> int:
        return int(self.tokens.size)

    def select(self, kinds: str | Iterable[str]) -> "Profile":
        """The rows whose ``kind`` is in ``kinds`` (``"all"`` keeps every row)."""
        if kinds == "all":
            return self
        wanted = {kinds} if isinstance(kinds, str) else set(kinds)
        keep = np.array([k in wanted for k in self.kind], dtype=bool)
        return Profile(
            self.tokens[keep],
            self.time_ms[keep],
            self.kind[keep],
            self.prefill_tokens[keep],
            self.decode_tokens[keep],
            self.context_len[keep],
            {k: np.asarray(v)[keep] for k, v in self.extra.items()},
            dict(self.source, selected=sorted(wanted)),
        )

    def by_tokens(self) -> tuple[np.ndarray, np.ndarray]:
        """Token counts (sorted, distinct) and the median time at each.

        Rows of different kinds with the same token count are merged by their
        median; fitting a model of the token count alone works on this view.

        >>> Profile(tokens=[8, 16, 8, 8], time_ms=[3.0, 5.0, 1.0, 2.0]).by_tokens()
        (array([ 8, 16]), array([2., 5.]))
        """
        order = np.lexsort((self.time_ms, self.tokens))  # by tokens, then time: each group sorted
        tokens, times = self.tokens[order], self.time_ms[order]
        xs, first, counts = np.unique(tokens, return_index=True, return_counts=True)
        return xs, (times[first + (counts - 1) // 2] + times[first + counts // 2]) / 2  # the middle one or two


def _where(handle: str | os.PathLike | IO[str]) -> str:
    return str(handle) if isinstance(handle, (str, os.PathLike)) else getattr(handle, "name", "profile")


def _rows(handle: str | os.PathLike | IO[str]) -> tuple[list[str], list[dict[str, str]]]:
    where = _where(handle)
    try:
        if isinstance(handle, (str, os.PathLike)):
            with open(handle, newline="") as fh:
                text = fh.read()
        else:
            text = handle.read()
    except OSError as err:
        raise ProfileError(where, f"cannot read: {err.strerror or err}") from None
    reader = csv.DictReader(io.StringIO(text))
    header = [h.strip() for h in (reader.fieldnames or [])]
    if not header:
        raise ProfileError(where, "empty file: no CSV header")
    rows = [{(k or "").strip(): (v or "").strip() for k, v in row.items()} for row in reader]
    if not rows:
        raise ProfileError(where, "no data rows")
    return header, rows


def _number(where: str, line: int, column: str, text: str, integer: bool = False) -> float:
    try:
        value = float(text)
    except ValueError:
        raise ProfileError(f"{where} line {line} column {column}", f"not a number: {text!r}") from None
    if not np.isfinite(value):
        raise ProfileError(f"{where} line {line} column {column}", f"not finite: {text!r}")
    if integer and value != int(value):
        raise ProfileError(f"{where} line {line} column {column}", f"not an integer: {text!r}")
    return value


def _grid_row(where: str, i: int, row: dict[str, str]) -> tuple[int, float, str, dict[str, int]]:
    """Line ``i``'s tokens, time, kind and ``prefill_tokens`` / ``decode_tokens`` / ``context_len``, validated."""
    tokens = int(_number(where, i, "tokens", row["tokens"], integer=True))
    time_ms = _number(where, i, "time_ms", row["time_ms"])
    if tokens < 1:
        raise ProfileError(f"{where} line {i} column tokens", f"must be at least 1, got {tokens}")
    if time_ms <= 0:
        raise ProfileError(f"{where} line {i} column time_ms", f"must be positive, got {row['time_ms']}")
    kind = row.get("kind") or "prefill"
    if kind not in KINDS:
        raise ProfileError(f"{where} line {i} column kind", f"must be one of {', '.join(KINDS)}, got {kind!r}")
    ints = {}
    for c, default in (("prefill_tokens", tokens), ("decode_tokens", 0), ("context_len", 0)):
        ints[c] = int(_number(where, i, c, row[c], integer=True)) if row.get(c) else default
        if ints[c] < 0:
            raise ProfileError(f"{where} line {i} column {c}", f"must be non-negative, got {ints[c]}")
    if ints["prefill_tokens"] + ints["decode_tokens"] != tokens:
        raise ProfileError(f"{where} line {i}", f"prefill_tokens + decode_tokens = "
                           f"{ints['prefill_tokens'] + ints['decode_tokens']} differs from tokens = {tokens}")
    return tokens, time_ms, kind, ints


def _append_repetitions(cols: dict[str, list], where: str, i: int, row: dict[str, str]) -> None:
    """Line ``i``'s optional ``reps`` (0 when empty) and min / max / std times (NaN when empty)."""
    if "reps" in cols:
        cols["reps"].append(int(_number(where, i, "reps", row["reps"], integer=True)) if row["reps"] else 0)
    for c in _OPTIONAL_FLOATS:
        if c in cols:
            cols[c].append(_number(where, i, c, row[c]) if row[c] else float("nan"))


def read_profile_csv(handle: str | os.PathLike | IO[str]) -> Profile:
    """Read and validate a profile CSV in the toolkit's format (see module doc).

    Raises
    ------
    ProfileError
        Missing required column, a value that is not a number, a non-positive
        time or token count, an unknown ``kind``, or a duplicated grid point.

    Examples
    --------
    >>> import io
    >>> read_profile_csv(io.StringIO("tokens,time_ms\\n8,1.5\\n8,1.6\\n"))
    Traceback (most recent call last):
    ...
    llmstab.fluid_models.profiling.profiles.ProfileError: profile line 3: duplicate grid point (kind=prefill, prefill_tokens=8, decode_tokens=0, context_len=0), first on line 2
    """
    where = _where(handle)
    header, rows = _rows(handle)
    missing = [c for c in _REQUIRED if c not in header]
    if missing:
        raise ProfileError(where, f"missing column(s) {', '.join(missing)}; found {_header_hint(header)}")
    cols: dict[str, list] = {c: [] for c in COLUMNS if c in header or c in _REQUIRED}
    seen: dict[tuple, int] = {}
    for i, row in enumerate(rows, start=2):
        tokens, time_ms, kind, ints = _grid_row(where, i, row)
        key = (kind, ints["prefill_tokens"], ints["decode_tokens"], ints["context_len"])
        if key in seen:
            raise ProfileError(f"{where} line {i}", "duplicate grid point (kind={}, prefill_tokens={}, decode_tokens={}, "
                               "context_len={}), first on line {}".format(*key, seen[key]))
        seen[key] = i
        cols["tokens"].append(tokens)
        cols["time_ms"].append(time_ms)
        for c in ("kind", "prefill_tokens", "decode_tokens", "context_len"):
            if c in cols:
                cols[c].append(kind if c == "kind" else ints[c])
        _append_repetitions(cols, where, i, row)
    extra = {c: np.asarray(cols[c]) for c in ("reps", *_OPTIONAL_FLOATS) if c in cols}
    return Profile(cols["tokens"], cols["time_ms"], cols.get("kind"), cols.get("prefill_tokens"),
                   cols.get("decode_tokens"), cols.get("context_len"), extra, {"format": "profile", "file": where})


def write_profile_csv(profile: Profile, handle: str | os.PathLike | IO[str]) -> None:
    """Write ``profile`` in the toolkit's CSV format (all columns of :data:`COLUMNS`)."""
    if isinstance(handle, (str, os.PathLike)):
        with open(handle, "w", newline="") as fh:
            write_profile_csv(profile, fh)
        return
    writer = csv.writer(handle, lineterminator="\n")
    writer.writerow(COLUMNS)
    n = len(profile)
    nan = np.full(n, np.nan)
    extra = {c: np.asarray(profile.extra.get(c, nan)) for c in ("reps", *_OPTIONAL_FLOATS)}
    for i in range(n):
        reps = extra["reps"][i]
        writer.writerow(
            [
                profile.kind[i],
                int(profile.tokens[i]),
                int(profile.prefill_tokens[i]),
                int(profile.decode_tokens[i]),
                int(profile.context_len[i]),
                "" if not np.isfinite(reps) else int(reps),
                f"{profile.time_ms[i]:.6g}",
                *("" if not np.isfinite(extra[c][i]) else f"{extra[c][i]:.6g}" for c in _OPTIONAL_FLOATS),
            ]
        )


def read_vidur_mlp(
    path: str | os.PathLike,
    n_layers: int,
    tensor_parallel: int = 1,
    statistic: str = "median",
    per_iteration: Sequence[str] = (),
) -> Profile:
    """Import Vidur's per-layer ``mlp.csv`` as the non-attention time of a whole iteration.

    The time at ``num_tokens = b`` is ``n_layers`` times the sum over the
    operators of their per-layer ``statistic`` (ms), for the rows with
    ``num_tensor_parallel_workers == tensor_parallel``; the operators named in
    ``per_iteration`` (e.g. ``emb``, the embedding) are counted once instead.
    Rows repeated at one token count are merged by their median (Vidur's files
    hold a few). Attention is not in these files, so the result is a
    prefill-kind profile of the linear and element-wise work only; its
    ``source["shape"]`` records the model shape columns of the file.

    Examples
    --------
    >>> import io
    >>> text = ("time_stats.a.median,time_stats.b.median,num_tokens,num_tensor_parallel_workers\\n"
    ...         "0.25,0.5,8,1\\n0.5,0.5,16,1\\n9,9,16,2\\n")
    >>> p = read_vidur_mlp(io.StringIO(text), n_layers=32)
    >>> p.tokens.tolist(), p.time_ms.tolist()
    ([8, 16], [24.0, 32.0])
    """
    where = _where(path)
    if n_layers < 1:
        raise ProfileError("n_layers", f"must be at least 1, got {n_layers}")
    header, rows = _rows(path)
    ops = _vidur_operators(where, header, statistic)
    tokens, times = _vidur_iteration_times(where, rows, ops, n_layers, tensor_parallel, per_iteration)
    return Profile(tokens, times, source={
        "format": "vidur", "file": where, "n_layers": n_layers, "tensor_parallel": tensor_parallel,
        "statistic": statistic, "operators": [op.split(".")[1] for op in ops], "per_iteration": list(per_iteration),
        "shape": {c: rows[0][c] for c in _VIDUR_SHAPE if c in header},
        "note": "non-attention operators only (Vidur mlp.csv)"})


def _vidur_operators(where: str, header: list[str], statistic: str) -> list[str]:
    """The ``time_stats.<op>.<statistic>`` columns of a Vidur ``mlp.csv`` header (which must have its key columns)."""
    ops = [h for h in header if h.startswith("time_stats.") and h.endswith("." + statistic)]
    for needed in ("num_tokens", "num_tensor_parallel_workers"):
        if needed not in header:
            raise ProfileError(where, f"missing column {needed}: not a Vidur mlp.csv")
    if not ops:
        raise ProfileError(where, f"no time_stats.<op>.{statistic} columns: not a Vidur mlp.csv")
    return ops


def _vidur_iteration_times(where: str, rows: list[dict[str, str]], ops: list[str], n_layers: int,
                           tensor_parallel: int, per_iteration: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """Token counts and the iteration time at each: ``n_layers`` x the operators' sum, medians over repeated rows."""
    per_tokens: dict[int, list[float]] = {}
    for i, row in enumerate(rows, start=2):
        if int(_number(where, i, "num_tensor_parallel_workers", row["num_tensor_parallel_workers"])) != tensor_parallel:
            continue
        b = int(_number(where, i, "num_tokens", row["num_tokens"], integer=True))
        total = sum(_number(where, i, op, row[op]) * (1 if op.split(".")[1] in per_iteration else n_layers)
                    for op in ops)
        per_tokens.setdefault(b, []).append(total)
    if not per_tokens:
        raise ProfileError(where, f"no rows with num_tensor_parallel_workers = {tensor_parallel}")
    tokens = np.array(sorted(per_tokens))
    times = np.array([float(np.median(per_tokens[b])) for b in tokens])
    if np.any(times <= 0):
        raise ProfileError(where, "non-positive operator times")
    return tokens, times


_VIDUR_SHAPE = ("n_head", "n_kv_head", "n_embd", "n_expanded_embd", "vocab_size", "use_gated_mlp")


def _sarathi_unit(where: str, header: list[str], rows: list[dict[str, str]]) -> float:
    """Milliseconds per unit of ``batch_execution_time``, inferred from the per-token column."""
    per_token = next((c for c in ("operation_time_per_token", "per_token_time") if c in header), None)
    if per_token is None:
        raise ProfileError(where, "cannot tell the time unit: no per-token time column; pass unit='s' or 'ms'")
    row = rows[0]
    t = float(row["batch_execution_time"])
    b = float(row["batch_num_tokens"])
    ratio = float(row[per_token]) * b / t
    for scale in (1000.0, 1.0):
        if abs(ratio / scale - 1) < 0.01:
            return scale
    raise ProfileError(where, f"cannot tell the time unit: per-token column gives ratio {ratio:.4g}")


def read_sarathi(
    paths: str | os.PathLike | IO[str] | Iterable[str | os.PathLike], unit: str = "auto"
) -> Profile:
    """Import Sarathi-Serve batch-metrics CSVs (one or several) as one profile.

    Each row gives ``batch_num_prefill_tokens``, ``batch_num_decode_tokens``
    and ``batch_execution_time``. The time unit differs between the artefact's
    files (seconds in ``figure2_*``, ms in ``table2_*``); ``unit="auto"``
    infers it from the per-token column. A row is ``decode`` when it holds no
    prefill, ``prefill`` when it holds no decode, else ``mixed``.
    """
    if isinstance(paths, (str, os.PathLike)) or hasattr(paths, "read"):
        paths = [paths]
    if unit not in ("auto", "s", "ms"):
        raise ProfileError("unit", f"must be auto, s or ms, got {unit!r}")
    cols: dict[str, list] = {"tokens": [], "time_ms": [], "kind": [], "prefill": [], "decode": []}
    files = []
    for path in paths:
        where = _where(path)
        header, rows = _rows(path)
        needed = ("batch_num_prefill_tokens", "batch_num_decode_tokens", "batch_execution_time")
        missing = [c for c in needed if c not in header]
        if missing:
            raise ProfileError(where, f"missing column(s) {', '.join(missing)}: not a Sarathi-Serve batch-metrics CSV")
        scale = {"s": 1000.0, "ms": 1.0}.get(unit) or _sarathi_unit(where, header, rows)
        for i, row in enumerate(rows, start=2):
            p = int(_number(where, i, "batch_num_prefill_tokens", row["batch_num_prefill_tokens"], integer=True))
            d = int(_number(where, i, "batch_num_decode_tokens", row["batch_num_decode_tokens"], integer=True))
            t = _number(where, i, "batch_execution_time", row["batch_execution_time"]) * scale
            if t <= 0 or p + d < 1:
                raise ProfileError(f"{where} line {i}", "non-positive time or empty batch")
            cols["tokens"].append(p + d)
            cols["time_ms"].append(t)
            cols["kind"].append("decode" if p == 0 else "prefill" if d == 0 else "mixed")
            cols["prefill"].append(p)
            cols["decode"].append(d)
        files.append(where)
    return Profile(
        cols["tokens"],
        cols["time_ms"],
        cols["kind"],
        cols["prefill"],
        cols["decode"],
        source={"format": "sarathi", "files": files, "note": "whole iterations; GPU and model not recorded"},
    )


def read_slai(path: str | os.PathLike | IO[str]) -> Profile:
    """Import SLAI's mean batch time against chunk size (``chunk``, ``batch_ms``).

    Each row is a chunked-prefill iteration of ``chunk`` tokens.

    Examples
    --------
    >>> import io
    >>> read_slai(io.StringIO("chunk,ttft_ms,batch_ms\\n64,700,22.7\\n128,380,24.1\\n")).tokens.tolist()
    [64, 128]
    """
    where = _where(path)
    header, rows = _rows(path)
    if "chunk" not in header or "batch_ms" not in header:
        raise ProfileError(where, "missing column chunk or batch_ms: not SLAI's batch_time_vs_chunk.csv")
    tokens = [int(_number(where, i, "chunk", r["chunk"], integer=True)) for i, r in enumerate(rows, start=2)]
    times = [_number(where, i, "batch_ms", r["batch_ms"]) for i, r in enumerate(rows, start=2)]
    if min(times) <= 0 or min(tokens) < 1 or len(set(tokens)) != len(tokens):
        raise ProfileError(where, "non-positive time or chunk, or a repeated chunk size")
    return Profile(tokens, times, source={"format": "slai", "file": where, "note": "Mistral-7B, RTX 6000 Ada"})


FORMATS = ("auto", "profile", "vidur", "vidur-attention", "sarathi", "slai")

# (format, columns that identify it), checked in this order
_SIGNATURES = (
    ("profile", {"tokens", "time_ms"}),
    ("vidur-attention", {"is_prefill", "kv_cache_size", "prefill_chunk_size"}),
    ("vidur", {"num_tokens", "num_tensor_parallel_workers"}),
    ("sarathi", {"batch_num_prefill_tokens", "batch_num_decode_tokens", "batch_execution_time"}),
    ("slai", {"chunk", "batch_ms"}),
)


def _header_hint(header: Sequence[str], shown: int = 4) -> str:
    """The first few column names, for one-line messages about wide files.

    >>> _header_hint(["a", "b", "c", "d", "e", "f"])
    'a, b, c, d, ... (6 columns)'
    """
    more = f", ... ({len(header)} columns)" if len(header) > shown else ""
    return ", ".join(header[:shown]) + more


def detect_format(path: str | os.PathLike) -> str:
    """The layout of a profile file, told from its CSV header (a folder: a Vidur attention profile).

    Raises
    ------
    ProfileError
        The header matches none of :data:`FORMATS`: one line with the first
        columns and a hint to pass ``--format``.

    Examples
    --------
    >>> import tempfile
    >>> f = Path(tempfile.mkdtemp()) / "p.csv"
    >>> _ = f.write_text("chunk,ttft_ms,batch_ms\\n64,700,22.7\\n")
    >>> detect_format(f)
    'slai'
    """
    if Path(path).is_dir():
        if (Path(path) / "attention.csv").is_file():
            return "vidur-attention"
        raise ProfileError(str(path), "a folder is read only as a Vidur attention profile (attention.csv inside)")
    try:
        with open(path, newline="") as fh:
            header = [h.strip() for h in next(csv.reader(fh), [])]
    except OSError as err:
        raise ProfileError(str(path), f"cannot read: {err.strerror or err}") from None
    for fmt, columns in _SIGNATURES:
        if columns <= set(header):
            return fmt
    raise ProfileError(str(path), f"cannot tell the format from the header ({_header_hint(header)}): an llmstab "
                       f"profile needs columns tokens and time_ms; or pass --format ({', '.join(FORMATS[1:])})")


def read_any(path: str | os.PathLike, fmt: str = "auto", n_layers: int | None = None) -> Profile:
    """Read ``path`` with the importer named by ``fmt`` (one of :data:`FORMATS`; ``auto`` detects it)."""
    if fmt == "auto":
        fmt = detect_format(path)
    if fmt in ("vidur", "vidur-attention") and n_layers is None:
        raise ProfileError("layers", f"a Vidur {'attention' if fmt == 'vidur-attention' else 'mlp.csv'} profile "
                           "needs the model's number of layers (--layers)")
    if fmt == "profile":
        return read_profile_csv(path)
    if fmt == "vidur":
        return read_vidur_mlp(path, n_layers)
    if fmt == "vidur-attention":
        from .attention import read_vidur_attention

        return read_vidur_attention(path, n_layers)
    if fmt == "sarathi":
        return read_sarathi(path)
    if fmt == "slai":
        return read_slai(path)
    raise ProfileError("format", f"must be one of {', '.join(FORMATS)}, got {fmt!r}")
