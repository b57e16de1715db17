"""A decoder in plain torch, run one block at a time from named tensors, for every architecture of
the table in :mod:`.arch`.

The quantizer and eval need the same forward pass: embeddings (plus learned positions or a scale
where the architecture has them), then each block (norm, attention with rotary or no positions,
grouped KV heads and a causal mask, gated or plain MLP), then the final norm and the head.
Weights come from a callable ``get(name) -> tensor``; every linear goes through ``linear(name, x)``
so that callers can capture its input or swap its weight.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

from ..errors import InputError, UnsupportedError
from . import norms
from .arch import Arch, Stage, arch_for, bias_of
from .rope import Rope, rope_from_config, rope_params

Linear = Callable[[str, torch.Tensor], torch.Tensor]


def _gelu_tanh(x: torch.Tensor) -> torch.Tensor:
    return torch.nn.functional.gelu(x, approximate="tanh")


# config names (transformers' ACT2FN keys) -> function; gelu_new is the tanh approximation written out
ACTIVATIONS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "silu": torch.nn.functional.silu, "swish": torch.nn.functional.silu, "relu": torch.nn.functional.relu,
    "gelu": torch.nn.functional.gelu, "gelu_pytorch_tanh": _gelu_tanh, "gelu_new": _gelu_tanh,
}


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
    rope: Rope
    tie: bool
    intermediate: int = 0
    act: str = "silu"
    rotary_dim: int = 0  # leading dims of each head that rotate; 0: no rotary positions
    window: int | None = None  # sliding attention window (keys within the last `window` positions)
    embed_scale: float = 1.0

    @classmethod
    def from_config(cls, config: dict, where: str = "") -> "Spec":
        arch = arch_for(config, where)
        rope = rope_params(config, where)
        act = next((str(config[k]) for k in arch.act_keys if config.get(k)), arch.act_default)
        act = dict(arch.act_aliases).get(act, act)
        if act not in ACTIVATIONS:
            raise UnsupportedError(f"{where}: activation {act!r} is not implemented (known: {', '.join(ACTIVATIONS)})")
        try:
            hidden, heads = int(config["hidden_size"]), int(config["num_attention_heads"])
            head_dim = int(config.get("head_dim") or hidden // heads)
            partial = float(config.get("partial_rotary_factor") or rope.get("partial_rotary_factor") or 1.0)
            rotary_dim = (int(head_dim * partial) if arch.partial_rotary else head_dim) if arch.rotary else 0
            window = config.get("sliding_window") if arch.sliding_window else None
            tie = config.get("tie_word_embeddings")
            return cls(arch, hidden, heads, int(config.get("num_key_value_heads") or heads), head_dim,
                       int(config["num_hidden_layers"]), int(config["vocab_size"]),
                       float(config.get(arch.eps_key, arch.eps_default) if arch.eps_key else arch.eps_default),
                       rope_from_config(config, rotary_dim, where) if rotary_dim else Rope(()),
                       bool(arch.tie_default if tie is None else tie), int(config.get(arch.intermediate_key) or 0), act,
                       rotary_dim, int(window) if window else None, _embed_scale(arch, hidden, config))
        except (KeyError, TypeError, ValueError) as e:
            raise UnsupportedError(f"{where}: config.json lacks a usable {e} for a decoder model") from None

    @property
    def lm_head(self) -> str:
        return self.arch.embed if self.tie else self.arch.lm_head

    @property
    def stages(self) -> tuple[Stage, ...]:
        return self.arch.stages(self.heads * self.head_dim, self.kv_heads * self.head_dim, self.intermediate)


def _embed_scale(arch: Arch, hidden: int, config: dict) -> float:
    """sqrt(hidden) as the model's own dtype holds it (the product is taken in that dtype)."""
    if not arch.embed_scale:
        return 1.0
    dtype = getattr(torch, str(config.get("torch_dtype") or config.get("dtype") or "float32"), None)
    dtype = dtype if isinstance(dtype, torch.dtype) and dtype.is_floating_point else torch.float32
    return float(torch.tensor(hidden**0.5, dtype=torch.float32).to(dtype))


