"""The fitter (tile search, minimax LP, least squares, selection rule, monotone table),
model files, presets, and their use through the loader and the CLI."""

from __future__ import annotations

import json

import cvxpy as cp
import numpy as np
import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from llmstab.checkers.cli.main import main
from llmstab.checkers.pipeline import check_engine
from llmstab.checkers.spec import engine_spec_from_document, parse_batch_time
from llmstab.checkers.errors import InputError
from llmstab.fluid_models.batch_time import PiecewiseLinear, Staircase, Tiled
from llmstab.fluid_models.profiling.fitting import (
    fit_family,
    fit_profile,
    fit_table,
    isotonic,
    jumps,
    load_model_file,
    tile_alignment,
    write_model_file,
)
from llmstab.fluid_models.profiling.presets import build_public_presets, preset, preset_info, preset_names
from llmstab.fluid_models.profiling.profiles import Profile, ProfileError, read_vidur_mlp

TOKENS = np.concatenate([[1, 2, 4], np.arange(8, 2049, 8)])
TILES = (16, 32, 64, 128, 256)


def _same(m1, m2) -> bool:
    """Two models give the same exact batch time at every token count up to 1100."""
    return m1.kind == m2.kind and all(m1.exact(b) == m2.exact(b) for b in range(1, 1100, 7))


@settings(max_examples=12)
@given(st.sampled_from(TILES), st.floats(1.0, 50.0), st.floats(0.1, 40.0))
def test_staircase_is_recovered_exactly(tile, c, a):
    truth = Staircase(round(c, 3), round(a, 3), tile)
    fit = fit_family(TOKENS, truth(TOKENS), "staircase", TILES)
    assert fit.tile == tile
    assert fit.max_rel_error < 1e-5 and fit.r2 > 1 - 1e-8
    assert fit.model.parameters()["a"] == pytest.approx(round(a, 3), rel=1e-4)


@settings(max_examples=12)
@given(st.sampled_from(TILES), st.floats(0.5, 20.0), st.floats(0.5, 10.0), st.floats(0.001, 0.05))
def test_tiled_is_recovered_with_noise(tile, c, t_lin, t_nl):
    truth = Tiled(round(t_lin, 3), tile, round(t_nl, 4), round(c, 3))
    noise = 1 + 0.01 * np.random.default_rng(tile).uniform(-1, 1, TOKENS.size)
    fit = fit_family(TOKENS, truth(TOKENS) * noise, "tiled", TILES)
    # the tile is found and the error stays at the noise level
    assert fit.tile == tile
    assert fit.max_rel_error <= 0.0101


def test_piecewise_linear_knee_is_recovered():
    truth = PiecewiseLinear(12.5, 0.05, 128)
    fit = fit_family(TOKENS, truth(TOKENS), "piecewise_linear", (0, 64, 128, 256))
    assert fit.tile == 128 and fit.max_rel_error < 1e-6


@settings(max_examples=8)
@given(st.integers(0, 10_000), st.sampled_from(["staircase", "piecewise_linear", "tiled"]), st.sampled_from(TILES))
def test_minimax_beats_least_squares_on_the_largest_error(seed, family, tile):
    rng = np.random.default_rng(seed)
    y = np.cumsum(rng.uniform(0.01, 1.0, TOKENS.size)) + 5
    mm = fit_family(TOKENS, y, family, (tile,), "minimax")
    ls = fit_family(TOKENS, y, family, (tile,), "lsq")
    # the LP's optimum is the smallest largest relative error a non-negative fit can have
    assert mm.objective[tile] <= ls.max_rel_error + 1e-6
    # and the rounded model written out has (up to rounding) the LP's optimum
    assert mm.max_rel_error == pytest.approx(mm.objective[tile], abs=1e-4)


def test_least_squares_minimises_the_relative_squares():
    rng = np.random.default_rng(1)
    y = 3 + 0.01 * TOKENS * (1 + 0.05 * rng.standard_normal(TOKENS.size))
    fit = fit_family(TOKENS, y, "piecewise_linear", (0,), "lsq")
    X = np.column_stack([np.ones(TOKENS.size), TOKENS]) / y[:, None]
    theta, *_ = np.linalg.lstsq(X, np.ones(TOKENS.size), rcond=None)  # unconstrained optimum is >= 0 here
    assert fit.model.parameters()["c"] == pytest.approx(theta[0], rel=1e-4)
    assert fit.model.parameters()["a"] == pytest.approx(theta[1], rel=1e-4)


def test_fitted_models_are_non_decreasing():
    rng = np.random.default_rng(7)
    y = 10 + rng.uniform(0, 5, TOKENS.size)  # no structure at all
    for family in ("staircase", "piecewise_linear", "tiled"):
        t = fit_family(TOKENS, y, family).model(np.arange(1, 2049))
        assert np.all(np.diff(t) >= 0) and t[0] > 0


