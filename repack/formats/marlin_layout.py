"""The Marlin tile layout of codes, scales and zero points (4- and 8-bit, 16-bit activations).

Weights: codes ``q[K, N]`` become int32 ``B[K/16, N*16*b/32]`` (``[K/16, 2N]`` 4-bit, ``[K/16, 4N]``
8-bit). Each row of B is one k-tile of 16 rows; it lists the 16x64 blocks left to right, each block
``16*64*b/32`` words (128 / 256). Inside a block the values are ordered so that one thread of the
GPU kernel loads, in one word, exactly the codes its m16n8k16 tensor-core B fragment needs: lane
``t`` (0..31) of sub-tile ``j`` (0..3, 16 columns each) holds rows ``2(t%4) + {0, 1, 8, 9}`` of
columns ``t//4`` and ``t//4 + 8``. Worked example, 4-bit: ``q[k][n]`` sits in ``B[k//16]``, word
``128*(n//64) + 4*(4*(n%8) + (k%8)//2) + (n//16)%4``, nibble ``4*(k%2) + 2*((n//8)%2) + (k//8)%2``.
The final interleave ([0,2,4,6,1,3,5,7] for nibbles, [0,2,1,3] for bytes) lets the kernel's
dequantization turn a word into fp16 pairs with one shift/mask per pair (the FasterTransformer
interleaved conversion the upstream comment cites).

Scales ``[G, N]``: each row is permuted in chunks, by an 8x8 transpose of 64 columns when there
are several groups (the kernel applies them per fragment), by the 32-column ``single`` order when
there is one group (per-channel: applied once to the output). vLLM decides "several groups" as
``group_size != -1 and group_size < K``, which equals ``G > 1``; group_size == K therefore takes
the single order. Zero points ``[G, N]`` always take the 64-column order (they are applied on
every MMA), then the same interleave as the codes, then are packed sequentially along N into
``[G, N*b/32]``.

Sources: ../shared/formats/kernels.md §1.1-1.2; IST-DASLab ``marlin/__init__.py`` ``_get_perms``
and ``Layer.pack``; vLLM ``utils/marlin_utils_test.py`` ``get_weight_perm`` / ``marlin_weights``,
``utils/marlin_utils.py`` ``get_scale_perms`` / ``marlin_permute_scales`` / ``marlin_zero_points``,
``csrc/quantization/gptq_marlin/gptq_marlin_repack.cu`` (8-bit output words ``8*lane + 2*subtile + {0,1}``).
"""

from __future__ import annotations

import sys
from functools import lru_cache

import numpy as np

from ..packing import pack_cols, unpack_cols

TILE = 16  # rows (k) per tile and per row of B
BLOCK_N = 64  # columns per permutation block: four 16x16 tensor-core tiles
MARLIN_BITS = (4, 8)


def _interleave(bits: int) -> np.ndarray:
    """Value order inside one packed word: the kernel dequantizes fields (0, 4), (1, 5), ...
    (4-bit) or (0, 2), (1, 3) (8-bit) together, so values 0,1 / 2,3 ... of a fragment go there."""
    if bits == 4:
        return np.array([0, 2, 4, 6, 1, 3, 5, 7])
    if bits == 8:
        return np.array([0, 2, 1, 3])
    raise ValueError(f"Marlin packs 4- or 8-bit codes, not {bits}-bit")


@lru_cache(maxsize=4)
def block_perm(bits: int) -> np.ndarray:
    """The 1024-entry gather of one 16x64 block (values listed as four 16x16 tiles, each row-major,
    i.e. index ``256*tile + 16*row + col``): packed value ``i`` of the block is ``block[perm[i]]``.
    Lane-major: lane t, then sub-tile j, then the 8 fragment values (two columns x four rows)."""
    perm = []
    for lane in range(32):
        col, r = lane // 4, lane % 4
        frag = [16 * row + col + 8 * half for half in (0, 1) for row in (2 * r, 2 * r + 1, 2 * r + 8, 2 * r + 9)]
        for j in range(4):
            perm += [p + 256 * j for p in frag]
    il = _interleave(bits)
    return np.array(perm).reshape(-1, len(il))[:, il].ravel()


