"""Quantization from float weights. Round-to-nearest is here; AWQ and GPTQ arrive with issue 7."""

from .rtn import rtn_quantize

__all__ = ["rtn_quantize"]
