"""Capacity regions of one engine with a request limit: batch types, their reduction, the LP.

With a token budget ``b_max`` and a request limit ``k_max`` (Li-Dai-Peng,
Section 6) an engine's capacity is a region in the plane of (prefill, decode)
token rates. A *batch type* ``(x, y, j)`` is a batch of ``x`` prefill tokens
from ``j`` prefilling requests and ``y`` decode tokens (one per decoding
request), feasible when ``x + y <= b_max`` and ``y + j <= k_max``. Run back to
back it serves ``(x, y) / t(x + y)`` tokens per ms. Every scheduler's long-run
rate vector is a time average of such points (idle time is the origin), so the
region is the down-closed convex hull of the points, and "is the load inside?"
is the LP::

    minimise sum_k theta_k   s.t.   sum_k theta_k p_k >= L,  theta >= 0

whose value ``v`` gives the *margin* ``1 / v`` (the largest factor by which the
load can be scaled and stay inside).

**Which types matter.** Chunked prefill lets one request supply any chunk, so
``j = 1`` whenever ``x > 0`` (``j = ceil(x / P)`` when every prompt is at most
``P`` tokens, which only removes types no scheduler can form). Since the batch
time depends on the total ``n = x + y`` only, the types with total ``n`` lie on
one segment between two endpoints: all prefill ``(n, 0)``, and the most decodes
the request limit allows. Every other type is a convex combination of those two,
so 2 points per ``n`` describe the region exactly, and only the few on the
upper hull enter the LP (:func:`reduce_types`).

Several request classes need no more: a batch's prefill (decode) tokens can be
given to any class, so a multi-class load is inside iff its totals are.

Examples
--------
>>> from llmstab.fluid_models.batch_time import Staircase
>>> r = capacity_region(Staircase("11.28", "35.47", 128), b_max=128, k_max=100)
>>> [(str(v.prefill), str(v.decode)) for v in r.vertices]
[('0', '400/187'), ('116/187', '36/17'), ('512/187', '0')]
>>> [v.batch_type.label for v in r.vertices]
['0p+100d', '29p+99d', '128p+0d']
>>> r.exact_margin((Fraction(29 * 4, 187), Fraction(99 * 4, 187)))
Fraction(1, 1)
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from fractions import Fraction
from functools import cached_property
from typing import Sequence

import cvxpy as cp
import numpy as np

from llmstab.theory.exact_linalg import dot, to_fraction

from .batch_time import BatchTimeModel
from .solvers import quiet_solver
from .workload import Workload

__all__ = [
    "BatchType",
    "TypeTable",
    "enumerate_types",
    "reduce_types",
    "Vertex",
    "CapacityRegion",
    "capacity_region",
    "region_from_table",
    "LPSolution",
    "solve_margin_lp",
    "load_vector",
    "max_prompt_length",
]

_HULL_TOLERANCE = 1e-7


@dataclass(frozen=True)
class BatchType:
    """A batch of ``prefill`` tokens from ``prefilling`` requests plus ``decode`` decode tokens."""

    prefill: int
    decode: int
    prefilling: int

    @property
    def tokens(self) -> int:
        """Total tokens ``x + y``."""
        return self.prefill + self.decode

    @property
    def requests(self) -> int:
        """Requests in the batch ``y + j``."""
        return self.decode + self.prefilling

    @property
    def label(self) -> str:
        """``'29p+99d'``."""
        return f"{self.prefill}p+{self.decode}d"


def _min_prefilling(x: np.ndarray, max_prompt: int | None) -> np.ndarray:
    """Fewest prefilling requests that can supply ``x`` prefill tokens."""
    if max_prompt is None:
        return (x > 0).astype(np.int64)
    return -(-x // max_prompt)


@dataclass
class TypeTable:
    """Batch types as arrays (``x``, ``y``, ``j``, total ``n``) with float rates and exact points on demand."""

    model: BatchTimeModel
    b_max: int
    k_max: int | None
    max_prompt: int | None
    x: np.ndarray
    y: np.ndarray
    j: np.ndarray
    _exact_times: dict = field(default_factory=dict, repr=False)

    @cached_property
    def n(self) -> np.ndarray:
        """Total tokens of each type (computed once: exact points read it one type at a time)."""
        return self.x + self.y

    def __len__(self) -> int:
        return len(self.x)

    @cached_property
    def times(self) -> np.ndarray:
        """Float batch times (ms)."""
        table = self.model.table(self.b_max)
        return table[self.n]

    @cached_property
    def points(self) -> np.ndarray:
        """Float rate points ``(x, y) / t``, shape ``(K, 2)``, tokens per ms."""
        return np.stack([self.x / self.times, self.y / self.times], axis=1)

    def exact_time(self, n: int) -> Fraction:
        """Exact batch time of ``n`` tokens (ms)."""
        t = self._exact_times.get(n)
        if t is None:
            t = self._exact_times[n] = to_fraction(self.model.exact(n))
        return t

    def exact_point(self, k: int) -> tuple[Fraction, Fraction]:
        """Exact rate point of type ``k`` (tokens per ms)."""
        t = self.exact_time(int(self.n[k]))
        return Fraction(int(self.x[k])) / t, Fraction(int(self.y[k])) / t

    def batch_type(self, k: int) -> BatchType:
        """Type ``k`` as a :class:`BatchType`."""
        return BatchType(int(self.x[k]), int(self.y[k]), int(self.j[k]))

    def exact_max_dot(self, w: Sequence[Fraction]) -> Fraction:
        """``max_k w . p_k`` over every type, exactly.

        Types are screened in floating point; those within a relative ``1e-9``
        of the float maximum (and the float maximiser) are evaluated exactly.
        Double rounding errors here are below ``1e-13`` relative, so the screen
        never drops the exact maximiser.
        """
        wf = np.array([float(v) for v in w])
        values = self.points @ wf
        top = float(values.max()) if len(values) else 0.0
        near = np.nonzero(values >= top - 1e-9 * max(abs(top), 1.0))[0]
        return max((dot(w, self.exact_point(int(k))) for k in near), default=Fraction(0))


def enumerate_types(model: BatchTimeModel, b_max: int, k_max: int | None = None,
                    max_prompt: int | None = None, full: bool = False) -> TypeTable:
    """The batch types of an engine.

    With ``full=False`` (default), the two endpoint types of every total
    ``n = 1..b_max`` (all prefill; the most decodes allowed), which span every
    feasible type. With ``full=True`` every feasible ``(x, y)`` pair, for
    comparison (quadratic in ``b_max``).

    Examples
    --------
    >>> from llmstab.fluid_models.batch_time import Staircase
    >>> t = enumerate_types(Staircase(1, 1, 4), b_max=4, k_max=2)
    >>> [t.batch_type(k).label for k in range(len(t))]
    ['1p+0d', '0p+1d', '2p+0d', '0p+2d', '3p+0d', '2p+1d', '4p+0d', '3p+1d']
    >>> len(enumerate_types(Staircase(1, 1, 4), b_max=4, k_max=2, full=True))
    9
    """
    limit = b_max if k_max is None else k_max
    if full:
        xs, ys = [], []
        for n in range(1, b_max + 1):
            y = np.arange(0, min(n, limit) + 1)
            xs.append(n - y)
            ys.append(y)
        x, y = np.concatenate(xs), np.concatenate(ys)
        j = _min_prefilling(x, max_prompt)
        keep = y + j <= limit
        return TypeTable(model, b_max, k_max, max_prompt, x[keep], y[keep], j[keep])
    n = np.arange(1, b_max + 1, dtype=np.int64)
    # the largest y in [0, min(n, limit)] with y + j_min(n - y) <= limit (the left side grows with y)
    lo, hi = np.zeros_like(n), np.minimum(n, limit)
    feasible = _min_prefilling(n, max_prompt) <= limit  # y = 0 must fit
    while np.any(lo < hi):
        mid = (lo + hi + 1) // 2
        ok = mid + _min_prefilling(n - mid, max_prompt) <= limit
        lo, hi = np.where(ok, mid, lo), np.where(ok, hi, mid - 1)
    y_top = lo
    x = np.stack([n, n - y_top], axis=1).ravel()
    y = np.stack([np.zeros_like(n), y_top], axis=1).ravel()
    keep = np.repeat(feasible, 2) & ~np.concatenate([[False], (x[1:] == x[:-1]) & (y[1:] == y[:-1])])
    x, y = x[keep], y[keep]
    return TypeTable(model, b_max, k_max, max_prompt, x, y, _min_prefilling(x, max_prompt))


def _upper_chain(points: list[tuple]) -> list[int]:
    """Indices of the upper-right hull chain of ``points`` (exact if they are Fractions)."""
    order = sorted(range(len(points)), key=lambda i: (points[i][0], -points[i][1]))
    chain: list[int] = []
    for i in order:
        while len(chain) >= 2:
            (ox, oy), (ax, ay), (bx, by) = points[chain[-2]], points[chain[-1]], points[i]
            if (ax - ox) * (by - oy) - (ay - oy) * (bx - ox) >= 0:
                chain.pop()
            else:
                break
        chain.append(i)
    return chain


def _normals(chain: list[tuple]) -> list[tuple]:
    """Outward normals ``w >= 0`` of the chain's edges, scaled so ``w . v = 1`` on the edge."""
    normals = []
    for (ux, uy), (vx, vy) in zip(chain, chain[1:]):
        wx, wy = uy - vy, vx - ux
        scale = wx * ux + wy * uy
        normals.append((wx / scale, wy / scale))
    return normals


