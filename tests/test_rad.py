"""RAD (Algorithm 1) as a policy kernel, in the simulator, against a fixed chunk that is not whole tiles."""

from __future__ import annotations

import numpy as np
import pytest
import sympy

from llmstab.fluid_models.batch_time import Tiled
from llmstab.fluid_models.distributions import Deterministic, Geometric
from llmstab.fluid_models.engine import Engine
from llmstab.fluid_models.policies import RAD, FixedChunk, make_policy
from llmstab.fluid_models.simulation.simulator import simulate
from llmstab.fluid_models.state import EngineState
from llmstab.fluid_models.workload import RequestClass, Workload
from llmstab.theory.tiling import fixed_chunk_efficiency, per_token_time

TILED = Tiled(t_lin=2, b_col=64, t_nl="0.001")
TAU = per_token_time(2, 64, sympy.Rational(1, 1000))


def test_modes():
    rad = RAD(b_col=4, b_lcm=8)
    # fewer than b_col decoding and a prompt waiting: prefill mode, one b_lcm chunk of the oldest prompt
    b = rad.form_batch(EngineState((0, 0, 16, 8), (5, 5, 3, 3)), b_max=32)
    assert b.prefill == (0, 0, 8, 0) and b.decode_tokens == 0
    # b_col decoding: decode mode, one token each, at most b_col
    b = rad.form_batch(EngineState((0,) * 5 + (8,), (2,) * 6), b_max=32)
    assert b.decode == (1, 1, 1, 1, 0, 0) and b.prefill_tokens == 0
    # nothing to prefill: decode mode even with fewer than b_col decoding
    assert rad.form_batch(EngineState((0, 0), (2, 2)), b_max=32).decode == (1, 1)
    # the chunk never exceeds the remaining prompt or the budget
    assert rad.form_batch(EngineState((4,), (1,)), b_max=32).prefill == (4,)


def test_finite_cycle_gives_the_other_mode_a_turn():
    rad = RAD(b_col=2, b_lcm=2, cycle=2)
    state = EngineState((0, 0, 100), (50, 50, 5))  # two decoding (= b_col): decode mode every time with N = inf
    memory = rad.initial_memory()
    kinds = []
    for _ in range(6):
        b = rad.form_batch(state, b_max=8, memory=memory)
        kinds.append("d" if b.decode_tokens else "p")
    assert kinds == ["d", "d", "p", "d", "d", "p"]
    inf = RAD(b_col=2, b_lcm=2)
    memory = inf.initial_memory()
    assert all(inf.form_batch(state, b_max=8, memory=memory).decode_tokens for _ in range(6))


def test_bad_options():
    with pytest.raises(ValueError, match="b_lcm"):
        RAD(b_col=64, b_lcm=96)
    with pytest.raises(ValueError, match="cycle"):
        RAD(cycle=-1)
    assert make_policy("rad", b_col=8, b_lcm=16).label == "rad(b_col=8, b_lcm=16, N=inf)"


def _overload_throughput(policy):
    rate = sympy.Rational(13, 10) * 1000 / (384 * TAU)  # 1.3 x Theorem 1's bound
    w = Workload((RequestClass("x", rate, Deterministic(256), Geometric(128)),))
    run = simulate(Engine(TILED, 512), policy, w, horizon_s=20.0, seed=3)
    return run.throughput_tokens


def test_fixed_chunk_off_the_tile_loses_capacity_and_rad_does_not():
    best = float(1000 / TAU)  # tokens/s of whole-tile batches
    rad = _overload_throughput(RAD(b_col=64, b_lcm=128))
    chunk = _overload_throughput(FixedChunk(chunk=96))
    assert rad / best > 0.99
    predicted = float(fixed_chunk_efficiency(96, 64, 2, sympy.Rational(1, 1000)))
    assert chunk / rad == pytest.approx(predicted, abs=0.02)
    assert chunk / rad < 0.8


def test_rad_is_stable_below_the_bound_in_simulation():
    rate = sympy.Rational(9, 10) * 1000 / (384 * TAU)
    w = Workload((RequestClass("x", rate, Deterministic(256), Geometric(128)),))
    run = simulate(Engine(TILED, 512), RAD(b_col=64, b_lcm=128), w, horizon_s=40.0, seed=1)
    half = run.times >= 20.0
    slope = np.polyfit(run.times[half], run.backlog_tokens[half].astype(float), 1)[0]
    assert slope < 0.005 * float(w.token_rate)


def test_check_decides_rads_load_by_theorem_2_without_simulation():
    """Below Theorem 1's bound, RAD under Theorem 2's assumptions is stable by theory alone; fixed-chunk is not."""
    from llmstab import check
    from tests.conftest import EXAMPLES

    rad = check(EXAMPLES / "rad_tiled.yaml", simulate=False)
    assert rad.load_verdict.verdict == "stable" and rad.policy_verdict.verdict == "maximally-stable"
    assert {e.kind for e in rad.load_verdict.evidence} == {"theorem"}
    assert any("Theorem 2" in e.summary for e in rad.load_verdict.evidence)
    chunked = check(EXAMPLES / "fixed_chunk_tiled.yaml", simulate=False)
    assert chunked.load_verdict.verdict == "inconclusive"


def test_theorem_2_is_no_evidence_with_unbounded_lengths(tmp_path):
    """Issue 10: RAD was called maximally stable with geometric (unbounded) output lengths.

    Bari's Assumption 4 (memory for b_col active requests of the largest size) needs bounded lengths.
    """
    import yaml

    from llmstab import check
    from tests.conftest import EXAMPLES

    doc = yaml.safe_load((EXAMPLES / "rad_tiled.yaml").read_text())
    doc["workload"]["classes"][0]["decode"] = {"dist": "geometric", "mean": 128}
    path = tmp_path / "rad_geometric.yaml"
    path.write_text(yaml.safe_dump(doc))
    report = check(path, simulate=False)
    assert report.policy_verdict.verdict == "inconclusive"
    assert any("Assumption 4" in e.summary and "FAILS" in e.summary for e in report.policy_verdict.evidence)
    bounded = check(EXAMPLES / "rad_tiled.yaml", simulate=False)
    assert bounded.policy_verdict.verdict == "maximally-stable"
    assert any("cycle parameter N" in e.summary and "reading" in e.summary for e in bounded.policy_verdict.evidence)


def test_rads_theorem_is_on_its_class_so_a_renamed_rad_keeps_assumption_4():
    """Issue 9: RAD's behaviour is on its class, not keyed by its name.

    The memory check used to test ``policy.name == "rad"``: a RAD subclass under
    another name lost Bari's Assumption 4 with a KV cache.
    """
    from dataclasses import dataclass

    from llmstab.checkers.pipeline import check_engine
    from llmstab.checkers.spec import EngineSpec
    from llmstab.checkers.tiling import THEOREM_2, tiling_theorem
    from llmstab.fluid_models.engine import KVCache
    from llmstab.fluid_models.distributions import Uniform

    @dataclass(frozen=True)
    class Renamed(RAD):
        name = "rad_renamed"

    engine = Engine(TILED, 512, kv_cache=KVCache(blocks=64 * 32, block_size=16))
    work = Workload((RequestClass("x", 70, Deterministic(256), Uniform(1, 256)),))
    report = check_engine(EngineSpec(engine, Renamed(b_col=64, b_lcm=128), work), simulate=False)
    cited = [e for e in report.load_verdict.evidence if e.reference == "Bari-Hegde-de Veciana Assumption 4"]
    assert tiling_theorem(Renamed()) == THEOREM_2 and cited and cited[0].data["holds"]
    assert report.load_verdict.verdict == "stable"
