"""Input errors: one clear line naming the field and the problem."""

from __future__ import annotations

__all__ = ["InputError"]


class InputError(ValueError):
    """Bad user input. ``str(err)`` is the single line the CLI prints (exit status 2).

    >>> str(InputError("workload.classes[0].rate", "must be positive, got -1"))
    'workload.classes[0].rate: must be positive, got -1'
    """

    def __init__(self, field: str, problem: str) -> None:
        self.field = field
        self.problem = problem
        super().__init__(f"{field}: {problem}")
