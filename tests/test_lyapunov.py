"""Linear Lyapunov certificates: exact verification, independent drift checks, textbook conditions."""

from __future__ import annotations

import itertools
from fractions import Fraction
from pathlib import Path

import pytest
import sympy
from hypothesis import given, settings
from hypothesis import strategies as st

from llmstab.checkers.lyapunov import FluidLP, face_rows, find_linear_lyapunov, verify_linear_lyapunov
from llmstab.checkers.network_check import check_network
from llmstab.checkers.network_spec import load_network
from llmstab.fluid_models.networks.fluid import FluidNetwork
from llmstab.fluid_models.networks.examples import agent_loop, fork_join_loop, kumar_seidman, lu_kumar, rybko_stolyar

R = sympy.Rational
EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
GOOD = {"rs_good": rybko_stolyar(bad=False), "lk_stable": lu_kumar(R(7, 10)), "ks_stable": kumar_seidman(R(9, 10), R(1, 2))}
CERTS = {name: (FluidNetwork.from_network(net), find_linear_lyapunov(FluidNetwork.from_network(net)))
         for name, net in GOOD.items()}


@pytest.mark.parametrize("name", sorted(CERTS))
def test_certificate_is_verified_exactly(name):
    fn, cert = CERTS[name]
    assert cert.verified and cert.epsilon > 0
    assert cert.faces == FluidLP.from_fluid(fn).face_count() < 2 ** fn.size - 1
    assert all(isinstance(w, Fraction) and w > 0 for w in cert.weights)
    assert cert.to_json()["verified_exactly"] is True


@settings(max_examples=60, deadline=None)
@given(name=st.sampled_from(sorted(CERTS)), data=st.data())
def test_drift_along_the_discipline_is_below_minus_epsilon(name, data):
    """Independent of the LP: in any non-empty state, the velocity the discipline produces
    decreases V = c.q at least at rate epsilon (exact arithmetic)."""
    fn, cert = CERTS[name]
    q = [Fraction(data.draw(st.sampled_from([0, 0, 1, 3, 40]))) for _ in range(fn.size)]
    if not any(q):
        q[data.draw(st.integers(0, fn.size - 1))] = Fraction(5)
    v = fn.velocity(q)
    assert sum(c * x for c, x in zip(cert.weights, v)) <= -cert.epsilon


def test_drain_time_bounds_the_exact_path():
    fn, cert = CERTS["rs_good"]
    q0 = fn.state({"A1.p": 100, "B2.p": 30})
    path = fn.priority_path(q0, horizon=10**6)
    assert path.outcome == "drains"
    assert path.times[-1] <= cert.drain_time(q0)


def test_tampered_weights_fail_the_exact_check():
    fn, cert = CERTS["rs_good"]
    faces = [face_rows(fn, {k}) for k in range(fn.size)]
    # with zero multipliers the repair makes each box dual carry the gain; a weight vector that
    # rewards downstream buffers a lot (c_succ >> c) makes some drift bound positive
    bad = tuple(Fraction(1) if k % 2 else Fraction(1, 1000) for k in range(fn.size))
    res = verify_linear_lyapunov(fn, bad, faces, [[0] * len(f.rows) for f in faces])
    assert not res.verified and "not negative" in res.reason
    res = verify_linear_lyapunov(fn, (Fraction(0),) * fn.size, faces, [[0] * len(f.rows) for f in faces])
    assert not res.verified


def test_unstable_priorities_have_no_linear_certificate():
    for net in (rybko_stolyar(bad=True), lu_kumar(1)):
        cert = find_linear_lyapunov(FluidNetwork.from_network(net))
        assert not cert.verified and cert.reason


