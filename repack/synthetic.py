"""Tiny deterministic float models (Llama-shaped, and Phi-3, Gemma, OPT), for the demo, the tests and
the benchmarks. Tensor names are written out here, not taken from :mod:`repack.quantize.arch`, so
that the tests check the table against an independent statement of each layout."""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch
from safetensors.torch import save_file

SIDE_FILES = {
    "generation_config.json": {"bos_token_id": 1, "eos_token_id": 2, "do_sample": False},
    "tokenizer_config.json": {"model_max_length": 2048, "bos_token": "<s>", "eos_token": "</s>",
                              "chat_template": "{% for m in messages %}{{ m['content'] }}{% endfor %}"},
    "special_tokens_map.json": {"bos_token": "<s>", "eos_token": "</s>"},
}


def llama_config(hidden: int = 128, intermediate: int = 256, layers: int = 2, heads: int = 4, kv_heads: int = 2,
                 vocab: int = 512, tie: bool = False, dtype: str = "float16") -> dict:
    return {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": hidden,
            "intermediate_size": intermediate, "num_hidden_layers": layers, "num_attention_heads": heads,
            "num_key_value_heads": kv_heads, "vocab_size": vocab, "max_position_embeddings": 2048,
            "rms_norm_eps": 1e-5, "rope_theta": 10000.0, "tie_word_embeddings": tie, "torch_dtype": dtype,
            "bos_token_id": 1, "eos_token_id": 2, "hidden_act": "silu"}


def phi3_config(hidden: int = 128, intermediate: int = 256, layers: int = 2, heads: int = 4, kv_heads: int = 4,
                vocab: int = 512, partial_rotary: float = 0.5, dtype: str = "float16") -> dict:
    return {"architectures": ["Phi3ForCausalLM"], "model_type": "phi3", "hidden_size": hidden,
            "intermediate_size": intermediate, "num_hidden_layers": layers, "num_attention_heads": heads,
            "num_key_value_heads": kv_heads, "vocab_size": vocab, "max_position_embeddings": 4096,
            "original_max_position_embeddings": 4096, "rms_norm_eps": 1e-5, "rope_theta": 10000.0,
            "partial_rotary_factor": partial_rotary, "sliding_window": None, "tie_word_embeddings": False,
            "torch_dtype": dtype, "bos_token_id": 1, "eos_token_id": 2, "hidden_act": "silu"}


def gemma_config(hidden: int = 128, intermediate: int = 256, layers: int = 2, heads: int = 4, kv_heads: int = 2,
                 head_dim: int = 64, vocab: int = 512, dtype: str = "float16") -> dict:
    return {"architectures": ["GemmaForCausalLM"], "model_type": "gemma", "hidden_size": hidden,
            "intermediate_size": intermediate, "num_hidden_layers": layers, "num_attention_heads": heads,
            "num_key_value_heads": kv_heads, "head_dim": head_dim, "vocab_size": vocab, "max_position_embeddings": 8192,
            "rms_norm_eps": 1e-6, "rope_theta": 10000.0, "tie_word_embeddings": True, "torch_dtype": dtype,
            "bos_token_id": 2, "eos_token_id": 1, "pad_token_id": 0, "hidden_act": "gelu",
            "hidden_activation": "gelu_pytorch_tanh"}


def opt_config(hidden: int = 128, ffn: int = 256, layers: int = 2, heads: int = 4, vocab: int = 512,
               positions: int = 512, dtype: str = "float16") -> dict:
    return {"architectures": ["OPTForCausalLM"], "model_type": "opt", "hidden_size": hidden, "ffn_dim": ffn,
            "num_hidden_layers": layers, "num_attention_heads": heads, "vocab_size": vocab,
            "max_position_embeddings": positions, "word_embed_proj_dim": hidden, "do_layer_norm_before": True,
            "activation_function": "relu", "enable_bias": True, "layer_norm_elementwise_affine": True,
            "torch_dtype": dtype, "bos_token_id": 2, "eos_token_id": 2, "pad_token_id": 1}


def _maker(config: dict, seed: int):
    """Random tensors: ``w(n, k)`` linear weights with a few outlier input channels, as real LLM
    weights have (so asymmetric zeros vary), ``v(n, around)`` vectors near ``around``."""
    g = torch.Generator().manual_seed(seed)
    dtype = getattr(torch, config["torch_dtype"])

    def w(n: int, k: int) -> torch.Tensor:
        x = torch.randn(n, k, generator=g) * 0.02 + torch.randn(1, k, generator=g) * 0.004
        return x.to(dtype)

    def v(n: int, around: float, spread: float = 0.1) -> torch.Tensor:
        return (around + spread * torch.randn(n, generator=g)).to(dtype)
    return w, v


