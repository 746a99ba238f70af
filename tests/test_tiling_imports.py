"""A tiled-engine check imports no sympy, and the second time no numba: the tiling result is kept on disk."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from llmstab.checkers import certificate_cache, tiling
from llmstab.checkers.tiling import TilingResult, check_optimal_tiling
from llmstab.fluid_models.policies import RAD, FixedChunk, Orca

from tests.conftest import ROOT

PROBE = """import json, sys
from llmstab.checkers.cli.main import main
status = main(sys.argv[1:])
print(json.dumps({"status": status, "sympy": "sympy" in sys.modules, "numba": "numba" in sys.modules}),
      file=sys.stderr)
"""


@pytest.fixture
def store(tmp_path, monkeypatch):
    monkeypatch.setenv("LLMSTAB_CACHE_DIR", str(tmp_path))
    return tmp_path


def _kept(store) -> list[str]:
    return sorted(p.name for p in store.iterdir() if p.name.startswith("optimal-tiling-"))


def test_a_rad_tiled_check_loads_no_sympy_and_the_second_no_numba(tmp_path):
    """Two fresh interpreters, one store: no sympy either time, no numba the second time, the same report."""
    runs = []
    for _ in range(2):
        done = subprocess.run([sys.executable, "-c", PROBE, "check", "--json", "examples/rad_tiled.yaml"],
                              capture_output=True, text=True, cwd=ROOT, timeout=600, check=True,
                              env={**os.environ, "LLMSTAB_CACHE_DIR": str(tmp_path)})
        runs.append((done.stdout, json.loads(done.stderr.strip().splitlines()[-1])))
    (first, probe1), (second, probe2) = runs
    assert probe1 == {"status": 0, "sympy": False, "numba": True}
    assert probe2 == {"status": 0, "sympy": False, "numba": False}
    assert second == first and json.loads(second)["policy_verdict"] == "maximally-stable"
    assert len(_kept(tmp_path)) == 1


@pytest.mark.parametrize("policy, arguments", [
    (RAD(b_col=64, b_lcm=128), {"b_col": 64, "b_lcm": 128, "b_max": 512}),
    (FixedChunk(chunk=96), {"b_col": 64, "b_lcm": 128, "b_max": 512}),
    (Orca(), {"b_col": 64, "b_max": 512, "k_max": 8}),
], ids=["rad", "fixed-chunk", "orca-k_max"])
def test_a_kept_tiling_result_reads_back_equal_to_a_fresh_one(store, monkeypatch, policy, arguments):
    """The kept result (a certificate or a counterexample with its batch) is what a fresh search finds."""
    monkeypatch.setenv("LLMSTAB_CACHE_DIR", "off")
    fresh = check_optimal_tiling(policy, **arguments)
    monkeypatch.setenv("LLMSTAB_CACHE_DIR", str(store))
    assert check_optimal_tiling(policy, **arguments) == fresh and len(_kept(store)) == 1

    def no_search(*_args):
        raise AssertionError("searched again instead of reading the kept result")

    monkeypatch.setattr(tiling, "_first_partial_tile", no_search)
    again = check_optimal_tiling(policy, **arguments)
    assert isinstance(again, TilingResult) and again == fresh and again.evidence() == fresh.evidence()


def test_every_argument_and_option_is_in_the_key(store):
    """Another policy option or another b_col, b_max, b_lcm or k_max is another result, searched again."""
    base = {"b_col": 64, "b_lcm": 128, "b_max": 512}
    first = check_optimal_tiling(FixedChunk(chunk=96), **base)
    check_optimal_tiling(FixedChunk(chunk=128), **base)
    for change in ({"b_col": 32}, {"b_max": 1024}, {"b_lcm": 256}, {"k_max": 4}):
        check_optimal_tiling(FixedChunk(chunk=96), **{**base, **change})
    assert len(_kept(store)) == 6
    assert check_optimal_tiling(FixedChunk(chunk=96), **base) == first and len(_kept(store)) == 6
    assert not first.optimal and first.batch.tokens == 96


def test_a_policy_outside_the_toolkit_is_never_kept(store):
    """A user's subclass (its kernel is not in the toolkit's fingerprint) is searched every time."""

    class Mine(RAD):
        pass

    assert certificate_cache.policy_key(Mine(b_col=64, b_lcm=128)) is None
    assert check_optimal_tiling(Mine(b_col=64, b_lcm=128), b_col=64, b_lcm=128, b_max=512).optimal
    assert _kept(store) == []
