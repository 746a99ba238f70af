"""Vanilla vLLM (v0 default scheduler): prefill-only batches while prompts wait, no chunking."""

from __future__ import annotations

from dataclasses import dataclass

import numba

from .base import NO_LIMIT, Policy, add_decodes, add_whole_prefills, any_prefilling, clear, open_room, tokens_taken


@numba.njit(cache=True)
def vllm_kernel(ri, rf, n, eng, b_max, k_max, params, memory, take):
    clear(n, take)
    room = open_room(eng, b_max, k_max)
    if any_prefilling(ri, n):
        add_whole_prefills(ri, n, room, take)
    if tokens_taken(b_max, room) == 0:
        add_decodes(ri, rf, n, room, take, NO_LIMIT)
    return tokens_taken(b_max, room)


@dataclass(frozen=True)
class VLLM(Policy):
    """Vanilla vLLM: whenever a prompt waits, a prefill-only batch of whole prompts.

    Prompts are admitted in arrival order while they fit whole in the budget; the
    first that does not fit (in the budget, or in KV memory with the watermark)
    stops admission. Otherwise (nothing to prefill, or nothing admissible) a
    decode-only batch; a decode that finds no free KV block preempts the
    latest-arrived running request (its own request if none arrived later),
    which is recomputed later, as vLLM's recompute preemption does.
    A prompt longer than ``b_max`` is served alone, cut into budget-sized pieces
    over consecutive prefill-only batches (vLLM itself would reject it).

    >>> from llmstab.fluid_models.state import EngineState
    >>> VLLM().form_batch(EngineState((0, 1), (1, 1)), b_max=4).describe("AB")
    '{Bp}'
    """

    name = "vllm"
    summary = "prefill-only batches of whole prompts while any prompt waits, else decode-only"
    kernel = vllm_kernel
