"""KV-cache memory and context-dependent batch time: theory, verdicts, simulator laws, input errors."""

import json
import re
import subprocess
import sys
from fractions import Fraction

import numpy as np
import pytest
import sympy
from hypothesis import given, settings, strategies as st

from llmstab.checkers.memory_check import check_memory, memory_numbers
from llmstab.checkers.spec import load_engine_spec
from llmstab.fluid_models.batch_time import Attention, Staircase
from llmstab.fluid_models.distributions import Deterministic, Empirical, Uniform, product_moment
from llmstab.fluid_models.engine import Engine, KVCache
from llmstab.fluid_models.policies import POLICIES, make_policy
from llmstab.fluid_models.simulation.arrivals import SimulationInputError, Trace
from llmstab.fluid_models.simulation.simulator import simulate
from llmstab.fluid_models.workload import RequestClass, Workload
from llmstab.theory import memory, work
from llmstab.theory.exact_linalg import Exact

from .conftest import ROOT

TIME_AWARE = {"slai"}  # its batches depend on per-request deadlines, not only on lengths


def _llmstab(*args, cwd=ROOT):
    return subprocess.run([sys.executable, "-m", "llmstab.checkers.cli.main", *args], capture_output=True, text=True,
                          cwd=cwd)


# --- theory -----------------------------------------------------------------------------------


@given(st.integers(0, 300), st.integers(1, 300))
def test_decode_attention_sum_is_the_sum_of_contexts(p, d):
    assert work.decode_attention_sum().subs({work.p: p, work.d: d}) == sum(p + k for k in range(d))


@given(st.lists(st.integers(1, 500), min_size=1, max_size=20))
def test_prefill_attention_is_half_the_square_of_the_prompt_however_chunked(chunks):
    total, start = Fraction(0), 0
    for c in chunks:
        total += c * (start + Fraction(c, 2))
        start += c
    assert work.prefill_chunks_telescope() and total == Fraction(start * start, 2)
    assert Attention(prefill=1).exact(prefill_chunks=list(zip(np.cumsum([0] + chunks[:-1]), chunks))) == total


@settings(max_examples=50)
@given(st.lists(st.tuples(st.integers(1, 400), st.integers(1, 400)), min_size=1, max_size=12),
       st.fractions(0, 1), st.fractions(0, Fraction(1, 1000)), st.fractions(0, Fraction(1, 1000)))
def test_expected_work_from_moments_equals_the_mean_of_w_over_paired_rows(rows, tau, k_pf, k_dec):
    """E[W] evaluated from moments agrees with W averaged over the rows themselves (paired lengths)."""
    p = Empirical(np.array([a for a, _ in rows]), source="trace:t")
    d = Empirical(np.array([b for _, b in rows]), source="trace:t")
    w = RequestClass("c", 1, p, d)
    engine = Engine(Staircase(1, 0, 1), 1, attention=Attention(decode=str(k_dec), prefill=str(k_pf)))
    direct = sum(Fraction(a + b) * tau + k_pf * Fraction(a * a, 2) + k_dec * sum(a + k for k in range(b))
                 for a, b in rows) / len(rows)
    from llmstab.checkers.memory_check import _class_work

    assert _class_work(engine, w, tau)[0] == direct


exact_numbers = st.fractions(0, 1000, max_denominator=10**6)


@settings(max_examples=60, deadline=None)
@given(exact_numbers, st.one_of(st.just(0), exact_numbers), st.one_of(st.just(0), exact_numbers),
       st.fixed_dictionaries({"p": exact_numbers, "d": exact_numbers},
                             optional={"p2": exact_numbers, "pd": exact_numbers, "d2": exact_numbers}))
