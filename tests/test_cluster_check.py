"""``llmstab check`` on clusters: pooled capacity, router theorems, binding resource, bad input, the CLI."""

from __future__ import annotations

import copy
import json
import subprocess
import sys

import pytest
import sympy
from hypothesis import given, settings
from hypothesis import strategies as st

from llmstab.checkers.cluster_check import BRAMSON, THINNING, check_cluster_document
from llmstab.checkers.cluster_spec import cluster_spec_from_document
from llmstab.checkers.errors import InputError
from llmstab.checkers.pipeline import check_engine
from llmstab.checkers.spec import engine_spec_from_document, load_document
from llmstab.theory.cluster import binding, pooled_capacity, utilisations

from .conftest import EXAMPLES, ROOT

ENGINE = {"batch_time": {"kind": "staircase", "c": 11.28, "a": 35.47, "b0": 128}, "token_budget": 512}


def _doc(rate: object = 50, replicas: int = 4, router: str = "random", policy: str = "sarathi") -> dict:
    return {"cluster": {"replicas": replicas, "router": router}, "engine": copy.deepcopy(ENGINE), "policy": policy,
            "workload": {"classes": [{"name": "chat", "rate": rate, "prompt": {"dist": "deterministic", "mean": 129},
                                      "decode": {"dist": "geometric", "mean": 112}}]}}


def _single(doc: dict, g: int) -> dict:
    one = {k: v for k, v in copy.deepcopy(doc).items() if k != "cluster"}
    one["workload"]["classes"][0]["rate"] = sympy.Rational(doc["workload"]["classes"][0]["rate"]) / g
    return one


@pytest.mark.parametrize("policy,rate", [("sarathi", 50), ("vllm", 50), ("fastertransformer", 30), ("sarathi", 56)])
def test_random_router_matches_the_single_replica_verdict(policy, rate):
    doc = _doc(rate, 4, "random", policy)
    cluster = check_cluster_document(doc, simulate=False)
    single = check_engine(engine_spec_from_document(_single(doc, 4)), simulate=False)
    assert cluster.load_verdict.verdict == single.load_verdict.verdict
    assert cluster.policy_verdict.verdict == single.policy_verdict.verdict
    assert cluster.capacity["tokens_per_ms"] == 4 * sympy.Rational(single.capacity["exact_tokens_per_ms"])
    if cluster.load_verdict.verdict != "unstable":
        assert cluster.load_verdict.evidence[0].reference == THINNING


def test_above_pooled_capacity_is_unstable_for_every_router():
    for router in ("random", "round_robin", "jsq", "least_outstanding", "power_of_two"):
        r = check_cluster_document(_doc(56, 4, router), simulate=False)  # 56 x 241 > 4 x 3342.9 tokens/s
        assert r.load_verdict.verdict == "unstable"
        assert r.load_verdict.evidence[0].kind == "certificate"
        assert r.load["utilisation"] > 1


def test_jsq_cites_bramson_and_is_settled_by_simulation():
    theory = check_cluster_document(_doc(50, 4, "jsq"), simulate=False)
    assert theory.load_verdict.verdict == "inconclusive"
    assert theory.load_verdict.evidence[0].reference == BRAMSON
    run = check_cluster_document(_doc(50, 4, "jsq"), seed=1)
    assert run.load_verdict.verdict == "stable"
    sim = [e for e in run.load_verdict.evidence if e.kind == "simulation"]
    assert sim and sim[0].data["lost"] == 0 and not run.extra["simulation"]["growth"]["verdict"] == "diverging"
    assert {e.step for e in run.load_verdict.evidence} == {"cluster"}


def test_round_robin_is_confirmed_by_a_cluster_run():
    r = check_cluster_document(_doc(50, 4, "round_robin"))
    kinds = [e.kind for e in r.load_verdict.evidence]
    assert r.load_verdict.verdict == "stable" and "theorem" in kinds and "simulation" in kinds
    shares = [rep["requests_per_s"] for rep in r.extra["simulation"]["replicas"]]
    assert max(shares) - min(shares) < 0.01


