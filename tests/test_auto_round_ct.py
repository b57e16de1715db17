"""auto_round and compressed_tensors: read from reference-packed files, written back byte for byte,
converted exactly to and from the other formats, and per-module settings carried across formats."""

import json

import numpy as np
import pytest
import torch

from fixtures.checkpoints import (base_config, float_tensors, gptq_tensors, random_layer, random_model, write_auto_round,
                                  write_compressed, write_folder)
from repack.convert import convert
from repack.errors import UnsupportedError
from repack.source import open_source
from tests import reference_packers as ref
from tests.test_formats import assert_read, assert_same_bytes, tensors


@pytest.mark.parametrize("variant", ["gptq", "awq", "gptqmodel", "native"])
@pytest.mark.parametrize("sym", [True, False])
def test_auto_round_read_and_roundtrip(tmp_path, hashed, variant, sym):
    layers = random_model(seed=50, bits=4, group_size=32, sym=sym)
    src = hashed(write_auto_round(tmp_path / "src", layers, variant, sym))
    source = open_source(src)
    assert (source.detection.format, source.detection.variant) == ("auto_round", variant)
    assert not source.detection.notes
    assert_read(source, layers)
    assert convert(src, tmp_path / "out", "auto_round", variant).exact
    assert_same_bytes(src, tmp_path / "out")
    qc = json.loads((tmp_path / "out" / "config.json").read_text())["quantization_config"]
    # the fields vLLM's AutoRoundConfig and transformers' AutoRoundConfig read (hf.md §5.2, §5.3)
    packing = {"gptq": "auto_round:auto_gptq", "awq": "auto_round:auto_awq", "gptqmodel": "auto_round:gptqmodel",
               "native": "auto_round"}[variant]
    assert qc["quant_method"] == "auto-round" and qc["packing_format"] == packing
    assert (qc["bits"], qc["group_size"], qc["sym"], qc["data_type"]) == (4, 32, sym, "int")
    assert qc["block_name_to_quantize"] == "model.layers"


@pytest.mark.parametrize("bits", [2, 4, 8])
@pytest.mark.parametrize("gs, act", [(32, False), (128, False), (-1, False), (32, True)])
@pytest.mark.parametrize("sym", [True, False])
def test_compressed_read_and_roundtrip(tmp_path, hashed, bits, gs, act, sym):
    layers = random_model(seed=bits, bits=bits, group_size=gs, sym=sym, act_order=act)
    src = hashed(write_compressed(tmp_path / "src", layers, sym))
    source = open_source(src)
    assert (source.detection.format, source.detection.variant) == ("compressed_tensors", "pack-quantized")
    assert_read(source, layers)
    assert convert(src, tmp_path / "out", "compressed_tensors").exact
    assert_same_bytes(src, tmp_path / "out")
    qc = json.loads((tmp_path / "out" / "config.json").read_text())["quantization_config"]
    # the fields vLLM's CompressedTensorsConfig reads for a WNA16 scheme (hf.md §5.2)
    assert qc["quant_method"] == "compressed-tensors" and qc["format"] == "pack-quantized"
    w = qc["config_groups"]["group_0"]["weights"]
    assert qc["config_groups"]["group_0"]["targets"] == ["Linear"]
    assert (w["num_bits"], w["type"], w["symmetric"]) == (bits, "int", sym)
    assert (w["strategy"], w["group_size"]) == (("channel", None) if gs == -1 else ("group", gs))
    assert w["actorder"] == ("group" if act else None)
    assert qc["ignore"] == ["lm_head"]


def test_compressed_packs_along_k_with_padding(tmp_path):
    # K = 40 is not a multiple of 8: weight_packed rows end in a half-filled word
    layers = {"model.layers.0.mlp.up_proj": random_layer(np.random.default_rng(0), 40, 64, 4, -1)}
    src = write_compressed(tmp_path / "src", layers, sym=False)
    assert_read(open_source(src), layers)
    assert tensors(src)["model.layers.0.mlp.up_proj.weight_packed"].shape == (64, 5)


@pytest.mark.parametrize("fmt, variant", [("auto_gptq", "v1"), ("auto_gptq", "v2"), ("auto_awq", "gemm"),
                                          ("auto_round", "gptq"), ("auto_round", "awq"), ("compressed_tensors", None)])
def test_every_pair_is_exact_through_compressed_and_auto_round(tmp_path, fmt, variant):
    layers = random_model(seed=60, bits=4, group_size=64, sym=False)
    src = write_compressed(tmp_path / "ct", layers, sym=False)
    assert convert(src, tmp_path / "mid", fmt, variant).exact
    assert convert(tmp_path / "mid", tmp_path / "ar", "auto_round", "native").exact
    assert convert(tmp_path / "ar", tmp_path / "back", "compressed_tensors").exact
    assert_same_bytes(src, tmp_path / "back")
    got = open_source(tmp_path / "mid")
    for m, L in layers.items():
        assert np.array_equal(got.read(m).dequantize(np.float32), ref.dequantize(L.q, L.z, L.s, 64))


def test_asymmetric_zeros_become_compressed_signed_zeros_exactly(tmp_path):
    layers = random_model(seed=61, bits=4, group_size=32, zero_range=(0, 15))  # zero 0 and 15 included
    src = write_auto_round(tmp_path / "ar", layers, "native")
    assert convert(src, tmp_path / "ct", "compressed_tensors").exact
    t = tensors(tmp_path / "ct")
    for m, L in layers.items():
        assert np.array_equal(t[f"{m}.weight_zero_point"].numpy(), ref.ct_pack_zero_point(L.z, 4))
        assert np.array_equal(t[f"{m}.weight_packed"].numpy(), ref.ct_pack_weight(L.q, 4))


