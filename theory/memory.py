"""KV-cache memory: necessary conditions for every scheduler, and a sufficient one for work conservation.

A request with prompt ``p`` holds at least ``p + k`` KV tokens while its
``k``-th decode token (``k = 0 .. d-1``) is computed, for at least one batch,
which lasts at least ``t_min`` (the shortest batch the engine can run). By
Little's law the KV tokens in use average at least

``lambda * E[sum_k (p + k)] * t_min = lambda * E[d*p + d*(d-1)/2] * t_min``,

so when that exceeds the cache's ``M`` tokens no scheduler keeps the backlog
bounded. The same argument on requests (a request holds a KV slot for at
least ``d`` batches) gives ``lambda * E[d] * t_min > max_active`` for the
request limit.

Sufficient: with bounded lengths, if ``max_active >= b_max`` and the cache holds
``max_active`` requests of the largest size plus the watermark, admission never
waits for memory while fewer than ``max_active`` requests run and no decode
ever lacks a block, while ``max_active`` running requests alone fill a batch;
so a work-conserving scheduler stays work-conserving (memory never binds).

Examples
--------
>>> kv_token_batches()
d*p + d*(d - 1)/2
>>> memory_necessary(rate=2, kv_token_batches_mean=1000, t_min_ms=50, capacity_tokens=150)
(Exact(100, 1), False)
>>> memory_never_binds(b_max=4, max_active=4, largest_request_tokens=32, blocks=33, block_size=4, watermark_blocks=1)
True
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .exact_linalg import Exact, to_fraction
from .work import decode_attention_sum

if TYPE_CHECKING:
    import sympy

__all__ = ["kv_token_batches", "memory_necessary", "request_limit_necessary", "blocks_for", "largest_request_fits",
           "bari_assumption_4", "memory_never_binds"]


def kv_token_batches() -> sympy.Expr:
    """``sum_{k=0}^{d-1} (p + k)``: KV tokens held, summed over a request's decode batches (the decode attention sum)."""
    return decode_attention_sum()


def memory_necessary(rate: object, kv_token_batches_mean: object, t_min_ms: object,
                     capacity_tokens: int) -> tuple[Exact, bool]:
    """``(lambda * E[sum_k (p+k)] * t_min, violated)``: the least mean KV occupancy (tokens) and whether it exceeds ``M``.

    ``rate`` in requests/s, ``t_min_ms`` in ms; exact (Fractions, no sympy).
    """
    need = _product(rate, kv_token_batches_mean, t_min_ms) / 1000
    return need, bool(need > capacity_tokens)


def request_limit_necessary(rate: object, decode_mean: object, t_min_ms: object,
                            max_active: int) -> tuple[Exact, bool]:
    """``(lambda * E[d] * t_min, violated)``: the least mean number of requests holding KV, against the cap.

    >>> request_limit_necessary(rate=0.5, decode_mean=100, t_min_ms="46.75", max_active=2)
    (Exact(187, 80), True)
    """
    need = _product(rate, decode_mean, t_min_ms) / 1000
    return need, bool(need > max_active)


def _product(*values: object) -> Exact:
    """The product of exact numbers (floats and text read by :func:`~llmstab.theory.exact_linalg.to_fraction`)."""
    out = Exact(1)
    for value in values:
        out *= to_fraction(value)
    return out


def blocks_for(tokens: int, block_size: int) -> int:
    """Blocks that hold ``tokens`` KV tokens (at least one).

    >>> blocks_for(33, 16), blocks_for(0, 16)
    (3, 1)
    """
    return max(1, -(-int(tokens) // int(block_size)))


def largest_request_fits(prompt_max: int, total_max: int, blocks: int, block_size: int,
                         watermark_blocks: int) -> dict:
    """Whether the largest request can ever finish alone: admission and its last decode.

    Admission needs ``blocks_for(p_max)`` blocks with the watermark left free;
    the last decode of the longest request holds ``(p + d)_max`` tokens.
    """
    admit, finish = blocks_for(prompt_max, block_size), blocks_for(total_max, block_size)
    return {"admission_blocks": admit, "admissible_blocks": blocks - watermark_blocks, "finish_blocks": finish,
            "blocks": blocks, "fits": admit <= blocks - watermark_blocks and finish <= blocks}


def bari_assumption_4(b_col: int, largest_request_tokens: int, blocks: int, block_size: int) -> dict:
    """Bari-Hegde-de Veciana's Assumption 4: memory holds ``b_col`` active requests of the largest size."""
    need = b_col * blocks_for(largest_request_tokens, block_size)
    return {"b_col": b_col, "blocks_needed": need, "blocks": blocks, "holds": need <= blocks}


def memory_never_binds(b_max: int, max_active: int | None, largest_request_tokens: int, blocks: int,
                       block_size: int, watermark_blocks: int) -> bool:
    """The sufficient condition of the module docstring (``max_active`` is needed: without a cap it never holds)."""
    if max_active is None or max_active < b_max:
        return False
    return max_active * blocks_for(largest_request_tokens, block_size) + watermark_blocks <= blocks