@pytest.mark.parametrize("rate", [R(1, 2), R(7, 10), R(4, 5), R(9, 10), R(1), R(3, 2)])
def test_lu_kumar_textbook_condition(rate):
    """Bad priority: stable iff rate * (m2 + m4) < b_max (both engines are below 1 at all these rates)."""
    net = lu_kumar(rate)
    assert all(u < 1 for u in net.utilisation().values())
    verdict = check_network(net, simulate=False).load_verdict
    expected = "stable" if rate * 120 < 100 else "unstable"
    assert verdict.verdict == expected
    kinds = [e.kind for e in verdict.evidence]
    assert "certificate" in kinds
    if expected == "unstable":
        assert "counterexample" in kinds


@pytest.mark.parametrize("rate_a, rate_b", [(R(9, 10), R(1, 2)), (R(1, 2), R(1, 2)), (R(1), R(1)), (R(6, 5), R(1, 2)),
                                            (R(1, 5), R(3, 2))])
def test_kumar_seidman_textbook_condition(rate_a, rate_b):
    net = kumar_seidman(rate_a, rate_b)
    assert all(u < 1 for u in net.utilisation().values())
    verdict = check_network(net, simulate=False).load_verdict
    expected = "stable" if 60 * (rate_a + rate_b) < 100 else "unstable"
    assert verdict.verdict == expected, (rate_a, rate_b)


@pytest.mark.parametrize("load, stable", [(R(1, 2), True), (R(11, 20), True), (R(14, 25), False), (R(7, 10), False)])
def test_rybko_stolyar_bad_priority_boundary_is_the_virtual_station(load, stable):
    """Bad priority at engine load ``load``: stable iff 2 * load * 544/608 < 1 (0.5 and 0.55 are
    below the boundary 608/1088 = 0.5588..., 0.56 and 0.7 above it)."""
    net = rybko_stolyar(bad=True, load=load)
    assert (2 * load * R(544, 608) < 1) == stable
    verdict = check_network(net, simulate=False).load_verdict
    assert verdict.verdict == ("stable" if stable else "unstable")


@pytest.mark.parametrize("policy", ["sarathi", "orca", "fcfs"])
def test_cyclic_agent_with_forks_gets_a_certificate(policy):
    """Planner -> two tools -> back to the planner (forks, no join, cyclic engine graph): every
    engine below 1 and no priority list, so the LP finds a certificate for the work-conserving
    sharing; the certificate's drift is checked along the discipline's own velocities."""
    net = agent_loop(rate=R(9, 5), policy=policy)
    assert not net.is_feedforward and net.utilisation()["planner"] == R(9, 10)
    v = check_network(net, simulate=False).load_verdict
    assert v.verdict == "stable"
    fn = FluidNetwork.from_network(net)
    cert = find_linear_lyapunov(fn)
    for k in range(fn.size):
        q = [Fraction(0)] * fn.size
        q[k] = Fraction(3)
        q[(3 * k + 1) % fn.size] += Fraction(1)
        assert sum(c * x for c, x in zip(cert.weights, fn.velocity(q))) <= -cert.epsilon


def test_join_back_at_the_planner_gets_a_certificate_with_sync_buffers():
    """plan -> (search, code) -> answer at the planner: a join inside a cycle. Syncs hold what one
    tool has finished and the other has not; the certificate covers them."""
    net = fork_join_loop(rate=2)
    assert not net.is_feedforward and net.has_joins
    fn = FluidNetwork.from_network(net)
    cert = find_linear_lyapunov(fn)
    assert cert.verified and cert.epsilon > 0
    assert set(cert.labels[fn.size:]) == {"answer.p<search.d", "answer.p<code.d"}
    assert all(w >= 0 for w in cert.weights[fn.size:]) and all(w > 0 for w in cert.weights[:fn.size])
    # faces with every sync of the join full, or with only syncs holding fluid, are unreachable
    assert cert.faces == FluidLP.from_fluid(fn).face_count() == len(FluidLP.from_fluid(fn).faces())
    v = check_network(net, simulate=False).load_verdict
    assert v.verdict == "stable" and "join syncs" in v.evidence[-1].summary


