"""Orca's kernel: prefill first (the last prompt chunked to fit), decodes fill the rest."""

from __future__ import annotations

import numba
import numpy as np

from ..base import NO_LIMIT
from .blocks import add_decodes, add_prefills_leaving_room, clear, open_room, tokens_taken


@numba.njit(cache=True)
def orca_kernel(ri, rf, n, eng, b_max, k_max, params, memory, take):
    clear(n, take)
    room = open_room(eng, b_max, k_max)
    rows = np.arange(n)
    add_prefills_leaving_room(ri, rows, rows, room, take, 0, NO_LIMIT)  # prefill first, decodes keep their blocks
    add_decodes(ri, rf, n, room, take, NO_LIMIT)
    return tokens_taken(b_max, room)
