"""Issue 10: verdicts that contradict each other or the truth.

* a ``k_max`` that can never bind (``k_max >= b_max``) does not change the verdict;
* a load seen to diverge strictly inside the capacity region makes the policy
  ``not-maximally-stable`` (never ``inconclusive`` beside an ``unstable`` load);
* the region-policy step and the load step read the same run of the same load.
"""

from pathlib import Path

import pytest

from llmstab.checkers.engine_steps import ConsistencyStep
from llmstab.checkers.pipeline import CheckContext, check_engine
from llmstab.checkers.spec import engine_spec_from_document, load_document, load_engine_spec
from llmstab.checkers.verdict import Evidence, Verdict

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def _with(name: str, **engine) -> object:
    doc = load_document(EXAMPLES / name)
    doc["engine"] = {**doc["engine"], **engine}
    return engine_spec_from_document(doc, name, EXAMPLES)


@pytest.mark.parametrize("k_max", [512, 30000])
def test_a_k_max_that_cannot_bind_does_not_change_the_verdict(k_max):
    """Before: with k_max = b_max the check went to the region path (inconclusive / simulated)."""
    plain = check_engine(_with("codellama34b_a100_sarathi.yaml"), simulate=False)
    capped = check_engine(_with("codellama34b_a100_sarathi.yaml", max_batch_requests=k_max), simulate=False)
    assert (capped.load_verdict.verdict, capped.policy_verdict.verdict) == \
        (plain.load_verdict.verdict, plain.policy_verdict.verdict) == ("stable", "maximally-stable")
    for verdict in (capped.load_verdict, capped.policy_verdict):
        notes = [e for e in verdict.evidence if e.data.get("k_max") == k_max and "not binding" in e.summary]
        assert len(notes) == 1 and notes[0].step == "consistency"
    assert "k-max" in capped.extra["steps"] and "region" not in capped.extra["steps"]


def test_a_k_max_that_can_bind_keeps_the_region():
    report = check_engine(_with("codellama34b_a100_sarathi.yaml", max_batch_requests=511), simulate=False)
    assert "region" in report.extra["steps"] and "k-max" not in report.extra["steps"]


def _context(load: str, policy: str, position: str) -> CheckContext:
    spec = load_engine_spec(EXAMPLES / "pointC_inside.yaml")
    ctx = CheckContext(spec)
    ctx.capacity = {"tokens_per_s": spec.workload.token_rate * 2, "position": position}
    run = Evidence("simulation", "diverging", {"growth": {"verdict": "diverging"}})
    ctx.load_verdict = Verdict(load, [run] if load == "unstable" else [])
    ctx.policy_verdict = Verdict(policy, [Evidence("note", "no theorem decides")])
    return ctx


def test_an_unstable_load_inside_the_region_makes_the_policy_not_maximally_stable():
    ctx = _context("unstable", "inconclusive", "inside")
    ConsistencyStep().run(ctx)
    assert ctx.policy_verdict.verdict == "not-maximally-stable"
    assert ctx.policy_verdict.evidence[-1].kind == "counterexample"
    assert ctx.policy_verdict.evidence[-1].data["run"] == {"growth": {"verdict": "diverging"}}


@pytest.mark.parametrize("load, position", [("unstable", "outside"), ("unstable", "boundary"),
                                            ("stable", "inside"), ("inconclusive", "inside")])
def test_no_policy_verdict_is_drawn_from_a_load_that_is_not_a_counterexample(load, position):
    ctx = _context(load, "inconclusive", position)
    ConsistencyStep().run(ctx)
    assert ctx.policy_verdict.verdict == "inconclusive"


def test_orca_128_at_90_percent_of_point_c_agrees_with_itself(tmp_path):
    """Issue 10: load ``unstable`` with policy ``inconclusive`` at 90 % of point C (a load inside the region)."""
    doc = load_document(EXAMPLES / "pointC_inside.yaml")
    doc["workload"]["classes"][0]["rate"] = "360/187"
    report = check_engine(engine_spec_from_document(doc, "orca90", EXAMPLES))
    assert report.capacity["position"] == "inside"
    assert (report.load_verdict.verdict, report.policy_verdict.verdict) == ("unstable", "not-maximally-stable")
    load_run = [e for e in report.load_verdict.evidence if e.kind == "simulation"]
    policy_run = [e for e in report.policy_verdict.evidence if e.kind == "simulation"]
    assert load_run[0].data == policy_run[0].data  # one run of one load decides both


def test_a_network_diverging_below_capacity_is_not_maximally_stable():
    """Issue 10: a report whose own fluid path diverges at per-engine loads below 1 said policy ``inconclusive``."""
    from fractions import Fraction

    from llmstab.checkers.network_check import policy_from_load

    path = Evidence("counterexample", "an exact diverging fluid path", {"ratio": Fraction(3, 2)})
    unstable = Verdict("unstable", [path])
    fixed = policy_from_load(Verdict("inconclusive", [Evidence("note", "cyclic routing")]), unstable,
                             {"e1": Fraction(9, 10), "e2": Fraction(4, 5)})
    assert fixed.verdict == "not-maximally-stable" and fixed.evidence[-1].kind == "counterexample"
    assert fixed.evidence[-1].data["load_evidence"][0]["summary"] == "an exact diverging fluid path"
    assert policy_from_load(Verdict("inconclusive"), unstable, {"e1": Fraction(1)}).verdict == "inconclusive"
    assert policy_from_load(Verdict("inconclusive"), Verdict("stable"), {"e1": Fraction(1, 2)}).verdict == "inconclusive"
