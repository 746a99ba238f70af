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

from dataclasses import dataclass, replace
from fractions import Fraction

import numpy as np

from llmstab.fluid_models.engine import Engine
from llmstab.fluid_models.policies import Policy
from llmstab.fluid_models.policies.base import NO_LIMIT
from llmstab.fluid_models.state import Batch, EngineState
from llmstab.theory.exact_linalg import to_fraction

from .certificate_cache import kept_or_found, policy_key
from .verdict import Evidence, Verdict, plural

__all__ = ["Violation", "WorkConservationResult", "check_work_conservation", "decode_cap_divergence", "summarise_state"]


@dataclass(frozen=True)
class Violation:
    """A state where the policy's batch breaks a batch constraint or leaves room a feasible batch fills."""

    state: EngineState
    b_max: int
    k_max: int | None
    batch: Batch
    max_tokens: int
    problem: str

    def describe(self) -> str:
        """One line: the state (summarised when long), the batch and what fits.

        >>> from llmstab.fluid_models.state import Batch
        >>> v = Violation(EngineState((0, 1), (1, 1)), 2, None, Batch((0, 1), (0, 0)), 2, "x").describe()
        >>> v.split(" get ")[1]
        'a batch of 1 token (1 prefill, 0 decode), but 2 fit (x)'
        """
        b = self.batch
        prefill = sum(b.prefill)
        return (f"with b_max = {self.b_max}, resident requests {summarise_state(self.state)} get a batch of "
                f"{plural(b.tokens, 'token')} ({prefill} prefill, {b.tokens - prefill} decode), "
                f"but {self.max_tokens} fit ({self.problem})")

    def to_json(self) -> dict:
        """The numbers, with the state summarised: request count, prefill and decode totals."""
        st = self.state
        return {"b_max": self.b_max, "k_max": self.k_max, "requests": st.size,
                "prefilling_requests": sum(1 for p in st.prefill_left if p > 0),
                "prefill_tokens_left": sum(st.prefill_left), "decode_tokens_left": sum(st.decode_left),
                "batch_prefill_tokens": sum(self.batch.prefill), "batch_decode_tokens": sum(self.batch.decode),
                "batch_tokens": self.batch.tokens, "max_feasible_tokens": self.max_tokens}


#: States longer than this are summarised, never listed.
_LISTED_REQUESTS = 6


def summarise_state(state: EngineState) -> str:
    """A state in a few words: listed when short, else counted.

    >>> summarise_state(EngineState((0, 3), (1, 2)))
    '(remaining prefill, decode) = [(0, 1), (3, 2)]'
    >>> summarise_state(EngineState((0,) * 129, (2,) * 129))
    '129 requests: 129 decoding (2 decode tokens left each)'
    """
    pairs = list(zip(state.prefill_left, state.decode_left))
    if len(pairs) <= _LISTED_REQUESTS:
        return f"(remaining prefill, decode) = {pairs}"
    decoding = [d for p, d in pairs if p == 0]
    prefilling = [p for p, _ in pairs if p > 0]
    parts = []
    if decoding:
        low, high = min(decoding), max(decoding)
        left = f"{plural(low, 'decode token')} left each" if low == high else f"{low}..{high} decode tokens left"
        parts.append(f"{len(decoding)} decoding ({left})")
    if prefilling:
        parts.append(f"{len(prefilling)} with prefill left ({plural(sum(prefilling), 'token')} in all, "
                     f"at most {max(prefilling)})")
    return f"{len(pairs)} requests: " + ", ".join(parts)


