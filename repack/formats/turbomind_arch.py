"""Architecture table for the TurboMind workspace: which Hugging Face tensors make which TurboMind
file, per model family. Model differences are data here, not classes.

Each quantized TurboMind linear is a *slot* (``qkv``, ``wo``, ``w1``, ``w3``, ``w2``); a slot is made
of HF *parts*: q/k/v are three modules for Llama, Mistral and Qwen2, and three column selections
of one packed ``attention.wqkv`` module for InternLM2, whose output columns are grouped per kv head
as ``[kv_heads, q_per_kv + 2, head_dim]`` (q heads of the group, then its k head, then its v head;
InternLM2 ``modeling_internlm2.py`` ``InternLM2Attention.forward``, lmdeploy
``source_model/internlm2.py`` ``InternLM2Reader._attn``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from ..errors import InputError


@dataclass(frozen=True)
class Arch:
    model_types: tuple[str, ...]
    architecture: str  # the HF ``architectures[0]``, also written as config ``model_arch``
    q: str  # module suffixes inside ``{layers}.{i}.``; for a packed qkv, q = k = v = the packed module
    k: str
    v: str
    o: str
    gate: str
    up: str
    down: str
    attn_norm: str
    ffn_norm: str
    embed: str
    norm: str
    lm_head: str
    layers: str = "model.layers"
    packed_qkv: bool = False

    def module(self, i: int, suffix: str) -> str:
        return f"{self.layers}.{i}.{suffix}"


_LLAMA = dict(q="self_attn.q_proj", k="self_attn.k_proj", v="self_attn.v_proj", o="self_attn.o_proj",
              gate="mlp.gate_proj", up="mlp.up_proj", down="mlp.down_proj", attn_norm="input_layernorm",
              ffn_norm="post_attention_layernorm", embed="model.embed_tokens", norm="model.norm", lm_head="lm_head")
ARCHS = (
    Arch(("llama",), "LlamaForCausalLM", **_LLAMA),
    Arch(("mistral",), "MistralForCausalLM", **_LLAMA),
    Arch(("qwen2",), "Qwen2ForCausalLM", **_LLAMA),
    Arch(("internlm2",), "InternLM2ForCausalLM", q="attention.wqkv", k="attention.wqkv", v="attention.wqkv",
         o="attention.wo", gate="feed_forward.w1", up="feed_forward.w3", down="feed_forward.w2",
         attn_norm="attention_norm", ffn_norm="ffn_norm", embed="model.tok_embeddings", norm="model.norm",
         lm_head="output", packed_qkv=True),
)
DROPPED = (".rotary_emb.inv_freq",)  # recomputed by the engine; lmdeploy's readers skip it too


def arch_for(config: dict) -> Arch | None:
    mt = str(config.get("model_type", "")).lower()
    return next((a for a in ARCHS if mt in a.model_types), None)


def arch_named(architecture: str) -> Arch | None:
    return next((a for a in ARCHS if a.architecture == architecture), None)


@dataclass(frozen=True)
class Dims:
    """What the layout needs from config.json."""

    hidden: int
    heads: int
    kv_heads: int
    head_dim: int
    inter: int
    layers: int
    vocab: int

    @property
    def nq(self) -> int:
        return self.heads * self.head_dim

    @property
    def nkv(self) -> int:
        return self.kv_heads * self.head_dim


def dims_of(config: dict, where: str) -> Dims:
    def need(key: str) -> int:
        v = config.get(key)
        if isinstance(v, bool) or not isinstance(v, int) or v <= 0:
            raise InputError(f"{where}: config needs a positive integer {key!r}, got {v!r}")
        return v
    heads = need("num_attention_heads")
    hidden = need("hidden_size")
    kv = config.get("num_key_value_heads") or heads
    head_dim = config.get("head_dim") or hidden // heads
    return Dims(hidden, heads, int(kv), int(head_dim), need("intermediate_size"), need("num_hidden_layers"),
                need("vocab_size"))


def packed_qkv_columns(d: Dims) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """InternLM2 ``wqkv``: the packed columns of q, k and v, each in its own HF order."""
    per = d.heads // d.kv_heads
    col = np.arange((per + 2) * d.kv_heads * d.head_dim).reshape(d.kv_heads, per + 2, d.head_dim)
    return col[:, :per].reshape(-1), col[:, per].reshape(-1), col[:, per + 1].reshape(-1)


_LAYER = re.compile(r"^(?P<prefix>.+)\.(?P<i>\d+)\.(?P<rest>.+)$")


def split_layer(name: str, arch: Arch) -> tuple[int, str] | None:
    """``model.layers.3.self_attn.q_proj.bias`` -> (3, ``self_attn.q_proj.bias``)."""
    m = _LAYER.match(name)
    if m is None or m["prefix"] != arch.layers:
        return None
    return int(m["i"]), m["rest"]
