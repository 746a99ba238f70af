"""``llmstab capacity FILE``: the largest load each scheduler carries within the classes' latency targets.

For each policy (the file's, or ``--policies``), the SLO capacity: the largest
request rate at which every class meets its SLO in a seeded run of
``--requests`` requests, found on a load grid and narrowed by bisection (the
bracket is printed); beside it the stability capacity from theory (no
scheduler can carry more) and the first load whose backlog diverged.
``--plot`` draws TTFT and TBT percentiles against load with the SLO lines and
both capacities. ``--workers N`` runs the points on a local Dask cluster of ``N``
processes (the machinery of ``llmstab sweep``); the report is the same as
with ``--serial`` (the default: in this process).
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import yaml

from ..capacity import default_loads, slo_capacities, stability_capacity
from ..errors import InputError
from ..spec import engine_spec_from_document, load_document, parse_policy
from .arguments import parse_positive, parse_seed, save_plot

__all__ = ["register", "parse_policies", "parse_loads", "parse_refine", "parse_workers",
           "capacity_report", "MAX_REFINE"]

#: More bisections than this cannot narrow a bracket of floats any further (about 2**-40 of its width is left).
MAX_REFINE = 40


def parse_policies(text: str) -> dict:
    """``name[:option=value...]`` items separated by commas, e.g. ``slai,sarathi:order=spf``.

    >>> sorted(parse_policies("sarathi,sarathi:order=spf"))
    ['sarathi', 'sarathi:order=spf']
    >>> parse_policies("slai:tau=0")
    Traceback (most recent call last):
    ...
    llmstab.fluid_models.errors.InputError: --policies[0]: tau must be at least 1 (a batch needs a token), got 0
    """
    out = {}
    for i, item in enumerate(x.strip() for x in text.split(",")):
        name, *options = item.split(":")
        node = {"name": name}
        for option in options:
            key, sep, value = option.partition("=")
            if not sep or not key:
                raise InputError(f"--policies[{i}]", f"options are written key=value, got {option!r}")
            node[key] = yaml.safe_load(value)
        out[item] = parse_policy(node, f"--policies[{i}]")
    return out


def parse_loads(text: str) -> list[float]:
    """Loads in req/s: ``a,b,c`` or ``start:stop:count`` (evenly spaced, both ends included).

    >>> parse_loads("0.2:2:10")[:3]
    [0.2, 0.4, 0.6000000000000001]
    >>> parse_loads("1,-2")
    Traceback (most recent call last):
    ...
    llmstab.fluid_models.errors.InputError: --loads: must be positive, got '-2'
    """
    parts = text.split(":")
    if len(parts) == 3:
        start, stop = parse_positive(parts[0], "--loads"), parse_positive(parts[1], "--loads")
        count = parse_positive(parts[2], "--loads", int)
        if stop < start:
            raise InputError("--loads", f"the stop ({stop}) is below the start ({start})")
        return [start + (stop - start) * k / max(count - 1, 1) for k in range(count)]
    if len(parts) != 1:
        raise InputError("--loads", f"write a,b,c or start:stop:count, got {text!r}")
    return [parse_positive(x.strip(), "--loads") for x in text.split(",")]


def capacity_report(path: str, policies: dict | None, *, n_requests: int, seed: int, loads: list[float] | None,
                    refine: int, workers: int | None = None) -> dict:
    """The ``--json`` object: the stability capacity and each policy's SLO capacity with its points.

    ``workers``: run the points on a local Dask cluster of that many processes (``None``: in this process);
    the object is the same either way.
    """
    p = Path(path)
    spec = engine_spec_from_document(load_document(p), str(p), p.parent)
    policies = policies or {spec.policy.label: spec.policy}
    stability = stability_capacity(spec.engine, spec.workload)
    grid = loads if loads is not None else default_loads(stability)
    out = {"file": str(p), "stability_capacity_rps": stability.rps, "stability": stability.to_json(),
           "slo": {c.name: c.slo.as_dict() for c in spec.workload.classes if c.slo is not None}}
    out["policies"] = slo_capacities(spec.engine, policies, spec.workload, grid, n_requests=n_requests, seed=seed,
                                     refine=refine, stability=stability, workers=workers)
    return out


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value * 1000:.4g}"


def to_text(report: dict) -> str:
    """The report for a person: both capacities per policy, then each policy's points."""
    st = report["stability"]
    memory = "" if st["memory_rps"] is None else f", memory bound {st['memory_rps']:.4g}"
    lines = [f"llmstab capacity: {report['file']}",
             f"  stability capacity: {st['rps']:.4g} req/s (compute {st['compute_rps']:.4g}{memory}; binds: "
             f"{st['binds']}): no scheduler keeps the backlog bounded above it"]
    for name, pol in report["policies"].items():
        cap = pol["slo_capacity_rps"]
        lo, hi = pol["bracket_rps"]
        head = (pol["note"] if cap is None else f"SLO capacity {cap:.4g} req/s, bracket [{lo:.4g}, {hi:.4g}]")
        div = pol["divergence_rps"]
        lines.append(f"  {name}: {head}; backlog diverged from {'-' if div is None else f'{div:.4g}'} req/s "
                     f"({pol['requests_per_point']} requests per load, seed {pol['seed']})")
        classes = list(pol["points"][0]["tbt_p99_s"])
        lines.append(f"      req/s   TTFT p50 ms   TBT p99 ms ({' / '.join(classes)})   SLO met")
        for pt in pol["points"]:
            tbt = " / ".join(_ms(pt["tbt_p99_s"][c]) for c in classes)
            lines.append(f"    {pt['rps']:>8.4g}   {_ms(pt['ttft_p50_s']):>11}   {tbt:>20}   {'yes' if pt['met'] else 'no'}")
    return "\n".join(lines)


