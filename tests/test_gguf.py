"""The gguf format end to end: exact conversions checked against gguf-py's reader and the tests' loop
encoders (tests/gguf_reference.py), never against repack's own codecs."""

import json
import math
from pathlib import Path

import gguf
import numpy as np
import pytest
import torch
from click.testing import CliRunner

from cli.main import main
from fixtures.checkpoints import (base_config, float_tensors, gguf_block_data, gguf_row_order, gguf_tensor_name,
                                  random_model, write_gguf, write_gptq)
from repack.convert import convert
from repack.errors import LossyConversionError, UnsupportedError
from repack.source import open_source
from tests import gguf_reference as gref
from tests import reference_packers as ref
from tests.conftest import leftovers
from tests.test_formats import tensors

HEADS = {"self_attn.q_proj": 4, "self_attn.k_proj": 2}  # base_config: 4 heads, 2 kv heads


def gguf_tensors(folder: Path) -> dict[str, gguf.ReaderTensor]:
    files = list(Path(folder).glob("*.gguf"))
    assert len(files) == 1, files
    return {t.name: t for t in gguf.GGUFReader(files[0]).tensors}


def expected_blocks(m: str, L, kind: str) -> np.ndarray:
    data = gguf_block_data(L, kind)
    part = ".".join(m.split(".")[-2:])
    return data[gguf_row_order(data.shape[0], HEADS[part])] if part in HEADS else data


def assert_gguf_layers(folder: Path, layers, kind: str):
    got = gguf_tensors(folder)
    for m, L in layers.items():
        t = got[gguf_tensor_name(f"{m}.weight")]
        assert t.tensor_type == gguf.GGMLQuantizationType[kind.upper()], m
        assert [int(x) for x in t.shape] == [L.K, L.N], m  # ne order: inputs first
        want = expected_blocks(m, L, kind)
        bad = np.argwhere(np.asarray(t.data) != want)
        assert not len(bad), f"{m}: first differing (row, byte) {bad[0]}"


@pytest.mark.parametrize("group_size", [128, 32, -1])
def test_gptq_sym_to_q4_0_and_back_is_bit_identical(tmp_path, hashed, group_size):
    layers = random_model(seed=21, bits=4, group_size=group_size, sym=True)
    src = hashed(write_gptq(tmp_path / "src", layers, "v1", sym=True))
    plan = convert(src, tmp_path / "gguf", "gguf")
    assert plan.exact and plan.written and all("as Q4_0" in l.reasons for l in plan.layers)
    assert sorted(p.name for p in (tmp_path / "gguf").iterdir()) == ["model.gguf"]
    assert_gguf_layers(tmp_path / "gguf", layers, "q4_0")
    back = convert(tmp_path / "gguf", tmp_path / "back", "auto_gptq", "v1")
    assert back.exact
    a, b = tensors(src), tensors(tmp_path / "back")
    assert set(a) == set(b)
    for name in a:
        if name.endswith((".qweight", ".qzeros", ".scales", ".g_idx")):
            assert a[name].dtype == b[name].dtype and torch.equal(a[name], b[name]), name
        else:  # bf16 float tensors travel as F32 in GGUF: same values, wider dtype
            assert b[name].dtype == torch.float32 and torch.equal(a[name].float(), b[name]), name
    assert not leftovers(tmp_path)


def test_asym_4bit_is_q5_0_exactly(tmp_path):
    layers = random_model(seed=22, bits=4, group_size=64, sym=False, zero_range=(0, 15))
    src = write_gptq(tmp_path / "src", layers, "v2")
    plan = convert(src, tmp_path / "gguf", "gguf")
    assert plan.exact and all("as Q5_0" in l.reasons for l in plan.layers)
    assert_gguf_layers(tmp_path / "gguf", layers, "q5_0")
    src2 = open_source(tmp_path / "gguf")
    for m, L in layers.items():
        w = src2.read(m).dequantize(np.float32)
        assert np.array_equal(w, ref.dequantize(L.q, L.z, L.s, L.group_size)), m


