"""Stochastic simulation of a network of engines, batch by batch.

Each engine forms its batches with its own policy's compiled kernel
(``type(policy).kernel``, the same code the single-engine simulator and the
checkers run), with memory unlimited. The engine presents its resident requests
to the kernel in (priority rank, arrival at the engine) order; the kernels serve
requests in the order given, so a priority list is realised without touching
policy code. A
batch of ``b`` tokens lasts ``t_b`` (the engine's batch-time model); requests
that arrive meanwhile wait for the next batch. A request that finishes a step
moves to every successor step (a fork), and a join step starts once all its
predecessors are done. Classes arrive as Poisson processes; prompt and output
lengths are drawn independently for every step of every request.

Arrivals and lengths are drawn up front with ``numpy.random.default_rng(seed)``;
then one compiled event loop (:mod:`llmstab.fluid_models.networks.event_loop`)
runs every engine, so a seed fixes the whole run.

Examples
--------
>>> from llmstab.fluid_models.networks.examples import rybko_stolyar
>>> sim = simulate_network(rybko_stolyar(bad=False), horizon_s=200, seed=1)
>>> sim.arrived == sim.completed + sim.in_system
True
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
from numba.core.errors import NumbaExperimentalFeatureWarning

from ..policies.base import NO_LIMIT
from . import event_loop as L
from .network import Network

__all__ = ["NetworkSimulation", "simulate_network"]


@dataclass(frozen=True)
class NetworkSimulation:
    """Backlog trajectories of a simulated network.

    ``times`` are the recording instants (s); ``backlog[e]`` the requests resident
    at engine ``e`` and ``tokens`` the unprocessed tokens in the whole network at
    those instants. ``arrived``, ``completed`` and ``in_system`` count requests;
    ``batches[e]`` and ``served_tokens[e]`` count engine ``e``'s batches and the
    tokens they processed (batches still running at the horizon included);
    ``offered_tokens`` the tokens of every step that started.
    """

    times: np.ndarray
    backlog: dict
    tokens: np.ndarray
    arrived: int
    completed: int
    in_system: int
    batches: dict
    served_tokens: dict
    offered_tokens: int

    def growth_rate(self) -> float:
        """Least-squares slope (tokens/s) of the unprocessed tokens over the second half of the run."""
        h = len(self.times) // 2
        if len(self.times) - h < 2:
            return 0.0
        return float(np.polyfit(self.times[h:], self.tokens[h:], 1)[0])

    def summary(self) -> dict:
        """Counts and the backlog at the end, for evidence."""
        return {"horizon_s": float(self.times[-1]) if len(self.times) else 0.0, "arrived": self.arrived,
                "completed": self.completed, "in_system": self.in_system,
                "final_backlog": {e: int(v[-1]) for e, v in self.backlog.items()},
                "final_tokens": int(self.tokens[-1]), "token_growth_per_s": self.growth_rate(),
                "batches": dict(self.batches), "served_tokens": dict(self.served_tokens)}


@dataclass(frozen=True)
class _Draw:
    """Arrivals (time, class, number within the class) and every step's lengths, drawn up front."""

    times: np.ndarray
    classes: np.ndarray
    local: np.ndarray
    per_class: np.ndarray

    @classmethod
    def arrivals(cls, net: Network, horizon_s: float, rng: np.random.Generator) -> "_Draw":
        """Poisson arrivals of every class on ``[0, horizon_s]``, merged in time order."""
        times, classes = [], []
        for ci, c in enumerate(net.classes):
            rate, t, mine = float(c.rate), 0.0, []
            while True:
                gaps = rng.exponential(1.0 / rate, max(16, int(rate * horizon_s * 1.2) + 16))
                ts = t + np.cumsum(gaps)
                mine.append(ts[ts <= horizon_s])
                if ts[-1] > horizon_s:
                    break
                t = ts[-1]
            times.append(np.concatenate(mine))
            classes.append(np.full(times[-1].size, ci, np.int64))
        t_all, c_all = np.concatenate(times), np.concatenate(classes)
        order = np.argsort(t_all, kind="stable")
        t_all, c_all = t_all[order], c_all[order]
        local = np.zeros(c_all.size, np.int64)
        per_class = np.bincount(c_all, minlength=len(net.classes)).astype(np.int64)
        for ci in range(len(net.classes)):
            local[c_all == ci] = np.arange(per_class[ci])
        return cls(t_all, c_all, local, per_class)


def _steps(net: Network, draw: _Draw, rng: np.random.Generator, engine_index: dict) -> tuple:
    """The step table, successor lists and every step's drawn lengths (see the event loop's layout)."""
    steps = [(ci, s) for ci, c in enumerate(net.classes) for s in c.steps]
    sid = {s.id: k for k, (_, s) in enumerate(steps)}
    sg = net.step_graph
    table = np.zeros((len(steps), 6), np.int64)
    succ, plen, dlen, off = [], [], [], 0
    for k, (ci, s) in enumerate(steps):
        ne = net.engines[s.engine]
        rank = ne.priority.index(s.id) if s.id in ne.priority else len(ne.priority)
        nxt = [sid[v] for v in sg.successors(s.id)]
        table[k] = engine_index[s.engine], rank, sg.in_degree(s.id), off, len(succ), len(succ) + len(nxt)
        succ += nxt
        count = int(draw.per_class[ci])
        plen.append(s.prompt.sample(rng, count))
        dlen.append(s.decode.sample(rng, count))
        off += count
    return table, np.array(succ, np.int64), _flat(plen), _flat(dlen)


