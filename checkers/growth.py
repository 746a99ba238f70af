"""Is a simulated backlog growing? A growth-rate estimate with a confidence interval.

The backlog ``V(t)`` (unprocessed tokens) of a stable run fluctuates around a
finite level; that of an unstable run grows, in the fluid limit, at a constant
rate. Over the second half of the horizon (the first half is left to the
transient), the trajectory is cut into ``K`` equal windows and the backlog's
growth rate is estimated in each (its change across the window over the
window's length); their mean is the estimate and their standard error
(``K - 1`` degrees of freedom, Student t) gives the confidence interval. These
batch means of the growth rate are nearly independent for a diverging run,
whose backlog grows like a random walk with drift once the server is always
busy; for a bounded run they are negatively correlated and the interval errs
on the wide side.

A run is reported as ``diverging at r ± e tokens/s`` when the whole interval
lies above a small threshold (by default 1% of the offered token rate: growth
below that is not distinguishable from a slow transient at these horizons),
as ``bounded`` when the whole interval lies below it, and as ``undecided``
when the interval straddles the threshold (a wide interval is no evidence of
boundedness: run longer, or call the run inconclusive), always with the
horizon and the numbers.

The fluid model predicts the growth ``max(0, lambda (m_p + m_d) - capacity)``
for a policy that fills every batch once the backlog is large
(:func:`fluid_prediction`).

Examples
--------
>>> from fractions import Fraction
>>> from llmstab.fluid_models.batch_time import Staircase
>>> from llmstab.fluid_models.distributions import Deterministic
>>> from llmstab.fluid_models.engine import Engine
>>> from llmstab.fluid_models.policies import Sarathi
>>> from llmstab.fluid_models.simulation.simulator import simulate
>>> from llmstab.fluid_models.workload import RequestClass, Workload
>>> engine = Engine(Staircase("11.28", "35.47", 128), 512)      # capacity 3342.9 tokens/s
>>> work = Workload((RequestClass("chat", 16, Deterministic(129), Deterministic(112)),))  # 3856 tokens/s
>>> g = estimate_growth(simulate(engine, Sarathi(), work, horizon_s=600.0, seed=3))
>>> g.diverging, round(float(fluid_prediction(work, Fraction(51_200_000, 15316)))), abs(g.rate - 513) < g.half_width
(True, 513, True)
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from llmstab.fluid_models.batch_time import exact_number
from llmstab.fluid_models.workload import Workload
from llmstab.theory.exact_linalg import Exact

if TYPE_CHECKING:  # a run is read here, never made: the (compiled) simulator is not imported
    from llmstab.fluid_models.simulation.simulator import SimulationResult

__all__ = ["GrowthEstimate", "estimate_growth", "fluid_prediction", "duration", "seconds", "number"]


def fluid_prediction(workload: Workload, capacity_tokens_per_s: object) -> Exact:
    """The fluid model's backlog growth ``max(0, lambda (m_p + m_d) - capacity)`` in tokens/s (exact).

    ``capacity_tokens_per_s`` is any number :func:`~llmstab.fluid_models.batch_time.exact_number`
    takes (an int, a Fraction, decimal text, a sympy rational); the result is an
    :class:`~llmstab.theory.exact_linalg.Exact`, 0 when the load is within the capacity.

    >>> from llmstab.fluid_models.distributions import Deterministic
    >>> from llmstab.fluid_models.workload import RequestClass, Workload
    >>> work = Workload((RequestClass("a", 10, Deterministic(100), Deterministic(100)),))  # 2000 tokens/s
    >>> fluid_prediction(work, 1500), fluid_prediction(work, "2500.5")
    (Exact(500, 1), Exact(0, 1))
    """
    return max(Exact(0), workload.token_rate - exact_number(capacity_tokens_per_s))


def _two_sided_mass(theta: float, nu: int) -> float:
    """``P(|T| <= sqrt(nu) tan(theta))`` for Student's t with ``nu`` degrees of freedom.

    The closed forms for integer ``nu`` (Abramowitz and Stegun 26.7.3-4): a finite
    series in ``cos(theta)``, with ``theta`` itself added for odd ``nu``.
    """
    c2, s = math.cos(theta) ** 2, math.sin(theta)
    term, total = (1.0, 1.0) if nu % 2 == 0 else (math.cos(theta), math.cos(theta))
    for k in range(2 if nu % 2 == 0 else 3, nu - 1, 2):  # each term is the previous times (k-1)/k cos^2
        term *= (k - 1) / k * c2
        total += term
    if nu % 2 == 0:
        return s * total
    return 2 / math.pi * (theta + (s * total if nu > 1 else 0.0))


def t_quantile(nu: int, confidence: float) -> float:
    """The two-sided Student-t quantile: ``t`` with ``P(|T| <= t) = confidence``, ``nu`` degrees of freedom.

    Exact closed-form distribution, inverted by bisection (to double precision).

    >>> round(t_quantile(1, 0.5), 12), round(t_quantile(19, 0.95), 4), round(t_quantile(2, 0.9), 4)
    (1.0, 2.093, 2.92)
    """
    lo, hi = 0.0, math.pi / 2
    for _ in range(200):
        mid = (lo + hi) / 2
        if mid in (lo, hi):
            break
        if _two_sided_mass(mid, nu) < confidence:
            lo = mid
        else:
            hi = mid
    return math.sqrt(nu) * math.tan((lo + hi) / 2)


def _plain(x: float, digits: int) -> str:
    """``x`` rounded to ``digits`` significant digits, without an exponent (``1.4e+02`` -> ``140``)."""
    if x == 0 or not np.isfinite(x):
        return f"{x:g}"
    rounded = round(x, digits - 1 - int(np.floor(np.log10(abs(x)))))
    return f"{rounded:.{max(0, digits - 1 - int(np.floor(np.log10(abs(rounded)))))}f}"


def _trimmed(x: float, digits: int) -> str:
    """:func:`_plain` without trailing zeros (``12000.0`` -> ``12000``)."""
    text = _plain(x, digits)
    return text.rstrip("0").rstrip(".") if "." in text else text


def number(x: float) -> str:
    """``x`` to 6 significant digits for prose: no exponent, no trailing zeros (the exact value stays in the data).

    >>> number(3342.9120135), number(1.25e7), number(2892.0)
    ('3342.91', '12500000', '2892')
    """
    return _trimmed(x, 6)


#: Units for :func:`duration`: (seconds per unit, name), used from this many seconds up.
_UNITS = ((86_400.0, "days", 172_800.0), (3_600.0, "h", 7_200.0), (60.0, "min", 120.0), (1.0, "s", 1.0))


def duration(x_s: float) -> str:
    """A time for a person, in the unit that keeps it short: ms, s, min, h or days (3 significant digits).

    >>> duration(0.0123), duration(42.0), duration(179.2), duration(692_000.0), duration(float("nan"))
    ('12.3 ms', '42 s', '2.99 min', '8.01 days', 'nan s')
    """
    if not np.isfinite(x_s):
        return f"{x_s} s"
    for size, unit, start in _UNITS:
        if abs(x_s) >= start:
            return f"{_trimmed(x_s / size, 3)} {unit}"
    return f"{_trimmed(x_s * 1000.0, 3)} ms"


def seconds(x_s: float) -> str:
    """Simulated seconds, without an exponent, and in hours or days as well when that long.

    >>> seconds(382.9), seconds(12000.0), seconds(692_000.0)
    ('382.9 s', '12000 s (3.33 h)', '692000 s (8.01 days)')
    """
    text = f"{_trimmed(x_s, 6)} s"
    return text if not np.isfinite(x_s) or abs(x_s) < 7_200 else f"{text} ({duration(x_s)})"


@dataclass(frozen=True)
class GrowthEstimate:
    """The backlog's growth rate over ``[window_start, horizon_s]``, with a confidence interval.

    ``rate`` and ``half_width`` are in tokens/s; the interval is ``rate ± half_width``
    at ``confidence``; ``threshold`` (tokens/s) is the growth a run must exceed,
    with its whole interval, to count as diverging. ``fluid_rate`` is the fluid
    prediction when it was given.
    """

    rate: float
    half_width: float
    confidence: float
    horizon_s: float
    window_start: float
    windows: int
    threshold: float
    offered_tokens_per_s: float | None
    fluid_rate: float | None = None

    @property
    def diverging(self) -> bool:
        """Whether the whole confidence interval lies above the threshold."""
        return self.rate - self.half_width > self.threshold

    @property
    def bounded(self) -> bool:
        """Whether the whole confidence interval lies below the threshold (its upper end included)."""
        return self.rate + self.half_width < self.threshold

    @property
    def trend(self) -> str:
        """``diverging``, ``bounded``, or ``undecided`` when the interval straddles the threshold.

        >>> GrowthEstimate(365.0, 410.0, 0.95, 500.0, 250.0, 20, 38.8, 3880.0).trend
        'undecided'
        """
        return "diverging" if self.diverging else "bounded" if self.bounded else "undecided"

    @property
    def matches_fluid(self) -> bool | None:
        """Whether the fluid prediction lies inside the confidence interval (``None`` without one)."""
        if self.fluid_rate is None:
            return None
        return abs(self.rate - self.fluid_rate) <= self.half_width

    @property
    def statement(self) -> str:
        """One sentence with the verdict, the numbers and the horizon."""
        ci = f"{_plain(self.rate, 4)} ± {_plain(self.half_width, 2)} tokens/s ({self.confidence:.0%} CI)"
        where = (f"over [{_trimmed(self.window_start, 6)}, {_trimmed(self.horizon_s, 6)}] s, the second half of a "
                 f"{seconds(self.horizon_s)} horizon ({self.windows} batch means)")
        fluid = "" if self.fluid_rate is None else (f"; fluid prediction {_plain(self.fluid_rate, 4)} tokens/s "
                                                    "(for a policy that fills every batch once backlogged)")
        if self.diverging:
            return f"diverging at {ci} {where}{fluid}"
        if self.bounded:
            return (f"bounded: backlog growth {ci} {where}, the whole interval below the threshold "
                    f"{_plain(self.threshold, 3)} tokens/s{fluid}")
        return (f"undecided: backlog growth {ci} {where}; the interval straddles the threshold "
                f"{_plain(self.threshold, 3)} tokens/s, so this run shows neither growth nor boundedness "
                f"(a longer run narrows it){fluid}")

    def to_json(self) -> dict:
        """The numbers as a JSON-ready dict."""
        return {"verdict": self.trend, "rate_tokens_per_s": self.rate,
                "half_width_tokens_per_s": self.half_width, "confidence": self.confidence,
                "horizon_s": self.horizon_s, "window_start_s": self.window_start, "batch_means": self.windows,
                "threshold_tokens_per_s": self.threshold, "offered_tokens_per_s": self.offered_tokens_per_s,
                "fluid_prediction_tokens_per_s": self.fluid_rate, "statement": self.statement}


def estimate_growth(result: SimulationResult, *, windows: int = 20, confidence: float = 0.95,
                    relative_threshold: float = 0.01, fluid_rate: object = None,
                    until: float | None = None) -> GrowthEstimate:
    """Estimate the backlog growth rate of ``result`` by batch means over the second half of the run.

    The second half ``[T/2, T]`` is cut into ``windows`` equal windows; each
    gives a growth rate (backlog change over the window length); their mean and
    Student-t interval are the estimate.

    Parameters
    ----------
    result
        A simulation run (its backlog trajectory ``times``, ``backlog_tokens``).
    windows
        Number of batch-mean windows ``K`` (at least 3).
    confidence
        Two-sided confidence level of the interval.
    relative_threshold
        Divergence threshold as a fraction of the offered token rate (of the
        run's arrival token rate for a replayed trace).
    fluid_rate
        Fluid prediction (tokens/s) to report beside the estimate, e.g. from
        :func:`fluid_prediction`.
    until
        Judge the run over ``[0, until]`` only (default: the whole run), e.g.
        the arrival period of a run that then drained.

    Raises
    ------
    ValueError
        If the trajectory has fewer than two points per window over the second half.
    """
    if windows < 3:
        raise ValueError("windows: at least 3 batch means are needed")
    end = float(result.end_time if until is None else min(until, result.end_time))
    start = end / 2
    if np.count_nonzero((result.times >= start) & (result.times <= end)) < 2 * windows:
        raise ValueError(f"record_every: fewer than {2 * windows} trajectory points in the second half")
    edges = np.linspace(start, end, windows + 1)
    at = np.clip(np.searchsorted(result.times, edges, side="right") - 1, 0, result.times.size - 1)
    increments = np.diff(result.backlog_tokens[at].astype(float)) / np.diff(result.times[at])
    slope = float(increments.mean())
    se = float(increments.std(ddof=1) / np.sqrt(windows))
    half = t_quantile(windows - 1, confidence) * se
    offered = result.offered_token_rate
    if offered is None and end > 0:
        arrived = result.trace.times <= end
        offered = float((result.trace.prompt + result.trace.decode)[arrived].sum()) / end
    return GrowthEstimate(rate=slope, half_width=half, confidence=confidence, horizon_s=end, window_start=start,
                          windows=windows, threshold=relative_threshold * (offered or 0.0),
                          offered_tokens_per_s=offered, fluid_rate=None if fluid_rate is None else float(fluid_rate))
