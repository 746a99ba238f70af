"""``llmstab region FILE [--json] [--plot out.png]``: an engine's capacity region, the load, its margin, the certificate.

The file is a single-engine input (as for ``llmstab check``; ``policy`` optional) with an
optional ``region`` block::

    region:
      load: [2.1]            # request rates per class (req/s), replacing the classes' rates
      nodes: 1               # g identical nodes behind a random planner: the region is one node's,
                             # its load lambda/g; Theorem 1 (tiled engines) uses the total
      simulate: [sarathi, orca, {name: sarathi, token_budget: 1024}]
      arrivals: deterministic    # or poisson (default)
      horizon_s: 400         # per simulation; default about 3000 arrivals

It prints the region's exact corners (tokens/ms and tokens/s, each with the
batch type that reaches it), the load, the margin and the certificate that
decides it, the policy verdict when a policy is given, Theorem 1/2 and the
optimal-tiling check for a tiled engine, and with ``--plot`` draws the region,
the load and each simulated policy's empirical boundary on the load's ray.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from llmstab.fluid_models.batch_time import Tiled
from llmstab.fluid_models.engine import Engine
from llmstab.fluid_models.policies import Policy
from llmstab.fluid_models.region import load_vector
from llmstab.fluid_models.workload import Workload
from llmstab.theory.exact_linalg import to_fraction

from ..errors import InputError
from ..region_check import certifier, check_load_region, region_for, region_summary
from ..region_policy import check_policy_region, empirical_boundary
from ..spec import load_document, parse_engine, parse_policy, parse_workload, require_single_engine
from ..verdict import Evidence, Verdict, jsonable

__all__ = ["RegionSpec", "load_region_spec", "region_report", "plot_region", "register"]

_ARRIVALS = ("poisson", "deterministic")


@dataclass
class RegionSpec:
    """A validated ``llmstab region`` input."""

    engine: Engine
    workload: Workload
    policy: Policy | None
    nodes: int = 1
    simulate: list[tuple[Policy, Engine]] = field(default_factory=list)
    arrivals: str = "poisson"
    horizon_s: float | None = None


def _positive_int(value: Any, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InputError(where, f"must be a positive integer, got {value!r}")
    return value


def load_region_spec(path: str | Path) -> RegionSpec:
    """Read and validate a region input file (``InputError`` naming the field on bad input)."""
    p = Path(path)
    doc = require_single_engine(load_document(p), str(p))
    for key in doc:
        if key not in ("engine", "workload", "policy", "region"):
            raise InputError(str(key), "unknown field (expected one of: engine, policy, region, workload)")
    if "engine" not in doc:
        raise InputError("engine", "missing")
    if "workload" not in doc:
        raise InputError("workload", "missing")
    engine = parse_engine(doc["engine"], "engine", p.parent)
    workload = parse_workload(doc["workload"], "workload", p.parent)
    policy = parse_policy(doc["policy"], "policy") if doc.get("policy") is not None else None
    opts = doc.get("region") or {}
    if not isinstance(opts, dict):
        raise InputError("region", f"must be a mapping, got {type(opts).__name__}")
    allowed = {"load", "nodes", "simulate", "arrivals", "horizon_s"}
    for key in opts:
        if key not in allowed:
            raise InputError(f"region.{key}", f"unknown field (expected one of: {', '.join(sorted(allowed))})")
    if "load" in opts:
        workload = _override_rates(workload, opts["load"])
    spec = RegionSpec(engine, workload, policy, nodes=_positive_int(opts.get("nodes", 1), "region.nodes"))
    arrivals = opts.get("arrivals", "poisson")
    if arrivals not in _ARRIVALS:
        raise InputError("region.arrivals", f"unknown kind {arrivals!r} (one of {', '.join(_ARRIVALS)})")
    spec.arrivals = arrivals
    if "horizon_s" in opts:
        h = opts["horizon_s"]
        if isinstance(h, bool) or not isinstance(h, (int, float)) or not h > 0:
            raise InputError("region.horizon_s", f"must be a positive number of seconds, got {h!r}")
        spec.horizon_s = float(h)
    sims = opts.get("simulate", [])
    if not isinstance(sims, list):
        raise InputError("region.simulate", "must be a list of policies")
    for i, item in enumerate(sims):
        at = f"region.simulate[{i}]"
        sim_engine = engine
        if isinstance(item, dict) and "token_budget" in item:
            item = dict(item)
            budget = _positive_int(item.pop("token_budget"), f"{at}.token_budget")
            node = dict(doc["engine"], token_budget=budget)
            sim_engine = parse_engine(node, f"{at}.engine", p.parent)
        spec.simulate.append((parse_policy(item, at), sim_engine))
    return spec


def _override_rates(workload: Workload, rates: Any) -> Workload:
    if not isinstance(rates, list):
        raise InputError("region.load", "must be a list of request rates (req/s), one per class")
    if len(rates) != len(workload.classes):
        raise InputError("region.load", f"has {len(rates)} entries but the workload has "
                         f"{len(workload.classes)} classes")
    classes = []
    for i, (c, r) in enumerate(zip(workload.classes, rates)):
        if isinstance(r, bool) or not isinstance(r, (int, float, str)):
            raise InputError(f"region.load[{i}]", f"must be a number, got {r!r}")
        try:
            value = to_fraction(r)
        except (ValueError, ZeroDivisionError):
            raise InputError(f"region.load[{i}]", f"must be a number, got {r!r}") from None
        if value < 0:
            raise InputError(f"region.load[{i}]", f"must not be negative, got {r}")
        classes.append(replace(c, rate=str(value)))
    return Workload(tuple(classes))


def _subject(engine: Engine, nodes: int) -> str:
    """``one engine (b_max = 512, k_max = 100)``: the limits it has (no ``k_max`` when there is none), and the
    planner's share when the engine is one of ``nodes``.

    >>> from llmstab.fluid_models.batch_time import Staircase
    >>> _subject(Engine(Staircase(1, 1, 8), 512), 1), _subject(Engine(Staircase(1, 1, 8), 512, 100), 4)[:38]
    ('one engine (b_max = 512)', 'one engine (b_max = 512, k_max = 100),')
    """
    limit = "" if engine.max_batch_requests is None else f", k_max = {engine.max_batch_requests}"
    share = f", one of {nodes} behind a random planner (its share lambda/{nodes})" if nodes > 1 else ""
    return f"one engine (b_max = {engine.token_budget}{limit}){share}"


def region_report(spec: RegionSpec, simulate: bool = True) -> dict:
    """Everything the command prints, as one JSON-ready dict (exact numbers kept as text alongside)."""
    engine, workload = spec.engine, spec.workload
    if spec.nodes > 1:  # a uniformly random planner: each of the g nodes sees lambda / g
        workload = workload.scaled(f"1/{spec.nodes}")
    region = region_for(engine, workload)
    load = load_vector(workload)
    certify = certifier(region)  # each load certified once, whichever verdict needs it
    cert = certify(load)
    load_verdict = check_load_region(engine, workload, region, cert=cert)
    report: dict = {
        "subject": _subject(engine, spec.nodes),
        "capacity": region_summary(region),
        "load": {"prefill_tokens_per_ms": load[0], "decode_tokens_per_ms": load[1],
                 "prefill_tokens_per_s": 1000 * load[0], "decode_tokens_per_s": 1000 * load[1],
                 "requests_per_s": workload.rate, "exact": [str(load[0]), str(load[1])]},
        "margin": cert.margin, "exact_margin": None if cert.margin is None else str(cert.margin),
        "position": cert.position,
        "load_verdict": load_verdict,
        "policy_verdict": None,
    }
    if spec.policy is not None:
        report["policy_label"] = spec.policy.label
        if isinstance(engine.batch_time, Tiled):
            from ..tiling import check_tiled_engine

            tiled_load, tiled_policy, numbers = check_tiled_engine(engine, spec.policy, spec.workload, spec.nodes,
                                                                   simulate=simulate, horizon_s=spec.horizon_s)
            report["tiling"] = {"theorem1": numbers, "load_verdict": tiled_load}
            report["policy_verdict"] = tiled_policy
        elif simulate:
            report["policy_verdict"] = check_policy_region(engine, spec.policy, workload, region,
                                                           horizon_s=spec.horizon_s, arrivals=spec.arrivals,
                                                           certify=certify)
        else:
            report["policy_verdict"] = Verdict("inconclusive", [Evidence("note", "simulation skipped", {})])
    if simulate and spec.simulate:
        report["simulated"] = []
        for policy, sim_engine in spec.simulate:
            sim_region = region if sim_engine == engine else region_for(sim_engine, workload)
            point = empirical_boundary(sim_engine, policy, workload, sim_region, arrivals=spec.arrivals)
            report["simulated"].append({"policy": policy.label, "token_budget": sim_engine.token_budget,
                                        "bounded_up_to_tokens_per_ms": point})
    return report


def _json(report: dict) -> dict:
    out = {}
    for key, value in report.items():
        if isinstance(value, Verdict):
            out[key] = value.verdict
            out.setdefault("evidence", []).extend({"about": key, **e.to_json()} for e in value.evidence)
        elif key == "tiling":
            out[key] = {"theorem1": jsonable(value["theorem1"]), "load_verdict": value["load_verdict"].verdict}
            out.setdefault("evidence", []).extend({"about": "tiling", **e.to_json()}
                                                  for e in value["load_verdict"].evidence)
        else:
            out[key] = jsonable(value)
    return out


def _text(report: dict) -> str:
    cap, load = report["capacity"], report["load"]
    lines = [f"Capacity region of {report['subject']} ({cap['batch_types']} batch types, "
             f"{cap['reduced_batch_types']} on the hull):"]
    for (x, y), (ex, ey), bt in zip(cap["vertices_tokens_per_ms"], cap["exact_vertices_tokens_per_ms"],
                                    cap["vertex_batch_types"]):
        lines.append(f"  vertex ({float(x):.6g}, {float(y):.6g}) tokens/ms = ({ex}, {ey})   "
                     f"[{1000 * float(x):.1f}, {1000 * float(y):.1f} tokens/s]   batch {bt}")
    lines.append(f"Load: prefill {float(load['prefill_tokens_per_ms']):.6g}, decode "
                 f"{float(load['decode_tokens_per_ms']):.6g} tokens/ms "
                 f"({float(load['requests_per_s']):.6g} requests/s)")
    margin = report["margin"]
    lines.append(f"Position: {report['position']}" + (f", margin {margin} (~{float(margin):.6g}, exact)"
                                                       if margin is not None else ""))
    sections = [("Load verdict", report["load_verdict"]), ("Policy verdict", report["policy_verdict"])]
    if "tiling" in report:
        sections.insert(1, ("Theorem 1 (tiling) load verdict", report["tiling"]["load_verdict"]))
    for title, verdict in sections:
        if verdict is None:
            continue
        lines.append(f"{title}: {verdict.verdict}")
        lines += [f"  - [{e.kind}] {e.summary}" for e in verdict.evidence]
    for sim in report.get("simulated", []):
        point = sim["bounded_up_to_tokens_per_ms"]
        where = "diverged even at half the margin" if point is None else \
            f"bounded up to ({float(point[0]):.4g}, {float(point[1]):.4g}) tokens/ms on the load's ray"
        lines.append(f"Simulated {sim['policy']} (b_max = {sim['token_budget']}): {where}")
    return "\n".join(lines)


_POSITION = {"inside": "inside the region", "outside": "outside the region", "boundary": "on the region's boundary"}
_TREND_COLOUR = {"diverging": "tab:red", "bounded": "tab:green", "undecided": "tab:gray"}
_MARKERS = ("X", "P", "v", "^", "s", "D", "<", ">")


def _word(value: object) -> str:
    """A verdict's word (a :class:`Verdict` or the word itself)."""
    return str(getattr(value, "verdict", value))


