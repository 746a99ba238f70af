"""Orca: prefill first (the last prompt chunked to fit), decodes fill the rest."""

from __future__ import annotations

from dataclasses import dataclass

import numba

from .base import NO_LIMIT, Policy, add_decodes, add_prefills, clear, open_room, tokens_taken


@numba.njit(cache=True)
def orca_kernel(ri, rf, n, eng, b_max, k_max, params, memory, take):
    clear(n, take)
    room = open_room(eng, b_max, k_max)
    add_prefills(ri, n, room, take, 0)
    add_decodes(ri, rf, n, room, take, NO_LIMIT)
    return tokens_taken(b_max, room)


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
    kernel = orca_kernel
    fluid_phase_order = "prefill-first"
