"""Is a load inside an engine's capacity region? An LP answer with exactly checked certificates.

Pipeline: model (:func:`llmstab.fluid_models.region.capacity_region`) -> float LP over the
reduced batch types (cvxpy, HiGHS) -> exact certificates -> verdict.

* **Inside**: a *primal witness*, a mix of batch types (run ``theta_k`` of the
  time each, ``sum theta <= 1``) whose token rates cover the load. The LP's
  support is turned into exact weights by solving its basis in rationals.
* **Outside**: a *dual witness*, ``w >= 0`` with ``w . p <= 1`` for **every**
  batch type (not only the reduced ones) and ``w . L > 1``: every scheduler's
  rate vector obeys ``w . r <= 1``, so none carries the load.

Both are re-checked in :mod:`llmstab.theory.exact_lp` with fractions. If neither checks,
the verdict is ``inconclusive`` with the reasons, never a guess. The margin is
reported exactly when the two certificates meet (``sum theta = w . L``).

What a given *policy* does inside the region is :mod:`llmstab.checkers.region_policy`'s question.

Examples
--------
>>> from llmstab.fluid_models.batch_time import Staircase
>>> from llmstab.fluid_models.region import capacity_region
>>> r = capacity_region(Staircase("11.28", "35.47", 128), b_max=128, k_max=100)
>>> c = certify_load(r, (Fraction(29 * 4, 187), Fraction(99 * 4, 187)))   # point C
>>> c.position, c.margin, [t.label for t in c.witness]
('boundary', Fraction(1, 1), ['29p+99d'])
>>> certify_load(r, (Fraction(1), Fraction(2))).position
'outside'
"""

from __future__ import annotations

from dataclasses import dataclass, field
from fractions import Fraction
from typing import Callable, Sequence

import numpy as np

from llmstab.fluid_models.engine import Engine
from llmstab.fluid_models.region import (BatchType, CapacityRegion, TypeTable, capacity_region, load_vector,
                                 max_prompt_length, solve_margin_lp)
from llmstab.fluid_models.workload import Workload
from llmstab.theory.exact_linalg import solve_square, to_fraction
from llmstab.theory.exact_lp import CheckResult, check_dual, check_primal

from .verdict import Evidence, Verdict

__all__ = ["LoadCertificate", "certify_load", "certifier", "region_for", "check_load_region", "region_summary", "SECTION_6"]

SECTION_6 = "Li-Dai-Peng (arXiv 2504.07347) Section 6"


@dataclass
class LoadCertificate:
    """Where a load lies, with the exact certificates that say so.

    ``position``: ``inside`` (margin > 1), ``boundary`` (margin exactly 1),
    ``outside`` (margin < 1) or ``inconclusive``. ``witness`` maps batch types
    to exact time fractions; ``hyperplane`` is the exact ``w``; ``margin`` is
    exact when both certificates meet, else ``margin_bounds`` brackets it.
    """

    load: tuple[Fraction, Fraction]
    position: str
    witness: dict[BatchType, Fraction]
    hyperplane: tuple[Fraction, Fraction] | None
    primal: CheckResult | None
    dual: CheckResult | None
    margin: Fraction | None
    margin_bounds: tuple[Fraction | None, Fraction | None]
    lp_value: float
    lp_seconds: float
    reasons: list[str] = field(default_factory=list)

    def evidence(self) -> list[Evidence]:
        """The certificates as evidence items (exact numbers in ``data``)."""
        items = []
        load = {"prefill_tokens_per_ms": self.load[0], "decode_tokens_per_ms": self.load[1]}
        if self.primal is not None and self.primal.valid and self.position in ("inside", "boundary"):
            mix = ", ".join(f"{t.label} for {str(f)} of the time" for t, f in self.witness.items())
            items.append(Evidence(
                "certificate", f"primal witness (checked exactly): running {mix} carries the load "
                f"({str(self.primal.value)} of the time in all)",
                {**load, "mix": {t.label: str(f) for t, f in self.witness.items()},
                 "time_fraction": self.primal.value, "exact_time_fraction": str(self.primal.value)}))
        if self.dual is not None and self.dual.valid and self.hyperplane is not None:
            w = self.hyperplane
            claim = ("separates the load from every batch type" if self.dual.ok else
                     "bounds every batch type (w.p <= 1), so the margin is at most 1/(w.L)")
            items.append(Evidence(
                "certificate", f"dual hyperplane w = ({w[0]}, {w[1]}) ms/token, checked exactly against every batch type (those "
                f"within 1e-9 of the float maximum of w.p, the rest being lower by more than any rounding): "
                f"w.L = {self.dual.value}; it {claim}",
                {**load, "w": [str(v) for v in w], "w_dot_load": self.dual.value, "exact_w_dot_load": str(self.dual.value)}))
        if self.margin is not None:
            items.append(Evidence("note", f"margin (largest scaling of the load that stays inside) = {self.margin} "
                                  f"(~{float(self.margin):.6g}), exact: the two certificates meet",
                                  {"margin": self.margin, "exact_margin": str(self.margin)}))
        if self.reasons:
            items.append(Evidence("note", "; ".join(self.reasons), {"lp_value": self.lp_value}))
        return items


