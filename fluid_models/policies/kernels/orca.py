"""Orca's kernel: prefill first (the last prompt chunked to fit), decodes fill the rest."""

from __future__ import annotations

import numba

from ..base import NO_LIMIT
from .blocks import add_decodes, add_prefills, clear, open_room, tokens_taken


@numba.njit(cache=True)
def orca_kernel(ri, rf, n, eng, b_max, k_max, params, memory, take):
    clear(n, take)
    room = open_room(eng, b_max, k_max)
    add_prefills(ri, n, room, take, 0)
    add_decodes(ri, rf, n, room, take, NO_LIMIT)
    return tokens_taken(b_max, room)
