"""Work-conservation certificates are kept on disk and read back without numba (checkers/certificate_cache.py)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass

import pytest

from llmstab.checkers import certificate_cache
from llmstab.checkers.work_conservation import check_work_conservation
from llmstab.fluid_models.batch_time import Staircase
from llmstab.fluid_models.engine import Engine
from llmstab.fluid_models.policies import FCFSWorkConserving, Orca, Sarathi, VLLM

from tests.conftest import ROOT

ENGINE = Engine(Staircase(11.28, 35.47, 128), 512)
PROBE = """import json, sys
from llmstab.checkers.cli.main import main
status = main(sys.argv[1:])
print(json.dumps({"status": status, "numba": "numba" in sys.modules}), file=sys.stderr)
"""


@pytest.fixture
def store(tmp_path, monkeypatch):
    monkeypatch.setenv("LLMSTAB_CACHE_DIR", str(tmp_path))
    return tmp_path


@pytest.mark.parametrize("policy", [Sarathi(), Sarathi(order="spf"), Orca(), FCFSWorkConserving()],
                         ids=lambda p: p.label)
def test_a_kept_certificate_reads_back_as_the_search_found_it(store, policy):
    found = check_work_conservation(policy, random_states=20, engine=ENGINE)
    assert found.work_conserving and len(list(store.iterdir())) == 1
    again = check_work_conservation(policy, random_states=20, engine=ENGINE)
    assert again == found and again.evidence() == found.evidence()
    check_work_conservation(policy, random_states=20, engine=Engine(Staircase(11.28, 35.47, 128), 256))
    check_work_conservation(policy, random_states=21, engine=ENGINE)
    assert len(list(store.iterdir())) == 3  # another budget, another search: other keys


def test_counterexamples_and_kernels_from_outside_the_toolkit_are_not_kept(store):
    assert not check_work_conservation(VLLM(), random_states=0, engine=ENGINE).work_conserving

    @dataclass(frozen=True)
    class MySarathi(Sarathi):  # the toolkit's kernel, but a class whose code the fingerprint does not cover
        name = "my_sarathi"

    assert check_work_conservation(MySarathi(), random_states=0).work_conserving
    assert list(store.iterdir()) == []


def test_a_changed_toolkit_or_a_spoilt_file_finds_the_certificate_again(store, monkeypatch):
    first = check_work_conservation(Orca(), random_states=0)
    (kept,) = store.iterdir()
    kept.write_text("{not json")
    assert check_work_conservation(Orca(), random_states=0) == first
    assert json.loads(kept.read_text()) == {"states_examined": first.states_examined}
    monkeypatch.setattr(certificate_cache, "source_fingerprint", lambda: "0" * 64)
    assert certificate_cache.recall("work-conservation", {"any": "key"}) is None
    assert check_work_conservation(Orca(), random_states=0) == first
    assert len(list(store.iterdir())) == 2


def test_the_store_can_be_turned_off(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.setenv("LLMSTAB_CACHE_DIR", "off")
    assert check_work_conservation(Sarathi(), random_states=0).work_conserving
    assert list(tmp_path.iterdir()) == []


def test_a_second_check_reads_the_certificate_and_loads_no_numba(tmp_path):
    """The second check of a work-conserving engine prints the same report and never imports numba."""
    runs = []
    for _ in range(2):
        done = subprocess.run([sys.executable, "-c", PROBE, "check", "--json", "examples/codellama34b_a100_orca.yaml"],
                              capture_output=True, text=True, cwd=ROOT, timeout=600, check=True,
                              env={**os.environ, "LLMSTAB_CACHE_DIR": str(tmp_path)})
        runs.append((done.stdout, json.loads(done.stderr.strip().splitlines()[-1])))
    (first, probe1), (second, probe2) = runs
    assert probe1 == {"status": 0, "numba": True} and probe2 == {"status": 0, "numba": False}
    report = json.loads(second)
    assert second == first and report["policy_verdict"] == "maximally-stable"
    assert report["load_verdict"] == "stable"
