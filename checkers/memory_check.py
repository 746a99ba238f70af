"""KV-cache memory, attention and the request cap: which resource binds, and what that decides.

For an engine with ``attention``, a ``kv_cache`` or ``max_active_requests``,
:func:`check_memory` decides what theory can, exactly, and names the binding
resource (``compute``, ``memory`` or ``request limit``):

* **compute**: every scheduler needs ``E[W]`` ms of GPU time per request
  (:mod:`llmstab.theory.work`), so ``lambda * E[W] > 1`` is ``unstable`` for
  every scheduler; below it a work-conserving policy is ``stable`` (Li-Dai-Peng
  Theorem 2(b) with the work ``W`` in place of tokens) when memory cannot bind;
* **memory**: ``lambda * E[d*p + d(d-1)/2] * t_min > M`` is ``unstable`` for
  every scheduler (:mod:`llmstab.theory.memory`), and so is a workload whose
  largest request cannot fit the cache even alone;
* **request limit**: ``lambda * E[d] * t_min > max_active`` is ``unstable``.

Below every necessary condition, with a cache that can bind, the load is
``inconclusive`` here, with the margins; the pipeline's settle-load step then
simulates it with the memory model (and says so).

Examples
--------
>>> from llmstab.checkers.spec import load_engine_spec
>>> spec = load_engine_spec("examples/memory_bound.yaml")
>>> v = check_memory(spec.engine, spec.policy, spec.workload)
>>> v.verdict, v.evidence[0].data["binding"]
('unstable', 'memory')
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction

from llmstab.fluid_models.engine import Engine
from llmstab.fluid_models.policies import Policy
from llmstab.fluid_models.workload import RequestClass, Workload
from llmstab.theory import memory as mem
from llmstab.theory.exact_linalg import Exact
from llmstab.theory.work import expected_work_exact

from .pipeline import CheckContext, Step
from .single_engine import capacity_of
from .verdict import Evidence, Verdict

__all__ = ["MemoryNumbers", "memory_numbers", "check_memory", "MemoryStep"]

GENERALISED_2B = "Li-Dai-Peng Theorem 2(b), with the work per request W in place of tokens (DESIGN 2.4)"
COMPUTE_BOUND = "Bari-Hegde-de Veciana Theorem 1 form: lambda * E[W] > 1 diverges under every scheduler"
MEMORY_BOUND = "Little's law on KV tokens: lambda * E[d*p + d(d-1)/2] * t_min > M diverges under every scheduler"
REQUEST_BOUND = "Little's law on requests holding KV: lambda * E[d] * t_min > max_active diverges under every scheduler"


@dataclass(frozen=True)
class MemoryNumbers:
    """The exact quantities behind the verdict (times in ms, rates per s, memory in KV tokens), in Fractions."""

    work_ms: dict
    compute_load: Exact
    t_min_ms: Exact
    kv_need_tokens: Exact | None
    kv_tokens: int | None
    active_need: Exact | None
    max_active: int | None
    largest: dict | None

    def utilisation(self) -> dict:
        """Each resource's necessary-condition ratio (1 = at the bound)."""
        out = {"compute": self.compute_load}
        if self.kv_tokens:
            out["memory"] = self.kv_need_tokens / self.kv_tokens
        if self.max_active:
            out["request limit"] = self.active_need / self.max_active
        return out

    def binding(self) -> str:
        """The resource closest to (or furthest past) its bound."""
        use = self.utilisation()
        return max(use, key=lambda k: use[k])

    def data(self) -> dict:
        return {"work_per_request_ms": self.work_ms, "compute_load": self.compute_load, "t_min_ms": self.t_min_ms,
                "kv_need_tokens": self.kv_need_tokens, "kv_tokens": self.kv_tokens, "active_need": self.active_need,
                "max_active_requests": self.max_active, "largest_request": self.largest,
                "utilisation": self.utilisation(), "binding": self.binding()}


def _class_work(engine: Engine, c: RequestClass, tau: Exact) -> tuple[Exact, Fraction]:
    """``(E[W], E[d*p + d(d-1)/2])`` of one class: its work (ms) and its KV token-batches, exact."""
    att = engine.attention
    k_pf, k_dec = (0, 0) if att is None else (att.prefill_exact, att.decode_exact)
    return expected_work_exact(tau, k_pf, k_dec, c.moments), c.kv_token_batches