def reduce_types(table: TypeTable) -> np.ndarray:
    """Indices of the types that can matter: those on (or within ``1e-7`` of) the region's upper hull.

    A type strictly inside the hull of the others is a mix of them that takes
    as long and carries no more, so it never helps a load; dropping it leaves
    the region (and every LP over it) unchanged.
    """
    pts = table.points
    if len(pts) == 0:
        return np.zeros(0, dtype=np.int64)
    ix, iy = int(np.argmax(pts[:, 0])), int(np.argmax(pts[:, 1]))
    corners = [(0.0, float(pts[iy, 1])), (float(pts[ix, 0]), 0.0)]
    augmented = [tuple(p) for p in pts.tolist()] + corners
    chain = [augmented[i] for i in _upper_chain(augmented)]
    keep = {ix, iy}
    normals = np.array(_normals(chain)) if len(chain) > 1 else np.zeros((0, 2))
    if len(normals):
        reach = (pts @ normals.T).max(axis=1)
        keep |= set(np.nonzero(reach >= 1 - _HULL_TOLERANCE)[0].tolist())
    return np.array(sorted(keep), dtype=np.int64)


@dataclass(frozen=True)
class Vertex:
    """A corner of the region: an exact rate point and the batch type whose rates reach it."""

    prefill: Fraction
    decode: Fraction
    batch_type: BatchType

    @property
    def point(self) -> tuple[Fraction, Fraction]:
        """``(prefill, decode)`` tokens per ms."""
        return (self.prefill, self.decode)


