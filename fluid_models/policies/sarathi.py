"""Sarathi-Serve: decodes first, then chunked prefill filling the token budget."""

from __future__ import annotations

from dataclasses import dataclass

import numba

from .base import NO_LIMIT, Policy, add_decodes, add_prefills, clear, open_room, tokens_taken


@numba.njit(cache=True)
def sarathi_kernel(ri, rf, n, eng, b_max, k_max, params, memory, take):
    clear(n, take)
    room = open_room(eng, b_max, k_max)
    add_decodes(ri, rf, n, room, take, NO_LIMIT)
    add_prefills(ri, n, room, take, 0)
    return tokens_taken(b_max, room)


@dataclass(frozen=True)
class Sarathi(Policy):
    """Sarathi-Serve (stall-free batching).

    Every decoding request gets its token first (arrival order), then prefill
    chunks of the oldest prompts fill the rest of the budget. Admission takes
    blocks for the whole prompt (plus the watermark) and stops at the first
    waiting request memory cannot hold. A decode that finds no free KV block
    preempts the latest-arrived running request not yet served in this batch
    (its own request if none arrived later), which is recomputed later.

    >>> from llmstab.fluid_models.state import EngineState
    >>> Sarathi().form_batch(EngineState((0, 5), (1, 1)), b_max=4).describe("AB")
    '{Ad,Bp}'
    """

    name = "sarathi"
    summary = "decodes first, then chunked prefill filling the budget"
    kernel = sarathi_kernel
