"""Loading and validating network input files (YAML or JSON; engines by name, classes with routes).

A network document has a top-level ``engines`` mapping (name -> engine) and a
list of ``classes``. An engine is the single-engine ``engine`` block plus its
``policy``; the policy mapping may carry ``priority``, a list of step ids
(highest first). A class has ``name``, ``rate`` (requests/s) and ``route``, a
list of steps ``{id, engine, prompt, decode, after}``; step ids are unique in
the file, ``after`` lists the steps that must finish first (default: the
previous step of the route).

Batch times, budgets, distributions and policies are parsed by the
single-engine loader (:mod:`llmstab.checkers.spec`), so the two formats agree.

Examples
--------
>>> doc = {"engines": {"gpu": {"batch_time": {"kind": "staircase", "c": 1, "a": 0, "b0": 100, "unit": "s"},
...                            "token_budget": 100, "policy": "fcfs"}},
...        "classes": [{"name": "chat", "rate": 1, "route": [
...            {"id": "s1", "engine": "gpu", "prompt": {"dist": "deterministic", "mean": 10},
...             "decode": {"dist": "deterministic", "mean": 10}}]}]}
>>> network_from_document(doc).utilisation()
{'gpu': Exact(1, 5)}
>>> doc["classes"][0]["route"][0]["engine"] = "tpu"
>>> network_from_document(doc)
Traceback (most recent call last):
...
llmstab.fluid_models.errors.InputError: classes[0].route[0].engine: unknown engine 'tpu' (known: gpu)
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from llmstab.fluid_models.networks.network import Network, NetworkClass, NetworkEngine, NetworkError, Step

from .errors import InputError
from .spec import _mapping, _number, _only, _required, load_document, parse_distribution, parse_engine, parse_policy

__all__ = ["network_from_document", "load_network", "is_network_document"]


def is_network_document(document: Any) -> bool:
    """A document describes a network when it has a top-level ``engines`` mapping."""
    return isinstance(document, dict) and isinstance(document.get("engines"), dict)


def _engine(name: str, node: Any, base_dir: Path) -> NetworkEngine:
    where = f"engines.{name}"
    node = _mapping(node, where)
    policy_node = _required(node, "policy", where)
    priority: tuple[str, ...] = ()
    if isinstance(policy_node, dict) and "priority" in policy_node:
        policy_node = dict(policy_node)
        raw = policy_node.pop("priority")
        if not isinstance(raw, list) or not all(isinstance(s, str) for s in raw):
            raise InputError(f"{where}.policy.priority", "must be a list of step ids")
        priority = tuple(raw)
    policy = parse_policy(policy_node, f"{where}.policy")
    engine = parse_engine({k: v for k, v in node.items() if k != "policy"}, where, base_dir)
    return NetworkEngine(name, engine, policy, priority)


def _step(node: Any, where: str, base_dir: Path) -> Step:
    node = _mapping(node, where)
    _only(node, where, {"id", "engine", "prompt", "decode", "after"})
    sid = _required(node, "id", where)
    if not isinstance(sid, str) or not sid:
        raise InputError(f"{where}.id", f"must be a non-empty string, got {sid!r}")
    engine = _required(node, "engine", where)
    if not isinstance(engine, str):
        raise InputError(f"{where}.engine", f"must be an engine name, got {engine!r}")
    after = node.get("after")
    if after is not None:
        if isinstance(after, str):
            after = [after]
        if not isinstance(after, list) or not all(isinstance(a, str) for a in after):
            raise InputError(f"{where}.after", "must be a list of step ids")
        after = tuple(after)
    prompt = parse_distribution(_required(node, "prompt", where), f"{where}.prompt", base_dir)
    decode = parse_distribution(_required(node, "decode", where), f"{where}.decode", base_dir)
    return Step(sid, engine, prompt, decode, after)


def network_from_document(document: Any, source: str = "<document>", base_dir: Path = Path(".")) -> Network:
    """Validate a network document (already parsed from YAML/JSON) into a :class:`Network`."""
    document = _mapping(document, source)
    if "engine" in document or "workload" in document:
        raise InputError(source, "this is a single-engine file (engine, policy, workload), not a network file "
                                 "(engines, classes): use llmstab check, simulate, region or derive on it")
    _only(document, "", {"engines", "classes"})
    engines_node = _mapping(_required(document, "engines", ""), "engines")
    if not engines_node:
        raise InputError("engines", "must name at least one engine")
    engines = {str(name): _engine(str(name), node, base_dir) for name, node in engines_node.items()}
    classes_node = _required(document, "classes", "")
    if not isinstance(classes_node, list) or not classes_node:
        raise InputError("classes", "must be a non-empty list of request classes")
    classes = []
    for i, item in enumerate(classes_node):
        at = f"classes[{i}]"
        item = _mapping(item, at)
        _only(item, at, {"name", "rate", "route"})
        name = item.get("name", f"class{i}")
        if not isinstance(name, str) or not name:
            raise InputError(f"{at}.name", f"must be a non-empty string, got {name!r}")
        rate = _number(_required(item, "rate", at), f"{at}.rate", positive=True)
        route = _required(item, "route", at)
        if not isinstance(route, list) or not route:
            raise InputError(f"{at}.route", "must be a non-empty list of steps")
        classes.append(NetworkClass(name, rate, tuple(_step(s, f"{at}.route[{j}]", base_dir) for j, s in enumerate(route))))
    try:
        return Network(engines, tuple(classes))
    except NetworkError as exc:
        raise InputError(exc.field, exc.problem) from None


def load_network(path: str | Path) -> Network:
    """Read and validate a network file; relative paths inside it are relative to it."""
    p = Path(path)
    return network_from_document(load_document(p), str(p), p.parent)
