"""The capacity of one engine, exactly: ``max_{1 <= b <= b_max} b / t_b``.

An engine that runs batches of ``b`` tokens back to back processes ``b / t_b``
tokens per unit time, so no scheduler beats ``max_b b / t_b`` (the batch-time
argument behind Li-Dai-Peng Theorem 2(a)). When the full batch is the most
efficient one, ``b t_{b_max} <= b_max t_b`` for every ``b``, the capacity is
``b_max / t_{b_max}`` and every work-conserving scheduler reaches it.

:func:`engine_capacity` works on a batch-time *expression* in the symbol
:data:`b` (rational coefficients, sympy); :func:`capacity_from_times` does the
same from float times, an exact evaluator and the pieces' ends, without sympy
(the check of a single engine takes that way, and imports no sympy). The module
depends on nothing else in the toolkit; sympy and the symbols ``b``, ``b_max``
are loaded on first use.

Examples
--------
>>> import sympy
>>> from llmstab.theory.capacity import b
>>> t = sympy.Rational(282, 25) + sympy.Rational(3547, 100) * sympy.ceiling(b / 128)
>>> cap = engine_capacity(t, 512)
>>> cap.best_batch, cap.tokens_per_ms, cap.full_batch_is_best
(512, 12800/3829, True)
>>> round(float(cap.tokens_per_ms), 3)
3.343
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from fractions import Fraction
from typing import TYPE_CHECKING, Any, Callable

import numpy as np

from .exact_linalg import Exact, to_fraction, to_rational

if TYPE_CHECKING:
    import sympy

__all__ = [
    "b",
    "b_max",
    "efficiency",
    "engine_capacity",
    "capacity_from_times",
    "ends_from_floors",
    "floors_of_steps",
    "piece_ends",
    "EngineCapacity",
    "staircase_full_batch_condition",
    "piecewise_linear_full_batch_condition",
]

_SCREEN_TOLERANCE = 1e-9
_MAX_CROSSINGS = 2**21  # more switch points than this: compare every screened size exactly instead
_SYMBOLS = {"b": "b", "b_max": "b_max"}
b: sympy.Symbol  # the batch size (a positive integer symbol); created on first use by __getattr__
b_max: sympy.Symbol  # the token budget


def __getattr__(name: str) -> Any:
    """The symbols :data:`b` and :data:`b_max`, created (and sympy imported) on first use."""
    if name not in _SYMBOLS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import sympy

    value = globals()[name] = sympy.Symbol(_SYMBOLS[name], positive=True, integer=True)
    return value


def _symbol(name: str) -> "sympy.Symbol":
    """:data:`b` or :data:`b_max` (for this module's own functions, which module ``__getattr__`` does not reach)."""
    return globals().get(name) or __getattr__(name)


def efficiency(batch_time: sympy.Expr) -> sympy.Expr:
    """Tokens per unit time of back-to-back batches of ``b`` tokens: ``b / t_b``.

    >>> from llmstab.theory.capacity import b
    >>> efficiency(3 + 2 * b)
    b/(2*b + 3)
    """
    return _symbol("b") / batch_time


@dataclass(frozen=True)
class EngineCapacity:
    """The exact capacity of an engine and how it was obtained.

    ``tokens_per_ms`` is ``max_b b / t_b`` (``t`` in ms), reached at
    ``best_batch`` tokens; ``full_batch_rate`` is ``b_max / t_{b_max}``;
    ``full_batch_is_best`` says whether the two agree, i.e. whether
    ``b t_{b_max} <= b_max t_b`` holds for every ``b <= b_max`` (checked exactly).
    The rates are :class:`~llmstab.theory.exact_linalg.Exact` (Fractions) from :func:`capacity_from_times`,
    sympy rationals from :func:`engine_capacity` (equal values, equal text).
    """

    token_budget: int
    best_batch: int
    tokens_per_ms: Any
    full_batch_rate: Any
    full_batch_is_best: bool
    candidates_checked: int

    @property
    def tokens_per_s(self) -> Any:
        """The capacity in tokens per second."""
        return 1000 * self.tokens_per_ms


def capacity_from_times(times: np.ndarray, exact_time: Callable[[list[int]], list[Fraction]],
                        ends: np.ndarray | None, token_budget: int) -> EngineCapacity:
    """Exact ``max_{1<=b<=token_budget} b / t_b`` from float batch times and an exact evaluator (no sympy).

    The batch sizes whose float rate ``b / times[b-1]`` lies within a relative
    ``1e-9`` of the float maximum, restricted to ``ends`` (the ends of the
    pieces on which ``t_b`` is linear; ``None``: no restriction), plus
    ``token_budget``, are compared exactly with the times ``exact_time(sizes)``
    returns (exact numbers, e.g. :class:`fractions.Fraction`).

    Parameters
    ----------
    times
        ``t_b`` in ms for ``b = 1 .. token_budget`` (floats).
    exact_time
        The exact ``t_b`` of each size in a list of sizes.
    ends
        Batch sizes on the ends of the linear pieces of ``t_b`` (see :func:`ends_from_floors`), or ``None``.
    token_budget
        ``b_max``.

    Examples
    --------
    >>> sizes = np.arange(1, 9)
    >>> cap = capacity_from_times(3 + 2 * sizes, lambda ks: [Fraction(3 + 2 * k) for k in ks], None, 8)
    >>> cap.best_batch, cap.tokens_per_ms, cap.full_batch_is_best
    (8, Exact(8, 19), True)
    """
    sizes = np.arange(1, token_budget + 1)
    rates = sizes / (np.asarray(times, dtype=float) * np.ones(token_budget))
    keep = rates >= float(np.nanmax(rates)) * (1 - _SCREEN_TOLERANCE)
    if ends is not None:
        on_an_end = np.zeros(token_budget, dtype=bool)
        on_an_end[ends - 1] = True
        keep &= on_an_end
    candidates = sorted(set(sizes[keep].tolist()) | {token_budget})
    exact = [to_fraction(t) for t in exact_time(candidates)]
    best_i = 0
    for i in range(1, len(candidates)):  # k / t_k compared by cross-multiplying; a later (larger) k wins ties
        if candidates[i] * exact[best_i] >= candidates[best_i] * exact[i]:
            best_i = i
    best_value, full = Exact(candidates[best_i] / exact[best_i]), Exact(token_budget / exact[-1])
    return EngineCapacity(token_budget=token_budget, best_batch=candidates[best_i], tokens_per_ms=best_value,
                          full_batch_rate=full, full_batch_is_best=bool(full == best_value),
                          candidates_checked=len(candidates))


def engine_capacity(batch_time: sympy.Expr, token_budget: int) -> EngineCapacity:
    """Exact ``max_{1<=b<=token_budget} b / t_b`` for a batch time ``t_b`` (ms) in the symbol ``b``.

    Every ``b`` is screened in floating point (one vectorised evaluation); the
    batch sizes within a relative ``1e-9`` of the float maximum are then
    compared exactly, in :class:`fractions.Fraction`, so the returned maximiser
    and value are exact (returned as sympy rationals). When ``t_b`` is piecewise linear in ``b`` (every
    batch-time family of the toolkit: ``ceiling``/``floor`` of a linear
    argument, ``Max``/``Min`` of linear arguments, a ``Piecewise`` of linear
    pieces) the rate ``b / t_b`` is monotone on each piece, so only the ends
    of the pieces are compared exactly: a budget of a million tokens where
    every batch size ties costs a handful of exact evaluations, not a million.
    :func:`capacity_from_times` is the same computation without sympy.

    Parameters
    ----------
    batch_time
        Expression in :data:`b` with rational coefficients, positive for ``b >= 1``.
    token_budget
        ``b_max``.

    Examples
    --------
    >>> import sympy
    >>> from llmstab.theory.capacity import b
    >>> engine_capacity(10 + 2 * sympy.Max(0, b - 4), 8).best_batch  # c > a*b0: full batch best
    8
    >>> engine_capacity(1 + 2 * sympy.Max(0, b - 4), 8).best_batch   # c < a*b0: b0 is best
    4
    >>> cap = engine_capacity(8 + 2 * sympy.Max(0, b - 4), 10**6)   # c = a*b0: every b >= b0 ties
    >>> cap.best_batch, cap.tokens_per_ms, cap.full_batch_is_best, cap.candidates_checked <= 8
    (1000000, 1/2, True, True)
    """
    import sympy

    sizes = np.arange(1, token_budget + 1)
    times = sympy.lambdify(_symbol("b"), batch_time, "numpy")(sizes)

    def exact_time(candidates: list[int]) -> list[Fraction]:
        scaled, denominator = _exact_times(batch_time, candidates)  # t_k = scaled_k / denominator
        return [Fraction(t) / denominator for t in scaled]

    cap = capacity_from_times(times, exact_time, piece_ends(batch_time, token_budget), token_budget)
    return EngineCapacity(token_budget, cap.best_batch, to_rational(cap.tokens_per_ms),
                          to_rational(cap.full_batch_rate), cap.full_batch_is_best, cap.candidates_checked)


def _fraction_printer() -> type:
    """A sympy code printer whose rational constants are :class:`fractions.Fraction` (exact arithmetic)."""
    from sympy.printing.pycode import PythonCodePrinter

    class FractionPrinter(PythonCodePrinter):
        def _print_Rational(self, expr: sympy.Rational) -> str:
            return f"Fraction({expr.p}, {expr.q})"

        def _print_Integer(self, expr: sympy.Integer) -> str:
            return f"Fraction({expr.p})"

    return FractionPrinter


def _exact_times(batch_time: sympy.Expr, sizes: list[int]) -> tuple[list, int]:
    """``(T, D)`` with ``t_k = T_k / D`` exactly for every ``k`` in ``sizes``.

    In integers, vectorised, when ``t_b`` is linear in ``b`` and in ``ceiling`` /
    ``floor`` of linear arguments (staircase, tiled); otherwise ``T_k`` are
    fractions from the expression compiled once (``D = 1``).
    """
    import sympy

    steps = _integer_steps(batch_time, sizes)
    if steps is not None:
        return steps
    compiled = sympy.lambdify(_symbol("b"), batch_time, modules=[{"Fraction": Fraction, "math": math}],
                              printer=_fraction_printer())
    return [Fraction(compiled(Fraction(k))) for k in sizes], 1


def _integer_steps(batch_time: sympy.Expr, sizes: list[int]) -> tuple[list[int], int] | None:
    """``(N, D)`` with ``t_k = N_k / D`` (integers), for ``t_b = alpha + beta b + sum_i gamma_i step_i(b)``."""
    import sympy

    b = _symbol("b")
    atoms = batch_time.atoms(sympy.ceiling, sympy.floor)
    if batch_time.atoms(sympy.Max, sympy.Min, sympy.Piecewise):
        return None
    dummies = {atom: sympy.Dummy() for atom in atoms}
    poly = batch_time.xreplace(dummies).as_poly(b, *dummies.values())
    lines = {atom: _linear(atom.args[0]) for atom in atoms}
    if poly is None or poly.total_degree() > 1 or any(line is None for line in lines.values()):
        return None
    coeff = {g: Fraction(int(c.p), int(c.q)) for g, c in zip(poly.gens, [poly.coeff_monomial(g) for g in poly.gens])
             if c.is_Rational}
    constant = poly.coeff_monomial(1)
    if len(coeff) != len(poly.gens) or not constant.is_Rational:
        return None
    denominator = math.lcm(int(constant.q), *(c.denominator for c in coeff.values()))
    k = np.array(sizes, dtype=object)
    total = k * int(coeff.get(b, 0) * denominator) + int(constant * denominator)
    for atom, (p, r) in lines.items():
        num = k * (p.numerator * r.denominator) + r.numerator * p.denominator  # p k + r = num / den
        den = p.denominator * r.denominator
        value = -((-num) // den) if isinstance(atom, sympy.ceiling) else num // den
        total = total + value * int(coeff[dummies[atom]] * denominator)
    return total.tolist(), denominator


def _linear(expr: sympy.Expr) -> tuple[Fraction, Fraction] | None:
    """``(p, r)`` with ``expr == p b + r`` (rational ``p``, ``r``), or ``None``."""
    import sympy

    poly = sympy.sympify(expr).as_poly(_symbol("b"))
    if poly is None or poly.degree() > 1 or not all(c.is_Rational for c in poly.all_coeffs()):
        return None
    coeffs = [Fraction(int(c.p), int(c.q)) for c in poly.all_coeffs()]
    return (coeffs[0], coeffs[1]) if len(coeffs) == 2 else (Fraction(0), coeffs[0])


def floors_of_steps(p: Fraction, r: Fraction, token_budget: int) -> np.ndarray | None:
    """``floor(x)`` for every ``x`` in ``[0, token_budget + 1]`` where ``p x + r`` is an integer (``p > 0``).

    The switch points of ``ceiling(p b + r)`` or ``floor(p b + r)``; ``None`` when there are more than 2^21.

    >>> floors_of_steps(Fraction(1, 4), Fraction(0), 9).tolist()
    [0, 4, 8, 12]
    """
    first, last = math.floor(r), math.ceil(p * (token_budget + 1) + r)
    if last - first > _MAX_CROSSINGS:
        return None
    # x = (k - r) / p = (k S - R) Q / (S P) with p = P/Q, r = R/S; floor by integer division
    bound = (max(abs(first), abs(last)) * r.denominator + abs(r.numerator)) * p.denominator
    ks = np.arange(first, last + 1, dtype=object if bound >= 2**62 else np.int64)
    return np.asarray((ks * r.denominator - r.numerator) * p.denominator // (p.numerator * r.denominator), dtype=np.int64)


def _switch_floors(expr: sympy.Expr, token_budget: int) -> np.ndarray | None:
    """``floor`` of every real ``b`` where a ``ceiling``/``floor``/``Max``/``Min``/``Piecewise`` of ``expr`` switches."""
    import sympy
    from sympy.core.relational import Relational

    parts: list[np.ndarray] = []
    points: list[Fraction] = []
    for atom in expr.atoms(sympy.ceiling, sympy.floor):
        line = _linear(atom.args[0])
        steps = None if line is None or line[0] <= 0 else floors_of_steps(*line, token_budget)
        if steps is None:
            return None
        parts.append(steps)
    for atom in expr.atoms(sympy.Max, sympy.Min):
        lines = [_linear(arg) for arg in atom.args]
        if any(line is None for line in lines):
            return None
        points += [(r2 - r1) / (p1 - p2) for (p1, r1), (p2, r2) in itertools.combinations(lines, 2) if p1 != p2]
    for atom in expr.atoms(sympy.Piecewise):
        for piece, condition in atom.args:
            if _linear(piece) is None:
                return None
            if condition is sympy.true:
                continue
            line = _linear(condition.lhs - condition.rhs) if isinstance(condition, Relational) else None
            if line is None:
                return None
            if line[0] != 0:
                points.append(-line[1] / line[0])
    return np.concatenate([*parts, floors_of_points(points, token_budget)])


def floors_of_points(points: list[Fraction], token_budget: int) -> np.ndarray:
    """``floor(x)`` of the switch points ``x`` (of a ``Max``, ``Min`` or ``Piecewise``) within ``2 b_max + 2`` of 0.

    >>> floors_of_points([Fraction(7, 2), Fraction(100)], 8).tolist()
    [3]
    """
    return np.array([math.floor(x) for x in points if abs(x) <= 2 * token_budget + 2], dtype=np.int64)


def ends_from_floors(floors: np.ndarray | None, token_budget: int) -> np.ndarray | None:
    """The batch sizes next to the switch points ``floors`` (each ``-1 .. +2``), with 1 and ``b_max``.

    ``None`` (no restriction: every screened size is compared exactly) when ``floors`` is ``None``.

    >>> ends_from_floors(np.array([4, 8]), 12).tolist()
    [1, 3, 4, 5, 6, 7, 8, 9, 10, 12]
    """
    if floors is None:
        return None
    ends = np.concatenate([floors + shift for shift in (-1, 0, 1, 2)] + [np.array([1, token_budget])])
    mask = np.zeros(token_budget + 1, dtype=bool)
    mask[ends[(ends >= 1) & (ends <= token_budget)]] = True
    return np.flatnonzero(mask)


def piece_ends(batch_time: sympy.Expr, token_budget: int) -> np.ndarray | None:
    """Batch sizes that include both ends of every piece on which ``batch_time`` is linear in ``b``.

    ``None`` when ``batch_time`` is not recognised as piecewise linear (then
    every screened size is compared exactly). On a piece where
    ``t_b = alpha + beta b`` the rate ``b / t_b`` is monotone (constant when
    ``alpha = 0``), so its largest maximiser over the piece is an end.

    >>> import sympy
    >>> from llmstab.theory.capacity import b
    >>> piece_ends(3 + sympy.ceiling(b / 4), 12).tolist()
    [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]
    >>> piece_ends(3 + sympy.ceiling(b / 100), 1000).size
    40
    >>> piece_ends(b ** 2, 10) is None
    True
    """
    import sympy

    b = _symbol("b")
    atoms = batch_time.atoms(sympy.ceiling, sympy.floor, sympy.Max, sympy.Min, sympy.Piecewise)
    reduced = batch_time.xreplace({atom: sympy.Dummy() for atom in atoms})
    poly = reduced.as_poly(b, *reduced.free_symbols - {b})
    if poly is None or poly.total_degree() > 1 or any(_nested(atom, atoms) for atom in atoms):
        return None
    return ends_from_floors(_switch_floors(batch_time, token_budget), token_budget)


def _nested(atom: sympy.Expr, atoms: set) -> bool:
    """Whether another switching atom sits inside ``atom`` (not read as piecewise linear)."""
    import sympy

    return any(other is not atom and other in atoms for other in sympy.preorder_traversal(atom))


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
    import sympy

    c, a, b0, k = sympy.symbols("c a b0 k", positive=True)
    rate = k * b0 / (c + a * k)
    slope = sympy.simplify(sympy.diff(rate, k))
    condition = sympy.Eq(sympy.Mod(_symbol("b_max"), b0), 0)
    return rate, slope, condition


def piecewise_linear_full_batch_condition() -> tuple[sympy.Expr, sympy.Expr, sympy.Boolean]:
    """Why a full batch is best for ``t_b = c + a max(0, b - b0)`` iff ``b_max <= b0`` or ``c >= a b0``.

    Below ``b0`` the rate ``b / c`` grows; above it the rate
    ``b / (c + a (b - b0))`` has derivative ``(c - a b0) / (c + a (b - b0))^2``,
    whose sign is that of ``c - a b0``.

    >>> import sympy
    >>> rate, slope, cond = piecewise_linear_full_batch_condition()
    >>> sympy.factor(sympy.numer(sympy.together(slope)))
    -a*b0 + c
    """
    import sympy

    c, a, b0 = sympy.symbols("c a b0", positive=True)
    b = _symbol("b")
    rate = b / (c + a * (b - b0))
    slope = sympy.simplify(sympy.diff(rate, b))
    condition = sympy.Or(_symbol("b_max") <= b0, c >= a * b0)
    return rate, slope, condition
