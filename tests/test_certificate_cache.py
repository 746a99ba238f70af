"""Work-conservation certificates are kept on disk and read back without numba (checkers/certificate_cache.py)."""

from __future__ import annotations

import json
import os
import pickle
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


def test_a_kept_counterexample_reads_back_whole(store):
    found = check_work_conservation(VLLM(), random_states=0, engine=ENGINE)
    assert not found.work_conserving and found.at_engine_budget is not None
    again = check_work_conservation(VLLM(), random_states=0, engine=ENGINE)
    assert again == found and again.evidence() == found.evidence() and len(list(store.iterdir())) == 1


def test_kernels_from_outside_the_toolkit_are_not_kept(store):
    @dataclass(frozen=True)
    class MySarathi(Sarathi):  # the toolkit's kernel, but a class whose code the fingerprint does not cover
        name = "my_sarathi"

    assert check_work_conservation(MySarathi(), random_states=0).work_conserving
    assert list(store.iterdir()) == []


def test_a_changed_toolkit_or_a_spoilt_file_finds_the_result_again(store, monkeypatch):
    first = check_work_conservation(Orca(), random_states=0)
    (kept,) = store.iterdir()
    kept.write_bytes(b"not a pickle")
    assert check_work_conservation(Orca(), random_states=0) == first
    assert certificate_cache.recall("work-conservation", _key(Orca())) == first
    monkeypatch.setattr(certificate_cache, "source_fingerprint", lambda: "0" * 64)
    assert certificate_cache.recall("work-conservation", _key(Orca())) is None
    assert check_work_conservation(Orca(), random_states=0) == first
    assert len(list(store.iterdir())) == 2


def test_a_planted_file_cannot_run_code(store):
    """The store builds only the toolkit's classes: a pickle that would call os.system is refused, not run."""
    check_work_conservation(Orca(), random_states=0)
    (kept,) = store.iterdir()

    class Planted:
        def __reduce__(self):
            return (os.system, ("echo planted > " + str(store / "ran"),))

    kept.write_bytes(pickle.dumps(Planted()))
    assert certificate_cache.recall("work-conservation", _key(Orca())) is None
    assert check_work_conservation(Orca(), random_states=0).work_conserving and not (store / "ran").exists()


def _key(policy) -> dict:
    """The key check_work_conservation(policy, random_states=0) keeps its result under."""
    from llmstab.checkers.work_conservation import _certificate_key

    bounds = {"max_requests": 4, "max_prefill": 3, "max_decode": 2, "budgets": [1, 2, 3, 4, 5], "k_limits": [None]}
    return _certificate_key(policy, bounds, 0, 0, None)


def test_the_store_can_be_turned_off(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.setenv("LLMSTAB_CACHE_DIR", "off")
    assert check_work_conservation(Sarathi(), random_states=0).work_conserving
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("example, options, verdicts", [
    ("codellama34b_a100_orca.yaml", (), ("stable", "maximally-stable")),
    ("codellama34b_a100_vllm.yaml", ("--no-simulate",), (None, "not-maximally-stable")),
])
def test_a_second_check_reads_the_kept_result_and_loads_no_numba(tmp_path, example, options, verdicts):
    """The second check of an engine prints the same report and never imports numba."""
    runs = []
    for _ in range(2):
        done = subprocess.run([sys.executable, "-c", PROBE, "check", "--json", *options, f"examples/{example}"],
                              capture_output=True, text=True, cwd=ROOT, timeout=600, check=True,
                              env={**os.environ, "LLMSTAB_CACHE_DIR": str(tmp_path)})
        runs.append((done.stdout, json.loads(done.stderr.strip().splitlines()[-1])))
    (first, probe1), (second, probe2) = runs
    assert probe1 == {"status": 0, "numba": True} and probe2 == {"status": 0, "numba": False}
    report = json.loads(second)
    assert second == first and report["policy_verdict"] == verdicts[1]
    assert verdicts[0] is None or report["load_verdict"] == verdicts[0]
