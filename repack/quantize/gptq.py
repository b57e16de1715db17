"""GPTQ (Frantar et al., 2022): quantize a linear's columns one at a time, pushing each column's
rounding error onto the columns not yet quantized, weighted by the inverse Hessian of the layer's
calibration inputs, so that ``||X W^T - X Q^T||`` stays small rather than ``||W - Q||``.

Details that matter: dead inputs (zero Hessian diagonal) are zeroed; the Hessian is damped by a
fraction of its mean diagonal before the Cholesky factorisation of its inverse; errors are
applied inside a block of columns at once and to the rest of the matrix once per block (lazy
batch updates). act-order quantizes columns by decreasing Hessian diagonal; with static groups
the group parameters come from the unmodified weight up front, so groups stay sequential on disk.
"""

from __future__ import annotations

import torch

from ..tensor import QuantTensor, num_groups
from .rtn import minmax_params


class Hessian:
    """Running ``2/n * sum(x x^T)`` over the rows of a linear's inputs (fp64 keeps long sums exact enough)."""

    def __init__(self, in_features: int, device: torch.device | str = "cpu"):
        self.h = torch.zeros(in_features, in_features, dtype=torch.float64, device=device)
        self.n = 0

    def add(self, x: torch.Tensor) -> None:
        x = x.reshape(-1, x.shape[-1]).to(torch.float64)
        total = self.n + x.shape[0]
        self.h *= self.n / total
        self.h += (2.0 / total) * (x.t() @ x)
        self.n = total


