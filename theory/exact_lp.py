"""Exact (rational) re-checks of LP certificates for capacity regions.

A capacity region here is the down-closed convex hull of finitely many rate
points ``p_k`` (one per batch type, in tokens per ms). A load ``L`` is

* **inside** when a *primal witness* exists: weights ``theta_k >= 0`` with
  ``sum theta_k <= 1`` and ``sum theta_k p_k >= L`` componentwise (a mix of
  batch types, run ``theta_k`` of the time each, that carries the load);
* **outside** when a *dual witness* exists: a vector ``w >= 0`` with
  ``w . p_k <= 1`` for every point and ``w . L > 1``. Every scheduler's long-run
  token-rate vector is a time average of the points (idle time counts as the
  origin), so it satisfies ``w . r <= 1`` and cannot cover ``L``.

Everything here works on :class:`fractions.Fraction` (numbers enter through
:func:`llmstab.theory.exact_linalg.to_fraction`), so the verdicts do not depend
on floating-point luck.

Examples
--------
>>> F = Fraction
>>> points = [(F(0), F(2)), (F(1), F(1)), (F(2), F(0))]
>>> check_primal(points, {1: F(1, 2)}, (F(1, 2), F(1, 2))).ok
True
>>> check_dual(points, (F(1, 2), F(1, 2)), (F(2), F(1))).ok
True
>>> check_dual(points, (F(1, 2), F(1, 2)), (F(2), F(1))).value
Fraction(3, 2)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from fractions import Fraction
from typing import Iterable, Mapping, Sequence

from .exact_linalg import dot

__all__ = ["CheckResult", "check_primal", "check_dual"]

Vector = Sequence[Fraction]


@dataclass(frozen=True)
class CheckResult:
    """Outcome of an exact check.

    ``ok``: the certificate proves its claim (inside, or strictly outside);
    ``valid``: it is at least a valid bound (a feasible mix, or a hyperplane that
    every batch type satisfies), whose exact ``value`` bounds the margin;
    ``problems``: why it fails, in words.
    """

    ok: bool
    value: Fraction
    problems: list[str] = field(default_factory=list)
    valid: bool = True


def check_primal(points: Sequence[Vector], theta: Mapping[int, Fraction], load: Vector) -> CheckResult:
    """Check exactly that ``theta`` (index -> weight) is a primal witness for ``load``.

    ``value`` is ``sum theta`` (the fraction of time the mix needs; ``1/value``
    bounds the margin from below). ``valid`` when the weights are non-negative and
    cover the load; ``ok`` when moreover they fit in the time available (sum <= 1).
    """
    problems = []
    total = sum(theta.values(), Fraction(0))
    if any(t < 0 for t in theta.values()):
        problems.append("a weight is negative")
    carried = [sum((t * points[k][i] for k, t in theta.items()), Fraction(0)) for i in range(len(load))]
    for i, (c, l) in enumerate(zip(carried, load)):
        if c < l:
            problems.append(f"component {i}: the mix carries {c} < load {l}")
    valid = not problems
    if total > 1:
        problems.append(f"weights sum to {total} > 1")
    return CheckResult(not problems, total, problems, valid=valid)


def check_dual(points: Iterable[Vector], w: Vector, load: Vector) -> CheckResult:
    """Check exactly that ``w`` separates ``load`` from every point: ``w >= 0``, ``w.p <= 1``, ``w.L > 1``.

    ``value`` is ``w . load`` (``1/value`` bounds the margin from above whenever
    ``w >= 0`` and ``w . p <= 1`` hold, even when ``w . L <= 1``); ``ok`` is true
    only for a strict separation.
    """
    problems = []
    if any(v < 0 for v in w):
        problems.append("a hyperplane coefficient is negative")
    worst = max((dot(w, p) for p in points), default=Fraction(0))
    if worst > 1:
        problems.append(f"a batch type reaches w.p = {worst} > 1")
    valid = not problems
    value = dot(w, load)
    if valid and value <= 1:
        problems.append(f"w.L = {value} <= 1 does not separate")
    return CheckResult(not problems, value, problems, valid=valid)
