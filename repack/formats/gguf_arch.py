"""Llama-family facts for GGUF: tensor names, the q/k row permutation and config <-> metadata keys.

Data, not code per model (gguf.md §4; gguf-py ``constants.py`` ``TENSOR_NAMES`` /
``MODEL_TENSORS[MODEL_ARCH.LLAMA]``, llama.cpp ``convert_hf_to_gguf.py`` ``LlamaModel``).
"""

from __future__ import annotations

import re

import numpy as np

LLAMA_MODEL_TYPES = ("llama", "mistral")  # HF model_type values written as GGUF arch "llama"

# GGUF name -> HF name; "{i}" is the layer number. Suffixes ``.weight``/``.bias`` carry over.
TOP_LEVEL = {"token_embd": "model.embed_tokens", "output_norm": "model.norm", "output": "lm_head"}
PER_LAYER = {"attn_norm": "input_layernorm", "attn_q": "self_attn.q_proj", "attn_k": "self_attn.k_proj",
             "attn_v": "self_attn.v_proj", "attn_output": "self_attn.o_proj",
             "ffn_norm": "post_attention_layernorm", "ffn_gate": "mlp.gate_proj", "ffn_up": "mlp.up_proj",
             "ffn_down": "mlp.down_proj"}
# Llama-3 rope scaling factors: no Hugging Face tensor (HF recomputes them from config.rope_scaling,
# which a GGUF does not carry); kept under the GGUF name so GGUF -> GGUF keeps them
KEPT = {"rope_freqs": "rope_freqs"}
TOP_LEVEL |= KEPT
HF_TOP = {v: k for k, v in TOP_LEVEL.items()}
HF_LAYER = {v: k for k, v in PER_LAYER.items()}
_GGUF_BLK = re.compile(r"^blk\.(\d+)\.([a-z_]+)\.(weight|bias)$")
_HF_BLK = re.compile(r"^model\.layers\.(\d+)\.(.+)\.(weight|bias)$")
_TOP = re.compile(r"^(.+)\.(weight|bias)$")


def hf_name(gguf_name: str) -> str | None:
    """``blk.3.attn_q.weight`` -> ``model.layers.3.self_attn.q_proj.weight``; None if not a Llama tensor."""
    m = _GGUF_BLK.match(gguf_name)
    if m:
        part = PER_LAYER.get(m[2])
        return None if part is None else f"model.layers.{int(m[1])}.{part}.{m[3]}"
    m = _TOP.match(gguf_name)
    if m and m[1] in TOP_LEVEL:
        return f"{TOP_LEVEL[m[1]]}.{m[2]}"
    return None


def gguf_name(hf: str) -> str | None:
    m = _HF_BLK.match(hf)
    if m:
        part = HF_LAYER.get(m[2])
        return None if part is None else f"blk.{int(m[1])}.{part}.{m[3]}"
    m = _TOP.match(hf)
    if m and m[1] in HF_TOP:
        return f"{HF_TOP[m[1]]}.{m[2]}"
    return None


def permuted_heads(hf: str, config: dict) -> int | None:
    """How many heads the rows of this HF tensor are permuted over in GGUF (q: heads, k: kv heads).

    llama.cpp runs arch ``llama`` with rotary pairs (2b, 2b+1) where HF rotates halves (b, b+hd/2),
    so its converter reorders the output rows of q_proj/k_proj (gguf.md §4.2, ``LlamaModel.permute``)."""
    if ".self_attn.q_proj." in hf:
        return int(config["num_attention_heads"])
    if ".self_attn.k_proj." in hf:
        return int(config.get("num_key_value_heads") or config["num_attention_heads"])
    return None


def rows_to_gguf(n_rows: int, n_head: int) -> np.ndarray:
    """Index array p with ``gguf_rows = hf_rows[p]``: per head, view the rows as (2, hd/2) and
    transpose, i.e. ``gguf[h*hd + 2b + a] = hf[h*hd + a*hd/2 + b]`` (gguf.md §4.2)."""
    if n_head <= 0 or n_rows % (2 * n_head):
        raise ValueError(f"{n_rows} rows cannot be split into {n_head} heads of an even size")
    half = n_rows // n_head // 2
    return np.arange(n_rows).reshape(n_head, 2, half).transpose(0, 2, 1).reshape(-1)


def rows_to_hf(n_rows: int, n_head: int) -> np.ndarray:
    """Index array p with ``hf_rows = gguf_rows[p]`` (the inverse of :func:`rows_to_gguf`)."""
    return np.argsort(rows_to_gguf(n_rows, n_head))


# HF config key <- GGUF key ("{a}" is the architecture), as transformers' GGUF loader maps them
# (gguf.md §6.1 ``GGUF_CONFIG_MAPPING["llama"]``) and llama.cpp's converter writes them (§4.3).
CONFIG_KEYS = {"max_position_embeddings": "{a}.context_length", "hidden_size": "{a}.embedding_length",
               "intermediate_size": "{a}.feed_forward_length", "num_hidden_layers": "{a}.block_count",
               "num_attention_heads": "{a}.attention.head_count",
               "num_key_value_heads": "{a}.attention.head_count_kv",
               "rms_norm_eps": "{a}.attention.layer_norm_rms_epsilon", "rope_theta": "{a}.rope.freq_base",
               "head_dim": "{a}.attention.key_length", "vocab_size": "{a}.vocab_size"}
# HF LlamaConfig defaults, used when writing a config that lacks a key llama.cpp requires
HF_DEFAULTS = {"max_position_embeddings": 2048, "rms_norm_eps": 1e-6, "rope_theta": 10000.0}
