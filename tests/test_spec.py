"""Bad input: one clear line naming the field, exit status 2, never a traceback."""

import copy
import subprocess
import sys

import pytest
import yaml
from hypothesis import given, settings, strategies as st

from llmstab.checkers.errors import InputError
from llmstab.checkers.spec import engine_spec_from_document, load_engine_spec
from tests.conftest import EXAMPLES

GOOD = yaml.safe_load((EXAMPLES / "codellama34b_a100_sarathi.yaml").read_text())


def _with(path, value):
    doc = copy.deepcopy(GOOD)
    *parents, last = path
    node = doc
    for key in parents:
        node = node[key]
    if value is _DELETE:
        del node[last]
    else:
        node[last] = value
    return doc


_DELETE = object()
CLASS = ("workload", "classes", 0)


@pytest.mark.parametrize("path, value, field, words", [
    ((*CLASS, "rate"), -1, "workload.classes[0].rate", "positive"),
    ((*CLASS, "rate"), 0, "workload.classes[0].rate", "positive"),
    ((*CLASS, "rate"), "fast", "workload.classes[0].rate", "number"),
    (("engine", "token_budget"), _DELETE, "engine.token_budget", "missing"),
    (("policy",), "fifo-magic", "policy", "unknown policy"),
    ((*CLASS, "prompt", "dist"), "zipf", "workload.classes[0].prompt.dist", "unknown distribution"),
    (("engine", "token_budget"), 500, "engine.token_budget", "multiple of batch_time.b0"),
    (("engine", "batch_time", "kind"), "quadratic", "engine.batch_time.kind", "unknown batch-time kind"),
    (("engine", "batch_time", "unit"), "hours", "engine.batch_time.unit", "unknown unit"),
    (("engine", "tokn_budget"), 512, "engine.tokn_budget", "unknown field"),
    (("engine", "max_batch_requests"), 0, "engine.max_batch_requests", "at least 1"),
    (("workload", "classes"), [], "workload.classes", "non-empty"),
    ((*CLASS, "decode", "mean"), 0.5, "workload.classes[0].decode.mean", "between 1 and"),
])
def test_bad_field_is_named(path, value, field, words):
    with pytest.raises(InputError) as err:
        engine_spec_from_document(_with(path, value))
    assert err.value.field == field and words in err.value.problem


def test_empirical_lengths_csv(tmp_path):
    doc = _with((*CLASS, "prompt"), {"dist": "empirical", "file": "lengths.csv"})
    (tmp_path / "lengths.csv").write_text("length\n10\n20\n30\n")
    spec = engine_spec_from_document(doc, base_dir=tmp_path)
    assert spec.workload.classes[0].prompt.mean == 20
    for bad, words in (("10\n2.5\n", "line 2: '2.5' is not an integer"), ("10\n-3\n", "line 2: length -3 is not positive")):
        (tmp_path / "lengths.csv").write_text(bad)
        with pytest.raises(InputError) as err:
            engine_spec_from_document(doc, base_dir=tmp_path)
        assert err.value.field == "workload.classes[0].prompt.file" and words in err.value.problem


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "llmstab.checkers.cli.main", *args], capture_output=True, text=True, timeout=120)


def test_cli_bad_input_is_one_line_and_exit_2(tmp_path):
    cases = {
        "malformed.yaml": "engine: [\n",
        "negative.yaml": yaml.safe_dump(_with((*CLASS, "rate"), -3)),
        "policy.yaml": yaml.safe_dump(_with(("policy",), "nope")),
        "list.yaml": "- 1\n- 2\n",
    }
    for name, text in cases.items():
        (tmp_path / name).write_text(text)
        result = _cli("check", str(tmp_path / name))
        assert result.returncode == 2, (name, result.stderr)
        assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr
        assert result.stdout == ""
    result = _cli("check", str(tmp_path / "missing.yaml"))
    assert result.returncode == 2 and "no such file" in result.stderr


leaf = st.one_of(st.none(), st.booleans(), st.integers(-5, 2000), st.floats(allow_nan=True),
                 st.text(max_size=8), st.sampled_from(["staircase", "tiled", "table", "geometric", "sarathi",
                                                       "empirical", "uniform", "ms", "s"]))
keys = st.sampled_from(["engine", "policy", "workload", "batch_time", "kind", "c", "a", "b0", "token_budget",
                        "max_batch_requests", "classes", "name", "rate", "prompt", "decode", "dist", "mean",
                        "low", "high", "file", "trace", "column", "unit", "tokens", "times", "t_lin", "b_col", "zzz"])
documents = st.recursive(leaf, lambda children: st.one_of(st.lists(children, max_size=4),
                                                          st.dictionaries(keys, children, max_size=6)), max_leaves=25)


@settings(max_examples=300)
@given(document=documents)
def test_random_structures_never_raise_anything_but_input_error(document):
    try:
        engine_spec_from_document(document)
    except InputError:
        pass


@settings(max_examples=200)
@given(path=st.sampled_from([("engine", "token_budget"), ("engine", "batch_time", "c"), ("engine", "batch_time", "b0"),
                             (*CLASS, "rate"), (*CLASS, "prompt", "mean"), (*CLASS, "decode"), ("policy",),
                             ("engine", "max_batch_requests"), ("workload", "classes")]),
       value=leaf)
def test_corrupting_one_field_of_a_good_file(path, value):
    try:
        engine_spec_from_document(_with(path, value))
    except InputError as err:
        assert err.field.split(".")[0] in {"engine", "workload", "policy"}


def test_examples_load():
    for path in EXAMPLES.glob("codellama34b_a100_*.yaml"):
        assert load_engine_spec(path).engine.token_budget == 512
