"""The ``llmstab`` command line.

Each subcommand lives in its own module that exposes ``register(subparsers)``;
:data:`COMMAND_MODULES` lists them. Exit status: 0 when the command ran
(whatever the verdicts), 2 for bad input (one line on stderr naming the field
and the problem), 1 for an internal failure (one line; set ``LLMSTAB_DEBUG=1``
for the traceback).
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from .errors import InputError

__all__ = ["main", "build_parser", "COMMAND_MODULES"]

COMMAND_MODULES = (
    "checkers.cli_check",
    "checkers.cli_derive",
    "checkers.cli_profile",
)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every registered subcommand."""
    parser = argparse.ArgumentParser(
        prog="llmstab",
        description="Decide, with checkable evidence, whether an LLM-inference scheduler is stable "
                    "at a load and whether it is maximally stable (throughput-optimal).")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; returns the exit status."""
    args = build_parser().parse_args(argv)
    try:
        return int(args.run(args) or 0)
    except InputError as exc:
        print(f"llmstab: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("llmstab: interrupted", file=sys.stderr)
        return 1
    except Exception as exc:  # the contract: one line, never a traceback
        if os.environ.get("LLMSTAB_DEBUG"):
            raise
        print(f"llmstab: internal error: {exc.__class__.__name__}: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
