"""Profile CSVs (validation, round trip) and the importers of public profiling data."""

from __future__ import annotations

import csv
import io

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from llmstab.checkers.cli.main import main
from llmstab.fluid_models.profiling.profiles import (
    Profile,
    ProfileError,
    read_profile_csv,
    read_sarathi,
    read_slai,
    read_vidur_mlp,
    write_profile_csv,
)

GOOD = "kind,tokens,prefill_tokens,decode_tokens,context_len,time_ms\n" \
       "prefill,64,64,0,0,10.5\ndecode,8,0,8,512,7.25\nmixed,64,56,8,512,11\n"


def _bad(text: str) -> str:
    with pytest.raises(ProfileError) as info:
        read_profile_csv(io.StringIO(text))
    message = str(info.value)
    assert "\n" not in message
    return message


def test_reads_the_documented_schema():
    p = read_profile_csv(io.StringIO(GOOD))
    assert p.tokens.tolist() == [64, 8, 64]
    assert p.kind.tolist() == ["prefill", "decode", "mixed"]
    assert p.context_len.tolist() == [0, 512, 512]
    assert p.select("prefill").time_ms.tolist() == [10.5]
    # the same token count from two kinds merges by the median when fitting on token counts
    assert p.by_tokens()[1].tolist() == [7.25, 10.75]


def test_minimal_file_defaults_to_prefill_rows():
    p = read_profile_csv(io.StringIO("tokens,time_ms\n1,2.0\n2,2.5\n"))
    assert p.kind.tolist() == ["prefill", "prefill"]
    assert p.prefill_tokens.tolist() == [1, 2] and p.decode_tokens.tolist() == [0, 0]


@pytest.mark.parametrize(
    "text, expected",
    [
        ("tokens,latency\n1,2\n", "missing column(s) time_ms"),
        ("time_ms\n2\n", "missing column(s) tokens"),
        ("tokens,time_ms\n1,0\n", "line 2 column time_ms: must be positive"),
        ("tokens,time_ms\n1,-3.5\n", "must be positive, got -3.5"),
        ("tokens,time_ms\n1,2\n2,3\n1,4\n", "line 4: duplicate grid point"),
        ("tokens,time_ms\n1,abc\n", "not a number: 'abc'"),
        ("tokens,time_ms\n1.5,2\n", "not an integer"),
        ("tokens,time_ms\n0,2\n", "must be at least 1"),
        ("tokens,time_ms,kind\n1,2,encode\n", "must be one of prefill, decode, mixed"),
        ("tokens,time_ms,prefill_tokens,decode_tokens\n10,2,4,4\n", "differs from tokens = 10"),
        ("tokens,time_ms\n", "no data rows"),
        ("", "empty file"),
    ],
)
def test_bad_profiles_are_one_line_errors(text, expected):
    assert expected in _bad(text)


def test_duplicates_are_per_grid_point_not_per_token_count():
    # the same token count at two context lengths is two grid points
    text = "kind,tokens,prefill_tokens,decode_tokens,context_len,time_ms\n" \
           "decode,8,0,8,128,3\ndecode,8,0,8,1024,5\n"
    assert len(read_profile_csv(io.StringIO(text))) == 2
    assert "duplicate grid point (kind=decode" in _bad(text + "decode,8,0,8,1024,6\n")


@settings(max_examples=25)
@given(
    st.lists(
        st.tuples(st.sampled_from(["prefill", "decode", "mixed"]), st.integers(0, 4096), st.integers(0, 512),
                  st.integers(0, 8192), st.floats(1e-3, 1e4, allow_nan=False)),
        min_size=1, max_size=30, unique_by=lambda r: r[:4],
    )
)
def test_write_then_read_round_trips(rows):
    rows = [r for r in rows if r[1] + r[2] >= 1]
    if not rows:
        return
    kind, p, d, c, t = (list(x) for x in zip(*rows))
    profile = Profile(np.add(p, d), t, kind, p, d, c)
    buf = io.StringIO()
    write_profile_csv(profile, buf)
    buf.seek(0)
    back = read_profile_csv(buf)
    assert back.kind.tolist() == kind
    assert back.prefill_tokens.tolist() == p and back.decode_tokens.tolist() == d
    assert back.context_len.tolist() == c
    np.testing.assert_allclose(back.time_ms, t, rtol=1e-5)


