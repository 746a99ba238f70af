"""Classical networks written as token networks (the same ones as ``examples/network_*.yaml``).

Every engine here runs batches of at most ``b_max`` tokens that take one second
whatever their size (a staircase with ``a = 0``), so its capacity is ``b_max``
tokens/s and loads are easy to read.

Examples
--------
>>> net = rybko_stolyar(bad=True)
>>> net.utilisation()
{'e1': Exact(9, 10), 'e2': Exact(9, 10)}
>>> lu_kumar(rate=1).utilisation()
{'e1': Exact(31, 50), 'e2': Exact(31, 50)}
"""

from __future__ import annotations

from llmstab.theory.exact_linalg import Exact

from ..batch_time import Staircase, exact_number
from ..distributions import Deterministic, LengthDistribution, Poisson
from ..engine import Engine
from .network import Network, NetworkClass, NetworkEngine, Step
from ..policies import make_policy

__all__ = ["unit_engine", "rybko_stolyar", "lu_kumar", "kumar_seidman", "fork_join", "agent_loop", "fork_join_loop"]


def unit_engine(name: str, b_max: int, priority: tuple[str, ...] = (), policy: str = "fcfs") -> NetworkEngine:
    """An engine whose batches of up to ``b_max`` tokens take 1 s (capacity ``b_max`` tokens/s)."""
    return NetworkEngine(name, Engine(Staircase(1000, 0, b_max), b_max), make_policy(policy), tuple(priority))


def _step(sid: str, engine: str, prompt: LengthDistribution, decode: LengthDistribution) -> Step:
    return Step(sid, engine, prompt, decode)


def rybko_stolyar(bad: bool = True, load: object = Exact(9, 10), b_max: int = 768) -> Network:
    """The LLM Rybko-Stolyar network of Li-Dai-Peng (Section 5).

    Type A: a short step ``A1`` at ``e1`` (prompt and output Poisson, mean 32), then a
    long step ``A2`` at ``e2`` (prompt mean 512, output mean 32); type B the reverse.
    Each type arrives at ``load * b_max / 608`` per s, so each engine is at ``load``.
    ``bad=True`` gives priority to the step about to leave (``A2``, ``B2``).
    """
    rate = exact_number(load) * b_max / 608
    short, long_, out = Poisson(32), Poisson(512), Poisson(32)
    a = NetworkClass("A", rate, (_step("A1", "e1", short, out), _step("A2", "e2", long_, out)))
    b = NetworkClass("B", rate, (_step("B1", "e2", short, out), _step("B2", "e1", long_, out)))
    p1, p2 = (("B2", "A1"), ("A2", "B1")) if bad else (("A1", "B2"), ("B1", "A2"))
    return Network({"e1": unit_engine("e1", b_max, p1), "e2": unit_engine("e2", b_max, p2)}, (a, b))


def lu_kumar(rate: object = 1, small: int = 1, large: int = 30, b_max: int = 100) -> Network:
    """The Lu-Kumar network: one class visits ``e1, e2, e2, e1`` (steps ``s1..s4``).

    Steps 1 and 3 need ``2 * small`` tokens, steps 2 and 4 ``2 * large`` (prompt and
    output each half). The bad priority serves ``s4`` before ``s1`` and ``s2`` before
    ``s3``; it is stable iff the engine loads are below 1 and
    ``rate * (m2 + m4) < b_max`` (the virtual station {s2, s4}).
    """
    s, big = Deterministic(small), Deterministic(large)
    route = (_step("s1", "e1", s, s), _step("s2", "e2", big, big), _step("s3", "e2", s, s), _step("s4", "e1", big, big))
    engines = {"e1": unit_engine("e1", b_max, ("s4", "s1")), "e2": unit_engine("e2", b_max, ("s2", "s3"))}
    return Network(engines, (NetworkClass("job", rate, route),))


