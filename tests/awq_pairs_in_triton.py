"""What the PTX of triton_gemm._awq_dequant8_pairs computes, written with Triton's own ops, so Triton's
interpreter (which cannot run inline PTX) can check the tile around it: the zero and scale pairs it is
handed, the order its outputs are joined in, the contiguous stores. Imported only where triton is."""

import triton
import triton.language as tl


@triton.jit
def _half(v, hi: tl.constexpr, OUT: tl.constexpr):
    """The 16-bit float in the low (hi = 0) or high half of int32 ``v``."""
    b = ((v >> 16) & 0xFFFF) if hi else (v & 0xFFFF)
    return b.to(tl.int16).to(OUT, bitcast=True)


@triton.jit
def _weight(words, field: tl.constexpr, hi: tl.constexpr, zz, ss, MAGIC: tl.constexpr, OUT: tl.constexpr):
    """s * (q - z) of one field: MAGIC + q as a 16-bit float, minus the pair's MAGIC + z, times its scale."""
    q = ((words >> (4 * field)) & 15) | MAGIC
    return (q.to(tl.int16).to(OUT, bitcast=True) - _half(zz, hi, OUT)) * _half(ss, hi, OUT)


@triton.jit
def awq_dequant8_pairs(words, zz0, zz1, zz2, zz3, ss0, ss1, ss2, ss3, OUT: tl.constexpr):
    # output 2j is field j (the pair's low half), output 2j + 1 field j + 4 (its high half)
    MAGIC: tl.constexpr = 0x6400 if OUT == tl.float16 else 0x4300
    return (_weight(words, 0, 0, zz0, ss0, MAGIC, OUT), _weight(words, 4, 1, zz0, ss0, MAGIC, OUT),
            _weight(words, 1, 0, zz1, ss1, MAGIC, OUT), _weight(words, 5, 1, zz1, ss1, MAGIC, OUT),
            _weight(words, 2, 0, zz2, ss2, MAGIC, OUT), _weight(words, 6, 1, zz2, ss2, MAGIC, OUT),
            _weight(words, 3, 0, zz3, ss3, MAGIC, OUT), _weight(words, 7, 1, zz3, ss3, MAGIC, OUT))
