"""Exact linear algebra over the rationals, and the one way into exact numbers.

Exact arithmetic in the toolkit is :class:`fractions.Fraction` (fast, no
symbols); sympy keeps the symbolic work (equations, derivations). Numbers
cross into exact arithmetic in one place, :func:`to_fraction`: a float is read
as the shortest decimal that prints as it (``0.1`` is ``1/10``, the number a
person wrote, not the binary double nearest to it), text as the decimal or
ratio it spells, sympy rationals through their numerator and denominator.
:func:`to_rational` is the way back to sympy.

Linear systems are solved by one Gauss-Jordan elimination: :func:`solve`
returns a solution of any consistent system (free variables set to 0),
:func:`solve_square` the unique solution of a non-singular one.

Examples
--------
>>> to_fraction(0.1), to_fraction("467.5"), to_fraction("3/4")
(Fraction(1, 10), Fraction(935, 2), Fraction(3, 4))
>>> F = Fraction
>>> solve([[F(1), F(1)], [F(2), F(2)]], [F(1), F(2)])   # singular but consistent
[Fraction(1, 1), Fraction(0, 1)]
>>> solve_square([[F(1), F(1)], [F(2), F(2)]], [F(1), F(2)]) is None
True
>>> solve([[F(1), F(1)], [F(2), F(2)]], [F(1), F(3)]) is None   # inconsistent
True
"""

from __future__ import annotations

from fractions import Fraction
from typing import Sequence

__all__ = ["Exact", "to_fraction", "to_rational", "dot", "solve", "solve_square"]

Vector = Sequence[Fraction]


def _closed(name: str):
    """``Fraction.name`` returning an :class:`Exact` where Fraction returns a Fraction."""
    method = getattr(Fraction, name)

    def operator(self: "Exact", *args: object) -> object:
        result = method(self, *args)
        return Exact(result) if type(result) is Fraction else result

    operator.__name__ = name
    return operator


class Exact(Fraction):
    """An input-derived exact number: a Fraction that stays one under arithmetic with ints and Fractions.

    It takes the place sympy's ``Rational`` held in the model layer (rates,
    lengths, batch times): the same value, text and arithmetic, and, like a
    sympy ``Integer``, an integral value is an int in JSON output
    (:func:`llmstab.checkers.verdict.jsonable`). :func:`to_fraction` turns it
    into a plain Fraction (a float in JSON, as every converted number was).

    >>> x = Exact(3374) / 1000
    >>> x, str(x), type(x * 1000).__name__, type(Fraction(1, 2) + x).__name__
    (Exact(1687, 500), '1687/500', 'Exact', 'Exact')
    >>> type(to_fraction(x)).__name__
    'Fraction'
    """

    __slots__ = ()
    __add__, __radd__ = _closed("__add__"), _closed("__radd__")
    __sub__, __rsub__ = _closed("__sub__"), _closed("__rsub__")
    __mul__, __rmul__ = _closed("__mul__"), _closed("__rmul__")
    __truediv__, __rtruediv__ = _closed("__truediv__"), _closed("__rtruediv__")
    __mod__, __rmod__ = _closed("__mod__"), _closed("__rmod__")
    __pow__, __rpow__ = _closed("__pow__"), _closed("__rpow__")
    __neg__, __pos__, __abs__ = _closed("__neg__"), _closed("__pos__"), _closed("__abs__")


def to_fraction(value: object) -> Fraction:
    """``value`` as an exact (plain) Fraction.

    Ints and Fractions as they are (an :class:`Exact` as a plain Fraction);
    sympy rationals through ``p`` / ``q``; anything else (floats, numpy
    numbers, decimal or ratio text) through its text, so a float is its
    shortest decimal representation.

    >>> to_fraction(2), to_fraction(1.25), to_fraction("-1e-3"), to_fraction(Exact(1, 3))
    (Fraction(2, 1), Fraction(5, 4), Fraction(-1, 1000), Fraction(1, 3))
    """
    if type(value) is Fraction:
        return value
    if isinstance(value, Fraction):
        return Fraction(value.numerator, value.denominator)
    if isinstance(value, int):
        return Fraction(value)
    if hasattr(value, "p") and hasattr(value, "q"):  # sympy Rational / Integer
        return Fraction(int(value.p), int(value.q))
    return Fraction(str(value))


def to_rational(value: object):
    """``value`` as a sympy Rational (exactly; through :func:`to_fraction`).

    >>> to_rational(Fraction(3, 4)), to_rational(0.5)
    (3/4, 1/2)
    """
    import sympy  # symbolic callers only; the exact checks do not need it

    f = to_fraction(value)
    return sympy.Rational(f.numerator, f.denominator)


def dot(a: Vector, b: Vector) -> Fraction:
    """Exact inner product.

    >>> dot([Fraction(1, 2), Fraction(2)], [Fraction(4), Fraction(1, 4)])
    Fraction(5, 2)
    """
    return sum((x * y for x, y in zip(a, b)), Fraction(0))


def _reduce(matrix: Sequence[Vector], rhs: Vector) -> tuple[list[list[Fraction]], list[int]]:
    """Gauss-Jordan elimination of ``[matrix | rhs]``: the reduced rows and the pivot columns."""
    n_rows, n_cols = len(rhs), len(matrix[0]) if matrix else 0
    rows = [[to_fraction(v) for v in row] + [to_fraction(r)] for row, r in zip(matrix, rhs)]
    pivots: list[int] = []
    for col in range(n_cols):
        r = len(pivots)
        pivot = next((i for i in range(r, n_rows) if rows[i][col] != 0), None)
        if pivot is None:
            continue
        rows[r], rows[pivot] = rows[pivot], rows[r]
        p = rows[r][col]
        rows[r] = [x / p for x in rows[r]]
        for i in range(n_rows):
            if i != r and rows[i][col] != 0:
                f = rows[i][col]
                rows[i] = [x - f * y for x, y in zip(rows[i], rows[r])]
        pivots.append(col)
    return rows, pivots


def solve(matrix: Sequence[Vector], rhs: Vector) -> list[Fraction] | None:
    """A solution of ``matrix @ x = rhs`` (free variables 0), or ``None`` if the system is inconsistent.

    >>> solve([[Fraction(2), Fraction(0)], [Fraction(1), Fraction(1)]], [Fraction(2), Fraction(3)])
    [Fraction(1, 1), Fraction(2, 1)]
    """
    rows, pivots = _reduce(matrix, rhs)
    if any(row[-1] != 0 for row in rows[len(pivots):]):
        return None
    x = [Fraction(0)] * (len(matrix[0]) if matrix else 0)
    for row, col in zip(rows, pivots):
        x[col] = row[-1]
    return x


def solve_square(matrix: Sequence[Vector], rhs: Vector) -> list[Fraction] | None:
    """The unique solution of the square system ``matrix @ x = rhs``; ``None`` if it is singular.

    >>> solve_square([[Fraction(2), Fraction(0)], [Fraction(1), Fraction(1)]], [Fraction(2), Fraction(3)])
    [Fraction(1, 1), Fraction(2, 1)]
    """
    rows, pivots = _reduce(matrix, rhs)
    if len(pivots) < len(rhs):
        return None
    return [row[-1] for row in rows]
