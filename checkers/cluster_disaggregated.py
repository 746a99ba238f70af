"""``llmstab check`` on disaggregated prefill/decode serving: the binding resource, exactly.

Four necessary conditions (:mod:`llmstab.theory.cluster`), each an exact
rational utilisation: the prefill pool, the decode pool (batches of at most
``min(b_max, k_max)`` decodes), the KV-transfer link and, with ``kv_tokens``,
the decode pool's KV memory (a Little's-law lower bound; the simulator does
not model memory yet). A utilisation above 1 is an ``unstable`` certificate
naming its resource; below 1 everywhere, the load is settled by simulating the
cluster. The report compares with the same GPUs colocated (the prefill pool's
engine and policy on every GPU).

Examples
--------
>>> from llmstab.checkers.cluster_spec import load_cluster_spec
>>> r = check_disaggregated(load_cluster_spec("examples/cluster_disaggregated_link_binds.yaml"), simulate=False)
>>> r.capacity["binding"], r.load_verdict.verdict, round(float(r.load["utilisation"]), 3)
('link', 'inconclusive', 0.902)
"""

from __future__ import annotations

import sympy

from llmstab.fluid_models.cluster import Pool
from llmstab.fluid_models.distributions import product_moment
from llmstab.fluid_models.workload import Workload
from llmstab.theory.capacity import EngineCapacity, b, engine_capacity
from llmstab.theory.cluster import binding, kv_token_seconds, utilisations

from .cluster_spec import ClusterSpec
from .report import CheckReport
from .verdict import Evidence, Verdict

__all__ = ["check_disaggregated", "decode_capacity", "prompt_decode_moments"]

WHY = {"prefill": "no scheduler serves more than g_p max_b b/t_b prefill tokens per ms (Li-Dai-Peng Theorem 2(a) "
                  "per prefill replica)",
       "decode": "a decode batch holds at most min(b_max, k_max) tokens, one per request, so the decode pool serves "
                 "at most g_d max_{b <= min(b_max, k_max)} b/t_b decode tokens per ms (Theorem 2(a) per replica)",
       "link": "the link ships one prompt's KV cache at a time, ms_per_token per token, so it carries at most "
               "1/ms_per_token prompt tokens per ms",
       "kv_memory": "by Little's law the decode pool holds lambda (E[p d] + E[d(d-1)]/2) t_min KV tokens on average "
                    "(each output token k keeps p + k tokens for at least the shortest batch), above g_d kv_tokens"}


def decode_capacity(pool: Pool) -> EngineCapacity:
    """A decode replica's exact capacity: ``max b/t_b`` over ``b <= min(b_max, k_max)`` (decode-only batches)."""
    engine = pool.engine
    limit = engine.token_budget if engine.max_batch_requests is None else min(engine.token_budget,
                                                                              engine.max_batch_requests)
    return engine_capacity(engine.batch_time.expression(b), limit)


def prompt_decode_moments(workload: Workload) -> tuple[sympy.Rational, sympy.Rational]:
    """``(E[p d], E[d^2])`` over the mix, exactly (paired trace rows keep their correlation).

    >>> from llmstab.fluid_models.distributions import Deterministic
    >>> from llmstab.fluid_models.workload import RequestClass
    >>> prompt_decode_moments(Workload((RequestClass("a", 1, Deterministic(3), Deterministic(2)),)))
    (6, 4)
    """
    pd, d2 = sympy.Integer(0), sympy.Integer(0)
    for c in workload.classes:
        share = c.rate / workload.rate
        pd += share * product_moment(c.prompt, c.decode)
        d2 += share * c.decode.second_moment
    return pd, d2


def _shortest_batch_ms(pool: Pool) -> sympy.Rational:
    table = pool.engine.batch_time.table(pool.engine.token_budget)
    return pool.engine.batch_time.exact(int(table[1:].argmin()) + 1)


