r"""Li-Dai-Peng Theorem 2 and the Foster-Lyapunov drift, as sympy relations.

Symbols: ``lam`` requests per ms, ``m_p`` and ``m_d`` mean prefill and decode
tokens per request, ``b_max`` the token budget and ``t_bmax`` the time (ms) of
a full batch.

* Theorem 2(a): if ``lam (m_p + m_d) > b_max / t_bmax`` (and a full batch is the
  most efficient), the backlog diverges under every scheduler.
* Theorem 2(b): if ``lam (m_p + m_d) < b_max / t_bmax``, every work-conserving
  scheduler (K-FCFS class) is stable.
* Drift: with ``V`` = unprocessed tokens, a full batch of length ``t_bmax``
  removes ``b_max`` tokens while ``lam t_bmax`` requests bring
  ``lam t_bmax (m_p + m_d)`` tokens, so ``E[Delta V] = lam (m_p + m_d) t_bmax - b_max``.

Examples
--------
>>> values = {lam: sympy.Rational(1, 100), m_p: 100, m_d: 100, b_max: 512, t_bmax: sympy.Rational(3829, 25)}
>>> theorem_2b_condition().subs(values)
True
>>> foster_drift().subs(values)
-5142/25
>>> print(sympy.latex(theorem_2a_condition()))
\lambda \left(m_{d} + m_{p}\right) > \frac{b_{max}}{t_{b_max}}
"""

from __future__ import annotations

import sympy

from .capacity import b_max

__all__ = [
    "lam",
    "m_p",
    "m_d",
    "t_bmax",
    "token_load",
    "full_batch_capacity",
    "theorem_2a_condition",
    "theorem_2b_condition",
    "foster_drift",
]

lam = sympy.Symbol("lambda", positive=True)
m_p = sympy.Symbol("m_p", positive=True)
m_d = sympy.Symbol("m_d", positive=True)
t_bmax = sympy.Symbol("t_{b_max}", positive=True)


def token_load() -> sympy.Expr:
    """Tokens arriving per unit time: ``lam (m_p + m_d)``."""
    return lam * (m_p + m_d)


def full_batch_capacity() -> sympy.Expr:
    """Tokens served per unit time by back-to-back full batches: ``b_max / t_bmax``."""
    return b_max / t_bmax


def theorem_2a_condition() -> sympy.Rel:
    """The load under which every scheduler diverges (Theorem 2(a))."""
    return sympy.StrictGreaterThan(token_load(), full_batch_capacity(), evaluate=False)


def theorem_2b_condition() -> sympy.Rel:
    """The load under which every work-conserving scheduler is stable (Theorem 2(b))."""
    return sympy.StrictLessThan(token_load(), full_batch_capacity(), evaluate=False)


def foster_drift() -> sympy.Expr:
    """Expected change of ``V`` (unprocessed tokens) over one full batch."""
    return token_load() * t_bmax - b_max

