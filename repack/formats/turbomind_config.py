"""The workspace config: ``config.ini`` (legacy ``w4``, one ``[llama]`` section) or ``config.yaml``
(v0.6-0.9: ``model_config`` / ``attention_config`` / ``lora_config``), written from and read back to
a Hugging Face config.json.

Keys and defaults: lmdeploy v0.5.3 ``deploy/target_model/base.py`` ``TurbomindModelConfig`` (written
with ``configparser``) and v0.6.0 ``deploy/config.py`` ``ModelConfig`` / ``AttentionConfig`` /
``LoraConfig`` (written with ``yaml.safe_dump``).
"""

from __future__ import annotations

import configparser
from dataclasses import dataclass
from pathlib import Path

from ..errors import InputError
from .turbomind_arch import Arch, Dims, arch_named

CONFIG_FILE = {"w4": "config.ini", "v6": "config.yaml"}
_LORA = {"lora_policy": "", "lora_r": 0, "lora_scale": 0.0, "lora_max_wo_r": 0, "lora_rank_pattern": "",
         "lora_scale_pattern": ""}


@dataclass(frozen=True)
class Layout:
    """What the reader needs to undo the workspace, parsed from its config."""

    variant: str
    arch: Arch
    dims: Dims
    tp: int
    group_size: int
    attn_bias: bool
    hf_config: dict


def _common(config: dict, d: Dims, arch: Arch, tp: int, group_size: int, attn_bias: bool) -> dict:
    return {"model_name": str(config.get("model_type", "")), "model_arch": arch.architecture,
            "head_num": d.heads, "kv_head_num": d.kv_heads, "vocab_size": d.vocab, "num_layer": d.layers,
            "inter_size": d.inter, "norm_eps": float(config.get("rms_norm_eps") or 1e-6),
            "attn_bias": int(attn_bias), "start_id": int(config.get("bos_token_id") or 1),
            "end_id": int(config.get("eos_token_id") if isinstance(config.get("eos_token_id"), int) else 2),
            "session_len": int(config.get("max_position_embeddings") or 2048) + 8,
            "weight_type": "int4", "size_per_head": d.head_dim, "group_size": group_size}


def _attention(config: dict, d: Dims) -> dict:
    return {"rotary_embedding": d.head_dim, "rope_theta": float(config.get("rope_theta") or 10000.0),
            "max_position_embeddings": int(config.get("max_position_embeddings") or 0),
            "original_max_position_embeddings": 0, "rope_scaling_type": "", "rope_scaling_factor": 0.0,
            "use_dynamic_ntk": 0, "low_freq_factor": 1.0, "high_freq_factor": 1.0, "use_logn_attn": 0,
            "cache_block_seq_len": 64}


def render(variant: str, config: dict, d: Dims, arch: Arch, tp: int, group_size: int, attn_bias: bool,
           model_format: str = "awq") -> str:
    c = _common(config, d, arch, tp, group_size, attn_bias)
    a = _attention(config, d)
    if variant == "w4":
        a.pop("cache_block_seq_len")
        llama = {**c, "tensor_para_size": tp, **a, "max_batch_size": 64, "max_prefill_token_num": 8192,
                 "max_context_token_num": 1, "step_length": 1, "cache_max_entry_count": 0.8,
                 "cache_block_seq_len": 64, "cache_chunk_size": -1, "enable_prefix_caching": False,
                 "num_tokens_per_iter": 0, "max_prefill_iters": 1, "use_context_fmha": 1, "quant_policy": 0,
                 **_LORA}
        parser = configparser.ConfigParser()
        parser["llama"] = {k: str(v) for k, v in llama.items()}
        import io
        out = io.StringIO()
        parser.write(out)
        return out.getvalue()
    import yaml
    model = {**c, "chat_template": "", "hidden_units": d.hidden, "tp": tp, "model_format": model_format}
    return yaml.safe_dump({"model_config": model, "attention_config": a, "lora_config": dict(_LORA)})