@pytest.mark.parametrize("bits, sym", [(4, False), (8, True)])
def test_q8_0_exact(tmp_path, bits, sym):
    layers = random_model(seed=23, bits=bits, group_size=32, sym=sym)
    src = write_gptq(tmp_path / "src", layers, "v2", sym=sym)
    plan = convert(src, tmp_path / "gguf", "gguf", "q8_0")
    assert plan.exact
    assert_gguf_layers(tmp_path / "gguf", layers, "q8_0")


def test_q4_1_reports_the_offset_rounding(tmp_path):
    layers = random_model(seed=24, bits=4, group_size=64, sym=False)
    src = write_gptq(tmp_path / "src", layers, "v2")
    with pytest.raises(LossyConversionError, match="offset m = -s\\*z rounded to fp16"):
        convert(src, tmp_path / "gguf", "gguf", "q4_1")
    plan = convert(src, tmp_path / "gguf", "gguf", "q4_1", allow_lossy=True)
    assert_gguf_layers(tmp_path / "gguf", layers, "q4_1")
    got = gguf_tensors(tmp_path / "gguf")
    for layer in plan.layers:
        L = layers[layer.module]
        t = got[gguf_tensor_name(f"{layer.module}.weight")]
        w = gref.dequantize_rows("q4_1", np.asarray(t.data))
        part = ".".join(layer.module.split(".")[-2:])
        if part in HEADS:
            w = w[np.argsort(gguf_row_order(w.shape[0], HEADS[part]))]
        want = float(np.abs(w - ref.dequantize(L.q, L.z, L.s, L.group_size)).max())
        assert layer.status == "lossy" and layer.max_abs_err == want and want > 0


def test_forced_q4_0_on_asymmetric_requantizes_with_measured_loss(tmp_path):
    layers = random_model(seed=25, bits=4, group_size=64, sym=False)
    src = write_gptq(tmp_path / "src", layers, "v2")
    plan = convert(src, tmp_path / "gguf", "gguf", "q4_0", dry_run=True)
    assert {l.status for l in plan.layers} == {"lossy"}
    assert all("re-quantized to symmetric 4-bit for Q4_0" in l.reasons for l in plan.layers)
    assert all(0 < l.max_abs_err < 0.02 for l in plan.layers)


@pytest.mark.parametrize("kind", ["q4_0", "q4_1", "q5_0", "q5_1", "q8_0"])
def test_reader_matches_gguf_py_and_writer_reproduces_the_bytes(tmp_path, kind):
    sym = kind == "q4_0"
    layers = random_model(seed=26, bits=4, group_size=32, sym=sym)
    src = write_gguf(tmp_path / "src", layers, kind)
    source = open_source(src)
    assert source.detection.variant == kind and sorted(source.modules()) == sorted(layers)
    raw = gguf_tensors(src)
    for m in layers:
        t = raw[gguf_tensor_name(f"{m}.weight")]
        want = gguf.dequantize(t.data, t.tensor_type)
        part = ".".join(m.split(".")[-2:])
        if part in HEADS:
            want = want[np.argsort(gguf_row_order(want.shape[0], HEADS[part]))]
        qt = source.read(m)
        assert qt.offsets is not None if kind in ("q4_1", "q5_1") else qt.offsets is None
        assert np.array_equal(qt.dequantize(np.float32), want), m
    plan = convert(src, tmp_path / "again", "gguf", kind)
    assert plan.exact
    again = gguf_tensors(tmp_path / "again")
    for name, t in raw.items():
        assert again[name].tensor_type == t.tensor_type and np.array_equal(np.asarray(again[name].data), np.asarray(t.data)), name