def rotary(x: torch.Tensor, rope: Rope, offset: int = 0, dims: int | None = None) -> torch.Tensor:
    """x [B, heads, L, D] at positions offset..offset+L-1: the rotate-half convention of the Hugging
    Face Llama, over the first ``dims`` of D (all by default); the rest pass through."""
    if dims is not None and dims < x.shape[-1]:
        return torch.cat([rotary(x[..., :dims], rope, offset), x[..., dims:]], -1)
    L, D = x.shape[-2], x.shape[-1]
    inv = rope.frequencies(offset + L)
    angles = torch.outer(torch.arange(offset, offset + L, dtype=torch.float32), inv)
    cos, sin = torch.cat([angles.cos()] * 2, -1), torch.cat([angles.sin()] * 2, -1)
    if rope.attention_factor != 1.0:  # YaRN / longrope: cos and sin scaled (in fp32, before the cast)
        cos, sin = cos * rope.attention_factor, sin * rope.attention_factor
    cos, sin = cos.to(x), sin.to(x)
    half = torch.cat([-x[..., D // 2:], x[..., : D // 2]], -1)
    return x * cos + half * sin


def norm(spec: Spec, x: torch.Tensor, get: Callable[[str], torch.Tensor], weight: str) -> torch.Tensor:
    bias = get(bias_of(weight)) if spec.arch.norm == "layer" else None
    return norms.apply(spec.arch.norm, x, get(weight), bias, spec.eps)


def _qkv(spec: Spec, p: str, h: torch.Tensor, linear: Linear) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    a = spec.arch
    if not a.qkv:
        return linear(p + a.q, h), linear(p + a.k, h), linear(p + a.v, h)
    y = linear(p + a.qkv, h)
    nq, nkv = spec.heads * spec.head_dim, spec.kv_heads * spec.head_dim
    return y[..., :nq], y[..., nq:nq + nkv], y[..., nq + nkv:]


def _mlp(spec: Spec, p: str, h: torch.Tensor, linear: Linear) -> torch.Tensor:
    a, act = spec.arch, ACTIVATIONS[spec.act]
    if a.gate_up:
        gate, up = linear(p + a.gate_up, h).chunk(2, -1)
        return act(gate) * up
    if a.gate:
        return act(linear(p + a.gate, h)) * linear(p + a.up, h)
    return act(linear(p + a.up, h))


def block_forward(spec: Spec, i: int, x: torch.Tensor, get: Callable[[str], torch.Tensor], linear: Linear,
                  cache: dict[int, tuple[torch.Tensor, torch.Tensor]] | None = None) -> torch.Tensor:
    """One decoder block on hidden states x [B, L, H]; ``get`` and ``linear`` see full tensor/module names.
    ``cache``: block -> the keys and values of earlier positions, extended in place (x holds the next ones)."""
    a, p = spec.arch, spec.arch.prefix(i)
    B, L, _ = x.shape
    past = cache.get(i) if cache is not None else None
    offset = past[0].shape[2] if past is not None else 0
    h = norm(spec, x, get, p + a.attn_norm)
    q, k, v = _qkv(spec, p, h, linear)
    q = q.view(B, L, spec.heads, spec.head_dim).transpose(1, 2)
    k = k.view(B, L, spec.kv_heads, spec.head_dim).transpose(1, 2)
    v = v.view(B, L, spec.kv_heads, spec.head_dim).transpose(1, 2)
    if spec.rotary_dim:
        q, k = rotary(q, spec.rope, offset, spec.rotary_dim), rotary(k, spec.rope, offset, spec.rotary_dim)
    if past is not None:
        k, v = torch.cat([past[0], k], 2), torch.cat([past[1], v], 2)
    if cache is not None:
        cache[i] = (k, v)
    rep = spec.heads // spec.kv_heads
    k, v = k.repeat_interleave(rep, 1), v.repeat_interleave(rep, 1)
    window = spec.window if spec.window is not None and offset + L > spec.window else None
    # the softmax scale is head_dim**-0.5 for every architecture here (OPT applies it to q before the product)
    if offset or window:  # query t sees keys up to offset + t (and, with a window, after offset + t - window)
        keys, queries = torch.arange(offset + L, device=x.device)[None, :], (offset + torch.arange(L, device=x.device))[:, None]
        mask = keys <= queries
        if window:
            mask &= keys > queries - window
        att = torch.nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    else:
        att = torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=True)
    x = x + linear(p + a.o, att.transpose(1, 2).reshape(B, L, spec.heads * spec.head_dim))
    h = norm(spec, x, get, p + a.mlp_norm)
    return x + linear(p + a.down, _mlp(spec, p, h, linear))


def plain_linear(get: Callable[[str], torch.Tensor], bias: Callable[[str], torch.Tensor | None]) -> Linear:
    def linear(name: str, x: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.linear(x, get(name + ".weight"), bias(name))
    return linear


def block_tensors(spec: Spec, i: int, get: Callable[[str], torch.Tensor],
                  bias: Callable[[str], torch.Tensor | None]) -> dict[str, torch.Tensor]:
    """Block i's norms and linears (weights, and the biases the model has), by full name."""
    a, p = spec.arch, spec.arch.prefix(i)
    t = {p + n: get(p + n) for w in (a.attn_norm, a.mlp_norm) for n in a.norm_tensors(w)}
    for m in a.linears:
        t[p + m + ".weight"] = get(p + m + ".weight")
        b = bias(p + m)
        if b is not None:
            t[p + m + ".bias"] = b
    return t


def embed(spec: Spec, ids: torch.Tensor, get: Callable[[str], torch.Tensor], start: int = 0) -> torch.Tensor:
    """Hidden states of token ids [B, L] at positions start..start+L-1."""
    a = spec.arch
    x = get(a.embed)[ids]
    if a.embed_scale:
        x = x * spec.embed_scale
    if a.positions:
        table, first = get(a.positions), a.position_offset + start
        if first + ids.shape[-1] > table.shape[0]:
            raise InputError(f"'{a.positions}' holds {table.shape[0] - a.position_offset} positions; "
                             f"{start + ids.shape[-1]} tokens do not fit (lower --seqlen)")
        x = x + table[first:first + ids.shape[-1]]
    return x


def logits(spec: Spec, x: torch.Tensor, get: Callable[[str], torch.Tensor]) -> torch.Tensor:
    return norm(spec, x, get, spec.arch.final_norm) @ get(spec.lm_head).t()
