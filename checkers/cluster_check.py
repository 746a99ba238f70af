"""``llmstab check`` on a cluster: pooled capacity, per-replica loads, verdicts naming the router's theorem.

Replicas behind a router (``g`` identical engines):

* **Capacity**: ``g`` times one replica's exact capacity, whatever the router
  (each replica serves at most ``max_b b/t_b`` tokens per ms: Li-Dai-Peng
  Theorem 2(a) per replica; for tiled engines Bari et al.'s Theorem 1,
  ``lambda d_a > g`` diverges). A load above it is ``unstable`` for every
  router and scheduler (an exact certificate).
* **random**: Poisson thinning. Sending each request of a Poisson stream of
  rate ``lambda`` to a replica chosen uniformly and independently gives ``g``
  *independent* Poisson streams of rate ``lambda/g`` with the same length
  distributions (the splitting property of the Poisson process; Kingman,
  *Poisson Processes*, 1993, Section 5.1), so each replica is exactly the
  single engine at ``lambda/g``: the single-engine check (the whole pipeline,
  with its evidence) decides it, and the cluster is stable iff each replica is.
  This is Bari et al.'s Theorem 2 setting (RAD, uniformly random planner).
* **round_robin**: each replica receives every ``g``-th arrival: a renewal
  stream of rate ``lambda/g`` with Erlang(``g``) gaps, *less* variable than
  Poisson, not Poisson. Li-Dai-Peng's Theorem 2(b) is a fluid-limit argument,
  which uses the arrival stream only through its rate (Dai 1995 for renewal
  input); the single-engine verdict at ``lambda/g`` is carried over on that
  ground and, when simulating, confirmed by a cluster run.
* **jsq / power_of_two**: Bramson (2011, Ann. Appl. Probab. 21(4):1568-1625,
  "Stability of join the shortest queue networks") proves that JSQ among a
  random subset of ``d`` queues (``d = g``: JSQ; ``d = 2``: power of two) is
  stable whenever subcritical, for every non-idling discipline and general
  inter-arrival and service distributions (generalising Foss and Chernova
  1998, Queueing Syst. 29:55-73, FIFO). That is proved for single-server
  queues, not for batch engines, so llmstab cites it as the expectation and
  **settles the load by simulation**. **least_outstanding** (join the least
  work) has no theorem here: settled by simulation.

Disaggregated prefill/decode (:mod:`llmstab.theory.cluster`): the prefill pool,
the decode pool (with its KV memory when ``kv_tokens`` is given) and the
transfer link must each carry their share; the report names the **binding
resource** exactly and compares with the same GPUs colocated. All four
conditions are necessary; that they suffice is the feed-forward fluid argument
(prefill pool, then link, then decode pool), not proved here for batch engines,
so a load inside all four is settled by simulation.

Examples
--------
>>> from llmstab.checkers.spec import load_document
>>> doc = load_document("examples/cluster_random.yaml")
>>> r = check_cluster_document(doc, "examples/cluster_random.yaml", simulate=False)
>>> r.load_verdict.verdict, r.policy_verdict.verdict, r.capacity["replicas"]
('stable', 'maximally-stable', 4)
>>> r.load_verdict.evidence[0].reference
'Poisson thinning (Kingman, Poisson Processes, 1993, Section 5.1)'
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Mapping

import sympy

from llmstab.theory.exact_linalg import to_rational

from .cluster_disaggregated import _unsupported_note, check_disaggregated, unsupported_features
from .cluster_spec import ClusterSpec, cluster_spec_from_document
from .report import CheckReport
from .tiling import tiling_theorem
from .verdict import Evidence, Verdict

__all__ = ["check_cluster_document", "check_cluster", "ROUTER_THEOREMS"]

THINNING = "Poisson thinning (Kingman, Poisson Processes, 1993, Section 5.1)"
RENEWAL = "Li-Dai-Peng Theorem 2(b) fluid-limit argument with renewal input (Dai 1995, Ann. Appl. Probab. 5(1))"
BRAMSON = "Bramson 2011, Stability of join the shortest queue networks, Ann. Appl. Probab. 21(4):1568-1625"
ROUTER_THEOREMS = {"random": THINNING, "round_robin": RENEWAL, "jsq": BRAMSON, "power_of_two": BRAMSON,
                   "least_outstanding": None}
POOLED = "Li-Dai-Peng (arXiv 2504.07347) Theorem 2(a), summed over replicas"


def check_cluster_document(document: Mapping, source: str = "<document>", base_dir: Path = Path("."), *,
                           simulate: bool = True, seed: int = 0) -> CheckReport:
    """Validate a cluster document and check it (see the module text); bad input raises ``InputError``.

    Evidence that names no pipeline step is stamped ``cluster``.
    """
    from .pipeline import tag_evidence

    report = check_cluster(cluster_spec_from_document(document, source, base_dir), simulate=simulate, seed=seed)
    return replace(report, load_verdict=tag_evidence(report.load_verdict, "cluster"),
                   policy_verdict=tag_evidence(report.policy_verdict, "cluster"))


def check_cluster(spec: ClusterSpec, *, simulate: bool = True, seed: int = 0) -> CheckReport:
    """The capacity, load and both verdicts with evidence for a validated cluster."""
    if spec.cluster.disaggregated:
        return check_disaggregated(spec, simulate=simulate, seed=seed)
    return _check_replicas(spec, simulate=simulate, seed=seed)


def _per_replica(spec: ClusterSpec, simulate: bool, seed: int) -> CheckReport:
    """The single-engine check at ``lambda / g`` (simulating only where it is the replica's exact model)."""
    from .pipeline import check_engine
    from .spec import EngineSpec

    pool = spec.cluster.pools[0]
    share = spec.workload.scaled(sympy.Rational(1, pool.replicas))
    exact_split = spec.cluster.routers[0] in ("random", "round_robin")
    return check_engine(EngineSpec(pool.engine, pool.policy, share, spec.source), simulate=simulate and exact_split,
                        seed=seed)


def _numbers(spec: ClusterSpec, single: CheckReport) -> tuple[dict, dict]:
    g, router, work = spec.cluster.replicas, spec.cluster.routers[0], spec.workload
    one = single.capacity
    pooled = g * to_rational(one["exact_tokens_per_ms"])
    capacity = {"tokens_per_ms": pooled, "tokens_per_s": 1000 * pooled, "exact_tokens_per_ms": str(pooled),
                "requests_per_s": g * one["requests_per_s"], "replicas": g, "router": router, "per_replica": one}
    split = {"random": "Poisson thinning: an independent Poisson stream per replica",
             "round_robin": "every g-th arrival: a renewal stream with Erlang(g) gaps"}.get(
        router, "state-dependent: lambda/g per replica on average by symmetry of identical replicas, not a static split")
    load = {"tokens_per_s": work.token_rate, "exact_tokens_per_s": str(work.token_rate), "requests_per_s": work.rate,
            "utilisation": work.token_rate / (1000 * pooled),
            "per_replica": {"requests_per_s": work.rate / g, "tokens_per_s": work.token_rate / g, "split": split}}
    return capacity, load


def _lift(verdict: Verdict, g: int, router: str) -> Verdict:
    """The single-replica verdict as the cluster's, its evidence marked per replica, the router's theorem first."""
    how = {"random": f"each of the {g} replicas receives an independent Poisson stream at lambda/g with the same "
                     "lengths, so it is exactly the single engine checked at lambda/g; the cluster is stable iff "
                     "every replica is",
           "round_robin": f"each of the {g} replicas receives every {g}-th arrival (rate lambda/g, Erlang({g}) gaps, "
                          "less variable than Poisson); the fluid-limit argument behind the single-engine verdict "
                          "uses the arrival stream only through its rate"}[router]
    head = Evidence("theorem", f"{router} routing: {how}", {"theorem": ROUTER_THEOREMS[router], "replicas": g})
    return Verdict(verdict.verdict, [head, *(replace(e, summary=f"per replica (lambda/{g}): {e.summary}")
                                             for e in verdict.evidence)])


def _above_capacity(load: dict, capacity: dict, g: int) -> Verdict:
    rate, cap = load["tokens_per_s"] / 1000, capacity["tokens_per_ms"]
    return Verdict("unstable", [Evidence(
        "certificate", f"{POOLED}: the load {rate} tokens/ms exceeds {g} x one replica's capacity = {cap} tokens/ms "
        f"(exact comparison); under every router and scheduler the backlog grows at least {rate - cap} tokens/ms",
        {"theorem": POOLED, "load_tokens_per_ms": rate, "pooled_capacity_tokens_per_ms": cap,
         "growth_tokens_per_ms": rate - cap})])


def _undecided(router: str) -> Evidence:
    if router == "least_outstanding":
        return Evidence("note", "least_outstanding (join the least outstanding work) has no stability theorem in "
                        "llmstab's sources; the load is below the pooled capacity, so it is settled by simulation", {})
    return Evidence("note", f"{router}: {BRAMSON} proves JSQ(d) stable below the total service rate for single-"
                    "server queues with any non-idling discipline; an LLM engine is a batch server, where this is "
                    "not proved, so the load is settled by simulation", {"theorem": BRAMSON})


def _assumption4(spec: ClusterSpec, verdict: Verdict) -> Verdict:
    """A policy with a tiling theorem (RAD): Bari et al.'s Assumption 4 needs a largest request size.

    Without one, Theorem 2 is not invoked.
    """
    pool = spec.cluster.pools[0]
    if tiling_theorem(pool.policy) is None:
        return verdict
    bounded = spec.workload.bounded
    note = Evidence("theorem" if bounded else "note",
                    "Bari-Hegde-de Veciana Assumption 4 (memory for b_col active requests of the largest size): "
                    + ("lengths are bounded, so a largest request exists" if bounded else
                       "FAILS to be checkable: prompt or output lengths are unbounded, so no largest size exists "
                       "and Theorem 2 is not invoked for the load"), {"bounded_lengths": bounded})
    rests_on_theorem = all(e.kind != "simulation" for e in verdict.evidence)
    if not bounded and verdict.verdict == "stable" and rests_on_theorem:
        return Verdict("inconclusive", [note, *verdict.evidence])
    return Verdict(verdict.verdict, [*verdict.evidence, note])


def _policy_verdict(spec: ClusterSpec, single: CheckReport) -> Verdict:
    g, router = spec.cluster.replicas, spec.cluster.routers[0]
    if router in ("random", "round_robin"):
        lifted = _lift(single.policy_verdict, g, router)
        return Verdict(lifted.verdict, [*lifted.evidence, Evidence(
            "note", f"the pooled capacity is {g} x one replica's and {router} routing gives each replica lambda/g, "
            "so the cluster carries every load below the pooled capacity iff one replica carries every load below "
            "its own", {})])
    return Verdict("inconclusive", [_undecided(router), Evidence(
        "note", "maximal stability under this router is not decided: one simulated load does not cover every load "
                "below the pooled capacity", {})])


def _check_replicas(spec: ClusterSpec, *, simulate: bool, seed: int) -> CheckReport:
    g, router = spec.cluster.replicas, spec.cluster.routers[0]
    single = _per_replica(spec, simulate, seed)
    capacity, load = _numbers(spec, single)
    rate = load["tokens_per_s"] / 1000
    if rate > capacity["tokens_per_ms"]:
        load_v = _above_capacity(load, capacity, g)
    elif router in ("random", "round_robin"):
        load_v = _lift(single.load_verdict, g, router)
    else:
        load_v = Verdict("inconclusive", [_undecided(router)])
    load_v = _assumption4(spec, load_v)
    extra: dict = {"cluster": {"replicas": g, "router": router}}
    if not simulate and load_v.verdict == "inconclusive":
        load_v = Verdict("inconclusive", [*load_v.evidence, Evidence("note", "simulation skipped (--no-simulate)", {})])
    unsupported = unsupported_features(spec.cluster)
    if unsupported:
        load_v = Verdict(load_v.verdict, [*load_v.evidence, _unsupported_note(unsupported)])
    if simulate and rate < capacity["tokens_per_ms"] and not unsupported:
        from .cluster_simulation import settle_cluster

        run = settle_cluster(spec.cluster, spec.workload, seed=seed, capacity_tokens_per_s=capacity["tokens_per_s"])
        load_v = run.combine(load_v)
        extra["simulation"] = run.summary
    subject = f"{g} x {spec.cluster.pools[0].policy.label} replicas behind a {router} router " \
              f"(b_max = {spec.cluster.pools[0].engine.token_budget})"
    return CheckReport(subject, load_v, _policy_verdict(spec, single), capacity, load,
                       {**extra, "simulate": simulate, "seed": seed, "steps": ["cluster"]})