@lru_cache(maxsize=16)
def _row_sources(bits: int, N: int) -> np.ndarray:
    """For one row of B (one k-tile, viewed as ``[16, N]`` flattened to ``kl*N + n``): the source
    of every packed value in packing order (value ``i`` goes to word ``i // (32/b)``, field ``i % (32/b)``)."""
    p = block_perm(bits)
    tile, within = p // 256, p % 256
    kl, n_in_block = within // 16, 16 * tile + within % 16
    blocks = np.arange(N // BLOCK_N)[:, None]
    return (kl[None, :] * N + BLOCK_N * blocks + n_in_block[None, :]).ravel()


def _rows_per_chunk(N: int) -> int:
    return max(1, (1 << 22) // max(16 * N, 1))


def pack_weight(q: np.ndarray, bits: int) -> np.ndarray:
    """Codes ``[K, N]`` (K % 16 == 0, N % 64 == 0) -> int32 ``B[K/16, N*16*b/32]``."""
    K, N = q.shape
    if K % TILE or N % BLOCK_N:
        raise ValueError(f"Marlin needs K % 16 == 0 and N % 64 == 0, got K={K}, N={N}")
    per = 32 // bits
    src = _row_sources(bits, N)
    out = np.empty((K // TILE, 16 * N // per), np.uint32)
    out_bytes = out.view(np.uint8).reshape(K // TILE, -1)
    step = max(1, (1 << 20) // max(TILE * N, 1))  # ~1 M codes a step: the gather stays in L2
    for r0 in range(0, K // TILE, step):
        rows = np.asarray(q[TILE * r0: TILE * (r0 + step)], dtype=np.uint8)
        vals = rows.reshape(-1, TILE * N)[:, src]  # uint8, in packing order
        R = vals.shape[0]
        if bits == 4:  # field j at bits 4j: byte b of the little-endian word holds fields 2b, 2b+1
            out_bytes[r0: r0 + R] = vals[:, 0::2] | (vals[:, 1::2] << 4)
        elif bits == 8:  # field j is byte j
            out_bytes[r0: r0 + R] = vals
        else:
            shifts = (np.arange(per, dtype=np.uint32) * bits)
            w = vals.reshape(R, -1, per).astype(np.uint32) << shifts
            out[r0: r0 + R] = np.bitwise_or.reduce(w, axis=2)
    if sys.byteorder != "little":  # pragma: no cover - the bytes above are the little-endian words
        out = out.byteswap()
    return out.view(np.int32)


STEP_WORDS = 1 << 17  # ~512 KB of source words a step: the tile's buffers stay in L2
_LOW = np.uint64(0x0F0F0F0F0F0F0F0F)
_BYTES_02, _BYTES_0 = np.uint64(0x0000FFFF0000FFFF), np.uint64(0x00FF00FF00FF00FF)


def pack_weight_words(words: np.ndarray, K: int, N: int) -> np.ndarray:
    """:func:`pack_weight` of 4-bit codes straight from their canonical words ``[K/8, N]`` (8 inputs
    of one column per word), without unpacking a code: a Marlin word holds inputs k0 + {0, 1} +
    {0, 8} of columns n and n + 8 (nibble ``4*(k%2) + 2*((n//8)%2) + (k//8)%2``), i.e. byte
    ``(k%8)//2`` of the canonical words of rows k//8 and k//8 + 1 of both columns, put together by
    nibble selects and a 4x4 byte transpose (as :func:`repack.packing.byte_nibble_words`)."""
    if K % TILE or N % BLOCK_N:
        raise ValueError(f"Marlin needs K % 16 == 0 and N % 64 == 0, got K={K}, N={N}")
    out = np.empty((K // TILE, 2 * N), np.uint32)
    step = max(1, STEP_WORDS // (2 * N))
    w = words.view(np.uint32)
    tile = None
    for k0 in range(0, K // TILE, step):
        kt = min(K // TILE, k0 + step) - k0
        if tile is None or tile.kt != kt:  # the first step, then the shorter last one
            tile = _WordTile(kt, N)
        tile.pack(w[2 * k0: 2 * (k0 + kt)], out[k0: k0 + kt])
    return out.view(np.int32)


class _WordTile:
    """The buffers of kt k-tiles, reused step after step. Between the two moves every pass runs on
    whole contiguous planes in 64-bit lanes (the masks keep the 32-bit words apart). Of the two
    moves only the last one moves single words: the first moves runs of 8 (32 bytes), about 3x
    faster than word by word."""

    def __init__(self, kt: int, N: int):
        self.kt, self.N = kt, N
        # source words as [k bit 3, n bit 3, k-tile, 64-column block, (n//16)%4, n%8]: the planes
        # a, c (k bit 3 = 0), b, d of byte_nibble_words, each run of 8 columns as in the source
        self.x = np.empty((2, 2, kt, N // BLOCK_N, 4, 8), np.uint32)
        self.tmp = np.empty(kt * N // 2, np.uint64)
        self.sources = _word_sources(kt, N)

    def pack(self, w: np.ndarray, out: np.ndarray) -> None:
        """Source words ``[2 kt, N]`` -> Marlin rows ``out`` [kt, 2N]."""
        kt, N = self.kt, self.N
        # source words as [k-tile, k bit 3, 64-column block, (n//16)%4, n bit 3, n%8]
        np.copyto(_items(self.x), _items(w.reshape(kt, 2, N // BLOCK_N, 4, 2, 8)).transpose(1, 4, 0, 2, 3))
        self._nibble_words()
        x = self.x.reshape(-1)
        for k in range(kt):  # the gather of one k-tile, from its offset in every plane
            # mode="wrap": the indices are all in range, and the default "raise" checks each (1.7x slower)
            np.take(x[k * (N // 2):], self.sources, out=out[k], mode="wrap")

    def _nibble_words(self) -> None:
        """byte_nibble_words in place, as three swaps: x0..x3 = (a, c, b, d) become the words t = 0..3
        holding byte t of each source, nibbles (LSB first) lo(a), lo(b), lo(c), lo(d), hi(a), ..."""
        x = self.x.reshape(2, 2, -1).view(np.uint64)
        # high nibbles of a, c <-> low nibbles of b, d: x0 = lo(a) | lo(b) << 4 per byte, x2 = hi
        _swap(x[0], x[1], 4, _LOW, self.tmp.reshape(2, -1))
        # then the 4x4 byte transpose: 16-bit halves of x0 / x2 and x1 / x3, bytes of x0 / x1, x2 / x3
        _swap(x[0], x[1], 16, _BYTES_02, self.tmp.reshape(2, -1))
        for g in (0, 1):  # one swap per half: numpy runs a strided 2-D view up to 3x slower
            _swap(x[g, 0], x[g, 1], 8, _BYTES_0, self.tmp[: x.shape[2]])


@lru_cache(maxsize=8)
def _word_sources(kt: int, N: int) -> np.ndarray:
    """The gather of one k-tile's Marlin row from the planes of :class:`_WordTile` (offset to the
    k-tile): word ``128*block + 16*(n%8) + 4*t + (n//16)%4`` (module docstring) is word t's plane
    at ``t*kt*N/2 + 32*block + 8*((n//16)%4) + n%8``."""
    t, block, j, i = np.ix_(np.arange(4), np.arange(N // BLOCK_N), np.arange(4), np.arange(8))
    src = t * (kt * N // 2) + 32 * block + 8 * j + i  # [t, block, (n//16)%4, n%8]
    return np.ascontiguousarray(src.transpose(1, 3, 0, 2)).reshape(-1)


def _swap(lo: np.ndarray, hi: np.ndarray, shift: int, mask: np.uint64, tmp: np.ndarray) -> None:
    """Exchange the ``mask`` bits of ``hi`` with the bits of ``lo`` ``shift`` above them."""
    sh = np.uint64(shift)
    np.right_shift(lo, sh, out=tmp)
    np.bitwise_xor(tmp, hi, out=tmp)
    np.bitwise_and(tmp, mask, out=tmp)
    np.bitwise_xor(hi, tmp, out=hi)
    np.left_shift(tmp, sh, out=tmp)
    np.bitwise_xor(lo, tmp, out=lo)


def _items(a: np.ndarray) -> np.ndarray:
    """uint32 ``[..., n]`` seen as one raw 4n-byte item per last row (copies move them whole)."""
    return a.view(np.dtype(f"V{4 * a.shape[-1]}"))[..., 0]


def unpack_weight(B: np.ndarray, bits: int, K: int, N: int) -> np.ndarray:
    """The inverse of :func:`pack_weight`: uint8 codes ``[K, N]``."""
    per = 32 // bits
    if tuple(B.shape) != (K // TILE, 16 * N // per):
        raise ValueError(f"expected [{K // TILE}, {16 * N // per}], got {list(B.shape)}")
    src = _row_sources(bits, N)
    shifts = (np.arange(per, dtype=np.uint32) * bits)
    mask = np.uint32(2**bits - 1)
    out = np.empty((K // TILE, TILE * N), np.uint8)
    step = _rows_per_chunk(N)
    w = B.view(np.uint32)
    for r0 in range(0, K // TILE, step):
        chunk = w[r0: r0 + step]
        vals = ((chunk[:, :, None] >> shifts) & mask).reshape(chunk.shape[0], -1)
        out[r0: r0 + chunk.shape[0], src] = vals
    return out.reshape(K, N)


@lru_cache(maxsize=2)
def scale_perm(grouped: bool) -> np.ndarray:
    """Gather within each chunk of a scale row: ``out[i] = in[perm[i]]``. Grouped: 64 columns,
    an 8x8 transpose (``out[8i+j] = in[i+8j]``). Single: 32 columns, lane order of the output
    fragments (``2i + {0,1,8,9,16,17,24,25}`` for i = 0..3)."""
    if grouped:
        return np.array([i + 8 * j for i in range(8) for j in range(8)])
    return np.array([2 * i + o for i in range(4) for o in (0, 1, 8, 9, 16, 17, 24, 25)])


def _chunked(a, perm: np.ndarray):
    """Gather ``perm`` within each chunk of ``len(perm)`` columns of ``a`` [G, N] (numpy or torch)."""
    G, N = a.shape
    return a.reshape(G, N // len(perm), len(perm))[:, :, perm].reshape(G, N)


def permute_scales(s, groups: int):
    """``[G, N]`` scales (numpy or torch, any float dtype) in kernel order; ``groups`` = G of the layer."""
    return _chunked(s, scale_perm(groups > 1))


def unpermute_scales(s, groups: int):
    return _chunked(s, np.argsort(scale_perm(groups > 1)))


def pack_zeros(z: np.ndarray, bits: int) -> np.ndarray:
    """True zeros ``[G, N]`` -> int32 ``[G, N*b/32]`` (vLLM ``marlin_zero_points``)."""
    order = _chunked(_chunked(np.asarray(z), scale_perm(True)), _interleave(bits))
    return pack_cols(order, bits)


def unpack_zeros(words: np.ndarray, bits: int, N: int) -> np.ndarray:
    v = unpack_cols(words, bits, N)
    return _chunked(_chunked(v, np.argsort(_interleave(bits))), np.argsort(scale_perm(True)))
