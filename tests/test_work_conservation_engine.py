"""The work-conservation probe at the engine's own budget: SLAI's tau, its decode cap, summarised states."""

import json
import subprocess
import sys
from fractions import Fraction

import yaml
from hypothesis import given, settings, strategies as st

from llmstab.checkers.work_conservation import check_work_conservation, decode_cap_divergence, summarise_state
from llmstab.fluid_models.batch_time import Staircase
from llmstab.fluid_models.engine import Engine
from llmstab.fluid_models.policies import SLAI, VLLM, FixedChunk, Sarathi
from llmstab.fluid_models.state import EngineState

ENGINE = Engine(Staircase(10, 10, 64), 512)


def test_slai_is_held_to_its_own_budget_tau_not_to_a_larger_b_max():
    r = check_work_conservation(SLAI(tau=512, alpha=4096, beta=4096), random_states=20,
                                engine=Engine(Staircase(10, 10, 64), 513))
    assert r.work_conserving, r.evidence().summary


def test_slai_is_not_work_conserving_at_the_engine_budget_once_beta_binds():
    r = check_work_conservation(SLAI(), random_states=0, engine=ENGINE)
    v = r.at_engine_budget
    assert not r.work_conserving and v.b_max == 512
    assert v.state.size == 129 and v.batch.tokens == 128 and v.max_tokens == 129   # the least state beta breaks
    assert "129 requests: 129 decoding" in r.evidence().summary


def test_a_decode_cap_below_capacity_gives_a_diverging_load_inside_it():
    e = decode_cap_divergence(SLAI(beta=8), ENGINE)
    rate, capacity = (Fraction(e.data[k]) for k in ("exact_decode_rate_tokens_per_ms", "exact_capacity_tokens_per_ms"))
    load, share = Fraction(e.data["exact_load_tokens_per_ms"]), Fraction(e.data["decode_share"])
    assert rate == Fraction(8, 20) and load < capacity
    assert load * share - rate == Fraction(e.data["exact_growth_tokens_per_ms"]) > 0
    assert decode_cap_divergence(SLAI(alpha=512, beta=512), ENGINE) is None       # 512 / t_1 exceeds the capacity
    assert decode_cap_divergence(Sarathi(), ENGINE) is None


def test_a_small_budget_counterexample_comes_with_one_at_the_engine_budget():
    for policy, requests in ((VLLM(), 257), (FixedChunk(chunk=96), 1)):
        r = check_work_conservation(policy, engine=ENGINE)
        assert r.b_max < 512 and r.at_engine_budget.b_max == 512 and r.at_engine_budget.state.size == requests
        assert "at the engine's own b_max: with b_max = 512" in r.evidence().summary
        assert len(r.evidence().summary) < 600


@settings(max_examples=30)
@given(st.lists(st.tuples(st.integers(0, 900), st.integers(1, 50)), min_size=1, max_size=400))
def test_states_are_listed_only_when_short(requests):
    state = EngineState(*(tuple(x) for x in zip(*requests)))
    text = summarise_state(state)
    assert (text.count("(") <= 2 + 2 * 6) and len(text) < 160
    assert ("decode) = [" in text) == (len(requests) <= 6)


def test_check_says_why_slai_is_not_maximally_stable_with_a_diverging_load(tmp_path):
    doc = {"engine": {"batch_time": {"kind": "staircase", "c": 10, "a": 10, "b0": 64}, "token_budget": 512},
           "policy": {"name": "slai", "beta": 8},
           "workload": {"classes": [{"name": "a", "rate": 1, "prompt": {"dist": "deterministic", "mean": 100},
                                     "decode": {"dist": "deterministic", "mean": 10}}]}}
    path = tmp_path / "slai.yaml"
    path.write_text(yaml.safe_dump(doc))
    out = subprocess.run([sys.executable, "-m", "llmstab.checkers.cli.main", "check", str(path), "--json",
                          "--no-simulate"], capture_output=True, text=True, check=True).stdout
    result = json.loads(out)
    assert result["policy_verdict"] == "not-maximally-stable"
    kinds = {e["kind"]: e for e in result["evidence"] if e["about"] == "policy"}
    assert kinds["counterexample"]["data"]["requests"] == 9 and "prefill_left" not in kinds["counterexample"]["data"]
    assert Fraction(kinds["certificate"]["data"]["exact_growth_tokens_per_ms"]) > 0
