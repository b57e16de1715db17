"""TurboMind (lmdeploy) on-disk layouts as plain numpy functions on logical arrays, and their inverses.

Everything works on one rank's logical matrix: codes ``q`` uint8 ``[K, M]`` (``M`` output columns,
already in TurboMind column order), ``zeros`` / ``scales`` ``[G, M]``. Column orders (rotary
reorder, fused qkv, w1/w3 interleave, tensor-parallel slices) are index arrays built here, so the
writer gathers columns and the reader scatters them back with the same arrays.

Sources: ../shared/formats/kernels.md §2.1 (legacy ``w4``) and §2.2 (v0.6-0.9); checked against
InternLM/lmdeploy v0.5.3 ``lmdeploy/turbomind/deploy/target_model/{w4.py,base.py}`` (``permute``,
``merge_qkv``, ``fuse_w1_w3_s4``, ``convert_s4``, ``tp_m_s4``, ``save_split``) and
``src/turbomind/kernels/gemm_s_f16/format.cu`` (``reformat_s4_k_m8``, ``merge_Q``), and v0.6.0
``deploy/exporter.py`` (``permute_v2``, ``merge_qkv_v2``, ``pack_u4_row``).
"""

from __future__ import annotations

import sys

import numpy as np

from ..packing import byte_nibble_words

# -- column orders -------------------------------------------------------------------------------


