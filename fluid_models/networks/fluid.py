"""Fluid model of a network of engines: buffers of requests served at token rates.

Buffer ``k`` holds ``q_k`` requests (fluid) of one (class, step, phase), each
needing ``m_k`` tokens at engine ``e(k)``. When the engine devotes the fraction
``u_k`` of its capacity ``C_e`` (tokens/s) to the buffer, requests leave it at
``mu_k u_k`` with ``mu_k = C_e / m_k`` and go to the next buffer(s)::

    q_k(t) = q_k(0) + alpha_k t + sum_j P_jk mu_j T_j(t) - mu_k T_k(t),
    T_k(t) = int_0^t u_k,   sum_{k at e} u_k <= 1,   u >= 0.

A *discipline* per engine is an ordered list of groups of buffers: a group is
served only when every earlier group is empty (a static priority), buffers in a
group share what is left in proportion to their token content (FCFS-like
sharing), and an empty buffer gets exactly what keeps it empty while capacity
lasts. Engines are work-conserving: the whole capacity is used while any of
their buffers holds fluid. A priority list of steps gives groups of one buffer;
without one, the policy's ``fluid_phase_order`` gives the groups (Sarathi-Serve:
decodes first; Orca: prefill first; FCFS: the older, decoding requests first;
any other policy: one group, any split of the engine).

Both scalings agree: if ``q`` is a fluid path, so is ``r q(t / r)`` for ``r > 0``.
A path that returns to ``r q(0)`` with ``r > 1`` therefore grows without bound;
that is the divergence certificate :meth:`FluidNetwork.priority_path` looks for.

Examples
--------
>>> from llmstab.fluid_models.networks.examples import rybko_stolyar
>>> fn = FluidNetwork.from_network(rybko_stolyar(bad=True))
>>> fn.labels[:4]
('A1.p', 'A1.d', 'A2.p', 'A2.d')
>>> path = fn.priority_path({"A1.p": 100}, horizon=5000)
>>> path.outcome, path.certificate["ratio"] > 1
('grows', True)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from fractions import Fraction
from typing import Mapping, Sequence

import numpy as np

from llmstab.theory.exact_linalg import solve, to_fraction, to_rational

from ..errors import InputError
from .network import Buffer, Network

__all__ = ["FluidNetwork", "FluidPath", "FluidError", "nonzero_state"]


class FluidError(InputError):
    """The network has no fluid model of the requested kind (a reason in the message)."""


def _solve(A: list, b: list) -> list:
    """A solution of ``A x = b`` in exact fractions (free variables set to 0).

    A singular system arises when effort can circulate through empty buffers with loop
    gain exactly 1; any solution is then a valid allocation. ``FluidError`` if none exists.
    """
    x = solve(A, b)
    if x is None:
        raise FluidError("the allocation equations have no solution")
    return x


def _solve_float(A: list, b: list) -> list:
    """A least-squares solution of ``A x = b`` in floats (``FluidError`` if it is not a solution)."""
    M, rhs = np.array(A, float), np.array(b, float)
    x = np.linalg.lstsq(M, rhs, rcond=None)[0]
    if not np.allclose(M @ x, rhs, atol=1e-9):
        raise FluidError("the allocation equations have no solution")
    return list(x)


def nonzero_state(labels: Sequence[str], state: Sequence) -> dict[str, str]:
    """The buffers of ``state`` that hold fluid (requests), exact values as text, for reports.

    >>> nonzero_state(("A1.p", "A1.d"), [Fraction(5, 2), Fraction(0)])
    {'A1.p': '5/2'}
    """
    return {lab: str(x) for lab, x in zip(labels, state) if x}


@dataclass(frozen=True)
class FluidPath:
    """A fluid trajectory: breakpoints ``times`` and states ``states`` (one row per time).

    ``outcome`` is ``drains`` (reached zero), ``grows`` (a divergence certificate
    or sustained growth) or ``undecided``; ``certificate`` holds, for an exact
    self-similar path, the two times and the ratio ``r`` with ``q(t1) = r q(t0)``.
    """

    labels: tuple[str, ...]
    times: list
    states: list
    exact: bool
    outcome: str
    certificate: dict | None = None

    def totals(self) -> np.ndarray:
        """Total fluid (requests) at each breakpoint."""
        return np.array([float(sum(s)) for s in self.states])

    def repeated(self, cycles: int) -> "FluidPath":
        """The path continued exactly over ``cycles`` more self-similar cycles.

        If ``q(t1) = r q(t0)``, the path goes on as ``q(t1 + s) = r q(t0 + s / r)``
        (the fluid model is invariant under ``(q, t) -> (r q, r t)``).
        """
        if self.certificate is None or not self.exact:
            return self
        c = self.certificate
        r, t0, t1 = c["ratio"], c["t0"], c["t1"]
        i0 = self.times.index(t0)
        seg_t, seg_q = self.times[i0:], self.states[i0:]
        times, states = list(self.times), list(self.states)
        scale, start = r, t1
        for _ in range(cycles):
            for t, q in zip(seg_t[1:], seg_q[1:]):
                times.append(start + scale * (t - t0))
                states.append([scale * x for x in q])
            start = times[-1]
            scale *= r
        return FluidPath(self.labels, times, states, True, self.outcome, self.certificate)


@dataclass(frozen=True)
class FluidNetwork:
    """The fluid model of a :class:`~llmstab.fluid_models.networks.network.Network` (see the module docstring)."""

    buffers: tuple[Buffer, ...]
    engines: tuple[str, ...]
    engine_of: tuple[int, ...]
    mu: tuple[Fraction, ...]
    alpha: tuple[Fraction, ...]
    successors: tuple[tuple[int, ...], ...]
    joins: dict
    groups: tuple[tuple[tuple[int, ...], ...], ...]
    capacity: tuple[Fraction, ...] = field(repr=False, default=())  # full-batch token rate per engine
    _cache: dict = field(repr=False, compare=False, default_factory=dict)

    @property
    def labels(self) -> tuple[str, ...]:
        """Buffer labels ``step.p`` / ``step.d``."""
        return tuple(b.label for b in self.buffers)

    @property
    def size(self) -> int:
        """Number of buffers."""
        return len(self.buffers)

    @classmethod
    def from_network(cls, net: Network) -> "FluidNetwork":
        """Build the fluid model (engines serve full batches: ``b_max / t_(b_max)`` tokens per unit
        time); ``FluidError`` if an engine's ``k_max`` makes its capacity a region. Engines are
        taken to be work-conserving: the caller checks that of their policies."""
        bufs = net.buffers()
        engines = tuple(net.engines)
        index = {(b.step, b.phase): k for k, b in enumerate(bufs)}
        cap, rate = net.capacity(), net.service_rate()
        for e in engines:
            if cap[e] is None:
                raise FluidError(f"engine {e}: k_max makes its capacity a region; no scalar token server")
        caps = tuple(to_fraction(rate[e]) for e in engines)
        engine_of = tuple(engines.index(b.engine) for b in bufs)
        mu = tuple(caps[engine_of[k]] / to_fraction(b.mean) for k, b in enumerate(bufs))
        succ: list[list[int]] = [[] for _ in bufs]
        joins: dict[int, tuple[int, ...]] = {}
        alpha = [Fraction(0)] * len(bufs)
        sg = net.step_graph
        for c in net.classes:
            for s in c.steps:
                kp, kd = index[(s.id, "prefill")], index[(s.id, "decode")]
                succ[kp].append(kd)
                preds = list(sg.predecessors(s.id))
                if not preds:
                    alpha[kp] = to_fraction(c.rate)
                elif len(preds) == 1:
                    succ[index[(preds[0], "decode")]].append(kp)
                else:
                    joins[kp] = tuple(index[(p, "decode")] for p in preds)
        groups = tuple(cls._groups(net, e, index) for e in engines)
        return cls(tuple(bufs), engines, engine_of, mu, tuple(alpha), tuple(tuple(s) for s in succ),
                   joins, groups, caps)

    @staticmethod
    def _groups(net: Network, e: str, index: dict) -> tuple[tuple[int, ...], ...]:
        ne = net.engines[e]
        here = [s.id for c in net.classes for s in c.steps if s.engine == e]
        ranked = [[sid] for sid in ne.priority] + ([[s for s in here if s not in ne.priority]] if
                                                  any(s not in ne.priority for s in here) else [])
        pref = ne.policy.fluid_phase_order
        if pref == "any":  # no declared phase order: any split of the engine
            return (tuple(index[(s, ph)] for s in here for ph in ("prefill", "decode")),)
        if pref == "request-order":  # within a step, the older (decoding) requests come first
            out = []
            for grp in ranked:
                if len(grp) == 1:
                    out += [(index[(grp[0], "decode")],), (index[(grp[0], "prefill")],)]
                else:
                    out.append(tuple(index[(s, ph)] for s in grp for ph in ("decode", "prefill")))
            return tuple(out)
        phases = ("decode", "prefill") if pref == "decode-first" else ("prefill", "decode")
        return tuple(tuple(index[(s, ph)] for s in grp) for ph in phases for grp in ranked)

    # --- symbolic form ---------------------------------------------------------------------

    def symbolic(self) -> dict:
        """The fluid equations as sympy objects (exact rates), for notebooks.

        Returns a dict with the symbols ``q``, ``q0``, ``T`` (cumulative effort),
        ``t``, the list ``equations`` (``q_k(t) = ...``) and ``capacity``
        (``sum_{k at e} dT_k/dt <= 1`` per engine).

        >>> from llmstab.fluid_models.networks.examples import rybko_stolyar
        >>> sym = FluidNetwork.from_network(rybko_stolyar(bad=True)).symbolic()
        >>> sym["t"] in sym["equations"][0].rhs.free_symbols
        True
        """
        import sympy  # symbolic output only: the checks and paths use Fractions

        t = sympy.Symbol("t", nonnegative=True)
        names = [lab.replace(".", "_") for lab in self.labels]
        q = [sympy.Function(f"q_{n}")(t) for n in names]
        q0 = [sympy.Symbol(f"q_{n}(0)", nonnegative=True) for n in names]
        T = [sympy.Function(f"T_{n}")(t) for n in names]
        inflow = [sympy.Integer(0)] * self.size
        for j, succ in enumerate(self.successors):
            for k in succ:
                inflow[k] += to_rational(self.mu[j]) * T[j]
        for k, preds in self.joins.items():
            inflow[k] += sympy.Min(*[to_rational(self.mu[j]) * T[j] for j in preds])
        eqs = []
        for k in range(self.size):
            a = to_rational(self.alpha[k])
            m = to_rational(self.mu[k])
            eqs.append(sympy.Eq(q[k], q0[k] + a * t + inflow[k] - m * T[k]))
        caps = [sympy.Le(sum(sympy.Derivative(T[k], t) for k in range(self.size) if self.engine_of[k] == e), 1)
                for e in range(len(self.engines))]
        return {"t": t, "q": q, "q0": q0, "T": T, "equations": eqs, "capacity": caps}

    # --- allocation ----------------------------------------------------------------------

    def allocation(self, q: Sequence, exact: bool = True, sources: dict | None = None) -> list:
        """Effort fractions ``u`` the discipline gives in state ``q``.

        Empty buffers ahead of (or beside) the first group holding fluid get what
        keeps them empty, that group shares the rest in proportion to token content,
        later groups get nothing. The efforts solve one linear system (inflows depend
        on upstream efforts); an empty buffer whose need does not fit in what its
        engine has left is treated as filling up, and the system is solved again; a
        buffer treated so while empty must not be served faster than it is fed (it
        would hand its successors fluid it does not have).
        Priority fluid models can have several solutions (a flow may circulate
        through empty buffers, or one of them may fill up and cut the circulation);
        the one returned lets every empty buffer fill up that can do so
        consistently, as the stochastic system does after any perturbation.
        A join buffer is fed by one of its inputs, ``sources[k]`` (the one that has
        delivered least; by default the first), as long as the others are ahead.

        >>> from llmstab.fluid_models.networks.examples import rybko_stolyar
        >>> fn = FluidNetwork.from_network(rybko_stolyar(bad=True))
        >>> u = fn.allocation([100, 0, 0, 0, 0, 0, 0, 0])   # only A1.p holds fluid
        >>> [str(x) for x in u[:4]]   # A1.d kept empty beside A1.p; A2.p fills up behind A2.d
        ['1/2', '1/2', '16/17', '1/17']
        """
        if self.joins and sources is None:
            if exact:
                raise FluidError("a join passes the minimum of its inputs: no exact piecewise-linear path here")
            sources = {k: preds[0] for k, preds in self.joins.items()}
        sources = sources or {}
        positive = frozenset(k for k in range(self.size) if q[k] > 0)
        # with at most one buffer holding fluid per group, the allocation depends on the support only
        key = None
        if all(sum(1 for k in grp if k in positive) <= 1 for gs in self.groups for grp in gs):
            key = (exact, positive, tuple(sorted(sources.items())))
            if key in self._cache:
                return list(self._cache[key])
        u = self._allocate(q, positive, exact, sources)
        if key is not None:
            self._cache[key] = tuple(u)
        return u

    def _allocate(self, q: Sequence, positive: frozenset, exact: bool, sources: dict) -> list:
        growing, u = self._consistent(q, set(positive), exact, sources, strict=True)
        tol = 0 if exact else 1e-12
        for k in range(self.size):  # let an empty buffer fill up wherever that is consistent too
            if k in growing:
                continue
            try:
                trial, w = self._consistent(q, growing | {k}, exact, sources)
            except FluidError:  # no allocation lets k fill up
                continue
            v = self._rates(w, exact, sources)
            if all(v[j] > tol for j in trial if q[j] <= 0):
                growing, u = trial, w
        return u

    def _consistent(self, q: Sequence, growing: set, exact: bool, sources: dict,
                    strict: bool = False) -> tuple[set, list]:
        """The smallest superset of ``growing`` whose allocation is feasible (breadth first;
        at an overloaded engine the lowest-priority kept-empty buffers are tried first).
        ``strict`` also rejects an allocation that serves an empty member of the set faster
        than it is fed (the callers that extend a solution check their trials themselves)."""
        queue, seen = [frozenset(growing)], {frozenset(growing)}
        while queue:
            g = queue.pop(0)
            try:
                u = self._solve_allocation(q, g, exact, sources)
            except FluidError:  # a circulation through empty buffers with no consistent split
                continue
            candidates = self._overloaded(u, g, exact)
            if candidates is None and strict and self._drains_empty(q, g, u, exact, sources):
                continue  # an empty "filling" buffer would send more than it receives: not a solution
            if candidates is None:
                return set(g), u
            for k in candidates:
                if g | {k} not in seen:
                    seen.add(g | {k})
                    queue.append(g | {k})
        raise FluidError("no consistent allocation")

    def _drains_empty(self, q: Sequence, growing: frozenset, u: list, exact: bool, sources: dict) -> bool:
        """Whether some empty buffer of ``growing`` is served faster than it is fed under ``u``.

        Such a buffer would create fluid out of nothing for its successors (the
        velocity clips it at zero, so the loss would go unnoticed).
        """
        v = self._rates(u, exact, sources)
        tol = 0 if exact else 1e-12
        return any(v[k] < -tol for k in growing if q[k] <= 0)

    def _rates(self, u: list, exact: bool, sources: dict) -> list:
        conv = (lambda x: x) if exact else float
        mu = [conv(m) for m in self.mu]
        inflow = self._inflow(u, mu, [conv(a) for a in self.alpha], sources)
        return [inflow[k] - mu[k] * u[k] for k in range(self.size)]

    def _solve_allocation(self, q: Sequence, growing: set, exact: bool, sources: dict) -> list:
        K = self.size
        one, zero = (Fraction(1), Fraction(0)) if exact else (1.0, 0.0)
        conv = (lambda x: x) if exact else float
        mu = [conv(m) for m in self.mu]
        A = [[zero] * K for _ in range(K)]
        rhs = [zero] * K
        preds: list[list[int]] = [[] for _ in range(K)]
        for j, succ in enumerate(self.successors):
            for k in succ:
                preds[k].append(j)
        for k, j in sources.items():
            preds[k].append(j)
        for gs in self.groups:
            served: list[int] = []
            pos_group = None
            for grp in gs:
                served += [k for k in grp if k not in growing]
                if any(k in growing for k in grp):
                    pos_group = grp
                    break
            for k in served:  # kept empty: mu_k u_k = inflow_k
                A[k][k] = mu[k]
                for j in preds[k]:
                    A[k][j] -= mu[j]
                rhs[k] = conv(self.alpha[k])
            if pos_group is not None:
                pos = [k for k in pos_group if k in growing]
                w = [conv(max(q[k], 0)) / mu[k] for k in pos]
                total = sum(w)
                for k, wk in zip(pos, w):
                    share = wk / total if total > 0 else one / len(pos)
                    A[k][k] = one
                    for l in served:
                        A[k][l] += share
                    rhs[k] = share
            done = set(served) | set(pos_group or ())
            for grp in gs:
                for k in grp:
                    if k not in done:
                        A[k][k] = one
        return _solve(A, rhs) if exact else _solve_float(A, rhs)

    def _overloaded(self, u: list, growing: set, exact: bool) -> list[int] | None:
        """``None`` if ``u`` is feasible; else the kept-empty buffers of the first engine where
        they need more than its capacity (or some effort is negative), lowest priority first:
        a priority starves the bottom first, so these are the candidates to fill up."""
        tol = 0 if exact else 1e-12
        for gs in self.groups:
            members = [k for grp in gs for k in grp]
            kept = [k for k in members if k not in growing]
            if sum(u[k] for k in kept) > 1 + tol or any(u[k] < -tol for k in members):
                served = [k for k in kept if u[k] > tol]
                return (served or kept)[::-1]
        return None

    def _inflow(self, u: Sequence, mu: Sequence, alpha: Sequence, sources: dict) -> list:
        inflow = list(alpha)
        for j, succ in enumerate(self.successors):
            out = mu[j] * u[j]
            for k in succ:
                inflow[k] += out
        for k, j in sources.items():
            inflow[k] += mu[j] * u[j]
        return inflow

    def velocity(self, q: Sequence, exact: bool = True) -> list:
        """``dq/dt`` in state ``q`` under the discipline (no joins, or numerically)."""
        sources = {k: preds[0] for k, preds in self.joins.items()} if self.joins and not exact else {}
        v = self._rates(self.allocation(q, exact), exact, sources)
        return [max(x, 0 * x) if q[k] <= 0 else x for k, x in enumerate(v)]

    def state(self, initial: Mapping[str, object] | Sequence) -> list[Fraction]:
        """An exact state vector from ``{label: requests}`` or a full sequence."""
        if isinstance(initial, Mapping):
            unknown = set(initial) - set(self.labels)
            if unknown:
                raise FluidError(f"unknown buffers {sorted(unknown)} (known: {', '.join(self.labels)})")
            return [to_fraction(initial.get(lab, 0)) for lab in self.labels]
        return [to_fraction(x) for x in initial]

    # --- trajectories --------------------------------------------------------------------

    def priority_path(self, initial: Mapping[str, object] | Sequence, horizon: object,
                      max_pieces: int = 2000) -> FluidPath:
        """The exact piecewise-linear fluid path (rationals) from ``initial`` up to ``horizon`` s.

        Valid while no group with two or more buffers holds fluid in two of them
        (always so under a complete priority list). Stops when the network is empty
        (``drains``) or when the state returns to ``r`` times an earlier breakpoint:
        ``r > 1`` grows without bound (``grows``, with the certificate); ``r < 1``
        repeats at shrinking scale and empties by the time ``certificate["drained_by"]``
        (``drains``; infinitely many pieces in finite time).
        """
        q = self.state(initial)
        horizon = to_fraction(horizon)
        t = Fraction(0)
        times, states = [t], [list(q)]
        for _ in range(max_pieces):
            if not any(q):
                return FluidPath(self.labels, times, states, True, "drains")
            self._check_linear(q)
            v = self.velocity(q)
            steps = [q[k] / -v[k] for k in range(self.size) if q[k] > 0 and v[k] < 0]
            dt = min(steps + [horizon - t])
            q = [max(Fraction(0), q[k] + dt * v[k]) for k in range(self.size)]
            t += dt
            times.append(t)
            states.append(list(q))
            cert = self._self_similar(times, states)
            if cert is not None and cert["ratio"] > 1:
                return FluidPath(self.labels, times, states, True, "grows", cert)
            if cert is not None:  # contracting: the pieces shrink geometrically and end by a finite time
                cert["drained_by"] = cert["t1"] + (cert["t1"] - cert["t0"]) * cert["ratio"] / (1 - cert["ratio"])
                return FluidPath(self.labels, times, states, True, "drains", cert)
            if t >= horizon:
                break
        return FluidPath(self.labels, times, states, True, "undecided")

    def _check_linear(self, q: Sequence) -> None:
        for gs in self.groups:
            for grp in gs:
                if sum(1 for k in grp if q[k] > 0) > 1:
                    raise FluidError("two buffers that share service hold fluid: the path is not piecewise linear")

    @staticmethod
    def _self_similar(times: list, states: list) -> dict | None:
        qi = states[-1]
        si = [x > 0 for x in qi]
        for j in range(len(states) - 2, -1, -1):
            qj = states[j]
            if [x > 0 for x in qj] != si or not any(si):
                continue
            k0 = si.index(True)
            r = qi[k0] / qj[k0]
            if r != 1 and all(a == r * b for a, b in zip(qi, qj)):
                return {"t0": times[j], "t1": times[-1], "ratio": r, "state0": list(qj), "state1": list(qi)}
        return None

    def integrate(self, initial: Mapping[str, object] | Sequence, horizon: float, steps: int = 2000) -> FluidPath:
        """A numerical fluid path (explicit Euler on ``steps`` intervals), for any discipline.

        Joins are tracked through cumulative departures (a join passes the
        minimum of its inputs). ``outcome`` is ``drains`` when the total falls below
        1e-9 of its peak, ``grows`` when the total rises over the last half of the
        horizon and ends above its start, else ``undecided``.
        """
        q = np.array([float(x) for x in self.state(initial)])
        dt = float(horizon) / steps
        times, states = [0.0], [q.copy()]
        mu = np.array([float(m) for m in self.mu])
        alpha = [float(a) for a in self.alpha]
        departed = np.zeros(self.size)  # cumulative departures, for joins
        joined = {k: 0.0 for k in self.joins}
        for i in range(steps):
            # each join is fed by the input that has delivered least so far
            sources = {k: min(preds, key=lambda j: departed[j]) for k, preds in self.joins.items()}
            # fluid below a round-off threshold counts as empty, so it does not hold up lower priorities
            seen = np.where(q > 1e-9 * max(1.0, float(q.sum())), q, 0.0)
            u = np.array(self.allocation(seen, exact=False, sources=sources))
            for _ in range(self.size):  # a buffer cannot send more than it holds plus what it receives
                inflow = np.array(self._inflow(u, mu, alpha, sources))
                capped = np.minimum(u, (q / dt + inflow) / mu)
                if np.array_equal(capped, u):
                    break
                u = capped
            out = mu * u
            departed += dt * out
            for k, preds in self.joins.items():  # a join passes what all its inputs have delivered
                new = min(departed[j] for j in preds)
                inflow[k] += (new - joined[k]) / dt - out[sources[k]]
                joined[k] = new
            q = np.maximum(q + dt * (inflow - out), 0.0)
            times.append((i + 1) * dt)
            states.append(q.copy())
        tot = np.array([s.sum() for s in states])
        peak = max(tot.max(), 1e-300)
        if tot[-1] <= 1e-9 * peak:
            outcome = "drains"
        elif tot[-1] > tot[0] and tot[-1] > tot[len(tot) // 2] > 0:
            outcome = "grows"
        else:
            outcome = "undecided"
        return FluidPath(self.labels, times, [list(s) for s in states], False, outcome)
