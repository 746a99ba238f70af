"""CLI: ``llmstab profile``, ``llmstab fit`` and ``llmstab presets``.

``llmstab profile --model CONFIG --out profile.csv`` (on the GPU when PyTorch sees one) times real
iterations (see :mod:`llmstab.fluid_models.profiling.profiler`) and writes the CSV and a sidecar
``profile.sidecar.json``; ``llmstab fit profile.csv --out model.yaml`` fits the
batch-time families and writes the model file that
``batch_time: {kind: profile, file: model.yaml}`` loads; ``llmstab presets``
lists the shipped presets (``batch_time: {kind: preset, name: NAME}``).

Bad input (a profile with missing columns, non-positive times or duplicate
grid points; a configuration that is not a decoder model; ``--device cuda``
without CUDA) raises :class:`~llmstab.checkers.errors.InputError`: one line, exit 2.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from llmstab.fluid_models.profiling.fitting import (
    DEFAULT_CANDIDATES,
    FAMILIES,
    fit_profile,
    jumps,
    model_parameters,
    tile_alignment,
    write_model_file,
)
from llmstab.fluid_models.profiling.profiles import FORMATS, ProfileError, detect_format, read_any, write_profile_csv


__all__ = ["register", "cmd_profile", "cmd_fit", "cmd_presets"]


def _ints(text: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None
    if not values or min(values) < 0:
        raise argparse.ArgumentTypeError(f"expected non-negative integers, got {text!r}")
    return values


def _words(text: str) -> list[str]:
    return [v.strip() for v in text.split(",") if v.strip()]


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``profile``, ``fit`` and ``presets`` subcommands."""
    _add_profile(subparsers)
    _add_fit(subparsers)
    s = subparsers.add_parser("presets", help="list the shipped batch-time presets")
    s.add_argument("name", nargs="?", help="one preset, shown in full")
    s.add_argument("--json", action="store_true", help="print JSON")
    s.set_defaults(run=cmd_presets)


def _add_profile(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("profile", help="time real iterations of a decoder model (random weights)")
    p.add_argument("--model", required=True, help="shipped config name (mistral-7b, llama-2-7b, codellama-34b, "
                   "llama-3-8b, tiny-llama) or a Hugging Face config.json")
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"),
                   help="auto (default: cuda when PyTorch sees a CUDA device, else cpu), cpu or cuda")
    p.add_argument("--out", required=True, type=Path, help="profile CSV to write")
    p.add_argument("--dtype", default="auto", help="auto (float16 on cuda, float32 on cpu), float16, bfloat16, float32")
    p.add_argument("--warmup", type=int, default=3, help="untimed iterations before each grid point (default 3)")
    p.add_argument("--reps", type=int, default=10, help="timed repetitions per grid point (default 10)")
    p.add_argument("--seed", type=int, default=0, help="seed of the random weights and tokens (default 0)")
    p.add_argument("--kinds", type=_words, default=["prefill", "decode", "mixed"],
                   help="comma-separated batch kinds to time (default prefill,decode,mixed)")
    p.add_argument("--max-prefill", type=int, default=4096, help="largest prefill chunk in tokens (default 4096)")
    p.add_argument("--tile", type=int, default=64, help="grid is dense around multiples of this")
    p.add_argument("--fine-step", type=int, default=16, help="grid step near tile boundaries (default 16)")
    p.add_argument("--decode-batches", type=_ints, default=[1, 2, 4, 8, 16, 32, 64, 128, 256, 512],
                   help="comma-separated decode batch sizes (requests)")
    p.add_argument("--contexts", type=_ints, default=[128, 512, 1024, 2048, 4096],
                   help="comma-separated context lengths of the decoding requests")
    p.add_argument("--mixed-budget", type=int, default=512, help="tokens of a mixed batch (decodes + prefill chunk)")
    p.add_argument("--mixed-decodes", type=_ints, default=[1, 8, 16, 32, 64, 128, 256],
                   help="comma-separated decode counts of the mixed batches")
    p.add_argument("--mixed-context", type=int, default=1024, help="context length of the mixed batches' decodes")
    p.add_argument("--prefill-contexts", type=_ints, default=[512, 2048],
                   help="comma-separated cached prompt tokens before the extra prefill chunks (default 512,2048)")
    p.add_argument("--context-chunks", type=_ints, default=[64, 256, 512, 1024, 2048],
                   help="comma-separated chunk sizes timed after each --prefill-contexts value")
    p.add_argument("--quiet", action="store_true", help="no progress output")
    p.set_defaults(run=cmd_profile)


