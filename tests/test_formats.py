"""Each format read from files the reference packers wrote, and written back byte for byte."""

import numpy as np
import torch
import pytest
from safetensors import safe_open

from fixtures.checkpoints import RefLayer, random_model, write_awq, write_gptq
from repack.convert import convert
from repack.source import open_source


def tensors(folder):
    out = {}
    for f in sorted(folder.glob("*.safetensors")):
        with safe_open(str(f), "pt") as h:
            out |= {n: h.get_tensor(n) for n in h.keys()}
    return out


def assert_read(source, layers: dict[str, RefLayer]):
    assert sorted(source.modules()) == sorted(layers)
    for m, L in layers.items():
        qt = source.read(m)
        assert np.array_equal(qt.codes(), L.q), m
        assert np.array_equal(qt.zeros, L.z), m
        assert np.array_equal(qt.scales, L.s), m
        gs = L.q.shape[0] if L.group_size == -1 else L.group_size
        reordered = L.g_idx is not None and not np.array_equal(L.g_idx, np.arange(L.q.shape[0]) // gs)
        assert (qt.g_idx is not None) == reordered, m  # a sequential g_idx is dropped on read
        if reordered:
            assert np.array_equal(qt.g_idx, L.g_idx), m


def assert_same_bytes(a, b):
    ta, tb = tensors(a), tensors(b)
    assert sorted(ta) == sorted(tb)
    for n in ta:
        assert ta[n].dtype == tb[n].dtype and ta[n].shape == tb[n].shape, n
        assert ta[n].view(-1).view(torch.uint8).equal(tb[n].view(-1).view(torch.uint8)), n


GPTQ_CASES = [(v, bits, gs, sym, act) for v in ("v1", "v2") for bits in (2, 3, 4, 8) for gs in (32, 64, 128, -1)
              for sym in (True, False) for act in (False, True) if not (act and gs == -1)]


@pytest.mark.parametrize("variant, bits, gs, sym, act", GPTQ_CASES)
def test_gptq_read_and_roundtrip(tmp_path, hashed, variant, bits, gs, sym, act):
    layers = random_model(seed=bits * 7 + (gs % 97), bits=bits, group_size=gs, sym=sym, act_order=act)
    src = hashed(write_gptq(tmp_path / "src", layers, variant, sym=sym, act_order=act))
    source = open_source(src)
    assert (source.detection.format, source.detection.variant) == ("auto_gptq", variant)
    assert source.detection.bits == bits
    assert_read(source, layers)
    plan = convert(src, tmp_path / "out", "auto_gptq", variant)
    assert plan.exact and plan.written
    assert_same_bytes(src, tmp_path / "out")


@pytest.mark.parametrize("variant", ["gemm", "gemv"])
@pytest.mark.parametrize("gs", [32, 64, 128, -1])
@pytest.mark.parametrize("sym", [True, False])
def test_awq_read_and_roundtrip(tmp_path, hashed, variant, gs, sym):
    layers = random_model(seed=gs % 97, bits=4, group_size=gs, sym=sym)
    src = hashed(write_awq(tmp_path / "src", layers, variant, sym=sym))
    source = open_source(src)
    assert (source.detection.format, source.detection.variant) == ("auto_awq", variant)
    assert_read(source, layers)
    plan = convert(src, tmp_path / "out", "auto_awq", variant)
    assert plan.exact
    assert_same_bytes(src, tmp_path / "out")


@pytest.mark.parametrize("truth, label", [("v1", "gptq_v2"), ("v2", "gptq")])
@pytest.mark.parametrize("sym", [True, False])
def test_gptq_version_told_from_data_not_label(tmp_path, truth, label, sym):
    # asymmetric zeros must be centred where real quantizers put them for the data to decide:
    # codes are drawn around each group's zero, as min/max quantization of real weights gives
    rng = np.random.default_rng(3)
    layers = random_model(seed=3, bits=4, group_size=64, sym=sym)
    for L in layers.values():
        L.q = np.clip(L.z[L.groups()] + rng.integers(-3, 4, size=L.q.shape), 0, 15)
    src = write_gptq(tmp_path / "src", layers, truth, sym=sym, label=label)
    det = open_source(src).detection
    assert det.variant == truth
    assert any("checkpoint_format" in n for n in det.notes)
    assert_read(open_source(src), layers)


def test_trivial_g_idx_is_not_act_order(tmp_path):
    layers = random_model(seed=5, bits=4, group_size=32)
    src = write_gptq(tmp_path / "src", layers, "v1", act_order=True)  # desc_act says yes, g_idx says no
    source = open_source(src)
    assert all(not source.read(m).act_order for m in source.modules())
    assert convert(src, tmp_path / "awq", "auto_awq").exact


def test_sharded_source_with_index(tmp_path):
    layers = random_model(seed=9)
    src = write_gptq(tmp_path / "src", layers, "v1", shards=3)
    assert_read(open_source(src), layers)
    convert(src, tmp_path / "out", "auto_gptq", "v1", shard_size=200_000)
    assert_same_bytes(src, tmp_path / "out")
    assert (tmp_path / "out" / "model.safetensors.index.json").exists()
