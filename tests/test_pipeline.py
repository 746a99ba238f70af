"""The check pipeline: declared order, applicability, no simulation when asked, one certificate per load, typed evidence."""

from __future__ import annotations

import json
import subprocess
import sys
from fractions import Fraction

import pytest
from hypothesis import given, strategies as st

import llmstab
from llmstab.checkers import engine_steps, region_check, region_policy
from llmstab.checkers.engine_steps import ENGINE_STEPS
from llmstab.checkers.pipeline import CheckContext, Step, check_engine, run_steps
from llmstab.checkers.spec import load_engine_spec
from llmstab.checkers.verdict import EVIDENCE_KINDS, Evidence, Verdict, exact_text, jsonable
from tests.conftest import EXAMPLES

SIMULATING = {s.name for s in ENGINE_STEPS if s.simulates}
NO_SIMULATION_INPUTS = ["codellama34b_a100_vllm.yaml", "pointC_inside.yaml", "network_fork_join_unstable.yaml"]


class Recorder(Step):
    """A step that records when it ran (and, if asked, refuses to be consulted)."""

    def __init__(self, name, order, log, *, simulates=False, consult_ok=True):
        self.name, self.order, self.simulates, self.log, self.consult_ok = name, order, simulates, log, consult_ok

    def applies(self, ctx):
        assert self.consult_ok, f"{self.name} was consulted"
        return True

    def run(self, ctx):
        self.log.append(self.name)
        ctx.load_verdict = Verdict("inconclusive", [*ctx.load_verdict.evidence, Evidence("note", self.name)])


def _sarathi_ctx(**options):
    return CheckContext(load_engine_spec(EXAMPLES / "codellama34b_a100_sarathi.yaml"), **options)


def test_the_standard_steps_have_distinct_names_and_orders():
    assert len({s.name for s in ENGINE_STEPS}) == len({s.order for s in ENGINE_STEPS}) == len(ENGINE_STEPS)
    assert SIMULATING == {"region-policy", "settle-load", "empirical-capacity"}


def test_steps_run_in_declared_order_whatever_the_list_order_and_stamp_their_evidence():
    log = []
    steps = [Recorder("late", 900, log), Recorder("early", 100, log), Recorder("middle", 500, log)]
    report = run_steps(_sarathi_ctx(), steps)
    assert log == ["early", "middle", "late"] == report.extra["steps"]
    assert [(e.summary, e.step) for e in report.load_verdict.evidence] == [(n, n) for n in log]


def test_a_simulating_step_is_never_consulted_without_simulation():
    log = []
    steps = [Recorder("theory", 100, log), Recorder("sim", 800, log, simulates=True, consult_ok=False)]
    report = run_steps(_sarathi_ctx(simulate=False), steps)
    assert log == ["theory"] and report.extra["simulate"] is False


def test_a_new_step_slots_into_the_standard_chain():
    """How issue 11's memory certificate (order 500) would join: between tiling and the simulation steps."""
    log = []
    report = run_steps(_sarathi_ctx(simulate=False), [*ENGINE_STEPS, Recorder("memory", 500, log)])
    assert report.extra["steps"] == ["capacity", "theorem-2", "memory"]
    assert report.load_verdict.evidence[-1].step == "memory"


def test_memo_computes_once_per_key():
    ctx, calls = _sarathi_ctx(), []
    assert ctx.memo("k", lambda: calls.append(1) or 7) == ctx.memo("k", lambda: calls.append(1) or 8) == 7
    assert calls == [1] and ctx.exact_capacity is ctx.exact_capacity


def _forbid_simulation(monkeypatch):
    from llmstab.checkers import simulation_check
    from llmstab.fluid_models.networks import simulator as network_simulator
    from llmstab.fluid_models.simulation import simulator

    def refuse(*args, **kwargs):
        raise AssertionError("a simulation ran")

    monkeypatch.setattr(simulator, "simulate", refuse)
    monkeypatch.setattr(simulation_check, "simulate", refuse)
    monkeypatch.setattr(network_simulator, "simulate_network", refuse)


@pytest.mark.parametrize("name", NO_SIMULATION_INPUTS)
def test_no_simulate_runs_no_simulator_on_any_input(name, monkeypatch):
    _forbid_simulation(monkeypatch)
    report = llmstab.check(EXAMPLES / name, simulate=False)
    out = report.to_json()
    assert out["simulate"] is False and not SIMULATING & set(out["steps"])
    assert "simulation" not in {e["kind"] for e in out["evidence"]}


