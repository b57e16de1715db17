"""Independent, slow reference for the Marlin layouts: one element at a time, plain Python ints.

Written from the closed forms in ../shared/formats/kernels.md §1.1 (4-bit word/nibble of element
(k, n), grouped and per-channel scale positions) and, for 8-bit, from the thread indexing of vLLM
``csrc/quantization/gptq_marlin/gptq_marlin_repack.cu`` (``gptq_marlin_repack_kernel``): lane
``th = 4*(n%8) + (k%8)//2``, warp ``(n//16)%4``, fragment value ``i = k%2 + 2*((k%16)//8)`` of
column ``n`` or (``+4``) of column ``n+8``; output word ``8*th + 2*warp + half``, byte
``[0,2,1,3]^-1[i]``. No import of ``repack``: the library builds the same layout another way
(from the 1024-entry block gather of ``marlin/__init__.py`` ``_get_perms``).
"""

from __future__ import annotations

import numpy as np

NIBBLE_ORDER = [0, 2, 4, 6, 1, 3, 5, 7]  # packed field i holds fragment value NIBBLE_ORDER[i]
BYTE_ORDER = [0, 2, 1, 3]


def weight_position(k: int, n: int, bits: int) -> tuple[int, int, int]:
    """(row of B, word in that row, field in that word) of code q[k][n]."""
    if bits == 4:
        word = 128 * (n // 64) + 4 * (4 * (n % 8) + (k % 8) // 2) + (n // 16) % 4
        nib = 4 * (k % 2) + 2 * ((n // 8) % 2) + (k // 8) % 2
        return k // 16, word, nib
    th = 4 * (n % 8) + (k % 8) // 2
    warp = (n % 64) // 16
    half = (n % 16) // 8
    i = k % 2 + 2 * ((k % 16) // 8)
    return k // 16, 256 * (n // 64) + 8 * th + 2 * warp + half, BYTE_ORDER.index(i)


def pack_weight(q, bits: int) -> np.ndarray:
    K, N = len(q), len(q[0])
    words = [[0] * (N * 16 * bits // 32) for _ in range(K // 16)]
    for k in range(K):
        for n in range(N):
            r, w, f = weight_position(k, n, bits)
            words[r][w] |= int(q[k][n]) << (bits * f)
    return np.array(words, dtype=np.uint32).view(np.int32)


def unpack_weight(B, bits: int, K: int, N: int) -> np.ndarray:
    u = np.asarray(B).view(np.uint32).tolist()
    q = np.zeros((K, N), np.int64)
    for k in range(K):
        for n in range(N):
            r, w, f = weight_position(k, n, bits)
            q[k][n] = (u[r][w] >> (bits * f)) & (2**bits - 1)
    return q


def grouped_scale_position(n: int) -> int:
    l = n % 64
    return 64 * (n // 64) + 8 * (l % 8) + l // 8


def single_scale_position(n: int) -> int:
    l = n % 32
    return 32 * (n // 32) + 8 * ((l // 2) % 4) + 2 * (l // 8) + l % 2


def permute_scales(s) -> np.ndarray:
    """[G, N] -> stored order: grouped positions when G > 1, single ones when G == 1."""
    s = np.asarray(s)
    out = np.empty_like(s)
    pos = grouped_scale_position if s.shape[0] > 1 else single_scale_position
    for g in range(s.shape[0]):
        for n in range(s.shape[1]):
            out[g][pos(n)] = s[g][n]
    return out


def pack_zeros(z, bits: int) -> np.ndarray:
    """vLLM marlin_zero_points, element by element: column n goes to the grouped scale position p,
    then to packed slot ``8*(p//8) + NIBBLE_ORDER.index(p%8)`` (4-bit) or the byte analogue, then
    sequential fields along N."""
    order = NIBBLE_ORDER if bits == 4 else BYTE_ORDER
    per = 32 // bits
    z = np.asarray(z)
    G, N = z.shape
    words = [[0] * (N // per) for _ in range(G)]
    for g in range(G):
        for n in range(N):
            p = grouped_scale_position(n)
            slot = per * (p // per) + order.index(p % per)
            words[g][slot // per] |= int(z[g][n]) << (bits * (slot % per))
    return np.array(words, dtype=np.uint32).view(np.int32)


def sort_perm(g_idx) -> np.ndarray:
    """The act-order row order: a stable argsort of g_idx (vLLM marlin_sort_g_idx sorts too)."""
    g = [int(x) for x in g_idx]
    return np.array(sorted(range(len(g)), key=lambda k: g[k]), dtype=np.int32)
