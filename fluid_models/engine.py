"""One serving engine: a batch-time model, the batch limits, and (optionally) KV-cache memory and attention.

Examples
--------
>>> from llmstab.fluid_models.batch_time import Attention, Staircase
>>> e = Engine(Staircase("11.28", "35.47", 128), token_budget=512)
>>> e.request_limit, e.kv_cache is None
(512, True)
>>> kv = KVCache(blocks=14733, block_size=16, watermark="0.01")
>>> kv.tokens, kv.watermark_blocks, kv.admissible_blocks
(235728, 147, 14586)
>>> KVCache.from_tokens(235728).blocks
14733
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from fractions import Fraction
from functools import cached_property

import numpy as np

from llmstab.theory.capacity import EngineCapacity, capacity_from_times

from .batch_time import Attention, BatchTimeModel, exact_number

__all__ = ["Engine", "KVCache"]


@dataclass(frozen=True)
class KVCache:
    """A paged KV cache: ``blocks`` blocks of ``block_size`` tokens.

    Admission needs blocks for the whole prompt and must leave
    ``watermark_blocks = floor(watermark * blocks)`` blocks free (vLLM's rule);
    a decode takes one more block every ``block_size`` tokens.
    """

    blocks: int
    block_size: int = 16
    watermark: object = 0
    watermark_exact: Fraction = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        for name in ("blocks", "block_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"kv_cache.{name} must be a positive integer, got {value!r}")
        w = exact_number(self.watermark)
        if not 0 <= w < 1:
            raise ValueError(f"kv_cache.watermark must lie in [0, 1), got {self.watermark!r}")
        object.__setattr__(self, "watermark_exact", w)

    @classmethod
    def from_tokens(cls, tokens: int, block_size: int = 16, watermark: object = 0) -> "KVCache":
        """A cache of ``tokens`` KV tokens (whole blocks only)."""
        if isinstance(tokens, bool) or not isinstance(tokens, int) or tokens < block_size:
            raise ValueError(f"kv_cache.tokens must be an integer of at least one block ({block_size}), got {tokens!r}")
        return cls(tokens // block_size, block_size, watermark)

    @property
    def tokens(self) -> int:
        """KV tokens the cache holds: ``blocks * block_size``."""
        return self.blocks * self.block_size

    @property
    def watermark_blocks(self) -> int:
        """Blocks admission must leave free."""
        return math.floor(self.watermark_exact * self.blocks)

    @property
    def admissible_blocks(self) -> int:
        """The most blocks one admission may take in an empty cache."""
        return self.blocks - self.watermark_blocks

    def blocks_for(self, tokens: int) -> int:
        """Blocks that hold ``tokens`` KV tokens (at least one)."""
        return max(1, -(-int(tokens) // self.block_size))

    def parameters(self) -> dict:
        """As written in an input file."""
        return {"blocks": self.blocks, "block_size": self.block_size, "watermark": self.watermark}


@dataclass(frozen=True)
class Engine:
    """An engine with batch time ``batch_time``, at most ``token_budget`` tokens
    (``b_max``) and at most ``max_batch_requests`` requests (``k_max``) per batch.

    Optional: ``attention`` (context-dependent cost added to ``batch_time``),
    ``kv_cache`` (:class:`KVCache`; ``None`` = memory unlimited) and
    ``max_active_requests`` (requests holding KV at once; vLLM's
    ``max_num_seqs``, SLAI's alpha).
    """

    batch_time: BatchTimeModel
    token_budget: int
    max_batch_requests: int | None = None
    attention: Attention | None = None
    kv_cache: KVCache | None = None
    max_active_requests: int | None = None

    def __post_init__(self) -> None:
        if self.token_budget < 1:
            raise ValueError("token_budget must be at least 1")
        if self.max_batch_requests is not None and self.max_batch_requests < 1:
            raise ValueError("max_batch_requests must be at least 1")
        if self.max_active_requests is not None and self.max_active_requests < 1:
            raise ValueError("max_active_requests must be at least 1")

    @property
    def request_limit(self) -> int:
        """``k_max``, or ``b_max`` when no request limit is set (it then never binds)."""
        return self.token_budget if self.max_batch_requests is None else self.max_batch_requests

    @cached_property
    def shortest_batch_ms(self) -> Fraction:
        """The shortest batch (ms, exact): the least of ``t_1 .. t_(b_max)`` (``t_1`` when ``t`` is nondecreasing).

        Screened in floating point, the near-least sizes compared exactly.

        >>> from llmstab.fluid_models.batch_time import Staircase
        >>> Engine(Staircase("11.28", "35.47", 128), 512).shortest_batch_ms
        Exact(187, 4)
        """
        model = self.batch_time
        table = np.asarray(model(np.arange(1, self.token_budget + 1)), dtype=float)
        near = np.flatnonzero(table <= table.min() * (1 + 1e-9) + 1e-12) + 1
        return min(model.exact(int(k)) for k in near)

    @cached_property
    def capacity(self) -> EngineCapacity:
        """The exact token capacity ``max_b b/t_b`` over ``1 <= b <= b_max`` (without a request limit), in
        Fractions, without sympy; computed once per engine.

        The same maximiser, value and candidates as
        :func:`llmstab.theory.capacity.engine_capacity` on the model's expression:
        float times from the model, exact ones from ``model.exact``, the pieces'
        ends from ``model.piece_ends``.

        >>> from llmstab.fluid_models.batch_time import Staircase
        >>> cap = Engine(Staircase("11.28", "35.47", 128), 512).capacity
        >>> cap.tokens_per_ms, cap.candidates_checked
        (Exact(12800, 3829), 1)
        """
        model, budget = self.batch_time, self.token_budget
        return capacity_from_times(model.table(budget)[1:], lambda sizes: [model.exact(k) for k in sizes],
                                   model.piece_ends(budget), budget)

    @property
    def has_memory_model(self) -> bool:
        """Whether KV memory or an active-request cap limits the engine."""
        return self.kv_cache is not None or self.max_active_requests is not None