def memory_numbers(engine: Engine, workload: Workload) -> MemoryNumbers:
    """Exact work per request, compute load, least KV occupancy and active requests, and the largest request.

    ``tau`` is the exact token capacity's inverse and ``t_min`` the shortest batch
    (:attr:`Engine.shortest_batch_ms`), all in Fractions (no sympy).

    >>> from llmstab.checkers.spec import load_engine_spec
    >>> spec = load_engine_spec("examples/memory_bound.yaml")
    >>> n = memory_numbers(spec.engine, spec.workload)
    >>> n.t_min_ms, n.kv_need_tokens, n.kv_tokens
    (Exact(187, 4), Exact(691713, 16), 32000)
    """
    tau = 1 / capacity_of(engine).tokens_per_ms
    t_min = Exact(engine.shortest_batch_ms)  # an Exact: an integral t_min is an int in JSON
    work, load, kv_need, active_need = {}, Exact(0), Exact(0), Exact(0)
    for c in workload.classes:
        w, kv = _class_work(engine, c, tau)
        work[c.name] = w
        load += c.rate * w / 1000
        kv_need += mem.memory_necessary(c.rate, kv, t_min, 1)[0]
        active_need += mem.request_limit_necessary(c.rate, c.decode.mean, t_min, 1)[0]
    largest = None
    kv_cache = engine.kv_cache
    if kv_cache is not None and workload.bounded:
        p_max = max(c.prompt.max for c in workload.classes)
        total_max = max(c.prompt.max + c.decode.max for c in workload.classes)
        largest = {"prompt_max": p_max, "tokens_max": total_max,
                   **mem.largest_request_fits(p_max, total_max, kv_cache.blocks, kv_cache.block_size,
                                              kv_cache.watermark_blocks)}
    return MemoryNumbers(work, load, t_min, kv_need if kv_cache else None, kv_cache.tokens if kv_cache else None,
                         active_need if engine.max_active_requests else None, engine.max_active_requests, largest)


def _certificates(numbers: MemoryNumbers) -> list[Evidence]:
    """Evidence for each necessary condition the load breaks (empty if none)."""
    data, found = numbers.data(), []
    if numbers.compute_load > 1:
        found.append(Evidence("certificate", f"lambda * E[W] = {numbers.compute_load} > 1: the traffic needs more GPU "
                              "time than there is, under every scheduler", {**data, "binding": "compute"},
                              reference=COMPUTE_BOUND))
    if numbers.kv_tokens and numbers.kv_need_tokens > numbers.kv_tokens:
        found.append(Evidence("certificate", f"lambda * E[d*p + d(d-1)/2] * t_min = {numbers.kv_need_tokens} KV tokens "
                              f"> M = {numbers.kv_tokens}: the KV cache cannot hold what the traffic needs, under "
                              "every scheduler", {**data, "binding": "memory"}, reference=MEMORY_BOUND))
    if numbers.max_active and numbers.active_need > numbers.max_active:
        found.append(Evidence("certificate", f"lambda * E[d] * t_min = {numbers.active_need} requests > max_active = "
                              f"{numbers.max_active}", {**data, "binding": "request limit"}, reference=REQUEST_BOUND))
    if numbers.largest is not None and not numbers.largest["fits"]:
        found.append(Evidence("certificate", f"the largest request ({numbers.largest['tokens_max']} tokens, prompt "
                              f"{numbers.largest['prompt_max']}) needs more KV blocks than the cache admits even alone, so "
                              "it can never finish", {**data, "binding": "memory"}, reference="KV-cache capacity"))
    return found


