"""Optimal tiling (Bari-Hegde-de Veciana): does a policy fill whole tiles, and what that means for stability.

A policy tiles optimally if every batch it forms is a whole number of tiles
(``tokens % b_col == 0``), unless every resident request decodes and fewer than
``b_col`` do (then a partial tile is all there is to run). The checker runs the
policy's own kernel on states ordered by (residents, unprocessed tokens), so the
first violation is a minimal counterexample. States follow Theorem 2's
assumption that prompts are multiples of the tile LCM ``b_lcm``.

:func:`check_tiled_engine` gives the load verdict from Theorem 1 (``lambda d_a``
against ``g`` nodes, exact) and the policy verdict: Theorem 2 for RAD when its
assumptions hold; for a policy that breaks optimal tiling, a simulation at a
load inside the bound that diverges.

Examples
--------
>>> from llmstab.fluid_models.policies import RAD, FixedChunk
>>> check_optimal_tiling(RAD(b_col=4, b_lcm=8), b_col=4, b_lcm=8, b_max=16).optimal
True
>>> r = check_optimal_tiling(FixedChunk(chunk=6), b_col=4, b_lcm=8, b_max=16)
>>> r.optimal, r.counterexample, r.batch.tokens
(False, EngineState(prefill_left=(8,), decode_left=(1,)), 6)
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from fractions import Fraction

from llmstab.fluid_models.batch_time import Tiled
from llmstab.fluid_models.engine import Engine
from llmstab.fluid_models.policies import RAD, Policy
from llmstab.fluid_models.state import Batch, EngineState
from llmstab.fluid_models.workload import Workload
from llmstab.theory.exact_linalg import to_fraction
from llmstab.theory.tiling import Assumption, theorem1, theorem2_assumptions

from .certificate_cache import kept_or_found, policy_key
from .errors import InputError
from .single_engine import capacity_of
from .verdict import Evidence, Verdict

__all__ = ["TilingResult", "TilingFindings", "check_optimal_tiling", "check_tiled_engine", "tiling_findings",
           "tiling_parameters", "tiling_theorem", "THEOREM_1", "THEOREM_2"]

THEOREM_1 = "Bari-Hegde-de Veciana (arXiv 2508.01002) Theorem 1"
THEOREM_2 = RAD.tiling_theorem


@dataclass(frozen=True)
class TilingResult:
    """Outcome of :func:`check_optimal_tiling`; on failure the minimal state and the batch formed there."""

    policy: str
    optimal: bool
    states_examined: int
    b_col: int
    counterexample: EngineState | None = None
    batch: Batch | None = None

    def evidence(self) -> Evidence:
        """The result as evidence (``counterexample`` when the policy breaks optimal tiling)."""
        if self.optimal:
            return Evidence("note", f"{self.policy} filled whole tiles of {self.b_col} tokens in all "
                            f"{self.states_examined} states examined (prompts multiples of b_lcm)",
                            {"states_examined": self.states_examined, "b_col": self.b_col})
        s, bt = self.counterexample, self.batch
        partial = bt.tokens % self.b_col
        return Evidence("counterexample", f"a counterexample to optimal tiling (Bari-Hegde-de Veciana's first "
                        f"principle; by itself not to stability): {self.policy}, in the state with remaining prefill "
                        f"{_short(s.prefill_left)} and decode {_short(s.decode_left)}, forms a batch of {bt.tokens} "
                        f"tokens, not a multiple of b_col = {self.b_col} ({partial} token{'s' if partial != 1 else ''} "
                        "in a partial tile)",
                        {"prefill_left": list(s.prefill_left), "decode_left": list(s.decode_left),
                         "batch_prefill": list(bt.prefill), "batch_decode": list(bt.decode), "tokens": bt.tokens,
                         "b_col": self.b_col, "states_examined": self.states_examined})


def _short(values: tuple[int, ...], shown: int = 6) -> str:
    """A state vector for a person: the list when short, else its first entries and a count.

    >>> _short((0, 64)), _short(tuple(range(129)))
    ('[0, 64]', '[0, 1, 2, 3, 4, 5, ... 123 more]')
    """
    head = ", ".join(str(v) for v in values[:shown])
    return f"[{head}]" if len(values) <= shown else f"[{head}, ... {len(values) - shown} more]"


def _states(b_col: int, b_lcm: int, b_max: int, limit: int) -> list[EngineState]:
    """Candidate states: ``D`` decoding requests and up to two prompts (multiples of ``b_lcm``), both orders."""
    decoders = sorted({d for d in (0, 1, 2, b_col - 1, b_col, b_col + 1) if 0 <= d <= limit + 1})
    prompts = sorted({b_lcm, 2 * b_lcm, b_lcm * (-(-b_max // b_lcm)) + b_lcm})
    states = []
    for d in decoders:
        for r in range(0, 3):
            for combo in itertools.product(prompts, repeat=r):
                if d + r == 0:
                    continue
                states.append(EngineState((0,) * d + combo, (1,) * d + (1,) * r))
                if d and r:
                    states.append(EngineState(combo + (0,) * d, (1,) * r + (1,) * d))
    return sorted(set(states), key=lambda s: (s.size, s.unprocessed_tokens, s.prefill_left))


def check_optimal_tiling(policy: Policy, *, b_col: int, b_max: int, b_lcm: int | None = None,
                         k_max: int | None = None) -> TilingResult:
    """Run ``policy`` on small states and return the first (minimal) one where a batch is not whole tiles.

    The result depends on the policy's kernel and options and on the arguments
    only, so it is kept (:mod:`.certificate_cache`, kind ``"optimal-tiling"``)
    and read back by a later check, which then does not start the compiled
    kernel (numba).

    Parameters
    ----------
    policy
        Any :class:`~llmstab.fluid_models.policies.Policy`.
    b_col
        Tile width: a batch should be a multiple of it.
    b_max, k_max
        Token budget and request limit passed to the policy's kernel.
    b_lcm
        Prompts are multiples of it (default ``b_col``).

    Returns
    -------
    TilingResult
        ``optimal`` with the number of states examined, or the first state
        (fewest residents, then fewest tokens) whose batch is not whole tiles.

    Examples
    --------
    >>> from llmstab.fluid_models.policies import RAD
    >>> check_optimal_tiling(RAD(b_col=64, b_lcm=128), b_col=64, b_lcm=128, b_max=512).states_examined
    137
    """
    identity = policy_key(policy)
    key = None if identity is None else {**identity, "b_col": int(b_col), "b_max": int(b_max),
                                         "b_lcm": None if b_lcm is None else int(b_lcm),
                                         "k_max": None if k_max is None else int(k_max)}
    return kept_or_found("optimal-tiling", key, TilingResult,
                         lambda: _first_partial_tile(policy, b_col, b_max, b_lcm, k_max))


def _first_partial_tile(policy: Policy, b_col: int, b_max: int, b_lcm: int | None,
                        k_max: int | None) -> TilingResult:
    """The search of :func:`check_optimal_tiling`, run on the policy's kernel."""
    unit = b_lcm or b_col
    limit = b_max if k_max is None else k_max
    examined = 0
    for state in _states(b_col, unit, b_max, limit):
        batch = policy.form_batch(state, b_max, k_max)
        examined += 1
        decoding = sum(1 for p in state.prefill_left if p == 0)
        excused = decoding == state.size and decoding < b_col
        if batch.tokens % b_col and not excused:
            return TilingResult(policy.label, False, examined, b_col, state, batch)
    return TilingResult(policy.label, True, examined, b_col)


