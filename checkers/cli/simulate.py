"""``llmstab simulate FILE``: run the engine of an input file and print what happened.

Prints the run (requests, batches, throughput), per-class latency percentiles
(TTFT, time between tokens, end-to-end) and the backlog's growth estimate
against the fluid prediction; ``--csv`` writes the backlog trajectory,
``--plot`` draws it. A progress bar shows on a terminal for long runs.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from llmstab.fluid_models.simulation.arrivals import read_trace_csv
from llmstab.fluid_models.simulation.simulator import SimulationResult

from ..errors import InputError
from ..growth import GrowthEstimate, duration, seconds
from ..simulation_check import simulate_spec
from ..spec import engine_spec_from_document, load_document
from ..verdict import plural
from .arguments import parse_positive, parse_seed, save_plot

__all__ = ["register", "simulate_file"]


def _progress_bar(enabled: bool, unit: str):
    if not enabled:
        return None, None
    from tqdm import tqdm

    bar = tqdm(total=0, unit=unit, file=sys.stderr, leave=False, dynamic_ncols=True)

    def update(done: float, total: float) -> None:
        bar.total = round(total)
        bar.update(round(done) - bar.n)

    return bar, update


def simulate_file(path: str | Path, *, horizon_s: float | None = None, n_requests: int | None = None, seed: int = 0,
                  arrivals: str = "poisson", trace_path: str | None = None,
                  progress: bool = False) -> tuple[SimulationResult, GrowthEstimate]:
    """Simulate the engine, policy and workload of an input file (:func:`llmstab.checkers.simulation_check.simulate_spec`).

    ``trace_path`` replays a CSV trace instead of sampling the workload;
    ``progress`` shows a progress bar on stderr.
    """
    p = Path(path)
    spec = engine_spec_from_document(load_document(p), str(p), p.parent)
    trace = read_trace_csv(trace_path) if trace_path is not None else None
    unit = "s" if horizon_s is not None or (trace is None and n_requests is None) else "req"
    bar, update = _progress_bar(progress, unit)
    try:
        return simulate_spec(spec, horizon_s=horizon_s, n_requests=n_requests, seed=seed, arrivals=arrivals,
                             trace=trace, progress=update)
    finally:
        if bar is not None:
            bar.close()


def _fmt(summary: dict) -> str:
    """``p50 / p90 / p99`` of a latency summary (seconds), each in the unit that suits it (ms, s, min, ...)."""
    if not summary["n"]:
        return "-"
    return " / ".join(duration(summary[q]) for q in ("p50", "p90", "p99"))


def to_text(result: SimulationResult, growth: GrowthEstimate) -> str:
    """The run for a person: counts, throughput, per-class latency percentiles and the growth statement."""
    lines = [
        f"llmstab simulate: {result.policy} on one engine (b_max = {result.token_budget}), "
        f"{result.arrivals} arrivals, seed {result.seed}",
        f"  horizon   : {seconds(result.end_time)}, {plural(result.trace.size, 'request')} arrived, "
        f"{int(result.finished.sum()):,} finished, {plural(result.n_batches, 'batch')}"
        + (f" (stopped early: more than {plural(result.stopped_at_backlog, 'request')} present)"
           if result.stopped_at_backlog else ""),
        f"  throughput: {result.throughput_tokens:.6g} tokens/s processed"
        + ("" if result.offered_token_rate is None else f" of {result.offered_token_rate:.6g} offered")
        + f"; engine busy {result.busy_time / result.end_time:.1%} of the time" if result.end_time > 0 else "",
        f"  backlog   : {growth.statement}",
    ]
    if result.memory is not None and result.memory.total_blocks:
        m = result.memory.summary()
        lines.append(f"  KV cache  : {m['mean_use_fraction']:.1%} in use on average, peak {m['peak_use_fraction']:.1%}; "
                     f"{m['preemptions']} preemptions ({m['recomputed_tokens']} tokens recomputed); admission waited "
                     f"{m['admission_stalls']['memory']} batches for memory, {m['admission_stalls']['request_limit']} "
                     "for the request limit")
    lines.append("  latency (p50 / p90 / p99):")
    for name, m in result.metrics().items():
        lines.append(f"    {name:<10} finished {m['finished']:>7}  {m['throughput_requests_per_s']:.4g} req/s  "
                     f"TTFT {_fmt(m['ttft_s'])}  TBT {_fmt(m['tbt_s'])}  worst TBT {_fmt(m['worst_tbt_s'])}  "
                     f"end-to-end {_fmt(m['e2e_s'])}")
    return "\n".join(lines)


def to_json(result: SimulationResult, growth: GrowthEstimate) -> dict:
    """The run as one JSON-ready object (``memory``: KV use, preemptions, recomputed tokens, admission stalls).

    >>> from pathlib import Path
    >>> example = Path(__file__).resolve().parents[2] / "examples" / "memory_bound.yaml"
    >>> out = to_json(*simulate_file(example, horizon_s=120, seed=0))
    >>> out["memory"]["total_blocks"], out["memory"]["peak_use_fraction"], out["memory"]["preemptions"] > 0
    (2000, 1.0, True)
    """
    return {"policy": result.policy, "token_budget": result.token_budget, "seed": result.seed,
            "arrivals": result.arrivals, "horizon_s": result.end_time, "requests": result.trace.size,
            "finished": int(result.finished.sum()), "batches": result.n_batches, "busy_s": result.busy_time,
            "tokens_served": result.tokens_served, "throughput_tokens_per_s": result.throughput_tokens,
            "offered_tokens_per_s": result.offered_token_rate, "stopped_at_backlog": result.stopped_at_backlog,
            "growth": growth.to_json(), "metrics": result.metrics(),
            "memory": None if result.memory is None else result.memory.summary()}


def write_plot(result: SimulationResult, growth: GrowthEstimate, path: str) -> None:
    """Draw the backlog trajectory (tokens, and requests on a second axis) to ``path``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    kv = result.memory is not None and bool(result.memory.total_blocks)
    fig, axes = plt.subplots(1, 2 if kv else 1, figsize=(13 if kv else 8, 4), squeeze=False)
    ax = axes[0][0]
    if kv:  # KV use beside the backlog
        axes[0][1].plot(result.times, result.memory.kv_blocks / result.memory.total_blocks, lw=0.8, color="C2")
        axes[0][1].set(xlabel="time (s)", ylabel="KV cache in use (fraction of blocks)", ylim=(0, 1.02),
                       title=f"{result.memory.preemptions} preemptions")
    ax.plot(result.times, result.backlog_tokens, lw=0.8, color="C0")
    ax.set_xlabel("time (s)")
    ax.set_ylabel("backlog (tokens)", color="C0")
    right = ax.twinx()
    right.plot(result.times, result.backlog_requests, lw=0.6, color="C1", alpha=0.6)
    right.set_ylabel("backlog (requests)", color="C1")
    ax.set_title(f"{result.policy}: {growth.trend} "
                 f"({growth.rate:.4g} ± {growth.half_width:.2g} tokens/s)", fontsize=10)
    fig.tight_layout()
    save_plot(fig, path)