def test_q4_1_to_integer_zeros_is_refused_with_the_loss(tmp_path):
    layers = random_model(seed=27, bits=4, group_size=32, sym=False)
    src = write_gguf(tmp_path / "src", layers, "q4_1")
    with pytest.raises(LossyConversionError, match="float offsets .* rounded to integer zero points"):
        convert(src, tmp_path / "out", "auto_awq")


def test_dense_fp32_is_gguf_py_dequantization_and_config_comes_from_metadata(tmp_path):
    layers = random_model(seed=28, bits=4, group_size=32, sym=True)
    src = write_gguf(tmp_path / "src", layers, "q4_0", config={"max_position_embeddings": 4096})
    convert(src, tmp_path / "dense", "dense", "fp32")
    got = tensors(tmp_path / "dense")
    for name, t in gguf_tensors(src).items():
        hf = {gguf_tensor_name(n): n for n in list(float_tensors()) + [f"{m}.weight" for m in layers]}[name]
        want = gguf.dequantize(t.data, t.tensor_type)
        part = ".".join(hf.split(".")[-3:-1])
        if part in HEADS:
            want = want[np.argsort(gguf_row_order(want.shape[0], HEADS[part]))]
        assert got[hf].dtype == torch.float32 and np.array_equal(got[hf].numpy(), want), hf
    cfg = json.loads((tmp_path / "dense" / "config.json").read_text())
    base = base_config()
    for key in ("hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads", "num_key_value_heads",
                "rms_norm_eps", "model_type"):
        assert cfg[key] == base[key], key
    assert cfg["max_position_embeddings"] == 4096 and cfg["tie_word_embeddings"] is False


def test_written_metadata(tmp_path):
    layers = random_model(seed=29, bits=4, group_size=128, sym=True)
    src = write_gptq(tmp_path / "src", layers, "v1", sym=True)
    cfg = json.loads((src / "config.json").read_text()) | {"rope_theta": 500000.0, "max_position_embeddings": 8192}
    (src / "config.json").write_text(json.dumps(cfg))
    convert(src, tmp_path / "gguf", "gguf")
    r = gguf.GGUFReader(tmp_path / "gguf" / "model.gguf")
    f = {k: v.contents() for k, v in r.fields.items()}
    assert f["general.architecture"] == "llama" and f["general.file_type"] == int(gguf.LlamaFileType.MOSTLY_Q4_0)
    assert (f["llama.context_length"], f["llama.embedding_length"], f["llama.block_count"]) == (8192, 128, 2)
    assert (f["llama.feed_forward_length"], f["llama.attention.head_count"], f["llama.attention.head_count_kv"]) == (256, 4, 2)
    assert f["llama.rope.freq_base"] == 500000.0 and f["llama.rope.dimension_count"] == 32
    assert f["llama.attention.layer_norm_rms_epsilon"] == np.float32(1e-5)
    assert f["general.quantization_version"] == 2
    norms = [t for t in r.tensors if t.name.endswith("norm.weight")]
    assert norms and all(t.tensor_type == gguf.GGMLQuantizationType.F32 for t in norms)


def write_bpe_tokenizer(folder: Path, byte_fallback: bool = False):
    vocab = {"<unk>": 0, "<s>": 1, "</s>": 2, "a": 3, "b": 4, "ab": 5, "<0x0A>": 6}
    tok = {"version": "1.0", "model": {"type": "BPE", "vocab": vocab, "merges": ["a b"] if not byte_fallback else [["a", "b"]],
                                       "byte_fallback": byte_fallback},
           "added_tokens": [{"id": 1, "content": "<s>", "special": True}, {"id": 2, "content": "</s>", "special": True},
                            {"id": 7, "content": "<tool>", "special": False}]}
    (folder / "tokenizer.json").write_text(json.dumps(tok))
    (folder / "tokenizer_config.json").write_text(json.dumps({"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>",
                                                              "add_bos_token": True, "chat_template": "{{ x }}"}))