def _mark_capacities(axes: tuple, report: dict, colors: dict) -> None:
    """Per policy its SLO capacity (dotted, the bracket shaded); the stability capacity (dashed, black)."""
    for name, pol in report["policies"].items():
        cap, (lo, hi) = pol["slo_capacity_rps"], pol["bracket_rps"]
        label = (f"{name}: SLO capacity {cap:.3g} req/s" if cap is not None else f"{name}: no load meets the SLO "
                 f"(lowest tried {hi:.3g} req/s)")
        for k, ax in enumerate(axes):
            if cap is None:
                ax.axvspan(0, hi, color=colors[name], alpha=0.08, label=label if k == 0 else None)
                continue
            ax.axvline(cap, color=colors[name], lw=1, ls=":", label=label if k == 0 else None)
            ax.axvspan(lo, hi, color=colors[name], alpha=0.12)
    for k, ax in enumerate(axes):
        ax.axvline(report["stability_capacity_rps"], color="k", lw=1, ls="--",
                   label=f"stability capacity {report['stability_capacity_rps']:.3g} req/s" if k == 0 else None)


def _log_axis(ax: object) -> None:
    from matplotlib.ticker import FormatStrFormatter, LogLocator, NullFormatter

    ax.set_yscale("log")
    ax.yaxis.set_major_formatter(FormatStrFormatter("%g"))
    ax.yaxis.set_minor_locator(LogLocator(subs=(2, 5)))
    ax.yaxis.set_minor_formatter(FormatStrFormatter("%g"))
    if ax.get_ylim()[1] / ax.get_ylim()[0] > 300:  # many decades: label the decades only
        ax.yaxis.set_minor_formatter(NullFormatter())


