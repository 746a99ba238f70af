"""Replay a policy batch by batch on labelled requests, to see exactly what it does.

Examples
--------
The five-request example of Li-Dai-Peng (Fig. 8): A, B, C are decoding with
2, 4, 3 tokens left; D and E (1 prefill + 1 decode token each) arrive during
the first batch.

>>> from llmstab.fluid_models.policies import Sarathi
>>> start = [("A", 0, 2), ("B", 0, 4), ("C", 0, 3)]
>>> " | ".join(replay(Sarathi(), start, b_max=4, arrivals={1: [("D", 1, 1), ("E", 1, 1)]}))
'{Ad,Bd,Cd} | {Ad,Bd,Cd,Dp} | {Bd,Cd,Dd,Ep} | {Bd,Ed}'
"""

from __future__ import annotations

from typing import Sequence

from ..policies import Policy
from ..state import EngineState

__all__ = ["replay"]

Request = tuple[str, int, int]  # (label, prefill tokens, decode tokens)


def replay(policy: Policy, resident: Sequence[Request], b_max: int, k_max: int | None = None,
           arrivals: dict[int, Sequence[Request]] | None = None, max_batches: int = 10_000) -> list[str]:
    """The batches ``policy`` forms until every request finishes.

    ``arrivals[i]`` lists the requests that join (in order, after the resident
    ones) once ``i`` batches have run. Returns each batch as ``{Ad,Bp,...}``.
    """
    pending = dict(arrivals or {})
    labels = [r[0] for r in resident]
    state = EngineState(tuple(r[1] for r in resident), tuple(r[2] for r in resident))
    memory = policy.initial_memory()
    batches: list[str] = []
    while (state.size or pending) and len(batches) < max_batches:
        batch = policy.form_batch(state, b_max, k_max, memory)
        if batch.tokens == 0 and not pending:
            raise RuntimeError(f"{policy.label} formed an empty batch with {state.size} requests waiting")
        batches.append(batch.describe(labels))
        after = batch.apply(state)
        labels = [lab for lab, d, took in zip(labels, state.decode_left, batch.decode) if d - took > 0]
        state = after
        for label, p, d in pending.pop(len(batches), ()):
            labels.append(label)
            state = EngineState(state.prefill_left + (p,), state.decode_left + (d,))
    return batches
