"""Attention terms: the joint fit of t(n) + decode x sum(context) + prefill x sum c(s + c/2), Vidur's
attention profile composed into whole iterations, the shipped attention preset, the decode bound from
KV bytes and bandwidth, and format detection in ``llmstab fit``."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from llmstab.fluid_models.batch_time import PiecewiseLinear, Staircase, Tiled
from llmstab.fluid_models.profiling.attention import (
    AttentionFit,
    attention_features,
    attention_from_parameters,
    decode_attention_bound,
    fit_attention,
    fit_attention_family,
    kv_bytes_per_token,
    prefill_work,
    read_vidur_attention,
)
from llmstab.fluid_models.profiling.fitting import load_model_file, read_model_file, write_model_file
from llmstab.fluid_models.profiling.presets import VIDUR_ATTENTION, build_attention_preset, preset, preset_info
from llmstab.fluid_models.profiling.profiles import Profile, ProfileError, detect_format, read_vidur_mlp

ROOT = Path(__file__).resolve().parent.parent
VIDUR_DIR = "gpu_profiles/vidur/a100_llama2_70b_tp2"


def _grid() -> tuple[list, list, list, list]:
    """Decode batches at three contexts and prefill chunks after three cached lengths (kind, n, P, D, ctx)."""
    rows = [("decode", n, 0, n, k) for n in (1, 2, 4, 8, 16, 32, 64, 128) for k in (128, 512, 2048)]
    rows += [("prefill", c, c, 0, s) for c in range(64, 1025, 64) for s in (0, 512, 1024)]
    kind, n, p, d, ctx = (list(col) for col in zip(*rows))
    return kind, n, p, d, ctx


def _synthetic(model, attention: AttentionFit) -> Profile:
    kind, n, p, d, ctx = _grid()
    shape = Profile(n, np.ones(len(n)), kind, p, d, ctx)
    decode, work = attention_features(shape)
    times = np.asarray(model(np.array(n)), dtype=float) + attention.time(decode, work)
    return Profile(n, times, kind, p, d, ctx)


@settings(max_examples=10)
@given(st.sampled_from(["staircase", "piecewise_linear", "tiled"]), st.sampled_from([32, 64, 128]),
       st.floats(1e-5, 5e-4), st.floats(1e-6, 5e-5))
def test_known_coefficients_are_recovered(family, tile, decode, prefill):
    truth = {"staircase": Staircase(11.28, 3.5, tile), "piecewise_linear": PiecewiseLinear(9.0, 0.02, tile),
             "tiled": Tiled(4.0, tile, 0.01, 8.0)}[family]
    attention = AttentionFit(float(f"{decode:.4g}"), float(f"{prefill:.4g}"))
    fit = fit_attention_family(_synthetic(truth, attention), family, (32, 64, 128))
    assert fit.tile == tile and fit.max_rel_error < 1e-5
    assert fit.attention.decode == pytest.approx(attention.decode, rel=1e-4)
    assert fit.attention.prefill == pytest.approx(attention.prefill, rel=1e-4)
    got, want = fit.model.parameters(), truth.parameters()
    assert got.pop("kind") == want.pop("kind") and got == pytest.approx(want, rel=1e-4)


@settings(max_examples=50)
@given(st.lists(st.integers(1, 2048), min_size=1, max_size=12))
def test_a_prompts_prefill_attention_does_not_depend_on_its_chunking(chunks):
    prompt = sum(chunks)
    starts = np.cumsum([0] + chunks[:-1])
    assert float(np.sum(prefill_work(np.array(chunks), starts))) == pytest.approx(prompt ** 2 / 2, rel=1e-12)


def test_features_and_the_worst_point():
    truth, attention = Staircase(10.0, 2.0, 64), AttentionFit(1e-4, 2e-5)
    profile = _synthetic(truth, attention)
    times = profile.time_ms.copy()
    i = 30  # one measurement 20 % above the model: the minimax fit must point at it or spread the error
    times[i] *= 1.2
    noisy = Profile(profile.tokens, times, profile.kind, profile.prefill_tokens, profile.decode_tokens,
                    profile.context_len)
    report = fit_attention(noisy, candidates=(64,))
    fit = report.best
    decode, work = attention_features(noisy)
    pred = fit.model(noisy.tokens) + fit.attention.time(decode, work)
    rel = np.abs(pred - times) / times
    # the reported error and its place are those of the written (rounded) coefficients
    assert fit.max_rel_error == pytest.approx(rel.max(), rel=1e-9)
    j = int(np.argmax(rel))
    assert (fit.worst["kind"], fit.worst["tokens"], fit.worst["context_len"]) == (
        noisy.kind[j], noisy.tokens[j], noisy.context_len[j])
    assert fit.worst["measured_ms"] == pytest.approx(times[j], rel=1e-6)
    assert 0 < fit.max_rel_error < 0.2  # better than ignoring the outlier's 20 %


def test_the_fit_needs_contexts_and_known_families():
    profile = _synthetic(Staircase(10.0, 2.0, 64), AttentionFit(1e-4, 2e-5))
    one_context = profile.context_len == 512
    keep = (profile.kind == "prefill") | one_context
    single = Profile(profile.tokens[keep], profile.time_ms[keep], profile.kind[keep], profile.prefill_tokens[keep],
                     profile.decode_tokens[keep], profile.context_len[keep])
    with pytest.raises(ProfileError, match="two or more contexts"):
        fit_attention(single)
    with pytest.raises(ProfileError, match="unknown"):
        fit_attention(profile, families=("table",))


def test_model_file_carries_the_attention_terms(tmp_path):
    profile = _synthetic(Tiled(4.0, 64, 0.01, 8.0), AttentionFit(1.4e-4, 2e-5))
    report = fit_attention(profile, candidates=(32, 64, 128))
    doc = write_model_file(report, tmp_path / "m.yaml", {"note": "synthetic"})
    assert doc["batch_time"]["attention"] == {"decode": 1.4e-4, "prefill": 2e-5}
    params = read_model_file(tmp_path / "m.yaml")
    assert attention_from_parameters(params) == AttentionFit(1.4e-4, 2e-5)
    assert load_model_file(tmp_path / "m.yaml")(np.array([64]))[0] == pytest.approx(4.0 + 0.64 + 8.0)
    bad = dict(params, attention={"decode": 1e-4})
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump(dict(doc, batch_time=bad)))
    with pytest.raises(ProfileError, match=r"^.*bad.yaml.attention: must be a mapping with exactly decode and prefill$"):
        load_model_file(tmp_path / "bad.yaml")


def test_decode_bound_is_kv_bytes_over_bandwidth():
    cfg = json.loads((ROOT / "fluid_models/model_configs/mistral-7b.json").read_text())
    head_dim = cfg["hidden_size"] // cfg["num_attention_heads"]
    kv = 2 * cfg["num_hidden_layers"] * cfg["num_key_value_heads"] * head_dim * 2
    assert kv_bytes_per_token("mistral-7b") == kv
    low, high = decode_attention_bound("mistral-7b", 960.0, (0.5, 0.9))
    assert low == pytest.approx(kv / 960e9 * 1e3 / 0.9) and high == pytest.approx(kv / 960e9 * 1e3 / 0.5)
    assert decode_attention_bound("mistral-7b", 960.0, (1.0, 1.0))[0] < low  # more efficiency, less time
    assert kv_bytes_per_token("mistral-7b", tensor_parallel=2) == kv // 2
    with pytest.raises(ProfileError, match="efficiency"):
        decode_attention_bound("mistral-7b", 960.0, (0.9, 0.5))


# --- the Vidur A100 profile with attention ----------------------------------------------------


def _raw_rows(path: Path) -> list[dict]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def test_vidur_rows_are_composed_from_the_raw_files(shared_data):
    folder = shared_data / VIDUR_DIR
    profile = read_vidur_attention(folder, n_layers=48)
    mlp = read_vidur_mlp(folder / "mlp.csv", 48, tensor_parallel=2, per_iteration=("emb",))
    linear = dict(zip(mlp.tokens.tolist(), mlp.time_ms.tolist()))
    raw = _raw_rows(folder / "attention.csv")
    # README's example: 128 decodes at context 2048 (0.349 ms per layer for the kernel)
    row = next(r for r in raw if r["is_prefill"] == "False" and r["batch_size"] == "128"
               and r["kv_cache_size"] == "2048")
    layer = sum(float(row[f"time_stats.{op}.median"]) for op in ("attn_input_reshape", "attn_decode",
                                                                   "attn_output_reshape"))
    i = np.flatnonzero((profile.kind == "decode") & (profile.tokens == 128) & (profile.context_len == 2048))
    assert i.size == 1 and profile.time_ms[i[0]] == pytest.approx(linear[128] + 48 * layer)
    # only measured token counts: decode batches of 3 requests are dropped (mlp.csv has no 3-token row)
    assert 3 in profile.source["dropped_token_counts"] and 3 not in profile.tokens
    assert profile.source["shape"]["n_expanded_embd"] == "22016"  # CodeLlama-34B's MLP width
    assert set(profile.kind) == {"decode", "prefill"} and profile.context_len.max() == 4032


@pytest.fixture(scope="module")
def vidur_cli(tmp_path_factory) -> tuple[dict, Path]:
    folder = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / VIDUR_DIR
    if not folder.is_dir():
        pytest.skip("../shared/data is not beside this checkout")
    out = tmp_path_factory.mktemp("vidur") / "model.yaml"
    done = subprocess.run([sys.executable, "-m", "llmstab.checkers.cli.main", "fit", str(folder), "--layers", "48",
                           "--out", str(out), "--json"], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout), out


def test_cli_fits_the_vidur_folder_with_attention(vidur_cli, shared_data):
    result, out = vidur_cli
    assert result["format"] == "vidur-attention" and result["attention"] is True
    shipped = preset_info(VIDUR_ATTENTION)["batch_time"]
    model = dict(result["model"])
    assert model.pop("unit") == "ms" and model == shipped  # the preset is this fit, coefficient for coefficient
    doc = yaml.safe_load(out.read_text())
    assert doc["batch_time"]["attention"] == shipped["attention"] and doc["source"]["sha256"]
    # the reported error is the largest over every composed iteration, recomputed here from the preset
    profile = read_vidur_attention(shared_data / VIDUR_DIR, n_layers=48)
    decode, work = attention_features(profile)
    pred = preset(VIDUR_ATTENTION)(profile.tokens) + attention_from_parameters(shipped).time(decode, work)
    rel = np.abs(pred - profile.time_ms) / profile.time_ms
    assert result["chosen"]["max_rel_error"] == pytest.approx(rel.max(), abs=1e-6)
    worst = result["chosen"]["max_rel_error_at"]
    j = int(np.argmax(rel))
    assert (worst["kind"], worst["tokens"], worst["context_len"]) == (profile.kind[j], profile.tokens[j],
                                                                     profile.context_len[j])
    assert rel.max() < 0.15


def test_attention_preset_is_physical_and_recorded(shared_data):
    info = preset_info(VIDUR_ATTENTION)
    prov = info["provenance"]
    assert {"source", "model", "gpu", "shape", "fit"} <= set(prov) and "tensor parallel 2" in prov["gpu"]
    # per KV byte the decode coefficient implies a bandwidth below the A100-80GB's 2039 GB/s peak
    # (attention cannot read the cache faster than memory allows) and above a third of it
    kv = 2 * 48 * (8 // 2) * (8192 // 64) * 2
    assert prov["kv_bytes_per_token_per_gpu"] == kv
    achieved = kv / info["batch_time"]["attention"]["decode"] * 1e3 / 1e9
    assert achieved == pytest.approx(prov["decode_effective_bandwidth_gb_s"], rel=1e-4)
    assert 2039 / 3 < achieved < 2039
    # the Mistral-7B / RTX 6000 Ada range contains the cost at the A100's achieved efficiency
    at_a100 = kv_bytes_per_token("mistral-7b") / (960e9 * prov["decode_fraction_of_a100_80gb_bandwidth"]) * 1e3
    low, high = decode_attention_bound("mistral-7b", 960.0)
    assert low < at_a100 < high
    assert build_attention_preset(shared_data / "gpu_profiles")["batch_time"] == info["batch_time"]


@pytest.mark.parametrize("path, fmt", [
    ("gpu_profiles/vidur/h100/Llama-2-7b-hf_mlp.csv", "vidur"),
    (VIDUR_DIR, "vidur-attention"),
    (VIDUR_DIR + "/attention.csv", "vidur-attention"),
    ("gpu_profiles/sarathi_serve/figure2_decode.csv", "sarathi"),
    ("gpu_profiles/slai_rtx6000ada/batch_time_vs_chunk.csv", "slai"),
])
def test_formats_are_told_from_the_header(shared_data, path, fmt):
    assert detect_format(shared_data / path) == fmt


def test_an_unknown_header_gets_a_one_line_hint(tmp_path, shared_data):
    for target in (shared_data / VIDUR_DIR / "cpu_overheads.csv", shared_data / "traces/sharegpt_8k_llama2_tokenizer.csv"):
        done = subprocess.run([sys.executable, "-m", "llmstab.checkers.cli.main", "fit", str(target)],
                              capture_output=True, text=True, timeout=120)
        assert done.returncode == 2 and done.stdout == ""
        assert done.stderr.count("\n") == 1 and len(done.stderr) < 400, done.stderr
        assert "cannot tell the format" in done.stderr and "--format" in done.stderr
    # a Vidur mlp.csv read as a profile CSV (the old default) names a few columns, not all of them
    done = subprocess.run([sys.executable, "-m", "llmstab.checkers.cli.main", "fit",
                           str(shared_data / "gpu_profiles/vidur/h100/Llama-2-7b-hf_mlp.csv"), "--format", "profile"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and len(done.stderr) < 400 and "missing column(s) tokens, time_ms" in done.stderr
