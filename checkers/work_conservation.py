"""Is a scheduler work-conserving (Li-Dai-Peng, eqs. 8-9)?

A policy is work-conserving if, in every state, its batch holds as many tokens
as any feasible batch could: ``min(b_max, demand)`` without a request limit,
where ``demand = sum_i (p_i + 1{p_i = 0})``. The checker runs the policy's own
kernel on states:

1. exhaustively, over every state with up to ``max_requests`` requests (each
   with ``0..max_prefill`` prefill and ``1..max_decode`` decode tokens left)
   and every budget in ``budgets``, in order of (requests, unprocessed tokens,
   budget), so the first violation found is a *minimal* counterexample;
2. then on larger states drawn at random with numpy (reproducibly; a failing
   one is shrunk greedily to a small counterexample).

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

from dataclasses import dataclass

import numba
import numpy as np
from numba import types

from llmstab.fluid_models.policies import Policy
from llmstab.fluid_models.policies.base import KERNEL_TYPE, NO_LIMIT, run_on_lengths
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


_i8a, _f8a = types.int64[::1], types.float64[::1]
_i8m = types.int64[:, ::1]

#: Ranges of the random larger states: prefill ``0..600``, decode ``1..50`` tokens per
#: request, ``1..12`` requests, budget ``1..1024``.
_RANDOM_PREFILL, _RANDOM_DECODE, _RANDOM_REQUESTS, _RANDOM_BUDGET = 600, 50, 12, 1024


@numba.njit(types.int64(KERNEL_TYPE, _f8a, _i8a, _i8m, _i8m, _i8a, _i8a, _i8a), cache=True)
def _first_failure(kernel, params, memory0, pfs, dcs, sizes, b_maxes, k_maxes):
    """Index of the first case ``(pfs[c], dcs[c], b_maxes[c], k_maxes[c])`` that fails, or -1.

    Fails: an infeasible batch, or fewer tokens than the largest feasible batch.
    """
    width = pfs.shape[1]
    take_p = np.zeros(width, np.int64)
    take_d = np.zeros(width, np.int64)
    contrib = np.zeros(width, np.int64)
    for c in range(pfs.shape[0]):
        n, b_max, k_max = sizes[c], b_maxes[c], k_maxes[c]
        pf = pfs[c].copy()
        dc = dcs[c].copy()
        for i in range(n):
            contrib[i] = pf[i] if pf[i] > 0 else 1
        total = np.sort(contrib[:n])[::-1][: min(n, k_max)].sum()
        tokens = run_on_lengths(kernel, pf, dc, n, b_max, k_max, params, memory0.copy(), take_p, take_d)
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
            return c
    return -1


@dataclass(frozen=True)
class _Cases:
    """Scan cases as arrays: one row per (state, b_max, k_max); ``k_max`` -1 means no limit."""

    pfs: np.ndarray
    dcs: np.ndarray
    sizes: np.ndarray
    b_maxes: np.ndarray
    k_maxes: np.ndarray

    def case(self, c: int) -> tuple[EngineState, int, int | None]:
        """Row ``c`` as ``(state, b_max, k_max)``."""
        n = int(self.sizes[c])
        k = int(self.k_maxes[c])
        return (EngineState(tuple(self.pfs[c, :n]), tuple(self.dcs[c, :n])), int(self.b_maxes[c]),
                None if k < 0 else k)

    def first_failure(self, policy: Policy) -> int:
        """Index of the first case where ``policy``'s own kernel fails, or -1."""
        limits = np.where(self.k_maxes < 0, NO_LIMIT, self.k_maxes).astype(np.int64)
        return int(_first_failure(policy.compiled_kernel(), policy.parameters(), policy.initial_memory(), self.pfs,
                                  self.dcs, self.sizes, self.b_maxes, limits))


def _limit(k_max: int | None) -> int:
    return -1 if k_max is None else k_max


def _small_cases(max_requests: int, max_prefill: int, max_decode: int, budgets: tuple[int, ...],
                 k_limits: tuple[int | None, ...]) -> _Cases:
    """Every small state, in order of (k_max, requests, unprocessed tokens, prefill, decode, budget)."""
    blocks = []
    for n in range(1, max_requests + 1):
        choice = np.indices((max_prefill + 1, max_decode) * n).reshape(2 * n, -1).T
        pf, dc = choice[:, 0::2], choice[:, 1::2] + 1
        order = np.lexsort([*dc.T[::-1], *pf.T[::-1], pf.sum(1) + dc.sum(1)])
        pad = ((0, 0), (0, max_requests - n))
        blocks.append((np.pad(pf[order], pad), np.pad(dc[order], pad)))
    pfs, dcs = (np.concatenate([b[i] for b in blocks]) for i in (0, 1))
    sizes = (dcs > 0).sum(1)
    per_state = [np.repeat(a, len(budgets), axis=0) for a in (pfs, dcs, sizes)]
    b_maxes = np.tile(np.asarray(budgets, np.int64), len(pfs))
    rows = len(b_maxes)
    return _Cases(*(np.ascontiguousarray(np.concatenate([a] * len(k_limits)), np.int64)
                    for a in (*per_state, b_maxes)),
                  np.repeat([_limit(k) for k in k_limits], rows).astype(np.int64))


