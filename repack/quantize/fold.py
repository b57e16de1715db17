"""AWQ's fold: multiply a stage's input channels by scales ``s`` in its linears' columns and divide
them by ``s`` where they are produced (a norm, or rows of the linear before), so that the block
computes the same function with weights that round better."""

from __future__ import annotations

import torch

from . import norms
from .arch import Stage, bias_of


def prev_rows(t: dict[str, torch.Tensor], prefix: str, stage: Stage) -> tuple[int, int]:
    """The output channels of the stage's producer that its linears read: (first, stop)."""
    if stage.prev_is_norm:
        return 0, t[prefix + stage.prev].shape[0]
    return stage.prev_rows or (0, t[prefix + stage.prev + ".weight"].shape[0])


def fold(t: dict[str, torch.Tensor], prefix: str, stage: Stage, s: torch.Tensor, norm: str) -> list[str]:
    """Rewrite the block's tensors ``t`` (full names) in place. Returns the names of the norm
    tensors and biases it changed (the quantizer stores those as they are)."""
    for m in stage.linears:
        t[prefix + m + ".weight"] = t[prefix + m + ".weight"] * s
    if stage.prev_is_norm:
        weight = prefix + stage.prev
        bias = bias_of(weight) if bias_of(weight) in t else None
        w, b = norms.fold(norm, t[weight], t.get(bias) if bias else None, s)
        t[weight] = w
        if bias:
            t[bias] = b
        return [weight] + ([bias] if bias else [])
    weight, bias = prefix + stage.prev + ".weight", prefix + stage.prev + ".bias"
    if stage.prev_rows is None:
        t[weight] = (t[weight].t() / s).t()
        if bias in t:
            t[bias] = t[bias] / s
    else:
        first, stop = stage.prev_rows
        t[weight] = t[weight].clone()
        t[weight][first:stop] /= s[:, None]
        if bias in t:
            t[bias] = t[bias].clone()
            t[bias][first:stop] /= s
    return [bias] if bias in t else []


def row_scales(t: dict[str, torch.Tensor], prefix: str, stage: Stage, s: torch.Tensor) -> torch.Tensor:
    """What each output row of the stage's producing linear was divided by (1 outside its part)."""
    if stage.prev_rows is None:
        return s
    rows = torch.ones(t[prefix + stage.prev + ".weight"].shape[0], dtype=s.dtype, device=s.device)
    rows[stage.prev_rows[0]:stage.prev_rows[1]] = s
    return rows