def test_fraction_work_agrees_with_the_symbolic_expression(tau, k_pf, k_dec, moments):
    """expected_work_exact (Fractions, the check path) is expected_work (sympy, substituted into the derived
    E[W]) at random rational inputs: the same value, or the same missing moments."""
    rational = {k: sympy.Rational(v.numerator, v.denominator) for k, v in moments.items()}
    try:
        symbolic = work.expected_work(sympy.Rational(tau.numerator, tau.denominator), k_pf, k_dec, rational)
    except KeyError as missing:
        with pytest.raises(KeyError, match=re.escape(str(missing.args[0]))):
            work.expected_work_exact(tau, k_pf, k_dec, moments)
        return
    exact = work.expected_work_exact(tau, k_pf, k_dec, moments)
    assert type(exact) is Exact and exact == Fraction(int(symbolic.p), int(symbolic.q))


def test_work_coefficients_are_those_of_the_derived_expected_work():
    tau, k_pf, k_dec = (Fraction(n, 7) for n in (3, 5, 11))
    expr = work.expected_work_expression().subs({work.tau: tau, work.k_pf: k_pf, work.k_dec: k_dec})
    derived = {name: expr.coeff(sympy.Symbol(f"E_{name}")) for name in work.MOMENT_NAMES.values()}
    assert work.work_coefficients(tau, k_pf, k_dec) == derived and expr.subs({s: 0 for s in expr.free_symbols}) == 0


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.integers(1, 400), st.integers(1, 400)), min_size=1, max_size=12),
       st.fractions(Fraction(1, 100), 10), st.fractions(Fraction(1, 10), 100))
def test_fraction_kv_need_is_the_symbolic_kv_token_batches_over_paired_rows(rows, rate, t_min):
    """The memory check's KV need lambda * E[d*p + d(d-1)/2] * t_min (Fractions) is the derived
    kv_token_batches() averaged over the rows, times lambda * t_min, and is exact (no float rounding)."""
    from llmstab.checkers.memory_check import _class_work

    p = Empirical(np.array([a for a, _ in rows]), source="trace:t")
    d = Empirical(np.array([b for _, b in rows]), source="trace:t")
    kv = _class_work(Engine(Staircase(1, 0, 1), 1), RequestClass("c", 1, p, d), Fraction(1))[1]
    batches = memory.kv_token_batches()
    mean = sum(batches.subs({work.p: a, work.d: b}) for a, b in rows) / len(rows)
    need, _ = memory.memory_necessary(rate, kv, t_min, 1)
    assert type(need) is Exact and kv == Fraction(int(mean.p), int(mean.q))
    assert need == rate * Fraction(int(mean.p), int(mean.q)) * t_min / 1000


@pytest.mark.parametrize("example", ["memory_bound.yaml", "context_heavy_vidur.yaml", "slai_sharegpt_slo.yaml"])
def test_memory_numbers_are_those_of_the_symbolic_capacity_and_work(example):
    """The check's Fractions (capacity_of, Engine.shortest_batch_ms, expected_work_exact) are the numbers the
    sympy path gives (engine_capacity on the batch time's expression, expected_work), and stay Exact."""
    from llmstab.theory.capacity import engine_capacity

    spec = load_engine_spec(ROOT / "examples" / example)
    engine, n = spec.engine, memory_numbers(spec.engine, spec.workload)
    cap = engine_capacity(engine.batch_time.expression(sympy.Symbol("b", positive=True, integer=True)),
                          engine.token_budget)
    table = engine.batch_time.table(engine.token_budget)[1:]
    t_min = min(sympy.Rational(str(engine.batch_time.exact(b + 1))) for b, v in enumerate(table) if v <= table.min())
    att = engine.attention
    k_pf, k_dec = (0, 0) if att is None else (att.prefill_exact, att.decode_exact)
    for c in spec.workload.classes:
        moments = {"p": c.prompt.mean, "d": c.decode.mean, "p2": c.prompt.second_moment,
                   "d2": c.decode.second_moment, "pd": product_moment(c.prompt, c.decode)}
        assert n.work_ms[c.name] == work.expected_work(1 / cap.tokens_per_ms, k_pf, k_dec, moments)
    assert n.t_min_ms == t_min and all(type(v) is Exact for v in (n.compute_load, n.t_min_ms, *n.work_ms.values()))


