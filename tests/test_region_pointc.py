"""Point C of Li-Dai-Peng Section 6, slightly inside: which policies stay bounded, and why the others fail."""

from __future__ import annotations

from fractions import Fraction

import pytest
import sympy

from llmstab.checkers.region_policy import check_policy_region, explain_policy, policy_batch_types, simulate_trend
from llmstab.fluid_models.batch_time import Staircase
from llmstab.fluid_models.distributions import Deterministic
from llmstab.fluid_models.engine import Engine
from llmstab.fluid_models.policies import FasterTransformer, Orca, Sarathi, VLLM
from llmstab.fluid_models.region import BatchType
from llmstab.fluid_models.workload import RequestClass, Workload

CODELLAMA = Staircase("11.28", "35.47", 128)
POINT_C = Workload((RequestClass("C", sympy.Rational(1000) / sympy.Rational("467.5"), Deterministic(290),
                                 Deterministic(990)),))
CASES = {
    "Sarathi-Serve-128": (Sarathi(), 128),
    "Orca-128": (Orca(), 128),
    "vLLM-128": (VLLM(), 128),
    "FasterTransformer-128": (FasterTransformer(), 128),
    "Sarathi-Serve-1024": (Sarathi(), 1024),
}


@pytest.mark.parametrize("name", CASES)
def test_98_percent_of_point_c(name):
    policy, b_max = CASES[name]
    engine = Engine(CODELLAMA, b_max, 100)
    run = simulate_trend(engine, policy, POINT_C.scaled("0.98"), horizon_s=400.0, arrivals="deterministic",
                         load_scale=Fraction(98, 100))
    expected = "bounded" if name == "Sarathi-Serve-128" else "diverging"
    assert run.trend == expected, run
    why = explain_policy(policy, engine, POINT_C.scaled("0.98"))
    if name == "Sarathi-Serve-128":
        assert BatchType(29, 99, 1) in policy_batch_types(policy, engine, 290)
        assert why.kind == "note" and why.data["policy_margin"] >= 1
    else:
        assert why.kind == "counterexample" and why.data["policy_margin"] < 1
        assert why.data["needed_types_not_formed"] == ["29p+99d"]


def test_policy_verdict_for_a_k_max_engine():
    engine = Engine(CODELLAMA, 128, 100)
    bad = check_policy_region(engine, Orca(), POINT_C, horizon_s=400.0, arrivals="deterministic")
    assert bad.verdict == "not-maximally-stable"
    assert [e.kind for e in bad.evidence] == ["note", "simulation", "counterexample"]
    good = check_policy_region(engine, Sarathi(), POINT_C, horizon_s=400.0, arrivals="deterministic")
    assert good.verdict == "inconclusive"
