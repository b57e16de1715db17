"""Conversions between formats, checked against the reference packers' bytes for the same layers."""

import json

import numpy as np
import pytest
import torch
from safetensors import safe_open

from fixtures.checkpoints import awq_tensors, float_tensors, gptq_tensors, random_model, write_awq, write_gptq
from repack.convert import convert
from repack.errors import LossyConversionError, OutputError, UnsupportedError
from repack.source import open_source
from tests import reference_packers as ref
from tests.conftest import leftovers
from tests.test_formats import tensors


def expect_equal(folder, expected: dict[str, torch.Tensor]):
    got = tensors(folder)
    for name, t in expected.items():
        assert name in got, name
        assert got[name].dtype == t.dtype and got[name].shape == t.shape, name
        assert torch.equal(got[name], t), name


TARGETS = [("auto_gptq", "v1"), ("auto_gptq", "v2"), ("auto_awq", "gemm"), ("auto_awq", "gemv")]


def expected_tensors(m, L, fmt, variant):
    return gptq_tensors(m, L, variant) if fmt == "auto_gptq" else awq_tensors(m, L, variant)


@pytest.mark.parametrize("src_fmt, src_var", TARGETS)
@pytest.mark.parametrize("dst_fmt, dst_var", TARGETS)
@pytest.mark.parametrize("sym", [True, False])
def test_4bit_conversions_are_byte_exact(tmp_path, hashed, src_fmt, src_var, dst_fmt, dst_var, sym):
    layers = random_model(seed=11, bits=4, group_size=64, sym=sym)
    write = write_gptq if src_fmt == "auto_gptq" else write_awq
    src = hashed(write(tmp_path / "src", layers, src_var, sym=sym))
    plan = convert(src, tmp_path / "out", dst_fmt, dst_var)
    assert plan.exact and plan.written
    expected = {}
    for m, L in layers.items():
        expected |= expected_tensors(m, L, dst_fmt, dst_var)
    expected |= float_tensors()  # passed through byte-identical (bf16 although config says float16)
    expect_equal(tmp_path / "out", expected)
    assert sorted(tensors(tmp_path / "out")) == sorted(expected)


def test_awq_plan_never_transposes_the_codes(tmp_path, monkeypatch):
    """An AWQ gemm source's canonical words are made when first read: the plan of a conversion that
    needs only zeros and scales does not pay for the nibble transpose of every code."""
    from repack.formats import awq
    layers = random_model(seed=5, bits=4, group_size=64, sym=False)
    src = write_awq(tmp_path / "src", layers, "gemm", sym=False)
    calls = []
    real = awq._gemm_to_canonical
    monkeypatch.setattr(awq, "_gemm_to_canonical", lambda *a: calls.append(1) or real(*a))
    monkeypatch.setenv("REPACK_WRITE_PROCESSES", "0")  # count the write pass's calls in this process
    assert convert(src, tmp_path / "dry", "auto_gptq", "v2", dry_run=True).exact and not calls
    convert(src, tmp_path / "out", "auto_gptq", "v2")
    assert len(calls) == len(layers)


@pytest.mark.parametrize("fmt, variant", TARGETS)
@pytest.mark.parametrize("dtype", ["auto", "fp32", "bf16"])
def test_dense_is_reference_dequantize(tmp_path, fmt, variant, dtype):
    layers = random_model(seed=2, bits=4, group_size=32, act_order=False)
    write = write_gptq if fmt == "auto_gptq" else write_awq
    src = write(tmp_path / "src", layers, variant)
    convert(src, tmp_path / "dense", "dense", dtype)
    torch_dtype = {"auto": torch.float16, "fp32": torch.float32, "bf16": torch.bfloat16}[dtype]
    expected = {f"{m}.weight": torch.from_numpy(ref.dequantize(L.q, L.z, L.s, L.group_size)).to(torch_dtype)
                for m, L in layers.items()}
    expect_equal(tmp_path / "dense", expected)
    config = json.loads((tmp_path / "dense" / "config.json").read_text())
    assert "quantization_config" not in config
    assert not (tmp_path / "dense" / "quantize_config.json").exists()
    assert open_source(tmp_path / "dense").detection.format == "dense"


@pytest.mark.parametrize("bits", [2, 3, 8])
def test_dense_from_gptq_act_order(tmp_path, bits):
    layers = random_model(seed=bits, bits=bits, group_size=32, act_order=True)
    src = write_gptq(tmp_path / "src", layers, "v2", act_order=True)
    convert(src, tmp_path / "dense", "dense", "fp32")
    expect_equal(tmp_path / "dense", {f"{m}.weight": torch.from_numpy(ref.dequantize(L.q, L.z, L.s, 32, L.g_idx))
                                      for m, L in layers.items()})


