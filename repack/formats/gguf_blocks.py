"""GGUF 32-element block codecs: integer codes + per-block scale ``d`` (+ offset ``m``) <-> block bytes.

Built directly from codes, never by re-quantizing floats. One row of ``n`` weights is ``n / 32``
consecutive blocks; every multi-byte field is little-endian; ``d`` and ``m`` are IEEE fp16
(../shared/formats/gguf.md §2; llama.cpp ``ggml-common.h`` ``block_q4_0`` .. ``block_q8_0``).

=====  =====  ===========================================  ==============================
type   bytes  layout (byte offsets inside one block)        value of element i
=====  =====  ===========================================  ==============================
Q4_0   2+16   d[0:2]  qs[2:18]                              d * (q - 8),   q in 0..15
Q4_1   2+2+16 d[0:2]  m[2:4]  qs[4:20]                      d * q + m,     q in 0..15
Q5_0   2+4+16 d[0:2]  qh[2:6]  qs[6:22]                     d * (q - 16),  q in 0..31
Q5_1   2+2+4+16 d[0:2] m[2:4] qh[4:8] qs[8:24]              d * q + m,     q in 0..31
Q8_0   2+32   d[0:2]  qs[2:34] (int8)                       d * q,         q in -128..127
=====  =====  ===========================================  ==============================

Nibble order (gguf.md §2.1, llama.cpp ``dequantize_row_q4_0``): byte ``qs[j]`` holds element ``j`` in
its low nibble and element ``j + 16`` in its high nibble — the two halves of the block, not
neighbours. Example: Q4_0 codes ``q[i] = i % 16`` give ``qs[j] = j | j << 4`` (0x00, 0x11, .., 0xFF),
and codes ``q[i] = i // 16`` give ``qs[j] = 0x10`` for every j. The 5-bit types keep the low 4 bits that way and put bit 4 of element ``i``
into bit ``i`` of the little-endian u32 ``qh`` (gguf.md §2.3, ``dequantize_row_q5_0``).

Codes here are what the block stores: unsigned 0..15 / 0..31 for the 4/5-bit types, signed int8
for Q8_0. ``decode(encode(x)) == x`` for every valid input.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

BLOCK = 32  # elements per block for every type in this file


@dataclass(frozen=True)
class BlockType:
    name: str
    ggml_id: int  # gguf.GGMLQuantizationType value
    code_bits: int  # 4, 5 or 8
    has_min: bool  # Q4_1/Q5_1: w = d*q + m
    zero: int  # the integer subtracted from the code (8, 16, 0); 0 for the offset types

    @property
    def type_size(self) -> int:
        """Bytes per block, as the sum of its fields: d, m, qh, the codes."""
        return 2 + (2 if self.has_min else 0) + (4 if self.code_bits == 5 else 0) + (BLOCK if self.code_bits == 8 else BLOCK // 2)

    @property
    def code_range(self) -> tuple[int, int]:
        if self.code_bits == 8:
            return (-128, 127)
        return (0, 2**self.code_bits - 1)


Q4_0 = BlockType("q4_0", 2, 4, False, 8)
Q4_1 = BlockType("q4_1", 3, 4, True, 0)
Q5_0 = BlockType("q5_0", 6, 5, False, 16)
Q5_1 = BlockType("q5_1", 7, 5, True, 0)
Q8_0 = BlockType("q8_0", 8, 8, False, 0)
TYPES: dict[str, BlockType] = {t.name: t for t in (Q4_0, Q4_1, Q5_0, Q5_1, Q8_0)}
BY_ID: dict[int, BlockType] = {t.ggml_id: t for t in TYPES.values()}


def _fp16_bytes(x: np.ndarray) -> np.ndarray:
    """[R, B] fp16 -> uint8 [R, B, 2], little-endian."""
    return np.ascontiguousarray(np.asarray(x, dtype="<f2")).view(np.uint8).reshape(*x.shape, 2)


def _nibbles(low4: np.ndarray) -> np.ndarray:
    """[R, B, 32] values 0..15 -> [R, B, 16] bytes: element j low nibble, element j+16 high nibble."""
    return (low4[..., :16] | (low4[..., 16:] << 4)).astype(np.uint8)


def _unnibble(qs: np.ndarray) -> np.ndarray:
    """Inverse of :func:`_nibbles`: [R, B, 16] bytes -> [R, B, 32] values 0..15."""
    return np.concatenate([qs & 0x0F, qs >> 4], axis=-1)


def _qh(codes: np.ndarray) -> np.ndarray:
    """Bit 4 of element i -> bit i of a little-endian u32: [R, B, 32] -> uint8 [R, B, 4]
    (``packbits`` little: byte j holds elements 8j..8j+7, element 8j in bit 0)."""
    return np.packbits(((codes >> 4) & 1).astype(np.uint8), axis=-1, bitorder="little")


def _unqh(qh: np.ndarray) -> np.ndarray:
    return np.unpackbits(np.ascontiguousarray(qh, dtype=np.uint8), axis=-1, bitorder="little")


def _check(t: BlockType, codes: np.ndarray, d: np.ndarray, m: np.ndarray | None) -> tuple[int, int]:
    if codes.ndim != 2 or codes.shape[1] % BLOCK:
        raise ValueError(f"{t.name}: codes must be [rows, n] with n a multiple of {BLOCK}, got {codes.shape}")
    R, n = codes.shape
    nb = n // BLOCK
    if d.shape != (R, nb) or d.dtype != np.float16:
        raise ValueError(f"{t.name}: d must be float16 [{R}, {nb}], got {d.dtype} {d.shape}")
    if t.has_min != (m is not None):
        raise ValueError(f"{t.name}: {'needs' if t.has_min else 'has no'} offset m")
    if m is not None and (m.shape != (R, nb) or m.dtype != np.float16):
        raise ValueError(f"{t.name}: m must be float16 [{R}, {nb}], got {m.dtype} {m.shape}")
    lo, hi = t.code_range
    if codes.size and (int(codes.min()) < lo or int(codes.max()) > hi):
        raise ValueError(f"{t.name}: codes must lie in {lo}..{hi}, found {int(codes.min())}..{int(codes.max())}")
    return R, nb


def encode(t: BlockType, codes: np.ndarray, d: np.ndarray, m: np.ndarray | None = None) -> np.ndarray:
    """codes [R, n] (n % 32 == 0), d (and m) float16 [R, n/32] -> uint8 [R, n/32 * type_size]."""
    codes = np.asarray(codes)
    R, nb = _check(t, codes, np.asarray(d), None if m is None else np.asarray(m))
    blocks = codes.reshape(R, nb, BLOCK)
    parts = [_fp16_bytes(np.asarray(d))]
    if t.has_min:
        parts.append(_fp16_bytes(np.asarray(m)))
    if t.code_bits == 8:
        parts.append(blocks.astype(np.int8).view(np.uint8))
    else:
        u = blocks.astype(np.uint8)
        if t.code_bits == 5:
            parts.append(_qh(u))
        parts.append(_nibbles(u & 0x0F))
    return np.concatenate(parts, axis=-1).reshape(R, nb * t.type_size)


def decode(t: BlockType, data: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """uint8 [R, nb * type_size] -> (codes [R, nb*32] (uint8, int8 for Q8_0), d float16 [R, nb], m or None)."""
    data = np.asarray(data)
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] % t.type_size:
        raise ValueError(f"{t.name}: expected uint8 [rows, k*{t.type_size}], got {data.dtype} {data.shape}")
    R, nb = data.shape[0], data.shape[1] // t.type_size
    blocks = data.reshape(R, nb, t.type_size)
    d = np.ascontiguousarray(blocks[..., 0:2]).view("<f2")[..., 0].astype(np.float16)
    pos = 2
    m = None
    if t.has_min:
        m = np.ascontiguousarray(blocks[..., 2:4]).view("<f2")[..., 0].astype(np.float16)
        pos = 4
    if t.code_bits == 8:
        codes = np.ascontiguousarray(blocks[..., pos:]).view(np.int8)
    else:
        high = None
        if t.code_bits == 5:
            high = _unqh(blocks[..., pos:pos + 4])
            pos += 4
        codes = _unnibble(blocks[..., pos:])
        if high is not None:
            codes = codes | (high << 4)
    return codes.reshape(R, nb * BLOCK), d, m