def _support(theta: np.ndarray) -> list[int]:
    if not len(theta) or theta.max() <= 0:
        return []
    order = np.argsort(-theta)
    return [int(k) for k in order[:3] if theta[k] > 1e-9 * theta.max()]


def _primal_candidates(points: list[tuple[Fraction, Fraction]], support: list[int],
                       load: Sequence[Fraction]) -> list[dict[int, Fraction]]:
    """Exact weights on the LP's support: its 2x2 basis solved in rationals, or one type alone."""
    out = []
    for a_i, a in enumerate(support):
        for b in support[a_i + 1:]:
            sol = solve_square([[points[a][0], points[b][0]], [points[a][1], points[b][1]]], list(load))
            if sol is not None and min(sol) >= 0:
                out.append({a: sol[0], b: sol[1]})
        pa = points[a]
        if all(p > 0 or l <= 0 for p, l in zip(pa, load)):
            out.append({a: max((l / p for p, l in zip(pa, load) if p > 0), default=Fraction(0))})
    return out


def _dual_candidates(region: CapacityRegion, points: list[tuple[Fraction, Fraction]],
                     support: list[int], w_float: np.ndarray) -> list[tuple[Fraction, Fraction]]:
    """Exact hyperplanes: through the support's two points, the facets of the exact hull, the LP's own ``w``."""
    out = []
    for a_i, a in enumerate(support):
        for b in support[a_i + 1:]:
            sol = solve_square([list(points[a]), list(points[b])], [Fraction(1), Fraction(1)])
            if sol is not None and min(sol) >= 0:
                out.append((sol[0], sol[1]))
    out.extend(region.normals)
    if np.all(np.isfinite(w_float)) and w_float.max() > 0:
        w = tuple(to_fraction(float(max(v, 0.0))) for v in w_float[:2])
        top = region.table.exact_max_dot(w)
        if top > 0:
            out.append((w[0] / top, w[1] / top))
    return out


def certify_load(region: CapacityRegion, load: Sequence[Fraction]) -> LoadCertificate:
    """Solve the margin LP for ``load`` (tokens per ms) and certify the answer exactly.

    The LP runs over the reduced types; the dual hyperplane is then checked
    against every batch type of the engine (the endpoint types of every total,
    which span them all), so a reduction error could only make the answer
    ``inconclusive``, never wrong.
    """
    load = tuple(to_fraction(v) for v in load)
    table = region.table
    cand = region.candidates
    if all(v == 0 for v in load):
        return LoadCertificate(load, "inside", {}, None, CheckResult(True, Fraction(0)), None, None,
                               (None, None), 0.0, 0.0, ["a zero load is inside every region"])
    sol = solve_margin_lp(region.candidate_points(), [float(v) for v in load])
    points = {int(k): table.exact_point(int(k)) for k in cand}
    support = [int(cand[i]) for i in _support(sol.theta)]
    reasons = [] if sol.status == "optimal" else [f"the LP solver reported {sol.status}"]

    best_primal, best_theta = None, {}
    for theta in _primal_candidates(points, support, load):
        res = check_primal(points, theta, load)
        if res.valid and (best_primal is None or res.value < best_primal.value):
            best_primal, best_theta = res, theta
    best_dual, best_w = None, None
    all_points = _AllPoints(table)
    for w in _dual_candidates(region, points, support, sol.w):
        res = check_dual(all_points.near(w), w, load)
        if res.valid and (best_dual is None or res.value > best_dual.value):
            best_dual, best_w = res, w

    low = 1 / best_primal.value if best_primal is not None and best_primal.value > 0 else None
    high = 1 / best_dual.value if best_dual is not None and best_dual.value > 0 else None
    margin = low if low is not None and low == high else None
    if best_primal is not None and best_primal.value < 1:
        position = "inside"
    elif best_dual is not None and best_dual.ok:
        position = "outside"
    elif margin == 1:
        position = "boundary"
    else:
        position = "inconclusive"
        reasons.append("no float LP solution passed the exact re-check "
                       f"(primal: {'none found' if best_primal is None else best_primal.problems}, "
                       f"dual: {'none found' if best_dual is None else best_dual.problems})")
    witness = {table.batch_type(k): f for k, f in best_theta.items() if f > 0}
    return LoadCertificate(load, position, witness, best_w, best_primal, best_dual, margin, (low, high),
                           sol.value, sol.seconds, reasons)


def certifier(region: CapacityRegion) -> Callable[[Sequence[Fraction]], LoadCertificate]:
    """:func:`certify_load` against ``region``, each load certified once (later calls reuse the certificate).

    >>> from llmstab.fluid_models.batch_time import Staircase
    >>> from llmstab.fluid_models.region import capacity_region
    >>> certify = certifier(capacity_region(Staircase("11.28", "35.47", 128), b_max=128, k_max=100))
    >>> certify((Fraction(1), Fraction(2))) is certify([1, 2])
    True
    """
    memo: dict[tuple[Fraction, ...], LoadCertificate] = {}

    def certify(load: Sequence[Fraction]) -> LoadCertificate:
        key = tuple(to_fraction(v) for v in load)
        if key not in memo:
            memo[key] = certify_load(region, key)
        return memo[key]

    return certify


