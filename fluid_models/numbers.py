"""Reading a number written as text, exactly and safely.

``"3/4"``, ``"0.1"`` and ``"1.5e3"`` are read exactly (as fractions). Text whose
exact value would be enormous to build (``"1e99999999"``: reading it exactly
allocates a hundred-million-digit integer) or undefined (``"1/0"``) is refused
with a :class:`ValueError` that says why, in well under a millisecond.

Examples
--------
>>> number_from_text("3/4"), number_from_text(" 1.5e3 ")
(Fraction(3, 4), Fraction(1500, 1))
>>> number_from_text("1/0")
Traceback (most recent call last):
...
ValueError: '1/0' divides by zero
>>> number_from_text("1e99999999")
Traceback (most recent call last):
...
ValueError: '1e99999999' has an exponent beyond 400
"""

from __future__ import annotations

import re
from fractions import Fraction

__all__ = ["number_from_text", "MAX_TEXT_LENGTH", "MAX_EXPONENT"]

#: Longest number text read (characters).
MAX_TEXT_LENGTH = 64
#: Largest decimal exponent read (``1e400`` is already far beyond any limit a field allows).
MAX_EXPONENT = 400

_DECIMAL = re.compile(r"^[-+]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE]([-+]?[0-9]+))?$")
_FRACTION = re.compile(r"^[-+]?[0-9]+/[-+]?[0-9]+$")


def number_from_text(text: str) -> Fraction:
    """The exact value of a decimal (``1.5e3``) or fraction (``3/4``) written as text; ``ValueError`` otherwise."""
    stripped = text.strip()
    shown = stripped if len(stripped) <= 40 else stripped[:37] + "..."
    if len(stripped) > MAX_TEXT_LENGTH:
        raise ValueError(f"{shown!r} is longer than {MAX_TEXT_LENGTH} characters")
    decimal = _DECIMAL.match(stripped)
    if decimal is None and _FRACTION.match(stripped) is None:
        raise ValueError(f"{shown!r} is not a number")
    if decimal is not None and decimal.group(1) is not None and abs(int(decimal.group(1))) > MAX_EXPONENT:
        raise ValueError(f"{shown!r} has an exponent beyond {MAX_EXPONENT}")
    try:
        return Fraction(stripped)
    except ZeroDivisionError:
        raise ValueError(f"{shown!r} divides by zero") from None