def test_memory_bound_example_numbers_are_reproduced_by_hand():
    spec = load_engine_spec(ROOT / "examples" / "memory_bound.yaml")
    n = memory_numbers(spec.engine, spec.workload)
    e_d = e_p = 1000
    e_d2 = sympy.Rational(1001 ** 2 - 1, 12) + 1000 ** 2  # uniform on 500..1500
    kv_batches = e_p * e_d + (e_d2 - e_d) / 2
    assert n.t_min_ms == sympy.Rational("46.75")
    assert n.kv_need_tokens == sympy.Rational(3, 5) * kv_batches * sympy.Rational("46.75") / 1000 > 32000
    tau = sympy.Rational("153.16") / 512
    e_w = 2000 * tau + sympy.Rational("2e-5") * e_d2 / 2 + sympy.Rational("1.4e-4") * kv_batches
    assert n.work_ms["long-chat"] == e_w and n.compute_load == sympy.Rational(3, 5) * e_w / 1000
    assert n.binding() == "memory"


# --- verdicts through the CLI -------------------------------------------------------------------


def test_check_memory_bound_is_unstable_with_the_memory_certificate_and_the_roomy_twin_is_stable():
    bound = json.loads(_llmstab("check", "examples/memory_bound.yaml", "--json", "--no-simulate").stdout)
    assert bound["load_verdict"] == "unstable"
    cert = next(e for e in bound["evidence"] if e["step"] == "memory")
    assert cert["kind"] == "certificate" and cert["data"]["binding"] == "memory"
    assert cert["exact"]["kv_need_tokens"] == "691713/16" and cert["data"]["kv_tokens"] == 32000
    roomy = json.loads(_llmstab("check", "examples/memory_roomy.yaml", "--json", "--no-simulate").stdout)
    assert roomy["load_verdict"] == "stable"
    assert roomy["capacity"]["memory"]["binding"] == "compute" and roomy["capacity"]["memory"]["compute_load"] < 0.5


def test_a_request_larger_than_the_cache_is_an_unstable_verdict_and_stops_a_simulation(tmp_path):
    engine = Engine(Staircase(1, 1, 4), 4, kv_cache=KVCache(blocks=4, block_size=4))
    load = Workload((RequestClass("big", 1, Deterministic(10), Deterministic(10)),))
    verdict = check_memory(engine, make_policy("sarathi"), load)
    assert verdict.verdict == "unstable" and verdict.evidence[0].data["largest_request"]["fits"] is False
    with pytest.raises(SimulationInputError, match="engine.kv_cache"):
        simulate(engine, make_policy("sarathi"), load, n_requests=3, seed=0)


@pytest.mark.parametrize("engine_extra, batch_extra, field", [
    ({}, {"attention": {"decode": -1}}, "engine.batch_time.attention.decode"),
    ({}, {"attention": {"prefil": 1}}, "engine.batch_time.attention.prefil"),
    ({"kv_cache": {"blocks": 10, "watermark": 1}}, {}, "engine.kv_cache.watermark"),
    ({"kv_cache": {"tokens": 8, "block_size": 16}}, {}, "engine.kv_cache.tokens"),
    ({"kv_cache": {"blocks": 0}}, {}, "engine.kv_cache.blocks"),
    ({"kv_cache": {"blocks": 4, "tokens": 64}}, {}, "engine.kv_cache"),
    ({"max_active_requests": 0}, {}, "engine.max_active_requests"),
])
def test_bad_memory_input_is_one_line_naming_the_field(tmp_path, engine_extra, batch_extra, field):
    doc = {"engine": {"batch_time": {"kind": "staircase", "c": 1, "a": 1, "b0": 4, **batch_extra}, "token_budget": 4,
                      **engine_extra},
           "policy": "sarathi",
           "workload": {"classes": [{"rate": 1, "prompt": {"dist": "deterministic", "mean": 4},
                                     "decode": {"dist": "deterministic", "mean": 4}}]}}
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(doc))
    out = _llmstab("check", str(path))
    assert out.returncode == 2 and out.stderr.count("\n") == 1 and field in out.stderr


