"""Vectorised bit packing of b-bit codes into little-endian int32 words (b in 2, 3, 4, 8).

Layout (GPTQ word order, the canonical one): each column is a bit stream. Value i of a column
occupies bits ``b*i .. b*i+b-1`` of the stream, and word r holds stream bits ``32r .. 32r+31``
(bit 0 = least significant bit of the word). For b in {2, 4, 8} this is "field j of word r holds
value r*(32/b) + j", e.g. 4-bit: nibble j of word r is value 8r + j. For b = 3, 32 values fill
exactly three words and values 10 and 21 straddle a word boundary (v10: two low bits in bits
30-31 of word 0, top bit in bit 0 of word 1; v21: low bit in bit 31 of word 1, two high bits in
bits 0-1 of word 2). Source: AutoGPTQ ``qlinear_cuda_old.QuantLinear.pack`` (its bits == 3
branch), GPTQModel ``PackableQuantLinear.pack_original``; see ../shared/formats/hf.md §1.3-1.5.

Words are returned as int32 holding the uint32 bit pattern, as every checkpoint stores them.
"""

from __future__ import annotations

import sys

import numpy as np

SUPPORTED_BITS = (2, 3, 4, 8)
CHUNK_VALUES = 1 << 22  # values per chunk: bounds the temporaries of a 1 GiB tensor to tens of MB


def values_per_block(bits: int) -> tuple[int, int]:
    """(values, words) of one packing block: 32/b values in 1 word, or 32 values in 3 words for 3-bit."""
    if bits == 3:
        return 32, 3
    if bits in (2, 4, 8):
        return 32 // bits, 1
    raise ValueError(f"unsupported bit width {bits}; supported: {SUPPORTED_BITS}")