def _plot_title(report: dict) -> str:
    """The engine; where the load lies and its verdict; the policy's verdict (and whether it was simulated)."""
    policy = report.get("policy_label")
    margin = report.get("margin")
    load_word = _word(report.get("load_verdict"))
    lines = [f"Capacity region of {report.get('subject', 'one engine')}",
             f"load {_POSITION.get(report.get('position'), 'not certified inside or outside')}"
             + (f" (margin {float(margin):.4g})" if margin is not None else "")
             + f": {load_word}" + (" (some scheduler carries it)" if load_word == "stable" else "")]
    if report.get("policy_verdict") is not None:
        evidence = getattr(report["policy_verdict"], "evidence", [])
        skipped = any(e.kind == "note" and "skipped" in e.summary for e in evidence)
        lines.append(f"policy {policy}: {_word(report['policy_verdict'])}" + (" (not simulated)" if skipped else ""))
    return "\n".join(lines)


def _policy_marks(report: dict) -> list[tuple[float, str, str, str]]:
    """``(scale on the load's ray, label, marker, colour)`` for the policy's own evidence.

    Its simulated test load with the trend seen there, and how far the batch
    types it forms reach on the ray (the LP restricted to them).
    """
    policy, marks = report.get("policy_label"), []
    for e in getattr(report.get("policy_verdict"), "evidence", []):
        if e.kind == "simulation" and "load_scale" in e.data:
            scale, trend = float(e.data["load_scale"]), e.data.get("trend", "?")
            marks.append((scale, f"{policy} simulated at {scale:.3g} x the load: {trend}", "o",
                          _TREND_COLOUR.get(trend, "tab:gray")))
        elif e.data.get("policy_margin") is not None:
            reach = float(e.data["policy_margin"])
            marks.append((reach, f"{policy}'s batch types reach {reach:.3g} x the load", "d", "tab:purple"))
    return marks


