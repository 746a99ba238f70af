"""Tiled batch time, Theorem 1's bound, and the optimal-tiling checker."""

from __future__ import annotations

import pytest
import sympy
from hypothesis import given, settings
from hypothesis import strategies as st

from llmstab.checkers.errors import InputError
from llmstab.checkers.single_engine import capacity_of
from llmstab.checkers.tiling import check_optimal_tiling, check_tiled_engine, tiling_parameters
from llmstab.checkers.verdict import jsonable
from llmstab.fluid_models.batch_time import Staircase, Tiled, TiledAttention
from llmstab.fluid_models.distributions import Deterministic
from llmstab.fluid_models.engine import Engine
from llmstab.fluid_models.policies import RAD, FixedChunk, Orca
from llmstab.fluid_models.workload import RequestClass, Workload
from llmstab.theory.capacity import b as B, engine_capacity
from llmstab.theory.exact_linalg import Exact
from llmstab.theory.tiling import fixed_chunk_efficiency, per_token_time, theorem1, theorem2_assumptions


@settings(max_examples=30, deadline=None)
@given(st.integers(1, 20), st.sampled_from([8, 16, 64]), st.integers(0, 5), st.integers(1, 8))
def test_whole_tiles_reach_the_per_token_time(t_lin, b_col, t_nl_thousandths, tiles):
    """Theorem 1's per-token time is the engine's exact capacity when batches can fill whole tiles."""
    t_nl = sympy.Rational(t_nl_thousandths, 1000)
    model = Tiled(t_lin=t_lin, b_col=b_col, t_nl=t_nl)
    cap = engine_capacity(model.expression(B), b_col * tiles)
    assert 1 / cap.tokens_per_ms == per_token_time(t_lin, b_col, t_nl)
    assert cap.best_batch % b_col == 0
    exact = capacity_of(Engine(model, b_col * tiles))  # what the tiling checker uses, without sympy
    assert (exact.tokens_per_ms, exact.best_batch) == (cap.tokens_per_ms, cap.best_batch)


def test_theorem1_numbers_are_exact_fractions():
    """Exact (not sympy) numbers: an integral one is an int in JSON, as the sympy Integer it replaced was."""
    bound = theorem1(rate_per_s=20, mean_tokens=100, per_token_ms="1/4", nodes=2)
    assert type(bound.request_time_ms) is Exact and type(bound.load) is Exact and type(bound.max_rate_per_s) is Exact
    assert (bound.request_time_ms, bound.load, bound.max_rate_per_s, bound.exceeds) == (25, Exact(1, 2), 80, False)
    assert jsonable([bound.request_time_ms, bound.load]) == [25, 0.5] and type(jsonable(bound.max_rate_per_s)) is int
    assert type(per_token_time(2, 64, 0.001)) is Exact and per_token_time(2, 64, 0.001) == Exact(129, 4000)


def test_attention_terms_add_per_token_time():
    plain = Tiled(t_lin=2, b_col=64, t_nl="0.001")
    attn = TiledAttention(t_lin=2, b_col=64, t_nl="0.001", t_attn="0.00001", context=2000)
    assert attn.exact(128) - plain.exact(128) == sympy.Rational(128 * 2000, 100000)
    assert float(attn(128)) == pytest.approx(float(attn.exact(128)))
    cap = engine_capacity(attn.expression(B), 512)
    assert 1 / cap.tokens_per_ms == per_token_time(2, 64, sympy.Rational(1, 1000), attn.attention_per_token)


def test_theorem1_for_one_and_g_nodes():
    tau = per_token_time(2, 64, sympy.Rational(1, 1000))
    one = theorem1(rate_per_s=30, mean_tokens=1024, per_token_ms=tau)
    assert one.request_time_ms == 1024 * tau and one.load == 30 * 1024 * tau / 1000
    assert one.exceeds == (one.load > 1)
    assert theorem1(rate_per_s=60, mean_tokens=1024, per_token_ms=tau, nodes=2).load == 2 * one.load
    assert not theorem1(rate_per_s=60, mean_tokens=1024, per_token_ms=tau, nodes=2).exceeds
    assert theorem1(30, 1024, tau).max_rate_per_s * 1024 * tau / 1000 == 1


def test_fixed_chunk_efficiency():
    assert fixed_chunk_efficiency(128, 64, 2) == 1
    assert fixed_chunk_efficiency(96, 64, 1) == sympy.Rational(3, 4)


