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
from .fitting import fit_profile, model_from_parameters
from .profiles import Profile, ProfileError, read_sarathi, read_slai, read_vidur_mlp

__all__ = ["preset", "preset_info", "preset_names", "build_public_presets", "LI_DAI_PENG"]

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
    Li-Dai-Peng preset first.
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
    return out


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
