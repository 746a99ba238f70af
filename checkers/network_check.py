"""Stability of a network of engines: a verdict with its certificate or counterexample.

The procedure, in order (every step leaves evidence):

1. **Loads.** Each engine's token load (traffic equations) is compared exactly
   with its capacity ``max_b b/t_b``. A load above capacity is unstable for
   every scheduler (Li-Dai-Peng Theorem 2(a) at that engine).
2. **Feedforward networks** (DAG and fork-join workflows whose engine graph has
   no cycle): with work-conserving engines, every engine below its full-batch
   rate is enough (Li-Dai-Peng Section 5; feedforward fluid networks are stable
   under any work-conserving discipline, Dai 1995/1996).
3. **Cyclic networks** (the fluid model of :mod:`llmstab.fluid_models.networks.fluid`):
   a *virtual station* with combined load above 1 is an instability certificate,
   confirmed by an exact diverging fluid path and a simulation; otherwise a linear
   Lyapunov function found by LP and verified in rationals is a stability
   certificate; otherwise an exact diverging fluid path is a counterexample.
4. Anything else is ``inconclusive``, saying what was tried.

Examples
--------
>>> from llmstab.fluid_models.networks.examples import rybko_stolyar
>>> r = check_network(rybko_stolyar(bad=False), simulate=False)
>>> r.load_verdict.verdict, [e.kind for e in r.load_verdict.evidence][-1]
('stable', 'certificate')
>>> check_network(rybko_stolyar(bad=True), simulate=False).load_verdict.verdict
'unstable'
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from llmstab.fluid_models.networks.fluid import FluidError, FluidNetwork, FluidPath, nonzero_state
from llmstab.fluid_models.networks.network import Network
from llmstab.fluid_models.policies import Policy
from llmstab.fluid_models.workload import RequestClass, Workload
from llmstab.theory.exact_linalg import to_fraction

from .report import CheckReport
from .verdict import Evidence, Verdict, exact_prose
from .virtual_stations import virtual_stations
from .work_conservation import check_work_conservation

__all__ = ["check_network", "check_network_document", "diverging_path", "default_horizon", "NetworkReport"]

THEOREM_2A = "Li-Dai-Peng Theorem 2(a), applied at each engine"
THEOREM_DAG = ("Li-Dai-Peng Section 5: with DAG / fork-join routing and work-conserving engines the per-engine "
               "load conditions suffice (feedforward fluid networks are stable under every work-conserving "
               "discipline, Dai 1995)")
FLUID_THEOREM = "fluid stability implies stability (Dai 1995)"
HLPPS = ("head-of-line proportional processor sharing is stable whenever every engine's load is below 1 "
         "(Bramson 1996), so these loads are inside the network's capacity region")


@dataclass(frozen=True)
class NetworkReport(CheckReport):
    """A :class:`~llmstab.checkers.report.CheckReport` whose text lists every engine."""

    def to_text(self) -> str:
        lines = [f"llmstab check: {self.subject} (network of {len(self.capacity['engines'])} engines)"]
        lines.append(f"  {'engine':<12} {'capacity tok/s':>15} {'load tok/s':>12} {'utilisation':>12}")
        for e, cap in self.capacity["engines"].items():
            ld = self.load["engines"][e]
            u = ld["utilisation"]
            lines.append(f"  {e:<12} {float(cap['tokens_per_s']):>15.6g} {float(ld['tokens_per_s']):>12.6g} "
                         f"{(f'{float(u):.1%}' if u is not None else 'region'):>12}")
        lines.append(f"  bottleneck: {self.load['bottleneck']}")
        return "\n".join(lines + self.verdict_lines())


@lru_cache(maxsize=None)
def _work_conservation(policy: Policy):
    return check_work_conservation(policy, random_states=0)


def diverging_path(fn: FluidNetwork, amount: int = 100, tries: int | None = None) -> FluidPath | None:
    """An exact fluid path that returns to ``r > 1`` times its start, from one buffer holding
    ``amount`` requests (buffers fed from outside first); ``None`` if none is found."""
    order = sorted(range(fn.size), key=lambda k: (fn.alpha[k] == 0, k))[: tries or fn.size]
    for k in order:
        try:
            path = fn.priority_path({fn.labels[k]: amount}, horizon=10**7, max_pieces=400)
        except FluidError:
            return None
        if path.outcome == "grows":
            return path
    return None


def _state_text(state: dict, shown: int = 4) -> str:
    """A fluid state for a person: ``A1.p = 100, B2.d = 7.5 requests`` (at most ``shown`` buffers, then a count).

    >>> _state_text({"A1.p": "100", "B2.d": "15/2"})
    'A1.p = 100, B2.d = 7.5 requests'
    >>> _state_text({f"b{i}": "1" for i in range(6)}, shown=2)
    'b0 = 1, b1 = 1 requests and 4 more buffers'
    """
    items = [f"{k} = {float(to_fraction(v)):.6g}" for k, v in list(state.items())[:shown]]
    more = len(state) - shown
    return ", ".join(items) + " requests" + (f" and {more} more buffer{'s' if more != 1 else ''}" if more > 0 else "")


def _ratio_text(ratio: object) -> str:
    """An exact ratio, written exactly only when short: ``3/2 = 1.5``, else ``about 17.1``."""
    text = str(ratio)
    return f"{text} = {float(to_fraction(text)):.4g}" if len(text) <= 12 else f"about {float(to_fraction(text)):.4g}"


def _path_evidence(path: FluidPath) -> Evidence:
    """The self-similar diverging path as a counterexample; its data lists every breakpoint (exact)."""
    c = path.certificate
    start, cycle = nonzero_state(path.labels, path.states[0]), nonzero_state(path.labels, c["state0"])
    return Evidence(
        "counterexample",
        f"an exact piecewise-linear fluid path from {_state_text(start)} reaches {_state_text(cycle)} at "
        f"t = {float(c['t0']):.6g} s and returns at t = {float(c['t1']):.6g} s to {_ratio_text(c['ratio'])} times "
        "that state; the fluid model is invariant under (q, t) -> (r q, r t), so the path repeats at growing "
        "scale and its total grows without bound",
        {"initial_state": start, "t0": str(c["t0"]), "t1": str(c["t1"]), "ratio": str(c["ratio"]),
         "state_at_t0": cycle, "state_at_t1": nonzero_state(path.labels, c["state1"]),
         "breakpoints": [{"t": str(t), "state": nonzero_state(path.labels, q)} for t, q in zip(path.times, path.states)]})


def default_horizon(net: Network) -> float:
    """The simulated time of a network check: about 6000 arrivals, at most 4000 s.

    >>> from llmstab.fluid_models.networks.examples import rybko_stolyar
    >>> net = rybko_stolyar(bad=True)
    >>> round(default_horizon(net) * sum(float(c.rate) for c in net.classes))   # arrivals in the run
    6000
    """
    return min(4000.0, 6000.0 / float(sum(c.rate for c in net.classes)))


def _simulation_evidence(net: Network, horizon_s: float | None, seed: int, expect_growth: bool) -> Evidence:
    from llmstab.fluid_models.networks.simulator import simulate_network  # only when a simulation runs

    horizon = horizon_s or default_horizon(net)
    sim = simulate_network(net, horizon, seed=seed)
    q = len(sim.tokens) // 4
    first, last = float(sim.tokens[:q].mean()), float(sim.tokens[-q:].mean())
    offered = net.token_load()
    carried = {e: sim.served_tokens[e] / horizon / float(offered[e]) for e in net.engines if offered[e]}
    short = {e: round(c, 3) for e, c in carried.items() if c < 0.9}
    grew = last > 2 * first or bool(short)
    what = (f"grows ({first:.0f} tokens on average over the first quarter, {last:.0f} over the last"
            + (f"; engines {sorted(short)} carried only {short} of their offered load" if short else "") + ")"
            if grew else f"does not grow clearly ({first:.0f} tokens over the first quarter, {last:.0f} over the last)")
    expected = "as predicted" if grew == expect_growth else "contrary to the fluid prediction, at this horizon"
    return Evidence(
        "simulation",
        f"stochastic simulation ({horizon:.0f} s, seed {seed}, each engine running its own policy kernel): the "
        f"unprocessed-token backlog {what}, {expected}",
        {**sim.summary(), "mean_tokens_first_quarter": first, "mean_tokens_last_quarter": last,
         "carried_fraction_of_offered_load": carried, "seed": seed})


def _summaries(net: Network) -> tuple[dict, dict]:
    cap, srv, load, util = net.capacity(), net.service_rate(), net.token_load(), net.utilisation()
    capacity = {"engines": {e: {"tokens_per_s": (cap[e] if cap[e] is not None else net.engines[e].engine.capacity.tokens_per_s),
                                "exact_tokens_per_s": str(cap[e]) if cap[e] is not None else None,
                                "full_batch_tokens_per_s": srv[e],
                                "is_region": cap[e] is None} for e in net.engines}}
    loads = {"engines": {e: {"tokens_per_s": load[e], "exact_tokens_per_s": str(load[e]),
                             "utilisation": util[e], "exact_utilisation": str(util[e]) if util[e] is not None else None}
                         for e in net.engines},
             "bottleneck": net.bottleneck(),
             "max_utilisation": max((u for u in util.values() if u is not None), default=None),
             "step_rates_per_s": net.step_rates(), "feedforward": net.is_feedforward}
    return capacity, loads


def check_network(net: Network, subject: str = "<network>", simulate: bool = True,
                  horizon_s: float | None = None, seed: int = 0) -> NetworkReport:
    """Decide stability of ``net`` at its loads; see the module docstring for the procedure.

    ``simulate`` adds a stochastic simulation to instability verdicts (``horizon_s``
    seconds, default about 6000 arrivals, seeded by ``seed``).
    """
    capacity, loads = _summaries(net)
    load, srv = net.token_load(), net.service_rate()
    bound = {e: ne.engine.capacity.tokens_per_s for e, ne in net.engines.items()}
    wc = {e: _work_conservation(ne.policy) for e, ne in net.engines.items()}
    policy = _policy_verdict(net, wc)

    def report(verdict: Verdict) -> NetworkReport:
        return NetworkReport(subject, verdict, policy, capacity, loads)

    over, ev, regions = _overloaded_engines(net, capacity, bound)
    if over:
        if simulate:
            ev.append(_simulation_evidence(net, horizon_s, seed, True))
        return report(Verdict("unstable", ev))
    table = {"utilisation": loads["engines"], "theorem": THEOREM_2A,
             "k_max_engines": {e: v.verdict for e, v in regions.items()}}
    critical = [e for e in net.engines if load[e] == bound[e]]
    if critical:
        return report(Verdict("inconclusive", [Evidence(
            "note", f"engines {critical} are loaded exactly at capacity: a critically loaded network, where "
            "neither part of the theorems applies", table)]))
    blocked = [f"{e}: k_max = {ne.engine.max_batch_requests} makes its capacity a region "
               f"(its own load is {'inside' if regions.get(e) and regions[e].verdict == 'stable' else 'not shown inside'} "
               "it)" for e, ne in net.engines.items() if capacity["engines"][e]["is_region"]]
    blocked += [f"{e}: policy {ne.policy.name} is not work-conserving ({wc[e].problem})" for e, ne in net.engines.items()
                if not wc[e].work_conserving]
    if blocked:
        return report(Verdict("inconclusive", [Evidence(
            "note", "every engine's token load is below its capacity, but the fluid model of a token server needs "
            "work-conserving engines with a scalar capacity: " + "; ".join(blocked), table)]))
    slow = [e for e in net.engines if load[e] >= srv[e]]
    if slow:
        return report(Verdict("unstable", [Evidence(
            "certificate", f"at engines {slow} a full batch is not the most efficient and the load is at least the "
            "full-batch rate b_max/t_(b_max): a work-conserving engine fills every batch once backlogged and "
            "cannot keep up", {e: {"load": load[e], "full_batch_tokens_per_s": srv[e]} for e in slow})]))
    rho = {e: load[e] / srv[e] for e in net.engines}
    if net.is_feedforward:
        return report(Verdict("stable", [Evidence(
            "theorem", f"{THEOREM_DAG}. The engine graph is acyclic and every engine is work-conserving with "
            f"load/full-batch rate below 1 (largest: {net.bottleneck()} at {float(max(rho.values())):.4g}, exact "
            "comparisons)", {"theorem": THEOREM_DAG, "rho": rho, "work_conserving": {e: True for e in net.engines}})]))
    verdict = _cyclic_verdict(net, rho, simulate, horizon_s, seed)
    return NetworkReport(subject, verdict, policy_from_load(policy, verdict, rho), capacity, loads)


def _overloaded_engines(net: Network, capacity: dict, bound: dict) -> tuple[list[str], list[Evidence], dict]:
    """Engines offered more than any scheduler serves (a scalar capacity, or outside the (prefill,
    decode) region of an engine with ``k_max``), their evidence, and the region verdicts computed."""
    load = net.token_load()
    over = [e for e in net.engines if load[e] > bound[e]]
    ev = [Evidence("certificate",
                   f"{THEOREM_2A}: engine {e} is offered {load[e]} tokens/s (exact) but no scheduler serves more "
                   f"than max_b b/t_b = {bound[e]} tokens/s there; its backlog grows at least "
                   f"{float(load[e] - bound[e]):.6g} tokens/s",
                   {"engine": e, "load_tokens_per_s": load[e], "capacity_tokens_per_s": bound[e],
                    "growth_tokens_per_s": load[e] - bound[e]}) for e in over]
    regions = {e: _region_verdict(net, e) for e in net.engines if capacity["engines"][e]["is_region"] and e not in over}
    for e, v in regions.items():  # outside its (prefill, decode) region: unstable under every scheduler
        if v.verdict == "unstable":
            over.append(e)
            ev += [Evidence(item.kind, f"engine {e}: {item.summary}", {"engine": e, **item.data}) for item in v.evidence]
    return over, ev, regions


def policy_from_load(policy: Verdict, load: Verdict, rho: dict) -> Verdict:
    """The policy verdict made consistent with the load verdict of the same report.

    A load shown unstable (a diverging fluid path, an overloaded virtual station
    or a simulation) while every engine's load is below its full-batch rate
    (``rho < 1``) is a load inside the capacity region where this policy
    diverges: an ``inconclusive`` policy verdict becomes ``not-maximally-stable``
    with that evidence.

    >>> from fractions import Fraction
    >>> path = Evidence("counterexample", "a diverging fluid path")
    >>> policy_from_load(Verdict("inconclusive"), Verdict("unstable", [path]), {"e1": Fraction(9, 10)}).verdict
    'not-maximally-stable'
    >>> policy_from_load(Verdict("inconclusive"), Verdict("unstable", [path]), {"e1": Fraction(1)}).verdict
    'inconclusive'
    """
    if policy.verdict != "inconclusive" or load.verdict != "unstable" or not all(r < 1 for r in rho.values()):
        return policy
    worst = max(rho, key=lambda e: rho[e])
    return Verdict("not-maximally-stable", [*policy.evidence, Evidence(
        "counterexample", f"the load verdict's own evidence shows the network diverging although every engine is "
        f"below its full-batch rate (largest: {worst} at {float(rho[worst]):.4g}): a load inside the capacity region "
        "that these schedulers do not carry", {"rho": rho, "load_evidence": [e.to_json() for e in load.evidence]})])


def _region_verdict(net: Network, e: str) -> Verdict:
    """The engine's own traffic against its (prefill, decode) capacity region (Li-Dai-Peng Section 6)."""
    rates = net.step_rates()
    steps = [(c, s) for c in net.classes for s in c.steps if s.engine == e]
    if not steps:
        return Verdict("stable", [])
    work = Workload(tuple(RequestClass(s.id, rates[s.id], s.prompt, s.decode) for _, s in steps))
    from .region_check import check_load_region  # the LP solver: imported only for engines with k_max

    return check_load_region(net.engines[e].engine, work)