def tiling_parameters(engine: Engine, policy: Policy) -> tuple[int, int]:
    """``(b_col, b_lcm)`` for a tiled engine, checked against the budget and the policy's own tile (``tile_shape``)."""
    model = engine.batch_time
    if not isinstance(model, Tiled):
        raise InputError("engine.batch_time.kind", f"tiling needs a tiled batch time, got {model.kind!r}")
    b_col = model.b_col
    if engine.token_budget % b_col:
        raise InputError("engine.token_budget", f"{engine.token_budget} is not a multiple of batch_time.b_col = "
                         f"{b_col} (optimal tiling needs a budget of whole tiles)")
    own = getattr(policy, "tile_shape", None)
    return own(b_col, engine.token_budget) if own else (b_col, b_col)


def _prompt_support(workload: Workload) -> list[int] | None:
    values: set[int] = set()
    for c in workload.classes:
        d = c.prompt
        if d.kind == "deterministic":
            values.add(int(d.value))
        elif d.kind == "empirical":
            values.update(int(v) for v in d.values)
        elif d.kind == "uniform":
            values.update(range(d.low, d.high + 1))
        else:
            return None
    return sorted(values)


@dataclass(frozen=True)
class TilingFindings:
    """What :func:`tiling_findings` established on a tiled engine.

    ``load``: Theorem 1's verdict; ``policy``: the tiling check and Theorem 2
    (``maximally-stable`` for RAD under its checked assumptions, else the
    findings without a concluding remark); ``numbers``: Theorem 1's bound;
    ``decisive``: the theorem that makes RAD stable below the bound (``None`` otherwise).
    """

    load: Verdict
    policy: Verdict
    numbers: dict
    decisive: Evidence | None = None


