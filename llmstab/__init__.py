"""llmstab: decide, with checkable evidence, whether an LLM-inference scheduler is stable.

The public API (:mod:`llmstab.api`, imported on first use, so ``import llmstab``
stays cheap):

* :func:`check` -- the capacity, the load and two verdicts with their evidence
  (``check(...).to_json()`` is what ``llmstab check --json`` prints);
* :func:`load` -- parse and validate an input file or document;
* :func:`region` -- an engine's capacity region; :func:`simulate` -- one run;
* predicates backed by their evidence: :func:`is_work_conserving`
  (:func:`work_conservation_certificate`), :func:`is_stable`
  (:func:`load_verdict`), :func:`is_maximally_stable` (:func:`policy_verdict`).

The toolkit's folders install as ``llmstab.theory`` (exact capacities in Fractions; theorem
conditions and derivations in sympy, imported only for them; certificates), ``llmstab.fluid_models`` (batch-time models, workloads, policies,
simulators, networks) and ``llmstab.checkers`` (decision procedures, the check pipeline and the CLI).

Examples
--------
>>> import llmstab
>>> r = llmstab.check("examples/codellama34b_a100_sarathi.yaml")
>>> r.to_json()["load_verdict"], r.to_json()["policy_verdict"]
('stable', 'maximally-stable')
>>> llmstab.is_maximally_stable("examples/codellama34b_a100_vllm.yaml")
False
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_API = ("check", "load", "region", "simulate", "is_work_conserving", "work_conservation_certificate",
        "is_stable", "load_verdict", "is_maximally_stable", "policy_verdict")
_SUBPACKAGES = ("theory", "fluid_models", "checkers", "api")

__all__ = list(_API)


def __getattr__(name: str) -> Any:
    """Import the API (or a subpackage) on first use."""
    if name in _API:
        value = getattr(importlib.import_module(".api", __name__), name)
    elif name in _SUBPACKAGES:
        value = importlib.import_module(f".{name}", __name__)
    else:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_API, *_SUBPACKAGES})
