"""FasterTransformer: static batching, decode-only batches while anything decodes."""

from __future__ import annotations

from dataclasses import dataclass

from .base import KernelRef
from .vllm import LongPrompts


@dataclass(frozen=True)
class FasterTransformer(LongPrompts):
    """FasterTransformer: a batch decodes until every member finishes; new prompts wait.

    FasterTransformer has no iteration-level scheduling: a batch's prompts go
    through one forward pass (at most ``b_max`` tokens), then the batch runs
    decode-only iterations until its last member finishes. So while any request
    decodes, batches are decode-only; when none does, one prefill-only batch of
    whole prompts (arrival order, while they fit) starts the next batch. A
    prompt longer than ``b_max`` is served alone in budget-sized pieces with
    ``long_prompts="split"`` (the default), and never admitted (blocking the
    queue) with ``long_prompts="reject"``. A static
    batch therefore holds only the prompts that fit in ``b_max`` tokens, which is
    why its throughput collapses when prompts are long compared with ``b_max``.
    Memory: whole-prompt admission with the watermark; a decode short of a KV
    block preempts the latest-arrived running request (its own if none arrived later).

    >>> from llmstab.fluid_models.state import EngineState
    >>> FasterTransformer().form_batch(EngineState((0, 1), (1, 1)), b_max=4).describe("AB")
    '{Ad}'
    >>> FasterTransformer(long_prompts="reject").form_batch(EngineState((6,), (1,)), b_max=4).describe("A")
    '{}'
    """

    name = "fastertransformer"
    summary = "decode-only batches while anything decodes, then prefill-only batches of whole prompts"
    kernel = KernelRef("fastertransformer", "fastertransformer_kernel")
