"""Reading input documents safely: size limits, alias bombs, duplicate keys, numbers as text.

An input file is parsed into plain Python data (mappings, lists, strings,
numbers) before any field is validated (:mod:`llmstab.checkers.spec`). This
module is the door every file goes through, and it refuses, with one
:class:`~llmstab.fluid_models.errors.InputError` line, what would otherwise hang, exhaust
memory or be silently misread:

* a file larger than :data:`MAX_FILE_BYTES`;
* a YAML "billion laughs" document: anchors and aliases that expand past
  :data:`MAX_NODES` values (counted on the composed node graph, before any
  Python object is built, so the check costs one pass over the distinct nodes);
* a key that appears twice in one mapping (YAML or JSON), named with its line;
* a number with thousands of digits.

Numbers written as text (``"3/4"``) are read by
:func:`llmstab.fluid_models.numbers.number_from_text`, which refuses forms that
would be huge (``"1e999999"``) or undefined (``"1/0"``) to read exactly.

YAML is read with the YAML 1.2 rule for floats, so ``1.0e9`` and ``1e9`` are
numbers, not strings (PyYAML's YAML 1.1 resolver reads them as text).

Examples
--------
>>> parse_text("rate: 1.0e9\\nname: chat\\n")
{'rate': 1000000000.0, 'name': 'chat'}
>>> parse_text("rate: 12\\nrate: 30\\n")
Traceback (most recent call last):
...
llmstab.fluid_models.errors.InputError: <document>: duplicate key 'rate' at line 2 (first at line 1)
>>> bomb = "a: &a [x, x, x, x, x, x, x, x, x, x]\\n" + "".join(
...     f"{c}: &{c} [*{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}]\\n"
...     for p, c in zip("abcdefgh", "bcdefghi"))
>>> parse_text(bomb)
Traceback (most recent call last):
...
llmstab.fluid_models.errors.InputError: <document>: aliases expand to more than 1000000 values (a YAML alias bomb?)
"""

from __future__ import annotations

import json
import math
import re
import reprlib
from pathlib import Path
from typing import Any

import yaml

from llmstab.fluid_models.errors import InputError

__all__ = [
    "MAX_FILE_BYTES",
    "MAX_NODES",
    "load_document",
    "parse_text",
    "show",
]

#: Largest input file read, in bytes (a 1000-engine network is about 0.5 MB).
MAX_FILE_BYTES = 16 * 2**20

#: Most values (mapping entries, list items, scalars) a document may hold once its aliases are expanded.
MAX_NODES = 1_000_000

_BASE_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml when present (about 6x faster)
_YAML12_FLOAT = re.compile(r"^[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?$")
_REPR = reprlib.Repr()
_REPR.maxstring = _REPR.maxother = _REPR.maxlong = 40


def show(value: Any) -> str:
    """A bounded ``repr`` for error messages: never more than a line, whatever the value.

    >>> show("x" * 100)
    "'xxxxxxxxxxxxxxxxx...xxxxxxxxxxxxxxxxxx'"
    >>> show(10 ** 400)
    '100000000000000000...0000000000000000000'
    >>> show(1e300)
    '1e+300'
    """
    return _REPR.repr(value)


class _Refused(Exception):
    """A document refused while it is parsed (re-raised as an ``InputError`` naming the file)."""


class _StrictLoader(_BASE_LOADER):  # type: ignore[misc, valid-type]
    """The safe loader, refusing duplicate keys and reading YAML 1.2 floats (``1e9``) as numbers."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key, line = self.construct_object(key_node, deep=True), key_node.start_mark.line + 1
            try:
                if key in seen:
                    raise _Refused(f"duplicate key {show(key)} at line {line} (first at line {seen[key]})")
                seen[key] = line
            except TypeError:
                continue  # an unhashable key: the base constructor reports it
        return super().construct_mapping(node, deep=deep)


    def construct_yaml_float(self, node: yaml.ScalarNode) -> float:
        value = super().construct_yaml_float(node)
        if math.isinf(value) and "inf" not in str(node.value).lower():
            raise _Refused(f"the number {show(node.value)} at line {node.start_mark.line + 1} is too large "
                           "for a float")
        return value


_StrictLoader.add_constructor("tag:yaml.org,2002:float", _StrictLoader.construct_yaml_float)
_StrictLoader.add_implicit_resolver("tag:yaml.org,2002:float", _YAML12_FLOAT, list("-+0123456789."))


def _expanded_size(root: yaml.Node) -> int:
    """How many values the node graph holds once aliases (shared nodes) are expanded.

    One pass over the distinct nodes; a count past :data:`MAX_NODES` is capped
    there, and a node that contains itself (``&a [*a]``) counts as unbounded.
    """
    size: dict[int, int] = {}
    open_nodes: set[int] = set()
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, children_done = stack.pop()
        children = ([n for pair in node.value for n in pair] if isinstance(node, yaml.MappingNode)
                    else node.value if isinstance(node, yaml.SequenceNode) else [])
        if children_done:
            open_nodes.discard(id(node))
            size[id(node)] = min(1 + sum(size[id(c)] for c in children), MAX_NODES + 1)
        elif id(node) not in size:
            if id(node) in open_nodes:
                return MAX_NODES + 1  # a recursive alias: infinite once expanded
            open_nodes.add(id(node))
            stack.append((node, True))
            stack.extend((c, False) for c in children if id(c) not in size)
    return size[id(root)]


def _parse_yaml(text: str) -> Any:
    loader = _StrictLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        if _expanded_size(node) > MAX_NODES:
            raise _Refused(f"aliases expand to more than {MAX_NODES} values (a YAML alias bomb?)")
        return loader.construct_document(node)
    finally:
        loader.dispose()


def _unique_pairs(pairs: list[tuple[str, Any]]) -> dict:
    document: dict = {}
    for key, value in pairs:
        if key in document:
            raise _Refused(f"duplicate key {show(key)}")
        document[key] = value
    return document


def parse_text(text: str, source: str = "<document>", *, json_format: bool = False) -> Any:
    """Parse YAML (or JSON) text with the limits above; every problem is an ``InputError`` naming ``source``."""
    try:
        if json_format:
            return json.loads(text, object_pairs_hook=_unique_pairs)
        return _parse_yaml(text)
    except _Refused as exc:
        raise InputError(source, str(exc)) from None
    except json.JSONDecodeError as exc:
        raise InputError(source, f"malformed JSON at line {exc.lineno}: {exc.msg}") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        problem = str(getattr(exc, "problem", None) or exc).splitlines()[0]
        raise InputError(source, f"malformed YAML{where}: {problem}") from None
    except (ValueError, RecursionError, OverflowError) as exc:  # e.g. an integer of more than 4300 digits
        problem = "a number has thousands of digits" if "digits" in str(exc) else str(exc).splitlines()[0][:120]
        raise InputError(source, f"unreadable: {problem}") from None


def load_document(path: str | Path) -> dict:
    """Read a YAML or JSON file (by suffix) into a mapping; ``InputError`` if unreadable, malformed or too large."""
    p = Path(path)
    try:
        size = p.stat().st_size
        if size > MAX_FILE_BYTES:
            raise InputError(str(path), f"file of {size:,} bytes exceeds the limit of {MAX_FILE_BYTES:,} bytes")
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InputError(str(path), "no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(str(path), f"cannot read: {exc.__class__.__name__}") from None
    document = parse_text(text, str(path), json_format=p.suffix.lower() == ".json")
    if not isinstance(document, dict):
        raise InputError(str(path), "the file must hold a mapping (engine, policy, workload; or engines, classes)")
    return document
