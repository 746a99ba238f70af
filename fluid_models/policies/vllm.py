"""Vanilla vLLM (v0 default scheduler): prefill-only batches while prompts wait, no chunking.

Also the ``long_prompts`` option it shares with FasterTransformer (the other
scheduler that never chunks a prefill): what happens to a prompt longer than
the token budget ``b_max``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from .base import KernelRef, Policy

#: The values of the ``long_prompts`` option: ``split`` serves a prompt longer than ``b_max`` alone in
#: budget-sized pieces; ``reject`` is the literal rule (a prompt that does not fit whole is never admitted).
LONG_PROMPTS = ("split", "reject")


@dataclass(frozen=True)
class LongPrompts(Policy):
    """The ``long_prompts`` option of the schedulers that never chunk a prefill: ``split`` (default) or ``reject``.

    >>> from llmstab.fluid_models.policies import VLLM
    >>> VLLM(long_prompts="reject").label, VLLM().parameters().tolist()
    ('vllm(long_prompts=reject)', [])
    """

    long_prompts: str = "split"
    separates_phases: ClassVar[bool] = True

    def __post_init__(self) -> None:
        if self.long_prompts not in LONG_PROMPTS:
            raise ValueError(f"long_prompts must be 'split' or 'reject', got {self.long_prompts!r}")

    def parameters(self) -> np.ndarray:
        return np.array([1.0] if self.long_prompts == "reject" else [], dtype=np.float64)

    @property
    def label(self) -> str:
        return self.name if self.long_prompts == "split" else f"{self.name}(long_prompts={self.long_prompts})"


@dataclass(frozen=True)
class VLLM(LongPrompts):
    """Vanilla vLLM: whenever a prompt waits, a prefill-only batch of whole prompts.

    Prompts are admitted in arrival order while they fit whole in the budget; the
    first that does not fit (in the budget, or in KV memory with the watermark)
    stops admission. Otherwise (nothing to prefill, or nothing admissible) a
    decode-only batch; a decode that finds no free KV block preempts the
    latest-arrived running request (its own request if none arrived later),
    which is recomputed later, as vLLM's recompute preemption does.
    A prompt longer than ``b_max`` is, with ``long_prompts="split"`` (the
    default), served alone, cut into budget-sized pieces over consecutive
    prefill-only batches; with ``long_prompts="reject"`` the literal rule holds:
    it never fits, so it is never admitted and blocks every prompt behind it.

    >>> from llmstab.fluid_models.state import EngineState
    >>> VLLM().form_batch(EngineState((0, 1), (1, 1)), b_max=4).describe("AB")
    '{Bp}'
    >>> VLLM().form_batch(EngineState((0, 6), (1, 1)), b_max=4)  # 4 of the 6 prompt tokens
    Batch(prefill=(0, 4), decode=(0, 0))
    >>> VLLM(long_prompts="reject").form_batch(EngineState((0, 6), (1, 1)), b_max=4)  # B never fits
    Batch(prefill=(0, 0), decode=(1, 0))
    """

    name = "vllm"
    summary = "prefill-only batches of whole prompts while any prompt waits, else decode-only"
    kernel = KernelRef("vllm", "vllm_kernel")
