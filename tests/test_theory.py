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


# --- the capacity without sympy (llmstab.checkers.single_engine.capacity_of) is the sympy computation's twin ---

from llmstab.checkers.single_engine import capacity_of  # noqa: E402
from llmstab.fluid_models.batch_time import PiecewiseLinear, Staircase, Table, Tiled, TiledAttention  # noqa: E402
from llmstab.fluid_models.engine import Engine  # noqa: E402
from llmstab.theory.capacity import b, engine_capacity  # noqa: E402

coefficients = st.fractions(min_value=0, max_value=50, max_denominator=20)
positive = st.fractions(min_value=Fraction(1, 20), max_value=50, max_denominator=20)


@st.composite
def batch_time_models(draw):
    """Every family, with the edge cases sympy simplifies away (a = 0, b0 = 0 or 1, b_col = 1)."""
    family = draw(st.sampled_from(["staircase", "piecewise_linear", "tiled", "tiled_attention", "table"]))
    width = draw(st.integers(1, 300))
    if family == "staircase":
        return Staircase(c=draw(positive), a=draw(coefficients), b0=width)
    if family == "piecewise_linear":
        return PiecewiseLinear(c=draw(positive), a=draw(coefficients), b0=draw(st.integers(0, 300)))
    if family == "table":
        tokens = sorted(draw(st.sets(st.integers(1, 600), min_size=1, max_size=5)))
        return Table(tuple(tokens) + (1000,), tuple(draw(positive) for _ in range(len(tokens) + 1)))
    fields = dict(t_lin=draw(coefficients), b_col=width, t_nl=draw(coefficients), c=draw(positive))
    if family == "tiled":
        return Tiled(**fields)
    return TiledAttention(**fields, t_attn=draw(coefficients), context=draw(st.integers(0, 50)))


@settings(max_examples=60)
@given(model=batch_time_models(), budget=st.integers(1, 1000))
def test_capacity_without_sympy_equals_the_sympy_capacity(model, budget):
    """Same maximiser, same exact rates and the same candidate count (printed by ``llmstab check``)."""
    fast, symbolic = capacity_of(Engine(model, budget)), engine_capacity(model.expression(b), budget)
    assert isinstance(fast.tokens_per_ms, Fraction) and isinstance(symbolic.tokens_per_ms, sympy.Rational)
    assert (fast.best_batch, fast.full_batch_is_best, fast.candidates_checked) == (
        symbolic.best_batch, symbolic.full_batch_is_best, symbolic.candidates_checked)
    assert fast.tokens_per_ms == to_fraction(symbolic.tokens_per_ms)
    assert fast.full_batch_rate == to_fraction(symbolic.full_batch_rate)
    assert str(fast.tokens_per_ms) == str(symbolic.tokens_per_ms)


from llmstab.theory.exact_linalg import Exact  # noqa: E402

OPERATIONS = {"+": lambda x, y: x + y, "-": lambda x, y: x - y, "*": lambda x, y: x * y, "/": lambda x, y: x / y}


@settings(max_examples=100)
@given(x=small, y=small.filter(bool), op=st.sampled_from(sorted(OPERATIONS)), exact_left=st.booleans())
def test_exact_numbers_keep_their_type_and_fraction_values(x, y, op, exact_left):
    """An Exact mixed with an int or a Fraction, on either side, is an Exact of the Fraction result."""
    f, plain = OPERATIONS[op], y if exact_left else x
    for other in (plain, int(plain)) if plain == int(plain) else (plain,):
        left, right = (Exact(x), other) if exact_left else (other, Exact(y))
        result = f(left, right)
        assert type(result) is Exact and result == f(x, y)
    assert type(to_fraction(Exact(x))) is Fraction
