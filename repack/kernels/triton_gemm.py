"""Triton W(2|4|8)A16 GEMM that reads a layer's packed tensors where they lie (no dequantized copy).

``y[M, N] = x[M, K] @ W.T`` with ``W[n, k] = s[g, n] * (q[k, n] - z[g, n])``, fp32 accumulation.
One kernel serves every layout through constexpr switches and strides (see packed.py):
codes along K (GPTQ, canonical, AutoAWQ gemv transposed) or along N in AWQ nibble order; zeros
packed along N, along N in AWQ order, along G (gemv) or unpacked; groups sequential or by g_idx.

Tiles come from ``tuned.py``: small M runs a GEMV-shaped program (no tensor cores, the K reduction
split over programs; with fp16 at M = 1 the products are summed in fp16 pairs, GEMV_H2 on GPTQ-order
words and GEMV_NH2 on AWQ words), larger M a ``tl.dot`` tile (at M <= 16 on GPTQ-order layers the Gluon
tile of ``gluon_gemm.py`` instead; on AWQ words DOT_N, each word's pairs dequantized into output order;
``gluon_pipe.py``'s pipelined shared-memory tile where a tuned entry says ``pipe``).
When a tile lies inside one group, the scale
is applied once per output column after the K reduction (``s * sum x (q - z)``), so the inner loop
is mask, integer-to-float and FMA only. Split-K partial sums go to an fp32 workspace; the last
program of a tile (told by an atomic counter) reads it back, clears it and writes the output, so
one launch does everything and the workspace is left zeroed for the next call (gluon_rs's tiles instead
store each partial tile in a slot of their own, which the last program adds up: RS_SPLIT_SLOTS). Where a tuned tile
says ``cluster``, the programs splitting K are instead the CTAs of one thread-block cluster and their
partial sums meet in distributed shared memory (``_cluster_finish``: no workspace or atomics).

This module imports Triton at the top: import it only where CUDA is present (kernels/__init__ does).
"""

from __future__ import annotations

import dataclasses
import functools
import weakref

import torch
import triton
import triton.language as tl

from .packed import (CODES_ALONG_K, CODES_ALONG_N_AWQ, CODES_MARLIN, SCALES_MARLIN, ZEROS_ALONG_G, ZEROS_ALONG_N,
                     ZEROS_ALONG_N_AWQ, ZEROS_INT, ZEROS_MARLIN, PackedWeight)
from .encoded_launch import encoded_launch
from .tuned import TileConfig, pick_config, split_for

_CODES = {CODES_ALONG_K: 0, CODES_ALONG_N_AWQ: 1, CODES_MARLIN: 2}
_ZEROS = {ZEROS_ALONG_N: 0, ZEROS_ALONG_N_AWQ: 1, ZEROS_ALONG_G: 2, ZEROS_INT: 3, ZEROS_MARLIN: 4}
SUPPORTED_BITS = (2, 4, 8)  # 3-bit fields straddle words; those layers take the reference path


