"""Measure whole engine iterations of a decoder-only model with random weights.

The profiler builds a Llama/Mistral-style decoder (RMSNorm, rotary embeddings,
grouped-query attention, SwiGLU MLP) from a Hugging Face ``config.json`` with
random weights (nothing is downloaded; the configurations of Mistral-7B,
Llama-2-7B, CodeLlama-34B and Llama-3-8B ship in ``fluid_models/model_configs``,
with ``tiny-llama`` for tests), then times whole iterations: embedding, every
layer, the final norm and the LM head with greedy sampling for each sequence.

Three kinds of batch are measured (:func:`default_grid`):

* ``prefill``: one prompt chunk of ``P`` tokens (causal attention within it),
  ``P`` on a grid dense around tile boundaries (:func:`prefill_grid`); with
  ``prefill_contexts``, also chunks of ``context_chunks`` tokens after ``s``
  tokens of the same prompt already in the cache (the chunk attends to them
  and causally to itself; ``context_len = s`` in the CSV);
* ``decode``: ``N`` decoding requests, each attending to a KV cache of
  ``context_len`` tokens, for ``N`` in 1..512 and several context lengths;
* ``mixed``: ``N`` decode tokens plus a prefill chunk filling the budget.

Timing: CUDA events on ``cuda`` (``time.perf_counter`` on ``cpu``), after
``warmup`` untimed iterations, ``reps`` timed repetitions per grid point; the
CSV records the median, min, max and standard deviation (schema in
:mod:`llmstab.fluid_models.profiling.profiles`). One random KV cache is shared by all layers of a
decode batch (the work per layer is the same as with one cache per layer; the
memory is not), and a decoding token attends to its cache only. Sliding-window
attention (Mistral's ``sliding_window``) is not applied: it changes nothing for
contexts up to the window (4096 tokens), which the default grid does not exceed.

PyTorch is imported lazily: the rest of the toolkit works without it.

Examples
--------
>>> prefill_grid(200, tile=64, fine_step=32, fine_until=128)[:12]
[1, 2, 4, 8, 32, 64, 65, 96, 128, 129, 160, 192]
>>> cfg = load_config("tiny-llama")
>>> cfg["hidden_size"], cfg["num_key_value_heads"]
(64, 2)
"""

from __future__ import annotations

import hashlib
import json
import platform
import shutil
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from importlib import resources
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from .profiles import Profile, ProfileError

__all__ = [
    "GridPoint",
    "shipped_configs",
    "load_config",
    "prefill_grid",
    "default_grid",
    "build_model",
    "run_profile",
    "sidecar",
]

SUPPORTED_MODEL_TYPES = ("llama", "mistral")
_REQUIRED_KEYS = ("hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads", "vocab_size")


@dataclass(frozen=True)
class GridPoint:
    """One batch to time: ``prefill`` prompt tokens and ``decode`` requests at ``context`` tokens."""

    kind: str
    prefill: int
    decode: int
    context: int

    @property
    def tokens(self) -> int:
        """Tokens in the batch."""
        return self.prefill + self.decode


def shipped_configs() -> list[str]:
    """Names of the configurations shipped with the package."""
    folder = resources.files("llmstab.fluid_models").joinpath("model_configs")
    return sorted(p.name[: -len(".json")] for p in folder.iterdir() if p.name.endswith(".json"))


def _config_text(name_or_path: str) -> tuple[str, str]:
    if name_or_path in shipped_configs():
        res = resources.files("llmstab.fluid_models").joinpath(f"model_configs/{name_or_path}.json")
        return res.read_text(), f"fluid_models/model_configs/{name_or_path}.json"
    path = Path(name_or_path)
    if not path.is_file():
        raise ProfileError("--model", f"no such file or shipped configuration {name_or_path!r} "
                           f"(shipped: {', '.join(shipped_configs())})")
    try:
        return path.read_text(), str(path)
    except OSError as err:
        raise ProfileError("--model", f"cannot read {path}: {err.strerror or err}") from None


