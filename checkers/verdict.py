"""Verdicts and the evidence that backs them.

Every decision procedure in :mod:`llmstab.checkers` returns a :class:`Verdict`: a word
from a fixed vocabulary (:data:`LOAD_VERDICTS`, :data:`POLICY_VERDICTS`) plus a
list of :class:`Evidence` items. Evidence is data, never recognised by its prose:
its ``kind`` (a theorem whose hypotheses were checked, an exact certificate, a
counterexample, a simulation, a note), the ``reference`` it cites, the pipeline
``step`` that produced it, and the numbers a reader needs to re-check it, each
exact number both as a float (``data``) and as exact text (``exact``).

Examples
--------
>>> from fractions import Fraction
>>> e = Evidence("theorem", "the load is below capacity", {"theorem": "Li-Dai-Peng Theorem 2(b)",
...                                                        "load": Fraction(1, 3)})
>>> e.reference
'Li-Dai-Peng Theorem 2(b)'
>>> e.to_json()["data"]["load"], e.to_json()["exact"]
(0.3333333333333333, {'load': '1/3'})
>>> Verdict("stable", [e]).to_json()["verdict"]
'stable'
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

__all__ = ["Evidence", "Verdict", "LOAD_VERDICTS", "POLICY_VERDICTS", "jsonable", "exact_text"]

LOAD_VERDICTS = ("stable", "unstable", "inconclusive")
POLICY_VERDICTS = ("maximally-stable", "not-maximally-stable", "inconclusive")
EVIDENCE_KINDS = ("theorem", "certificate", "counterexample", "simulation", "note")


def jsonable(value: Any) -> Any:
    """``value`` with exact numbers turned into floats (and their exact text kept where useful).

    An exact integer of the model layer (an :class:`~llmstab.theory.exact_linalg.Exact`,
    as a sympy ``Integer`` before it) stays an int; other exact rationals (plain
    Fractions, sympy rationals) become floats; other sympy objects their text.

    >>> from llmstab.theory.exact_linalg import Exact
    >>> jsonable({"a": Exact(3, 4), "b": [Exact(2), Fraction(2), 1.5, None]})
    {'a': 0.75, 'b': [2, 2.0, 1.5, None]}
    """
    if isinstance(value, bool) or value is None or isinstance(value, (str, int)):
        return value
    if isinstance(value, Fraction):
        return int(value) if type(value) is not Fraction and value.denominator == 1 else float(value)
    sympy = sys.modules.get("sympy")  # a sympy object exists only if sympy was imported
    if sympy is not None and isinstance(value, sympy.Basic):
        return _sympy_jsonable(value, sympy)
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


def _sympy_jsonable(value: Any, sympy: Any) -> Any:
    """A sympy number as an int or a float; any other sympy object as its text."""
    if isinstance(value, sympy.Integer):
        return int(value)
    if isinstance(value, (sympy.Rational, sympy.Float)):
        return float(value)
    return str(value)


def _is_rational(value: Any) -> bool:
    """Whether ``value`` is an exact rational: a Fraction or a sympy Rational."""
    sympy = sys.modules.get("sympy")
    return isinstance(value, Fraction) or (sympy is not None and isinstance(value, sympy.Rational))


def exact_text(value: Any) -> Any:
    """The exact numbers inside ``value`` as text (non-integer rationals only; ``None`` if there are none).

    Mirrors the nesting of dicts and lists, keeping only the entries that hold
    an exact number, so a reader can re-check what ``data`` shows as floats.

    >>> exact_text({"a": Fraction(3, 4), "b": 0.5, "c": [Fraction(1, 3), 2]})
    {'a': '3/4', 'c': ['1/3', None]}
    """
    if _is_rational(value):
        return None if value == int(value) else str(value)
    if isinstance(value, dict):
        out = {str(k): exact_text(v) for k, v in value.items()}
        return {k: v for k, v in out.items() if v is not None} or None
    if isinstance(value, (list, tuple)):
        out = [exact_text(v) for v in value]
        return out if any(v is not None for v in out) else None
    return None


def exact_prose(value: Any, digits: int = 12) -> str:
    """An exact rational for a sentence: ``p/q = x`` while short, else its decimal and where the exact value is.

    The JSON carries every exact number whole (:func:`exact_text`); prose keeps
    a 30-digit fraction out of a line a person reads.

    >>> exact_prose(Fraction(-3, 40)), exact_prose(Fraction(9803999773085851118, 447996239631126844837))
    ('-3/40 = -0.075', '0.02188 (exact fraction in the JSON data)')
    """
    text = str(value)
    if len(text) <= digits:
        return text if value == int(value) else f"{text} = {float(value):.4g}"
    return f"{float(value):.4g} (exact fraction in the JSON data)"


@dataclass(frozen=True)
class Evidence:
    """One piece of evidence.

    ``kind`` is one of ``theorem``, ``certificate``, ``counterexample``,
    ``simulation``, ``note``; ``summary`` says in one sentence what it shows;
    ``data`` carries the numbers (exact where they were checked exactly);
    ``reference`` is the theorem or paper relied on (taken from
    ``data["theorem"]`` when not given); ``step`` names the check-pipeline step
    that added it (:mod:`llmstab.checkers.pipeline` fills it in).
    """

    kind: str
    summary: str
    data: dict = field(default_factory=dict)
    reference: str | None = None
    step: str = ""

    def __post_init__(self) -> None:
        if self.kind not in EVIDENCE_KINDS:
            raise ValueError(f"unknown evidence kind {self.kind!r} (known: {', '.join(EVIDENCE_KINDS)})")
        if self.reference is None and isinstance(self.data.get("theorem"), str):
            object.__setattr__(self, "reference", self.data["theorem"])

    def to_json(self) -> dict:
        """A JSON-ready dict: ``data`` with floats, ``exact`` with the exact numbers as text."""
        return {"kind": self.kind, "summary": self.summary, "data": jsonable(self.data),
                "exact": exact_text(self.data) or {}, "reference": self.reference, "step": self.step}


@dataclass(frozen=True)
class Verdict:
    """A verdict word with the evidence for it."""

    verdict: str
    evidence: list[Evidence] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.verdict not in LOAD_VERDICTS + POLICY_VERDICTS:
            raise ValueError(f"unknown verdict {self.verdict!r}")

    def to_json(self) -> dict:
        """A JSON-ready dict."""
        return {"verdict": self.verdict, "evidence": [e.to_json() for e in self.evidence]}


def plural(count: int, noun: str) -> str:
    """``count`` with ``noun``, plural when ``count != 1`` (thousands separated).

    >>> plural(1, "request"), plural(12000, "batch"), plural(0, "candidate"), plural(2, "request class")
    ('1 request', '12,000 batches', '0 candidates', '2 request classes')
    """
    word = noun if count == 1 else noun + ("es" if noun.endswith(("ch", "sh", "s", "x")) else "s")
    return f"{count:,} {word}"
