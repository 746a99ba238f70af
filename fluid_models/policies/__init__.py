"""Schedulers as batch-forming rules (see :mod:`llmstab.fluid_models.policies.base`).

>>> sorted(POLICIES)
['fastertransformer', 'fcfs', 'fixed_chunk', 'orca', 'rad', 'sarathi', 'slai', 'vllm']
>>> make_policy("orca").label
'orca'
"""

from __future__ import annotations

from .base import Policy
from .fastertransformer import FasterTransformer
from .fcfs import FCFSWorkConserving
from .fixed_chunk import FixedChunk
from .orca import Orca
from .rad import RAD
from .sarathi import Sarathi
from .slai import SLAI
from .vllm import VLLM

__all__ = ["Policy", "Sarathi", "Orca", "VLLM", "FasterTransformer", "FCFSWorkConserving", "RAD", "FixedChunk", "SLAI", "POLICIES", "make_policy"]

POLICIES: dict[str, type[Policy]] = {
    cls.name: cls for cls in (Sarathi, Orca, VLLM, FasterTransformer, FCFSWorkConserving)
}
POLICIES[RAD.name] = RAD
POLICIES[FixedChunk.name] = FixedChunk
POLICIES[SLAI.name] = SLAI



def make_policy(name: str, **options: object) -> Policy:
    """The policy registered as ``name``, built with ``options``.

    Raises ``KeyError`` for an unknown name and ``TypeError`` for an unknown option.
    """
    return POLICIES[name](**options)
