"""Linear Lyapunov functions for fluid networks, found by LP and re-verified exactly.

The approach of Bertsimas-Gamarnik-Tsitsiklis (1996) and Kumar-Meyn: look for
``V(q) = c . q`` with every ``c_k > 0`` whose drift ``c . dq/dt`` is at most
``-eps`` along *every* fluid path the disciplines allow. At almost every time a
fluid path has a set ``P`` of non-empty buffers (a *face*) and an effort vector
``u`` with ``dq/dt = alpha + sum_j u_j mu_j (e_succ(j) - e_j)`` that obeys, on that
face: ``0 <= u <= 1``; at an engine holding fluid, efforts sum to 1 and groups
after the first non-empty one get nothing; elsewhere efforts sum to at most 1;
every empty buffer stays empty (``dq_k/dt = 0``). The drift bound on a face is
the optimum of a small LP in ``u``; its LP dual turns "for all ``u``" into linear
constraints in ``c`` and dual multipliers, so one LP over all faces finds ``c``.

Faces are not enumerated one by one (``2^K`` of them). Behind an engine's first
non-empty priority group every buffer gets no effort, so whether it is empty
only adds constraints ("stays empty") to the face's LP; dropping them can only
raise the drift bound. The LP therefore runs over *covering faces*, one per
choice, at each engine, of the first non-empty group and its non-empty members
(or "the engine is empty"): every support ``P`` is covered by the one whose
choices ``P`` makes, and that covering face's constraints are a subset of
``P``'s (it is exactly the face where every buffer behind the first non-empty
group holds fluid, so no certificate is lost). With static priorities of single
buffers that is ``prod_e (1 + K_e)`` faces instead of ``2^K``: 440 for a
40-buffer two-engine re-entrant line (the Kumar-Meyn / Bertsimas-Gamarnik-
Tsitsiklis per-station form of the drift condition).

Joins fit the same frame: each input of a join gets a *sync* buffer (work that
input has finished and the others have not matched), the join passes a
throughput ``a_k``, and on a face every empty sync pins ``a_k`` to its input's
rate; at least one sync of each join is empty (a join passes the minimum of its
inputs), and faces where only syncs hold fluid are unreachable.

Verification does not trust the solver: ``c`` and the multipliers are rounded
to rationals, dual feasibility is repaired exactly through the box constraints
``u_j <= 1`` and the drift bound of every covering face is recomputed in
:class:`fractions.Fraction` arithmetic. Weak duality then proves
``c . dq/dt <= -eps`` on every covering face, hence on every face it covers, so
every fluid path drains by time ``c . q(0) / eps``, and the network is stable
(Dai 1995).

Examples
--------
>>> from llmstab.fluid_models.networks.examples import rybko_stolyar
>>> from llmstab.fluid_models.networks.fluid import FluidNetwork
>>> cert = find_linear_lyapunov(FluidNetwork.from_network(rybko_stolyar(bad=False)))
>>> cert.verified, cert.epsilon > 0, cert.faces      # 2^8 - 1 = 255 supports, 24 covering faces
(True, True, 24)
>>> find_linear_lyapunov(FluidNetwork.from_network(rybko_stolyar(bad=True))).verified
False
"""

from __future__ import annotations

import itertools
import math
import time
from dataclasses import dataclass, field
from fractions import Fraction

import numpy as np
import scipy.sparse as sp
from scipy.optimize import linprog

from llmstab.fluid_models.networks.fluid import FluidNetwork
from llmstab.fluid_models.solvers import quiet_solver
from llmstab.theory.exact_linalg import to_fraction

__all__ = ["LyapunovCertificate", "FluidLP", "find_linear_lyapunov", "verify_linear_lyapunov", "face_rows", "MAX_FACES"]

#: The LP is refused beyond this many covering faces (its size grows linearly with them).
MAX_FACES = 20_000


