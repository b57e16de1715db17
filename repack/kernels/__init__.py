"""W(2|4|8)A16 GEMM: ``y = x @ W.T`` on a quantized layer.

``backend="reference"`` dequantizes the canonical tensor and calls ``torch.matmul`` (any device:
the oracle, and the CPU path of verify); ``"triton"`` runs the Triton kernel on the layer's own
packed layout (CUDA only); ``"auto"`` takes Triton for CUDA inputs it supports, else the
reference. Triton is imported only when the Triton path is taken, so CPU machines never load it.
"""

from __future__ import annotations

import torch

from ..tensor import QuantTensor
from .packed import PackedWeight
from .reference import reference_gemm

BACKENDS = ("auto", "reference", "triton")
# documented agreement of the Triton kernel with the reference on the same integers:
# relative error ||y - y_ref|| / ||y_ref|| (fp32 accumulation; the output is rounded once to fp16/bf16)
TOLERANCE = {torch.float16: 2e-3, torch.bfloat16: 1e-2, torch.float32: 1e-5}


def triton_available() -> bool:
    if not torch.cuda.is_available():
        return False
    try:
        import triton  # noqa: F401
    except ImportError:
        return False
    return True


def resolve_backend(backend: str, device: torch.device | str) -> str:
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; choose from {', '.join(BACKENDS)}")
    on_cuda = torch.device(device).type == "cuda"
    if backend == "triton" and not (on_cuda and triton_available()):
        raise ValueError("the triton backend needs a CUDA device and the triton package")
    if backend == "auto":
        return "triton" if on_cuda and triton_available() else "reference"
    return backend


def gemm(x: torch.Tensor, qt: QuantTensor | None = None, packed: PackedWeight | None = None,
         backend: str = "auto", bias: torch.Tensor | None = None) -> torch.Tensor:
    """``x`` [..., K] -> [..., N]. Give the canonical tensor, the packed layout, or both: the
    reference reads ``qt``, Triton reads ``packed`` (the canonical layout when only ``qt`` is given)."""
    if qt is None and packed is None:
        raise ValueError("gemm needs a QuantTensor or a PackedWeight")
    chosen = resolve_backend(backend, x.device)
    if chosen == "triton" and (qt is None or qt.offsets is None):  # packed layouts hold integer zeros only
        from .triton_gemm import supports, triton_gemm
        w = packed if packed is not None else PackedWeight.from_quant_tensor(qt)
        why = supports(w)
        if why is None and x.dtype in (torch.float16, torch.bfloat16):
            y = triton_gemm(x, w.to(x.device))
            return y + bias if bias is not None else y
        if backend == "triton":
            raise ValueError(f"the triton backend cannot run this layer: {why or f'{x.dtype} activations'}")
    if qt is None:
        raise ValueError("the reference backend needs the canonical QuantTensor")
    return reference_gemm(x, qt, bias)


__all__ = ["BACKENDS", "TOLERANCE", "PackedWeight", "gemm", "reference_gemm", "resolve_backend", "triton_available"]
