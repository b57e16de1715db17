"""The per-channel norms of decoder blocks (:attr:`Arch.norm`), and how AWQ divides a norm's
output channels by scales ``s`` by rewriting its parameters."""

from __future__ import annotations

import torch

KINDS = ("rms", "rms+1", "layer")


def apply(kind: str, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, eps: float) -> torch.Tensor:
    if kind == "layer":
        return torch.nn.functional.layer_norm(x, x.shape[-1:], weight, bias, eps)
    h = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps)
    return h * (1 + weight) if kind == "rms+1" else h * weight


def fold(kind: str, weight: torch.Tensor, bias: torch.Tensor | None, s: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(weight, bias) of the norm whose output is this one's divided by s, channel by channel."""
    if kind == "rms+1":  # the output is proportional to (1 + w), not to w
        return (1 + weight) / s - 1, bias
    return weight / s, (bias / s if bias is not None else None)
