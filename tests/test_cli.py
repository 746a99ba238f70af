"""``llmstab check`` and ``llmstab derive`` on the bundled CodeLlama-34B / A100 examples."""

import json
import subprocess
import sys

import pytest
import yaml

from llmstab.checkers.cli.main import main
from tests.conftest import EXAMPLES

POLICY_VERDICTS = {"sarathi": "maximally-stable", "orca": "maximally-stable",
                   "vllm": "not-maximally-stable", "fastertransformer": "not-maximally-stable"}


def _check_json(path, capsys, *extra):
    assert main(["check", str(path), "--json", *extra]) == 0
    return json.loads(capsys.readouterr().out)


@pytest.mark.parametrize("policy", sorted(POLICY_VERDICTS))
def test_policy_verdicts_with_evidence(policy, capsys):
    out = _check_json(EXAMPLES / f"codellama34b_a100_{policy}.yaml", capsys)
    assert out["policy_verdict"] == POLICY_VERDICTS[policy]
    assert round(out["capacity"]["tokens_per_ms"], 3) == 3.343
    assert out["capacity"]["exact_tokens_per_ms"] == "12800/3829"
    policy_evidence = [e for e in out["evidence"] if e["about"] == "policy"]
    kinds = {e["kind"] for e in policy_evidence}
    assert ("counterexample" in kinds) == (POLICY_VERDICTS[policy] == "not-maximally-stable")
    if policy in ("sarathi", "orca"):
        assert out["load_verdict"] == "stable"
        assert any("Theorem 2(b)" in e["summary"] for e in out["evidence"] if e["about"] == "load")


@pytest.mark.parametrize("policy", sorted(POLICY_VERDICTS))
def test_overload_is_unstable_for_every_policy(policy, capsys, tmp_path):
    doc = yaml.safe_load((EXAMPLES / "codellama34b_a100_overload.yaml").read_text())
    doc["policy"] = policy
    (tmp_path / "f.yaml").write_text(yaml.safe_dump(doc))
    out = _check_json(tmp_path / "f.yaml", capsys)
    assert out["load_verdict"] == "unstable"
    load_evidence = [e for e in out["evidence"] if e["about"] == "load"]
    assert load_evidence[0]["kind"] == "certificate" and "Theorem 2(a)" in load_evidence[0]["summary"]
    assert load_evidence[0]["data"]["load_tokens_per_ms"] > load_evidence[0]["data"]["capacity_tokens_per_ms"]


def test_load_just_below_and_above_capacity(capsys, tmp_path):
    """The verdict flips exactly at 512/153.16 tokens/ms: 13.87 vs 13.88 requests/s of 129 + 112 tokens."""
    doc = yaml.safe_load((EXAMPLES / "codellama34b_a100_sarathi.yaml").read_text())
    verdicts = {}
    for rate in (13.87, 13.88):
        doc["workload"]["classes"][0]["rate"] = rate
        (tmp_path / "f.yaml").write_text(yaml.safe_dump(doc))
        verdicts[rate] = _check_json(tmp_path / "f.yaml", capsys)["load_verdict"]
    assert verdicts == {13.87: "stable", 13.88: "unstable"}


def test_human_output_and_console_script():
    result = subprocess.run([sys.executable, "-m", "llmstab.checkers.cli.main", "check", str(EXAMPLES / "codellama34b_a100_orca.yaml")],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "capacity : 3.343 tokens/ms" in result.stdout
    assert "load verdict: STABLE" in result.stdout and "policy verdict: MAXIMALLY-STABLE" in result.stdout


def test_derive_prints_the_derivation(capsys):
    assert main(["derive", str(EXAMPLES / "codellama34b_a100_sarathi.yaml")]) == 0
    out = capsys.readouterr().out
    assert "12800/3829" in out and "b0*c/(a*k + c)**2" in out
    assert main(["derive", str(EXAMPLES / "codellama34b_a100_sarathi.yaml"), "--latex"]) == 0
    assert "\\left\\lceil" in capsys.readouterr().out


def _seeds(node):
    """Every ``seed`` recorded anywhere inside a JSON value."""
    if isinstance(node, dict):
        return [v for k, v in node.items() if k == "seed"] + [s for v in node.values() for s in _seeds(v)]
    if isinstance(node, list):
        return [s for v in node for s in _seeds(v)]
    return []


def test_seed_reaches_every_simulation_and_the_report_states_it():
    result = subprocess.run([sys.executable, "-m", "llmstab.checkers.cli.main", "check", "--json", "--seed", "3",
                             str(EXAMPLES / "fixed_chunk_tiled.yaml")], capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    simulated = [e for e in out["evidence"] if e["kind"] in ("simulation", "counterexample") and _seeds(e["data"])]
    assert simulated and out["seed"] == 3 and out["simulate"] is True
    assert set(_seeds(out)) == {3}


@pytest.mark.parametrize("seed", ["-1", "1.5", "x"])
def test_a_bad_seed_is_one_line_and_exit_2(seed):
    result = subprocess.run([sys.executable, "-m", "llmstab.checkers.cli.main", "check", "--seed", seed,
                             str(EXAMPLES / "codellama34b_a100_sarathi.yaml")], capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.count("\n") == 1 and "seed: must be a non-negative integer" in result.stderr
