"""The canonical tensor validates itself and dequantizes as the reference formula says."""

import numpy as np
import pytest
import torch

from fixtures.checkpoints import random_layer
from repack.quantize.rtn import rtn_quantize
from repack.packing import pack_rows
from repack.tensor import Deferred, QuantTensor
from tests import reference_packers as ref


def build(L):
    return QuantTensor.from_codes(L.q, torch.from_numpy(L.s), L.z, L.bits, L.group_size, L.g_idx)


@pytest.mark.parametrize("bits", [2, 3, 4, 8])
@pytest.mark.parametrize("gs", [32, 128, -1])
@pytest.mark.parametrize("act", [False, True])
def test_dequantize_matches_reference(bits, gs, act):
    L = random_layer(np.random.default_rng(bits), 256, 32, bits, gs, act_order=act)
    qt = build(L)
    expected = ref.dequantize(L.q, L.z, L.s, L.group_size, L.g_idx)
    assert np.array_equal(qt.dequantize(np.float32), expected)
    assert np.array_equal(qt.codes(), L.q)
    assert qt.act_order == (act and gs != -1)  # one group: every g_idx is 0, nothing to reorder


def test_sequential_g_idx_is_not_act_order():
    L = random_layer(np.random.default_rng(0), 128, 16, 4, 32)
    qt = QuantTensor.from_codes(L.q, torch.from_numpy(L.s), L.z, 4, 32, g_idx=np.arange(128) // 32)
    assert qt.g_idx is None and not qt.act_order


@pytest.mark.parametrize("change, message", [
    (dict(bits=5), "bits must be one of"),
    (dict(zeros=torch.full((4, 16), 17, dtype=torch.int16)), "zeros must lie in 0..16"),
    (dict(scales=torch.ones(3, 16, dtype=torch.float16)), "scales must be float"),
    (dict(g_idx=torch.full((128,), 9, dtype=torch.int32)), "g_idx values must lie in 0..3"),
    (dict(sym=True), "sym=True but some zeros differ"),
    (dict(qweight=torch.zeros(15, 16, dtype=torch.int32)), "qweight has 15 rows"),
])
def test_invalid_tensors_are_refused(change, message):
    L = random_layer(np.random.default_rng(0), 128, 16, 4, 32)
    qt = build(L)
    with pytest.raises(ValueError, match=message):
        qt.replace(**change)


@pytest.mark.parametrize("sym", [True, False])
def test_rtn_matches_reference_quantizer(sym):
    w = torch.randn(32, 256, generator=torch.Generator().manual_seed(1)) * 0.02
    qt = rtn_quantize(w, 4, 64, sym)
    q, z, s = ref.rtn_quantize(w.numpy(), 4, 64, sym)
    assert np.array_equal(qt.codes(), q)
    assert np.array_equal(qt.zeros, z)
    assert np.array_equal(qt.scales, s)


def test_reference_gemm_matches_float_matmul():
    from repack.kernels import reference_gemm
    L = random_layer(np.random.default_rng(4), 128, 32, 4, 32, act_order=True)
    x = torch.randn(3, 128, dtype=torch.float32)
    w = torch.from_numpy(ref.dequantize(L.q, L.z, L.s, 32, L.g_idx))
    assert torch.allclose(reference_gemm(x, build(L)), x @ w.t(), rtol=1e-5, atol=1e-6)


def test_deferred_words_are_made_on_first_read_only():
    """A reader may hand over words made on demand (AWQ's transpose): shapes, replace() and the zero
    checks never make them; the first read of qweight does, once."""
    L = random_layer(np.random.default_rng(3), 64, 16, 4, 32)
    words = torch.from_numpy(pack_rows(L.q, 4))
    made = []
    qt = QuantTensor(Deferred(tuple(words.shape), lambda: made.append(1) or words), torch.from_numpy(L.s),
                     torch.from_numpy(L.z), 4, 32, 64)
    moved = qt.replace(scales=qt.scales.astype(np.float32))
    assert qt.shape == (16, 64) and moved.out_features == 16 and not made
    assert np.array_equal(qt.qweight, words) and np.array_equal(qt.qweight, words) and made == [1]
    assert np.array_equal(moved.codes(), L.q) and made == [1, 1]
    with pytest.raises(ValueError, match="rows"):
        QuantTensor(Deferred((3, 16), lambda: words), torch.from_numpy(L.s), torch.from_numpy(L.z), 4, 32, 64)


def test_torch_inputs_cross_into_numpy_and_back_bit_for_bit():
    """Quantizers hand torch tensors over; the tensor holds numpy (bf16 via ml_dtypes) and the
    kernels take torch back: every bf16 bit pattern (NaN payloads, -0, subnormals) survives."""
    from repack.dtypes import BF16, as_array, to_torch

    bits = torch.arange(0, 1 << 16, dtype=torch.int32).to(torch.int16).reshape(256, 256)
    t = bits.view(torch.bfloat16)
    a = as_array(t)
    assert a.dtype == BF16 and np.array_equal(a.view(np.int16), bits.numpy())
    back = to_torch(a)
    assert back.dtype == torch.bfloat16 and torch.equal(back.view(torch.int16), bits)
    qt = QuantTensor.from_codes(np.zeros((64, 256), np.uint8), t[:1], np.zeros((1, 256), np.int16), 4, -1)
    assert qt.scales.dtype == BF16 and np.array_equal(qt.scales.view(np.int16), bits[:1].numpy())
    assert to_torch(qt.scales).dtype == torch.bfloat16
