"""Virtual stations of priority networks (Dai-Vande Vate; Dumas; Rybko-Stolyar), phase by phase.

The fluid model has two buffers per step, its prefill and its decode phase, and
an engine's discipline ranks buffers, not steps (Orca puts every prefill ahead
of every decode; FCFS puts a step's decodes ahead of its prefills). A *virtual
station* of two engines ``e`` and ``f`` is a set ``S_e`` of buffers at ``e`` and
a set ``S_f`` of buffers at ``f`` such that fluid enters ``S_e`` only from
buffers at ``f`` that every buffer of ``S_f`` outranks (its *feeders*, strictly
lower priority groups; never from outside the network, from ``e`` outside
``S_e`` or from a third engine), and the other way round. While ``S_f`` holds
fluid, ``f`` never serves the feeders of ``S_e``, so nothing enters ``S_e``: it
drains and stays empty; and the other way round. Once the transient is over the
two sets are never served together, so their utilisations must add up to less
than 1 for the fluid model to be stable (Dai and Vande Vate 2000, for two-engine
networks; the Rybko-Stolyar and Lu-Kumar counterexamples are the classic cases).
A virtual station with combined load above 1 is therefore an instability
certificate.

A station may mix phases: under Orca with exit-first priorities the prefill of a
late step at one engine and the decode of a late step at the other form one,
although the steps' early phases are ranked the other way. The search runs over
every pair of engines and every pair of rank thresholds: ``S_e`` is the largest
set of buffers ranked above its threshold whose inputs stay inside it or come
from ``f`` at or below ``f``'s threshold (and symmetrically); only the stations
not contained in another are kept.

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
from itertools import combinations

from llmstab.fluid_models.networks.fluid import FluidNetwork
from llmstab.fluid_models.networks.network import Network
from llmstab.theory.exact_linalg import Exact

__all__ = ["VirtualStation", "virtual_stations"]


@dataclass(frozen=True)
class VirtualStation:
    """Two sets of buffers (labels ``step.p`` / ``step.d``) at two engines that are never served together.

    ``feeders[i]`` are the buffers (at the other engine) that send fluid into
    ``buffers[i]``; ``utilisations[i]`` is the share of ``engines[i]`` that
    ``buffers[i]`` need, and ``load`` their sum.
    """

    buffers: tuple[tuple[str, ...], tuple[str, ...]]
    engines: tuple[str, str]
    feeders: tuple[tuple[str, ...], tuple[str, ...]]
    utilisations: tuple[Exact, Exact]
    load: Exact

    @property
    def steps(self) -> tuple[str, ...]:
        """The steps with a buffer in the station, in order."""
        return tuple(sorted({label.rsplit(".", 1)[0] for side in self.buffers for label in side}))

    def describe(self) -> str:
        """``{B2.p, B2.d at e1 | A2.p at e2}``: the two sides, for a person."""
        return "{" + " | ".join(f"{', '.join(side)} at {e}" for side, e in zip(self.buffers, self.engines)) + "}"

    def to_json(self) -> dict:
        """The station's numbers (exact values as text)."""
        return {"buffers": [list(side) for side in self.buffers], "steps": list(self.steps),
                "engines": list(self.engines), "fed_by": [list(side) for side in self.feeders],
                "utilisations": [str(u) for u in self.utilisations], "load": str(self.load),
                "load_float": float(self.load)}


def _ranks(fn: FluidNetwork) -> list[int]:
    """Each buffer's priority group index at its engine (0 is served first)."""
    rank = [0] * fn.size
    for gs in fn.groups:
        for r, grp in enumerate(gs):
            for k in grp:
                rank[k] = r
    return rank


def _closed_side(fn: FluidNetwork, preds: list, rank: list, e: int, f: int, r_e: int, r_f: int) -> frozenset:
    """The largest set of buffers at ``e`` ranked below ``r_e`` whose inputs stay in it or come from
    ``f`` at rank ``r_f`` or lower priority (buffers fed from outside never qualify)."""
    side = {k for k in range(fn.size) if fn.engine_of[k] == e and rank[k] < r_e and fn.alpha[k] == 0}
    changed = True
    while changed:
        changed = False
        for k in list(side):
            if not all(j in side or (fn.engine_of[j] == f and rank[j] >= r_f) for j in preds[k]):
                side.discard(k)
                changed = True
    return frozenset(side)


def _predecessors(fn: FluidNetwork) -> list[list[int]]:
    preds: list[list[int]] = [[] for _ in range(fn.size)]
    for j, succ in enumerate(fn.successors):
        for k in succ:
            preds[k].append(j)
    for k, inputs in fn.joins.items():
        preds[k].extend(inputs)
    return preds


def _station_sets(fn: FluidNetwork) -> list[tuple[int, int, frozenset, frozenset]]:
    """Every (engine, engine, side, side) found over all rank thresholds, maximal ones only."""
    rank, preds = _ranks(fn), _predecessors(fn)
    found: set[tuple[int, int, frozenset, frozenset]] = set()
    for e, f in combinations(range(len(fn.engines)), 2):
        for r_e in range(1, len(fn.groups[e]) + 1):
            for r_f in range(1, len(fn.groups[f]) + 1):
                s_e = _closed_side(fn, preds, rank, e, f, r_e, r_f)
                s_f = _closed_side(fn, preds, rank, f, e, r_f, r_e)
                if s_e and s_f:
                    found.add((e, f, s_e, s_f))
    return [s for s in found if not any(o != s and o[:2] == s[:2] and s[2] <= o[2] and s[3] <= o[3] for o in found)]


def virtual_stations(net: Network, fluid: FluidNetwork | None = None) -> list[VirtualStation]:
    """Every maximal virtual station of ``net`` under the engines' disciplines, the most loaded first."""
    fn = fluid or FluidNetwork.from_network(net)
    rate = net.service_rate()
    preds = _predecessors(fn)

    def util(side: frozenset) -> Exact:
        return sum((fn.buffers[k].rate * fn.buffers[k].mean / rate[fn.buffers[k].engine] for k in side), Exact(0))

    def labels(ks) -> tuple[str, ...]:
        return tuple(fn.labels[k] for k in sorted(ks))

    def feeders(side: frozenset) -> tuple[str, ...]:
        return labels({j for k in side for j in preds[k] if j not in side})

    out = []
    for e, f, s_e, s_f in _station_sets(fn):
        u = (util(s_e), util(s_f))
        out.append(VirtualStation((labels(s_e), labels(s_f)), (fn.engines[e], fn.engines[f]),
                                  (feeders(s_e), feeders(s_f)), u, u[0] + u[1]))
    return sorted(out, key=lambda vs: (-vs.load, vs.buffers))
