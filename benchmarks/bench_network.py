"""Speed of the network checker: a 100-engine, 1000-class DAG verdict and a 10-buffer Lyapunov LP.

* **DAG verdict.** A random agent fleet: 100 engines in 10 layers (8 hardware
  profiles, Sarathi-Serve, Orca or FCFS), 1000 classes whose routes go through
  2-5 engines in increasing layer order, a third of them forking to two engines
  and joining at a third. Rates are scaled so the bottleneck is at load 0.8. Timed:
  building and validating the :class:`Network` from its document (the baseline),
  and the whole verdict (loads, capacities, work-conservation checks, the DAG
  theorem). The first verdict in a process pays for the caches (per hardware
  profile capacity, per policy work-conservation search); later ones do not.
* **Lyapunov LP.** A re-entrant line of 5 steps on 2 engines (10 buffers, 1023
  faces) under a static priority: the LP over all faces and its exact
  re-verification. Baseline: the same search on the 8-buffer Rybko-Stolyar
  network (255 faces), to show how the face enumeration scales.

* **Large networks, whole process** (``--large``): ``llmstab check --no-simulate
  --json`` as a fresh process on the generated 1000-engine fork DAG
  (``examples/generate_large_networks.py``; as YAML and as JSON), the 40-buffer LBFS re-entrant line
  and its unstable variant: wall time and peak memory (the child's max RSS),
  next to a baseline process that only imports numpy, sympy, numba, networkx
  and yaml.
* **Network simulator** (``--simulator``): the compiled network simulator on
  the 4-engine fork-join workflow over the check's 4000 s horizon, cost per
  batch against the compiled single-engine simulator running the planner
  engine alone (baseline, same run).

Times are medians of ``--runs``.

    python benchmarks/bench_network.py --runs 5
    python benchmarks/bench_network.py --simulator --runs 5   # the network simulator alone
    python benchmarks/bench_network.py --large --runs 3
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import sympy

from llmstab.checkers.lyapunov import find_linear_lyapunov
from llmstab.checkers.network_check import check_network
from llmstab.checkers.network_spec import network_from_document
from llmstab.fluid_models.networks.fluid import FluidNetwork
from llmstab.fluid_models.networks.examples import rybko_stolyar, unit_engine
from llmstab.fluid_models.distributions import Deterministic
from llmstab.fluid_models.networks.network import Network, NetworkClass, Step


def dag_document(n_engines: int = 100, n_classes: int = 1000, seed: int = 0) -> dict:
    """A random DAG fleet as a network document (see the module docstring)."""
    rng = random.Random(seed)
    profiles = [{"kind": "staircase", "c": round(8 + 2 * i, 2), "a": round(30 + 3 * i, 2), "b0": 128} for i in range(8)]
    layers = 10
    engines = {}
    for i in range(n_engines):
        engines[f"e{i:03d}"] = {"batch_time": profiles[i % 8], "token_budget": 512,
                                "policy": ["sarathi", "orca", "fcfs"][i % 3]}
    by_layer = [[f"e{i:03d}" for i in range(n_engines) if i % layers == layer] for layer in range(layers)]
    classes = []
    dist = lambda m: {"dist": "geometric", "mean": m}  # noqa: E731
    for c in range(n_classes):
        hops = sorted(rng.sample(range(layers), rng.randint(2, 5)))
        route = [{"id": f"c{c}s{j}", "engine": rng.choice(by_layer[layer]), "prompt": dist(rng.randint(20, 400)),
                  "decode": dist(rng.randint(10, 200))} for j, layer in enumerate(hops)]
        if c % 3 == 0 and len(hops) >= 3:  # fork after step 0 to steps 1 and 2, join at step 3 (if any)
            route[1]["after"] = [route[0]["id"]]
            route[2]["after"] = [route[0]["id"]]
            if len(route) > 3:
                route[3]["after"] = [route[1]["id"], route[2]["id"]]
        classes.append({"name": f"class{c}", "rate": 1, "route": route})
    doc = {"engines": engines, "classes": classes}
    net = network_from_document(doc)
    top = max(net.utilisation().values())
    for cl in classes:
        cl["rate"] = str(sympy.Rational(4, 5) / top)
    return doc


def reentrant_line(steps: int = 5) -> Network:
    """One class visiting e1, e2, e1, ... for ``steps`` steps; each engine serves its later steps first."""
    engines_of = ["e1" if i % 2 == 0 else "e2" for i in range(steps)]
    sizes = [2, 30, 2, 30, 4][:steps]
    route = tuple(Step(f"s{i + 1}", e, Deterministic(m), Deterministic(m)) for i, (e, m) in enumerate(zip(engines_of, sizes)))
    prio = {e: tuple(s.id for s in reversed(route) if s.engine == e) for e in ("e1", "e2")}
    engines = {e: unit_engine(e, 100, prio[e]) for e in ("e1", "e2")}
    return Network(engines, (NetworkClass("job", sympy.Rational(1, 2), route),))


def median_time(fn, runs: int) -> tuple[float, object]:
    times, out = [], None
    for _ in range(runs):
        start = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), out


ROOT = Path(__file__).resolve().parent.parent
IMPORT_FLOOR = [sys.executable, "-c", "import numpy, sympy, numba, networkx, yaml"]


def process_cost(command: list[str]) -> tuple[float, float, str]:
    """Wall seconds and peak memory (MiB, the child's max RSS) of one process; its stdout."""
    start = time.perf_counter()
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, cwd=ROOT)
    out = proc.stdout.read().decode()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise RuntimeError(f"{command} exited with {proc.returncode}")
    return time.perf_counter() - start, usage.ru_maxrss / 1024, out