def _face_drift_max(model, weights, face) -> float | None:
    """max over the face's efforts of c . dstate/dt (None when the face's LP is infeasible), by a float LP."""
    import numpy as np
    from scipy.optimize import linprog

    free = list(face.free)
    gains = model.gains()
    cost = [-float(sum(weights[i] * coef for i, coef in gains[v].items())) for v in free]
    a_ub, b_ub, a_eq, b_eq = [], [], [], []
    for coeffs, rhs, is_eq in face.rows:
        row = [float(coeffs.get(v, 0)) for v in free]
        (a_eq if is_eq else a_ub).append(row)
        (b_eq if is_eq else b_ub).append(float(rhs))
    res = linprog(cost, A_ub=np.array(a_ub) if a_ub else None, b_ub=b_ub or None,
                  A_eq=np.array(a_eq) if a_eq else None, b_eq=b_eq or None, bounds=[(0, None)] * len(free),
                  method="highs")
    if res.status == 2:
        return None
    return float(sum(w * a for w, a in zip(weights, model.alpha))) - res.fun


@pytest.mark.parametrize("name", sorted(CERTS))
def test_covering_faces_bound_every_support(name):
    """The certificate found over the covering faces bounds the drift on every one of the 2^K - 1
    supports (each face's own LP, with all its stay-empty rows, solved independently)."""
    fn, cert = CERTS[name]
    model = FluidLP.from_fluid(fn)
    for r in range(1, fn.size + 1):
        for support in itertools.combinations(range(fn.size), r):
            drift = _face_drift_max(model, cert.weights, model.face(set(support)))
            assert drift is None or drift <= -float(cert.epsilon) * (1 - 1e-6), support


@pytest.fixture(scope="module")
def reentrant_lbfs():
    net = load_network(EXAMPLES / "network_reentrant_20_lbfs.yaml")
    fn = FluidNetwork.from_network(net)
    return net, fn, find_linear_lyapunov(fn)


def test_forty_buffer_lbfs_line_is_certified_over_440_covering_faces(reentrant_lbfs):
    """20 steps alternating between two engines, last-buffer-first-served, both engines at 0.8: stable
    (Dai-Weiss 1996). 2^40 supports, 21 x 21 - 1 covering faces; the certificate is verified exactly."""
    net, fn, cert = reentrant_lbfs
    assert fn.size == 40 and {float(u) for u in net.utilisation().values()} == {0.8}
    assert cert.verified and cert.epsilon > 0 and cert.faces == 21 * 21 - 1
    assert all(w > 0 for w in cert.weights)


@settings(max_examples=40, deadline=None)
@given(data=st.data())
def test_forty_buffer_certificate_drifts_down_along_the_discipline(reentrant_lbfs, data):
    """Independent of the LP: random states of the 40-buffer line, the discipline's own velocity."""
    _, fn, cert = reentrant_lbfs
    q = [Fraction(data.draw(st.sampled_from([0, 0, 0, 1, 7, 50]))) for _ in range(fn.size)]
    if not any(q):
        q[data.draw(st.integers(0, fn.size - 1))] = Fraction(3)
    assert sum(c * x for c, x in zip(cert.weights, fn.velocity(q))) <= -cert.epsilon


def test_forty_buffer_unstable_line_gets_a_virtual_station_and_a_diverging_path():
    net = load_network(EXAMPLES / "network_reentrant_20_unstable.yaml")
    assert {float(u) for u in net.utilisation().values()} == {0.8}
    report = check_network(net, simulate=False)
    verdict = report.load_verdict
    assert verdict.verdict == "unstable" and report.policy_verdict.verdict == "not-maximally-stable"
    kinds = [e.kind for e in verdict.evidence]
    station = verdict.evidence[0].data["virtual_station"]
    assert kinds[0] == "certificate" and "virtual station {s5.p, s5.d at A | s2.p, s2.d" in verdict.evidence[0].summary
    assert {"s2", "s5"} <= set(station["steps"]) and sympy.Rational(station["load"]) > 1
    assert "counterexample" in kinds
    assert not find_linear_lyapunov(FluidNetwork.from_network(net)).verified
