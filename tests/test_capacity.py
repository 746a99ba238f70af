"""The single-engine capacity: the paper's numbers from the model, and closed form vs exact search."""

import sympy
import numpy as np
from hypothesis import given, settings, strategies as st

from llmstab.checkers.single_engine import capacity_of, capacity_summary
from llmstab.fluid_models.batch_time import PiecewiseLinear, Staircase
from llmstab.fluid_models.distributions import Deterministic
from llmstab.fluid_models.engine import Engine
from llmstab.fluid_models.workload import RequestClass, Workload
from llmstab.theory.capacity import b, engine_capacity

CODELLAMA = Engine(Staircase("11.28", "35.47", 128), token_budget=512)


def _requests_per_s(prompt, decode):
    work = Workload((RequestClass("r", 1, Deterministic(prompt), Deterministic(decode)),))
    return float(capacity_summary(capacity_of(CODELLAMA), work)["requests_per_s"])


def test_codellama_capacity_matches_the_paper():
    cap = capacity_of(CODELLAMA)
    assert cap.tokens_per_ms == sympy.Rational(512) / sympy.Rational("153.16")
    assert round(float(cap.tokens_per_ms), 3) == 3.343
    assert cap.full_batch_is_best and cap.best_batch == 512
    assert round(_requests_per_s(100, 100), 2) == 16.71
    assert round(_requests_per_s(129, 112), 2) == 13.87


@settings(max_examples=60)
@given(c=st.integers(1, 5000), a=st.integers(0, 5000), b0=st.integers(1, 64), steps=st.integers(1, 12))
def test_staircase_closed_form_agrees_with_exact_search(c, a, b0, steps):
    """b0 | b_max: the capacity is b_max / t_(b_max), as derived symbolically."""
    model = Staircase(sympy.Rational(c, 100), sympy.Rational(a, 100), b0)
    b_max = b0 * steps
    cap = engine_capacity(model.expression(b), b_max)
    closed_form = sympy.Integer(b_max) / model.exact(b_max)
    assert cap.tokens_per_ms == closed_form and cap.full_batch_is_best
    sizes = np.arange(1, b_max + 1)
    assert np.isclose((sizes / model(sizes)).max(), float(closed_form), rtol=1e-12)


@settings(max_examples=60)
@given(c=st.integers(1, 5000), a=st.integers(1, 500), b0=st.integers(0, 300), b_max=st.integers(1, 600))
def test_piecewise_linear_closed_form_agrees_with_exact_search(c, a, b0, b_max):
    """Full batch best iff b_max <= b0 or c >= a b0; otherwise b0 / c."""
    model = PiecewiseLinear(sympy.Rational(c, 10), sympy.Rational(a, 100), b0)
    cap = engine_capacity(model.expression(b), b_max)
    full_is_best = b_max <= b0 or model.c_exact >= model.a_exact * b0
    closed_form = sympy.Integer(b_max) / model.exact(b_max) if full_is_best else sympy.Integer(b0) / model.c_exact
    assert cap.tokens_per_ms == closed_form
    assert cap.full_batch_is_best == (closed_form == sympy.Integer(b_max) / model.exact(b_max))


def test_staircase_without_divisibility_can_prefer_a_smaller_batch():
    # b_max = 130 adds a whole step for 2 tokens: 128 tokens is the better batch.
    model = Staircase(10, 30, 128)
    cap = engine_capacity(model.expression(b), 130)
    assert cap.best_batch == 128 and not cap.full_batch_is_best
