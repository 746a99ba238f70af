"""The first-come-first-served work-conserving kernel."""

from __future__ import annotations

import numba

from ..base import BLOCKS, BLOCK_SIZE, CTX, DC, EVICT, LATEST_ARRIVED, PF, TAKE_D, TAKE_P
from .blocks import admit, clear, open_room, secure_decode


@numba.njit(cache=True)
def fcfs_kernel(ri, rf, n, eng, b_max, k_max, params, memory, take):
    clear(n, take)
    budget, slots = b_max, k_max
    room = open_room(eng, b_max, k_max)  # memory bookkeeping
    for i in range(n):
        if budget <= 0 or slots <= 0:
            break
        if take[i, EVICT] > 0:  # preempted earlier in this batch
            continue
        if ri[i, PF] > 0:
            if ri[i, BLOCKS] == 0 and not admit(ri, i, room):
                break
            x = min(ri[i, PF], budget)
            take[i, TAKE_P] = x
            budget -= x
            slots -= 1
        elif ri[i, DC] > 0 and (0 < ri[i, BLOCKS] and ri[i, CTX] < ri[i, BLOCKS] * eng[BLOCK_SIZE]
                                or secure_decode(ri, rf, n, i, room, take, LATEST_ARRIVED)):
            take[i, TAKE_D] = 1
            budget -= 1
            slots -= 1
    return b_max - budget
