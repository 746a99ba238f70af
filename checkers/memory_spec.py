"""Input fields for attention, the KV cache and the request cap of one engine.

In an engine's mapping::

    batch_time:
      kind: staircase          # any family
      ...
      attention: {decode: 1.4e-4, prefill: 2.0e-5}   # per (token x context token), in batch_time's unit
    kv_cache: {blocks: 14733, block_size: 16, watermark: 0.01}   # or {tokens: 235728, block_size: 16}
    max_active_requests: 128

Bad values raise :class:`~llmstab.checkers.errors.InputError` naming the field.

Examples
--------
>>> node, att = split_attention({"kind": "staircase", "unit": "s", "attention": {"decode": "1e-7"}}, "engine.batch_time")
>>> sorted(node), str(att.decode_exact)
(['kind', 'unit'], '1/10000')
>>> parse_memory({"kv_cache": {"tokens": 64, "block_size": 16}, "max_active_requests": 2}, "engine")
{'kv_cache': KVCache(blocks=4, block_size=16, watermark=Exact(0, 1)), 'max_active_requests': 2}
>>> parse_memory({"kv_cache": {"blocks": 10, "watermark": 1}}, "engine")
Traceback (most recent call last):
...
llmstab.fluid_models.errors.InputError: engine.kv_cache.watermark: must lie in [0, 1), got 1
"""

from __future__ import annotations

from fractions import Fraction
from typing import Any

from llmstab.fluid_models.batch_time import Attention, exact_number
from llmstab.fluid_models.engine import KVCache

from .errors import InputError

__all__ = ["MEMORY_KEYS", "split_attention", "parse_memory"]

#: The engine keys this module reads.
MEMORY_KEYS = ("kv_cache", "max_active_requests")
_UNITS_IN_MS = {"ms": Fraction(1), "s": Fraction(1000), "us": Fraction(1, 1000)}


def _number(value: Any, where: str) -> Fraction:
    try:
        number = exact_number(value)
    except (TypeError, ValueError):
        raise InputError(where, f"must be a number, got {value!r}") from None
    if number < 0:
        raise InputError(where, f"must not be negative, got {value!r}")
    return number


def _integer(value: Any, where: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise InputError(where, f"must be an integer, got {value!r}")
    if value < minimum:
        raise InputError(where, f"must be at least {minimum}, got {value}")
    return value


def _mapping(node: Any, where: str, allowed: set[str]) -> dict:
    if not isinstance(node, dict):
        raise InputError(where, f"must be a mapping, got {type(node).__name__}")
    unknown = sorted(set(node) - allowed)
    if unknown:
        raise InputError(f"{where}.{unknown[0]}", f"unknown field (known: {', '.join(sorted(allowed))})")
    return node


def _preset_attention(node: dict) -> Any:
    """A preset's stored batch time when it carries attention (else ``None``)."""
    from llmstab.fluid_models.profiling.presets import preset_info
    from llmstab.fluid_models.profiling.profiles import ProfileError

    try:
        inner = preset_info(str(node.get("name")))["batch_time"]
    except (ProfileError, KeyError):
        return None  # the preset parser reports the bad name
    return dict(inner) if isinstance(inner, dict) and "attention" in inner else None


def split_attention(node: Any, where: str) -> tuple[Any, Attention | None]:
    """The batch-time mapping without ``attention``, and the attention it held (in ms, from the mapping's unit).

    A preset whose stored batch time carries attention (a fit on a profile with
    contexts) is replaced by that batch time, so its attention reaches the engine.
    """
    if isinstance(node, dict) and node.get("kind") == "preset" and "attention" not in node:
        node = _preset_attention(node) or node
    if not isinstance(node, dict) or "attention" not in node:
        return node, None
    rest = {k: v for k, v in node.items() if k != "attention"}
    unit = _UNITS_IN_MS.get(rest.get("unit", "ms"), Fraction(1))  # a bad unit is reported by the family parser
    att = _mapping(node["attention"], f"{where}.attention", {"decode", "prefill"})
    coeffs = {k: _number(att.get(k, 0), f"{where}.attention.{k}") * unit for k in ("decode", "prefill")}
    return rest, Attention(**coeffs)


def _kv_cache(node: Any, where: str) -> KVCache:
    node = _mapping(node, where, {"blocks", "tokens", "block_size", "watermark"})
    if ("blocks" in node) == ("tokens" in node):
        raise InputError(where, "give exactly one of blocks or tokens")
    block_size = _integer(node.get("block_size", 16), f"{where}.block_size", 1)
    watermark = _number(node.get("watermark", 0), f"{where}.watermark")
    if watermark >= 1:
        raise InputError(f"{where}.watermark", f"must lie in [0, 1), got {node['watermark']!r}")
    if "tokens" in node:
        tokens = _integer(node["tokens"], f"{where}.tokens", block_size)
        return KVCache(tokens // block_size, block_size, watermark)
    return KVCache(_integer(node["blocks"], f"{where}.blocks", 1), block_size, watermark)


def parse_memory(node: dict, where: str) -> dict:
    """``kv_cache`` and ``max_active_requests`` of an engine mapping, as keyword arguments of :class:`Engine`."""
    out: dict = {}
    if node.get("kv_cache") is not None:
        out["kv_cache"] = _kv_cache(node["kv_cache"], f"{where}.kv_cache")
    if node.get("max_active_requests") is not None:
        out["max_active_requests"] = _integer(node["max_active_requests"], f"{where}.max_active_requests", 1)
    return out
