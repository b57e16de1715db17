"""W4A16 GEMM kernels. ``reference`` (dequantize + matmul) runs everywhere and is the oracle;
Triton kernels that read packed layouts directly arrive with issue 3 and are imported lazily."""

from .reference import reference_gemm

__all__ = ["reference_gemm"]