@dataclass
class CapacityRegion:
    """The capacity region of one engine: its batch types, the reduced set and the exact corners."""

    table: TypeTable
    candidates: np.ndarray
    vertices: list[Vertex]
    reduction_seconds: float

    @property
    def normals(self) -> list[tuple[Fraction, Fraction]]:
        """Exact facet normals ``w`` (``w . z <= 1`` on the region), one per edge of the corner chain."""
        return _normals([v.point for v in self.vertices])

    def exact_margin(self, load: Sequence[Fraction]) -> Fraction | None:
        """The margin ``1 / max_facet w . L`` computed exactly from the corners (``None`` for a zero load)."""
        reach = max(dot(w, load) for w in self.normals) if len(self.vertices) > 1 else None
        if reach is None:
            v = self.vertices[0].point
            reach = max((l / c for l, c in zip(load, v) if c), default=Fraction(0))
        return None if reach == 0 else 1 / reach

    def candidate_points(self) -> np.ndarray:
        """Float rate points of the reduced types (LP columns)."""
        return self.table.points[self.candidates]


def capacity_region(model: BatchTimeModel, b_max: int, k_max: int | None = None,
                    max_prompt: int | None = None) -> CapacityRegion:
    """Build the region: enumerate endpoint types, reduce to the hull, find the exact corners.

    The corners (in tokens per ms) run from ``(0, max decode rate)`` to
    ``(max prefill rate, 0)``; each is labelled with a batch type that reaches it
    (for the two axis corners, the type whose other component is dropped).
    """
    start = time.perf_counter()
    table = enumerate_types(model, b_max, k_max, max_prompt)
    region = region_from_table(table)
    region.reduction_seconds = time.perf_counter() - start
    return region


