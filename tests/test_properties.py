"""Property-based round trips: random shapes, bits, group sizes, act-order and zeros, through files."""

import tempfile
from pathlib import Path

import numpy as np
import torch
from hypothesis import HealthCheck, given, settings, strategies as st

from fixtures.checkpoints import random_layer, write_awq, write_gptq
from repack.convert import convert
from repack.source import open_source
from tests.test_formats import tensors


def same_bytes(a: Path, b: Path) -> None:
    ta, tb = tensors(a), tensors(b)
    assert sorted(ta) == sorted(tb)
    for n in ta:
        assert ta[n].dtype == tb[n].dtype and torch.equal(ta[n].view(-1).view(torch.uint8), tb[n].view(-1).view(torch.uint8)), n


@st.composite
def gptq_layers(draw):
    bits = draw(st.sampled_from([2, 3, 4, 8]))
    gs = draw(st.sampled_from([32, 64, 128, -1]))
    K = 32 * draw(st.integers(1, 9))
    N = 32 * draw(st.integers(1, 4))
    act = draw(st.booleans()) and gs != -1
    sym = draw(st.booleans())
    seed = draw(st.integers(0, 2**16))
    return random_layer(np.random.default_rng(seed), K, N, bits, gs, sym, act), sym, act


@given(case=gptq_layers(), variant=st.sampled_from(["v1", "v2"]))
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_gptq_roundtrip_and_dense(case, variant):
    L, sym, act = case
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        src = write_gptq(tmp / "src", {"model.layers.0.mlp.up_proj": L}, variant, sym=sym, act_order=act)
        qt = open_source(src).read("model.layers.0.mlp.up_proj")
        assert np.array_equal(qt.codes(), L.q) and np.array_equal(qt.zeros, L.z)
        other = "v2" if variant == "v1" else "v1"
        convert(src, tmp / "other", "auto_gptq", other)
        convert(tmp / "other", tmp / "back", "auto_gptq", variant)
        same_bytes(src, tmp / "back")


@given(K=st.integers(1, 8).map(lambda k: 32 * k), N=st.integers(1, 6).map(lambda n: 8 * n),
       gs=st.sampled_from([32, 64, 128, -1]), sym=st.booleans(), seed=st.integers(0, 2**16),
       variant=st.sampled_from(["gemm", "gemv"]))
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_awq_roundtrip_through_gptq(K, N, gs, sym, seed, variant):
    if gs != -1 and K % gs:
        gs = -1
    if variant == "gemv" and gs == -1 and K < 128:
        gs = 32  # AWQ gemv has no kernel for groups below 128 other than 32 and 64
    L = random_layer(np.random.default_rng(seed), K, N, 4, gs, sym)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        src = write_awq(tmp / "src", {"model.layers.0.mlp.up_proj": L}, variant, sym=sym)
        assert convert(src, tmp / "gptq", "auto_gptq", "v2").exact
        assert convert(tmp / "gptq", tmp / "back", "auto_awq", variant).exact
        same_bytes(src, tmp / "back")