def kumar_seidman(rate_a: object = 1, rate_b: object = 1, m: tuple[int, int, int, int] = (1, 30, 1, 30),
                  b_max: int = 100) -> Network:
    """The Kumar-Seidman network: class a visits ``e1`` (``a1``) then ``e2`` (``a2``);
    class b visits ``e2`` (``b1``) then ``e1`` (``b2``); priority to the exiting steps.

    Step ``i`` needs ``2 * m[i]`` tokens (prompt and output ``m[i]`` each). Stable iff the
    engine loads are below 1 and ``rate_a * m_a2 + rate_b * m_b2 < b_max``.
    """
    d = [Deterministic(x) for x in m]
    a = NetworkClass("a", rate_a, (_step("a1", "e1", d[0], d[0]), _step("a2", "e2", d[1], d[1])))
    b = NetworkClass("b", rate_b, (_step("b1", "e2", d[2], d[2]), _step("b2", "e1", d[3], d[3])))
    engines = {"e1": unit_engine("e1", b_max, ("b2", "a1")), "e2": unit_engine("e2", b_max, ("a2", "b1"))}
    return Network(engines, (a, b))


def fork_join(rate: object = 1, tool_tokens: int = 40, b_max: int = 100, policy: str = "sarathi") -> Network:
    """An agent workflow: a planner fans out to two tools and a writer joins their results.

    ``plan`` (20 tokens) at ``planner``; ``search`` (``tool_tokens``) at ``tool1`` and
    ``code`` (30 tokens) at ``tool2``, both after ``plan`` (a fork); ``answer`` (20
    tokens) at ``writer`` after both tools (a join). Every engine has capacity
    ``b_max`` tokens/s, so ``tool1`` is at ``rate * tool_tokens / b_max``.
    """
    half = Deterministic(10)
    tool = Deterministic(tool_tokens // 2)
    route = (
        Step("plan", "planner", half, half),
        Step("search", "tool1", tool, tool, after=("plan",)),
        Step("code", "tool2", Deterministic(15), Deterministic(15), after=("plan",)),
        Step("answer", "writer", half, half, after=("search", "code")),
    )
    engines = {e: unit_engine(e, b_max, policy=policy) for e in ("planner", "tool1", "tool2", "writer")}
    return Network(engines, (NetworkClass("agent", rate, route),))


def agent_loop(rate: object = 1, policy: str = "sarathi", b_max: int = 100) -> Network:
    """An agent that returns to its planner: ``plan`` forks to two tools, and the planner reads
    each tool's result in its own step (``read1`` after ``search``, ``read2`` after ``code``).

    There is no join, but the routes go planner -> tool -> planner, so the engine graph is
    cyclic and the DAG theorem does not apply. Loads: planner ``rate * 50 / b_max``,
    tool1 ``rate * 40 / b_max``, tool2 ``rate * 30 / b_max``.
    """
    d = Deterministic
    route = (
        Step("plan", "planner", d(10), d(10)),
        Step("search", "tool1", d(20), d(20), after=("plan",)),
        Step("code", "tool2", d(15), d(15), after=("plan",)),
        Step("read1", "planner", d(10), d(5), after=("search",)),
        Step("read2", "planner", d(10), d(5), after=("code",)),
    )
    engines = {e: unit_engine(e, b_max, policy=policy) for e in ("planner", "tool1", "tool2")}
    return Network(engines, (NetworkClass("agent", rate, route),))


def fork_join_loop(rate: object = 1, tool_tokens: int = 40, b_max: int = 100, policy: str = "sarathi") -> Network:
    """A planner fans out to two tools and joins their results itself: ``plan`` at ``planner``,
    ``search`` (``tool_tokens``) at ``tool1`` and ``code`` (30 tokens) at ``tool2``, both after
    ``plan``, and ``answer`` back at ``planner`` after both. The join makes the engine graph
    cyclic (planner -> tool -> planner). Loads: planner ``rate * 40 / b_max``, tool1
    ``rate * tool_tokens / b_max``, tool2 ``rate * 30 / b_max``.
    """
    d = Deterministic
    route = (
        Step("plan", "planner", d(10), d(10)),
        Step("search", "tool1", d(tool_tokens // 2), d(tool_tokens // 2), after=("plan",)),
        Step("code", "tool2", d(15), d(15), after=("plan",)),
        Step("answer", "planner", d(10), d(10), after=("search", "code")),
    )
    engines = {e: unit_engine(e, b_max, policy=policy) for e in ("planner", "tool1", "tool2")}
    return Network(engines, (NetworkClass("agent", rate, route),))
