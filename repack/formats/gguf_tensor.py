"""Canonical tensor <-> GGUF 32-element blocks, and which block type holds a tensor exactly.

Reading (block bytes -> QuantTensor), exact by construction:

=====  ==========================================  =================================
type   canonical                                   why exact
=====  ==========================================  =================================
Q4_0   4-bit, codes q, zero 8, scale d (sym)        d*(q-8) is the same expression
Q5_0   8-bit, codes q+112, zero 128, scale d (sym)  (q+112)-128 = q-16
Q8_0   8-bit, codes q+128, zero 128, scale d (sym)  (q+128)-128 = q
Q4_1   4-bit, codes q, float offset m, scale d      d*q + m (QuantTensor.offsets)
Q5_1   8-bit, codes q (0..31), float offset m       d*q + m
=====  ==========================================  =================================

d is kept negative where the file has it (llama.cpp's Q4_0 quantizer makes about half the blocks
negative, gguf.md §2.1); ``s*(q - z)`` is the same product either way. Neighbouring blocks of a
row whose d (and m) are identical in every row are merged into one group, so a GPTQ g128 tensor
written as Q4_0 reads back as g128 (candidates: one group per row, then 32 * 2^j).

Writing (QuantTensor -> blocks): each 32-column block takes its group's scale (group sizes are
multiples of 32, so a block never straddles two groups) and the codes ``v = q - z``:
Q4_0 needs v in -8..7 (stored v+8), Q5_0 v in -16..15 (stored v+16), Q8_0 v in -128..127. That
makes asymmetric 4-bit exact in Q5_0: q, z in 0..15 give v in -15..15 (gguf.md §5.2). Q4_1/Q5_1
store q and ``m = -s*z``, exact only when fp16 holds -s*z (s has 11 significant bits, s*z up to
15), otherwise m is rounded and the loss reported.
"""

from __future__ import annotations

import weakref

import numpy as np
import torch

from ..tensor import QuantTensor
from . import gguf_blocks as gb

# smallest first: the order "auto" tries block types in (bytes per 32 weights: 18, 20, 22, 24, 34)
BY_SIZE = (gb.Q4_0, gb.Q4_1, gb.Q5_0, gb.Q5_1, gb.Q8_0)
_CANON = {"q4_0": (4, 0, 8), "q5_0": (8, 112, 128), "q8_0": (8, 128, 128), "q4_1": (4, 0, 0), "q5_1": (8, 0, 0)}