def gptq_quantize(weight: torch.Tensor, hessian: torch.Tensor, bits: int, group_size: int, sym: bool, *,
                  act_order: bool = False, static_groups: bool = False, damp: float = 0.01, block_size: int = 128,
                  scale_dtype: torch.dtype = torch.float16, zero_range: tuple[int, int] | None = None,
                  clip_search: bool = False) -> QuantTensor:
    """weight float [N, K]; hessian [K, K] (:class:`Hessian`). Returns the canonical tensor, with a
    ``g_idx`` when act-order without static groups reorders the groups. ``clip_search``: each
    group's range is shrunk to the factor that minimises its rounding error (:func:`_params`)."""
    W = weight.detach().to(torch.float32).clone()
    N, K = W.shape
    H = hessian.to(device=W.device, dtype=torch.float32).clone()
    gs = K if group_size == -1 else group_size
    G = num_groups(K, group_size)
    dead = torch.diag(H) == 0
    H[dead, dead] = 1
    W[:, dead] = 0

    static = None
    if static_groups:
        static = [_params(W[:, g * gs:(g + 1) * gs], bits, sym, scale_dtype, zero_range, clip_search) for g in range(G)]
    perm = torch.argsort(torch.diag(H), descending=True, stable=True) if act_order else torch.arange(K, device=H.device)
    W, H = W[:, perm], H[perm][:, perm]
    H += damp * torch.mean(torch.diag(H)) * torch.eye(K, device=H.device)
    try:
        Hinv = torch.linalg.cholesky(torch.cholesky_inverse(torch.linalg.cholesky(H)), upper=True)
    except torch.linalg.LinAlgError:
        raise ValueError(f"the damped Hessian of a [{N}x{K}] layer is not positive definite; raise damp (now {damp})") from None

    codes = torch.zeros(N, K, dtype=torch.uint8, device=W.device)
    scales = torch.zeros(G, N, device=W.device)
    zeros = torch.zeros(G, N, device=W.device)
    # blocks start on group boundaries, so a group's parameters see its columns already updated
    B = gs * max(1, block_size // gs) if gs < K else block_size
    s = z = None
    for i1 in range(0, K, B):
        i2 = min(i1 + B, K)
        W1 = W[:, i1:i2].clone()
        E1 = torch.zeros_like(W1)
        Hinv1 = Hinv[i1:i2, i1:i2]
        for i in range(i2 - i1):
            j = i1 + i  # position in quantization order
            col = int(perm[j])
            if static is not None:
                g = col // gs
                s, z = static[g]
            elif j % gs == 0:
                g = j // gs
                s, z = _params(torch.cat([W1[:, i:], W[:, i2:]], 1)[:, :gs], bits, sym, scale_dtype, zero_range,
                               clip_search)
                scales[g], zeros[g] = s, z
            w = W1[:, i]
            q = torch.clamp(torch.round(w / s) + z, 0, 2**bits - 1)
            codes[:, col] = q.to(torch.uint8)
            err = (w - (q - z) * s) / Hinv1[i, i]
            W1[:, i:] -= err[:, None] * Hinv1[i, i:][None, :]
            E1[:, i] = err
        W[:, i2:] -= E1 @ Hinv[i1:i2, i2:]

    if static is not None:
        scales = torch.stack([p[0] for p in static])
        zeros = torch.stack([p[1] for p in static])
        g_idx = None
    else:
        g_idx = torch.empty(K, dtype=torch.int32)
        g_idx[perm.cpu()] = (torch.arange(K) // gs).to(torch.int32)
    return QuantTensor.from_codes(codes.t().cpu(), scales.cpu().to(scale_dtype), zeros.cpu().to(torch.int16), bits, group_size,
                                  g_idx=g_idx, sym=sym)


def _params(w: torch.Tensor, bits: int, sym: bool, scale_dtype: torch.dtype,
            zero_range: tuple[int, int] | None, clip_search: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-row (scale, zero) of a column slab [N, <=gs]. With ``clip_search`` the row's range is
    shrunk by the factor in 1.00, 0.99 .. 0.21 that gives the smallest sum of |w - dequant(w)|^2.4
    (the grid and the 2.4 norm of the GPTQ authors' quantizer: a little clipping of the extremes
    buys finer steps for the bulk of the weights)."""
    lo, hi = w.amin(1), w.amax(1)
    if not clip_search:
        return minmax_params(lo, hi, bits, sym, scale_dtype, zero_range)
    # several shrink factors per pass: few kernel launches on a GPU; on a CPU a trial tensor
    # [C, N, gs] that stays in cache (one big pass over 80 factors is 4x slower there than a loop)
    best_s = best_z = best_err = None
    budget = (16 << 20) if w.is_cuda else (1 << 17)
    chunk = max(1, min(CLIP_GRID, budget // max(1, w.numel())))
    for c0 in range(0, CLIP_GRID, chunk):
        shrink = (1 - torch.arange(c0, min(c0 + chunk, CLIP_GRID), dtype=torch.float64) / 100).to(w.device, torch.float32)[:, None]
        s, z = minmax_params(lo * shrink, hi * shrink, bits, sym, scale_dtype, zero_range)
        err = _rounding_error(w, s, z, bits)
        i = torch.argmin(err, 0, keepdim=True)  # the first (largest) factor among equals, as a strict < scan
        s, z, err = s.gather(0, i)[0], z.gather(0, i)[0], err.gather(0, i)[0]
        if best_err is None:
            best_s, best_z, best_err = s, z, err
        else:
            better = err < best_err
            best_s, best_z, best_err = torch.where(better, s, best_s), torch.where(better, z, best_z), torch.minimum(err, best_err)
    return best_s, best_z


CLIP_GRID = 80  # shrink factors 1.00 .. 0.21


def _rounding_error(w: torch.Tensor, s: torch.Tensor, z: torch.Tensor, bits: int) -> torch.Tensor:
    """w [N, gs]; s, z [..., N] -> sum over the group of |w - dequant(w)|^2.4, shape [..., N]."""
    s, z = s[..., None], z[..., None]
    q = torch.clamp(torch.round(w / s) + z, 0, 2**bits - 1)
    return ((q - z) * s - w).abs().pow(2.4).sum(-1)
