"""Command-line values shared by several subcommands, checked into :class:`~llmstab.checkers.errors.InputError`."""

from __future__ import annotations

import math

from ..errors import InputError

__all__ = ["parse_seed", "parse_positive", "save_plot"]


def parse_seed(text: str) -> int:
    """The ``--seed`` value: a non-negative integer, else :class:`InputError`.

    >>> parse_seed("7")
    7
    >>> parse_seed("1.5")
    Traceback (most recent call last):
    ...
    llmstab.fluid_models.errors.InputError: seed: must be a non-negative integer, got '1.5'
    """
    try:
        value = int(text, 10)
    except ValueError:
        raise InputError("seed", f"must be a non-negative integer, got {text!r}") from None
    if value < 0:
        raise InputError("seed", f"must be a non-negative integer, got {text!r}")
    return value


def parse_positive(text: str | None, field: str, kind: type = float) -> float | int | None:
    """A positive number (``kind`` float or int) from the command line, else :class:`InputError`.

    >>> parse_positive("0", "horizon")
    Traceback (most recent call last):
    ...
    llmstab.fluid_models.errors.InputError: horizon: must be positive, got '0'
    """
    if text is None:
        return None
    try:
        value = kind(text)
    except ValueError:
        raise InputError(field, f"must be a{'n integer' if kind is int else ' number'}, got {text!r}") from None
    if not math.isfinite(value) or value <= 0:
        raise InputError(field, f"must be positive, got {text!r}")
    return value


def save_plot(fig, path: str, **savefig_options) -> None:
    """Write ``fig`` to ``path`` and close it; a path that cannot be written is an ``--plot`` :class:`InputError`.

    >>> import matplotlib
    >>> matplotlib.use("Agg")
    >>> import matplotlib.pyplot as plt
    >>> save_plot(plt.figure(), "/nonexistent-folder/p.png")
    Traceback (most recent call last):
    ...
    llmstab.fluid_models.errors.InputError: --plot: cannot write /nonexistent-folder/p.png: ...
    """
    import matplotlib.pyplot as plt

    try:
        fig.savefig(path, **savefig_options)
    except (OSError, ValueError) as err:
        raise InputError("--plot", f"cannot write {path}: {err}") from None
    finally:
        plt.close(fig)
