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

Verification does not trust the solver: ``c`` and the multipliers are rounded
to rationals, dual feasibility is repaired exactly through the box constraints
``u_j <= 1`` and the drift bound of every face is recomputed in
:class:`fractions.Fraction` arithmetic. Weak duality then proves
``c . dq/dt <= -eps`` on every face, so every fluid path drains by time
``c . q(0) / eps``, and the network is stable (Dai 1995).

Examples
--------
>>> from fluid_models.network_examples import rybko_stolyar
>>> from fluid_models.fluid_network import FluidNetwork
>>> cert = find_linear_lyapunov(FluidNetwork.from_network(rybko_stolyar(bad=False)))
>>> cert.verified, cert.epsilon > 0, cert.faces
(True, True, 255)
>>> find_linear_lyapunov(FluidNetwork.from_network(rybko_stolyar(bad=True))).verified
False
"""

from __future__ import annotations

import itertools
import time
from dataclasses import dataclass, field
from fractions import Fraction

import numpy as np
import scipy.sparse as sp
from scipy.optimize import linprog

from fluid_models.fluid_network import FluidNetwork

__all__ = ["LyapunovCertificate", "find_linear_lyapunov", "verify_linear_lyapunov", "face_rows", "MAX_BUFFERS"]

#: Faces are enumerated, so the LP is kept to networks with at most this many buffers.
MAX_BUFFERS = 14


@dataclass(frozen=True)
class Face:
    """The constraints on the efforts ``u`` on one face: ``rows`` are ``(coeffs, rhs, is_equality)``
    over the ``free`` buffers (the others have ``u = 0``)."""

    positive: tuple[int, ...]
    free: tuple[int, ...]
    rows: list = field(repr=False)


@dataclass(frozen=True)
class LyapunovCertificate:
    """A linear Lyapunov function ``V(q) = sum_k weights[k] q_k`` and its exact check.

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
        """Upper bound ``V(q0) / epsilon`` on the time any fluid path from ``q0`` needs to drain."""
        return sum(Fraction(str(x)) * w for x, w in zip(q0, self.weights)) / self.epsilon

    def to_json(self) -> dict:
        """The certificate's numbers (exact values as text)."""
        return {
            "function": "V(q) = sum_k c_k q_k",
            "weights": {lab: str(w) for lab, w in zip(self.labels, self.weights or ())},
            "epsilon": str(self.epsilon) if self.epsilon is not None else None,
            "verified_exactly": self.verified,
            "faces_checked": self.faces,
            "worst_face": list(self.worst_face),
            "lp_seconds": round(self.lp_seconds, 4),
            "verify_seconds": round(self.verify_seconds, 4),
        }


def face_rows(fn: FluidNetwork, positive: set) -> Face:
    """The effort constraints of the face where exactly the buffers in ``positive`` hold fluid."""
    K = fn.size
    free: list[int] = []
    engine_rows = []
    for gs in fn.groups:
        here, eq = [], False
        for grp in gs:
            here += list(grp)
            if any(k in positive for k in grp):
                eq = True
                break
        free += here
        engine_rows.append(({k: 1 for k in here}, Fraction(1), eq))
    free_set = set(free)
    rows = [({j: 1}, Fraction(1), False) for j in free] + engine_rows
    for k in range(K):
        if k in positive:
            continue
        coeffs: dict[int, Fraction] = {}
        for j in free:
            if k in fn.successors[j]:
                coeffs[j] = coeffs.get(j, 0) + fn.mu[j]
        if k in free_set:
            coeffs[k] = coeffs.get(k, 0) - fn.mu[k]
        rows.append((coeffs, -fn.alpha[k], True))  # inflow - outflow = -alpha_k (stays empty)
    return Face(tuple(sorted(positive)), tuple(free), rows)


def _gain(fn: FluidNetwork, j: int) -> dict[int, Fraction]:
    """``g_j(c) = mu_j (sum_{k in succ(j)} c_k - c_j)`` as coefficients on ``c``."""
    g = {j: -fn.mu[j]}
    for k in fn.successors[j]:
        g[k] = g.get(k, 0) + fn.mu[j]
    return g


