"""Fitting a canonical tensor into what a target format can hold, and measuring what that costs.

Every step either keeps the tensor bit-exact (e.g. widening 2-bit codes into a 4-bit format, which
keeps codes, zeros and scales) or is lossy and says so; the loss is measured as the max abs
difference of the dequantized weights, before anything is written.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from .dtypes import as_dtype
from .dtypes import name as _dtype_name
from .errors import UnsupportedError
from .tensor import QuantTensor, int_bounds

if TYPE_CHECKING:  # formats import this module: a run-time import would be circular
    from .formats.base import Capabilities


@dataclass
class Fit:
    tensor: QuantTensor
    exact_notes: list[str] = field(default_factory=list)
    lossy: list[str] = field(default_factory=list)
    unsupported: list[str] = field(default_factory=list)
    max_abs_err: float = 0.0

    @property
    def status(self) -> str:
        return "unsupported" if self.unsupported else "lossy" if self.lossy else "exact"


def fit(qt: QuantTensor, caps: Capabilities, scale_dtype=None, measure: bool = True) -> Fit:
    out = Fit(qt)
    t = qt
    if t.bits not in caps.bits:
        wider = [b for b in caps.bits if b > t.bits]
        if wider:
            b = min(wider)
            t = QuantTensor.from_codes(t.codes(), t.scales, t.zeros, b, t.group_size, t.g_idx, sym=False, offsets=t.offsets)
            out.exact_notes.append(f"widened {qt.bits}->{b} bits (same codes)")
        else:
            b = max(caps.bits)
            out.lossy.append(f"{qt.bits}-bit not supported, re-quantized to {b}-bit")
            t = _requantize(t, b, t.group_size, caps)
    if t.offsets is not None and not caps.float_offsets:  # after any re-quantization, which drops them
        t, exact = offsets_to_zeros(t, caps.zero_range(t.bits))
        if exact:
            out.exact_notes.append("float offsets are integer zero points (exact)")
        else:
            out.lossy.append("float offsets (W = d*q + m) rounded to integer zero points")
    shape = caps.shape_problem(t.in_features, t.out_features, t.bits, t.group_size)
    if shape:
        out.unsupported.append(shape)
        return out
    if t.act_order and not caps.act_order:
        out.lossy.append("act-order g_idx not supported, re-quantized with sequential groups")
        t = _requantize(t, t.bits, t.group_size, caps)
    lo, hi = caps.zero_range(t.bits)
    zmin, zmax = int_bounds(t.zeros)
    if t.offsets is None and (zmin < lo or zmax > hi):
        out.lossy.append(f"zero points {zmin}..{zmax} outside the storable {lo}..{hi}, clamped")
        t = _clamp_zeros(t, lo, hi)
    scale_dtype = None if scale_dtype is None else as_dtype(scale_dtype)
    if scale_dtype is not None and t.scales.dtype != scale_dtype:
        names = f"{_dtype_name(t.scales.dtype)}->{_dtype_name(scale_dtype)}"
        t = cast_scales(t, scale_dtype, out, f"scales {names} (exact)", f"scales {names} rounds")
    if caps.check is not None:  # the target's own rules (e.g. GGUF block types), after the generic ones
        t = caps.check(t, out)
        if out.unsupported:
            return out
    out.tensor = t
    if out.lossy and measure:
        out.max_abs_err = float(np.abs(qt.dequantize(np.float32) - t.dequantize(np.float32)).max())
    return out


def cast_scales(t: QuantTensor, dtype, out: Fit, exact_note: str, lossy_note: str) -> QuantTensor:
    """``t`` with its scales in ``dtype``, noting on ``out`` whether that kept every value."""
    dtype = as_dtype(dtype)
    if t.scales.dtype == dtype:
        return t
    s = t.scales.astype(dtype)
    if np.array_equal(s.astype(t.scales.dtype), t.scales):
        out.exact_notes.append(exact_note)
    else:
        out.lossy.append(lossy_note)
    return t.replace(scales=s)


def offsets_to_zeros(t: QuantTensor, zero_range: tuple[int, int]) -> tuple[QuantTensor, bool]:
    """``s*q + m`` as ``s*(q - z)`` with ``z = round(-m/s)`` clamped to ``zero_range`` (0 where s is 0);
    exact when every dequantized weight is unchanged (fp32), i.e. ``-m/s`` is an in-range integer and
    ``s*z`` rounds to ``-m`` (gguf.md §5.2: true for 0.27 % of real Q4_1 blocks)."""
    s, m = t.scales.astype(np.float64), t.offsets.astype(np.float64)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        z = np.where(s != 0, -m / np.where(s != 0, s, 1), 0.0)
    z = np.nan_to_num(z, nan=0.0, posinf=0.0, neginf=0.0)
    z = np.clip(np.round(z), *zero_range).astype(np.int16)
    moved = QuantTensor(t.qweight, t.scales, z, t.bits, t.group_size, t.in_features, t.g_idx, sym=False)
    return moved, np.array_equal(moved.dequantize(np.float32), t.dequantize(np.float32))


def _requantize(t: QuantTensor, bits: int, group_size: int, caps: Capabilities) -> QuantTensor:
    lo, hi = caps.zero_range(bits)
    return requantize(t, bits, group_size, t.sym, t.scales.dtype, (lo, min(hi, 2**bits - 1)))


def requantize(t: QuantTensor, bits: int, group_size: int, sym: bool, scale_dtype,
               zero_range: tuple[int, int] | None = None) -> QuantTensor:
    """RTN of ``t``'s dequantized weights (the fallback of a lossy fit). In torch: only a lossy
    conversion pays for importing it."""
    from .dtypes import to_torch, torch_dtype
    from .quantize.rtn import rtn_quantize

    return rtn_quantize(to_torch(t.dequantize(np.float32)), bits, group_size, sym=sym,
                        scale_dtype=torch_dtype(scale_dtype), zero_range=zero_range)


def _clamp_zeros(t: QuantTensor, lo: int, hi: int) -> QuantTensor:
    """Move each out-of-range zero to the nearest storable one and shift its codes by the same
    amount, so ``q - z`` is unchanged except where the shifted code leaves 0..2^b-1 (clipped)."""
    z = t.zeros.astype(np.int32)
    z2 = np.clip(z, lo, hi)
    shift = (z2 - z)[t.group_index()]  # [K, N]
    q = np.clip(t.codes().astype(np.int32) + shift, 0, 2**t.bits - 1)
    return QuantTensor.from_codes(q.astype(np.uint8), t.scales, z2, t.bits, t.group_size, t.g_idx, sym=False)


def require_supported(module: str, f: Fit) -> None:
    if f.unsupported:
        raise UnsupportedError(f"{module}: {f.unsupported[0]}")
