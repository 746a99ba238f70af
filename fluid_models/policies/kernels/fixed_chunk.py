"""The fixed-chunk kernel: Sarathi-Serve's rule with a token budget of ``chunk`` per batch."""

from __future__ import annotations

import numba
import numpy as np

from ..base import NO_LIMIT
from .blocks import add_decodes, add_prefills, clear, open_room, tokens_taken


@numba.njit(cache=True)
def fixed_chunk_kernel(ri, rf, n, eng, b_max, k_max, params, memory, take):
    clear(n, take)
    budget = min(b_max, np.int64(params[0]))
    room = open_room(eng, budget, k_max)
    add_decodes(ri, rf, n, room, take, NO_LIMIT)
    add_prefills(ri, n, room, take, 0)
    return tokens_taken(budget, room)