def test_cli_fit_rejects_a_bad_profile_with_exit_2(tmp_path, capsys):
    bad = tmp_path / "bad.csv"
    bad.write_text("tokens,time_ms\n64,10\n64,11\n")
    assert main(["fit", str(bad), "--out", str(tmp_path / "m.yaml")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "duplicate grid point" in err
    assert not (tmp_path / "m.yaml").exists()
    missing = tmp_path / "missing.csv"
    missing.write_text("n,t\n1,2\n")
    assert main(["fit", str(missing), "--format", "profile"]) == 2
    assert "missing column(s) tokens, time_ms" in capsys.readouterr().err
    assert main(["fit", str(missing)]) == 2  # the header fits no format: one line saying what would
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "cannot tell the format from the header (n, t)" in err
    assert "columns tokens and time_ms" in err and "--format" in err


# --- importers --------------------------------------------------------------------------------


def test_vidur_sums_operator_medians_times_layers():
    text = ("time_stats.mlp.median,time_stats.mlp.mean,time_stats.attn_pre_proj.median,num_tokens,"
            "num_tensor_parallel_workers\n"
            "0.5,9,0.25,8,1\n0.5,9,0.75,16,1\n0.75,9,0.75,16,1\n7,7,7,16,2\n")
    p = read_vidur_mlp(io.StringIO(text), n_layers=10)
    assert p.tokens.tolist() == [8, 16]
    # means are ignored; the two rows at 16 tokens (12.5 and 15 ms) merge by their median
    assert p.time_ms.tolist() == [7.5, 13.75]
    assert read_vidur_mlp(io.StringIO(text), n_layers=1, tensor_parallel=2).time_ms.tolist() == [14.0]
    with pytest.raises(ProfileError, match="no rows with num_tensor_parallel_workers = 4"):
        read_vidur_mlp(io.StringIO(text), n_layers=1, tensor_parallel=4)
    with pytest.raises(ProfileError, match="not a Vidur mlp.csv"):
        read_vidur_mlp(io.StringIO("num_tokens,x\n1,2\n"), n_layers=1)


def test_vidur_h100_llama2_7b(shared_data):
    path = shared_data / "gpu_profiles/vidur/h100/Llama-2-7b-hf_mlp.csv"
    p = read_vidur_mlp(path, n_layers=32)
    assert p.tokens[0] == 1 and p.tokens[-1] == 4096 and len(p) == np.unique(p.tokens).size
    # recompute one point directly from the file: 32 x the sum of the medians at 512 tokens, TP 1
    with open(path) as fh:
        rows = [r for r in csv.DictReader(fh) if r["num_tokens"] == "512" and r["num_tensor_parallel_workers"] == "1"]
    assert len(rows) == 1
    direct = 32 * sum(float(v) for k, v in rows[0].items() if k.startswith("time_stats.") and k.endswith(".median"))
    assert p.time_ms[p.tokens == 512][0] == pytest.approx(direct)
    # the plateau 392..512 and the jump at 520 described in the design (Bari et al.)
    t = dict(zip(p.tokens.tolist(), p.time_ms))
    plateau = [t[b] for b in range(392, 513, 8)]
    assert max(plateau) / min(plateau) < 1.06
    assert t[520] / t[512] > 1.2


def test_sarathi_units_are_inferred(shared_data):
    folder = shared_data / "gpu_profiles/sarathi_serve"
    seconds = read_sarathi(folder / "figure2_prefill.csv")   # batch_execution_time in seconds
    millis = read_sarathi(folder / "table2_hybrid_batch.csv")  # ... and in milliseconds
    assert set(seconds.kind) == {"prefill"}
    assert millis.kind.tolist() == ["decode", "mixed", "prefill"]
    # a 1024-token prefill iteration is about 214 ms in one file and 217 ms in the other
    a = seconds.time_ms[seconds.tokens == 1024][0]
    b = millis.time_ms[(millis.tokens == 1024) & (millis.decode_tokens == 0)][0]
    assert 200 < a < 230 and abs(a / b - 1) < 0.03
    both = read_sarathi([folder / "figure2_decode.csv", folder / "figure2_prefill.csv"])
    assert len(both) == 16 and set(both.kind) == {"prefill", "decode"}
    with pytest.raises(ProfileError, match="not a Sarathi-Serve batch-metrics CSV"):
        read_sarathi(folder / "figure9_chunking_overhead.csv")


def test_sarathi_unit_can_be_given():
    text = "batch_num_prefill_tokens,batch_num_decode_tokens,batch_execution_time\n128,0,0.05\n"
    assert read_sarathi(io.StringIO(text), unit="s").time_ms.tolist() == [50.0]
    with pytest.raises(ProfileError, match="cannot tell the time unit"):
        read_sarathi(io.StringIO(text))


def test_slai(shared_data):
    p = read_slai(shared_data / "gpu_profiles/slai_rtx6000ada/batch_time_vs_chunk.csv")
    assert p.tokens.tolist() == [64, 128, 256, 384, 512, 768, 1024]
    assert np.all(np.diff(p.time_ms) > 0)
    with pytest.raises(ProfileError, match="repeated chunk"):
        read_slai(io.StringIO("chunk,batch_ms\n64,2\n64,3\n"))


@settings(max_examples=40)
@given(st.lists(st.tuples(st.integers(1, 6), st.floats(0.01, 100.0)), min_size=1, max_size=30))
def test_by_tokens_is_the_median_time_at_each_token_count(rows):
    """Issue 10: by_tokens compared every row with every token count (a 49,000-row fit spent minutes there)."""
    tokens, times = (np.array(v) for v in zip(*rows))
    xs, ys = Profile(tokens=tokens, time_ms=times).by_tokens()
    assert xs.tolist() == sorted(set(tokens.tolist()))
    assert ys.tolist() == [np.median(times[tokens == x]) for x in xs]
