"""Schedulers as batch-forming rules (see :mod:`llmstab.fluid_models.policies.base`).

Each policy's module (and so its numba kernel) is imported when the policy is
first asked for, by name in :data:`POLICIES` or as an attribute of this package:
a check of a Sarathi engine never loads SLAI's or RAD's kernels.

>>> sorted(POLICIES)
['fastertransformer', 'fcfs', 'fixed_chunk', 'orca', 'rad', 'sarathi', 'slai', 'vllm']
>>> make_policy("orca").label
'orca'
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator, Mapping
from typing import Any

from .base import Policy

__all__ = ["Policy", "Sarathi", "Orca", "VLLM", "FasterTransformer", "FCFSWorkConserving", "RAD", "FixedChunk", "SLAI",
           "POLICIES", "make_policy"]

#: Each registered policy name, with the module and class that implement it (in registration order).
_REGISTRY = {
    "sarathi": ("sarathi", "Sarathi"),
    "orca": ("orca", "Orca"),
    "vllm": ("vllm", "VLLM"),
    "fastertransformer": ("fastertransformer", "FasterTransformer"),
    "fcfs": ("fcfs", "FCFSWorkConserving"),
    "rad": ("rad", "RAD"),
    "fixed_chunk": ("fixed_chunk", "FixedChunk"),
    "slai": ("slai", "SLAI"),
}
_CLASSES = {cls: module for module, cls in _REGISTRY.values()}


def _load(module: str, cls: str) -> type[Policy]:
    return getattr(importlib.import_module(f".{module}", __name__), cls)


class _Policies(Mapping):
    """Policy name -> class; a class's module is imported on first lookup.

    >>> "sarathi" in POLICIES, "nope" in POLICIES, POLICIES["fcfs"].__name__
    (True, False, 'FCFSWorkConserving')
    """

    def __getitem__(self, name: str) -> type[Policy]:
        return _load(*_REGISTRY[name])

    def __iter__(self) -> Iterator[str]:
        return iter(_REGISTRY)

    def __len__(self) -> int:
        return len(_REGISTRY)

    def __contains__(self, name: object) -> bool:
        return name in _REGISTRY

    def __repr__(self) -> str:
        return f"POLICIES({', '.join(_REGISTRY)})"


POLICIES: Mapping[str, type[Policy]] = _Policies()


def __getattr__(name: str) -> Any:
    """The policy classes (``Sarathi``, ``RAD``, ...), each imported on first use."""
    if name in _CLASSES:
        value = globals()[name] = _load(_CLASSES[name], name)
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def make_policy(name: str, **options: object) -> Policy:
    """The policy registered as ``name``, built with ``options``.

    Raises ``KeyError`` for an unknown name and ``TypeError`` for an unknown option.

    >>> make_policy("fcfs").name
    'fcfs'
    """
    return POLICIES[name](**options)