def test_theorem2_assumptions_name_what_fails():
    failed = [a.name for a in theorem2_assumptions(b_col=64, b_lcm=128, b_max=512, k_max=32, overhead=1,
                                                   prompt_lengths=[100])
              if not a.holds]
    assert failed == ["a batch holds b_col active requests and a b_lcm chunk", "prompts are multiples of b_lcm",
                      "no fixed per-batch overhead"]


def test_rad_tiles_optimally_and_fixed_chunk_does_not():
    assert check_optimal_tiling(RAD(b_col=64, b_lcm=128), b_col=64, b_lcm=128, b_max=512).optimal
    bad = check_optimal_tiling(FixedChunk(chunk=96), b_col=64, b_lcm=128, b_max=512)
    assert not bad.optimal and bad.batch.tokens % 64
    # minimal: a single waiting prompt already shows it
    assert bad.counterexample.size == 1
    # the counterexample is genuine: re-running the policy there gives the same partial tile
    assert FixedChunk(chunk=96).form_batch(bad.counterexample, 512) == bad.batch
    assert not check_optimal_tiling(Orca(), b_col=64, b_max=512).optimal


def test_bad_tiling_input():
    with pytest.raises(InputError, match="token_budget"):
        tiling_parameters(Engine(Tiled(t_lin=2, b_col=64), 500), RAD(b_col=64, b_lcm=64))
    with pytest.raises(InputError, match="batch_time.kind"):
        tiling_parameters(Engine(Staircase(1, 1, 64), 512), RAD())
    with pytest.raises(InputError, match="policy.b_col"):
        tiling_parameters(Engine(Tiled(t_lin=2, b_col=32), 512), RAD(b_col=64, b_lcm=128))


def test_tiled_engine_verdicts():
    engine = Engine(Tiled(t_lin=2, b_col=64, t_nl="0.001"), 512)
    light = Workload((RequestClass("x", 50, Deterministic(256), Deterministic(128)),))
    load, policy, numbers = check_tiled_engine(engine, RAD(b_col=64, b_lcm=128), light)
    assert (load.verdict, policy.verdict) == ("stable", "maximally-stable")
    heavy = light.scaled(2)
    assert check_tiled_engine(engine, RAD(b_col=64, b_lcm=128), heavy)[0].verdict == "unstable"
    odd = Workload((RequestClass("x", 50, Deterministic(200), Deterministic(128)),))
    assert check_tiled_engine(engine, RAD(b_col=64, b_lcm=128), odd)[1].verdict == "inconclusive"


def test_tiled_with_attention_from_a_file_round_trips():
    from llmstab.checkers.spec import parse_batch_time

    node = {"kind": "tiled", "t_lin": 2, "b_col": 64, "t_nl": 0.001, "t_attn": 0.00001, "context": 1000}
    model = parse_batch_time(node)
    assert isinstance(model, TiledAttention) and model.exact(64) == 2 + sympy.Rational(64, 1000) + sympy.Rational(64, 100)
    assert parse_batch_time(model.parameters()) == model
    engine = Engine(model, 512)
    light = Workload((RequestClass("x", 20, Deterministic(256), Deterministic(128)),))
    load, policy, numbers = check_tiled_engine(engine, RAD(b_col=64, b_lcm=128), light)
    assert numbers["per_token_ms"] == per_token_time(2, 64, sympy.Rational(1, 1000), sympy.Rational(1, 100))
    assert policy.verdict == "maximally-stable"


def test_a_tiling_counterexample_says_what_it_counter_exemplifies(tmp_path):
    """Issue 10: a MAXIMALLY-STABLE verdict listed a [counterexample] (tiling) without saying of what; "1 tokens"."""
    import yaml

    from llmstab import check
    from tests.conftest import EXAMPLES

    doc = yaml.safe_load((EXAMPLES / "rad_tiled.yaml").read_text())
    doc["policy"] = "sarathi"
    path = tmp_path / "sarathi_tiled.yaml"
    path.write_text(yaml.safe_dump(doc))
    report = check(path, simulate=False)
    assert report.policy_verdict.verdict == "maximally-stable"
    tiling = [e for e in report.policy_verdict.evidence if e.kind == "counterexample"]
    assert tiling and all(e.summary.startswith("a counterexample to optimal tiling") for e in tiling)
    assert all("not to stability" in e.summary and "1 tokens" not in e.summary for e in tiling)