def group_blocks(d: np.ndarray, m: np.ndarray | None) -> int:
    """How many consecutive 32-blocks share one (d, m) in every row: nb (one group per row), else
    the largest power of two that works, else 1. Compared as bit patterns (-0.0, NaN included)."""
    keys = d.view(np.uint16).astype(np.uint32)
    if m is not None:
        keys = keys | (m.view(np.uint16).astype(np.uint32) << 16)
    nb = keys.shape[1]
    if nb == 0 or (keys == keys[:, :1]).all():
        return nb
    r = 1 << (nb.bit_length() - 1)
    while r > 1:
        if (keys == keys[:, (np.arange(nb) // r) * r]).all():
            return r
        r //= 2
    return 1


def to_canonical(t: gb.BlockType, data: np.ndarray) -> QuantTensor:
    """uint8 block rows [N, K/32 * type_size] -> QuantTensor [N, K] (exact, see the module table)."""
    codes, d, m = gb.decode(t, data)
    N, K = codes.shape
    bits, shift, zero = _CANON[t.name]
    r = group_blocks(d, m)
    gs = -1 if r == d.shape[1] else 32 * r
    scales = torch.from_numpy(np.ascontiguousarray(d[:, ::r].T))
    offsets = None if m is None else torch.from_numpy(np.ascontiguousarray(m[:, ::r].T))
    q = (codes.astype(np.int16) + shift).astype(np.uint8).T
    zeros = np.full(scales.shape, zero, np.int16)
    return QuantTensor.from_codes(q, scales, zeros, bits, gs, sym=zero != 0, offsets=offsets)


def _per_block(t: QuantTensor, values: torch.Tensor) -> np.ndarray:
    """A [G, N] per-group array as [N, K/32]: the group of each 32-column block."""
    first_cols = torch.arange(0, t.in_features, gb.BLOCK)
    return values[t.group_index()[first_cols]].t().contiguous().numpy()


_spans: "weakref.WeakKeyDictionary[QuantTensor, tuple[int, int, int]]" = weakref.WeakKeyDictionary()


def spans(t: QuantTensor) -> tuple[int, int, int]:
    """(min, max) of q - z over every weight, and the largest code (remembered per tensor: the
    type search asks several times). Per group: the codes' min and max along K, then z."""
    got = _spans.get(t)
    if got is None:
        N, K = t.out_features, t.in_features
        zt = t.zeros.numpy().astype(np.int16).T  # [N, G]
        gs = t.effective_group_size
        lo = hi = qmax = None
        for r0 in range(0, N, _row_step(K)):
            r1 = min(N, r0 + _row_step(K))
            q = _codes_nk(t, r0, r1)
            if t.g_idx is None and K % gs == 0:
                g = q.reshape(r1 - r0, K // gs, gs)
                lo_q, hi_q, z = g.min(axis=2).astype(np.int16), g.max(axis=2).astype(np.int16), zt[r0:r1]  # [R, G]
            else:  # act-order or a short last group: per input column
                lo_q = hi_q = q.astype(np.int16)
                z = zt[r0:r1][:, t.group_index().numpy()]
            parts = (int((lo_q - z).min()), int((hi_q - z).max()), int(hi_q.max()))
            lo, hi, qmax = parts if lo is None else (min(lo, parts[0]), max(hi, parts[1]), max(qmax, parts[2]))
        got = (lo, hi, qmax) if lo is not None and K else (0, 0, 0)
        _spans[t] = got
    return got


def offsets_fp16(t: QuantTensor) -> tuple[torch.Tensor, bool]:
    """The offsets as fp16 (-s*z for integer zeros) and whether that is exact."""
    if t.offsets is not None:
        m32 = t.offsets.to(torch.float32)
    else:
        m32 = -(t.scales.to(torch.float32) * t.zeros.to(torch.float32))
    m = m32.to(torch.float16)
    return m, torch.equal(m.to(torch.float32), m32)


def value_range(bt: gb.BlockType) -> tuple[int, int]:
    """The values ``q - zero`` a type without offset can store: -8..7, -16..15, -128..127."""
    return (-128, 127) if bt.code_bits == 8 else (-bt.zero, bt.zero - 1)


def exact_type(t: QuantTensor, only: gb.BlockType | None = None) -> gb.BlockType | None:
    """The smallest block type (or ``only``) holding ``t`` bit-exactly, or None. Needs fp16 scales,
    sequential groups that are multiples of 32 and K a multiple of 32 (callers check the shape)."""
    if t.scales.dtype != torch.float16 or t.act_order:
        return None
    for bt in (only,) if only else BY_SIZE:
        if bt.has_min:
            _, _, qmax = spans(t)
            if qmax <= bt.code_range[1] and offsets_fp16(t)[1]:
                return bt
        elif t.offsets is None:
            lo, hi, _ = spans(t)
            vmin, vmax = value_range(bt)
            if vmin <= lo and hi <= vmax:
                return bt
    return None


def encode(t: QuantTensor, bt: gb.BlockType) -> np.ndarray:
    """Block bytes uint8 [N, K/32 * type_size] of a tensor :func:`exact_type` accepts for ``bt``."""
    d = _per_block(t, t.scales.to(torch.float16))
    m = _per_block(t, offsets_fp16(t)[0]) if bt.has_min else None
    N, K = t.out_features, t.in_features
    gs = t.effective_group_size
    # stored value v + zero = q + (zero - z), in [0, 255] for a type exact_type accepted, so uint8
    # arithmetic modulo 256 gives it without widening (the shift itself may be negative)
    shift = None if bt.has_min else ((bt.zero - t.zeros.numpy().astype(np.int16)) & 0xFF).astype(np.uint8).T  # [N, G]
    out = np.empty((N, K // gb.BLOCK * bt.type_size), np.uint8)
    step = _row_step(K)
    for r0 in range(0, N, step):
        r1 = min(N, r0 + step)
        codes = _codes_nk(t, r0, r1)  # blocks run along K
        if shift is not None:
            if t.g_idx is None and K % gs == 0:  # the shift broadcast over each group's columns
                codes = (codes.reshape(r1 - r0, K // gs, gs) + shift[r0:r1, :, None]).reshape(r1 - r0, K)
            else:
                codes = codes + shift[r0:r1][:, t.group_index().numpy()]
            if bt.code_range[0] < 0:  # Q8_0 stores v itself, signed: the same bytes read as int8
                codes = codes.view(np.int8)
        out[r0:r1] = gb.encode(bt, codes, d[r0:r1], None if m is None else m[r0:r1])
    return out


_bytes_cache: "weakref.WeakKeyDictionary[QuantTensor, np.ndarray]" = weakref.WeakKeyDictionary()


def _bytes_nk(t: QuantTensor) -> np.ndarray:
    """4/8-bit: the packed words transposed to [N, K/per] and seen as bytes, remembered per tensor
    (the type search and the encoder share them). Byte b of a little-endian GPTQ word holds codes
    2b (low nibble) and 2b+1 (high nibble) at 4 bits, code b at 8 bits (hf.md §1.3, LSB first)."""
    got = _bytes_cache.get(t)
    if got is None:
        got = np.ascontiguousarray(t.qweight.numpy().T).view(np.uint8)
        _bytes_cache[t] = got
    return got


def _codes_nk(t: QuantTensor, r0: int, r1: int) -> np.ndarray:
    """uint8 codes of output rows r0:r1, [r1 - r0, K]. Transposing the packed words (4-byte
    elements) and splitting bytes per block of rows replaced unpacking along K and transposing the
    codes, the slowest step of writing a GGUF."""
    if t.bits == 8:
        return _bytes_nk(t)[r0:r1, :t.in_features]
    if t.bits == 4:
        by = _bytes_nk(t)[r0:r1]
        codes = np.empty((by.shape[0], by.shape[1], 2), np.uint8)
        np.bitwise_and(by, 0x0F, out=codes[:, :, 0])
        np.right_shift(by, 4, out=codes[:, :, 1])
        return codes.reshape(by.shape[0], -1)[:, :t.in_features]
    return np.ascontiguousarray(t.codes().numpy()[:, r0:r1].T)


def _row_step(K: int) -> int:
    return max(1, (1 << 20) // max(K, 1))  # ~1 M codes a step: the passes over them stay in L2
