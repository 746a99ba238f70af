"""The picture ``llmstab network-plot FILE OUT.png`` draws: engines, routes, priorities, entries and exits.

Each engine is a box that names its scheduler, its utilisation ``rho`` (token
load over the engine's capacity ``max_b b/t_b``) and the order in which it
serves the buffers of its steps (``B2.p > A1.p > ...``: prefill ``.p`` and
decode ``.d`` phases, served first to last, as the fluid model ranks them). Each
class has a colour; its requests enter at the first step's engine (a dashed
arrow from ``A in``), move from engine to engine (arrows labelled with the step
they start, a loop for two steps in a row at one engine) and leave after the
last step (a dashed arrow to ``A out``). A footer explains the notation and
names the most loaded virtual station when one exceeds 1.
"""

from __future__ import annotations

import math
from pathlib import Path

import networkx as nx

from llmstab.fluid_models.networks.fluid import FluidError, FluidNetwork
from llmstab.fluid_models.networks.network import Network

from ..verdict import plural

__all__ = ["plot_network", "network_figure", "service_order", "layout"]

BOX_W, BOX_H = 1.2, 0.66
COLOURS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf")
FOOTER = ("rho = offered token load / engine capacity (max_b b / t_b).  \"serves\": the buffers of the engine's "
          "steps in the order it serves them (.p prefill, .d decode; \">\" = before, \"=\" = shared).\n"
          "An arrow is labelled with the step a request starts there and, in brackets, that step's place in the "
          "engine's priority list.")


def service_order(net: Network, fn: FluidNetwork | None, engine: str, shown: int = 6) -> str:
    """The engine's service order as text, highest priority first (at most ``shown`` groups, then a count).

    >>> from llmstab.fluid_models.networks.examples import rybko_stolyar
    >>> net = rybko_stolyar(bad=True)
    >>> service_order(net, FluidNetwork.from_network(net), "e1")
    'B2.d > B2.p > A1.d > A1.p'
    """
    if fn is None:  # no fluid model (an engine with k_max): the declared priority list
        steps = net.engines[engine].priority
        return " > ".join(steps) if steps else "no priority list"
    groups = fn.groups[fn.engines.index(engine)]
    text = [" = ".join(fn.labels[k] for k in grp) for grp in groups[:shown]]
    more = len(groups) - shown
    return " > ".join(text) + (f" > ... ({more} more)" if more > 0 else "")


def _wrapped(order: str, width: int = 34) -> str:
    """A service order on lines of at most about ``width`` characters, broken before a ``>``.

    >>> print(_wrapped("plan.d = answer.d > plan.p = answer.p", 24))
    plan.d = answer.d
    > plan.p = answer.p
    """
    lines = [""]
    for part in order.split(" > "):
        if lines[-1] and len(lines[-1]) + 3 + len(part) > width:
            lines.append("> " + part)
        else:
            lines[-1] += (" > " if lines[-1] else "") + part
    return "\n".join(lines)


def _rank(net: Network, step: str, engine: str) -> str:
    """`` [1st]``: the step's place in its engine's priority list (empty without one).

    >>> from llmstab.fluid_models.networks.examples import rybko_stolyar
    >>> _rank(rybko_stolyar(bad=True), "A2", "e2"), _rank(rybko_stolyar(bad=False), "A2", "e2")
    (' [1st]', ' [2nd]')
    """
    priority = net.engines[engine].priority
    if step not in priority:
        return ""
    n = priority.index(step) + 1
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f" [{n}{suffix}]"


def layout(net: Network) -> dict[str, tuple[float, float]]:
    """Engine positions: layers left to right for feedforward networks, a row or a circle otherwise.

    >>> from llmstab.fluid_models.networks.examples import rybko_stolyar
    >>> layout(rybko_stolyar())
    {'e1': (0.0, 0.0), 'e2': (3.0, 0.0)}
    """
    names = list(net.engines)
    if len(names) <= 2:
        return {e: (3.0 * i, 0.0) for i, e in enumerate(names)}
    if net.is_feedforward:
        g = nx.DiGraph(net.graph)
        g.remove_edges_from(list(nx.selfloop_edges(g)))
        pos = {}
        for x, layer in enumerate(nx.topological_generations(g)):
            for y, e in enumerate(sorted(layer, key=names.index)):
                pos[e] = (2.2 * x, -1.6 * (y - (len(layer) - 1) / 2))
        return pos
    radius = max(1.5, 0.45 * len(names))
    return {e: (radius * math.cos(math.pi / 2 - 2 * math.pi * i / len(names)),
                radius * math.sin(math.pi / 2 - 2 * math.pi * i / len(names))) for i, e in enumerate(names)}


