"""Slow, loop-based GGUF block encoders and decoders: the oracle for repack's vectorised codecs.

Written byte by byte from the block tables of ../shared/formats/gguf.md §2.1-2.5 (llama.cpp
``ggml-common.h`` structs, ``dequantize_row_q*``), with plain Python integers and ``struct``;
no import of ``repack``.
"""

from __future__ import annotations

import struct

import numpy as np

# name -> (has m, code bits, bytes per block) from gguf.md §2 / GGML_QUANT_SIZES
LAYOUT = {"q4_0": (False, 4, 18), "q4_1": (True, 4, 20), "q5_0": (False, 5, 22), "q5_1": (True, 5, 24),
          "q8_0": (False, 8, 34)}
ZERO = {"q4_0": 8, "q5_0": 16, "q8_0": 0, "q4_1": 0, "q5_1": 0}


def _half(x) -> bytes:
    return struct.pack("<e", float(np.float16(x)))


def encode_block(kind: str, codes: list[int], d, m=None) -> bytes:
    """One block of 32 codes (as stored: unsigned for 4/5-bit, signed for q8_0)."""
    has_m, bits, size = LAYOUT[kind]
    out = bytearray(_half(d))  # bytes 0-1: d
    if has_m:
        out += _half(m)  # bytes 2-3: m
    if bits == 8:
        for j in range(32):  # bytes 2-33: qs[j] = element j as int8
            out += struct.pack("<b", int(codes[j]))
    else:
        if bits == 5:  # qh: bit i = bit 4 of element i, little-endian u32
            qh = 0
            for i in range(32):
                qh |= ((int(codes[i]) >> 4) & 1) << i
            out += struct.pack("<I", qh)
        for j in range(16):  # qs[j]: low nibble element j, high nibble element j+16
            out.append((int(codes[j]) & 0xF) | ((int(codes[j + 16]) & 0xF) << 4))
    assert len(out) == size
    return bytes(out)


def decode_block(kind: str, block: bytes) -> tuple[list[int], float, float | None]:
    has_m, bits, size = LAYOUT[kind]
    d = struct.unpack("<e", block[0:2])[0]
    pos, m = 2, None
    if has_m:
        m = struct.unpack("<e", block[2:4])[0]
        pos = 4
    if bits == 8:
        return [struct.unpack("<b", block[pos + j:pos + j + 1])[0] for j in range(32)], d, m
    qh = 0
    if bits == 5:
        qh = struct.unpack("<I", block[pos:pos + 4])[0]
        pos += 4
    codes = [0] * 32
    for j in range(16):
        byte = block[pos + j]
        codes[j] = byte & 0xF
        codes[j + 16] = byte >> 4
    if bits == 5:
        for i in range(32):
            codes[i] |= ((qh >> i) & 1) << 4
    return codes, d, m


def encode_rows(kind: str, codes, d, m=None) -> np.ndarray:
    """codes [R, n], d/m [R, n/32] -> uint8 [R, n/32*size], one block at a time."""
    codes = np.asarray(codes)
    rows = []
    for r in range(codes.shape[0]):
        row = b""
        for b in range(codes.shape[1] // 32):
            row += encode_block(kind, codes[r, 32 * b:32 * b + 32].tolist(), d[r][b], None if m is None else m[r][b])
        rows.append(np.frombuffer(row, np.uint8))
    return np.stack(rows)


def dequantize_rows(kind: str, data) -> np.ndarray:
    """uint8 [R, bytes] -> float32 [R, n]: d*(q - zero) or d*q + m, each product in float32."""
    size = LAYOUT[kind][2]
    data = np.asarray(data)
    out = []
    for r in range(data.shape[0]):
        row = []
        for b in range(data.shape[1] // size):
            codes, d, m = decode_block(kind, bytes(data[r, b * size:(b + 1) * size]))
            for q in codes:
                if m is None:
                    row.append(np.float32(d) * np.float32(q - ZERO[kind]))
                else:
                    row.append(np.float32(d) * np.float32(q) + np.float32(m))
        out.append(row)
    return np.array(out, np.float32)