def _cyclic_verdict(net: Network, rho: dict, simulate: bool, horizon_s: float | None, seed: int) -> Verdict:
    tried = []
    fn = FluidNetwork.from_network(net)
    stations = virtual_stations(net, fn)
    bad = [vs for vs in stations if vs.load > 1]
    if bad:
        vs = bad[0]
        ev = [Evidence(
            "certificate",
            f"virtual station {vs.describe()}: the buffers at {vs.engines[0]} are fed only by "
            f"{', '.join(vs.feeders[0])}, which {vs.engines[1]} serves only when the buffers at {vs.engines[1]} are "
            "empty, and the other way round, so the two sides are never served together; their utilisations add "
            f"up to {vs.load} = {float(vs.load):.4g} > 1 although every engine is below 1 (Dai-Vande Vate 2000; "
            "the Rybko-Stolyar / Lu-Kumar mechanism)", {"virtual_station": vs.to_json(), "rho": rho})]
        path = diverging_path(fn)
        if path is not None:
            ev.append(_path_evidence(path))
        if simulate:
            ev.append(_simulation_evidence(net, horizon_s, seed, True))
        return Verdict("unstable", ev)
    tried.append(f"{len(stations)} virtual station(s), none above load 1" if stations else "no virtual station")
    from .lyapunov import find_linear_lyapunov  # the LP solver: imported only for cyclic networks

    cert = find_linear_lyapunov(fn)
    if cert.verified:
        return Verdict("stable", [
            Evidence("note", f"every engine is below its full-batch rate (largest {float(max(rho.values())):.4g}); "
                     f"{tried[0]}", {"rho": rho, "virtual_stations": [v.to_json() for v in stations]}),
            Evidence("certificate",
                     f"linear Lyapunov function V = c.q (c > 0 on every buffer{', c >= 0 on the join syncs' if fn.joins else ''}) found by LP over all {cert.faces} faces of the fluid "
                     f"model and verified in exact rationals: dV/dt <= {exact_prose(-cert.epsilon)} on "
                     f"every face, so every fluid path drains ({FLUID_THEOREM})", cert.to_json())])
    tried.append(f"linear Lyapunov LP: {cert.reason}")
    path = diverging_path(fn)
    if path is not None:
        ev = [_path_evidence(path)]
        if simulate:
            ev.append(_simulation_evidence(net, horizon_s, seed, True))
        return Verdict("unstable", ev)
    tried.append("exact fluid paths: not piecewise linear with joins or shared priority levels" if fn.joins else
                 "exact fluid paths from one loaded buffer: none returned to a larger multiple of its start")
    return Verdict("inconclusive", [Evidence("note", "cyclic network; tried: " + "; ".join(tried), {"rho": rho})])


