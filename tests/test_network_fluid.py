"""Fluid model of networks: allocations obey the disciplines, exact paths follow the velocity field."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest
import sympy
from hypothesis import given, settings
from hypothesis import strategies as st

from llmstab.fluid_models.networks.fluid import FluidError, FluidNetwork
from llmstab.fluid_models.networks.examples import fork_join, kumar_seidman, lu_kumar, rybko_stolyar

NETS = {"rs_bad": rybko_stolyar(bad=True), "rs_good": rybko_stolyar(bad=False), "lk": lu_kumar(1),
        "lk_stable": lu_kumar(Fraction(7, 10)), "ks": kumar_seidman(Fraction(9, 10), Fraction(1, 2))}
FLUIDS = {name: FluidNetwork.from_network(net) for name, net in NETS.items()}


def _check_discipline(fn: FluidNetwork, q, u) -> None:
    """The laws every allocation must obey, checked exactly."""
    v = fn.velocity(q)
    for gs in fn.groups:
        members = [k for grp in gs for k in grp]
        total = sum(u[k] for k in members)
        assert all(u[k] >= 0 for k in members) and total <= 1
        if any(q[k] > 0 for k in members):
            assert total == 1  # work-conserving
        first = next((i for i, grp in enumerate(gs) if any(q[k] > 0 for k in grp)), None)
        if first is not None:  # nothing below the first group holding fluid is served
            assert all(u[k] == 0 for grp in gs[first + 1:] for k in grp)
    for k in range(fn.size):
        assert q[k] > 0 or v[k] >= 0  # an empty buffer never goes negative


@settings(max_examples=40, deadline=None)
@given(name=st.sampled_from(sorted(FLUIDS)), data=st.data())
def test_allocation_obeys_priority_and_work_conservation(name, data):
    fn = FLUIDS[name]
    q = [Fraction(data.draw(st.sampled_from([0, 0, 1, 7, 50]))) for _ in range(fn.size)]
    u = fn.allocation(q)
    _check_discipline(fn, q, u)
    # flow balance: what a buffer sends is what its successors receive from it
    v = fn.velocity(q)
    assert sum(v) == sum(fn.alpha) - sum(fn.mu[k] * u[k] for k in range(fn.size) if not fn.successors[k]) \
        or any(q[k] == 0 and v[k] == 0 for k in range(fn.size))


@pytest.mark.parametrize("name", sorted(FLUIDS))
def test_exact_path_follows_the_velocity_field(name):
    """Every piece of the exact path moves at the velocity the discipline gives at its start."""
    fn = FLUIDS[name]
    path = fn.priority_path({fn.labels[0]: 100}, horizon=10**6)
    path = path.repeated(1) if path.outcome == "grows" else path
    assert path.outcome in ("grows", "drains")
    for (t0, q0), (t1, q1) in zip(zip(path.times, path.states), zip(path.times[1:], path.states[1:])):
        v = fn.velocity(q0)
        assert t1 > t0
        assert all(b == a + (t1 - t0) * vk for a, b, vk in zip(q0, q1, v))


def test_rybko_stolyar_bad_priority_diverges_self_similarly():
    fn = FLUIDS["rs_bad"]
    path = fn.priority_path({"A1.p": 100}, horizon=10**6)
    c = path.certificate
    assert path.outcome == "grows" and c["ratio"] > 1
    assert all(b == c["ratio"] * a for a, b in zip(c["state0"], c["state1"]))
    longer = path.repeated(2)
    assert longer.totals()[-1] > 100 * longer.totals()[0]


def test_rybko_stolyar_good_priority_drains():
    path = FLUIDS["rs_good"].priority_path({"A1.p": 100, "B1.p": 50}, horizon=10**6)
    assert path.outcome == "drains" and not any(path.states[-1])


def test_lu_kumar_stable_side_drains_in_finite_time_through_infinitely_many_pieces():
    fn = FLUIDS["lk_stable"]
    path = fn.priority_path({"s1.p": 100}, horizon=10**6)
    c = path.certificate
    assert path.outcome == "drains" and 0 < c["ratio"] < 1 and c["drained_by"] > c["t1"]


def test_numerical_integration_agrees_with_the_exact_path():
    fn = FLUIDS["rs_bad"]
    exact = fn.priority_path({"A1.p": 100}, horizon=10**6)
    t1 = float(exact.certificate["t1"])
    num = fn.integrate({"A1.p": 100}, horizon=t1, steps=3000)
    assert num.totals()[-1] == pytest.approx(float(sum(exact.states[-1])), rel=0.02)


def test_symbolic_equations_match_the_velocity():
    fn = FLUIDS["rs_bad"]
    sym = fn.symbolic()
    t = sym["t"]
    q = [Fraction(0)] * fn.size
    q[0] = Fraction(100)
    u = fn.allocation(q)
    v = fn.velocity(q)
    for k, eq in enumerate(sym["equations"]):
        rhs = eq.rhs.subs({sym["q0"][k]: 0})
        for j, T in enumerate(sym["T"]):
            rhs = rhs.subs(T, sympy.Rational(u[j].numerator, u[j].denominator) * t)
        assert sympy.diff(rhs, t) == sympy.Rational(v[k].numerator, v[k].denominator)


def test_joins_have_no_exact_path_but_integrate():
    fn = FluidNetwork.from_network(fork_join(rate=1, tool_tokens=120))
    with pytest.raises(FluidError):
        fn.priority_path({"plan.p": 10}, horizon=100)
    path = fn.integrate({}, horizon=400, steps=2000)
    assert path.outcome == "grows"
    search = fn.labels.index("search.p")
    assert path.states[-1][search] == pytest.approx(400 * (1 - 100 / 120) * 1, rel=0.1)  # tool1 grows at (1.2-1)/1.2 req/s
    ok = FluidNetwork.from_network(fork_join(rate=1, tool_tokens=40)).integrate({"plan.p": 20}, horizon=400, steps=2000)
    assert ok.outcome == "drains" or max(ok.states[-1]) < 1e-6
    assert np.isfinite(ok.totals()).all()


@pytest.mark.parametrize("base", ["sarathi", "orca", "fcfs", "vllm"])
def test_fluid_groups_follow_the_policy_class_not_its_name(base):
    """A renamed subclass keeps its parent's phase order; a class that declares another order gets it."""
    import dataclasses

    from llmstab.fluid_models.policies import POLICIES

    renamed = type("Renamed", (POLICIES[base],), {"name": "renamed"})
    flipped = type("Flipped", (POLICIES[base],), {"name": base, "fluid_phase_order": "prefill-first"})
    net = fork_join(policy=base)

    def groups(cls):
        engines = {e: dataclasses.replace(ne, policy=cls()) for e, ne in net.engines.items()}
        return FluidNetwork.from_network(dataclasses.replace(net, engines=engines)).groups

    assert groups(renamed) == groups(POLICIES[base]) == FluidNetwork.from_network(net).groups
    flipped_groups = groups(flipped)
    fn = FluidNetwork.from_network(net)
    for gs in flipped_groups:  # every engine serves all prefill buffers before any decode buffer
        phases = [fn.buffers[grp[0]].phase for grp in gs]
        assert phases == sorted(phases, key=["prefill", "decode"].index)
    assert (flipped_groups == fn.groups) == (POLICIES[base].fluid_phase_order == "prefill-first")
