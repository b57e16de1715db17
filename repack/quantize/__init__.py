"""Quantization from float weights: RTN, GPTQ and AWQ, one decoder block at a time (:func:`quantize`).

Everything here runs in torch, so the modules are imported on first use: `repack convert` reads
the package's constants (and :mod:`.arch`) without loading torch."""

METHODS = ("rtn", "gptq", "awq")

__all__ = ["METHODS", "QuantizeReport", "quantize", "rtn_quantize"]


def __getattr__(name: str):
    if name in ("QuantizeReport", "quantize"):
        from . import driver
        return getattr(driver, name)
    if name == "rtn_quantize":
        from .rtn import rtn_quantize
        return rtn_quantize
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