# ---- mixed precision and skip lists --------------------------------------------------------------

EIGHT = "model.layers.0.mlp.down_proj"
SKIPPED = "model.layers.1.self_attn.v_proj"


def mixed_gptq(tmp_path):
    """4-bit g32 model with one 8-bit g64 layer, one float layer inside the blocks and a float lm_head."""
    layers = random_model(seed=70, bits=4, group_size=32)
    rng = np.random.default_rng(71)
    K, N = layers[EIGHT].q.shape
    layers[EIGHT] = random_layer(rng, K, N, 8, 64)
    skipped = layers.pop(SKIPPED)
    t = float_tensors()
    for m, L in layers.items():
        t |= gptq_tensors(m, L, "v1")
    t[f"{SKIPPED}.weight"] = torch.from_numpy(ref.dequantize(skipped.q, skipped.z, skipped.s, 32)).half()
    qc = {"quant_method": "gptq", "bits": 4, "group_size": 32, "sym": False, "desc_act": False,
          "checkpoint_format": "gptq", "lm_head": False,
          "dynamic": {rf"+:^{EIGHT.replace('.', chr(92) + '.')}$": {"bits": 8, "group_size": 64},
                      rf"-:^{SKIPPED.replace('.', chr(92) + '.')}$": {}}}
    return write_folder(tmp_path / "gptq", t, base_config() | {"quantization_config": qc}), layers


def settings(path) -> dict:
    s = open_source(path)
    return {m: (q.bits, q.group_size, q.sym) for m in s.modules() for q in [s.read(m)]}


def test_mixed_model_survives_gptq_auto_round_compressed_gptq(tmp_path, hashed):
    src, layers = mixed_gptq(tmp_path)
    hashed(src)
    want = settings(src)
    assert want[EIGHT] == (8, 64, False) and SKIPPED not in want and len(want) == 13
    convert(src, tmp_path / "ar", "auto_round", "gptq")
    convert(tmp_path / "ar", tmp_path / "ct", "compressed_tensors")
    convert(tmp_path / "ct", tmp_path / "back", "auto_gptq", "v1")
    for step in ("ar", "ct", "back"):
        assert settings(tmp_path / step) == want, step
        t = tensors(tmp_path / step)
        assert torch.equal(t[f"{SKIPPED}.weight"], tensors(src)[f"{SKIPPED}.weight"])  # float, byte-identical
        assert "lm_head.weight" in t and t["lm_head.weight"].dtype == torch.bfloat16
    assert_same_bytes(src, tmp_path / "back")
    ar = json.loads((tmp_path / "ar" / "config.json").read_text())["quantization_config"]
    assert ar["extra_config"] == {EIGHT: {"bits": 8, "group_size": 64}, SKIPPED: {"bits": 16, "data_type": "float"}}
    ct = json.loads((tmp_path / "ct" / "config.json").read_text())["quantization_config"]
    assert ct["config_groups"]["group_1"]["targets"] == [EIGHT]
    assert ct["config_groups"]["group_1"]["weights"]["num_bits"] == 8
    assert ct["config_groups"]["group_1"]["weights"]["group_size"] == 64
    assert set(ct["ignore"]) == {"lm_head", SKIPPED}
    back = json.loads((tmp_path / "back" / "config.json").read_text())["quantization_config"]
    assert back["dynamic"] == {rf"-:^{SKIPPED.replace('.', chr(92) + '.')}$": {},
                               rf"+:^{EIGHT.replace('.', chr(92) + '.')}$": {"bits": 8, "group_size": 64}}


def test_awq_refuses_mixed_group_sizes_naming_the_modules(tmp_path):
    layers = random_model(seed=72, bits=4, group_size=32)
    K, N = layers[EIGHT].q.shape
    layers[EIGHT] = random_layer(np.random.default_rng(73), K, N, 4, 64)
    src = write_compressed(tmp_path / "ct", layers, groups={
        "group_0": {"targets": ["Linear"], "weights": {"num_bits": 4, "type": "int", "symmetric": False,
                                                       "strategy": "group", "group_size": 32}},
        "group_1": {"targets": [EIGHT], "weights": {"num_bits": 4, "type": "int", "symmetric": False,
                                                    "strategy": "group", "group_size": 64}}})
    assert settings(src)[EIGHT] == (4, 64, False)
    with pytest.raises(UnsupportedError, match=EIGHT.replace(".", r"\.")):
        convert(src, tmp_path / "awq", "auto_awq")
    assert not (tmp_path / "awq").exists()
    assert convert(src, tmp_path / "gptq", "auto_gptq").exact  # GPTQ's dynamic can say it


def test_unsupported_compressed_format_is_one_line(tmp_path):
    from click.testing import CliRunner
    from cli.main import main
    layers = random_model(seed=74)
    src = write_compressed(tmp_path / "ct", layers)
    cfg = json.loads((src / "config.json").read_text())
    cfg["quantization_config"]["format"] = "marlin-24"
    (src / "config.json").write_text(json.dumps(cfg))
    r = CliRunner().invoke(main, ["inspect", str(src)])
    assert r.exit_code == 2 and "format 'marlin-24' is not supported" in r.output and "Traceback" not in r.output


def test_awq_names_the_8bit_layer_it_cannot_hold(tmp_path):
    from repack.errors import LossyConversionError
    src, _ = mixed_gptq(tmp_path)
    with pytest.raises((LossyConversionError, UnsupportedError), match=EIGHT.replace(".", r"\.")):
        convert(src, tmp_path / "awq", "auto_awq")
    assert not (tmp_path / "awq").exists()
