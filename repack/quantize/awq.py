"""AWQ (Lin et al., 2023): protect the input channels that see large activations by scaling them up
before rounding and folding the inverse scale into the op that produces them, then shrink each
group's range where clipping outliers lowers the output error.

Scale search: for a stage of linears sharing one input X, ``s = mean|X|^alpha`` (normalised to a
geometric mean of 1) over a grid of alpha in [0, 1); the loss is ``||X W^T - X Q(W s)^T / s||^2``
summed over the stage's linears (alpha = 0 is plain RTN, so the chosen scales never do worse on
the calibration inputs). Clip search: per (output channel, group), the shrink ratio of the group's
min/max that minimises that group's share of the output error.
"""

from __future__ import annotations

import torch

from .rtn import _grouped, fake_quantize


def search_scales(x: torch.Tensor, weights: list[torch.Tensor], bits: int, group_size: int, sym: bool,
                  scale_dtype: torch.dtype = torch.float16, grid: int = 20,
                  zero_range: tuple[int, int] | None = None) -> tuple[torch.Tensor, float]:
    """x [T, K] fp32 stage inputs, weights [N_i, K]. Returns (scales [K], alpha)."""
    w = torch.cat(weights, 0)
    ref = x @ w.t()
    x_mean = x.abs().mean(0).clamp(min=1e-8)
    best, best_s, best_alpha = None, torch.ones_like(x_mean), 0.0
    for r in range(grid):
        alpha = r / grid
        s = x_mean.pow(alpha)
        s = s / (s.max() * s.min()).sqrt()
        q = fake_quantize(w * s, bits, group_size, sym, scale_dtype, zero_range=zero_range) / s
        loss = float((x @ q.t() - ref).pow(2).mean())
        if best is None or loss < best:
            best, best_s, best_alpha = loss, s, alpha
    return best_s, best_alpha


def search_clip(x: torch.Tensor, w: torch.Tensor, bits: int, group_size: int, sym: bool,
                scale_dtype: torch.dtype = torch.float16, grid: int = 20, max_shrink: float = 0.5,
                rows: int = 1024, zero_range: tuple[int, int] | None = None) -> torch.Tensor:
    """x [T, K], w [N, K]. Returns the best range ratio per (output channel, group), fp32 [N, G]."""
    N, K = w.shape
    xg, _, _ = _grouped(x, group_size)  # [T, G, gs]
    best_err = best_ratio = None
    for i in range(int(max_shrink * grid)):
        ratio = 1 - i / grid
        d, _, _ = _grouped(w - fake_quantize(w, bits, group_size, sym, scale_dtype, ratio, zero_range), group_size)
        # each group's own share of the output error, a block of output channels at a time
        err = torch.cat([torch.einsum("tgk,ngk->ntg", xg, d[n:n + rows]).pow(2).mean(1) for n in range(0, N, rows)])
        if best_err is None:
            best_err, best_ratio = err, torch.ones_like(err)
        else:
            better = err < best_err
            best_err = torch.where(better, err, best_err)
            best_ratio = torch.where(better, torch.full_like(err, ratio), best_ratio)
    return best_ratio
