"""Theorem 2 and the drift as sympy relations agree with exact arithmetic."""

import sympy
from hypothesis import given, settings, strategies as st

from llmstab.theory.theorems import foster_drift, lam, m_d, m_p, t_bmax, theorem_2a_condition, theorem_2b_condition
from llmstab.theory.capacity import b_max

rationals = st.fractions(min_value=sympy.Rational(1, 1000), max_value=1000).map(sympy.Rational)


@settings(max_examples=100)
@given(rate=rationals, mp=rationals, md=rationals, budget=st.integers(1, 8192), t=rationals)
def test_drift_sign_matches_theorem_2(rate, mp, md, budget, t):
    values = {lam: rate, m_p: mp, m_d: md, b_max: budget, t_bmax: t}
    drift = foster_drift().subs(values)
    assert bool(theorem_2b_condition().subs(values)) == (drift < 0)
    assert bool(theorem_2a_condition().subs(values)) == (drift > 0)
    assert drift == rate * (mp + md) * t - budget
