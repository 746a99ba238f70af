"""The single-engine capacity: the paper's numbers from the model, and closed form vs exact search."""

import sympy
import numpy as np
from hypothesis import given, settings, strategies as st

from llmstab.checkers.single_engine import capacity_of, capacity_summary
from llmstab.fluid_models.batch_time import PiecewiseLinear, Staircase, Table, Tiled
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


def _brute_force(model, b_max):
    """The exact maximiser (largest among ties) and value of b / t_b, by evaluating every b."""
    rates = {k: sympy.Integer(k) / model.exact(k) for k in range(1, b_max + 1)}
    top = max(rates.values())
    return max(k for k, v in rates.items() if v == top), top


_MODELS = st.one_of(
    st.builds(Staircase, st.integers(1, 50).map(lambda v: sympy.Rational(v, 4)),
              st.integers(0, 50).map(lambda v: sympy.Rational(v, 4)), st.integers(1, 40)),
    st.builds(PiecewiseLinear, st.integers(1, 60).map(lambda v: sympy.Rational(v, 3)),
              st.integers(0, 20).map(lambda v: sympy.Rational(v, 3)), st.integers(0, 60)),
    st.builds(Tiled, t_lin=st.integers(1, 30).map(lambda v: sympy.Rational(v, 7)), b_col=st.integers(1, 40),
              t_nl=st.integers(0, 5).map(lambda v: sympy.Rational(v, 11)), c=st.integers(0, 20)),
    st.builds(lambda xs, ys: Table(tuple(xs), tuple(sympy.Integer(y) for y in ys)),
              st.just([1, 16, 40, 90]), st.lists(st.integers(1, 60), min_size=4, max_size=4).map(sorted)),
)


@settings(max_examples=80)
@given(model=_MODELS, b_max=st.integers(1, 90))
def test_capacity_agrees_with_evaluating_every_batch_size(model, b_max):
    """Whatever shortcut the search takes (piece ends, integer arithmetic), it finds the exact brute-force optimum."""
    cap = engine_capacity(model.expression(b), b_max)
    best, top = _brute_force(model, b_max)
    assert (cap.best_batch, cap.tokens_per_ms) == (best, top)
    assert cap.full_batch_rate == sympy.Integer(b_max) / model.exact(b_max)
    assert cap.full_batch_is_best == (cap.full_batch_rate == top)


def _alarm(seconds):
    """Raise in the test (instead of hanging the suite) if the block runs longer than ``seconds``."""
    import signal

    def _raise(signum, frame):
        raise TimeoutError(f"took more than {seconds} s")

    signal.signal(signal.SIGALRM, _raise)
    signal.alarm(seconds)


def test_a_million_tied_batch_sizes_cost_a_few_exact_evaluations():
    # c = a * b0: every batch of at least b0 tokens is exactly as efficient (it took 27 minutes, one sympy
    # evaluation per tied size); the largest tied batch is the full one.
    import signal

    _alarm(120)  # a guard against the old behaviour, not a speed measurement (benchmarks/bench_hostile_input.py)
    try:
        cap = engine_capacity(PiecewiseLinear(8, 2, 4).expression(b), 10**6)
        tiled = engine_capacity(Tiled(t_lin=sympy.Rational(1, 3), b_col=3, t_nl=sympy.Rational(1, 7), c=0)
                                .expression(b), 2**20)
    finally:
        signal.alarm(0)
    assert (cap.best_batch, cap.tokens_per_ms, cap.full_batch_is_best) == (10**6, sympy.Rational(1, 2), True)
    assert cap.candidates_checked <= 8
    # every tile end ties at b_col / (t_lin + t_nl b_col); the largest tile end below b_max wins
    assert tiled.best_batch == 2**20 - 1 and tiled.tokens_per_ms == sympy.Rational(63, 16)
