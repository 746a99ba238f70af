"""The simulator: the worked example batch for batch, seeding, measurements, traces and bad input."""

import numpy as np
import pytest

from llmstab.fluid_models.simulation.arrivals import SimulationInputError, Trace, read_trace_csv, sample_trace
from llmstab.fluid_models.batch_time import PiecewiseLinear, Staircase
from llmstab.fluid_models.distributions import Deterministic, Geometric, Uniform
from llmstab.fluid_models.engine import Engine
from llmstab.fluid_models.policies import POLICIES, Sarathi, make_policy
from llmstab.fluid_models.simulation.simulator import simulate
from llmstab.fluid_models.traces import trace_distribution, trace_lengths
from llmstab.fluid_models.workload import RequestClass, Workload
from tests.test_worked_example import PAPER_SEQUENCES

CODELLAMA = Staircase("11.28", "35.47", 128)
ENGINE = Engine(CODELLAMA, 512)
CHAT = Workload((RequestClass("chat", 12, Deterministic(129), Geometric(112)),))

# Li-Dai-Peng's five-request example: A, B, C decode 2, 4, 3 tokens from time 0 (prompt 0 = already
# prefilled); D and E (1 prefill + 1 decode token) arrive during the first batch, which lasts
# t(3) = 46.75 ms, so at 10 ms.
WORKED = Trace([0.0, 0.0, 0.0, 0.01, 0.01], [0, 0, 0, 1, 1], [2, 4, 3, 1, 1])


@pytest.mark.parametrize("policy, b_max, expected", PAPER_SEQUENCES)
def test_worked_example_batch_for_batch(policy, b_max, expected):
    r = simulate(Engine(CODELLAMA, b_max), make_policy(policy), None, arrivals="trace", trace=WORKED,
                 record_batches=True)
    assert " | ".join(r.batches.describe(list("ABCDE"))) == expected
    # the clock: batches run back to back, each lasting t(tokens) of the staircase
    ends = r.batches.start + CODELLAMA(r.batches.tokens) / 1000
    assert np.allclose(r.batches.start[1:], ends[:-1])
    assert r.finished.all() and r.tokens_served == int((WORKED.prompt + WORKED.decode).sum())
    assert r.finish.max() == pytest.approx(ends[-1])


def test_arrivals_during_a_batch_wait_for_its_end():
    """D and E arrive at 10 ms, inside the first batch: they are not in it, and join the second."""
    r = simulate(Engine(CODELLAMA, 8), Sarathi(), None, arrivals="trace", trace=WORKED, record_batches=True)
    assert r.batches.describe(list("ABCDE"))[:2] == ["{Ad,Bd,Cd}", "{Ad,Bd,Cd,Dp,Ep}"]


def test_same_seed_same_output_and_seeds_differ():
    a = simulate(ENGINE, Sarathi(), CHAT, horizon_s=300.0, seed=5)
    b = simulate(ENGINE, Sarathi(), CHAT, horizon_s=300.0, seed=5)
    c = simulate(ENGINE, Sarathi(), CHAT, horizon_s=300.0, seed=6)
    assert a == b and a.metrics() == b.metrics() and a.trajectory_csv() == b.trajectory_csv()
    assert a != c


def test_measurements_are_consistent_with_the_engine():
    r = simulate(ENGINE, Sarathi(), CHAT, horizon_s=600.0, seed=1)
    m = r.metrics()["chat"]
    fastest_batch = float(CODELLAMA(1)) / 1000
    done = r.finished
    # the batch that completes the prefill emits the first token: TTFT spans at least one batch,
    # and the first decode comes at least one more batch later
    assert (r.first_token[done] - r.trace.times[done] >= fastest_batch - 1e-12).all()
    assert (r.first_token[done] < r.finish[done]).all()
    assert m["ttft_s"]["p50"] <= m["ttft_s"]["p90"] <= m["ttft_s"]["p99"]
    assert m["tbt_s"]["p50"] >= fastest_batch and m["worst_tbt_s"]["p99"] >= m["tbt_s"]["p99"]
    assert m["e2e_s"]["mean"] >= m["ttft_s"]["mean"]
    # a stable run carries the offered load: throughput within 5% of lambda (m_p + m_d)
    assert r.throughput_tokens == pytest.approx(float(CHAT.token_rate), rel=0.05)
    assert m["throughput_requests_per_s"] == pytest.approx(12, rel=0.05)
    assert 0 < r.busy_time <= r.end_time == 600.0


