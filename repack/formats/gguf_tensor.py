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

import sys
import weakref

import numpy as np
import torch

from ..packing import unpack_rows, values_per_block
from ..tensor import QuantTensor, int_bounds
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
        lo = hi = qmax = None
        for parts in _chunk_spans(t):
            lo, hi, qmax = parts if lo is None else (min(lo, parts[0]), max(hi, parts[1]), max(qmax, parts[2]))
        got = (lo, hi, qmax) if lo is not None and t.in_features else (0, 0, 0)
        _spans[t] = got
    return got


def _chunk_spans(t: QuantTensor):
    """:func:`spans` of each block of input rows, in turn, read in the canonical layout: the
    min and max of each group's run of rows are row-wise reductions over contiguous columns."""
    gi = t.group_index().numpy()
    z = t.zeros.numpy().astype(np.int16)  # [G, N]
    per, nwords = values_per_block(t.bits)
    words = t.qweight.numpy()
    for r0, r1 in _row_blocks(t.in_features, _span_rows(t)):
        q = unpack_rows(words[r0 // per * nwords: -(-r1 // per) * nwords], t.bits, r1 - r0)
        g = gi[r0: r1]
        starts = np.flatnonzero(np.concatenate([[True], g[1:] != g[:-1]]))  # runs of one group
        lo_q = np.minimum.reduceat(q, starts, axis=0).astype(np.int16)
        hi_q = np.maximum.reduceat(q, starts, axis=0).astype(np.int16)
        zs = z[g[starts]]
        yield int((lo_q - zs).min()), int((hi_q - zs).max()), int(hi_q.max())


def _span_rows(t: QuantTensor) -> int:
    return max(32, (1 << 20) // max(t.out_features, 1) // 32 * 32)  # ~1 M codes a block at most


def _row_blocks(rows: int, most: int):
    """Row ranges of 32, 64, 128 ... up to ``most`` rows: a type ruled out by the first group of
    rows (random or asymmetric codes leave Q4_0 at once) costs one small block, not 1 M codes."""
    r0, step = 0, 32
    while r0 < rows:
        yield r0, min(rows, r0 + step)
        r0, step = r0 + step, min(most, 2 * step)


def _all_within(t: QuantTensor, vmin: int, vmax: int, qmax: int) -> bool:
    """Whether every ``q - z`` lies in vmin..vmax and every code in 0..qmax: :func:`spans` compared
    with the bounds, without reading a code when the zeros alone decide (codes lie in 0..2^b-1,
    so ``q - z`` in -zmax..2^b-1-zmin), and stopping at the first block of rows that breaks them:
    the type search of a 7B GPTQ -> GGUF plan read every code twice for an answer the first rows gave."""
    top = 2**t.bits - 1
    zmin, zmax = int_bounds(t.zeros) if t.zeros.numel() else (0, 0)
    if vmin <= -zmax and top - zmin <= vmax and top <= qmax:
        return True
    got = _spans.get(t)
    parts = [got] if got is not None else _chunk_spans(t)
    return all(vmin <= lo and hi <= vmax and q <= qmax for lo, hi, q in parts)


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


_types: "weakref.WeakKeyDictionary[QuantTensor, dict]" = weakref.WeakKeyDictionary()


def exact_type(t: QuantTensor, only: gb.BlockType | None = None) -> gb.BlockType | None:
    """The smallest block type (or ``only``) holding ``t`` bit-exactly, or None (remembered per
    tensor: fit and specs both ask). Needs fp16 scales, sequential groups that are multiples of 32
    and K a multiple of 32 (callers check the shape)."""
    known = _types.setdefault(t, {})
    if only not in known:
        known[only] = _exact_type(t, only)
    return known[only]


def _exact_type(t: QuantTensor, only: gb.BlockType | None) -> gb.BlockType | None:
    if t.scales.dtype != torch.float16 or t.act_order:
        return None
    for bt in (only,) if only else BY_SIZE:
        if bt.has_min:
            if offsets_fp16(t)[1] and _all_within(t, -(1 << 16), 1 << 16, bt.code_range[1]):
                return bt
        elif t.offsets is None:
            vmin, vmax = value_range(bt)
            if _all_within(t, vmin, vmax, 1 << 16):
                return bt
    return None


def encode(t: QuantTensor, bt: gb.BlockType) -> np.ndarray:
    """Block bytes uint8 [N, K/32 * type_size] of a tensor :func:`exact_type` accepts for ``bt``."""
    if t.bits == 4 and t.g_idx is None and bt.code_bits in (4, 5) and sys.byteorder == "little":
        return _encode_words(t, bt)
    return _encode_codes(t, bt)


def _encode_codes(t: QuantTensor, bt: gb.BlockType) -> np.ndarray:
    """:func:`encode` through unpacked codes, one byte per weight: any bit width and block type."""
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


# -- 4-bit codes into 4/5-bit blocks, word by word ---------------------------------------------
# The canonical words [K/8, N] hold 8 consecutive inputs of one output per word (byte t: inputs 2t
# in its low and 2t + 1 in its high nibble), so the 32 codes of block b of output n are words
# 4b..4b+3 of column n. Everything below works on those words, a row of N contiguous words at a
# time, and never unpacks a code into a byte of its own: the low and high nibbles of every byte are
# split into two byte planes, the shift ``zero - z`` is one byte add per plane (5-bit results, no
# carry between bytes), qs joins plane bytes j and j + 16 and its byte order comes from widening
# casts, qh gathers the bit 4s by a multiply; each step's records are assembled in a buffer and
# moved into place by one copy of whole records. A [4096, 11008] GPTQ layer to Q5_0 on the 2-core
# machine: 112 ms through one byte per code, ~40 ms this way.
_LOW = np.uint32(0x0F0F0F0F)
_BIT0 = np.uint32(0x01010101)
_GATHER = np.uint32(0x01041040)  # bit 8t + e -> 24 + 2t + e: terms 2^(24 - 6t), t = 0..3


def _encode_words(t: QuantTensor, bt: gb.BlockType) -> np.ndarray:
    N, K = t.out_features, t.in_features
    nb, ts = K // gb.BLOCK, bt.type_size
    words = t.qweight.numpy().view(np.uint32).reshape(nb, 4, N)
    block_group = np.arange(nb) * gb.BLOCK // t.effective_group_size
    fields = [_field_source(t.scales.to(torch.float16).numpy(), block_group)]  # d
    if bt.has_min:
        fields.append(_field_source(offsets_fp16(t)[0].numpy(), block_group))  # m
    shift = None if bt.has_min else _byte_shifts(t, bt, block_group)
    out = np.empty((N, nb * ts), np.uint8)
    rows, blocks = _steps(N, nb)
    for n0 in range(0, N, rows):
        for b0 in range(0, nb, blocks):
            n1, b1 = min(N, n0 + rows), min(nb, b0 + blocks)
            v = words[b0:b1, :, n0:n1]
            lo = [v[:, i] & _LOW for i in range(4)]  # plane e of word i: byte t = value 8i + 2t + e
            hi = [(v[:, i] >> np.uint32(4)) & _LOW for i in range(4)]
            if shift is not None:
                s = shift[b0:b1, n0:n1]
                for plane in lo + hi:
                    plane += s
            parts = [f[b0:b1, n0:n1] for f in fields]
            if bt.code_bits == 5:
                parts.append(np.zeros((b1 - b0, n1 - n0), np.uint32) if shift is None else _qh(lo, hi))
            parts += _qs(lo, hi)
            _put_records(out, ts, n0, b0, parts)
    return out


STEP_WORDS, MIN_ROWS = 1 << 16, 1024


def _steps(N: int, nb: int) -> tuple[int, int]:
    """(output rows, blocks) a step: ~256 KB of words, so the dozens of passes over them stay in L2,
    each pass along long contiguous stretches of word rows (numpy's cost per inner loop is paid
    per stretch)."""
    rows = min(N, max(MIN_ROWS, STEP_WORDS // 4 // nb))
    return rows, max(1, min(nb, STEP_WORDS // 4 // rows))


def _field_source(per_group: np.ndarray, block_group: np.ndarray) -> np.ndarray:
    """A [G, N] fp16 field as [nb, N] (the group of every block), as 2-byte elements."""
    return np.ascontiguousarray(per_group.view(np.uint16)[block_group])


def _byte_shifts(t: QuantTensor, bt: gb.BlockType, block_group: np.ndarray) -> np.ndarray:
    """Per block and output, the shift ``zero - z`` in every byte of a word: 0..16 for Q5_0 (stored
    values 0..31), modulo 16 for Q4_0 (whose stored values 0..15 need only the low nibble)."""
    s = bt.zero - t.zeros.numpy().astype(np.int32)[block_group]  # [nb, N]
    if bt.code_bits == 4:
        s &= 15
    return s.astype(np.uint32) * _BIT0


def _qs(lo: list[np.ndarray], hi: list[np.ndarray]) -> list[np.ndarray]:
    """qs of the planes, as two [b, R, 4] uint16 halves (bytes 0-7, 8-15): qs byte j holds value j
    (low nibble) and j + 16 (high), so its byte 8i + 2t + e is byte t of plane e of words i and
    i + 2; bytes 2t and 2t + 1 side by side are a widening cast and a shift (gguf_blocks: _nibbles)."""
    halves = []
    for i in (0, 1):
        even = (lo[i] & _LOW) | ((lo[i + 2] & _LOW) << np.uint32(4))
        odd = (hi[i] & _LOW) | ((hi[i + 2] & _LOW) << np.uint32(4))
        b, r = even.shape
        half = even.view(np.uint8).reshape(b, r, 4).astype(np.uint16)
        half |= odd.view(np.uint8).reshape(b, r, 4).astype(np.uint16) << np.uint16(8)
        halves.append(half)
    return halves


def _qh(lo: list[np.ndarray], hi: list[np.ndarray]) -> np.ndarray:
    """qh words [b, R] of 5-bit planes: bit 8i + 2t + e = bit 4 of byte t of plane e of word i
    (gguf_blocks: _qh). Bit 4 of both planes go to bits 0 and 1 of their byte, and one multiply
    moves bits 8t + e of a word to 24 + 2t + e (its partial products never meet or carry)."""
    qh = None
    for i in range(4):
        bits = ((lo[i] >> np.uint32(4)) & _BIT0) | ((hi[i] >> np.uint32(3)) & (_BIT0 << np.uint32(1)))
        byte = ((bits * _GATHER) >> np.uint32(24)) << np.uint32(8 * i)
        qh = byte if qh is None else qh | byte
    return qh


def _put_records(out: np.ndarray, ts: int, row: int, block: int, parts: list[np.ndarray]) -> None:
    """Write the fields of b blocks of R output rows (arrays [b, R] or [b, R, k], in record order)
    into their ``ts``-byte records in ``out`` [N, nb * ts], from ``row`` and ``block`` on. The
    records are assembled in a [b, R, ts] buffer (one element copy per field), then moved by one
    copy of whole records: numpy copies each element at once, not byte by byte, and transposing
    whole records rather than each field made the assembly 2x faster."""
    b, r = parts[0].shape[:2]
    rec = np.empty((b, r, ts), np.uint8)
    offset = 0
    for part in parts:
        size = part.dtype.itemsize * (part.shape[2] if part.ndim == 3 else 1)
        src = np.ascontiguousarray(part).view(f"V{size}").reshape(b, r)
        np.ndarray((b, r), f"V{size}", rec, offset, (r * ts, ts))[...] = src
        offset += size
    dst = np.ndarray((r, b), f"V{ts}", out, row * out.strides[0] + block * ts, (out.strides[0], ts))
    dst[...] = rec.view(f"V{ts}").reshape(b, r).T


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
