"""Sarathi-Serve: decodes first, then chunked prefill filling the token budget."""

from __future__ import annotations

from dataclasses import dataclass

import numba

from .base import Policy, add_decodes, add_prefills, clear


@numba.njit(cache=True)
def sarathi_kernel(pf, dc, n, b_max, k_max, params, memory, take_p, take_d):
    clear(n, take_p, take_d)
    budget, slots = add_decodes(pf, dc, n, b_max, k_max, take_p, take_d)
    budget, slots = add_prefills(pf, n, budget, slots, take_p, take_d, 0)
    return b_max - budget


@dataclass(frozen=True)
class Sarathi(Policy):
    """Sarathi-Serve (stall-free batching).

    Every decoding request gets its token first (arrival order), then prefill
    chunks of the oldest prompts fill the rest of the budget.

    >>> from llmstab.fluid_models.state import EngineState
    >>> Sarathi().form_batch(EngineState((0, 5), (1, 1)), b_max=4).describe("AB")
    '{Ad,Bp}'
    """

    name = "sarathi"
    summary = "decodes first, then chunked prefill filling the budget"
    kernel = sarathi_kernel
