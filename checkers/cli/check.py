"""``llmstab check FILE [--json] [--no-simulate] [--seed K]``: capacity, load and two verdicts with evidence.

A thin layer over the check pipeline (:func:`llmstab.checkers.pipeline.check_source`,
the same as :func:`llmstab.check`).
"""

from __future__ import annotations

import argparse
import json

from ..pipeline import check_source
from .arguments import parse_seed

__all__ = ["register"]


def run(args: argparse.Namespace) -> int:
    report = check_source(args.file, simulate=not args.no_simulate, seed=parse_seed(args.seed))
    print(json.dumps(report.to_json(), indent=2) if args.json else report.to_text())
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``check`` subcommand."""
    parser = subparsers.add_parser("check", help="decide stability of a load and maximal stability of a policy",
                                   description=__doc__)
    parser.add_argument("file", help="input file (YAML or JSON)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--no-simulate", action="store_true",
                        help="theory only: run no simulation on any input (single engine, k_max, network)")
    parser.add_argument("--seed", default="0",
                        help="seed of every simulation the check runs (default 0); the report states it")
    parser.set_defaults(run=run)