def _random_cases(count: int, k_limits: tuple[int | None, ...], seed: int) -> _Cases:
    """``count`` larger states drawn with numpy (reproducible for a given ``seed``)."""
    rng = np.random.default_rng(seed)
    width = _RANDOM_REQUESTS
    sizes = rng.integers(1, width + 1, count)
    live = np.arange(width) < sizes[:, None]
    pfs = np.where(live, rng.integers(0, _RANDOM_PREFILL + 1, (count, width)), 0)
    dcs = np.where(live, rng.integers(1, _RANDOM_DECODE + 1, (count, width)), 0)
    b_maxes = rng.integers(1, _RANDOM_BUDGET + 1, count)
    k_maxes = np.array([_limit(k_limits[i]) for i in rng.integers(0, len(k_limits), count)], np.int64)
    return _Cases(*(np.ascontiguousarray(a, np.int64) for a in (pfs, dcs, sizes, b_maxes)), k_maxes)


def _shrink(policy: Policy, state: EngineState, b_max: int, k_max: int | None) -> tuple[EngineState, int, int | None]:
    """A smaller failing case: fewer requests, then each number as low as it keeps failing.

    Greedy, like hypothesis's shrinker: repeated until no request can be removed
    and no number lowered (each number is lowered by bisection).
    """
    def fails(pf: list[int], dc: list[int], b: int) -> bool:
        return _failure(policy, EngineState(tuple(pf), tuple(dc)), b, k_max) is not None

    pf, dc, b = list(state.prefill_left), list(state.decode_left), b_max
    before = None
    while before != (pf, dc, b):
        before = (list(pf), list(dc), b)
        pf, dc = _fewer_requests(pf, dc, lambda p, d: fails(p, d, b))
        for i in range(len(pf)):
            pf[i] = _lowest(pf[i], 0, lambda v: fails(pf[:i] + [v] + pf[i + 1:], dc, b))
            dc[i] = _lowest(dc[i], 1, lambda v: fails(pf, dc[:i] + [v] + dc[i + 1:], b))
        b = _lowest(b, 1, lambda v: fails(pf, dc, v))
    return EngineState(tuple(pf), tuple(dc)), b, k_max


def _fewer_requests(pf: list[int], dc: list[int], fails) -> tuple[list[int], list[int]]:
    """Remove requests while ``fails(pf, dc)`` holds: drop one, or merge it into a neighbour."""
    i = len(pf) - 1
    while i >= 0 and len(pf) > 1:
        rest_p, rest_d = pf[:i] + pf[i + 1:], dc[:i] + dc[i + 1:]
        j = min(i, len(rest_p) - 1)  # the neighbour that takes request i's tokens
        merged_p = rest_p[:j] + [rest_p[j] + pf[i]] + rest_p[j + 1:]
        merged_d = rest_d[:j] + [rest_d[j] + dc[i]] + rest_d[j + 1:]
        for p, d in ((rest_p, rest_d), (merged_p, merged_d)):
            if fails(p, d):
                pf, dc = p, d
                break
        i = min(i - 1, len(pf) - 1)
    return pf, dc


def _lowest(value: int, low: int, fails) -> int:
    """The value in ``low..value`` that bisection finds as the least for which ``fails(v)`` (``fails(value)`` holds)."""
    high = value
    while low < high:
        mid = (low + high) // 2
        if fails(mid):
            high = mid
        else:
            low = mid + 1
    return high


def check_work_conservation(
    policy: Policy,
    *,
    max_requests: int = 4,
    max_prefill: int = 3,
    max_decode: int = 2,
    budgets: tuple[int, ...] = (1, 2, 3, 4, 5),
    k_limits: tuple[int | None, ...] = (None,),
    random_states: int = 100,
    seed: int = 0,
) -> WorkConservationResult:
    """Search for a state where ``policy`` leaves budget unused that a feasible batch could fill.

    Parameters
    ----------
    policy
        Any :class:`~llmstab.fluid_models.policies.Policy`.
    max_requests, max_prefill, max_decode, budgets, k_limits
        Bounds of the exhaustive search.
    random_states
        How many larger states to draw afterwards (0 to skip): up to 12 requests
        with up to 600 prefill and 50 decode tokens, budgets up to 1024. A failing
        one is shrunk.
    seed
        Seed of the random draw; the result is reproducible.

    Returns
    -------
    WorkConservationResult
        The number of states examined, or a minimal counterexample.
    """
    bounds = {"max_requests": max_requests, "max_prefill": max_prefill, "max_decode": max_decode,
              "budgets": list(budgets), "k_limits": list(k_limits)}
    small = _small_cases(max_requests, max_prefill, max_decode, tuple(budgets), tuple(k_limits))
    index = small.first_failure(policy)
    if index >= 0:
        return _counterexample(policy, bounds, index + 1, *small.case(index))
    examined = len(small.sizes)
    if random_states:
        drawn = _random_cases(random_states, tuple(k_limits), seed)
        index = drawn.first_failure(policy)
        if index >= 0:
            case = _shrink(policy, *drawn.case(index))
            return _counterexample(policy, bounds, examined + index + 1, *case)
        examined += random_states
    return WorkConservationResult(policy.label, True, examined, bounds)


def _counterexample(policy: Policy, bounds: dict, examined: int, state: EngineState, b_max: int,
                    k_max: int | None) -> WorkConservationResult:
    batch, best, problem = _failure(policy, state, b_max, k_max)
    return WorkConservationResult(policy.label, False, examined, bounds, state, b_max, k_max, batch, best, problem)
