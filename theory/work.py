"""GPU work per request with context-dependent attention, derived in sympy and evaluated exactly.

A batch of ``n`` tokens lasts ``t(n)`` plus attention: ``k_dec`` per (decode
token x context token) and ``k_pf * c * (s + c/2)`` per prefill chunk of ``c``
tokens that starts after ``s`` tokens of its prompt. A request with prompt
``p`` and ``d`` output tokens then needs, at batches of the most efficient
size (``tau`` ms per token, ``tau = t(b*)/b*``),

``W = (p + d) * tau + k_pf * p**2 / 2 + k_dec * (d*p + d*(d-1)/2)``.

The two attention sums are derived, not typed in: the decode sum is
``sum_{k=0}^{d-1} (p + k)``, and the prefill sum telescopes, because
``c * (s + c/2) = ((s + c)**2 - s**2) / 2``, to ``p**2/2`` however the prompt
is chunked. ``E[W]`` is then linear in the moments ``E[p]``, ``E[d]``,
``E[p**2]``, ``E[p*d]``, ``E[d**2]``, and every scheduler needs at least ``W``
of GPU time per request, so ``lambda * E[W] > 1`` diverges under every
scheduler (Bari-Hegde-de Veciana's Theorem 1 has this form, ``lambda * d_a < g``),
and a work-conserving scheduler is stable below it (the drift of the
remaining work is ``lambda * E[W] - 1`` per unit time while batches are full).

Examples
--------
>>> decode_attention_sum()
d*p + d*(d - 1)/2
>>> prefill_chunks_telescope()
True
>>> import sympy
>>> expected_work(tau=sympy.Rational(1, 4), k_pf=0, k_dec=0, moments={"p": 100, "d": 10})
55/2

The checks evaluate ``E[W]`` in Fractions, without sympy
(:func:`expected_work_exact`), from the coefficients of the derived expression:

>>> expected_work_exact(tau="1/4", k_pf=0, k_dec=0, moments={"p": 100, "d": 10})
Exact(55, 2)
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any, Mapping

from .exact_linalg import Exact, to_fraction

if TYPE_CHECKING:
    import sympy

__all__ = ["p", "d", "tau", "k_pf", "k_dec", "MOMENT_NAMES", "decode_attention_sum", "prefill_chunks_telescope",
           "chunked_prefill_sum", "work_per_request", "expected_work_expression", "expected_work", "work_coefficients", "expected_work_exact", "load"]

#: The moments ``E[W]`` needs, by the monomial they are the expectation of.
MOMENT_NAMES = {(1, 0): "p", (0, 1): "d", (2, 0): "p2", (1, 1): "pd", (0, 2): "d2"}

p: sympy.Symbol  # prompt length; p, d, tau, k_pf, k_dec are created (and sympy imported) on first use
d: sympy.Symbol  # output length
tau: sympy.Symbol  # ms per token at the most efficient batch size
k_pf: sympy.Symbol  # prefill attention coefficient
k_dec: sympy.Symbol  # decode attention coefficient


@functools.cache
def _symbols() -> dict[str, Any]:
    """The module's sympy symbols, by name (public ``p d tau k_pf k_dec``; summation indices ``k s c m j``)."""
    import sympy

    names = dict(zip(("p", "d"), sympy.symbols("p d", nonnegative=True, integer=True)))
    names.update(zip(("tau", "k_pf", "k_dec"), sympy.symbols("tau k_pf k_dec", nonnegative=True)))
    names.update(zip(("_k", "_s", "_c", "_m", "_j"), sympy.symbols("k s c m j", nonnegative=True, integer=True)))
    return names


def __getattr__(name: str) -> Any:
    """The symbols ``p``, ``d``, ``tau``, ``k_pf``, ``k_dec`` (sympy is imported on first use)."""
    if name in ("p", "d", "tau", "k_pf", "k_dec"):
        return _symbols()[name]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def decode_attention_sum() -> sympy.Expr:
    """``sum_{k=0}^{d-1} (p + k)``: the contexts a request's decode tokens attend to (also its KV token-batches)."""
    import sympy

    s = _symbols()
    total = sympy.summation(s["p"] + s["_k"], (s["_k"], 0, s["d"] - 1))
    return sympy.factor_terms(sympy.expand(total) - s["d"] * s["p"]) + s["d"] * s["p"]


def prefill_chunks_telescope() -> bool:
    """Whether ``c (s + c/2) = ((s + c)^2 - s^2) / 2`` holds identically (so chunking never changes the sum)."""
    import sympy

    c, start = _symbols()["_c"], _symbols()["_s"]
    return sympy.expand(c * (start + c / 2) - ((start + c) ** 2 - start ** 2) / 2) == 0