def load_config(name_or_path: str) -> dict:
    """A validated decoder-only configuration, by shipped name or path to a ``config.json``.

    Raises
    ------
    ProfileError
        Not JSON, not a decoder-only model, an architecture the profiler does
        not build, or missing / inconsistent sizes.
    """
    text, where = _config_text(name_or_path)
    try:
        cfg = json.loads(text)
    except json.JSONDecodeError as err:
        raise ProfileError(where, f"not valid JSON (line {err.lineno}: {err.msg})") from None
    if not isinstance(cfg, dict):
        raise ProfileError(where, "not a Hugging Face configuration (expected a JSON object)")
    model_type = cfg.get("model_type")
    archs = cfg.get("architectures") or []
    causal = any(str(a).endswith(("ForCausalLM", "LMHeadModel")) for a in archs)
    if cfg.get("is_encoder_decoder") or not causal:
        raise ProfileError(where, f"not a decoder-only model (model_type {model_type!r}, architectures {archs})")
    if model_type not in SUPPORTED_MODEL_TYPES:
        raise ProfileError(where, f"model_type {model_type!r} is not built by the profiler "
                           f"(supported: {', '.join(SUPPORTED_MODEL_TYPES)})")
    for key in _REQUIRED_KEYS:
        if not isinstance(cfg.get(key), int) or cfg[key] < 1:
            raise ProfileError(f"{where} {key}", f"must be a positive integer, got {cfg.get(key)!r}")
    cfg.setdefault("num_key_value_heads", cfg["num_attention_heads"])
    if cfg["hidden_size"] % cfg["num_attention_heads"] or cfg["num_attention_heads"] % cfg["num_key_value_heads"]:
        raise ProfileError(where, "hidden_size must be a multiple of num_attention_heads, "
                           "and num_attention_heads a multiple of num_key_value_heads")
    cfg["_source"] = where
    cfg["_sha256"] = hashlib.sha256(text.encode()).hexdigest()
    return cfg