def test_the_simulators_are_really_forbidden(monkeypatch):
    """The instrument of the test above works: with simulation on, the same input trips it."""
    _forbid_simulation(monkeypatch)
    with pytest.raises(AssertionError, match="a simulation ran"):
        llmstab.check(EXAMPLES / "network_fork_join_unstable.yaml", simulate=True)


@pytest.mark.parametrize("name", NO_SIMULATION_INPUTS)
def test_no_simulate_from_the_command_line(name):
    run = subprocess.run([sys.executable, "-m", "llmstab.checkers.cli.main", "check", "--json", "--no-simulate",
                          str(EXAMPLES / name)], capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr
    out = json.loads(run.stdout)
    assert out["simulate"] is False and not SIMULATING & set(out["steps"])
    assert all(e["kind"] != "simulation" for e in out["evidence"])


def _count_certificates(monkeypatch):
    calls = []
    real = region_check.certify_load

    def counting(region, load):
        calls.append((id(region), tuple(Fraction(v) for v in load)))
        return real(region, load)

    monkeypatch.setattr(region_check, "certify_load", counting)
    monkeypatch.setattr(region_policy, "certify_load", counting)
    return calls


def test_each_load_is_certified_once_without_simulation(monkeypatch):
    calls = _count_certificates(monkeypatch)
    report = check_engine(load_engine_spec(EXAMPLES / "pointC_inside.yaml"), simulate=False)
    assert report.capacity["position"] == "inside" and len(calls) == 1


def test_each_load_is_certified_once_when_a_policy_diverges_inside_the_region(monkeypatch):
    """Region step, policy step and the LP explanation share one certificate per (region, load)."""
    calls = _count_certificates(monkeypatch)
    spec = load_engine_spec(EXAMPLES / "pointC_inside.yaml")

    def diverging(engine, policy, workload, **kw):  # stands in for the simulation: a clear divergence
        growth = type("G", (), {"diverging": True, "statement": "growing", "rate": 1.0, "to_json": lambda s: {}})()
        return region_policy.DivergenceTest(policy.label, kw.get("load_scale", Fraction(1)), growth)

    monkeypatch.setattr(region_policy, "simulate_trend", diverging)
    monkeypatch.setattr(engine_steps.SettleLoadStep, "applies", lambda self, ctx: False)
    report = check_engine(spec, simulate=True)
    assert report.policy_verdict.verdict == "not-maximally-stable"
    assert len(calls) == len(set(calls)) == 2  # the load against the region, the load against the policy's types


def test_tiling_evidence_is_selected_by_structure_not_prose():
    report = llmstab.check(EXAMPLES / "fixed_chunk_tiled.yaml", simulate=False)
    tiling = [e for e in report.policy_verdict.evidence if e.step == "tiling"]
    assert [e.kind for e in tiling] == ["counterexample"]
    assert "tiling" in report.to_json()


@pytest.mark.parametrize("name", ["codellama34b_a100_overload.yaml", "pointC_inside.yaml", "rad_tiled.yaml",
                                  "network_rybko_stolyar_good.yaml"])
def test_evidence_is_typed_data_with_exact_numbers_beside_the_floats(name):
    out = llmstab.check(EXAMPLES / name, simulate=False).to_json()
    assert out["evidence"]
    for e in out["evidence"]:
        assert e["kind"] in EVIDENCE_KINDS and e["step"]
        _exact_matches_floats(e["exact"], e["data"])
    cited = [e for e in out["evidence"] if e["kind"] == "theorem"]
    assert all(e["reference"] for e in cited)


def _exact_matches_floats(exact, data):
    if isinstance(exact, dict):
        for k, v in exact.items():
            _exact_matches_floats(v, data[k])
    elif isinstance(exact, list):
        for v, d in zip(exact, data):
            _exact_matches_floats(v, d)
    elif exact is not None:
        assert float(Fraction(exact)) == pytest.approx(data, rel=1e-15)


@given(st.fractions(), st.integers())
def test_exact_text_round_trips_every_rational(value, whole):
    data = {"x": value, "n": whole, "nested": [value, {"y": value}]}
    exact = exact_text(data)
    if value.denominator == 1:
        assert exact is None
    else:
        assert Fraction(exact["x"]) == value and Fraction(exact["nested"][1]["y"]) == value
        assert jsonable(data)["x"] == float(value)


def test_unknown_verdicts_and_evidence_kinds_are_refused():
    with pytest.raises(ValueError):
        Verdict("probably-stable")
    with pytest.raises(ValueError):
        Evidence("hunch", "it looked fine")
