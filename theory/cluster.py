"""Exact load arithmetic for clusters: pooled capacity and the utilisation of each disaggregated resource.

All arguments and results are exact rationals (sympy), so a load is compared
with a capacity without rounding.

* ``g`` identical replicas carry at most ``g`` times one replica's capacity:
  whatever the router, the replicas' batches run in parallel and each serves at
  most ``max_b b/t_b`` tokens per ms (Li-Dai-Peng Theorem 2(a) per replica;
  Bari et al.'s Theorem 1 ``lambda d_a > g`` is this bound for tiled engines).
* Disaggregated serving has four resources; each is necessary:
  the prefill pool (``lambda E[p]`` against ``g_p`` times a prefill replica's
  capacity), the decode pool (``lambda E[d]`` against ``g_d`` times a decode
  replica's capacity over batches of at most ``min(b_max, k_max)`` decodes),
  the KV-transfer link (``lambda E[p] ms_per_token`` of link time per ms) and,
  when a decode replica's KV size ``M`` is given, the decode pool's memory by
  Little's law: a request holds at least ``p + k`` tokens while its ``k``-th
  output token is computed, for at least the shortest batch ``t_min``, so
  ``lambda (E[p d] + E[d (d - 1)] / 2) t_min <= g_d M``.

Examples
--------
>>> pooled_capacity(sympy.Rational(10, 3), 4)
40/3
>>> u = utilisations(rate_per_s=10, mean_prompt=100, mean_decode=50, prefill_capacity=2, prefill_replicas=1,
...                  decode_capacity=1, decode_replicas=1, ms_per_token=sympy.Rational(1, 2))
>>> u["prefill"], u["decode"], u["link"], binding(u)
(1/2, 1/2, 1/2, 'prefill')
"""

from __future__ import annotations

import sympy

__all__ = ["pooled_capacity", "utilisations", "binding", "kv_token_seconds", "RESOURCES"]

RESOURCES = ("prefill", "decode", "link", "kv_memory")


def pooled_capacity(per_replica_tokens_per_ms: object, replicas: int) -> sympy.Rational:
    """``g`` times one replica's capacity (tokens per ms)."""
    if replicas < 1:
        raise ValueError("replicas must be at least 1")
    return replicas * sympy.Rational(per_replica_tokens_per_ms)


def kv_token_seconds(mean_prompt_times_decode: object, decode_second_moment: object, mean_decode: object,
                     t_min_ms: object) -> sympy.Rational:
    """A lower bound on the KV token-milliseconds one request holds on a decode replica.

    ``(E[p d] + (E[d^2] - E[d]) / 2) t_min``: the sum over its output tokens of
    the context ``p + k`` held for at least one batch.

    >>> kv_token_seconds(10, 5, 2, 3)
    69/2
    """
    pd, d2, d = (sympy.Rational(v) for v in (mean_prompt_times_decode, decode_second_moment, mean_decode))
    return (pd + (d2 - d) / 2) * sympy.Rational(t_min_ms)


def utilisations(*, rate_per_s: object, mean_prompt: object, mean_decode: object, prefill_capacity: object,
                 prefill_replicas: int, decode_capacity: object, decode_replicas: int, ms_per_token: object,
                 kv_ms_per_request: object = None, kv_tokens: int | None = None) -> dict[str, sympy.Rational]:
    """Each resource's load over its capacity (1 = critical), exactly.

    Capacities are per replica in tokens per ms; ``kv_ms_per_request`` is
    :func:`kv_token_seconds` (token-ms); ``kv_tokens`` the KV size of one decode
    replica (both or neither).
    """
    lam = sympy.Rational(rate_per_s) / 1000  # requests per ms
    out = {
        "prefill": lam * sympy.Rational(mean_prompt) / pooled_capacity(prefill_capacity, prefill_replicas),
        "decode": lam * sympy.Rational(mean_decode) / pooled_capacity(decode_capacity, decode_replicas),
        "link": lam * sympy.Rational(mean_prompt) * sympy.Rational(ms_per_token),
    }
    if kv_tokens is not None and kv_ms_per_request is not None:
        out["kv_memory"] = lam * sympy.Rational(kv_ms_per_request) / (decode_replicas * kv_tokens)
    return out


def binding(utilisation: dict[str, sympy.Rational]) -> str:
    """The resource with the largest utilisation (the first in :data:`RESOURCES` order among ties)."""
    top = max(utilisation.values())
    return next(name for name in RESOURCES if name in utilisation and utilisation[name] == top)
