"""``llmstab fluid`` and ``llmstab network-plot`` (registered through their module's ``register``)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest

from llmstab.checkers.cli import fluid as cli_fluid
from llmstab.checkers.errors import InputError

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def _run(argv):
    parser = argparse.ArgumentParser()
    cli_fluid.register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return args.run(args)


def test_fluid_plot_of_the_bad_rybko_stolyar_network(tmp_path, capsys):
    out = tmp_path / "rs.png"
    assert _run(["fluid", str(EXAMPLES / "network_rybko_stolyar_bad.yaml"), "--plot", str(out), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["outcome"] == "grows" and summary["exact"] is True
    assert float(eval(summary["certificate"]["ratio"])) > 1  # a fraction written as text
    assert out.stat().st_size > 10_000 and out.read_bytes()[:4] == b"\x89PNG"


def test_fluid_from_a_given_state_drains_under_the_good_priority(capsys):
    assert _run(["fluid", str(EXAMPLES / "network_rybko_stolyar_good.yaml"), "--initial", "B1.p=40", "A2.p=5"]) == 0
    assert "drains (exact" in capsys.readouterr().out


def test_fluid_with_joins_is_integrated_numerically(tmp_path, capsys):
    assert _run(["fluid", str(EXAMPLES / "network_fork_join_unstable.yaml"), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["exact"] is False and summary["outcome"] == "grows"
    assert set(summary["final_state"]) == {"search.p"}
    # the default start puts 100 requests at the planner; tool1 then passes 100/120 of the 1 req/s
    horizon = summary["end_time_s"]
    assert summary["final_state"]["search.p"] == pytest.approx(100 + horizon * (1 - 100 / 120), rel=1e-6)


def test_unknown_buffer_is_an_input_error():
    with pytest.raises(InputError) as err:
        _run(["fluid", str(EXAMPLES / "network_rybko_stolyar_bad.yaml"), "--initial", "Z9.p=1"])
    assert err.value.field == "--initial" and "unknown buffer" in err.value.problem


def test_network_plot(tmp_path):
    out = tmp_path / "net.png"
    assert _run(["network-plot", str(EXAMPLES / "network_fork_join.yaml"), str(out)]) == 0
    assert out.read_bytes()[:4] == b"\x89PNG"


def test_registered_in_the_llmstab_cli(tmp_path, capsys):
    from llmstab.checkers.cli.main import main

    assert main(["fluid", str(EXAMPLES / "network_lu_kumar.yaml")]) == 0
    assert "grows (exact" in capsys.readouterr().out
    assert main(["fluid", str(EXAMPLES / "network_lu_kumar.yaml"), "--initial", "nope=1"]) == 2
    assert "--initial: unknown buffer 'nope'" in capsys.readouterr().err
    assert main(["network-plot", str(EXAMPLES / "network_lu_kumar.yaml"), str(tmp_path / "n.png")]) == 0


def _llmstab(*argv):
    import subprocess
    import sys

    return subprocess.run([sys.executable, "-m", "llmstab.checkers.cli.main", *map(str, argv)],
                          capture_output=True, text=True, timeout=300)


def test_fluid_on_a_network_with_k_max_is_bad_input_on_one_line(tmp_path):
    """A request limit makes an engine's capacity a region: no scalar fluid model, so exit 2, not an internal error."""
    import yaml

    doc = yaml.safe_load((EXAMPLES / "network_rybko_stolyar_bad.yaml").read_text())
    doc["engines"]["e1"]["max_batch_requests"] = 8
    (tmp_path / "net.yaml").write_text(yaml.safe_dump(doc))
    run = _llmstab("fluid", tmp_path / "net.yaml")
    assert run.returncode == 2 and run.stdout == ""
    assert run.stderr.count("\n") == 1 and run.stderr.startswith("llmstab: error: engines: ")
    assert "e1" in run.stderr and "k_max" in run.stderr


def test_model_errors_are_input_errors():
    from llmstab.fluid_models.networks.fluid import FluidError
    from llmstab.fluid_models.networks.network import NetworkError

    assert issubclass(FluidError, InputError) and issubclass(NetworkError, InputError)
    assert str(NetworkError("classes[0].rate", "must be positive")) == "classes[0].rate: must be positive"
