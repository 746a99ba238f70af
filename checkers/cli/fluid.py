"""``llmstab fluid FILE [--plot OUT.png]`` and ``llmstab network-plot FILE OUT.png``.

``fluid`` computes the fluid trajectory of a network file from an initial state
(``--initial A1.p=100 ...``, requests per buffer; default: the first externally fed
buffer holds 100) and says whether it drains or grows. Under complete priority
lists the path is exact and piecewise linear (rationals), and self-similar paths
are continued exactly for a few cycles; otherwise it is integrated numerically.
``--json`` lists every breakpoint of an exact path (``path``: time and
non-empty buffers, exact). ``--plot`` draws each buffer's content over time. ``network-plot`` draws the
engines, the routes between them, where traffic enters and leaves, and each
engine's service order (:mod:`llmstab.checkers.cli.network_plot`).
"""

from __future__ import annotations

import argparse
import json
from fractions import Fraction
from pathlib import Path

from llmstab.fluid_models.networks.fluid import FluidError, FluidNetwork, FluidPath, nonzero_state
from llmstab.fluid_models.networks.network import Network

from ..errors import InputError
from ..network_spec import load_network
from ..verdict import jsonable
from .network_plot import plot_network

__all__ = ["register", "fluid_model", "fluid_path", "plot_path", "plot_network"]


def _initial(fn: FluidNetwork, items: list[str] | None) -> dict:
    if not items:
        k = min(range(fn.size), key=lambda k: (fn.alpha[k] == 0, k))
        return {fn.labels[k]: 100}
    out = {}
    for item in items:
        label, _, value = item.partition("=")
        if label not in fn.labels:
            raise InputError("--initial", f"unknown buffer {label!r} (known: {', '.join(fn.labels)})")
        try:
            out[label] = Fraction(value)
        except (ValueError, ZeroDivisionError):
            raise InputError("--initial", f"{item!r}: the amount must be a number") from None
        if out[label] < 0:
            raise InputError("--initial", f"{item!r}: the amount must not be negative")
    return out


def fluid_model(net: Network) -> FluidNetwork:
    """The fluid model of ``net``; a network without one (an engine with ``k_max``) is bad input for ``fluid``.

    >>> from llmstab.fluid_models.networks.examples import rybko_stolyar
    >>> fluid_model(rybko_stolyar(bad=True)).size   # a prefill and a decode buffer per step
    8
    """
    try:
        return FluidNetwork.from_network(net)
    except FluidError as exc:
        raise InputError("engines", f"no fluid model: {exc}") from None


def fluid_path(net: Network, initial: dict, horizon: float | None = None, cycles: int = 1) -> FluidPath:
    """The fluid path of ``net`` from ``initial``: exact under priorities, else numerical.

    >>> from llmstab.fluid_models.networks.examples import rybko_stolyar
    >>> fluid_path(rybko_stolyar(bad=True), {"A1.p": 100}).outcome
    'grows'
    """
    fn = fluid_model(net)
    tokens = sum(float(v) * float(b.mean) for v, b in zip(fn.state(initial), fn.buffers))
    default = max(100.0, 20 * tokens / float(min(fn.capacity)))
    try:
        path = fn.priority_path(initial, horizon=horizon or 10**7, max_pieces=400)
        if path.outcome != "undecided" or horizon:
            return path.repeated(cycles) if path.outcome == "grows" else path
    except FluidError:
        pass
    return fn.integrate(initial, horizon or default)


def plot_path(path: FluidPath, out: str | Path, title: str = "") -> None:
    """Draw every buffer that ever holds fluid, and the total, against time."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    times = [float(t) for t in path.times]
    fig, ax = plt.subplots(figsize=(8, 4.5))
    for k, lab in enumerate(path.labels):
        ys = [float(s[k]) for s in path.states]
        if any(ys):
            ax.plot(times, ys, label=lab, lw=1.4)
    ax.plot(times, path.totals(), "k--", lw=1, label="total")
    ax.set_xlabel("time (s)")
    ax.set_ylabel("fluid (requests)")
    kind = "exact piecewise-linear" if path.exact else "numerical"
    ax.set_title(title or f"fluid trajectory ({kind}): {path.outcome}")
    ax.legend(ncol=2, fontsize=8)
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    plt.close(fig)


def _run_fluid(args: argparse.Namespace) -> int:
    net = load_network(args.file)
    path = fluid_path(net, _initial(fluid_model(net), args.initial), args.horizon)
    summary = {"outcome": path.outcome, "exact": path.exact, "breakpoints": len(path.times),
               "end_time_s": float(path.times[-1]),
               "final_state": {lab: float(x) for lab, x in zip(path.labels, path.states[-1])
                               if x > 1e-9 * max(1.0, float(sum(path.states[-1])))},
               "certificate": jsonable({k: nonzero_state(path.labels, v) if k in ("state0", "state1") else
                                        str(v) if isinstance(v, Fraction) else v
                                        for k, v in (path.certificate or {}).items()}),
               "path": [{"t": str(t), "state": nonzero_state(path.labels, q)} for t, q in zip(path.times, path.states)]
               if path.exact else None}
    if args.plot:
        plot_path(path, args.plot)
        summary["plot"] = str(args.plot)
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        print(f"fluid path of {args.file}: {path.outcome} ({'exact' if path.exact else 'numerical'}, "
              f"{len(path.times)} breakpoints, until t = {float(path.times[-1]):.6g} s)")
        if path.certificate:
            c = path.certificate
            print(f"  self-similar: q({float(c['t1']):.6g}) = {c['ratio']} * q({float(c['t0']):.6g})")
        if args.plot:
            print(f"  plot written to {args.plot}")
    return 0


def _run_network_plot(args: argparse.Namespace) -> int:
    net = load_network(args.file)
    plot_network(net, args.out, f"{Path(args.file).name}: engines, routes and priorities")
    print(f"network picture written to {args.out}")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``fluid`` and ``network-plot`` subcommands."""
    p = subparsers.add_parser("fluid", help="fluid trajectory of a network file", description=__doc__)
    p.add_argument("file", help="network file (YAML or JSON)")
    p.add_argument("--plot", metavar="OUT.png", help="draw each buffer's fluid over time")
    p.add_argument("--initial", nargs="*", metavar="BUFFER=REQUESTS", help="initial fluid, e.g. A1.p=100")
    p.add_argument("--horizon", type=float, help="end time (s)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(run=_run_fluid)
    q = subparsers.add_parser("network-plot", help="draw a network's engines and routes")
    q.add_argument("file", help="network file (YAML or JSON)")
    q.add_argument("out", help="output image (PNG)")
    q.set_defaults(run=_run_network_plot)