@dataclass(frozen=True)
class FluidLP:
    """The fluid model in the form the LP needs.

    The *state* is the ``K`` buffers followed by one *sync* buffer per input of each
    join (work an input has finished that the join's other inputs have not matched
    yet). The *flows* are the ``K`` efforts ``u_j`` followed by one throughput ``a_k``
    per join. ``rates[i]`` maps each flow to its coefficient in ``dstate_i/dt``
    (besides the constant ``alpha[i]``); ``box[v]`` bounds flow ``v``.
    """

    labels: tuple[str, ...]
    real: int
    alpha: tuple[Fraction, ...]
    rates: tuple[dict, ...]
    box: tuple[Fraction, ...]
    groups: tuple
    join_syncs: tuple[tuple[int, ...], ...]

    @classmethod
    def from_fluid(cls, fn: FluidNetwork) -> "FluidLP":
        """Buffers, syncs and flows of ``fn``: ``a_k`` feeds join buffer ``k`` and drains its
        syncs; the effort of a join input's last buffer fills that input's sync."""
        K = fn.size
        labels = list(fn.labels)
        rates: list[dict] = [dict() for _ in range(K)]
        alpha = list(fn.alpha)
        box = [Fraction(1)] * K
        join_syncs = []
        for j in range(K):
            rates[j][j] = rates[j].get(j, 0) - fn.mu[j]
            for k in fn.successors[j]:
                rates[k][j] = rates[k].get(j, 0) + fn.mu[j]
        for n, (k, preds) in enumerate(sorted(fn.joins.items())):
            a = K + n
            rates[k][a] = Fraction(1)
            syncs = []
            for j in preds:
                labels.append(f"{fn.labels[k]}<{fn.labels[j]}")
                rates.append({j: fn.mu[j], a: Fraction(-1)})
                alpha.append(Fraction(0))
                syncs.append(len(labels) - 1)
            box.append(max(fn.mu[j] for j in preds))  # a_k equals the rate of an unmatched input
            join_syncs.append(tuple(syncs))
        return cls(tuple(labels), K, tuple(alpha), tuple(rates), tuple(box), fn.groups, tuple(join_syncs))

    @property
    def size(self) -> int:
        """Number of state coordinates (buffers and syncs)."""
        return len(self.labels)

    def _engine_choices(self, gs: tuple) -> list[tuple[int | None, tuple[int, ...]]]:
        """``(g, S)``: group ``g`` is the engine's first non-empty group, ``S`` its non-empty members;
        ``(None, ())``: the engine holds no fluid."""
        out: list[tuple[int | None, tuple[int, ...]]] = [(None, ())]
        for g, grp in enumerate(gs):
            out += [(g, S) for r in range(1, len(grp) + 1) for S in itertools.combinations(grp, r)]
        return out

    def _sync_patterns(self) -> list[tuple[int, ...]]:
        """Sets of non-empty syncs in which no join has all its syncs non-empty."""
        pattern_sets = [[()]]
        for syncs in self.join_syncs:
            pattern_sets.append([P for r in range(len(syncs)) for P in itertools.combinations(syncs, r)])
        return [tuple(x for part in combo for x in part) for combo in itertools.product(*pattern_sets)]

    def face_count(self) -> int:
        """How many covering faces :meth:`faces` returns (computed without building them)."""
        per_engine = [len(self._engine_choices(gs)) for gs in self.groups]
        return (math.prod(per_engine) - 1) * len(self._sync_patterns())

    def faces(self) -> list["Face"]:
        """The covering faces (module docstring): per engine, its first non-empty group and that group's
        non-empty members, or nothing; with every sync pattern in which no join has all its syncs
        full; some buffer holds fluid."""
        out = []
        syncs = self._sync_patterns()
        for levels in itertools.product(*(self._engine_choices(gs) for gs in self.groups)):
            if all(g is None for g, _ in levels):
                continue  # faces where only syncs hold fluid are unreachable
            for positive_syncs in syncs:
                out.append(self.covering_face(levels, positive_syncs))
        return out

    def covering_face(self, levels: tuple, positive_syncs: tuple[int, ...]) -> "Face":
        """The constraints shared by every face with these per-engine ``levels`` (see :meth:`faces`):
        buffers ahead of an engine's first non-empty group, and its empty members, stay empty; buffers
        behind it get no effort, whether empty or not."""
        free: list[int] = []
        engine_rows, empty = [], []
        for gs, (level, members) in zip(self.groups, levels):
            here: list[int] = []
            for g, grp in enumerate(gs):
                if level is not None and g > level:
                    break
                here += list(grp)
                empty += [k for k in grp if k not in members]
            free += here
            engine_rows.append(({k: 1 for k in here}, Fraction(1), level is not None))
        free += list(range(self.real, len(self.box)))  # join throughputs
        empty += [i for i in range(self.real, self.size) if i not in positive_syncs]
        positive = sorted({k for _, members in levels for k in members} | set(positive_syncs))
        return Face(tuple(positive), tuple(free), self._rows(free, engine_rows, empty))

    def _rows(self, free: list[int], engine_rows: list, empty: list[int]) -> list:
        free_set = set(free)
        rows = [({v: 1}, self.box[v], False) for v in free] + engine_rows
        for i in sorted(empty):  # stays empty: its net rate is zero
            rows.append(({v: c for v, c in self.rates[i].items() if v in free_set}, -self.alpha[i], True))
        return rows

    def face(self, positive: set) -> "Face":
        """The flow constraints of the face where exactly the coordinates in ``positive`` are positive
        (one support; :meth:`faces` gives the covering faces the LP uses)."""
        free: list[int] = []
        engine_rows = []
        for gs in self.groups:
            here, eq = [], False
            for grp in gs:
                here += list(grp)
                if any(k in positive for k in grp):
                    eq = True
                    break
            free += here
            engine_rows.append(({k: 1 for k in here}, Fraction(1), eq))
        free += list(range(self.real, len(self.box)))  # join throughputs
        empty = [i for i in range(self.size) if i not in positive]
        return Face(tuple(sorted(positive)), tuple(free), self._rows(free, engine_rows, empty))

    def gains(self) -> list[dict]:
        """``g_v(c)``: the coefficient of flow ``v`` in the drift ``c . dstate/dt``, as a map on ``c``."""
        g: list[dict] = [dict() for _ in self.box]
        for i, rate in enumerate(self.rates):
            for v, coef in rate.items():
                g[v][i] = g[v].get(i, 0) + coef
        return g


