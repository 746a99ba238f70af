"""The explicit state of an engine and the batches a scheduler forms from it.

A state lists the resident requests in service order (arrival order on a single
engine), each with its remaining prefill tokens ``p_i`` and remaining decode
tokens ``d_i >= 1``. A request decodes only once its prefill is done
(``p_i = 0``), and then at most one token per batch.

Examples
--------
>>> s = EngineState(prefill_left=(0, 0, 3), decode_left=(2, 1, 4))
>>> s.demand
5
>>> s.max_batch_tokens(b_max=4)
4
>>> b = Batch(prefill=(0, 0, 2), decode=(1, 1, 0))
>>> b.violations(s, b_max=4)
[]
>>> b.apply(s)
EngineState(prefill_left=(0, 1), decode_left=(1, 4))
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

__all__ = ["EngineState", "Batch"]


@dataclass(frozen=True)
class EngineState:
    """Resident requests in service order: remaining prefill and decode tokens."""

    prefill_left: tuple[int, ...]
    decode_left: tuple[int, ...]

    def __post_init__(self) -> None:
        p, d = tuple(int(v) for v in self.prefill_left), tuple(int(v) for v in self.decode_left)
        if len(p) != len(d):
            raise ValueError("prefill_left and decode_left differ in length")
        if any(v < 0 for v in p) or any(v < 1 for v in d):
            raise ValueError("remaining prefill must be >= 0 and remaining decode >= 1")
        object.__setattr__(self, "prefill_left", p)
        object.__setattr__(self, "decode_left", d)

    @property
    def size(self) -> int:
        """Number of resident requests."""
        return len(self.prefill_left)

    @property
    def contributions(self) -> tuple[int, ...]:
        """Tokens each request could add to the next batch: ``p_i``, or 1 if decoding."""
        return tuple(p if p > 0 else 1 for p in self.prefill_left)

    @property
    def demand(self) -> int:
        """``sum_i (p_i + 1{p_i = 0})`` (Li-Dai-Peng, eq. 8)."""
        return sum(self.contributions)

    @property
    def unprocessed_tokens(self) -> int:
        """Total tokens still to process: the Lyapunov function ``V``."""
        return sum(self.prefill_left) + sum(self.decode_left)

    def max_batch_tokens(self, b_max: int, k_max: int | None = None) -> int:
        """The most tokens any feasible batch can take from this state.

        Without a request limit this is ``min(b_max, demand)``; with ``k_max``
        the ``k_max`` largest contributions are taken (prefill can be chunked).
        """
        contributions = sorted(self.contributions, reverse=True)
        if k_max is not None:
            contributions = contributions[:k_max]
        return min(b_max, sum(contributions))

    def arrays(self, capacity: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """The state as two int64 arrays (padded with zeros to ``capacity``)."""
        n = capacity or max(self.size, 1)
        p, d = np.zeros(n, np.int64), np.zeros(n, np.int64)
        p[: self.size], d[: self.size] = self.prefill_left, self.decode_left
        return p, d


@dataclass(frozen=True)
class Batch:
    """Tokens a batch takes from each resident request (same order as the state)."""

    prefill: tuple[int, ...]
    decode: tuple[int, ...]

    @property
    def tokens(self) -> int:
        """Total tokens in the batch."""
        return sum(self.prefill) + sum(self.decode)

    @property
    def prefill_tokens(self) -> int:
        """Prefill tokens in the batch."""
        return sum(self.prefill)

    @property
    def decode_tokens(self) -> int:
        """Decode tokens in the batch."""
        return sum(self.decode)

    @property
    def requests(self) -> int:
        """Number of requests that receive at least one token."""
        return sum(1 for p, d in zip(self.prefill, self.decode) if p or d)

    def violations(self, state: EngineState, b_max: int, k_max: int | None = None) -> list[str]:
        """The batch constraints this batch breaks in ``state`` (empty if none)."""
        problems = []
        if len(self.prefill) != state.size or len(self.decode) != state.size:
            return [f"batch covers {len(self.prefill)} requests, state has {state.size}"]
        for i, (take_p, take_d, p) in enumerate(zip(self.prefill, self.decode, state.prefill_left)):
            if take_p < 0 or take_p > p:
                problems.append(f"request {i}: {take_p} prefill tokens, {p} remain")
            if take_d not in (0, 1):
                problems.append(f"request {i}: {take_d} decode tokens in one batch")
            if take_d and p > 0:
                problems.append(f"request {i}: decodes before its prefill is done")
        if self.tokens > b_max:
            problems.append(f"{self.tokens} tokens exceed b_max = {b_max}")
        if k_max is not None and self.requests > k_max:
            problems.append(f"{self.requests} requests exceed k_max = {k_max}")
        return problems

    def apply(self, state: EngineState) -> EngineState:
        """The state after this batch; finished requests leave."""
        p = [a - b for a, b in zip(state.prefill_left, self.prefill)]
        d = [a - b for a, b in zip(state.decode_left, self.decode)]
        keep = [i for i in range(state.size) if d[i] > 0]
        return EngineState(tuple(p[i] for i in keep), tuple(d[i] for i in keep))

    def describe(self, labels: Sequence[str] | None = None) -> str:
        """The batch as ``{Ad,Bd,Cp}``: one entry per request served, ``p`` or ``d``."""
        labels = labels or [str(i) for i in range(len(self.prefill))]
        parts = [f"{labels[i]}p" if p else f"{labels[i]}d" for i, (p, d) in enumerate(zip(self.prefill, self.decode)) if p or d]
        return "{" + ",".join(parts) + "}"
