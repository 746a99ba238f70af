"""One serving engine: a batch-time model and the batch limits.

Examples
--------
>>> from llmstab.fluid_models.batch_time import Staircase
>>> e = Engine(Staircase("11.28", "35.47", 128), token_budget=512)
>>> e.request_limit
512
"""

from __future__ import annotations

from dataclasses import dataclass

from .batch_time import BatchTimeModel

__all__ = ["Engine"]


@dataclass(frozen=True)
class Engine:
    """An engine with batch time ``batch_time``, at most ``token_budget`` tokens
    (``b_max``) and at most ``max_batch_requests`` requests (``k_max``) per batch."""

    batch_time: BatchTimeModel
    token_budget: int
    max_batch_requests: int | None = None

    def __post_init__(self) -> None:
        if self.token_budget < 1:
            raise ValueError("token_budget must be at least 1")
        if self.max_batch_requests is not None and self.max_batch_requests < 1:
            raise ValueError("max_batch_requests must be at least 1")

    @property
    def request_limit(self) -> int:
        """``k_max``, or ``b_max`` when no request limit is set (it then never binds)."""
        return self.token_budget if self.max_batch_requests is None else self.max_batch_requests
