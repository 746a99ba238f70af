"""Theorem 2 and the drift as sympy relations agree with exact arithmetic."""

from fractions import Fraction

import sympy
from hypothesis import given, settings, strategies as st

from llmstab.theory.theorems import foster_drift, lam, m_d, m_p, t_bmax, theorem_2a_condition, theorem_2b_condition
from llmstab.theory.capacity import b_max
from llmstab.theory.exact_linalg import dot, solve, solve_square, to_fraction, to_rational

rationals = st.fractions(min_value=sympy.Rational(1, 1000), max_value=1000).map(sympy.Rational)


@settings(max_examples=100)
@given(rate=rationals, mp=rationals, md=rationals, budget=st.integers(1, 8192), t=rationals)
def test_drift_sign_matches_theorem_2(rate, mp, md, budget, t):
    values = {lam: rate, m_p: mp, m_d: md, b_max: budget, t_bmax: t}
    drift = foster_drift().subs(values)
    assert bool(theorem_2b_condition().subs(values)) == (drift < 0)
    assert bool(theorem_2a_condition().subs(values)) == (drift > 0)
    assert drift == rate * (mp + md) * t - budget


small = st.fractions(min_value=-20, max_value=20, max_denominator=12)


@st.composite
def systems(draw, square=False):
    rows = draw(st.integers(1, 5))
    cols = rows if square else draw(st.integers(1, 5))
    matrix = draw(st.lists(st.lists(small, min_size=cols, max_size=cols), min_size=rows, max_size=rows))
    return matrix, draw(st.lists(small, min_size=cols, max_size=cols))


@settings(max_examples=200)
@given(system=systems())
def test_solve_finds_a_solution_of_every_consistent_system(system):
    """``b = A x0`` is consistent whatever ``A`` (even singular or non-square): ``solve`` finds some ``x``
    with ``A x = b``; a right-hand side that breaks consistency is rejected."""
    matrix, x0 = system
    rhs = [dot(row, x0) for row in matrix]
    x = solve(matrix, rhs)
    assert x is not None and [dot(row, x) for row in matrix] == rhs
    assert all(isinstance(v, Fraction) for v in x)


@settings(max_examples=200)
@given(system=systems(square=True))
def test_solve_square_recovers_the_unique_solution(system):
    matrix, x0 = system
    rhs = [dot(row, x0) for row in matrix]
    singular = sympy.Matrix(matrix).det() == 0
    assert (solve_square(matrix, rhs) is None) == singular
    if not singular:
        assert solve_square(matrix, rhs) == x0


def test_inconsistent_system_has_no_solution():
    F = Fraction
    assert solve([[F(1), F(2)], [F(2), F(4)]], [F(1), F(3)]) is None


@given(x=st.floats(allow_nan=False, allow_infinity=False, width=64))
def test_to_fraction_reads_a_float_as_its_shortest_decimal(x):
    f = to_fraction(x)
    assert float(f) == x and f == Fraction(repr(x))
    assert to_fraction(sympy.Rational(f.numerator, f.denominator)) == f == to_fraction(to_rational(f))
