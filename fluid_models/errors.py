"""Bad input: one clear line naming the field and the problem.

The root of every input error in the toolkit (the models raise it too, since
:mod:`llmstab.fluid_models` does not import :mod:`llmstab.checkers`): trace,
profile, network and fluid-model errors are its subclasses. The CLI prints
``str(err)`` on one line and exits with status 2.

>>> str(InputError("workload.classes[0].rate", "must be positive, got -1"))
'workload.classes[0].rate: must be positive, got -1'
>>> from llmstab.fluid_models.networks.fluid import FluidError
>>> from llmstab.fluid_models.networks.network import NetworkError
>>> issubclass(FluidError, InputError) and issubclass(NetworkError, InputError)
True
>>> str(FluidError("engine e1: k_max makes its capacity a region"))
'engine e1: k_max makes its capacity a region'
"""

from __future__ import annotations

__all__ = ["InputError"]


class InputError(ValueError):
    """Bad user input; ``field`` names where, ``problem`` says what is wrong.

    A model-level subclass may be raised with the problem alone when its
    message already says where (``field`` is then empty), as
    :class:`~llmstab.fluid_models.networks.fluid.FluidError` is.
    """

    def __init__(self, field: str, problem: str | None = None) -> None:
        if problem is None:
            field, problem = "", field
        self.field = field
        self.problem = problem
        super().__init__(f"{field}: {problem}" if field else problem)
