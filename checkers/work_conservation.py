"""Is a scheduler work-conserving (Li-Dai-Peng, eqs. 8-9)?

A policy is work-conserving if, in every state, its batch holds as many tokens
as any feasible batch could: ``min(b_max, demand)`` without a request limit,
where ``demand = sum_i (p_i + 1{p_i = 0})``. The checker runs the policy's own
kernel on states:

1. exhaustively, over every state with up to ``max_requests`` requests (each
   with ``0..max_prefill`` prefill and ``1..max_decode`` decode tokens left)
   and every budget in ``budgets``, in order of (requests, unprocessed tokens,
   budget), so the first violation found is a *minimal* counterexample;
2. then on larger states drawn by hypothesis (shrunk if one fails).

It also checks every batch against the batch constraints. A pass is evidence,
not proof: the result says how many states were examined.

Examples
--------
>>> from llmstab.fluid_models.policies import Sarathi, VLLM
>>> check_work_conservation(Sarathi(), random_states=0).work_conserving
True
>>> r = check_work_conservation(VLLM(), random_states=0)
>>> r.counterexample, r.b_max, r.batch.tokens, r.max_tokens
(EngineState(prefill_left=(0, 1), decode_left=(1, 1)), 2, 1, 2)
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numba
import numpy as np
from numba import types

from llmstab.fluid_models.policies import Policy
from llmstab.fluid_models.policies.base import KERNEL_TYPE
from llmstab.fluid_models.state import Batch, EngineState

from .verdict import Evidence

__all__ = ["WorkConservationResult", "check_work_conservation"]


@dataclass(frozen=True)
class WorkConservationResult:
    """Outcome of :func:`check_work_conservation`.

    When ``work_conserving`` is false, ``counterexample`` is the state, ``b_max``
    / ``k_max`` the limits, ``batch`` what the policy formed, ``max_tokens`` what
    a feasible batch could hold, and ``problem`` says what went wrong.
    """

    policy: str
    work_conserving: bool
    states_examined: int
    exhaustive_bounds: dict
    counterexample: EngineState | None = None
    b_max: int | None = None
    k_max: int | None = None
    batch: Batch | None = None
    max_tokens: int | None = None
    problem: str = ""

    def evidence(self) -> Evidence:
        """The result as an :class:`~llmstab.checkers.verdict.Evidence` item."""
        if self.work_conserving:
            return Evidence(
                "certificate",
                f"{self.policy} filled every batch to min(b_max, demand) in all {self.states_examined} states examined "
                f"(exhaustive up to {self.exhaustive_bounds['max_requests']} requests, plus random larger states)",
                {"states_examined": self.states_examined, "exhaustive_bounds": self.exhaustive_bounds},
            )
        labels = [chr(ord("A") + i) for i in range(self.counterexample.size)]
        return Evidence(
            "counterexample",
            f"{self.policy} is not work-conserving: with b_max = {self.b_max}, resident requests "
            f"(remaining prefill, decode) = {list(zip(self.counterexample.prefill_left, self.counterexample.decode_left))} "
            f"get the batch {self.batch.describe(labels)} of {self.batch.tokens} tokens, "
            f"but {self.max_tokens} fit ({self.problem})",
            {
                "prefill_left": self.counterexample.prefill_left,
                "decode_left": self.counterexample.decode_left,
                "b_max": self.b_max,
                "k_max": self.k_max,
                "batch_prefill": self.batch.prefill,
                "batch_decode": self.batch.decode,
                "batch_tokens": self.batch.tokens,
                "max_feasible_tokens": self.max_tokens,
                "states_examined": self.states_examined,
            },
        )


def _failure(policy: Policy, state: EngineState, b_max: int, k_max: int | None) -> tuple[Batch, int, str] | None:
    batch = policy.form_batch(state, b_max, k_max)
    problems = batch.violations(state, b_max, k_max)
    best = state.max_batch_tokens(b_max, k_max)
    if problems:
        return batch, best, "infeasible batch: " + "; ".join(problems)
    if batch.tokens < best:
        return batch, best, f"batch < min(b_max, demand) = {best}"
    return None


_i8a, _f8a, _i8 = types.int64[::1], types.float64[::1], types.int64


@numba.njit(types.int64(KERNEL_TYPE, _f8a, _i8a, types.int64[:, ::1], types.int64[:, ::1], _i8a, _i8a, _i8),
            cache=True)
def _first_failure(kernel, params, memory0, pfs, dcs, sizes, budgets, k_max):
    """Index ``state * len(budgets) + j`` of the first (state, budget) that fails, or -1.

    Fails: an infeasible batch, or fewer tokens than the largest feasible batch.
    """
    width = pfs.shape[1]
    take_p = np.zeros(width, np.int64)
    take_d = np.zeros(width, np.int64)
    contrib = np.zeros(width, np.int64)
    for s in range(pfs.shape[0]):
        n = sizes[s]
        pf = pfs[s].copy()
        dc = dcs[s].copy()
        for i in range(n):
            contrib[i] = pf[i] if pf[i] > 0 else 1
        ordered = np.sort(contrib[:n])[::-1]
        total = ordered[: min(n, k_max)].sum()
        for j in range(budgets.size):
            b_max = budgets[j]
            tokens = kernel(pf, dc, n, b_max, k_max, params, memory0.copy(), take_p, take_d)
            used, served = 0, 0
            ok = tokens <= b_max
            for i in range(n):
                if take_p[i] < 0 or take_p[i] > pf[i] or take_d[i] < 0 or take_d[i] > 1:
                    ok = False
                if take_d[i] == 1 and pf[i] > 0:
                    ok = False
                used += take_p[i] + take_d[i]
                if take_p[i] > 0 or take_d[i] > 0:
                    served += 1
            if not ok or used != tokens or served > k_max or tokens < min(b_max, total):
                return s * budgets.size + j
    return -1


def _state_block(states: list[EngineState]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    width = max(s.size for s in states)
    pfs, dcs = np.zeros((len(states), width), np.int64), np.zeros((len(states), width), np.int64)
    for row, state in enumerate(states):
        pfs[row, : state.size], dcs[row, : state.size] = state.prefill_left, state.decode_left
    return pfs, dcs, np.array([s.size for s in states], np.int64)


def _small_states(max_requests: int, max_prefill: int, max_decode: int):
    per_request = [(p, d) for p in range(max_prefill + 1) for d in range(1, max_decode + 1)]
    for n in range(1, max_requests + 1):
        states = [EngineState(tuple(p for p, _ in combo), tuple(d for _, d in combo))
                  for combo in itertools.product(per_request, repeat=n)]
        states.sort(key=lambda s: (s.unprocessed_tokens, s.prefill_left, s.decode_left))
        yield from states


def check_work_conservation(
    policy: Policy,
    *,
    max_requests: int = 4,
    max_prefill: int = 3,
    max_decode: int = 2,
    budgets: tuple[int, ...] = (1, 2, 3, 4, 5),
    k_limits: tuple[int | None, ...] = (None,),
    random_states: int = 100,
) -> WorkConservationResult:
    """Search for a state where ``policy`` leaves budget unused that a feasible batch could fill.

    Parameters
    ----------
    policy
        Any :class:`~llmstab.fluid_models.policies.Policy`.
    max_requests, max_prefill, max_decode, budgets, k_limits
        Bounds of the exhaustive search.
    random_states
        How many larger states hypothesis draws afterwards (0 to skip); the
        draw is derandomised, so the result is reproducible.

    Returns
    -------
    WorkConservationResult
        The number of states examined, or a minimal counterexample.
    """
    bounds = {"max_requests": max_requests, "max_prefill": max_prefill, "max_decode": max_decode,
              "budgets": list(budgets), "k_limits": list(k_limits)}
    states = list(_small_states(max_requests, max_prefill, max_decode))
    pfs, dcs, sizes = _state_block(states)
    budget_array = np.array(budgets, np.int64)
    examined = 0
    for k_max in k_limits:
        index = _first_failure(type(policy).kernel, policy.parameters(), policy.initial_memory(), pfs, dcs, sizes,
                               budget_array, np.int64(2**62 if k_max is None else k_max))
        if index >= 0:
            state, b_max = states[index // len(budgets)], budgets[index % len(budgets)]
            batch, best, problem = _failure(policy, state, b_max, k_max)
            return WorkConservationResult(policy.label, False, examined + index + 1, bounds, state, b_max, k_max,
                                          batch, best, problem)
        examined += len(states) * len(budgets)
    if random_states:
        found = _random_search(policy, random_states, k_limits)
        if found:
            state, b_max, k_max = found
            batch, best, problem = _failure(policy, state, b_max, k_max)
            return WorkConservationResult(policy.label, False, examined + random_states, bounds, state, b_max, k_max, batch, best, problem)
        examined += random_states
    return WorkConservationResult(policy.label, True, examined, bounds)


def _random_search(policy: Policy, examples: int, k_limits: tuple[int | None, ...]):
    """A hypothesis search over larger states; returns a shrunk failing ``(state, b_max, k_max)`` or None."""
    from hypothesis import HealthCheck, find, settings, strategies as st
    from hypothesis.errors import NoSuchExample

    request = st.tuples(st.integers(0, 600), st.integers(1, 50))
    cases = st.tuples(st.lists(request, min_size=1, max_size=12), st.integers(1, 1024), st.sampled_from(k_limits))

    def fails(case) -> bool:
        requests, b_max, k_max = case
        state = EngineState(tuple(p for p, _ in requests), tuple(d for _, d in requests))
        return _failure(policy, state, b_max, k_max) is not None

    try:
        requests, b_max, k_max = find(
            cases, fails,
            settings=settings(max_examples=examples, database=None, derandomize=True,
                              suppress_health_check=list(HealthCheck), deadline=None),
        )
    except NoSuchExample:
        return None
    return EngineState(tuple(p for p, _ in requests), tuple(d for _, d in requests)), b_max, k_max
