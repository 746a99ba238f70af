"""``llmstab capacity``: both capacities, per-policy SLO capacities, the JSON shape, bad input (via subprocess)."""

import json
import subprocess
import sys

import pytest
import yaml
from hypothesis import given, settings, strategies as st

from llmstab.checkers import capacity
from llmstab.checkers.capacity import slo_capacities, slo_capacity, stability_capacity
from llmstab.checkers.spec import engine_spec_from_document

LENGTHS = {"prompt": {"dist": "uniform", "low": 50, "high": 400}, "decode": {"dist": "uniform", "low": 5, "high": 60}}
# a small engine (about 38 req/s at full batches), two user classes with a tight median-TTFT target
DOC = {
    "engine": {"batch_time": {"kind": "piecewise_linear", "c": 20, "a": 0.05, "b0": 128}, "token_budget": 256},
    "policy": "sarathi",
    "workload": {"rate": 2, "classes": [
        {"name": "strict", "share": 0.2, "slo": {"ttft_s": 0.055, "tbt_s": 0.05}, **LENGTHS},
        {"name": "relaxed", "share": 0.8, "slo": {"ttft_s": 0.055, "tbt_s": 0.5}, **LENGTHS}]},
}


def llmstab(*args):
    return subprocess.run([sys.executable, "-m", "llmstab.checkers.cli.main", *args], capture_output=True, text=True,
                          timeout=600)


@pytest.fixture
def example(tmp_path):
    path = tmp_path / "slo.yaml"
    path.write_text(yaml.safe_dump(DOC))
    return path


def test_json_shape_and_the_slo_capacity_is_bracketed_below_the_stability_capacity(example, tmp_path):
    plot = tmp_path / "capacity.png"
    r = llmstab("capacity", str(example), "--policies", "sarathi,slai:tau=256", "--requests", "300",
                "--loads", "5:35:4", "--refine", "2", "--json", "--plot", str(plot))
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    stab = out["stability_capacity_rps"]
    assert set(out["policies"]) == {"sarathi", "slai:tau=256"}
    for pol in out["policies"].values():
        assert pol["requests_per_point"] == 300 and pol["seed"] == 0
        lo, hi = pol["bracket_rps"]
        cap = pol["slo_capacity_rps"]
        assert cap is not None and cap == lo < hi <= stab
        for pt in pol["points"]:
            assert set(pt["tbt_p99_s"]) == {"strict", "relaxed"} and isinstance(pt["met"], bool)
            assert pt["rps"] <= stab
        met = {pt["rps"]: pt["met"] for pt in pol["points"]}
        assert met[lo] and not met[hi]   # the bracket's ends were run, and they straddle the SLO
    assert plot.stat().st_size > 10_000


def test_text_output_names_both_capacities(example):
    r = llmstab("capacity", str(example), "--requests", "200", "--loads", "1,4", "--refine", "0")
    assert r.returncode == 0, r.stderr
    assert "stability capacity" in r.stdout and "SLO capacity" in r.stdout and "sarathi" in r.stdout


def test_a_load_grid_that_already_misses_the_slo_says_so(example, tmp_path):
    doc = yaml.safe_load(example.read_text())
    doc["workload"]["classes"][0]["slo"] = {"ttft_s": 0.001}
    path = tmp_path / "tight.yaml"
    path.write_text(yaml.safe_dump(doc))
    r = llmstab("capacity", str(path), "--requests", "100", "--loads", "1,2", "--json")
    assert r.returncode == 0, r.stderr
    pol = json.loads(r.stdout)["policies"]["sarathi"]
    assert pol["slo_capacity_rps"] is None and "no load meets this SLO" in pol["note"]
    assert "strict: TTFT P50" in pol["note"] and "> 0.001 s" in pol["note"]   # which target, by how much


def test_a_class_without_requests_in_the_run_is_named_not_silently_missed(tmp_path):
    doc = yaml.safe_load(yaml.safe_dump(DOC))
    doc["workload"]["classes"][0]["share"], doc["workload"]["classes"][1]["share"] = 0.0001, 0.9999
    path = tmp_path / "rare.yaml"
    path.write_text(yaml.safe_dump(doc))
    r = llmstab("capacity", str(path), "--requests", "20", "--loads", "1,2", "--json")
    assert r.returncode == 0, r.stderr
    pol = json.loads(r.stdout)["policies"]["sarathi"]
    assert pol["slo_capacity_rps"] is None
    assert "strict: TTFT P50 not measured (no requests in this run)" in pol["note"]


@pytest.mark.parametrize("args, field", [
    (["--loads", "0:1:3"], "--loads"),
    (["--loads", "1,x"], "--loads"),
    (["--requests", "0"], "requests"),
    (["--policies", "slai:beta=-1"], "--policies[0]"),
    (["--policies", "nosuch"], "--policies[0]"),
    (["--refine", "-1"], "--refine"),
    (["--refine", "x"], "--refine"),
    (["--refine", "41"], "--refine"),
    (["--workers", "0"], "--workers"),
    (["--workers", "two"], "--workers"),
    (["--workers", "100000"], "--workers"),
])
def test_bad_options_are_one_line_and_exit_2(example, args, field):
    r = llmstab("capacity", str(example), *args)
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and field in r.stderr


