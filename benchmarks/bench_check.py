"""Whole-process wall time of ``llmstab check`` on the bundled examples, against an import-only baseline.

The baseline is a process that only imports the libraries the toolkit rests on
(numpy, sympy, numba, cvxpy, yaml). Each round runs the baseline once and every
example once, so baseline and checks see the same machine load; the first round
is a warm-up (numba's on-disk caches, the page cache) and is not counted. The
table gives each example's median over the counted rounds, the baseline's
median, their ratio and the target it is held to:

* a single engine without ``k_max``: at most 0.6 x the baseline;
* a network whose routing is a DAG (sequences, forks, joins): at most 1.0 x;
* anything else (``k_max`` regions, cyclic networks, clusters): reported, no target.

    python benchmarks/bench_check.py --runs 7
    python benchmarks/bench_check.py --runs 3 examples/network_lu_kumar.yaml

Exit status 0 whatever the figures (a benchmark, not a test).
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
BASELINE = [sys.executable, "-c", "import numpy, sympy, numba, cvxpy, yaml"]
DEFAULT_EXAMPLES = ("codellama34b_a100_sarathi.yaml", "codellama34b_a100_orca.yaml", "codellama34b_a100_vllm.yaml",
                    "codellama34b_a100_fastertransformer.yaml", "codellama34b_a100_overload.yaml",
                    "pointC_inside.yaml", "network_fork_join.yaml", "network_fork_join_unstable.yaml",
                    "network_rybko_stolyar_bad.yaml")
TARGETS = {"engine": 0.6, "DAG network": 1.0}


def kind(example: Path) -> str:
    """``engine``, ``engine with k_max``, ``DAG network``, ``cyclic network`` or ``cluster``."""
    doc = yaml.safe_load(example.read_text())
    if "engines" in doc:
        import llmstab

        return "DAG network" if llmstab.load(doc).is_feedforward else "cyclic network"
    if "engine" not in doc:
        return "cluster"
    return "engine with k_max" if doc["engine"].get("max_batch_requests") else "engine"


def wall_time(command: list[str]) -> float:
    """Wall-clock seconds of one run of ``command`` (which must succeed)."""
    start = time.perf_counter()
    subprocess.run(command, check=True, capture_output=True, cwd=ROOT)
    return time.perf_counter() - start


def measure(examples: list[Path], runs: int) -> tuple[list[float], dict[Path, list[float]]]:
    """``runs`` counted rounds (after one warm-up round) of the baseline and every example."""
    base: list[float] = []
    times: dict[Path, list[float]] = {e: [] for e in examples}
    for round_ in range(runs + 1):
        b = wall_time(BASELINE)
        t = {e: wall_time([sys.executable, "-m", "llmstab.checkers.cli.main", "check", str(e)]) for e in examples}
        if round_:
            base.append(b)
            for e in examples:
                times[e].append(t[e])
    return base, times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7, help="counted rounds (default 7)")
    parser.add_argument("examples", nargs="*", help="input files (default: a single-engine and network selection)")
    args = parser.parse_args()
    examples = [Path(e).resolve() for e in args.examples] or [ROOT / "examples" / e for e in DEFAULT_EXAMPLES]
    base, times = measure(examples, args.runs)
    floor = statistics.median(base)
    print(f"baseline (python -c 'import numpy, sympy, numba, cvxpy, yaml'): median {floor:.3f} s "
          f"(min {min(base):.3f}, max {max(base):.3f}) over {args.runs} rounds")
    print(f"{'example':42s} {'kind':18s} {'median s':>8s} {'min s':>6s} {'max s':>6s} {'ratio':>6s} {'target':>7s}")
    for example in examples:
        k, t = kind(example), times[example]
        ratio = statistics.median(t) / floor
        target = TARGETS.get(k)
        verdict = "" if target is None else f"<= {target}" + (" ok" if ratio <= target else " MISSED")
        print(f"{example.name:42s} {k:18s} {statistics.median(t):8.3f} {min(t):6.3f} {max(t):6.3f} {ratio:6.2f} "
              f"{verdict:>7s}")


if __name__ == "__main__":
    main()
