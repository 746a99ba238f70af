"""The result of ``llmstab check``: capacity, load, two verdicts and their evidence.

:meth:`CheckReport.to_json` is what ``llmstab check --json`` prints (``load_verdict``,
``policy_verdict``, ``capacity``, ``load``, ``evidence``; the README documents it);
:meth:`CheckReport.to_text` is the same content for a person.

Examples
--------
>>> from llmstab.checkers.verdict import Evidence, Verdict
>>> r = CheckReport("demo", Verdict("stable", [Evidence("theorem", "T")]),
...                 Verdict("inconclusive"), {"tokens_per_s": 10.0}, {"tokens_per_s": 5.0})
>>> sorted(r.to_json())
['capacity', 'evidence', 'load', 'load_verdict', 'policy_verdict', 'subject']
>>> print(r.to_text())
llmstab check: demo
  load     : 5 tokens/s
  load verdict: STABLE
    - [theorem] T
  policy verdict: INCONCLUSIVE
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .verdict import Verdict, jsonable

__all__ = ["CheckReport"]


@dataclass(frozen=True)
class CheckReport:
    """Two verdicts (load, policy) with the capacity and load they rest on."""

    subject: str
    load_verdict: Verdict
    policy_verdict: Verdict
    capacity: dict
    load: dict
    extra: dict = field(default_factory=dict)

    def to_json(self) -> dict:
        """One JSON-ready object: the output of ``llmstab check --json``."""
        evidence = [{"about": "load", **e.to_json()} for e in self.load_verdict.evidence]
        evidence += [{"about": "policy", **e.to_json()} for e in self.policy_verdict.evidence]
        return {
            "subject": self.subject,
            "load_verdict": self.load_verdict.verdict,
            "policy_verdict": self.policy_verdict.verdict,
            "capacity": jsonable(self.capacity),
            "load": jsonable(self.load),
            "evidence": evidence,
            **jsonable(self.extra),
        }

    def to_text(self) -> str:
        """The report for a person."""
        cap, load = self.capacity, self.load
        lines = [f"llmstab check: {self.subject}"]
        if "tokens_per_ms" in cap:
            lines.append(
                f"  capacity : {float(cap['tokens_per_ms']):.4g} tokens/ms = {float(cap['tokens_per_s']):.6g} tokens/s"
                + (f" (exact {cap['exact_tokens_per_ms']})" if "exact_tokens_per_ms" in cap else "")
                + (f" = {_per_s(cap['requests_per_s'], 'request')} for this mix" if "requests_per_s" in cap else ""))
        if "tokens_per_s" in load:
            lines.append(
                f"  load     : {float(load['tokens_per_s']):.6g} tokens/s"
                + (f" ({_per_s(load['requests_per_s'], 'request')})" if "requests_per_s" in load else "")
                + (f" = {float(load['utilisation']):.1%} of capacity" if "utilisation" in load else ""))
        lines += self.verdict_lines()
        return "\n".join(lines)

    def verdict_lines(self) -> list[str]:
        """Both verdicts with their evidence, then the simulation seed when a simulation ran."""
        lines = []
        for title, verdict in (("load", self.load_verdict), ("policy", self.policy_verdict)):
            lines.append(f"  {title} verdict: {verdict.verdict.upper()}")
            lines += [f"    - [{e.kind}] {e.summary}" for e in verdict.evidence]
        simulated = any(e.kind == "simulation" for v in (self.load_verdict, self.policy_verdict) for e in v.evidence)
        if simulated and "seed" in self.extra:
            lines.append(f"  simulations seeded with {self.extra['seed']} (llmstab check --seed)")
        return lines


def _per_s(value: object, unit: str) -> str:
    """A rate to 4 significant figures with its unit, singular when it reads 1.

    >>> _per_s(1, "request"), _per_s(2.5, "request"), _per_s(0.99999, "request")
    ('1 request/s', '2.5 requests/s', '1 request/s')
    """
    text = f"{float(value):.4g}"
    return f"{text} {unit}/s" if text == "1" else f"{text} {unit}s/s"
