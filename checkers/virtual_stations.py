"""Virtual stations of priority networks (Dai-Vande Vate; Dumas; Rybko-Stolyar).

Two steps ``s1`` (at engine ``e1``) and ``s2`` (at ``e2 != e1``) form a *virtual
station* when each is fed only by a step at the other's engine that the other
step outranks: ``s1``'s only predecessor ``p1`` runs at ``e2`` with every buffer
of ``s2`` ahead of every buffer of ``p1``, and symmetrically for ``s2``. While
``s2`` holds work, ``e2`` never serves ``p1``, so nothing flows into ``s1``; and
the other way round. Once the transient is over the two steps are never served
together, so their utilisations must add up to less than 1 for the fluid model
to be stable (Dai and Vande Vate 2000, for two-engine networks; the
Rybko-Stolyar and Lu-Kumar counterexamples are the classic cases). A virtual
station with combined load above 1 is therefore an instability certificate.

Examples
--------
>>> from llmstab.fluid_models.networks.examples import rybko_stolyar
>>> [vs.steps for vs in virtual_stations(rybko_stolyar(bad=True))]
[('A2', 'B2')]
>>> float(virtual_stations(rybko_stolyar(bad=True))[0].load)
1.6105263157894736
>>> virtual_stations(rybko_stolyar(bad=False))
[]
"""

from __future__ import annotations

from dataclasses import dataclass

import sympy

from llmstab.fluid_models.networks.fluid import FluidNetwork
from llmstab.fluid_models.networks.network import Network

__all__ = ["VirtualStation", "virtual_stations"]


@dataclass(frozen=True)
class VirtualStation:
    """Steps that are never served at the same time, with their utilisations and their sum."""

    steps: tuple[str, str]
    engines: tuple[str, str]
    feeders: tuple[str, str]
    utilisations: tuple[sympy.Rational, sympy.Rational]
    load: sympy.Rational

    def to_json(self) -> dict:
        """The station's numbers (exact values as text)."""
        return {"steps": list(self.steps), "engines": list(self.engines), "fed_by": list(self.feeders),
                "utilisations": [str(u) for u in self.utilisations], "load": str(self.load),
                "load_float": float(self.load)}


def virtual_stations(net: Network, fluid: FluidNetwork | None = None) -> list[VirtualStation]:
    """Every pair of steps that forms a virtual station under the engines' disciplines."""
    fn = fluid or FluidNetwork.from_network(net)
    rank = {}
    for gs in fn.groups:
        for r, grp in enumerate(gs):
            for k in grp:
                rank[k] = r
    by_step: dict[str, list[int]] = {}
    for k, b in enumerate(fn.buffers):
        by_step.setdefault(b.step, []).append(k)
    sg = net.step_graph
    rates = net.step_rates()
    rate = net.service_rate()

    def feeder(s: str) -> str | None:
        preds = list(sg.predecessors(s))
        return preds[0] if len(preds) == 1 else None

    def outranks(hi: str, lo: str) -> bool:
        return max(rank[k] for k in by_step[hi]) < min(rank[k] for k in by_step[lo])

    def util(s: str) -> sympy.Rational:
        _, step = net.step(s)
        return rates[s] * step.tokens / rate[step.engine]

    out = []
    steps = sorted(by_step)
    for i, s1 in enumerate(steps):
        for s2 in steps[i + 1:]:
            e1, e2 = sg.nodes[s1]["engine"], sg.nodes[s2]["engine"]
            p1, p2 = feeder(s1), feeder(s2)
            if e1 == e2 or p1 is None or p2 is None:
                continue
            if sg.nodes[p1]["engine"] == e2 and sg.nodes[p2]["engine"] == e1 and outranks(s2, p1) and outranks(s1, p2):
                u1, u2 = util(s1), util(s2)
                out.append(VirtualStation((s1, s2), (e1, e2), (p1, p2), (u1, u2), u1 + u2))
    return out
