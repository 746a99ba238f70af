"""RAD's kernel (Bari-Hegde-de Veciana, Algorithm 1): whole-tile decode and prefill modes."""

from __future__ import annotations

import numba
import numpy as np

from ..base import BLOCKS, DC, PF, TAKE_P
from .blocks import add_decodes, admit, any_prefilling, clear, open_room
from ..rad import DECODE_MODE, PREFILL_MODE


@numba.njit(cache=True)
def _rad_mode(ri, n, b_col, cycle, memory):
    """Decode Mode at ``b_col`` decoding requests or nothing to prefill, else Prefill Mode; a finite cycle alternates."""
    decoding = 0
    for i in range(n):
        if ri[i, PF] == 0 and ri[i, DC] > 0:
            decoding += 1
    prefilling = any_prefilling(ri, n)
    mode = DECODE_MODE if (decoding >= b_col or not prefilling) else PREFILL_MODE
    # a finite cycle N: after N batches in one mode, the other mode gets a turn if it has work
    if cycle > 0 and memory[1] >= cycle and memory[0] == mode:
        if mode == DECODE_MODE and prefilling:
            mode = PREFILL_MODE
        elif mode == PREFILL_MODE and decoding > 0:
            mode = DECODE_MODE
    return mode
@numba.njit(cache=True)
def rad_kernel(ri, rf, n, eng, b_max, k_max, params, memory, take):
    clear(n, take)
    b_col, b_lcm, cycle = np.int64(params[0]), np.int64(params[1]), np.int64(params[2])
    mode = _rad_mode(ri, n, b_col, cycle, memory)
    room = open_room(eng, b_max, k_max)
    tokens = 0
    if mode == PREFILL_MODE:
        for i in range(n):
            if ri[i, PF] > 0:
                if ri[i, BLOCKS] == 0 and not admit(ri, i, room):
                    break
                take[i, TAKE_P] = min(ri[i, PF], b_lcm, b_max)
                tokens = take[i, TAKE_P]
                break
        if tokens == 0:  # the oldest prompt does not fit in memory: decode instead
            mode = DECODE_MODE
    if mode == DECODE_MODE:
        tokens = add_decodes(ri, rf, n, room, take, b_col)
    if tokens > 0:
        if memory[0] == mode:
            memory[1] += 1
        else:
            memory[0] = mode
            memory[1] = 1
    return tokens
