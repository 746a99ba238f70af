"""Large agent networks: the 1000-engine fork DAG and the memoised traffic equations."""

from __future__ import annotations

import importlib.util
from fractions import Fraction

import networkx as nx
import pytest

from llmstab.checkers.network_check import check_network
from llmstab.checkers.network_spec import network_from_document
from llmstab.fluid_models.networks.network import Network
from tests.conftest import EXAMPLES


def _generator():
    spec = importlib.util.spec_from_file_location("generate_large_networks", EXAMPLES / "generate_large_networks.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def dag() -> Network:
    return network_from_document(_generator().dag(1000))


def test_thousand_engine_fork_dag_is_stable_by_the_dag_theorem(dag, monkeypatch):
    """1000 engines, 1000 classes forking into two tools; the traffic equations run once for the whole
    verdict, however many loads, utilisations and summaries the checker asks for."""
    calls = []
    original = Network._traffic
    monkeypatch.setattr(Network, "_traffic", lambda self: calls.append(1) or original(self))
    net = network_from_document(_generator().dag(1000))
    report = check_network(net, simulate=False)
    assert len(net.engines) == 1000 and len(net.classes) == 1000 and net.is_feedforward
    assert report.load_verdict.verdict == "stable" and "Section 5" in report.load_verdict.evidence[0].summary
    assert calls == [1]
    util = net.utilisation()
    assert set(util.values()) == {Fraction(54, 100)}  # three steps of 18 tokens at rate 1 on every engine


def test_every_forked_branch_carries_the_class_rate(dag):
    rates = dag.step_rates()
    assert all(rates[f"c{k}.tool1"] == rates[f"c{k}.tool2"] == rates[f"c{k}.plan"] == 1 for k in range(1000))
    # engine 2 hosts the plan of class 2 and a tool of classes 0 and 1; engine 999 tools of 997, 998, 999
    assert dag.token_load()["e0002"] == dag.token_load()["e0999"] == 3 * 18


def test_memoised_views_are_safe_to_use(dag):
    """Callers get copies of the dicts and frozen graphs: nobody can corrupt the stored traffic equations."""
    rates = dag.step_rates()
    rates["c0.plan"] = 99
    assert dag.step_rates()["c0.plan"] == 1
    assert nx.is_frozen(dag.step_graph) and nx.is_frozen(dag.graph)
    with pytest.raises(nx.NetworkXError):
        dag.step_graph.add_edge("a", "b")
    assert dag.is_feedforward  # computed on a copy of the engine graph, self-loops removed there


def test_join_rate_is_the_smallest_input_rate():
    """A join waits for all its inputs: the traffic equations give it the minimum of their rates."""
    doc = _generator().dag(10)
    doc["classes"][0]["route"].append({"id": "c0.join", "engine": "e0002", "after": ["c0.tool1", "c0.tool2"],
                                       "prompt": {"dist": "deterministic", "mean": 1},
                                       "decode": {"dist": "deterministic", "mean": 1}})
    net = network_from_document(doc)
    assert net.step_rates()["c0.join"] == 1 and net.has_joins
