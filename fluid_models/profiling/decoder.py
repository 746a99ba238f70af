"""The profiler's decoder: a Llama/Mistral-style model of a config with random weights (needs PyTorch).

RMSNorm, rotary embeddings, grouped-query attention and a SwiGLU MLP, as
:mod:`llmstab.fluid_models.profiling.profiler` describes; one forward pass is
one engine iteration: a prefill chunk (optionally after cached tokens of its
prompt) and decode tokens attending to their KV cache. This module imports
torch at import time; the profiler imports it only after checking that torch
is there.

Examples
--------
>>> import torch
>>> from llmstab.fluid_models.profiling.profiler import load_config
>>> model = build_decoder(load_config("tiny-llama"), torch.device("cpu"), torch.float32, seed=0)
>>> model(torch.tensor([1, 2, 3]), torch.arange(3), 3, None).shape   # one prefill: its last token's next token
torch.Size([1])
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

__all__ = ["Dims", "RMSNorm", "Layer", "Decoder", "build_decoder", "attention", "rotate"]


@dataclass(frozen=True)
class Dims:
    """A decoder's sizes from a Hugging Face config, with the device and dtype its tensors use."""

    hidden: int
    heads: int
    kv_heads: int
    intermediate: int
    vocab: int
    layers: int
    eps: float
    theta: float
    device: torch.device
    dtype: torch.dtype

    @property
    def head_dim(self) -> int:
        """Width of one attention head."""
        return self.hidden // self.heads

    @property
    def kw(self) -> dict:
        """The keyword arguments that put a parameter on the device in the dtype."""
        return {"device": self.device, "dtype": self.dtype}

    @classmethod
    def from_config(cls, cfg: dict, device: torch.device, dtype: torch.dtype) -> "Dims":
        """The sizes of ``cfg`` (``rms_norm_eps`` 1e-5 and ``rope_theta`` 10000 when absent).

        >>> from llmstab.fluid_models.profiling.profiler import load_config
        >>> Dims.from_config(load_config("tiny-llama"), torch.device("cpu"), torch.float32).head_dim
        16
        """
        return cls(cfg["hidden_size"], cfg["num_attention_heads"], cfg["num_key_value_heads"],
                   cfg["intermediate_size"], cfg["vocab_size"], cfg["num_hidden_layers"],
                   float(cfg.get("rms_norm_eps", 1e-5)), float(cfg.get("rope_theta", 10000.0)), device, dtype)


class RMSNorm(nn.Module):
    """Root-mean-square normalisation with a learned scale (ones at first)."""

    def __init__(self, dims: Dims) -> None:
        super().__init__()
        self.eps = dims.eps
        self.weight = nn.Parameter(torch.ones(dims.hidden, **dims.kw))

    def forward(self, x):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * self.weight


def rotate(x, cos, sin):
    """Rotary position embedding of ``x`` (last axis: one head), the rotate-half form.

    >>> rotate(torch.tensor([[1.0, 2.0]]), torch.tensor(0.0), torch.tensor(1.0))
    tensor([[-2.,  1.]])
    """
    half = x.shape[-1] // 2
    x1, x2 = x[..., :half], x[..., half:]
    return x * cos + torch.cat((-x2, x1), dim=-1) * sin


def attention(q, k, v, n_prefill: int, cache, prefix):
    """Attention output ``(tokens, heads * head_dim)`` of a batch: its first ``n_prefill`` tokens a prompt chunk.

    The chunk attends causally to itself, after the ``prefix`` (cached keys and
    values of its prompt) when there is one; each later token decodes and
    attends to its own row of ``cache`` only.

    >>> q = k = v = torch.ones(3, 2, 4)
    >>> attention(q, k, v, 3, None, None).shape
    torch.Size([3, 8])
    """
    t, heads, hd = q.shape
    parts = []
    if n_prefill:
        qp, kp, vp = (z[:n_prefill].transpose(0, 1).unsqueeze(0) for z in (q, k, v))
        if prefix is None:
            out = F.scaled_dot_product_attention(qp, kp, vp, is_causal=True, enable_gqa=True)
        else:  # the chunk attends to the s cached tokens of its prompt, then causally to itself
            s = prefix[0].shape[2]
            mask = torch.ones(n_prefill, s + n_prefill, dtype=torch.bool, device=q.device).tril(s)
            out = F.scaled_dot_product_attention(qp, torch.cat((prefix[0], kp), 2), torch.cat((prefix[1], vp), 2),
                                                 attn_mask=mask, enable_gqa=True)
        parts.append(out[0].transpose(0, 1).reshape(n_prefill, heads * hd))
    if t > n_prefill:
        qd = q[n_prefill:].unsqueeze(2)  # (N, nh, 1, hd)
        out = F.scaled_dot_product_attention(qd, cache[0], cache[1], enable_gqa=True)
        parts.append(out.reshape(t - n_prefill, heads * hd))
    return torch.cat(parts) if len(parts) > 1 else parts[0]