def test_rad_on_four_nodes_exercises_bari_theorem_2():
    doc = load_document(EXAMPLES / "cluster_rad_tiled_4_nodes.yaml")
    r = check_cluster_document(doc)
    assert (r.load_verdict.verdict, r.policy_verdict.verdict) == ("stable", "maximally-stable")
    refs = {e.reference for e in r.load_verdict.evidence + r.policy_verdict.evidence}
    assert "Bari-Hegde-de Veciana (arXiv 2508.01002) Theorem 2" in refs
    assert any(e.kind == "simulation" for e in r.load_verdict.evidence)
    assert any("Assumption 4" in e.summary and e.kind == "theorem" for e in r.load_verdict.evidence)


def test_rad_with_unbounded_outputs_does_not_invoke_theorem_2_for_the_load():
    doc = load_document(EXAMPLES / "cluster_rad_tiled_4_nodes.yaml")
    doc["workload"]["classes"][0]["decode"] = {"dist": "geometric", "mean": 128}
    r = check_cluster_document(doc, simulate=False)
    assert r.load_verdict.verdict == "inconclusive"
    assert any("Assumption 4" in e.summary and e.kind == "note" for e in r.load_verdict.evidence)


@pytest.mark.parametrize("name,resource,verdict", [("link_binds", "link", "stable"),
                                                    ("decode_binds", "decode", "stable")])
def test_disaggregated_names_the_binding_resource(name, resource, verdict):
    doc = load_document(EXAMPLES / f"cluster_disaggregated_{name}.yaml")
    r = check_cluster_document(doc, seed=2)
    assert r.capacity["binding"] == resource and r.load_verdict.verdict == verdict
    u = r.load["per_resource"]
    assert max(u.values()) == u[resource] < 1
    assert r.extra["simulation"]["cluster"]["lost"] == 0


def test_disaggregated_is_compared_with_the_same_gpus_colocated_against_the_slo():
    doc = load_document(EXAMPLES / "cluster_disaggregated_decode_binds.yaml")
    doc["workload"]["classes"][0]["slo"] = {"ttft_s": 0.5, "tbt_s": 0.1}
    r = check_cluster_document(doc, seed=3)
    comparison = r.extra["colocated_comparison"]
    assert comparison["replicas"] == 4
    for name in ("colocated", "disaggregated"):
        row = comparison[name]["chat"]
        assert row["slo_met"] == (row["ttft_p50_s"] <= 0.5 and row["tbt_p99_s"] <= 0.1)
        assert row["throughput_requests_per_s"] == pytest.approx(25, rel=0.05)
    assert any(e.kind == "simulation" and "colocated" in e.summary for e in r.policy_verdict.evidence)
    assert "the decode pool binds" in r.policy_verdict.evidence[0].summary


def test_disaggregated_link_utilisation_is_exact():
    doc = load_document(EXAMPLES / "cluster_disaggregated_link_binds.yaml")
    u = check_cluster_document(doc, simulate=False).load["per_resource"]
    # 20/s x 129 tokens x 196608 bytes / 0.5625 GB/s
    assert u["link"] == sympy.Rational(20 * 129 * 196608, 562_500_000)
    doc["cluster"]["kv_transfer"]["gb_per_s"] = 0.5
    r = check_cluster_document(doc, simulate=False)
    assert r.load_verdict.verdict == "unstable" and "KV-transfer link binds" in r.load_verdict.evidence[0].summary


def test_disaggregated_kv_memory_bound_can_bind():
    doc = load_document(EXAMPLES / "cluster_disaggregated_decode_binds.yaml")
    doc["cluster"]["decode"]["kv_tokens"] = 30000
    r = check_cluster_document(doc, simulate=False)
    assert r.capacity["binding"] == "kv_memory" and r.load_verdict.verdict == "unstable"
    # E[p d] + E[d(d-1)]/2 with p = 129, d geometric(112): 14448 + 12432 token-batches of at least t(1) = 46.75 ms
    assert r.capacity["resources"]["kv_memory"]["kv_ms_per_request"] == (14448 + 12432) * sympy.Rational("46.75")


