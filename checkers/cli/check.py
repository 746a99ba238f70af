"""``llmstab check FILE [--json]``: capacity, load and two verdicts with evidence."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ..report import CheckReport
from ..single_engine import check_engine
from ..spec import engine_spec_from_document, load_document

__all__ = ["register", "check_file"]


def check_file(path: str | Path, *, simulate: bool = True) -> CheckReport:
    """Check one input file (a single engine, or a network when it has ``engines:``).

    For a single engine, ``simulate`` lets simulation settle a load theory left
    ``inconclusive`` and measure the empirical capacity of a policy that is not
    maximally stable (:func:`llmstab.checkers.simulation_check.with_simulation`).
    """
    p = Path(path)
    document = load_document(p)
    if "engines" in document:
        from ..network_check import check_network_document

        return check_network_document(document, str(p), p.parent)
    spec = engine_spec_from_document(document, str(p), p.parent)
    report = check_engine(spec)
    if simulate:
        from ..simulation_check import with_simulation

        report = with_simulation(report, spec.engine, spec.policy, spec.workload)
    return report


def run(args: argparse.Namespace) -> int:
    report = check_file(args.file, simulate=not args.no_simulate)
    print(json.dumps(report.to_json(), indent=2) if args.json else report.to_text())
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("check", help="decide stability of a load and maximal stability of a policy",
                                   description=__doc__)
    parser.add_argument("file", help="input file (YAML or JSON)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--no-simulate", action="store_true",
                        help="theory only: do not settle inconclusive loads or measure empirical capacity by simulation")
    parser.set_defaults(run=run)
