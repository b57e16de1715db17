"""Quantization from float weights: RTN, GPTQ and AWQ, one decoder block at a time (:func:`quantize`).

The driver is imported on first use: formats and sources import :mod:`.rtn` from here, and the
driver imports them."""

from .rtn import rtn_quantize

__all__ = ["METHODS", "QuantizeReport", "quantize", "rtn_quantize"]


def __getattr__(name: str):
    if name in ("METHODS", "QuantizeReport", "quantize"):
        from . import driver
        return getattr(driver, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
