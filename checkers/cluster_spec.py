"""Loading and validating cluster input files: replicas behind a router, or prefill/decode pools.

Replicas (the ``engine``, ``policy`` and ``workload`` blocks as for one engine)::

    cluster: {replicas: 4, router: jsq}

Disaggregated (each pool's ``engine`` / ``policy`` default to the top-level ones)::

    cluster:
      prefill: {replicas: 2, engine: {...}, policy: sarathi}
      decode:  {replicas: 3, engine: {...}, policy: sarathi, kv_tokens: 200000}
      kv_transfer: {ms_per_token: 0.002, ms_fixed: 1.0}   # or {gb_per_s: 25, bytes_per_token: 131072, ms_fixed: 1}
      router: {prefill: jsq, decode: least_outstanding}    # or one router name for both

``kv_tokens`` (optional; default: the decode engine's ``kv_cache`` size, if it has
one) is the usable KV-cache size of one decode replica in tokens; the check then
bounds the decode pool's memory by Little's law.
Engines, policies and the workload are parsed by :mod:`llmstab.checkers.spec`.

Examples
--------
>>> eng = {"batch_time": {"kind": "staircase", "c": 11.28, "a": 35.47, "b0": 128}, "token_budget": 512}
>>> work = {"classes": [{"name": "chat", "rate": 40, "prompt": {"dist": "deterministic", "mean": 129},
...                      "decode": {"dist": "geometric", "mean": 112}}]}
>>> spec = cluster_spec_from_document({"cluster": {"replicas": 4, "router": "jsq"}, "engine": eng,
...                                    "policy": "sarathi", "workload": work})
>>> spec.cluster.replicas, spec.cluster.routers
(4, ('jsq',))
>>> cluster_spec_from_document({"cluster": {"replicas": 0}, "engine": eng, "policy": "sarathi", "workload": work})
Traceback (most recent call last):
...
llmstab.fluid_models.errors.InputError: cluster.replicas: must be at least 1, got 0
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from llmstab.fluid_models.cluster import ROUTERS, Cluster, KVTransfer, Pool
from llmstab.fluid_models.workload import Workload

from .errors import InputError
from .spec import _integer, _mapping, _number, _only, _required, load_document, parse_engine, parse_policy, parse_workload

__all__ = ["ClusterSpec", "cluster_spec_from_document", "load_cluster_spec", "is_cluster_document"]


@dataclass(frozen=True)
class ClusterSpec:
    """A validated cluster input: the cluster, its traffic and (optional) KV tokens per decode replica."""

    cluster: Cluster
    workload: Workload
    kv_tokens: int | None = None
    source: str = "<document>"


def is_cluster_document(document: Any) -> bool:
    """A document describes a cluster when it has a top-level ``cluster`` block."""
    return isinstance(document, dict) and "cluster" in document


def _router(node: Any, where: str) -> str:
    if not isinstance(node, str) or node not in ROUTERS:
        raise InputError(where, f"unknown router {node!r} (known: {', '.join(ROUTERS)})")
    return node


def _pool(node: Any, where: str, document: dict, base_dir: Path) -> tuple[Pool, int | None]:
    node = _mapping(node, where)
    _only(node, where, {"replicas", "engine", "policy", "kv_tokens"})
    replicas = _integer(_required(node, "replicas", where), f"{where}.replicas")
    engine_node = node.get("engine", document.get("engine"))
    policy_node = node.get("policy", document.get("policy"))
    if engine_node is None:
        raise InputError(f"{where}.engine", "missing (give it here or as the top-level engine)")
    if policy_node is None:
        raise InputError(f"{where}.policy", "missing (give it here or as the top-level policy)")
    where_engine = f"{where}.engine" if "engine" in node else "engine"
    where_policy = f"{where}.policy" if "policy" in node else "policy"
    engine = parse_engine(engine_node, where_engine, base_dir)
    kv = node.get("kv_tokens")
    kv = None if kv is None else _integer(kv, f"{where}.kv_tokens")
    if kv is None and getattr(engine, "kv_cache", None) is not None:
        kv = engine.kv_cache.tokens  # the engine's own KV cache
    return Pool(engine, parse_policy(policy_node, where_policy), replicas), kv


def _transfer(node: Any) -> KVTransfer:
    where = "cluster.kv_transfer"
    node = _mapping(node, where)
    _only(node, where, {"ms_per_token", "ms_fixed", "gb_per_s", "bytes_per_token"})
    fixed = _number(node.get("ms_fixed", 0), f"{where}.ms_fixed", nonnegative=True)
    if "gb_per_s" in node or "bytes_per_token" in node:
        if "ms_per_token" in node:
            raise InputError(where, "give either ms_per_token or gb_per_s with bytes_per_token, not both")
        rate = _number(_required(node, "gb_per_s", where), f"{where}.gb_per_s", positive=True)
        size = _number(_required(node, "bytes_per_token", where), f"{where}.bytes_per_token", nonnegative=True)
        return KVTransfer.from_bandwidth(gb_per_s=rate, bytes_per_token=size, ms_fixed=fixed)
    per_token = _number(_required(node, "ms_per_token", where), f"{where}.ms_per_token", nonnegative=True)
    return KVTransfer(per_token, fixed)


def _disaggregated(node: dict, document: dict, base_dir: Path) -> tuple[Cluster, int | None]:
    _only(node, "cluster", {"prefill", "decode", "kv_transfer", "router"})
    if "decode" not in node or node["decode"] is None:
        raise InputError("cluster.decode", "missing: a disaggregated cluster needs a decode pool")
    if "prefill" not in node or node["prefill"] is None:
        raise InputError("cluster.prefill", "missing: a disaggregated cluster needs a prefill pool")
    prefill, kv_p = _pool(node["prefill"], "cluster.prefill", document, base_dir)
    if kv_p is not None:
        raise InputError("cluster.prefill.kv_tokens", "KV memory is modelled on the decode pool only")
    decode, kv = _pool(node["decode"], "cluster.decode", document, base_dir)
    routers = node.get("router", "random")
    if isinstance(routers, dict):
        _only(routers, "cluster.router", {"prefill", "decode"})
        pair = (_router(routers.get("prefill", "random"), "cluster.router.prefill"),
                _router(routers.get("decode", "random"), "cluster.router.decode"))
    else:
        pair = (_router(routers, "cluster.router"),) * 2
    return Cluster((prefill, decode), pair, _transfer(node.get("kv_transfer", {"ms_per_token": 0}))), kv


def cluster_spec_from_document(document: Any, source: str = "<document>", base_dir: Path = Path(".")) -> ClusterSpec:
    """Validate a cluster document (already parsed from YAML/JSON)."""
    document = _mapping(document, source)
    node = _mapping(_required(document, "cluster", ""), "cluster")
    workload = parse_workload(_required(document, "workload", ""), "workload", base_dir)
    if any(key in node for key in ("prefill", "decode", "kv_transfer")):
        _only(document, "", {"cluster", "engine", "policy", "workload"})
        cluster, kv = _disaggregated(node, document, base_dir)
        return ClusterSpec(cluster, workload, kv, source)
    _only(document, "", {"cluster", "engine", "policy", "workload"})
    _only(node, "cluster", {"replicas", "router"})
    replicas = _integer(_required(node, "replicas", "cluster"), "cluster.replicas")
    router = _router(node.get("router", "random"), "cluster.router")
    engine = parse_engine(_required(document, "engine", ""), "engine", base_dir)
    pool = Pool(engine, parse_policy(_required(document, "policy", ""), "policy"), replicas)
    return ClusterSpec(Cluster((pool,), (router,)), workload, None, source)


def load_cluster_spec(path: str | Path) -> ClusterSpec:
    """Read and validate a cluster file; relative paths inside it are relative to it."""
    p = Path(path)
    return cluster_spec_from_document(load_document(p), str(p), p.parent)
