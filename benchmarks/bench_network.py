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

Times are medians of ``--runs``.

    python benchmarks/bench_network.py --runs 5
"""

from __future__ import annotations

import argparse
import random
import statistics
import time

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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()

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