def test_per_class_metrics_and_deterministic_arrivals():
    work = Workload((RequestClass("short", 4, Deterministic(10), Deterministic(5)),
                     RequestClass("long", 1, Deterministic(300), Deterministic(50))))
    r = simulate(ENGINE, Sarathi(), work, horizon_s=100.0, arrivals="deterministic")
    assert r.trace.size == 401 + 101
    assert np.allclose(r.trace.times[r.trace.cls == 1], np.arange(101.0))
    m = r.metrics()
    assert set(m) == {"short", "long", "all"}
    assert m["short"]["arrived"] == 401 and m["long"]["arrived"] == 101
    assert m["long"]["e2e_s"]["mean"] > m["short"]["e2e_s"]["mean"]  # 50 decode steps vs 5


def test_poisson_arrivals_have_the_requested_rate():
    tr = sample_trace(CHAT, np.random.default_rng(0), horizon_s=2000.0)
    assert tr.size == pytest.approx(12 * 2000, rel=0.03)
    gaps = np.diff(tr.times)
    assert gaps.mean() == pytest.approx(1 / 12, rel=0.03) and gaps.std() == pytest.approx(1 / 12, rel=0.05)


def test_draining_a_fixed_number_of_requests():
    r = simulate(ENGINE, make_policy("orca"), CHAT, n_requests=2000, seed=2)
    assert r.trace.size == 2000 and r.finished.all()
    assert r.tokens_served == int((r.trace.prompt + r.trace.decode).sum())
    assert r.end_time == pytest.approx(np.nanmax(r.finish)) and r.backlog_tokens[-1] == 0


def test_shipped_sharegpt_trace_matches_the_source(shared_data):
    csv = np.loadtxt(shared_data / "traces" / "sharegpt_8k_llama2_tokenizer.csv", delimiter=",", skiprows=1)
    prompt, decode = trace_lengths("sharegpt")
    assert np.array_equal(prompt, csv[:, 0]) and np.array_equal(decode, csv[:, 1])


def test_sharegpt_lengths_are_drawn_as_pairs():
    prompt, decode = trace_lengths("sharegpt")
    rows = {(int(p), int(d)) for p, d in zip(prompt, decode)}
    work = Workload((RequestClass("sg", 1, trace_distribution("sharegpt", "prompt"),
                                  trace_distribution("sharegpt", "decode")),))
    tr = sample_trace(work, np.random.default_rng(3), n_requests=3000)
    assert all((int(p), int(d)) in rows for p, d in zip(tr.prompt, tr.decode))
    assert tr.prompt.mean() == pytest.approx(2340, rel=0.05) and tr.decode.mean() == pytest.approx(439, rel=0.05)
    assert float(work.classes[0].prompt.mean) == pytest.approx(2340.03, abs=0.01)


