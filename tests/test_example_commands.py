"""Every shipped example runs under ``check``, or the other commands name the command it is for (issue 10)."""

import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


@pytest.mark.parametrize("command", ["check", "simulate", "derive"])
def test_a_region_only_example_names_its_command(command):
    """Before: ``region: unknown field (expected one of: engine, policy, workload)``."""
    out = subprocess.run([sys.executable, "-m", "llmstab.checkers.cli.main", command,
                          str(EXAMPLES / "pointC_boundary.yaml")], capture_output=True, text=True, timeout=120)
    assert out.returncode == 2 and out.stdout == ""
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and "llmstab region FILE" in lines[0] and "unknown field" not in lines[0]