def region_from_table(table: TypeTable) -> CapacityRegion:
    """The region spanned by the types of ``table`` (any set of types: all of an engine's, or a policy's)."""
    start = time.perf_counter()
    candidates = reduce_types(table)
    exact = {int(k): table.exact_point(int(k)) for k in candidates}
    ky = max(exact, key=lambda k: exact[k][1])
    kx = max(exact, key=lambda k: exact[k][0])
    items = list(exact.items())
    pts = [p for _, p in items] + [(Fraction(0), exact[ky][1]), (exact[kx][0], Fraction(0))]
    owners = [k for k, _ in items] + [ky, kx]
    vertices = [Vertex(pts[i][0], pts[i][1], table.batch_type(owners[i])) for i in _upper_chain(pts)]
    # a corner equal to its neighbour (a type already on an axis) appears once
    unique = [v for i, v in enumerate(vertices) if i == 0 or v.point != vertices[i - 1].point]
    return CapacityRegion(table, candidates, unique, time.perf_counter() - start)


@dataclass(frozen=True)
class LPSolution:
    """A float LP solution: weights per column, hyperplane ``w``, value, status and solve time."""

    theta: np.ndarray
    w: np.ndarray
    value: float
    status: str
    seconds: float


def solve_margin_lp(points: np.ndarray, load: Sequence[float], solver: str = "HIGHS") -> LPSolution:
    """Solve ``min sum theta  s.t.  points.T @ theta >= load, theta >= 0`` with cvxpy.

    The margin is ``1 / value``; ``w`` (the constraint duals) is the separating
    hyperplane. Floats only: :mod:`llmstab.checkers.region_check` re-checks exactly.

    >>> sol = solve_margin_lp(np.array([[0.0, 2.0], [1.0, 1.0], [2.0, 0.0]]), [0.5, 0.5])
    >>> round(sol.value, 6), sol.status
    (0.5, 'optimal')
    """
    pts = np.asarray(points, dtype=float)
    theta = cp.Variable(len(pts), nonneg=True)
    rows = pts.T @ theta >= np.asarray(load, dtype=float)
    problem = cp.Problem(cp.Minimize(cp.sum(theta)), [rows])
    start = time.perf_counter()
    with quiet_solver():
        problem.solve(solver=solver)
    seconds = time.perf_counter() - start
    if theta.value is None:
        return LPSolution(np.zeros(len(pts)), np.zeros(2), float("inf"), str(problem.status), seconds)
    return LPSolution(np.asarray(theta.value), np.asarray(rows.dual_value).ravel(), float(problem.value),
                      str(problem.status), seconds)


def load_vector(workload: Workload) -> tuple[Fraction, Fraction]:
    """The workload's (prefill, decode) token rates in tokens per ms, exactly (totals over classes)."""
    return to_fraction(workload.prefill_rate) / 1000, to_fraction(workload.decode_rate) / 1000


def max_prompt_length(workload: Workload | None) -> int | None:
    """The longest possible prompt over all classes, or ``None`` if some prompt is unbounded."""
    if workload is None:
        return None
    lengths = [c.prompt.max for c in workload.classes]
    return None if any(v is None for v in lengths) else max(lengths)