def prefill_grid(max_tokens: int = 4096, tile: int = 64, fine_step: int = 16, fine_until: int = 1024) -> list[int]:
    """Prefill chunk sizes, dense around tile boundaries.

    1, 2, 4, 8; every multiple of ``fine_step`` up to ``fine_until``; every
    multiple of ``tile // 2`` beyond; and ``m + 1`` after every multiple ``m``
    of ``tile`` (the first point past a boundary, where a new tile starts).
    """
    if min(max_tokens, tile, fine_step) < 1:
        raise ProfileError("grid", "max_tokens, tile and fine_step must be positive")
    points = {1, 2, 4, 8}
    points.update(range(fine_step, min(fine_until, max_tokens) + 1, fine_step))
    points.update(range(max(tile // 2, 1), max_tokens + 1, max(tile // 2, 1)))
    points.update(m + 1 for m in range(tile, max_tokens, tile))
    return sorted(p for p in points if p <= max_tokens)


def default_grid(
    max_prefill: int = 4096,
    tile: int = 64,
    fine_step: int = 16,
    decode_batches: Sequence[int] = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512),
    contexts: Sequence[int] = (128, 512, 1024, 2048, 4096),
    mixed_budget: int = 512,
    mixed_decodes: Sequence[int] = (1, 8, 16, 32, 64, 128, 256),
    mixed_context: int = 1024,
    kinds: Sequence[str] = ("prefill", "decode", "mixed"),
    prefill_contexts: Sequence[int] = (512, 2048),
    context_chunks: Sequence[int] = (64, 256, 512, 1024, 2048),
) -> list[GridPoint]:
    """The issue's grid: prefill chunks, decode batches at several contexts, mixed batches at a budget.

    ``prefill_contexts`` adds chunks of ``context_chunks`` tokens (at most
    ``max_prefill``) after each of these numbers of cached prompt tokens (0 is
    the fresh chunk, already in the grid).

    >>> [(p.prefill, p.context) for p in default_grid(kinds=("prefill",), prefill_contexts=(2048,),
    ...                                              context_chunks=(64, 8192))][-1]
    (64, 2048)
    """
    grid: list[GridPoint] = []
    if "prefill" in kinds:
        grid += [GridPoint("prefill", p, 0, 0) for p in prefill_grid(max_prefill, tile, fine_step)]
        grid += [GridPoint("prefill", c, 0, s) for s in prefill_contexts if s > 0
                 for c in context_chunks if 0 < c <= max_prefill]
    if "decode" in kinds:
        grid += [GridPoint("decode", 0, n, c) for c in contexts for n in decode_batches]
    if "mixed" in kinds:
        grid += [GridPoint("mixed", mixed_budget - n, n, mixed_context) for n in mixed_decodes if 0 < n < mixed_budget]
    return grid


def _torch():
    try:
        import torch
    except ImportError:
        raise ProfileError("--device", "the profiler needs PyTorch (pip install torch)") from None
    return torch


def _device(torch, device: str):
    if device == "cuda":
        if not torch.cuda.is_available():
            raise ProfileError("--device", "cuda requested but no CUDA device is available "
                               f"(torch {torch.__version__}, built with CUDA {torch.version.cuda})")
        return torch.device("cuda")
    if device == "cpu":
        return torch.device("cpu")
    raise ProfileError("--device", f"must be cpu or cuda, got {device!r}")


def build_model(cfg: dict, device: str = "cpu", dtype: str = "auto", seed: int = 0):
    """The decoder of ``cfg`` with random weights on ``device`` (a ``torch.nn.Module``).

    ``dtype`` ``auto`` is float16 on CUDA, float32 on the CPU. The model is
    :class:`llmstab.fluid_models.profiling.decoder.Decoder`.

    >>> build_model(load_config("tiny-llama"), seed=1).head.weight.dtype
    torch.float32
    """
    torch = _torch()
    from .decoder import build_decoder

    dev = _device(torch, device)
    if dtype == "auto":
        dtype = "float16" if dev.type == "cuda" else "float32"
    if dtype not in ("float16", "bfloat16", "float32"):
        raise ProfileError("--dtype", f"must be auto, float16, bfloat16 or float32, got {dtype!r}")
    return build_decoder(cfg, dev, getattr(torch, dtype), seed)


def _inputs(torch, cfg: dict, point: GridPoint, dev, dtype):
    """Token ids, positions, the decodes' KV cache and a prefill chunk's cached prefix (random tensors)."""
    nkv, hd = cfg["num_key_value_heads"], cfg["hidden_size"] // cfg["num_attention_heads"]
    ids = torch.randint(0, cfg["vocab_size"], (point.tokens,), device=dev)
    start = point.context if point.kind == "prefill" else 0
    positions = torch.cat(
        (torch.arange(start, start + point.prefill, device=dev), torch.full((point.decode,), point.context, device=dev))
    )

    def kv(batch: int, length: int):
        shape = (batch, nkv, length, hd)
        return torch.randn(shape, device=dev, dtype=dtype), torch.randn(shape, device=dev, dtype=dtype)

    cache = kv(point.decode, max(point.context, 1)) if point.decode else None
    prefix = kv(1, point.context) if point.kind == "prefill" and point.context else None
    return ids, positions, cache, prefix


def _timer(torch, dev) -> Callable[[Callable[[], object]], float]:
    if dev.type == "cuda":
        def timed(fn):
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            fn()
            end.record()
            torch.cuda.synchronize()
            return float(start.elapsed_time(end))
        return timed

    def timed(fn):
        t0 = time.perf_counter()
        fn()
        return (time.perf_counter() - t0) * 1000.0
    return timed


def _time_point(torch, model, cfg: dict, point: GridPoint, timed, warmup: int, reps: int) -> np.ndarray | None:
    """``reps`` timings (ms) of ``point`` after ``warmup`` untimed runs; ``None`` if the device ran out of memory."""
    dev = next(model.parameters()).device
    try:
        ids, positions, cache, prefix = _inputs(torch, cfg, point, dev, next(model.parameters()).dtype)
        run = lambda: model(ids, positions, point.prefill, cache, prefix)  # noqa: E731
        for _ in range(warmup):
            run()
        return np.array([timed(run) for _ in range(reps)])
    except torch.OutOfMemoryError:
        cache = prefix = None  # noqa: F841 - drop the inputs before the allocator returns its cached blocks
        if dev.type == "cuda":
            torch.cuda.empty_cache()
        return None


def _profile_of(rows: dict[str, list], reps: int, cfg: dict) -> Profile:
    """The measured rows as a :class:`Profile` (a decode-free batch other than a prefill records context 0)."""
    tokens = np.array(rows["prefill"]) + np.array(rows["decode"])
    return Profile(
        tokens, rows["median"], rows["kind"], rows["prefill"], rows["decode"],
        [c if d or k == "prefill" else 0 for c, d, k in zip(rows["context"], rows["decode"], rows["kind"])],
        extra={"reps": np.full(tokens.size, reps), "time_ms_min": np.array(rows["min"]),
               "time_ms_max": np.array(rows["max"]), "time_ms_std": np.array(rows["std"])},
        source={"format": "profile", "model": cfg.get("_source")},
    )


def run_profile(
    cfg: dict,
    grid: Sequence[GridPoint],
    device: str = "cpu",
    dtype: str = "auto",
    warmup: int = 3,
    reps: int = 10,
    seed: int = 0,
    progress: Callable[[str], None] | None = None,
) -> tuple[Profile, dict]:
    """Time every grid point; returns the profile and run information for the sidecar.

    A point that runs out of device memory is skipped and listed in the run
    information (``skipped``); every other failure propagates.

    >>> profile, info = run_profile(load_config("tiny-llama"), [GridPoint("decode", 0, 2, 8)], warmup=0, reps=2)
    >>> profile.tokens.tolist(), info["reps"], info["skipped"]
    ([2], 2, [])
    """
    if warmup < 0 or reps < 1:
        raise ProfileError("--reps", "reps must be at least 1 and warmup non-negative")
    if not grid:
        raise ProfileError("grid", "no grid points to time")
    torch = _torch()
    model = build_model(cfg, device, dtype, seed)
    dev = next(model.parameters()).device
    timed = _timer(torch, dev)
    rows: dict[str, list] = {k: [] for k in ("kind", "prefill", "decode", "context", "median", "min", "max", "std")}
    skipped = []
    started = time.time()
    with torch.inference_mode():
        for i, point in enumerate(grid):
            times = _time_point(torch, model, cfg, point, timed, warmup, reps)
            if times is None:
                skipped.append(asdict(point))
                continue
            for key, value in zip(("kind", "prefill", "decode", "context"), asdict(point).values()):
                rows[key].append(value)
            for key, fn in (("median", np.median), ("min", np.min), ("max", np.max), ("std", np.std)):
                rows[key].append(float(fn(times)))
            if progress:
                progress(f"[{i + 1}/{len(grid)}] {point.kind} P={point.prefill} N={point.decode} "
                         f"C={point.context}: {rows['median'][-1]:.3f} ms")
    info = {"dtype": str(next(model.parameters()).dtype).replace("torch.", ""), "warmup": warmup, "reps": reps,
            "seed": seed, "timing": "CUDA events" if dev.type == "cuda" else "time.perf_counter",
            "parameters": int(sum(p.numel() for p in model.parameters())), "grid_points": len(grid),
            "skipped": skipped, "wall_seconds": round(time.time() - started, 3)}
    return _profile_of(rows, reps, cfg), info


def _driver() -> str | None:
    exe = shutil.which("nvidia-smi")
    if not exe:
        return None
    try:
        out = subprocess.run([exe, "--query-gpu=driver_version", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip().splitlines()[0] if out.returncode == 0 and out.stdout.strip() else None


def sidecar(cfg: dict, device: str, run_info: dict, command: Sequence[str] | None = None) -> dict:
    """What a reader needs to trust a profile: device, driver, versions, model and the exact command."""
    torch = _torch()
    dev = {"type": device, "cpu": platform.processor() or platform.machine()}
    if device == "cuda":
        props = torch.cuda.get_device_properties(0)
        dev.update(name=props.name, capability=f"{props.major}.{props.minor}",
                   memory_gib=round(props.total_memory / 2**30, 1), driver=_driver(),
                   cuda_runtime=torch.version.cuda, cudnn=torch.backends.cudnn.version())
    try:
        from importlib.metadata import version
        llmstab_version = version("llmstab")
    except Exception:  # pragma: no cover - not installed as a package
        llmstab_version = None
    return {
        "created_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "command": list(command if command is not None else sys.argv),
        "device": dev,
        "versions": {"python": platform.python_version(), "torch": torch.__version__,
                     "numpy": np.__version__, "llmstab": llmstab_version, "platform": platform.platform()},
        "model": {"config": cfg.get("_source"), "config_sha256": cfg.get("_sha256"),
                  "model_type": cfg.get("model_type"), "weights": "random (seeded), not downloaded"},
        "run": run_info,
        "csv_schema": "llmstab.fluid_models.profiling.profiles (kind, tokens, prefill_tokens, decode_tokens, context_len, reps, "
                      "time_ms = median, time_ms_min, time_ms_max, time_ms_std)",
    }