@pytest.mark.parametrize("spm", [False, True])
def test_tokenizer_metadata_from_tokenizer_json(tmp_path, spm):
    layers = random_model(seed=30, bits=4, group_size=64, sym=True)
    src = write_gptq(tmp_path / "src", layers, "v1", sym=True)
    write_bpe_tokenizer(src, byte_fallback=spm)
    convert(src, tmp_path / "gguf", "gguf")
    f = {k: v for k, v in gguf.GGUFReader(tmp_path / "gguf" / "model.gguf").fields.items()}
    c = {k: v.contents() for k, v in f.items()}
    assert c["tokenizer.ggml.model"] == ("llama" if spm else "gpt2")
    tokens = c["tokenizer.ggml.tokens"]
    assert tokens[:8] == ["<unk>", "<s>", "</s>", "a", "b", "ab", "<0x0A>", "<tool>"] and len(tokens) == 96  # vocab_size
    types = c["tokenizer.ggml.token_type"]
    assert types[1] == types[2] == 3 and types[7] == 4 and types[3] == 1 and types[50] == 5
    assert (types[0], types[6]) == ((2, 6) if spm else (1, 1))
    assert (c["tokenizer.ggml.bos_token_id"], c["tokenizer.ggml.eos_token_id"]) == (1, 2)
    assert c["tokenizer.ggml.add_bos_token"] is True and c["tokenizer.chat_template"] == "{{ x }}"
    if spm:
        assert c["tokenizer.ggml.scores"][:6] == [-0.0, 0.0, 0.0, -3.0, -4.0, -5.0]
    else:
        assert c["tokenizer.ggml.merges"] == ["a b"] and c["tokenizer.ggml.pre"] == "default"


def test_k_quants_and_bad_group_sizes_are_refused(tmp_path):
    layers = random_model(seed=31, bits=4, group_size=64, sym=True)
    src = write_gptq(tmp_path / "src", layers, "v1", sym=True)
    r = CliRunner().invoke(main, ["convert", str(src), str(tmp_path / "out"), "--to", "gguf", "--gguf-type", "q4_k"])
    assert r.exit_code == 2 and "K-quants are not written" in r.stderr and "gguf.md §5.2" in r.stderr
    r = CliRunner().invoke(main, ["convert", str(src), str(tmp_path / "out"), "--to", "gguf", "--gguf-type", "q5_0"])
    assert r.exit_code == 0 and not leftovers(tmp_path), r.output
    assert gguf_tensors(tmp_path / "out")["blk.0.attn_v.weight"].tensor_type == gguf.GGMLQuantizationType.Q5_0
    src16 = write_gptq(tmp_path / "g16", random_model(seed=32, bits=4, group_size=16, sym=True), "v1", sym=True)
    with pytest.raises(UnsupportedError, match="group size 16 is not a multiple of 32"):
        convert(src16, tmp_path / "out16", "gguf")


def test_existing_output_is_kept_without_force(tmp_path):
    src = write_gptq(tmp_path / "src", random_model(seed=33, bits=4, group_size=64, sym=True), "v1", sym=True)
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "keep.txt").write_text("mine")
    r = CliRunner().invoke(main, ["convert", str(src), str(tmp_path / "out"), "--to", "gguf"])
    assert r.exit_code == 2 and "already exists" in r.stderr
    assert (tmp_path / "out" / "keep.txt").read_text() == "mine"
    r = CliRunner().invoke(main, ["convert", str(src), str(tmp_path / "out"), "--to", "gguf", "--force"])
    assert r.exit_code == 0 and sorted(p.name for p in (tmp_path / "out").iterdir()) == ["model.gguf"]


