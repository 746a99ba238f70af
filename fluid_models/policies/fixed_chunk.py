"""A fixed-chunk scheduler: Sarathi-Serve's rule with a token budget of ``chunk`` per batch."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .base import KernelRef, Policy


@dataclass(frozen=True)
class FixedChunk(Policy):
    """Decodes first, then chunked prefill, every batch capped at ``chunk`` tokens (Sarathi-Serve's chunk size).

    On a tiled engine a ``chunk`` that is not a whole number of tiles pays for
    a partly empty last tile in every full batch.

    >>> from llmstab.fluid_models.state import EngineState
    >>> FixedChunk(chunk=3).form_batch(EngineState((0, 9), (2, 1)), b_max=8).tokens
    3
    """

    chunk: int = 512
    name = "fixed_chunk"
    summary = "decodes first, then chunked prefill, at most `chunk` tokens per batch"
    kernel = KernelRef("fixed_chunk", "fixed_chunk_kernel")

    def __post_init__(self) -> None:
        if isinstance(self.chunk, bool) or not isinstance(self.chunk, int) or self.chunk < 1:
            raise ValueError(f"chunk must be a positive integer, got {self.chunk!r}")

    def parameters(self) -> np.ndarray:
        return np.array([self.chunk], dtype=np.float64)

    @property
    def label(self) -> str:
        return f"fixed_chunk({self.chunk})"