@triton.jit
def _awq_shift(n):
    # AutoAWQ gemm keeps column 8c + j in nibble AWQ_REVERSE_ORDER[j] = [0, 4, 1, 5, 2, 6, 3, 7][j]
    # (awq/utils/packing_utils.py; hf.md §2.2), i.e. (j % 2) * 4 + j // 2
    j = n % 8
    return ((j % 2) * 4 + j // 2) * 4


@triton.jit
def _marlin_scale_col(n, SLAYOUT: tl.constexpr):
    """Stored column of output n's scale: as is (0), Marlin grouped 8x8 transpose of 64 columns
    (1), Marlin per-channel 32-column order (2); vLLM marlin_permute_scales, kernels.md §1.1."""
    if SLAYOUT == 1:
        l = n % 64
        return 64 * (n // 64) + 8 * (l % 8) + l // 8
    elif SLAYOUT == 2:
        l = n % 32
        return 32 * (n // 32) + 8 * ((l // 2) % 4) + 2 * (l // 8) + l % 2
    else:
        return n


@triton.jit
def _zero_at(z_ptr, g, n, mask, sza, szb, zero_offset, BITS: tl.constexpr, ZLAYOUT: tl.constexpr):
    """True zero of group g, output n (broadcastable index tensors)."""
    FMASK: tl.constexpr = (1 << BITS) - 1
    PER: tl.constexpr = 32 // BITS
    if ZLAYOUT == 0:
        w = tl.load(z_ptr + g * sza + (n // PER) * szb, mask=mask, other=0)
        z = (w >> ((n % PER) * BITS)) & FMASK
    elif ZLAYOUT == 1:
        w = tl.load(z_ptr + g * sza + (n // 8) * szb, mask=mask, other=0)
        z = (w >> _awq_shift(n)) & 15
    elif ZLAYOUT == 2:
        w = tl.load(z_ptr + n * sza + (g // 8) * szb, mask=mask, other=0)
        z = (w >> ((g % 8) * 4)) & 15
    elif ZLAYOUT == 4:
        # vLLM marlin_zero_points: column n moves to its grouped scale position p, then field
        # p % PER of a word goes to slot (j % 2) * PER/2 + j // 2 (the [0,2,4,6,1,3,5,7] /
        # [0,2,1,3] interleave inverted); words are sequential along N (formats/marlin_layout.py)
        p = _marlin_scale_col(n, 1)
        j = p % PER
        w = tl.load(z_ptr + g * sza + (p // PER) * szb, mask=mask, other=0)
        z = (w >> (((j % 2) * (PER // 2) + j // 2) * BITS)) & FMASK
    else:
        z = tl.load(z_ptr + g * sza + n * szb, mask=mask, other=0)
    return z + zero_offset


@triton.jit
def _codes_tile(qw_ptr, offs_k, offs_n, N, K, sqa, sqb, BITS: tl.constexpr, QLAYOUT: tl.constexpr):
    """int32 codes [BLOCK_K, BLOCK_N]. Each word is addressed once per code it holds: the
    duplicate addresses of a warp are served by one load (broadcast), which is cheaper here than
    loading each word once and reshaping the unpacked fields across threads."""
    FMASK: tl.constexpr = (1 << BITS) - 1
    if QLAYOUT == 0:
        PER: tl.constexpr = 32 // BITS
        words = tl.load(qw_ptr + (offs_k // PER)[:, None] * sqa + offs_n[None, :] * sqb,
                        mask=(offs_k[:, None] < K) & (offs_n[None, :] < N), other=0)
        return (words >> ((offs_k % PER) * BITS)[:, None]) & FMASK
    elif QLAYOUT == 2:
        # Marlin tiles: q[k][n] is in row k // 16, at the word and field of the closed forms in
        # kernels.md §1.1 (4-bit) / gptq_marlin_repack.cu's lane and warp indexing (8-bit)
        k = offs_k[:, None]
        n = offs_n[None, :]
        lane = 4 * (n % 8) + (k % 8) // 2
        if BITS == 4:
            col = 128 * (n // 64) + 4 * lane + (n // 16) % 4
            shift = 4 * (4 * (k % 2) + 2 * ((n // 8) % 2) + (k // 8) % 2)
        else:
            col = 256 * (n // 64) + 8 * lane + 2 * ((n // 16) % 4) + (n // 8) % 2
            shift = 8 * (2 * (k % 2) + (k // 8) % 2)
        words = tl.load(qw_ptr + (k // 16) * sqa + col * sqb, mask=(k < K) & (n < N), other=0)
        return (words >> shift) & FMASK
    else:
        words = tl.load(qw_ptr + offs_k[:, None] * sqa + (offs_n // 8)[None, :] * sqb,
                        mask=(offs_k[:, None] < K) & (offs_n[None, :] < N), other=0)
        return (words >> _awq_shift(offs_n)[None, :]) & 15


@triton.jit
def _dequant(q, z, s, OUT: tl.constexpr):
    """s * (q - z) in the activation dtype. fp16: the integers become fp16 through the exponent
    trick (0x6400 | q is the fp16 1024 + q, exact for q < 1024) instead of a slow int->float
    convert; the product is one fp16 rounding of the exact value, as the reference's."""
    if OUT == tl.float16:
        qf = (q | 0x6400).to(tl.int16).to(tl.float16, bitcast=True)
        return (qf - (z + 1024).to(tl.float16)) * s.to(tl.float16)
    else:
        return ((q - z).to(tl.float32) * s.to(tl.float32)).to(OUT)


@triton.jit
def _as_f32_int(q):
    """Small non-negative int32 -> fp32 without the slow convert: 0x4B000000 | q is 2^23 + q."""
    return (q | 0x4B000000).to(tl.float32, bitcast=True)


@triton.jit
def _unpack8_along_last(words, BITS: tl.constexpr):
    """int32 words [R, C] with 8 fields each -> codes [R, C * 8], field f of word c at 8c + f.
    Built with joins so each thread keeps a word's eight codes together (contiguous, so the
    dequantized tile is stored to shared memory with vector stores); a broadcast shift instead
    spreads the fields over threads and every code becomes its own 2-byte store."""
    FMASK: tl.constexpr = (1 << BITS) - 1
    f0 = words & FMASK
    f1 = (words >> BITS) & FMASK
    f2 = (words >> (2 * BITS)) & FMASK
    f3 = (words >> (3 * BITS)) & FMASK
    f4 = (words >> (4 * BITS)) & FMASK
    f5 = (words >> (5 * BITS)) & FMASK
    f6 = (words >> (6 * BITS)) & FMASK
    f7 = (words >> (7 * BITS)) & FMASK
    c = _join8(f0, f1, f2, f3, f4, f5, f6, f7)
    R: tl.constexpr = words.shape[0]
    C: tl.constexpr = words.shape[1]
    return tl.reshape(c, (R, C * 8))


def _pairs_asm(magic: int, sub: str, mul: str | None, awq: bool = False) -> str:
    """The PTX of :func:`_dequant8_pairs` for one 16-bit float type (its magic and paired ops); without
    ``mul`` the halves are q - z (gluon_gemm's bf16 tile, which scales the sums instead). ``awq``: the PTX
    of :func:`_awq_dequant8_pairs` — on an AutoAWQ word fields j and j + 4 are outputs 2j and 2j + 1
    (AutoAWQ's order_map [0, 2, 4, 6, 1, 3, 5, 7]), so each pair has its own zero and scale operands
    ($9-$12, $13-$16) and the halves are handed out in output order."""
    lines = ["{", ".reg .b32 t0, t1, t2, t3, u;"]
    for j in range(4):
        src = "$8"
        if j:
            lines.append(f"shr.u32 u, $8, {4 * j};")
            src = "u"
        lines.append(f"lop3.b32 t{j}, {src}, 0x000F000F, 0x{magic:04X}{magic:04X}, 0xEA;")
    lines += [f"{sub} t{j}, t{j}, ${9 + j if awq else 9};" for j in range(4)]
    lines += [f"{mul} t{j}, t{j}, ${13 + j if awq else 10};" for j in range(4) if mul]
    halves = [(2 * j, 2 * j + 1) if awq else (j, j + 4) for j in range(4)]  # GPTQ order: fields j and j + 4
    lines += [f"mov.b32 {{${lo}, ${hi}}}, t{j};" for j, (lo, hi) in enumerate(halves)]
    return "\n".join(lines + ["}"])


_PAIRS_F16: tl.constexpr = tl.constexpr(_pairs_asm(0x6400, "sub.f16x2", "mul.f16x2"))
_PAIRS_BF16: tl.constexpr = tl.constexpr(_pairs_asm(0x4300, "sub.rn.bf16x2", "mul.rn.bf16x2"))


@triton.jit
def _dequant8_pairs(words, zz, ss, OUT: tl.constexpr):
    """Eight fp16/bf16 weights s * (q - z) per 4-bit GPTQ-order word, two per instruction.

    ``(w >> 4j) & 0x000F000F | MAGIC`` puts code j in the low half and code j + 4 in the high half,
    each as the 16-bit float MAGIC + q, exact (fp16: 0x6400 = 1024 + q; bf16: 0x4300 = 128 + q);
    one paired subtract of ``zz`` (MAGIC + z in both halves) leaves q - z exactly, and one paired
    multiply by ``ss`` rounds the exact product once, as the reference does. The halves are then
    handed out in field order. ``zz`` and ``ss`` are int32 with the same 16 bits in both halves.
    Four shifts, four lop3, eight paired float ops per word instead of ~10 scalar ops per code."""
    if OUT == tl.float16:
        return tl.inline_asm_elementwise(asm=_PAIRS_F16, constraints="=h,=h,=h,=h,=h,=h,=h,=h,r,r,r",
                                         args=[words, zz, ss], dtype=(tl.float16,) * 8, is_pure=True, pack=1)
    else:
        return tl.inline_asm_elementwise(asm=_PAIRS_BF16, constraints="=h,=h,=h,=h,=h,=h,=h,=h,r,r,r",
                                         args=[words, zz, ss], dtype=(tl.bfloat16,) * 8, is_pure=True, pack=1)


_AWQ_PAIRS_F16: tl.constexpr = tl.constexpr(_pairs_asm(0x6400, "sub.f16x2", "mul.f16x2", awq=True))
_AWQ_PAIRS_BF16: tl.constexpr = tl.constexpr(_pairs_asm(0x4300, "sub.rn.bf16x2", "mul.rn.bf16x2", awq=True))


@triton.jit
def _awq_dequant8_pairs(words, zz0, zz1, zz2, zz3, ss0, ss1, ss2, ss3, OUT: tl.constexpr):
    """Eight fp16/bf16 weights s * (q - z) per AutoAWQ word, in output order (8c + 0 .. 8c + 7), two per
    instruction as in _dequant8_pairs; ``zzj``: MAGIC + z of outputs 2j, 2j + 1 (_awq_magic_zero), ``ssj``:
    their scales, as int32 pairs."""
    if OUT == tl.float16:
        return tl.inline_asm_elementwise(asm=_AWQ_PAIRS_F16, constraints="=h," * 8 + "r," * 8 + "r",
                                         args=[words, zz0, zz1, zz2, zz3, ss0, ss1, ss2, ss3],
                                         dtype=(tl.float16,) * 8, is_pure=True, pack=1)
    else:
        return tl.inline_asm_elementwise(asm=_AWQ_PAIRS_BF16, constraints="=h," * 8 + "r," * 8 + "r",
                                         args=[words, zz0, zz1, zz2, zz3, ss0, ss1, ss2, ss3],
                                         dtype=(tl.bfloat16,) * 8, is_pure=True, pack=1)


@triton.jit
def _awq_magic_zero(zw, j: tl.constexpr, zero_offset, MAGIC: tl.constexpr):
    """MAGIC + z for the zeros of fields j and j + 4 of the AWQ zero word ``zw`` (outputs 2j, 2j + 1), as the
    16-bit floats' bit patterns in the two halves of an int32 (MAGIC | z is exact: z < 2^7)."""
    lo = ((zw >> (4 * j)) & 15) + zero_offset
    hi = ((zw >> (4 * j + 16)) & 15) + zero_offset
    return (MAGIC | lo) | ((MAGIC | hi) << 16)


@triton.jit
def _awq_dequant_tile(words, zw, s2_ptrs, c_ok, zero_offset, OUT: tl.constexpr):
    """AWQ words [R, C] of one group, its zero words [C] and int32 pointers [C] to each word's first scale
    pair -> weights [R, C * 8] in output order (each thread keeps a word's eight together, as
    _dequant_tile_asm does along K)."""
    MAGIC: tl.constexpr = 0x6400 if OUT == tl.float16 else 0x4300
    c0, c1, c2, c3, c4, c5, c6, c7 = _awq_dequant8_pairs(
        words, _awq_magic_zero(zw, 0, zero_offset, MAGIC)[None, :], _awq_magic_zero(zw, 1, zero_offset, MAGIC)[None, :],
        _awq_magic_zero(zw, 2, zero_offset, MAGIC)[None, :], _awq_magic_zero(zw, 3, zero_offset, MAGIC)[None, :],
        tl.load(s2_ptrs, mask=c_ok, other=0)[None, :], tl.load(s2_ptrs + 1, mask=c_ok, other=0)[None, :],
        tl.load(s2_ptrs + 2, mask=c_ok, other=0)[None, :], tl.load(s2_ptrs + 3, mask=c_ok, other=0)[None, :], OUT)
    c = _join8(c0, c1, c2, c3, c4, c5, c6, c7)
    R: tl.constexpr = words.shape[0]
    C: tl.constexpr = words.shape[1]
    return tl.reshape(c, (R, C * 8))


def _half2_dot_asm() -> str:
    """PTX of :func:`_dot8_half2`: one 4-bit GPTQ-order word against its eight fp16 inputs.

    ``lop3`` with the mask 0x000F000F puts codes j and j + 4 of ``w >> 4j`` in the two halves of
    an fp16x2 as 1024 + q (exponent trick, exact); with 0x00F000F0 (no shift) the halves hold
    1024 + 16 q (the pairing of FasterTransformer's int4 -> fp16 conversion, here on the natural
    nibble order). One ``fma`` each then gives (q - z) / 64 exactly: (1024 + q) / 64 - (16 + z / 64)
    and (1024 + 16 q) / 1024 - (1 + z / 64), all values on fp16's grid. Four paired fp16 FMAs with
    the input pairs (x_j, x_{j+4}) sum the eight products into two halves, added in fp32; the caller
    multiplies by 64 s. The 1/64 keeps a half's sum of four products within fp16 for any finite x
    (4 * 16 / 64 * 65504 = 65504): unscaled, outlier activations of a few thousand overflowed (a
    numpy replay of this sequence: 22 % of words at |x| ~ 3000 became inf, none scaled, and the same
    rounding error otherwise). 16 instructions a word where the fp32 path spends ~4 a code."""
    return "\n".join([
        "{",
        ".reg .b32 u, t0, t1, t2, t3, a, r64, r1024;",
        ".reg .b16 h0, h1;",
        ".reg .f32 f0, f1;",
        "mov.b32 r64, 0x24002400;",  # (1/64, 1/64)
        "mov.b32 r1024, 0x14001400;",  # (1/1024, 1/1024)
        "shr.u32 u, $1, 8;",
        "lop3.b32 t0, $1, 0x000F000F, 0x64006400, 0xEA;",  # (1024 + q0, 1024 + q4)
        "lop3.b32 t1, $1, 0x00F000F0, 0x64006400, 0xEA;",  # (1024 + 16 q1, 1024 + 16 q5)
        "lop3.b32 t2, u, 0x000F000F, 0x64006400, 0xEA;",   # q2, q6
        "lop3.b32 t3, u, 0x00F000F0, 0x64006400, 0xEA;",   # q3, q7 (x16)
        "fma.rn.f16x2 t0, t0, r64, $2;",  # / 64 - (16 + z / 64): (q - z) / 64
        "fma.rn.f16x2 t1, t1, r1024, $3;",  # / 1024 - (1 + z / 64): (q - z) / 64
        "fma.rn.f16x2 t2, t2, r64, $2;",
        "fma.rn.f16x2 t3, t3, r1024, $3;",
        "mul.rn.f16x2 a, t0, $4;",
        "fma.rn.f16x2 a, t1, $5, a;",
        "fma.rn.f16x2 a, t2, $6, a;",
        "fma.rn.f16x2 a, t3, $7, a;",
        "mov.b32 {h0, h1}, a;",
        "cvt.f32.f16 f0, h0;",
        "cvt.f32.f16 f1, h1;",
        "add.f32 $0, f0, f1;",
        "}",
    ])


_HALF2_DOT: tl.constexpr = tl.constexpr(_half2_dot_asm())


@triton.jit
def _dot8_half2(words, zl, zh, x0, x1, x2, x3):
    """sum over the eight codes q of each word of x * (q - z) / 64, in fp32 (see _half2_dot_asm).
    ``zl``: -(16 + z / 64) in both fp16 halves, ``zh``: -(1 + z / 64) in both; ``xj``: the fp16
    pair (x[8r + j], x[8r + j + 4]) as int32."""
    return tl.inline_asm_elementwise(asm=_HALF2_DOT, constraints="=f,r,r,r,r,r,r,r",
                                     args=[words, zl, zh, x0, x1, x2, x3], dtype=tl.float32, is_pure=True, pack=1)


def _awq_half2_asm() -> str:
    """PTX of :func:`_awq_dot8_half2`: eight rows of one AutoAWQ gemm word column against their eight fp16
    inputs. AutoAWQ packs output 8c + [0, 2, 4, 6, 1, 3, 5, 7][f] into field f of word c (its
    ``order_map``, awq/utils/packing_utils.py), so fields j and j + 4 are the adjacent outputs 2j and
    2j + 1: the same ``lop3`` as _half2_dot_asm gives each output pair as one fp16x2, 1024 + q (j even)
    or 1024 + 16 q (j odd), and one ``fma`` with the pair's zero operand gives (q - z) / 128 exactly.
    Each pair is multiplied by (x_r, x_r) and summed over the eight rows in fp16x2; eight products of
    magnitude at most 15 / 128 |x| stay finite for any fp16 x. Outputs: the eight columns' sums in fp32
    (the caller multiplies by 128 s). 14 instructions a word, against ~6 a code on the fp32 path."""
    lines = ["{", ".reg .b32 u, t0, t1, t2, t3, a0, a1, a2, a3, xx, r128, r2048;", ".reg .b16 h0, h1;",
             "mov.b32 r128, 0x20002000;",  # (1/128, 1/128)
             "mov.b32 r2048, 0x10001000;"]  # (1/2048, 1/2048)
    for r in range(8):
        w, x = f"${8 + r}", f"${16 + r}"
        lines += [f"mov.b32 xx, {{{x}, {x}}};",
                  f"shr.u32 u, {w}, 8;",
                  f"lop3.b32 t0, {w}, 0x000F000F, 0x64006400, 0xEA;",  # outputs 0, 1: (1024 + q, 1024 + q)
                  f"lop3.b32 t1, {w}, 0x00F000F0, 0x64006400, 0xEA;",  # outputs 2, 3 (x16)
                  "lop3.b32 t2, u, 0x000F000F, 0x64006400, 0xEA;",  # outputs 4, 5
                  "lop3.b32 t3, u, 0x00F000F0, 0x64006400, 0xEA;",  # outputs 6, 7 (x16)
                  "fma.rn.f16x2 t0, t0, r128, $24;",  # / 128 - (8 + z / 128)
                  "fma.rn.f16x2 t1, t1, r2048, $25;",  # / 2048 - (1/2 + z / 128)
                  "fma.rn.f16x2 t2, t2, r128, $26;",
                  "fma.rn.f16x2 t3, t3, r2048, $27;"]
        lines += [f"mul.rn.f16x2 a{i}, t{i}, xx;" if r == 0 else f"fma.rn.f16x2 a{i}, t{i}, xx, a{i};" for i in range(4)]
    for i in range(4):
        lines += [f"mov.b32 {{h0, h1}}, a{i};", f"cvt.f32.f16 ${2 * i}, h0;", f"cvt.f32.f16 ${2 * i + 1}, h1;"]
    return "\n".join(lines + ["}"])


_AWQ_HALF2: tl.constexpr = tl.constexpr(_awq_half2_asm())


@triton.jit
def _awq_dot8_half2(w0, w1, w2, w3, w4, w5, w6, w7, x0, x1, x2, x3, x4, x5, x6, x7, z0, z1, z2, z3):
    """Eight rows ``w0..w7`` of AWQ words (one word column), inputs ``x0..x7`` (fp16) and the zero
    operands of the four output pairs (_awq_half2_zeros) -> the eight outputs' sums of x (q - z) / 128,
    fp32, in output order (see _awq_half2_asm)."""
    return tl.inline_asm_elementwise(asm=_AWQ_HALF2, constraints="=f," * 8 + "r," * 8 + "h," * 8 + "r,r,r,r",
                                     args=[w0, w1, w2, w3, w4, w5, w6, w7, x0, x1, x2, x3, x4, x5, x6, x7,
                                           z0, z1, z2, z3], dtype=(tl.float32,) * 8, is_pure=True, pack=1)


@triton.jit
def _join8(v0, v1, v2, v3, v4, v5, v6, v7):
    """Eight [C] tensors -> [C, 2, 2, 2] whose flat order is 8c + i for v_i[c] (joins append a minor axis,
    so they are nested in bit-reversed order, as in _unpack8_along_last)."""
    return tl.join(tl.join(tl.join(v0, v4), tl.join(v2, v6)), tl.join(tl.join(v1, v5), tl.join(v3, v7)))


@triton.jit
def _load8(p, stride):
    """The eight loads p, p + stride, ..., p + 7 stride (GEMV_NH2's eight rows, inputs, scales)."""
    return (tl.load(p), tl.load(p + stride), tl.load(p + 2 * stride), tl.load(p + 3 * stride), tl.load(p + 4 * stride),
            tl.load(p + 5 * stride), tl.load(p + 6 * stride), tl.load(p + 7 * stride))


@triton.jit
def _load8_masked(p, stride, mask, other):
    """_load8 under one mask."""
    return (tl.load(p, mask=mask, other=other), tl.load(p + stride, mask=mask, other=other),
            tl.load(p + 2 * stride, mask=mask, other=other), tl.load(p + 3 * stride, mask=mask, other=other),
            tl.load(p + 4 * stride, mask=mask, other=other), tl.load(p + 5 * stride, mask=mask, other=other),
            tl.load(p + 6 * stride, mask=mask, other=other), tl.load(p + 7 * stride, mask=mask, other=other))


@triton.jit
def _awq_zero_pair(zw, j: tl.constexpr, base: tl.constexpr, zero_offset):
    """-(base + z / 128) for the zeros of fields j and j + 4 of ``zw`` (outputs 2j, 2j + 1), in the two
    fp16 halves of an int32; exact in fp16 for base 8 and 1/2."""
    lo = ((zw >> (4 * j)) & 15) + zero_offset
    hi = ((zw >> (4 * j + 16)) & 15) + zero_offset
    return (_fp16_bits((-base - lo.to(tl.float32) * 0.0078125).to(tl.float16))
            | (_fp16_bits((-base - hi.to(tl.float32) * 0.0078125).to(tl.float16)) << 16))


@triton.jit
def _awq_half2_zeros(zw, zero_offset):
    """An AWQ zero word -> the four zero operands of _awq_dot8_half2 (output pairs 0-3: the 1024 + q
    pairs take -(8 + z / 128), the 1024 + 16 q pairs -(1/2 + z / 128))."""
    return (_awq_zero_pair(zw, 0, 8.0, zero_offset), _awq_zero_pair(zw, 1, 0.5, zero_offset),
            _awq_zero_pair(zw, 2, 8.0, zero_offset), _awq_zero_pair(zw, 3, 0.5, zero_offset))


@triton.jit
def _fp16_bits(v):
    """fp16 tensor -> int32 holding its 16 bits (upper half zero)."""
    return v.to(tl.int16, bitcast=True).to(tl.int32) & 0xFFFF


@triton.jit
def _paired_halves(h16):
    """int32 with the 16-bit pattern ``h16`` (an integer tensor holding 0..65535) in both halves.
    Widened first, so a narrower integer input cannot lose its copy in the shift."""
    h = h16.to(tl.int32)
    return h | (h << 16)


@triton.jit
def _dequant_tile_asm(words, z, s, OUT: tl.constexpr):
    """[R, C] 4-bit words, zeros z [R] (true zero points), scales s [R] -> [R, C * 8] in OUT, the
    eight codes of word c at 8c .. 8c + 7 (joins keep them in one thread, see _unpack8_along_last)."""
    MAGIC: tl.constexpr = 0x6400 if OUT == tl.float16 else 0x4300
    zz = _paired_halves(MAGIC | z)[:, None]
    sbits = s.to(OUT).to(tl.int16, bitcast=True).to(tl.int32) & 0xFFFF
    ss = _paired_halves(sbits)[:, None]
    f0, f1, f2, f3, f4, f5, f6, f7 = _dequant8_pairs(words, zz, ss, OUT)
    c = _join8(f0, f1, f2, f3, f4, f5, f6, f7)
    R: tl.constexpr = words.shape[0]
    C: tl.constexpr = words.shape[1]
    return tl.reshape(c, (R, C * 8))


@triton.jit
def _fence_gpu(dep):
    """fence.acq_rel.gpu in every thread (``dep``: any scalar, the asm needs an operand)."""
    return tl.inline_asm_elementwise("fence.acq_rel.gpu;\n\tmov.u32 $0, 0;", "=r,r", [dep], dtype=tl.int32,
                                     is_pure=False, pack=1)


@triton.jit
def _finish(acc, y_ptrs, ws_ptrs, mask, cnt_ptr, tile, split_k, SPLIT: tl.constexpr):
    """Write a tile's result, or add it to the split-K workspace; the tile's last program writes."""
    if not SPLIT:
        tl.store(y_ptrs, acc.to(y_ptrs.dtype.element_ty), mask=mask)
    else:
        tl.atomic_add(ws_ptrs, acc, mask=mask, sem="relaxed")
        # Every thread fences its own partial sums at GPU scope before the tile's counter moves:
        # a barrier and one release by the thread that bumps the counter was not enough (the H200
        # showed 1-6% wrong tiles with split 2..9 and 4 warps: benchmarks/diag_paired.py), since
        # the other warps' reductions could still be in flight.
        _fence_gpu(split_k)
        tl.debug_barrier()
        arrived = tl.atomic_add(cnt_ptr + tile, 1, sem="acq_rel")
        if arrived == split_k - 1:
            # the other programs of the tile are done with it: take the sums where the atomics
            # were performed (an atomic exchange at L2, leaving zeros for the next launch). Plain loads
            # (.cg, or relaxed GPU-scope loads kept after the fence) and zeroing stores were 1-1.3 us
            # faster at M = 1 but gave wrong tiles now and then on the H200 (race test, M = 1024 split
            # 2: results/epilogue-load-race-tests-h200.log): the sums are read by atomics only
            _fence_gpu(split_k)
            total = tl.atomic_xchg(ws_ptrs, tl.zeros_like(acc), mask=mask, sem="acquire")
            tl.store(y_ptrs, total.to(y_ptrs.dtype.element_ty), mask=mask)
            tl.atomic_xchg(cnt_ptr + tile, 0, sem="relaxed")


# Split-K inside a thread-block cluster (Hopper): the programs of one output tile that split K are the
# CLUSTER CTAs of one cluster (launched with cluster dimension CLUSTER along grid axis 0). Each leaves
# its partial sums in its own shared memory, a cluster barrier orders them, and each CTA sums a slice of
# the tile over every CTA's shared memory (distributed shared memory: `mapa` + `ld.shared::cluster`)
# and stores it. No workspace, no atomics, no tile counter and no GPU-scope fence: the global-memory
# epilogue above cost 30-50 % of a small problem's time (benchmarks/diag_small.py). The partial sums go
# to the start of the kernel's dynamic shared memory (`global_smem`, which the loop no longer uses once a
# CTA barrier has passed; the launch reserves room for them), addressed from inline PTX.
SMEM_STORE_ASM = "{ .reg .u32 a; mov.u32 a, global_smem; add.u32 a, a, $1; st.shared.f32 [a], $2; mov.u32 $0, 0; }"
DSMEM_LOAD_ASM = ("{ .reg .u32 a, r; mov.u32 a, global_smem; add.u32 a, a, $1; mapa.shared::cluster.u32 r, a, $2; "
                  "ld.shared::cluster.f32 $0, [r]; }")
CLUSTER_SYNC_ASM = "barrier.cluster.arrive.release.aligned;\n\tbarrier.cluster.wait.acquire.aligned;\n\tmov.u32 $0, 0;"
_SMEM_STORE: tl.constexpr = tl.constexpr(SMEM_STORE_ASM)
_DSMEM_LOAD: tl.constexpr = tl.constexpr(DSMEM_LOAD_ASM)
_CLUSTER_SYNC: tl.constexpr = tl.constexpr(CLUSTER_SYNC_ASM)


@triton.jit
def _cluster_sync(dep):
    """Every thread of every CTA of the cluster arrives (release) and waits (acquire)."""
    return tl.inline_asm_elementwise(_CLUSTER_SYNC, "=r,r", [dep], dtype=tl.int32, is_pure=False, pack=1)


@triton.jit
def _cluster_finish(acc, e, y_ptr, rank, n0, m0, N, M, syn, sym, R: tl.constexpr, RC: tl.constexpr,
                    CLUSTER: tl.constexpr):
    """The cluster's split-K reduction (see above). ``acc``: this CTA's partial sums of the tile, whose
    element at flat index ``e`` = m * R + n (R outputs a row of x, RC elements in all) belongs at
    y[m0 + m, n0 + n] (outputs of one row are contiguous in y, so the final stores coalesce); ``rank``:
    this CTA's place in the cluster. CTA r sums elements [r RC / CLUSTER, (r + 1) RC / CLUSTER) over the
    cluster's CTAs in rank order (so the result does not depend on timing) and stores them."""
    # a sum over the whole CTA goes through shared memory, so the kernel declares `global_smem` even where
    # nothing else uses shared memory (PTX that names an undeclared symbol does not assemble)
    declared = tl.sum(tl.reshape(e, (RC,)), axis=0)
    tl.debug_barrier()  # every warp is past the loop's own use of shared memory
    tl.inline_asm_elementwise(_SMEM_STORE, "=r,r,f", [e * 4, acc], dtype=tl.int32, is_pure=False, pack=1)
    _cluster_sync(declared)
    SL: tl.constexpr = RC // CLUSTER
    f = rank * SL + tl.arange(0, SL)
    total = tl.zeros((SL,), dtype=tl.float32)
    for j in tl.static_range(CLUSTER):
        total += tl.inline_asm_elementwise(_DSMEM_LOAD, "=f,r,r", [f * 4, f * 0 + j], dtype=tl.float32,
                                           is_pure=False, pack=1)
    n = n0 + f % R
    m = m0 + f // R
    tl.store(y_ptr + n * syn + m * sym, total.to(y_ptr.dtype.element_ty), mask=(n < N) & (m < M))
    _cluster_sync(rank)  # no CTA leaves (its shared memory) while another may still read it


@triton.jit
def _x_pairs(xw):
    """x read as int32 words [R, 4] (x[8r .. 8r + 7]) -> four int32 [R]: the fp16 pairs (x[8r + j], x[8r + j + 4]),
    j = 0..3, that meet a word's codes in _dot8_half2."""
    R: tl.constexpr = xw.shape[0]
    pa, pb = tl.split(tl.reshape(xw, (R, 2, 2)))  # pairs 0, 2 and 1, 3
    w0, w2 = tl.split(pa)
    w1, w3 = tl.split(pb)
    return ((w0 & 0xFFFF) | (w2 << 16), ((w0 >> 16) & 0xFFFF) | (w2 & -65536),
            (w1 & 0xFFFF) | (w3 << 16), ((w1 >> 16) & 0xFFFF) | (w3 & -65536))


@triton.jit
def _half2_zeros(z):
    """The zero operands of _dot8_half2 for true zeros ``z``: -(16 + z / 64) and -(1 + z / 64) in both fp16
    halves (z / 64 is exact, and so are both sums in fp16)."""
    zf = z.to(tl.float32) * 0.015625
    return (_paired_halves(_fp16_bits((-16.0 - zf).to(tl.float16))),
            _paired_halves(_fp16_bits((-1.0 - zf).to(tl.float16))))


@triton.jit
def _gemv_finish(acc, y_ptr, ws_ptr, cnt_ptr, offs_n, n_ok, pid_n, pid_m, pid_k, tile, split_k, N, M, sym, syn,
                 SPLIT: tl.constexpr, BLOCK_N: tl.constexpr, CLUSTER: tl.constexpr):
    """A GEMV tile's sums [BLOCK_N] (output row pid_m) to y: in the cluster, through the workspace, or stored."""
    if CLUSTER > 1:
        _cluster_finish(acc, tl.arange(0, BLOCK_N), y_ptr, pid_k, pid_n * BLOCK_N, pid_m, N, M, syn, sym, BLOCK_N,
                        BLOCK_N, CLUSTER)
    else:
        _finish(acc, y_ptr + pid_m * sym + offs_n * syn, ws_ptr + pid_m * N + offs_n, n_ok & (pid_m < M),
                cnt_ptr, tile, split_k, SPLIT)


# kernel paths (host picks one):
GENERAL, GEMV_K, GEMV_N, DOT_K, DOT_KT, DOT_KTJ, GEMV_KJ, GEMV_H2, DOT_N = 0, 1, 2, 3, 4, 7, 9, 10, 11
GEMV_NH2 = 15  # AWQ words at M = 1 with fp16 x: GEMV_N in fp16 pairs (_awq_half2_asm)
DOT_GLUON = 12  # host-side path id: gluon_gemm.w4_dot_kernel (the weight born in mma.sync registers)
DOT_PIPE = 13  # host-side path id: gluon_pipe.w4_pipe_kernel (TMA ring, asynchronous wgmma from shared memory); only
# where a tuned entry says pipe (none does yet: it is not faster than DOT_KTJ, benchmarks/NOTES-gemm.md)
DOT_WS = 14  # host-side path id: gluon_ws.w4_ws_kernel (warp-specialized: load warp, dequantization warps, MMA warps)
DOT_RS = 16  # host-side path id: gluon_rs.w4_rs_kernel (transposed: weights dequantized into wgmma's A registers)
# paths whose K split can run inside a thread-block cluster (TileConfig.cluster, _cluster_finish)
CLUSTER_PATHS = (GEMV_H2, GEMV_NH2, DOT_KTJ, DOT_GLUON)
# tensor-core tiles of GPTQ-order layers go to the Gluon kernel where it applies (see _gluon_fits)
GLUON_DOT = True
M1_OTHER_BLOCK_N = 256  # the M = 1 tile of the paths other than GEMV_H2 (see triton_gemm())
M1_OTHER_PROGRAMS = 264  # ... and the programs its K split aims at (two an SM of the H200)
# the Gluon tile's warps split N only, so each holds all of x^T [BLOCK_K, BLOCK_M]: registers run out above
# 16 rows (forced 32/64-row tiles were 2x slower than DOT_KTJ at M = 64; a wgmma version was slower at 64, 256)
GLUON_MAX_BLOCK_M = 16
# AWQ layers at M > 1 take DOT_N (the tensor-core tile in field order) instead of the general path
# (2.5-4x faster on the H200: benchmarks/results/gemm-h200-session12-awqdot.log); a switch so benchmarks
# can time the general path in one process
AWQ_DOT = True
# DOT_N with the paired dequantization in output order (_awq_dequant_tile): 1.3-2.1x faster than DOT_N's
# field-order tile at M = 16-1024 on the H200 (benchmarks/results/gemm-h200-session13-awq-pairs.log); a
# switch so benchmarks and tests/test_awq_dot.py can run both in one process
AWQ_DOT_PAIRS = True
# GEMV_H2's multi-group step on a K the tuned step does not divide: the tuned step with a partial last step
# (masked) instead of the widest step that divides (Llama-2's K = 11008 is 86 groups: no power-of-two step
# of several groups divides it). tests/test_kernels.py runs it on and off
RAGGED_WIDE = True
# fp16 activations at M = 1 on the joined layout take GEMV_H2 (paired fp16 arithmetic, see
# _half2_dot_asm); a module switch so benchmarks can compare it with GEMV_KJ in one process
HALF2_GEMV = True
# AWQ layers at M = 1 with fp16 activations take GEMV_NH2 (the products in fp16 pairs) instead of GEMV_N
AWQ_HALF2 = True
# GEMV_NH2 takes GEMV_H2's tuned M = 1 tiles (multi-group K steps, clusters) instead of the 256-wide tile of
# the other M = 1 paths. Off: measured slower on three of four shapes (the 256-wide default: 10.8 / 22.9 /
# 22.8 / 61.1 graph µs, the best multi-group tile: 11.4 / 21.2 / 25.9 / 56.8; AWQ words hold eight columns,
# so a 16-64 column tile reads 8-32 byte row pieces; results/awq-gemv-wide-h200-session13.log)
AWQ_GEMV_TUNED = False
# AutoAWQ gemm layers at M > 1 take a tuned entry's gluon_rs tile (TileConfig.awq_rs, else gptq_rs as GPTQ-order
# layers do) instead of DOT_N. Measured in session 16 (results/gemm-h200-session16-*awq*.log, do_bench): M = 16
# 1.4-1.9x (awq_rs slots), M = 64 1.0-1.6x, M = 256 1.4-1.7x, M = 1024 1.5-1.9x faster than DOT_N
AWQ_RS = True
# gluon_rs tiles of at most this many tokens apply the scales to each step's wgmma sums in fp32 instead of to the
# dequantized weights (gluon_rs's POST: on a 16x128 tile 16 fp32 fma a step replace 64 paired multiplies; sm_90a
# loop 813 -> 715 instructions a two-step trip). Session 17 on the H200: the tuned M = 16 / 64 tiles swept with it
# on (`diag_rs.py --post 32`), 8192x28672 M = 16 68.7 -> 53.8 µs; 0 turns it off (`benchmarks/gemm.py --rs-post 0`)
RS_POST_MAX_BLOCK_M = 32
# gluon_rs tiles that split K leave their partial sums in slots of their own (gluon_rs._store_tile: plain stores,
# the last program adds them) instead of adding them into the workspace by atomics, where the slots of a launch
# take at most RS_SLOT_VALUES floats (64 MiB). Session 18 on the H200: 14336x4096 M = 256 with the same split
# tiles 81.4 -> 57.8 µs (128x64x128 split 2; the atomics, two an element at L2, were a third of the time)
RS_SPLIT_SLOTS = True
RS_SLOT_VALUES = 1 << 24
# dequantize the joined tensor-core paths two weights per instruction (inline PTX, see
# _dequant8_pairs); a module switch so benchmarks can compare both ways in one process
PAIRED_DEQUANT = True
# zero layouts whose paired dequantization is verified on the GPU. The canonical layout's int
# zeros (compressed-tensors, and any format without a layout of its own) gave wrong sums with it
# on the H200 (rel 3e3, benchmarks/results/diag-eval-layers-h200.log) while every other path was
# right; the cause is not found yet, so that layout dequantizes one code at a time.
PAIRED_ZEROS = {ZEROS_ALONG_N}
HALF2_ZEROS = {ZEROS_ALONG_N, ZEROS_ALONG_N_AWQ, ZEROS_ALONG_G, ZEROS_INT, ZEROS_MARLIN}  # zeros as integers, any layout


@triton.jit
def _w_gemm_kernel(x_ptr, qw_ptr, s_ptr, z_ptr, g_ptr, y_ptr, ws_ptr, cnt_ptr,
                   M, N, K, K_SPLIT, split_k, group_size, zero_offset,
                   sxm, sxk, sqa, sqb, ssg, ssn, sza, szb, sym, syn,
                   BITS: tl.constexpr, QLAYOUT: tl.constexpr, ZLAYOUT: tl.constexpr,
                   ACT_ORDER: tl.constexpr, PATH: tl.constexpr,
                   SPLIT: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr,
                   EVEN: tl.constexpr = False, PAIRED: tl.constexpr = False, SLAYOUT: tl.constexpr = 0,
                   CLUSTER: tl.constexpr = 1, RING: tl.constexpr = None, GROUPS: tl.constexpr = 1):
    if CLUSTER > 1:  # the K split runs across the CTAs of a cluster (_cluster_finish)
        pid_n = tl.program_id(0) // CLUSTER
        pid_k = tl.program_id(0) % CLUSTER
    else:
        pid_n = tl.program_id(0)
        pid_k = tl.program_id(2)
    pid_m = tl.program_id(1)
    tile = pid_m * tl.num_programs(0) + pid_n
    offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    n_ok = offs_n < N
    k_begin = pid_k * K_SPLIT
    XT: tl.constexpr = x_ptr.dtype.element_ty
    FMASK: tl.constexpr = (1 << BITS) - 1
    PER: tl.constexpr = 32 // BITS
    KW: tl.constexpr = BLOCK_K // PER

    if PATH == 1:
        # GEMV on codes along K: each word loaded once; field f of word row r meets x[PER*r + f]
        # (a strided gather from a vector that stays in L1). Scales and zeros are per word row.
        # Partial products stay per (row, column) and are reduced over K once, after the loop.
        acc2 = tl.zeros((KW, BLOCK_N), dtype=tl.float32)
        for kk in range(0, K_SPLIT, BLOCK_K):
            offs_kw = (k_begin + kk) // PER + tl.arange(0, KW)
            kw_ok = offs_kw < K // PER
            m2 = kw_ok[:, None] & n_ok[None, :]
            words = tl.load(qw_ptr + offs_kw[:, None] * sqa + offs_n[None, :] * sqb, mask=m2, other=0)
            g = (offs_kw * PER) // group_size  # a word's PER inputs share a group (group % PER == 0)
            z = _as_f32_int(_zero_at(z_ptr, g[:, None], offs_n[None, :], m2, sza, szb, zero_offset, BITS, ZLAYOUT))
            s = tl.load(s_ptr + g[:, None] * ssg + offs_n[None, :] * ssn, mask=m2, other=0.0).to(tl.float32)
            part = tl.zeros((KW, BLOCK_N), dtype=tl.float32)
            for f in tl.static_range(PER):
                x = tl.load(x_ptr + pid_m * sxm + (offs_kw * PER + f) * sxk, mask=kw_ok, other=0.0).to(tl.float32)
                part += x[:, None] * (_as_f32_int((words >> (f * BITS)) & FMASK) - z)
            acc2 += part * s
        acc = tl.sum(acc2, axis=0)
        _finish(acc, y_ptr + pid_m * sym + offs_n * syn, ws_ptr + pid_m * N + offs_n, n_ok & (pid_m < M),
                cnt_ptr, tile, split_k, SPLIT)
    elif PATH == 2:
        # GEMV on AutoAWQ gemm words: word (k, c) holds columns 8c + [0,2,4,6,1,3,5,7]; the eight
        # fields stay on their own axis and are stored to those columns (the tile is in one group)
        NW: tl.constexpr = BLOCK_N // 8
        j = tl.arange(0, 8)
        cols = (pid_n * NW + tl.arange(0, NW))[:, None] * 8 + ((j % 4) * 2 + j // 4)[None, :]  # [NW, 8]
        c_ok = cols < N
        offs_c = pid_n * NW + tl.arange(0, NW)
        acc3 = tl.zeros((BLOCK_K, NW, 8), dtype=tl.float32)
        for kk in range(0, K_SPLIT, BLOCK_K):
            k0 = k_begin + kk
            offs_k = k0 + tl.arange(0, BLOCK_K)
            k_ok = offs_k < K
            words = tl.load(qw_ptr + offs_k[:, None] * sqa + offs_c[None, :] * sqb,
                            mask=k_ok[:, None] & (offs_c[None, :] < N // 8), other=0)
            g = k0 // group_size
            gm = c_ok & (k0 < K)
            z = _zero_at(z_ptr, g, cols, gm, sza, szb, zero_offset, BITS, ZLAYOUT)
            s = tl.load(s_ptr + g * ssg + cols * ssn, mask=gm, other=0.0).to(tl.float32)
            x = tl.load(x_ptr + pid_m * sxm + offs_k * sxk, mask=k_ok, other=0.0).to(tl.float32)
            q = (words[:, :, None] >> (j * 4)[None, None, :]) & 15
            w = (_as_f32_int(q) - _as_f32_int(z)[None, :, :]) * s[None, :, :]
            acc3 += x[:, None, None] * w
        acc = tl.sum(acc3, axis=0)
        _finish(acc, y_ptr + pid_m * sym + cols * syn, ws_ptr + pid_m * N + cols, c_ok & (pid_m < M),
                cnt_ptr, tile, split_k, SPLIT)
    elif PATH == 11:
        # tensor-core tile on AutoAWQ gemm words (4-bit, packed along N). The tile's columns stay in field
        # order: slot 8c + j holds field j of word column c, i.e. output 8c + [0,2,4,6,1,3,5,7][j] (GEMV_N's
        # map). Scales are gathered in that order, the packed zeros share the interleave (_zero_at reads
        # the same field), and the sums are stored to the permuted columns: no code moves between threads.
        # The tile lies in one group.
        # PAIRED (AWQ_DOT_PAIRS): each word's eight weights made two per instruction in output order
        # (_awq_dequant_tile) and stored to contiguous columns; scales read as int32 pairs (unit column stride)
        NW: tl.constexpr = BLOCK_N // 8
        j = tl.arange(0, 8)
        offs_c = pid_n * NW + tl.arange(0, NW)
        w_ok = offs_c < N // 8
        if PAIRED:
            cols = offs_n
        else:
            cols = tl.reshape(offs_c[:, None] * 8 + ((j % 4) * 2 + j // 4)[None, :], (BLOCK_N,))
        c_ok = cols < N
        acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
        for kk in range(0, tl.minimum(K_SPLIT, K - k_begin), BLOCK_K):  # a tile past K has no group
            k0 = k_begin + kk
            offs_k = k0 + tl.arange(0, BLOCK_K)
            k_ok = offs_k < K
            words = tl.load(qw_ptr + offs_k[:, None] * sqa + offs_c[None, :] * sqb,
                            mask=k_ok[:, None] & w_ok[None, :], other=0)  # [BK, NW]
            g = k0 // group_size
            if PAIRED:
                zw = tl.load(z_ptr + g * sza + offs_c * szb, mask=w_ok, other=0)
                s2_ptrs = s_ptr.to(tl.pointer_type(tl.int32), bitcast=True) + (g * ssg) // 2 + offs_c * 4
                w = _awq_dequant_tile(words, zw, s2_ptrs, w_ok, zero_offset, XT)
            else:
                q = tl.reshape((words[:, :, None] >> (j * 4)[None, None, :]) & 15, (BLOCK_K, BLOCK_N))
                z = _zero_at(z_ptr, g, cols, c_ok, sza, szb, zero_offset, BITS, ZLAYOUT)
                s = tl.load(s_ptr + g * ssg + cols * ssn, mask=c_ok, other=0.0)
                w = _dequant(q, z[None, :], s[None, :], XT)
            x = tl.load(x_ptr + offs_m[:, None] * sxm + offs_k[None, :] * sxk,
                        mask=(offs_m[:, None] < M) & k_ok[None, :], other=0.0)
            acc = tl.dot(x, w, acc)
        mask = (offs_m[:, None] < M) & c_ok[None, :]
        _finish(acc, y_ptr + offs_m[:, None] * sym + cols[None, :] * syn, ws_ptr + offs_m[:, None] * N + cols[None, :],
                mask, cnt_ptr, tile, split_k, SPLIT)
    elif PATH == 3:
        # tensor-core tile on codes along K. The tile's K order is permuted to (field, word row):
        # row f*KW + r of the weight tile is field f of word row r, and x's tile is permuted the
        # same way in registers, so every word is loaded once and x is loaded contiguously.
        fields = tl.arange(0, PER)
        acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
        for kk in range(0, K_SPLIT, BLOCK_K):
            k0 = k_begin + kk
            offs_kw = k0 // PER + tl.arange(0, KW)
            kw_ok = offs_kw < K // PER
            m2 = kw_ok[:, None] & n_ok[None, :]
            words = tl.load(qw_ptr + offs_kw[:, None] * sqa + offs_n[None, :] * sqb, mask=m2, other=0)
            if ACT_ORDER:
                g = tl.load(g_ptr + offs_kw[None, :] * PER + fields[:, None], mask=kw_ok[None, :], other=0)  # [PER, KW]
                m3 = m2[None, :, :]
                z = _zero_at(z_ptr, g[:, :, None], offs_n[None, None, :], m3, sza, szb, zero_offset, BITS, ZLAYOUT)
                s = tl.load(s_ptr + g[:, :, None] * ssg + offs_n[None, None, :] * ssn, mask=m3, other=0.0)
            else:
                g = (offs_kw * PER) // group_size
                z = _zero_at(z_ptr, g[:, None], offs_n[None, :], m2, sza, szb, zero_offset, BITS, ZLAYOUT)[None, :, :]
                s = tl.load(s_ptr + g[:, None] * ssg + offs_n[None, :] * ssn, mask=m2, other=0.0)[None, :, :]
            q = (words[None, :, :] >> (fields * BITS)[:, None, None]) & FMASK  # [PER, KW, BLOCK_N]
            w = tl.reshape(_dequant(q, z, s, XT), (BLOCK_K, BLOCK_N))
            offs_k = k0 + tl.arange(0, BLOCK_K)
            x = tl.load(x_ptr + offs_m[:, None] * sxm + offs_k[None, :] * sxk,
                        mask=(offs_m[:, None] < M) & (offs_k[None, :] < K), other=0.0)
            x = tl.reshape(tl.permute(tl.reshape(x, (BLOCK_M, KW, PER)), (0, 2, 1)), (BLOCK_M, BLOCK_K))
            acc = tl.dot(x, w, acc)
        mask = (offs_m[:, None] < M) & n_ok[None, :]
        _finish(acc, y_ptr + offs_m[:, None] * sym + offs_n[None, :] * syn, ws_ptr + offs_m[:, None] * N + offs_n[None, :],
                mask, cnt_ptr, tile, split_k, SPLIT)
    elif PATH == 4:
        # tensor-core tile computed transposed, y^T = W x^T: the dequantized weight is the A
        # operand, built in registers as [BLOCK_N, BLOCK_K] in natural K order (word row r, field
        # f -> input PER*r + f: a reshape of the two trailing axes), and x^T is the B operand
        acc = tl.zeros((BLOCK_N, BLOCK_M), dtype=tl.float32)
        fields = tl.arange(0, PER)
        for kk in range(0, K_SPLIT, BLOCK_K):
            k0 = k_begin + kk
            offs_kw = k0 // PER + tl.arange(0, KW)
            kw_ok = offs_kw < K // PER
            m2 = n_ok[:, None] & kw_ok[None, :]
            words = tl.load(qw_ptr + offs_kw[None, :] * sqa + offs_n[:, None] * sqb, mask=m2, other=0)  # [BN, KW]
            g = (offs_kw * PER) // group_size
            z = _zero_at(z_ptr, g[None, :], offs_n[:, None], m2, sza, szb, zero_offset, BITS, ZLAYOUT)
            s = tl.load(s_ptr + g[None, :] * ssg + offs_n[:, None] * ssn, mask=m2, other=0.0)
            q = (words[:, :, None] >> (fields * BITS)[None, None, :]) & FMASK  # [BN, KW, PER]
            w = tl.reshape(_dequant(q, z[:, :, None], s[:, :, None], XT), (BLOCK_N, BLOCK_K))
            offs_k = k0 + tl.arange(0, BLOCK_K)
            xt = tl.load(x_ptr + offs_k[:, None] * sxk + offs_m[None, :] * sxm,
                         mask=(offs_k[:, None] < K) & (offs_m[None, :] < M), other=0.0)  # [BK, BM]
            acc = tl.dot(w, xt, acc)
        mask = n_ok[:, None] & (offs_m[None, :] < M)
        _finish(acc, y_ptr + offs_n[:, None] * syn + offs_m[None, :] * sym, ws_ptr + offs_m[None, :] * N + offs_n[:, None],
                mask, cnt_ptr, tile, split_k, SPLIT)
    elif PATH == 7:
        # tensor-core tile on 4-bit codes along K, computed transposed (y^T = W x^T: the weight is
        # wgmma's A operand). Each word is loaded once and its eight codes stay in one thread
        # (_unpack8_along_last), so the dequantized [BLOCK_N, BLOCK_K] tile is built without any
        # exchange between threads; the tile lies in one group, so scales and zeros are one row.
        acc = tl.zeros((BLOCK_N, BLOCK_M), dtype=tl.float32)
        for kk in range(0, tl.minimum(K_SPLIT, K - k_begin), BLOCK_K):  # a tile past K has no group
            k0 = k_begin + kk
            offs_kw = k0 // PER + tl.arange(0, KW)
            g = k0 // group_size
            z = _zero_at(z_ptr, g, offs_n, n_ok, sza, szb, zero_offset, BITS, ZLAYOUT)
            s = tl.load(s_ptr + g * ssg + offs_n * ssn, mask=n_ok, other=0.0)
            if EVEN:
                words = tl.load(qw_ptr + offs_kw[None, :] * sqa + offs_n[:, None] * sqb)  # [BN, KW]
            else:
                words = tl.load(qw_ptr + offs_kw[None, :] * sqa + offs_n[:, None] * sqb,
                                mask=n_ok[:, None] & (offs_kw < K // PER)[None, :], other=0)
            if PAIRED:
                w = _dequant_tile_asm(words, z, s, XT)  # [BN, BK]
            else:
                w = _dequant(_unpack8_along_last(words, BITS), z[:, None], s[:, None], XT)
            offs_k = k0 + tl.arange(0, BLOCK_K)
            # x is loaded as stored ([BM, BK], K contiguous: vector loads the pipeliner stages in
            # shared memory) and transposed there; loading x^T directly gave scalar loads, unpipelined
            if EVEN:
                x = tl.load(x_ptr + offs_m[:, None] * sxm + offs_k[None, :] * sxk, mask=(offs_m < M)[:, None], other=0.0)
            else:
                x = tl.load(x_ptr + offs_m[:, None] * sxm + offs_k[None, :] * sxk,
                            mask=(offs_m[:, None] < M) & (offs_k[None, :] < K), other=0.0)
            acc = tl.dot(w, tl.trans(x), acc)
        if CLUSTER > 1:
            e = tl.arange(0, BLOCK_N)[:, None] + tl.arange(0, BLOCK_M)[None, :] * BLOCK_N
            _cluster_finish(acc, e, y_ptr, pid_k, pid_n * BLOCK_N, pid_m * BLOCK_M, N, M, syn, sym, BLOCK_N,
                            BLOCK_N * BLOCK_M, CLUSTER)
        else:
            mask = n_ok[:, None] & (offs_m[None, :] < M)
            _finish(acc, y_ptr + offs_n[:, None] * syn + offs_m[None, :] * sym,
                    ws_ptr + offs_m[None, :] * N + offs_n[:, None], mask, cnt_ptr, tile, split_k, SPLIT)
    elif PATH == 9:
        # GEMV on 4-bit codes along K: each word loaded once, its eight codes kept in one thread
        # next to the eight inputs they meet (one vector load of x); the tile lies in one group,
        # so s * (sum x q - z sum x) is applied per column once per tile
        acc = tl.zeros((BLOCK_N,), dtype=tl.float32)
        for kk in range(0, tl.minimum(K_SPLIT, K - k_begin), BLOCK_K):  # a tile past K has no group
            k0 = k_begin + kk
            offs_kw = k0 // PER + tl.arange(0, KW)
            offs_k = k0 + tl.arange(0, BLOCK_K)
            g = k0 // group_size
            if EVEN:
                words = tl.load(qw_ptr + offs_kw[None, :] * sqa + offs_n[:, None] * sqb)  # [BN, KW]
                x = tl.load(x_ptr + pid_m * sxm + offs_k * sxk).to(tl.float32)
                z = _zero_at(z_ptr, g, offs_n, n_ok, sza, szb, zero_offset, BITS, ZLAYOUT)
                s = tl.load(s_ptr + g * ssg + offs_n * ssn).to(tl.float32)
            else:
                kw_ok = offs_kw < K // PER
                words = tl.load(qw_ptr + offs_kw[None, :] * sqa + offs_n[:, None] * sqb,
                                mask=n_ok[:, None] & kw_ok[None, :], other=0)
                x = tl.load(x_ptr + pid_m * sxm + offs_k * sxk, mask=offs_k < K, other=0.0).to(tl.float32)
                z = _zero_at(z_ptr, g, offs_n, n_ok, sza, szb, zero_offset, BITS, ZLAYOUT)
                s = tl.load(s_ptr + g * ssg + offs_n * ssn, mask=n_ok, other=0.0).to(tl.float32)
            # (2^23 + q) - (2^23 + z) is q - z exactly, in two float ops (no int->float convert)
            qz = _as_f32_int(_unpack8_along_last(words, BITS)) - _as_f32_int(z)[:, None]
            acc += tl.sum(qz * x[None, :], axis=1) * s
        _finish(acc, y_ptr + pid_m * sym + offs_n * syn, ws_ptr + pid_m * N + offs_n, n_ok & (pid_m < M),
                cnt_ptr, tile, split_k, SPLIT)
    elif PATH == 10 and GROUPS > 1:
        # GEMV_H2 with a K step of GROUPS whole groups: one step loads GROUPS times the bytes of a one-group
        # step, so few steps (or one) keep a CTA's whole share of the weight in flight without a K split
        # across CTAs and its epilogue. The tile is [BLOCK_N, GROUPS, KWG]: column, group of the step, word
        # row within the group; scales and zeros are [BLOCK_N, GROUPS]. Not EVEN (RAGGED_WIDE): the last
        # step of a program's K range may be partial; rows past it meet x = 0 and scale 0
        KWG: tl.constexpr = KW // GROUPS
        gi = tl.arange(0, GROUPS)
        wrow = gi[:, None] * KWG + tl.arange(0, KWG)[None, :]  # [GROUPS, KWG]: word row within the step
        k_end = tl.minimum(k_begin + K_SPLIT, K)
        acc3 = tl.zeros((BLOCK_N, GROUPS, KWG), dtype=tl.float32)
        for kk in tl.range(0, tl.minimum(K_SPLIT, K - k_begin), BLOCK_K, num_stages=RING):
            k0 = k_begin + kk
            xw_ptrs = (x_ptr.to(tl.pointer_type(tl.int32), bitcast=True) + (pid_m * sxm + k0) // 2
                       + 4 * tl.arange(0, KW)[:, None] + tl.arange(0, 4)[None, :])
            w_ptrs = qw_ptr + (k0 // PER + wrow)[None, :, :] * sqa + offs_n[:, None, None] * sqb
            g = k0 // group_size + gi  # [GROUPS]
            s_ptrs = s_ptr + g[None, :] * ssg + offs_n[:, None] * ssn
            if EVEN:
                xw = tl.load(xw_ptrs)
                words = tl.load(w_ptrs)
                s = tl.load(s_ptrs).to(tl.float32)  # [BLOCK_N, GROUPS]
                z_ok = n_ok[:, None]
            else:
                xw = tl.load(xw_ptrs, mask=(k0 + PER * tl.arange(0, KW) < k_end)[:, None], other=0)
                words = tl.load(w_ptrs, mask=(k0 + PER * wrow < k_end)[None, :, :] & n_ok[:, None, None], other=0)
                z_ok = n_ok[:, None] & (k0 + gi * group_size < k_end)[None, :]
                s = tl.load(s_ptrs, mask=z_ok, other=0.0).to(tl.float32)
            x0, x1, x2, x3 = _x_pairs(xw)
            x0 = tl.reshape(x0, (1, GROUPS, KWG))
            x1 = tl.reshape(x1, (1, GROUPS, KWG))
            x2 = tl.reshape(x2, (1, GROUPS, KWG))
            x3 = tl.reshape(x3, (1, GROUPS, KWG))
            z = _zero_at(z_ptr, g[None, :], offs_n[:, None], z_ok, sza, szb, zero_offset, BITS, ZLAYOUT)
            zl, zh = _half2_zeros(z)
            acc3 += _dot8_half2(words, zl[:, :, None], zh[:, :, None], x0, x1, x2, x3) * (s * 64.0)[:, :, None]
        _gemv_finish(tl.sum(tl.sum(acc3, axis=2), axis=1), y_ptr, ws_ptr, cnt_ptr, offs_n, n_ok, pid_n, pid_m, pid_k,
                     tile, split_k, N, M, sym, syn, SPLIT, BLOCK_N, CLUSTER)
    elif PATH == 10:
        # GEMV_KJ's tiles with the arithmetic in fp16 pairs: the eight products of a word are summed
        # in fp16x2 (exact (q - z) / 64, one rounding per FMA) and only that partial goes to fp32
        acc2 = tl.zeros((BLOCK_N, KW), dtype=tl.float32)  # reduced over K once, after the loop
        # RING (TileConfig.ring: the tile's num_stages): the words, x, scales and zeros of the next RING - 1
        # steps come through a ring of shared memory (cp.async); without it Triton pipelines none of these
        # loads (no dot uses them) and each step waits out its own loads. None: as plain range()
        for kk in tl.range(0, tl.minimum(K_SPLIT, K - k_begin), BLOCK_K, num_stages=RING):  # past K: no group
            k0 = k_begin + kk
            offs_kw = k0 // PER + tl.arange(0, KW)
            g = k0 // group_size
            # x as int32 pairs (x[2m], x[2m + 1]), one 16-byte load per word row (x contiguous along K)
            xw_ptrs = (x_ptr.to(tl.pointer_type(tl.int32), bitcast=True) + (pid_m * sxm + k0) // 2
                       + 4 * tl.arange(0, KW)[:, None] + tl.arange(0, 4)[None, :])
            if EVEN:
                xw = tl.load(xw_ptrs)
            else:
                xw = tl.load(xw_ptrs, mask=(offs_kw < K // PER)[:, None], other=0)
            x0, x1, x2, x3 = _x_pairs(xw)
            if EVEN:
                words = tl.load(qw_ptr + offs_kw[None, :] * sqa + offs_n[:, None] * sqb)  # [BN, KW]
                s = tl.load(s_ptr + g * ssg + offs_n * ssn).to(tl.float32)
            else:
                kw_ok = offs_kw < K // PER
                words = tl.load(qw_ptr + offs_kw[None, :] * sqa + offs_n[:, None] * sqb,
                                mask=n_ok[:, None] & kw_ok[None, :], other=0)
                s = tl.load(s_ptr + g * ssg + offs_n * ssn, mask=n_ok, other=0.0).to(tl.float32)
            z = _zero_at(z_ptr, g, offs_n, n_ok, sza, szb, zero_offset, BITS, ZLAYOUT)
            zl, zh = _half2_zeros(z)
            part = _dot8_half2(words, zl[:, None], zh[:, None], x0[None, :], x1[None, :], x2[None, :], x3[None, :])
            acc2 += part * (s * 64.0)[:, None]  # the partials are sums of x (q - z) / 64
        _gemv_finish(tl.sum(acc2, axis=1), y_ptr, ws_ptr, cnt_ptr, offs_n, n_ok, pid_n, pid_m, pid_k, tile, split_k,
                     N, M, sym, syn, SPLIT, BLOCK_N, CLUSTER)
    elif PATH == 15:
        # GEMV on AutoAWQ gemm words in fp16 pairs (fp16 x, 4-bit): a thread takes eight consecutive rows
        # of a word column, whose output pairs (2j, 2j + 1) come out of one lop3 each (_awq_half2_asm); the
        # rows' products are summed in fp16x2, then in fp32 times 128 s. A K step is GROUPS whole groups
        # (GROUPS > 1: GEMV_H2's multi-group step, a CTA's share of the weight in flight in one or a few steps,
        # so K needs no split across programs) or a part of one. Tile [GROUPS, RG, NW]: group of the step, row
        # octet of the group, word column; eight accumulators, one an output of the word; zeros and scales
        # [GROUPS, NW]. Not EVEN: the last step of a program's range may be partial (x = 0 and words 0 past it;
        # K % 8 == 0, the caller checks, so a row octet is in or out as a whole). With GROUPS = 1 the EVEN PTX
        # has the opcode counts of the former one-group branch, the masked one four scalar ops more (CPU probe)
        NW: tl.constexpr = BLOCK_N // 8
        RG: tl.constexpr = BLOCK_K // 8 // GROUPS
        offs_c = pid_n * NW + tl.arange(0, NW)
        c_ok = offs_c < N // 8
        gi = tl.arange(0, GROUPS)
        r8 = (gi[:, None] * RG + tl.arange(0, RG)[None, :]) * 8  # [GROUPS, RG]: row within the step
        k_end = tl.minimum(k_begin + K_SPLIT, K)
        a0 = tl.zeros((GROUPS, RG, NW), dtype=tl.float32)
        a1 = tl.zeros((GROUPS, RG, NW), dtype=tl.float32)
        a2 = tl.zeros((GROUPS, RG, NW), dtype=tl.float32)
        a3 = tl.zeros((GROUPS, RG, NW), dtype=tl.float32)
        a4 = tl.zeros((GROUPS, RG, NW), dtype=tl.float32)
        a5 = tl.zeros((GROUPS, RG, NW), dtype=tl.float32)
        a6 = tl.zeros((GROUPS, RG, NW), dtype=tl.float32)
        a7 = tl.zeros((GROUPS, RG, NW), dtype=tl.float32)
        for kk in tl.range(0, tl.minimum(K_SPLIT, K - k_begin), BLOCK_K, num_stages=RING):
            k0 = k_begin + kk
            g = k0 // group_size + gi  # [GROUPS]
            rows = k0 + r8
            wp = qw_ptr + rows[:, :, None] * sqa + offs_c[None, None, :] * sqb
            xp = x_ptr + pid_m * sxm + rows * sxk
            zp = z_ptr + g[:, None] * sza + offs_c[None, :] * szb
            sp = s_ptr + g[:, None] * ssg + (offs_c * 8)[None, :] * ssn
            if EVEN:
                zw = tl.load(zp)
                w0, w1, w2, w3, w4, w5, w6, w7 = _load8(wp, sqa)
                x0, x1, x2, x3, x4, x5, x6, x7 = _load8(xp, sxk)
                s0, s1, s2, s3, s4, s5, s6, s7 = _load8(sp, ssn)
            else:
                r_ok = rows < k_end
                g_ok = (k0 + gi * group_size < k_end)[:, None] & c_ok[None, :]
                zw = tl.load(zp, mask=g_ok, other=0)
                w0, w1, w2, w3, w4, w5, w6, w7 = _load8_masked(wp, sqa, r_ok[:, :, None] & c_ok[None, None, :], 0)
                x0, x1, x2, x3, x4, x5, x6, x7 = _load8_masked(xp, sxk, r_ok, 0.0)
                s0, s1, s2, s3, s4, s5, s6, s7 = _load8_masked(sp, ssn, g_ok, 0.0)
            z0, z1, z2, z3 = _awq_half2_zeros(zw, zero_offset)
            o0, o1, o2, o3, o4, o5, o6, o7 = _awq_dot8_half2(
                w0, w1, w2, w3, w4, w5, w6, w7, x0[:, :, None], x1[:, :, None], x2[:, :, None], x3[:, :, None],
                x4[:, :, None], x5[:, :, None], x6[:, :, None], x7[:, :, None],
                z0[:, None, :], z1[:, None, :], z2[:, None, :], z3[:, None, :])
            a0 += o0 * (s0.to(tl.float32) * 128.0)[:, None, :]
            a1 += o1 * (s1.to(tl.float32) * 128.0)[:, None, :]
            a2 += o2 * (s2.to(tl.float32) * 128.0)[:, None, :]
            a3 += o3 * (s3.to(tl.float32) * 128.0)[:, None, :]
            a4 += o4 * (s4.to(tl.float32) * 128.0)[:, None, :]
            a5 += o5 * (s5.to(tl.float32) * 128.0)[:, None, :]
            a6 += o6 * (s6.to(tl.float32) * 128.0)[:, None, :]
            a7 += o7 * (s7.to(tl.float32) * 128.0)[:, None, :]
        v = _join8(tl.sum(tl.sum(a0, axis=1), axis=0), tl.sum(tl.sum(a1, axis=1), axis=0),
                   tl.sum(tl.sum(a2, axis=1), axis=0), tl.sum(tl.sum(a3, axis=1), axis=0),
                   tl.sum(tl.sum(a4, axis=1), axis=0), tl.sum(tl.sum(a5, axis=1), axis=0),
                   tl.sum(tl.sum(a6, axis=1), axis=0), tl.sum(tl.sum(a7, axis=1), axis=0))
        _gemv_finish(tl.reshape(v, (BLOCK_N,)), y_ptr, ws_ptr, cnt_ptr, offs_n, n_ok, pid_n, pid_m, pid_k, tile,
                     split_k, N, M, sym, syn, SPLIT, BLOCK_N, CLUSTER)
    else:
        # general: any layout, any group map; codes addressed per element (duplicate word loads)
        if BLOCK_M > 1:
            acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
        else:
            acc = tl.zeros((BLOCK_K, BLOCK_N), dtype=tl.float32)
        for kk in range(0, K_SPLIT, BLOCK_K):
            k0 = k_begin + kk
            offs_k = k0 + tl.arange(0, BLOCK_K)
            k_ok = offs_k < K
            q = _codes_tile(qw_ptr, offs_k, offs_n, N, K, sqa, sqb, BITS, QLAYOUT)
            if ACT_ORDER:
                g = tl.load(g_ptr + offs_k, mask=k_ok, other=0)
            else:
                g = offs_k // group_size
            gm = k_ok[:, None] & n_ok[None, :]
            z = _zero_at(z_ptr, g[:, None], offs_n[None, :], gm, sza, szb, zero_offset, BITS, ZLAYOUT)
            s = tl.load(s_ptr + g[:, None] * ssg + _marlin_scale_col(offs_n, SLAYOUT)[None, :] * ssn, mask=gm, other=0.0)
            w = _dequant(q, z, s, XT)
            if BLOCK_M > 1:
                x = tl.load(x_ptr + offs_m[:, None] * sxm + offs_k[None, :] * sxk,
                            mask=(offs_m[:, None] < M) & k_ok[None, :], other=0.0)
                acc = tl.dot(x, w, acc)
            else:
                x = tl.load(x_ptr + pid_m * sxm + offs_k * sxk, mask=k_ok & (pid_m < M), other=0.0)
                acc += x.to(tl.float32)[:, None] * w.to(tl.float32)
        if BLOCK_M == 1:
            acc = tl.sum(acc, axis=0)[None, :]
        mask = (offs_m[:, None] < M) & n_ok[None, :]
        _finish(acc, y_ptr + offs_m[:, None] * sym + offs_n[None, :] * syn, ws_ptr + offs_m[:, None] * N + offs_n[None, :],
                mask, cnt_ptr, tile, split_k, SPLIT)


def _cdiv(a: int, b: int) -> int:
    return -(-a // b)  # triton.cdiv is a JIT function: calling it from Python costs microseconds


_workspaces: dict[tuple, tuple[torch.Tensor, torch.Tensor]] = {}


def stream_launch(tiles: int, steps: int, per_sm: int, sms: int, tile_values: int,
                  tail: int = 0) -> tuple[int, int, int] | None:
    """A stream-K launch's programs, slots a streamed tile and tiles run whole first (gluon_rs.stream_programs,
    stream_slots, stream_whole_tiles with TileConfig.stream_tail), or None where it cannot be launched so: its
    slots would pass RS_SLOT_VALUES, or (s + 1) * programs would overflow the kernel's int32 step arithmetic. The
    dispatch then launches the tile one tile a program (session 20: the M = 1024 4096x14336 stream sweep's 256x128
    tiles needed 29M slot values and so timed the one-tile kernel). Only the streamed tiles have slots."""
    from .gluon_rs import stream_programs, stream_slots, stream_whole_tiles
    programs = stream_programs(tiles, steps, per_sm, sms)
    whole = stream_whole_tiles(tiles, steps, programs, tail)
    streamed = tiles - whole
    parts = stream_slots(steps, streamed * steps, programs) if streamed else 1
    if streamed * parts * tile_values > RS_SLOT_VALUES or (tiles * steps + 1) * programs >= 1 << 31:
        return None
    return programs, parts, whole


@functools.lru_cache(maxsize=None)
def _sm_count(device_index: int) -> int:
    return torch.cuda.get_device_properties(device_index).multi_processor_count


def _workspace(device: torch.device, stream: int, values: int, tiles: int,
               slots: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Per device and stream, zero-filled once; every launch leaves it zeroed again. ``slots``: the slot workspace
    of gluon_rs's K splits (RS_SPLIT_SLOTS), a buffer of its own (never cleared: each slot is written before read)."""
    key = (device, stream, slots)
    ws, cnt = _workspaces.get(key, (None, None))
    if ws is None or ws.numel() < values or cnt.numel() < tiles:
        ws = torch.zeros(max(values, 1 << 16), dtype=torch.float32, device=device)
        cnt = torch.zeros(max(tiles, 1 << 12), dtype=torch.int32, device=device)
        _workspaces[key] = (ws, cnt)
    return ws, cnt


def supports(w: PackedWeight) -> str | None:
    """None when the Triton kernel can run this layer, else why not."""
    if w.bits not in SUPPORTED_BITS:
        return f"{w.bits}-bit fields straddle int32 words"
    if w.codes == CODES_ALONG_N_AWQ and w.bits != 4:
        return "AWQ layouts are 4-bit"
    if w.codes == CODES_MARLIN and (w.bits not in (4, 8) or w.in_features % 16 or w.out_features % 64):
        return "Marlin tiles hold 4/8-bit codes, K % 16 == 0, N % 64 == 0"
    return None


def _joined_block_k(w: PackedWeight, block_k: int, tensor_core: bool) -> int | None:
    """The K tile of the joined paths (GEMV_KJ, DOT_KTJ) for this layer, or None where they cannot
    run it: 4-bit codes along K, sequential groups, and a power-of-two K tile inside one group."""
    if w.codes != CODES_ALONG_K or w.bits != 4 or w.g_idx is not None:
        return None
    gs = w.effective_group_size
    bk = min(block_k, gs & -gs)  # the largest power of two dividing the group, at most the tuned tile
    return bk if bk >= (16 if tensor_core else 8) else None


def _awq_rs_block_k(w: PackedWeight, block_k: int) -> int | None:
    """gluon_rs's K tile for an AutoAWQ gemm layer (a power of two inside one group, 32 or more), or None where
    it cannot read the layer's words."""
    if w.codes != CODES_ALONG_N_AWQ or w.zeros_layout != ZEROS_ALONG_N_AWQ or w.bits != 4 or w.g_idx is not None:
        return None
    bk = min(block_k, w.effective_group_size & -w.effective_group_size)
    return bk if bk >= 32 else None


def _gluon_fits(w: PackedWeight, x2: torch.Tensor, y: torch.Tensor, block_m: int, block_n: int, block_k: int) -> bool:
    """Whether gluon_gemm.w4_dot_kernel runs this call: GPTQ zeros, whole tiles, unit inner strides,
    a wgmma-sized M tile and an accumulator that fits the registers of 4 warps."""
    if w.zeros_layout != ZEROS_ALONG_N or w.zero_offset < 0 or w.out_features % block_n or block_n % 64:
        return False
    if block_k < 32 or w.in_features % block_k or w.effective_group_size % block_k:
        return False
    if block_m % 16 or block_m > GLUON_MAX_BLOCK_M or block_m * block_n > 128 * 128:
        return False
    if x2.stride(1) != 1 or y.stride(1) != 1 or any(t.stride(1) != 1 for t in (w.qweight, w.scales, w.zeros)):
        return False
    return _gluon_available()


def _pipe_fits(w: PackedWeight, x2: torch.Tensor, y: torch.Tensor, cfg: TileConfig, block_k: int, ws: bool = False,
               rs: bool = False) -> bool:
    """Whether gluon_pipe.w4_pipe_kernel (gluon_ws.w4_ws_kernel with ``ws``, gluon_rs.w4_rs_kernel with
    ``rs``) runs this call: GPTQ zeros, whole tiles, a tile its layouts cover (``fits``), and what TMA
    needs: contiguous weight tensors (gluon_rs: 16-byte aligned rows of any stride), 16-byte aligned x rows."""
    if not _gluon_available():  # (before the imports: an older Triton has no Gluon Hopper ops)
        return False
    from .gluon_pipe import fits as pipe_fits
    from .gluon_rs import fits as rs_fits
    from .gluon_ws import fits as ws_fits
    fits = ws_fits if ws else rs_fits if rs else pipe_fits
    if ws and cfg.split_k > 1:  # gluon_ws's warp-specialized tile runs a whole K
        return False
    awq = rs and w.codes == CODES_ALONG_N_AWQ and w.zeros_layout == ZEROS_ALONG_N_AWQ  # gluon_rs reads both
    if (w.zeros_layout != ZEROS_ALONG_N and not awq) or w.zero_offset < 0 or w.out_features % cfg.block_n:
        return False
    if rs and w.in_features >= 1 << 20:  # gluon_rs finds a step's group through an fp32 reciprocal (_group_index)
        return False
    if w.in_features % block_k or w.effective_group_size % block_k:
        return False
    if not fits(cfg.block_m, cfg.block_n, block_k, cfg.num_stages, cfg.num_warps):
        return False
    if rs:  # rows as strided (a column view: PackedWeight.columns): TMA's 16-byte rows and bases for the words,
        # unit column strides for the scales, zeros and y, which are addressed through their row strides
        if not all(t.stride(1) == 1 and t.data_ptr() % 16 == 0 for t in (w.qweight, w.scales, w.zeros)) \
                or y.stride(1) != 1 or (w.qweight.stride(0) * 4) % 16:
            return False
    elif not (y.is_contiguous() and all(t.is_contiguous() and t.data_ptr() % 16 == 0
                                        for t in (w.qweight, w.scales, w.zeros))):
        return False
    return not (x2.stride(1) != 1 or (x2.stride(0) * x2.element_size()) % 16 or x2.data_ptr() % 16)


@functools.lru_cache(maxsize=1)
def _gluon_available() -> bool:
    try:
        import importlib
        importlib.import_module(".gluon_gemm", __package__)
    except Exception:  # an older Triton without Gluon (or without its Hopper ops): the tl.dot paths
        return False
    return torch.cuda.get_device_capability()[0] == 9  # wgmma: Hopper only


try:  # the current stream as an integer without making a torch.cuda.Stream object (Triton's own launcher does this)
    from torch._C import _cuda_getCurrentRawStream as _raw_stream
except ImportError:  # a torch build without CUDA (the interpreter) or without this private entry point
    def _raw_stream(device_index: int) -> int:
        return torch.cuda.current_stream(device_index).cuda_stream


@functools.lru_cache(maxsize=None)
def _clusters_available(device_index: int) -> bool:
    """Thread-block clusters and distributed shared memory: compute capability 9.0 and up."""
    return torch.cuda.get_device_capability(device_index)[0] >= 9


def dot_n_launch(block_m: int, block_n: int, block_k: int, stages: int, warps: int, tuned: bool) -> tuple[int, int]:
    """DOT_N's (stages, warps) for a tile taken from the GPTQ-tuned table (``tuned``) or forced by the caller.

    Per stage DOT_N holds x [BM, BK] fp16 and the words [BK, BN / 8], and once the fp16 weight tile the MMA
    reads: stages are cut to keep that within the SM's shared memory (256x128x128 with 3 stages wants 246 KB:
    sm_90 compile, CPU probe). A tuned tile of 64 rows or fewer also gets 4 warps and at most 3 stages: the
    GPTQ entries' 8-warp or 4-stage 64-row tiles leave room for one CTA an SM instead of two here (8192x28672
    M = 64: 64x128x128 w8 s4 229, w4 s4 230, w8 s3 230, w4 s3 155 µs on the H200;
    benchmarks/results/diag-awq-dot-m64-h200-session13.log)."""
    if tuned and block_m <= 64:
        warps, stages = 4, min(stages, 3)
    while stages > 1 and stages * (2 * block_m + block_n // 2) * block_k + 2 * block_k * block_n > 200 * 1024:
        stages -= 1
    return stages, warps


# the words whose layers wave_split splits: GPTQ order and AutoAWQ gemm (both measured: wave_split_probe.py [--awq])
WAVE_SPLIT_CODES = (CODES_ALONG_K, CODES_ALONG_N_AWQ)


def wave_split(M: int, N: int, cfg: TileConfig, sms: int) -> int:
    """The columns a wave split gives its first launch (0: no split). A launch of ``cfg``'s tiles that ends in a
    partly empty wave takes as long as a full one (the wave probe of session 21: 448 tiles of 256x128 on 132 SMs,
    3.39 waves, take 4 waves' time); so the columns of its whole waves go in one launch and the rest in a second
    on ``cfg.tail``'s smaller tiles (M = 1024 4096x14336: 194.4 against 205.2 µs, benchmarks/wave_split_probe.py;
    AutoAWQ gemm words on the same tiles, session 22: 221.9 against 246.7). Only where the last wave is at most
    half full (a fuller one loses little), the tile runs whole K ranges one tile a program, and the tail's tiles
    cover the rest exactly."""
    if cfg.tail is None or cfg.split_k > 1 or cfg.stream or cfg.cluster > 1 or sms <= 0:
        return 0
    m_tiles = _cdiv(M, cfg.block_m)
    waves, rest = divmod(m_tiles * (N // cfg.block_n), sms)
    if not waves or not rest or rest > sms // 2:
        return 0
    first = waves * sms // m_tiles * cfg.block_n
    return first if 0 < first < N and (N - first) % cfg.tail.block_n == 0 else 0


def _sms_of(x: torch.Tensor) -> int:
    """The SMs of x's GPU (0 off a GPU: no wave split)."""
    return _sm_count(x.device.index) if x.is_cuda else 0


_split_views: dict[int, tuple] = {}


def _column_views(w: PackedWeight, first: int) -> tuple[PackedWeight, PackedWeight]:
    """The weight's columns [0, first) and [first, N) as views, the same objects on every call (each has its
    own launch plans, keyed by the view), dropped with the weight (a weak reference, as the plans hold)."""
    kept = _split_views.get(id(w))
    if kept is None or kept[0]() is not w or kept[1] != first:
        if len(_split_views) >= 4096:
            _split_views.clear()
        kept = (weakref.ref(w), first, w.columns(0, first), w.columns(first, w.out_features))
        _split_views[id(w)] = kept
        weakref.finalize(w, _split_views.pop, id(w), None)  # the views would keep the layer's tensors alive
    return kept[2], kept[3]


def triton_gemm(x: torch.Tensor, w: PackedWeight, config: TileConfig | None = None,
                out: torch.Tensor | None = None, path_override: int | None = None, _plan: bool = False) -> torch.Tensor:
    """``x`` [..., K] fp16/bf16 on CUDA -> [..., N] in x's dtype (written into ``out`` [M, N] if given).
    ``path_override`` forces one of the kernel paths (tests and benchmarks compare them). ``_plan``: a wave
    split's own launches, whose tiles are forced, still plan (their column views are theirs alone)."""
    if (config is None or _plan) and path_override is None and x.is_cuda:
        y = _planned(x, w, out)
        if y is not None:
            return y
    why = supports(w)
    if why:
        raise ValueError(f"triton backend cannot run this layer: {why}")
    if x.dtype not in (torch.float16, torch.bfloat16):
        raise ValueError(f"triton backend takes fp16/bf16 activations, got {x.dtype}")
    K, N = w.in_features, w.out_features
    lead = x.shape[:-1]
    x2 = x.reshape(-1, K)
    M = x2.shape[0]
    y = out if out is not None else torch.empty((M, N), dtype=x.dtype, device=x.device)
    if y.shape != (M, N) or y.dtype != x.dtype:
        raise ValueError(f"out must be {x.dtype} [{M}, {N}], got {y.dtype} {list(y.shape)}")
    if M == 0:
        return y.reshape(*lead, N)
    cfg = config or pick_config(M, N, K)
    if (cfg.gptq_rs or cfg.awq_rs) is not None and path_override in (None, DOT_RS):
        # gluon_rs's tile (TileConfig.gptq_rs; AWQ words: awq_rs, else gptq_rs) where its kernel runs this layer;
        # else the entry's own tile
        rs, rs_bk = cfg.gptq_rs, None
        if rs is not None:
            rs_bk = _joined_block_k(w, rs.block_k, tensor_core=True)
        if rs_bk is None and AWQ_RS and path_override is None:
            rs = cfg.awq_rs or cfg.gptq_rs
            rs_bk = _awq_rs_block_k(w, rs.block_k)
        if rs_bk is not None and _pipe_fits(w, x2, y, rs, rs_bk, rs=True):
            cfg = rs
    if cfg.tail is not None and config is None and path_override is None and w.codes in WAVE_SPLIT_CODES:
        first = wave_split(M, N, cfg, _sms_of(x))
        if first:  # whole waves of the tile, then the rest on the tail's smaller tiles (no partly empty wave)
            head, rest = _column_views(w, first)
            triton_gemm(x2, head, dataclasses.replace(cfg, tail=None), y[:, :first], _plan=True)
            triton_gemm(x2, rest, cfg.tail, y[:, first:], _plan=True)
            return y.reshape(*lead, N)
    gs = w.effective_group_size
    act = w.g_idx is not None
    per = 32 // w.bits
    block_m, block_k = (1, cfg.block_k) if cfg.block_m == 1 else (max(16, cfg.block_m), cfg.block_k)
    block_n, stages, warps = cfg.block_n, cfg.num_stages, cfg.num_warps
    joined_bk = _joined_block_k(w, block_k, tensor_core=block_m > 1)
    if path_override is not None and path_override not in (GEMV_KJ, DOT_KTJ, GEMV_H2, DOT_GLUON, DOT_PIPE, DOT_WS, DOT_RS):
        joined_bk = None
    if joined_bk is not None:
        # 4-bit GPTQ-order layers: each word loaded once, its codes unpacked inside one thread
        # (2-3x faster than the paths below at M >= 16 on the H200: benchmarks/NOTES-gemm.md)
        path, block_k = (GEMV_KJ if block_m == 1 else DOT_KTJ), joined_bk
        half2 = HALF2_GEMV if path_override is None else path_override == GEMV_H2
        if (path == GEMV_KJ and half2 and x.dtype == torch.float16 and w.zeros_layout in HALF2_ZEROS
                and x2.stride(1) == 1 and x2.stride(0) % 2 == 0 and x2.data_ptr() % 4 == 0):  # x read as int32 pairs
            path = GEMV_H2
    elif w.codes == CODES_MARLIN:
        # the general path addresses each code's word through the Marlin closed forms: correct
        # for every shape and group map, not tuned (the GPU run of this path is still to be done)
        path = GENERAL
        if block_m > 1:
            block_k, stages = 32, min(stages, 2)
    elif w.codes == CODES_ALONG_K:
        if block_m == 1:
            path = GENERAL if act else GEMV_K
        else:
            path = DOT_KT if (block_m <= 64 and cfg.block_n <= 128 and not act) else DOT_K
            block_k = max(block_k, 16 * per)  # each field's dot needs K >= 16
            # the tuned tiles are the joined path's; these paths stage x and the dequantized
            # weight tile in shared memory each stage: keep that within the 227 KB of an SM
            block_m = min(block_m, 128)
            while stages > 2 and stages * (block_m + block_n) * block_k * 2 > 160 * 1024:
                stages -= 1
            while block_n > 32 and stages * (block_m + block_n) * block_k * 2 > 160 * 1024:
                block_n //= 2
            if act:  # per-input scale and zero gathers: a tile of them per field; keep it in shared memory
                block_m, stages = min(block_m, 64), min(stages, 2)
                block_n = min(block_n, 64)
    else:
        if cfg.block_n % 8:
            raise ValueError("AWQ layout needs BLOCK_N a multiple of 8")
        path = GEMV_N if block_m == 1 else GENERAL
        if (path == GEMV_N and w.bits == 4 and x.dtype == torch.float16 and w.zeros_layout == ZEROS_ALONG_N_AWQ
                and K % 8 == 0 and (AWQ_HALF2 if path_override is None else path_override == GEMV_NH2)):
            path = GEMV_NH2
        rs_bk = _awq_rs_block_k(w, cfg.block_k) if block_m > 1 and \
            (path_override == DOT_RS or (AWQ_RS and path_override is None and cfg.rs)) else None
        if rs_bk is not None and _pipe_fits(w, x2, y, cfg, rs_bk, rs=True):
            # gluon_rs on AutoAWQ's words: forced, or a tuned rs tile with AWQ_RS on
            path, block_k = DOT_RS, rs_bk
        dot_bk = min(block_k, gs & -gs)  # DOT_N: a power-of-two K tile inside one group, 16 inputs or more
        if path == GENERAL and w.bits == 4 and dot_bk >= 16 and \
                (AWQ_DOT if path_override is None else path_override == DOT_N):
            path, block_k = DOT_N, dot_bk
            stages, warps = dot_n_launch(block_m, block_n, block_k, stages, warps, tuned=config is None)
        if path == GENERAL:  # its int32 code tile is staged whole in shared memory: keep it small
            block_k, stages = min(block_k, 32), min(stages, 2)
        if path in (GEMV_N, GEMV_NH2):
            block_k = min(block_k, gs & -gs)  # a power-of-two tile inside one group (gs & -gs: 32 of a 96 group)
    if path == DOT_KTJ and cfg.rs and path_override in (None, DOT_RS) and _pipe_fits(w, x2, y, cfg, block_k, rs=True):
        path = DOT_RS
    elif path == DOT_KTJ and cfg.ws and path_override in (None, DOT_WS) and _pipe_fits(w, x2, y, cfg, block_k, ws=True):
        path = DOT_WS
    elif path == DOT_KTJ and cfg.pipe and path_override in (None, DOT_PIPE) and _pipe_fits(w, x2, y, cfg, block_k):
        path = DOT_PIPE
    elif path == DOT_KTJ and (GLUON_DOT if path_override is None else path_override == DOT_GLUON) and \
            _gluon_fits(w, x2, y, block_m, block_n, block_k):
        path = DOT_GLUON
    if path_override is not None and path != path_override:
        raise ValueError(f"kernel path {path_override} cannot run this layer with this tile (dispatch chose {path})")
    split_k = cfg.split_k
    if path == DOT_KTJ and (block_m, block_n, block_k, warps) == (128, 256, 64, 8):
        # this one tile computes wrong sums on the H200 (relative error 0.09-0.11 on five shapes, 3 and 4
        # stages; every other tile of 64-256 x 64-256 x 64-128, 4 or 8 warps is exact against the 64x64
        # tile: benchmarks/results/diag-configs-h200.log); not understood yet. With 4 warps it is right
        warps = 4
    if config is None and block_m == 1 and path != GEMV_H2 and not (path == GEMV_NH2 and AWQ_GEMV_TUNED):
        # the tuned M = 1 tiles are GEMV_H2's (16-1024 wide, K steps up to 4096, clusters); the other M = 1
        # paths (bf16, AWQ, Marlin, act-order) take the 256-wide 4-warp tile of 64-input steps they were
        # measured with, about two programs an SM: AWQ's GEMV_N on a 1024-wide tile was 10-16x slower
        # (results/gemm-h200-session5-m1wide.log); AWQ's GEMV_NH2 steps 128 inputs (within 4-14 % of the best
        # of 16 tiles on each benchmark shape: results/awq-gemv-h200-session12.log)
        block_n, warps, step = M1_OTHER_BLOCK_N, 4, (128 if path == GEMV_NH2 else 64)
        cfg = TileConfig(1, block_n, step, split_for(_cdiv(N, block_n), K, step, M1_OTHER_PROGRAMS), warps, stages)
        split_k = cfg.split_k
        if block_k > step and block_k & (block_k - 1) == 0:  # a power of two: the step still divides the group
            block_k = step
    if cfg.cluster not in (1, 2, 4, 8):  # each CTA reduces 1/cluster of a power-of-two tile; 16 is non-portable
        raise ValueError(f"TileConfig.cluster must be 1, 2, 4 or 8, got {cfg.cluster}")
    # the cluster's CTAs split K evenly (none idles, and the Gluon tile's prologue reads its first step
    # unconditionally); elsewhere (or before Hopper) a cluster's split goes through the global-memory epilogue
    in_cluster = path in CLUSTER_PATHS or (path == DOT_RS and cfg.rs in (1, 2) and not cfg.stream)
    cluster = cfg.cluster if (cfg.cluster > 1 and in_cluster and x.is_cuda
                              and K % (cfg.cluster * block_k) == 0 and _clusters_available(x.device.index)) else 1
    if cfg.cluster > 1:
        split_k = cfg.cluster
    groups, granule = 1, block_k  # granule: what a program's K range is a multiple of
    if path in (GEMV_H2, GEMV_NH2) and cfg.block_k > block_k == gs and cfg.block_k % gs == 0 and N % block_n == 0:
        # a K step of several whole groups (GEMV_H2's GROUPS branch). Whole steps only, so on a K the tuned
        # step does not divide (a nearby shape's entry) the widest step that does; with RAGGED_WIDE the
        # tuned step, each program's range in whole groups and its last step partial
        wide = cfg.block_k
        while not RAGGED_WIDE and wide > gs and (K % (_cdiv(_cdiv(K, split_k), wide) * wide) or K % (cluster * wide)):
            wide //= 2
        if wide > gs:
            groups, block_k, granule = wide // gs, wide, (gs if RAGGED_WIDE else wide)
    k_split = _cdiv(_cdiv(K, split_k), granule) * granule
    split = _cdiv(K, k_split)
    even = N % block_n == 0 and K % k_split == 0 and k_split % block_k == 0
    if cluster > 1:
        split = 1  # grid axis 0 counts clusters; the launch multiplies it by the cluster's size
    grid = (_cdiv(N, block_n), _cdiv(M, block_m), split)
    stream = _raw_stream(x.device.index) if x.is_cuda else 0
    tiles = grid[0] * grid[1]
    slot_values = tiles * split * block_m * block_n
    slots = path == DOT_RS and split > 1 and RS_SPLIT_SLOTS and slot_values <= RS_SLOT_VALUES
    streamed = path == DOT_RS and cfg.stream > 0 and x.is_cuda
    if streamed:  # stream-K (gluon_rs.w4_rs_stream_kernel, w4_rs_ws_stream_kernel): a 1-D grid; split: slots a tile
        launch = stream_launch(tiles, K // block_k, cfg.stream, _sm_count(x.device.index), block_m * block_n,
                               cfg.stream_tail)
        streamed = launch is not None
        if streamed:  # k_split: the tiles run whole first (the stream kernels' DP_TILES)
            programs, parts, whole = launch
            slot_values = (tiles - whole) * parts * block_m * block_n
            grid, split, k_split, slots = (programs, 1, 1), parts, whole, True
    ws, cnt = ((_workspace(x.device, stream, slot_values, tiles, slots=True) if slots
                else _workspace(x.device, stream, M * N, tiles)) if split > 1 or streamed else (y, y))
    perm = None
    if w.x_perm is not None:  # Marlin act-order: the layout's rows are inputs in x_perm order
        perm = w.x_perm.to(device=x2.device, dtype=torch.long)
        x2 = x2.index_select(1, perm)
    slayout = 0 if w.scales_layout != SCALES_MARLIN else 1 if w.num_groups > 1 else 2
    g_idx = w.g_idx if act else w.scales  # any pointer: unused without act-order
    args = (x2, w.qweight, w.scales, w.zeros, g_idx, y, ws, cnt,
            M, N, K, k_split, split, gs, w.zero_offset,
            x2.stride(0), x2.stride(1), w.qweight.stride(0), w.qweight.stride(1), w.scales.stride(0), w.scales.stride(1),
            w.zeros.stride(0), w.zeros.stride(1), y.stride(0), y.stride(1))
    if path == DOT_GLUON:
        from . import gluon_gemm
        gwarps = gluon_gemm.warps_for(block_n, warps)
        consts = gluon_gemm.consts(block_m, block_n, block_k, split > 1, gwarps, cluster)
        kernel = _launch(grid, args, consts, gwarps, 1, x.device, stream, gluon_gemm.w4_dot_kernel,
                         gluon_gemm.CONST_NAMES, cluster=cluster, cluster_smem=4 * block_n * block_m)
    elif path == DOT_PIPE:
        from . import gluon_pipe
        consts = gluon_pipe.consts(block_m, block_n, block_k, split > 1, stages, warps)
        args = (gluon_pipe.x_descriptor(x2, block_m, block_k), *gluon_pipe.weight_descriptors(w, block_n, block_k),
                y, ws, cnt, M, N, K, k_split, split, gs, w.zero_offset, y.stride(0))
        kernel = _launch(grid, args, consts, warps, 1, x.device, stream, gluon_pipe.w4_pipe_kernel, gluon_pipe.CONST_NAMES)
    elif path == DOT_RS:
        from . import gluon_rs
        awq = w.codes == CODES_ALONG_N_AWQ
        descs = gluon_rs.descriptors(x2, w, block_m, block_n, block_k, awq)
        args = (*descs, w.scales, w.zeros, y, ws, cnt, M, N, K, k_split, split, gs, w.zero_offset, w.scales.stride(0),
                w.zeros.stride(0), y.stride(0))
        post = block_m <= RS_POST_MAX_BLOCK_M
        if cfg.rs == 3:  # warp-specialized (a load warp)
            consts = gluon_rs.ws_consts(block_m, block_n, block_k, stages, warps, awq=awq, post=post,
                                        split=gluon_rs.split_mode(split, slots))
            kernel = _launch(grid, args, consts, warps, 1, x.device, stream,
                             gluon_rs.w4_rs_ws_stream_kernel if streamed else gluon_rs.w4_rs_ws_kernel,
                             gluon_rs.WS_CONST_NAMES,
                             maxnreg=gluon_rs.ws_maxnreg(warps, block_m, block_n, cfg.lean and post, awq, streamed))
        else:
            consts = gluon_rs.consts(block_m, block_n, block_k, gluon_rs.split_mode(split, slots), stages, warps,
                                     pending=1 if cfg.rs == 1 else 0,
                                     awq=awq, post=post)
            names = gluon_rs.CONST_NAMES
            if not streamed:  # w4_rs_kernel's last constexpr: a K split inside a cluster (gluon_rs._cluster_store).
                # Always passed: the cached launcher takes every constexpr of the signature, defaults included
                consts, names = consts + (cluster,), names + ("CLUSTER",)
            kernel = _launch(grid, args, consts, warps, 1, x.device, stream,
                             gluon_rs.w4_rs_stream_kernel if streamed else gluon_rs.w4_rs_kernel, names,
                             maxnreg=gluon_rs.stream_maxnreg(warps, cfg.stream, post, block_m, block_n)
                             if streamed else None, cluster=cluster, cluster_smem=4 * block_n * block_m)
    elif path == DOT_WS:
        from . import gluon_pipe, gluon_ws
        consts = gluon_ws.consts(block_m, block_n, block_k, stages, warps)
        args = (gluon_pipe.x_descriptor(x2, block_m, block_k), *gluon_pipe.weight_descriptors(w, block_n, block_k),
                y, M, N, K, gs, w.zero_offset, y.stride(0))
        kernel = _launch(grid, args, consts, warps, 1, x.device, stream, gluon_ws.w4_ws_kernel, gluon_ws.CONST_NAMES,
                         maxnreg=gluon_ws.regs(gluon_ws.DQ_WARPS)[0])
    else:
        if path == DOT_N:  # scales read as int32 pairs of the activations' type
            paired = (AWQ_DOT_PAIRS and w.zeros_layout == ZEROS_ALONG_N_AWQ and w.zero_offset >= 0
                      and w.scales.dtype == x.dtype and w.scales.stride(1) == 1 and w.scales.stride(0) % 2 == 0
                      and w.scales.data_ptr() % 4 == 0)
        else:
            paired = PAIRED_DEQUANT and x.is_cuda and w.zeros_layout in PAIRED_ZEROS
        consts = (w.bits, _CODES[w.codes], _ZEROS[w.zeros_layout], act, path, split > 1, block_m, block_n, block_k, even,
                  paired, slayout, cluster,
                  stages if cfg.ring and path in (GEMV_H2, GEMV_NH2) else None, groups)
        kernel = _launch(grid, args, consts, warps, stages, x.device, stream, cluster=cluster,
                         cluster_smem=4 * block_n * (block_m if block_m > 1 else 1))
    # (DOT_PIPE and DOT_WS take tensor descriptors made for each call and have no plan; DOT_RS's plan makes them)
    if kernel is not None and (config is None or _plan) and path_override is None and path not in (DOT_PIPE, DOT_WS) \
            and (y.is_contiguous() or (path == DOT_RS and y.stride(1) == 1 and y.data_ptr() % 16 == 0)):
        if len(_plans) >= 4096:  # shapes of many layers and lengths: start over rather than grow
            _plans.clear()
        # the tensors keep the pointers valid (a stream launch always has them: the counters are int32 even where
        # a hybrid launch streams nothing, or its kernel would compile with y's type for them)
        workspace = (ws, cnt, ws.data_ptr(), cnt.data_ptr()) if split > 1 or streamed else None
        # the weight's own tensors are not stored: a plan must not keep a dropped layer in GPU memory
        encoded = None
        if path == DOT_RS:  # x_desc, q_desc, scales, zeros, y, ws, cnt, ...: descriptors remade from the tile
            descs = (block_m, block_n, block_k, w.codes == CODES_ALONG_N_AWQ)  # gluon_rs.descriptors' tile
            weight_ptrs, tail = (w.scales.data_ptr(), w.zeros.data_ptr()), args[7:]
            # or encoded ahead: the weight's map once, x's from its pointer (encoded_launch.py)
            encoded = encoded_launch(kernel[0], args[:2])
        else:  # x, qweight, scales, zeros, g_idx (or its stand-in), y, ws, cnt, ...
            descs, weight_ptrs, tail = None, tuple(t.data_ptr() for t in args[1:5]), args[8:]
        _plans[_plan_key(x, w, stream, y.stride(0))] = (weakref.ref(w), kernel, grid, weight_ptrs, workspace, tail,
                                                        consts, perm, N, descs, encoded)
    return y.reshape(*lead, N)


# Launch plans: the second call on a weight with the same activation shape, dtype, strides,
# alignment and stream reuses the first one's grid, arguments and compiled kernel, so only the
# output is allocated. Host time per call on the H200's host: 73-94 us through the dispatch above,
# 18-22 us from a plan (benchmarks/launch_plans.py, results/launch-plans-h200-session12.log) — the kernel at M = 1 takes 6-40 us.
# DOT_RS (gluon_rs, two TMA descriptors a call): 114-156 us through the dispatch, 26-44 us from a plan, which
# remakes the descriptors (results/rs-host-h200-session15.log, rs-plan-check-h200-session15.log); without it
# do_bench timed the host, not the 26 us kernel (4096x14336 M = 64: 0.40x cuBLAS -> 1.40x). Since session 20 the
# plan encodes them ahead (encoded_launch.py): 12-13 us, as the GEMV's plans (results/host-time-h200-session20.log).
_plans: dict[tuple, tuple] = {}


def _plan_key(x: torch.Tensor, w: PackedWeight, stream: int, y_rows: int) -> tuple:
    """``y_rows``: the output's row stride, baked into the plan's arguments (N, or a column view's: a wave split's
    launches write their columns of one y)."""
    x2 = x if x.dim() == 2 else x.reshape(-1, x.shape[-1])
    # the pointer's residue, not just 16-byte alignment: GEMV_H2 also needs 4-byte aligned rows
    return (id(w), tuple(x2.shape), x.dtype, x2.stride(), x.device.index, x2.data_ptr() % 16, stream, y_rows,
            HALF2_GEMV, GLUON_DOT, PAIRED_DEQUANT, AWQ_DOT, RAGGED_WIDE, AWQ_HALF2, AWQ_DOT_PAIRS, AWQ_GEMV_TUNED)  # the module switches choose paths too


def _planned(x: torch.Tensor, w: PackedWeight, out: torch.Tensor | None) -> torch.Tensor | None:
    stream = _raw_stream(x.device.index)
    rows = w.out_features if out is None else out.stride(0) if out.dim() == 2 else -1  # (-1: no plan has it)
    plan = _plans.get(_plan_key(x, w, stream, rows))
    if plan is None or plan[0]() is not w:  # a weight at a recycled id is not the planned one
        return None
    _, kernel, grid, weight_ptrs, workspace, tail, consts, perm, N, descs, encoded = plan
    x2 = x if x.dim() == 2 else x.reshape(-1, x.shape[-1])
    M = x2.shape[0]
    if out is None:
        y = torch.empty((M, N), dtype=x.dtype, device=x.device)
    elif (out.shape == (M, N) and out.dtype == x.dtype and out.device == x.device and out.stride(1) == 1
          and out.data_ptr() % 16 == 0):  # (rows strided as the plan's: its key)
        y = out
    else:
        return None  # the full path checks (and explains) an unusual out
    if perm is not None:
        x2 = x2.index_select(1, perm)
    y_ptr = y.data_ptr()
    ws_ptr, cnt_ptr = workspace[2:] if workspace else (y_ptr, y_ptr)  # without a K split the kernel never touches them
    compiled, meta = kernel
    # pointers go to the launcher as integers: for a tensor it calls data_ptr() and asks the driver whether
    # the address is device memory (cuPointerGetAttribute), per pointer and call. The weight's were taken
    # when the plan was made (the plan holds a weak reference and checks it above); x and y are CUDA
    # tensors of the plan's device (the key and the check on ``out``)
    mid = (y_ptr, ws_ptr, cnt_ptr)
    if encoded is not None:  # DOT_RS with its descriptors encoded ahead (encoded_launch.py)
        encoded(grid, stream, meta, x2.data_ptr(), (*weight_ptrs, *mid, *tail, *consts))
    else:
        if descs is None:
            head = (x2.data_ptr(),)
        else:  # DOT_RS: the TMA descriptors of this x and of the (live) weight's words
            from . import gluon_rs
            head = gluon_rs.descriptors(x2, w, *descs)
        compiled.run(grid[0], grid[1], grid[2], stream, compiled.function, meta, None, None, None,
                     *head, *weight_ptrs, *mid, *tail, *consts)
    return y.reshape(*x.shape[:-1], N) if x.dim() != 2 else y


def _spec(a) -> tuple:
    """What Triton specializes an argument on: dtype and 16-byte alignment of a tensor; divisibility
    by 16, equality to 1 and 32-bit range of an integer; dtype and box of a tensor descriptor."""
    if isinstance(a, torch.Tensor):
        return a.dtype, a.data_ptr() % 16 == 0
    if isinstance(a, int):
        return a % 16 == 0, a == 1, -2**31 <= a < 2**31
    return a.base.dtype, tuple(a.block_shape), repr(a.layout)


_CONST_NAMES = ("BITS", "QLAYOUT", "ZLAYOUT", "ACT_ORDER", "PATH", "SPLIT", "BLOCK_M", "BLOCK_N", "BLOCK_K", "EVEN", "PAIRED",
                "SLAYOUT", "CLUSTER", "RING", "GROUPS")
_compiled: dict[tuple, object] = {}


def _launch(grid, args: tuple, consts: tuple, num_warps: int, num_stages: int, device: torch.device,
            stream: int, fn=None, const_names: tuple = _CONST_NAMES, maxnreg: int | None = None, cluster: int = 1,
            cluster_smem: int = 0):
    """Launch through the compiled kernel directly once it exists: Triton's generic launch path
    re-derives the specialization of all 34 arguments in Python on every call (70-150 us measured
    on the lent H100's host), more than the kernel itself takes at M=1. The key holds everything
    that specialization depends on: dtypes, 16-byte alignment of pointers, and for integers
    divisibility by 16, equality to 1 and 32-bit range. Returns the compiled kernel it launched
    with the launch metadata it used (None on the call that compiled it).

    ``cluster`` > 1 launches clusters of that many CTAs along grid axis 0 (grid[0] counts clusters), with
    at least ``cluster_smem`` bytes of dynamic shared memory (_cluster_finish): the launcher's own metadata
    (warps, CTAs a cluster, shared bytes) is replaced, and the first call compiles without launching,
    since Triton's generic launch knows nothing of the cluster."""
    spec = tuple(_spec(a) for a in args)
    fn = fn or _w_gemm_kernel
    key = (fn, device.index, consts, num_warps, num_stages, maxnreg, spec, cluster)
    entry = _compiled.get(key)
    if entry is None:
        extra = {"maxnreg": maxnreg} if maxnreg else {}
        kwargs = dict(zip(const_names, consts))
        if cluster == 1:
            kernel = fn[grid](*args, **kwargs, num_warps=num_warps, num_stages=num_stages, **extra)
            if kernel is not None:  # (Triton's interpreter, TRITON_INTERPRET=1, runs it in Python: nothing to keep)
                _compiled[key] = (kernel, kernel.packed_metadata)
            return None
        kernel = fn.warmup(*args, grid=grid, **kwargs, num_warps=num_warps, num_stages=num_stages, **extra)
        shared = max(kernel.metadata.shared, cluster_smem)
        if shared > 48 * 1024 and shared > kernel.metadata.shared:
            raise ValueError(f"cluster split-K needs {shared} bytes of shared memory: use a smaller tile")
        entry = _compiled[key] = (kernel, (kernel.metadata.num_warps, cluster, shared))
    kernel, meta = entry
    # the launcher takes every parameter in signature order, constexprs included (ignored)
    kernel.run(grid[0], grid[1], grid[2], stream, kernel.function, meta, None, None, None, *args, *consts)
    return entry
