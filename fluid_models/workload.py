"""Traffic: request classes with an arrival rate and prompt/decode length distributions.

Rates are in requests per second; token rates in tokens per second. All are exact
rationals (:class:`~llmstab.theory.exact_linalg.Exact`, a Fraction) so that a load can be compared with a capacity without rounding.

Examples
--------
>>> from llmstab.fluid_models.distributions import Deterministic
>>> w = Workload((RequestClass("chat", 14, Deterministic(129), Deterministic(112)),))
>>> w.token_rate
Exact(3374, 1)
>>> w.scaled(0.5).token_rate
Exact(1687, 1)
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from llmstab.theory.exact_linalg import Exact

from .batch_time import exact_number
from .distributions import LengthDistribution, product_moment
from .slo import SLO

__all__ = ["RequestClass", "Workload"]


@dataclass(frozen=True)
class RequestClass:
    """Requests of one kind: Poisson-rate ``rate`` (per s), prompt and output lengths, optional latency targets."""

    name: str
    rate: object
    prompt: LengthDistribution
    decode: LengthDistribution
    slo: SLO | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "rate", exact_number(self.rate))

    @property
    def tokens_per_request(self) -> Exact:
        """``m_p + m_d``: mean tokens one request needs processed."""
        return self.prompt.mean + self.decode.mean

    @property
    def token_rate(self) -> Exact:
        """``lambda (m_p + m_d)`` in tokens per second."""
        return self.rate * self.tokens_per_request

    @property
    def moments(self) -> dict[str, Exact]:
        """The length moments the work of a request depends on: ``p``, ``d`` (means), ``p2``, ``d2`` (second
        moments) and ``pd`` (``E[p d]``), exact (:data:`llmstab.theory.work.MOMENT_NAMES`).

        >>> from llmstab.fluid_models.distributions import Deterministic
        >>> RequestClass("c", 1, Deterministic(3), Deterministic(2)).moments
        {'p': Exact(3, 1), 'd': Exact(2, 1), 'p2': Exact(9, 1), 'd2': Exact(4, 1), 'pd': Exact(6, 1)}
        """
        p, d = self.prompt, self.decode
        return {"p": p.mean, "d": d.mean, "p2": p.second_moment, "d2": d.second_moment, "pd": product_moment(p, d)}

    @property
    def kv_token_batches(self) -> Exact:
        """``E[d p + d(d-1)/2]``: the KV tokens a request holds, summed over its decode batches."""
        m = self.moments
        return m["pd"] + (m["d2"] - m["d"]) / 2


@dataclass(frozen=True)
class Workload:
    """One or more request classes sharing an engine."""

    classes: tuple[RequestClass, ...]

    @property
    def rate(self) -> Exact:
        """Total request rate (per s)."""
        return sum((c.rate for c in self.classes), Exact(0))

    @property
    def token_rate(self) -> Exact:
        """Total token load (tokens per s)."""
        return sum((c.token_rate for c in self.classes), Exact(0))

    @property
    def prefill_rate(self) -> Exact:
        """Prefill tokens arriving per second."""
        return sum((c.rate * c.prompt.mean for c in self.classes), Exact(0))

    @property
    def decode_rate(self) -> Exact:
        """Decode tokens arriving per second."""
        return sum((c.rate * c.decode.mean for c in self.classes), Exact(0))

    @property
    def bounded(self) -> bool:
        """Whether every prompt and output length is bounded."""
        return all(c.prompt.bounded and c.decode.bounded for c in self.classes)

    def scaled(self, factor: object) -> "Workload":
        """The same traffic with every rate multiplied by ``factor``."""
        f = exact_number(factor)
        return Workload(tuple(replace(c, rate=c.rate * f) for c in self.classes))
