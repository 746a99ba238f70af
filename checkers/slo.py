"""Reading SLOs and class shares in a workload (called by :func:`llmstab.checkers.spec.parse_workload`).

A workload gives each class its own ``rate``, or gives one ``rate`` for the
whole arrival stream and each class a ``share`` of it (shares sum to 1). A
Poisson stream split at random by share is the sum of independent Poisson
streams at ``rate x share`` (thinning), so both forms give the same
:class:`~llmstab.fluid_models.workload.Workload`.

Examples
--------
>>> node = {"rate": 2, "classes": [{"share": 0.05}, {"share": 0.95}]}
>>> [str(class_rate(node, c, f"workload.classes[{i}]")) for i, c in enumerate(node["classes"])]
['1/10', '19/10']
>>> check_shares({"rate": 2, "classes": [{"share": 0.5}]}, "workload")
Traceback (most recent call last):
...
llmstab.fluid_models.errors.InputError: workload.classes: the shares sum to 1/2, not 1
"""

from __future__ import annotations

from fractions import Fraction
from typing import Any

from llmstab.fluid_models.batch_time import exact_number
from llmstab.fluid_models.errors import InputError
from llmstab.fluid_models.slo import SLO, parse_slo

__all__ = ["class_rate", "check_shares", "parse_slo", "SLO"]


def _positive(value: Any, where: str) -> Fraction:
    try:
        number = exact_number(value)
    except (TypeError, ValueError, SyntaxError):
        raise InputError(where, f"must be a number, got {value!r}") from None
    if number <= 0:
        raise InputError(where, f"must be positive, got {value}")
    return number


def class_rate(workload: dict, item: dict, at: str, where: str = "workload") -> Fraction:
    """The rate of class ``item``: its own ``rate``, or the workload's ``rate`` times its ``share``."""
    if workload.get("rate") is None:
        if "share" in item:
            raise InputError(f"{at}.share", "needs a workload rate to share (give workload.rate, or a rate per class)")
        if item.get("rate") is None:
            raise InputError(f"{at}.rate", "missing")
        return _positive(item["rate"], f"{at}.rate")
    if "rate" in item:
        raise InputError(f"{at}.rate", "the workload has one rate: give this class a share of it instead")
    if item.get("share") is None:
        raise InputError(f"{at}.share", "missing (the workload has one rate, split among classes by share)")
    share = _positive(item["share"], f"{at}.share")
    if share > 1:
        raise InputError(f"{at}.share", f"must lie in (0, 1], got {item['share']}")
    return _positive(workload["rate"], f"{where}.rate") * share


def check_shares(workload: dict, where: str) -> None:
    """With a workload ``rate``, the classes' shares must sum to exactly 1."""
    if workload.get("rate") is None:
        return
    total = sum((exact_number(c["share"]) for c in workload["classes"]), Fraction(0))
    if total != 1:
        raise InputError(f"{where}.classes", f"the shares sum to {total}, not 1")
