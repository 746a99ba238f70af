"""Network model and loader: validation, traffic equations, loads, graphs."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from llmstab.checkers.errors import InputError
from llmstab.checkers.network_spec import is_network_document, load_network, network_from_document
from llmstab.fluid_models.distributions import Deterministic
from llmstab.fluid_models.networks.network import Network, NetworkClass, NetworkError, Step
from llmstab.fluid_models.networks.examples import fork_join, fork_join_loop, kumar_seidman, lu_kumar, rybko_stolyar, unit_engine
from tests.test_theory import batch_time_models

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def _doc(**route_overrides) -> dict:
    step = {"id": "s1", "engine": "gpu", "prompt": {"dist": "deterministic", "mean": 10},
            "decode": {"dist": "deterministic", "mean": 10}}
    step.update(route_overrides)
    return {"engines": {"gpu": {"batch_time": {"kind": "staircase", "c": 1, "a": 0, "b0": 100, "unit": "s"},
                                "token_budget": 100, "policy": "fcfs"}},
            "classes": [{"name": "c", "rate": 1, "route": [step]}]}


def test_rybko_stolyar_loads_are_the_papers_numbers():
    net = rybko_stolyar(bad=True)
    # rate 0.9 * 768 / 608 per type; each engine: one short (64 tokens) and one long (544 tokens) step
    assert net.classes[0].rate == Fraction(9, 10) * 768 / 608
    assert net.capacity() == {"e1": 768, "e2": 768}
    assert net.token_load() == {"e1": Fraction(3456, 5), "e2": Fraction(3456, 5)}
    assert net.utilisation() == {"e1": Fraction(9, 10), "e2": Fraction(9, 10)}
    assert all(isinstance(u, Fraction) for u in net.utilisation().values())  # exact Fractions, no sympy
    assert not net.is_feedforward


def test_yaml_examples_match_the_python_constructors():
    pairs = [("network_rybko_stolyar_bad.yaml", rybko_stolyar(bad=True)),
             ("network_rybko_stolyar_good.yaml", rybko_stolyar(bad=False)),
             ("network_lu_kumar.yaml", lu_kumar(1)),
             ("network_kumar_seidman.yaml", kumar_seidman(Fraction(9, 10), Fraction(1, 2))),
             ("network_fork_join.yaml", fork_join()),
             ("network_fork_join_planner.yaml", fork_join_loop(rate=2))]
    for name, net in pairs:
        loaded = load_network(EXAMPLES / name)
        assert loaded.utilisation() == net.utilisation(), name
        assert [e.priority for e in loaded.engines.values()] == [e.priority for e in net.engines.values()], name
        assert [b.label for b in loaded.buffers()] == [b.label for b in net.buffers()], name


def test_fork_join_traffic_every_branch_counts_at_its_engine():
    net = fork_join(rate=2, tool_tokens=40)
    assert net.step_rates() == {"plan": 2, "search": 2, "code": 2, "answer": 2}
    assert net.token_load() == {"planner": 40, "tool1": 80, "tool2": 60, "writer": 40}
    assert net.is_feedforward and net.has_joins
    assert net.bottleneck() == "tool1"
    g = net.step_graph
    assert set(g.successors("plan")) == {"search", "code"} and set(g.predecessors("answer")) == {"search", "code"}


@settings(max_examples=25, deadline=None)
@given(rates=st.lists(st.integers(1, 20), min_size=1, max_size=4),
       lengths=st.lists(st.tuples(st.integers(1, 50), st.integers(1, 50), st.sampled_from(["x", "y", "z"])),
                        min_size=1, max_size=5))
def test_traffic_equations_load_is_sum_over_visits(rates, lengths):
    """Each engine's load is the sum, over every step that visits it, of class rate x (m_p + m_d);
    scaling every rate scales every load."""
    engines = {e: unit_engine(e, 100) for e in ("x", "y", "z")}
    classes = []
    expected = {e: Fraction(0) for e in engines}
    for ci, r in enumerate(rates):
        steps = tuple(Step(f"c{ci}s{i}", e, Deterministic(p), Deterministic(d)) for i, (p, d, e) in enumerate(lengths))
        classes.append(NetworkClass(f"c{ci}", Fraction(r, 10), steps))
        for p, d, e in lengths:
            expected[e] += Fraction(r, 10) * (p + d)
    net = Network(engines, tuple(classes))
    assert net.token_load() == expected
    doubled = Network(engines, tuple(NetworkClass(c.name, 2 * c.rate, c.steps) for c in classes))
    assert all(doubled.utilisation()[e] == 2 * net.utilisation()[e] for e in engines)
    # a route that goes back to an engine it has left makes the engine graph cyclic
    order = [e for _, _, e in lengths]
    revisits = any(order[j] == order[i] and any(order[k] != order[i] for k in range(i, j))
                   for i in range(len(order)) for j in range(i + 1, len(order)))
    assert net.is_feedforward == (not revisits and not _crosses(order))


def _crosses(order):
    # with one route shape shared by every class, the engine graph is the route's own moves
    import networkx as nx
    g = nx.DiGraph((a, b) for a, b in zip(order, order[1:]) if a != b)
    return not nx.is_directed_acyclic_graph(g)


@pytest.mark.parametrize("override, field, words", [
    ({"engine": "tpu"}, "classes[0].route[0].engine", "unknown engine 'tpu'"),
    ({"after": ["nope"]}, "classes[0].route[0].after", "not a step of class"),
    ({"prompt": {"dist": "deterministic", "mean": 0}}, "classes[0].route[0].prompt", ""),
    ({"colour": 1}, "classes[0].route[0].colour", "unknown field"),
])
def test_bad_steps_name_the_field(override, field, words):
    with pytest.raises(InputError) as err:
        network_from_document(_doc(**override))
    assert err.value.field.startswith(field) and words in str(err.value)


def test_cycle_in_after_relation_is_rejected():
    doc = _doc()
    doc["classes"][0]["route"] = [
        {"id": "a", "engine": "gpu", "after": ["b"], "prompt": {"dist": "deterministic", "mean": 1}, "decode": {"dist": "deterministic", "mean": 1}},
        {"id": "b", "engine": "gpu", "after": ["a"], "prompt": {"dist": "deterministic", "mean": 1}, "decode": {"dist": "deterministic", "mean": 1}}]
    with pytest.raises(InputError) as err:
        network_from_document(doc)
    assert err.value.field == "classes[0].route" and "cycle" in err.value.problem


def test_step_id_used_twice_is_rejected():
    doc = _doc()
    doc["classes"].append({"name": "d", "rate": 1, "route": [dict(doc["classes"][0]["route"][0])]})
    with pytest.raises(InputError) as err:
        network_from_document(doc)
    assert err.value.field == "classes[1].route[0].id" and "used twice" in err.value.problem


def test_priority_must_name_steps_that_visit_the_engine():
    doc = _doc()
    doc["engines"]["cpu"] = dict(doc["engines"]["gpu"])
    doc["engines"]["cpu"]["policy"] = {"name": "fcfs", "priority": ["s1"]}
    with pytest.raises(InputError) as err:
        network_from_document(doc)
    assert err.value.field == "engines.cpu.policy.priority[0]" and "does not visit engine 'cpu'" in err.value.problem
    doc["engines"]["cpu"]["policy"] = {"name": "fcfs", "priority": ["ghost"]}
    with pytest.raises(InputError, match="unknown step 'ghost'"):
        network_from_document(doc)


def test_engine_fields_reuse_the_single_engine_checks():
    doc = _doc()
    doc["engines"]["gpu"]["token_budget"] = 150  # staircase needs b0 | b_max
    with pytest.raises(InputError) as err:
        network_from_document(doc)
    assert err.value.field == "engines.gpu.token_budget"
    doc = _doc()
    doc["engines"]["gpu"]["policy"] = "nonesuch"
    with pytest.raises(InputError, match="unknown policy"):
        network_from_document(doc)


def test_network_errors_carry_a_field():
    with pytest.raises(NetworkError) as err:
        Network({}, ())
    assert err.value.field == "engines"
    assert is_network_document(_doc()) and not is_network_document({"engine": {}})


def test_k_max_engine_has_no_scalar_capacity():
    doc = _doc()
    doc["engines"]["gpu"]["max_batch_requests"] = 8
    net = network_from_document(doc)
    assert net.capacity() == {"gpu": None} and net.utilisation() == {"gpu": None}


@settings(max_examples=40, deadline=None)
@given(model=batch_time_models(), budget=st.integers(1, 1000))
def test_network_capacity_is_the_single_engine_capacity(model, budget):
    """The network model's sympy-free capacity (Engine.capacity) is the single-engine check's (itself the sympy
    capacity's twin, tests/test_theory.py): same maximiser, same exact rates, Fractions."""
    from llmstab.checkers.single_engine import capacity_of as single_capacity
    from llmstab.fluid_models.engine import Engine

    engine = Engine(model, budget)
    network, single = engine.capacity, single_capacity(Engine(model, budget))
    assert network == single and isinstance(network.tokens_per_s, Fraction)
    assert str(network.tokens_per_s) == str(single.tokens_per_s)