@dataclass(frozen=True)
class WorkConservationResult:
    """Outcome of :func:`check_work_conservation`.

    When ``work_conserving`` is false, ``counterexample`` is the state, ``b_max``
    / ``k_max`` the limits, ``batch`` what the policy formed, ``max_tokens`` what
    a feasible batch could hold (within the policy's own budget), and ``problem``
    says what went wrong. ``at_engine_budget`` is a violation at the engine's
    own budget ``engine_budget`` when one was asked for and found;
    ``capped_by_design`` says the policy caps the decodes of a batch by its own
    rule (:meth:`Policy.decode_cap`), and ``divergence`` is then, when it exists,
    a load inside the engine's capacity that the cap provably cannot carry.
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
    engine_budget: int | None = None
    at_engine_budget: Violation | None = None
    capped_by_design: bool = False
    divergence: Evidence | None = None

    @property
    def violation(self) -> Violation | None:
        """The minimal counterexample as a :class:`Violation` (None if work-conserving)."""
        if self.work_conserving:
            return None
        return Violation(self.counterexample, self.b_max, self.k_max, self.batch, self.max_tokens, self.problem)

    def capped_verdict(self) -> Verdict:
        """The policy verdict of a policy that caps decodes by design and is not work-conserving.

        Not maximally stable when :attr:`divergence` shows a load inside the
        capacity that diverges; else inconclusive: a counterexample to work
        conservation removes Theorem 2(b)'s guarantee, it proves no divergence.
        """
        from .single_engine import THEOREM_2B

        if self.divergence is not None:
            return Verdict("not-maximally-stable", [self.evidence(), self.divergence])
        return Verdict("inconclusive", [self.evidence(), Evidence(
            "note", "Theorem 2(b) needs work conservation, which the counterexample breaks, so no theorem says the "
            "policy is maximally stable; but a counterexample is not a divergence, and the policy's decode cap "
            "per batch over the shortest batch still reaches the capacity, so it excludes no load below it",
            {"theorem": THEOREM_2B})])

    def evidence(self) -> Evidence:
        """The result as an :class:`~llmstab.checkers.verdict.Evidence` item."""
        if self.work_conserving:
            return Evidence(
                "certificate",
                f"{self.policy} filled every batch to min(its budget, demand) in all {self.states_examined} states "
                f"examined (exhaustive up to {self.exhaustive_bounds['max_requests']} requests, plus random larger "
                "states" + (f" and structured states at b_max = {self.engine_budget}" if self.engine_budget else "")
                + ")",
                {"states_examined": self.states_examined, "exhaustive_bounds": self.exhaustive_bounds},
            )
        found = self.violation
        numbers = {**found.to_json(), "states_examined": self.states_examined}
        if found.state.size <= _LISTED_REQUESTS:
            numbers.update(prefill_left=found.state.prefill_left, decode_left=found.state.decode_left)
        text = f"{self.policy} is not work-conserving: {found.describe()}"
        if self.at_engine_budget is not None and self.at_engine_budget.b_max != found.b_max:
            text += f"; at the engine's own b_max: {self.at_engine_budget.describe()}"
            numbers["at_engine_budget"] = self.at_engine_budget.to_json()
        elif self.engine_budget is not None and found.b_max != self.engine_budget:
            text += (f"; Theorem 2(b) asks for work conservation at the engine's own b_max = {self.engine_budget}, "
                     f"and there no violation was found (the counterexample scaled by {self.engine_budget} // "
                     f"{found.b_max}, and states of up to {structured_limit(self.engine_budget)} decoding "
                     "requests), so this "
                     f"counterexample at b_max = {found.b_max} shows the rule can leave room, not that it does "
                     "on this engine")
        return Evidence("counterexample", text, numbers)


def _failure(policy: Policy, state: EngineState, b_max: int, k_max: int | None) -> tuple[Batch, int, str] | None:
    """``(batch, most tokens, problem)`` if ``policy`` fails in ``state``: an infeasible batch, or one that
    leaves room that a feasible batch within the policy's own budget (:meth:`Policy.token_budget`) fills."""
    batch = policy.form_batch(state, b_max, k_max)
    problems = batch.violations(state, b_max, k_max)
    own = policy.token_budget(b_max)
    best = state.max_batch_tokens(own, k_max)
    if problems:
        return batch, best, "infeasible batch: " + "; ".join(problems)
    if batch.tokens < best:
        cap = "b_max" if own == b_max else f"the policy's own budget {own}"
        return batch, best, f"batch < min({cap}, demand) = {best}"
    return None


#: Ranges of the random larger states: prefill ``0..600``, decode ``1..50`` tokens per
#: request, ``1..12`` requests, budget ``1..1024``.
_RANDOM_PREFILL, _RANDOM_DECODE, _RANDOM_REQUESTS, _RANDOM_BUDGET = 600, 50, 12, 1024


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
        budgets = np.unique(self.b_maxes)
        own = np.array([policy.token_budget(int(b)) for b in budgets], np.int64)
        fills = np.ascontiguousarray(own[np.searchsorted(budgets, self.b_maxes)])
        from .conservation_scan import first_failure

        return int(first_failure(policy.compiled_kernel(), policy.parameters(), policy.initial_memory(), self.pfs,
                                  self.dcs, self.sizes, self.b_maxes, limits, fills))


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


