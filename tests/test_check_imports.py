"""A single-engine check loads what it needs: no sympy, and only its own policy's module (issue 9)."""

from __future__ import annotations

import json
import subprocess
import sys
from fractions import Fraction

import pytest
import yaml

from llmstab.checkers.report import CheckReport
from llmstab.checkers.spec import load_engine_spec
from llmstab.checkers.verdict import Evidence, Verdict, jsonable
from llmstab.theory.exact_linalg import Exact

from tests.conftest import ROOT

PROBE = """import json, sys
from llmstab.checkers.cli.main import main
try:
    status = main(sys.argv[1:])
except SystemExit as exc:  # --help
    status = exc.code
loaded = sorted(m for m in sys.modules if m == "sympy" or m.startswith("llmstab.fluid_models.policies."))
print(json.dumps({"status": status, "modules": loaded}), file=sys.stderr)
"""


def _run(*args: str) -> tuple[str, dict]:
    """stdout of ``llmstab ARGS`` run in a fresh interpreter, and what that interpreter had imported."""
    done = subprocess.run([sys.executable, "-c", PROBE, *args], capture_output=True, text=True, cwd=ROOT,
                          timeout=600, check=True)
    return done.stdout, json.loads(done.stderr.strip().splitlines()[-1])


@pytest.mark.parametrize("options, example, policy", [
    ((), "codellama34b_a100_sarathi.yaml", "sarathi"),
    (("--no-simulate",), "codellama34b_a100_vllm.yaml", "vllm"),
    ((), "pointC_inside.yaml", "orca"),  # k_max binds: the region's policy step simulates a test load inside it
])
def test_single_engine_check_imports_no_sympy_and_one_policy(options, example, policy):
    out, probe = _run("check", "--json", *options, f"examples/{example}")
    report = json.loads(out)
    assert probe["status"] == 0 and report["load_verdict"] in ("stable", "unstable", "inconclusive")
    assert "sympy" not in probe["modules"]
    loaded = {m.rsplit(".", 1)[-1] for m in probe["modules"]} - {"base"}
    assert policy in loaded and not loaded & {"slai", "rad", "fixed_chunk", "orca", "fcfs"} - {policy}


@pytest.mark.parametrize("example", ["codellama34b_a100_vllm.yaml", "codellama34b_a100_fastertransformer.yaml"])
def test_check_of_a_policy_that_is_not_work_conserving_imports_no_sympy(example):
    out, probe = _run("check", "--json", f"examples/{example}")
    report = json.loads(out)
    assert probe["status"] == 0 and "sympy" not in probe["modules"]
    assert (report["load_verdict"], report["policy_verdict"]) == ("unstable", "not-maximally-stable")


def test_simulating_check_imports_no_sympy(tmp_path):
    """The load settled by simulation and the empirical capacity bisected (growth fits, fluid predictions)
    without sympy, with the verdicts and exact fractions the sympy version gave (commit c887481).

    129-token prompts: the phase bound decides the bundled FasterTransformer check without a simulation;
    with 128-token prompts four fill ``b_max = 512`` exactly, the bound cuts nothing, and both
    simulating steps run.
    """
    doc = yaml.safe_load((ROOT / "examples/codellama34b_a100_vllm.yaml").read_text())
    doc["policy"], doc["workload"]["classes"][0]["prompt"]["mean"] = "fastertransformer", 128
    (tmp_path / "ft.yaml").write_text(yaml.safe_dump(doc))
    out, probe = _run("check", "--json", str(tmp_path / "ft.yaml"))
    report = json.loads(out)
    assert probe["status"] == 0 and "sympy" not in probe["modules"]
    assert (report["load_verdict"], report["policy_verdict"]) == ("unstable", "not-maximally-stable")
    settled, found = report["evidence"][0], report["evidence"][-1]
    assert settled["step"] == "settle-load" and settled["data"]["growth"]["verdict"] == "diverging"
    assert settled["data"]["growth"]["fluid_prediction_tokens_per_s"] == 0.0  # the load is inside capacity
    assert found["step"] == "empirical-capacity" and found["kind"] == "counterexample"
    assert found["exact"]["diverging_fraction"] == "34461/80000" and found["data"]["runs"][0] == [0.861525, "diverging"]
    low = found["data"]["bounded_fraction"]
    assert low == 0 and type(low) is int  # no bounded run: the search's Exact(0), an int as sympy's Integer(0) was


def test_exact_capacity_text_is_unchanged():
    """The capacity is a Fraction now; its exact text and the JSON numbers read as before."""
    out, _ = _run("check", "--json", "--no-simulate", "examples/codellama34b_a100_sarathi.yaml")
    capacity = json.loads(out)["capacity"]
    assert capacity["exact_tokens_per_ms"] == "12800/3829"
    assert capacity["best_batch_tokens"] == 512 and isinstance(capacity["best_batch_tokens"], int)


def test_derive_help_imports_no_sympy():
    out, probe = _run("derive", "--help")
    assert probe["status"] == 0 and "--latex" in out and "sympy" not in probe["modules"]


def test_integral_exact_numbers_are_json_integers():
    """A sympy Integer was printed as an int; the Exact that replaces it is too. A plain Fraction (what
    to_fraction returns, e.g. in the region checks) is printed as a float, as before."""
    assert jsonable({"n": Exact(3374), "r": Exact(1, 4), "f": Fraction(3)}) == {"n": 3374, "r": 0.25, "f": 3.0}
    assert isinstance(jsonable(Exact(6, 2)), int) and isinstance(jsonable(Fraction(6, 2)), float)
    assert isinstance(jsonable(load_engine_spec(ROOT / "examples/codellama34b_a100_sarathi.yaml").workload.token_rate),
                      int)


@pytest.mark.parametrize("rate, shown", [(Fraction(1), "(1 request/s)"), (Fraction(12), "(12 requests/s)"),
                                         (Fraction(1, 2), "(0.5 requests/s)")])
def test_request_rates_read_in_the_right_number(rate, shown):
    report = CheckReport("demo", Verdict("stable", [Evidence("note", "n")]), Verdict("inconclusive"),
                         {}, {"tokens_per_s": Fraction(100), "requests_per_s": rate})
    assert shown in report.to_text()


def test_policies_load_on_first_lookup():
    code = ("import sys; from llmstab.fluid_models.policies import POLICIES; before = 'llmstab.fluid_models.policies.rad' "
            "in sys.modules; cls = POLICIES['rad']; print(before, cls.__name__, sorted(POLICIES) == sorted(set(POLICIES)))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, check=True).stdout
    assert out.split() == ["False", "RAD", "True"]
