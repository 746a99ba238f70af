"""A DAG network's check imports no sympy (issue 9: the DAG check's speed target) and keeps its verdicts."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from llmstab.checkers.virtual_stations import virtual_stations
from llmstab.fluid_models.networks.examples import fork_join, rybko_stolyar
from llmstab.theory.exact_linalg import Exact

from tests.conftest import ROOT

PROBE = """import json, sys
from llmstab.checkers.cli.main import main
status = main(sys.argv[1:])
print(json.dumps({"status": status, "sympy": "sympy" in sys.modules}), file=sys.stderr)
"""


def _check(example: str) -> tuple[dict, dict]:
    """``llmstab check --json`` of an example in a fresh interpreter: the report and what the probe saw."""
    done = subprocess.run([sys.executable, "-c", PROBE, "check", "--json", f"examples/{example}"],
                          capture_output=True, text=True, cwd=ROOT, timeout=600, check=True)
    return json.loads(done.stdout), json.loads(done.stderr.strip().splitlines()[-1])


@pytest.mark.parametrize("example, load, policy, tool1", [
    ("network_fork_join.yaml", "stable", "maximally-stable", "2/5"),
    ("network_fork_join_unstable.yaml", "unstable", "maximally-stable", "6/5"),
])
def test_dag_network_check_imports_no_sympy(example, load, policy, tool1):
    report, probe = _check(example)
    assert probe == {"status": 0, "sympy": False}
    assert (report["load_verdict"], report["policy_verdict"]) == (load, policy)
    tool = report["load"]["engines"]["tool1"]
    assert tool["exact_utilisation"] == tool1 and tool["utilisation"] == float(Exact(tool1))
    assert report["capacity"]["engines"]["tool1"]["tokens_per_s"] == 100  # an exact integer stays an int


def test_network_numbers_are_exact_fractions():
    """Loads, capacities and utilisations are Exact (Fractions), not sympy numbers, with the same values."""
    net = fork_join(rate=1, tool_tokens=120)
    for values in (net.capacity(), net.service_rate(), net.token_load(), net.utilisation(), net.step_rates()):
        assert all(type(v) is Exact for v in values.values())
    assert net.utilisation()["tool1"] == Exact(6, 5) and net.token_load()["writer"] == 20
    stations = virtual_stations(rybko_stolyar(bad=True))
    assert [type(vs.load) for vs in stations] == [Exact] and stations[0].load == 2 * Exact(9, 10) * 544 / 608
