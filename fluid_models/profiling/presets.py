"""Named batch-time presets: fitted constants shipped with the package, with provenance.

``fluid_models/data/presets.json`` holds, per preset name, the model's
parameters (ms) and where they come from. Only constants are shipped, never
the raw profiles. The Li-Dai-Peng preset is the paper's published fit; the
others were produced by :func:`build_public_presets` from the public data in
``shared/data/gpu_profiles`` (regenerate with
``python -m llmstab.fluid_models.profiling.presets DATA_DIR``; a test re-fits them when the data
is present and checks the shipped constants).

Examples
--------
>>> m = preset("li-dai-peng-codellama34b-a100")
>>> m.parameters()
{'kind': 'staircase', 'c': 11.28, 'a': 35.47, 'b0': 128}
>>> float(m(512))
153.16
>>> preset_info("li-dai-peng-codellama34b-a100")["provenance"]["gpu"]
'NVIDIA A100-80GB'
"""

from __future__ import annotations

import json
import sys
from functools import lru_cache
from importlib import resources
from pathlib import Path

from ..batch_time import BatchTimeModel
from .fitting import fit_profile, model_from_parameters, model_parameters
from .profiles import Profile, ProfileError, read_sarathi, read_slai, read_vidur_mlp

__all__ = ["preset", "preset_info", "preset_names", "build_public_presets", "build_attention_preset", "LI_DAI_PENG",
           "VIDUR_ATTENTION"]

LI_DAI_PENG = {
    "batch_time": {"kind": "staircase", "c": 11.28, "a": 35.47, "b0": 128},
    "provenance": {
        "source": "Li, Dai, Peng, Throughput-Optimal Scheduling Algorithms for LLM Inference and AI Agents, "
        "arXiv 2504.07347 (published fit, whole iterations, attention included)",
        "model": "CodeLlama-34B",
        "gpu": "NVIDIA A100-80GB",
        "method": "as published",
    },
}

FIT_MAX_TOKENS = 4096  # presets are fitted on batches of at most this many tokens

# (preset name, importer, file under gpu_profiles/, importer options, model, GPU, licence)
_PUBLIC = (
    ("vidur-llama2-7b-h100", "vidur", "vidur/h100/Llama-2-7b-hf_mlp.csv", {"n_layers": 32},
     "Llama-2-7B", "NVIDIA H100", "MIT (microsoft/vidur)"),
    ("vidur-codellama34b-h100", "vidur", "vidur/h100/CodeLlama-34b-Instruct-hf_mlp.csv", {"n_layers": 48},
     "CodeLlama-34B", "NVIDIA H100", "MIT (microsoft/vidur)"),
    ("vidur-codellama34b-a100", "vidur", "vidur/a100/CodeLlama-34b-Instruct-hf_mlp.csv", {"n_layers": 48},
     "CodeLlama-34B", "NVIDIA A100", "MIT (microsoft/vidur)"),
    ("vidur-llama3-8b-a100", "vidur", "vidur/a100/Meta-Llama-3-8B_mlp.csv", {"n_layers": 32},
     "Llama-3-8B", "NVIDIA A100", "MIT (microsoft/vidur)"),
    ("sarathi-serve-figure2-prefill", "sarathi", "sarathi_serve/figure2_prefill.csv", {},
     "not recorded", "not recorded", "Apache-2.0 (Sarathi-Serve artefact via agrimUT/SLAI)"),
    ("slai-mistral7b-rtx6000ada", "slai", "slai_rtx6000ada/batch_time_vs_chunk.csv", {},
     "Mistral-7B", "NVIDIA RTX 6000 Ada", "Apache-2.0 (agrimUT/SLAI)"),
)
_NOTES = {
    "vidur": "non-attention time of a whole iteration: layers x sum of per-layer operator medians "
    "(Vidur mlp.csv, tensor parallel 1); attention is not included",
    "sarathi": "whole prefill-only iterations from the Sarathi-Serve artefact (figure 2)",
    "slai": "mean iteration time of chunked prefill of one 2048-token prompt, chunk 64..1024 tokens",
}


def _read(importer: str, path: Path, options: dict) -> Profile:
    if importer == "vidur":
        return read_vidur_mlp(path, **options)
    if importer == "sarathi":
        return read_sarathi(path)
    return read_slai(path)


def build_public_presets(data_dir: str | Path) -> dict:
    """Fit every public profile under ``data_dir`` (``shared/data/gpu_profiles``).

    Each fit uses the points with at most :data:`FIT_MAX_TOKENS` tokens, the
    default minimax method, the default tile candidates and the selection rule
    of :func:`llmstab.fluid_models.profiling.fitting.fit_profile`; the result
    maps preset names to ``{"batch_time": ..., "provenance": ...}``, the
    Li-Dai-Peng preset first, the attention preset
    (:func:`build_attention_preset`) last.
    """
    data_dir = Path(data_dir)
    out = {"li-dai-peng-codellama34b-a100": LI_DAI_PENG}
    for name, importer, rel, options, model, gpu, licence in _PUBLIC:
        report = fit_profile(_read(importer, data_dir / rel, options), max_tokens=FIT_MAX_TOKENS)
        fit = report.best.summary()
        out[name] = {
            "batch_time": report.best.model.parameters(),
            "provenance": {
                "source": f"shared/data/gpu_profiles/{rel}",
                "licence": licence,
                "model": model,
                "gpu": gpu,
                "note": _NOTES[importer],
                "method": f"llmstab fit --max-tokens {FIT_MAX_TOKENS} (minimax relative error; "
                          f"rule: {report.rule})",
                "fit": {k: fit[k] for k in ("family", "tile", "r2", "max_rel_error", "max_rel_error_at_tokens",
                                            "n_points", "token_range")},
            },
        }
    out[VIDUR_ATTENTION] = build_attention_preset(data_dir)
    return out


