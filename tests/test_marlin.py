"""Marlin layouts: byte-exact against the loop-based reference (tests/marlin_reference.py), readers
invert writers, round trips through GPTQ and AWQ are exact, constraints refuse before writing.

Source checkpoints are written by the reference packers (fixtures), never by the code under test;
expected Marlin bytes come from tests/marlin_reference.py, built from the kernels.md closed forms."""

from __future__ import annotations

import json
import shlex

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from hypothesis import given, settings, strategies as st
from safetensors.torch import save_file

from cli.main import main
from fixtures.checkpoints import (RefLayer, base_config, float_tensors, marlin_tensors, random_layer, random_model,
                                  write_awq, write_folder, write_gptq, write_marlin)
from repack.checkpoint import Checkpoint
from repack.convert import convert
from repack.errors import LossyConversionError, UnsupportedError
from repack.formats import marlin_layout as layout
from repack.source import open_source
from repack.targets import inspect_targets
from repack.verify import verify
from repack.dtypes import to_torch
from tests import marlin_reference as mref

SHAPES = [(16, 64), (32, 128), (48, 192), (128, 64)]


# ---- the layout against the element-by-element reference -------------------------------------

@pytest.mark.parametrize("bits", [4, 8])
@pytest.mark.parametrize("K,N", SHAPES)
def test_weight_layout_matches_reference(bits, K, N):
    q = np.random.default_rng(K * N + bits).integers(0, 2**bits, (K, N))
    B = layout.pack_weight(q, bits)
    expected = mref.pack_weight(q, bits)
    assert B.dtype == np.int32 and B.shape == (K // 16, N * 16 * bits // 32)
    diff = np.argwhere(B != expected)
    assert not len(diff), f"first differing word {diff[0].tolist()}"
    assert np.array_equal(layout.unpack_weight(expected, bits, K, N), q)


@pytest.mark.parametrize("K,N", SHAPES + [(4096, 320)])
def test_word_packer_matches_reference(K, N):
    """4-bit codes go to the Marlin layout straight from their canonical words (no code unpacked)."""
    from repack.packing import pack_rows
    q = np.random.default_rng(K + N).integers(0, 16, (K, N))
    B = layout.pack_weight_words(pack_rows(q, 4), K, N)
    assert B.dtype == np.int32 and np.array_equal(B, mref.pack_weight(q, 4))


def test_weight_layout_is_position_sensitive():
    """One code changed moves exactly the word the closed form names (a test that can fail)."""
    q = np.zeros((32, 128), np.int64)
    q[19, 77] = 5
    B = layout.pack_weight(q, 4).view(np.uint32)
    r, w, nib = mref.weight_position(19, 77, 4)
    assert B[r, w] == 5 << (4 * nib) and np.count_nonzero(B) == 1


@pytest.mark.parametrize("G", [1, 2, 5])
def test_scale_and_zero_permutations_match_reference(G):
    rng = np.random.default_rng(G)
    s = rng.random((G, 192)).astype(np.float16)
    assert np.array_equal(layout.permute_scales(s, G), mref.permute_scales(s))
    assert np.array_equal(layout.unpermute_scales(mref.permute_scales(s), G), s)
    for bits in (4, 8):
        z = rng.integers(0, 2**bits, (G, 192))
        assert np.array_equal(layout.pack_zeros(z, bits), mref.pack_zeros(z, bits))
        assert np.array_equal(layout.unpack_zeros(mref.pack_zeros(z, bits), bits, 192), z)


# ---- files ------------------------------------------------------------------------------------

def tensors_of(path) -> dict[str, torch.Tensor]:
    ck = Checkpoint.open(path)
    return {n: to_torch(ck.get(n)) for n in ck.names()}


def expected_marlin(m: str, L: RefLayer, variant: str) -> dict[str, torch.Tensor]:
    return marlin_tensors(m, L, variant)


def assert_same_tensors(got: dict[str, torch.Tensor], expected: dict) -> None:
    for name, e in expected.items():
        t = got[name]
        assert t.dtype == e.dtype and t.shape == e.shape, (name, t.dtype, e.dtype, t.shape, e.shape)
        assert torch.equal(t.view(torch.uint8) if t.is_floating_point() else t,
                           e.view(torch.uint8) if e.is_floating_point() else e), f"tensor {name} differs"


def assert_reads_as(path, layers: dict[str, RefLayer]) -> None:
    src = open_source(path)
    assert sorted(src.modules()) == sorted(layers)
    for m, L in layers.items():
        qt = src.read(m)
        assert np.array_equal(qt.codes(), L.q), m
        assert np.array_equal(qt.zeros, L.z), m
        assert np.array_equal(qt.scales, L.s) and qt.scales.dtype == L.s.dtype, m
        assert np.array_equal(qt.group_index(), L.groups()), m
        assert qt.group_size == L.group_size and qt.bits == L.bits


@pytest.mark.parametrize("bits,group_size,act_order", [(4, 128, True), (4, 32, False), (8, 64, True), (4, -1, False)])
def test_gptq_to_marlin_gptq_and_back_is_exact(tmp_path, hashed, bits, group_size, act_order):
    layers = random_model(seed=bits + group_size, bits=bits, group_size=group_size, sym=True, act_order=act_order)
    src = hashed(write_gptq(tmp_path / "gptq", layers, "v1", sym=True, act_order=act_order, bias_of=("model.layers.0.self_attn.k_proj",)))
    plan = convert(src, tmp_path / "marlin", "marlin", "gptq")
    assert plan.exact and plan.written
    got = tensors_of(tmp_path / "marlin")
    for m, L in layers.items():
        assert_same_tensors(got, expected_marlin(m, L, "gptq"))
        assert f"{m}.qzeros" not in got and (f"{m}.g_idx" in got) == (f"{m}.g_idx" in expected_marlin(m, L, "gptq"))
    bias = "model.layers.0.self_attn.k_proj.bias"
    assert torch.equal(got[bias], tensors_of(src)[bias])  # passes through unpermuted
    qc = json.loads((tmp_path / "marlin" / "config.json").read_text())["quantization_config"]
    assert qc["quant_method"] == "repack-marlin" and qc["marlin_variant"] == "gptq"
    assert (qc["bits"], qc["group_size"], qc["desc_act"], qc["sym"]) == (bits, group_size, act_order, True)
    assert_reads_as(tmp_path / "marlin", layers)
    hashed(tmp_path / "marlin")
    convert(tmp_path / "marlin", tmp_path / "back", "auto_gptq", "v1")
    back, orig = tensors_of(tmp_path / "back"), tensors_of(src)
    assert sorted(back) == sorted(orig)
    for name in orig:
        assert torch.equal(back[name], orig[name]), name


@pytest.mark.parametrize("group_size", [128, 64])
def test_awq_to_marlin_awq_and_back_is_exact(tmp_path, hashed, group_size):
    layers = random_model(seed=7, group_size=group_size, zero_range=(0, 15))
    src = hashed(write_awq(tmp_path / "awq", layers, "gemm"))
    assert convert(src, tmp_path / "marlin", "marlin", "awq").exact
    got = tensors_of(tmp_path / "marlin")
    for m, L in layers.items():
        assert_same_tensors(got, expected_marlin(m, L, "awq"))
    qc = json.loads((tmp_path / "marlin" / "config.json").read_text())["quantization_config"]
    assert qc["marlin_variant"] == "awq" and qc["sym"] is False
    assert_reads_as(tmp_path / "marlin", layers)
    convert(hashed(tmp_path / "marlin"), tmp_path / "back", "auto_awq", "gemm")
    back, orig = tensors_of(tmp_path / "back"), tensors_of(src)
    assert sorted(back) == sorted(orig)
    for name in orig:
        assert torch.equal(back[name], orig[name]), name


def test_8bit_asymmetric_gptq_through_marlin_awq_is_exact(tmp_path, hashed):
    layers = random_model(seed=13, bits=8, group_size=32, zero_range=(0, 255))
    src = hashed(write_gptq(tmp_path / "gptq", layers, "v2"))
    assert convert(src, tmp_path / "marlin", "marlin", "awq").exact
    got = tensors_of(tmp_path / "marlin")
    for m, L in layers.items():
        assert_same_tensors(got, expected_marlin(m, L, "awq"))
    assert_reads_as(tmp_path / "marlin", layers)
    convert(tmp_path / "marlin", tmp_path / "back", "auto_gptq", "v2")
    back, orig = tensors_of(tmp_path / "back"), tensors_of(src)
    for name in orig:
        assert torch.equal(back[name], orig[name]), name


CKPT_SHAPES = {"model.layers.0.self_attn.q_proj": (128, 256), "model.layers.0.mlp.down_proj": (256, 512)}


@pytest.mark.parametrize("group_size", [128, -1])
def test_gptq_to_marlin_checkpoint_and_back_is_exact(tmp_path, hashed, group_size):
    layers = random_model(seed=3, group_size=group_size, sym=True, shapes=CKPT_SHAPES)
    src = hashed(write_gptq(tmp_path / "gptq", layers, "v2", sym=True))
    assert convert(src, tmp_path / "marlin", "marlin", "checkpoint").exact
    got = tensors_of(tmp_path / "marlin")
    for m, L in layers.items():
        assert_same_tensors(got, expected_marlin(m, L, "checkpoint"))
        assert sorted(n for n in got if n.startswith(m + ".")) == [f"{m}.B", f"{m}.s"]
    for name in ("config.json", "quantize_config.json"):
        raw = json.loads((tmp_path / "marlin" / name).read_text())
        qc = raw.get("quantization_config", raw)
        assert (qc["quant_method"], qc["checkpoint_format"], qc["bits"], qc["group_size"], qc["desc_act"], qc["sym"]) \
            == ("gptq", "marlin", 4, group_size, False, True)
    assert_reads_as(tmp_path / "marlin", layers)
    convert(hashed(tmp_path / "marlin"), tmp_path / "back", "auto_gptq", "v2")
    back, orig = tensors_of(tmp_path / "back"), tensors_of(src)
    for name in orig:
        assert torch.equal(back[name], orig[name]), name


def test_group_size_equal_to_k_takes_the_single_scale_order(tmp_path):
    """group 128 on K=128: one group, so vLLM and Marlin use the per-channel (single) permutation."""
    layers = random_model(seed=5, group_size=128, sym=True, shapes={"model.layers.0.mlp.up_proj": (128, 256)})
    convert(write_gptq(tmp_path / "gptq", layers, "v1", sym=True), tmp_path / "m", "marlin", "checkpoint")
    L = layers["model.layers.0.mlp.up_proj"]
    s = tensors_of(tmp_path / "m")["model.layers.0.mlp.up_proj.s"].numpy()
    expect = np.array([[L.s[0][n] for n in np.argsort([mref.single_scale_position(n) for n in range(256)])]])
    assert np.array_equal(s, expect)
    assert_reads_as(tmp_path / "m", layers)


# ---- readers of files written by others (the reference) ---------------------------------------

def test_reads_autogptq_marlin_checkpoint_written_by_reference(tmp_path):
    rng = np.random.default_rng(11)
    layers = {"model.layers.0.mlp.up_proj": random_layer(rng, 256, 256, 4, 128, sym=True),
              "model.layers.0.mlp.down_proj": random_layer(rng, 256, 256, 4, -1, sym=True)}
    t = float_tensors()
    for m, L in layers.items():
        t |= expected_marlin(m, L, "checkpoint")
    qc = {"quant_method": "gptq", "bits": 4, "group_size": 128, "desc_act": False, "sym": True, "is_marlin_format": True}
    path = write_folder(tmp_path / "m", t, base_config() | {"quantization_config": qc})
    src = open_source(path)
    assert (src.detection.format, src.detection.variant) == ("marlin", "checkpoint")
    assert_reads_as(path, layers)


def test_reads_autoawq_version_marlin(tmp_path):
    rng = np.random.default_rng(12)
    L = random_layer(rng, 128, 128, 4, 128, sym=True)
    m = "model.layers.0.mlp.up_proj"
    t = float_tensors() | {f"{m}.qweight": torch.from_numpy(mref.pack_weight(L.q, 4)),
                           f"{m}.scales": torch.from_numpy(mref.permute_scales(L.s))}
    qc = {"quant_method": "awq", "bits": 4, "group_size": 128, "zero_point": False, "version": "marlin"}
    src = open_source(write_folder(tmp_path / "m", t, base_config() | {"quantization_config": qc}))
    assert (src.detection.format, src.detection.variant) == ("marlin", "gptq")
    assert_reads_as(src.path, {m: L})


def test_reader_rejects_a_sort_index_that_is_not_a_permutation(tmp_path):
    layers = random_model(seed=2, group_size=64, sym=True, act_order=True)
    convert(write_gptq(tmp_path / "g", layers, "v1", sym=True, act_order=True), tmp_path / "m", "marlin", "gptq")
    t = tensors_of(tmp_path / "m")
    name = "model.layers.0.mlp.up_proj.g_idx_sort_indices"
    t[name][1] = t[name][0]
    save_file(t, str(tmp_path / "m" / "model.safetensors"), metadata={"format": "pt"})
    with pytest.raises(Exception, match="g_idx_sort_indices': is not a permutation"):
        open_source(tmp_path / "m").read("model.layers.0.mlp.up_proj")


# ---- constraints ------------------------------------------------------------------------------

def test_asymmetric_gptq_is_refused_naming_the_layer(tmp_path):
    layers = random_model(seed=1, group_size=64)
    src = write_gptq(tmp_path / "g", layers, "v2")
    with pytest.raises(UnsupportedError, match=r"layer 'model\.layers\.\d\.[a-z_.]+' cannot be written as marlin/gptq: asymmetric zeros"):
        convert(src, tmp_path / "m", "marlin", "gptq")
    assert not (tmp_path / "m").exists()
    assert convert(src, tmp_path / "m", "marlin", "awq").exact  # zero points fit the awq variant


@pytest.mark.parametrize("variant,group_size,shapes,message", [
    ("gptq", 16, None, "group_size 16 is not one Marlin"),
    ("checkpoint", 64, CKPT_SHAPES, "group_size 64 is not one Marlin"),
    ("checkpoint", 128, None, "out_features 128 is not a multiple of 256"),
    ("gptq", 32, {"model.layers.0.mlp.up_proj": (96, 64)}, "in_features 96 is not a multiple of 128"),
    ("awq", 32, {"model.layers.0.mlp.up_proj": (128, 96)}, "out_features 96 is not a multiple of 64"),
])
def test_shape_and_group_constraints_refuse(tmp_path, variant, group_size, shapes, message):
    layers = random_model(seed=4, group_size=group_size, sym=True, shapes=shapes)
    src = write_gptq(tmp_path / "g", layers, "v1", sym=True)
    with pytest.raises(UnsupportedError, match=f"cannot be written as marlin/{variant}: {message}"):
        convert(src, tmp_path / "m", "marlin", variant)
    assert not (tmp_path / "m").exists()


def test_act_order_into_the_checkpoint_variant_is_not_exact(tmp_path):
    layers = random_model(seed=6, group_size=128, sym=True, act_order=True, shapes=CKPT_SHAPES)
    src = write_gptq(tmp_path / "g", layers, "v1", sym=True, act_order=True)
    with pytest.raises(LossyConversionError, match="act-order"):
        convert(src, tmp_path / "m", "marlin", "checkpoint")
    assert not (tmp_path / "m").exists()


# ---- verify -----------------------------------------------------------------------------------

def test_verify_gptq_against_its_marlin_conversion(tmp_path):
    layers = random_model(seed=9, group_size=128, sym=True, act_order=True)
    src = write_gptq(tmp_path / "g", layers, "v1", sym=True, act_order=True)
    convert(src, tmp_path / "m", "marlin", "gptq")
    report = verify(src, tmp_path / "m", backend="reference")
    assert report.ok, report.verdict()
    assert len(report.layers) == len(layers) and all(l.integers_equal for l in report.layers)
    # one packed word changed in the Marlin file: verify names that layer
    t = tensors_of(tmp_path / "m")
    t["model.layers.1.mlp.down_proj.qweight"][3, 5] ^= 0x10
    save_file(t, str(tmp_path / "m" / "model.safetensors"), metadata={"format": "pt"})
    report = verify(src, tmp_path / "m", backend="reference")
    assert [l.module for l in report.layers if not l.ok] == ["model.layers.1.mlp.down_proj"]


# ---- inspect / targets / CLI ------------------------------------------------------------------

def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


@pytest.mark.parametrize("variant,rule,fix_to,kernel", [
    ("gptq", "marlin-repacked", "auto_gptq", "gptq_marlin"),
    ("awq", "marlin-repacked", "auto_awq", "awq_marlin"),
    ("checkpoint", "marlin-checkpoint-removed", "auto_gptq", "gptq_marlin")])
def test_vllm_target_names_the_marlin_path_and_an_exact_fix(tmp_path, variant, rule, fix_to, kernel):
    sym = variant != "awq"
    layers = random_model(seed=8, group_size=128, sym=sym, zero_range=(0, 15),
                          shapes=CKPT_SHAPES if variant == "checkpoint" else None)
    path = write_marlin(tmp_path / "m", layers, variant)
    info, (r,) = inspect_targets(str(path), ["vllm"])
    assert (info.format, info.variant) == ("marlin", variant)
    assert not r.loads and [f.rule for f in r.failures] == [rule]
    args = shlex.split(r.fix)
    assert args[:2] == ["repack", "convert"] and args[args.index("--to") + 1] == fix_to
    args[3] = str(tmp_path / "fixed")
    res = run(*args[1:])
    assert res.exit_code == 0, res.output
    _, (fixed,) = inspect_targets(str(tmp_path / "fixed"), ["vllm"])
    assert fixed.loads and fixed.kernel == kernel


def test_cli_formats_inspect_and_convert(tmp_path):
    r = run("formats", "--json")
    assert {f["name"]: f["variants"] for f in json.loads(r.stdout)}["marlin"] == ["gptq", "awq", "checkpoint"]
    layers = random_model(seed=10, group_size=64, sym=True, act_order=True)
    src = write_gptq(tmp_path / "g", layers, "v1", sym=True, act_order=True)
    r = run("convert", src, tmp_path / "m", "--to", "marlin", "--variant", "gptq")
    assert r.exit_code == 0, r.output
    r = run("inspect", tmp_path / "m", "--json")
    info = json.loads(r.stdout)
    assert (info["format"], info["variant"], info["bits"], info["group_size"], info["sym"], info["act_order"]) == \
        ("marlin", "gptq", 4, 64, True, True)
    assert info["targets"]["auto_gptq/v1"] == "exact" and info["targets"]["marlin/checkpoint"] != "exact"
    r = run("verify", src, tmp_path / "m")
    assert r.exit_code == 0 and r.output.splitlines()[-1].startswith("OK:"), r.output


@settings(max_examples=40, deadline=None, database=None)
@given(bits=st.sampled_from([4, 8]), kt=st.integers(1, 4), nb=st.integers(1, 3), groups=st.integers(1, 4),
       seed=st.integers(0, 2**32 - 1))
def test_random_shapes_match_reference_and_invert(bits, kt, nb, groups, seed):
    K, N = 16 * kt, 64 * nb
    rng = np.random.default_rng(seed)
    q = rng.integers(0, 2**bits, (K, N))
    B = layout.pack_weight(q, bits)
    assert np.array_equal(B, mref.pack_weight(q, bits))
    assert np.array_equal(layout.unpack_weight(B, bits, K, N), q)
    s = rng.random((groups, N)).astype(np.float32)
    assert np.array_equal(layout.permute_scales(s, groups), mref.permute_scales(s))
    z = rng.integers(0, 2**bits, (groups, N))
    assert np.array_equal(layout.pack_zeros(z, bits), mref.pack_zeros(z, bits))
    assert np.array_equal(layout.unpack_zeros(layout.pack_zeros(z, bits), bits, N), z)