def packed_rows(rows: int, bits: int) -> int:
    """Number of int32 words a column of ``rows`` b-bit values packs into (zero padded)."""
    per, words = values_per_block(bits)
    return -(-rows // per) * words


def pack_rows(values: np.ndarray, bits: int) -> np.ndarray:
    """Pack ``values`` [R, C] (integers in 0..2^b-1) along axis 0 into int32 [packed_rows(R), C]."""
    per, words = values_per_block(bits)
    v = np.asarray(values)
    if v.ndim != 2:
        raise ValueError(f"pack_rows expects a 2-D array, got shape {v.shape}")
    rows, cols = v.shape
    out = np.zeros((packed_rows(rows, bits), cols), np.uint32)
    step = _chunk_rows(per, cols)
    for r0 in range(0, rows, step):
        part = v[r0: r0 + step].astype(np.uint32)
        if part.shape[0] % per:
            part = np.concatenate([part, np.zeros((per - part.shape[0] % per, cols), np.uint32)], axis=0)
        blocks = part.reshape(-1, per, cols)
        dst = out[r0 // per * words: r0 // per * words + blocks.shape[0] * words].reshape(-1, words, cols)
        for i in range(per):
            w, off = divmod(bits * i, 32)
            dst[:, w] |= blocks[:, i] << np.uint32(off)
            if off + bits > 32:  # 3-bit values 10 and 21 spill into the next word
                dst[:, w + 1] |= blocks[:, i] >> np.uint32(32 - off)
    return out.view(np.int32)


def unpack_rows(words: np.ndarray, bits: int, rows: int) -> np.ndarray:
    """Inverse of :func:`pack_rows`: int32 [packed_rows(R), C] -> uint8 [rows, C]."""
    per, nwords = values_per_block(bits)
    w = np.asarray(words)
    if w.ndim != 2 or w.shape[0] % nwords:
        raise ValueError(f"cannot unpack {bits}-bit words of shape {w.shape}")
    cols = w.shape[1]
    if w.shape[0] // nwords * per < rows:
        raise ValueError(f"{w.shape[0]} words hold {w.shape[0] // nwords * per} values, need {rows}")
    w = w.view(np.uint32)
    mask = np.uint32((1 << bits) - 1)
    out = np.empty((-(-rows // per) * per, cols), np.uint8)
    step = _chunk_rows(per, cols)
    for r0 in range(0, rows, step):
        src = w[r0 // per * nwords: -(-min(rows, r0 + step) // per) * nwords].reshape(-1, nwords, cols)
        dst = out[r0: r0 + src.shape[0] * per].reshape(-1, per, cols)
        for i in range(per):
            wi, off = divmod(bits * i, 32)
            v = src[:, wi] >> np.uint32(off)
            if off + bits > 32:
                v |= src[:, wi + 1] << np.uint32(32 - off)
            dst[:, i] = v & mask
    return out[:rows]


def _chunk_rows(per: int, cols: int) -> int:
    """Rows per chunk (a multiple of the block) so temporaries stay ~CHUNK_VALUES values."""
    return max(per, CHUNK_VALUES // max(cols, 1) // per * per)


def iter_code_chunks(words: np.ndarray, bits: int, rows: int, chunk_rows: int | None = None):
    """Yield ``(row0, codes[row0:row1])`` of a packed [packed_rows(rows), C] array, in row chunks."""
    per, nwords = values_per_block(bits)
    cols = max(1, words.shape[1])
    step = chunk_rows or max(per, (CHUNK_VALUES // cols) // per * per)
    for r0 in range(0, rows, step):
        r1 = min(rows, r0 + step)
        w = words[r0 // per * nwords: -(-r1 // per) * nwords]
        yield r0, unpack_rows(w, bits, r1 - r0)


def pack_cols(values: np.ndarray, bits: int) -> np.ndarray:
    """Pack ``values`` [R, C] along axis 1 (GPTQ ``qzeros`` order): int32 [R, packed_rows(C)]."""
    return np.ascontiguousarray(pack_rows(np.asarray(values).T, bits).T)


def unpack_cols(words: np.ndarray, bits: int, cols: int) -> np.ndarray:
    """Inverse of :func:`pack_cols`: uint8 [R, cols]."""
    w = np.asarray(words)
    if bits == 3 or sys.byteorder != "little" or w.ndim != 2 or w.shape[1] * (32 // bits) < cols:
        return np.ascontiguousarray(unpack_rows(w.T, bits, cols).T)
    # 2/4/8-bit fields never straddle a byte, and a little-endian word's bytes run from its lowest
    # field: field j of a row is field j % (8/b) of byte j // (8/b), so the row's bytes unpack in
    # place, (8/b) shifts over contiguous bytes (a plan reads every qzeros tensor of the model:
    # [32, 1376] words 0.37 ms through the transposes, 0.19 ms this way)
    by = np.ascontiguousarray(w).view(np.uint8)
    per = 8 // bits
    out = np.empty(by.shape + (per,), np.uint8)
    for j in range(per):
        np.right_shift(by, bits * j, out=out[..., j])
    if bits != 8:
        out &= np.uint8((1 << bits) - 1)
    return out.reshape(w.shape[0], -1)[:, :cols]


# The three xor-swap stages of an 8x8 nibble transpose, (shift, mask): 4x4, then 2x2, then 1x1 blocks.
# A stage swaps the bits under ``mask`` of word a + shift/4 with the bits ``shift`` above them in
# word a, for every a with bit shift/4 clear. 0-d uint32 arrays rather than numpy scalars, which a
# ufunc converts on every call (words_along_n on [4096, 11008]: 13.7 -> 13.4 ms).
_NIBBLE_SWAPS = tuple((np.array(shift, np.uint32), np.array(mask, np.uint32))
                      for shift, mask in ((16, 0x0000FFFF), (8, 0x00FF00FF), (4, 0x0F0F0F0F)))


def transpose_nibbles_8x8_inplace(x: np.ndarray, tmp: np.ndarray) -> np.ndarray:
    """Transpose 8x8 blocks of 4-bit values held in the 8 uint32 word arrays ``x[0..7]`` (elementwise
    over the arrays), in place: on return, nibble a of word b is the input's nibble b of word a.

    Three swap stages, 4x4 then 2x2 then 1x1 blocks, each a masked xor-swap between word pairs; it
    turns 8 words packed along one axis into 8 words packed along the other without unpacking a
    single code (the GPTQ <-> AWQ-GEMM conversion is exactly this per 8x8 tile). ``tmp`` is a scratch
    array shaped like ``x[0]``: nothing is allocated (1.7x faster than with temporaries).
    """
    for shift, mask in _NIBBLE_SWAPS:
        step = int(shift) // 4
        for a in range(8):
            if not a & step:
                _xor_swap(x[a], x[a + step], shift, mask, tmp)
    return x


def _xor_swap(lo, hi, shift, mask, t, lo_out=None, hi_out=None) -> None:
    """One masked xor-swap in 6 numpy calls on scratch ``t``: the bits under ``mask`` of ``hi`` trade
    places with the bits ``shift`` above them in ``lo``. Results land in ``lo_out`` / ``hi_out`` when
    given, else in place."""
    np.right_shift(lo, shift, out=t)
    np.bitwise_xor(t, hi, out=t)
    np.bitwise_and(t, mask, out=t)
    np.bitwise_xor(hi, t, out=hi if hi_out is None else hi_out)
    np.left_shift(t, shift, out=t)
    np.bitwise_xor(lo, t, out=lo if lo_out is None else lo_out)


def _transpose_planes(x: np.ndarray, tmp: np.ndarray, out=None) -> None:
    """:func:`transpose_nibbles_8x8_inplace` on contiguous planes ``x`` [8, R, W], each stage one
    xor-swap over 2-D views of all its word pairs: 18 numpy calls per step instead of 72 (the swaps of
    [4096, 11008] to AWQ 8.0 -> 6.6 ms). ``tmp`` holds at least 4RW words. With ``out`` (8 arrays
    [R, W]), the last stage writes plane i to ``out[i]`` instead of back to ``x``."""
    for shift, mask in _NIBBLE_SWAPS:
        if out is not None and shift == 4:
            t = tmp[: x[0].size].reshape(x[0].shape)
            for a in range(0, 8, 2):
                _xor_swap(x[a], x[a + 1], shift, mask, t, out[a], out[a + 1])
        else:
            pairs = x.reshape(16 // int(shift), 2, -1)  # [group, lo/hi half, words]
            _xor_swap(pairs[:, 0], pairs[:, 1], shift, mask, tmp[: pairs[:, 0].size].reshape(pairs.shape[0], -1))


def words_along_n(canon: np.ndarray, K: int, N: int, order, cols: np.ndarray | None = None) -> np.ndarray:
    """4-bit canonical words [K/8, N] (8 inputs of one output per word) -> int32 [K, C/8] words of 8
    outputs of one input: nibble i of word [k, c] is the code of (k, column ``cols[8c + order[i]]``),
    ``cols`` all N columns in order when None (C = N). Per 8x8 tile a nibble transpose on whole words;
    ``cols`` gathers columns on the way in (a reordered or split matrix costs no extra pass)."""
    C = N if cols is None else len(cols)
    W = C // 8
    out = np.empty((-(-K // 8) * 8, W), np.uint32)
    rows = _tile_rows(C)
    xbuf, tmp = _scratch(min(rows, canon.shape[0]) * W)
    axes = _bit_axes(order) if cols is None else None
    if axes is None:
        if cols is None:
            cols = np.arange(N)
        picks = np.asarray(cols).reshape(-1, 8)[:, list(order)].T.copy()  # picks[i]: the columns of nibble i
    src = canon.view(np.uint32)
    for r0 in range(0, src.shape[0], rows):
        block = src[r0: r0 + rows]
        R = block.shape[0]
        x = xbuf[: 8 * R * W].reshape(8, R, W)
        if axes is not None:
            # one transposing copy instead of 8 strided ones ([4096, 11008] to AWQ: 4.5 -> 3.5 ms)
            np.copyto(x.reshape(2, 2, 2, R, W), block.reshape(R, W, 2, 2, 2).transpose(*(a + 2 for a in axes), 0, 1))
        else:
            for i in range(8):
                # mode="raise" (the default) buffers ``out`` to undo a bad index; every pick is in range,
                # and "clip" writes directly ([4096, 11008] permuted gather: 7.2 -> 5.1 ms)
                np.take(block, picks[i], axis=1, out=x[i], mode="clip")
        _transpose_planes(x, tmp)
        out[8 * r0: 8 * (r0 + R)].reshape(R, 8, W)[:] = x.transpose(1, 0, 2)
    return out[:K].view(np.int32)


def words_along_k(words: np.ndarray, K: int, N: int, order) -> np.ndarray:
    """Inverse of :func:`words_along_n` over all columns: int32 [K, N/8] -> canonical int32
    [packed_rows(K, 4), N] (8 inputs of one output per word, zero past K)."""
    W = N // 8
    w = words.view(np.uint32)
    if K % 8:
        w = np.concatenate([w, np.zeros((8 - K % 8, W), np.uint32)])
    out = np.empty((w.shape[0] // 8, N), np.uint32)
    rows = _tile_rows(N)
    xbuf, tmp = _scratch(min(rows, out.shape[0]) * W)
    for r0 in range(0, out.shape[0], rows):
        a = w[8 * r0: 8 * (r0 + rows)]
        R = a.shape[0] // 8
        x = xbuf[: 8 * R * W].reshape(8, R, W)
        x[:] = a.reshape(R, 8, W).transpose(1, 0, 2)
        # nibble i of a tile's words is column 8c + order[i]: the last swap stage writes the planes
        # straight there instead of an interleaving pass after it ([4096, 11008]: 12.0 -> 11.4 ms)
        tiles = out[r0: r0 + R].reshape(R, W, 8)
        _transpose_planes(x, tmp, [tiles[:, :, col] for col in order])
    return out.view(np.int32)


def _bit_axes(order) -> tuple[int, ...] | None:
    """When ``order`` only permutes the three bits of the nibble index (AWQ's [0, 2, 4, 6, 1, 3, 5, 7]
    and the identity do), the axes of a tile's 8 columns viewed as [2, 2, 2] that hold nibble index bits
    2, 1, 0, in that order; else None."""
    order = [int(i) for i in order]  # AWQ_ORDER is a numpy array
    bits = [order[4], order[2], order[1]]  # the column bit each nibble index bit moves to
    if sorted(bits) != [1, 2, 4] or any(order[i] != sum(b for k, b in zip((4, 2, 1), bits) if i & k) for i in range(8)):
        return None
    return tuple(3 - b.bit_length() for b in bits)


def _scratch(words: int) -> tuple[np.ndarray, np.ndarray]:
    """Flat buffers for one step's 8 planes of ``words`` words and the swap scratch (4 planes)."""
    return np.empty(8 * words, np.uint32), np.empty(4 * words, np.uint32)


def _tile_rows(N: int, words: int = 1 << 17) -> int:
    # ~512 KB of words per step: the ~20 numpy passes of a step then run in L2 (measured on the
    # 2-core CI-class machine, [4096, 11008] to AWQ: 13.7 ms at 2 MB steps, 10.8 ms at 0.5-1 MB;
    # 0.3 GB/s at 8 MB, where every pass hits memory). With the 2-D swap stages (dev machine, same
    # shape), words_along_n / _k: 16.0 / 16.5 ms at 64K words, 13.9-14.1 / 15.3-15.6 at 96K-160K, 16.2 / 17.6 at 256K
    return max(1, words // max(N, 1))


_LOW, _HIGH = np.uint32(0x0F0F0F0F), np.uint32(0xF0F0F0F0)


def byte_nibble_words(a: np.ndarray, b: np.ndarray, c: np.ndarray, d: np.ndarray) -> np.ndarray:
    """Four arrays of 4-bit words (8 nibbles, bytes t = 0..3) -> uint32 [4, ...]: word t holds byte t of
    each source, low nibbles first: nibbles (LSB first) lo(a_t), lo(b_t), lo(c_t), lo(d_t), hi(a_t),
    hi(b_t), hi(c_t), hi(d_t). With canonical words (byte t = inputs 2t, 2t+1) of rows 8r and 8r + 8
    and two columns as sources, this is the word of the Marlin and legacy TurboMind tile layouts
    (a nibble select per byte, then a 4x4 byte transpose; no code is unpacked)."""
    four = np.uint32(4)
    x = np.stack([(a & _LOW) | ((b & _LOW) << four), (c & _LOW) | ((d & _LOW) << four),
                  ((a >> four) & _LOW) | (b & _HIGH), ((c >> four) & _LOW) | (d & _HIGH)])
    for (i, j), shift, mask in (((0, 2), 16, 0x0000FFFF), ((1, 3), 16, 0x0000FFFF), ((0, 1), 8, 0x00FF00FF),
                                ((2, 3), 8, 0x00FF00FF)):  # 4x4 byte transpose: word t gets byte t of each
        sh = np.uint32(shift)
        t = ((x[i] >> sh) ^ x[j]) & np.uint32(mask)
        x[j] ^= t
        x[i] ^= t << sh
    return x
