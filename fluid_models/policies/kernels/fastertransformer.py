"""FasterTransformer's kernel: decode-only batches while anything decodes."""

from __future__ import annotations

import numba

from ..base import NO_LIMIT
from .blocks import add_decodes, add_whole_prefills, any_decoding, clear, open_room, tokens_taken
from .vllm import head_prompt_fits


@numba.njit(cache=True)
def fastertransformer_kernel(ri, rf, n, eng, b_max, k_max, params, memory, take):
    clear(n, take)
    room = open_room(eng, b_max, k_max)
    if any_decoding(ri, n):
        add_decodes(ri, rf, n, room, take, NO_LIMIT)
    elif head_prompt_fits(ri, n, b_max, params):
        add_whole_prefills(ri, n, room, take)
    return tokens_taken(b_max, room)
