"""Every command with ``--json`` prints exactly one JSON object on standard output, on every example.

Solvers written in C (HiGHS) print banners on file descriptor 1, below Python's
``sys.stdout``; only a separate process sees them. The command lines run in
processes forked from one driver (``tests/json_cli_driver.py``) whose
descriptor 1 is a file per command, so the heavy imports are paid once.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import yaml

from .conftest import EXAMPLES, ROOT

#: Examples that take minutes under check (their speed is benchmarked, not tested here).
SLOW = {"network_reentrant_20_lbfs.yaml", "network_dag_1000.yaml"}


def _kind(path) -> str:
    doc = yaml.safe_load(path.read_text())
    if "engines" in doc:
        return "network"
    if "cluster" in doc:
        return "cluster"
    if "engine" in doc:
        return "region" if "region" in doc else "engine"
    return "other"


def _command_lines(tmp_path) -> list[str]:
    lines = []
    for path in sorted(EXAMPLES.glob("*.yaml")):
        if path.name in SLOW:
            continue
        kind = _kind(path)
        if kind in ("engine", "network", "cluster"):
            lines.append(f"check --json --no-simulate {path}")
        if kind in ("engine", "region"):
            lines.append(f"region --json --no-simulate {path}")
        if kind == "engine":
            lines.append(f"simulate --json --requests 100 {path}")
        if kind == "network":
            lines.append(f"fluid --json {path}")
    profile = tmp_path / "profile.csv"
    profile.write_text("kind,tokens,prefill_tokens,decode_tokens,context_len,reps,time_ms\n" + "".join(
        f"prefill,{n},{n},0,0,3,{10 + 2 * -(-n // 64):.3f}\n" for n in range(16, 1025, 16)))
    lines += [f"fit --json {profile}", "presets --json", "presets --json li-dai-peng-codellama34b-a100"]
    return lines


@pytest.fixture(scope="module")
def outputs(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("json")
    lines = _command_lines(tmp_path)
    subprocess.run([sys.executable, "-m", "tests.json_cli_driver", str(tmp_path), "300", *lines],
                   cwd=ROOT, timeout=3600, check=True)
    return tmp_path, lines


def test_imports_print_nothing(outputs):
    tmp_path, _ = outputs
    assert (tmp_path / "parent.out").read_text() == ""


def test_every_json_output_is_one_object(outputs):
    tmp_path, lines = outputs
    problems = []
    for i, line in enumerate(lines):
        rc = (tmp_path / f"{i}.rc").read_text() if (tmp_path / f"{i}.rc").exists() else "none"
        out, err = (tmp_path / f"{i}.out").read_text(), (tmp_path / f"{i}.err").read_text()
        try:
            ok = rc == "0" and isinstance(json.loads(out), dict)
        except json.JSONDecodeError as exc:
            ok, err = False, f"{exc}; stdout starts {out[:120]!r}"
        if not ok:
            problems.append(f"{line}: exit {rc}: {err.strip()[-300:]}")
    assert not problems, "\n".join(problems)
