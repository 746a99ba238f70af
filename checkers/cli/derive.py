"""``llmstab derive FILE [--latex]``: the symbolic derivation of the engine's capacity and drift."""

from __future__ import annotations

import argparse

from llmstab.theory.capacity import b
from llmstab.theory.derivation import render, single_engine_derivation

from ..spec import load_engine_spec

__all__ = ["register"]


def run(args: argparse.Namespace) -> int:
    spec = load_engine_spec(args.file)
    model = spec.engine.batch_time
    params = {"c": getattr(model, "c_exact", None), "a": getattr(model, "a_exact", None), "b0": getattr(model, "b0", None)}
    steps = single_engine_derivation(model.expression(b), spec.engine.token_budget, model.kind, params,
                                     token_load_per_ms=spec.workload.token_rate / 1000)
    print(render(steps, latex=args.latex))
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("derive", help="print the symbolic derivation for an engine", description=__doc__)
    parser.add_argument("file", help="single-engine input file (YAML or JSON)")
    parser.add_argument("--latex", action="store_true", help="print LaTeX instead of text")
    parser.set_defaults(run=run)
