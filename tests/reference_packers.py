"""Independent, deliberately slow reference packers: the oracle every layout test compares against.

Written element by element from the layout facts in ../shared/formats/hf.md (each function names
its section), with plain Python integers and no import of ``repack``, so a bug in the vectorised
packers of the library cannot hide in its own expectation. Words are returned as int32 arrays
holding the uint32 bit pattern, as checkpoints store them.
"""

from __future__ import annotations

import numpy as np

AWQ_ORDER = [0, 2, 4, 6, 1, 3, 5, 7]  # hf.md §2.2: nibble i of an AWQ GEMM word holds column 8c + AWQ_ORDER[i]


def _words(rows: list[list[int]]) -> np.ndarray:
    return np.array(rows, dtype=np.uint32).reshape(len(rows), -1).view(np.int32)


def _u32(words) -> list[list[int]]:
    return np.asarray(words).astype(np.int64).__and__(0xFFFFFFFF).tolist()


def _pack_seq(values: list[int], bits: int) -> list[int]:
    """Pack a sequence (length a multiple of 32) LSB first, GPTQ style (hf.md §1.3 and §1.5)."""
    if bits == 3:
        out = []
        for t in range(0, len(values), 32):
            stream = 0  # the 96-bit little-endian string of three words: value k at bits 3k..3k+2
            for k in range(32):
                stream |= (int(values[t + k]) & 7) << (3 * k)
            out += [(stream >> (32 * w)) & 0xFFFFFFFF for w in range(3)]
        return out
    per = 32 // bits
    mask = (1 << bits) - 1
    out = []
    for r in range(len(values) // per):
        word = 0
        for j in range(per):
            word |= (int(values[r * per + j]) & mask) << (bits * j)
        out.append(word)
    return out


def _unpack_seq(words: list[int], bits: int, count: int) -> list[int]:
    if bits == 3:
        out = []
        for t in range(0, len(words), 3):
            stream = words[t] | (words[t + 1] << 32) | (words[t + 2] << 64)
            out += [(stream >> (3 * k)) & 7 for k in range(32)]
        return out[:count]
    per = 32 // bits
    mask = (1 << bits) - 1
    return [(words[i // per] >> (bits * (i % per))) & mask for i in range(count)]


# ---- GPTQ (hf.md §1) -------------------------------------------------------------------------

def gptq_pack_qweight(q, bits: int) -> np.ndarray:
    """q ``[K, N]`` codes → qweight ``[K*bits/32, N]``: packed down each column."""
    q = np.asarray(q).tolist()
    K, N = len(q), len(q[0])
    cols = [_pack_seq([q[k][n] for k in range(K)], bits) for n in range(N)]
    return _words([[cols[n][r] for n in range(N)] for r in range(len(cols[0]))])


def gptq_unpack_qweight(words, bits: int, K: int) -> np.ndarray:
    w = _u32(words)
    N = len(w[0])
    cols = [_unpack_seq([row[n] for row in w], bits, K) for n in range(N)]
    return np.array([[cols[n][k] for n in range(N)] for k in range(K)], dtype=np.int64)


def gptq_pack_qzeros(z, bits: int, v1: bool) -> np.ndarray:
    """True zeros ``[G, N]`` → qzeros ``[G, N*bits/32]``; v1 stores ``z - 1`` in ``bits`` bits (hf.md §1.6)."""
    mask = (1 << bits) - 1
    return _words([_pack_seq([((int(v) - 1) if v1 else int(v)) & mask for v in row], bits)
                   for row in np.asarray(z).tolist()])


def gptq_unpack_qzeros(words, bits: int, N: int, v1: bool) -> np.ndarray:
    """Inverse of :func:`gptq_pack_qzeros` for stored values that did not wrap."""
    return np.array([[v + 1 if v1 else v for v in _unpack_seq(row, bits, N)] for row in _u32(words)], dtype=np.int64)


# ---- AutoAWQ GEMM (hf.md §2.2) -----------------------------------------------------------------

def _awq_gemm_pack(rows) -> np.ndarray:
    out = []
    for row in np.asarray(rows).tolist():
        words = []
        for c in range(len(row) // 8):
            word = 0
            for i in range(8):
                word |= (int(row[8 * c + AWQ_ORDER[i]]) & 0xF) << (4 * i)
            words.append(word)
        out.append(words)
    return _words(out)


def _awq_gemm_unpack(words) -> np.ndarray:
    out = []
    for row in _u32(words):
        vals = [0] * (8 * len(row))
        for c, word in enumerate(row):
            for i in range(8):
                vals[8 * c + AWQ_ORDER[i]] = (word >> (4 * i)) & 0xF
        out.append(vals)
    return np.array(out, dtype=np.int64)


def awq_gemm_pack_qweight(q) -> np.ndarray:
    """q ``[K, N]`` → ``[K, N/8]``, interleaved within each 8 output columns."""
    return _awq_gemm_pack(q)


def awq_gemm_pack_qzeros(z) -> np.ndarray:
    """z ``[G, N]`` (raw, no offset) → ``[G, N/8]`` with the same interleave."""
    return _awq_gemm_pack(z)


def awq_gemm_unpack_qweight(words) -> np.ndarray:
    return _awq_gemm_unpack(words)


def awq_gemm_unpack_qzeros(words) -> np.ndarray:
    return _awq_gemm_unpack(words)


# ---- AutoAWQ GEMV (hf.md §2.3) -----------------------------------------------------------------

def _groups(K: int, group_size: int) -> int:
    gs = K if group_size == -1 else group_size
    return -(-K // gs)


def awq_gemv_zeros_width(K: int, group_size: int) -> int:
    gs = K if group_size == -1 else group_size
    base = -(-_groups(K, group_size) // 8)
    mult = 1 if gs >= 128 else {64: 2, 32: 4}[gs]
    return -(-base // mult) * mult


def awq_gemv_pack_qweight(q) -> np.ndarray:
    """q ``[K, N]`` → ``[N, K/8]``: nibble i of word ``[n, c]`` holds ``q[8c + i, n]``."""
    q = np.asarray(q).tolist()
    K, N = len(q), len(q[0])
    out = []
    for n in range(N):
        words = []
        for c in range(K // 8):
            word = 0
            for i in range(8):
                word |= (int(q[8 * c + i][n]) & 0xF) << (4 * i)
            words.append(word)
        out.append(words)
    return _words(out)


def awq_gemv_unpack_qweight(words) -> np.ndarray:
    w = _u32(words)
    N, C = len(w), len(w[0])
    return np.array([[(w[n][k // 8] >> (4 * (k % 8))) & 0xF for n in range(N)] for k in range(8 * C)], dtype=np.int64)


def awq_gemv_pack_qzeros(z, K: int, group_size: int) -> np.ndarray:
    """z ``[G, N]`` → ``[N, W]``: packed along the group axis, groups past G left 0."""
    z = np.asarray(z).tolist()
    G, N = len(z), len(z[0])
    W = awq_gemv_zeros_width(K, group_size)
    out = []
    for n in range(N):
        words = []
        for c in range(W):
            word = 0
            for i in range(8):
                g = 8 * c + i
                if g < G:
                    word |= (int(z[g][n]) & 0xF) << (4 * i)
            words.append(word)
        out.append(words)
    return _words(out)


def awq_gemv_unpack_qzeros(words, G: int) -> np.ndarray:
    w = _u32(words)
    return np.array([[(w[n][g // 8] >> (4 * (g % 8))) & 0xF for n in range(len(w))] for g in range(G)], dtype=np.int64)


def awq_gemv_pack_scales(s, K: int, group_size: int) -> np.ndarray:
    """s ``[G, N]`` → ``[N, 8W]`` in the same dtype, columns past G zero."""
    s = np.asarray(s)
    G, N = s.shape
    out = np.zeros((N, 8 * awq_gemv_zeros_width(K, group_size)), dtype=s.dtype)
    for g in range(G):
        for n in range(N):
            out[n, g] = s[g, n]
    return out


def awq_gemv_unpack_scales(packed, G: int) -> np.ndarray:
    packed = np.asarray(packed)
    return np.array([[packed[n, g] for n in range(packed.shape[0])] for g in range(G)], dtype=packed.dtype)


# ---- the math every layout shares (hf.md §1.2, §2.1) -------------------------------------------

def dequantize(q, z, s, group_size: int, g_idx=None) -> np.ndarray:
    """W ``[N, K]`` float32 = float32(s) * (q - z), with the group of input k = g_idx[k] or k // group_size."""
    q, z = np.asarray(q, dtype=np.int64), np.asarray(z, dtype=np.int64)
    s = np.asarray(s).astype(np.float32)
    K, N = q.shape
    gs = K if group_size == -1 else group_size
    groups = [int(g_idx[k]) if g_idx is not None else k // gs for k in range(K)]
    out = np.empty((N, K), dtype=np.float32)
    for k in range(K):
        g = groups[k]
        out[:, k] = s[g, :] * (q[k, :] - z[g, :]).astype(np.float32)
    return out


def rtn_quantize(w, bits: int, group_size: int, sym: bool):
    """Min/max round-to-nearest of a float weight ``[N, K]`` → codes ``[K, N]``, zeros ``[G, N]``, fp16 scales ``[G, N]``.

    sym: s = max|w| / (2^(b-1) - 1), z = 2^(b-1); asym: range widened to include 0,
    s = (hi - lo) / (2^b - 1), z = round(-lo / s) clamped to the code range. The scale is rounded to
    fp16 before the codes are chosen; a zero scale becomes 1. fp32 arithmetic, round half to even.
    """
    w = np.asarray(w, dtype=np.float32)
    N, K = w.shape
    gs = K if group_size == -1 else group_size
    G = _groups(K, group_size)
    qmax = 2**bits - 1
    q = np.zeros((K, N), dtype=np.int64)
    z = np.zeros((G, N), dtype=np.int64)
    s = np.zeros((G, N), dtype=np.float16)
    f32 = np.float32
    for n in range(N):
        for g in range(G):
            block = w[n, g * gs:min((g + 1) * gs, K)]
            lo, hi = f32(block.min()), f32(block.max())
            if sym:
                scale = f32(max(abs(lo), abs(hi)) / f32(2 ** (bits - 1) - 1))
                zero = 2 ** (bits - 1)
            else:
                lo, hi = min(lo, f32(0)), max(hi, f32(0))
                scale = f32((hi - lo) / f32(qmax))
            if scale == 0:
                scale = f32(1)
            scale = f32(np.float16(scale))
            if not sym:
                zero = int(min(max(np.round(f32(-lo) / scale), 0), qmax))
            s[g, n] = np.float16(scale)
            z[g, n] = zero
            for j, x in enumerate(block):
                q[g * gs + j, n] = int(min(max(np.round(f32(x) / scale) + zero, 0), qmax))
    return q, z, s


# ---- compressed-tensors pack-quantized (hf.md §4.2, hf-observed.md) ------------------------------

def ct_pack_weight(q, bits: int) -> np.ndarray:
    """Codes ``[K, N]`` → ``weight_packed`` ``[N, ceil(K/(32/b))]``: field i of word ``[n, c]`` holds
    the unsigned code (signed + 2^(b-1)) of input ``(32/b)*c + i``; K zero-padded."""
    q = np.asarray(q).tolist()
    K, N = len(q), len(q[0])
    per = 32 // bits
    rows = []
    for n in range(N):
        col = [q[k][n] for k in range(K)] + [0] * (-K % per)
        rows.append(_pack_seq(col, bits))
    return _words(rows)


def ct_pack_zero_point(z, bits: int) -> np.ndarray:
    """True zeros ``[G, N]`` → ``weight_zero_point`` ``[ceil(N/(32/b)), G]``: field i of word ``[r, g]``
    holds the zero (signed + 2^(b-1), i.e. the unsigned true zero) of output ``(32/b)*r + i``."""
    z = np.asarray(z).tolist()
    G, N = len(z), len(z[0])
    per = 32 // bits
    mask = (1 << bits) - 1
    out = []
    for r in range(-(-N // per)):
        words = []
        for g in range(G):
            word = 0
            for i in range(per):
                n = r * per + i
                if n < N:
                    word |= (int(z[g][n]) & mask) << (bits * i)
            words.append(word)
        out.append(words)
    return _words(out)
