"""Networks of engines (AI-agent workflows): engines, classes, routes of steps, loads.

A *network* has named engines (each an :class:`~llmstab.fluid_models.engine.Engine` with
a :class:`~llmstab.fluid_models.policies.Policy` and an optional priority list of step
ids) and request classes. A class arrives at a Poisson ``rate`` (requests/s) and
follows a *route*: steps ``{id, engine, prompt, decode, after}``. ``after``
names the steps that must finish before a step starts; a step with several
successors forks, one with several predecessors joins. By default a step comes
after the previous step of its route (a sequence). A route that visits an engine
twice makes the network cyclic.

In the fluid limit (time and backlog scaled together) each step is two *buffers*,
``(class, step, "prefill")`` then ``(class, step, "decode")``, and an engine is
a server of tokens at its capacity ``max_b b / t_b``. The traffic equations give
every step the rate of its class (each step runs once per request, every forked
branch included), so an engine's token load is
``sum over its steps of rate * (m_p + m_d)``; its utilisation ``rho`` is that
load over the engine's capacity.

Examples
--------
>>> from llmstab.fluid_models.batch_time import Staircase
>>> from llmstab.fluid_models.distributions import Deterministic
>>> from llmstab.fluid_models.engine import Engine
>>> from llmstab.fluid_models.policies import make_policy
>>> one = Engine(Staircase(1000, 0, 100), 100)          # 1 s per batch of <= 100 tokens
>>> engines = {e: NetworkEngine(e, one, make_policy("fcfs")) for e in ("plan", "tool")}
>>> d = Deterministic(10)
>>> route = (Step("p", "plan", d, d), Step("t", "tool", d, d, after=("p",)))
>>> net = Network(engines, (NetworkClass("job", 2, route),))
>>> net.utilisation()
{'plan': Exact(2, 5), 'tool': Exact(2, 5)}
>>> net.is_feedforward, net.bottleneck()
(True, 'plan')
"""

from __future__ import annotations

from dataclasses import dataclass, field

import networkx as nx

from llmstab.theory.exact_linalg import Exact

from ..batch_time import exact_number
from ..distributions import LengthDistribution
from ..engine import Engine
from ..errors import InputError
from ..policies import Policy

__all__ = ["NetworkError", "Step", "NetworkClass", "NetworkEngine", "Buffer", "Network"]


class NetworkError(InputError):
    """An inconsistent network; ``field`` names the offending part (dotted path)."""

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(field, problem)


@dataclass(frozen=True)
class Step:
    """One step of a route: ``prompt`` and ``decode`` tokens processed at ``engine``.

    ``after`` lists the step ids that must finish first; ``None`` means "after the
    previous step of the route" (nothing for the first step).
    """

    id: str
    engine: str
    prompt: LengthDistribution
    decode: LengthDistribution
    after: tuple[str, ...] | None = None

    @property
    def tokens(self) -> Exact:
        """Mean tokens one request needs at this step, ``m_p + m_d``."""
        return self.prompt.mean + self.decode.mean


@dataclass(frozen=True)
class NetworkClass:
    """Requests of one type: Poisson ``rate`` (per s) and their route of steps."""

    name: str
    rate: object
    steps: tuple[Step, ...]

    def __post_init__(self) -> None:
        object.__setattr__(self, "rate", exact_number(self.rate))
        object.__setattr__(self, "steps", tuple(self.steps))

    def predecessors(self, i: int) -> tuple[str, ...]:
        """The step ids that step ``i`` waits for."""
        s = self.steps[i]
        if s.after is not None:
            return tuple(s.after)
        return (self.steps[i - 1].id,) if i > 0 else ()


@dataclass(frozen=True)
class NetworkEngine:
    """A named engine with its scheduler and an optional priority list (step ids, highest first)."""

    name: str
    engine: Engine
    policy: Policy
    priority: tuple[str, ...] = ()


@dataclass(frozen=True)
class Buffer:
    """A fluid buffer: requests of ``cls`` at ``step`` in ``phase`` at ``engine``.

    ``mean`` is the mean number of tokens a request needs in this phase and
    ``rate`` its arrival rate from the traffic equations (requests/s).
    """

    cls: str
    step: str
    phase: str
    engine: str
    mean: Exact
    rate: Exact

    @property
    def label(self) -> str:
        """``step.p`` or ``step.d``."""
        return f"{self.step}.{self.phase[0]}"


