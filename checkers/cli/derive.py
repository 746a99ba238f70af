"""``llmstab derive FILE [--latex]``: the symbolic derivation of the engine's capacity and drift.

sympy and the derivation are imported when the command runs, not when it is
registered, so ``llmstab derive --help`` answers at once.
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from llmstab.theory.derivation import Step

__all__ = ["register"]


def k_max_caveat(token_budget: int, k_max: int | None) -> str | None:
    """Why the derivation answers a different question than ``llmstab check`` when ``k_max`` can bind.

    >>> k_max_caveat(128, None) is None, k_max_caveat(128, 128) is None
    (True, True)
    >>> k_max_caveat(128, 100).split(":")[0]
    'note'
    """
    if k_max is None or k_max >= token_budget:  # a batch of b_max tokens never holds more than b_max requests
        return None
    return (f"note: this is Li-Dai-Peng Theorem 2 for the engine without its request limit; with k_max = {k_max} "
            "the capacity is a region (Section 6) and Theorem 2(b) does not apply, so the load is not evaluated "
            "here: `llmstab check` decides it against the region, `llmstab region` derives the region")


def render_text(steps: list[Step]) -> str:
    """Numbered lines; an equation is written ``lhs = rhs`` (no ``Eq(...)``).

    >>> import sympy
    >>> from llmstab.theory.capacity import b
    >>> from llmstab.theory.derivation import Step
    >>> print(render_text([Step("batch time (ms)", sympy.Eq(sympy.Symbol("t_b"), 2 * b + 1))]))
    1. batch time (ms):
         t_b = 2*b + 1
    """
    import sympy

    def text(expr: sympy.Basic) -> str:
        if isinstance(expr, sympy.Equality):
            return f"{sympy.sstr(expr.lhs)} = {sympy.sstr(expr.rhs)}"
        return sympy.sstr(expr)

    return "\n".join(f"{i}. {s.title}:\n     {text(s.expr)}" for i, s in enumerate(steps, 1))


def run(args: argparse.Namespace) -> int:
    from llmstab.theory.capacity import b
    from llmstab.theory.derivation import render, single_engine_derivation
    from llmstab.theory.exact_linalg import to_rational

    from ..spec import load_engine_spec

    spec = load_engine_spec(args.file)
    model = spec.engine.batch_time
    params = {"c": getattr(model, "c_exact", None), "a": getattr(model, "a_exact", None), "b0": getattr(model, "b0", None)}
    params = {k: None if v is None else to_rational(v) for k, v in params.items()}
    caveat = k_max_caveat(spec.engine.token_budget, spec.engine.max_batch_requests)
    steps = single_engine_derivation(model.expression(b), spec.engine.token_budget, model.kind, params,
                                     token_load_per_ms=None if caveat else to_rational(spec.workload.token_rate / 1000))
    if caveat:
        print(("% " if args.latex else "") + caveat)
    print(render(steps, latex=True) if args.latex else render_text(steps))
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("derive", help="print the symbolic derivation for an engine", description=__doc__)
    parser.add_argument("file", help="single-engine input file (YAML or JSON)")
    parser.add_argument("--latex", action="store_true", help="print LaTeX instead of text")
    parser.set_defaults(run=run)