def _utilisation(spec: ClusterSpec) -> tuple[dict, dict]:
    (pf, dc), work = spec.cluster.pools, spec.workload
    cap_p, cap_d = engine_capacity(pf.engine.batch_time.expression(b), pf.engine.token_budget), decode_capacity(dc)
    m_p, m_d = work.prefill_rate / work.rate, work.decode_rate / work.rate
    kv_ms = None
    if spec.kv_tokens is not None:
        pd, d2 = prompt_decode_moments(work)
        kv_ms = kv_token_seconds(pd, d2, m_d, _shortest_batch_ms(dc))
    u = utilisations(rate_per_s=work.rate, mean_prompt=m_p, mean_decode=m_d, prefill_capacity=cap_p.tokens_per_ms,
                     prefill_replicas=pf.replicas, decode_capacity=cap_d.tokens_per_ms, decode_replicas=dc.replicas,
                     ms_per_token=spec.cluster.transfer.ms_per_token, kv_ms_per_request=kv_ms, kv_tokens=spec.kv_tokens)
    link = spec.cluster.transfer.ms_per_token
    resources = {"prefill": {"capacity_tokens_per_ms": pf.replicas * cap_p.tokens_per_ms,
                             "load_tokens_per_ms": work.prefill_rate / 1000, "replicas": pf.replicas},
                 "decode": {"capacity_tokens_per_ms": dc.replicas * cap_d.tokens_per_ms,
                            "load_tokens_per_ms": work.decode_rate / 1000, "replicas": dc.replicas},
                 "link": {"capacity_tokens_per_ms": None if link == 0 else 1 / link,
                          "load_tokens_per_ms": work.prefill_rate / 1000, "ms_per_token": link,
                          "ms_fixed": spec.cluster.transfer.ms_fixed}}
    if "kv_memory" in u:
        resources["kv_memory"] = {"capacity_tokens": dc.replicas * spec.kv_tokens,
                                  "load_tokens_lower_bound": work.rate / 1000 * kv_ms, "kv_ms_per_request": kv_ms}
    for name, value in u.items():
        resources[name]["utilisation"] = value
    return u, resources


def _numbers(spec: ClusterSpec, u: dict, resources: dict) -> tuple[dict, dict]:
    work, (pf, _) = spec.workload, spec.cluster.pools
    top = max(u.values())
    per_request = work.token_rate / work.rate
    max_rate = work.rate / top if top > 0 else sympy.oo
    colocated = spec.cluster.replicas * engine_capacity(pf.engine.batch_time.expression(b),
                                                        pf.engine.token_budget).tokens_per_s / per_request
    capacity = {"tokens_per_ms": max_rate * per_request / 1000, "tokens_per_s": max_rate * per_request,
                "exact_tokens_per_ms": str(max_rate * per_request / 1000), "requests_per_s": max_rate,
                "binding": binding(u), "resources": resources,
                "colocated_same_gpus": {"replicas": spec.cluster.replicas, "requests_per_s": colocated,
                                        "disaggregated_over_colocated": max_rate / colocated}}
    load = {"tokens_per_s": work.token_rate, "exact_tokens_per_s": str(work.token_rate), "requests_per_s": work.rate,
            "utilisation": top, "per_resource": u}
    return capacity, load


NAMES = {"prefill": "prefill pool", "decode": "decode pool", "link": "KV-transfer link",
         "kv_memory": "decode pool's KV memory"}


def _theory(u: dict) -> Verdict:
    name, top = binding(u), max(u.values())
    label = NAMES[name]
    listing = ", ".join(f"{k} {v} ({float(v):.1%})" for k, v in u.items())
    data = {"binding": name, "utilisation": u}
    if top > 1:
        return Verdict("unstable", [Evidence("certificate", f"the {label} binds: utilisation {top} > 1 (exact); "
                                             f"{WHY[name]}; every resource: {listing}", data)])
    if top == 1:
        return Verdict("inconclusive", [Evidence("note", f"the {label} is critically loaded (utilisation exactly 1)",
                                                 data)])
    return Verdict("inconclusive", [Evidence(
        "note", f"every necessary condition holds with room; the {label} binds at {float(top):.1%}; every resource: "
        f"{listing}. That they suffice is the feed-forward fluid argument (prefill pool, link, decode pool), not "
        "proved here for batch engines, so the load is settled by simulation", data)])


def unsupported_features(cluster) -> list[str]:
    """Engine features the cluster simulator and these capacities do not model yet (attention, KV cache, cap)."""
    names = [("attention", "attention"), ("kv_cache", "KV cache"), ("max_active_requests", "max_active_requests")]
    return sorted({label for p in cluster.pools for attr, label in names if getattr(p.engine, attr, None) is not None})


def _unsupported_note(features: list[str]) -> Evidence:
    return Evidence("note", f"the engines set {', '.join(features)}, which the pooled capacities and the cluster "
                    "simulator do not model yet: the capacities are upper bounds (attention and memory only slow an "
                    "engine), so an 'unstable' stays proved, and no simulation is run or 'stable' claimed from it",
                    {"unmodelled": features})


def _latency(result, workload: Workload) -> dict:
    """Per class: throughput, TTFT and TBT percentiles and, when the class has an SLO, whether it is met.

    TBT here is each request's mean gap between tokens (the simulators' convention), not a per-token percentile.
    """
    import numpy as np

    tr, out = result.trace, {}
    span = result.end_time
    for k, c in enumerate(workload.classes):
        done = (tr.cls == k) & np.isfinite(result.finish)
        multi = done & (tr.decode > 1)
        ttft = result.first_token[done] - tr.times[done]
        tbt = (result.finish[multi] - result.first_token[multi]) / (tr.decode[multi] - 1)
        slo = c.slo
        q_ttft, q_tbt = (50.0, 99.0) if slo is None else (slo.ttft_percentile, slo.tbt_percentile)
        row = {"throughput_requests_per_s": float(done.sum() / span),
               f"ttft_p{q_ttft:g}_s": float(np.percentile(ttft, q_ttft)) if ttft.size else None,
               f"tbt_p{q_tbt:g}_s": float(np.percentile(tbt, q_tbt)) if tbt.size else None}
        if slo is not None:
            row["slo_met"] = slo.met(ttft_s=row[f"ttft_p{q_ttft:g}_s"], tbt_s=row[f"tbt_p{q_tbt:g}_s"])
        out[c.name] = row
    return out


