"""Issue 10: ``long_prompts: split | reject`` for the schedulers that never chunk, and the simulation work budget.

* vLLM, b_max 128, prompts of 290 tokens: ``split`` (the default) names itself in
  both verdicts; ``reject`` (the literal whole-prompt rule) makes the load
  unstable and the policy not maximally stable, without simulating;
* inputs that used to simulate for minutes (a token budget of a million, prompts
  of 100,000 tokens at 0.001 requests/s) finish in seconds with an honest
  verdict: the run the question needed exceeds the work budget, so it is
  ``inconclusive``, and the evidence says so.

The CLI cases run as subprocesses with a timeout (the old code ran for minutes).
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from fractions import Fraction
from pathlib import Path

import pytest
import yaml
from hypothesis import given, settings, strategies as st

from llmstab.checkers.growth import duration, seconds
from llmstab.checkers.simulation_budget import WorkBudget
from llmstab.checkers.simulation_check import empirical_capacity, run_until_settled, settle_load
from llmstab.checkers.work_conservation import check_work_conservation
from llmstab.fluid_models.batch_time import Staircase
from llmstab.fluid_models.distributions import Deterministic, Geometric
from llmstab.fluid_models.engine import Engine
from llmstab.fluid_models.policies import VLLM, FasterTransformer
from llmstab.fluid_models.state import EngineState
from llmstab.fluid_models.workload import RequestClass, Workload

from .conftest import EXAMPLES

VLLM_EXAMPLE = EXAMPLES / "codellama34b_a100_vllm.yaml"
#: Seconds a hostile input may take here (the issue asks for under 10 s on a quiet machine; the
#: shared CI cores run several suites at once, so the guard leaves room, far below the old minutes).
HOSTILE_TIMEOUT = 60


def _doc(**changes) -> dict:
    doc = yaml.safe_load(VLLM_EXAMPLE.read_text())
    for key, value in changes.items():
        if key == "token_budget":
            doc["engine"]["token_budget"] = value
        elif key == "policy":
            doc["policy"] = value
        else:
            doc["workload"]["classes"][0][key] = value
    return doc


def _check(tmp_path: Path, doc: dict, *extra: str) -> tuple[dict, float]:
    path = tmp_path / "in.yaml"
    path.write_text(yaml.safe_dump(doc))
    start = time.monotonic()
    run = subprocess.run([sys.executable, "-m", "llmstab.checkers.cli.main", "check", "--json", *extra, str(path)],
                         capture_output=True, text=True, timeout=HOSTILE_TIMEOUT)
    assert run.returncode == 0, run.stderr
    return json.loads(run.stdout), time.monotonic() - start


def _long(policy: object) -> dict:
    """The issue's input: vLLM, b_max 128, prompts of 290 tokens, 0.1 requests/s."""
    return _doc(token_budget=128, policy=policy, rate=0.1, prompt={"dist": "deterministic", "mean": 290})


def _evidence(out: dict, about: str) -> list[dict]:
    return [e for e in out["evidence"] if e["about"] == about]


def _names(out: dict, about: str, choice: str) -> bool:
    return any(e["data"].get("long_prompts") == choice for e in _evidence(out, about))


def test_reject_blocks_the_queue_so_the_load_is_unstable(tmp_path):
    out, _ = _check(tmp_path, _long({"name": "vllm", "long_prompts": "reject"}))
    assert out["load_verdict"] == "unstable" and out["policy_verdict"] == "not-maximally-stable"
    first = _evidence(out, "load")[0]
    assert first["kind"] == "counterexample" and "long_prompts: reject" in first["summary"]
    assert _names(out, "load", "reject") and _names(out, "policy", "reject")
    assert "settle-load" not in out["steps"] and "empirical-capacity" not in out["steps"]


def test_split_names_itself_in_both_verdicts(tmp_path):
    out, _ = _check(tmp_path, _long("vllm"), "--no-simulate")
    assert _names(out, "load", "split") and _names(out, "policy", "split")
    assert any("long_prompts: split" in e["summary"] for e in _evidence(out, "policy"))


def test_split_is_silent_when_every_prompt_fits(tmp_path):
    out, _ = _check(tmp_path, _doc(), "--no-simulate")  # prompts of 129 tokens, b_max 512
    assert not _names(out, "load", "split") and not _names(out, "policy", "split")


