"""Reproductions on the CodeLlama-34B / A100 staircase (c = 11.28 ms, a = 35.47 ms, b0 = 128, b_max = 512).

* Sarathi-Serve and Orca stay bounded at 95% of capacity (and diverge at 105%);
* FasterTransformer and vanilla vLLM diverge at a load below capacity, and the checker says where;
* above capacity the measured growth matches the fluid prediction ``lambda (m_p + m_d) - capacity``
  within its confidence interval for the work-conserving policies; the two that are not
  work-conserving grow faster still (they do not reach the capacity even when overloaded).

Short horizons (a few thousand simulated seconds, well under a second of CPU each).
"""

import re
from fractions import Fraction

import pytest
from hypothesis import given, settings, strategies as st

from llmstab.checkers.simulation_budget import WorkBudget
from llmstab.checkers.simulation_check import empirical_capacity, run_until_settled, settle_load
from llmstab.checkers.single_engine import capacity_of
from llmstab.checkers.growth import estimate_growth, fluid_prediction
from llmstab.fluid_models.batch_time import Staircase
from llmstab.fluid_models.distributions import Deterministic, Geometric
from llmstab.fluid_models.engine import Engine
from llmstab.fluid_models.policies import make_policy
from llmstab.fluid_models.simulation.simulator import simulate
from llmstab.fluid_models.workload import RequestClass, Workload
from llmstab.theory.exact_linalg import Exact

ENGINE = Engine(Staircase("11.28", "35.47", 128), 512)
CAPACITY = capacity_of(ENGINE).tokens_per_s  # 51200000/15316 tokens/s, from llmstab.theory
CHAT = Workload((RequestClass("chat", 12, Deterministic(129), Geometric(112)),))  # the bundled examples' mix


def at(fraction: str) -> Workload:
    """The chat mix scaled to ``fraction`` of the engine's capacity."""
    return CHAT.scaled(Fraction(fraction) * CAPACITY / CHAT.token_rate)


def test_capacity_is_the_full_batch_rate():
    assert CAPACITY == Fraction(512 * 1000) / (Fraction("11.28") + 4 * Fraction("35.47"))


def test_fluid_prediction_is_exact():
    over, under = fluid_prediction(at("1.1"), CAPACITY), fluid_prediction(at("0.9"), CAPACITY)
    assert over == CAPACITY / 10 and under == 0
    assert type(over) is Exact and type(under) is Exact  # an integral one is an int in JSON, as sympy's Integer was
    assert fluid_prediction(at("1.1"), str(CAPACITY)) == over  # any number exact_number reads


def test_growth_and_simulation_check_import_no_sympy():
    """The simulating steps of a check (growth fits, fluid predictions, the capacity search) need no sympy."""
    import subprocess
    import sys

    code = ("import sys, llmstab.checkers.growth, llmstab.checkers.simulation_check, llmstab.checkers.engine_steps; "
            "assert 'sympy' not in sys.modules, 'sympy'")
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.parametrize("policy", ["sarathi", "orca"])
def test_work_conserving_policies_stay_bounded_at_95_percent(policy):
    for seed in (0, 1):
        g = estimate_growth(simulate(ENGINE, make_policy(policy), at("0.95"), horizon_s=12000.0, seed=seed))
        assert g.bounded, g.statement
        assert g.statement.startswith("bounded:") and "a 12000 s (3.33 h) horizon" in g.statement
    # the same test, same horizon, sees divergence just above capacity: "bounded" is not vacuous
    g = estimate_growth(simulate(ENGINE, make_policy(policy), at("1.05"), horizon_s=6000.0, seed=0))
    assert g.diverging and re.match(r"diverging at [\d.]+ ± [\d.e+]+ tokens/s", g.statement), g.statement


