"""An on-disk store of work-conservation results, keyed by everything they depend on.

Whether a policy is work-conserving (a certificate: every examined state got a
full batch; or a minimal counterexample) is a property of its kernel code, its
options, the search's bounds and the engine's budget, not of the load. Finding
it runs the policy's compiled kernel on tens of thousands of states, and
starting numba costs more than everything else in a check; so a result, once
found, is kept, and a later check of the same policy on an engine of the same
budget, at any load, reads it without loading numba.

The key is a SHA-256 of the policy (its class and every option), the search's
arguments and a fingerprint of the installed toolkit: the bytes of every
source file of ``llmstab`` and the versions of numba and numpy. Any change to
the code that could change the answer changes the key. Only the toolkit's own
policies are kept (a user's kernel is not in the fingerprint). A kept result is
read back by an unpickler that builds only the toolkit's own classes, exact
fractions, numpy integers and Python's containers.

The store lives in ``$LLMSTAB_CACHE_DIR``, else ``$XDG_CACHE_HOME/llmstab``,
else ``~/.cache/llmstab``; ``LLMSTAB_CACHE_DIR=off`` turns it off. A store
that cannot be read or written is skipped: the result is then found again, and
the report is the same either way.

>>> import tempfile
>>> from pathlib import Path
>>> folder, key = Path(tempfile.mkdtemp()), {"policy": "Sarathi(order='fcfs')", "budget": 512}
>>> recall("demo", key, folder) is None
True
>>> remember("demo", key, {"states_examined": 23533}, folder)
>>> recall("demo", key, folder)
{'states_examined': 23533}
>>> from llmstab.fluid_models.state import EngineState
>>> remember("demo", key, EngineState((0, 1), (1, 1)), folder)
>>> recall("demo", key, folder)
EngineState(prefill_left=(0, 1), decode_left=(1, 1))
"""

from __future__ import annotations

import functools
import hashlib
import inspect
import io
import json
import os
import pickle
import tempfile
from collections.abc import Callable, Mapping
from typing import TypeVar
from importlib import metadata
from pathlib import Path

__all__ = ["cache_dir", "source_fingerprint", "policy_key", "recall", "remember", "kept_or_found"]

_PACKAGES = ("theory", "fluid_models", "checkers")
T = TypeVar("T")


def cache_dir(environ: Mapping[str, str] = os.environ) -> Path | None:
    """Where certificates are kept, as ``environ`` says (None: the store is off).

    >>> cache_dir({"LLMSTAB_CACHE_DIR": "off"}) is None, cache_dir({"XDG_CACHE_HOME": "/tmp/c"}).as_posix()
    (True, '/tmp/c/llmstab')
    """
    chosen = environ.get("LLMSTAB_CACHE_DIR")
    if chosen is not None:
        return None if chosen.strip().lower() in ("", "off", "0", "no") else Path(chosen)
    base = environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "llmstab"


@functools.cache
def source_fingerprint() -> str:
    """SHA-256 of every source file of the installed toolkit, and of the numba and numpy versions.

    >>> len(source_fingerprint())
    64
    """
    import llmstab

    digest = hashlib.sha256()
    for name in ("numba", "numpy"):
        digest.update(f"{name}={metadata.version(name)}\n".encode())
    roots = [Path(llmstab.__file__).parent] + [Path(__import__(f"llmstab.{p}", fromlist=["_"]).__file__).parent
                                               for p in _PACKAGES]
    for root in roots:
        for path in sorted(root.rglob("*.py")):
            digest.update(f"{path.relative_to(root)}\n".encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()


def policy_key(policy: object) -> dict | None:
    """What identifies ``policy`` in a key: its class and every option; None for a policy whose class or kernel is
    not the toolkit's own (its code is not in :func:`source_fingerprint`, so a result about it is never kept).

    >>> from llmstab.fluid_models.policies import Sarathi
    >>> policy_key(Sarathi())
    {'policy': 'llmstab.fluid_models.policies.sarathi.Sarathi', 'options': "Sarathi(order='fcfs')"}
    """
    from llmstab.fluid_models.policies.base import KernelRef

    cls = type(policy)
    if not cls.__module__.startswith("llmstab.") or not isinstance(inspect.getattr_static(cls, "kernel", None),
                                                                    KernelRef):
        return None
    return {"policy": f"{cls.__module__}.{cls.__qualname__}", "options": repr(policy)}


def _path(kind: str, key: dict, folder: Path | None) -> Path | None:
    folder = cache_dir() if folder is None else folder
    if folder is None:
        return None
    text = json.dumps({"kind": kind, "key": key, "toolkit": source_fingerprint()}, sort_keys=True)
    return folder / f"{kind}-{hashlib.sha256(text.encode()).hexdigest()}.pickle"


class _ToolkitUnpickler(pickle.Unpickler):
    """Builds only the toolkit's classes, fractions, numpy scalars and Python's containers (a kept result holds
    nothing else), so a planted file cannot run code."""

    _ALLOWED = {("fractions", "Fraction"), ("copyreg", "_reconstructor"), ("numpy", "dtype"),
                ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar")} | {
        ("builtins", name) for name in ("object", "tuple", "list", "dict", "set", "frozenset", "int", "float", "str",
                                        "bool", "complex")}

    def find_class(self, module: str, name: str) -> type:
        if module.startswith("llmstab.") or (module, name) in self._ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"{module}.{name} is not kept in a result")


def recall(kind: str, key: dict, folder: Path | None = None) -> object | None:
    """The value kept under ``(kind, key)`` for this toolkit in ``folder`` (default :func:`cache_dir`), or None."""
    path = _path(kind, key, folder)
    try:
        return None if path is None else _ToolkitUnpickler(io.BytesIO(path.read_bytes())).load()
    except (OSError, pickle.UnpicklingError, EOFError, AttributeError, ImportError, TypeError, ValueError):
        return None


def remember(kind: str, key: dict, value: object, folder: Path | None = None) -> None:
    """Keep ``value`` under ``(kind, key)`` in ``folder`` (default :func:`cache_dir`); written whole or not at
    all (a failed write is ignored)."""
    path = _path(kind, key, folder)
    if path is None:
        return
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile("wb", dir=path.parent, suffix=".tmp", delete=False) as handle:
            pickle.dump(value, handle, protocol=pickle.HIGHEST_PROTOCOL)
        os.replace(handle.name, path)
    except (OSError, pickle.PicklingError):
        return


def kept_or_found(kind: str, key: dict | None, cls: type[T], find: Callable[[], T]) -> T:
    """The ``cls`` kept under ``(kind, key)``, else ``find()``, then kept (a ``None`` key: found, never kept).

    >>> import tempfile
    >>> from fractions import Fraction
    >>> import os; os.environ.setdefault("LLMSTAB_CACHE_DIR", tempfile.mkdtemp()) and None
    >>> kept_or_found("demo", {"n": 1}, Fraction, lambda: Fraction(1, 3))
    Fraction(1, 3)
    >>> kept_or_found("demo", {"n": 1}, Fraction, lambda: Fraction(2, 3))  # read back, not found again
    Fraction(1, 3)
    """
    value = None if key is None else recall(kind, key)
    if isinstance(value, cls):
        return value
    found = find()
    if key is not None:
        remember(kind, key, found)
    return found