@settings(max_examples=40)
@given(st.lists(st.floats(-100, 100), min_size=1, max_size=12))
def test_isotonic_is_the_least_squares_projection(values):
    v = np.array(values)
    iso = isotonic(v)
    assert np.all(np.diff(iso) >= -1e-9)
    assert iso.sum() == pytest.approx(v.sum(), abs=1e-6)
    x = cp.Variable(v.size)
    cons = [cp.diff(x) >= 0] if v.size > 1 else []
    best = cp.Problem(cp.Minimize(cp.sum_squares(x - v)), cons).solve(solver=cp.CLARABEL)
    assert np.sum((iso - v) ** 2) <= best + 1e-5 * (1 + best)


def test_table_fit_is_monotone_and_interpolates_monotone_data():
    y = np.array([5.0, 5.0, 6.0, 6.5, 9.0])
    b = np.array([8, 16, 24, 32, 40])
    f = fit_table(b, y)
    assert f.max_rel_error == 0 and f.model(np.array([20]))[0] == pytest.approx(5.5)
    noisy = fit_table(b, np.array([5.0, 4.0, 6.0, 5.0, 9.0]))
    assert np.all(np.diff(noisy.model(np.arange(8, 41))) >= 0)


def test_jumps_and_alignment():
    b = np.arange(8, 513, 8)
    y = Staircase(5, 2, 64)(b).astype(float)
    at = jumps(b, y)
    assert at.tolist() == [64, 128, 192, 256, 320, 384, 448]
    assert tile_alignment(at, 64) == 1.0 and tile_alignment(at, 128) == pytest.approx(3 / 7)


def test_selection_rule_prefers_two_coefficients_unless_tiled_is_clearly_better():
    staircase_data = Staircase(10, 5, 64)(TOKENS) * (1 + 0.004 * np.sin(TOKENS))
    rep = fit_profile(TOKENS, staircase_data, candidates=(32, 64, 128))
    assert rep.best.family == "staircase" and rep.best.tile == 64
    assert rep.fits["tiled"].max_rel_error <= rep.fits["staircase"].max_rel_error + 1e-6  # tiled nests it
    tiled_data = Tiled(4, 128, 0.05, 10)(TOKENS)
    rep = fit_profile(TOKENS, tiled_data, candidates=(32, 64, 128))
    assert rep.best.family == "tiled" and rep.best.tile == 128
    assert rep.fits["staircase"].max_rel_error > rep.best.max_rel_error + 0.01
    assert "more than 0.01" in rep.rule


def test_fit_errors_are_input_errors():
    with pytest.raises(ProfileError, match="at least two points"):
        fit_family(np.array([8]), np.array([1.0]), "tiled")
    with pytest.raises(ProfileError, match="must be one of"):
        fit_family(TOKENS, TOKENS + 1.0, "cubic")
    with pytest.raises(ProfileError, match="no decode rows"):
        fit_profile(Profile([8, 16], [1.0, 2.0]), rows="decode")


# --- the Vidur H100 Llama-2-7B data: tile structure at multiples of 64 -----------------------


def test_vidur_h100_llama2_7b_tile_is_64(shared_data):
    p = read_vidur_mlp(shared_data / "gpu_profiles/vidur/h100/Llama-2-7b-hf_mlp.csv", n_layers=32)
    rep = fit_profile(p)
    for family in ("staircase", "tiled"):
        fit = rep.fits[family]
        assert fit.tile == 64
        # the search is decisive: halving or doubling the tile is clearly worse
        assert fit.objective[32] > fit.objective[64] + 0.01 and fit.objective[128] > fit.objective[64] + 0.01
    best = rep.best
    assert best.tile == 64 and best.family in ("staircase", "tiled")
    assert best.max_rel_error < 0.15 and best.r2 > 0.98
    assert best.max_rel_error_at in p.tokens
    # model-free: at least 10 jumps of more than 6%, and most of them right after a multiple of 64
    b, y = p.by_tokens()
    at = jumps(b, y)
    assert at.size >= 10 and tile_alignment(at, 64) >= 0.8
    # the fitted model is flat across a tile and jumps right after it (the data's jump at 512 -> 520)
    t = best.model(np.arange(449, 514))
    assert np.all(t[:-1] == t[0]) and t[-1] > t[-2]


# --- model files and presets through the loader and the CLI ---------------------------------


