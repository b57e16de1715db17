"""4-bit canonical words -> GGUF Q4_0 / Q4_1 / Q5_0 / Q5_1 blocks in one compiled pass (numba).

The numpy encoder (``gguf_tensor._encode_words``) needs ~12 passes over every tile, 0.8 ns a weight
on the 2-core machine: 4.5 of the ~5.7 CPU-seconds of a 7B gptq -> gguf conversion, with the
page-cache copy of 5 GB the rest (benchmarks/NOTES-convert.md). Compiled, each block is a few
64-bit operations on its four words, read once, written once. Same bytes as the numpy encoder
(tests compare both, and both against gguf_blocks' per-code reference).

Per block b of output n: words 4b..4b+3 of column n hold codes 32b..32b+31 (word k: code 8k + i in
bits 4i..4i+3, hf.md §1.3). A word widened to a uint64 with code i in byte i (three shift-or-mask
steps) takes the shift ``zero - z`` as one add (results < 32: no carry between bytes); bit 4 of its
eight bytes is qh byte k (gathered by one multiply, the numpy encoder's ``_GATHER``), and
qs bytes 0..7 = word 0 | word 2 << 4, bytes 8..15 = word 1 | word 3 << 4 (element j low nibble,
element j + 16 high: gguf.md §2.1).

Imported only where a GGUF is written (numba takes ~0.2 s to import); the compiled code is cached
on disk next to this file (numba ``cache=True``), so a process loads it rather than compiling.
"""

from __future__ import annotations

import numpy as np

ROWS = 64  # outputs a sweep over the blocks: 64 sequential record streams, words read 256 bytes at a time

try:
    import numba
except ImportError:  # the numpy encoder then
    numba = None

_u64 = np.uint64
_M16, _M8, _M4 = _u64(0x0000FFFF0000FFFF), _u64(0x00FF00FF00FF00FF), _u64(0x0F0F0F0F0F0F0F0F)
_BIT4, _ONES = _u64(0x1010101010101010), _u64(0x0101010101010101)
_GATHER = _u64(sum(1 << (52 - 7 * j) for j in range(8)))  # bit 8k + 4 -> 56 + k
_S4, _S8, _S16, _S24, _S56, _FFFF = _u64(4), _u64(8), _u64(16), _u64(24), _u64(56), _u64(0xFFFF)


def _jit(fn):
    return numba.njit(cache=True, nogil=True, boundscheck=False)(fn) if numba is not None else fn


@_jit
def _spread(w):
    """A word's eight 4-bit codes, code i in byte i of a uint64."""
    x = _u64(w)
    x = (x | (x << _S16)) & _M16
    x = (x | (x << _S8)) & _M8
    return (x | (x << _S4)) & _M4


@_jit
def _put(out, n, at, value, count):
    """``count`` little-endian 16-bit units of ``value`` into out[n, at:] (records are 2-byte aligned:
    half the stores of writing bytes, which were most of the pass)."""
    for i in range(count):
        out[n, at + i] = np.uint16((value >> _u64(16 * i)) & _FFFF)


@_jit
def _qh_byte(x):
    return ((x & _BIT4) * _GATHER) >> _S56


@_jit
def _encode(words, d, m, shift, dest, gblocks, ts, five, out):
    # words uint32 [K/8, N]; d, m uint16 [G, N] (m 0 x 0 when the type has none); shift uint8 [G, N]
    # (0 x 0: none); dest int64 [N]: the output row of column n (empty: n); out uint16
    # [N, K/32 * ts / 2]; positions below in 16-bit units
    kw, n_out = words.shape
    has_min = m.shape[0] > 0
    has_shift = shift.shape[0] > 0
    has_dest = dest.shape[0] > 0
    units = ts // 2
    for n0 in range(0, n_out, ROWS):
        n1 = min(n_out, n0 + ROWS)
        for b in range(kw // 4):
            g = b // gblocks
            at = b * units
            for n in range(n0, n1):
                r = dest[n] if has_dest else n
                out[r, at] = d[g, n]
                p = at + 1
                if has_min:
                    out[r, p] = m[g, n]
                    p += 1
                add = _u64(shift[g, n]) * _ONES if has_shift else _u64(0)
                x0 = _spread(words[4 * b, n]) + add
                x1 = _spread(words[4 * b + 1, n]) + add
                x2 = _spread(words[4 * b + 2, n]) + add
                x3 = _spread(words[4 * b + 3, n]) + add
                if five:
                    qh = _qh_byte(x0) | (_qh_byte(x1) << _S8) | (_qh_byte(x2) << _S16) | (_qh_byte(x3) << _S24)
                    _put(out, r, p, qh, 2)
                    p += 2
                _put(out, r, p, (x0 & _M4) | ((x2 & _M4) << _S4), 4)
                _put(out, r, p + 4, (x1 & _M4) | ((x3 & _M4) << _S4), 4)


def available() -> bool:
    return numba is not None


def load() -> None:
    """The compiled encoder ready in this process (numba's import and its code from the disk cache,
    ~0.3 s; benchmarks/convert.py warms the files with it). The write processes load it over their
    first module, while the other one writes the large pass-through tensors: loaded before the fork
    instead, the serial start grew by ~0.25 s and the conversion was no faster (NOTES-convert.md)."""
    if numba is not None:
        encode_words(np.zeros((4, 1), np.uint32), np.zeros((1, 1), np.uint16), None, np.zeros((1, 1), np.uint8), 1, 22,
                     True)


def encode_words(words: np.ndarray, d: np.ndarray, m: np.ndarray | None, shift: np.ndarray | None,
                 group_blocks: int, type_size: int, five: bool, out: np.ndarray | None = None,
                 rows: np.ndarray | None = None) -> np.ndarray:
    """Block bytes uint8 [N, K/32 * type_size] from canonical words uint32 [K/8, N], the per-group
    fp16 bits of d (and m) uint16 [G, N], the per-group shift ``zero - z`` uint8 [G, N] (None: 0;
    for 4-bit types already modulo 16), ``group_blocks`` blocks a group. ``out``: where to put them
    (uint8, that shape, rows 2-byte aligned); ``rows``: result row i holds output ``rows[i]`` (a
    permutation, as ``blocks[rows]`` would give)."""
    kw, n_out = words.shape
    if out is None:
        out = np.empty((n_out, kw // 4 * type_size), np.uint8)
    m = np.zeros((0, 0), np.uint16) if m is None else np.ascontiguousarray(m)
    shift = np.zeros((0, 0), np.uint8) if shift is None else np.ascontiguousarray(shift)
    dest = np.zeros(0, np.int64)
    if rows is not None:
        dest = np.empty(n_out, np.int64)
        dest[rows] = np.arange(n_out)
    _encode(np.ascontiguousarray(words).view(np.uint32), np.ascontiguousarray(d), m, shift, dest, group_blocks,
            type_size, five, out.view(np.uint16))
    return out