def _scaled(state: EngineState, b_max: int, target: int) -> EngineState:
    """``state`` scaled from budget ``b_max`` towards ``target``: each prompt ``k`` times longer and each
    decoding request ``k`` times over, ``k = target // b_max``, so that the demand scales by ``k``."""
    k = max(1, target // b_max)
    pf, dc = [], []
    for p, d in zip(state.prefill_left, state.decode_left):
        copies = 1 if p > 0 else k
        pf += [p * k] * copies
        dc += [d] * copies
    return EngineState(tuple(pf), tuple(dc))


def _structured(m: int, kind: int, b_max: int) -> EngineState:
    """``m`` decoding requests, plus nothing (``kind`` 0), one waiting prompt of ``b_max`` tokens (1), or ``m``
    one-token prompts (2): the states where per-batch caps on decodes or on requests show."""
    prompts = {0: (), 1: (b_max,), 2: (1,) * m}[kind]
    return EngineState((0,) * m + prompts, (2,) * m + (2,) * len(prompts))


#: The most requests a state probed at the engine's own budget may hold: per-batch caps on decodes or
#: requests bind far below it, and the probe stays well under a second at any budget.
STRUCTURED_REQUESTS = 4096


def structured_limit(b_max: int) -> int:
    """The most decoding requests of a structured state at budget ``b_max``: ``2 b_max``, at most
    :data:`STRUCTURED_REQUESTS`.

    >>> structured_limit(512), structured_limit(10**6)
    (1024, 4096)
    """
    return min(2 * b_max, STRUCTURED_REQUESTS)


def _at_engine_budget(policy: Policy, found: Violation | None, b_max: int) -> tuple[Violation | None, int]:
    """A violation at ``b_max`` (the scaled counterexample, else the least failing structured state), and the
    number of states tried."""
    tried = 0
    if found is not None and found.k_max is None:
        state = _scaled(found.state, found.b_max, b_max)
        failure = None if state.size > STRUCTURED_REQUESTS else _failure(policy, state, b_max, None)
        tried += state.size <= STRUCTURED_REQUESTS
        if failure is not None:
            return Violation(state, b_max, None, *failure), tried
    for kind in (0, 1, 2):
        m_values = sorted({1, *(2 ** e for e in range(structured_limit(b_max).bit_length()))})
        for m in m_values:
            tried += 1
            if _failure(policy, _structured(m, kind, b_max), b_max, None) is not None:
                low = _lowest(m, m // 2 + 1, lambda v: _failure(policy, _structured(v, kind, b_max), b_max,
                                                                None) is not None)
                state = _structured(low, kind, b_max)
                return Violation(state, b_max, None, *_failure(policy, state, b_max, None)), tried
    return None, tried


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
    engine: Engine | None = None,
) -> WorkConservationResult:
    """Search for a state where ``policy`` leaves budget unused that a feasible batch could fill.

    A batch must fill ``min(own budget, demand)``, the own budget being
    :meth:`Policy.token_budget` (``b_max``, or less, like SLAI's ``tau``). A
    result found is kept (:mod:`.certificate_cache`) and read back next time.

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
    engine
        Also look for a violation at its own ``b_max`` (the minimal counterexample
        scaled up, then states of up to ``2 b_max`` decoding requests) and, for a
        policy that caps decodes, for a load inside its capacity that diverges.

    Returns
    -------
    WorkConservationResult
        The number of states examined, or a minimal counterexample (and one at
        the engine's budget, and a diverging load, if found).

    Examples
    --------
    >>> from llmstab.fluid_models.batch_time import Staircase
    >>> from llmstab.fluid_models.policies import SLAI
    >>> r = check_work_conservation(SLAI(beta=8), random_states=0, engine=Engine(Staircase(10, 10, 64), 512))
    >>> r.work_conserving, r.at_engine_budget.state.size, r.at_engine_budget.batch.tokens, r.divergence.kind
    (False, 9, 8, 'certificate')
    """
    bounds = {"max_requests": max_requests, "max_prefill": max_prefill, "max_decode": max_decode,
              "budgets": list(budgets), "k_limits": list(k_limits)}
    return kept_or_found("work-conservation", _certificate_key(policy, bounds, random_states, seed, engine),
                         WorkConservationResult, lambda: _checked(policy, bounds, random_states, seed, engine))


def _certificate_key(policy: Policy, bounds: dict, random_states: int, seed: int, engine: Engine | None) -> dict | None:
    """What a work-conservation result depends on (:mod:`.certificate_cache`); None for a policy it never keeps."""
    identity = policy_key(policy)
    return None if identity is None else {**identity, "bounds": bounds, "random_states": random_states, "seed": seed,
                                          "engine_budget": None if engine is None else int(engine.token_budget)}