def write_plot(report: dict, path: str) -> None:
    """TTFT P50 and per-class TBT P99 against load, per policy, with the SLO lines and both capacities.

    Each policy's SLO capacity is a dotted line in its colour with its bracket shaded (the whole range
    below the lowest load tried when no load met the SLO); the stability capacity is dashed black.
    """
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.8), sharex=True)
    styles = ["-", "--", ":", "-."]
    colors = {name: f"C{k}" for k, name in enumerate(report["policies"])}
    for name, pol in report["policies"].items():
        pts = pol["points"]
        rps = [pt["rps"] for pt in pts]
        left.plot(rps, [pt["ttft_p50_s"] for pt in pts], "o-", color=colors[name], ms=3, label=name)
        for j, cls in enumerate(pts[0]["tbt_p99_s"]):
            right.plot(rps, [pt["tbt_p99_s"][cls] for pt in pts], styles[j % 4], marker="o", ms=3,
                       color=colors[name], label=f"{name}, class {cls}")
    for j, (cls, slo) in enumerate(report["slo"].items()):
        if "ttft_s" in slo:
            left.axhline(slo["ttft_s"], color="grey", lw=0.8, ls=styles[j % 4],
                         label=f"TTFT target, {cls} ({slo['ttft_s']:g} s at P{slo['ttft_percentile']:g})")
        if "tbt_s" in slo:
            right.axhline(slo["tbt_s"], color="grey", lw=0.8, ls=styles[j % 4],
                          label=f"TBT target, {cls} ({slo['tbt_s']:g} s at P{slo['tbt_percentile']:g})")
    _mark_capacities((left, right), report, colors)
    for ax in (left, right):
        ax.set_xlabel("load (requests/s)")
        ax.set_xlim(0, report["stability_capacity_rps"] * 1.03)
        _log_axis(ax)
    left.set_ylabel("median TTFT (s)")
    right.set_ylabel("P99 time between tokens (s)")
    left.legend(fontsize=7, loc="upper left")
    right.legend(fontsize=7, ncol=2, loc="lower right")
    pol = next(iter(report["policies"].values()))
    fig.suptitle(f"SLO capacity per policy (dotted, bracket shaded) and stability capacity (dashed)\n"
                 f"{Path(report['file']).name}: {pol['requests_per_point']:,} requests per load, seed {pol['seed']}",
                 fontsize=10)
    fig.tight_layout()
    save_plot(fig, path, dpi=120)


def parse_refine(text: str) -> int:
    """``--refine``: bisections inside the bracket, an integer from 0 to :data:`MAX_REFINE`.

    >>> parse_refine("4")
    4
    >>> parse_refine("2.5")
    Traceback (most recent call last):
    ...
    llmstab.fluid_models.errors.InputError: --refine: must be an integer from 0 to 40, got '2.5'
    """
    try:
        value = int(text, 10)
    except ValueError:
        value = -1
    if not 0 <= value <= MAX_REFINE:
        raise InputError("--refine", f"must be an integer from 0 to {MAX_REFINE}, got {text!r}")
    return value


def parse_workers(text: str) -> int:
    """``--workers``: local worker processes, from 1 to four per core.

    >>> parse_workers("2")
    2
    >>> parse_workers("0")
    Traceback (most recent call last):
    ...
    llmstab.fluid_models.errors.InputError: --workers: must be positive, got '0'
    """
    workers = parse_positive(text, "--workers", int)
    limit = 4 * (os.cpu_count() or 1)
    if workers > limit:
        raise InputError("--workers", f"at most {limit} (four processes per core), got {workers}")
    return workers


def run(args: argparse.Namespace) -> int:
    refine = parse_refine(args.refine)
    workers = None if args.workers is None else parse_workers(args.workers)
    policies = parse_policies(args.policies) if args.policies else None
    report = capacity_report(args.file, policies, n_requests=parse_positive(args.requests, "requests", int),
                             seed=parse_seed(args.seed), loads=parse_loads(args.loads) if args.loads else None,
                             refine=refine, workers=workers)
    if args.plot:
        write_plot(report, args.plot)
    print(json.dumps(report, indent=2) if args.json else to_text(report))
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("capacity", help="the largest load each scheduler carries within the SLOs",
                                   description=__doc__)
    parser.add_argument("file", help="input file (YAML or JSON) whose classes carry slo targets")
    parser.add_argument("--policies", metavar="A,B", help="policies to compare, e.g. slai,sarathi,sarathi:order=spf "
                        "(default: the file's)")
    parser.add_argument("--requests", default="16384", metavar="N", help="requests per load point (default 16384)")
    parser.add_argument("--seed", default="0", help="seed of the arrivals and lengths, the same at every load (default 0)")
    parser.add_argument("--loads", metavar="A:B:N", help="loads in req/s: start:stop:count or a,b,c (default: 10 "
                        "from 10 %% to 100 %% of the stability capacity)")
    parser.add_argument("--refine", default="4", metavar="K", help="bisections inside the bracket, 0 to "
                        f"{MAX_REFINE} (default 4)")
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--workers", metavar="N", help="run the points on a local Dask cluster of N processes, as "
                       "llmstab sweep does (the result is the same)")
    where.add_argument("--serial", action="store_true", help="run every point in this process (the default)")
    parser.add_argument("--plot", metavar="PATH", help="draw TTFT and TBT percentiles against load (PNG, PDF, SVG)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.set_defaults(run=run)