def test_inspect_and_verify_take_a_gguf_file(tmp_path):
    layers = random_model(seed=34, bits=4, group_size=64, sym=True)
    src = write_gptq(tmp_path / "src", layers, "v1", sym=True)
    convert(src, tmp_path / "gguf", "gguf")
    file = tmp_path / "gguf" / "model.gguf"
    r = CliRunner().invoke(main, ["inspect", str(file), "--json"])
    assert r.exit_code == 0, r.output
    info = json.loads(r.stdout)
    assert info["format"] == "gguf" and info["variant"] == "q4_0" and info["group_size"] == 64 and info["sym"] is True
    assert info["targets"]["auto_gptq/v1"] == "exact" and info["targets"]["gguf/q4_1"] == "exact"
    r = CliRunner().invoke(main, ["verify", str(src), str(file)])
    assert r.exit_code == 0 and "OK" in r.stdout, r.output


# ---- bad input: one line naming the file, the tensor and the problem -------------------------------------

def _small_gguf(tmp_path: Path) -> Path:
    return write_gguf(tmp_path / "src", random_model(seed=35, bits=4, group_size=32, sym=True,
                                                     shapes={"model.layers.0.mlp.up_proj": (64, 32)}), "q4_0",
                      config={"num_hidden_layers": 1}) / "model.gguf"


def _tensor_field_pos(file: Path, name: str) -> tuple[int, int]:
    """Byte positions of a tensor's ggml type and data offset fields (gguf.md §1 tensor info)."""
    f = next(t.field for t in gguf.GGUFReader(file).tensors if t.name == name)
    n_dims = int(f.parts[2][0])
    type_pos = f.offset + 8 + len(name.encode()) + 4 + 8 * n_dims
    return type_pos, type_pos + 4


def _patch(file: Path, pos: int, raw: bytes):
    data = bytearray(file.read_bytes())
    data[pos:pos + len(raw)] = raw
    file.write_bytes(bytes(data))


def bad_magic(tmp_path):
    f = _small_gguf(tmp_path)
    _patch(f, 0, b"GGUX")
    return f, "GGUF magic invalid"


def truncated(tmp_path):
    f = _small_gguf(tmp_path)
    f.write_bytes(f.read_bytes()[:200])
    return f, "truncated"


def out_of_bounds(tmp_path):
    f = _small_gguf(tmp_path)
    _patch(f, _tensor_field_pos(f, "blk.0.ffn_up.weight")[1], (2**20).to_bytes(8, "little"))
    return f, "tensor 'blk.0.ffn_up.weight': data ["


def unknown_type(tmp_path):
    f = _small_gguf(tmp_path)
    _patch(f, _tensor_field_pos(f, "blk.0.ffn_up.weight")[0], (77).to_bytes(4, "little"))
    return f, "tensor 'blk.0.ffn_up.weight': unknown ggml type 77"


def row_not_multiple_of_block(tmp_path):
    f = _small_gguf(tmp_path)
    type_pos, _ = _tensor_field_pos(f, "blk.0.ffn_up.weight")
    _patch(f, type_pos - 16, (48).to_bytes(8, "little"))  # ne[0] 64 -> 48
    return f, "tensor 'blk.0.ffn_up.weight': row length 48 is not a multiple of the Q4_0 block size 32"


BAD = [bad_magic, truncated, out_of_bounds, unknown_type, row_not_multiple_of_block]


@pytest.mark.parametrize("case", BAD, ids=[c.__name__ for c in BAD])
def test_bad_gguf_is_one_line(tmp_path, case):
    file, words = case(tmp_path)
    for args in (["inspect", str(file)], ["convert", str(file), str(tmp_path / "out"), "--to", "dense"]):
        r = CliRunner().invoke(main, args)
        assert r.exit_code == 2, r.output
        lines = r.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith(f"repack: error: {file}: ") and words in lines[0], r.stderr
        assert not (tmp_path / "out").exists()


def test_folder_with_two_gguf_files_is_refused(tmp_path):
    f = _small_gguf(tmp_path)
    (f.parent / "other.gguf").write_bytes(f.read_bytes())
    r = CliRunner().invoke(main, ["inspect", str(f.parent)])
    assert r.exit_code == 2 and "holds 2 .gguf files" in r.stderr


