"""The per-token latencies the compiled loop records equal a plain-Python walk over the batch log."""

from pathlib import Path

import numpy as np
import pytest
import sympy
from hypothesis import given, settings, strategies as st

from llmstab.checkers.spec import load_engine_spec
from llmstab.fluid_models.batch_time import Staircase
from llmstab.fluid_models.engine import Engine, KVCache
from llmstab.fluid_models.policies import Sarathi, VLLM
from llmstab.fluid_models.simulation.arrivals import Trace
from llmstab.fluid_models.simulation.latency import batch_ends, latency_metrics, token_latencies
from llmstab.fluid_models.simulation.simulator import simulate

SLAI_EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "slai_sharegpt_slo.yaml"


def reference_latencies(result, ends):
    """TTFT ends and per-token gaps from the batch log, in plain Python (the rule of the latency module).

    A request's first token comes at the end of the last batch that gave it
    prefill tokens before its first decode (its first decode without a
    prompt); every later decode token's gap runs from its previous token.
    """
    log, prompt = result.batches, result.trace.prompt.tolist()
    last_pf, last_emit, first = {}, {}, [float("nan")] * result.trace.size
    gaps, req = [], []
    for k, batch in enumerate(log.members):
        for r, p, d in batch:
            if p:
                last_pf[r] = ends[k]
            if not d:
                continue
            if r not in last_emit:
                first[r] = last_emit[r] = last_pf[r] if prompt[r] else ends[k]
                if not prompt[r]:
                    continue
            gaps.append(ends[k] - last_emit[r])
            req.append(r)
            last_emit[r] = ends[k]
    return np.array(first), np.array(gaps), np.array(req, np.int64)


def assert_same(result, ends):
    first, gaps, req = reference_latencies(result, ends)
    lat = token_latencies(result)
    assert np.array_equal(lat.ttft, first - result.trace.times, equal_nan=True)
    assert np.array_equal(lat.gaps, gaps) and np.array_equal(lat.request, req)


traces = st.lists(st.tuples(st.floats(0, 0.05), st.integers(0, 12), st.integers(1, 10)), min_size=1, max_size=25)


@settings(max_examples=30, deadline=None)
@given(traces, st.sampled_from(["sarathi", "vllm"]), st.integers(6, 12))
def test_recorded_gaps_equal_the_batch_log_walk_under_preemption(reqs, name, blocks):
    """Batch ends from each batch's start and its table time (no attention): independent of the latency module."""
    times, prompt, decode = (np.array(x) for x in zip(*sorted(reqs)))
    engine = Engine(Staircase(1, 1, 4), 8, kv_cache=KVCache(blocks=blocks, block_size=4))
    r = simulate(engine, {"sarathi": Sarathi(), "vllm": VLLM()}[name], None, arrivals="trace",
                 trace=Trace(times, prompt, decode), record_batches=True)
    table = engine.batch_time.table(8) / 1000.0
    ends = [s + table[b] for s, b in zip(r.batches.start.tolist(), r.batches.tokens.tolist())]
    assert_same(r, ends)


def test_slai_setup_latencies_and_percentiles_are_those_of_the_batch_log():
    """The capacity benchmark's setup (decode attention, preemptions possible), at its stability capacity."""
    spec = load_engine_spec(SLAI_EXAMPLE)
    w = spec.workload.scaled(sympy.Rational(3))
    for policy in (Sarathi(), spec.policy.for_workload(w)):
        logged = simulate(spec.engine, policy, w, n_requests=600, seed=2, record_batches=True)
        assert_same(logged, batch_ends(logged).tolist())
        lean = simulate(spec.engine, policy, w, n_requests=600, seed=2, record_latency=True)
        assert lean.batches is None and lean == logged
        assert latency_metrics(lean, {}) == latency_metrics(logged, {})


def test_a_run_without_a_record_names_the_option():
    r = simulate(Engine(Staircase(1, 1, 4), 8), Sarathi(), None, arrivals="trace", trace=Trace([0.0], [3], [2]))
    with pytest.raises(ValueError, match="record_latency=True"):
        token_latencies(r)
