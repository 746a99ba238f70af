"""Keeping numerical solvers off standard output.

Solvers written in C or C++ (HiGHS behind cvxpy and ``scipy.optimize.linprog``)
print banners such as ``Running HiGHS ... Copyright`` straight to file
descriptor 1, below Python's ``sys.stdout``: ``contextlib.redirect_stdout``
cannot catch them, and they would corrupt ``llmstab ... --json``. Every solve
in the toolkit runs inside :func:`quiet_solver`, which points descriptor 1 at
the null device for the duration of the call (flushing both Python's and the C
library's buffers on the way in and out) and restores it afterwards.

Examples
--------
>>> import numpy as np
>>> from scipy.optimize import linprog
>>> with quiet_solver():
...     res = linprog([1.0], A_ub=[[-1.0]], b_ub=[-2.0], method="highs")
>>> round(float(res.x[0]), 6)
2.0
>>> with quiet_solver():
...     print("not shown")
>>> print("shown")
shown
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import sys
import threading
from typing import Iterator

__all__ = ["quiet_solver"]

_LOCK = threading.RLock()
_DEPTH = 0


def _flush_c_stdio() -> None:
    """Flush the C library's ``stdout`` buffer (``fflush(NULL)``); a no-op where libc is not reachable."""
    try:
        ctypes.CDLL(None).fflush(None)
    except (OSError, AttributeError, TypeError):  # pragma: no cover - platforms without a global libc handle
        pass


def _stdout_fd() -> int | None:
    """The descriptor behind ``sys.stdout``, or ``None`` when it has none (a notebook, a test capture)."""
    try:
        return sys.__stdout__.fileno() if sys.__stdout__ is not None else None
    except (AttributeError, OSError, ValueError):
        return None


@contextlib.contextmanager
def quiet_solver() -> Iterator[None]:
    """Discard whatever runs inside writes to standard output, at the file-descriptor level.

    Re-entrant and thread-safe (nested uses redirect once). Python-level
    ``print`` inside the block is discarded too. Output to standard error is
    untouched, so solver errors raised as exceptions still reach the caller.

    Examples
    --------
    >>> with quiet_solver():
    ...     with quiet_solver():
    ...         _ = os.write(1, b"banner\\n")
    >>> print("after")
    after
    """
    global _DEPTH
    with _LOCK, contextlib.ExitStack() as stack:
        fd = _stdout_fd()
        if fd is not None and not _DEPTH:
            stack.enter_context(_descriptor_to_null(fd))
        _DEPTH += 1
        stack.callback(_decrement)
        sink = stack.enter_context(open(os.devnull, "w"))
        stack.enter_context(contextlib.redirect_stdout(sink))
        yield


def _decrement() -> None:
    global _DEPTH
    _DEPTH -= 1


@contextlib.contextmanager
def _descriptor_to_null(fd: int) -> Iterator[None]:
    """Point descriptor ``fd`` at the null device, flushing Python's and C's buffers around the switch."""
    for stream in (sys.stdout, sys.__stdout__):
        with contextlib.suppress(Exception):
            stream.flush()
    _flush_c_stdio()
    saved = os.dup(fd)
    null = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(null, fd)
        yield
    finally:
        _flush_c_stdio()
        os.dup2(saved, fd)
        os.close(saved)
        os.close(null)
