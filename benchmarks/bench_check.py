"""Whole-process wall time of ``llmstab check`` on the bundled examples, against an import-only baseline.

The baseline is a process that only imports the libraries the toolkit rests on
(numpy, sympy, numba, cvxpy, yaml). Each round runs the baseline once and every
example once, so baseline and checks see the same machine load; the first round
is a warm-up (numba's on-disk caches, the page cache) and is not counted. The
table gives each example's median over the counted rounds, the baseline's
median, their ratio and the target it is held to (on wall time; the CPU-time
ratio, user + system time of the child process, is printed beside it because it
is far less sensitive to other load on the machine):

* a single engine without ``k_max``: at most 0.6 x the baseline;
* a network whose routing is a DAG (sequences, forks, joins): at most 1.0 x;
* anything else (``k_max`` regions, cyclic networks, clusters): reported, no target.

The checks keep their work-conservation results in a store private to the
benchmark (``LLMSTAB_CACHE_DIR``, see ``checkers/certificate_cache.py``), which the
warm-up round fills: the figures are those of a check of a policy already
checked on an engine of that budget (at any load). ``--cold`` gives every run
an empty store instead, so every check searches again (numba's own
compiled-code cache stays warm in both).

    python benchmarks/bench_check.py --runs 7
    python benchmarks/bench_check.py --runs 7 --cold
    python benchmarks/bench_check.py --runs 3 examples/network_lu_kumar.yaml

Exit status 0 whatever the figures (a benchmark, not a test).
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
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
    if "cluster" in doc:
        return "cluster"
    if "engines" in doc:
        import llmstab

        return "DAG network" if llmstab.load(doc).is_feedforward else "cyclic network"
    return "engine with k_max" if doc["engine"].get("max_batch_requests") else "engine"


def timed(command: list[str], store: str | None = None) -> tuple[float, float]:
    """Wall-clock and CPU (user + system) seconds of one run of ``command`` (which must succeed), with the
    store of work-conservation results ``store`` (None: a fresh empty one)."""
    env = {**os.environ, "LLMSTAB_CACHE_DIR": store or tempfile.mkdtemp(prefix="bench-check-")}
    before, start = resource.getrusage(resource.RUSAGE_CHILDREN), time.perf_counter()
    subprocess.run(command, check=True, capture_output=True, cwd=ROOT, env=env)
    wall, after = time.perf_counter() - start, resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def measure(examples: list[Path], runs: int, cold: bool) -> tuple[list, dict[Path, list]]:
    """``runs`` counted rounds (after one warm-up round) of the baseline and every example: (wall, cpu) pairs;
    ``cold``: every check starts with an empty store of work-conservation results."""
    base: list = []
    times: dict[Path, list] = {e: [] for e in examples}
    store = None if cold else tempfile.mkdtemp(prefix="bench-check-")
    for round_ in range(runs + 1):
        b = timed(BASELINE)
        t = {e: timed([sys.executable, "-m", "llmstab.checkers.cli.main", "check", str(e)], store) for e in examples}
        if round_:
            base.append(b)
            for e in examples:
                times[e].append(t[e])
    return base, times


def medians(pairs: list) -> tuple[float, float]:
    """Median wall and median CPU seconds."""
    return statistics.median(w for w, _ in pairs), statistics.median(c for _, c in pairs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7, help="counted rounds (default 7)")
    parser.add_argument("--cold", action="store_true",
                        help="an empty store of work-conservation results for every check")
    parser.add_argument("examples", nargs="*", help="input files (default: a single-engine and network selection)")
    args = parser.parse_args()
    examples = [Path(e).resolve() for e in args.examples] or [ROOT / "examples" / e for e in DEFAULT_EXAMPLES]
    base, times = measure(examples, args.runs, args.cold)
    wall0, cpu0 = medians(base)
    print(f"baseline (python -c 'import numpy, sympy, numba, cvxpy, yaml'): median {wall0:.3f} s wall, "
          f"{cpu0:.3f} s CPU over {args.runs} rounds; store of work-conservation results: "
          f"{'empty for every check' if args.cold else 'filled by the warm-up round'}")
    print(f"{'example':42s} {'kind':18s} {'wall s':>7s} {'ratio':>6s} {'CPU s':>6s} {'ratio':>6s}  target (wall)")
    for example in examples:
        k, (wall, cpu) = kind(example), medians(times[example])
        target = TARGETS.get(k)
        verdict = "" if target is None else f"<= {target}" + (" ok" if wall / wall0 <= target else " MISSED")
        print(f"{example.name:42s} {k:18s} {wall:7.3f} {wall / wall0:6.2f} {cpu:6.3f} {cpu / cpu0:6.2f}  {verdict}")


if __name__ == "__main__":
    main()
