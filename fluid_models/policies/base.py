"""The scheduler interface shared by the checkers, the simulator and the networks.

A policy is a *batch-forming rule*: given the resident requests in service order
(remaining prefill ``pf[i]`` and decode ``dc[i]`` tokens), the token budget
``b_max`` and the request limit ``k_max``, it writes how many prefill tokens
(``take_p[i]``) and decode tokens (``take_d[i]``, 0 or 1) each request gets in
the next batch, and returns the batch's token count.

The rule is a numba-compiled *kernel* with the signature::

    kernel(pf, dc, n, b_max, k_max, params, memory, take_p, take_d) -> int

``params`` (float64) holds the policy's options, ``memory`` (int64) any state it
keeps between batches. The simulator calls the kernel directly inside its
compiled loop; the checkers call it through :meth:`Policy.form_batch`. There is
one implementation of each scheduler, and both paths run it.

The building blocks below (``add_decodes``, ``add_prefills``, ...) are kernels
too, so a new policy is a few lines that compose them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, ClassVar

import numba
import numpy as np
from numba import types

from ..state import Batch, EngineState

__all__ = ["Policy", "KERNEL_SIGNATURE", "KERNEL_TYPE", "clear", "add_decodes", "add_prefills", "add_whole_prefills", "any_decoding", "any_prefilling"]

_NO_LIMIT = np.int64(2**62)

_i8a, _f8a, _i8 = types.int64[::1], types.float64[::1], types.int64
#: The signature of every policy kernel: ``(pf, dc, n, b_max, k_max, params, memory, take_p, take_d) -> tokens``.
KERNEL_SIGNATURE = types.int64(_i8a, _i8a, _i8, _i8, _i8, _f8a, _i8a, _i8a, _i8a)
#: The kernel as a first-class function type, for compiled loops that take any policy's kernel.
KERNEL_TYPE = types.FunctionType(KERNEL_SIGNATURE)


@numba.njit(cache=True)
def clear(n, take_p, take_d):
    """Zero the first ``n`` entries of both outputs."""
    for i in range(n):
        take_p[i] = 0
        take_d[i] = 0


@numba.njit(cache=True)
def add_decodes(pf, dc, n, budget, slots, take_p, take_d):
    """One decode token for each decoding request, in order, while budget and slots last.

    Returns the remaining ``(budget, slots)``.
    """
    for i in range(n):
        if budget <= 0 or slots <= 0:
            break
        if pf[i] == 0 and dc[i] > 0 and take_d[i] == 0:
            take_d[i] = 1
            budget -= 1
            slots -= 1
    return budget, slots


@numba.njit(cache=True)
def add_prefills(pf, n, budget, slots, take_p, take_d, chunk):
    """Prefill tokens in order; the last request served may be cut to a chunk.

    Each prefilling request not yet in the batch takes ``min(pf[i], budget)``
    tokens, at most ``chunk`` (``chunk <= 0``: no per-request cap). Returns the
    remaining ``(budget, slots)``.
    """
    for i in range(n):
        if budget <= 0 or slots <= 0:
            break
        if pf[i] > 0 and take_p[i] == 0 and take_d[i] == 0:
            x = min(pf[i], budget)
            if chunk > 0:
                x = min(x, chunk)
            take_p[i] = x
            budget -= x
            slots -= 1
    return budget, slots


@numba.njit(cache=True)
def add_whole_prefills(pf, n, budget, slots, take_p):
    """Whole prompts in order while they fit (no chunking); stops at the first that does not.

    If nothing fits because the first waiting prompt alone exceeds the budget, that
    prompt is cut to the budget, so that a prompt longer than ``b_max`` is still
    served (in consecutive prefill-only batches) instead of blocking the engine.
    Returns the remaining ``(budget, slots)``.
    """
    taken = 0
    for i in range(n):
        if budget <= 0 or slots <= 0:
            break
        if pf[i] > 0:
            if pf[i] <= budget:
                take_p[i] = pf[i]
                budget -= pf[i]
                slots -= 1
                taken += 1
            else:
                if taken == 0:
                    take_p[i] = budget
                    budget = 0
                    slots -= 1
                break
    return budget, slots


@numba.njit(cache=True)
def any_decoding(pf, dc, n):
    """Whether some request has finished its prefill and has decode tokens left."""
    for i in range(n):
        if pf[i] == 0 and dc[i] > 0:
            return True
    return False


@numba.njit(cache=True)
def any_prefilling(pf, n):
    """Whether some request has prefill tokens left."""
    for i in range(n):
        if pf[i] > 0:
            return True
    return False


@dataclass(frozen=True)
class Policy:
    """A scheduler: its name, a one-line summary and its compiled batch-forming kernel.

    Subclasses set ``name``, ``summary``, ``kernel`` and ``chunks_prefill`` and, if
    they take options, override :meth:`parameters` (and :meth:`initial_memory` if
    they remember anything between batches).
    """

    name: ClassVar[str]
    summary: ClassVar[str]
    kernel: ClassVar[Callable]
    chunks_prefill: ClassVar[bool] = True

    def parameters(self) -> np.ndarray:
        """The options passed to the kernel as ``params``."""
        return np.zeros(0, dtype=np.float64)

    def initial_memory(self) -> np.ndarray:
        """The kernel's ``memory`` at the start (empty: a memoryless policy)."""
        return np.zeros(0, dtype=np.int64)

    @property
    def label(self) -> str:
        """A short label naming the policy and its options."""
        return self.name

    def form_batch(self, state: EngineState, b_max: int, k_max: int | None = None,
                   memory: np.ndarray | None = None) -> Batch:
        """The batch this policy forms in ``state`` (runs the same kernel as the simulator).

        Examples
        --------
        >>> from llmstab.fluid_models.policies import Sarathi
        >>> Sarathi().form_batch(EngineState((0, 3), (2, 1)), b_max=3)
        Batch(prefill=(0, 2), decode=(1, 0))
        """
        n = state.size
        pf, dc = state.arrays()
        take_p, take_d = np.zeros(len(pf), np.int64), np.zeros(len(pf), np.int64)
        mem = self.initial_memory() if memory is None else memory
        limit = _NO_LIMIT if k_max is None else np.int64(k_max)
        type(self).kernel(pf, dc, n, np.int64(b_max), limit, self.parameters(), mem, take_p, take_d)
        return Batch(tuple(int(v) for v in take_p[:n]), tuple(int(v) for v in take_d[:n]))