@dataclass(frozen=True)
class Face:
    """The constraints on the flows on one face: ``rows`` are ``(coeffs, rhs, is_equality)``
    over the ``free`` flows (the others are 0); the first rows are the boxes of the free flows."""

    positive: tuple[int, ...]
    free: tuple[int, ...]
    rows: list = field(repr=False)


@dataclass(frozen=True)
class LyapunovCertificate:
    """A linear Lyapunov function ``V = sum_i weights[i] x_i`` over buffers (and join syncs).

    ``verified`` says the exact check passed: on every face the drift is at most
    ``-epsilon`` (an exact rational). ``lp_seconds`` and ``verify_seconds`` time
    the two stages; ``reason`` says why there is no certificate when there is none.
    """

    labels: tuple[str, ...]
    weights: tuple[Fraction, ...] | None
    epsilon: Fraction | None
    verified: bool
    faces: int
    lp_seconds: float
    verify_seconds: float = 0.0
    reason: str = ""
    worst_face: tuple[str, ...] = ()

    def drain_time(self, q0: list) -> Fraction:
        """Upper bound ``V(q0) / epsilon`` on the time any fluid path from ``q0`` (buffers only,
        syncs empty) needs to drain."""
        return sum(to_fraction(x) * w for x, w in zip(q0, self.weights)) / self.epsilon

    def to_json(self) -> dict:
        """The certificate's numbers (exact values as text)."""
        return {
            "function": "V(q) = sum_k c_k q_k",
            "weights": {lab: str(w) for lab, w in zip(self.labels, self.weights or ())},
            "epsilon": str(self.epsilon) if self.epsilon is not None else None,
            "verified_exactly": self.verified,
            "faces_checked": self.faces,
            "faces": "covering faces: per engine, its first non-empty priority group and that group's non-empty "
                     "buffers (or none); each covers every support making those choices, with a subset of its "
                     "constraints, so its drift bound holds on all of them",
            "worst_face": list(self.worst_face),
            "lp_seconds": round(self.lp_seconds, 4),
            "verify_seconds": round(self.verify_seconds, 4),
        }