def _simulated_marks(report: dict, load: tuple[float, float]) -> list[tuple[float | None, str, str, str]]:
    """``(scale, label, marker, colour)`` per simulated policy: where it stayed bounded on the load's ray."""
    marks = []
    for i, sim in enumerate(report.get("simulated", [])):
        point, name = sim["bounded_up_to_tokens_per_ms"], f"{sim['policy']} (b_max {sim['token_budget']})"
        colour, marker = f"C{(i + 1) % 10}", _MARKERS[i % len(_MARKERS)]
        if point is None:  # listed, so that a policy simulated is never silently left out of the picture
            marks.append((None, f"{name}: diverged even at half the margin", marker, colour))
            continue
        x, y = float(point[0]), float(point[1])
        scale = x / load[0] if load[0] else y / load[1]
        marks.append((scale, f"{name}: bounded up to {scale:.3g} x the load, ({x:.3g}, {y:.3g}) tokens/ms", marker,
                      colour))
    return marks


def plot_region(report: dict, path: str | Path) -> None:
    """Draw the region, the load's ray, the policy's evidence on it and each simulated policy's boundary (PNG).

    The title names the engine and the policy, where the load lies (margin and
    load verdict) and the policy verdict; the legend sits below the axes.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    verts = [(float(x), float(y)) for x, y in report["capacity"]["vertices_tokens_per_ms"]]
    load = (float(report["load"]["prefill_tokens_per_ms"]), float(report["load"]["decode_tokens_per_ms"]))
    fig, ax = plt.subplots(figsize=(7, 6.5))
    ax.fill([0.0] + [p[0] for p in verts], [0.0] + [p[1] for p in verts], alpha=0.2, label="capacity region")
    ax.plot([p[0] for p in verts], [p[1] for p in verts], "o-", color="C0")
    for (x, y), bt in zip(verts, report["capacity"]["vertex_batch_types"]):
        ax.annotate(bt, (x, y), textcoords="offset points", xytext=(4, 4), fontsize=8)
    marks = _policy_marks(report) + _simulated_marks(report, load)
    reach = max([1.0, float(report.get("margin") or 0)] + [m[0] for m in marks if m[0] is not None])
    ax.plot([0, load[0] * reach * 1.05], [0, load[1] * reach * 1.05], ":", color="0.4", lw=1, label="the load's ray")
    ax.plot([load[0]], [load[1]], "k*", markersize=13, label="load", zorder=3)
    for scale, label, marker, colour in marks:
        xy = ([], []) if scale is None else ([load[0] * scale], [load[1] * scale])
        ax.plot(*xy, marker, color=colour, markersize=14 if marker == "o" else 9, markerfacecolor="none" if marker in "od" else colour,
                label=label, zorder=4)
    ax.set_title(_plot_title(report), fontsize=9)
    ax.set_xlabel("prefill tokens per ms")
    ax.set_ylabel("decode tokens per ms")
    shown = verts + [load] + [(load[0] * m[0], load[1] * m[0]) for m in marks if m[0] is not None]
    ax.set_xlim(0, 1.15 * max(p[0] for p in shown))
    ax.set_ylim(0, 1.12 * max(p[1] for p in shown))
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(0, -0.12), ncol=1, frameon=False)
    fig.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(fig)


def run(args: argparse.Namespace) -> int:
    spec = load_region_spec(args.file)
    report = region_report(spec, simulate=not args.no_simulate)
    print(json.dumps(_json(report), indent=2) if args.json else _text(report))
    if args.plot:
        plot_region(report, args.plot)
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("region", help="an engine's capacity region, the load's margin and its certificate",
                                   description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("file", help="input file (YAML or JSON)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--plot", metavar="PNG", help="draw the region, the load and the simulated boundaries")
    parser.add_argument("--no-simulate", action="store_true", help="skip every simulation")
    parser.set_defaults(run=run)
