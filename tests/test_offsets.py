"""Float offsets (W = d*q + m, GGUF Q4_1/Q5_1) in the canonical tensor, and fitting them to integer zeros."""

import numpy as np
import pytest
import torch

from repack import formats
from repack.fit import fit
from repack.tensor import QuantTensor


def offset_tensor(seed=0, K=64, N=16, gs=32, m=None, s=None):
    rng = np.random.default_rng(seed)
    G = K // gs
    q = rng.integers(0, 16, size=(K, N))
    if s is None:
        s = (rng.random((G, N)) * 0.01 + 0.001).astype(np.float16)
    if m is None:
        m = (-rng.random((G, N)) * 0.05).astype(np.float16)
    qt = QuantTensor.from_codes(q, torch.from_numpy(s), np.zeros((G, N)), 4, gs,
                                offsets=torch.from_numpy(np.asarray(m, np.float16)))
    return qt, q, s, np.asarray(m, np.float16)


def loop_dequant(q, s, m, gs):
    K, N = q.shape
    w = np.zeros((N, K), np.float32)
    for k in range(K):
        for n in range(N):
            w[n, k] = np.float32(s[k // gs, n]) * np.float32(q[k, n]) + np.float32(m[k // gs, n])
    return w


def test_dequantize_honours_offsets():
    qt, q, s, m = offset_tensor()
    assert np.array_equal(qt.dequantize(np.float32), loop_dequant(q, s, m, 32))
    assert "float-offset" in qt.describe()
    part = qt.columns(3, 9)
    assert np.array_equal(part.dequantize(np.float32), qt.dequantize(np.float32)[3:9])


def test_offsets_exclude_integer_zeros():
    qt, *_ = offset_tensor()
    with pytest.raises(ValueError, match="no integer zeros"):
        qt.replace(zeros=np.ones_like(qt.zeros))
    with pytest.raises(ValueError, match="offsets must be float"):
        qt.replace(offsets=torch.zeros(1, 1))


def test_dense_keeps_offsets_exactly():
    qt, *_ = offset_tensor()
    f = fit(qt, formats.get("dense").capabilities("fp32"))
    assert f.status == "exact" and f.tensor.offsets is not None


def test_integer_offsets_become_zeros_exactly():
    rng = np.random.default_rng(4)
    s = (rng.random((2, 16)) * 0.01 + 0.001).astype(np.float16)
    z = rng.integers(0, 16, size=(2, 16))
    m = (-s.astype(np.float32) * z).astype(np.float16)
    exact = (m.astype(np.float32) == -s.astype(np.float32) * z)  # fp16 holds -s*z only sometimes
    assert exact.any() and not exact.all()
    z = np.where(exact, z, 0)
    m = np.where(exact, m, np.float16(0))
    qt, q, *_ = offset_tensor(m=m, s=s)
    f = fit(qt, formats.get("auto_gptq").capabilities("v2"))
    assert f.status == "exact", f.lossy
    assert np.array_equal(f.tensor.zeros, z) and f.tensor.offsets is None
    assert np.array_equal(f.tensor.dequantize(np.float32), qt.dequantize(np.float32))


def test_float_offsets_to_integer_zeros_report_the_loss():
    qt, q, s, m = offset_tensor(seed=2)
    caps = formats.get("auto_gptq").capabilities("v2")
    f = fit(qt, caps)
    assert f.status == "lossy" and "rounded to integer zero points" in f.lossy[0]
    # independent expectation: z = round(-m/s) clamped to the storable zeros, error over every weight
    z = np.clip(np.round(-m.astype(np.float64) / s.astype(np.float64)), *caps.zero_range(4))
    approx = np.zeros_like(loop_dequant(q, s, m, 32))
    for k in range(q.shape[0]):
        approx[:, k] = np.float32(s[k // 32]) * (q[k].astype(np.float32) - z[k // 32].astype(np.float32))
    want = float(np.abs(approx - loop_dequant(q, s, m, 32)).max())
    assert want > 0 and f.max_abs_err == pytest.approx(want, rel=0, abs=0)
