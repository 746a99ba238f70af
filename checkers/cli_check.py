"""``llmstab check FILE [--json]``: capacity, load and two verdicts with evidence."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from .report import CheckReport
from .single_engine import check_engine
from .spec import engine_spec_from_document, load_document

__all__ = ["register", "check_file"]


def check_file(path: str | Path) -> CheckReport:
    """Check one input file (a single engine, or a network when it has ``engines:``)."""
    p = Path(path)
    document = load_document(p)
    if "engines" in document:
        from .network_check import check_network_document

        return check_network_document(document, str(p), p.parent)
    return check_engine(engine_spec_from_document(document, str(p), p.parent))


def run(args: argparse.Namespace) -> int:
    report = check_file(args.file)
    print(json.dumps(report.to_json(), indent=2) if args.json else report.to_text())
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("check", help="decide stability of a load and maximal stability of a policy",
                                   description=__doc__)
    parser.add_argument("file", help="input file (YAML or JSON)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.set_defaults(run=run)