@pytest.mark.parametrize("policy", ["sarathi", "orca"])
@pytest.mark.parametrize("fraction, horizon", [("1.1", 3000.0), ("1.3", 1200.0)])
def test_growth_above_capacity_matches_the_fluid_prediction(policy, fraction, horizon):
    work = at(fraction)
    predicted = fluid_prediction(work, CAPACITY)
    for seed in (0, 1, 2):
        g = estimate_growth(simulate(ENGINE, make_policy(policy), work, horizon_s=horizon, seed=seed),
                            fluid_rate=predicted)
        assert g.diverging and g.matches_fluid, g.statement
        assert g.half_width < 0.25 * float(predicted)  # an interval narrow enough to mean something


@pytest.mark.parametrize("policy", ["vllm", "fastertransformer"])
def test_non_work_conserving_policies_grow_faster_than_the_fluid_prediction(policy):
    work = at("1.1")
    predicted = float(fluid_prediction(work, CAPACITY))
    g = estimate_growth(simulate(ENGINE, make_policy(policy), work, horizon_s=600.0, seed=0), fluid_rate=predicted)
    assert g.rate - g.half_width > predicted, g.statement


@pytest.mark.parametrize("policy, low, high", [("vllm", 0.6, 0.9), ("fastertransformer", 0.0, 0.1)])
def test_checker_finds_a_diverging_load_inside_capacity(policy, low, high):
    # the search itself, not the work budget, is under test: an unlimited budget (the check's own is bounded)
    e = empirical_capacity(ENGINE, make_policy(policy), CHAT, CAPACITY, seed=0, budget=WorkBudget(limit=float("inf")))
    d = e.data
    assert e.kind == "counterexample" and "a load inside the capacity region" in e.summary
    assert d["bounded_fraction"] < d["diverging_fraction"] < 1
    assert d["diverging_load_tokens_per_s"] < CAPACITY
    assert low < d["empirical_capacity_fraction"] < high
    # an independent run (other seed, longer horizon) at a load 2% above the reported divergence point diverges
    check = at(str(min(Fraction(99, 100), d["diverging_fraction"] + Fraction(2, 100))))
    assert run_until_settled(ENGINE, make_policy(policy), check, seed=11, budget=WorkBudget(limit=float("inf"))).diverging


@pytest.mark.parametrize("policy", ["vllm", "fastertransformer"])
def test_settle_load_on_the_bundled_examples_is_unstable_with_simulation_evidence(policy):
    v = settle_load(ENGINE, make_policy(policy), CHAT, capacity_tokens_per_s=CAPACITY)
    assert v.verdict == "unstable"
    assert v.evidence[0].kind == "simulation" and "diverging at" in v.evidence[0].summary
    growth = v.evidence[0].data["growth"]
    assert growth["rate_tokens_per_s"] - growth["half_width_tokens_per_s"] > growth["threshold_tokens_per_s"]
    assert growth["fluid_prediction_tokens_per_s"] == 0  # the load is inside capacity


def test_settle_load_agrees_with_theorem_2b_for_sarathi():
    v = settle_load(ENGINE, make_policy("sarathi"), CHAT, capacity_tokens_per_s=CAPACITY)
    assert v.verdict == "stable" and "not a proof" in v.evidence[0].summary


def test_too_short_a_trajectory_is_refused():
    r = simulate(ENGINE, make_policy("sarathi"), CHAT, horizon_s=10.0, record_every=1.0)
    with pytest.raises(ValueError, match="record_every"):
        estimate_growth(r)


@settings(max_examples=200, deadline=None)
@given(nu=st.integers(1, 400), confidence=st.floats(0.01, 0.9999))
def test_t_quantile_matches_scipy(nu, confidence):
    """The closed-form Student-t quantile agrees with scipy's (used only here, not at run time)."""
    from scipy.special import stdtrit

    from llmstab.checkers.growth import t_quantile

    assert t_quantile(nu, confidence) == pytest.approx(float(stdtrit(nu, 0.5 + confidence / 2)), rel=1e-9)


