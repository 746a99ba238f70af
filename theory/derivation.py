"""The symbolic derivation of one engine's capacity and drift, step by step.

Each :class:`Step` pairs a sentence with a sympy object (an expression, a
relation, or its truth value for the given numbers); ``llmstab derive`` prints
them as text or LaTeX, and the notebook shows the same steps.

Examples
--------
>>> import sympy
>>> from llmstab.theory.capacity import b
>>> t = sympy.Rational(282, 25) + sympy.Rational(3547, 100) * sympy.ceiling(b / 128)
>>> steps = single_engine_derivation(t, 512, "staircase", {"c": sympy.Rational(282, 25),
...     "a": sympy.Rational(3547, 100), "b0": 128}, token_load_per_ms=sympy.Rational(12 * 241, 1000))
>>> [s.title for s in steps][:3]
['batch time (ms)', 'tokens per ms of back-to-back b-token batches', 'rate at the end of step k (b = k b0)']
>>> steps[-1].expr < 0
True
"""

from __future__ import annotations

from dataclasses import dataclass

import sympy

from .capacity import b, b_max, efficiency, engine_capacity, piecewise_linear_full_batch_condition, staircase_full_batch_condition
from .exact_linalg import to_rational
from .theorems import foster_drift, lam, m_d, m_p, t_bmax, theorem_2a_condition, theorem_2b_condition

__all__ = ["Step", "single_engine_derivation", "render"]


@dataclass(frozen=True)
class Step:
    """One line of a derivation: what it says and the sympy object that says it."""

    title: str
    expr: sympy.Basic


# family -> (its closed-form argument, the titles of its four steps)
_FAMILY_ARGUMENTS = {
    "staircase": (staircase_full_batch_condition, (
        "rate at the end of step k (b = k b0)", "its derivative in k (positive: later steps are better)",
        "full batch is best when b0 divides b_max", "b0 divides b_max here")),
    "piecewise_linear": (piecewise_linear_full_batch_condition, (
        "rate above b0", "its derivative in b (sign of c - a b0)", "full batch is best when",
        "the condition holds here")),
}


def _family_steps(family: str | None, params: dict, token_budget: int) -> list[Step]:
    if family not in _FAMILY_ARGUMENTS:
        return []
    argument, titles = _FAMILY_ARGUMENTS[family]
    rate, slope, condition = argument()
    c, a, b0 = sympy.symbols("c a b0", positive=True)
    values = {c: params["c"], a: params["a"], b0: params["b0"], b_max: token_budget}
    return [Step(title, expr) for title, expr in zip(titles, (rate, slope, condition, condition.subs(values)))]


def single_engine_derivation(batch_time: sympy.Expr, token_budget: int, family: str | None = None,
                             params: dict | None = None, token_load_per_ms: sympy.Rational | None = None) -> list[Step]:
    """The derivation of the capacity (and, given a load, of Theorem 2 and the drift).

    Parameters
    ----------
    batch_time
        ``t_b`` in ms, an expression in :data:`llmstab.theory.capacity.b`.
    token_budget
        ``b_max``.
    family, params
        ``"staircase"`` or ``"piecewise_linear"`` with ``c``, ``a``, ``b0`` to add the
        family's closed-form argument; other families get the exact search only.
    token_load_per_ms
        ``lambda (m_p + m_d)`` in tokens per ms, to evaluate Theorem 2 and the drift.
    """
    cap = engine_capacity(batch_time, token_budget)
    steps = [
        Step("batch time (ms)", sympy.Eq(sympy.Symbol("t_b"), batch_time)),
        Step("tokens per ms of back-to-back b-token batches", efficiency(batch_time)),
        *_family_steps(family, params or {}, token_budget),
        Step(f"capacity max_b b/t_b (exact search, {cap.candidates_checked} candidate{'s' if cap.candidates_checked != 1 else ''} compared in rationals), "
             f"reached at b = {cap.best_batch}", cap.tokens_per_ms),
        Step("full-batch rate b_max/t_(b_max)", cap.full_batch_rate),
        Step("full batch is the most efficient", sympy.sympify(cap.full_batch_is_best)),
    ]
    if token_load_per_ms is not None:
        load = sympy.Symbol("L")  # lambda (m_p + m_d)
        t_full = to_rational(batch_time.subs(b, token_budget))
        values = {lam * (m_p + m_d): load}
        numbers = {load: token_load_per_ms, b_max: token_budget, t_bmax: t_full}
        steps += [
            Step("Theorem 2(a): every scheduler diverges if", theorem_2a_condition()),
            Step("... here (L = lambda (m_p + m_d))", theorem_2a_condition().subs(values).subs(numbers)),
            Step("Theorem 2(b): work-conserving schedulers are stable if", theorem_2b_condition()),
            Step("... here", theorem_2b_condition().subs(values).subs(numbers)),
            Step("Foster drift of V = unprocessed tokens per full batch", foster_drift()),
            Step("... here (tokens per batch)", foster_drift().subs(values).subs(numbers)),
        ]
    return steps


def render(steps: list[Step], latex: bool = False) -> str:
    """The steps as numbered lines of text (``latex=False``) or LaTeX."""
    if latex:
        return "\n".join(f"% {i}. {s.title}\n{sympy.latex(s.expr)}" for i, s in enumerate(steps, 1))
    return "\n".join(f"{i}. {s.title}:\n     {sympy.sstr(s.expr)}" for i, s in enumerate(steps, 1))
