"""The public API of llmstab: check, load, region, simulate, and predicates backed by their evidence.

Every function takes a *source*: the path of an input file (YAML or JSON; a
relative path inside it is relative to the file), an already-parsed document
(a dict; relative paths inside it are relative to the current directory), or,
where it makes sense, what :func:`load` returned.

The predicates answer yes or no, networkx / python-control style; each is
backed by a function that returns the evidence for the answer:

===========================  =====================================================
predicate                    evidence
===========================  =====================================================
:func:`is_work_conserving`   :func:`work_conservation_certificate` (states scanned, or a minimal counterexample)
:func:`is_stable`            :func:`load_verdict` (a :class:`~llmstab.checkers.verdict.Verdict`)
:func:`is_maximally_stable`  :func:`policy_verdict` (a :class:`~llmstab.checkers.verdict.Verdict`)
===========================  =====================================================

``is_stable`` and ``is_maximally_stable`` are true only when the verdict
says so; ``inconclusive`` is false. They run no simulation unless asked
(``simulate=True``), so a true answer rests on a theorem or an exactly checked
certificate.

Examples
--------
>>> import llmstab
>>> report = llmstab.check("examples/codellama34b_a100_sarathi.yaml", simulate=False)
>>> report.to_json()["load_verdict"], report.to_json()["policy_verdict"]
('stable', 'maximally-stable')
>>> llmstab.is_work_conserving("sarathi"), llmstab.is_work_conserving("vllm")
(True, False)
>>> llmstab.is_stable("examples/codellama34b_a100_overload.yaml")
False
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, Union

from llmstab.checkers.errors import InputError
from llmstab.checkers.pipeline import check_source
from llmstab.checkers.report import CheckReport
from llmstab.checkers.spec import EngineSpec, load_document
from llmstab.checkers.verdict import Verdict
from llmstab.fluid_models.policies import Policy

if TYPE_CHECKING:
    from llmstab.fluid_models.networks.network import Network
    from llmstab.checkers.work_conservation import WorkConservationResult
    from llmstab.fluid_models.networks.simulator import NetworkSimulation
    from llmstab.fluid_models.region import CapacityRegion
    from llmstab.fluid_models.simulation.simulator import SimulationResult

__all__ = ["check", "load", "region", "simulate", "is_work_conserving", "work_conservation_certificate",
           "is_stable", "load_verdict", "is_maximally_stable", "policy_verdict", "Source"]

#: What the functions accept: a file path, a parsed document, or what :func:`load` returned.
Source = Union[str, Path, Mapping, EngineSpec, "Network"]


def _is_network(value: object) -> bool:
    """Whether ``value`` is a :class:`~llmstab.fluid_models.networks.network.Network` (its module is not imported
    for the question: nothing is a Network before it is)."""
    module = sys.modules.get("llmstab.fluid_models.networks.network")
    return module is not None and isinstance(value, module.Network)


def check(source: str | Path | Mapping, *, simulate: bool = True, seed: int = 0) -> CheckReport:
    """Check one input: the capacity, the load and two verdicts, each with its evidence.

    Parameters
    ----------
    source
        A file path or an already-parsed document: one engine (``engine``,
        ``policy``, ``workload``) or a network (``engines``, ``classes``).
    simulate
        Let simulation settle what theory leaves undecided and measure a failing
        policy's empirical capacity (statistical evidence, labelled as such).
        ``False`` runs no simulation at all.
    seed
        Seed of every simulation the check runs; the report states it.

    Returns
    -------
    CheckReport
        ``report.to_json()`` is exactly what ``llmstab check --json`` prints;
        ``report.to_text()`` what ``llmstab check`` prints.

    Examples
    --------
    >>> r = check("examples/codellama34b_a100_vllm.yaml", simulate=False)
    >>> r.policy_verdict.verdict, [e.kind for e in r.policy_verdict.evidence]
    ('not-maximally-stable', ['counterexample', 'note', 'certificate'])
    """
    return check_source(source, simulate=simulate, seed=seed)


def load(source: Source) -> EngineSpec | Network:
    """Parse and validate an input: an :class:`~llmstab.checkers.spec.EngineSpec` or a network.

    Bad input raises :class:`~llmstab.fluid_models.errors.InputError` naming the field.

    Examples
    --------
    >>> spec = load("examples/codellama34b_a100_sarathi.yaml")
    >>> spec.engine.token_budget, spec.policy.name
    (512, 'sarathi')
    >>> sorted(load("examples/network_rybko_stolyar_bad.yaml").engines)
    ['e1', 'e2']
    >>> load({"engine": {}})
    Traceback (most recent call last):
    ...
    llmstab.fluid_models.errors.InputError: engine.batch_time: missing
    """
    if isinstance(source, EngineSpec) or _is_network(source):
        return source
    if isinstance(source, Mapping):
        document, name, base_dir = source, "<document>", Path(".")
    else:
        path = Path(source)
        document, name, base_dir = load_document(path), str(path), path.parent
    if "engines" in document:
        from llmstab.checkers.network_spec import network_from_document

        return network_from_document(document, name, base_dir)
    from llmstab.checkers.spec import engine_spec_from_document

    return engine_spec_from_document(document, name, base_dir)


def _engine_spec(source: Source, what: str) -> EngineSpec:
    spec = load(source)
    if not isinstance(spec, EngineSpec):
        raise InputError("engines", f"{what} takes one engine, not a network")
    return spec


def region(source: Source) -> "CapacityRegion":
    """The capacity region of an input's engine: the (prefill, decode) token rates some scheduler sustains.

    With ``k_max`` it is a polygon (Li-Dai-Peng Section 6); prompts are bounded
    by the workload's longest when its lengths are bounded.

    Examples
    --------
    >>> r = region("examples/pointC_inside.yaml")
    >>> [v.batch_type.label for v in r.vertices]
    ['0p+100d', '29p+99d', '128p+0d']
    """
    from llmstab.checkers.region_check import region_for

    spec = _engine_spec(source, "region")
    return region_for(spec.engine, spec.workload)


def simulate(source: Source, *, horizon_s: float | None = None, n_requests: int | None = None, seed: int = 0,
             arrivals: str = "poisson") -> "SimulationResult | NetworkSimulation":
    """Simulate an input: one engine with its policy's own kernel, or a network of engines.

    Without ``horizon_s`` (or ``n_requests``, one engine only) the run lasts as
    long as ``llmstab check``'s first simulation. The growth of the backlog is
    :func:`llmstab.checkers.growth.estimate_growth` of the result (one engine).

    Examples
    --------
    >>> run = simulate("examples/codellama34b_a100_sarathi.yaml", horizon_s=20, seed=3)
    >>> run.seed, run.end_time
    (3, 20.0)
    """
    spec = load(source)
    if _is_network(spec):
        from llmstab.checkers.network_check import default_horizon
        from llmstab.fluid_models.networks.simulator import simulate_network

        return simulate_network(spec, horizon_s or default_horizon(spec), seed=seed)
    from llmstab.checkers.simulation_check import first_horizon
    from llmstab.fluid_models.simulation.simulator import simulate as simulate_engine

    if horizon_s is None and n_requests is None:
        horizon_s = first_horizon(spec.engine, spec.workload)
    return simulate_engine(spec.engine, spec.policy, spec.workload, n_requests=n_requests, horizon_s=horizon_s,
                           seed=seed, arrivals=arrivals)


def work_conservation_certificate(policy: Policy | str | Mapping, **options: Any) -> "WorkConservationResult":
    """The evidence behind :func:`is_work_conserving`: the states scanned, or a minimal counterexample.

    ``policy`` is a policy object, a registered name or ``{name: ..., option: ...}``;
    ``options`` go to :func:`llmstab.checkers.work_conservation.check_work_conservation`.

    Examples
    --------
    >>> r = work_conservation_certificate("vllm", random_states=0)
    >>> r.work_conserving, r.counterexample
    (False, EngineState(prefill_left=(0, 1), decode_left=(1, 1)))
    """
    from llmstab.checkers.spec import parse_policy
    from llmstab.checkers.work_conservation import check_work_conservation

    return check_work_conservation(policy if isinstance(policy, Policy) else parse_policy(policy), **options)


def is_work_conserving(policy: Policy | str | Mapping, **options: Any) -> bool:
    """Whether ``policy`` fills every batch to ``min(b_max, demand)`` (Li-Dai-Peng eqs. 8-9) on every state scanned.

    >>> is_work_conserving("orca"), is_work_conserving("fastertransformer")
    (True, False)
    """
    return work_conservation_certificate(policy, **options).work_conserving


def load_verdict(source: str | Path | Mapping, *, simulate: bool = False, seed: int = 0) -> Verdict:
    """The evidence behind :func:`is_stable`: the load verdict of :func:`check`, with its evidence.

    >>> v = load_verdict("examples/codellama34b_a100_overload.yaml")
    >>> v.verdict, v.evidence[0].reference
    ('unstable', 'Li-Dai-Peng (arXiv 2504.07347) Theorem 2(a)')
    """
    return check(source, simulate=simulate, seed=seed).load_verdict


def is_stable(source: str | Path | Mapping, *, simulate: bool = False, seed: int = 0) -> bool:
    """Whether the input's load is stable under its scheduler (``inconclusive`` is ``False``).

    >>> is_stable("examples/codellama34b_a100_sarathi.yaml")
    True
    """
    return load_verdict(source, simulate=simulate, seed=seed).verdict == "stable"


def policy_verdict(source: str | Path | Mapping, *, simulate: bool = False, seed: int = 0) -> Verdict:
    """The evidence behind :func:`is_maximally_stable`: the policy verdict of :func:`check`.

    >>> v = policy_verdict("examples/codellama34b_a100_fastertransformer.yaml")
    >>> v.verdict, v.evidence[0].kind
    ('not-maximally-stable', 'counterexample')
    """
    return check(source, simulate=simulate, seed=seed).policy_verdict


def is_maximally_stable(source: str | Path | Mapping, *, simulate: bool = False, seed: int = 0) -> bool:
    """Whether the input's scheduler is stable at every load its hardware can carry (throughput-optimal).

    >>> is_maximally_stable("examples/codellama34b_a100_orca.yaml")
    True
    """
    return policy_verdict(source, simulate=simulate, seed=seed).verdict == "maximally-stable"