def parse(weights: Path) -> Layout:
    """The workspace config in ``weights`` (``config.ini`` or ``config.yaml``), checked."""
    ini, yml = weights / CONFIG_FILE["w4"], weights / CONFIG_FILE["v6"]
    if ini.is_file():
        variant, path = "w4", ini
        # no interpolation: values are plain numbers and names; a '%' in a damaged file must
        # not raise from inside the section read below (fuzzing found it)
        parser = configparser.ConfigParser(interpolation=None)
        try:
            parser.read_string(path.read_text(encoding="utf-8"))
        except (configparser.Error, UnicodeDecodeError, OSError) as e:
            raise InputError(f"{path}: not a readable config.ini ({str(e).splitlines()[0]})") from None
        if "llama" not in parser:
            raise InputError(f"{path}: missing the [llama] section")
        model = dict(parser["llama"])
        attention = model
        tp_key = "tensor_para_size"
    elif yml.is_file():
        variant, path = "v6", yml
        import yaml
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8"))
        except (yaml.YAMLError, UnicodeDecodeError, OSError) as e:
            raise InputError(f"{path}: not readable YAML ({str(e).splitlines()[0]})") from None
        if not isinstance(data, dict) or not isinstance(data.get("model_config"), dict):
            raise InputError(f"{path}: missing the model_config mapping")
        model = data["model_config"]
        attention = data.get("attention_config") if isinstance(data.get("attention_config"), dict) else {}
        tp_key = "tp"
    else:
        raise InputError(f"{weights}: no config.ini or config.yaml (not a TurboMind workspace)")

    def num(src: dict, key: str, kind=int, positive: bool = True, default=None):
        v = src.get(key, default)
        if v is None:
            raise InputError(f"{path}: missing key {key!r}")
        try:
            x = kind(float(v)) if kind is int and isinstance(v, str) and "." in v else kind(v)
        except (TypeError, ValueError):
            raise InputError(f"{path}: key {key!r} must be a {kind.__name__}, got {v!r}") from None
        if isinstance(x, float) and x != x or (positive and x <= 0):
            raise InputError(f"{path}: key {key!r} must be positive, got {v!r}")
        return x

    weight_type = str(model.get("weight_type", ""))
    if weight_type != "int4":
        raise InputError(f"{path}: weight_type {weight_type!r}; only int4 workspaces are read")
    arch_name = str(model.get("model_arch") or "LlamaForCausalLM")
    arch = arch_named(arch_name)
    if arch is None:
        raise InputError(f"{path}: model_arch {arch_name!r} is not in the TurboMind architecture table")
    heads, kv = num(model, "head_num"), num(model, "kv_head_num")
    head_dim = num(model, "size_per_head")
    hidden = heads * head_dim
    if variant == "v6" and num(model, "hidden_units") != hidden:
        raise InputError(f"{path}: hidden_units {model['hidden_units']} != head_num * size_per_head ({hidden})")
    d = Dims(hidden, heads, kv, head_dim, num(model, "inter_size"), num(model, "num_layer"), num(model, "vocab_size"))
    if heads % kv:
        raise InputError(f"{path}: head_num {heads} is not a multiple of kv_head_num {kv}")
    tp, gs = num(model, tp_key), num(model, "group_size")
    bias = str(model.get("attn_bias", 0)).strip().lower() in ("1", "true")
    eps = num(model, "norm_eps", float)
    theta = num(attention, "rope_theta", float, default=10000.0)
    hf = {"architectures": [arch.architecture], "model_type": arch.model_types[0], "hidden_size": hidden,
          "intermediate_size": d.inter, "num_hidden_layers": d.layers, "num_attention_heads": heads,
          "num_key_value_heads": kv, "head_dim": head_dim, "vocab_size": d.vocab, "rms_norm_eps": eps,
          "rope_theta": theta, "tie_word_embeddings": False, "torch_dtype": "float16",
          "bos_token_id": num(model, "start_id", positive=False, default=1),
          "eos_token_id": num(model, "end_id", positive=False, default=2)}
    mpe = num(attention, "max_position_embeddings", positive=False, default=0)
    if mpe:
        hf["max_position_embeddings"] = mpe
    if bias and arch.architecture == "LlamaForCausalLM":
        hf["attention_bias"] = True
    return Layout(variant, arch, d, tp, gs, bias, hf)
