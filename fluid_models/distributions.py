"""Token-length distributions of prompts (prefill) and outputs (decode).

Each distribution knows its exact mean and second moment (:class:`~llmstab.theory.exact_linalg.Exact`, a Fraction),
whether its support is bounded, and samples positive integers with a numpy
``Generator``. Lengths are at least 1.

Examples
--------
>>> d = Geometric(mean=112)
>>> d.mean, d.second_moment, d.bounded
(Exact(112, 1), Exact(24976, 1), False)
>>> import numpy as np
>>> Deterministic(129).sample(np.random.default_rng(0), 3)
array([129, 129, 129])
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np

from llmstab.theory.exact_linalg import Exact

from .batch_time import exact_number

__all__ = ["LengthDistribution", "Deterministic", "Geometric", "Poisson", "Uniform", "Empirical", "drawn_as_pairs",
           "product_moment"]


class LengthDistribution(ABC):
    """A distribution of token lengths on the positive integers."""

    kind: ClassVar[str]

    @property
    @abstractmethod
    def mean(self) -> Exact:
        """Exact mean length."""

    @property
    @abstractmethod
    def second_moment(self) -> Exact:
        """Exact ``E[L^2]``."""

    @property
    @abstractmethod
    def max(self) -> int | None:
        """Largest possible length, or ``None`` when unbounded."""

    @property
    def bounded(self) -> bool:
        """Whether the support is bounded."""
        return self.max is not None

    def support_up_to(self, limit: int) -> np.ndarray:
        """The lengths ``<= limit`` this distribution can draw (sorted, int64); here every ``1..limit``,
        which a family with gaps in its support narrows.

        >>> Geometric(mean=3).support_up_to(4).tolist(), Deterministic(129).support_up_to(512).tolist()
        ([1, 2, 3, 4], [129])
        """
        return np.arange(1, limit + 1, dtype=np.int64)

    @abstractmethod
    def sample(self, rng: np.random.Generator, size: int) -> np.ndarray:
        """``size`` independent lengths (int64, each at least 1)."""

    @abstractmethod
    def describe(self) -> dict:
        """The distribution as written in an input file."""


@dataclass(frozen=True)
class Deterministic(LengthDistribution):
    """Every length equals ``value``."""

    value: int
    kind: ClassVar[str] = "deterministic"

    @property
    def mean(self) -> Exact:
        return Exact(self.value)

    @property
    def second_moment(self) -> Exact:
        return Exact(self.value) ** 2

    @property
    def max(self) -> int:
        return self.value

    def sample(self, rng: np.random.Generator, size: int) -> np.ndarray:
        return np.full(size, self.value, dtype=np.int64)

    def support_up_to(self, limit: int) -> np.ndarray:
        return np.array([self.value] if self.value <= limit else [], dtype=np.int64)

    def describe(self) -> dict:
        return {"dist": self.kind, "mean": self.value}


@dataclass(frozen=True)
class _GivenMean(LengthDistribution):
    """An unbounded family fixed by its mean."""

    mean_value: object

    def __init__(self, mean: object) -> None:
        object.__setattr__(self, "mean_value", exact_number(mean))

    @property
    def mean(self) -> Exact:
        return self.mean_value

    @property
    def max(self) -> None:
        return None

    def describe(self) -> dict:
        return {"dist": self.kind, "mean": float(self.mean_value)}


@dataclass(frozen=True, init=False)
class Geometric(_GivenMean):
    """Geometric on ``{1, 2, ...}`` with the given mean (success probability ``1/mean``)."""

    kind: ClassVar[str] = "geometric"

    @property
    def second_moment(self) -> Exact:
        m = self.mean_value
        return 2 * m**2 - m  # Var = (1-p)/p^2 = m^2 - m

    def sample(self, rng: np.random.Generator, size: int) -> np.ndarray:
        return rng.geometric(1.0 / float(self.mean_value), size).astype(np.int64)


@dataclass(frozen=True, init=False)
class Poisson(_GivenMean):
    """``1 + Poisson(mean - 1)``: Poisson-shaped lengths that are never zero."""

    kind: ClassVar[str] = "poisson"

    @property
    def second_moment(self) -> Exact:
        lam = self.mean_value - 1
        return (1 + lam) ** 2 + lam

    def sample(self, rng: np.random.Generator, size: int) -> np.ndarray:
        return 1 + rng.poisson(float(self.mean_value) - 1, size).astype(np.int64)


@dataclass(frozen=True)
class Uniform(LengthDistribution):
    """Uniform on the integers ``low..high`` (both included)."""

    low: int
    high: int
    kind: ClassVar[str] = "uniform"

    @property
    def mean(self) -> Exact:
        return Exact(self.low + self.high, 2)

    @property
    def second_moment(self) -> Exact:
        n = self.high - self.low + 1
        return Exact(n * n - 1, 12) + self.mean**2

    @property
    def max(self) -> int:
        return self.high

    def sample(self, rng: np.random.Generator, size: int) -> np.ndarray:
        return rng.integers(self.low, self.high + 1, size, dtype=np.int64)

    def support_up_to(self, limit: int) -> np.ndarray:
        return np.arange(max(self.low, 1), min(self.high, limit) + 1, dtype=np.int64)

    def describe(self) -> dict:
        return {"dist": self.kind, "low": self.low, "high": self.high}


@dataclass(frozen=True)
class Empirical(LengthDistribution):
    """Lengths drawn uniformly from a finite list of observed lengths."""

    values: np.ndarray = field(repr=False)
    source: str = ""
    kind: ClassVar[str] = "empirical"

    def __post_init__(self) -> None:
        v = np.asarray(self.values, dtype=np.int64)
        if v.ndim != 1 or v.size == 0:
            raise ValueError("needs at least one length")
        if (v < 1).any():
            raise ValueError("lengths must be positive integers")
        object.__setattr__(self, "values", v)

    @property
    def mean(self) -> Exact:
        return Exact(int(self.values.sum()), self.values.size)

    @property
    def second_moment(self) -> Exact:
        return Exact(int((self.values.astype(object) ** 2).sum()), self.values.size)

    @property
    def max(self) -> int:
        return int(self.values.max())

    def support_up_to(self, limit: int) -> np.ndarray:
        return np.unique(self.values[self.values <= limit])

    def sample(self, rng: np.random.Generator, size: int) -> np.ndarray:
        return rng.choice(self.values, size)

    def describe(self) -> dict:
        return {"dist": self.kind, "file": self.source, "n": int(self.values.size), "mean": float(self.mean)}


def drawn_as_pairs(prompt: LengthDistribution, decode: LengthDistribution) -> bool:
    """Whether a request's prompt and decode lengths are drawn together, as one row of a named trace.

    True when both are :class:`Empirical` from the same trace (source ``trace:NAME``)
    with the same number of rows; otherwise the two lengths are independent.

    >>> drawn_as_pairs(Deterministic(3), Geometric(2))
    False
    """
    return (isinstance(prompt, Empirical) and isinstance(decode, Empirical) and prompt.source.startswith("trace:")
            and prompt.source == decode.source and prompt.values.size == decode.values.size)


def product_moment(prompt: LengthDistribution, decode: LengthDistribution) -> Exact:
    """Exact ``E[p * d]`` of one request's prompt and decode lengths.

    The mean of the row products when the two are drawn as pairs
    (:func:`drawn_as_pairs`), else ``E[p] * E[d]`` (independent lengths).

    >>> product_moment(Uniform(1, 3), Geometric(5))
    Exact(10, 1)
    >>> import numpy as np
    >>> p = Empirical(np.array([1, 3]), source="trace:x"); d = Empirical(np.array([2, 4]), source="trace:x")
    >>> product_moment(p, d), p.mean * d.mean
    (Exact(7, 1), Exact(6, 1))
    """
    if drawn_as_pairs(prompt, decode):
        products = prompt.values.astype(object) * decode.values.astype(object)
        return Exact(int(products.sum()), prompt.values.size)
    return prompt.mean * decode.mean