def _checked(policy: Policy, bounds: dict, random_states: int, seed: int,
             engine: Engine | None) -> WorkConservationResult:
    """The search itself: small and random states, then (given an engine) states at its own budget."""
    result = _search(policy, bounds, random_states, seed)
    if engine is None:
        return result
    budget = int(engine.token_budget)
    found, tried = _at_engine_budget(policy, result.violation, budget)
    if result.work_conserving and found is not None:
        result = _counterexample(policy, bounds, result.states_examined + tried, found.state, found.b_max, None)
    divergence = None if result.work_conserving else decode_cap_divergence(policy, engine)
    return replace(result, engine_budget=budget, at_engine_budget=found, divergence=divergence,
                   capped_by_design=policy.decode_cap() is not None,
                   states_examined=result.states_examined + (0 if found is not None else tried))


def decode_cap_divergence(policy: Policy, engine: Engine) -> Evidence | None:
    """A load inside ``engine``'s capacity that ``policy`` provably cannot carry because it caps decodes per batch.

    A policy with at most ``cap`` decode tokens per batch (:meth:`Policy.decode_cap`)
    serves decodes at most ``cap / t_min`` tokens per ms, ``t_min`` the shortest
    batch. Below the capacity ``C``, a mix whose decode share ``s`` exceeds
    ``cap / (t_min C)`` diverges at every load in ``(cap / (t_min s), C)``: its
    decode backlog grows at least ``load * s - cap / t_min`` tokens per ms.
    None if the policy has no cap, or the cap does not bind below capacity.

    >>> from llmstab.fluid_models.batch_time import Staircase
    >>> from llmstab.fluid_models.policies import SLAI
    >>> e = decode_cap_divergence(SLAI(beta=8), Engine(Staircase(10, 10, 64), 512))
    >>> e.data["decode_share"], e.data["exact_load_tokens_per_ms"], e.data["exact_growth_tokens_per_ms"]
    ('2/3', '283/90', '229/135')
    """
    from .single_engine import capacity_of

    cap = policy.decode_cap()
    if cap is None:
        return None
    capacity = to_fraction(capacity_of(engine).tokens_per_ms)
    t_min = to_fraction(engine.shortest_batch_ms)
    rate = Fraction(cap) / t_min
    if rate >= capacity:
        return None
    share = rate / capacity
    # outputs per one-token prompt: decode share d/(d+1) at least halfway from the bound to 1
    d = -(-(share.denominator + share.numerator) // (share.denominator - share.numerator))
    mix = Fraction(d, d + 1)
    load = (rate / mix + capacity) / 2
    growth = load * mix - rate
    return Evidence(
        "certificate",
        f"{policy.label} serves at most {cap} decode tokens per batch (its own cap) and no batch is shorter than "
        f"t_min = {float(t_min):.4g} ms, so it serves decodes at most {float(rate):.4g} tokens/ms whatever the "
        f"backlog, below the capacity {float(capacity):.4g} tokens/ms: every mix whose decode share exceeds "
        f"{float(share):.1%} diverges at loads below capacity; e.g. one-token prompts with {d} output "
        f"token{'s' if d > 1 else ''} (decode share {float(mix):.1%}) at {float(load):.4g} tokens/ms "
        f"({float(load / capacity):.1%} of capacity) grow the decode backlog by at least {float(growth):.4g} tokens/ms",
        {"decode_cap": cap, "exact_t_min_ms": str(t_min), "exact_decode_rate_tokens_per_ms": str(rate),
         "exact_capacity_tokens_per_ms": str(capacity), "exact_decode_share_bound": str(share),
         "decode_share": str(mix), "outputs_per_one_token_prompt": d, "exact_load_tokens_per_ms": str(load),
         "exact_growth_tokens_per_ms": str(growth), "load_tokens_per_ms": float(load),
         "growth_tokens_per_ms": float(growth)})


def _search(policy: Policy, bounds: dict, random_states: int, seed: int) -> WorkConservationResult:
    """The exhaustive small states, then the random larger ones (a failure is shrunk)."""
    k_limits = tuple(bounds["k_limits"])
    small = _small_cases(bounds["max_requests"], bounds["max_prefill"], bounds["max_decode"],
                         tuple(bounds["budgets"]), k_limits)
    index = small.first_failure(policy)
    if index >= 0:
        return _counterexample(policy, bounds, index + 1, *small.case(index))
    examined = len(small.sizes)
    if random_states:
        drawn = _random_cases(random_states, k_limits, seed)
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