def find_linear_lyapunov(fn: FluidNetwork, min_weight: float | None = None) -> LyapunovCertificate:
    """Search a linear Lyapunov function by one LP over all faces, then verify it exactly.

    Parameters
    ----------
    fn
        The fluid network (no joins; at most :data:`MAX_BUFFERS` buffers).
    min_weight
        Lower bound on each weight (the weights sum to 1); default ``1e-3 / K``.
    """
    K = fn.size
    labels = fn.labels
    if fn.joins:
        return LyapunovCertificate(labels, None, None, False, 0, 0.0, reason="joins make the fluid model non-linear")
    if K > MAX_BUFFERS:
        return LyapunovCertificate(labels, None, None, False, 0, 0.0,
                                   reason=f"{K} buffers: face enumeration is limited to {MAX_BUFFERS}")
    start = time.perf_counter()
    faces = [face_rows(fn, set(P)) for r in range(1, K + 1) for P in itertools.combinations(range(K), r)]
    gains = [_gain(fn, j) for j in range(K)]
    alpha = np.array([float(a) for a in fn.alpha])
    rows, cols, vals, ub = [], [], [], []
    eq_rows, eq_cols, eq_vals = [], [], []
    n_var = K + 1  # c, eps
    bounds = [(min_weight if min_weight is not None else 1e-3 / K, None)] * K + [(None, float(max(fn.mu)))]
    offsets = []
    r = 0
    for face in faces:
        base = n_var
        offsets.append(base)
        for i, (_, _, is_eq) in enumerate(face.rows):
            bounds.append((None, None) if is_eq else (0, None))
        n_var += len(face.rows)
        for j in face.free:  # g_j(c) - sum_i a_ij w_i <= 0
            for k, v in gains[j].items():
                rows.append(r); cols.append(k); vals.append(float(v))
            for i, (coeffs, _, _) in enumerate(face.rows):
                if j in coeffs:
                    rows.append(r); cols.append(base + i); vals.append(-float(coeffs[j]))
            ub.append(0.0)
            r += 1
        for k in range(K):  # c . alpha + b . w + eps <= 0
            if alpha[k]:
                rows.append(r); cols.append(k); vals.append(alpha[k])
        for i, (_, rhs, _) in enumerate(face.rows):
            if rhs:
                rows.append(r); cols.append(base + i); vals.append(float(rhs))
        rows.append(r); cols.append(K); vals.append(1.0)
        ub.append(0.0)
        r += 1
    A = sp.csr_matrix((vals, (rows, cols)), shape=(r, n_var))
    A_eq = sp.csr_matrix((np.ones(K), (np.zeros(K), np.arange(K))), shape=(1, n_var))
    cost = np.zeros(n_var)
    cost[K] = -1.0
    res = linprog(cost, A_ub=A, b_ub=np.array(ub), A_eq=A_eq, b_eq=[1.0], bounds=bounds, method="highs")
    lp_seconds = time.perf_counter() - start
    if res.status != 0 or -res.fun <= 0:
        why = "LP infeasible" if res.status == 2 else f"best drift bound {res.fun:.3g} is not negative" if res.status == 0 else res.message
        return LyapunovCertificate(labels, None, None, False, len(faces), lp_seconds,
                                   reason=f"no linear Lyapunov function: {why}")
    x = res.x
    weights = tuple(Fraction(float(v)).limit_denominator(10**9) for v in x[:K])
    multipliers = [x[o:o + len(f.rows)] for o, f in zip(offsets, faces)]
    return verify_linear_lyapunov(fn, weights, faces, multipliers, lp_seconds)


def verify_linear_lyapunov(fn: FluidNetwork, weights: tuple[Fraction, ...], faces: list[Face],
                           multipliers: list, lp_seconds: float = 0.0) -> LyapunovCertificate:
    """Exact check of ``V(q) = weights . q``: on each face, rational multipliers (rounded from
    ``multipliers``, repaired through the box rows) bound the drift by weak duality."""
    start = time.perf_counter()
    labels = fn.labels
    if any(w <= 0 for w in weights):
        return LyapunovCertificate(labels, weights, None, False, len(faces), lp_seconds, reason="a weight is not positive")
    gains = [_gain(fn, j) for j in range(fn.size)]
    c_alpha = sum(w * a for w, a in zip(weights, fn.alpha))
    worst, worst_face = None, ()
    for face, mult in zip(faces, multipliers):
        w = []
        for (_, _, is_eq), v in zip(face.rows, mult):
            f = Fraction(float(v)).limit_denominator(10**12)
            w.append(f if is_eq else max(f, Fraction(0)))
        for pos, j in enumerate(face.free):  # the first rows are the boxes u_j <= 1, one per free j
            need = sum(weights[k] * v for k, v in gains[j].items())
            have = sum(coeffs[j] * wi for (coeffs, _, _), wi in zip(face.rows, w) if j in coeffs)
            if have < need:
                w[pos] += need - have
        bound = c_alpha + sum(rhs * wi for (_, rhs, _), wi in zip(face.rows, w))
        if worst is None or bound > worst:
            worst, worst_face = bound, tuple(labels[k] for k in face.positive)
    seconds = time.perf_counter() - start
    ok = worst is not None and worst < 0
    return LyapunovCertificate(labels, weights, -worst if ok else None, ok, len(faces), lp_seconds, seconds,
                               "" if ok else f"exact drift bound {worst} on face {worst_face} is not negative",
                               worst_face)
