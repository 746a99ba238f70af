"""``llmstab region``: output, plot, and one-line errors with exit status 2."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from llmstab.checkers.cli.main import main

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def _variant(tmp_path: Path, name: str, edit) -> Path:
    doc = yaml.safe_load((EXAMPLES / name).read_text())
    edit(doc)
    path = tmp_path / "input.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


def test_point_c_json(capsys):
    assert main(["region", str(EXAMPLES / "pointC_inside.yaml"), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["capacity"]["exact_vertices_tokens_per_ms"] == [["0", "400/187"], ["116/187", "36/17"], ["512/187", "0"]]
    assert out["exact_margin"] == "50/49" and out["load_verdict"] == "stable"
    assert out["policy_verdict"] == "not-maximally-stable"
    kinds = {(e["about"], e["kind"]) for e in out["evidence"]}
    assert ("load_verdict", "certificate") in kinds and ("policy_verdict", "counterexample") in kinds


def test_rad_end_to_end_and_plot(tmp_path, capsys):
    png = tmp_path / "rad.png"
    assert main(["region", str(EXAMPLES / "rad_tiled.yaml"), "--plot", str(png)]) == 0
    text = capsys.readouterr().out
    assert "Policy verdict: maximally-stable" in text and "Theorem 2" in text
    assert png.stat().st_size > 1000
    assert main(["region", str(EXAMPLES / "fixed_chunk_tiled.yaml"), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["policy_verdict"] == "not-maximally-stable"
    assert any(e["kind"] == "counterexample" and "optimal tiling" in e["summary"] for e in out["evidence"])


@pytest.mark.parametrize("name, edit, field", [
    ("pointC_inside.yaml", lambda d: d["engine"].update(max_batch_requests=0), "engine.max_batch_requests"),
    ("rad_tiled.yaml", lambda d: d["engine"].update(token_budget=500), "engine.token_budget"),
    ("pointC_inside.yaml", lambda d: d.setdefault("region", {}).update(load=[1, 2]), "region.load"),
    ("rad_tiled.yaml", lambda d: d.update(policy={"name": "rad", "b_col": 64, "b_lcm": 96}), "policy"),
    ("pointC_inside.yaml", lambda d: d.setdefault("region", {}).update(arrivals="bursty"), "region.arrivals"),
])
def test_bad_input_is_one_line_and_exit_2(tmp_path, capsys, name, edit, field):
    assert main(["region", str(_variant(tmp_path, name, edit)), "--no-simulate"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and f"error: {field}" in err


def test_check_uses_the_region_when_k_max_is_set(tmp_path, capsys):
    path = _variant(tmp_path, "pointC_inside.yaml", lambda d: d.pop("region", None))
    assert main(["check", str(path), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    # inside the region some scheduler carries the load, but Orca does not: the load verdict is Orca's
    assert out["load_verdict"] == "unstable" and out["policy_verdict"] == "not-maximally-stable"
    load_evidence = [e for e in out["evidence"] if e["about"] == "load"]
    assert load_evidence[0]["kind"] == "simulation"
    assert any("inside the capacity region" in str(e) for e in load_evidence)
    assert out["capacity"]["region"]["exact_vertices_tokens_per_ms"][1] == ["116/187", "36/17"]
    assert out["capacity"]["exact_margin"] == "50/49"
    over = _variant(tmp_path, "pointC_inside.yaml", lambda d: (d.pop("region", None), d["workload"]["classes"][0].update(rate="408/187")))
    assert main(["check", str(over), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["load_verdict"] == "unstable"
    assert any(e["kind"] == "certificate" and "separates" in e["summary"] for e in out["evidence"])


def test_g_nodes_from_the_file(capsys, tmp_path):
    path = _variant(tmp_path, "rad_tiled.yaml", lambda d: (d["workload"]["classes"][0].update(rate=140),
                                                            d.update(region={"nodes": 2})))
    assert main(["region", str(path), "--json", "--no-simulate"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["tiling"]["theorem1"]["nodes"] == 2 and out["tiling"]["load_verdict"] == "stable"
    assert out["policy_verdict"] == "maximally-stable" and out["load_verdict"] == "stable"  # per node: 70 req/s
    path = _variant(tmp_path, "rad_tiled.yaml", lambda d: d["workload"]["classes"][0].update(rate=140))
    assert main(["region", str(path), "--json", "--no-simulate"]) == 0
    assert json.loads(capsys.readouterr().out)["tiling"]["load_verdict"] == "unstable"


def test_check_on_a_tiled_engine_uses_theorem_2(capsys):
    assert main(["check", str(EXAMPLES / "rad_tiled.yaml"), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["policy_verdict"] == "maximally-stable" and out["tiling"]["nodes"] == 1
    assert main(["check", str(EXAMPLES / "fixed_chunk_tiled.yaml"), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["policy_verdict"] == "not-maximally-stable"
    assert any("optimal tiling" in e["summary"] for e in out["evidence"])


def test_the_region_command_certifies_each_load_once(monkeypatch):
    from fractions import Fraction

    from llmstab.checkers import region_check
    from llmstab.checkers.cli.region import load_region_spec, region_report

    calls = []
    real = region_check.certify_load

    def counting(region, load):
        calls.append(tuple(Fraction(v) for v in load))
        return real(region, load)

    monkeypatch.setattr(region_check, "certify_load", counting)
    report = region_report(load_region_spec(EXAMPLES / "pointC_inside.yaml"), simulate=False)
    assert report["position"] == "inside" and report["load_verdict"].verdict == "stable"
    assert len(calls) == 1


def test_region_plot_has_a_title_per_policy_and_complete_legend(tmp_path, monkeypatch):
    """Issue 10: no title, identical for every policy, a legend entry "bounded up to" with nothing after it."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from llmstab.checkers.cli.region import plot_region

    figures = []
    monkeypatch.setattr(plt, "close", lambda fig=None: figures.append(fig))
    base = {"subject": "one engine (b_max = 128, k_max = 100)", "margin": 1.02, "position": "inside",
            "load_verdict": "stable", "policy_verdict": "inconclusive",
            "capacity": {"vertices_tokens_per_ms": [[0, 2.1], [0.6, 2.1], [2.7, 0]],
                         "vertex_batch_types": ["0p+100d", "29p+99d", "128p+0d"]},
            "load": {"prefill_tokens_per_ms": 0.6, "decode_tokens_per_ms": 2.0},
            "simulated": [{"policy": "sarathi", "token_budget": 128, "bounded_up_to_tokens_per_ms": [0.59, 2.03]}]}
    for label in ("orca", "sarathi"):
        plot_region({**base, "policy_label": label}, tmp_path / f"{label}.png")
    titles = [f.axes[0].get_title() for f in figures]
    assert titles[0] != titles[1] and "policy orca: inconclusive" in titles[0] and "Capacity region" in titles[0]
    legend = [t.get_text() for t in figures[0].axes[0].get_legend().get_texts()]
    assert "sarathi (b_max 128): bounded up to 0.983 x the load, (0.59, 2.03) tokens/ms" in legend, legend


