"""The llmstab command line.

Each subcommand lives in its own module that exposes ``register(subparsers)``;
:data:`COMMANDS` maps every command name to its module and :data:`SUMMARIES`
gives its one-line description. Only the module of the command being run is
imported; ``llmstab --help`` imports none (it lists :data:`SUMMARIES`), so one
command's heavy dependencies never slow another down. Exit status: 0 when the
command ran (whatever the verdicts), 2 for bad input (one line on stderr naming
the field and the problem), 1 for an internal failure (one line; set
``LLMSTAB_DEBUG=1`` for the traceback).

Examples
--------
>>> "check" in build_parser().format_help()
True
>>> _Formatter("llmstab")._plain("``llmstab check FILE``: see :func:`~llmstab.checkers.pipeline.check_source`")
'llmstab check FILE: see check_source'
"""

from __future__ import annotations

import argparse
import importlib
import os
import re
import sys

from ..errors import InputError

__all__ = ["main", "build_parser", "COMMANDS", "SUMMARIES"]

COMMANDS = {
    "check": "llmstab.checkers.cli.check",
    "derive": "llmstab.checkers.cli.derive",
    "simulate": "llmstab.checkers.cli.simulate",
    "region": "llmstab.checkers.cli.region",
    "capacity": "llmstab.checkers.cli.capacity",
    "profile": "llmstab.checkers.cli.profile",
    "fit": "llmstab.checkers.cli.profile",
    "presets": "llmstab.checkers.cli.profile",
    "fluid": "llmstab.checkers.cli.fluid",
    "network-plot": "llmstab.checkers.cli.fluid",
    "sweep": "llmstab.checkers.cli.sweep",
}

#: One line per command, shown by ``llmstab --help`` without importing the command's module.
SUMMARIES = {
    "check": "decide whether a load is stable and whether the scheduler is maximally stable, with evidence",
    "derive": "print the symbolic derivation of an engine's capacity and drift (text or LaTeX)",
    "simulate": "simulate one engine: latencies, throughput and backlog growth",
    "region": "an engine's capacity region with a batch-size limit, the load's margin and its certificate",
    "capacity": "the largest load each scheduler carries within the latency targets (SLOs)",
    "profile": "time real iterations of a decoder model (random weights) and write a profile CSV",
    "fit": "fit batch-time models to a profile CSV and write a model file",
    "presets": "list the shipped batch-time presets, or show one",
    "fluid": "the fluid trajectory of a network of engines from an initial backlog",
    "network-plot": "draw a network's engines and the routes of its request classes",
    "sweep": "evaluate loads x policies x presets x seeds in parallel (Dask)",
}

_LITERAL = re.compile(r"``([^`]*)``")
_ROLE = re.compile(r":(?:class|func|mod|meth|data|attr):`~?(?:[\w.]+\.)?([^`]+)`")


class _Formatter(argparse.RawDescriptionHelpFormatter):
    """Help text as a person reads it: reST literals and roles (``x``, :func:`y`) shown as plain words."""

    def _plain(self, text: str) -> str:
        return re.sub(r"::$", ":", _ROLE.sub(r"\1", _LITERAL.sub(r"\1", text)), flags=re.MULTILINE)

    def _format_text(self, text: str) -> str:
        return super()._format_text(self._plain(text))

    def _expand_help(self, action: argparse.Action) -> str:
        return self._plain(super()._expand_help(action))


class _Parser(argparse.ArgumentParser):
    """An argument parser with the plain-text formatter; a subcommand without a description gets its summary."""

    def __init__(self, *args, **kwargs) -> None:
        if issubclass(_Formatter, kwargs.get("formatter_class", argparse.HelpFormatter)):
            kwargs["formatter_class"] = _Formatter  # a module asking for raw descriptions gets them, markup removed
        name = str(kwargs.get("prog", "")).rsplit(" ", 1)[-1]
        if kwargs.get("description") is None and name in SUMMARIES:
            kwargs["description"] = SUMMARIES[name][0].upper() + SUMMARIES[name][1:] + "."
        super().__init__(*args, **kwargs)


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The argument parser with ``command``'s module registered (every command listed, none imported, if ``None``)."""
    parser = _Parser(
        prog="llmstab",
        description="Decide, with checkable evidence, whether an LLM-inference scheduler is stable "
                    "at a load and whether it is maximally stable (throughput-optimal). "
                    "Run llmstab COMMAND --help for a command's options.")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    if command in COMMANDS:
        importlib.import_module(COMMANDS[command]).register(subparsers)
    else:
        for name, summary in SUMMARIES.items():
            subparsers.add_parser(name, help=summary)
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
