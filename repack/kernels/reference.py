"""The reference W·x: dequantize the canonical tensor and call torch.matmul, on any device."""

from __future__ import annotations

import torch

from ..dtypes import to_torch
from ..tensor import QuantTensor


def reference_gemm(x: torch.Tensor, qt: QuantTensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """``x`` [..., K] (fp16/bf16/fp32) -> [..., N]; the weight is dequantized in fp32, cast to x's dtype."""
    if x.shape[-1] != qt.in_features:
        raise ValueError(f"x has {x.shape[-1]} features, the weight expects {qt.in_features}")
    w = to_torch(qt.dequantize(torch.float32)).to(device=x.device, dtype=x.dtype)
    y = torch.matmul(x, w.t())
    return y + bias if bias is not None else y
