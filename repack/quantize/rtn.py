"""Round-to-nearest (min/max) quantization: the baseline, and the fallback of lossy conversions."""

from __future__ import annotations

import torch

from ..tensor import QuantTensor, num_groups


def rtn_quantize(weight: torch.Tensor, bits: int, group_size: int, sym: bool,
                 scale_dtype: torch.dtype = torch.float16, zero_range: tuple[int, int] | None = None) -> QuantTensor:
    """Quantize a float weight ``[N, K]`` per (group of K, output channel).

    sym: ``z = 2**(bits-1)``, ``s = max|w| / (2**(bits-1) - 1)``. asym: the range is widened to
    include 0, ``s = (max - min) / (2**bits - 1)``, ``z = round(-min / s)`` clamped to ``zero_range``
    (default the code range). The scale is rounded to ``scale_dtype`` *before* the codes are
    computed, so the stored scale is the one the codes were chosen for.
    """
    w = weight.detach().to(torch.float32)
    N, K = w.shape
    gs = K if group_size == -1 else group_size
    G = num_groups(K, group_size)
    pad = G * gs - K
    wp = torch.nn.functional.pad(w, (0, pad)).reshape(N, G, gs)
    qmax = 2**bits - 1
    if pad:  # padding columns must not widen the min/max of the last group
        valid = (torch.arange(G * gs) < K).reshape(G, gs)
        lo = torch.where(valid, wp, torch.inf).amin(-1)
        hi = torch.where(valid, wp, -torch.inf).amax(-1)
    else:
        lo, hi = wp.amin(-1), wp.amax(-1)
    if sym:
        s = torch.maximum(lo.abs(), hi.abs()) / (2 ** (bits - 1) - 1)
        s = torch.where(s == 0, torch.ones_like(s), s).to(scale_dtype).to(torch.float32)
        z = torch.full_like(s, 2 ** (bits - 1))
    else:
        lo, hi = lo.clamp(max=0), hi.clamp(min=0)
        s = (hi - lo) / qmax
        s = torch.where(s == 0, torch.ones_like(s), s).to(scale_dtype).to(torch.float32)
        zlo, zhi = zero_range or (0, qmax)
        z = torch.round(-lo / s).clamp(zlo, zhi)
    q = torch.clamp(torch.round(wp / s[..., None]) + z[..., None], 0, qmax)
    codes = q.reshape(N, G * gs)[:, :K].t().to(torch.uint8)
    return QuantTensor.from_codes(codes, s.t().contiguous().to(scale_dtype), z.t().to(torch.int16), bits, group_size, sym=sym)
