"""Orca: prefill first (the last prompt chunked to fit), decodes fill the rest."""

from __future__ import annotations

from dataclasses import dataclass

import numba

from .base import Policy, add_decodes, add_prefills, clear


@numba.njit(cache=True)
def orca_kernel(pf, dc, n, b_max, k_max, params, memory, take_p, take_d):
    clear(n, take_p, take_d)
    budget, slots = add_prefills(pf, n, b_max, k_max, take_p, take_d, 0)
    budget, slots = add_decodes(pf, dc, n, budget, slots, take_p, take_d)
    return b_max - budget


@dataclass(frozen=True)
class Orca(Policy):
    """Orca (iteration-level scheduling, mixed batches, prefill first).

    Waiting prompts are admitted first in arrival order, the last one cut to the
    remaining budget; decoding requests take what is left.

    >>> from llmstab.fluid_models.state import EngineState
    >>> Orca().form_batch(EngineState((0, 5), (1, 1)), b_max=4).describe("AB")
    '{Bp}'
    """

    name = "orca"
    summary = "prefill first (chunked to fit), decodes fill the rest"
    kernel = orca_kernel
