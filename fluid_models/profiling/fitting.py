"""Fit batch-time models to measured profiles, find the tile size, write a model file.

Three parametric families of :mod:`llmstab.fluid_models.batch_time` are fitted to the
(token count, time) points of a profile, each linear in its coefficients once
its integer parameter (the tile or knee ``k``) is fixed:

* ``staircase``         ``t = c + a * ceil(b / k)``
* ``piecewise_linear``  ``t = c + a * max(0, b - k)``
* ``tiled``             ``t = c + t_lin * ceil(b / k) + t_nl * b``

For every candidate ``k`` the coefficients (all non-negative, so the model is
non-decreasing and positive) are found by a cvxpy problem: ``method="minimax"``
is the LP that minimises the largest relative error ``max_i |t(b_i) - y_i| / y_i``;
``method="lsq"`` minimises the sum of squared relative errors. The candidate
with the smallest objective wins; candidates within 0.1 % of the best are
tied and the largest of them is kept (the coarsest tile that explains the data).

**Selection rule** (:func:`fit_profile`): the family with the smallest largest
relative error is chosen, except that ``tiled`` (three coefficients) must beat
the best two-coefficient family (``staircase``, ``piecewise_linear``) by more
than ``tolerance`` (default one percentage point) to be preferred. The
coefficients are rounded to six significant digits before the errors are
computed, so the reported errors are those of the model written to the file.

``family="table"`` (:func:`fit_table`) gives a model with no parametric form:
the isotonic (pool-adjacent-violators) regression of the times on the token
counts, linearly interpolated, hence non-decreasing.

Examples
--------
>>> b = np.arange(8, 1025, 8)
>>> y = 5.0 + 2.0 * np.ceil(b / 64)
>>> rep = fit_profile(b, y, families=("staircase",), candidates=(32, 64, 128))
>>> rep.best.tile, round(rep.best.max_rel_error, 6)
(64, 0.0)
>>> rep.best.model.parameters()["a"]
2.0
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Sequence

import cvxpy as cp
import numpy as np
import yaml

from ..batch_time import BatchTimeModel, PiecewiseLinear, Staircase, Table, Tiled
from ..solvers import quiet_solver
from .profiles import Profile, ProfileError

if TYPE_CHECKING:  # pragma: no cover - annotations only (attention imports this module)
    from .attention import AttentionFit

__all__ = [
    "Fit",
    "FitReport",
    "FAMILIES",
    "DEFAULT_CANDIDATES",
    "fit_family",
    "fit_table",
    "fit_profile",
    "isotonic",
    "jumps",
    "tile_alignment",
    "model_from_parameters",
    "model_parameters",
    "choose",
    "solve_design",
    "coarsest_best",
    "tile_candidates",
    "design_columns",
    "family_model",
    "round6",
    "write_model_file",
    "load_model_file",
    "read_model_file",
]

FAMILIES = ("staircase", "piecewise_linear", "tiled")
DEFAULT_CANDIDATES = (8, 16, 32, 64, 128, 256, 512)
_MODELS: dict[str, type[BatchTimeModel]] = {
    "staircase": Staircase,
    "piecewise_linear": PiecewiseLinear,
    "tiled": Tiled,
    "table": Table,
}
_N_COEFFS = {"staircase": 2, "piecewise_linear": 2, "tiled": 3}
_TIE = 1e-3
MODEL_FILE_TAG = "llmstab batch-time model"


def round6(x: float) -> float:
    """``x`` (clipped at zero) to six significant digits, as model files store coefficients.

    >>> round6(1.23456789e-4), round6(-1e-12)
    (0.000123457, 0.0)
    """
    return float(f"{max(x, 0.0):.6g}")


def design_columns(family: str, b: np.ndarray, k: int) -> np.ndarray:
    """The columns of ``family`` at token counts ``b`` with tile (knee) ``k``: ``t(b) = columns @ theta``.

    >>> design_columns("staircase", np.array([1, 64, 65]), 64).tolist()
    [[1.0, 1.0], [1.0, 1.0], [1.0, 2.0]]
    """
    ones = np.ones_like(b, dtype=float)
    if family == "staircase":
        return np.column_stack([ones, np.ceil(b / k)])
    if family == "piecewise_linear":
        return np.column_stack([ones, np.maximum(0.0, b - k)])
    if family == "tiled":
        return np.column_stack([ones, np.ceil(b / k), b.astype(float)])
    raise ValueError(f"unknown family {family!r}")


def family_model(family: str, theta: Sequence[float], k: int) -> BatchTimeModel:
    """The model of ``family`` with coefficients ``theta`` (in :func:`design_columns` order), rounded.

    >>> family_model("staircase", [11.28, 35.47], 128).parameters()
    {'kind': 'staircase', 'c': 11.28, 'a': 35.47, 'b0': 128}
    """
    t = [round6(v) for v in theta]
    if family == "staircase":
        return Staircase(c=t[0], a=t[1], b0=k)
    if family == "piecewise_linear":
        return PiecewiseLinear(c=t[0], a=t[1], b0=k)
    return Tiled(t_lin=t[1], b_col=k, t_nl=t[2], c=t[0])


@dataclass(frozen=True)
class Fit:
    """A fitted model with its goodness of fit on the profile's points.

    ``tile`` is ``b0`` (staircase, piecewise linear) or ``b_col`` (tiled);
    ``objective`` maps every candidate tile tried to its optimal objective.
    A fit with context (:func:`llmstab.fluid_models.profiling.attention.fit_attention`)
    also carries its ``attention`` coefficients (then ``model`` is the
    token-count part ``t(n)``) and ``worst``, the grid point where the
    relative error is largest.
    """

    family: str
    method: str
    model: BatchTimeModel
    tile: int | None
    r2: float
    max_rel_error: float
    max_rel_error_at: int
    max_abs_error_ms: float
    n_points: int
    token_range: tuple[int, int]
    objective: dict = field(default_factory=dict)
    attention: AttentionFit | None = None
    worst: dict = field(default_factory=dict)

    def residuals(self, tokens: np.ndarray, times: np.ndarray) -> np.ndarray:
        """Relative residuals ``(model - measured) / measured`` at the given points."""
        return (self.model(tokens) - times) / times

    def summary(self) -> dict:
        """The fit as plain numbers (what the model file records)."""
        return {
            "family": self.family,
            "method": self.method,
            "tile": self.tile,
            "r2": round(self.r2, 6),
            "max_rel_error": round(self.max_rel_error, 6),
            "max_rel_error_at_tokens": self.max_rel_error_at,
            "max_abs_error_ms": round(self.max_abs_error_ms, 6),
            "n_points": self.n_points,
            "token_range": list(self.token_range),
            "candidates": {int(k): round(v, 6) for k, v in self.objective.items()},
            **({"attention": self.attention.as_dict(), "max_rel_error_at": self.worst} if self.attention else {}),
        }


def _scores(model: BatchTimeModel, b: np.ndarray, y: np.ndarray) -> tuple[float, float, int, float]:
    pred = np.asarray(model(b), dtype=float)
    rel = np.abs(pred - y) / y
    ss_tot = float(np.sum((y - y.mean()) ** 2))
    r2 = 1.0 - float(np.sum((pred - y) ** 2)) / ss_tot if ss_tot > 0 else float(np.allclose(pred, y))
    i = int(np.argmax(rel))
    return r2, float(rel[i]), int(b[i]), float(np.max(np.abs(pred - y)))


def _points(tokens: np.ndarray, times: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    b = np.asarray(tokens, dtype=np.int64)
    y = np.asarray(times, dtype=float)
    if b.ndim != 1 or b.shape != y.shape or b.size < 2:
        raise ProfileError("profile", "needs at least two points with one time per token count")
    if np.any(y <= 0) or not np.all(np.isfinite(y)):
        raise ProfileError("profile", "times must be positive and finite")
    if np.any(b < 1):
        raise ProfileError("profile", "token counts must be at least 1")
    if np.unique(b).size != b.size:
        raise ProfileError("profile", "a token count appears twice; merge the points first (Profile.by_tokens)")
    order = np.argsort(b)
    return b[order], y[order]


def solve_design(
    design: Callable[[int], np.ndarray], y: np.ndarray, ks: Sequence[int], method: str = "minimax"
) -> tuple[dict[int, float], dict[int, np.ndarray]]:
    """Non-negative coefficients ``theta`` fitting ``design(k) @ theta`` to ``y``, for every ``k`` in ``ks``.

    ``method="minimax"`` minimises the largest relative error (an LP),
    ``"lsq"`` the sum of squared relative errors. The columns are scaled to a
    largest entry of one before solving (attention columns reach 10^7 token
    products) and the coefficients scaled back. Returns the optimal objective
    and the coefficients per ``k`` (a ``k`` whose problem fails is left out).

    Examples
    --------
    >>> x = np.arange(1.0, 6.0)
    >>> obj, th = solve_design(lambda k: np.column_stack([np.ones(5), x * k]), 2.0 + 3.0 * x, [1])
    >>> abs(obj[1]) < 1e-9, np.round(th[1], 6).tolist()
    (True, [2.0, 3.0])
    """
    p = design(ks[0]).shape[1]
    A = cp.Parameter((y.size, p))
    theta = cp.Variable(p, nonneg=True)
    if method == "minimax":
        s = cp.Variable()
        r = A @ theta - 1.0
        problem = cp.Problem(cp.Minimize(s), [r <= s, -r <= s])
        solver = {"solver": cp.HIGHS} if cp.HIGHS in cp.installed_solvers() else {}
    else:
        problem = cp.Problem(cp.Minimize(cp.sum_squares(A @ theta - 1.0)))
        solver = {"solver": cp.CLARABEL} if cp.CLARABEL in cp.installed_solvers() else {}
    objective: dict[int, float] = {}
    thetas: dict[int, np.ndarray] = {}
    for k in ks:
        X = design(k) / y[:, None]
        scale = np.max(np.abs(X), axis=0)
        scale[scale == 0] = 1.0
        A.value = X / scale
        with quiet_solver():
            problem.solve(**solver)
        if theta.value is None or problem.value is None:
            continue
        objective[k] = float(problem.value)
        thetas[k] = np.maximum(np.asarray(theta.value, dtype=float), 0.0) / scale
    return objective, thetas


def coarsest_best(objective: dict[int, float]) -> int:
    """The largest ``k`` whose objective is within 0.1 % of the best (ties go to the coarsest tile).

    >>> coarsest_best({32: 0.10, 64: 0.1000001, 128: 0.2})
    64
    """
    best = min(objective.values())
    return max(k for k, v in objective.items() if v <= best + _TIE * max(abs(best), 1e-12) + 1e-12)


def tile_candidates(family: str, method: str, candidates: Sequence[int], largest: int) -> list[int]:
    """The tiles (knees) of ``candidates`` worth trying below ``largest`` tokens; checks family and method.

    >>> tile_candidates("staircase", "minimax", (0, 64, 128, 4096), 1024)
    [64, 128]
    """
    if family not in FAMILIES:
        raise ProfileError("family", f"must be one of {', '.join(FAMILIES)}, got {family!r}")
    if method not in ("minimax", "lsq"):
        raise ProfileError("method", f"must be minimax or lsq, got {method!r}")
    ks = sorted({int(k) for k in candidates if (int(k) >= 0 if family == "piecewise_linear" else int(k) >= 1)})
    ks = [k for k in ks if k < largest] or ks[:1]
    if not ks:
        raise ProfileError("candidates", "no usable tile candidate")
    return ks


def fit_family(
    tokens: np.ndarray,
    times: np.ndarray,
    family: str,
    candidates: Sequence[int] = DEFAULT_CANDIDATES,
    method: str = "minimax",
) -> Fit:
    """Fit one family, searching its tile (or knee) over ``candidates``.

    Examples
    --------
    >>> b = np.array([64, 128, 192, 256, 320])
    >>> f = fit_family(b, 1.0 + 0.5 * np.ceil(b / 128) + 0.01 * b, "tiled", (64, 128))
    >>> f.tile, f.max_rel_error < 1e-6
    (128, True)
    """
    b, y = _points(tokens, times)
    ks = tile_candidates(family, method, candidates, int(b[-1]))
    objective, thetas = solve_design(lambda k: design_columns(family, b, k), y, ks, method)
    if not objective:
        raise ProfileError("profile", f"the {family} fit failed for every candidate tile")
    k = coarsest_best(objective)
    model = family_model(family, thetas[k], k)
    r2, err, at, abs_err = _scores(model, b, y)
    return Fit(family, method, model, k, r2, err, at, abs_err, int(b.size), (int(b[0]), int(b[-1])), objective)


def isotonic(values: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
    """The non-decreasing sequence closest to ``values`` in weighted least squares (PAVA).

    >>> isotonic(np.array([1.0, 3.0, 2.0, 4.0])).tolist()
    [1.0, 2.5, 2.5, 4.0]
    """
    v = np.asarray(values, dtype=float)
    w = np.ones_like(v) if weights is None else np.asarray(weights, dtype=float)
    means, wts, sizes = [], [], []
    for x, wx in zip(v, w):
        means.append(x)
        wts.append(wx)
        sizes.append(1)
        while len(means) > 1 and means[-2] > means[-1]:
            m2, w2, n2 = means.pop(), wts.pop(), sizes.pop()
            m1, w1, n1 = means.pop(), wts.pop(), sizes.pop()
            means.append((m1 * w1 + m2 * w2) / (w1 + w2))
            wts.append(w1 + w2)
            sizes.append(n1 + n2)
    return np.repeat(means, sizes)


def jumps(tokens: np.ndarray, times: np.ndarray, threshold: float = 0.06) -> np.ndarray:
    """Token counts ``b_i`` after which the time rises by more than ``threshold`` (relative).

    A tile boundary shows as a plateau ending at ``b_i`` and a jump to the next
    measured point; this is a model-free view of the staircase.

    >>> jumps(np.array([56, 64, 72, 80]), np.array([1.0, 1.0, 1.3, 1.3])).tolist()
    [64]
    """
    b, y = _points(tokens, times)
    rise = np.diff(y) / y[:-1]
    return b[:-1][rise > threshold]


def tile_alignment(jump_at: np.ndarray, tile: int) -> float:
    """Fraction of the jumps that sit at a multiple of ``tile`` (1.0: every jump does).

    >>> tile_alignment(np.array([64, 128, 200]), 64)
    0.6666666666666666
    """
    jump_at = np.asarray(jump_at)
    return float(np.mean(jump_at % tile == 0)) if jump_at.size else float("nan")


def fit_table(tokens: np.ndarray, times: np.ndarray) -> Fit:
    """A monotone interpolating table: isotonic regression of the times, interpolated.

    Examples
    --------
    >>> f = fit_table(np.array([8, 16, 24]), np.array([5.0, 4.0, 6.0]))
    >>> [float(t) for t in f.model.times]
    [4.5, 4.5, 6.0]
    """
    b, y = _points(tokens, times)
    fitted = isotonic(y)
    model = Table(tuple(int(v) for v in b), tuple(float(f"{v:.6g}") for v in fitted))
    r2, err, at, abs_err = _scores(model, b, y)
    return Fit("table", "isotonic", model, None, r2, err, at, abs_err, int(b.size), (int(b[0]), int(b[-1])))


@dataclass(frozen=True)
class FitReport:
    """The fits of every family tried, the chosen one and the rule that chose it."""

    best: Fit
    fits: dict
    rule: str
    selected_rows: str

    def table_rows(self) -> list[dict]:
        """One summary row per family (for printing)."""
        return [f.summary() for f in self.fits.values()]


def _rule(tolerance: float) -> str:
    return (
        "smallest largest relative error; tiled (3 coefficients) is preferred over the best "
        f"2-coefficient family only if its largest relative error is smaller by more than {tolerance:g}"
    )


def fit_profile(
    profile: Profile | np.ndarray,
    times: np.ndarray | None = None,
    families: Sequence[str] = FAMILIES,
    candidates: Sequence[int] = DEFAULT_CANDIDATES,
    method: str = "minimax",
    tolerance: float = 0.01,
    rows: str = "prefill",
    max_tokens: int | None = None,
) -> FitReport:
    """Fit ``families`` and choose one by the rule in the module docstring.

    ``profile`` is a :class:`~llmstab.fluid_models.profiling.profiles.Profile` (then ``rows``
    picks the kinds fitted: ``prefill`` by default, or ``mixed``, ``decode``,
    ``all``; points at the same token count are merged by their median) or an
    array of token counts with ``times`` beside it. ``families`` may also
    contain ``"table"`` (never chosen over a parametric family by the rule; ask
    for it alone to get it). ``max_tokens`` drops the points above it (fit the
    range of token budgets the engine will use).

    Examples
    --------
    >>> b = np.arange(16, 1025, 16)
    >>> rep = fit_profile(b, 2.0 + 0.5 * np.ceil(b / 128) + 0.01 * b, candidates=(64, 128))
    >>> rep.best.family, rep.best.tile, rep.fits["staircase"].max_rel_error > 0.01
    ('tiled', 128, True)
    """
    if isinstance(profile, Profile):
        chosen = profile.select(rows)
        if len(chosen) == 0:
            raise ProfileError("rows", f"the profile has no {rows} rows (kinds present: {sorted(set(profile.kind))})")
        b, y = chosen.by_tokens()
    else:
        if times is None:
            raise ProfileError("times", "missing")
        b, y = np.asarray(profile), np.asarray(times)
        rows = "given"
    if max_tokens is not None:
        keep = np.asarray(b) <= max_tokens
        b, y = np.asarray(b)[keep], np.asarray(y)[keep]
    unknown = [f for f in families if f not in FAMILIES and f != "table"]
    if unknown or not families:
        raise ProfileError("families", f"unknown {unknown} (known: {', '.join(FAMILIES)}, table)")
    fits = {f: (fit_table(b, y) if f == "table" else fit_family(b, y, f, candidates, method)) for f in families}
    if not [f for f in fits if f != "table"]:
        return FitReport(fits["table"], fits, "table requested alone", rows)
    return choose(fits, tolerance, rows)


def choose(fits: dict, tolerance: float, rows: str) -> FitReport:
    """Apply the selection rule (module docstring) to parametric ``fits`` keyed by family."""
    parametric = [f for f in fits if f != "table"]
    simple = [fits[f] for f in parametric if _N_COEFFS[f] == 2]
    best = min(simple or [fits[f] for f in parametric], key=lambda f: f.max_rel_error)
    if "tiled" in fits and simple and fits["tiled"].max_rel_error < best.max_rel_error - tolerance:
        best = fits["tiled"]
    return FitReport(best, fits, _rule(tolerance), rows)


def model_from_parameters(params: dict, where: str = "batch_time") -> BatchTimeModel:
    """Build a model from its ``parameters()`` mapping (the inverse of ``model.parameters()``).

    This is the token-count part ``t(n)``; the optional ``attention`` terms
    are validated and read by
    :func:`llmstab.fluid_models.profiling.attention.attention_from_parameters`.

    >>> print(model_from_parameters({"kind": "staircase", "c": 11.28, "a": 35.47, "b0": 128}).exact(128))
    187/4
    """
    from .attention import attention_from_parameters

    if not isinstance(params, dict) or params.get("kind") not in _MODELS:
        raise ProfileError(f"{where}.kind", f"must be one of {', '.join(_MODELS)}")
    if params.get("unit", "ms") != "ms":
        raise ProfileError(f"{where}.unit", f"model files are in ms, got {params['unit']!r}")
    attention_from_parameters(params, where)
    args = {k: v for k, v in params.items() if k not in ("kind", "unit", "attention")}
    try:
        return _MODELS[params["kind"]](**args)
    except (TypeError, ValueError) as err:
        raise ProfileError(where, str(err)) from None


def _sha256(path: str | Path) -> str | None:
    try:
        return hashlib.sha256(Path(path).read_bytes()).hexdigest()
    except OSError:
        return None


def write_model_file(report: FitReport, path: str | Path, source: dict | None = None) -> dict:
    """Write the chosen model as YAML that ``batch_time: {kind: profile, file: PATH}`` loads.

    The file holds ``batch_time`` (the model's parameters, in ms), ``fit`` (the
    chosen fit's summary and the rule), ``alternatives`` (the other families)
    and ``source`` (where the points came from, with the SHA-256 of its
    ``file`` and, for a Vidur attention profile, of its ``mlp_file``).
    Returns the written document.

    Examples
    --------
    >>> import tempfile
    >>> b = np.arange(8, 513, 8)
    >>> rep = fit_profile(b, 11.28 + 35.47 * np.ceil(b / 128), families=("staircase",))
    >>> path = Path(tempfile.mkdtemp()) / "model.yaml"
    >>> write_model_file(rep, path)["batch_time"]
    {'kind': 'staircase', 'c': 11.28, 'a': 35.47, 'b0': 128, 'unit': 'ms'}
    >>> print(load_model_file(path).exact(512))
    3829/25
    """
    src = dict(source or {})
    for key, digest_key in (("file", "sha256"), ("mlp_file", "mlp_sha256")):
        digest = _sha256(src[key]) if key in src else None
        if digest:
            src[digest_key] = digest
    doc = {
        "llmstab": MODEL_FILE_TAG,
        "batch_time": model_parameters(report.best),
        "fit": dict(report.best.summary(), rule=report.rule, rows=report.selected_rows),
        "alternatives": [f.summary() for name, f in report.fits.items() if f is not report.best],
        "source": src,
    }
    doc = _plain(doc)
    Path(path).write_text(yaml.safe_dump(doc, sort_keys=False))
    return doc


def model_parameters(fit: Fit) -> dict:
    """The ``batch_time`` mapping of a fit, in ms, with its ``attention`` terms when it has them.

    >>> b = np.arange(8, 257, 8)
    >>> model_parameters(fit_family(b, 11.28 + 35.47 * np.ceil(b / 128), "staircase"))
    {'kind': 'staircase', 'c': 11.28, 'a': 35.47, 'b0': 128, 'unit': 'ms'}
    """
    params = dict(fit.model.parameters(), unit="ms")
    if fit.attention is not None:
        params["attention"] = fit.attention.as_dict()
    return params


def _plain(value: object) -> object:
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return str(value)


def read_model_file(path: str | Path) -> dict:
    """The ``batch_time`` mapping of a model file written by :func:`write_model_file`."""
    try:
        doc = yaml.safe_load(Path(path).read_text())
    except OSError as err:
        raise ProfileError(str(path), f"cannot read model file: {err.strerror or err}") from None
    except yaml.YAMLError:
        raise ProfileError(str(path), "malformed YAML") from None
    if not isinstance(doc, dict) or doc.get("llmstab") != MODEL_FILE_TAG or not isinstance(doc.get("batch_time"), dict):
        raise ProfileError(str(path), "not a batch-time model file written by `llmstab fit`")
    return doc["batch_time"]


def load_model_file(path: str | Path) -> BatchTimeModel:
    """The batch-time model stored in a model file written by :func:`write_model_file`."""
    return model_from_parameters(read_model_file(path), str(path))
