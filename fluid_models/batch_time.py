"""Batch-time models: how long one engine iteration lasts, as a function of its token count.

Every model works in milliseconds, evaluates vectorised in numpy (``model(b)``)
and exactly at one batch size (``model.exact(b)``, a :class:`fractions.Fraction`:
:class:`~llmstab.theory.exact_linalg.Exact`),
and exposes the same function as an exact sympy expression (``model.expression(b)``)
whose coefficients are rationals, so that theory can decide inequalities exactly.
sympy is imported only when an expression is asked for: the exact numbers of a
check are Fractions (:func:`exact_number`, through
:func:`llmstab.theory.exact_linalg.to_fraction`).

Examples
--------
>>> m = Staircase(c="11.28", a="35.47", b0=128)
>>> float(m(512))
153.16
>>> m.exact(512)
Exact(3829, 25)
>>> import sympy
>>> m.expression(sympy.Symbol("b", positive=True, integer=True))
3547*ceiling(b/128)/100 + 282/25
>>> m.piece_ends(512).tolist()[:6]
[1, 2, 127, 128, 129, 130]
"""

from __future__ import annotations

import sys
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from fractions import Fraction
from typing import TYPE_CHECKING, ClassVar

import numpy as np
from numpy.typing import ArrayLike

from llmstab.theory.capacity import ends_from_floors, floors_of_points, floors_of_steps
from llmstab.theory.exact_linalg import Exact, to_fraction, to_rational

from .numbers import number_from_text

if TYPE_CHECKING:
    import sympy

__all__ = [
    "BatchTimeModel",
    "Staircase",
    "PiecewiseLinear",
    "Tiled",
    "TiledAttention",
    "Table",
    "Attention",
    "exact_number",
]


def exact_number(value: object) -> Exact:
    """Return ``value`` as an exact number (:class:`~llmstab.theory.exact_linalg.Exact`, a Fraction),
    reading floats by their decimal text.

    ``0.1`` becomes ``1/10`` (not the binary double nearest to it), which is
    what a user who wrote ``0.1`` in a file meant. Ints, Fractions and sympy
    rationals are taken as they are (through
    :func:`~llmstab.theory.exact_linalg.to_fraction`); booleans, non-finite
    floats and other types are refused.

    >>> exact_number(11.28)
    Exact(282, 25)
    >>> exact_number("3/4")
    Exact(3, 4)
    """
    if isinstance(value, bool):
        raise TypeError("a boolean is not a number")
    sympy = sys.modules.get("sympy")  # a sympy number exists only if sympy was imported
    if isinstance(value, (int, np.integer, Fraction)) or (sympy is not None and isinstance(value, sympy.Rational)):
        return Exact(to_fraction(int(value) if isinstance(value, np.integer) else value))
    if isinstance(value, (float, np.floating)):
        if not np.isfinite(value):
            raise ValueError(f"{value} is not finite")
        return Exact(to_fraction(float(value)))
    if isinstance(value, str):
        return Exact(number_from_text(value))  # refuses "1/0" and "1e99999999" (a hang) with ValueError
    raise TypeError(f"{value!r} is not a number")


def _ceiling_ends(coefficient: Fraction, width: int, token_budget: int) -> np.ndarray | None:
    """:meth:`BatchTimeModel.piece_ends` of ``coefficient * ceiling(b / width)`` plus terms linear in ``b``.

    Read as sympy reads the expression: no switch at all when the coefficient
    is 0 or ``width`` is 1 (then ``ceiling(b) = b``).
    """
    if not coefficient or width == 1:
        return ends_from_floors(floors_of_points([], token_budget), token_budget)
    return ends_from_floors(floors_of_steps(Fraction(1, width), Fraction(0), token_budget), token_budget)


