"""A check with attention, a KV cache or a request cap decides its memory step without sympy (Fractions only)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.conftest import ROOT

PROBE = """import json, sys
from llmstab.checkers.cli.main import main
status = main(sys.argv[1:])
print(json.dumps({"status": status, "sympy": "sympy" in sys.modules}), file=sys.stderr)
"""

# the verdicts and exact numbers of the sympy version (commit a9259d3)
EXPECTED = {
    "memory_bound.yaml": ("unstable", "memory", "certificate", "691713/512000"),
    "memory_roomy.yaml": ("stable", "compute", "theorem", "691713/25088000"),
}


def _check(example: str) -> tuple[dict, dict]:
    """``llmstab check --json`` of a bundled example in a fresh interpreter, and what that interpreter imported."""
    done = subprocess.run([sys.executable, "-c", PROBE, "check", "--json", f"examples/{example}"], capture_output=True,
                          text=True, cwd=ROOT, timeout=600, check=True)
    return json.loads(done.stdout), json.loads(done.stderr.strip().splitlines()[-1])


@pytest.mark.parametrize("example", sorted(EXPECTED))
def test_memory_check_imports_no_sympy_and_keeps_its_verdict_and_exact_numbers(example):
    report, probe = _check(example)
    assert probe == {"status": 0, "sympy": False}
    verdict, binding, kind, memory_use = EXPECTED[example]
    memory = report["capacity"]["memory"]
    assert (report["load_verdict"], report["policy_verdict"], memory["binding"]) == (verdict, "maximally-stable", binding)
    step = next(e for e in report["evidence"] if e["step"] == "memory")
    assert step["kind"] == kind
    assert step["exact"]["work_per_request_ms"] == {"long-chat": "659913/800"}
    assert step["exact"]["kv_need_tokens"] == "691713/16" and step["exact"]["utilisation"]["memory"] == memory_use
    assert memory["t_min_ms"] == 46.75 and memory["compute_load"] == 0.49493475
