"""Attention that grows with context: its two coefficients, fitted jointly with the token-count family.

The batch-time model of issue 11 adds two terms to a family's ``t(n)``::

    T(batch) = t(n) + decode * sum(context of each decode token)
                    + prefill * sum(c * (s + c/2) over the prefill chunks)

where a chunk of ``c`` tokens starts after ``s`` tokens of the same prompt
already in the KV cache (so a whole prompt of ``p`` tokens costs
``prefill * p**2 / 2`` however it is chunked). Both coefficients are in ms per
(token x context token). :func:`fit_attention` fits ``t(n)`` (a family of
:mod:`~llmstab.fluid_models.profiling.fitting`, its tile searched as there)
and the two coefficients at once: the model is linear in all its
coefficients once the tile is fixed, so the minimax relative-error fit is
still one LP per tile.

Which points a profile gives (:func:`attention_features`): a ``decode`` row of
``N`` requests at context ``K`` contributes ``N*K``; a ``prefill`` row of a
``P``-token chunk after ``s = context_len`` cached tokens contributes
``P*(s + P/2)``; a ``mixed`` row (``llmstab profile``'s: ``N`` decodes at
``context_len`` plus a fresh chunk of ``P`` tokens) both ``N*K`` and ``P**2/2``.

:func:`read_vidur_attention` composes whole iterations from Vidur's per-layer
``mlp.csv`` + ``attention.csv``; :func:`decode_attention_bound` is the
physical range of the decode coefficient from KV bytes and memory bandwidth.

Examples
--------
>>> att = AttentionFit(decode=1.4e-4, prefill=2.0e-5)
>>> att.as_dict()
{'decode': 0.00014, 'prefill': 2e-05}
>>> round(float(att.time(128 * 2048, prefill_work(512, 0))), 4)  # 128 decodes at 2048, a fresh 512-chunk
39.3216
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from .fitting import (
    DEFAULT_CANDIDATES,
    FAMILIES,
    Fit,
    FitReport,
    choose,
    coarsest_best,
    design_columns,
    family_model,
    round6,
    solve_design,
    tile_candidates,
)
from .profiles import Profile, ProfileError, _number, _rows, _where, read_vidur_mlp

__all__ = [
    "AttentionFit",
    "prefill_work",
    "attention_features",
    "attention_from_parameters",
    "fit_attention_family",
    "fit_attention",
    "has_contexts",
    "read_vidur_attention",
    "kv_bytes_per_token",
    "decode_attention_bound",
]


@dataclass(frozen=True)
class AttentionFit:
    """The attention coefficients, ms per (token x context token): ``decode`` and ``prefill``."""

    decode: float
    prefill: float

    def as_dict(self) -> dict:
        """``{"decode": ..., "prefill": ...}``, the ``batch_time.attention`` mapping of the input."""
        return {"decode": float(self.decode), "prefill": float(self.prefill)}

    def time(self, decode_context: np.ndarray | float, prefill_work: np.ndarray | float) -> np.ndarray:
        """Attention ms of batches with these context sums (see :func:`attention_features`)."""
        return self.decode * np.asarray(decode_context, dtype=float) + self.prefill * np.asarray(
            prefill_work, dtype=float)


def prefill_work(chunk: np.ndarray | int, cached: np.ndarray | int) -> np.ndarray:
    """``c * (s + c/2)``: the (token x context) work of a chunk of ``c`` tokens after ``s`` cached ones.

    Chunking does not change a prompt's total:

    >>> float(prefill_work(1000, 0)), float(prefill_work(400, 0) + prefill_work(600, 400))
    (500000.0, 500000.0)
    """
    c = np.asarray(chunk, dtype=float)
    return c * (np.asarray(cached, dtype=float) + c / 2)


def attention_features(profile: Profile) -> tuple[np.ndarray, np.ndarray]:
    """Per row: the sum of the decode tokens' contexts, and the prefill chunk's ``c*(s + c/2)``.

    For ``prefill`` rows ``context_len`` is ``s`` (cached tokens of the same
    prompt before the chunk); for ``decode`` and ``mixed`` rows it is each
    decoding request's context, and a mixed row's chunk is a fresh one (``s = 0``).

    >>> p = Profile([8, 64, 64], [1.0, 2.0, 3.0], ["decode", "prefill", "mixed"], [0, 64, 56], [8, 0, 8],
    ...             [100, 32, 100])
    >>> [v.tolist() for v in attention_features(p)]
    [[800.0, 0.0, 800.0], [0.0, 4096.0, 1568.0]]
    """
    decode = profile.decode_tokens.astype(float) * profile.context_len
    cached = np.where(profile.kind == "prefill", profile.context_len, 0)
    return decode, prefill_work(profile.prefill_tokens, cached)


def has_contexts(profile: Profile) -> bool:
    """Whether the profile has decoding rows at two or more contexts (what the attention fit needs).

    >>> has_contexts(Profile([4, 4], [1.0, 2.0], ["decode"] * 2, [0, 0], [4, 4], [128, 512]))
    True
    """
    decoding = profile.decode_tokens > 0
    return np.unique(profile.context_len[decoding]).size >= 2


def attention_from_parameters(params: dict, where: str = "batch_time") -> AttentionFit | None:
    """The ``attention`` sub-mapping of a ``batch_time`` mapping, validated (``None`` when absent).

    >>> attention_from_parameters({"kind": "staircase", "attention": {"decode": 1e-4, "prefill": 2e-5}})
    AttentionFit(decode=0.0001, prefill=2e-05)
    >>> attention_from_parameters({"attention": {"decode": -1, "prefill": 0}})
    Traceback (most recent call last):
    ...
    llmstab.fluid_models.profiling.profiles.ProfileError: batch_time.attention.decode: must be a non-negative number, got -1
    """
    node = params.get("attention")
    if node is None:
        return None
    if not isinstance(node, dict) or set(node) != {"decode", "prefill"}:
        raise ProfileError(f"{where}.attention", "must be a mapping with exactly decode and prefill")
    values = {}
    for key in ("decode", "prefill"):
        v = node[key]
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not np.isfinite(v) or v < 0:
            raise ProfileError(f"{where}.attention.{key}", f"must be a non-negative number, got {v!r}")
        values[key] = float(v)
    return AttentionFit(**values)


def _worst(profile: Profile, rel: np.ndarray, pred: np.ndarray) -> dict:
    i = int(np.argmax(rel))
    by_kind = {str(k): round(float(rel[profile.kind == k].max()), 6) for k in sorted(set(profile.kind))}
    return {
        "kind": str(profile.kind[i]),
        "tokens": int(profile.tokens[i]),
        "prefill_tokens": int(profile.prefill_tokens[i]),
        "decode_tokens": int(profile.decode_tokens[i]),
        "context_len": int(profile.context_len[i]),
        "measured_ms": round(float(profile.time_ms[i]), 6),
        "model_ms": round(float(pred[i]), 6),
        "max_rel_error_by_kind": by_kind,
    }


def fit_attention_family(
    profile: Profile, family: str, candidates: Sequence[int] = DEFAULT_CANDIDATES, method: str = "minimax"
) -> Fit:
    """Fit ``t(n)`` of ``family`` and the two attention coefficients to every row of ``profile``.

    The returned :class:`~llmstab.fluid_models.profiling.fitting.Fit` has
    ``model`` = ``t(n)``, ``attention`` and ``worst`` (the row with the largest
    relative error, and the largest error per kind of row); its errors are
    those of the rounded coefficients.

    Examples
    --------
    >>> n = np.array([1, 8, 8, 64, 128, 128])
    >>> ctx = np.array([0, 100, 900, 0, 0, 512])
    >>> kind = ["decode", "decode", "decode", "prefill", "prefill", "prefill"]
    >>> p = Profile(n, np.ones(6), kind, np.where(n > 8, n, 0) + (n == 64) * 64, np.where(n <= 8, n, 0), ctx)
    >>> d, w = attention_features(p)
    >>> y = 5.0 + 2.0 * np.ceil(n / 64) + 1e-4 * d + 2e-5 * w
    >>> f = fit_attention_family(Profile(n, y, kind, p.prefill_tokens, p.decode_tokens, ctx), "staircase", (64,))
    >>> f.attention, f.model.parameters(), f.max_rel_error < 1e-6
    (AttentionFit(decode=0.0001, prefill=2e-05), {'kind': 'staircase', 'c': 5.0, 'a': 2.0, 'b0': 64}, True)
    """
    n, y = profile.tokens, profile.time_ms
    if n.size < 4 or np.any(y <= 0) or not np.all(np.isfinite(y)):
        raise ProfileError("profile", "the attention fit needs at least four rows with positive finite times")
    decode, work = attention_features(profile)
    ks = tile_candidates(family, method, candidates, int(n.max()))
    objective, thetas = solve_design(
        lambda k: np.column_stack([design_columns(family, n, k), decode, work]), y, ks, method)
    if not objective:
        raise ProfileError("profile", f"the {family} + attention fit failed for every candidate tile")
    k = coarsest_best(objective)
    theta = thetas[k]
    model = family_model(family, theta[:-2], k)
    attention = AttentionFit(round6(theta[-2]), round6(theta[-1]))
    pred = np.asarray(model(n), dtype=float) + attention.time(decode, work)
    rel = np.abs(pred - y) / y
    ss_tot = float(np.sum((y - y.mean()) ** 2))
    r2 = 1.0 - float(np.sum((pred - y) ** 2)) / ss_tot if ss_tot > 0 else float(np.allclose(pred, y))
    worst = _worst(profile, rel, pred)
    return Fit(family, method, model, k, r2, float(rel.max()), worst["tokens"], float(np.max(np.abs(pred - y))),
               int(n.size), (int(n.min()), int(n.max())), objective, attention, worst)


def fit_attention(
    profile: Profile,
    families: Sequence[str] = FAMILIES,
    candidates: Sequence[int] = DEFAULT_CANDIDATES,
    method: str = "minimax",
    tolerance: float = 0.01,
    max_tokens: int | None = None,
) -> FitReport:
    """Fit every family with attention on all rows of ``profile`` and choose one by the fitter's rule.

    Needs decoding rows at two or more contexts (``llmstab profile --contexts``
    gives them; so does :func:`read_vidur_attention`). ``max_tokens`` drops
    the rows of larger batches.
    """
    if max_tokens is not None:
        profile = _subset(profile, profile.tokens <= max_tokens)
    if not has_contexts(profile):
        raise ProfileError("profile", "the attention fit needs decode rows at two or more contexts "
                           "(llmstab profile --contexts 512,2048 ...)")
    unknown = [f for f in families if f not in FAMILIES]
    if unknown or not families:
        raise ProfileError("families", f"unknown {unknown} with attention (known: {', '.join(FAMILIES)})")
    fits = {f: fit_attention_family(profile, f, candidates, method) for f in families}
    return choose(fits, tolerance, "all")


def _subset(profile: Profile, keep: np.ndarray) -> Profile:
    return Profile(profile.tokens[keep], profile.time_ms[keep], profile.kind[keep], profile.prefill_tokens[keep],
                   profile.decode_tokens[keep], profile.context_len[keep],
                   {k: np.asarray(v)[keep] for k, v in profile.extra.items()}, dict(profile.source))


_ATTENTION_OPS = ("attn_input_reshape", "attn_decode", "attn_prefill", "attn_output_reshape")
_SHAPE = ("n_embd", "n_q_head", "n_kv_head")


def _vidur_paths(path: str | os.PathLike, mlp_path: str | os.PathLike | None) -> tuple[Path, Path]:
    path = Path(path)
    attention = path / "attention.csv" if path.is_dir() else path
    mlp = Path(mlp_path) if mlp_path is not None else attention.parent / "mlp.csv"
    for p in (attention, mlp):
        if not p.is_file():
            raise ProfileError(str(p), "no such file (a Vidur attention profile needs attention.csv with mlp.csv "
                               "beside it)")
    return attention, mlp


def _attention_rows(where: str, rows: list[dict], tensor_parallel: int, statistic: str) -> dict[tuple, list]:
    """Per-layer attention ms per grid point ``(kind, tokens, context)``, repeated measurements listed."""
    points: dict[tuple, list[float]] = {}
    for i, row in enumerate(rows, start=2):
        if int(_number(where, i, "num_tensor_parallel_workers", row["num_tensor_parallel_workers"])) != tensor_parallel:
            continue
        prefill = row["is_prefill"].strip().lower() == "true"
        size = row["prefill_chunk_size"] if prefill else row["batch_size"]
        tokens = int(_number(where, i, "tokens", size, integer=True))
        context = int(_number(where, i, "kv_cache_size", row["kv_cache_size"], integer=True))
        cells = [row.get(f"time_stats.{op}.{statistic}", "") for op in _ATTENTION_OPS]
        total = sum(_number(where, i, op, c) for op, c in zip(_ATTENTION_OPS, cells) if c)
        points.setdefault(("prefill" if prefill else "decode", tokens, context), []).append(total)
    if not points:
        raise ProfileError(where, f"no rows with num_tensor_parallel_workers = {tensor_parallel}")
    return points


def read_vidur_attention(
    path: str | os.PathLike,
    n_layers: int,
    tensor_parallel: int = 2,
    statistic: str = "median",
    mlp_path: str | os.PathLike | None = None,
) -> Profile:
    """Whole iterations composed from Vidur's per-layer ``attention.csv`` and ``mlp.csv``.

    ``path`` is ``attention.csv`` (``mlp.csv`` beside it unless ``mlp_path``)
    or the folder holding both. A decode row of ``B`` requests at context
    ``K`` and a prefill row of a ``c``-token chunk after ``K`` cached tokens
    become iterations of ``B`` (``c``) tokens costing the non-attention time
    of that many tokens (:func:`~llmstab.fluid_models.profiling.profiles.read_vidur_mlp`:
    ``n_layers`` x the per-layer operators, the embedding counted once) plus
    ``n_layers`` x the per-layer attention (input reshape, the kernel, output
    reshape). Only token counts that ``mlp.csv`` measured are kept (nothing is
    interpolated); repeated measurements are merged by their median. GPU
    kernel time only: CPU overheads (scheduling, sampling, input preparation)
    and tensor-parallel communication are not in these files.
    """
    attention, mlp = _vidur_paths(path, mlp_path)
    where = _where(attention)
    header, rows = _rows(attention)
    needed = ("is_prefill", "batch_size", "prefill_chunk_size", "kv_cache_size", "num_tensor_parallel_workers")
    missing = [c for c in needed if c not in header]
    if missing:
        raise ProfileError(where, f"missing column(s) {', '.join(missing)}: not a Vidur attention.csv")
    per_layer = _attention_rows(where, rows, tensor_parallel, statistic)
    linear = read_vidur_mlp(mlp, n_layers, tensor_parallel, statistic, per_iteration=("emb",))
    base = dict(zip(linear.tokens.tolist(), linear.time_ms.tolist()))
    keys = sorted(k for k in per_layer if k[1] in base)
    times = [base[n] + n_layers * float(np.median(per_layer[(kind, n, ctx)])) for kind, n, ctx in keys]
    kinds = [k[0] for k in keys]
    tokens = [k[1] for k in keys]
    shape = {c: rows[0].get(c) for c in _SHAPE}
    return Profile(
        tokens, times, kinds, [n if k == "prefill" else 0 for k, n in zip(kinds, tokens)],
        [n if k == "decode" else 0 for k, n in zip(kinds, tokens)], [k[2] for k in keys],
        source={
            "format": "vidur-attention", "file": where, "mlp_file": str(mlp), "n_layers": n_layers,
            "tensor_parallel": tensor_parallel, "statistic": statistic,
            "shape": dict(shape, **linear.source["shape"]),
            "dropped_token_counts": sorted({k[1] for k in per_layer} - set(base)),
            "note": "GPU kernel time of whole iterations: n_layers x (per-layer linear/element-wise operators + "
                    "attention), embedding once; no CPU overheads, no tensor-parallel communication",
        },
    )


def kv_bytes_per_token(config: dict | str, dtype_bytes: int = 2, tensor_parallel: int = 1) -> int:
    """KV-cache bytes one context token occupies on one GPU: ``2 x layers x kv_heads x head_dim x bytes / TP``.

    >>> kv_bytes_per_token("mistral-7b")  # 2 x 32 x 8 x 128 x 2 bytes (fp16): 128 KiB
    131072
    """
    from .profiler import load_config

    cfg = load_config(config) if isinstance(config, str) else config
    head_dim = cfg["hidden_size"] // cfg["num_attention_heads"]
    kv_heads = cfg.get("num_key_value_heads", cfg["num_attention_heads"])
    return 2 * cfg["num_hidden_layers"] * kv_heads * head_dim * dtype_bytes // tensor_parallel


def decode_attention_bound(
    config: dict | str,
    bandwidth_gb_s: float,
    efficiency: tuple[float, float] = (0.5, 0.9),
    dtype_bytes: int = 2,
    tensor_parallel: int = 1,
) -> tuple[float, float]:
    """Physical range of the ``decode`` coefficient (ms per decode token x context token).

    A decode token must read its whole context's K and V from memory, so each
    context token costs :func:`kv_bytes_per_token` bytes of memory traffic at
    the achieved bandwidth ``efficiency x bandwidth_gb_s``. Returns
    ``(low, high)``: the cost at the highest and at the lowest efficiency.
    It is a bound on the memory-bound regime (large batch x context); small
    batches are latency-bound and the fixed part goes into ``t(n)``.

    Examples
    --------
    Mistral-7B (fp16) on an RTX 6000 Ada (960 GB/s), 50-90 % of peak bandwidth:

    >>> low, high = decode_attention_bound("mistral-7b", 960.0)
    >>> f"{low:.3e} {high:.3e}"
    '1.517e-04 2.731e-04'
    """
    lo_eff, hi_eff = efficiency
    if not 0 < lo_eff <= hi_eff <= 1 or bandwidth_gb_s <= 0:
        raise ProfileError("efficiency", f"needs 0 < low <= high <= 1 and a positive bandwidth, got "
                           f"{efficiency} at {bandwidth_gb_s} GB/s")
    seconds_per_byte = 1.0 / (bandwidth_gb_s * 1e9)
    per_token_ms = kv_bytes_per_token(config, dtype_bytes, tensor_parallel) * seconds_per_byte * 1e3
    return per_token_ms / hi_eff, per_token_ms / lo_eff