def test_gptq_v1_and_v2_differ_only_in_qzeros(tmp_path):
    layers = random_model(seed=4, bits=4, group_size=64)
    src = write_gptq(tmp_path / "v1", layers, "v1")
    convert(src, tmp_path / "v2", "auto_gptq", "v2")
    a, b = tensors(src), tensors(tmp_path / "v2")
    for n in a:
        if n.endswith(".qzeros"):
            words_a = a[n].numpy().view(np.uint32).astype(np.int64)
            words_b = b[n].numpy().view(np.uint32).astype(np.int64)
            assert (words_b - words_a == 0x11111111).all()  # zeros 1..15: no field overflows
        else:
            assert torch.equal(a[n], b[n]), n


def test_zero_of_zero_cannot_go_to_v1(tmp_path, hashed):
    layers = random_model(seed=6, bits=4, group_size=64, zero_range=(0, 15))
    src = hashed(write_gptq(tmp_path / "src", layers, "v2"))
    with pytest.raises(LossyConversionError, match=r"cannot be written exactly as auto_gptq/v1") as e:
        convert(src, tmp_path / "out", "auto_gptq", "v1")
    assert not (tmp_path / "out").exists() and not leftovers(tmp_path)
    lossy = e.value.plan.by_status("lossy")
    assert lossy and all("zero points 0..15 outside the storable 1..16" in l.reasons[0] for l in lossy)
    # the reported error is the real one: codes shifted by one and clipped at 15 lose exactly one step
    for l in lossy:
        L = layers[l.module]
        clipped = (L.q == 15) & (L.z[L.groups()] == 0)
        assert l.max_abs_err == pytest.approx(float((L.s.astype(np.float32)[L.groups()] * clipped).max()))
    plan = convert(src, tmp_path / "out", "auto_gptq", "v1", allow_lossy=True)
    assert plan.written and not plan.exact
    # and AWQ / v2 hold it exactly
    assert convert(src, tmp_path / "awq", "auto_awq").exact


def test_act_order_into_awq_is_lossy_with_measured_error(tmp_path):
    layers = random_model(seed=8, bits=4, group_size=32, act_order=True)
    src = write_gptq(tmp_path / "src", layers, "v1", act_order=True)
    plan = convert(src, tmp_path / "dry", "auto_awq", dry_run=True)
    assert not (tmp_path / "dry").exists()
    assert all(l.status == "lossy" and "act-order" in l.reasons[0] and l.max_abs_err > 0 for l in plan.layers)
    with pytest.raises(LossyConversionError):
        convert(src, tmp_path / "out", "auto_awq")
    plan = convert(src, tmp_path / "out", "auto_awq", allow_lossy=True)
    written = open_source(tmp_path / "out")
    for l in plan.layers:  # the error reported before writing is the error of what was written
        L = layers[l.module]
        w = written.read(l.module).dequantize(np.float32)
        err = np.abs(w - ref.dequantize(L.q, L.z, L.s, 32, L.g_idx)).max()
        assert err == pytest.approx(l.max_abs_err)


def test_2bit_widens_into_awq_exactly(tmp_path):
    layers = random_model(seed=1, bits=2, group_size=64, sym=True)
    src = write_gptq(tmp_path / "src", layers, "v1", sym=True)
    plan = convert(src, tmp_path / "awq", "auto_awq")
    assert plan.exact and "widened 2->4 bits" in plan.layers[0].reasons[0]
    expected = {}
    for m, L in layers.items():
        expected |= awq_tensors(m, L)  # same codes and zeros (2), now in 4-bit AWQ words
    expect_equal(tmp_path / "awq", expected)
    assert json.loads((tmp_path / "awq" / "config.json").read_text())["quantization_config"]["zero_point"] is True


def test_8bit_into_awq_is_lossy(tmp_path):
    layers = random_model(seed=1, bits=8, group_size=64)
    src = write_gptq(tmp_path / "src", layers, "v1")
    plan = convert(src, tmp_path / "x", "auto_awq", dry_run=True)
    assert all(l.status == "lossy" and "8-bit not supported" in l.reasons[0] for l in plan.layers)


def test_indivisible_dims_refused(tmp_path, hashed):
    # K = 96 with group size 64: GPTQ holds a short last group, AWQ needs whole groups
    layers = random_model(seed=1, bits=4, group_size=64, shapes={"model.layers.0.mlp.down_proj": (96, 64)})
    src = hashed(write_gptq(tmp_path / "src", layers, "v1"))
    assert convert(src, tmp_path / "gptq", "auto_gptq", "v2").exact
    with pytest.raises(UnsupportedError, match=r"'model.layers.0.mlp.down_proj'.*in_features 96 is not a multiple of group_size 64"):
        convert(src, tmp_path / "out", "auto_awq", allow_lossy=True)
    assert not (tmp_path / "out").exists() and not leftovers(tmp_path)


def test_scale_dtype_cast_checked(tmp_path):
    layers = random_model(seed=3)
    src = write_gptq(tmp_path / "src", layers, "v1")
    assert convert(src, tmp_path / "fp32", "auto_gptq", "v1", scale_dtype="fp32").exact  # fp16 -> fp32 exact
    plan = convert(src, tmp_path / "bf16", "auto_gptq", "v1", scale_dtype="bf16", dry_run=True)
    assert all(l.status == "lossy" and "rounds" in l.reasons[0] for l in plan.layers)