def _add_fit(subparsers: argparse._SubParsersAction) -> None:
    f = subparsers.add_parser("fit", help="fit batch-time models to a profile and write a model file")
    f.add_argument("profile", type=Path, help="profile CSV (llmstab profile's or a public one), or a folder "
                   "holding Vidur's attention.csv and mlp.csv")
    f.add_argument("--out", type=Path, help="model file (YAML) to write")
    f.add_argument("--format", default="auto", choices=FORMATS,
                   help="the file's layout (default auto: told from the CSV header)")
    f.add_argument("--layers", type=int, help="number of layers (for Vidur's per-layer files)")
    f.add_argument("--attention", default="auto", choices=("auto", "on", "off"),
                   help="fit the attention terms with the family (auto: when decodes were timed at two or more "
                   "contexts, e.g. llmstab profile --contexts)")
    f.add_argument("--families", type=_words, default=list(FAMILIES), help="comma-separated; 'table' for a "
                   "monotone interpolating table")
    f.add_argument("--candidates", type=_ints, default=list(DEFAULT_CANDIDATES),
                   help="comma-separated tile sizes to search")
    f.add_argument("--method", default="minimax", choices=("minimax", "lsq"),
                   help="minimise the largest relative error (LP, default) or the squared error")
    f.add_argument("--rows", choices=("prefill", "decode", "mixed", "all"),
                   help="which batches to fit without attention (default prefill); the attention fit uses all")
    f.add_argument("--tolerance", type=float, default=0.01,
                   help="tiled wins only if its largest relative error is lower by more than this (default 0.01)")
    f.add_argument("--max-tokens", type=int, help="fit only the points with at most this many tokens")
    f.add_argument("--json", action="store_true", help="print one JSON object")
    f.set_defaults(run=cmd_fit)


_PROFILE_OPTIONS = ("model", "device", "out", "dtype", "warmup", "reps", "seed", "kinds", "max_prefill", "tile",
                    "fine_step", "decode_batches", "contexts", "mixed_budget", "mixed_decodes", "mixed_context",
                    "prefill_contexts", "context_chunks")


def _command_line(args: argparse.Namespace) -> list[str]:
    """The ``llmstab profile`` command that reproduces this run, every option spelled out."""
    line = ["llmstab", "profile"]
    for name in _PROFILE_OPTIONS:
        value = getattr(args, name)
        line += [f"--{name.replace('_', '-')}", ",".join(map(str, value)) if isinstance(value, list) else str(value)]
    return line


def _cuda_or_cpu() -> str:
    """``cuda`` when PyTorch is installed and sees a CUDA device, else ``cpu``."""
    try:
        import torch
    except ImportError:
        return "cpu"  # the profiler then says that it needs PyTorch
    return "cuda" if torch.cuda.is_available() else "cpu"


def cmd_profile(args: argparse.Namespace) -> int:
    """Run the profiler and write the CSV and its sidecar."""
    from llmstab.fluid_models.profiling.profiler import default_grid, load_config, run_profile, sidecar

    cfg = load_config(args.model)
    if args.device == "auto":
        args.device = _cuda_or_cpu()
    grid = default_grid(args.max_prefill, args.tile, args.fine_step, args.decode_batches, args.contexts,
                        args.mixed_budget, args.mixed_decodes, args.mixed_context, args.kinds,
                        args.prefill_contexts, args.context_chunks)
    bad = [k for k in args.kinds if k not in ("prefill", "decode", "mixed")]
    if bad:
        raise ProfileError("--kinds", f"unknown kind(s) {bad} (known: prefill, decode, mixed)")
    log = None if args.quiet else (lambda line: print(line, file=sys.stderr, flush=True))
    profile, info = run_profile(cfg, grid, args.device, args.dtype, args.warmup, args.reps, args.seed, log)
    meta = sidecar(cfg, args.device, info, _command_line(args))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    write_profile_csv(profile, args.out)
    side = args.out.with_suffix(".sidecar.json")
    side.write_text(json.dumps(meta, indent=2) + "\n")
    print(f"wrote {args.out} ({len(profile)} points) and {side}")
    return 0


def _fit(args: argparse.Namespace, profile) -> tuple:
    """The fit report, whether attention was fitted, and the token-count view ``(b, y)`` (None with attention)."""
    from llmstab.fluid_models.profiling.attention import fit_attention, has_contexts

    attention = args.attention == "on" or (args.attention == "auto" and has_contexts(profile))
    if attention:
        if args.rows is not None:
            raise ProfileError("--rows", "the attention fit uses every row; add --attention off to fit one kind")
        report = fit_attention(profile, families=args.families, candidates=args.candidates, method=args.method,
                               tolerance=args.tolerance, max_tokens=args.max_tokens)
        return report, True, None
    rows = args.rows or "prefill"
    report = fit_profile(profile, families=args.families, candidates=args.candidates, method=args.method,
                         tolerance=args.tolerance, rows=rows, max_tokens=args.max_tokens)
    b, y = profile.select(rows).by_tokens()
    if args.max_tokens is not None:
        b, y = b[b <= args.max_tokens], y[b <= args.max_tokens]
    return report, False, (b, y)


def _where_worst(row: dict) -> str:
    worst = row.get("max_rel_error_at")
    if not worst:
        return str(row["max_rel_error_at_tokens"])
    if worst["kind"] == "decode":
        return f"{worst['decode_tokens']} decodes at context {worst['context_len']}"
    if worst["kind"] == "prefill":
        return f"{worst['prefill_tokens']}-token chunk after {worst['context_len']}"
    return f"{worst['prefill_tokens']} prefill + {worst['decode_tokens']} decodes at {worst['context_len']}"


