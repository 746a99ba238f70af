"""Sarathi-Serve: decodes first, then chunked prefill filling the token budget."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .base import KernelRef, Policy


@dataclass(frozen=True)
class Sarathi(Policy):
    """Sarathi-Serve (stall-free batching).

    Every decoding request gets its token first (arrival order), then prefill
    chunks of the oldest prompts fill the rest of the budget. Admission takes
    blocks for the whole prompt (plus the watermark) and stops at the first
    waiting request memory cannot hold. A decode that finds no free KV block
    preempts the latest-arrived running request not yet served in this batch
    (its own request if none arrived later), which is recomputed later.
    ``order="spf"`` (the SLAI authors' variant) admits waiting prompts shortest first.

    >>> from llmstab.fluid_models.state import EngineState
    >>> Sarathi().form_batch(EngineState((0, 5), (1, 1)), b_max=4).describe("AB")
    '{Ad,Bp}'
    >>> Sarathi(order="spf").form_batch(EngineState((0, 5, 2), (1, 1, 1)), b_max=4).describe("ABC")
    '{Ad,Bp,Cp}'
    >>> Sarathi(order="spf").label
    'sarathi(spf)'
    """

    order: str = "fcfs"

    name = "sarathi"
    summary = "decodes first, then chunked prefill filling the budget"
    kernel = KernelRef("sarathi", "sarathi_kernel")
    fluid_phase_order = "decode-first"

    def __post_init__(self) -> None:
        if self.order not in ("fcfs", "spf"):
            raise ValueError(f"order must be 'fcfs' or 'spf', got {self.order!r}")

    def parameters(self) -> np.ndarray:
        return np.array([1.0] if self.order == "spf" else [], dtype=np.float64)

    @property
    def label(self) -> str:
        return "sarathi" if self.order == "fcfs" else f"sarathi({self.order})"