def test_output_folder(tmp_path, hashed):
    layers = random_model(seed=12)
    src = hashed(write_gptq(tmp_path / "src", layers, "v1", tie=True, bias_of=("model.layers.0.self_attn.k_proj",)))
    out = tmp_path / "out"
    convert(src, out, "auto_awq", shard_size=150_000)
    files = sorted(p.name for p in out.iterdir())
    assert "tokenizer.json" in files and "tokenizer_config.json" in files and "generation_config.json" in files
    assert "modeling_custom.py" in files  # copied as a file, never imported
    index = json.loads((out / "model.safetensors.index.json").read_text())
    shards = sorted(set(index["weight_map"].values()))
    assert len(shards) > 1 and all(f"-of-{len(shards):05d}" in s for s in shards)
    assert index["metadata"]["total_size"] == sum(t.numel() * t.element_size() for t in tensors(out).values())
    for shard in shards:
        with safe_open(str(out / shard), "pt") as h:
            assert h.metadata() == {"format": "pt"}
            assert all(index["weight_map"][k] == shard for k in h.keys())
    got = tensors(out)
    assert "lm_head.weight" not in got and "model.embed_tokens.weight" in got  # tied stays tied
    assert torch.equal(got["model.layers.0.self_attn.k_proj.bias"], float_tensors(tie=True, bias_of=("model.layers.0.self_attn.k_proj",))["model.layers.0.self_attn.k_proj.bias"])
    config = json.loads((out / "config.json").read_text())
    assert config["tie_word_embeddings"] is True and config["hidden_size"] == 128


def test_existing_target_kept_unless_force(tmp_path):
    src = write_gptq(tmp_path / "src", random_model(seed=1), "v1")
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    with pytest.raises(OutputError, match="already exists"):
        convert(src, out, "auto_awq")
    assert (out / "keep.txt").read_text() == "mine"
    convert(src, out, "auto_awq", force=True)
    assert not (out / "keep.txt").exists() and (out / "model.safetensors").exists()
    assert not leftovers(tmp_path)


def test_dense_source_to_quantized_is_refused(tmp_path):
    from repack.synthetic import write_float_model
    src = write_float_model(tmp_path / "float")
    with pytest.raises(UnsupportedError, match="repack quantize"):
        convert(src, tmp_path / "out", "auto_gptq")


@pytest.mark.parametrize("to, variant", TARGETS)
@pytest.mark.parametrize("sym", [True, False])
def test_config_has_the_fields_loaders_detect(tmp_path, to, variant, sym):
    """transformers maps quant_method to its config class; vLLM's gptq(_marlin) reads bits, group_size,
    sym and desc_act (all four must be present), its awq(_marlin) reads bits, group_size, zero_point
    and version (../shared/formats/hf.md §5)."""
    src = write_gptq(tmp_path / "src", random_model(seed=5, sym=sym), "v1", sym=sym)
    convert(src, tmp_path / "out", to, variant)
    qc = json.loads((tmp_path / "out" / "config.json").read_text())["quantization_config"]
    if to == "auto_gptq":
        assert qc["quant_method"] == "gptq"
        assert (qc["bits"], qc["group_size"], qc["sym"], qc["desc_act"]) == (4, 64, sym, False)
        assert qc["checkpoint_format"] == {"v1": "gptq", "v2": "gptq_v2"}[variant]
        assert json.loads((tmp_path / "out" / "quantize_config.json").read_text()) == qc
    else:
        assert qc["quant_method"] == "awq"
        assert (qc["bits"], qc["group_size"], qc["zero_point"], qc["version"]) == (4, 64, not sym, variant)
        assert qc["modules_to_not_convert"] == ["lm_head"]
    assert open_source(tmp_path / "out").detection.format == to
    assert open_source(tmp_path / "out").detection.variant == variant


def test_convert_never_imports_torch(tmp_path):
    """Conversion runs on numpy: importing torch is 1-2 s of every `repack convert` on a small
    machine. The CLI converts to every format family (write processes included) in a fresh
    interpreter, which then must not have loaded torch."""
    import subprocess
    import sys

    src = write_gptq(tmp_path / "src", random_model(seed=3, bits=4, group_size=128, sym=True), "v1", sym=True)
    code = f"""
import sys
from cli.main import main
for i, (to, variant) in enumerate([("auto_awq", "gemm"), ("auto_awq", "gemv"), ("marlin", "gptq"), ("gguf", "q4_0"),
                                   ("turbomind", "v6"), ("compressed_tensors", None), ("auto_round", None), ("dense", None)]):
    args = ["convert", {str(src)!r}, {str(tmp_path)!r} + f"/out{{i}}", "--to", to, "--quiet"]
    try:
        main(args + (["--variant", variant] if variant else []), standalone_mode=False)
    except SystemExit as e:
        assert not e.code, (to, e.code)
    assert (__import__("pathlib").Path({str(tmp_path)!r}) / f"out{{i}}").is_dir(), to
print("torch" in sys.modules)
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().splitlines()[-1] == "False", done.stdout
