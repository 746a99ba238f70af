"""The phase bound of schedulers that never mix phases (checkers/phase_bound.py): its premise, its numbers, its use."""

from __future__ import annotations

import json
import subprocess
import sys
from fractions import Fraction

import numpy as np
import pytest
import yaml
from hypothesis import given, settings, strategies as st

from llmstab.checkers.phase_bound import phase_bound, prompt_sums, witness_bound
from llmstab.checkers.single_engine import capacity_of
from llmstab.fluid_models.batch_time import Staircase
from llmstab.fluid_models.distributions import Deterministic, Empirical, Geometric, Uniform
from llmstab.fluid_models.engine import Engine, KVCache
from llmstab.fluid_models.policies import VLLM, FasterTransformer
from llmstab.fluid_models.simulation.arrivals import Trace
from llmstab.fluid_models.simulation.simulator import simulate
from llmstab.fluid_models.workload import RequestClass, Workload

from tests.conftest import ROOT

ENGINE = Engine(Staircase("11.28", "35.47", 128), 512)


@given(st.lists(st.integers(1, 40), min_size=1, max_size=4), st.integers(1, 120))
def test_prompt_sums_are_exactly_the_sums_of_lengths(lengths, b_max):
    brute = {0}
    for total in range(1, b_max + 1):
        if any(total - v in brute for v in lengths):
            brute.add(total)
    assert set(np.flatnonzero(prompt_sums(np.array(lengths), b_max)).tolist()) == brute


@settings(max_examples=25)
@given(policy=st.sampled_from([VLLM(), FasterTransformer()]), b_max=st.integers(4, 40),
       prompts=st.lists(st.integers(1, 40), min_size=1, max_size=30), seed=st.integers(0, 10**6))
def test_every_batch_is_one_phase_and_a_prefill_batch_holds_whole_prompts(policy, b_max, prompts, seed):
    """The bound's premise, on the policy's own kernel: prompts within b_max, memory unlimited."""
    prompts = [min(p, b_max) for p in prompts]
    rng = np.random.default_rng(seed)
    times = np.sort(rng.uniform(0, 0.05, len(prompts)))
    trace = Trace(times, prompts, rng.integers(1, 6, len(prompts)))
    run = simulate(Engine(Staircase(1, 1, 4), b_max), policy, None, arrivals="trace", trace=trace,
                   record_batches=True)
    reachable = prompt_sums(np.unique(prompts), b_max)
    for batch in run.batches.members:
        prefill = [(r, p) for r, p, _ in batch if p > 0]
        assert not prefill or all(d == 0 for _, _, d in batch), "a batch mixed the phases"
        assert all(p == prompts[r] for r, p in prefill), "a prefill batch cut a prompt"
        assert reachable[sum(p for _, p in prefill)]
    assert run.finished.all()


def test_the_bound_on_the_papers_engine_is_exact():
    work = Workload((RequestClass("chat", 12, Deterministic(129), Geometric(112)),))
    bound = phase_bound(ENGINE, work, capacity_of(ENGINE))
    # three whole prompts of 129 tokens fill a batch best: 387 tokens in 11.28 + 4 x 35.47 ms
    assert bound.best_prefill_batch == 387
    assert bound.prefill_tokens_per_ms == Fraction(387) / (Fraction("11.28") + 4 * Fraction("35.47"))
    load_p, load_d = Fraction(12 * 129, 1000), Fraction(12 * 112, 1000)
    assert bound.busy_fraction == load_p / bound.prefill_tokens_per_ms + load_d / Fraction(12800, 3829) > 1
    assert bound.cuts_capacity and bound.utilisation < 1


@pytest.mark.parametrize("prompt", [Geometric(129), Uniform(1, 600), Deterministic(600)])
def test_no_bound_where_a_prompt_may_exceed_b_max_or_every_size_is_a_sum(prompt):
    work = Workload((RequestClass("c", 1, prompt, Deterministic(10)),))
    bound = phase_bound(ENGINE, work, capacity_of(ENGINE))
    assert bound is None or not bound.cuts_capacity


