"""Bad input: one clear line naming the field and the problem.

The base of every input error in the toolkit (the models raise it too, since
:mod:`fluid_models` does not import :mod:`checkers`); the CLI prints
``str(err)`` on one line and exits with status 2.

>>> str(InputError("workload.classes[0].rate", "must be positive, got -1"))
'workload.classes[0].rate: must be positive, got -1'
"""

from __future__ import annotations

__all__ = ["InputError"]


class InputError(ValueError):
    """Bad user input; ``field`` names where, ``problem`` says what is wrong."""

    def __init__(self, field: str, problem: str) -> None:
        self.field = field
        self.problem = problem
        super().__init__(f"{field}: {problem}")