def _print_fit(report, attention: bool, structure: dict | None, args: argparse.Namespace) -> None:
    best = report.best
    lo, hi = best.token_range
    print(f"{best.n_points} points, {lo}..{hi} tokens ({report.selected_rows} rows), method {best.method}")
    print(f"{'family':18} {'tile':>5} {'R^2':>9} {'max rel err':>12}  at")
    for row in report.table_rows():
        print(f"{row['family']:18} {str(row['tile']):>5} {row['r2']:9.5f} {row['max_rel_error']:12.4%}  "
              f"{_where_worst(row)}")
    print(f"chosen: {best.family} {model_parameters(best)}")
    if attention:
        print("attention: ms per (decode token x context token) and per (prefill token x context token), "
              "a chunk of c tokens after s cached costing prefill * c * (s + c/2)")
    print(f"rule: {report.rule}")
    if structure and best.tile is not None and structure["jumps_at_tokens"]:
        print(f"jumps > 6% after {len(structure['jumps_at_tokens'])} token counts; "
              f"{structure['fraction_of_jumps_at_tile_multiples']:.0%} of them at multiples of {best.tile}")
    if args.out:
        print(f"wrote {args.out}")


#: Largest profile ``fit`` reads: rows per CSV and bytes per file. Public profiles have at most about 15,000
#: rows (Vidur's attention.csv); the minimax LPs over 20,000 distinct points take about 3 s of CPU, so a fit at
#: the limit ends within 10 s (tests/test_fitting.py times one).
MAX_PROFILE_ROWS, MAX_PROFILE_BYTES = 20_000, 64 * 2**20


def check_profile_size(path: Path) -> None:
    """Refuse, before parsing, a profile CSV (or a folder's CSVs) beyond :data:`MAX_PROFILE_ROWS` rows or
    :data:`MAX_PROFILE_BYTES` bytes: fitting a million rows ran for minutes and then failed in the solver.

    >>> check_profile_size(Path("no-such-profile.csv"))  # a missing file is reported by the reader
    """
    for csv_path in (sorted(path.glob("*.csv")) if path.is_dir() else [path] if path.is_file() else []):
        size = csv_path.stat().st_size
        if size > MAX_PROFILE_BYTES:
            raise ProfileError(str(csv_path), f"{size:,} bytes exceed the limit of {MAX_PROFILE_BYTES:,} for a profile")
        with open(csv_path, "rb") as handle:
            rows = sum(1 for _ in handle) - 1
        if rows > MAX_PROFILE_ROWS:
            raise ProfileError(str(csv_path), f"{rows:,} rows exceed the limit of {MAX_PROFILE_ROWS:,} for a "
                                              "profile (fit a subsample of its rows)")


def cmd_fit(args: argparse.Namespace) -> int:
    """Fit the families (with attention when the profile has contexts), print them, write the model file."""
    fmt = detect_format(args.profile) if args.format == "auto" else args.format  # the header alone: first
    check_profile_size(args.profile)
    profile = read_any(args.profile, fmt, args.layers)
    report, attention, points = _fit(args, profile)
    best = report.best
    structure = None
    if points is not None:
        jump_at = jumps(*points)
        structure = {
            "jumps_at_tokens": jump_at.tolist(),
            "fraction_of_jumps_at_tile_multiples": None if best.tile is None else tile_alignment(jump_at, best.tile),
        }
    if args.out:
        write_model_file(report, args.out, {"file": str(args.profile), **profile.source, "format": fmt})
    if args.json:
        print(json.dumps({"format": fmt, "attention": attention, "chosen": best.summary(), "rule": report.rule,
                          "fits": report.table_rows(), "structure": structure, "model": model_parameters(best),
                          "model_file": str(args.out) if args.out else None}))
        return 0
    _print_fit(report, attention, structure, args)
    return 0


def cmd_presets(args: argparse.Namespace) -> int:
    """List the presets, or show one."""
    from llmstab.fluid_models.profiling.presets import preset, preset_info, preset_names

    names = [args.name] if args.name else preset_names()
    infos = {n: preset_info(n) for n in names}
    for n in names:
        preset(n)
    if args.json:
        print(json.dumps(infos if args.name is None else infos[args.name]))
        return 0
    for name, info in infos.items():
        prov = info["provenance"]
        fit = prov.get("fit")
        quality = f"; fit R^2 {fit['r2']}, max rel err {fit['max_rel_error']:.1%}" if fit else ""
        print(f"{name}: {info['batch_time']} ms")
        hardware = (f"{prov.get('model')} on {prov.get('gpu')}" if prov.get("gpu") != "not recorded"
                    else "model and GPU not recorded")
        print(f"    {hardware}; {prov['source']}{quality}")
        if args.name:
            print(json.dumps(info, indent=2))
    return 0