def _moves(net: Network) -> list[tuple[str, str, str, int]]:
    """``(from engine, to engine, label, class index)`` for every precedence edge: the label names the
    step started, ``(join)`` when it waits for several steps, and its place in the priority list."""
    sg = net.step_graph
    cls_index = {c.name: i for i, c in enumerate(net.classes)}
    return [(sg.nodes[u]["engine"], sg.nodes[v]["engine"],
             v + (" (join)" if sg.in_degree(v) > 1 else "") + _rank(net, v, sg.nodes[v]["engine"]),
             cls_index[sg.nodes[v]["cls"]]) for u, v in sg.edges]


def _draw_engines(ax, net: Network, fn: FluidNetwork | None, pos: dict) -> dict:
    from matplotlib.patches import FancyBboxPatch

    util = net.utilisation()
    boxes = {}
    for e, (x, y) in pos.items():
        ne = net.engines[e]
        box = FancyBboxPatch((x - BOX_W / 2, y - BOX_H / 2), BOX_W, BOX_H, boxstyle="round,pad=0.02",
                             fc="#eef4fb", ec="#30507a", lw=1.2, zorder=2)
        ax.add_patch(box)
        boxes[e] = box
        rho = f"rho = {float(util[e]):.2f}" if util[e] is not None else "rho: a region (k_max)"
        ax.text(x, y + 0.2, e, ha="center", va="center", fontsize=12, weight="bold", zorder=3)
        ax.text(x, y + 0.04, f"{ne.policy.name}, {rho}", ha="center", va="center", fontsize=9, zorder=3)
        ax.text(x, y - 0.17, _wrapped("serves: " + service_order(net, fn, e)), ha="center", va="center",
                fontsize=7.5, zorder=3, color="#333333")
    return boxes


def _arrow(ax, a, b, colour: str, rad: float, style: str = "-", patches=(None, None), shrink=(2, 2)) -> None:
    from matplotlib.patches import FancyArrowPatch

    ax.add_patch(FancyArrowPatch(a, b, connectionstyle=f"arc3,rad={rad}", arrowstyle="-|>", mutation_scale=14,
                                 color=colour, lw=1.6, ls=style, patchA=patches[0], patchB=patches[1],
                                 shrinkA=shrink[0], shrinkB=shrink[1], zorder=1))


def _draw_moves(ax, net: Network, pos: dict, boxes: dict) -> None:
    """One arrow per (engine, engine, class), labelled with every step it starts (three to a line)."""
    grouped: dict[tuple, list[str]] = {}
    for e, f, label, ci in _moves(net):
        grouped.setdefault((e, f, ci), []).append(label)
    seen: dict[tuple, int] = {}
    for (e, f, ci), labels in grouped.items():
        colour = COLOURS[ci % len(COLOURS)]
        label = "\n".join(", ".join(labels[i:i + 3]) for i in range(0, len(labels), 3))
        n = seen[(e, f)] = seen.get((e, f), -1) + 1
        (x1, y1), (x2, y2) = pos[e], pos[f]
        if e == f:  # two steps in a row at one engine: a loop over the box
            top = y1 + BOX_H / 2 + 0.02
            _arrow(ax, (x1 - 0.22 - 0.1 * n, top), (x1 + 0.22 + 0.1 * n, top), colour, -1.1)
            ax.text(x1, top + 0.28 + 0.1 * n, label, color=colour, ha="center", va="bottom", fontsize=9)
            continue
        rad = 0.25 + 0.15 * n
        _arrow(ax, (x1, y1), (x2, y2), colour, rad, patches=(boxes[e], boxes[f]))
        mx, my = (x1 + x2) / 2 + 0.5 * rad * (y2 - y1), (y1 + y2) / 2 - 0.5 * rad * (x2 - x1)
        ax.text(mx, my, label, color=colour, ha="center", va="center", fontsize=9,
                bbox={"fc": "white", "ec": "none", "pad": 0.5})


