"""Network simulator: conservation, reproducibility, traffic equations, the policies' own kernels."""

from __future__ import annotations

import numpy as np
import pytest
import sympy
from hypothesis import given, settings
from hypothesis import strategies as st

from llmstab.fluid_models.distributions import Deterministic, Geometric
from llmstab.fluid_models.networks.network import Network, NetworkClass, Step
from llmstab.fluid_models.networks.examples import fork_join, rybko_stolyar, unit_engine
from llmstab.fluid_models.networks.simulator import simulate_network


def _network(n_steps, engines, policy, fork, b_max=64):
    eng = {e: unit_engine(e, b_max, policy=policy) for e in ("x", "y")}
    steps = [Step(f"s{i}", engines[i], Geometric(8), Deterministic(3)) for i in range(n_steps)]
    if fork and n_steps >= 3:  # s0 forks to s1 and s2, which join at s3 (if present)
        steps[1] = Step("s1", engines[1], Geometric(8), Deterministic(3), after=("s0",))
        steps[2] = Step("s2", engines[2], Geometric(8), Deterministic(3), after=("s0",))
        if n_steps == 4:
            steps[3] = Step("s3", engines[3], Geometric(8), Deterministic(3), after=("s1", "s2"))
    return Network(eng, (NetworkClass("c", sympy.Rational(1, 2), tuple(steps)),))


networks = dict(n_steps=st.integers(1, 4), engines=st.lists(st.sampled_from(["x", "y"]), min_size=4, max_size=4),
                policy=st.sampled_from(["fcfs", "sarathi", "orca", "vllm", "fastertransformer"]), fork=st.booleans(),
                seed=st.integers(0, 10**6))


@settings(max_examples=12, deadline=None)
@given(**networks)
def test_no_request_is_lost(n_steps, engines, policy, fork, seed):
    """Every arrival has either left or is still in the network, whatever the routing and policy;
    a request still in the network is resident at some engine (a branch waiting at a join has a sibling)."""
    sim = simulate_network(_network(n_steps, engines, policy, fork), horizon_s=200, seed=seed)
    assert sim.arrived == sim.completed + sim.in_system
    assert sim.arrived > 0 and (sim.tokens >= 0).all()
    assert sum(int(v[-1]) for v in sim.backlog.values()) >= sim.in_system


@settings(max_examples=12, deadline=None)
@given(**networks, b_max=st.integers(4, 96))
def test_tokens_balance(n_steps, engines, policy, fork, seed, b_max):
    """Tokens offered = tokens processed + tokens left: the served count includes the batches still
    running at the horizon (whose tokens also count as left), at most one batch of ``b_max`` per engine."""
    net = _network(n_steps, engines, policy, fork, b_max)
    sim = simulate_network(net, horizon_s=100, seed=seed)
    served, left = sum(sim.served_tokens.values()), int(sim.tokens[-1])
    assert sim.offered_tokens - left <= served <= sim.offered_tokens - left + b_max * len(net.engines)
    assert all(sim.served_tokens[e] <= b_max * sim.batches[e] for e in net.engines)
    assert all(len(v) == len(sim.times) and (v >= 0).all() for v in sim.backlog.values())


def test_same_seed_same_run_and_different_seed_differs():
    a = simulate_network(rybko_stolyar(bad=False), 300, seed=3)
    b = simulate_network(rybko_stolyar(bad=False), 300, seed=3)
    c = simulate_network(rybko_stolyar(bad=False), 300, seed=4)
    assert np.array_equal(a.tokens, b.tokens) and a.summary() == b.summary()
    assert not np.array_equal(a.tokens, c.tokens)


def test_served_tokens_match_the_traffic_equations():
    """In a stable fork-join workflow each engine processes, over a long run, the token load the
    traffic equations give it (every forked branch counted at its own engine)."""
    net = fork_join(rate=2, tool_tokens=40)
    horizon = 3000.0
    sim = simulate_network(net, horizon, seed=11)
    load = net.token_load()
    for e in net.engines:
        assert sim.served_tokens[e] / horizon == pytest.approx(float(load[e]), rel=0.05), e
    assert sim.in_system < 0.02 * sim.arrived


def test_priority_order_reaches_the_kernel():
    """Under the bad Rybko-Stolyar priority the exiting steps are served first, so the entering
    steps pile up and an engine idles with work waiting at the other; under the good priority
    both engines carry their load and nothing piles up."""
    horizon = 2500.0
    net = rybko_stolyar(bad=True)
    bad = simulate_network(net, horizon, seed=2)
    good = simulate_network(rybko_stolyar(bad=False), horizon, seed=2)
    load = float(net.token_load()["e1"])
    assert bad.tokens[-50:].mean() > 10 * good.tokens[-50:].mean()
    assert min(bad.served_tokens.values()) / horizon < 0.8 * load
    assert all(v / horizon == pytest.approx(load, rel=0.05) for v in good.served_tokens.values())


def test_each_engine_runs_its_own_kernel():
    """Engines with different schedulers in one network: the chunk-capped engine never forms a batch
    above its chunk, while the other fills batches well beyond it (the kernels are not mixed up)."""
    import dataclasses

    from llmstab.fluid_models.policies import make_policy

    eng = {"x": dataclasses.replace(unit_engine("x", 64), policy=make_policy("fixed_chunk", chunk=8)),
           "y": unit_engine("y", 64, policy="sarathi")}
    steps = (Step("s0", "y", Deterministic(40), Deterministic(2)), Step("s1", "x", Deterministic(40), Deterministic(2)))
    net = Network(eng, (NetworkClass("c", sympy.Rational(1, 10), steps),))
    sim = simulate_network(net, horizon_s=300, seed=0)
    assert sim.completed > 0
    assert sim.served_tokens["x"] <= 8 * sim.batches["x"]
    assert sim.served_tokens["y"] > 8 * sim.batches["y"]


def test_simulation_prints_no_numba_warning():
    import warnings

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        simulate_network(fork_join(), horizon_s=20, seed=0)
    assert not [w for w in caught if "numba" in type(w.message).__module__]