def test_growth_estimate_does_not_import_scipy_special():
    import subprocess
    import sys

    code = "import sys, llmstab.checkers.growth; assert 'scipy.special' not in sys.modules, 'scipy.special'"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_a_wide_interval_is_not_called_bounded():
    """Issue 10: "bounded: 365 ± 410 tokens/s" while the run diverges at about 388 tokens/s.

    An interval whose upper end is above the threshold is ``undecided``, never ``bounded``.
    """
    from llmstab.checkers.growth import GrowthEstimate

    g = GrowthEstimate(365.0, 410.0, 0.95, 500.0, 250.0, 20, 38.8, 3880.0)
    assert not g.bounded and not g.diverging and g.trend == "undecided"
    assert g.statement.startswith("undecided:") and "straddles the threshold" in g.statement
    assert g.to_json()["verdict"] == "undecided"
    assert GrowthEstimate(1.0, 30.0, 0.95, 500.0, 250.0, 20, 38.8, 3880.0).trend == "bounded"


@settings(max_examples=100, deadline=None)
@given(rate=st.floats(-1e4, 1e4), half=st.floats(0, 1e4), threshold=st.floats(0, 1e4))
def test_trend_is_decided_only_by_the_whole_interval(rate, half, threshold):
    """``bounded`` iff the upper end is below the threshold, ``diverging`` iff the lower end is above it."""
    from llmstab.checkers.growth import GrowthEstimate

    g = GrowthEstimate(rate, half, 0.95, 100.0, 50.0, 20, threshold, None)
    assert g.bounded == (rate + half < threshold) and g.diverging == (rate - half > threshold)
    assert not (g.bounded and g.diverging)


def test_a_run_stopped_at_the_crowd_limit_is_never_divergence(monkeypatch):
    """Issue 10: a stable run stopped at 5000 residents during its ramp-up was read as divergence.

    With the limit forced far below the steady crowd (and no room to raise it), the
    run stops early: its outcome is inconclusive, and the load verdict is not ``unstable``.
    """
    import llmstab.checkers.simulation_check as sc

    monkeypatch.setattr(sc, "CROWD_LIMIT", 20)
    monkeypatch.setattr(sc, "MAX_CROWD_LIMIT", 20)
    run = sc.run_until_settled(ENGINE, make_policy("sarathi"), at("0.9"), seed=0)
    assert run.stopped_early and run.outcome == "inconclusive" and not run.diverging
    v = sc.settle_load(ENGINE, make_policy("sarathi"), at("0.9"), seed=0, run=run)
    assert v.verdict == "inconclusive" and "resource limit, not a divergence" in v.evidence[0].summary


def test_a_crowd_limit_that_stops_a_stable_run_is_raised(monkeypatch):
    """A limit below the steady crowd is raised (x4 per rerun) until the run reaches its horizon."""
    import llmstab.checkers.simulation_check as sc

    monkeypatch.setattr(sc, "CROWD_LIMIT", 20)
    monkeypatch.setattr(sc, "LAST_HORIZON_BATCHES", sc.FIRST_HORIZON_BATCHES)  # one horizon: keep the test short
    monkeypatch.setattr(sc, "LAST_HORIZON_ARRIVALS", sc.FIRST_HORIZON_ARRIVALS)
    monkeypatch.setattr(sc, "crowd_limit", lambda engine, workload: 20)
    run = sc.run_until_settled(ENGINE, make_policy("sarathi"), at("0.5"), seed=0)
    assert not run.stopped_early and run.crowd_limit > 20 and not run.diverging


def test_first_horizon_outlasts_the_ramp_up_of_long_decodes():
    """Issue 10 (Sarathi, 10-token prompts, 2000-token decodes): a 70 s run read the ramp-up as growth.

    The first horizon covers four sojourn times W = (m_p/b_max + 1 + m_d) t(b_max).
    """
    from llmstab.checkers.simulation_check import first_horizon
    from llmstab.fluid_models.batch_time import PiecewiseLinear

    engine = Engine(PiecewiseLinear(100, "0.01", 8192), 32768)
    work = Workload((RequestClass("long", "42.43", Deterministic(10), Deterministic(2000)),))
    t_full = float(engine.batch_time.exact(32768)) / 1000
    assert first_horizon(engine, work) >= 4 * 2000 * t_full
