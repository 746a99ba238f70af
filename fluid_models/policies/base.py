"""The scheduler interface shared by the checkers, the simulator and the networks.

A policy is a *batch-forming rule*, compiled with numba (its *kernel*). Every
scheduler has exactly one kernel; the work-conservation checker, the
single-engine simulator, the network simulator and :meth:`Policy.form_batch`
all run it.

The kernel interface
--------------------
::

    kernel(ri, rf, n, eng, b_max, k_max, params, memory, take) -> tokens

``ri`` (int64, ``rows x NI``) and ``rf`` (float64, ``rows x NF``) describe the
requests the engine shows the policy, one row each, in *service order*: first
the *running* requests (they hold KV-cache blocks), in admission order, then
the head of the *waiting queue* (requests not admitted yet, or preempted), in
queue order. Only rows ``0 .. n-1`` are meaningful. The columns:

=============  ====================================================================
``ri[i, PF]``      prefill tokens left in the current pass
``ri[i, DC]``      decode (output) tokens left
``ri[i, CTX]``     tokens in the KV cache (the request's context for attention)
``ri[i, BLOCKS]``  KV blocks held (0: the request is waiting, not admitted)
``ri[i, PROMPT]``  current prompt length (after a preemption: prompt + outputs so far)
``ri[i, CLASS]``   request class index
``ri[i, ID]``      request id (its index in the trace)
``ri[i, GEN]``     output tokens generated so far
``rf[i, ARRIVAL]`` arrival time (s)
``rf[i, LAST_TOKEN]`` time of its last output token (s; NaN before the first)
``rf[i, SCRATCH]`` a float the policy may write; the engine keeps it per request
                   between batches (NaN at first), e.g. a last schedulable time
=============  ====================================================================

``eng`` (float64, length ``NE``) is the engine context: ``eng[CLOCK]`` (s, the
batch's start), ``eng[MEAN_BATCH]`` (cumulative mean batch duration, s; 0 before
the first batch), ``eng[LAST_BATCH_END]``, ``eng[FREE_BLOCKS]``,
``eng[TOTAL_BLOCKS]``, ``eng[BLOCK_SIZE]`` (tokens per block),
``eng[WATERMARK_BLOCKS]`` (free blocks admission must leave),
``eng[MAX_ACTIVE]`` (requests that may hold KV at once), ``eng[ACTIVE]``
(requests holding KV now), ``eng[WAITING]`` (length of the whole waiting queue,
shown or not) and ``eng[BATCHES]`` (batches so far). Memory unlimited is
``FREE_BLOCKS = TOTAL_BLOCKS = MAX_ACTIVE = 2**62``, ``BLOCK_SIZE = 1``,
``WATERMARK_BLOCKS = 0`` (:func:`unlimited_engine`). New fields get new indices
below ``NE``; the signature does not change.

``b_max`` and ``k_max`` (int64) are the token budget and the request limit per
batch, ``params`` (float64) the policy's options, ``memory`` (int64) any state the
policy keeps between batches. The kernel writes ``take`` (int64, ``rows x 3``):
``take[i, TAKE_P]`` prefill tokens and ``take[i, TAKE_D]`` decode tokens (0 or 1)
for request ``i``, and ``take[i, EVICT]`` = ``k > 0`` to preempt it, as the
``k``-th eviction of this batch. It returns the batch's token count. A kernel
reads ``ri`` and ``rf`` and writes only ``take``, ``memory`` and ``rf[:, SCRATCH]``.

What a kernel decides, and what the engine then does:

* **admission**: a waiting row (``BLOCKS == 0``) that gets tokens is admitted;
  the engine allocates :func:`admission_blocks` blocks (the whole prompt) and
  requires ``free - need >= WATERMARK_BLOCKS`` and ``ACTIVE < MAX_ACTIVE``;
* **KV growth**: a decode whose context fills its blocks (``CTX + 1 > BLOCKS *
  BLOCK_SIZE``) takes one more block, and needs a free one;
* **preemption by recomputation**: an evicted request frees its blocks and goes
  back to the head of the waiting queue (the last eviction first); its prompt
  becomes prompt + outputs so far, all to be prefilled again.


The kernels, and the building blocks they are made of, live in
:mod:`llmstab.fluid_models.policies.kernels` (importing it imports numba). A
policy class names its kernel (:class:`KernelRef`), so the classes, their
options and the properties the exact checks read load without numba; the
kernel is compiled, or loaded from numba's cache, when first run.

The engine re-checks everything a kernel decides (and the batch constraints)
and rejects a batch that breaks any. The engine shows at most
``min(b_max, k_max, MAX_ACTIVE - ACTIVE)`` waiting rows (more could not be
admitted in one batch: each admission takes a token and a slot), so a batch
costs about the running set plus the batch, whatever the length of the waiting
queue.

Examples
--------
>>> from llmstab.fluid_models.policies import Sarathi
>>> Sarathi.kernel.__name__
'sarathi_kernel'
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any, Callable, ClassVar

import numpy as np

from ..state import Batch, EngineState

__all__ = ["Policy", "KernelRef", "unlimited_engine", "NO_LIMIT", "LATEST_ARRIVED", "LATEST_PAUSED",
           "PF", "DC", "CTX", "BLOCKS", "PROMPT", "CLASS", "ID", "GEN", "NI", "ARRIVAL", "LAST_TOKEN", "SCRATCH", "NF",
           "CLOCK", "MEAN_BATCH", "LAST_BATCH_END", "FREE_BLOCKS", "TOTAL_BLOCKS", "BLOCK_SIZE", "WATERMARK_BLOCKS",
           "MAX_ACTIVE", "ACTIVE", "WAITING", "BATCHES", "NE", "TAKE_P", "TAKE_D", "EVICT", "TAKE_COLUMNS"]

NO_LIMIT = 2**62

# int columns of a request row
PF, DC, CTX, BLOCKS, PROMPT, CLASS, ID, GEN = range(8)
NI = 8
# float columns of a request row
ARRIVAL, LAST_TOKEN, SCRATCH = range(3)
NF = 3
# engine context
CLOCK, MEAN_BATCH, LAST_BATCH_END, FREE_BLOCKS, TOTAL_BLOCKS, BLOCK_SIZE, WATERMARK_BLOCKS, MAX_ACTIVE, ACTIVE, \
    WAITING, BATCHES = range(11)
NE = 16
# columns of the kernel's output
TAKE_P, TAKE_D, EVICT = range(3)
TAKE_COLUMNS = 3
# preemption victim rules (the ``rule`` of :func:`add_decodes_in`): vLLM's latest arrival, SLAI's latest paused prefill
LATEST_ARRIVED, LATEST_PAUSED = 0, 1
# slots of the building blocks' bookkeeping vector


class KernelRef:
    """A policy's kernel, named by its module in :mod:`llmstab.fluid_models.policies.kernels`.

    The module (and numba with it) is imported when the kernel is first asked
    for, from the class or from an instance.

    >>> class Demo:
    ...     kernel = KernelRef("orca", "orca_kernel")
    >>> Demo.kernel.__name__, Demo().kernel is Demo.kernel
    ('orca_kernel', True)
    """

    def __init__(self, module: str, name: str) -> None:
        self.module, self.name = module, name

    def __get__(self, instance: Any, owner: type) -> Callable:
        return getattr(importlib.import_module(f"{__package__}.kernels.{self.module}"), self.name)


def unlimited_engine() -> np.ndarray:
    """An engine context with memory unlimited (the checkers' setting, where only tokens matter).

    >>> e = unlimited_engine()
    >>> int(e[FREE_BLOCKS]) == 2**62, float(e[BLOCK_SIZE]), float(e[WATERMARK_BLOCKS])
    (True, 1.0, 0.0)
    """
    eng = np.zeros(NE)
    eng[FREE_BLOCKS] = eng[TOTAL_BLOCKS] = eng[MAX_ACTIVE] = float(NO_LIMIT)
    eng[BLOCK_SIZE] = 1.0
    return eng


@dataclass(frozen=True)
class Policy:
    """A scheduler: its name, a one-line summary and its compiled batch-forming kernel.

    Subclasses set ``name``, ``summary``, ``kernel`` (and ``fluid_phase_order``) and, if
    they take options, override :meth:`parameters` (and :meth:`initial_memory` if
    they remember anything between batches). Unless a subclass says otherwise,
    a decode that finds no free KV block preempts the latest-arrived running
    request (:func:`latest_arrived_victim`).
    """

    name: ClassVar[str]
    summary: ClassVar[str]
    kernel: ClassVar[Callable]
    #: Whether the simulator shows the kernel the whole waiting queue (a policy that reorders it, e.g.
    #: shortest prompt first) rather than its head (at most ``min(b_max, k_max)`` requests: FIFO admission).
    sees_whole_queue: ClassVar[bool] = False
    #: How the policy orders the two phases in the fluid limit: ``decode-first``, ``prefill-first``,
    #: ``request-order`` (older, decoding requests first), or ``any`` (any split of the engine).
    fluid_phase_order: ClassVar[str] = "any"
    #: Whether every batch is prefill-only or decode-only and a prefill-only batch holds whole prompts (a prompt
    #: longer than ``b_max`` aside): :mod:`llmstab.checkers.phase_bound` bounds what such a policy carries.
    separates_phases: ClassVar[bool] = False

    def parameters(self) -> np.ndarray:
        """The options passed to the kernel as ``params``."""
        return np.zeros(0, dtype=np.float64)

    def initial_memory(self) -> np.ndarray:
        """The kernel's ``memory`` at the start (empty: a memoryless policy)."""
        return np.zeros(0, dtype=np.int64)

    def for_workload(self, workload: object) -> "Policy":
        """This policy told the traffic it serves (e.g. the classes' latency targets); most policies ignore it."""
        return self

    def token_budget(self, b_max: int) -> int:
        """The most tokens a batch of this policy holds on an engine of budget ``b_max`` (its own cap may bind).

        >>> from llmstab.fluid_models.policies import Sarathi
        >>> Sarathi().token_budget(512)
        512
        """
        return b_max

    def decode_cap(self) -> int | None:
        """The most decode tokens a batch of this policy ever holds by its own rule, whatever the backlog
        (``None``: no such cap, the engine's limits alone bind).

        >>> from llmstab.fluid_models.policies import Sarathi
        >>> Sarathi().decode_cap() is None
        True
        """
        return None

    @property
    def label(self) -> str:
        """A short label naming the policy and its options."""
        return self.name

    @classmethod
    def compiled_kernel(cls) -> Callable:
        """The kernel, compiled for :data:`~llmstab.fluid_models.policies.kernels.blocks.KERNEL_SIGNATURE`
        (to pass to compiled loops)."""
        from .kernels.blocks import KERNEL_SIGNATURE

        kernel = cls.kernel
        kernel.compile(KERNEL_SIGNATURE)
        return kernel

    def form_batch(self, state: EngineState, b_max: int, k_max: int | None = None,
                   memory: np.ndarray | None = None) -> Batch:
        """The batch this policy forms in ``state``, memory unlimited (runs the same kernel as the simulator).

        Examples
        --------
        >>> from llmstab.fluid_models.policies import Sarathi
        >>> Sarathi().form_batch(EngineState((0, 3), (2, 1)), b_max=3)
        Batch(prefill=(0, 2), decode=(1, 0))
        """
        from .kernels.blocks import run_on_lengths

        n = state.size
        pf, dc = state.arrays()
        take_p, take_d = np.zeros(len(pf), np.int64), np.zeros(len(pf), np.int64)
        mem = self.initial_memory() if memory is None else memory
        limit = np.int64(NO_LIMIT if k_max is None else k_max)
        run_on_lengths(self.compiled_kernel(), pf, dc, np.int64(n), np.int64(b_max), limit, self.parameters(), mem,
                       take_p, take_d)
        return Batch(tuple(int(v) for v in take_p[:n]), tuple(int(v) for v in take_d[:n]))
