"""The capacity of one engine, exactly: ``max_{1 <= b <= b_max} b / t_b``.

An engine that runs batches of ``b`` tokens back to back processes ``b / t_b``
tokens per unit time, so no scheduler beats ``max_b b / t_b`` (the batch-time
argument behind Li-Dai-Peng Theorem 2(a)). When the full batch is the most
efficient one, ``b t_{b_max} <= b_max t_b`` for every ``b``, the capacity is
``b_max / t_{b_max}`` and every work-conserving scheduler reaches it.

This module works on a batch-time *expression* in the symbol :data:`b`
(rational coefficients), so it depends on nothing else in the toolkit.

Examples
--------
>>> import sympy
>>> t = sympy.Rational(282, 25) + sympy.Rational(3547, 100) * sympy.ceiling(b / 128)
>>> cap = engine_capacity(t, 512)
>>> cap.best_batch, cap.tokens_per_ms, cap.full_batch_is_best
(512, 12800/3829, True)
>>> round(float(cap.tokens_per_ms), 3)
3.343
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import sympy

__all__ = [
    "b",
    "b_max",
    "efficiency",
    "engine_capacity",
    "EngineCapacity",
    "staircase_full_batch_condition",
    "piecewise_linear_full_batch_condition",
]

b = sympy.Symbol("b", positive=True, integer=True)
b_max = sympy.Symbol("b_max", positive=True, integer=True)

_SCREEN_TOLERANCE = 1e-9


def efficiency(batch_time: sympy.Expr) -> sympy.Expr:
    """Tokens per unit time of back-to-back batches of ``b`` tokens: ``b / t_b``.

    >>> efficiency(3 + 2 * b)
    b/(2*b + 3)
    """
    return b / batch_time


@dataclass(frozen=True)
class EngineCapacity:
    """The exact capacity of an engine and how it was obtained.

    ``tokens_per_ms`` is ``max_b b / t_b`` (``t`` in ms), reached at
    ``best_batch`` tokens; ``full_batch_rate`` is ``b_max / t_{b_max}``;
    ``full_batch_is_best`` says whether the two agree, i.e. whether
    ``b t_{b_max} <= b_max t_b`` holds for every ``b <= b_max`` (checked exactly).
    """

    token_budget: int
    best_batch: int
    tokens_per_ms: sympy.Rational
    full_batch_rate: sympy.Rational
    full_batch_is_best: bool
    candidates_checked: int

    @property
    def tokens_per_s(self) -> sympy.Rational:
        """The capacity in tokens per second."""
        return 1000 * self.tokens_per_ms


def engine_capacity(batch_time: sympy.Expr, token_budget: int) -> EngineCapacity:
    """Exact ``max_{1<=b<=token_budget} b / t_b`` for a batch time ``t_b`` (ms) in the symbol ``b``.

    Every ``b`` is screened in floating point; the batch sizes within a
    relative ``1e-9`` of the float maximum are then compared exactly in
    rationals, so the returned maximiser and value are exact.

    Parameters
    ----------
    batch_time
        Expression in :data:`b` with rational coefficients, positive for ``b >= 1``.
    token_budget
        ``b_max``.

    Examples
    --------
    >>> engine_capacity(10 + 2 * sympy.Max(0, b - 4), 8).best_batch  # c > a*b0: full batch best
    8
    >>> engine_capacity(1 + 2 * sympy.Max(0, b - 4), 8).best_batch   # c < a*b0: b0 is best
    4
    """
    sizes = np.arange(1, token_budget + 1)
    times = np.asarray(sympy.lambdify(b, batch_time, "numpy")(sizes), dtype=float) * np.ones(token_budget)
    rates = sizes / times
    top = float(np.nanmax(rates))
    candidates = sorted(set(sizes[rates >= top * (1 - _SCREEN_TOLERANCE)].tolist()) | {token_budget})
    exact = {k: sympy.Integer(k) / sympy.Rational(batch_time.subs(b, k)) for k in candidates}
    best_value = max(exact.values())
    best = max(k for k, v in exact.items() if v == best_value)  # the largest batch among ties
    full = exact[token_budget]
    return EngineCapacity(
        token_budget=token_budget,
        best_batch=best,
        tokens_per_ms=best_value,
        full_batch_rate=full,
        full_batch_is_best=bool(full == best_value),
        candidates_checked=len(candidates),
    )


def staircase_full_batch_condition() -> tuple[sympy.Expr, sympy.Expr, sympy.Boolean]:
    """Why a full batch is best for ``t_b = c + a ceil(b / b0)`` when ``b0 | b_max``.

    Returns ``(rate_at_step_end, its derivative in k, condition)``: on the step
    ``(k-1) b0 < b <= k b0`` the time is constant, so ``b / t_b`` peaks at the
    step's end ``b = k b0``, where it equals ``k b0 / (c + a k)``; its derivative
    ``b0 c / (c + a k)^2`` is positive, so the last full step wins. If
    ``b0`` divides ``b_max`` the last step ends at ``b_max``.

    >>> rate, slope, cond = staircase_full_batch_condition()
    >>> slope
    b0*c/(a*k + c)**2
    """
    c, a, b0, k = sympy.symbols("c a b0 k", positive=True)
    rate = k * b0 / (c + a * k)
    slope = sympy.simplify(sympy.diff(rate, k))
    condition = sympy.Eq(sympy.Mod(b_max, b0), 0)
    return rate, slope, condition


def piecewise_linear_full_batch_condition() -> tuple[sympy.Expr, sympy.Expr, sympy.Boolean]:
    """Why a full batch is best for ``t_b = c + a max(0, b - b0)`` iff ``b_max <= b0`` or ``c >= a b0``.

    Below ``b0`` the rate ``b / c`` grows; above it the rate
    ``b / (c + a (b - b0))`` has derivative ``(c - a b0) / (c + a (b - b0))^2``,
    whose sign is that of ``c - a b0``.

    >>> rate, slope, cond = piecewise_linear_full_batch_condition()
    >>> sympy.factor(sympy.numer(sympy.together(slope)))
    -a*b0 + c
    """
    c, a, b0 = sympy.symbols("c a b0", positive=True)
    rate = b / (c + a * (b - b0))
    slope = sympy.simplify(sympy.diff(rate, b))
    condition = sympy.Or(b_max <= b0, c >= a * b0)
    return rate, slope, condition