def test_no_bound_with_limited_memory():
    engine = Engine(ENGINE.batch_time, 512, kv_cache=KVCache.from_tokens(100_000))
    work = Workload((RequestClass("c", 1, Deterministic(129), Deterministic(10)),))
    assert phase_bound(engine, work, capacity_of(engine)) is None


def test_several_classes_pool_their_prompt_lengths():
    work = Workload((RequestClass("a", 1, Deterministic(200), Deterministic(5)),
                     RequestClass("b", 1, Empirical(np.array([100, 300])), Deterministic(5))))
    bound = phase_bound(ENGINE, work, capacity_of(ENGINE))
    sums = np.flatnonzero(prompt_sums(np.array([100, 200, 300]), 512))
    assert bound.best_prefill_batch in sums and bound.best_prefill_batch == 500


@pytest.mark.parametrize("example", ["codellama34b_a100_vllm.yaml", "codellama34b_a100_fastertransformer.yaml"])
def test_the_check_decides_both_verdicts_exactly_and_simulates_nothing(example):
    out = subprocess.run([sys.executable, "-m", "llmstab.checkers.cli.main", "check", "--json", f"examples/{example}"],
                         capture_output=True, text=True, cwd=ROOT, timeout=600, check=True).stdout
    report = json.loads(out)
    assert report["load_verdict"] == "unstable" and report["policy_verdict"] == "not-maximally-stable"
    load = [e for e in report["evidence"] if e["about"] == "load"]
    policy_ = [e for e in report["evidence"] if e["about"] == "policy"]
    assert load[0]["step"] == "phase-bound" and load[0]["exact"]["busy_fraction"] == "202937/200000"
    assert any(e["step"] == "phase-bound" and e["exact"]["diverges_above_fraction_of_capacity"] == "723/848"
               for e in policy_)
    assert not any(e["kind"] == "simulation" for e in report["evidence"]) and "phase-bound" in report["steps"]


@pytest.mark.parametrize("policy, carried", [(VLLM(), 0.55), (FasterTransformer(), None)], ids=["vllm", "ft"])
def test_the_witness_mix_diverges_above_its_threshold(policy, carried):
    """The mix witness_bound chooses: 257-token prompts, one output each; exact threshold 65.4% of capacity.

    Above it both policies diverge. The bound is what no run beats, not what a run reaches: vLLM (which batches
    decodes) still carries 55%, FasterTransformer (one prompt per static batch) diverges there too.
    """
    witness = witness_bound(ENGINE, capacity_of(ENGINE))
    threshold = witness.utilisation / witness.busy_fraction
    assert witness.best_prefill_batch == 257 and 0.65 < threshold < 0.66
    capacity_rps = float(capacity_of(ENGINE).tokens_per_ms * 1000 / 258)

    def backlog(share: float) -> int:
        work = Workload((RequestClass("w", share * capacity_rps, Deterministic(257), Deterministic(1)),))
        return int(simulate(ENGINE, policy, work, horizon_s=400, seed=1,
                            max_backlog_requests=20_000).backlog_requests[-1])

    assert backlog(0.75) > 500
    assert carried is None or backlog(carried) < 50


def test_witness_evidence_joins_the_policy_verdict_when_the_mix_proves_nothing(tmp_path):
    doc = yaml.safe_load((ROOT / "examples" / "codellama34b_a100_vllm.yaml").read_text())
    doc["workload"]["classes"][0]["prompt"] = {"dist": "deterministic", "mean": 128}
    path = tmp_path / "v.yaml"
    path.write_text(yaml.safe_dump(doc))
    out = subprocess.run([sys.executable, "-m", "llmstab.checkers.cli.main", "check", "--json", "--no-simulate",
                          str(path)], capture_output=True, text=True, cwd=ROOT, timeout=600, check=True).stdout
    report = json.loads(out)
    witness = [e for e in report["evidence"] if e["step"] == "phase-bound"]
    assert report["load_verdict"] == "inconclusive" and len(witness) == 1
    assert witness[0]["data"]["witness_prompt_tokens"] == 257
    assert witness[0]["exact"]["diverges_above_fraction_of_capacity"] == "987882/1510261"