def _flat(parts: list) -> np.ndarray:
    return np.ascontiguousarray(np.concatenate(parts) if parts else np.zeros(0), np.int64)


def _stations(net: Network, steps: np.ndarray, draw: _Draw) -> tuple:
    """The station table, the kernels tuple and the engines' batch times, options and memories."""
    engines = list(net.engines.values())
    kernels = []
    station = np.zeros((len(engines), 9), np.int64)
    visits = np.bincount(steps[:, L.ENGINE], weights=[draw.per_class[c] for c in _step_classes(net)],
                         minlength=len(engines)).astype(np.int64)
    station[:, L.CAP] = visits + 1
    station[:, L.OFF] = np.concatenate([[0], np.cumsum(station[:, L.CAP])[:-1]])
    for e, ne in enumerate(engines):
        kernel = ne.policy.compiled_kernel()
        if kernel not in kernels:
            kernels.append(kernel)
        k_max = ne.engine.max_batch_requests
        station[e, L.SLOT] = kernels.index(kernel)
        station[e, L.B_MAX], station[e, L.K_MAX] = ne.engine.token_budget, NO_LIMIT if k_max is None else k_max
    if len(kernels) > L.KERNEL_SLOTS:
        raise ValueError(f"the network simulator takes at most {L.KERNEL_SLOTS} distinct schedulers")
    top = int(station[:, L.B_MAX].max())
    batch_s = np.full((len(engines), top + 1), np.inf)
    for e, ne in enumerate(engines):
        batch_s[e, : ne.engine.token_budget + 1] = ne.engine.batch_time.table(ne.engine.token_budget) / 1000.0
    params = _rows([ne.policy.parameters() for ne in engines], np.float64)
    memory = _rows([ne.policy.initial_memory() for ne in engines], np.int64)
    return station, tuple(kernels + kernels[:1] * (L.KERNEL_SLOTS - len(kernels))), batch_s, params, memory


def _step_classes(net: Network) -> list[int]:
    return [ci for ci, c in enumerate(net.classes) for _ in c.steps]


def _rows(rows: list[np.ndarray], dtype: type) -> np.ndarray:
    """Ragged rows as one C-contiguous matrix (zero-padded)."""
    out = np.zeros((len(rows), max((r.size for r in rows), default=0)), dtype)
    for i, r in enumerate(rows):
        out[i, : r.size] = r
    return out


def _roots(net: Network, steps: list) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each class's first steps (CSR ``roots`` / ``root_ptr``) and its number of last steps."""
    sg = net.step_graph
    index = {s.id: k for k, s in enumerate(steps)}
    roots = [[index[s.id] for s in c.steps if sg.in_degree(s.id) == 0] for c in net.classes]
    sinks = [sum(1 for s in c.steps if sg.out_degree(s.id) == 0) for c in net.classes]
    ptr = np.concatenate([[0], np.cumsum([len(r) for r in roots])]).astype(np.int64)
    return np.array([k for r in roots for k in r], np.int64), ptr, np.array(sinks, np.int64)


def simulate_network(net: Network, horizon_s: float, seed: int = 0, record_every: float | None = None) -> NetworkSimulation:
    """Simulate ``net`` for ``horizon_s`` seconds from empty.

    Parameters
    ----------
    net
        The network.
    horizon_s
        Simulated time (s).
    seed
        Seed of the random generator (arrivals and lengths); the run is reproducible.
    record_every
        Recording interval (s); default ``horizon_s / 200``.

    Returns
    -------
    NetworkSimulation
        The recorded backlog and the request and token counts.
    """
    rng = np.random.default_rng(seed)
    record_every = float(record_every or horizon_s / 200)
    draw = _Draw.arrivals(net, float(horizon_s), rng)
    steps, succ, plen, dlen = _steps(net, draw, rng, {e: i for i, e in enumerate(net.engines)})
    station, kernels, batch_s, params, memory = _stations(net, steps, draw)
    roots, root_ptr, sinks = _roots(net, [s for c in net.classes for s in c.steps])
    res = np.zeros((7, int(station[:, L.CAP].sum())), np.int64)
    n_rec = int(np.floor(horizon_s / record_every)) + 2
    rec_b, rec_tok, count = np.zeros((len(net.engines), n_rec), np.int64), np.zeros(n_rec, np.int64), np.zeros(5, np.int64)
    sinks_left = np.zeros(draw.times.size, np.int64)
    with warnings.catch_warnings():  # numba flags passing kernels as first-class functions as experimental
        warnings.simplefilter("ignore", NumbaExperimentalFeatureWarning)
        L.run_loop(kernels, station, steps, succ, roots, root_ptr, draw.times, draw.classes, draw.local, sinks,
                   sinks_left, res, plen, dlen, np.zeros(plen.size, np.int64), batch_s, params, memory,
                   float(horizon_s), record_every, rec_b, rec_tok, count)
    k = int(count[L.REC])
    names = list(net.engines)
    arrived, completed = int(count[L.ARRIVED]), int(count[L.COMPLETED])
    return NetworkSimulation(np.arange(k) * record_every, {e: rec_b[i, :k] for i, e in enumerate(names)}, rec_tok[:k],
                             arrived, completed, arrived - completed,
                             {e: int(station[i, L.BATCHES]) for i, e in enumerate(names)},
                             {e: int(station[i, L.SERVED]) for i, e in enumerate(names)}, int(count[L.ENTERED]))