def llama_weights(config: dict, seed: int = 0) -> dict[str, torch.Tensor]:
    w, v = _maker(config, seed)
    H, I, V = config["hidden_size"], config["intermediate_size"], config["vocab_size"]
    KV = config["num_key_value_heads"] * (H // config["num_attention_heads"])
    out = {"model.embed_tokens.weight": w(V, H), "model.norm.weight": torch.ones(H, dtype=getattr(torch, config["torch_dtype"]))}
    for i in range(config["num_hidden_layers"]):
        p = f"model.layers.{i}."
        out |= {p + "self_attn.q_proj.weight": w(H, H), p + "self_attn.k_proj.weight": w(KV, H),
                p + "self_attn.v_proj.weight": w(KV, H), p + "self_attn.o_proj.weight": w(H, H),
                p + "mlp.gate_proj.weight": w(I, H), p + "mlp.up_proj.weight": w(I, H),
                p + "mlp.down_proj.weight": w(H, I),
                p + "input_layernorm.weight": v(H, 1.0), p + "post_attention_layernorm.weight": v(H, 1.0)}
    if not config.get("tie_word_embeddings"):
        out["lm_head.weight"] = w(V, H)
    return out


def phi3_weights(config: dict, seed: int = 0) -> dict[str, torch.Tensor]:
    """Phi-3: q, k, v in one qkv_proj (rows in that order), gate and up in one gate_up_proj."""
    w, v = _maker(config, seed)
    H, I, V = config["hidden_size"], config["intermediate_size"], config["vocab_size"]
    KV = config["num_key_value_heads"] * (H // config["num_attention_heads"])
    out = {"model.embed_tokens.weight": w(V, H), "model.norm.weight": v(H, 1.0), "lm_head.weight": w(V, H)}
    for i in range(config["num_hidden_layers"]):
        p = f"model.layers.{i}."
        out |= {p + "self_attn.qkv_proj.weight": w(H + 2 * KV, H), p + "self_attn.o_proj.weight": w(H, H),
                p + "mlp.gate_up_proj.weight": w(2 * I, H), p + "mlp.down_proj.weight": w(H, I),
                p + "input_layernorm.weight": v(H, 1.0), p + "post_attention_layernorm.weight": v(H, 1.0)}
    return out


def gemma_weights(config: dict, seed: int = 0) -> dict[str, torch.Tensor]:
    """Gemma: norms hold w in x * (1 + w), so near 0; head_dim from the config; lm_head tied."""
    w, v = _maker(config, seed)
    H, I, V, D = config["hidden_size"], config["intermediate_size"], config["vocab_size"], config["head_dim"]
    Q, KV = config["num_attention_heads"] * D, config["num_key_value_heads"] * D
    out = {"model.embed_tokens.weight": w(V, H), "model.norm.weight": v(H, 0.0)}
    for i in range(config["num_hidden_layers"]):
        p = f"model.layers.{i}."
        out |= {p + "self_attn.q_proj.weight": w(Q, H), p + "self_attn.k_proj.weight": w(KV, H),
                p + "self_attn.v_proj.weight": w(KV, H), p + "self_attn.o_proj.weight": w(H, Q),
                p + "mlp.gate_proj.weight": w(I, H), p + "mlp.up_proj.weight": w(I, H), p + "mlp.down_proj.weight": w(H, I),
                p + "input_layernorm.weight": v(H, 0.0), p + "post_attention_layernorm.weight": v(H, 0.0)}
    return out


def opt_weights(config: dict, seed: int = 0) -> dict[str, torch.Tensor]:
    """OPT: model.decoder.*, biases on every linear and LayerNorm, learned positions (2 extra rows), tied head."""
    w, v = _maker(config, seed)
    H, F, V = config["hidden_size"], config["ffn_dim"], config["vocab_size"]
    d = "model.decoder."
    out = {d + "embed_tokens.weight": w(V, H), d + "embed_positions.weight": w(config["max_position_embeddings"] + 2, H),
           d + "final_layer_norm.weight": v(H, 1.0), d + "final_layer_norm.bias": v(H, 0.0)}
    for i in range(config["num_hidden_layers"]):
        p = f"{d}layers.{i}."
        for name, n, k in (("self_attn.q_proj", H, H), ("self_attn.k_proj", H, H), ("self_attn.v_proj", H, H),
                           ("self_attn.out_proj", H, H), ("fc1", F, H), ("fc2", H, F)):
            out |= {p + name + ".weight": w(n, k), p + name + ".bias": v(n, 0.0, 0.02)}
        for norm in ("self_attn_layer_norm", "final_layer_norm"):
            out |= {p + norm + ".weight": v(H, 1.0), p + norm + ".bias": v(H, 0.0)}
    return out


WEIGHTS = {"phi3": phi3_weights, "gemma": gemma_weights, "opt": opt_weights}  # anything else: llama_weights


def write_float_model(path: str | os.PathLike, config: dict | None = None, seed: int = 0) -> Path:
    """Write a float model folder (config, one safetensors file, side files) of the config's model_type."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    config = config or llama_config()
    weights = WEIGHTS.get(config.get("model_type"), llama_weights)(config, seed)
    save_file(weights, str(path / "model.safetensors"), metadata={"format": "pt"})
    (path / "config.json").write_text(json.dumps(config, indent=2))
    for name, data in SIDE_FILES.items():
        (path / name).write_text(json.dumps(data, indent=2))
    (path / "README.md").write_text(f"# tiny synthetic {config.get('model_type')}\nGenerated by repack.synthetic.\n")
    return path
