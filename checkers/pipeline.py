"""The check pipeline: one ordered chain of steps decides a single engine; networks go to the network check.

Modelled on cvxpy's reduction chain. A :class:`Step` declares *when* it
applies (:meth:`Step.applies`, a question about the :class:`CheckContext`),
*where* it runs (its ``order``: the chain runs steps by increasing ``order``)
and whether it *simulates* (a simulating step never runs when the check is
asked not to simulate: the pipeline skips it without asking). A step reads
what earlier steps decided (``ctx.load_verdict``, ``ctx.policy_verdict``,
``ctx.capacity``, ...) and replaces or extends it; every
:class:`~llmstab.checkers.verdict.Evidence` item it adds is stamped with the
step's ``name``, so a report says which step found what. Expensive results
that several steps need (the exact capacity, the work-conservation scan, the
capacity region, the certificate of a load) are computed once per check
through :meth:`CheckContext.memo`.

The standard steps (:data:`llmstab.checkers.engine_steps.ENGINE_STEPS`)::

    100 capacity            exact capacity max_b b/t_b and the load summary
    200 theorem-2           Li-Dai-Peng Theorem 2 load and policy verdicts (no k_max)
    300 region              k_max: the load against the capacity region, certified exactly
    310 region-policy       k_max: the policy simulated strictly inside the region     (simulates)
    400 tiling              tiled batch time: optimal tiling, Bari-Hegde-de Veciana Theorems 1-2
    305 long-prompts        long_prompts: reject and prompts longer than b_max: the queue blocks
    800 settle-load         an undecided load settled by simulation                       (simulates)
    900 empirical-capacity  a policy that is not maximally stable: where it diverges     (simulates)
    990 consistency         a load seen to diverge inside capacity refutes maximal stability
    995 long-prompts-note   long_prompts: split and prompts longer than b_max: both verdicts say so

Every simulating step charges one work budget per check
(:mod:`llmstab.checkers.simulation_budget`, memo key ``simulation-budget``).

How to add a step
-----------------
1. Subclass :class:`Step` (in its own module when it is more than a few lines);
   set ``name`` (unique, shown in reports), ``order`` (between the steps it
   must follow and precede; leave gaps: a memory certificate fits at 500,
   cluster steps at 600-700) and ``simulates`` (``True`` if it runs a simulator).
2. Implement ``applies(ctx)`` (cheap: no heavy imports, no solving) and
   ``run(ctx)`` (import what it needs inside, so a check that skips the step
   never pays for its imports). Put new evidence in ``ctx.load_verdict`` /
   ``ctx.policy_verdict`` (replace the verdict when the step decides it),
   numbers for the report in ``ctx.capacity``, ``ctx.load`` or ``ctx.extra``,
   and share anything expensive through ``ctx.memo(key, compute)``.
3. Add an instance to :data:`llmstab.checkers.engine_steps.ENGINE_STEPS`, and
   test it through :func:`check_engine` (a report's ``steps`` lists the steps
   that ran).

Examples
--------
>>> from llmstab.checkers.spec import load_engine_spec
>>> report = check_engine(load_engine_spec("examples/codellama34b_a100_sarathi.yaml"))
>>> report.load_verdict.verdict, report.policy_verdict.verdict
('stable', 'maximally-stable')
>>> report.extra["steps"]
['capacity', 'theorem-2']
>>> sorted({e.step for e in report.load_verdict.evidence})
['theorem-2']
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, ClassVar, Hashable, Iterable, Mapping, TypeVar

from .report import CheckReport
from .spec import EngineSpec
from .verdict import Verdict

if TYPE_CHECKING:
    from llmstab.fluid_models.region import CapacityRegion
    from llmstab.theory.capacity import EngineCapacity

    from .region_check import LoadCertificate
    from .work_conservation import WorkConservationResult

__all__ = ["Step", "CheckContext", "run_steps", "check_engine", "check_document", "check_source", "tag_evidence"]

T = TypeVar("T")


class Step:
    """One step of the chain: declares when it applies, where it runs, whether it simulates."""

    name: ClassVar[str] = ""
    order: ClassVar[int] = 0
    simulates: ClassVar[bool] = False

    def applies(self, ctx: "CheckContext") -> bool:
        """Whether this step has something to do for this input (default: always)."""
        return True

    def run(self, ctx: "CheckContext") -> None:
        """Add this step's verdicts, evidence and numbers to ``ctx``."""
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"<step {self.order} {self.name}>"