class BatchTimeModel(ABC):
    """Time (ms) of one iteration that processes ``b`` tokens."""

    kind: ClassVar[str]

    @abstractmethod
    def __call__(self, tokens: ArrayLike) -> np.ndarray:
        """Batch time in ms for each token count in ``tokens`` (vectorised)."""

    @abstractmethod
    def expression(self, b: sympy.Symbol) -> sympy.Expr:
        """The batch time as an exact sympy expression in the token count ``b``."""

    def exact(self, tokens: int) -> Fraction:
        """Exact batch time (ms) of a batch of ``tokens`` tokens, as a Fraction (from the expression)."""
        import sympy

        b = sympy.Symbol("b", positive=True, integer=True)
        return Exact(to_fraction(sympy.Rational(self.expression(b).subs(b, int(tokens)))))

    def table(self, b_max: int) -> np.ndarray:
        """Batch times for ``b = 0, 1, ..., b_max`` as a float array (index = tokens)."""
        return np.asarray(self(np.arange(b_max + 1)), dtype=float)

    def piece_ends(self, token_budget: int) -> np.ndarray | None:
        """The batch sizes at the ends of the pieces on which ``t_b`` is linear (``None``: not piecewise linear).

        The capacity compares only these sizes exactly
        (:func:`llmstab.theory.capacity.capacity_from_times`). By default read from
        :meth:`expression` (:func:`llmstab.theory.capacity.piece_ends`); the
        families override it with the same sizes computed without sympy.
        """
        import sympy

        from llmstab.theory.capacity import piece_ends

        return piece_ends(self.expression(sympy.Symbol("b", positive=True, integer=True)), token_budget)

    @abstractmethod
    def parameters(self) -> dict:
        """The model's parameters, as written in an input file."""


def _ceil_div(b: np.ndarray, d: int) -> np.ndarray:
    return -(-b // d)


@dataclass(frozen=True)
class _FixedPlusSteps(BatchTimeModel):
    """``t_b = c + a * s(b)``: the two Li-Dai-Peng families, which differ only in the step count ``s``."""

    c: object
    a: object
    b0: int
    c_exact: Fraction = field(init=False, repr=False, compare=False)
    a_exact: Fraction = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "c_exact", exact_number(self.c))
        object.__setattr__(self, "a_exact", exact_number(self.a))

    @abstractmethod
    def _steps(self, b: np.ndarray) -> np.ndarray:
        """``s(b)`` for integer token counts (numpy arrays or ints)."""

    @abstractmethod
    def _steps_expression(self, b: sympy.Symbol) -> sympy.Expr:
        """``s(b)`` as a sympy expression."""

    def __call__(self, tokens: ArrayLike) -> np.ndarray:
        return float(self.c_exact) + float(self.a_exact) * self._steps(np.asarray(tokens, dtype=np.int64))

    def expression(self, b: sympy.Symbol) -> sympy.Expr:
        return to_rational(self.c_exact) + to_rational(self.a_exact) * self._steps_expression(b)

    def exact(self, tokens: int) -> Fraction:
        return self.c_exact + self.a_exact * int(self._steps(np.int64(tokens)))

    def parameters(self) -> dict:
        return {"kind": self.kind, "c": self.c, "a": self.a, "b0": self.b0}


@dataclass(frozen=True)
class Staircase(_FixedPlusSteps):
    """``t_b = c + a * ceil(b / b0)`` (Li-Dai-Peng, v3)."""

    kind: ClassVar[str] = "staircase"

    def _steps(self, b: np.ndarray) -> np.ndarray:
        return _ceil_div(b, self.b0)

    def _steps_expression(self, b: sympy.Symbol) -> sympy.Expr:
        import sympy

        return sympy.ceiling(b / self.b0)

    def piece_ends(self, token_budget: int) -> np.ndarray | None:
        """The steps' ends (``ceiling(b/b0)`` is ``b`` when ``b0 = 1``; no steps when ``a = 0``).

        >>> Staircase(1, 2, 8).piece_ends(16).tolist()
        [1, 2, 7, 8, 9, 10, 15, 16]
        """
        return _ceiling_ends(self.a_exact, self.b0, token_budget)


@dataclass(frozen=True)
class PiecewiseLinear(_FixedPlusSteps):
    """``t_b = c + a * max(0, b - b0)`` (Li-Dai-Peng, v1)."""

    kind: ClassVar[str] = "piecewise_linear"

    def _steps(self, b: np.ndarray) -> np.ndarray:
        return np.maximum(0, b - self.b0)

    def _steps_expression(self, b: sympy.Symbol) -> sympy.Expr:
        import sympy

        return sympy.Max(0, b - self.b0)

    def piece_ends(self, token_budget: int) -> np.ndarray | None:
        """Around ``b0``, where ``max(0, b - b0)`` switches (it is ``b - b0`` throughout when ``b0 <= 1``).

        >>> PiecewiseLinear(1, 2, 4).piece_ends(12).tolist()
        [1, 3, 4, 5, 6, 12]
        """
        floors = floors_of_points([Fraction(self.b0)] if self.a_exact and self.b0 > 1 else [], token_budget)
        return ends_from_floors(floors, token_budget)


