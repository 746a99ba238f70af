"""``llmstab derive`` agrees with ``llmstab check`` or says why it answers a different question (issue 10)."""

import subprocess
import sys
from pathlib import Path

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def _derive(name: str) -> str:
    out = subprocess.run([sys.executable, "-m", "llmstab.checkers.cli.main", "derive", str(EXAMPLES / name)],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return out.stdout


def test_derive_with_a_binding_k_max_does_not_claim_theorem_2b():
    """Before: "Theorem 2(b) ... here: True" on pointC_inside, where check says the load is unstable under Orca."""
    text = _derive("pointC_inside.yaml")
    assert text.startswith("note: this is Li-Dai-Peng Theorem 2 for the engine without its request limit")
    assert "k_max = 100" in text and "llmstab check" in text
    assert "Theorem 2(b)" not in text.split("\n", 1)[1]


def test_derive_prints_equations_and_counts_as_a_person_reads_them():
    text = _derive("codellama34b_a100_sarathi.yaml")
    assert "Eq(" not in text and "t_b = " in text
    assert "1 candidates" not in text
    assert "Theorem 2(b): work-conserving schedulers are stable if" in text and not text.startswith("note")