def large_networks(runs: int) -> None:
    """Whole-process ``llmstab check`` on the large examples, next to the import floor."""
    import json

    folder = Path(tempfile.mkdtemp(prefix="llmstab-large-"))
    subprocess.run([sys.executable, str(ROOT / "examples" / "generate_large_networks.py"), str(folder)], check=True)
    floor = [process_cost(IMPORT_FLOOR) for _ in range(runs)]
    base = statistics.median(t for t, _, _ in floor)
    print(f"baseline (python + import numpy, sympy, numba, networkx, yaml): median {base:.2f} s, "
          f"{statistics.median(m for _, m, _ in floor):.0f} MiB; load average {os.getloadavg()[0]:.2f}")
    for name in ("network_dag_1000.yaml", "network_dag_1000.json", "network_reentrant_20_lbfs.yaml",
                 "network_reentrant_20_unstable.yaml"):
        command = [sys.executable, "-m", "llmstab.checkers.cli.main", "check", str(folder / name), "--no-simulate",
                   "--json"]
        costs = [process_cost(command) for _ in range(runs)]
        wall = statistics.median(t for t, _, _ in costs)
        verdict = json.loads(costs[-1][2])["load_verdict"]
        print(f"  {name:36s} {verdict:>12s}  median {wall:6.2f} s ({wall / base:5.2f} x baseline), "
              f"peak {max(m for _, m, _ in costs):5.0f} MiB")


def network_simulator(runs: int) -> None:
    """Cost per batch of the compiled network simulator, against the single-engine simulator in the same run."""
    from llmstab.fluid_models.networks.examples import fork_join
    from llmstab.fluid_models.networks.simulator import simulate_network
    from llmstab.fluid_models.simulation.simulator import simulate
    from llmstab.fluid_models.workload import RequestClass, Workload

    net, horizon = fork_join(rate=2, tool_tokens=40), 4000.0
    first = net.classes[0].steps[0]
    one = net.engines[first.engine]
    work = Workload((RequestClass("planner", net.classes[0].rate, first.prompt, first.decode),))
    simulate_network(net, 10.0)  # load the compiled loops from numba's cache
    simulate(one.engine, one.policy, work, horizon_s=10.0)
    t_net, sim = median_time(lambda: simulate_network(net, horizon, seed=1), runs)
    t_one, single = median_time(lambda: simulate(one.engine, one.policy, work, horizon_s=horizon, seed=1), runs)
    per_net, per_one = t_net / sum(sim.batches.values()), t_one / single.n_batches
    print(f"Network simulator: fork-join workflow, {len(net.engines)} engines, {horizon:.0f} s, "
          f"{sum(sim.batches.values())} batches: median {t_net:.3f} s, {per_net * 1e6:.2f} us per batch")
    print(f"  baseline (single-engine simulator, the planner engine alone, {single.n_batches} batches): median "
          f"{t_one:.3f} s, {per_one * 1e6:.2f} us per batch ({per_net / per_one:.2f} x baseline per batch)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--large", action="store_true", help="only the whole-process runs on the large examples")
    parser.add_argument("--simulator", action="store_true", help="only the network simulator")
    args = parser.parse_args()
    if args.large:
        large_networks(args.runs)
        return
    if args.simulator:
        network_simulator(args.runs)
        return

    doc = dag_document()
    start = time.perf_counter()
    report = check_network(network_from_document(doc), simulate=False)
    cold = time.perf_counter() - start
    build, net = median_time(lambda: network_from_document(doc), args.runs)
    warm, report = median_time(lambda: check_network(network_from_document(doc), simulate=False), args.runs)
    steps = sum(len(c.steps) for c in net.classes)
    print(f"DAG: {len(net.engines)} engines, {len(net.classes)} classes, {steps} steps; verdict "
          f"{report.load_verdict.verdict} / {report.policy_verdict.verdict}, bottleneck {net.bottleneck()} at "
          f"{float(max(net.utilisation().values())):.3f}")
    print(f"  baseline (load + validate the document): median {build:.3f} s")
    print(f"  verdict (load + validate + check):        median {warm:.3f} s  ({warm / build:.2f} x baseline); "
          f"first in process {cold:.3f} s")

    fn = FluidNetwork.from_network(reentrant_line())
    lp, cert = median_time(lambda: find_linear_lyapunov(fn), args.runs)
    small = FluidNetwork.from_network(rybko_stolyar(bad=False))
    base, small_cert = median_time(lambda: find_linear_lyapunov(small), args.runs)
    print(f"Lyapunov: 2 engines, {fn.size} buffers, {cert.faces} faces; verified {cert.verified}, "
          f"epsilon {float(cert.epsilon) if cert.epsilon else None}")
    print(f"  LP (build + solve) over all faces: {cert.lp_seconds:.3f} s, exact re-verification "
          f"{cert.verify_seconds:.3f} s (last run); search + verification median {lp:.3f} s")
    print(f"  baseline (the same search on the 8-buffer Rybko-Stolyar network, {small_cert.faces} faces): "
          f"median {base:.3f} s (10 buffers = {lp / base:.1f} x baseline)")


if __name__ == "__main__":
    main()