@dataclass(frozen=True)
class Network:
    """A validated network of engines and request classes (see the module docstring)."""

    engines: dict[str, NetworkEngine]
    classes: tuple[NetworkClass, ...]
    _steps: dict = field(init=False, repr=False, compare=False)
    _memo: dict = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "classes", tuple(self.classes))
        if not self.engines:
            raise NetworkError("engines", "at least one engine is needed")
        if not self.classes:
            raise NetworkError("classes", "at least one class is needed")
        steps: dict[str, tuple[int, int]] = {}
        names = set()
        for ci, c in enumerate(self.classes):
            where = f"classes[{ci}]"
            if c.name in names:
                raise NetworkError(f"{where}.name", f"class {c.name!r} is named twice")
            names.add(c.name)
            if c.rate <= 0:
                raise NetworkError(f"{where}.rate", f"must be positive, got {c.rate}")
            if not c.steps:
                raise NetworkError(f"{where}.route", "must list at least one step")
            for si, s in enumerate(c.steps):
                at = f"{where}.route[{si}]"
                if s.id in steps:
                    raise NetworkError(f"{at}.id", f"step id {s.id!r} is used twice")
                steps[s.id] = (ci, si)
                if s.engine not in self.engines:
                    raise NetworkError(f"{at}.engine", f"unknown engine {s.engine!r} (known: {', '.join(sorted(self.engines))})")
        for ci, c in enumerate(self.classes):
            for si in range(len(c.steps)):
                for p in c.predecessors(si):
                    if p not in steps or steps[p][0] != ci:
                        raise NetworkError(f"classes[{ci}].route[{si}].after",
                                           f"{p!r} is not a step of class {c.name!r}")
        graph = self._build_step_graph()
        if not nx.is_directed_acyclic_graph(graph):  # edges stay inside a class: find the first class with a cycle
            for ci, c in enumerate(self.classes):
                own = graph.subgraph(s.id for s in c.steps)
                if not nx.is_directed_acyclic_graph(own):
                    cycle = " -> ".join(u for u, _ in nx.find_cycle(own))
                    raise NetworkError(f"classes[{ci}].route", f"the after: relation has a cycle ({cycle})")
        for name, e in self.engines.items():
            seen = set()
            for i, sid in enumerate(e.priority):
                at = f"engines.{name}.policy.priority[{i}]"
                if sid in seen:
                    raise NetworkError(at, f"step {sid!r} is listed twice")
                seen.add(sid)
                if sid not in steps:
                    raise NetworkError(at, f"unknown step {sid!r}")
                ci, si = steps[sid]
                if self.classes[ci].steps[si].engine != name:
                    raise NetworkError(at, f"step {sid!r} does not visit engine {name!r}")
        object.__setattr__(self, "_steps", steps)
        object.__setattr__(self, "_memo", {"step_graph": nx.freeze(graph)})

    def _build_step_graph(self) -> nx.DiGraph:
        g = nx.DiGraph()
        g.add_nodes_from((s.id, {"cls": c.name, "engine": s.engine}) for c in self.classes for s in c.steps)
        g.add_edges_from((p, s.id) for c in self.classes for i, s in enumerate(c.steps) for p in c.predecessors(i))
        return g

    def _memoised(self, key: str, compute) -> object:
        """``compute()`` once per network (it is immutable); later calls return the stored value."""
        if key not in self._memo:
            self._memo[key] = compute()
        return self._memo[key]

    # --- structure -----------------------------------------------------------------------

    def step(self, step_id: str) -> tuple[NetworkClass, Step]:
        """The class and the step with id ``step_id``."""
        ci, si = self._steps[step_id]
        return self.classes[ci], self.classes[ci].steps[si]

    @property
    def step_graph(self) -> nx.DiGraph:
        """Steps as nodes (attributes ``cls``, ``engine``), precedence as edges (built once, frozen)."""
        return self._memo["step_graph"]

    @property
    def graph(self) -> nx.DiGraph:
        """Engines as nodes; an edge ``e -> f`` labelled with the classes that move from ``e`` to ``f`` (frozen)."""
        return self._memoised("graph", self._engine_graph)

    def _engine_graph(self) -> nx.DiGraph:
        g = nx.DiGraph()
        g.add_nodes_from(self.engines)
        sg = self.step_graph
        for u, v in sg.edges:
            e, f = sg.nodes[u]["engine"], sg.nodes[v]["engine"]
            cls = sg.nodes[v]["cls"]
            if g.has_edge(e, f):
                g.edges[e, f]["classes"].add(cls)
            else:
                g.add_edge(e, f, classes={cls})
        return nx.freeze(g)

    @property
    def is_feedforward(self) -> bool:
        """Whether engines can be ordered so that every move goes to the same or a later engine.

        True for DAG and fork-join workflows whose engine graph (self-loops aside) is acyclic.
        """
        def acyclic() -> bool:
            g = nx.DiGraph(self.graph)
            g.remove_edges_from(list(nx.selfloop_edges(g)))
            return nx.is_directed_acyclic_graph(g)

        return self._memoised("feedforward", acyclic)

    @property
    def has_joins(self) -> bool:
        """Whether some step waits for two or more steps."""
        return any(len(c.predecessors(i)) > 1 for c in self.classes for i in range(len(c.steps)))

    # --- traffic equations and loads -----------------------------------------------------

    def step_rates(self) -> dict[str, Exact]:
        """Arrival rate (requests/s) of every step from the traffic equations.

        Roots receive the class rate; a step receives what its predecessors send
        (every forked branch receives a copy, a join waits for all its inputs, so
        it receives the smallest of their rates). One pass in topological order:
        linear in the number of steps and precedence edges.
        """
        return dict(self._memoised("step_rates", self._traffic))

    def _traffic(self) -> dict[str, Exact]:
        rates: dict[str, Exact] = {}
        sg = self.step_graph
        for sid in nx.topological_sort(sg):
            preds = list(sg.predecessors(sid))
            rates[sid] = min(rates[p] for p in preds) if preds else self.classes[self._steps[sid][0]].rate
        return rates

    def capacity(self) -> dict[str, Exact | None]:
        """Exact token capacity ``1000 max_b b/t_b`` (tokens/s) of each engine: no scheduler serves
        more. ``None`` where ``k_max < b_max`` makes the capacity a region (Li-Dai-Peng Section 6)."""
        def compute() -> dict:
            out = {}
            for name, e in self.engines.items():
                k = e.engine.max_batch_requests
                out[name] = e.engine.capacity.tokens_per_s if k is None or k >= e.engine.token_budget else None
            return out

        return dict(self._memoised("capacity", compute))

    def service_rate(self) -> dict[str, Exact]:
        """Tokens/s a work-conserving engine serves with a backlog: full batches, ``1000 b_max / t_(b_max)``."""
        return dict(self._memoised("service_rate", lambda: {name: 1000 * e.engine.capacity.full_batch_rate
                                                             for name, e in self.engines.items()}))

    def token_load(self) -> dict[str, Exact]:
        """Token load (tokens/s) offered to each engine: ``sum rate * (m_p + m_d)`` over its steps."""
        def compute() -> dict:
            terms: dict[str, list] = {name: [] for name in self.engines}
            rates = self._memoised("step_rates", self._traffic)
            for c in self.classes:
                for s in c.steps:
                    terms[s.engine].append(rates[s.id] * s.tokens)
            return {name: sum(t, Exact(0)) for name, t in terms.items()}

        return dict(self._memoised("token_load", compute))

    def utilisation(self) -> dict[str, Exact | None]:
        """``rho_e`` = token load / capacity for each engine (``None`` without a scalar capacity)."""
        def compute() -> dict:
            cap, load = self.capacity(), self.token_load()
            return {e: (load[e] / cap[e] if cap[e] is not None else None) for e in self.engines}

        return dict(self._memoised("utilisation", compute))

    def bottleneck(self) -> str:
        """The engine with the largest utilisation (among those with a scalar capacity)."""
        rho = {e: r for e, r in self.utilisation().items() if r is not None}
        return max(rho, key=lambda e: rho[e]) if rho else next(iter(self.engines))

    # --- fluid buffers -------------------------------------------------------------------

    def buffers(self) -> list[Buffer]:
        """The fluid buffers, two per step (prefill then decode), in route order."""
        rates = self.step_rates()
        out = []
        for c in self.classes:
            for s in c.steps:
                out.append(Buffer(c.name, s.id, "prefill", s.engine, s.prompt.mean, rates[s.id]))
                out.append(Buffer(c.name, s.id, "decode", s.engine, s.decode.mean, rates[s.id]))
        return out