def test_a_bad_long_prompts_value_is_refused_with_one_line(tmp_path):
    path = tmp_path / "in.yaml"
    path.write_text(yaml.safe_dump(_long({"name": "fastertransformer", "long_prompts": "drop"})))
    run = subprocess.run([sys.executable, "-m", "llmstab.checkers.cli.main", "check", str(path)],
                         capture_output=True, text=True, timeout=HOSTILE_TIMEOUT)
    lines = run.stderr.strip().splitlines()
    assert run.returncode == 2 and len(lines) == 1 and "long_prompts" in lines[0] and "policy" in lines[0]


@pytest.mark.parametrize("policy", [VLLM, FasterTransformer])
def test_the_kernel_reads_the_option(policy):
    long_alone = EngineState((6,), (1,))
    assert policy().form_batch(long_alone, b_max=4).prefill == (4,)  # split: a budget-sized piece
    assert policy(long_prompts="reject").form_batch(long_alone, b_max=4).prefill == (0,)  # never admitted
    fits = EngineState((3, 2), (1, 1))
    assert policy(long_prompts="reject").form_batch(fits, b_max=4) == policy().form_batch(fits, b_max=4)


def test_the_work_conservation_counterexample_path_still_works_under_reject():
    r = check_work_conservation(VLLM(long_prompts="reject"), random_states=0)
    assert not r.work_conserving and r.counterexample is not None and r.batch.tokens < r.max_tokens


def _budget_evidence(out: dict, about: str) -> dict | None:
    for e in _evidence(out, about):
        if e["kind"] == "simulation" and e["data"].get("work_limit"):
            return e
    return None


@pytest.mark.parametrize("changes", [
    {"token_budget": 1000064},  # the b_max (a multiple of b0 = 128): t(b_max) is 277 s
    {"prompt": {"dist": "deterministic", "mean": 100000}, "rate": 0.001},  # the probes simulated days of full batches
], ids=["huge-budget", "huge-prompts"])
def test_extreme_inputs_finish_with_an_honest_verdict(tmp_path, changes):
    out, took = _check(tmp_path, _doc(**changes))
    assert took < HOSTILE_TIMEOUT
    hit = _budget_evidence(out, "load") or _budget_evidence(out, "policy")
    assert hit is not None and "work budget" in hit["summary"]
    if _budget_evidence(out, "load"):
        assert out["load_verdict"] == "inconclusive"
    prose = " ".join(e["summary"] for e in out["evidence"])
    assert "e+" not in prose and "e-0" not in prose


ENGINE = Engine(Staircase("11.28", "35.47", 128), 512)
CHAT = Workload((RequestClass("chat", 12, Deterministic(129), Geometric(112)),))


def test_a_run_the_budget_cannot_pay_for_is_inconclusive_never_a_verdict():
    run = run_until_settled(ENGINE, VLLM(), CHAT, budget=WorkBudget(limit=1000))
    assert run.outcome == "inconclusive" and not run.diverging and not run.bounded
    assert run.work_limit["budget_request_batches"] == 1000 and "work budget" in run.statement
    v = settle_load(ENGINE, VLLM(), CHAT, run=run)
    assert v.verdict == "inconclusive" and "not simulated" in v.evidence[0].summary


def test_a_probe_out_of_budget_ends_the_search_as_no_evidence():
    capacity = Fraction(51_200_000, 15316)
    e = empirical_capacity(ENGINE, VLLM(), CHAT, capacity, budget=WorkBudget(limit=1000))
    assert e.kind == "simulation" and e.summary.startswith("no evidence either way")
    assert e.data["runs"] == [(0.99, "inconclusive")]


def test_the_budget_is_charged_and_shared():
    budget = WorkBudget(limit=3_000_000)
    run_until_settled(ENGINE, VLLM(), CHAT, budget=budget)
    assert 0 < budget.spent
    spent = budget.spent
    run = run_until_settled(ENGINE, VLLM(), CHAT.scaled(Fraction(1, 2)), budget=budget)
    assert budget.spent >= spent and (run.work_limit is None or run.outcome == "inconclusive")


@settings(max_examples=40)
@given(st.floats(min_value=1e-4, max_value=1e9, allow_nan=False))
def test_durations_never_print_an_exponent(x):
    assert "e+" not in duration(x) and "e-" not in duration(x) and "e+" not in seconds(x)
