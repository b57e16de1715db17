"""A Llama-shaped decoder in plain torch, run one block at a time from named tensors.

The quantizer and eval need the same forward pass: embeddings, then each block (RMSNorm,
rotary attention with grouped KV heads and a causal mask, SiLU-gated MLP), then the final norm
and the head. Weights come from a callable ``get(name) -> tensor``; every linear goes through
``linear(name, x)`` so that callers can capture its input or swap its weight.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

from ..errors import UnsupportedError
from .arch import Arch, arch_for

Linear = Callable[[str, torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class Spec:
    arch: Arch
    hidden: int
    heads: int
    kv_heads: int
    head_dim: int
    layers: int
    vocab: int
    eps: float
    rope_theta: float
    tie: bool

    @classmethod
    def from_config(cls, config: dict, where: str = "") -> "Spec":
        arch = arch_for(config, where)
        if config.get("rope_scaling"):
            raise UnsupportedError(f"{where}: rope_scaling {config['rope_scaling']!r} is not implemented yet")
        try:
            hidden, heads = int(config["hidden_size"]), int(config["num_attention_heads"])
            return cls(arch, hidden, heads, int(config.get("num_key_value_heads") or heads),
                       int(config.get("head_dim") or hidden // heads), int(config["num_hidden_layers"]),
                       int(config["vocab_size"]), float(config.get("rms_norm_eps", 1e-6)),
                       float(config.get("rope_theta", 10000.0)), bool(config.get("tie_word_embeddings", False)))
        except (KeyError, TypeError, ValueError) as e:
            raise UnsupportedError(f"{where}: config.json lacks a usable {e} for a decoder model") from None

    @property
    def lm_head(self) -> str:
        return self.arch.embed if self.tie else self.arch.lm_head


def rms_norm(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * weight


def rotary(x: torch.Tensor, theta: float, offset: int = 0) -> torch.Tensor:
    """x [B, heads, L, D] at positions offset..offset+L-1: the rotate-half convention of the Hugging Face Llama."""
    L, D = x.shape[-2], x.shape[-1]
    inv = 1.0 / theta ** (torch.arange(0, D, 2, dtype=torch.float32) / D)
    angles = torch.outer(torch.arange(offset, offset + L, dtype=torch.float32), inv)
    cos, sin = torch.cat([angles.cos()] * 2, -1).to(x), torch.cat([angles.sin()] * 2, -1).to(x)
    half = torch.cat([-x[..., D // 2:], x[..., : D // 2]], -1)
    return x * cos + half * sin


def block_forward(spec: Spec, i: int, x: torch.Tensor, get: Callable[[str], torch.Tensor], linear: Linear,
                  cache: dict[int, tuple[torch.Tensor, torch.Tensor]] | None = None) -> torch.Tensor:
    """One decoder block on hidden states x [B, L, H]; ``get`` and ``linear`` see full tensor/module names.
    ``cache``: block -> the keys and values of earlier positions, extended in place (x holds the next ones)."""
    a, p = spec.arch, spec.arch.prefix(i)
    B, L, _ = x.shape
    past = cache.get(i) if cache is not None else None
    offset = past[0].shape[2] if past is not None else 0
    h = rms_norm(x, get(p + a.attn_norm), spec.eps)
    q = linear(p + a.q, h).view(B, L, spec.heads, spec.head_dim).transpose(1, 2)
    k = linear(p + a.k, h).view(B, L, spec.kv_heads, spec.head_dim).transpose(1, 2)
    v = linear(p + a.v, h).view(B, L, spec.kv_heads, spec.head_dim).transpose(1, 2)
    q, k = rotary(q, spec.rope_theta, offset), rotary(k, spec.rope_theta, offset)
    if past is not None:
        k, v = torch.cat([past[0], k], 2), torch.cat([past[1], v], 2)
    if cache is not None:
        cache[i] = (k, v)
    rep = spec.heads // spec.kv_heads
    k, v = k.repeat_interleave(rep, 1), v.repeat_interleave(rep, 1)
    if offset:  # query t sees keys up to offset + t
        mask = torch.arange(offset + L, device=x.device)[None, :] <= (offset + torch.arange(L, device=x.device))[:, None]
        att = torch.nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    else:
        att = torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=True)
    x = x + linear(p + a.o, att.transpose(1, 2).reshape(B, L, spec.heads * spec.head_dim))
    h = rms_norm(x, get(p + a.mlp_norm), spec.eps)
    mlp = torch.nn.functional.silu(linear(p + a.gate, h)) * linear(p + a.up, h)
    return x + linear(p + a.down, mlp)


def plain_linear(get: Callable[[str], torch.Tensor], bias: Callable[[str], torch.Tensor | None]) -> Linear:
    def linear(name: str, x: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.linear(x, get(name + ".weight"), bias(name))
    return linear


def embed(spec: Spec, ids: torch.Tensor, get: Callable[[str], torch.Tensor]) -> torch.Tensor:
    return get(spec.arch.embed)[ids]


def logits(spec: Spec, x: torch.Tensor, get: Callable[[str], torch.Tensor]) -> torch.Tensor:
    return rms_norm(x, get(spec.arch.final_norm), spec.eps) @ get(spec.lm_head).t()