VIDUR_ATTENTION = "vidur-codellama34b-a100-tp2-attention"
_ATTENTION_DIR = "vidur/a100_llama2_70b_tp2"
_ATTENTION_LAYERS = 48
_A100_80GB_GB_S = 2039.0  # HBM2e bandwidth of the A100-80GB SXM
_SHAPE_NOTE = (
    "CodeLlama-34B shape, 48 layers: the files' shape columns say n_embd 8192, 64 query / 8 KV heads, gated MLP "
    "of width 22016 and vocab 32768, which is Vidur's CodeLlama-34B (Llama-2-70B's MLP is 28672 wide, 80 layers), "
    "and the folder's cpu_overheads.csv names CodeLlama-34B at tensor parallel 2; shared/data/README.md labels "
    "the folder Llama-2-70B (the attention layer is the same for both)"
)


def build_attention_preset(data_dir: str | Path) -> dict:
    """The preset with attention terms fitted to Vidur's A100 tensor-parallel-2 profile (attention included).

    Whole iterations are composed by
    :func:`~llmstab.fluid_models.profiling.attention.read_vidur_attention`
    (48 layers; see the provenance's ``shape`` note) and fitted by
    :func:`~llmstab.fluid_models.profiling.attention.fit_attention` (minimax,
    default candidates and rule). The provenance records the largest relative
    error and where it occurs, and the decode coefficient per KV byte.
    """
    from .attention import fit_attention, kv_bytes_per_token, read_vidur_attention

    profile = read_vidur_attention(Path(data_dir) / _ATTENTION_DIR, n_layers=_ATTENTION_LAYERS, tensor_parallel=2)
    report = fit_attention(profile, max_tokens=FIT_MAX_TOKENS)
    best, fit = report.best, report.best.summary()
    shape = {"hidden_size": 8192, "num_attention_heads": 64, "num_key_value_heads": 8,
             "num_hidden_layers": _ATTENTION_LAYERS}
    kv_bytes = kv_bytes_per_token(shape, tensor_parallel=2)
    per_byte = best.attention.decode / kv_bytes
    return {
        "batch_time": {k: v for k, v in model_parameters(best).items() if k != "unit"},
        "provenance": {
            "source": f"shared/data/gpu_profiles/{_ATTENTION_DIR}/ (attention.csv + mlp.csv; microsoft/vidur e2d00e9)",
            "licence": "MIT (microsoft/vidur)",
            "model": "CodeLlama-34B",
            "shape": _SHAPE_NOTE,
            "gpu": "NVIDIA A100 x 2 (tensor parallel 2), FlashAttention",
            "note": profile.source["note"] + "; decode batches 1..128 at the token counts mlp.csv measured "
                    "(1, 2, 4, 8, 16, ...), contexts 32..4032; prefill chunks 64..4096 after 0..4032 cached tokens",
            "method": f"llmstab fit {_ATTENTION_DIR} --layers {_ATTENTION_LAYERS} (tensor parallel 2; minimax "
                      f"relative error over all rows, t(n) + decode x sum context + prefill x sum c(s + c/2); "
                      f"rule: {report.rule})",
            "fit": {k: fit[k] for k in ("family", "tile", "r2", "max_rel_error", "max_rel_error_at", "n_points",
                                        "token_range")},
            "kv_bytes_per_token_per_gpu": kv_bytes,
            "decode_ms_per_kv_byte": float(f"{per_byte:.6g}"),
            "decode_effective_bandwidth_gb_s": round(1e-6 / per_byte, 1),
            "decode_fraction_of_a100_80gb_bandwidth": round(1e-6 / per_byte / _A100_80GB_GB_S, 3),
        },
    }


@lru_cache(maxsize=1)
def _presets() -> dict:
    text = resources.files("llmstab.fluid_models").joinpath("data/presets.json").read_text()
    return json.loads(text)


def preset_names() -> list[str]:
    """The names of the shipped presets."""
    return list(_presets())


def preset_info(name: str) -> dict:
    """The shipped entry of preset ``name``: ``batch_time`` parameters and ``provenance``."""
    presets = _presets()
    if name not in presets:
        raise ProfileError("preset", f"unknown preset {name!r} (known: {', '.join(presets)})")
    return json.loads(json.dumps(presets[name]))


def preset(name: str) -> BatchTimeModel:
    """The batch-time model of preset ``name``."""
    return model_from_parameters(preset_info(name)["batch_time"], f"preset {name}")


if __name__ == "__main__":  # pragma: no cover - regeneration script
    target = Path(__file__).parent.parent / "data" / "presets.json"
    target.write_text(json.dumps(build_public_presets(sys.argv[1]), indent=2) + "\n")
    print(f"wrote {target}")