def compare_colocated(spec: ClusterSpec, disaggregated_run, *, seed: int = 0) -> dict:
    """The same GPUs colocated (the prefill pool's engine, policy and router) on the same requests, side by side."""
    from llmstab.fluid_models.cluster import Cluster
    from llmstab.fluid_models.simulation.cluster import simulate_cluster

    pf = spec.cluster.pools[0]
    colocated = Cluster((Pool(pf.engine, pf.policy, spec.cluster.replicas),), (spec.cluster.routers[0],))
    run = simulate_cluster(colocated, spec.workload, horizon_s=disaggregated_run.end_time, seed=seed,
                           max_backlog_requests=5_000)
    return {"replicas": spec.cluster.replicas, "horizon_s": run.end_time, "seed": seed,
            "tbt_convention": "each request's mean gap between tokens",
            "colocated": _latency(run, spec.workload), "disaggregated": _latency(disaggregated_run, spec.workload)}


def _comparison_evidence(comparison: dict) -> Evidence:
    parts = []
    for name in ("colocated", "disaggregated"):
        for cls, row in comparison[name].items():
            numbers = ", ".join(f"{k} {v:.3g}" for k, v in row.items() if isinstance(v, float))
            slo = "" if "slo_met" not in row else (", SLO met" if row["slo_met"] else ", SLO MISSED")
            parts.append(f"{name} [{cls}]: {numbers}{slo}")
    return Evidence("simulation", f"the same {comparison['replicas']} GPUs colocated and disaggregated on the same "
                    f"requests ({comparison['horizon_s']:.6g} s, seed {comparison['seed']}; TBT = "
                    f"{comparison['tbt_convention']}): " + "; ".join(parts), comparison)


def check_disaggregated(spec: ClusterSpec, *, simulate: bool = True, seed: int = 0) -> CheckReport:
    """Capacity (for this mix), the binding resource, the load verdict and the comparison with colocation."""
    u, resources = _utilisation(spec)
    capacity, load = _numbers(spec, u, resources)
    load_v, extra = _theory(u), {}
    unsupported = unsupported_features(spec.cluster)
    if unsupported:
        load_v = Verdict(load_v.verdict, [*load_v.evidence, _unsupported_note(unsupported)])
    if simulate and max(u.values()) < 1 and not unsupported:
        from .cluster_simulation import settle_cluster

        run = settle_cluster(spec.cluster, spec.workload, seed=seed)
        load_v = run.combine(load_v)
        if "kv_memory" in u:
            load_v = Verdict(load_v.verdict, [*load_v.evidence, Evidence(
                "note", "the simulator does not model KV memory yet: the kv_memory condition rests on the bound alone",
                {})])
        extra["simulation"] = run.summary
        if not run.growth.diverging:
            extra["colocated_comparison"] = compare_colocated(spec, run.result, seed=seed)
    elif not simulate and load_v.verdict == "inconclusive":
        load_v = Verdict("inconclusive", [*load_v.evidence, Evidence("note", "simulation skipped (--no-simulate)", {})])
    col = capacity["colocated_same_gpus"]
    policy_v = Verdict("inconclusive", [Evidence(
        "note", f"disaggregation fixes the split of GPUs between prefill and decode: this mix reaches at most "
        f"{float(capacity['requests_per_s']):.4g} requests/s (the {NAMES[capacity['binding']]} binds), the same "
        f"{col['replicas']} GPUs colocated {float(col['requests_per_s']):.4g} requests/s "
        f"({float(col['disaggregated_over_colocated']):.1%}); no theorem decides maximal stability here", col)])
    if "colocated_comparison" in extra:
        policy_v = Verdict("inconclusive", [*policy_v.evidence, _comparison_evidence(extra["colocated_comparison"])])
    (pf, dc), routers = spec.cluster.pools, spec.cluster.routers
    subject = (f"disaggregated: {pf.replicas} x {pf.policy.label} prefill ({routers[0]}) + {dc.replicas} x "
               f"{dc.policy.label} decode ({routers[1]}) replicas, KV-transfer link")
    return CheckReport(subject, load_v, policy_v, capacity, load,
                       {**extra, "binding": capacity["binding"], "simulate": simulate, "seed": seed,
                        "steps": ["cluster-disaggregated"]})
