"""The compiled scan of the work-conservation checker (importing it imports numba).

:func:`first_failure` runs a policy's own kernel on many states at once; the
checker (:mod:`llmstab.checkers.work_conservation`) builds the states and
reads the answer.

>>> import numpy as np
>>> from llmstab.fluid_models.policies import VLLM
>>> p = VLLM()
>>> pfs, dcs = np.array([[0, 1]]), np.array([[1, 1]])
>>> one = np.array([1])
>>> int(first_failure(p.compiled_kernel(), p.parameters(), p.initial_memory(), pfs, dcs, one * 2, one * 2,
...                   one * 2**62, one * 2))
0
"""

from __future__ import annotations

import numba
import numpy as np
from numba import types

from llmstab.fluid_models.policies.kernels.blocks import KERNEL_TYPE, run_on_lengths

__all__ = ["first_failure"]

_i8a, _f8a = types.int64[::1], types.float64[::1]
_i8m = types.int64[:, ::1]


@numba.njit(types.int64(KERNEL_TYPE, _f8a, _i8a, _i8m, _i8m, _i8a, _i8a, _i8a, _i8a), cache=True)
def first_failure(kernel, params, memory0, pfs, dcs, sizes, b_maxes, k_maxes, fills):
    """Index of the first case ``(pfs[c], dcs[c], b_maxes[c], k_maxes[c])`` that fails, or -1.

    Fails: an infeasible batch, or fewer tokens than the largest feasible batch within
    ``fills[c]`` tokens (the policy's own budget at ``b_maxes[c]``).
    """
    width = pfs.shape[1]
    take_p = np.zeros(width, np.int64)
    take_d = np.zeros(width, np.int64)
    contrib = np.zeros(width, np.int64)
    for c in range(pfs.shape[0]):
        n, b_max, k_max = sizes[c], b_maxes[c], k_maxes[c]
        pf = pfs[c].copy()
        dc = dcs[c].copy()
        for i in range(n):
            contrib[i] = pf[i] if pf[i] > 0 else 1
        total = np.sort(contrib[:n])[::-1][: min(n, k_max)].sum()
        tokens = run_on_lengths(kernel, pf, dc, n, b_max, k_max, params, memory0.copy(), take_p, take_d)
        used, served = 0, 0
        ok = tokens <= b_max
        for i in range(n):
            if take_p[i] < 0 or take_p[i] > pf[i] or take_d[i] < 0 or take_d[i] > 1:
                ok = False
            if take_d[i] == 1 and pf[i] > 0:
                ok = False
            used += take_p[i] + take_d[i]
            if take_p[i] > 0 or take_d[i] > 0:
                served += 1
        if not ok or used != tokens or served > k_max or tokens < min(fills[c], total):
            return c
    return -1
