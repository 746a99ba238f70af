"""Verdicts and the evidence that backs them.

Every decision procedure in :mod:`checkers` returns a :class:`Verdict`: a word
from a fixed vocabulary plus a list of :class:`Evidence` items, each naming the
kind of evidence (a theorem whose hypotheses were checked, an exact
certificate, a counterexample, a simulation) with the numbers a reader needs to
re-check it.

Examples
--------
>>> v = Verdict("stable", [Evidence("theorem", "Li-Dai-Peng Theorem 2(b)", {"load": 1.0})])
>>> v.to_json()["verdict"]
'stable'
"""

from __future__ import annotations

from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

import sympy

__all__ = ["Evidence", "Verdict", "LOAD_VERDICTS", "POLICY_VERDICTS", "jsonable"]

LOAD_VERDICTS = ("stable", "unstable", "inconclusive")
POLICY_VERDICTS = ("maximally-stable", "not-maximally-stable", "inconclusive")


def jsonable(value: Any) -> Any:
    """``value`` with exact numbers turned into floats (and their exact text kept where useful)."""
    if isinstance(value, bool) or value is None or isinstance(value, (str, int)):
        return value
    if isinstance(value, (sympy.Integer,)):
        return int(value)
    if isinstance(value, (sympy.Rational, Fraction, sympy.Float)):
        return float(value)
    if isinstance(value, sympy.Basic):
        return str(value)
    if isinstance(value, float):
        return value
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if hasattr(value, "item"):  # numpy scalars
        return value.item()
    if hasattr(value, "tolist"):
        return value.tolist()
    return str(value)


@dataclass(frozen=True)
class Evidence:
    """One piece of evidence.

    ``kind`` is one of ``theorem``, ``certificate``, ``counterexample``,
    ``simulation``, ``note``; ``summary`` says in one sentence what it shows;
    ``data`` carries the numbers (exact where they were checked exactly).
    """

    kind: str
    summary: str
    data: dict = field(default_factory=dict)

    def to_json(self) -> dict:
        """A JSON-ready dict."""
        return {"kind": self.kind, "summary": self.summary, "data": jsonable(self.data)}


@dataclass(frozen=True)
class Verdict:
    """A verdict word with the evidence for it."""

    verdict: str
    evidence: list[Evidence] = field(default_factory=list)

    def to_json(self) -> dict:
        """A JSON-ready dict."""
        return {"verdict": self.verdict, "evidence": [e.to_json() for e in self.evidence]}