def run(args: argparse.Namespace) -> int:
    seed = parse_seed(args.seed)
    horizon = parse_positive(args.horizon, "horizon")
    requests = parse_positive(args.requests, "requests", int)
    result, growth = simulate_file(args.file, horizon_s=horizon, n_requests=requests, seed=seed,
                                   arrivals=args.arrivals, trace_path=args.trace,
                                   progress=not args.no_progress and sys.stderr.isatty())
    if args.csv:
        try:
            Path(args.csv).write_text(result.trajectory_csv())
        except OSError as err:
            raise InputError("--csv", f"cannot write {args.csv}: {err.strerror}") from None
    if args.plot:
        write_plot(result, growth, args.plot)
    print(json.dumps(to_json(result, growth), indent=2) if args.json else to_text(result, growth))
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("simulate", help="simulate an engine: latencies, throughput, backlog growth",
                                   description=__doc__)
    parser.add_argument("file", help="input file (YAML or JSON) with engine, policy and workload")
    parser.add_argument("--horizon", metavar="SECONDS", help="simulated time to run")
    parser.add_argument("--requests", metavar="N", help="number of arrivals to serve (drained unless --horizon)")
    parser.add_argument("--seed", default="0", help="seed of the random arrivals and lengths (default 0)")
    parser.add_argument("--arrivals", choices=("poisson", "deterministic"), default="poisson",
                        help="arrival process of the workload (default poisson)")
    parser.add_argument("--trace", metavar="CSV", help="replay a trace: columns arrival_time (s), prompt_tokens, "
                        "decode_tokens [, class]; the file's workload is then not used")
    parser.add_argument("--csv", metavar="PATH", help="write the backlog trajectory as CSV")
    parser.add_argument("--plot", metavar="PATH", help="draw the backlog trajectory (PNG, PDF, SVG)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.set_defaults(run=run)
