"""Settling a cluster's load by simulating the whole cluster (every replica's own policy kernel, the router).

:func:`settle_cluster` runs :func:`~llmstab.fluid_models.simulation.cluster.simulate_cluster`
for a first horizon ``max(2500 t(b_max), 2000 / (lambda / g))`` (the single
engine's first horizon at one replica's share) and, unless that run already
diverges, once more four times longer; the cluster's backlog growth is judged
by :func:`~llmstab.checkers.growth.estimate_growth` (batch means with a t
interval). :meth:`ClusterRun.combine` joins the run with a theory verdict
without ever letting the two contradict each other: agreement adds the run
as evidence, an undecided load takes the run's verdict (statistical evidence,
said so), and a disagreement with a theorem-based ``stable`` makes the
verdict ``inconclusive`` with both stated.
"""

from __future__ import annotations

from dataclasses import dataclass

from llmstab.fluid_models.cluster import Cluster
from llmstab.fluid_models.simulation.cluster import ClusterResult, simulate_cluster
from llmstab.fluid_models.workload import Workload

from .growth import GrowthEstimate, estimate_growth, fluid_prediction
from .verdict import Evidence, Verdict

__all__ = ["ClusterRun", "settle_cluster", "cluster_horizon", "CROWD_LIMIT"]

CROWD_LIMIT = 5_000


def cluster_horizon(cluster: Cluster, workload: Workload) -> float:
    """The first run's horizon (s): ``max(2500 t(b_max), 2000 / (lambda / g))`` over the pools.

    >>> from llmstab.checkers.cluster_spec import load_cluster_spec
    >>> spec = load_cluster_spec("examples/cluster_random.yaml")
    >>> round(cluster_horizon(spec.cluster, spec.workload), 3)
    382.9
    """
    slowest = max(float(p.engine.batch_time.exact(p.engine.token_budget)) for p in cluster.pools) / 1000.0
    fewest = min(p.replicas for p in cluster.pools)
    return max(2_500 * slowest, 2_000 * fewest / float(workload.rate))


@dataclass(frozen=True)
class ClusterRun:
    """The last simulated run of a cluster and its backlog's growth estimate."""

    growth: GrowthEstimate
    result: ClusterResult
    seed: int

    @property
    def summary(self) -> dict:
        """Cluster metrics of the run (throughput, latency percentiles, imbalance, per-replica loads)."""
        metrics = self.result.metrics()
        span = self.result.end_time
        return {"horizon_s": span, "seed": self.seed, "requests": self.result.trace.size,
                "batches": self.result.n_batches, "growth": self.growth.to_json(), "cluster": metrics["cluster"],
                "replicas": [{"replica": m["replica"], "pool": m["pool"], "requests_per_s": m["routed"] / span,
                              "utilisation": m["utilisation"], "backlog_mean_requests": m["backlog_mean_requests"]}
                             for m in metrics["replicas"]]}

    def evidence(self) -> Evidence:
        """The run as simulation evidence."""
        r, c = self.result, self.result.metrics()["cluster"]
        ttft = c["ttft_s"]
        latency = "" if ttft["p50"] is None else f"; median TTFT {ttft['p50']:.3g} s (p99 {ttft['p99']:.3g} s)"
        stopped = f", stopped once a replica held {CROWD_LIMIT} requests" if r.stopped_at_backlog else ""
        how = (f"simulated the cluster ({' + '.join(map(str, r.pool_sizes))} replicas, routers "
               f"{'/'.join(r.routers)}) with each replica's own policy kernel on {r.trace.size} requests "
               f"({r.n_batches} batches, seed {self.seed}{stopped})")
        return Evidence("simulation", f"{how}: the cluster backlog is {self.growth.statement}{latency}; "
                        f"{c['lost']} requests lost" + ("" if self.growth.diverging else
                                                        " (statistical evidence from a finite run, not a proof)"),
                        {"growth": self.growth.to_json(), "requests_simulated": r.trace.size,
                         "batches_simulated": r.n_batches, "seed": self.seed, "lost": c["lost"],
                         "router_imbalance": c["router_imbalance"]})

    @property
    def outcome(self) -> str:
        """``unstable`` (diverging), else ``stable``; ``inconclusive`` for a run stopped at the crowd limit
        without diverging: a run cut short by a resource limit is evidence of nothing."""
        if self.growth.diverging:
            return "unstable"
        return "inconclusive" if self.result.stopped_at_backlog else "stable"

    def combine(self, verdict: Verdict) -> Verdict:
        """``verdict`` joined with this run, so that the two never contradict each other."""
        sim = self.outcome
        evidence = [*verdict.evidence, self.evidence()]
        if sim == "inconclusive":
            return Verdict(verdict.verdict, [*evidence, Evidence(
                "note", "the cluster run stopped at its crowd limit without diverging, so it adds nothing to "
                        "the verdict", {})])
        if verdict.verdict == "inconclusive":
            return Verdict(sim, [*evidence, Evidence("note", "theory left this load undecided, so it was "
                                                     "settled by simulating the cluster", {})])
        if verdict.verdict == sim:
            return Verdict(sim, evidence)
        if verdict.verdict == "stable":
            return Verdict("inconclusive", [*evidence, Evidence(
                "note", "theory says stable but the simulated backlog grew: the two disagree, so no verdict is "
                        "claimed (a very slow transient or a modelling gap)", {})])
        return Verdict("unstable", [*evidence, Evidence(
            "note", "the finite run did not show the growth that theory proves (slow growth at this horizon)", {})])


def settle_cluster(cluster: Cluster, workload: Workload, *, seed: int = 0,
                   capacity_tokens_per_s: object = None) -> ClusterRun:
    """Simulate ``cluster`` for the first horizon and, unless it diverges, four times longer.

    A run stops early once a replica holds more than :data:`CROWD_LIMIT` requests.
    """
    fluid = None if capacity_tokens_per_s is None else fluid_prediction(workload, capacity_tokens_per_s)
    horizon = cluster_horizon(cluster, workload)
    for factor in (1, 4):
        result = simulate_cluster(cluster, workload, horizon_s=factor * horizon, seed=seed,
                                  max_backlog_requests=CROWD_LIMIT)
        growth = estimate_growth(result, fluid_rate=fluid)
        if growth.diverging:
            break
    return ClusterRun(growth, result, seed)