def _policy_verdict(net: Network, wc: dict) -> Verdict:
    not_wc = [e for e in net.engines if not wc[e].work_conserving]
    if not_wc:
        return Verdict("not-maximally-stable", [wc[e].evidence() for e in not_wc] + [Evidence(
            "note", f"engines {not_wc} leave budget unused with work waiting, so they lose throughput that other "
            "schedulers keep (Li-Dai-Peng Table 1)")])
    regions = [e for e, ne in net.engines.items() if ne.engine.max_batch_requests is not None]
    if regions:
        return Verdict("inconclusive", [Evidence("note", f"engines {regions} have k_max: their capacity is a region "
                                                  "and the per-engine theorem does not decide maximal stability")])
    inefficient = [e for e, ne in net.engines.items() if not ne.engine.capacity.full_batch_is_best]
    if inefficient:
        return Verdict("not-maximally-stable", [Evidence(
            "counterexample", f"at engines {inefficient} a full batch is not the most efficient, so a work-conserving "
            "engine loses throughput between the full-batch rate and the capacity")])
    if net.is_feedforward:
        return Verdict("maximally-stable", [Evidence(
            "theorem", f"{THEOREM_DAG}; every engine is work-conserving (checked on every small state) and a full "
            "batch is its most efficient batch, so every load with all engines below capacity is stable",
            {"theorem": THEOREM_DAG})])
    fn = FluidNetwork.from_network(net)
    rho = net.utilisation()
    if all(r is not None and r < 1 for r in rho.values()) and any(vs.load > 1 for vs in virtual_stations(net, fn)):
        return Verdict("not-maximally-stable", [Evidence(
            "counterexample", f"every engine is below capacity yet a virtual station is overloaded; {HLPPS}")])
    return Verdict("inconclusive", [Evidence(
        "note", "cyclic routing: per-engine loads below 1 do not imply stability in general (Rybko-Stolyar under "
        "priorities, Bramson under FCFS); a certificate at this load does not cover every load inside the "
        "capacity region")])


def check_network_document(document: Any, source: str = "<document>", base_dir: Path = Path("."),
                           simulate: bool = True, seed: int = 0) -> NetworkReport:
    """Validate a network document and check it (``simulate`` and ``seed`` as in :func:`check_network`)."""
    from .network_spec import network_from_document

    return check_network(network_from_document(document, source, base_dir), source, simulate=simulate, seed=seed)