def test_non_llama_float_model_is_refused_for_writing(tmp_path):
    layers = random_model(seed=36, bits=4, group_size=32, sym=True)
    src = write_gptq(tmp_path / "g", layers, "v1", sym=True)
    cfg = json.loads((src / "config.json").read_text()) | {"model_type": "qwen2"}
    (src / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(UnsupportedError, match="supports the Llama family"):
        convert(src, tmp_path / "out", "gguf")
    assert not leftovers(tmp_path) and not (tmp_path / "out").exists()


def test_reference_quantized_q4_0_with_negative_scales_converts_exactly(tmp_path):
    """llama.cpp's Q4_0 quantizer (gguf-py's copy) makes d < 0 in about half the blocks (gguf.md §2.1):
    the canonical tensor keeps them, and an integer-zero target holds them exactly."""
    src = tmp_path / "src"
    src.mkdir()
    w = gguf.GGUFWriter(src / "model.gguf", "llama")
    for key, v in (("add_embedding_length", 128), ("add_block_count", 1), ("add_head_count", 4),
                   ("add_head_count_kv", 2), ("add_context_length", 64), ("add_feed_forward_length", 256)):
        getattr(w, key)(v)
    w.add_layer_norm_rms_eps(1e-5)
    x = np.random.default_rng(5).standard_normal((256, 128)).astype(np.float32)
    blocks = gguf.quantize(x, gguf.GGMLQuantizationType.Q4_0)
    w.add_tensor("blk.0.ffn_up.weight", blocks, raw_dtype=gguf.GGMLQuantizationType.Q4_0)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    qt = open_source(src).read("model.layers.0.mlp.up_proj")
    assert qt.sym and qt.bits == 4 and 0.3 < float((qt.scales < 0).mean()) < 0.7
    want = gguf.dequantize(blocks, gguf.GGMLQuantizationType.Q4_0)
    assert np.array_equal(qt.dequantize(np.float32), want)
    plan = convert(src, tmp_path / "gptq", "auto_gptq", "v2")
    assert plan.exact
    back = open_source(tmp_path / "gptq").read("model.layers.0.mlp.up_proj")
    assert np.array_equal(back.dequantize(np.float32), want)
    again = convert(tmp_path / "gptq", tmp_path / "gguf", "gguf")
    assert again.exact and np.array_equal(np.asarray(gguf_tensors(tmp_path / "gguf")["blk.0.ffn_up.weight"].data), blocks)


def _llama3_divisors(theta: float, dim: int, factor: float, low=1.0, high=4.0, old=8192) -> list[float]:
    """rope_freqs as llama.cpp's converter computes them for Llama 3.x (written out here)."""
    out = []
    for i in range(dim // 2):
        wavelen = 2 * math.pi * theta ** (2 * i / dim)
        if wavelen < old / high:
            out.append(1.0)
        elif wavelen > old / low:
            out.append(factor)
        else:
            s = (old / wavelen - low) / (high - low)
            out.append(1 / ((1 - s) / factor + s))
    return out


@pytest.mark.parametrize("factor", [8.0, 32.0])
def test_llama3_rope_freqs_become_rope_scaling(tmp_path, factor):
    """A Llama 3.1/3.2 GGUF keeps its rope scaling only as per-frequency divisors; reading it gives the
    Hugging Face rope_scaling that reproduces them, so quantize/eval and a dense copy rotate as the
    model was trained."""
    layers = random_model(seed=29, bits=4, group_size=32, sym=True)
    theta, dim = 500000.0, 128 // 4
    divisors = _llama3_divisors(theta, dim, factor)
    assert {1.0, factor} < set(divisors)  # kept, slowed and at least one blended frequency
    src = write_gguf(tmp_path / "src", layers, "q4_0", config={"rope_theta": theta},
                     extra={"rope_freqs.weight": divisors})
    s = open_source(src)
    assert s.ckpt.config["rope_scaling"] == {"rope_type": "llama3", "factor": factor, "low_freq_factor": 1.0,
                                             "high_freq_factor": 4.0, "original_max_position_embeddings": 8192}
    assert not any("match no Llama 3" in n for n in s.ckpt.notes), s.ckpt.notes
    convert(src, tmp_path / "dense", "dense", "fp32")
    assert json.loads((tmp_path / "dense" / "config.json").read_text())["rope_scaling"]["factor"] == factor


def test_other_rope_freqs_are_noted_not_guessed(tmp_path):
    layers = random_model(seed=30, bits=4, group_size=32, sym=True)
    odd = [1.0 + 0.5 * i for i in range(16)]
    src = write_gguf(tmp_path / "src", layers, "q4_0", config={"rope_theta": 500000.0}, extra={"rope_freqs.weight": odd})
    s = open_source(src)
    assert "rope_scaling" not in s.ckpt.config
    assert any("match no Llama 3 rope scaling" in n for n in s.ckpt.notes), s.ckpt.notes


@pytest.mark.parametrize("spelling", ["rope_scaling", "rope_parameters"])
def test_llama3_rope_scaling_is_written_as_rope_freqs(tmp_path, spelling):
    """Hugging Face Llama 3.1 config -> GGUF: the scaling becomes llama.cpp's rope_freqs divisors
    (after the model's tensors), and reading the file back gives the same rope_scaling; GGUF -> GGUF
    keeps the one tensor."""
    layers = random_model(seed=31, bits=4, group_size=128, sym=True)
    src = write_gptq(tmp_path / "src", layers, "v1", sym=True)
    params = {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
              "original_max_position_embeddings": 8192}
    cfg = json.loads((src / "config.json").read_text())
    cfg |= ({"rope_theta": 500000.0, "rope_scaling": params} if spelling == "rope_scaling"
            else {"rope_parameters": {**params, "rope_theta": 500000.0}})
    if spelling == "rope_parameters":
        cfg.pop("rope_theta", None)
    (src / "config.json").write_text(json.dumps(cfg))
    convert(src, tmp_path / "gguf", "gguf")
    r = gguf.GGUFReader(tmp_path / "gguf" / "model.gguf")
    assert r.fields["llama.rope.freq_base"].contents() == 500000.0
    freqs = [t for t in r.tensors if t.name == "rope_freqs.weight"]
    assert len(freqs) == 1 and r.tensors[-1].name == "rope_freqs.weight"
    want = np.array(_llama3_divisors(500000.0, 32, 8.0), np.float32)
    assert np.allclose(np.asarray(freqs[0].data), want, rtol=1e-6, atol=0)
    back = open_source(tmp_path / "gguf")
    assert back.ckpt.config["rope_scaling"] == params
    convert(tmp_path / "gguf", tmp_path / "again", "gguf")
    again = gguf.GGUFReader(tmp_path / "again" / "model.gguf")
    assert [t.name for t in again.tensors].count("rope_freqs.weight") == 1


def test_unwritable_rope_scaling_is_one_line(tmp_path):
    layers = random_model(seed=32, bits=4, group_size=128, sym=True)
    src = write_gptq(tmp_path / "src", layers, "v1", sym=True)
    cfg = json.loads((src / "config.json").read_text()) | {"rope_scaling": {"rope_type": "yarn", "factor": 4.0}}
    (src / "config.json").write_text(json.dumps(cfg))
    r = CliRunner().invoke(main, ["convert", str(src), str(tmp_path / "g"), "--to", "gguf"])
    assert r.exit_code != 0 and "'yarn' is not written to GGUF" in r.output and len(r.output.strip().splitlines()) == 1
    assert not (tmp_path / "g").exists()