@dataclass
class CheckContext:
    """What the steps share: the input, the options, the verdicts so far and a memo of computed results."""

    spec: EngineSpec
    simulate: bool = True
    seed: int = 0
    subject: str = ""
    load_verdict: Verdict = field(default_factory=lambda: Verdict("inconclusive"))
    policy_verdict: Verdict = field(default_factory=lambda: Verdict("inconclusive"))
    capacity: dict = field(default_factory=dict)
    load: dict = field(default_factory=dict)
    extra: dict = field(default_factory=dict)
    steps_run: list[str] = field(default_factory=list)
    _memo: dict = field(default_factory=dict, repr=False)

    def memo(self, key: Hashable, compute: Callable[[], T]) -> T:
        """``compute()`` the first time ``key`` is asked for in this check, the stored result afterwards."""
        if key not in self._memo:
            self._memo[key] = compute()
        return self._memo[key]

    def stored(self, key: Hashable) -> Any:
        """What :meth:`memo` stored under ``key`` in this check, or ``None`` if nothing was computed for it."""
        return self._memo.get(key)

    @property
    def exact_capacity(self) -> "EngineCapacity":
        """The engine's exact scalar capacity ``max_b b/t_b`` (without the request limit)."""
        from .single_engine import capacity_of

        return self.memo("capacity", lambda: capacity_of(self.spec.engine))

    @property
    def work(self) -> "WorkConservationResult":
        """The work-conservation scan of the policy's kernel."""
        from .work_conservation import check_work_conservation

        return self.memo("work-conservation", lambda: check_work_conservation(
            self.spec.policy, seed=self.seed, engine=self.spec.engine))

    @property
    def region(self) -> "CapacityRegion":
        """The engine's (prefill, decode) capacity region (engines with ``k_max``)."""
        from .region_check import region_for

        return self.memo("region", lambda: region_for(self.spec.engine, self.spec.workload))

    def certificate(self, load: Iterable[Any]) -> "LoadCertificate":
        """The exact certificate of ``load`` (tokens/ms) against :attr:`region`, computed once per load."""
        from .region_check import certifier

        return self.memo("certifier", lambda: certifier(self.region))(load)

    def report(self) -> CheckReport:
        """The verdicts and numbers gathered so far, as a report."""
        return CheckReport(self.subject, self.load_verdict, self.policy_verdict, self.capacity, self.load,
                           {**self.extra, "simulate": self.simulate, "seed": self.seed, "steps": list(self.steps_run)})


def tag_evidence(verdict: Verdict, step: str) -> Verdict:
    """``verdict`` with every evidence item that names no step stamped with ``step``.

    >>> from llmstab.checkers.verdict import Evidence
    >>> [e.step for e in tag_evidence(Verdict("stable", [Evidence("note", "n")]), "demo").evidence]
    ['demo']
    """
    return Verdict(verdict.verdict, [e if e.step else replace(e, step=step) for e in verdict.evidence])


def run_steps(ctx: CheckContext, steps: Iterable[Step] | None = None) -> CheckReport:
    """Run ``steps`` (default: the standard chain) on ``ctx`` in their declared order; return the report.

    A step runs when ``applies(ctx)`` holds, except that a step that simulates
    is skipped (not even asked) when ``ctx.simulate`` is false.
    """
    if steps is None:
        from .engine_steps import ENGINE_STEPS

        steps = ENGINE_STEPS
    for step in sorted(steps, key=lambda s: s.order):
        if (step.simulates and not ctx.simulate) or not step.applies(ctx):
            continue
        step.run(ctx)
        ctx.load_verdict = tag_evidence(ctx.load_verdict, step.name)
        ctx.policy_verdict = tag_evidence(ctx.policy_verdict, step.name)
        ctx.steps_run.append(step.name)
    return ctx.report()


def check_engine(spec: EngineSpec, *, simulate: bool = True, seed: int = 0) -> CheckReport:
    """The capacity, load and both verdicts, with evidence, for a single-engine input."""
    return run_steps(CheckContext(spec, simulate=simulate, seed=seed))


def check_document(document: Mapping, source: str = "<document>", base_dir: Path = Path("."), *,
                   simulate: bool = True, seed: int = 0) -> CheckReport:
    """Check a parsed document: a network when it has ``engines:``, else one engine.

    Relative ``file:`` paths inside it resolve against ``base_dir``.
    """
    if isinstance(document, Mapping) and "engines" in document:
        from .network_check import check_network_document

        report = check_network_document(document, source, base_dir, simulate=simulate, seed=seed)
        return replace(report, load_verdict=tag_evidence(report.load_verdict, "network"),
                       policy_verdict=tag_evidence(report.policy_verdict, "network"),
                       extra={**report.extra, "simulate": simulate, "seed": seed, "steps": ["network"]})
    if isinstance(document, Mapping) and "cluster" in document:
        from .cluster_check import check_cluster_document

        return check_cluster_document(document, source, base_dir, simulate=simulate, seed=seed)
    from .spec import engine_spec_from_document

    return check_engine(engine_spec_from_document(document, source, base_dir), simulate=simulate, seed=seed)


def check_source(source: str | Path | Mapping, *, simulate: bool = True, seed: int = 0) -> CheckReport:
    """Check a file (YAML or JSON; paths inside it relative to it) or an already-parsed document.

    A document has no directory of its own: relative paths inside it resolve
    against the current directory.
    """
    if isinstance(source, Mapping):
        return check_document(source, "<document>", Path("."), simulate=simulate, seed=seed)
    from .spec import load_document

    path = Path(source)
    return check_document(load_document(path), str(path), path.parent, simulate=simulate, seed=seed)