def check_memory(engine: Engine, policy: Policy, workload: Workload, work_conserving: bool | None = None) -> Verdict:
    """The load verdict with attention, KV memory and the request cap (see the module docstring)."""
    numbers = memory_numbers(engine, workload)
    certificates = _certificates(numbers)
    if certificates:
        return Verdict("unstable", certificates)
    data = numbers.data()
    if numbers.compute_load == 1:
        return Verdict("inconclusive", [Evidence("note", "lambda * E[W] = 1 exactly: critically loaded", data)])
    kv = engine.kv_cache
    roomy = (engine.kv_cache is None and engine.max_active_requests is None) or (
        workload.bounded and kv is not None and mem.memory_never_binds(
            engine.token_budget, engine.max_active_requests, numbers.largest["tokens_max"], kv.blocks,
            kv.block_size, kv.watermark_blocks))
    if roomy and work_conserving and workload.bounded and engine.max_batch_requests is None:
        return Verdict("stable", [Evidence(
            "theorem", f"{policy.label} is work-conserving, memory cannot bind (the cache holds max_active requests of "
            f"the largest size, max_active >= b_max) and lambda * E[W] = {numbers.compute_load} < 1: the remaining "
            "work drifts down by 1 - lambda * E[W] per unit time while batches are full",
            {**data, "theorem": GENERALISED_2B})])
    why = ("memory can bind (admission may wait, decodes may be preempted)" if not roomy else
           "the policy is not known to be work-conserving" if not work_conserving else
           "lengths are unbounded or k_max is set")
    return Verdict("inconclusive", [Evidence(
        "note", f"every necessary condition holds (compute {float(numbers.compute_load):.1%}, binding resource: "
        f"{numbers.binding()}), but {why}: settled by simulation with the memory model", data)])


class MemoryStep(Step):
    """Attention, KV memory and the request cap: exact necessary conditions, the binding resource, and what they decide."""

    name, order = "memory", 500

    def applies(self, ctx: CheckContext) -> bool:
        engine = ctx.spec.engine
        return engine.attention is not None or engine.kv_cache is not None or engine.max_active_requests is not None

    def run(self, ctx: CheckContext) -> None:
        spec = ctx.spec
        wc = ctx.work.work_conserving
        verdict = check_memory(spec.engine, spec.policy, spec.workload, work_conserving=wc)
        numbers = verdict.evidence[0].data
        ctx.capacity = {**ctx.capacity, "memory": {k: numbers[k] for k in (
            "work_per_request_ms", "compute_load", "t_min_ms", "kv_tokens", "kv_need_tokens", "max_active_requests",
            "active_need", "utilisation", "binding")}}
        if verdict.verdict == "unstable" or verdict.verdict == "stable":
            ctx.load_verdict = verdict
            return
        assumption = _bari_assumption_4(spec)
        if assumption is not None and assumption.data.get("holds") and spec.engine.attention is None \
                and ctx.load_verdict.verdict == "stable":  # Bari's Theorem 2 stands: its memory assumption holds
            ctx.load_verdict = Verdict("stable", [*ctx.load_verdict.evidence, assumption])
            return
        if assumption is not None:
            verdict = Verdict(verdict.verdict, [*verdict.evidence, assumption])
        if ctx.load_verdict.verdict == "stable":  # Theorem 2 ignored attention and memory: not enough any more
            ctx.load_verdict = Verdict("inconclusive", [*verdict.evidence, Evidence(
                "note", "Theorem 2's verdict counted tokens only; with attention or memory it does not decide",
                {"theorem-2": [e.to_json() for e in ctx.load_verdict.evidence]})])
        else:
            ctx.load_verdict = Verdict(ctx.load_verdict.verdict, [*ctx.load_verdict.evidence, *verdict.evidence])


def _bari_assumption_4(spec) -> Evidence | None:
    """RAD with a KV cache: Bari-Hegde-de Veciana's Assumption 4 (memory holds ``b_col`` requests of the largest size)."""
    from .tiling import tiling_theorem  # the tiling module only when a memory step runs

    engine, policy, workload = spec.engine, spec.policy, spec.workload
    if tiling_theorem(policy) is None or engine.kv_cache is None:
        return None
    kv = engine.kv_cache
    if not workload.bounded:
        return Evidence("note", "Bari-Hegde-de Veciana's Assumption 4 cannot hold with unbounded lengths (no largest "
                        "request), so their Theorem 2 is not cited", {"holds": False, "bounded": False})
    largest = max(c.prompt.max + c.decode.max for c in workload.classes)
    found = mem.bari_assumption_4(policy.b_col, largest, kv.blocks, kv.block_size)
    return Evidence("theorem" if found["holds"] else "note",
                    f"Bari-Hegde-de Veciana Assumption 4 {'holds' if found['holds'] else 'fails'}: b_col = "
                    f"{found['b_col']} requests of {largest} tokens need {found['blocks_needed']} of {kv.blocks} blocks",
                    {**found, "largest_request_tokens": largest}, reference="Bari-Hegde-de Veciana Assumption 4")