@settings(max_examples=30, deadline=None)
@given(rate=st.fractions(min_value=1, max_value=100), g=st.integers(1, 64), scale=st.integers(2, 5))
def test_utilisations_are_linear_in_the_rate_and_capacity_in_g(rate, g, scale):
    args = dict(mean_prompt=129, mean_decode=112, prefill_capacity=3, prefill_replicas=g, decode_capacity=2,
                decode_replicas=g, ms_per_token=sympy.Rational(1, 100))
    one = utilisations(rate_per_s=sympy.Rational(rate), **args)
    many = utilisations(rate_per_s=scale * sympy.Rational(rate), **args)
    assert all(many[k] == scale * one[k] for k in one)
    assert binding(one) == binding(many)
    assert pooled_capacity(sympy.Rational(7, 3), g) == g * sympy.Rational(7, 3)


@pytest.mark.parametrize("cluster,field", [
    ({"replicas": 0, "router": "jsq"}, "cluster.replicas"),
    ({"replicas": 2, "router": "fastest"}, "cluster.router"),
    ({"prefill": {"replicas": 2}}, "cluster.decode"),
    ({"prefill": {"replicas": 1}, "decode": {"replicas": 1}, "kv_transfer": {"ms_per_token": -1}},
     "cluster.kv_transfer.ms_per_token"),
    ({"prefill": {"replicas": 1}, "decode": {"replicas": 1}, "router": {"decode": "nearest"}}, "cluster.router.decode"),
])
def test_bad_input_names_the_field(cluster, field):
    doc = _doc()
    doc["cluster"] = cluster
    with pytest.raises(InputError) as err:
        cluster_spec_from_document(doc)
    assert err.value.field == field


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "llmstab.checkers.cli.main", *args], capture_output=True, text=True, cwd=ROOT,
                          env={"PYTHONWARNINGS": "ignore", "PATH": "/usr/bin:/bin"})


def test_cli_check_json_on_a_cluster():
    out = _cli("check", str(EXAMPLES / "cluster_random.yaml"), "--json", "--no-simulate")
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    assert (report["load_verdict"], report["policy_verdict"]) == ("stable", "maximally-stable")
    assert report["capacity"]["replicas"] == 4 and report["load"]["per_replica"]["requests_per_s"] == 12.5
    assert report["evidence"][0]["reference"] == THINNING


def test_cli_bad_cluster_is_one_line_exit_2(tmp_path):
    doc = _doc()
    doc["cluster"]["replicas"] = 0
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(doc))
    out = _cli("check", str(path))
    assert out.returncode == 2 and out.stdout == ""
    assert out.stderr.strip().count("\n") == 0 and "cluster.replicas" in out.stderr


def test_public_api_checks_a_cluster_file():
    import llmstab

    report = llmstab.check(EXAMPLES / "cluster_disaggregated_link_binds.yaml", simulate=False)
    assert report.capacity["binding"] == "link" and report.extra["steps"] == ["cluster-disaggregated"]
    assert {e.step for e in report.load_verdict.evidence} == {"cluster"}


def test_engines_with_kv_memory_are_not_simulated_and_not_claimed_stable():
    doc = _doc(50, 4, "jsq")
    doc["engine"]["kv_cache"] = {"tokens": 50000, "block_size": 16}
    r = check_cluster_document(doc)
    assert r.load_verdict.verdict == "inconclusive" and "simulation" not in r.extra
    assert any(e.data.get("unmodelled") == ["KV cache"] for e in r.load_verdict.evidence)
    over = check_cluster_document(_doc(56, 4, "jsq") | {"engine": doc["engine"]})
    assert over.load_verdict.verdict == "unstable"  # capacity ignoring memory is an upper bound


def test_decode_kv_tokens_default_to_the_engines_kv_cache():
    doc = load_document(EXAMPLES / "cluster_disaggregated_decode_binds.yaml")
    del doc["cluster"]["decode"]["kv_tokens"]
    doc["cluster"]["decode"]["engine"] = {**ENGINE, "kv_cache": {"tokens": 50000, "block_size": 16}}
    assert cluster_spec_from_document(doc).kv_tokens == 50000