def test_every_registered_policy_runs_and_a_user_policy_plugs_in():
    from dataclasses import dataclass

    import numba

    from llmstab.fluid_models.policies.base import NO_LIMIT, Policy
    from llmstab.fluid_models.policies.kernels.blocks import add_decodes, add_prefills, clear, open_room, tokens_taken

    @numba.njit
    def half_budget(ri, rf, n, eng, b_max, k_max, params, memory, take):
        clear(n, take)
        room = open_room(eng, b_max // 2, k_max)
        add_decodes(ri, rf, n, room, take, NO_LIMIT)
        add_prefills(ri, n, room, take, 0)
        return tokens_taken(b_max // 2, room)

    @dataclass(frozen=True)
    class Half(Policy):
        name = "half"
        summary = "Sarathi with half the budget"
        kernel = half_budget

    work = Workload((RequestClass("u", 5, Uniform(1, 200), Uniform(1, 100)),))
    for policy in [cls() for cls in POLICIES.values()] + [Half()]:
        r = simulate(ENGINE, policy, work, n_requests=300, seed=4, record_batches=True)
        assert r.finished.all(), policy.label
        assert r.batches.tokens.max() <= (256 if policy.label == "half" else 512)


@pytest.mark.parametrize("text, field", [
    ("prompt_tokens,decode_tokens\n1,2\n", "trace"),
    ("arrival_time,prompt_tokens,decode_tokens\n0,-1,2\n", "trace.prompt_tokens"),
    ("arrival_time,prompt_tokens,decode_tokens\n1,1,2\n0,1,2\n", "trace.arrival_time"),
    ("arrival_time,prompt_tokens,decode_tokens\n0,1,0\n", "trace.decode_tokens"),
    ("arrival_time,prompt_tokens,decode_tokens\n0,x,1\n", "trace.prompt_tokens"),
    ("arrival_time,prompt_tokens,decode_tokens\n0,1.5,1\n", "trace.prompt_tokens"),
])
def test_bad_trace_files_name_the_problem(tmp_path, text, field):
    path = tmp_path / "t.csv"
    path.write_text(text)
    with pytest.raises(SimulationInputError) as err:
        read_trace_csv(path)
    assert err.value.field == field and "\n" not in str(err.value)


def test_trace_file_with_classes(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text("arrival_time,prompt_tokens,decode_tokens,class\n0,5,2,chat\n0.5,3,1,code\n0.7,3,4,chat\n")
    r = simulate(ENGINE, Sarathi(), None, arrivals="trace", trace=read_trace_csv(path))
    assert r.trace.class_names == ("chat", "code") and r.trace.cls.tolist() == [0, 1, 0]
    assert r.metrics()["chat"]["finished"] == 2 and r.metrics()["code"]["finished"] == 1


@pytest.mark.parametrize("options, field", [
    ({"horizon_s": 0}, "horizon"),
    ({"horizon_s": -5.0}, "horizon"),
    ({"horizon_s": 10.0, "seed": 1.5}, "seed"),
    ({"horizon_s": 10.0, "seed": "3"}, "seed"),
    ({"horizon_s": 10.0, "seed": True}, "seed"),
    ({"n_requests": 0}, "n_requests"),
    ({"horizon_s": 10.0, "arrivals": "bursty"}, "arrivals"),
    ({}, "horizon"),
])
def test_bad_options_name_the_field(options, field):
    with pytest.raises(SimulationInputError) as err:
        simulate(ENGINE, Sarathi(), CHAT, **options)
    assert err.value.field == field


def test_pausing_for_progress_and_growing_records_do_not_change_the_run():
    """The compiled loop pauses every 200,000 batches for the progress callback and grows its batch
    log when full; neither may change a single number of the run."""
    calls = []
    engine = Engine(PiecewiseLinear(5, "0.1", 16), 64)  # small, fast batches: 5 ms each
    work = Workload((RequestClass("tiny", 150, Geometric(3), Geometric(3)),))
    plain = simulate(engine, Sarathi(), work, horizon_s=1500.0, seed=9)
    watched = simulate(engine, Sarathi(), work, horizon_s=1500.0, seed=9, record_batches=True,
                       progress=lambda done, total: calls.append((done, total)))
    assert plain.n_batches > 200_000 and len(calls) >= 2
    assert [d for d, _ in calls] == sorted(d for d, _ in calls) and calls[-1] == (1500.0, 1500.0)
    assert watched == plain  # every per-request time and the whole trajectory
    assert watched.batches.tokens.size == plain.n_batches == len(watched.batches.members)
    assert int(watched.batches.tokens.sum()) == plain.tokens_served


@pytest.mark.parametrize("module", ["llmstab.fluid_models.simulation.simulator", "llmstab.fluid_models.simulation.arrivals", "llmstab.fluid_models.traces",
                                    "llmstab.checkers.growth", "llmstab.checkers.simulation_check", "llmstab.checkers.cli.simulate"])
def test_docstring_examples_run(module):
    import doctest
    import importlib

    result = doctest.testmod(importlib.import_module(module), optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0
