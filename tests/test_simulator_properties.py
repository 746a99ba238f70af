"""Laws of the simulator that hold for every input (hypothesis), and Little's law on stable runs."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from llmstab.fluid_models.simulation.arrivals import Trace
from llmstab.fluid_models.batch_time import PiecewiseLinear, Staircase
from llmstab.fluid_models.distributions import Deterministic, Geometric
from llmstab.fluid_models.engine import Engine
from llmstab.fluid_models.policies import POLICIES, make_policy
from llmstab.fluid_models.simulation.simulator import simulate
from llmstab.fluid_models.state import Batch, EngineState
from llmstab.fluid_models.workload import RequestClass, Workload

WORK_CONSERVING = ("sarathi", "orca", "fcfs")


@st.composite
def traces(draw, max_requests=25):
    n = draw(st.integers(1, max_requests))
    gaps = draw(st.lists(st.floats(0, 0.3, allow_nan=False), min_size=n, max_size=n))
    prompt = draw(st.lists(st.integers(0, 40), min_size=n, max_size=n))
    decode = draw(st.lists(st.integers(1, 12), min_size=n, max_size=n))
    return Trace(np.cumsum(gaps), prompt, decode)


engines = st.builds(lambda b0, k, c, kmax: Engine(Staircase(c, 7, b0), b0 * k, kmax),
                    st.sampled_from([2, 4, 8]), st.integers(1, 4), st.integers(1, 20),
                    st.one_of(st.none(), st.integers(1, 6)))


def _replay(engine, policy, trace):
    return simulate(engine, policy, None, arrivals="trace", trace=trace, record_batches=True, record_every=0.01)


@settings(max_examples=40, deadline=None)
@given(traces(), engines, st.sampled_from(sorted(POLICIES)))
def test_no_request_lost_or_duplicated_and_tokens_balance(trace, engine, name):
    r = _replay(engine, make_policy(name), trace)
    assert r.finished.all()  # every request leaves exactly once (finish is written once, when decode hits 0)
    served = {}
    for batch in r.batches.members:
        ids = [i for i, _, _ in batch]
        assert len(ids) == len(set(ids))  # a request appears at most once per batch
        for i, p, d in batch:
            served[i] = served.get(i, 0) + p + d
    demanded = {i: int(trace.prompt[i] + trace.decode[i]) for i in range(trace.size)}
    assert served == {i: v for i, v in demanded.items() if v}  # each request got exactly its tokens
    assert r.tokens_served == sum(demanded.values()) == int(r.batches.tokens.sum())
    assert (r.finish >= r.first_token).all() and (r.first_token > trace.times).all()


#: Policies whose batch depends on more than the lengths (SLAI keeps a last schedulable time per request):
#: a state of lengths alone cannot replay them.
TIME_AWARE = {"slai"}


@settings(max_examples=40, deadline=None)
@given(traces(), engines, st.sampled_from(sorted(set(POLICIES) - TIME_AWARE)))
def test_every_batch_is_the_policys_own_batch_on_the_replayed_state(trace, engine, name):
    """Rebuild the state before each batch and ask the policy: the simulator formed that very batch.

    The engine shows the running requests (started: served before, or arrived with prompt 0) in arrival
    order, then the waiting ones in arrival order (memory unlimited: nobody is preempted).
    """
    policy = make_policy(name)
    r = _replay(engine, policy, trace)
    left_p, left_d = trace.prompt.copy(), trace.decode.copy()
    for start, batch in zip(r.batches.start, r.batches.members):
        arrived = [i for i in range(trace.size) if trace.times[i] <= start and left_d[i] > 0]
        started = [i for i in arrived if left_p[i] < trace.prompt[i] or trace.prompt[i] == 0]
        present = started + [i for i in arrived if i not in started]
        state = EngineState(tuple(left_p[present]), tuple(left_d[present]))
        expected = policy.form_batch(state, engine.token_budget, engine.max_batch_requests)
        got = {i: (p, d) for i, p, d in batch}
        assert Batch(tuple(got.get(i, (0, 0))[0] for i in present),
                     tuple(got.get(i, (0, 0))[1] for i in present)) == expected
        assert expected.violations(state, engine.token_budget, engine.max_batch_requests) == []
        for i, (p, d) in got.items():
            left_p[i] -= p
            left_d[i] -= d


@settings(max_examples=40, deadline=None)
@given(traces(), engines.filter(lambda e: e.max_batch_requests is None), st.sampled_from(WORK_CONSERVING))
def test_work_conserving_policies_fill_batches_and_never_idle_with_work_waiting(trace, engine, name):
    r = _replay(engine, make_policy(name), trace)
    log = r.batches
    assert (log.tokens == np.minimum(engine.token_budget, log.demand)).all()
    ends = log.start + engine.batch_time(log.tokens) / 1000
    for k in range(len(ends) - 1):
        if log.start[k + 1] > ends[k] + 1e-12:  # the engine idled between batches k and k+1 ...
            waiting = (trace.times <= ends[k]) & (r.finish > ends[k] + 1e-12)
            arrived_in_gap = (trace.times > ends[k]) & (trace.times < log.start[k + 1])
            assert not waiting.any() and not arrived_in_gap.any()  # ... only because nobody was there
            assert log.start[k + 1] == pytest.approx(trace.times[trace.times > ends[k]].min())


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 2**31), st.sampled_from(sorted(POLICIES)), st.floats(0.5, 30))
def test_backlog_trajectory_is_arrivals_minus_service(seed, name, horizon):
    engine = Engine(PiecewiseLinear(5, "0.1", 16), 64)
    work = Workload((RequestClass("a", 20, Geometric(8), Geometric(4)),))
    r = simulate(engine, make_policy(name), work, horizon_s=horizon, seed=seed, record_batches=True)
    assert r.times[-1] == pytest.approx(horizon) and (np.diff(r.times) > 0).all()
    tr, log = r.trace, r.batches
    ends = log.start + engine.batch_time(log.tokens) / 1000
    for t, v, q in list(zip(r.times, r.backlog_tokens, r.backlog_requests))[:: max(1, len(r.times) // 50)]:
        arrived = tr.times <= t
        served = int(log.tokens[ends <= t].sum())
        assert v == int((tr.prompt + tr.decode)[arrived].sum()) - served
        assert q == int(arrived.sum()) - int((r.finish <= t).sum())
    # tokens served = tokens of finished requests + partial progress of those still present
    finished = r.finished
    assert r.tokens_served >= int((tr.prompt + tr.decode)[finished].sum())
    assert r.tokens_served - int((tr.prompt + tr.decode)[finished].sum()) <= int((tr.prompt + tr.decode)[~finished].sum())


@pytest.mark.parametrize("name, seed", [("sarathi", 0), ("orca", 1), ("vllm", 2)])
def test_littles_law_on_stable_runs(name, seed):
    """Time-average number present (from the trajectory) = arrival rate x mean time in system."""
    engine = Engine(Staircase("11.28", "35.47", 128), 512)
    work = Workload((RequestClass("chat", 8, Deterministic(129), Geometric(112)),))  # 58% of capacity
    r = simulate(engine, make_policy(name), work, horizon_s=4000.0, seed=seed, record_every=0.05)
    inside = (r.trace.times > 500) & (r.finish < 3500)  # away from the ends of the run
    sojourn = (r.finish - r.trace.times)[inside].mean()
    window = (r.times >= 500) & (r.times < 3500)
    mean_present = r.backlog_requests[window].mean()
    arrival_rate = ((r.trace.times > 500) & (r.trace.times <= 3500)).sum() / 3000
    assert mean_present == pytest.approx(arrival_rate * sojourn, rel=0.05)
    assert arrival_rate == pytest.approx(8, rel=0.05)