@dataclass(frozen=True)
class Tiled(BatchTimeModel):
    """``t_b = c + t_lin * ceil(b / b_col) + t_nl * b`` (Bari-Hegde-de Veciana).

    ``t_lin`` is the time of one tile of the linear layers, ``b_col`` the tile
    width in tokens, ``t_nl`` the per-token time of the non-linear operators and
    ``c`` a fixed per-iteration overhead (0 by default).
    """

    t_lin: object
    b_col: int
    t_nl: object = 0
    c: object = 0
    kind: ClassVar[str] = "tiled"
    t_lin_exact: Fraction = field(init=False, repr=False, compare=False)
    t_nl_exact: Fraction = field(init=False, repr=False, compare=False)
    c_exact: Fraction = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "t_lin_exact", exact_number(self.t_lin))
        object.__setattr__(self, "t_nl_exact", exact_number(self.t_nl))
        object.__setattr__(self, "c_exact", exact_number(self.c))

    def __call__(self, tokens: ArrayLike) -> np.ndarray:
        b = np.asarray(tokens, dtype=np.int64)
        return (
            float(self.c_exact)
            + float(self.t_lin_exact) * _ceil_div(b, self.b_col)
            + float(self.t_nl_exact) * b
        )

    def expression(self, b: sympy.Symbol) -> sympy.Expr:
        import sympy

        return (to_rational(self.c_exact) + to_rational(self.t_lin_exact) * sympy.ceiling(b / self.b_col)
                + to_rational(self.t_nl_exact) * b)

    def exact(self, tokens: int) -> Fraction:
        b = int(tokens)
        return self.c_exact + self.t_lin_exact * (-(-b // self.b_col)) + self.t_nl_exact * b

    def piece_ends(self, token_budget: int) -> np.ndarray | None:
        """The tiles' ends (``ceiling(b/b_col)``; the per-token terms are linear)."""
        return _ceiling_ends(self.t_lin_exact, self.b_col, token_budget)

    def parameters(self) -> dict:
        return {"kind": self.kind, "t_lin": self.t_lin, "b_col": self.b_col, "t_nl": self.t_nl, "c": self.c}


@dataclass(frozen=True)
class TiledAttention(Tiled):
    """:class:`Tiled` plus attention that grows with context: ``+ t_attn * context * b``.

    Each of the ``b`` tokens attends to about ``context`` earlier tokens (the
    mean context length of the traffic, prompt plus output so far), at
    ``t_attn`` ms per (token x context token). Keeping the context a mean
    keeps the batch time a function of the token count alone.

    >>> m = TiledAttention(t_lin=2, b_col=64, t_nl="0.001", t_attn="0.00001", context=1000)
    >>> m.exact(64) == Tiled(t_lin=2, b_col=64, t_nl="0.001").exact(64) + Fraction(64, 100)
    True
    """

    t_attn: object = 0
    context: object = 0
    kind: ClassVar[str] = "tiled"  # the same input kind, with the attention fields

    @property
    def attention_per_token(self) -> Fraction:
        """``t_attn * context``: ms of attention per token in the batch."""
        return exact_number(self.t_attn) * exact_number(self.context)

    def __call__(self, tokens: ArrayLike) -> np.ndarray:
        return super().__call__(tokens) + float(self.attention_per_token) * np.asarray(tokens, dtype=np.int64)

    def expression(self, b: sympy.Symbol) -> sympy.Expr:
        return super().expression(b) + to_rational(self.attention_per_token) * b

    def exact(self, tokens: int) -> Fraction:
        return super().exact(tokens) + self.attention_per_token * int(tokens)

    def parameters(self) -> dict:
        return {**super().parameters(), "kind": self.kind, "t_attn": self.t_attn, "context": self.context}


@dataclass(frozen=True)
class Table(BatchTimeModel):
    """Measured batch times at token counts, linearly interpolated between them.

    Below the first point the first time applies; beyond the last point the
    model is undefined (an engine whose budget exceeds the table is rejected).
    """

    tokens: tuple
    times: tuple
    kind: ClassVar[str] = "table"
    _x: np.ndarray = field(init=False, repr=False, compare=False)
    _y: np.ndarray = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        x = [int(v) for v in self.tokens]
        if len(x) < 1 or len(x) != len(self.times):
            raise ValueError("tokens and times must be non-empty and of equal length")
        if any(b >= a for a, b in zip(x[1:], x[:-1])):
            raise ValueError("tokens must be strictly increasing")
        y = [exact_number(v) for v in self.times]
        if any(v <= 0 for v in y):
            raise ValueError("times must be positive")
        object.__setattr__(self, "tokens", tuple(x))
        object.__setattr__(self, "times", tuple(y))
        object.__setattr__(self, "_x", np.array(x, dtype=float))
        object.__setattr__(self, "_y", np.array([float(v) for v in y]))

    @property
    def max_tokens(self) -> int:
        """The largest token count the table covers."""
        return self.tokens[-1]

    def __call__(self, tokens: ArrayLike) -> np.ndarray:
        return np.interp(np.asarray(tokens, dtype=float), self._x, self._y)

    def expression(self, b: sympy.Symbol) -> sympy.Expr:
        import sympy

        times = [to_rational(t) for t in self.times]
        pieces = [(times[0], b <= self.tokens[0])]
        for (x0, y0), (x1, y1) in zip(zip(self.tokens, times), zip(self.tokens[1:], times[1:])):
            pieces.append((y0 + (y1 - y0) * (b - x0) / (x1 - x0), b <= x1))
        return sympy.Piecewise(*pieces)

    def exact(self, tokens: int) -> Fraction:
        b = int(tokens)
        if b <= self.tokens[0]:
            return self.times[0]
        if b > self.tokens[-1]:
            raise ValueError(f"{b} tokens lies beyond the table (max {self.tokens[-1]})")
        i = int(np.searchsorted(self._x, b))
        x0, x1, y0, y1 = self.tokens[i - 1], self.tokens[i], self.times[i - 1], self.times[i]
        return y0 + (y1 - y0) * Fraction(b - x0, x1 - x0)

    def parameters(self) -> dict:
        return {"kind": self.kind, "tokens": list(self.tokens), "times": [str(t) for t in self.times]}


@dataclass(frozen=True)
class Attention:
    """Attention cost that grows with context, added to a family's ``t(n)``.

    ``decode`` is ms per (decode token x context token): the ``k``-th decode
    token of a request with prompt ``p`` (``k = 0 .. d-1``) costs ``decode *
    (p + k)``. ``prefill`` is ms per (prefill token x context token): a chunk
    of ``c`` tokens that starts after ``s`` tokens of its prompt already in the
    cache costs ``prefill * c * (s + c/2)``, so a whole prompt costs
    ``prefill * p**2 / 2`` however it is chunked. Coefficients are exact
    rationals (read from their decimal text).

    Examples
    --------
    >>> att = Attention(decode="1.4e-4", prefill="2e-5")
    >>> att.decode_exact
    Exact(7, 50000)
    >>> att.exact(decode_contexts=[100, 200], prefill_chunks=[(0, 64)])
    Exact(1037, 12500)
    >>> att.prompt_cost(128) == att.exact(prefill_chunks=[(0, 64), (64, 64)])
    True
    """

    decode: object = 0
    prefill: object = 0
    decode_exact: Fraction = field(init=False, repr=False, compare=False)
    prefill_exact: Fraction = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        for name in ("decode", "prefill"):
            value = exact_number(getattr(self, name))
            if value < 0:
                raise ValueError(f"attention.{name} must be >= 0, got {getattr(self, name)!r}")
            object.__setattr__(self, f"{name}_exact", value)

    def exact(self, decode_contexts: ArrayLike = (), prefill_chunks: ArrayLike = ()) -> Fraction:
        """Exact attention time (ms) of decodes at ``decode_contexts`` and chunks ``(start, size)``."""
        dec = sum(int(c) for c in decode_contexts)
        pf = sum((int(c) * (int(s) + Fraction(int(c), 2)) for s, c in prefill_chunks), Fraction(0))
        return self.decode_exact * dec + self.prefill_exact * pf

    def prompt_cost(self, prompt: int) -> Fraction:
        """Exact prefill attention (ms) of a whole prompt: ``prefill * p**2 / 2``."""
        return self.prefill_exact * Fraction(int(prompt) ** 2, 2)

    def parameters(self) -> dict:
        """The coefficients, as written in an input file."""
        return {"decode": self.decode, "prefill": self.prefill}
