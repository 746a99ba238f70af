"""Length traces shipped with the package, selectable by name.

``sharegpt``: prompt and output token lengths of 30,731 ShareGPT conversations
(Llama-2 tokenizer, at most 8k tokens in all; Apache-2.0, attribution in
``fluid_models/data/SHAREGPT_NOTICE.md``). In an input file:
``prompt: {dist: empirical, trace: sharegpt}``.

Examples
--------
>>> prompt = trace_distribution("sharegpt", "prompt")
>>> prompt.values.size, prompt.source
(30731, 'trace:sharegpt')
>>> round(float(prompt.mean)), round(float(trace_distribution("sharegpt", "decode").mean))
(2340, 439)
"""

from __future__ import annotations

from functools import lru_cache
from importlib import resources

import numpy as np

from .distributions import Empirical

__all__ = ["TRACES", "trace_lengths", "trace_distribution"]

TRACES = {"sharegpt": "sharegpt_lengths.npz"}
_COLUMNS = ("prompt", "decode")


@lru_cache(maxsize=None)
def trace_lengths(name: str) -> tuple[np.ndarray, np.ndarray]:
    """The ``(prompt, decode)`` length arrays (int64) of the shipped trace ``name``.

    Raises ``KeyError`` naming the known traces for an unknown name.
    """
    if name not in TRACES:
        raise KeyError(f"unknown trace {name!r} (known: {', '.join(sorted(TRACES))})")
    with resources.files("llmstab.fluid_models").joinpath("data", TRACES[name]).open("rb") as handle:
        data = np.load(handle)
        prompt, decode = data["prompt"].astype(np.int64), data["decode"].astype(np.int64)
    prompt.setflags(write=False)
    decode.setflags(write=False)
    return prompt, decode


def trace_distribution(name: str, column: str) -> Empirical:
    """The empirical distribution of one column (``prompt`` or ``decode``) of trace ``name``.

    Its ``source`` is ``trace:NAME``, which tells the simulator to draw a
    request's prompt and decode lengths from the same row when both come from
    the same trace.
    """
    if column not in _COLUMNS:
        raise KeyError(f"unknown column {column!r} (prompt or decode)")
    return Empirical(trace_lengths(name)[_COLUMNS.index(column)], source=f"trace:{name}")
