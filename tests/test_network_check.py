"""Reproductions: every network verdict carries its certificate or counterexample; the CLI contract."""

from __future__ import annotations

import json
from fractions import Fraction
from pathlib import Path

import pytest

from llmstab.checkers.cli.main import main
from llmstab.checkers.network_check import check_network
from llmstab.fluid_models.networks.examples import fork_join, rybko_stolyar

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def _evidence(verdict, kind):
    return [e for e in verdict.evidence if e.kind == kind]


def test_rybko_stolyar_bad_priority_is_unstable_with_virtual_station_and_simulation():
    net = rybko_stolyar(bad=True)
    report = check_network(net, "rs-bad")
    v = report.load_verdict
    assert v.verdict == "unstable"
    vs = _evidence(v, "certificate")[0].data["virtual_station"]
    # the exiting steps A2 (e2) and B2 (e1): each at 0.9 * 544/608 of its engine
    assert set(vs["steps"]) == {"A2", "B2"}
    assert Fraction(vs["load"]) == 2 * Fraction(9, 10) * 544 / 608 > 1
    cx = _evidence(v, "counterexample")[0].data
    assert Fraction(cx["ratio"]) > 1
    sim = _evidence(v, "simulation")[0]
    assert "grows" in sim.summary and "as predicted" in sim.summary
    assert sim.data["mean_tokens_last_quarter"] > sim.data["mean_tokens_first_quarter"]
    assert report.policy_verdict.verdict == "not-maximally-stable"
    assert all(u == Fraction(9, 10) for u in net.utilisation().values())


def test_rybko_stolyar_reverse_priority_is_stable_with_exact_certificate():
    report = check_network(rybko_stolyar(bad=False), "rs-good")
    v = report.load_verdict
    assert v.verdict == "stable"
    cert = _evidence(v, "certificate")[0].data
    assert cert["verified_exactly"] is True and Fraction(cert["epsilon"]) > 0
    assert all(Fraction(w) > 0 for w in cert["weights"].values())


@pytest.mark.parametrize("tool_tokens, expected", [(40, "stable"), (90, "stable"), (110, "unstable"), (120, "unstable")])
def test_fork_join_is_stable_until_a_tool_engine_passes_load_one(tool_tokens, expected):
    net = fork_join(rate=1, tool_tokens=tool_tokens)
    assert net.utilisation()["tool1"] == Fraction(tool_tokens, 100)
    report = check_network(net, simulate=(tool_tokens == 120))
    v = report.load_verdict
    assert v.verdict == expected
    if expected == "stable":
        thm = _evidence(v, "theorem")[0]
        assert "DAG / fork-join" in thm.summary and thm.data["rho"]["tool1"] == Fraction(tool_tokens, 100)
    else:
        cert = _evidence(v, "certificate")[0]
        assert cert.data["engine"] == "tool1" and cert.data["growth_tokens_per_s"] == tool_tokens - 100
    if tool_tokens == 120:
        assert "grows" in _evidence(v, "simulation")[0].summary
    assert report.policy_verdict.verdict == "maximally-stable"


def test_non_work_conserving_engine_is_not_maximally_stable():
    net = fork_join(rate=1, tool_tokens=40, policy="fastertransformer")
    report = check_network(net, simulate=False)
    assert report.policy_verdict.verdict == "not-maximally-stable"
    assert report.load_verdict.verdict == "inconclusive" and "not work-conserving" in report.load_verdict.evidence[0].summary


def test_cli_check_json_contract(capsys):
    assert main(["check", str(EXAMPLES / "network_rybko_stolyar_good.yaml"), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert {"load_verdict", "policy_verdict", "capacity", "load", "evidence"} <= set(out)
    assert out["load_verdict"] == "stable" and out["load"]["bottleneck"] in ("e1", "e2")
    assert out["capacity"]["engines"]["e1"]["tokens_per_s"] == 768
    assert main(["check", str(EXAMPLES / "network_fork_join.yaml")]) == 0
    text = capsys.readouterr().out
    assert "tool1" in text and "STABLE" in text


def test_cli_bad_network_file_exits_2_with_one_line(tmp_path, capsys):
    bad = tmp_path / "net.yaml"
    bad.write_text((EXAMPLES / "network_lu_kumar.yaml").read_text().replace("engine: e2, prompt", "engine: e9, prompt", 1))
    assert main(["check", str(bad)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "classes[0].route[1].engine" in err[0] and "unknown engine 'e9'" in err[0]


@pytest.mark.parametrize("k_max, expected", [(8, "unstable"), (50, "inconclusive")])
def test_k_max_engine_is_judged_by_its_region(k_max, expected):
    """With 1 s batches and at most k_max requests per batch, tool1 decodes at most k_max tokens/s:
    its 20 decode tokens/s do not fit when k_max = 8 (an exact separating hyperplane), and fit at 50,
    where the network verdict stays inconclusive (no scalar token server)."""
    from dataclasses import replace

    from llmstab.fluid_models.engine import Engine
    from llmstab.fluid_models.networks.network import Network

    net = fork_join(rate=1, tool_tokens=40)
    tool = net.engines["tool1"]
    engines = {**net.engines, "tool1": replace(tool, engine=Engine(tool.engine.batch_time, 100, k_max))}
    v = check_network(Network(engines, net.classes), simulate=False).load_verdict
    assert v.verdict == expected
    if expected == "unstable":
        assert any(e.kind == "certificate" and "hyperplane" in e.summary and e.data["engine"] == "tool1" for e in v.evidence)
    else:
        assert "k_max = 50" in v.evidence[0].summary and "inside" in v.evidence[0].summary


@pytest.mark.parametrize("tool_tokens, expected", [(40, "stable"), (90, "stable"), (110, "unstable")])
def test_planner_that_joins_its_tools_is_stable_until_a_tool_passes_load_one(tool_tokens, expected):
    """The join back at the planner makes the network cyclic: the verdict rests on a Lyapunov
    certificate (buffers and join syncs) below load 1, on the load certificate above it."""
    from llmstab.fluid_models.networks.examples import fork_join_loop

    net = fork_join_loop(rate=1, tool_tokens=tool_tokens)
    assert not net.is_feedforward
    v = check_network(net, simulate=False).load_verdict
    assert v.verdict == expected
    cert = _evidence(v, "certificate")[-1]
    if expected == "stable":
        assert cert.data["verified_exactly"] is True and "answer.p<search.d" in cert.data["weights"]
    else:
        assert cert.data["engine"] == "tool1"


def test_a_long_exact_drift_stays_in_the_json_and_out_of_the_prose():
    """The good Rybko-Stolyar certificate's drift is a 28/30-digit fraction: prose shows its decimal, the
    JSON the whole fraction (the check used to print it in the sentence)."""
    import re
    import subprocess
    import sys

    file = str(EXAMPLES / "network_rybko_stolyar_good.yaml")
    run = [sys.executable, "-m", "llmstab.checkers.cli.main", "check", file, "--no-simulate"]
    text = subprocess.run(run, capture_output=True, text=True, check=True).stdout
    report = json.loads(subprocess.run(run + ["--json"], capture_output=True, text=True, check=True).stdout)
    certificate = next(e for e in report["evidence"] if e["kind"] == "certificate")
    epsilon = Fraction(certificate["data"]["epsilon"])
    assert len(str(epsilon)) > 30 and not re.search(r"\d{13,}", text)
    assert f"dV/dt <= {float(-epsilon):.4g}" in text