def face_rows(fn: FluidNetwork, positive: set) -> Face:
    """The flow constraints of the face where exactly the buffers in ``positive`` hold fluid."""
    return FluidLP.from_fluid(fn).face(positive)


def _exact(value: object, max_denominator: int) -> Fraction:
    """A solver's float as a nearby rational: the one float-to-exact conversion of this module.

    Goes through :func:`llmstab.theory.exact_linalg.to_fraction` (the float's shortest
    decimal text), then the closest fraction with denominator at most ``max_denominator``.

    >>> _exact(0.1 + 0.2, 10**9), _exact(1 / 3, 1000)
    (Fraction(3, 10), Fraction(1, 3))
    """
    return to_fraction(float(value)).limit_denominator(max_denominator)


def _dual_lp(model: FluidLP, faces: list[Face]) -> tuple[sp.csr_matrix, list[float], list, list[int]]:
    """The LP's inequality rows over ``(c, eps, multipliers of every face)``, the multipliers' bounds
    and each face's first multiplier column (see the module docstring)."""
    n = model.size
    gains = model.gains()
    alpha = np.array([float(a) for a in model.alpha])
    rows, cols, vals, ub, bounds, offsets = [], [], [], [], [], []
    n_var, r = n + 1, 0  # c, eps
    for face in faces:
        base = n_var
        offsets.append(base)
        bounds += [(None, None) if is_eq else (0, None) for _, _, is_eq in face.rows]
        n_var += len(face.rows)
        for v in face.free:  # g_v(c) - sum_i a_iv w_i <= 0
            for i, coef in gains[v].items():
                rows.append(r); cols.append(i); vals.append(float(coef))
            for i, (coeffs, _, _) in enumerate(face.rows):
                if v in coeffs:
                    rows.append(r); cols.append(base + i); vals.append(-float(coeffs[v]))
            ub.append(0.0)
            r += 1
        for i in np.flatnonzero(alpha):  # c . alpha + b . w + eps <= 0
            rows.append(r); cols.append(int(i)); vals.append(alpha[i])
        for i, (_, rhs, _) in enumerate(face.rows):
            if rhs:
                rows.append(r); cols.append(base + i); vals.append(float(rhs))
        rows.append(r); cols.append(n); vals.append(1.0)
        ub.append(0.0)
        r += 1
    return sp.csr_matrix((vals, (rows, cols)), shape=(r, n_var)), ub, bounds, offsets


