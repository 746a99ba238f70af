"""The ``llmstab`` command line.

Each subcommand lives in its own module that exposes ``register(subparsers)``;
:data:`COMMANDS` maps every command name to its module. Only the module of the
command being run is imported (``llmstab --help`` imports them all), so one
command's heavy dependencies never slow another down. Exit status: 0 when the command ran
(whatever the verdicts), 2 for bad input (one line on stderr naming the field
and the problem), 1 for an internal failure (one line; set ``LLMSTAB_DEBUG=1``
for the traceback).
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from ..errors import InputError

__all__ = ["main", "build_parser", "COMMANDS"]

COMMANDS = {
    "check": "llmstab.checkers.cli.check",
    "derive": "llmstab.checkers.cli.derive",
    "simulate": "llmstab.checkers.cli.simulate",
    "region": "llmstab.checkers.cli.region",
    "profile": "llmstab.checkers.cli.profile",
    "fit": "llmstab.checkers.cli.profile",
    "presets": "llmstab.checkers.cli.profile",
    "fluid": "llmstab.checkers.cli.fluid",
    "network-plot": "llmstab.checkers.cli.fluid",
    "sweep": "llmstab.checkers.cli.sweep",
    "capacity": "llmstab.checkers.cli.capacity",
}


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The argument parser with ``command``'s module registered (every module if ``None``)."""
    parser = argparse.ArgumentParser(
        prog="llmstab",
        description="Decide, with checkable evidence, whether an LLM-inference scheduler is stable "
                    "at a load and whether it is maximally stable (throughput-optimal).")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    modules = [COMMANDS[command]] if command in COMMANDS else list(dict.fromkeys(COMMANDS.values()))
    for name in modules:
        importlib.import_module(name).register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; returns the exit status."""
    argv = sys.argv[1:] if argv is None else argv
    args = build_parser(argv[0] if argv else None).parse_args(argv)
    try:
        return int(args.run(args) or 0)
    except InputError as exc:
        print(f"llmstab: error: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # the reader went away (``llmstab derive F | head``): not an error
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
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
