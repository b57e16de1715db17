"""Round-to-nearest (min/max) quantization: the baseline, the fallback of lossy conversions, and the
quantizer inside AWQ's searches and GPTQ's column loop (:func:`minmax_params`)."""

from __future__ import annotations

import torch

from ..tensor import QuantTensor, num_groups


def minmax_params(lo: torch.Tensor, hi: torch.Tensor, bits: int, sym: bool, scale_dtype: torch.dtype = torch.float16,
                  zero_range: tuple[int, int] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """fp32 (scale, zero) from a group's min and max (any matching shapes).

    sym: ``z = 2**(bits-1)``, ``s = max|w| / (2**(bits-1) - 1)``. asym: the range is widened to
    include 0, ``s = (max - min) / (2**bits - 1)``, ``z = round(-min / s)`` clamped to ``zero_range``
    (default the code range). The scale is rounded to ``scale_dtype`` *before* the codes are
    computed, so the stored scale is the one the codes were chosen for."""
    qmax = 2**bits - 1
    if sym:
        s = torch.maximum(lo.abs(), hi.abs()) / (2 ** (bits - 1) - 1)
        s = torch.where(s == 0, torch.ones_like(s), s).to(scale_dtype).to(torch.float32)
        return s, torch.full_like(s, 2 ** (bits - 1))
    lo, hi = lo.clamp(max=0), hi.clamp(min=0)
    s = (hi - lo) / qmax
    s = torch.where(s == 0, torch.ones_like(s), s).to(scale_dtype).to(torch.float32)
    zlo, zhi = zero_range or (0, qmax)
    return s, torch.round(-lo / s).clamp(zlo, zhi)


def _grouped(w: torch.Tensor, group_size: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """w [N, K] -> (padded [N, G, gs], min [N, G], max [N, G]); padding never widens a range."""
    N, K = w.shape
    gs = K if group_size == -1 else group_size
    G = num_groups(K, group_size)
    pad = G * gs - K
    wp = torch.nn.functional.pad(w, (0, pad)).reshape(N, G, gs)
    if pad:
        valid = (torch.arange(G * gs, device=w.device) < K).reshape(G, gs)
        return wp, torch.where(valid, wp, torch.inf).amin(-1), torch.where(valid, wp, -torch.inf).amax(-1)
    return wp, wp.amin(-1), wp.amax(-1)


def rtn_quantize(weight: torch.Tensor, bits: int, group_size: int, sym: bool,
                 scale_dtype: torch.dtype = torch.float16, zero_range: tuple[int, int] | None = None) -> QuantTensor:
    """Quantize a float weight ``[N, K]`` per (group of K, output channel); see :func:`minmax_params`."""
    w = weight.detach().to(torch.float32)
    N, K = w.shape
    wp, lo, hi = _grouped(w, group_size)
    s, z = minmax_params(lo, hi, bits, sym, scale_dtype, zero_range)
    q = torch.clamp(torch.round(wp / s[..., None]) + z[..., None], 0, 2**bits - 1)
    codes = q.reshape(N, -1)[:, :K].t().to(torch.uint8)
    return QuantTensor.from_codes(codes, s.t().contiguous().to(scale_dtype), z.t().to(torch.int16), bits, group_size, sym=sym)


def clip_groups(weight: torch.Tensor, ratio: torch.Tensor | float, group_size: int, sym: bool) -> torch.Tensor:
    """fp32 [N, K]: each (output channel, group) clamped to ``ratio`` (a float or [N, G]) times its
    range: ``[r*min, r*max]``, or ``+-r*max|w|`` when symmetric (the range RTN then sees)."""
    w = weight.to(torch.float32)
    N, K = w.shape
    wp, lo, hi = _grouped(w, group_size)
    if sym:
        hi = torch.maximum(lo.abs(), hi.abs())
        lo = -hi
    out = torch.maximum(torch.minimum(wp, (hi * ratio)[..., None]), (lo * ratio)[..., None])
    return out.reshape(N, -1)[:, :K]


def fake_quantize(weight: torch.Tensor, bits: int, group_size: int, sym: bool, scale_dtype: torch.dtype = torch.float16,
                  ratio: torch.Tensor | float = 1.0, zero_range: tuple[int, int] | None = None) -> torch.Tensor:
    """fp32 [N, K]: ``rtn_quantize(clip_groups(w, ratio)).dequantize()`` without packing the codes."""
    w = weight.to(torch.float32)
    if not (isinstance(ratio, float) and ratio == 1.0):
        w = clip_groups(w, ratio, group_size, sym)
    N, K = w.shape
    wp, lo, hi = _grouped(w, group_size)
    s, z = minmax_params(lo, hi, bits, sym, scale_dtype, zero_range)
    q = torch.clamp(torch.round(wp / s[..., None]) + z[..., None], 0, 2**bits - 1)
    return ((q - z[..., None]) * s[..., None]).reshape(N, -1)[:, :K]
