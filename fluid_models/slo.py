"""Latency targets (SLOs) of a request class.

A class may ask for a time-to-first-token target at a percentile over its
requests (``ttft_s`` at ``ttft_percentile``, the median by default) and a
time-between-tokens target at a percentile over its *tokens* (``tbt_s`` at
``tbt_percentile``, P99 by default), as serving teams state them. Either may be
left out. :func:`parse_slo` reads the input-file form
``slo: {ttft_s: 0.5, ttft_percentile: 50, tbt_s: 0.1, tbt_percentile: 99}``.

Examples
--------
>>> s = parse_slo({"ttft_s": 0.5, "tbt_s": 0.1}, "workload.classes[0].slo")
>>> s.ttft_percentile, s.tbt_percentile, s.met(ttft_s=0.4, tbt_s=0.12)
(50.0, 99.0, False)
>>> parse_slo({"tbt_percentile": 120}, "slo")
Traceback (most recent call last):
...
llmstab.fluid_models.errors.InputError: slo.tbt_percentile: must lie in (0, 100], got 120
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from .errors import InputError

__all__ = ["SLO", "parse_slo"]

_FIELDS = ("ttft_s", "ttft_percentile", "tbt_s", "tbt_percentile")


@dataclass(frozen=True)
class SLO:
    """Targets of one class: ``ttft_s`` at ``ttft_percentile`` and ``tbt_s`` at ``tbt_percentile`` (``None``: no target)."""

    ttft_s: float | None = None
    ttft_percentile: float = 50.0
    tbt_s: float | None = None
    tbt_percentile: float = 99.0

    def met(self, *, ttft_s: float | None, tbt_s: float | None) -> bool:
        """Whether measured percentiles meet the targets (a missing measurement misses a set target).

        >>> SLO(ttft_s=0.5).met(ttft_s=0.5, tbt_s=None), SLO(tbt_s=0.1).met(ttft_s=9.0, tbt_s=None)
        (True, False)
        """
        for target, value in ((self.ttft_s, ttft_s), (self.tbt_s, tbt_s)):
            if target is not None and (value is None or not value <= target):
                return False
        return True

    def as_dict(self) -> dict:
        """As written in an input file (targets that are not set are left out)."""
        out = {}
        if self.ttft_s is not None:
            out.update(ttft_s=self.ttft_s, ttft_percentile=self.ttft_percentile)
        if self.tbt_s is not None:
            out.update(tbt_s=self.tbt_s, tbt_percentile=self.tbt_percentile)
        return out


def _real(node: dict, key: str, where: str) -> float | None:
    value = node.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise InputError(f"{where}.{key}", f"must be a number, got {value!r}")
    return float(value)


def parse_slo(node: Any, where: str) -> SLO | None:
    """The :class:`SLO` written at ``where`` (``None`` if absent); ``InputError`` for bad values."""
    if node is None:
        return None
    if not isinstance(node, dict):
        raise InputError(where, f"must be a mapping with some of {', '.join(_FIELDS)}")
    for key in node:
        if key not in _FIELDS:
            raise InputError(f"{where}.{key}", f"unknown field (expected one of: {', '.join(_FIELDS)})")
    values = {key: _real(node, key, where) for key in _FIELDS}
    for key in ("ttft_s", "tbt_s"):
        if values[key] is not None and values[key] <= 0:
            raise InputError(f"{where}.{key}", f"must be positive, got {node[key]}")
    for key in ("ttft_percentile", "tbt_percentile"):
        if values[key] is not None and not 0 < values[key] <= 100:
            raise InputError(f"{where}.{key}", f"must lie in (0, 100], got {node[key]}")
        if values[key] is not None and values[key.replace("percentile", "s")] is None:
            raise InputError(f"{where}.{key}", f"needs a target {key.replace('percentile', 's')}")
    if values["ttft_s"] is None and values["tbt_s"] is None:
        raise InputError(where, "sets no target (give ttft_s and/or tbt_s)")
    return SLO(values["ttft_s"], values["ttft_percentile"] or 50.0, values["tbt_s"], values["tbt_percentile"] or 99.0)