def chunked_prefill_sum(chunks: int) -> sympy.Expr:
    """The prefill attention sum of a prompt cut into ``chunks`` equal chunks of ``c`` tokens (``p = chunks * c``).

    >>> chunked_prefill_sum(4)
    8*c**2
    """
    import sympy

    c, j = _symbols()["_c"], _symbols()["_j"]
    return sympy.simplify(sympy.summation(c * (j * c + c / 2), (j, 0, chunks - 1)))


def work_per_request() -> sympy.Expr:
    """``W(p, d)``: GPU time (ms) of one request at batches of the most efficient size."""
    s = _symbols()
    return (s["p"] + s["d"]) * s["tau"] + s["k_pf"] * s["p"] ** 2 / 2 + s["k_dec"] * decode_attention_sum()


def expected_work_expression() -> sympy.Expr:
    """``E[W]`` in moment symbols ``E_p, E_d, E_p2, E_pd, E_d2`` (linearity of expectation, monomial by monomial).

    >>> expected_work_expression()
    -E_d*k_dec/2 + E_d*tau + E_d2*k_dec/2 + E_p*tau + E_p2*k_pf/2 + E_pd*k_dec
    """
    import sympy

    poly = sympy.Poly(sympy.expand(work_per_request()), _symbols()["p"], _symbols()["d"])
    total = sympy.Integer(0)
    for (i, j), coeff in poly.terms():
        total += coeff * (sympy.Symbol(f"E_{MOMENT_NAMES[(i, j)]}") if (i, j) != (0, 0) else 1)
    return sympy.expand(total)


def expected_work(tau: object, k_pf: object, k_dec: object, moments: Mapping[str, object]) -> sympy.Rational:
    """Exact ``E[W]`` (ms) from ``tau`` (ms per token), the attention coefficients and the moments.

    ``moments`` maps ``p``, ``d`` and, when an attention coefficient is not zero,
    ``p2``, ``pd``, ``d2`` (``E[p^2]``, ``E[p d]``, ``E[d^2]``) to exact numbers.
    """
    import sympy

    s = _symbols()
    values = {s["tau"]: _exact(tau), s["k_pf"]: _exact(k_pf), s["k_dec"]: _exact(k_dec)}
    expr = expected_work_expression().subs(values)
    needed = {sym.name[2:] for sym in expr.free_symbols}
    missing = needed - set(moments)
    if missing:
        raise KeyError(f"moments needed: {sorted(missing)}")
    return sympy.Rational(expr.subs({sympy.Symbol(f"E_{k}"): _exact(moments[k]) for k in needed}))


def work_coefficients(tau: object, k_pf: object, k_dec: object) -> dict[str, Exact]:
    """The coefficient of each moment in ``E[W]`` (:func:`expected_work_expression`), exact, without sympy.

    ``E[W] = tau E[p] + (tau - k_dec/2) E[d] + k_pf/2 E[p^2] + k_dec E[p d] + k_dec/2 E[d^2]``;
    the tests check it against the derived expression.

    >>> work_coefficients(tau="0.25", k_pf=1, k_dec="1/2")
    {'p': Exact(1, 4), 'd': Exact(0, 1), 'p2': Exact(1, 2), 'pd': Exact(1, 2), 'd2': Exact(1, 4)}
    """
    t, pf, dec = (Exact(to_fraction(v)) for v in (tau, k_pf, k_dec))
    return {"p": t, "d": t - dec / 2, "p2": pf / 2, "pd": dec, "d2": dec / 2}


def expected_work_exact(tau: object, k_pf: object, k_dec: object, moments: Mapping[str, object]) -> Exact:
    """:func:`expected_work` in Fractions (no sympy): the same value, and the same moments needed.

    A moment whose coefficient is zero is not needed (``p2`` without prefill
    attention; ``pd`` and ``d2`` without decode attention).

    >>> expected_work_exact(tau=0, k_pf=0, k_dec="2e-4", moments={"p": 1, "d": 10, "pd": 1000, "d2": 110})
    Exact(21, 100)
    """
    coefficients = {k: v for k, v in work_coefficients(tau, k_pf, k_dec).items() if v}
    missing = set(coefficients) - set(moments)
    if missing:
        raise KeyError(f"moments needed: {sorted(missing)}")
    return sum((v * to_fraction(moments[k]) for k, v in coefficients.items()), Exact(0))


def load(rate_per_s: object, work_ms: object) -> sympy.Rational:
    """``lambda * E[W]``: the fraction of GPU time the traffic needs (stable below 1, divergent above).

    >>> load(2, 250)
    1/2
    """
    return _exact(rate_per_s) * _exact(work_ms) / 1000


def _exact(value: object) -> sympy.Rational:
    """A number as an exact sympy rational (a float or a string by its decimal text; a Fraction exactly)."""
    import sympy

    if isinstance(value, float):
        return sympy.Rational(repr(value))
    return sympy.Rational(value.strip()) if isinstance(value, str) else sympy.Rational(value)
