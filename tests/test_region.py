"""Capacity regions: Section 6 vertices, exact certificates, and the laws every region obeys."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import sympy
from hypothesis import given, settings
from hypothesis import strategies as st

import llmstab.fluid_models.region as region_mod
from llmstab.checkers.region_check import certify_load, check_load_region
from llmstab.fluid_models.batch_time import PiecewiseLinear, Staircase
from llmstab.fluid_models.distributions import Deterministic, Geometric
from llmstab.fluid_models.engine import Engine
from llmstab.fluid_models.region import capacity_region, enumerate_types, region_from_table
from llmstab.fluid_models.workload import RequestClass, Workload
from llmstab.theory.capacity import b as B, engine_capacity

CODELLAMA = Staircase("11.28", "35.47", 128)
T128 = Fraction("46.75")  # the paper's t(128) = 11.28 + 35.47 ms


def test_section6_vertices_come_out_of_the_model():
    r = capacity_region(CODELLAMA, b_max=128, k_max=100)
    assert [v.point for v in r.vertices] == [
        (Fraction(0), Fraction(100) / T128),
        (Fraction(29) / T128, Fraction(99) / T128),
        (Fraction(128) / T128, Fraction(0)),
    ]
    assert [v.batch_type.label for v in r.vertices] == ["0p+100d", "29p+99d", "128p+0d"]


def test_point_c_is_on_the_boundary_and_needs_the_29_99_batch():
    r = capacity_region(CODELLAMA, b_max=128, k_max=100)
    # one request every 467.5 ms with 290 prompt and 990 output tokens
    c = (Fraction(290) / Fraction("467.5"), Fraction(990) / Fraction("467.5"))
    cert = certify_load(r, c)
    assert cert.position == "boundary" and cert.margin == 1
    assert {t.label: f for t, f in cert.witness.items()} == {"29p+99d": 1}
    inside = certify_load(r, tuple(Fraction(98, 100) * v for v in c))
    assert inside.position == "inside" and inside.margin == Fraction(100, 98)
    assert inside.primal.ok and inside.primal.value == Fraction(98, 100)
    outside = certify_load(r, tuple(Fraction(102, 100) * v for v in c))
    assert outside.position == "outside" and outside.dual.ok
    w = outside.hyperplane
    # the hyperplane holds for every feasible batch type, not only the reduced ones
    full = enumerate_types(CODELLAMA, 128, 100, full=True)
    assert max(w[0] * full.exact_point(k)[0] + w[1] * full.exact_point(k)[1] for k in range(len(full))) <= 1


def test_a_float_solution_that_does_not_check_gives_inconclusive(monkeypatch):
    r = capacity_region(CODELLAMA, b_max=128, k_max=100)
    bad = region_mod.LPSolution(np.array([0.0, 1.0, 0.0]), np.array([0.0, 0.0]), 0.1, "optimal", 0.0)
    monkeypatch.setattr("llmstab.checkers.region_check.solve_margin_lp", lambda *a, **k: bad)
    load = (Fraction(1, 2), Fraction(1, 2))  # inside, but the "solution" points at the wrong type
    cert = certify_load(r, load)
    assert cert.position == "inconclusive" and cert.reasons
    assert capacity_region(CODELLAMA, 128, 100).exact_margin(load) > 1  # truly inside: no wrong "outside" either


def test_load_verdict_from_the_region():
    engine = Engine(CODELLAMA, 128, 100)
    rate = sympy.Rational(1000, sympy.Rational("467.5"))
    point_c = Workload((RequestClass("c", rate, Deterministic(290), Deterministic(990)),))
    assert check_load_region(engine, point_c).verdict == "inconclusive"  # exactly critical
    assert check_load_region(engine, point_c.scaled("0.98")).verdict == "stable"
    v = check_load_region(engine, point_c.scaled("1.02"))
    assert v.verdict == "unstable" and any(e.kind == "certificate" for e in v.evidence)


def test_short_prompts_need_prefill_slots():
    # 60 requests/s, 1 output token each, k_max = 4: the token rates fit the region, but every request
    # needs a prefill slot and a decode slot, so at most 2 requests per 46.75 ms batch can pass
    engine = Engine(CODELLAMA, 128, 4)
    w = Workload((RequestClass("short", 60, Geometric(20), Deterministic(1)),))
    v = check_load_region(engine, w)
    assert v.verdict == "inconclusive"
    assert any("prefill slots" in e.summary for e in v.evidence)
    light = Workload((RequestClass("chat", 3, Geometric(100), Geometric(200)),))
    assert check_load_region(Engine(CODELLAMA, 8192, 512), light).verdict == "stable"


def test_several_classes_aggregate():
    engine = Engine(CODELLAMA, 512, 64)
    a = RequestClass("a", 1, Deterministic(300), Deterministic(100))
    b = RequestClass("b", 2, Deterministic(50), Deterministic(400))
    both = check_load_region(engine, Workload((a, b)))
    merged = check_load_region(engine, Workload((RequestClass("m", 1, Deterministic(400), Deterministic(900)),)))
    assert both.verdict == merged.verdict == "stable"


staircases = st.builds(lambda c, a, b0, steps: (Staircase(c, a, b0), b0 * steps),
                       st.integers(1, 50), st.integers(1, 50), st.sampled_from([2, 4, 8, 16]), st.integers(1, 6))
loads = st.tuples(st.fractions(0, 3, max_denominator=50), st.fractions(0, 3, max_denominator=50))


@settings(max_examples=25, deadline=None)
@given(staircases, loads)
def test_without_k_max_the_region_is_the_closed_form_triangle(model_budget, load):
    model, b_max = model_budget
    if sum(load) == 0:
        return
    r = capacity_region(model, b_max)
    cap = engine_capacity(model.expression(B), b_max).tokens_per_ms
    assert r.exact_margin(load) == Fraction(cap.p, cap.q) / sum(load)
    cert = certify_load(r, load)
    assert cert.margin == r.exact_margin(load)


@settings(max_examples=25, deadline=None)
@given(staircases, st.integers(1, 40), loads, st.fractions(0, 1, max_denominator=20))
def test_down_closed_convex_and_monotone(model_budget, k_max, load, shrink):
    model, b_max = model_budget
    if sum(load) == 0:
        return
    r = capacity_region(model, b_max, k_max)
    m = r.exact_margin(load)
    # down-closed: shrinking one coordinate never leaves the region
    smaller = (load[0] * shrink, load[1])
    if sum(smaller):
        assert r.exact_margin(smaller) >= m
    # convex: the midpoint of two boundary points is inside
    other = (load[1], load[0])
    p, q = tuple(v * m for v in load), tuple(v * r.exact_margin(other) for v in other)
    mid = tuple((u + v) / 2 for u, v in zip(p, q))
    assert r.exact_margin(mid) >= 1
    # monotone in k_max and b_max
    assert capacity_region(model, b_max, k_max + 1).exact_margin(load) >= m
    assert capacity_region(model, b_max + model.b0, k_max).exact_margin(load) >= m


@settings(max_examples=20, deadline=None)
@given(st.integers(1, 30), st.integers(0, 30), st.integers(2, 40), st.integers(1, 12), st.integers(1, 30), loads)
def test_reduced_types_give_the_same_region_as_full_enumeration(c, a, b0, b_max, k_max, load):
    model = PiecewiseLinear(c, a, b0)
    reduced = capacity_region(model, b_max, k_max)
    full = region_from_table(enumerate_types(model, b_max, k_max, full=True))
    assert [v.point for v in reduced.vertices] == [v.point for v in full.vertices]
    if sum(load):
        cert = certify_load(reduced, load)
        assert cert.position != "inconclusive" or cert.margin == 1
        assert cert.margin_bounds[0] is None or cert.margin_bounds[0] <= full.exact_margin(load)
        assert cert.margin_bounds[1] is None or cert.margin_bounds[1] >= full.exact_margin(load)


def test_large_budget_solves_fast():
    r = capacity_region(CODELLAMA, 8192, 512)
    cert = certify_load(r, (Fraction(1), Fraction(1)))
    assert cert.position == "inside" and cert.margin is not None
    assert r.reduction_seconds + cert.lp_seconds < 1.0


@settings(max_examples=30, deadline=None)
@given(staircases, st.integers(1, 64), loads)
def test_lp_certificates_agree_with_exact_geometry(model_budget, k_max, load):
    """The float LP, once certified, gives exactly the margin the exact hull gives, and never a wrong side."""
    model, b_max = model_budget
    if sum(load) == 0:
        return
    r = capacity_region(model, b_max, k_max)
    truth = r.exact_margin(load)
    cert = certify_load(r, load)
    expected = "inside" if truth > 1 else "outside" if truth < 1 else "boundary"
    assert cert.position in (expected, "inconclusive")
    if cert.position != "inconclusive":
        assert cert.margin == truth
    if cert.position == "inside":
        assert cert.primal.ok and sum(cert.witness.values()) == 1 / truth
    if cert.position == "outside":
        assert cert.dual.ok and cert.dual.value == 1 / truth
