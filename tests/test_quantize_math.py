"""The quantizers' math on single layers: GPTQ with no input correlation is RTN, act-order and static
groups lay out groups as documented, GPTQ and AWQ lower the output error they optimise, and the clip
helper matches the fake quantizer it is searched with."""

import pytest
import numpy as np
import torch

from repack.quantize.awq import search_clip, search_scales
from repack.quantize.gptq import Hessian, gptq_quantize
from repack.quantize.rtn import clip_groups, fake_quantize, rtn_quantize


def _weight(N, K, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(N, K, generator=g) * 0.02 + torch.randn(1, K, generator=g) * 0.01


def _inputs(T, K, seed=1):
    """Correlated inputs with a few loud channels, as activations of real models are."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(T, K, generator=g) @ (0.3 * torch.eye(K) + torch.randn(K, K, generator=g) / K**0.5)
    return x * (1 + 4 * (torch.rand(K, generator=g) > 0.9))


@pytest.mark.parametrize("sym", [True, False])
@pytest.mark.parametrize("K,group_size", [(128, 32), (96, 64), (80, -1)])
def test_gptq_without_correlation_is_rtn(sym, K, group_size):
    """With H = I no error is pushed to later columns: the codes, scales and zeros are RTN's."""
    w = _weight(48, K)
    got = gptq_quantize(w, torch.eye(K) * 2, 4, group_size, sym, damp=0.0)
    want = rtn_quantize(w, 4, group_size, sym)
    assert np.array_equal(got.codes(), want.codes())
    assert np.array_equal(got.scales, want.scales) and np.array_equal(got.zeros, want.zeros) and got.g_idx is None


def test_act_order_groups_follow_the_hessian_diagonal():
    K, gs = 128, 32
    d = torch.rand(K, generator=torch.Generator().manual_seed(3)) + 0.1
    qt = gptq_quantize(_weight(40, K), torch.diag(d), 4, gs, False, act_order=True, damp=0.0)
    order = torch.argsort(d, descending=True)
    want = torch.empty(K, dtype=torch.int32)
    want[order] = (torch.arange(K) // gs).to(torch.int32)
    assert qt.g_idx is not None and np.array_equal(qt.g_idx, want.numpy())
    static = gptq_quantize(_weight(40, K), torch.diag(d), 4, gs, False, act_order=True, static_groups=True, damp=0.0)
    assert static.g_idx is None  # static groups keep the on-disk groups sequential
    assert np.array_equal(static.codes(), rtn_quantize(_weight(40, K), 4, gs, False).codes())


@pytest.mark.parametrize("act_order", [False, True])
def test_gptq_lowers_the_output_error(act_order):
    K = 128
    w, x = _weight(64, K), _inputs(1024, K)
    h = Hessian(K)
    for chunk in x.split(100):
        h.add(chunk)
    assert torch.allclose(h.h, 2 * x.double().t() @ x.double() / x.shape[0])
    rtn = torch.from_numpy(rtn_quantize(w, 4, 32, False).dequantize(np.float32))
    gptq = torch.from_numpy(gptq_quantize(w, h.h, 4, 32, False, act_order=act_order).dequantize(np.float32))
    err = lambda q: float((x @ (w - q).t()).norm())  # noqa: E731
    assert err(gptq) < 0.8 * err(rtn), (err(gptq), err(rtn))


def test_dead_inputs_are_zeroed():
    K = 64
    x = _inputs(256, K)
    x[:, 5] = 0
    h = Hessian(K)
    h.add(x)
    qt = gptq_quantize(_weight(16, K), h.h, 4, 32, True)
    assert (qt.dequantize(np.float32)[:, 5] == 0).all()


def test_awq_scales_lower_the_stage_error():
    K = 128
    x, ws = _inputs(512, K), [_weight(64, K, 1), _weight(32, K, 2)]
    s, alpha = search_scales(x, ws, 4, 32, False)
    assert s.shape == (K,) and alpha > 0
    w = torch.cat(ws)
    err = lambda q: float((x @ (w - q).t()).norm())  # noqa: E731
    assert err(fake_quantize(w * s, 4, 32, False) / s) < err(fake_quantize(w, 4, 32, False))


@pytest.mark.parametrize("sym", [True, False])
def test_clip_matches_the_fake_quantizer_and_lowers_the_error(sym):
    K = 96
    w, x = _weight(40, K), _inputs(256, K)
    ratio = search_clip(x, w, 4, 32, sym)
    assert ratio.shape == (40, 3) and float(ratio.min()) >= 0.5 and bool((ratio < 1).any())
    clipped = torch.from_numpy(rtn_quantize(clip_groups(w, ratio, 32, sym), 4, 32, sym).dequantize(np.float32))
    assert torch.allclose(clipped, fake_quantize(w, 4, 32, sym, ratio=ratio), atol=1e-7)
    err = lambda q: float((x @ (w - q).t()).norm())  # noqa: E731
    assert err(clipped) <= err(fake_quantize(w, 4, 32, sym))
