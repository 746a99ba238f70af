"""Stochastic simulation of a network of engines, batch by batch.

Each engine forms its batches with its own policy's compiled kernel
(``type(policy).kernel``, the same code the single-engine simulator and the
checkers run). The engine presents its resident requests to the kernel in
(priority rank, arrival at the engine) order; the kernels serve requests in the
order given, so a priority list is realised without touching policy code. A
batch of ``b`` tokens lasts ``t_b`` (the engine's batch-time model); requests
that arrive meanwhile wait for the next batch. A request that finishes a step
moves to every successor step (a fork), and a join step starts once all its
predecessors are done. Classes arrive as Poisson processes; prompt and output
lengths are drawn afresh for every step.

Examples
--------
>>> from llmstab.fluid_models.networks.examples import rybko_stolyar
>>> sim = simulate_network(rybko_stolyar(bad=False), horizon_s=200, seed=1)
>>> sim.arrived == sim.completed + sim.in_system
True
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass

import numpy as np

from ..policies.base import run_on_lengths
from .network import Network

__all__ = ["NetworkSimulation", "simulate_network"]

_NO_LIMIT = np.int64(2**62)


@dataclass(frozen=True)
class NetworkSimulation:
    """Backlog trajectories of a simulated network.

    ``times`` are the recording instants (s); ``backlog[e]`` the requests resident
    at engine ``e`` and ``tokens`` the unprocessed tokens in the whole network at
    those instants. ``arrived``, ``completed`` and ``in_system`` count requests;
    ``batches[e]`` and ``served_tokens[e]`` count engine ``e``'s batches and the
    tokens they processed (batches still running at the horizon included).
    """

    times: np.ndarray
    backlog: dict
    tokens: np.ndarray
    arrived: int
    completed: int
    in_system: int
    batches: dict
    served_tokens: dict

    @property
    def total_backlog(self) -> np.ndarray:
        """Requests resident at all engines (a forked request counts once per branch)."""
        return np.sum([v for v in self.backlog.values()], axis=0)

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


class _Station:
    """Resident requests of one engine as growable arrays."""

    def __init__(self, ne, ranks: dict) -> None:
        self.ne = ne
        self.kernel = ne.policy.compiled_kernel()
        self.params = ne.policy.parameters()
        self.memory = ne.policy.initial_memory().copy()
        self.b_max = np.int64(ne.engine.token_budget)
        k = ne.engine.max_batch_requests
        self.k_max = _NO_LIMIT if k is None else np.int64(k)
        self.ranks = ranks
        cap = 64
        self.pf = np.zeros(cap, np.int64)
        self.dc = np.zeros(cap, np.int64)
        self.rank = np.zeros(cap, np.int64)
        self.since = np.zeros(cap)
        self.req = np.zeros(cap, np.int64)
        self.step = np.zeros(cap, np.int64)
        self.n = 0
        self.busy = False
        self.batch = None
        self.batches = 0
        self.served = 0

    def add(self, t: float, req: int, step: int, rank: int, prompt: int, decode: int) -> None:
        if self.n == len(self.pf):
            for name in ("pf", "dc", "rank", "since", "req", "step"):
                a = getattr(self, name)
                setattr(self, name, np.concatenate([a, np.zeros_like(a)]))
        i = self.n
        self.pf[i], self.dc[i], self.rank[i], self.since[i], self.req[i], self.step[i] = prompt, decode, rank, t, req, step
        self.n += 1

    def start(self) -> int:
        """Form a batch; returns its token count (0: nothing to do)."""
        n = self.n
        order = np.lexsort((self.since[:n], self.rank[:n]))
        pf, dc = self.pf[order].copy(), self.dc[order].copy()
        take_p, take_d = np.zeros(n, np.int64), np.zeros(n, np.int64)
        tokens = int(run_on_lengths(self.kernel, pf, dc, np.int64(n), self.b_max, self.k_max, self.params, self.memory,
                                    take_p, take_d))
        self.batch = (order, take_p, take_d)
        self.batches += 1
        self.served += tokens
        return tokens

    def finish(self) -> list[tuple[int, int]]:
        """Apply the running batch; remove and return the (request, step) pairs that finished."""
        order, take_p, take_d = self.batch
        self.pf[order] -= take_p
        self.dc[order] -= take_d
        n = self.n
        done = self.dc[:n] == 0
        out = list(zip(self.req[:n][done].tolist(), self.step[:n][done].tolist()))
        keep = ~done
        m = int(keep.sum())
        for name in ("pf", "dc", "rank", "since", "req", "step"):
            a = getattr(self, name)
            a[:m] = a[:n][keep]
        self.n = m
        self.batch = None
        return out


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
    """
    rng = np.random.default_rng(seed)
    record_every = float(record_every or horizon_s / 200)
    steps = [s for c in net.classes for s in c.steps]
    sid = {s.id: i for i, s in enumerate(steps)}
    sg = net.step_graph
    succ = [[sid[v] for v in sg.successors(s.id)] for s in steps]
    n_pred = [sg.in_degree(s.id) for s in steps]
    sinks = [sum(1 for s in c.steps if sg.out_degree(s.id) == 0) for c in net.classes]
    roots = [[sid[s.id] for s in c.steps if sg.in_degree(s.id) == 0] for c in net.classes]
    stations = {}
    for name, ne in net.engines.items():
        ranks = {sid[s]: r for r, s in enumerate(ne.priority)}
        stations[name] = _Station(ne, ranks)
    default_rank = {name: len(ne.priority) for name, ne in net.engines.items()}

    arrivals = []
    for ci, c in enumerate(net.classes):
        rate = float(c.rate)
        t, times = 0.0, []
        while True:
            gaps = rng.exponential(1.0 / rate, max(16, int(rate * horizon_s * 1.2) + 16))
            ts = t + np.cumsum(gaps)
            times.append(ts[ts <= horizon_s])
            if ts[-1] > horizon_s:
                break
            t = ts[-1]
        arrivals += [(float(x), ci) for x in np.concatenate(times)]
    arrivals.sort()

    heap: list = []
    joins: dict = {}
    sinks_left: dict = {}
    counts = {"arrived": 0, "completed": 0}

    def enter(t: float, req: int, k: int) -> None:
        s = steps[k]
        st = stations[s.engine]
        st.add(t, req, k, st.ranks.get(k, default_rank[s.engine]),
               int(s.prompt.sample(rng, 1)[0]), int(s.decode.sample(rng, 1)[0]))
        if not st.busy:
            begin(t, s.engine)

    def begin(t: float, name: str) -> None:
        st = stations[name]
        if st.n == 0:
            st.busy = False
            return
        tokens = st.start()
        if tokens == 0:  # the policy forms no batch: wait for the next arrival
            st.busy, st.batch = False, None
            return
        st.busy = True
        heapq.heappush(heap, (t + float(st.ne.engine.batch_time(tokens)) / 1000.0, name))

    def complete(t: float, req: int, k: int) -> None:
        if not succ[k]:
            sinks_left[req] -= 1
            if sinks_left[req] == 0:
                del sinks_left[req]
                counts["completed"] += 1
            return
        for nxt in succ[k]:
            if n_pred[nxt] == 1:
                enter(t, req, nxt)
            else:
                key = (req, nxt)
                joins[key] = joins.get(key, 0) + 1
                if joins[key] == n_pred[nxt]:
                    del joins[key]
                    enter(t, req, nxt)

    rec_t, rec_b, rec_tok = [], {e: [] for e in stations}, []
    next_rec = 0.0

    def record(until: float) -> None:
        nonlocal next_rec
        while next_rec <= until and next_rec <= horizon_s:
            rec_t.append(next_rec)
            for e, st in stations.items():
                rec_b[e].append(st.n)
            rec_tok.append(sum(int(st.pf[:st.n].sum() + st.dc[:st.n].sum()) for st in stations.values()))
            next_rec += record_every

    ai, req_id = 0, 0
    while True:
        t_arr = arrivals[ai][0] if ai < len(arrivals) else np.inf
        t_end = heap[0][0] if heap else np.inf
        t = min(t_arr, t_end)
        if t > horizon_s:
            break
        record(t)
        if t_arr <= t_end:
            ci = arrivals[ai][1]
            ai += 1
            counts["arrived"] += 1
            sinks_left[req_id] = sinks[ci]
            for k in roots[ci]:
                enter(t, req_id, k)
            req_id += 1
        else:
            _, name = heapq.heappop(heap)
            st = stations[name]
            for req, k in st.finish():
                complete(t, req, k)
            begin(t, name)
    record(horizon_s)
    return NetworkSimulation(np.array(rec_t), {e: np.array(v) for e, v in rec_b.items()}, np.array(rec_tok),
                             counts["arrived"], counts["completed"], len(sinks_left),
                             {e: st.batches for e, st in stations.items()}, {e: st.served for e, st in stations.items()})
