"""How fast hostile and extreme inputs are answered (issue: each in under 10 s, exit 2 or a verdict).

For each case an input file is written to a temporary folder and ``llmstab check
--no-simulate FILE`` runs as a separate process (plain ``llmstab check FILE``, simulation
included, for the cases that used to simulate for minutes: issue 10); the script prints its wall time,
CPU time (what it costs on an idle machine), exit status and first line of standard error, next to the import floor (the
same command on a good file) that every run pays. It then times the exact
capacity search in-process on a million tied batch sizes (piecewise linear with
``c = a b0``, and a tiled model whose every tile end ties).

Run: ``python benchmarks/bench_hostile_input.py``.
"""

from __future__ import annotations

import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import sympy
import yaml

from llmstab.fluid_models.batch_time import PiecewiseLinear, Tiled
from llmstab.theory.capacity import b, engine_capacity

ROOT = Path(__file__).resolve().parent.parent
GOOD = (ROOT / "examples" / "codellama34b_a100_vllm.yaml").read_text()
BOMB = "l0: &l0 [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]\n" + "".join(
    f"l{i}: &l{i} [" + ", ".join([f"*l{i - 1}"] * 10) + "]\n" for i in range(1, 9))
TIES = yaml.safe_dump(dict(yaml.safe_load(GOOD), policy="sarathi", engine={
    "batch_time": {"kind": "piecewise_linear", "c": 8, "a": 2, "b0": 4}, "token_budget": 10**6}))

CASES = {
    "good file (import floor)": GOOD,
    "alias bomb in rate": BOMB + GOOD.replace("rate: 12", "rate: *l8"),
    "alias bomb in a class name": BOMB + GOOD.replace("name: chat", "name: *l8"),
    "duplicate key": GOOD.replace("rate: 12", "rate: 12\n      rate: 30"),
    'rate: "1/0"': GOOD.replace("rate: 12", 'rate: "1/0"'),
    "c: 1e400": GOOD.replace("c: 11.28", "c: 1e400"),
    "token_budget: 1e12": GOOD.replace("token_budget: 512", "token_budget: 1e12"),
    "prompt of 1e12 tokens": GOOD.replace("mean: 129", "mean: 1000000000000"),
    "2000 classes": yaml.safe_dump(dict(yaml.safe_load(GOOD), workload={"classes": [
        dict(yaml.safe_load(GOOD)["workload"]["classes"][0], name=f"c{i}") for i in range(2000)]})),
    "a million tied batch sizes": TIES,
}

#: Issue 10: inputs whose simulations used to run for minutes (now bounded by the check's work budget).
SIMULATED = {
    "b_max 1000064 (simulated)": GOOD.replace("token_budget: 512", "token_budget: 1000064"),
    "prompts 100000, 0.001/s (sim.)": GOOD.replace("mean: 129", "mean: 100000").replace("rate: 12 ", "rate: 0.001 "),
    "long_prompts: reject (sim.)": GOOD.replace("token_budget: 512", "token_budget: 128").replace(
        "policy: vllm", "policy: {name: vllm, long_prompts: reject}").replace("mean: 129", "mean: 290").replace(
        "rate: 12 ", "rate: 0.1 "),
}


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _time_cli(text: str, folder: Path, *options: str) -> tuple[float, float, int, str]:
    """Wall and CPU seconds of ``llmstab check OPTIONS`` on ``text``, its exit status and first error line."""
    path = folder / "input.yaml"
    path.write_text(text)
    start, cpu = time.perf_counter(), _children_cpu()
    run = subprocess.run([sys.executable, "-m", "llmstab.checkers.cli.main", "check", *options, str(path)],
                         capture_output=True, text=True, timeout=600)
    line = (run.stderr.strip().splitlines() or [""])[0][:90]
    return time.perf_counter() - start, _children_cpu() - cpu, run.returncode, line


def main() -> None:
    with tempfile.TemporaryDirectory() as folder:
        for name, text, options in [*((n, t, ("--no-simulate",)) for n, t in CASES.items()),
                                    *((n, t, ()) for n, t in SIMULATED.items())]:
            seconds, cpu, code, line = _time_cli(text, Path(folder), *options)
            print(f"{name:30} {seconds:6.2f} s wall {cpu:6.2f} s CPU  exit {code}  {line}")
    for name, model, budget in [
        ("piecewise linear, all tie", PiecewiseLinear(8, 2, 4), 10**6),
        ("tiled b_col 3, tile ends tie", Tiled(t_lin=sympy.Rational(1, 3), b_col=3, t_nl=sympy.Rational(1, 7), c=0),
         2**20),
    ]:
        start = time.perf_counter()
        cap = engine_capacity(model.expression(b), budget)
        print(f"engine_capacity, {name}, b_max {budget}: {time.perf_counter() - start:.2f} s, "
              f"{cap.candidates_checked} exact comparisons, best batch {cap.best_batch}")


if __name__ == "__main__":
    main()
