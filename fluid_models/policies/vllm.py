"""Vanilla vLLM (v0 default scheduler): prefill-only batches while prompts wait, no chunking."""

from __future__ import annotations

from dataclasses import dataclass

import numba

from .base import Policy, add_decodes, add_whole_prefills, any_prefilling, clear


@numba.njit(cache=True)
def vllm_kernel(pf, dc, n, b_max, k_max, params, memory, take_p, take_d):
    clear(n, take_p, take_d)
    if any_prefilling(pf, n):
        budget, slots = add_whole_prefills(pf, n, b_max, k_max, take_p)
    else:
        budget, slots = add_decodes(pf, dc, n, b_max, k_max, take_p, take_d)
    return b_max - budget


@dataclass(frozen=True)
class VLLM(Policy):
    """Vanilla vLLM: whenever a prompt waits, a prefill-only batch of whole prompts.

    Prompts are admitted in arrival order while they fit whole in the budget; the
    first that does not fit stops admission. Otherwise a decode-only batch.
    A prompt longer than ``b_max`` is served alone, cut into budget-sized pieces
    over consecutive prefill-only batches (vLLM itself would reject it).

    >>> from llmstab.fluid_models.state import EngineState
    >>> VLLM().form_batch(EngineState((0, 1), (1, 1)), b_max=4).describe("AB")
    '{Bp}'
    """

    name = "vllm"
    summary = "prefill-only batches of whole prompts while any prompt waits, else decode-only"
    kernel = vllm_kernel
    chunks_prefill = False
