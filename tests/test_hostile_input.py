"""Hostile and extreme input: each refused at the door with exit 2 and one line naming the field, in seconds.

Most cases run the CLI's ``main`` in-process under an alarm (a guard against the
old hangs, not a speed measurement); the alias bomb, whose old failure mode was
unbounded memory inside C code no alarm interrupts, runs as a subprocess with a
timeout. ``benchmarks/bench_hostile_input.py`` prints how long each case takes.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path

import pytest
import yaml

from llmstab.checkers.cli.main import main

from .conftest import EXAMPLES

VLLM = EXAMPLES / "codellama34b_a100_vllm.yaml"


@contextmanager
def _guard(seconds: int):
    def _raise(signum, frame):
        raise TimeoutError(f"still running after {seconds} s")

    previous = signal.signal(signal.SIGALRM, _raise)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def _run(capsys, *argv: str) -> tuple[int, list[str]]:
    with _guard(60):
        code = main(list(argv))
    return code, capsys.readouterr().err.strip().splitlines()


def _engine_doc(**changes) -> dict:
    doc = yaml.safe_load(VLLM.read_text())
    for path, value in changes.items():
        node = doc
        keys = path.split(".")
        for key in keys[:-1]:
            node = node[int(key)] if isinstance(node, list) else node[key]
        node[keys[-1]] = value
    return doc


def _write(tmp_path: Path, doc: dict | str, name: str = "in.yaml") -> str:
    path = tmp_path / name
    path.write_text(doc if isinstance(doc, str) else yaml.safe_dump(doc))
    return str(path)


def _refused(capsys, args: list[str], field: str, words: str) -> None:
    code, err = _run(capsys, *args)
    assert code == 2 and len(err) == 1, err
    assert field in err[0] and words in err[0], err[0]


BOMB_LEVELS = "".join(f"l{i}: &l{i} [" + ", ".join([f"*l{i - 1}"] * 10) + "]\n" for i in range(1, 9))


@pytest.mark.parametrize("where", ["rate", "token_budget", "name"])
def test_a_yaml_alias_bomb_is_refused_at_load(tmp_path, where):
    text = VLLM.read_text()
    old = {"rate": "rate: 12", "token_budget": "token_budget: 512", "name": "name: chat"}[where]
    text = "l0: &l0 [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]\n" + BOMB_LEVELS + text.replace(
        old, f"{old.split(':')[0]}: *l8")
    path = _write(tmp_path, text)
    run = subprocess.run([sys.executable, "-m", "llmstab.checkers.cli.main", "check", "--no-simulate", path],
                         capture_output=True, text=True, timeout=120)
    lines = run.stderr.strip().splitlines()
    assert run.returncode == 2 and len(lines) == 1 and "alias" in lines[0], run.stderr[-500:]


def test_duplicate_keys_are_rejected_with_their_line(tmp_path, capsys):
    text = VLLM.read_text().replace("rate: 12", "rate: 12\n      rate: 30")
    _refused(capsys, ["check", "--no-simulate", _write(tmp_path, text)], "in.yaml", "duplicate key 'rate' at line 11")


def test_duplicate_keys_in_json_are_rejected(tmp_path, capsys):
    text = json.dumps(_engine_doc()).replace('"token_budget": 512', '"token_budget": 512, "token_budget": 64')
    _refused(capsys, ["check", "--no-simulate", _write(tmp_path, text, "in.json")], "in.json",
             "duplicate key 'token_budget'")


@pytest.mark.parametrize("path, value, field, words", [
    ("workload.classes.0.rate", "1/0", "workload.classes[0].rate", "must be a number, got '1/0'"),
    ("workload.classes.0.rate", "1e99999999", "in.yaml", "too large for a float"),
    ("engine.batch_time.a", "1e99999999", "in.yaml", "too large for a float"),
    ("workload.classes.0.rate", 1e300, "workload.classes[0].rate", "requests/s lies outside"),
    ("engine.batch_time.c", float("inf"), "engine.batch_time.c", "too large"),
    ("engine.batch_time.c", "1e400", "in.yaml", "'1e400' at line 5 is too large for a float"),
    ("engine.token_budget", 10**9, "engine.token_budget", "at most 1,048,576"),
    ("engine.token_budget", 1e12, "engine.token_budget", "at most 1,048,576"),
    ("engine.token_budget", 10**4000, "engine.token_budget", "at most"),
    ("workload.classes.0.prompt.mean", 10**12, "workload.classes[0].prompt.mean", "at most 10,000,000"),
    ("workload.classes.0.decode.mean", 1e9, "workload.classes[0].decode.mean", "between 1 and 10,000,000"),
    ("workload.classes.0.name", ["x"] * 10**5, "workload.classes[0].name", "non-empty string"),
    ("engine.batch_time.kind", {"a": 1}, "engine.batch_time.kind", "unknown batch-time kind"),
])
def test_extreme_values_are_refused_naming_the_field(tmp_path, capsys, path, value, field, words):
    _refused(capsys, ["check", "--no-simulate", _write(tmp_path, _engine_doc(**{path: value}))], field, words)
    assert len(capsys.readouterr().err) < 300


@pytest.mark.parametrize("c, words", [(1e-320, "between 1e-12 and 1e+12"), (1e-9, "outside [1e-06, 1e+09] ms")])
def test_a_piecewise_linear_time_that_underflows_is_refused(tmp_path, capsys, c, words):
    doc = _engine_doc(**{"engine.batch_time": {"kind": "piecewise_linear", "c": c, "a": c, "b0": 64}})
    _refused(capsys, ["check", "--no-simulate", _write(tmp_path, doc)], "engine.batch_time.c", words)


def test_a_number_written_as_1_0e9_is_a_number(tmp_path, capsys):
    # YAML 1.1 reads 1.0e3 as text; the loader reads it as the number a person meant
    text = VLLM.read_text().replace("mean: 129", "mean: 1.0e3")
    code, err = _run(capsys, "check", "--no-simulate", "--json", _write(tmp_path, text))
    assert code == 0, err


def test_too_many_classes_and_too_large_a_file_are_refused(tmp_path, capsys):
    doc = _engine_doc()
    doc["workload"]["classes"] = [dict(doc["workload"]["classes"][0], name=f"c{i}") for i in range(2000)]
    _refused(capsys, ["check", "--no-simulate", _write(tmp_path, doc)], "workload.classes", "2,000 classes exceed")
    big = tmp_path / "big.yaml"
    big.write_text(VLLM.read_text() + "#" * (17 * 2**20))
    _refused(capsys, ["check", str(big)], "big.yaml", "exceeds the limit")


def test_a_one_million_token_budget_where_every_batch_ties_is_answered(tmp_path, capsys):
    # piecewise linear with c = a b0: every batch of at least b0 tokens is equally efficient (27 minutes before)
    doc = _engine_doc(**{"engine.batch_time": {"kind": "piecewise_linear", "c": 8, "a": 2, "b0": 4},
                         "engine.token_budget": 10**6, "policy": "sarathi"})
    code, err = _run(capsys, "check", "--no-simulate", "--json", _write(tmp_path, doc))
    assert code == 0, err


@pytest.mark.parametrize("command, example, says", [
    ("simulate", "network_lu_kumar.yaml", "this is a network file"),
    ("derive", "network_lu_kumar.yaml", "this is a network file"),
    ("region", "network_lu_kumar.yaml", "this is a network file"),
    ("fluid", "pointC_inside.yaml", "this is a single-engine file"),
])
def test_a_file_of_the_other_type_is_named(capsys, command, example, says):
    _refused(capsys, [command, str(EXAMPLES / example)], example, says)


def test_fit_refuses_a_million_row_profile_at_the_door(tmp_path, capsys):
    path = tmp_path / "huge.csv"
    with open(path, "w") as handle:
        handle.write("tokens,time_ms\n")
        handle.writelines(f"{i + 1},{1 + i / 100:.2f}\n" for i in range(60_000))
    _refused(capsys, ["fit", str(path), "--json"], "huge.csv", "60,000 rows exceed")


def test_simulate_replays_a_one_request_trace_without_a_horizon(tmp_path, capsys):
    trace = tmp_path / "one.csv"
    trace.write_text("arrival_time,prompt_tokens,decode_tokens\n0.5,100,20\n")
    with _guard(60):
        code = main(["simulate", str(VLLM), "--trace", str(trace), "--json"])
    out = json.loads(capsys.readouterr().out)
    assert code == 0 and out["requests"] == 1 and out["finished"] == 1


def test_fit_on_a_vidur_csv_without_format_answers_in_one_short_line(shared_data, capsys):
    # it used to print a 1,711-character line; now the format is detected and the missing option named
    code, err = _run(capsys, "fit", str(shared_data / "gpu_profiles/vidur/h100/Llama-2-7b-hf_mlp.csv"), "--json")
    assert code == 2 and len(err) == 1 and len(err[0]) < 200 and "--layers" in err[0], err
