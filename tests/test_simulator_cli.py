"""``llmstab simulate`` and the simulation wired into ``llmstab check``."""

import csv
import json
import subprocess
import sys

import pytest
import yaml

from llmstab.checkers.cli.main import main
from tests.conftest import EXAMPLES

VLLM = EXAMPLES / "codellama34b_a100_vllm.yaml"


def _json(capsys, *argv):
    assert main(list(argv)) == 0
    return json.loads(capsys.readouterr().out)


def _variant(tmp_path, policy: str, rate: float) -> str:
    """The bundled example with 128-token prompts: four fill b_max = 512 exactly, so the phase bound
    (checkers/phase_bound.py) excludes no load below capacity and the check must simulate."""
    doc = yaml.safe_load((EXAMPLES / f"codellama34b_a100_{policy}.yaml").read_text())
    doc["workload"]["classes"][0].update(prompt={"dist": "deterministic", "mean": 128}, rate=rate)
    path = tmp_path / f"{policy}.yaml"
    path.write_text(yaml.safe_dump(doc))
    return str(path)


@pytest.mark.parametrize("policy, rate, verdict, trend", [("fastertransformer", 12, "unstable", "diverging at"),
                                                          ("vllm", 13, "stable", "bounded")])
def test_check_settles_the_load_by_simulation(tmp_path, policy, rate, verdict, trend, capsys):
    path = _variant(tmp_path, policy, rate)
    theory = _json(capsys, "check", path, "--json", "--no-simulate")
    assert theory["load_verdict"] == "inconclusive"
    assert not any(e["kind"] == "simulation" for e in theory["evidence"])
    out = _json(capsys, "check", path, "--json")
    assert out["load_verdict"] == verdict and out["policy_verdict"] == "not-maximally-stable"
    load = [e for e in out["evidence"] if e["about"] == "load"]
    assert load[0]["kind"] == "simulation" and trend in load[0]["summary"]
    assert load[0]["data"]["growth"]["horizon_s"] > 0
    assert "empirical-capacity" in out["steps"]


def test_check_leaves_theorem_verdicts_alone(capsys):
    out = _json(capsys, "check", str(EXAMPLES / "codellama34b_a100_sarathi.yaml"), "--json")
    assert out["load_verdict"] == "stable"
    assert not any(e["kind"] == "simulation" for e in out["evidence"])


def test_simulate_prints_measurements_and_writes_csv_and_plot(tmp_path, capsys):
    trajectory, plot = tmp_path / "b.csv", tmp_path / "b.png"
    assert main(["simulate", str(VLLM), "--horizon", "300", "--seed", "3", "--csv", str(trajectory),
                 "--plot", str(plot)]) == 0
    text = capsys.readouterr().out
    for needle in ("TTFT", "TBT", "end-to-end", "diverging at", "300 s horizon", "seed 3"):
        assert needle in text
    rows = list(csv.DictReader(trajectory.open()))
    assert list(rows[0]) == ["time_s", "backlog_tokens", "backlog_requests"]
    assert float(rows[-1]["time_s"]) == pytest.approx(300) and int(rows[-1]["backlog_tokens"]) > 0
    assert plot.read_bytes()[:4] == b"\x89PNG"
    again = _json(capsys, "simulate", str(VLLM), "--horizon", "300", "--seed", "3", "--json")
    assert again["horizon_s"] == 300 and again["growth"]["verdict"] == "diverging"
    assert again == _json(capsys, "simulate", str(VLLM), "--horizon", "300", "--seed", "3", "--json")


def test_simulate_replays_a_trace(tmp_path, capsys):
    trace = tmp_path / "t.csv"
    rows = "".join(f"{i * 0.05:.2f},{100 + i % 7},{20 + i % 5}\n" for i in range(2000))
    trace.write_text("arrival_time,prompt_tokens,decode_tokens\n" + rows)
    out = _json(capsys, "simulate", str(VLLM), "--trace", str(trace), "--json")
    assert out["arrivals"] == "trace" and out["requests"] == 2000 and out["finished"] == 2000


def test_simulate_selects_the_shipped_sharegpt_trace(tmp_path, capsys):
    doc = yaml.safe_load(VLLM.read_text())
    doc["policy"] = "sarathi"
    doc["workload"]["classes"][0].update(rate=1, prompt={"dist": "empirical", "trace": "sharegpt"},
                                         decode={"dist": "empirical", "trace": "sharegpt"})
    (tmp_path / "sg.yaml").write_text(yaml.safe_dump(doc))
    out = _json(capsys, "simulate", str(tmp_path / "sg.yaml"), "--horizon", "2000", "--json")
    assert out["offered_tokens_per_s"] == pytest.approx(2340.03 + 438.71, abs=0.01)
    assert out["growth"]["verdict"] != "diverging"  # 83% of capacity, Sarathi (2000 s: bounded or undecided)


@pytest.mark.parametrize("argv, message", [
    (["--seed", "1.5"], "seed: must be a non-negative integer, got '1.5'"),
    (["--horizon", "0"], "horizon: must be positive, got '0'"),
    (["--requests", "many"], "requests: must be an integer, got 'many'"),
    (["--trace", "{missing}"], "trace: missing column 'arrival_time'"),
    (["--trace", "{negative}"], "trace.prompt_tokens: negative length -4 (row 1)"),
    (["--trace", "{unsorted}"], "trace.arrival_time: not sorted (row 1 arrives before row 0)"),
])
def test_bad_input_is_one_line_and_exit_2(tmp_path, argv, message):
    files = {"missing": "prompt_tokens,decode_tokens\n5,5\n",
             "negative": "arrival_time,prompt_tokens,decode_tokens\n0,5,5\n1,-4,5\n",
             "unsorted": "arrival_time,prompt_tokens,decode_tokens\n2,5,5\n1,4,5\n"}
    for name, text in files.items():
        (tmp_path / f"{name}.csv").write_text(text)
    argv = [a.format(**{k: str(tmp_path / f"{k}.csv") for k in files}) for a in argv]
    result = subprocess.run([sys.executable, "-m", "llmstab.checkers.cli.main", "simulate", str(VLLM), *argv],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], result.stderr


def test_a_drained_run_is_judged_over_its_arrival_period(capsys):
    out = _json(capsys, "simulate", str(VLLM), "--requests", "5000", "--json")
    assert out["finished"] == 5000 and out["growth"]["verdict"] == "diverging"  # not fooled by the drain
    assert out["growth"]["horizon_s"] < out["horizon_s"]


def test_simulate_gives_no_scalar_fluid_prediction_with_a_binding_k_max():
    """Issue 10: ``simulate`` printed a fluid prediction of 0 at point C, where Orca diverges (k_max ignored)."""
    import json as _json
    import subprocess as _sp
    import sys as _sys
    from pathlib import Path as _Path

    example = _Path(__file__).resolve().parent.parent / "examples" / "pointC_inside.yaml"
    out = _sp.run([_sys.executable, "-m", "llmstab.checkers.cli.main", "simulate", str(example), "--json",
                   "--horizon", "300"], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    growth = _json.loads(out.stdout)["growth"]
    assert growth["fluid_prediction_tokens_per_s"] is None and "fluid prediction" not in growth["statement"]