def _theorem1_verdict(bound, nodes: int, numbers: dict) -> Verdict:
    if bound.exceeds:
        return Verdict("unstable", [Evidence("certificate", f"{THEOREM_1}: lambda d_a = {bound.load} > g = {nodes} "
                                             f"(d_a = {bound.request_time_ms} ms per request), so every planner and "
                                             "scheduler diverges", {**numbers, "theorem": THEOREM_1})])
    if bound.load == nodes:
        return Verdict("inconclusive", [Evidence("note", f"lambda d_a = g = {nodes} exactly: critical load", numbers)])
    return Verdict("stable", [Evidence("theorem", f"{THEOREM_1} is met with room: lambda d_a = {bound.load} < g = "
                                       f"{nodes}; RAD carries such a load under Theorem 2's assumptions",
                                       {**numbers, "theorem": THEOREM_1})])


def _assumption_4(engine: Engine, workload: Workload, b_col: int) -> Assumption:
    """Bari's Assumption 4: memory for ``b_col`` active requests of the largest size, so lengths are bounded.

    Without a bounded largest request the assumption cannot hold, and Theorem 2 is no evidence
    (``specs/BARI_RAD.md`` section 5). With a KV cache the blocks are counted
    (:func:`llmstab.theory.memory.bari_assumption_4`).
    """
    name = "Assumption 4: memory holds b_col active requests of the largest size"
    sizes = [(c.prompt.max, c.decode.max) for c in workload.classes]
    if not workload.bounded or any(p is None or d is None for p, d in sizes):
        unbounded = [c.name for c in workload.classes if not (c.prompt.bounded and c.decode.bounded)]
        return Assumption(name, False, f"lengths are unbounded (classes {', '.join(unbounded)}), so no memory "
                          "holds b_col requests of the largest size")
    largest = max(p + d for p, d in sizes)
    kv = getattr(engine, "kv_cache", None)
    if kv is None:
        return Assumption(name, True, f"lengths bounded (largest request {largest} tokens); no KV cache is "
                          "modelled, so memory is taken as ample")
    from llmstab.theory.memory import bari_assumption_4

    held = bari_assumption_4(b_col, largest, kv.blocks, kv.block_size)
    return Assumption(name, bool(held["holds"]), f"{b_col} requests of {largest} tokens need "
                      f"{held['blocks_needed']} KV blocks of {kv.blocks}")


def tiling_theorem(policy: Policy) -> str | None:
    """The theorem that makes ``policy`` maximally stable on a tiled engine (its class says), or ``None``.

    >>> from llmstab.fluid_models.policies import RAD, Sarathi
    >>> tiling_theorem(RAD()) == THEOREM_2, tiling_theorem(Sarathi())
    (True, None)
    """
    return getattr(policy, "tiling_theorem", None)


def _theorem2_findings(engine: Engine, policy: RAD, workload: Workload, b_col: int, b_lcm: int,
                       tiling: TilingResult) -> tuple[Verdict, Evidence | None]:
    hypotheses = theorem2_assumptions(b_col=b_col, b_lcm=b_lcm, b_max=engine.token_budget,
                                      k_max=engine.max_batch_requests,
                                      overhead=getattr(engine.batch_time, "c_exact", 0),
                                      prompt_lengths=_prompt_support(workload))
    hypotheses.append(_assumption_4(engine, workload, b_col))
    failed = [a for a in hypotheses if not a.holds]
    evidence = [tiling.evidence(), Evidence(
        "theorem" if not failed else "note",
        f"{THEOREM_2} assumptions: " + "; ".join(
            f"{a.name}: {'holds' if a.holds else 'FAILS'} ({a.detail})" for a in hypotheses),
        {"theorem": THEOREM_2, "failed": [a.name for a in failed]})]
    if failed or not tiling.optimal:
        return Verdict("inconclusive", evidence), None
    decisive = Evidence("theorem", f"{THEOREM_2}: RAD is stable for every load with lambda d_a < g, "
                        f"which is Theorem 1's bound: maximally stable ({policy.theorem_reading()})",
                        {"theorem": THEOREM_2, "cycle_N": policy.cycle})
    return Verdict("maximally-stable", [*evidence, decisive]), decisive