class Layer(nn.Module):
    """One decoder layer: pre-norm grouped-query attention and a SwiGLU MLP, each with a residual."""

    def __init__(self, dims: Dims) -> None:
        super().__init__()
        h, nh, nkv, hd, inter, kw = dims.hidden, dims.heads, dims.kv_heads, dims.head_dim, dims.intermediate, dims.kw
        self.dims = dims
        self.norm1, self.norm2 = RMSNorm(dims), RMSNorm(dims)
        self.q = nn.Linear(h, nh * hd, bias=False, **kw)
        self.k = nn.Linear(h, nkv * hd, bias=False, **kw)
        self.v = nn.Linear(h, nkv * hd, bias=False, **kw)
        self.o = nn.Linear(nh * hd, h, bias=False, **kw)
        self.gate = nn.Linear(h, inter, bias=False, **kw)
        self.up = nn.Linear(h, inter, bias=False, **kw)
        self.down = nn.Linear(inter, h, bias=False, **kw)

    def forward(self, x, n_prefill, cos, sin, cache, prefix):
        t, nh, nkv, hd = x.shape[0], self.dims.heads, self.dims.kv_heads, self.dims.head_dim
        h = self.norm1(x)
        q = rotate(self.q(h).view(t, nh, hd), cos, sin)
        k = rotate(self.k(h).view(t, nkv, hd), cos, sin)
        x = x + self.o(attention(q, k, self.v(h).view(t, nkv, hd), n_prefill, cache, prefix))
        h = self.norm2(x)
        return x + self.down(F.silu(self.gate(h)) * self.up(h))


class Decoder(nn.Module):
    """Embedding, the layers, a final norm and the LM head with greedy sampling (``argmax``)."""

    def __init__(self, dims: Dims) -> None:
        super().__init__()
        self.embed = nn.Embedding(dims.vocab, dims.hidden, **dims.kw)
        self.layers = nn.ModuleList(Layer(dims) for _ in range(dims.layers))
        self.norm = RMSNorm(dims)
        self.head = nn.Linear(dims.hidden, dims.vocab, bias=False, **dims.kw)
        hd = dims.head_dim
        inv = 1.0 / dims.theta ** (torch.arange(0, hd, 2, device=dims.device, dtype=torch.float32) / hd)
        self.register_buffer("inv_freq", inv, persistent=False)
        self.dtype = dims.dtype

    def forward(self, ids, positions, n_prefill, cache, prefix=None):
        ang = positions.float()[:, None] * self.inv_freq[None, :]
        ang = torch.cat((ang, ang), dim=-1)[:, None, :]
        cos, sin = ang.cos().to(self.dtype), ang.sin().to(self.dtype)
        x = self.embed(ids)
        for layer in self.layers:
            x = layer(x, n_prefill, cos, sin, cache, prefix)
        last = x[n_prefill - 1:] if n_prefill else x  # last prompt token, then every decode token
        return self.head(self.norm(last)).argmax(-1)


def build_decoder(cfg: dict, device: torch.device, dtype: torch.dtype, seed: int = 0) -> Decoder:
    """The decoder of ``cfg`` with weights drawn from ``N(0, initializer_range)`` after ``torch.manual_seed(seed)``.

    Norm scales stay 1. The same seed gives the same weights.

    >>> from llmstab.fluid_models.profiling.profiler import load_config
    >>> a, b = (build_decoder(load_config("tiny-llama"), torch.device("cpu"), torch.float32, seed=1) for _ in "ab")
    >>> bool(torch.equal(a.head.weight, b.head.weight))
    True
    """
    torch.manual_seed(seed)
    with torch.no_grad():
        model = Decoder(Dims.from_config(cfg, device, dtype))
        for name, p in model.named_parameters():
            if "norm" not in name:
                p.normal_(0.0, float(cfg.get("initializer_range", 0.02)))
    return model.eval()