def _engine_doc(batch_time: dict) -> dict:
    return {"engine": {"batch_time": batch_time, "token_budget": 512}, "policy": "sarathi",
            "workload": {"classes": [{"name": "chat", "rate": 12, "prompt": {"dist": "deterministic", "mean": 129},
                                      "decode": {"dist": "geometric", "mean": 112}}]}}


def test_model_file_round_trips_through_the_loader(tmp_path):
    truth = Tiled(4, 128, 0.05, 10)
    rep = fit_profile(TOKENS, truth(TOKENS) * (1 + 0.002 * np.cos(TOKENS)))
    doc = write_model_file(rep, tmp_path / "m.yaml", {"note": "synthetic"})
    assert doc["fit"]["rule"] == rep.rule and doc["batch_time"]["kind"] == rep.best.family
    model = load_model_file(tmp_path / "m.yaml")
    np.testing.assert_allclose(model(TOKENS), rep.best.model(TOKENS))
    parsed = parse_batch_time({"kind": "profile", "file": "m.yaml"}, base_dir=tmp_path)
    assert _same(parsed, model)
    spec = engine_spec_from_document(_engine_doc({"kind": "profile", "file": "m.yaml"}), "doc", tmp_path)
    assert _same(spec.engine.batch_time, model)
    (tmp_path / "junk.yaml").write_text("a: 1\n")
    with pytest.raises(InputError, match=r"engine.batch_time.file: .*not a batch-time model file"):
        engine_spec_from_document(_engine_doc({"kind": "profile", "file": "junk.yaml"}), "doc", tmp_path)


def test_table_model_file(tmp_path):
    rep = fit_profile(TOKENS, 5 + np.sqrt(TOKENS), families=("table",))
    write_model_file(rep, tmp_path / "t.yaml")
    m = parse_batch_time({"kind": "profile", "file": "t.yaml"}, base_dir=tmp_path)
    assert m.kind == "table" and np.all(np.diff(m(np.arange(1, 2049))) >= 0)


def test_li_dai_peng_preset_is_the_published_staircase():
    info = preset_info("li-dai-peng-codellama34b-a100")
    assert info["batch_time"] == {"kind": "staircase", "c": 11.28, "a": 35.47, "b0": 128}
    assert "2504.07347" in info["provenance"]["source"]
    m = parse_batch_time({"kind": "preset", "name": "li-dai-peng-codellama34b-a100"})
    assert _same(m, Staircase(11.28, 35.47, 128))
    # the paper's capacity b_max / t(b_max) = 512 / 153.16 tokens per ms follows from the preset
    report = check_engine(engine_spec_from_document(
        _engine_doc({"kind": "preset", "name": "li-dai-peng-codellama34b-a100"}), "doc", None))
    assert report.capacity["exact_tokens_per_ms"] == "12800/3829"


def _spec_reads_attention() -> bool:
    """Whether the input parser accepts ``batch_time.attention`` yet (the KV-memory work adds it)."""
    try:
        parse_batch_time({"kind": "staircase", "c": 1, "a": 1, "b0": 1, "attention": {"decode": 0, "prefill": 0}})
    except InputError:
        return False
    return True


def test_every_preset_loads_and_records_provenance():
    names = preset_names()
    assert len(names) >= 8
    for name in names:
        info = preset_info(name)
        assert {"source", "model", "gpu"} <= set(info["provenance"])
        assert preset(name)(np.array([512]))[0] > 0
        if "attention" not in info["batch_time"]:
            assert _same(parse_batch_time({"kind": "preset", "name": name}), preset(name))
        elif _spec_reads_attention():
            parse_batch_time({"kind": "preset", "name": name})
    with pytest.raises(InputError, match="engine.batch_time.name: unknown preset 'nope'"):
        parse_batch_time({"kind": "preset", "name": "nope"})


def test_shipped_presets_are_the_fits_of_the_public_data(shared_data):
    rebuilt = build_public_presets(shared_data / "gpu_profiles")
    shipped = {n: preset_info(n) for n in preset_names()}
    assert set(rebuilt) == set(shipped)
    for name, entry in rebuilt.items():
        got, want = entry["batch_time"], shipped[name]["batch_time"]
        assert got["kind"] == want["kind"], name
        for key, value in want.items():
            if key != "kind":
                assert got[key] == pytest.approx(value, rel=1e-3, abs=1e-6), (name, key)


