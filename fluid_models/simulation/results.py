"""What the single-engine and cluster results share: equality over their recorded arrays, latency summaries.

Examples
--------
>>> import numpy as np
>>> from dataclasses import dataclass
>>> @dataclass(frozen=True, eq=False)
... class Run(ArrayResult):
...     _ARRAYS = ("finish",)
...     finish: np.ndarray
>>> Run(np.array([1.0, np.nan])) == Run(np.array([1.0, np.nan])), Run(np.array([1.0])) == Run(np.array([2.0]))
(True, False)
>>> summary(np.array([1.0, 2.0, 3.0, np.inf]))["p50"]
2.0
"""

from __future__ import annotations

from operator import attrgetter
from typing import ClassVar

import numpy as np

__all__ = ["ArrayResult", "summary", "request_latencies"]


class ArrayResult:
    """A result compared field by field: the arrays named in ``_ARRAYS`` (NaN equal to NaN), the values in ``_SCALARS``.

    Names may be dotted (``"trace.times"``). Results are not hashable.
    """

    _ARRAYS: ClassVar[tuple[str, ...]] = ()
    _SCALARS: ClassVar[tuple[str, ...]] = ()
    __hash__ = None  # type: ignore[assignment]

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        same = all(np.array_equal(attrgetter(a)(self), attrgetter(a)(other), equal_nan=True) for a in self._ARRAYS)
        return same and all(attrgetter(a)(self) == attrgetter(a)(other) for a in self._SCALARS)


def summary(values: np.ndarray) -> dict:
    """``n``, ``mean``, ``p50``, ``p90``, ``p99`` of the finite ``values`` (``None`` when there are none)."""
    v = values[np.isfinite(values)]
    if v.size == 0:
        return {"n": 0, "mean": None, "p50": None, "p90": None, "p99": None}
    p50, p90, p99 = np.percentile(v, [50, 90, 99])
    return {"n": int(v.size), "mean": float(v.mean()), "p50": float(p50), "p90": float(p90), "p99": float(p99)}


def request_latencies(trace: object, first_token: np.ndarray, finish: np.ndarray, worst_gap: np.ndarray,
                      mask: np.ndarray) -> dict:
    """Per-request summaries over the finished requests in ``mask``: TTFT, mean TBT, worst TBT, end to end.

    The first token ends TTFT; the mean TBT spreads ``finish - first token``
    over the tokens after the first (``d``, or ``d - 1`` without a prompt).

    >>> from llmstab.fluid_models.simulation.arrivals import Trace
    >>> tr = Trace([0.0], [4], [2])
    >>> m = request_latencies(tr, np.array([1.0]), np.array([3.0]), np.array([1.0]), np.array([True]))
    >>> m["ttft_s"]["mean"], m["tbt_s"]["mean"], m["e2e_s"]["mean"]
    (1.0, 1.0, 3.0)
    """
    done = mask & np.isfinite(finish)
    gaps = trace.decode - (trace.prompt == 0)  # tokens after the first (the prefill's batch emits it)
    multi = done & (gaps > 0)
    return {"ttft_s": summary(first_token[done] - trace.times[done]),
            "tbt_s": summary((finish[multi] - first_token[multi]) / gaps[multi]),
            "worst_tbt_s": summary(worst_gap[multi]),
            "e2e_s": summary(finish[done] - trace.times[done])}
