"""Sarathi-Serve's kernel: decodes first, then chunked prefill filling the token budget."""

from __future__ import annotations

import numba
import numpy as np

from ..base import NO_LIMIT
from .blocks import add_decodes, add_prefills, add_prefills_in, clear, open_room, prefill_order, tokens_taken


@numba.njit(cache=True)
def sarathi_kernel(ri, rf, n, eng, b_max, k_max, params, memory, take):
    clear(n, take)
    room = open_room(eng, b_max, k_max)
    add_decodes(ri, rf, n, room, take, NO_LIMIT)
    if params.size == 0 or params[0] == 0:
        add_prefills(ri, n, room, take, 0)
    else:  # shortest-prompt-first: started prompts first, then waiting ones by length
        add_prefills_in(ri, prefill_order(ri, n, np.empty(0), True), room, take, 0)
    return tokens_taken(b_max, room)
