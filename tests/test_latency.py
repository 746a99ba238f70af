"""Latency as the field counts it: TTFT at the prefill's last batch, TBT per token, goodput; SLO input."""

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from llmstab.checkers.errors import InputError
from llmstab.checkers.spec import engine_spec_from_document
from llmstab.fluid_models.batch_time import Staircase
from llmstab.fluid_models.engine import Engine, KVCache
from llmstab.fluid_models.policies import SLAI, Sarathi, VLLM
from llmstab.fluid_models.simulation.arrivals import SimulationInputError, Trace
from llmstab.fluid_models.simulation.latency import latency_metrics, token_latencies
from llmstab.fluid_models.simulation.simulator import simulate
from llmstab.fluid_models.slo import SLO

TWO_MS = Engine(Staircase(1, 1, 4), 4)   # every batch of 1..4 tokens lasts 2 ms


def run(trace, engine=TWO_MS, policy=Sarathi()):
    return simulate(engine, policy, None, arrivals="trace", trace=trace, record_batches=True)


def test_ttft_ends_with_the_batch_that_completes_a_chunked_prefill():
    r = run(Trace([0.0], [6], [2]))
    assert r.batches.describe(["A"]) == ["{Ap}", "{Ap}", "{Ad}", "{Ad}"]
    lat = token_latencies(r)
    assert lat.ttft.tolist() == pytest.approx([0.004])        # the end of the second prefill chunk
    assert lat.gaps.tolist() == pytest.approx([0.002, 0.002])  # two decode tokens after the first


def test_tbt_percentiles_are_over_tokens_not_requests():
    r = run(Trace([0.0, 0.0], [4, 4], [9, 1]), engine=Engine(Staircase(1, 1, 4), 4))
    m = latency_metrics(r)[r.trace.class_names[0]]
    lat = token_latencies(r)
    assert m["tbt_s"]["n"] == lat.gaps.size == 9 + 1
    assert m["tbt_s"]["p50"] == pytest.approx(np.percentile(lat.gaps, 50))


def test_a_request_without_a_prompt_gets_its_first_token_from_its_first_decode():
    lat = token_latencies(run(Trace([0.0], [0], [3])))
    assert lat.ttft.tolist() == pytest.approx([0.002]) and lat.gaps.size == 2


def test_slo_verdict_and_goodput_per_class():
    tr = Trace([0.0, 0.0, 0.001], [4, 4, 4], [3, 3, 3], np.array([0, 1, 1]), ("strict", "relaxed"))
    r = run(tr)
    slos = {"strict": SLO(ttft_s=1.0, tbt_s=0.001), "relaxed": SLO(ttft_s=1.0, tbt_s=1.0)}
    m = latency_metrics(r, slos)
    assert m["strict"]["slo"]["met"] is False and m["relaxed"]["slo"]["met"] is True
    assert m["strict"]["goodput_rps"] == 0 and m["relaxed"]["goodput_rps"] == pytest.approx(2 / r.end_time)
    assert m["all"]["goodput_rps"] == pytest.approx(m["relaxed"]["goodput_rps"])


traces = st.lists(st.tuples(st.floats(0, 0.05), st.integers(0, 12), st.integers(1, 10)), min_size=1, max_size=25)


@settings(max_examples=40, deadline=None)
@given(traces, st.sampled_from(["sarathi", "slai", "vllm"]), st.integers(6, 12))
def test_every_token_gap_is_counted_once_and_no_request_is_lost_under_preemption(reqs, name, blocks):
    reqs = sorted(reqs)
    times, prompt, decode = (np.array(x) for x in zip(*reqs))
    engine = Engine(Staircase(1, 1, 4), 8, kv_cache=KVCache(blocks=blocks, block_size=4))
    policy = {"sarathi": Sarathi(), "slai": SLAI(tau=8), "vllm": VLLM()}[name]
    try:
        r = run(Trace(times, prompt, decode), engine=engine, policy=policy)
    except SimulationInputError as err:  # requests that evict each other forever are named, never a hang
        pytest.fail(f"{name}: {err}")
    assert r.finished.all()                                    # no request lost, preempted or not
    lat = token_latencies(r)
    per_request = np.bincount(lat.request, minlength=r.trace.size)
    assert (per_request == np.where(prompt > 0, decode, decode - 1)).all()
    sums = np.bincount(lat.request, weights=lat.gaps, minlength=r.trace.size)
    first = r.trace.times + lat.ttft
    assert sums == pytest.approx(r.finish - first)             # the gaps tile first token .. last token
    assert (lat.gaps > 0).all()
    m = latency_metrics(r, {r.trace.class_names[0]: SLO(ttft_s=0.01, tbt_s=0.004)})[r.trace.class_names[0]]
    assert m["goodput_rps"] <= m["throughput_rps"]


def _doc(classes, **workload):
    return {"engine": {"batch_time": {"kind": "staircase", "c": 10, "a": 10, "b0": 64}, "token_budget": 512},
            "policy": "slai", "workload": {"classes": classes, **workload}}


LENGTHS = {"prompt": {"dist": "deterministic", "mean": 100}, "decode": {"dist": "deterministic", "mean": 10}}


def test_a_stream_split_by_share_gives_the_classes_its_rate_and_slai_their_tbt_targets():
    spec = engine_spec_from_document(_doc([
        {"name": "strict", "share": 0.05, "slo": {"ttft_s": 0.5, "tbt_s": 0.1}, **LENGTHS},
        {"name": "relaxed", "share": 0.95, "slo": {"ttft_s": 0.5, "tbt_s": 0.5, "tbt_percentile": 99}, **LENGTHS}],
        rate=2))
    assert [str(c.rate) for c in spec.workload.classes] == ["1/10", "19/10"]
    assert spec.workload.classes[0].slo == SLO(ttft_s=0.5, tbt_s=0.1)
    assert spec.policy.class_tbt_s == (0.1, 0.5)


@pytest.mark.parametrize("slo, field", [
    ({"ttft_s": 0.5, "ttft_percentile": 0}, "slo.ttft_percentile"),
    ({"tbt_s": 0.1, "tbt_percentile": 100.5}, "slo.tbt_percentile"),
    ({"tbt_s": -0.1}, "slo.tbt_s"),
    ({"ttft_s": 0}, "slo.ttft_s"),
    ({"ttft": 0.5}, "slo.ttft"),
    ({}, "slo"),
])
def test_bad_slos_name_their_field(slo, field):
    with pytest.raises(InputError, match=rf"^workload\.classes\[0\]\.{field.replace('.', '[.]')}: "):
        engine_spec_from_document(_doc([{"name": "a", "rate": 1, "slo": slo, **LENGTHS}]))


@pytest.mark.parametrize("classes, workload, field", [
    ([{"share": 0.5, **LENGTHS}], {"rate": 1}, r"workload\.classes: the shares sum to 1/2"),
    ([{"rate": 1, **LENGTHS}], {"rate": 1}, r"workload\.classes\[0\]\.rate"),
    ([{"share": 0.5, **LENGTHS}], {}, r"workload\.classes\[0\]\.share"),
    ([{"share": 1.5, **LENGTHS}], {"rate": 1}, r"workload\.classes\[0\]\.share: must lie in"),
])
def test_bad_shares_name_their_field(classes, workload, field):
    with pytest.raises(InputError, match=f"^{field}"):
        engine_spec_from_document(_doc(classes, **workload))
