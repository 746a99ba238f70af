"""Input errors: one clear line naming the field and the problem (exit status 2).

:class:`InputError` is defined in :mod:`llmstab.fluid_models.errors`, so that the models
can raise it as well; the models' own errors (bad traces, bad profiles) are
subclasses of it.

>>> str(InputError("workload.classes[0].rate", "must be positive, got -1"))
'workload.classes[0].rate: must be positive, got -1'
"""

from __future__ import annotations

from llmstab.fluid_models.errors import InputError

__all__ = ["InputError"]
