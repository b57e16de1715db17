"""What the PTX of triton_gemm._awq_dequant8_pairs and _awq_dot8_half2 computes, written with Triton's own
ops, so Triton's interpreter (which cannot run inline PTX) can check the tiles around them: the zero and
scale operands they are handed, the order their outputs are joined in, the stores. Imported only where
triton is."""

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


@triton.jit
def _pair_sum(w0, w1, w2, w3, w4, w5, w6, w7, x0, x1, x2, x3, x4, x5, x6, x7, zop, field: tl.constexpr,
              hi: tl.constexpr, base: tl.constexpr):
    """sum over the eight rows of x (q - z) / 128 for one field, in fp32: the zero operand's half holds
    -(base + z / 128), and base + q / 128 is what the PTX's lop3 and fma make of the code."""
    zv = _half(zop, hi, tl.float16).to(tl.float32)
    acc = x0.to(tl.float32) * (base + ((w0 >> (4 * field)) & 15).to(tl.float32) / 128.0 + zv)
    acc += x1.to(tl.float32) * (base + ((w1 >> (4 * field)) & 15).to(tl.float32) / 128.0 + zv)
    acc += x2.to(tl.float32) * (base + ((w2 >> (4 * field)) & 15).to(tl.float32) / 128.0 + zv)
    acc += x3.to(tl.float32) * (base + ((w3 >> (4 * field)) & 15).to(tl.float32) / 128.0 + zv)
    acc += x4.to(tl.float32) * (base + ((w4 >> (4 * field)) & 15).to(tl.float32) / 128.0 + zv)
    acc += x5.to(tl.float32) * (base + ((w5 >> (4 * field)) & 15).to(tl.float32) / 128.0 + zv)
    acc += x6.to(tl.float32) * (base + ((w6 >> (4 * field)) & 15).to(tl.float32) / 128.0 + zv)
    acc += x7.to(tl.float32) * (base + ((w7 >> (4 * field)) & 15).to(tl.float32) / 128.0 + zv)
    return acc


@triton.jit
def awq_dot8_half2(w0, w1, w2, w3, w4, w5, w6, w7, x0, x1, x2, x3, x4, x5, x6, x7, z0, z1, z2, z3):
    # triton_gemm._awq_dot8_half2's outputs 2j (field j, low half) and 2j + 1 (field j + 4, high half); the
    # even pairs' codes come as 1024 + q (base 8), the odd ones' as 1024 + 16 q (base 1/2)
    return (_pair_sum(w0, w1, w2, w3, w4, w5, w6, w7, x0, x1, x2, x3, x4, x5, x6, x7, z0, 0, 0, 8.0),
            _pair_sum(w0, w1, w2, w3, w4, w5, w6, w7, x0, x1, x2, x3, x4, x5, x6, x7, z0, 4, 1, 8.0),
            _pair_sum(w0, w1, w2, w3, w4, w5, w6, w7, x0, x1, x2, x3, x4, x5, x6, x7, z1, 1, 0, 0.5),
            _pair_sum(w0, w1, w2, w3, w4, w5, w6, w7, x0, x1, x2, x3, x4, x5, x6, x7, z1, 5, 1, 0.5),
            _pair_sum(w0, w1, w2, w3, w4, w5, w6, w7, x0, x1, x2, x3, x4, x5, x6, x7, z2, 2, 0, 8.0),
            _pair_sum(w0, w1, w2, w3, w4, w5, w6, w7, x0, x1, x2, x3, x4, x5, x6, x7, z2, 6, 1, 8.0),
            _pair_sum(w0, w1, w2, w3, w4, w5, w6, w7, x0, x1, x2, x3, x4, x5, x6, x7, z3, 3, 0, 0.5),
            _pair_sum(w0, w1, w2, w3, w4, w5, w6, w7, x0, x1, x2, x3, x4, x5, x6, x7, z3, 7, 1, 0.5))