def tiling_findings(engine: Engine, policy: Policy, workload: Workload, nodes: int = 1, *, simulate: bool = True,
                    horizon_s: float | None = None, seed: int = 0) -> TilingFindings:
    """Theorem 1's load verdict and the policy's tiling findings (Theorem 2 for RAD, a simulation otherwise).

    With ``nodes = g > 1`` the traffic is the total over ``g`` identical nodes
    behind a uniformly random planner (each node sees ``lambda / g``). A policy
    that breaks optimal tiling is simulated (``simulate``, one node, ``seed``)
    at 95% of Theorem 1's bound; divergence there makes it ``not-maximally-stable``.
    """
    b_col, b_lcm = tiling_parameters(engine, policy)
    cap = capacity_of(engine)
    tau = 1 / cap.tokens_per_ms  # ms per token in the most efficient (whole-tile) batches
    bound = theorem1(workload.rate, workload.token_rate / workload.rate, tau, nodes)
    numbers = {"per_token_ms": tau, "request_time_ms": bound.request_time_ms, "load_nodes": bound.load,
               "nodes": nodes, "max_rate_per_s": bound.max_rate_per_s, "best_batch_tokens": cap.best_batch}
    load = _theorem1_verdict(bound, nodes, numbers)
    tiling = check_optimal_tiling(policy, b_col=b_col, b_lcm=b_lcm, b_max=engine.token_budget,
                                  k_max=engine.max_batch_requests)
    if tiling_theorem(policy) == THEOREM_2:
        verdict, decisive = _theorem2_findings(engine, policy, workload, b_col, b_lcm, tiling)
        return TilingFindings(load, verdict, numbers, decisive)
    evidence = [tiling.evidence()]
    if not tiling.optimal and simulate and nodes == 1:
        from .region_policy import simulate_trend

        inside = Fraction(95, 100) / to_fraction(bound.load)
        test = workload.scaled(inside)
        trend = simulate_trend(engine, policy, test, horizon_s=horizon_s, load_scale=inside, seed=seed)
        evidence.append(trend.evidence())
        if trend.trend == "diverging":
            evidence.insert(0, Evidence("note", "test load: 95% of Theorem 1's bound, which whole-tile batches carry", {}))
            return TilingFindings(load, Verdict("not-maximally-stable", evidence), numbers)
    return TilingFindings(load, Verdict("inconclusive", evidence), numbers)


def check_tiled_engine(engine: Engine, policy: Policy, workload: Workload, nodes: int = 1,
                       simulate: bool = True, horizon_s: float | None = None,
                       seed: int = 0) -> tuple[Verdict, Verdict, dict]:
    """Load verdict (Theorem 1), policy verdict (Theorem 2 / tiling + simulation) and the bound's numbers.

    :func:`tiling_findings`, with an undecided policy verdict saying that no
    theorem decides it.

    >>> from llmstab.fluid_models.distributions import Deterministic
    >>> from llmstab.fluid_models.workload import RequestClass, Workload
    >>> engine = Engine(Tiled(t_lin=2, b_col=64, t_nl="0.001"), 512)
    >>> light = Workload((RequestClass("x", 50, Deterministic(256), Deterministic(128)),))
    >>> load, policy, numbers = check_tiled_engine(engine, RAD(b_col=64, b_lcm=128), light)
    >>> load.verdict, policy.verdict
    ('stable', 'maximally-stable')
    """
    found = tiling_findings(engine, policy, workload, nodes, simulate=simulate, horizon_s=horizon_s, seed=seed)
    policy_verdict = found.policy
    if policy_verdict.verdict == "inconclusive" and tiling_theorem(policy) is None:
        policy_verdict = Verdict("inconclusive", [*policy_verdict.evidence, Evidence(
            "note", "no theorem decides this policy on a tiled engine; nothing diverged in what was tried", {})])
    return found.load, policy_verdict, found.numbers
