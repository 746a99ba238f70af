"""SLAI against Sarathi-Serve on the SLAI setup, as ratios, across the decode-attention coefficient.

Reads ``slai_sharegpt_slo.yaml``, then for each decode-attention coefficient
(ms per decode token x context token: none, and Mistral-7B's K/V bytes per
context token over 100 %, 90 % and 50 % of the RTX 6000 Ada's 960 GB/s,
:func:`~llmstab.fluid_models.profiling.attention.decode_attention_bound`)
finds the SLO capacity of Sarathi-Serve (FCFS), Sarathi-Serve (SPF) and SLAI,
and SLAI's median TTFT at Sarathi-Serve FCFS's capacity. Writes
``slai_study.json`` beside this file (read by notebooks/07_slai_slo_capacity.ipynb)::

    python examples/slai_study.py [REQUESTS_PER_POINT] [HEADLINE_REQUESTS] [WORKERS]

With ``WORKERS`` the points run on a local Dask cluster of that many processes (the same numbers).
"""

from __future__ import annotations

import dataclasses
import json
import sys
import time
from pathlib import Path

from llmstab.checkers.capacity import compare_to_baseline, default_loads, stability_capacity
from llmstab.checkers.spec import load_engine_spec
from llmstab.fluid_models.batch_time import Attention
from llmstab.fluid_models.policies import Sarathi
from llmstab.fluid_models.profiling.attention import decode_attention_bound

HERE = Path(__file__).parent
EFFICIENCIES = (1.0, 0.9, 0.5)


def coefficients() -> list[float]:
    """No decode attention, then the physical coefficient at each bandwidth efficiency."""
    return [0.0] + [decode_attention_bound("mistral-7b", 960.0, (e, e))[0] for e in EFFICIENCIES]


def study(k_dec: float, n_requests: int, seed: int = 0, workers: int | None = None) -> dict:
    """Both ratios, and Sarathi SPF's capacity, at one decode-attention coefficient."""
    spec = load_engine_spec(HERE / "slai_sharegpt_slo.yaml")
    engine = dataclasses.replace(spec.engine, attention=Attention(decode=repr(k_dec), prefill=0))
    loads = default_loads(stability_capacity(engine, spec.workload), 10)
    challengers = {"slai": spec.policy, "sarathi_spf": Sarathi(order="spf")}
    result = compare_to_baseline(engine, Sarathi(), challengers, spec.workload, loads, n_requests=n_requests, seed=seed,
                                 workers=workers)
    return {"k_dec_ms": k_dec, "requests_per_point": n_requests, **result}


def main(argv: list[str]) -> None:
    n = int(argv[0]) if argv else 2048
    headline_n = int(argv[1]) if len(argv) > 1 else 8192
    workers = int(argv[2]) if len(argv) > 2 else None
    ks = coefficients()
    out = {"efficiencies": list(EFFICIENCIES), "sensitivity": [], "headline": None}
    for k in ks:
        t = time.perf_counter()
        out["sensitivity"].append(study(k, n, workers=workers))
        print(f"k_dec = {k:.3e} ms: {time.perf_counter() - t:.0f} s", flush=True)
    out["headline"] = study(ks[2], headline_n, workers=workers)
    (HERE / "slai_study.json").write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main(sys.argv[1:])
