"""Orca networks with exit-first priorities (issue 10): virtual stations phase by phase, the fluid
path's claim, the breakpoints of a diverging path, and a network picture a newcomer can read."""

from __future__ import annotations

import json
import subprocess
import sys
from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from llmstab.checkers.cli.network_plot import network_figure
from llmstab.checkers.network_check import check_network
from llmstab.checkers.network_spec import load_network
from llmstab.checkers.virtual_stations import virtual_stations
from llmstab.fluid_models.networks.examples import lu_kumar, rybko_stolyar
from llmstab.fluid_models.networks.fluid import FluidNetwork
from tests.conftest import EXAMPLES

ORCA = {"rs": EXAMPLES / "network_rybko_stolyar_orca.yaml", "lk": EXAMPLES / "network_lu_kumar_orca.yaml"}
#: (virtual station buffers, engines, exact load) each example's comment derives
STATIONS = {"rs": ((("B2.p", "B2.d"), ("A2.p", "A2.d")), ("e1", "e2"), "53/50"),
            "lk": ((("s4.p", "s4.d"), ("s2.p",)), ("e1", "e2"), "103/100")}


def _llmstab(*argv) -> dict:
    run = subprocess.run([sys.executable, "-m", "llmstab.checkers.cli.main", *map(str, argv)],
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    return json.loads(run.stdout)


@pytest.mark.parametrize("name", sorted(ORCA))
def test_orca_exit_first_network_is_unstable_by_a_phase_level_virtual_station(name):
    """Every engine below 0.87, yet a virtual station above 1: the check names it (exact load as text),
    confirms it with a diverging fluid path and a simulation (each engine running the Orca kernel in
    priority order) that backs up as predicted, and calls the policy not maximally stable."""
    out = _llmstab("check", ORCA[name], "--json", "--seed", "1")
    assert all(Fraction(e["exact_utilisation"]) < Fraction(87, 100) for e in out["load"]["engines"].values())
    assert out["load_verdict"] == "unstable" and out["policy_verdict"] == "not-maximally-stable"
    evidence = [e for e in out["evidence"] if e["about"] == "load"]
    vs = evidence[0]["data"]["virtual_station"]
    buffers, engines, load = STATIONS[name]
    assert [e["kind"] for e in evidence] == ["certificate", "counterexample", "simulation"]
    assert tuple(map(tuple, vs["buffers"])) == buffers and tuple(vs["engines"]) == engines and vs["load"] == load
    assert Fraction(evidence[1]["data"]["ratio"]) > 1
    sim = evidence[2]
    assert "grows" in sim["summary"] and "as predicted" in sim["summary"]
    assert sim["data"]["mean_tokens_last_quarter"] > 3 * sim["data"]["mean_tokens_first_quarter"]
    assert min(sim["data"]["carried_fraction_of_offered_load"].values()) < 0.9


def test_mixed_phase_station_holds_a_prefill_at_one_engine_and_a_decode_at_the_other():
    """Lu-Kumar under Orca: s2's decode is served after s3's, so only s2's prefill joins the station."""
    vs = virtual_stations(load_network(ORCA["lk"]))[0]
    phases = {label.split(".")[1] for label in vs.buffers[0]}, {label.split(".")[1] for label in vs.buffers[1]}
    assert phases == ({"p", "d"}, {"p"}) and vs.feeders == (("s3.d",), ("s1.d",))
    assert vs.utilisations == (Fraction(53, 100), Fraction(50, 100))


def test_fluid_from_a1_p_does_not_claim_to_drain():
    """The path from A1.p = 100 used to 'drain' in four pieces: an empty decode buffer was served
    faster than it was fed and created fluid downstream."""
    out = _llmstab("fluid", ORCA["rs"], "--initial", "A1.p=100", "--json")
    assert out["outcome"] == "grows" and out["exact"] is True
    assert Fraction(out["certificate"]["ratio"]) > 1
    path = out["path"]
    assert path[0] == {"t": "0", "state": {"A1.p": "100"}} and len(path) == out["breakpoints"]
    assert [Fraction(p["t"]) for p in path] == sorted(Fraction(p["t"]) for p in path)


FLUIDS = {name: FluidNetwork.from_network(load_network(path)) for name, path in ORCA.items()}
FLUIDS.update({"rs_bad": FluidNetwork.from_network(rybko_stolyar(bad=True)),
               "lk": FluidNetwork.from_network(lu_kumar(1))})


@settings(max_examples=30)
@given(name=st.sampled_from(sorted(FLUIDS)), data=st.data())
def test_an_empty_buffer_is_never_served_faster_than_it_is_fed(name, data):
    """Conservation: the allocation's own net rate of every empty buffer is >= 0 (before the
    velocity clips it), so no fluid appears from nowhere."""
    fn = FLUIDS[name]
    q = [Fraction(0)] * fn.size  # fluid in one or two buffers: the states a diverging path runs through
    for k in data.draw(st.lists(st.integers(0, fn.size - 1), min_size=1, max_size=2, unique=True)):
        q[k] = Fraction(data.draw(st.sampled_from([5, 174])))
    u = fn.allocation(q)
    rates = fn._rates(u, True, {})
    assert all(rates[k] >= 0 for k in range(fn.size) if q[k] == 0)


def test_diverging_path_evidence_lists_every_breakpoint_exactly():
    net = load_network(ORCA["rs"])
    ev = next(e for e in check_network(net, simulate=False).load_verdict.evidence if e.kind == "counterexample")
    points = ev.data["breakpoints"]
    assert points[0]["state"] == ev.data["initial_state"] and points[0]["t"] == "0"
    assert points[-1]["t"] == ev.data["t1"] and points[-1]["state"] == ev.data["state_at_t1"]
    assert any(p["t"] == ev.data["t0"] and p["state"] == ev.data["state_at_t0"] for p in points)
    assert len(points) > 3 and "requests" in ev.summary and "tokens" not in ev.summary


def _texts(fig) -> list[str]:
    return [t.get_text() for ax in fig.axes for t in ax.texts] + [t.get_text() for t in fig.texts]


def test_network_picture_has_title_legend_notation_entries_and_exits():
    fig = network_figure(rybko_stolyar(bad=True))
    texts = _texts(fig)
    assert fig.get_suptitle() and fig.axes[0].get_legend() is not None
    assert any("rho = offered token load / engine capacity" in t for t in texts)
    assert {"A enters (A1)\n108/95 req/s", "A leaves\nafter A2", "B enters (B1)\n108/95 req/s",
            "B leaves\nafter B2"} <= set(texts)
    assert any("virtual station" in t and "1.61 > 1" in t for t in texts)


def test_good_and_bad_rybko_stolyar_pictures_differ_in_their_priorities():
    bad, good = (set(_texts(network_figure(rybko_stolyar(bad=b)))) for b in (True, False))
    assert {"A2 [1st]", "B2 [1st]", "serves: B2.d > B2.p > A1.d > A1.p"} <= bad
    assert {"A2 [2nd]", "B2 [2nd]", "serves: A1.d > A1.p > B2.d > B2.p"} <= good


def test_lu_kumar_self_loop_starts_and_ends_on_its_engine_box():
    from matplotlib.patches import FancyArrowPatch, FancyBboxPatch

    fig = network_figure(lu_kumar(1))
    ax = fig.axes[0]
    boxes = [p for p in ax.patches if isinstance(p, FancyBboxPatch)]
    e2 = max(boxes, key=lambda b: b.get_x())  # e2 is drawn right of e1
    x0, x1, top = e2.get_x(), e2.get_x() + e2.get_width(), e2.get_y() + e2.get_height()
    loops = [a for a in ax.patches if isinstance(a, FancyArrowPatch) and a._posA_posB is not None
             and all(x0 <= x <= x1 and abs(y - top) < 0.1 for x, y in a._posA_posB)]
    assert len(loops) == 1
    assert "s3 [2nd]" in _texts(fig)
