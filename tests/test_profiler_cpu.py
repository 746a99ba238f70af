"""The profiler's CPU path: a tiny decoder timed end to end, the CSV and sidecar it writes,
and the bad inputs (not a decoder, no CUDA, no torch)."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from llmstab.checkers.cli.main import main
from llmstab.fluid_models.profiling.attention import attention_features, attention_from_parameters
from llmstab.fluid_models.profiling.fitting import load_model_file, read_model_file
from llmstab.fluid_models.profiling.profiler import GridPoint, build_model, default_grid, load_config, prefill_grid, shipped_configs
from llmstab.fluid_models.profiling.profiles import ProfileError, read_profile_csv

torch = pytest.importorskip("torch")

SMALL = ["--max-prefill", "160", "--fine-step", "32", "--decode-batches", "1,4", "--contexts", "16,32",
         "--mixed-budget", "48", "--mixed-decodes", "1,8", "--mixed-context", "16", "--prefill-contexts", "32",
         "--context-chunks", "16,64", "--warmup", "1", "--reps", "2"]


def test_shipped_configurations():
    assert {"mistral-7b", "llama-2-7b", "codellama-34b", "llama-3-8b", "tiny-llama"} <= set(shipped_configs())
    mistral = load_config("mistral-7b")
    assert (mistral["hidden_size"], mistral["num_hidden_layers"], mistral["num_key_value_heads"],
            mistral["intermediate_size"]) == (4096, 32, 8, 14336)
    assert load_config("codellama-34b")["num_hidden_layers"] == 48
    assert load_config("llama-3-8b")["vocab_size"] == 128256


@settings(max_examples=30)
@given(st.integers(1, 4096), st.sampled_from([16, 32, 64, 128]), st.sampled_from([8, 16, 32]))
def test_prefill_grid_is_dense_at_tile_boundaries(max_tokens, tile, step):
    grid = prefill_grid(max_tokens, tile, step, 1024)
    assert grid == sorted(set(grid)) and grid[-1] <= max_tokens and grid[0] == 1
    for m in range(tile, max_tokens + 1, tile):
        assert m in grid  # the last point of a tile ...
        if m + 1 <= max_tokens:
            assert m + 1 in grid  # ... and the first of the next


def test_default_grid_covers_the_issue():
    grid = default_grid()
    kinds = {k: [p for p in grid if p.kind == k] for k in ("prefill", "decode", "mixed")}
    assert max(p.prefill for p in kinds["prefill"]) == 4096
    assert {p.decode for p in kinds["decode"]} == {1, 2, 4, 8, 16, 32, 64, 128, 256, 512}
    assert len({p.context for p in kinds["decode"]}) >= 3
    assert all(p.tokens == 512 and p.decode > 0 and p.prefill > 0 for p in kinds["mixed"])


def test_tiny_decoder_is_seeded_and_answers_one_token_per_sequence():
    cfg = load_config("tiny-llama")
    a, b = build_model(cfg, seed=3), build_model(cfg, seed=3)
    assert all(torch.equal(x, y) for x, y in zip(a.parameters(), b.parameters()))
    hd = cfg["hidden_size"] // cfg["num_attention_heads"]
    ids = torch.randint(0, cfg["vocab_size"], (13,))
    positions = torch.cat([torch.arange(10), torch.full((3,), 20)])
    cache = tuple(torch.randn(3, cfg["num_key_value_heads"], 20, hd) for _ in range(2))
    with torch.inference_mode():
        mixed = a(ids, positions, 10, cache)
        prefill = a(ids[:10], positions[:10], 10, None)
        decode = a(ids[10:], positions[10:], 0, cache)
    assert mixed.shape == (4,) and prefill.shape == (1,) and decode.shape == (3,)
    # batching changes no sequence's answer: the mixed batch equals its parts run alone
    assert mixed.tolist() == prefill.tolist() + decode.tolist()


def test_llmstab_profile_on_cpu_then_fit(tmp_path, capsys):
    out = tmp_path / "prof" / "profile.csv"
    assert main(["profile", "--model", "tiny-llama", "--device", "cpu", "--out", str(out), "--quiet", *SMALL]) == 0
    p = read_profile_csv(out)  # the written file passes the validator
    assert set(p.kind) == {"prefill", "decode", "mixed"}
    assert np.all(p.time_ms > 0) and np.all(p.extra["reps"] == 2)
    assert np.all(p.extra["time_ms_min"] <= p.time_ms) and np.all(p.time_ms <= p.extra["time_ms_max"])
    decode = p.select("decode")
    assert sorted(zip(decode.decode_tokens.tolist(), decode.context_len.tolist())) == [(1, 16), (1, 32), (4, 16), (4, 32)]
    assert p.select("mixed").tokens.tolist() == [48, 48]
    meta = json.loads((tmp_path / "prof" / "profile.sidecar.json").read_text())
    assert meta["device"]["type"] == "cpu" and meta["versions"]["torch"] == torch.__version__
    assert meta["run"]["timing"] == "time.perf_counter" and meta["run"]["reps"] == 2
    assert meta["model"]["config"].endswith("tiny-llama.json") and len(meta["model"]["config_sha256"]) == 64
    # the sidecar's command, run again, reproduces the same grid
    command = meta["command"]
    assert command[:2] == ["llmstab", "profile"] and command[command.index("--contexts") + 1] == "16,32"
    again = tmp_path / "again.csv"
    command[command.index("--out") + 1] = str(again)
    assert main(command[1:] + ["--quiet"]) == 0
    q = read_profile_csv(again)
    assert q.tokens.tolist() == p.tokens.tolist() and q.kind.tolist() == p.kind.tolist()
    capsys.readouterr()
    assert main(["fit", str(out), "--out", str(tmp_path / "m.yaml"), "--candidates", "16,32,64",
                 "--attention", "off"]) == 0
    assert "chosen:" in capsys.readouterr().out
    assert load_model_file(tmp_path / "m.yaml")(np.array([64]))[0] > 0
    _contexts_feed_the_attention_fit(out, p, tmp_path)


def _contexts_feed_the_attention_fit(out, p, tmp_path) -> None:
    """``llmstab fit`` on a profile with contexts emits the attention terms, and its error is theirs."""
    prefix = p.select("prefill")
    assert sorted(zip(prefix.prefill_tokens[prefix.context_len > 0].tolist(),
                      prefix.context_len[prefix.context_len > 0].tolist())) == [(16, 32), (64, 32)]
    model_file = tmp_path / "attention.yaml"
    done = subprocess.run([sys.executable, "-m", "llmstab.checkers.cli.main", "fit", str(out), "--candidates",
                           "16,32,64", "--out", str(model_file), "--json"], capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["format"] == "profile" and result["attention"] is True
    params = read_model_file(model_file)
    attention = attention_from_parameters(params)
    assert params["attention"] == result["model"]["attention"] == attention.as_dict()
    decode, work = attention_features(p)
    pred = load_model_file(model_file)(p.tokens) + attention.time(decode, work)
    assert result["chosen"]["n_points"] == len(p)
    assert result["chosen"]["max_rel_error"] == pytest.approx(np.max(np.abs(pred - p.time_ms) / p.time_ms), abs=1e-6)


def _one_line_exit_2(argv, capsys, expected):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and expected in err, err


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_cuda_without_a_gpu_is_bad_input(tmp_path, capsys):
    _one_line_exit_2(["profile", "--model", "tiny-llama", "--device", "cuda", "--out", str(tmp_path / "p.csv")],
                     capsys, "--device: cuda requested but no CUDA device is available")
    assert not (tmp_path / "p.csv").exists()


@pytest.mark.parametrize(
    "config, expected",
    [
        ({"model_type": "t5", "architectures": ["T5ForConditionalGeneration"], "is_encoder_decoder": True},
         "not a decoder-only model"),
        ({"model_type": "bert", "architectures": ["BertModel"], "hidden_size": 768}, "not a decoder-only model"),
        ({"model_type": "bart", "architectures": ["BartForCausalLM"], "is_encoder_decoder": True},
         "not a decoder-only model"),
        ({"model_type": "gpt2", "architectures": ["GPT2LMHeadModel"]}, "'gpt2' is not built by the profiler"),
        ({"model_type": "falcon", "architectures": ["FalconForCausalLM"]}, "is not built by the profiler"),
        ({"model_type": "llama", "architectures": ["LlamaForCausalLM"], "hidden_size": 64}, "intermediate_size"),
    ],
)
def test_a_configuration_that_is_not_a_supported_decoder_is_bad_input(tmp_path, capsys, config, expected):
    path = tmp_path / "config.json"
    path.write_text(json.dumps(config))
    _one_line_exit_2(["profile", "--model", str(path), "--device", "cpu", "--out", str(tmp_path / "p.csv")],
                     capsys, expected)


def test_unknown_model_and_bad_json(tmp_path, capsys):
    _one_line_exit_2(["profile", "--model", "gpt-5", "--device", "cpu", "--out", str(tmp_path / "p.csv")],
                     capsys, "no such file or shipped configuration 'gpt-5'")
    (tmp_path / "c.json").write_text("{not json")
    _one_line_exit_2(["profile", "--model", str(tmp_path / "c.json"), "--out", str(tmp_path / "p.csv")],
                     capsys, "not valid JSON")


def test_without_torch_the_profiler_says_so(monkeypatch):
    monkeypatch.setitem(sys.modules, "torch", None)
    with pytest.raises(ProfileError, match="needs PyTorch"):
        build_model(load_config("tiny-llama"))


def test_grid_point_tokens():
    assert GridPoint("mixed", 504, 8, 1024).tokens == 512


def test_a_chunk_after_cached_tokens_computes_what_the_whole_prompt_does():
    cfg = dict(load_config("tiny-llama"), num_hidden_layers=1)  # one layer: its cached K, V are the prompt's own, computed below
    model = build_model(cfg, seed=5)
    layer, nh, nkv = model.layers[0], cfg["num_attention_heads"], cfg["num_key_value_heads"]
    hd, s, c = cfg["hidden_size"] // nh, 7, 5
    ids = torch.randint(0, cfg["vocab_size"], (s + c,))
    outputs = []
    layer.register_forward_hook(lambda module, args, out: outputs.append(out))
    with torch.inference_mode():
        model(ids, torch.arange(s + c), s + c, None)
        ang = torch.arange(s).float()[:, None] * model.inv_freq[None, :]
        ang = torch.cat((ang, ang), dim=-1)[:, None, :]
        h = layer.norm1(model.embed(ids[:s]))
        k, v = layer.k(h).view(s, nkv, hd), layer.v(h).view(s, nkv, hd)
        k = k * ang.cos() + torch.cat((-k[..., hd // 2:], k[..., : hd // 2]), dim=-1) * ang.sin()
        prefix = (k.transpose(0, 1).unsqueeze(0), v.transpose(0, 1).unsqueeze(0))
        model(ids[s:], torch.arange(s, s + c), c, None, prefix)
    # every token of the chunk sees the cached prompt and, causally, the chunk: the same as in one pass
    torch.testing.assert_close(outputs[1], outputs[0][s:], rtol=1e-5, atol=1e-5)
