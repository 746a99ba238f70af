"""Orca: prefill first (the last prompt chunked to fit), decodes fill the rest."""

from __future__ import annotations

from dataclasses import dataclass

from .base import KernelRef, Policy


@dataclass(frozen=True)
class Orca(Policy):
    """Orca (iteration-level scheduling, mixed batches, prefill first).

    Waiting prompts are admitted first in arrival order, the last one cut to the
    remaining budget; decoding requests take what is left. Memory: whole-prompt
    admission with the watermark; a decode short of a KV block preempts the
    latest-arrived running request not yet served (its own if none arrived later).

    >>> from llmstab.fluid_models.state import EngineState
    >>> Orca().form_batch(EngineState((0, 5), (1, 1)), b_max=4).describe("AB")
    '{Bp}'
    """

    name = "orca"
    summary = "prefill first (chunked to fit), decodes fill the rest"
    kernel = KernelRef("orca", "orca_kernel")
    fluid_phase_order = "prefill-first"
