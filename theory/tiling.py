"""Tiled batch times and the bounds of Bari, Hegde and de Veciana (arXiv 2508.01002).

A batch of ``n`` tokens costs ``t(n) = t_lin ceil(n / b_col) + t_nl n`` (plus
attention, here ``t_attn * context`` per token): the linear layers run in tiles
of ``b_col`` tokens, so a batch that is not a whole number of tiles pays for
the rest of its last tile. Under *optimal tiling* (every batch fills whole
tiles) a token costs ``tau = t_lin / b_col + t_nl + t_attn * context`` ms, and a
request with ``m_p`` prompt and ``m_d`` output tokens needs
``d_a = (m_p + m_d) tau`` ms of GPU time on average.

**Theorem 1 (upper bound).** With ``g`` nodes, a load ``lambda d_a > g``
diverges under every planner and scheduler.

**Theorem 2 (RAD).** Under its assumptions (prompts are multiples of the tile
LCM ``b_lcm``; a node's memory holds ``b_col`` active requests; a uniformly
random planner), RAD is stable whenever ``lambda d_a < g``.

The numbers (:func:`per_token_time`, :func:`theorem1`,
:func:`fixed_chunk_efficiency`) are exact :class:`~llmstab.theory.exact_linalg.Exact`
fractions and need no sympy; only the symbolic forms (:func:`tiled_time`,
:func:`theorem1_condition`, in :func:`symbols`) import it, when called. The
module depends on nothing else in the toolkit but :mod:`.exact_linalg`.

Examples
--------
>>> from fractions import Fraction
>>> tau = per_token_time(t_lin=2, b_col=64, t_nl=Fraction(1, 1000))
>>> print(tau)
129/4000
>>> b = theorem1(rate_per_s=10, mean_tokens=3000, per_token_ms=tau, nodes=1)
>>> print(b.request_time_ms, b.load, b.exceeds)
387/4 387/400 False
>>> theorem1_condition().lhs
g
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .exact_linalg import Exact, to_fraction

if TYPE_CHECKING:
    import sympy

__all__ = ["symbols", "per_token_time", "tiled_time", "theorem1_condition", "Theorem1Bound", "theorem1",
           "Assumption", "theorem2_assumptions", "fixed_chunk_efficiency"]


@functools.cache
def symbols() -> dict[str, sympy.Symbol]:
    """The positive symbols of the symbolic forms, by name (sympy is imported on the first call).

    >>> sorted(symbols())
    ['b_col', 'g', 'lambda', 'm_d', 'm_p', 'n', 't_lin', 't_nl']
    """
    import sympy

    names = ("n", "t_lin", "b_col", "t_nl", "lambda", "m_p", "m_d", "g")
    return dict(zip(names, sympy.symbols(names, positive=True)))


def tiled_time() -> sympy.Expr:
    """``t(n) = t_lin ceil(n / b_col) + t_nl n`` in the symbols of :func:`symbols`.

    >>> s = symbols()
    >>> tiled_time().subs({s["n"]: 65, s["b_col"]: 64})
    2*t_lin + 65*t_nl
    """
    import sympy

    s = symbols()
    return s["t_lin"] * sympy.ceiling(s["n"] / s["b_col"]) + s["t_nl"] * s["n"]


def _exact(value: object) -> Exact:
    """``value`` as an :class:`Exact` (through :func:`to_fraction`, so a float is its decimal text)."""
    return Exact(to_fraction(value))


def per_token_time(t_lin: object, b_col: int, t_nl: object = 0, attention_per_token: object = 0) -> Exact:
    """``tau = t_lin / b_col + t_nl + attention``: ms per token when every batch fills whole tiles (exact).

    >>> per_token_time(2, 64, 0.001, "1/100")
    Exact(169, 4000)
    """
    return _exact(t_lin) / b_col + _exact(t_nl) + _exact(attention_per_token)


def theorem1_condition() -> sympy.Relational:
    """Theorem 1's necessary condition for stability, ``lambda (m_p + m_d) tau < g``, as a sympy relation.

    >>> theorem1_condition().rhs
    lambda*(m_d + m_p)*(t_nl + t_lin/b_col)
    """
    import sympy

    s = symbols()
    return sympy.StrictGreaterThan(s["g"], s["lambda"] * (s["m_p"] + s["m_d"]) * (s["t_lin"] / s["b_col"] + s["t_nl"]),
                                   evaluate=False)


@dataclass(frozen=True)
class Theorem1Bound:
    """``d_a`` (ms per request), the load ``lambda d_a`` (busy nodes needed) and whether it exceeds ``g``."""

    request_time_ms: Exact
    load: Exact
    nodes: int
    exceeds: bool

    @property
    def max_rate_per_s(self) -> Exact:
        """The largest request rate (per s) the ``g`` nodes could carry: ``1000 g / d_a``."""
        return 1000 * self.nodes / self.request_time_ms


def theorem1(rate_per_s: object, mean_tokens: object, per_token_ms: object, nodes: int = 1) -> Theorem1Bound:
    """Theorem 1 for ``nodes`` nodes: the load ``lambda d_a`` against ``g`` (exact).

    ``rate_per_s`` is ``lambda`` (requests per s), ``mean_tokens`` is
    ``m_p + m_d`` and ``per_token_ms`` is ``tau``.

    >>> theorem1(rate_per_s=20, mean_tokens=100, per_token_ms="1/4", nodes=2)
    Theorem1Bound(request_time_ms=Exact(25, 1), load=Exact(1, 2), nodes=2, exceeds=False)
    """
    if nodes < 1:
        raise ValueError("nodes must be at least 1")
    d_a = _exact(mean_tokens) * _exact(per_token_ms)
    load = _exact(rate_per_s) * d_a / 1000
    return Theorem1Bound(d_a, load, nodes, bool(load > nodes))


@dataclass(frozen=True)
class Assumption:
    """One hypothesis of Theorem 2: its name, whether it holds, and why."""

    name: str
    holds: bool
    detail: str


def theorem2_assumptions(*, b_col: int, b_lcm: int, b_max: int, k_max: int | None, overhead: object,
                         prompt_lengths: list[int] | None) -> list[Assumption]:
    """Check Theorem 2's hypotheses for RAD on one node.

    ``prompt_lengths`` is the support of the prompt distribution (``None`` when
    unbounded or unknown); ``overhead`` is a fixed per-batch time ``c`` (the
    tiled model of the theorem has none: with ``c > 0`` a one-tile decode batch
    no longer costs the same per token as a larger one).

    >>> [a.holds for a in theorem2_assumptions(b_col=64, b_lcm=128, b_max=512, k_max=None, overhead=0,
    ...                                        prompt_lengths=[128, 256])]
    [True, True, True, True]
    """
    limit = b_max if k_max is None else k_max
    bad_prompts = None if prompt_lengths is None else [p for p in prompt_lengths if p % b_lcm]
    return [
        Assumption("b_lcm is a whole number of tiles", b_lcm % b_col == 0, f"b_lcm = {b_lcm}, b_col = {b_col}"),
        Assumption("a batch holds b_col active requests and a b_lcm chunk",
                   limit >= b_col and b_max >= max(b_col, b_lcm), f"b_max = {b_max}, k_max = {k_max}"),
        Assumption("prompts are multiples of b_lcm",
                   bool(bad_prompts is not None and not bad_prompts),
                   "prompt lengths unbounded or unknown" if bad_prompts is None else
                   (f"every prompt length is a multiple of {b_lcm}" if not bad_prompts else
                    f"prompt lengths {bad_prompts[:3]} are not multiples of {b_lcm}")),
        Assumption("no fixed per-batch overhead", to_fraction(overhead) == 0, f"c = {overhead} ms"),
    ]


def fixed_chunk_efficiency(chunk: int, b_col: int, t_lin: object, t_nl: object = 0) -> Exact:
    """Capacity of batches of ``chunk`` tokens relative to whole-tile batches: ``(chunk / t(chunk)) tau``.

    >>> fixed_chunk_efficiency(96, 64, 1)
    Exact(3, 4)
    """
    t = _exact(t_lin) * (-(-chunk // b_col)) + _exact(t_nl) * chunk
    return chunk / t * per_token_time(t_lin, b_col, t_nl)
