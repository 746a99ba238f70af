"""A generic first-come-first-served work-conserving rule."""

from __future__ import annotations

from dataclasses import dataclass

from .base import KernelRef, Policy


@dataclass(frozen=True)
class FCFSWorkConserving(Policy):
    """Serve requests in arrival order, each its whole demand (prefill chunked), until full.

    Memory: whole-prompt admission with the watermark (the first waiting request
    memory cannot hold stops admission); a decode short of a KV block preempts
    the latest-arrived running request not yet served (its own if none arrived later).

    >>> from llmstab.fluid_models.state import EngineState
    >>> FCFSWorkConserving().form_batch(EngineState((3, 0), (1, 1)), b_max=3).describe("AB")
    '{Ap}'
    """

    name = "fcfs"
    summary = "arrival order, each request's whole demand, prefill chunked to fill the budget"
    kernel = KernelRef("fcfs", "fcfs_kernel")
    fluid_phase_order = "request-order"