def test_cli_presets_and_fit(tmp_path, capsys, shared_data):
    assert main(["presets"]) == 0
    out = capsys.readouterr().out
    assert all(n in out for n in preset_names())
    assert main(["presets", "slai-mistral7b-rtx6000ada", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["provenance"]["gpu"] == "NVIDIA RTX 6000 Ada"
    assert main(["presets", "nope"]) == 2
    assert capsys.readouterr().err.count("\n") == 1
    src = shared_data / "gpu_profiles/vidur/h100/Llama-2-7b-hf_mlp.csv"
    out_file = tmp_path / "llama2.yaml"
    assert main(["fit", str(src), "--format", "vidur", "--layers", "32", "--out", str(out_file), "--json"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert res["chosen"]["tile"] == 64 and res["structure"]["fraction_of_jumps_at_tile_multiples"] >= 0.8
    doc = yaml.safe_load(out_file.read_text())
    assert doc["source"]["sha256"] and doc["fit"]["max_rel_error"] == res["chosen"]["max_rel_error"]
    assert main(["fit", str(src), "--format", "vidur"]) == 2
    assert "--layers" in capsys.readouterr().err


def test_llmstab_check_reads_presets_and_profiles(tmp_path, capsys):
    verdicts = {}
    for name in ("li-dai-peng-codellama34b-a100", "vidur-llama2-7b-h100"):
        doc = _engine_doc({"kind": "preset", "name": name})
        doc["workload"]["classes"][0]["rate"] = 40
        path = tmp_path / f"{name}.yaml"
        path.write_text(yaml.safe_dump(doc))
        assert main(["check", str(path), "--json"]) == 0
        verdicts[name] = json.loads(capsys.readouterr().out)["load_verdict"]
    # 40 requests/s exceed the A100 staircase's 13.87/s but not the H100 non-attention fit's capacity
    assert verdicts == {"li-dai-peng-codellama34b-a100": "unstable", "vidur-llama2-7b-h100": "stable"}
    rep = fit_profile(TOKENS, Staircase(11.28, 35.47, 128)(TOKENS).astype(float))
    write_model_file(rep, tmp_path / "ldp.yaml")
    doc = _engine_doc({"kind": "profile", "file": "ldp.yaml"})
    (tmp_path / "fitted.yaml").write_text(yaml.safe_dump(doc))
    assert main(["check", str(tmp_path / "fitted.yaml"), "--json"]) == 0
    # a fit of the staircase's own values gives back the paper's capacity exactly
    assert json.loads(capsys.readouterr().out)["capacity"]["exact_tokens_per_ms"] == "12800/3829"


def test_max_tokens_limits_the_fitted_range():
    y = Staircase(10, 5, 64)(TOKENS).astype(float)
    y[TOKENS > 1024] *= 3  # a regime the engine never reaches
    full = fit_profile(TOKENS, y, candidates=(32, 64, 128))
    limited = fit_profile(TOKENS, y, candidates=(32, 64, 128), max_tokens=1024)
    assert limited.best.token_range == (1, 1024) and limited.best.max_rel_error < 1e-6
    assert limited.best.tile == 64 and full.best.max_rel_error > 0.1


def _fit_cli(path, timeout: float = 300):
    """``llmstab fit PATH --json`` as a subprocess: its result and the CPU seconds it used."""
    import resource
    import subprocess
    import sys

    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    done = subprocess.run([sys.executable, "-m", "llmstab.checkers.cli.main", "fit", str(path), "--json"],
                          capture_output=True, text=True, timeout=timeout)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return done, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def _tiled_profile_csv(path, rows: int) -> None:
    b = np.arange(1, rows + 1)
    t = 10 + 0.03 * 64 * -(-b // 64) + 0.05 * np.sin(b)
    path.write_text("tokens,time_ms\n" + "".join(f"{x},{y:.4f}\n" for x, y in zip(b, t)))


def test_a_profile_at_the_row_limit_fits_within_ten_cpu_seconds(tmp_path):
    """Issue 10: a large profile ran for minutes (by_tokens was quadratic; 50,000 rows passed the door)."""
    from llmstab.checkers.cli.profile import MAX_PROFILE_ROWS

    path = tmp_path / "at_limit.csv"
    _tiled_profile_csv(path, MAX_PROFILE_ROWS)
    done, cpu = _fit_cli(path)
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    assert out["chosen"]["n_points"] == MAX_PROFILE_ROWS and cpu < 10, cpu


@pytest.mark.parametrize("rows", [20_001, 1_000_000])
def test_a_profile_past_the_limit_is_refused_in_one_line_quickly(tmp_path, rows):
    """Issue 10: a 1e6-row profile ended in a SolverError after 7.5 minutes."""
    path = tmp_path / "huge.csv"
    path.write_text("tokens,time_ms\n" + "1,1\n" * rows)
    done, cpu = _fit_cli(path, timeout=120)
    assert done.returncode == 2 and done.stdout == "" and done.stderr.count("\n") == 1, done.stderr
    assert f"{rows:,} rows exceed the limit" in done.stderr and cpu < 10, (done.stderr, cpu)