# --- simulator ----------------------------------------------------------------------------------


def test_batch_time_follows_composition_and_contexts():
    """One request, prompt 4 then 3 decodes: each batch is t(n) plus its attention, exactly."""
    att = Attention(decode="0.5", prefill="0.25")
    engine = Engine(Staircase(1, 1, 4), 4, attention=att)
    r = simulate(engine, make_policy("sarathi"), None, arrivals="trace", trace=Trace([0.0], [4], [3]),
                 record_batches=True)
    t = Staircase(1, 1, 4)
    expected = [t.exact(4) + att.exact(prefill_chunks=[(0, 4)])] + [t.exact(1) + att.exact(decode_contexts=[c])
                                                                     for c in (4, 5, 6)]
    assert r.finish[0] == pytest.approx(float(sum(expected)) / 1000, rel=1e-12)
    assert np.diff(np.append(r.batches.start, r.finish[0])) == pytest.approx([float(x) / 1000 for x in expected])


small_traces = st.lists(st.tuples(st.floats(0, 3), st.integers(1, 24), st.integers(1, 16)), min_size=1, max_size=25)


@settings(max_examples=40, deadline=None)
@given(small_traces, st.integers(12, 40), st.sampled_from([1, 2, 4]), st.sampled_from(sorted(set(POLICIES) - TIME_AWARE)),
       st.one_of(st.none(), st.integers(1, 6)))