def rotary_order(heads: int, head_dim: int) -> np.ndarray:
    """TurboMind column ``j`` of q or k takes HF column ``order[j]``.

    HF keeps each head rotate-half style (first half of the head, then second half); TurboMind's
    rotary kernel wants the two halves interleaved in pairs: within a head, TM column ``2b + a``
    is HF column ``a*d/2 + b`` (kernels.md §2.1 step 1; lmdeploy ``permute`` / ``permute_v2``:
    ``view(heads, 2, d/2).transpose``).
    """
    h, b, a = np.meshgrid(np.arange(heads), np.arange(head_dim // 2), np.arange(2), indexing="ij")
    return (h * head_dim + a * (head_dim // 2) + b).reshape(-1)


def rank_slice(n: int, tp: int, rank: int) -> np.ndarray:
    """Column-parallel split: rank ``r`` holds the r-th contiguous block of ``n / tp`` columns."""
    step = n // tp
    return np.arange(rank * step, (rank + 1) * step)


def interleave(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    out = np.empty((a.shape[0], 2 * a.shape[1]), a.dtype)
    out[:, 0::2], out[:, 1::2] = a, b
    return out


def deinterleave(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return x[:, 0::2], x[:, 1::2]


# -- legacy w4 qweight (kernels.md §2.1 "Closed form of the legacy qweight layout") ---------------


def _w4_positions(K: int, M: int) -> tuple[np.ndarray, np.ndarray]:
    """(word, nibble) of every logical code ``q[k, n]`` of a ``[K, M]`` matrix, as ``[K, M]`` arrays.

    ``reformat_s4_k_m8`` (format.cu) permutes the AWQ nibble stream with dims
    ``(k/32, 2, 2, 4, 2, m/32, 2, 2, 2, 4)`` and order ``(0,5,9,8,3,1,6,4,2,7)``; composed with the
    AWQ nibble order that gives, with ``a0=k//32, a1=(k//16)%2, a2=(k//8)%2, a3=(k//2)%4, a4=k%2``
    and ``b0=n//32, b1=(n//16)%2, b2=(n//8)%2, b4=(n%8)//2, b3=n%2``:
    word ``(a0*(M/32)+b0)*128 + 32*b4 + 16*b3 + 4*a3 + 2*a1 + b1``, nibble ``4*a4 + 2*a2 + b2``.
    Each 32x32 tile fills 128 consecutive words, laid out for the m16n8k16 MMA fragments the
    legacy ``gemm_s4_f16`` kernel loads (one 128-bit load per thread).
    """
    k = np.arange(K).reshape(K, 1)
    n = np.arange(M).reshape(1, M)
    word = ((k // 32) * (M // 32) + n // 32) * 128 + 32 * ((n % 8) // 2) + 16 * (n % 2) + 4 * ((k // 2) % 4) \
        + 2 * ((k // 16) % 2) + (n // 16) % 2
    nibble = 4 * (k % 2) + 2 * ((k // 8) % 2) + (n // 8) % 2
    return word, nibble


def w4_pack_qweight(q: np.ndarray) -> np.ndarray:
    """uint8 codes ``[K, M]`` (K, M multiples of 32) -> the legacy file's int32 words, ``[K, M/8]``."""
    K, M = q.shape
    word, nibble = _w4_positions(K, M)
    flat = np.zeros(K * M // 8, np.uint32)
    np.bitwise_or.at(flat, word.reshape(-1), (q.astype(np.uint32) << (4 * nibble).astype(np.uint32)).reshape(-1))
    return flat.view(np.int32).reshape(K, M // 8)


W4_STEP_WORDS = 1 << 17  # ~512 KB of source words a step: the passes over them stay in L2


def w4_tiles(words: np.ndarray, K: int, C: int, half: bool = False) -> np.ndarray:
    """The legacy qweight straight from canonical 4-bit words ``[K/8, C]`` (8 inputs of one column per
    word), K % 32 == 0: uint32 ``[K/32, C/32, 128]``, the file's words in order (w4_pack_qweight's
    output for these columns, without unpacking a code). ``half``: the 64-word half tiles of 16
    columns that w13 interleaves with its partner (fused column 2i + a, a = gate/up: the partner's
    words take the odd 16-word runs), ``[K/32, C/16, 64]``.

    A word holds codes k0 + {0, 1} + {0, 8} of columns c and c + 8 (c + 4 in a half tile): byte t of
    the canonical words of rows 8r.. and 8r+8.. of both columns (bytes hold input pairs 2t, 2t+1), so
    the words are built by nibble selects and a 4x4 byte transpose, then placed by one copy."""
    L = 4 if half else 8
    out = np.empty((K // 32, C // (4 * L), 16 * L), np.uint32)
    step = max(1, W4_STEP_WORDS // (4 * max(C, 1)))
    for k0 in range(0, K // 32, step):
        k1 = min(K // 32, k0 + step)
        out[k0:k1] = _w4_tile_rows(words[4 * k0: 4 * k1].view(np.uint32), k1 - k0, C, L)
    return out


def _w4_tile_rows(w: np.ndarray, kt: int, C: int, L: int) -> np.ndarray:
    # source words as [k-tile, k bit 4, k bit 3, column block J, hi bit, pair bit, low L columns]
    w = w.reshape(kt, 2, 2, C // (4 * L), 2, 2, L)
    parts = [np.ascontiguousarray(w[:, :, k3, :, :, pair]) for k3 in (0, 1) for pair in (0, 1)]
    x = byte_nibble_words(*parts)  # nibble 4*k0 + 2*k3 + pair
    # word 16*low + 4*t + 2*(k bit 4) + hi of each tile (kernels.md §2.1 closed form)
    return x.transpose(1, 3, 5, 0, 2, 4).reshape(kt, C // (4 * L), 16 * L)


def w4_unpack_qweight(words: np.ndarray, K: int, M: int) -> np.ndarray:
    word, nibble = _w4_positions(K, M)
    flat = words.reshape(-1).view(np.uint32)
    return ((flat[word] >> (4 * nibble).astype(np.uint32)) & 0xF).astype(np.uint8)


def w4_pack_scales_zeros(scales: np.ndarray, zeros: np.ndarray) -> np.ndarray:
    """fp16 ``[G, M]`` scales and integer zeros -> int32 ``[G, M]``: low half fp16(z + 64), high half
    fp16(s). The kernel dequantizes codes as fp16 ``64 + q`` (magic-number trick) and subtracts the
    stored ``64 + z``, so the 64 cancels (``merge_Q`` with TURBOMIND_S4_DEQUANT_USE_FMA = 0,
    ``dequantize_s4_offset_64``; kernels.md §2.1 step 4)."""
    lo = (zeros.astype(np.float16) + np.float16(64)).view(np.uint16).astype(np.uint32)
    hi = scales.astype(np.float16).view(np.uint16).astype(np.uint32)
    return (lo | (hi << 16)).view(np.int32)


def w4_unpack_scales_zeros(words: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """-> (fp16 scales, float32 zeros = low half - 64); the caller checks the zeros are integers."""
    u = words.view(np.uint32)
    with np.errstate(invalid="ignore"):  # a damaged word's inf or NaN half: the caller's integer check refuses it
        z = (u & 0xFFFF).astype(np.uint16).view(np.float16).astype(np.float32) - 64
    s = (u >> 16).astype(np.uint16).view(np.float16)
    return s, z


# -- v0.6-0.9 qweight (kernels.md §2.2, ``pack_u4_row``) -------------------------------------------


def v6_pack_qweight(q: np.ndarray) -> np.ndarray:
    """uint8 ``[K, M]`` -> int32 ``[K, M/8]``: code of column ``8c + j`` in bits ``4j`` of word ``[k, c]``
    (sequential along the output dim, no AWQ interleave)."""
    # byte b of the little-endian word holds columns 8c + 2b (low nibble) and 8c + 2b + 1 (high):
    # joining nibbles into bytes is the same word, without a uint32 per code
    K, M = q.shape
    q = np.asarray(q, dtype=np.uint8)
    by = q[:, 0::2] | (q[:, 1::2] << 4)  # [K, M/2]
    if sys.byteorder != "little":  # pragma: no cover
        return np.ascontiguousarray(by).view("<u4").astype(np.uint32).view(np.int32).reshape(K, M // 8)
    return np.ascontiguousarray(by).view(np.int32).reshape(K, M // 8)


def v6_unpack_qweight(words: np.ndarray) -> np.ndarray:
    K, W = words.shape
    by = np.ascontiguousarray(words).astype("<u4", copy=False).view(np.uint8).reshape(K, 4 * W)
    out = np.empty((K, 4 * W, 2), np.uint8)
    np.bitwise_and(by, 0x0F, out=out[:, :, 0])
    np.right_shift(by, 4, out=out[:, :, 1])
    return out.reshape(K, 8 * W)
