"""Vanilla vLLM's kernel, and the ``long_prompts`` test it shares with FasterTransformer's."""

from __future__ import annotations

import numba

from ..base import NO_LIMIT, PF
from .blocks import add_decodes, add_whole_prefills, any_prefilling, clear, open_room, tokens_taken


@numba.njit(cache=True)
def head_prompt_fits(ri, n, b_max, params):
    """Whether whole-prompt admission may start: the first prompt waiting fits in ``b_max``, or long ones are split.

    ``params[0] == 1`` is ``long_prompts: reject``: the first prefilling request
    in service order, longer than ``b_max``, then blocks admission (first come,
    first served), as the literal whole-prompt rule does.
    """
    if params.size == 0 or params[0] != 1.0:
        return True
    for i in range(n):
        if ri[i, PF] > 0:
            return ri[i, PF] <= b_max
    return True
@numba.njit(cache=True)
def vllm_kernel(ri, rf, n, eng, b_max, k_max, params, memory, take):
    clear(n, take)
    room = open_room(eng, b_max, k_max)
    if any_prefilling(ri, n) and head_prompt_fits(ri, n, b_max, params):
        add_whole_prefills(ri, n, room, take)
    if tokens_taken(b_max, room) == 0:
        add_decodes(ri, rf, n, room, take, NO_LIMIT)
    return tokens_taken(b_max, room)
