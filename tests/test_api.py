"""The public API: ``import llmstab`` from anywhere, check/load/region/simulate, predicates backed by evidence."""

from __future__ import annotations

import doctest
import json
import subprocess
import sys

import pytest
import yaml

import llmstab
import llmstab.api
from llmstab.checkers.errors import InputError
from llmstab.checkers.region_check import region_for
from llmstab.checkers.spec import load_engine_spec
from llmstab.fluid_models.networks.network import Network
from tests.conftest import EXAMPLES, ROOT

SARATHI = EXAMPLES / "codellama34b_a100_sarathi.yaml"


def _python(code: str, cwd) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600, cwd=cwd)


def test_import_llmstab_from_outside_the_checkout(tmp_path):
    run = _python(f"import llmstab; r = llmstab.check({str(SARATHI)!r}); print(r.to_json()['load_verdict'])", tmp_path)
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "stable"
    bare = _python("import theory", tmp_path)
    assert bare.returncode != 0 and "ModuleNotFoundError" in bare.stderr


def test_import_llmstab_is_cheap(tmp_path):
    code = ("import sys, llmstab; heavy = ('numpy', 'sympy', 'numba', 'cvxpy', 'scipy', 'yaml'); "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in heavy))")
    run = _python(code, tmp_path)
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "[]"


@pytest.mark.parametrize("name, absent", [
    ("codellama34b_a100_sarathi.yaml", ("cvxpy", "scipy.stats", "hypothesis")),
    ("codellama34b_a100_vllm.yaml", ("cvxpy", "scipy.stats", "hypothesis")),
    ("network_fork_join.yaml", ("cvxpy", "hypothesis")),
])
def test_a_check_imports_only_what_its_path_needs(name, absent, tmp_path):
    """Theory steps, and the modules the simulating steps import (checked without running a long simulation)."""
    code = (f"import sys, llmstab; llmstab.check({str(EXAMPLES / name)!r}, simulate=False); "
            "import llmstab.checkers.simulation_check; "
            f"print([m for m in {absent!r} if m in sys.modules])")
    run = _python(code, tmp_path)
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "[]"


@pytest.mark.parametrize("name", ["codellama34b_a100_sarathi.yaml", "rad_tiled.yaml", "network_rybko_stolyar_bad.yaml"])
def test_check_to_json_is_what_the_cli_prints(name):
    cli = subprocess.run([sys.executable, "-m", "llmstab.checkers.cli.main", "check", "--json", "--no-simulate",
                          "--seed", "4", str(EXAMPLES / name)], capture_output=True, text=True, timeout=600)
    assert cli.returncode == 0, cli.stderr
    api = llmstab.check(EXAMPLES / name, simulate=False, seed=4).to_json()
    assert json.loads(cli.stdout) == json.loads(json.dumps(api))
    assert api["seed"] == 4 and api["simulate"] is False


def test_check_of_a_parsed_document_equals_check_of_its_file():
    document = yaml.safe_load(SARATHI.read_text())
    from_dict = llmstab.check(document).to_json()
    from_file = llmstab.check(SARATHI).to_json()
    assert from_dict.pop("subject") == from_file.pop("subject")
    assert from_dict == from_file


def test_relative_paths_in_a_document_resolve_against_the_current_directory(tmp_path, monkeypatch):
    (tmp_path / "lengths.csv").write_text("prompt\n100\n200\n300\n")
    document = yaml.safe_load(SARATHI.read_text())
    document["workload"]["classes"][0]["prompt"] = {"dist": "empirical", "file": "lengths.csv"}
    monkeypatch.chdir(tmp_path)
    assert llmstab.load(document).workload.classes[0].prompt.mean == 200
    monkeypatch.chdir(ROOT)
    with pytest.raises(InputError) as err:
        llmstab.load(document)
    assert err.value.field == "workload.classes[0].prompt.file"


def test_load_gives_an_engine_spec_or_a_network():
    assert llmstab.load(SARATHI) == load_engine_spec(SARATHI)
    assert isinstance(llmstab.load(EXAMPLES / "network_lu_kumar.yaml"), Network)
    spec = llmstab.load(SARATHI)
    assert llmstab.load(spec) is spec


def test_region_is_the_engines_capacity_region():
    spec = load_engine_spec(EXAMPLES / "pointC_inside.yaml")
    expected = region_for(spec.engine, spec.workload)
    got = llmstab.region(EXAMPLES / "pointC_inside.yaml")
    assert [v.point for v in got.vertices] == [v.point for v in expected.vertices]
    with pytest.raises(InputError, match="one engine"):
        llmstab.region(EXAMPLES / "network_lu_kumar.yaml")


def test_simulate_is_seeded():
    first = llmstab.simulate(SARATHI, horizon_s=30, seed=1)
    again = llmstab.simulate(SARATHI, horizon_s=30, seed=1)
    other = llmstab.simulate(SARATHI, horizon_s=30, seed=2)
    assert first.seed == 1 and first.trace.size == again.trace.size
    assert list(first.backlog_tokens) == list(again.backlog_tokens) != list(other.backlog_tokens)
    net = llmstab.simulate(EXAMPLES / "network_fork_join.yaml", horizon_s=50, seed=0)
    assert net.times[-1] <= 50


@pytest.mark.parametrize("policy", ["sarathi", "orca", "vllm", "fastertransformer", {"name": "fixed_chunk", "chunk": 6}])
def test_is_work_conserving_is_its_certificate(policy):
    certificate = llmstab.work_conservation_certificate(policy, random_states=20)
    assert llmstab.is_work_conserving(policy, random_states=20) is certificate.work_conserving
    assert (certificate.counterexample is None) == certificate.work_conserving
    if not certificate.work_conserving:
        assert certificate.batch.tokens < certificate.max_tokens


@pytest.mark.parametrize("name", ["codellama34b_a100_sarathi.yaml", "codellama34b_a100_overload.yaml",
                                  "codellama34b_a100_vllm.yaml", "pointC_inside.yaml", "network_fork_join.yaml"])
def test_stability_predicates_agree_with_the_verdicts_of_check(name):
    report = llmstab.check(EXAMPLES / name, simulate=False)
    assert llmstab.load_verdict(EXAMPLES / name) == report.load_verdict
    assert llmstab.policy_verdict(EXAMPLES / name) == report.policy_verdict
    assert llmstab.is_stable(EXAMPLES / name) is (report.load_verdict.verdict == "stable")
    assert llmstab.is_maximally_stable(EXAMPLES / name) is (report.policy_verdict.verdict == "maximally-stable")


def test_an_inconclusive_verdict_is_not_a_yes():
    path = EXAMPLES / "pointC_inside.yaml"  # inside the region: some scheduler carries it, none is proven here
    assert llmstab.load_verdict(path).verdict == "inconclusive" and llmstab.is_stable(path) is False


def test_unknown_attributes_fail_like_a_module():
    with pytest.raises(AttributeError):
        llmstab.no_such_thing  # noqa: B018
    assert {"check", "load", "is_stable", "checkers"} <= set(dir(llmstab))


@pytest.mark.parametrize("module", [llmstab, llmstab.api], ids=["llmstab", "llmstab.api"])
def test_api_docstring_examples(module, monkeypatch):
    monkeypatch.chdir(ROOT)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.attempted and result.failed == 0
