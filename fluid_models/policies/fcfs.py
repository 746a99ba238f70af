"""A generic first-come-first-served work-conserving rule."""

from __future__ import annotations

from dataclasses import dataclass

import numba

from .base import Policy, clear


@numba.njit(cache=True)
def fcfs_kernel(pf, dc, n, b_max, k_max, params, memory, take_p, take_d):
    clear(n, take_p, take_d)
    budget, slots = b_max, k_max
    for i in range(n):
        if budget <= 0 or slots <= 0:
            break
        if pf[i] > 0:
            x = min(pf[i], budget)
            take_p[i] = x
            budget -= x
        else:
            take_d[i] = 1
            budget -= 1
        slots -= 1
    return b_max - budget


@dataclass(frozen=True)
class FCFSWorkConserving(Policy):
    """Serve requests in arrival order, each its whole demand (prefill chunked), until full.

    >>> from llmstab.fluid_models.state import EngineState
    >>> FCFSWorkConserving().form_batch(EngineState((3, 0), (1, 1)), b_max=3).describe("AB")
    '{Ap}'
    """

    name = "fcfs"
    summary = "arrival order, each request's whole demand, prefill chunked to fill the budget"
    kernel = fcfs_kernel