class _AllPoints:
    """Every batch type's exact point, screened for a given ``w`` (see :meth:`TypeTable.exact_max_dot`)."""

    def __init__(self, table: TypeTable) -> None:
        self.table = table

    def near(self, w: Sequence[Fraction]) -> list[tuple[Fraction, Fraction]]:
        wf = np.array([float(v) for v in w])
        values = self.table.points @ wf
        top = float(values.max()) if len(values) else 0.0
        idx = np.nonzero(values >= top - 1e-9 * max(abs(top), 1.0))[0]
        return [self.table.exact_point(int(k)) for k in idx]


def region_for(engine: Engine, workload: Workload | None = None) -> CapacityRegion:
    """The capacity region of ``engine`` (prompts bounded by the workload's longest, if bounded)."""
    return capacity_region(engine.batch_time, engine.token_budget, engine.max_batch_requests,
                           max_prompt_length(workload))


def region_summary(region: CapacityRegion) -> dict:
    """The region for a report: exact corners in tokens/ms (and tokens/s) with their batch types."""
    return {
        "kind": "region",
        "vertices_tokens_per_ms": [[v.prefill, v.decode] for v in region.vertices],
        "exact_vertices_tokens_per_ms": [[str(v.prefill), str(v.decode)] for v in region.vertices],
        "vertices_tokens_per_s": [[1000 * v.prefill, 1000 * v.decode] for v in region.vertices],
        "vertex_batch_types": [v.batch_type.label for v in region.vertices],
        "facets_w_ms_per_token": [[str(a), str(b)] for a, b in region.normals],
        "batch_types": len(region.table),
        "reduced_batch_types": len(region.candidates),
    }


def check_load_region(engine: Engine, workload: Workload, region: CapacityRegion | None = None,
                      cert: LoadCertificate | None = None) -> Verdict:
    """Load verdict from the region: ``stable`` strictly inside, ``unstable`` outside, else ``inconclusive``.

    ``stable`` means *some* scheduler carries the load (the static mix of the
    primal witness does, in the fluid limit); whether a given policy does is the
    policy verdict's question. ``cert``, when given, is the load's certificate
    already computed against ``region`` (:func:`certify_load`), so it is not solved twice.
    """
    region = region or region_for(engine, workload)
    cert = cert or certify_load(region, load_vector(workload))
    evidence = cert.evidence()
    if cert.position == "inside":
        slots = _prefill_slot_check(cert, workload, region)
        if slots is not None:
            return Verdict("inconclusive", evidence + [slots])
        evidence.insert(0, Evidence("theorem", f"{SECTION_6}: the load lies strictly inside the capacity region "
                                    "(down-closed convex hull of the batch types' rates): the static mix below "
                                    "carries it", {"theorem": SECTION_6}))
        return Verdict("stable", evidence)
    if cert.position == "outside":
        evidence.insert(0, Evidence("theorem", f"{SECTION_6}: the load lies outside the capacity region, so every "
                                    "scheduler's backlog grows", {"theorem": SECTION_6}))
        return Verdict("unstable", evidence)
    if cert.position == "boundary":
        evidence.insert(0, Evidence("note", "the load lies exactly on the region's boundary (margin 1): critically "
                                    "loaded, neither certificate decides stability", {}))
    return Verdict("inconclusive", evidence)


def _prefill_slot_check(cert: LoadCertificate, workload: Workload, region: CapacityRegion) -> Evidence | None:
    """Each request needs a prefill slot in some batch: can the witness open ``lambda`` of them per ms?

    A witness type ``(x, y)`` may spread its ``x`` prefill tokens over up to
    ``min(x, k_max - y)`` requests, and the time the witness leaves idle may run
    batches of ``n`` prefill tokens from ``min(n, k_max)`` requests; both are
    counted (exactly). ``None`` when enough slots open, else a note (the verdict
    is then ``inconclusive``: the token region alone is optimistic for this traffic).
    """
    table = region.table
    limit = table.b_max if table.k_max is None else table.k_max
    slots = sum((f * min(t.prefill, limit - t.decode) / table.exact_time(t.tokens) for t, f in cert.witness.items()),
                Fraction(0))
    n = np.arange(1, table.b_max + 1)
    rates = np.minimum(n, limit) / table.model.table(table.b_max)[1:]
    near = np.nonzero(rates >= rates.max() * (1 - 1e-9))[0] + 1
    best = max(Fraction(min(int(k), limit)) / table.exact_time(int(k)) for k in near)
    slots += (1 - sum(cert.witness.values(), Fraction(0))) * best
    need = to_fraction(workload.rate) / 1000
    if slots >= need:
        return None
    return Evidence("note", f"the witness mix opens at most {slots} prefill slots per ms but {need} requests arrive "
                    "per ms; each request needs one, so the token region alone does not decide this load",
                    {"prefill_slots_per_ms": slots, "requests_per_ms": need})