def test_a_file_without_slos_is_bad_input(tmp_path):
    doc = yaml.safe_load(yaml.safe_dump(DOC))
    for c in doc["workload"]["classes"]:
        del c["slo"]
    path = tmp_path / "noslo.yaml"
    path.write_text(yaml.safe_dump(doc))
    r = llmstab("capacity", str(path), "--loads", "1")
    assert r.returncode == 2 and "no class has an slo" in r.stderr


def test_slo_capacity_never_exceeds_the_stability_capacity_even_when_every_load_meets_it():
    spec = engine_spec_from_document(DOC)
    stab = stability_capacity(spec.engine, spec.workload)
    loose = engine_spec_from_document({**DOC, "workload": {"rate": 2, "classes": [
        {"name": "all", "share": 1, "slo": {"ttft_s": 1000}, **LENGTHS}]}})
    r = slo_capacity(loose.engine, loose.policy, loose.workload, [stab.rps * 0.5, stab.rps * 2], n_requests=200,
                     seed=0, stability=stab)
    assert r["bracket_rps"] == [stab.rps * 0.5, stab.rps]   # loads above the stability capacity are not run
    assert r["slo_capacity_rps"] <= stab.rps


def test_ratios_against_a_baseline_come_from_the_runs_themselves():
    from llmstab.checkers.capacity import compare_to_baseline
    from llmstab.fluid_models.policies import SLAI, Sarathi

    spec = engine_spec_from_document(DOC)
    out = compare_to_baseline(spec.engine, Sarathi(), {"slai": SLAI(tau=256)}, spec.workload, [5, 20, 35],
                              n_requests=300, seed=0, refine=1)
    base, row = out["baseline"], out["challengers"]["slai"]
    cap = base["slo_capacity_rps"]
    assert row["capacity_change"] == pytest.approx(row["run"]["slo_capacity_rps"] / cap - 1)
    assert row["ttft_change"] == pytest.approx(row["ttft_at_baseline_capacity_s"] / out["baseline_ttft_at_capacity_s"] - 1)
    assert out["baseline_ttft_at_capacity_s"] == next(pt["ttft_p50_s"] for pt in base["points"] if pt["rps"] == cap)


def test_workers_give_the_same_report_as_serial(example):
    args = ["capacity", str(example), "--policies", "sarathi,slai:tau=256", "--requests", "200", "--loads", "5:35:3",
            "--refine", "1", "--json"]
    serial, parallel = llmstab(*args, "--serial"), llmstab(*args, "--workers", "2")
    assert serial.returncode == 0 and parallel.returncode == 0, parallel.stderr
    assert json.loads(parallel.stdout) == json.loads(serial.stdout)
    assert parallel.stdout == serial.stdout


def test_the_python_function_refuses_a_bad_worker_count():
    spec = engine_spec_from_document(DOC)
    with pytest.raises(capacity.InputError, match="workers"):
        slo_capacities(spec.engine, {"sarathi": spec.policy}, spec.workload, [5], n_requests=50, seed=0, workers=0)


def _fake_point(thresholds):
    """A stand-in for a simulated load point: the SLO is met up to the policy's threshold (req/s)."""
    def evaluate(engine, policy, workload, rps, *, n_requests, seed):
        met = rps <= thresholds[policy.label]
        return {"rps": float(rps), "ttft_p50_s": rps, "tbt_p99_s": {}, "met": met, "diverging": None,
                "slo": {"c": {"ttft_s": thresholds[policy.label], "ttft_percentile": 50.0,
                              "ttft_at_percentile_s": rps, "met": met}}}
    return evaluate


@settings(max_examples=40)
@given(a=st.floats(0.5, 40), b=st.floats(0.5, 40), refine=st.integers(0, 6))
def test_one_batched_search_finds_what_each_policy_finds_alone(a, b, refine):
    """Batching both policies' points changes nothing: each record equals that policy's own search, and the
    bracket holds the true threshold, narrowed by a factor 2 per bisection."""
    from llmstab.fluid_models.policies import SLAI, Sarathi

    spec = engine_spec_from_document(DOC)
    stab = stability_capacity(spec.engine, spec.workload)
    policies = {"one": Sarathi(), "two": SLAI(tau=256)}
    thresholds = {"sarathi": a, policies["two"].label: b}
    grid = [5.0, 10.0, 15.0, 20.0, 25.0, 30.0]
    original = capacity.evaluate_load
    capacity.evaluate_load = _fake_point(thresholds)
    try:
        both = slo_capacities(spec.engine, policies, spec.workload, grid, n_requests=1, seed=0, refine=refine,
                              stability=stab)
        alone = {name: slo_capacity(spec.engine, p, spec.workload, grid, n_requests=1, seed=0, refine=refine,
                                    stability=stab) for name, p in policies.items()}
    finally:
        capacity.evaluate_load = original
    for name, policy in policies.items():
        assert both[name] == alone[name]
        lo, hi = both[name]["bracket_rps"]
        threshold = thresholds[policy.label]
        if threshold < grid[0]:
            assert lo is None and both[name]["slo_capacity_rps"] is None and "no load meets" in both[name]["note"]
        elif threshold >= grid[-1]:
            assert (lo, hi) == (grid[-1], stab.rps)
        else:
            assert lo <= threshold < hi and hi - lo == pytest.approx(5.0 / 2 ** refine)