def test_region_plot_shows_the_policys_own_evidence_on_the_loads_ray(tmp_path, monkeypatch):
    """Issue 10: the plots were the same for every policy; each now marks what its verdict rests on."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from llmstab.checkers.cli.region import plot_region
    from llmstab.checkers.verdict import Evidence, Verdict

    figures = []
    monkeypatch.setattr(plt, "close", lambda fig=None: figures.append(fig))
    verdict = Verdict("not-maximally-stable", [
        Evidence("simulation", "orca simulated at 1 x the load: growing", {"load_scale": 1, "trend": "diverging"}),
        Evidence("counterexample", "orca cannot form 29p+99d", {"region_margin": 1.02, "policy_margin": 0.84})])
    report = {"subject": "one engine (b_max = 128, k_max = 100)", "margin": 1, "position": "boundary",
              "load_verdict": Verdict("inconclusive", []), "policy_verdict": verdict, "policy_label": "orca",
              "capacity": {"vertices_tokens_per_ms": [[0, 2.1], [0.6, 2.1], [2.7, 0]],
                           "vertex_batch_types": ["0p+100d", "29p+99d", "128p+0d"]},
              "load": {"prefill_tokens_per_ms": 0.6, "decode_tokens_per_ms": 2.1}}
    plot_region(report, tmp_path / "orca.png")
    ax = figures[0].axes[0]
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert "orca simulated at 1 x the load: diverging" in legend and "orca's batch types reach 0.84 x the load" in legend
    reach = next(line for line in ax.get_lines() if line.get_label().startswith("orca's batch types"))
    assert reach.get_xdata()[0] == pytest.approx(0.6 * 0.84) and reach.get_ydata()[0] == pytest.approx(2.1 * 0.84)
    title = ax.get_title()
    assert "load on the region's boundary (margin 1): inconclusive" in title and "policy orca: not-maximally" in title
    assert (tmp_path / "orca.png").stat().st_size > 1000
