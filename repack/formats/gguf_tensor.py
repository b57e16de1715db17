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

from ..dtypes import F16
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
    scales = np.ascontiguousarray(d[:, ::r].T)
    offsets = None if m is None else np.ascontiguousarray(m[:, ::r].T)
    q = (codes.astype(np.int16) + shift).astype(np.uint8).T
    zeros = np.full(scales.shape, zero, np.int16)
    return QuantTensor.from_codes(q, scales, zeros, bits, gs, sym=zero != 0, offsets=offsets)


def _per_block(t: QuantTensor, values: np.ndarray) -> np.ndarray:
    """A [G, N] per-group array as [N, K/32]: the group of each 32-column block."""
    first_cols = np.arange(0, t.in_features, gb.BLOCK)
    return np.ascontiguousarray(values[t.group_index()[first_cols]].T)


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
    gi = t.group_index()
    z = t.zeros.astype(np.int16)  # [G, N]
    per, nwords = values_per_block(t.bits)
    words = t.qweight
    for r0, r1 in _row_blocks(t.in_features, _span_rows(t), max(8, per)):
        q = unpack_rows(words[r0 // per * nwords: -(-r1 // per) * nwords], t.bits, r1 - r0)
        g = gi[r0: r1]
        starts = np.flatnonzero(np.concatenate([[True], g[1:] != g[:-1]]))  # runs of one group
        if len(starts) <= 16:  # reduceat along rows: 160 us for 8 x 11008 codes, a reduce 3 us
            runs = [q[a:b] for a, b in zip(starts, [*starts[1:], len(q)])]
            lo_q = np.stack([r.min(axis=0) for r in runs]).astype(np.int16)
            hi_q = np.stack([r.max(axis=0) for r in runs]).astype(np.int16)
        else:
            lo_q = np.minimum.reduceat(q, starts, axis=0).astype(np.int16)
            hi_q = np.maximum.reduceat(q, starts, axis=0).astype(np.int16)
        zs = z[g[starts]]
        yield int((lo_q - zs).min()), int((hi_q - zs).max()), int(hi_q.max())


def _span_rows(t: QuantTensor) -> int:
    return max(32, (1 << 20) // max(t.out_features, 1) // 32 * 32)  # ~1 M codes a block at most


def _row_blocks(rows: int, most: int, first: int):
    """Row ranges of ``first`` (one row of 4-bit words), twice as many ... up to ``most`` rows: a
    type ruled out by the first rows (random or asymmetric codes leave Q4_0 at once) costs one
    small block, not 1 M codes."""
    r0, step = 0, first
    while r0 < rows:
        yield r0, min(rows, r0 + step)
        r0, step = r0 + step, min(most, 2 * step)


def _all_within(t: QuantTensor, vmin: int, vmax: int, qmax: int) -> bool:
    """Whether every ``q - z`` lies in vmin..vmax and every code in 0..qmax: :func:`spans` compared
    with the bounds, without reading a code when the zeros alone decide (codes lie in 0..2^b-1,
    so ``q - z`` in -zmax..2^b-1-zmin), and stopping at the first block of rows that breaks them:
    the type search of a 7B GPTQ -> GGUF plan read every code twice for an answer the first rows gave."""
    top = 2**t.bits - 1
    zmin, zmax = int_bounds(t.zeros) if t.zeros.size else (0, 0)
    if vmin <= -zmax and top - zmin <= vmax and top <= qmax:
        return True
    got = _spans.get(t)
    parts = [got] if got is not None else _chunk_spans(t)
    return all(vmin <= lo and hi <= vmax and q <= qmax for lo, hi, q in parts)


def offsets_fp16(t: QuantTensor) -> tuple[np.ndarray, bool]:
    """The offsets as fp16 (-s*z for integer zeros) and whether that is exact."""
    return _offsets_fp16(t.scales, t.zeros, t.offsets)


def _offsets_fp16(scales: np.ndarray, zeros: np.ndarray, offsets: np.ndarray | None) -> tuple[np.ndarray, bool]:
    if offsets is not None:
        m32 = offsets.astype(np.float32)
    else:
        m32 = -(scales.astype(np.float32) * zeros.astype(np.float32))
    m = m32.astype(np.float16)
    return m, np.array_equal(m.astype(np.float32), m32)


def _offsets_exact(t: QuantTensor) -> bool:
    """``offsets_fp16(t)[1]``, the first group's offsets first: they rule out nearly every tensor
    whose offsets fp16 cannot hold at 1/G of the casts (the type search asks for every tensor, and
    the four fp16 <-> fp32 casts were half of a 7B GGUF plan: 0.24 of 0.54 s)."""
    first = _offsets_fp16(t.scales[:1], t.zeros[:1], None if t.offsets is None else t.offsets[:1])[1]
    return first and offsets_fp16(t)[1]


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
    if t.scales.dtype != F16 or t.act_order:
        return None
    for bt in (only,) if only else BY_SIZE:
        if bt.has_min:
            if _offsets_exact(t) and _all_within(t, -(1 << 16), 1 << 16, bt.code_range[1]):
                return bt
        elif t.offsets is None:
            vmin, vmax = value_range(bt)
            if _all_within(t, vmin, vmax, 1 << 16):
                return bt
    return None


def encode(t: QuantTensor, bt: gb.BlockType, out: np.ndarray | None = None, rows: np.ndarray | None = None) -> np.ndarray:
    """Block bytes uint8 [N, K/32 * type_size] of a tensor :func:`exact_type` accepts for ``bt``;
    into ``out`` when given (that shape), rows reordered as ``blocks[rows]`` when ``rows`` is given."""
    if t.bits == 4 and t.g_idx is None and bt.code_bits in (4, 5) and sys.byteorder == "little":
        from . import gguf_jit
        if gguf_jit.available():
            return _encode_jit(t, bt, out, rows)
        blocks = _encode_words(t, bt)
    else:
        blocks = _encode_codes(t, bt)
    if rows is not None:
        blocks = blocks[rows]
    if out is None:
        return blocks
    out[...] = blocks
    return out


def _encode_jit(t: QuantTensor, bt: gb.BlockType, out: np.ndarray | None = None,
                rows: np.ndarray | None = None) -> np.ndarray:
    """:func:`_encode_words`' bytes from gguf_jit's compiled pass (about half the CPU-seconds)."""
    from .gguf_jit import encode_words
    d, m, shift = _word_fields(t, bt)
    return encode_words(t.qweight, d, m, shift, t.effective_group_size // gb.BLOCK, bt.type_size, bt.code_bits == 5,
                        out, rows)


def _word_fields(t: QuantTensor, bt: gb.BlockType) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
    """What the word encoders take per group and output: d's and m's fp16 bits (uint16 [G, N]; m
    None without offsets) and the code shift ``zero - z`` (:func:`_shifts`; None for the offset types)."""
    d = t.scales.astype(np.float16).view(np.uint16)
    if bt.has_min:
        return d, offsets_fp16(t)[0].view(np.uint16), None
    return d, None, _shifts(t, bt)


def _encode_codes(t: QuantTensor, bt: gb.BlockType) -> np.ndarray:
    """:func:`encode` through unpacked codes, one byte per weight: any bit width and block type."""
    d = _per_block(t, t.scales.astype(np.float16))
    m = _per_block(t, offsets_fp16(t)[0]) if bt.has_min else None
    N, K = t.out_features, t.in_features
    gs = t.effective_group_size
    # stored value v + zero = q + (zero - z), in [0, 255] for a type exact_type accepted, so uint8
    # arithmetic modulo 256 gives it without widening (the shift itself may be negative)
    shift = None if bt.has_min else ((bt.zero - t.zeros.astype(np.int16)) & 0xFF).astype(np.uint8).T  # [N, G]
    out = np.empty((N, K // gb.BLOCK * bt.type_size), np.uint8)
    step = _row_step(K)
    for r0 in range(0, N, step):
        r1 = min(N, r0 + step)
        codes = _codes_nk(t, r0, r1)  # blocks run along K
        if shift is not None:
            if t.g_idx is None and K % gs == 0:  # the shift broadcast over each group's columns
                codes = (codes.reshape(r1 - r0, K // gs, gs) + shift[r0:r1, :, None]).reshape(r1 - r0, K)
            else:
                codes = codes + shift[r0:r1][:, t.group_index()]
            if bt.code_range[0] < 0:  # Q8_0 stores v itself, signed: the same bytes read as int8
                codes = codes.view(np.int8)
        out[r0:r1] = gb.encode(bt, codes, d[r0:r1], None if m is None else m[r0:r1])
    return out


# -- 4-bit codes into 4/5-bit blocks, word by word ---------------------------------------------
# The canonical words [K/8, N] hold 8 consecutive inputs of one output per word (byte t: inputs 2t
# in its low and 2t + 1 in its high nibble), so the 32 codes of block b of output n are words
# 4b..4b+3 of column n. A step encodes a tile of blocks x output rows, never one code at a time:
# a widening cast puts every byte of its words in a 16-bit lane and one shift-or-mask moves the
# high nibble to the lane's high byte, so word i becomes a uint64 whose byte k is code 8i + k. The
# shift ``zero - z`` is then one 64-bit add (5-bit results, no carry between bytes), one multiply
# gathers a word's 8 bits 4 into qh byte i, and qs bytes 8h..8h+7 (codes 8h + k low, 8h + 16 + k
# high) are word h | word h + 2 << 4. Each of these is a pass over contiguous buffers that stay in
# L2 (numpy's passes over strided or multi-row views cost several times more); the records are
# assembled in a tile buffer and one copy of whole records moves them into ``out``, transposed.
# A [4096, 11008] GPTQ layer to Q5_0 on the 2-core machine: ~55 ms through byte planes, ~37 ms
# this way.
_LOW = np.uint64(0x0F0F0F0F0F0F0F0F)
_BIT4 = np.uint64(0x1010101010101010)
_BYTES = np.uint64(0x0101010101010101)
# bit 8k + 4 -> 56 + k: terms 2^(52 - 7j), j = 0..7; the partial products 56 + 8k - 7j never meet
_GATHER = np.uint64(sum(1 << (52 - 7 * j) for j in range(8)))
# A tile's records sit right-aligned in 24-byte slots (the largest type): qs always in bytes 8..23
# and qh in 4..7, aligned, so the ufuncs that compute them write them there.
_SLOT = 24
# ~8 K blocks a tile, whose ~0.8 MB of buffers stay in L2, and up to 128 blocks wide: long runs of
# records for the transposing copy into ``out`` (the widest measured best, with 64 rows)
TILE_BLOCKS, TILE_WIDTH = 1 << 13, 128


def _encode_words(t: QuantTensor, bt: gb.BlockType) -> np.ndarray:
    N, K = t.out_features, t.in_features
    nb, ts = K // gb.BLOCK, bt.type_size
    words = t.qweight.view(np.uint8).reshape(nb, 4, N, 4)
    d, m, shift = _word_fields(t, bt)
    fields = [d] if m is None else [d, m]
    groups = _Groups(nb, t.effective_group_size // gb.BLOCK)
    out = np.empty((N, nb * ts), np.uint8)
    records = out.view(f"V{ts}")  # [N, nb]
    blocks = min(nb, TILE_WIDTH)
    rows = max(1, TILE_BLOCKS // blocks)
    tiles: dict[tuple[int, int], _Tile] = {}  # by shape: the last row and column of tiles differ
    for n0 in range(0, N, rows):
        for b0 in range(0, nb, blocks):
            n1, b1 = min(N, n0 + rows), min(nb, b0 + blocks)
            tile = tiles.get((b1 - b0, n1 - n0))
            if tile is None:
                tile = tiles[b1 - b0, n1 - n0] = _Tile(b1 - b0, n1 - n0, ts, len(fields), bt.code_bits == 5)
            tile.encode(words[b0:b1, :, n0:n1], [groups.of(f, b0, b1, n0, n1) for f in fields],
                        None if shift is None else groups.of(shift, b0, b1, n0, n1))
            np.copyto(records[n0:n1, b0:b1], tile.records.T)
    return out


def _shifts(t: QuantTensor, bt: gb.BlockType) -> np.ndarray | None:
    """Per group and output, the shift ``zero - z`` as uint8 [G, N]: 0..16 for Q5_0 (stored values
    0..31), modulo 16 for Q4_0 (whose stored values 0..15 need only the low nibble). None when it
    is 0 everywhere (Q4_0 with zero points 8)."""
    s = bt.zero - t.zeros.astype(np.int32)
    if bt.code_bits == 4:
        s &= 15
    return s.astype(np.uint8) if s.any() else None


class _Groups:
    """A step's slice of a per-group [G, N] array, shaped to broadcast over its blocks."""

    def __init__(self, nb: int, size: int):
        self.size = size  # blocks a group (the last group may have fewer)
        self.index = np.arange(nb) // size

    def of(self, values: np.ndarray, b0: int, b1: int, n0: int, n1: int) -> np.ndarray:
        """Blocks b0:b1 of rows n0:n1 as [g, 1, R], g dividing b1 - b0: the one group of all of
        them, their whole groups, else (groups cut by the step) a row per block."""
        k = self.size
        if b0 // k == (b1 - 1) // k:
            return values[b0 // k, None, None, n0:n1]
        if b0 % k == 0 and (b1 - b0) % k == 0:
            return values[b0 // k:b1 // k, None, n0:n1]
        return values[self.index[b0:b1], None, n0:n1]


class _Tile:
    """The buffers of a tile of b blocks x r output rows, reused step after step: its codes as
    words [4, b * r] (block by block, row by row) and its records [b, r] in 24-byte slots."""

    def __init__(self, b: int, r: int, ts: int, nfields: int, qh: bool):
        m = b * r
        self.codes = np.empty((4, m), np.uint64)
        self.lanes16 = self.codes.view(np.uint16).reshape(4, b, r, 4)
        self.tmp = np.empty((4, m), np.uint64)
        self.shift = np.empty((b, r), np.uint64)
        slots = np.zeros((m, _SLOT), np.uint8)  # qh stays 0 where never written (Q5_1)
        start = _SLOT - ts
        self.fields = [_column(slots, start + 2 * k, np.uint16).reshape(b, r) for k in range(nfields)]
        self.qh = np.ndarray((4, m), np.uint8, slots, 4, (1, _SLOT)) if qh else None
        self.qs = np.ndarray((2, m), np.uint64, slots, 8, (8, _SLOT))
        self.records = _column(slots, start, f"V{ts}").reshape(b, r)

    def encode(self, words: np.ndarray, fields: list[np.ndarray], shift: np.ndarray | None) -> None:
        """Words bytes [b, 4, r, 4], fields and shifts as :meth:`_Groups.of` gives them (shift None:
        0) into ``records``."""
        for dst, src in zip(self.fields, fields):
            np.copyto(_by_group(dst, src), src)
        codes = self._codes(words)
        if shift is not None:
            np.copyto(_by_group(self.shift, shift), shift)
            np.multiply(self.shift, _BYTES, out=self.shift)
            np.add(codes, self.shift.reshape(-1), out=codes)
            if self.qh is not None:
                self._qh()
            np.bitwise_and(codes, _LOW, out=codes)  # the 4 bits qs keeps
        np.left_shift(codes[2:], np.uint64(4), out=codes[2:])
        np.bitwise_or(codes[:2], codes[2:], out=self.qs)  # gguf_blocks: _nibbles

    def _codes(self, words: np.ndarray) -> np.ndarray:
        """Byte k of word i = code 8i + k: word byte t (codes 2t, 2t + 1) widened to a 16-bit lane,
        its high nibble moved to the lane's high byte (lanes hold < 256: no bit leaves its lane)."""
        np.copyto(self.lanes16, words.transpose(1, 0, 2, 3))
        lanes, tmp = self.codes.view(np.uint32), self.tmp.view(np.uint32)
        np.left_shift(lanes, np.uint32(4), out=tmp)
        np.bitwise_or(lanes, tmp, out=lanes)
        np.bitwise_and(lanes, np.uint32(0x0F0F0F0F), out=lanes)
        return self.codes

    def _qh(self) -> None:
        """qh byte i = bits 4 of the bytes of word i (gguf_blocks: _qh), the top byte of the
        gathering product."""
        np.bitwise_and(self.codes, _BIT4, out=self.tmp)
        np.multiply(self.tmp, _GATHER, out=self.tmp)
        np.positive(self.tmp.view(np.uint8)[:, 7::8], out=self.qh)


def _by_group(dst: np.ndarray, src: np.ndarray) -> np.ndarray:
    """A tile array [b, r] as [g, b / g, r], for a [g, 1, r] source to broadcast into."""
    return dst.reshape(src.shape[0], -1, dst.shape[1])


def _column(slots: np.ndarray, offset: int, dtype) -> np.ndarray:
    """One field of every slot of ``slots`` [M, _SLOT], as a strided [M] view."""
    return np.ndarray((slots.shape[0],), dtype, slots, offset, (_SLOT,))


_bytes_cache: "weakref.WeakKeyDictionary[QuantTensor, np.ndarray]" = weakref.WeakKeyDictionary()


def _bytes_nk(t: QuantTensor) -> np.ndarray:
    """4/8-bit: the packed words transposed to [N, K/per] and seen as bytes, remembered per tensor
    (the type search and the encoder share them). Byte b of a little-endian GPTQ word holds codes
    2b (low nibble) and 2b+1 (high nibble) at 4 bits, code b at 8 bits (hf.md §1.3, LSB first)."""
    got = _bytes_cache.get(t)
    if got is None:
        got = np.ascontiguousarray(t.qweight.T).view(np.uint8)
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
    return np.ascontiguousarray(t.codes()[:, r0:r1].T)


def _row_step(K: int) -> int:
    return max(1, (1 << 20) // max(K, 1))  # ~1 M codes a step: the passes over them stay in L2