def test_preemption_loses_no_request_and_keeps_kv_within_the_cache(rows, blocks, block_size, name, active):
    """Laws under KV pressure: every request leaves once, decodes are served exactly d times, the tokens
    served are the tokens demanded plus the recomputed ones, and blocks in use never exceed the cache."""
    rows = sorted(rows)
    blocks = max(blocks, -(-40 // block_size) + 1)  # the largest request (24 + 16 tokens) fits alone
    tr = Trace([t for t, _, _ in rows], [p for _, p, _ in rows], [d for _, _, d in rows])
    engine = Engine(Staircase(1, 1, 8), 16, kv_cache=KVCache(blocks, block_size), max_active_requests=active)
    policy = make_policy(name) if name != "rad" else make_policy("rad", b_col=4, b_lcm=8)
    r = simulate(engine, policy, None, arrivals="trace", trace=tr, record_batches=True, record_every=0.01)
    assert r.finished.all()
    decodes, prefills = np.zeros(tr.size, int), np.zeros(tr.size, int)
    for batch in r.batches.members:
        ids = [i for i, _, _ in batch]
        assert len(ids) == len(set(ids))
        for i, p, d in batch:
            prefills[i] += p
            decodes[i] += d
    assert (decodes == tr.decode).all() and (prefills >= tr.prompt).all()
    m = r.memory
    assert r.tokens_served == int((tr.prompt + tr.decode).sum()) + m.recomputed_tokens == int(r.batches.tokens.sum())
    assert prefills.sum() - tr.prompt.sum() == m.recomputed_tokens
    assert m.peak_blocks <= blocks and r.batches.kv_blocks.max() <= blocks and m.kv_blocks.max() <= blocks
    assert m.kv_blocks[-1] == 0  # everything finished: every block returned


def test_memory_bound_engine_preempts_and_stalls_while_the_roomy_twin_never_does():
    bound, roomy = (load_engine_spec(ROOT / "examples" / f) for f in ("memory_bound.yaml", "memory_roomy.yaml"))
    a = simulate(bound.engine, bound.policy, bound.workload, horizon_s=300, seed=2)
    b = simulate(roomy.engine, roomy.policy, roomy.workload, horizon_s=300, seed=2)
    assert a.memory.preemptions > 0 and a.memory.admission_stalls_memory > 100
    assert a.memory.peak_blocks == 2000 and a.backlog_requests[-1] > 2 * b.backlog_requests[-1]
    assert b.memory.preemptions == 0 and b.memory.admission_stalls_memory == 0


def test_exact_capacity_with_attention_matches_simulated_throughput_within_its_ci():
    """At 1.3x the exact capacity 1/E[W] (attention included) Sarathi keeps every batch full, so requests
    complete at 1000/E[W] per second: the batch-means 95% interval of the simulated rate covers it."""
    att = Attention(decode="2e-4", prefill="5e-5")
    engine = Engine(Staircase("11.28", "35.47", 128), 512, attention=att)
    base = Workload((RequestClass("u", 1, Uniform(100, 300), Uniform(20, 80)),))
    n = memory_numbers(engine, base)
    capacity = 1000 / n.work_ms["u"]  # requests per second
    r = simulate(engine, make_policy("sarathi"), base.scaled(sympy.Rational(13, 10) * capacity), horizon_s=2000, seed=5)
    done = np.sort(r.finish[r.finished])
    edges = np.linspace(500, 2000, 16)
    rates = np.diff(np.searchsorted(done, edges)) / np.diff(edges)
    half = 2.145 * rates.std(ddof=1) / np.sqrt(rates.size)  # t(0.975, 14)
    assert abs(rates.mean() - float(capacity)) <= half and half < 0.03 * float(capacity)


def test_rad_with_a_kv_cache_cites_bari_theorem_2_only_when_assumption_4_holds(tmp_path):
    """RAD below Theorem 1's bound is stable by Bari's Theorem 2 when memory holds b_col largest requests."""
    def check(blocks):
        doc = {"engine": {"batch_time": {"kind": "tiled", "t_lin": 2, "b_col": 64, "t_nl": 0.001}, "token_budget": 512,
                          "kv_cache": {"blocks": blocks, "block_size": 16}},
               "policy": {"name": "rad", "b_col": 64, "b_lcm": 128},
               "workload": {"classes": [{"rate": 70, "prompt": {"dist": "deterministic", "mean": 256},
                                         "decode": {"dist": "uniform", "low": 1, "high": 256}}]}}
        path = tmp_path / f"rad{blocks}.json"
        path.write_text(json.dumps(doc))
        return json.loads(_llmstab("check", str(path), "--json", "--no-simulate").stdout)

    roomy, tight = check(64 * 32), check(64 * 32 - 1)  # 64 requests of 512 tokens need 64 * 32 blocks
    found = [e for e in roomy["evidence"] if e["reference"] == "Bari-Hegde-de Veciana Assumption 4"]
    assert roomy["load_verdict"] == "stable" and found and found[0]["data"]["holds"]
    assert tight["load_verdict"] == "inconclusive"
    assert any(e["reference"] == "Bari-Hegde-de Veciana Assumption 4" and not e["data"]["holds"]
               for e in tight["evidence"])


def test_orca_admits_no_prompt_that_takes_the_block_a_decode_needs():
    """Two requests that cannot both grow in 41 blocks: Orca (prefill first) used to admit the evicted one back
    into the block the other's decode needed, and the two evicted each other until a batch broke the KV rules."""
    tr = Trace([0.0, 0.0], [7, 24], [7, 5])
    engine = Engine(Staircase(1, 1, 8), 16, kv_cache=KVCache(41, 1))
    r = simulate(engine, make_policy("orca"), None, arrivals="trace", trace=tr, record_batches=True)
    assert r.finished.all() and r.memory.peak_blocks <= 41
    assert r.batches.describe(["A", "B"])[-5:] == ["{Ad}", "{Ad}", "{Bp}", "{Bp}", "{Bd}"]
