"""Laws every scheduler obeys, and the work-conservation laws that separate them."""

import subprocess
import sys

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from llmstab.checkers.work_conservation import check_work_conservation
from llmstab.fluid_models.policies import POLICIES, make_policy
from llmstab.fluid_models.state import EngineState

requests = st.lists(st.tuples(st.integers(0, 300), st.integers(1, 40)), min_size=1, max_size=15)
limits = st.one_of(st.none(), st.integers(1, 20))


def _state(reqs):
    return EngineState(tuple(p for p, _ in reqs), tuple(d for _, d in reqs))


@pytest.mark.parametrize("name", sorted(POLICIES))
@settings(max_examples=150)
@given(reqs=requests, b_max=st.integers(1, 600), k_max=limits)
def test_every_batch_is_feasible_and_conserves_tokens(name, reqs, b_max, k_max):
    state = _state(reqs)
    batch = make_policy(name).form_batch(state, b_max, k_max)
    assert batch.violations(state, b_max, k_max) == []
    assert batch.tokens > 0  # nobody idles the engine while requests wait
    after = batch.apply(state)
    finished = sum(d for d, took in zip(state.decode_left, batch.decode) if d == took == 1)
    assert after.unprocessed_tokens == state.unprocessed_tokens - batch.tokens
    assert after.size == state.size - finished


@pytest.mark.parametrize("name", ["sarathi", "orca", "fcfs"])
@settings(max_examples=150)
@given(reqs=requests, b_max=st.integers(1, 600))
def test_work_conserving_policies_fill_the_largest_feasible_batch(name, reqs, b_max):
    state = _state(reqs)
    assert make_policy(name).form_batch(state, b_max).tokens == min(b_max, state.demand)


@pytest.mark.parametrize("name", ["sarathi", "orca", "fcfs"])
def test_checker_passes_work_conserving_policies(name):
    result = check_work_conservation(make_policy(name), random_states=50)
    assert result.work_conserving and result.counterexample is None
    assert result.states_examined > 10_000


@pytest.mark.parametrize("name", ["vllm", "fastertransformer"])
def test_checker_finds_a_minimal_counterexample(name):
    policy = make_policy(name)
    result = check_work_conservation(policy, random_states=0)
    assert not result.work_conserving
    state = result.counterexample
    batch = policy.form_batch(state, result.b_max)
    assert batch.tokens < min(result.b_max, state.demand) == result.max_tokens
    # minimal: every one-request state passes at every budget
    for p in range(4):
        for d in (1, 2):
            for b_max in range(1, 6):
                s = EngineState((p,), (d,))
                assert policy.form_batch(s, b_max).tokens == min(b_max, s.demand)
    assert state.size == 2


def test_non_chunking_policies_serve_a_prompt_longer_than_the_budget():
    """vLLM and FasterTransformer cut an over-long prompt to the budget instead of deadlocking."""
    for name in ("vllm", "fastertransformer"):
        state = EngineState((10,), (1,))
        batch = make_policy(name).form_batch(state, b_max=4)
        assert batch.prefill == (4,)


def test_vllm_admits_whole_prompts_in_arrival_order():
    batch = make_policy("vllm").form_batch(EngineState((3, 2, 1), (1, 1, 1)), b_max=4)
    assert batch.prefill == (3, 0, 0)  # B does not fit whole; admission stops at it


@pytest.mark.parametrize("name", sorted(POLICIES))
@settings(max_examples=60, deadline=None)
@given(reqs=requests, b_max=st.integers(1, 600), k_max=limits)
def test_compiled_scan_agrees_with_the_batch_constraints(name, reqs, b_max, k_max):
    """The numba scan flags a case exactly when form_batch's batch is infeasible or not full."""
    from llmstab.checkers.work_conservation import _Cases, _failure

    policy, state = make_policy(name), _state(reqs)
    row = lambda values: np.array([values], np.int64)  # noqa: E731
    case = _Cases(row(state.prefill_left), row(state.decode_left), np.array([state.size]), np.array([b_max]),
                  np.array([-1 if k_max is None else k_max]))
    assert (case.first_failure(policy) == 0) == (_failure(policy, state, b_max, k_max) is not None)


@pytest.mark.parametrize("chunk", [6, 64, 300])
def test_random_search_shrinks_a_large_counterexample(chunk):
    """A fixed chunk passes every state of the exhaustive scan (budgets <= 5) and fails on larger ones:
    the shrunk counterexample is one prompt of chunk + 1 tokens under a budget of chunk + 1."""
    result = check_work_conservation(make_policy("fixed_chunk", chunk=chunk))
    assert not result.work_conserving and result.states_examined > 23_400
    assert result.counterexample == EngineState((chunk + 1,), (1,)) and result.b_max == chunk + 1
    assert result.batch.tokens == chunk < result.max_tokens


def test_random_states_are_reproducible_and_seeded():
    from llmstab.checkers.work_conservation import _random_cases

    a, b, c = (_random_cases(50, (None, 3), seed) for seed in (1, 1, 2))
    assert np.array_equal(a.pfs, b.pfs) and not np.array_equal(a.pfs, c.pfs)
    assert all((a.dcs[i, : a.sizes[i]] >= 1).all() and not a.dcs[i, a.sizes[i]:].any() for i in range(50))
    assert set(a.k_maxes) <= {-1, 3}


def test_work_conservation_check_does_not_import_hypothesis():
    code = ("import sys; from llmstab.checkers.work_conservation import check_work_conservation; "
            "from llmstab.fluid_models.policies import make_policy; "
            "assert check_work_conservation(make_policy('sarathi')).work_conserving; "
            "assert 'hypothesis' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True)
