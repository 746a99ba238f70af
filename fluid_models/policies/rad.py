"""RAD (Bari-Hegde-de Veciana, Algorithm 1): whole-tile decode and prefill modes."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from ..errors import InputError
from .base import KernelRef, Policy

#: The two modes, as the kernel's ``memory[0]`` holds them.
PREFILL_MODE, DECODE_MODE = 0, 1


@dataclass(frozen=True)
class RAD(Policy):
    """RAD: Decode Mode when ``b_col`` requests decode or nothing is left to prefill, else Prefill Mode.

    Decode Mode gives one token to each decoding request, oldest first, at most
    ``b_col`` (a node's memory holds ``b_col`` active requests: one whole tile).
    Prefill Mode runs a chunk of ``b_lcm`` tokens (the tile LCM) of the oldest
    waiting prompt, alone. ``cycle`` (``N``, 0 = infinite, the default) bounds a
    run of batches in one mode: after ``N`` of them the other mode, if it has
    work, gets the next batch. The kernel's ``memory`` holds the current mode
    and the length of its run. Memory: whole-prompt admission with the
    watermark (if the oldest prompt does not fit, the batch decodes instead);
    a decode short of a KV block preempts the latest-arrived running request
    (its own if none arrived later).

    >>> from llmstab.fluid_models.state import EngineState
    >>> rad = RAD(b_col=2, b_lcm=4)
    >>> rad.form_batch(EngineState((0, 8), (3, 5)), b_max=8).describe("AB")
    '{Bp}'
    >>> rad.form_batch(EngineState((0, 0, 8), (3, 2, 5)), b_max=8).describe("ABC")
    '{Ad,Bd}'
    """

    b_col: int = 64
    b_lcm: int = 64
    cycle: int = 0
    name = "rad"
    summary = "whole-tile batches: decode mode at b_col decoding requests or no prefill, else a b_lcm prefill chunk"
    kernel = KernelRef("rad", "rad_kernel")
    #: The theorem that makes RAD maximally stable on a tiled engine when its assumptions hold (the tiling,
    #: memory and cluster checks cite it; a policy without this attribute has no such theorem).
    tiling_theorem: ClassVar[str] = "Bari-Hegde-de Veciana (arXiv 2508.01002) Theorem 2"

    def __post_init__(self) -> None:
        for field_name in ("b_col", "b_lcm"):
            value = getattr(self, field_name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{field_name} must be a positive integer, got {value!r}")
        if isinstance(self.cycle, bool) or not isinstance(self.cycle, int) or self.cycle < 0:
            raise ValueError(f"cycle must be a non-negative integer (0 = infinite), got {self.cycle!r}")
        if self.b_lcm % self.b_col:
            raise ValueError(f"b_lcm = {self.b_lcm} is not a multiple of b_col = {self.b_col}")

    def parameters(self) -> np.ndarray:
        return np.array([self.b_col, self.b_lcm, self.cycle], dtype=np.float64)

    def initial_memory(self) -> np.ndarray:
        return np.array([PREFILL_MODE, 0], dtype=np.int64)

    def tile_shape(self, b_col: int, b_max: int) -> tuple[int, int]:
        """``(b_col, b_lcm)`` on an engine with tiles of ``b_col`` tokens and budget ``b_max``.

        RAD's own tile must be the engine's and its prefill chunk must fit the
        budget; otherwise :class:`~llmstab.fluid_models.errors.InputError` names the policy field.

        >>> RAD(b_col=64, b_lcm=128).tile_shape(64, 512)
        (64, 128)
        >>> RAD(b_col=32, b_lcm=64).tile_shape(64, 512)
        Traceback (most recent call last):
        ...
        llmstab.fluid_models.errors.InputError: policy.b_col: 32 differs from the engine's tile batch_time.b_col = 64
        """
        if self.b_col != b_col:
            raise InputError("policy.b_col", f"{self.b_col} differs from the engine's tile batch_time.b_col = {b_col}")
        if self.b_lcm > b_max:
            raise InputError("policy.b_lcm", f"{self.b_lcm} exceeds the token budget {b_max}")
        return b_col, self.b_lcm

    def theorem_reading(self) -> str:
        """How llmstab reads the one option of RAD the paper leaves open, the cycle ``N`` (said with a verdict).

        >>> RAD(cycle=3).theorem_reading()[:34]
        "RAD's cycle parameter N = 3 is llm"
        """
        return (f"RAD's cycle parameter N = {self.cycle or 'infinity'} is llmstab's reading of a paper it cannot read "
                "in full: after N batches in one mode the other mode gets a turn; another reproduction reads N as "
                "'finish the active requests'")

    @property
    def label(self) -> str:
        cycle = "inf" if self.cycle == 0 else str(self.cycle)
        return f"rad(b_col={self.b_col}, b_lcm={self.b_lcm}, N={cycle})"
