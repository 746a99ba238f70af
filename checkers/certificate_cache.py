"""An on-disk store of work-conservation certificates, keyed by everything they depend on.

A work-conservation certificate (every examined state got a full batch) is a
property of a policy's kernel code, its options, the search's bounds and the
engine's budget, not of the load. Finding it runs the policy's compiled kernel
on tens of thousands of states, and starting numba costs more than everything
else in a check; so a certificate, once found, is kept, and a later check of
the same policy on an engine of the same budget reads it without loading numba.

The key is a SHA-256 of the policy (its class and every option), the search's
arguments and a fingerprint of the installed toolkit: the bytes of every
source file of ``llmstab`` and the versions of numba and numpy. Any change to
the code that could change the answer changes the key. Only the toolkit's own
policies are kept (a user's kernel is not in the fingerprint), and only
certificates: a counterexample is found at once and carries a state to show.

The store lives in ``$LLMSTAB_CACHE_DIR``, else ``$XDG_CACHE_HOME/llmstab``,
else ``~/.cache/llmstab``; ``LLMSTAB_CACHE_DIR=off`` turns it off. A store
that cannot be read or written is skipped: the certificate is then found
again, and the report is the same either way.

>>> import tempfile
>>> from pathlib import Path
>>> folder, key = Path(tempfile.mkdtemp()), {"policy": "Sarathi(order='fcfs')", "budget": 512}
>>> recall("demo", key, folder) is None
True
>>> remember("demo", key, {"states_examined": 23533}, folder)
>>> recall("demo", key, folder)
{'states_examined': 23533}
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import tempfile
from collections.abc import Mapping
from importlib import metadata
from pathlib import Path

__all__ = ["cache_dir", "source_fingerprint", "recall", "remember"]

_PACKAGES = ("theory", "fluid_models", "checkers")


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


def _path(kind: str, key: dict, folder: Path | None) -> Path | None:
    folder = cache_dir() if folder is None else folder
    if folder is None:
        return None
    text = json.dumps({"kind": kind, "key": key, "toolkit": source_fingerprint()}, sort_keys=True)
    return folder / f"{kind}-{hashlib.sha256(text.encode()).hexdigest()}.json"


def recall(kind: str, key: dict, folder: Path | None = None) -> dict | None:
    """The value kept under ``(kind, key)`` for this toolkit in ``folder`` (default :func:`cache_dir`), or None."""
    path = _path(kind, key, folder)
    try:
        return None if path is None else json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def remember(kind: str, key: dict, value: dict, folder: Path | None = None) -> None:
    """Keep ``value`` under ``(kind, key)`` in ``folder`` (default :func:`cache_dir`); written whole or not at
    all (a failed write is ignored)."""
    path = _path(kind, key, folder)
    if path is None:
        return
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile("w", dir=path.parent, suffix=".tmp", delete=False) as handle:
            json.dump(value, handle)
        os.replace(handle.name, path)
    except OSError:
        return
