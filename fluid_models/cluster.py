"""Clusters of engines: replicas behind a router, or disaggregated prefill/decode pools.

A :class:`Cluster` is one or two :class:`Pool` s of identical replicas.

* **Colocated**: one pool of ``g`` replicas; a router sends each arriving
  request to one replica, which serves its prefill and its decode.
* **Disaggregated**: a *prefill* pool serves prompts; when a request's prefill
  completes, the decode router picks a decode replica and the request's KV
  cache crosses a :class:`KVTransfer` link (one shared FIFO link: a transfer
  occupies it for ``ms_per_token`` per prompt token, then ``ms_fixed`` of
  latency follows) before that decode replica may schedule it. The decode
  pool serves all ``v_d`` output tokens.

Routers (:data:`ROUTERS`), each deciding when a request reaches its pool:

``random``            a replica uniformly at random (Bari et al.'s random planner)
``round_robin``       replicas in turn
``jsq``               the fewest requests present (plus, for decode, those in transfer to it)
``least_outstanding`` the fewest outstanding tokens (remaining prefill + decode work);
                      Vidur's least-outstanding-*requests* router is ``jsq`` here
``power_of_two``      two distinct replicas at random, the one with fewer requests

Ties (``jsq``, ``least_outstanding``) go to the first minimal replica scanned
from a uniformly random start, so identical replicas are treated alike.

Examples
--------
>>> from llmstab.fluid_models.batch_time import Staircase
>>> from llmstab.fluid_models.engine import Engine
>>> from llmstab.fluid_models.policies import Sarathi
>>> pool = Pool(Engine(Staircase("11.28", "35.47", 128), 512), Sarathi(), 4)
>>> c = Cluster((pool,), ("jsq",))
>>> c.replicas, c.disaggregated
(4, False)
>>> Cluster((pool,), ("fastest",))
Traceback (most recent call last):
...
llmstab.fluid_models.errors.InputError: cluster.router: unknown router 'fastest' (known: random, round_robin, jsq, least_outstanding, power_of_two)
"""

from __future__ import annotations

from dataclasses import dataclass

import sympy

from .batch_time import exact_number
from .engine import Engine
from .errors import InputError
from .policies.base import Policy

__all__ = ["ROUTERS", "Pool", "KVTransfer", "Cluster"]

ROUTERS = ("random", "round_robin", "jsq", "least_outstanding", "power_of_two")


@dataclass(frozen=True)
class Pool:
    """``replicas`` identical engines, each running ``policy``."""

    engine: Engine
    policy: Policy
    replicas: int

    def __post_init__(self) -> None:
        if isinstance(self.replicas, bool) or not isinstance(self.replicas, int) or self.replicas < 1:
            raise InputError("cluster.replicas", f"must be a positive integer, got {self.replicas!r}")


@dataclass(frozen=True)
class KVTransfer:
    """The prefill-to-decode link: ``ms_per_token`` of link time per prompt token, then ``ms_fixed`` latency.

    >>> print(KVTransfer.from_bandwidth(gb_per_s=25, bytes_per_token=131072).ms_per_token)
    2048/390625
    """

    ms_per_token: sympy.Rational
    ms_fixed: sympy.Rational = sympy.Integer(0)

    def __post_init__(self) -> None:
        for name in ("ms_per_token", "ms_fixed"):
            value = exact_number(getattr(self, name))
            if value < 0:
                raise InputError(f"cluster.kv_transfer.{name}", f"must not be negative, got {value}")
            object.__setattr__(self, name, value)

    @classmethod
    def from_bandwidth(cls, *, gb_per_s: object, bytes_per_token: object, ms_fixed: object = 0) -> "KVTransfer":
        """A link of ``gb_per_s`` (10^9 bytes/s) shipping ``bytes_per_token`` per prompt token."""
        rate = exact_number(gb_per_s)
        if rate <= 0:
            raise InputError("cluster.kv_transfer.gb_per_s", f"must be positive, got {rate}")
        return cls(exact_number(bytes_per_token) / (rate * 10**6), exact_number(ms_fixed))


@dataclass(frozen=True)
class Cluster:
    """One pool (colocated) with one router, or two pools (prefill, decode) with two routers and a link."""

    pools: tuple[Pool, ...]
    routers: tuple[str, ...]
    transfer: KVTransfer | None = None

    def __post_init__(self) -> None:
        if len(self.pools) not in (1, 2) or len(self.routers) != len(self.pools):
            raise InputError("cluster", "one pool with one router, or prefill and decode pools with a router each")
        for router in self.routers:
            if router not in ROUTERS:
                raise InputError("cluster.router", f"unknown router {router!r} (known: {', '.join(ROUTERS)})")
        if self.disaggregated and self.transfer is None:
            object.__setattr__(self, "transfer", KVTransfer(sympy.Integer(0)))

    @property
    def disaggregated(self) -> bool:
        """Whether prefill and decode run on separate pools."""
        return len(self.pools) == 2

    @property
    def replicas(self) -> int:
        """Engines in all (GPUs, when an engine is one GPU)."""
        return sum(p.replicas for p in self.pools)