def _draw_entries_and_exits(ax, net: Network, pos: dict, boxes: dict) -> None:
    sg = net.step_graph
    cx = sum(x for x, _ in pos.values()) / len(pos)
    cy = sum(y for _, y in pos.values()) / len(pos)
    slots: dict[str, int] = {}
    for ci, c in enumerate(net.classes):
        colour = COLOURS[ci % len(COLOURS)]
        ends = [(s, f"{c.name} enters ({s.id})\n{c.rate} req/s", True) for s in c.steps if sg.in_degree(s.id) == 0]
        ends += [(s, f"{c.name} leaves\nafter {s.id}", False) for s in c.steps if sg.out_degree(s.id) == 0]
        for s, text, entering in ends:
            x, y = pos[s.engine]
            k = slots[s.engine] = slots.get(s.engine, -1) + 1
            away = math.atan2(y - cy, x - cx) if (x, y) != (cx, cy) else math.pi / 2
            angle = away + (0.55 if entering else -0.55) + 0.35 * (k // 2) * (1 if k % 2 else -1)
            far = (x + 1.2 * math.cos(angle), y + 1.0 * math.sin(angle))
            ax.text(*far, text, color=colour, ha="center", va="center", fontsize=8.5, weight="bold")
            near = (x + 0.95 * math.cos(angle), y + 0.72 * math.sin(angle))  # the arrow stops short of the text
            a, b = (near, (x, y)) if entering else ((x, y), near)
            patches = (None, boxes[s.engine]) if entering else (boxes[s.engine], None)
            _arrow(ax, a, b, colour, 0.0, "--", patches)


def plot_network(net: Network, out: str | Path, title: str = "") -> None:
    """Draw :func:`network_figure` into ``out`` (PNG).

    >>> import tempfile, pathlib
    >>> from llmstab.fluid_models.networks.examples import lu_kumar
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "lk.png"
    >>> plot_network(lu_kumar(), path)
    >>> path.read_bytes()[:4] == b"\\x89PNG"
    True
    """
    import matplotlib.pyplot as plt

    fig = network_figure(net, title)
    fig.savefig(out, dpi=120)
    plt.close(fig)


def network_figure(net: Network, title: str = ""):
    """The engines, the classes' routes, entries and exits and each engine's service order, as a figure.

    >>> from llmstab.fluid_models.networks.examples import rybko_stolyar
    >>> fig = network_figure(rybko_stolyar(bad=True))
    >>> fig.get_suptitle()
    '2 engines, 2 request classes: routes and priorities'
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D

    try:
        fn = FluidNetwork.from_network(net)
    except FluidError:
        fn = None
    pos = layout(net)
    xs, ys = [x for x, _ in pos.values()], [y for _, y in pos.values()]
    width, height = max(xs) - min(xs) + 3.2, max(ys) - min(ys) + 3.0
    size = (min(16, max(8.5, 2.0 * width)), min(12, 1.2 + 1.4 * height))
    fig, ax = plt.subplots(figsize=size)
    boxes = _draw_engines(ax, net, fn, pos)
    _draw_moves(ax, net, pos, boxes)
    _draw_entries_and_exits(ax, net, pos, boxes)
    handles = [Line2D([], [], color=COLOURS[i % len(COLOURS)], lw=2,
                      label=f"class {c.name}: {_route_text(net, c)}") for i, c in enumerate(net.classes)]
    handles.append(Line2D([], [], color="grey", lw=1.5, ls="--", label="requests entering / leaving the network"))
    ax.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, -0.01), ncol=min(3, len(handles)),
              fontsize=8, frameon=False)
    fig.suptitle(title or plural(len(net.engines), "engine") + ", " + plural(len(net.classes), "request class")
                 + ": routes and priorities", fontsize=12)
    fig.text(0.5, 0.01, _footer(net, fn), ha="center", va="bottom", fontsize=7, wrap=True, color="#444444")
    ax.set_xlim(min(xs) - 1.6, max(xs) + 1.6)
    ax.set_ylim(min(ys) - 1.15, max(ys) + 1.15)
    ax.set_aspect("equal")
    ax.set_axis_off()
    fig.tight_layout(rect=(0, 0.8 / size[1], 1, 1 - 0.3 / size[1]))  # room for the footer and the title
    return fig


def _route_text(net: Network, c) -> str:
    """A class's route by precedence level: ``plan -> search, code -> answer`` (parallel steps share a
    level; a long route shows its first three and last two levels)."""
    own = net.step_graph.subgraph(s.id for s in c.steps)
    levels = [", ".join(sorted(level, key=[s.id for s in c.steps].index)) for level in nx.topological_generations(own)]
    if len(levels) > 8:
        levels = levels[:3] + [f"... ({len(c.steps)} steps) ..."] + levels[-2:]
    return " -> ".join(levels)


def _footer(net: Network, fn: FluidNetwork | None) -> str:
    """The notation, and the most loaded virtual station when it is above 1 (small cyclic networks only)."""
    if fn is None or net.is_feedforward or len(net.engines) > 20:
        return FOOTER
    from ..virtual_stations import virtual_stations

    stations = virtual_stations(net, fn)
    if not stations or stations[0].load <= 1:
        return FOOTER
    vs = stations[0]
    return (FOOTER + f"\nvirtual station {vs.describe()}: never served together, load {float(vs.load):.3g} > 1, "
            "so the network is unstable under these priorities")