def find_linear_lyapunov(fn: FluidNetwork, min_weight: float | None = None) -> LyapunovCertificate:
    """Search a linear Lyapunov function by one LP over all faces, then verify it exactly.

    Parameters
    ----------
    fn
        The fluid network (at most :data:`MAX_FACES` covering faces).
    min_weight
        Lower bound on each buffer's weight (the weights sum to 1); default ``1e-3 / K``.
        Sync weights need only be non-negative.

    Returns
    -------
    LyapunovCertificate
        ``verified`` when the exact check passed; otherwise ``reason`` says why not.

    Examples
    --------
    >>> from llmstab.fluid_models.networks.examples import lu_kumar
    >>> find_linear_lyapunov(FluidNetwork.from_network(lu_kumar(rate=1))).reason[:32]
    'no linear Lyapunov function: bes'
    """
    model = FluidLP.from_fluid(fn)
    n, labels, count = model.size, model.labels, model.face_count()
    if count > MAX_FACES:
        return LyapunovCertificate(labels, None, None, False, 0, 0.0,
                                   reason=f"{count} covering faces (first non-empty priority group per engine): "
                                          f"the LP is limited to {MAX_FACES}")
    start = time.perf_counter()
    faces = model.faces()
    A, ub, multiplier_bounds, offsets = _dual_lp(model, faces)
    low = min_weight if min_weight is not None else 1e-3 / model.real
    bounds = [(low, None)] * model.real + [(0, None)] * (n - model.real) + [(None, float(max(fn.mu)))]
    A_eq = sp.csr_matrix((np.ones(n), (np.zeros(n), np.arange(n))), shape=(1, A.shape[1]))
    cost = np.zeros(A.shape[1])
    cost[n] = -1.0
    with quiet_solver():
        res = linprog(cost, A_ub=A, b_ub=np.array(ub), A_eq=A_eq, b_eq=[1.0], bounds=bounds + multiplier_bounds,
                      method="highs")
    lp_seconds = time.perf_counter() - start
    if res.status != 0 or -res.fun <= 0:
        why = ("LP infeasible" if res.status == 2 else
               f"best drift bound {res.fun:.3g} is not negative" if res.status == 0 else res.message)
        return LyapunovCertificate(labels, None, None, False, len(faces), lp_seconds,
                                   reason=f"no linear Lyapunov function: {why}")
    weights = tuple(_exact(v, 10**9) for v in res.x[:n])
    multipliers = [res.x[o:o + len(f.rows)] for o, f in zip(offsets, faces)]
    return verify_linear_lyapunov(model, weights, faces, multipliers, lp_seconds)


def verify_linear_lyapunov(model: FluidLP | FluidNetwork, weights: tuple[Fraction, ...], faces: list[Face],
                           multipliers: list, lp_seconds: float = 0.0) -> LyapunovCertificate:
    """Exact check of ``V = weights . x``: on each face, rational multipliers (rounded from
    ``multipliers``, repaired through the box rows) bound the drift by weak duality."""
    if isinstance(model, FluidNetwork):
        model = FluidLP.from_fluid(model)
    start = time.perf_counter()
    labels = model.labels
    if any(w <= 0 for w in weights[:model.real]) or any(w < 0 for w in weights):
        return LyapunovCertificate(labels, weights, None, False, len(faces), lp_seconds,
                                   reason="a buffer weight is not positive (or a sync weight is negative)")
    gains = model.gains()
    c_alpha = sum(w * a for w, a in zip(weights, model.alpha))
    worst, worst_face = None, ()
    for face, mult in zip(faces, multipliers):
        w = []
        for (_, _, is_eq), v in zip(face.rows, mult):
            f = _exact(v, 10**12)
            w.append(f if is_eq else max(f, Fraction(0)))
        for pos, v in enumerate(face.free):  # the first rows are the boxes of the free flows, in order
            need = sum(weights[i] * coef for i, coef in gains[v].items())
            have = sum(coeffs[v] * wi for (coeffs, _, _), wi in zip(face.rows, w) if v in coeffs)
            if have < need:
                w[pos] += need - have
        bound = c_alpha + sum(rhs * wi for (_, rhs, _), wi in zip(face.rows, w))
        if worst is None or bound > worst:
            worst, worst_face = bound, tuple(labels[i] for i in face.positive)
    seconds = time.perf_counter() - start
    ok = worst is not None and worst < 0
    return LyapunovCertificate(labels, weights, -worst if ok else None, ok, len(faces), lp_seconds, seconds,
                               "" if ok else f"exact drift bound {worst} on face {worst_face} is not negative",
                               worst_face)
