"""Transposed tensor-core W4A16 tile for 4-bit GPTQ-order layers at M >= 64, written in Gluon: the
dequantized weight is born in wgmma's A-operand registers, x is the B operand in shared memory.

Computes ``y^T[BLOCK_N, BLOCK_M] = W^T[BLOCK_N, K] x^T`` per program (Machete's arrangement): the
weight rows are wgmma's M (64 a warpgroup), the tokens its N (64-256), so every dequantized weight
serves BLOCK_M tokens and never touches shared memory. DOT_KTJ (triton_gemm) dequantizes into
registers too, but Triton moves the tile through shared memory into the operand layout and waits
for each wgmma; gluon_pipe stores it to shared memory and pays a proxy fence a step
(`benchmarks/NOTES-gemm.md`). Here nothing is written to shared memory by the threads, so there is
no fence, and the wgmma of step i runs while step i + 1 is dequantized.

The K order is the natural one (x comes by TMA as stored). wgmma's A layout (the m16n8k16 one per
warp) gives thread t = lane % 4 the inputs 2t, 2t + 1, 2t + 8, 2t + 9 of every 16: bits 8t..8t+7 of
the two words of those 16 inputs. So the four threads of a quad read the same words (a broadcast
load), and each takes its byte: one ``prmt`` puts byte t in both 16-bit halves, one ``lop3`` with
0x00F0000F makes the halves MAGIC + q_lo and MAGIC + 16 q_hi (fp16; FasterTransformer's pairing
of the high code), one paired fma by (1, 1/16) minus (1024 + z, 64 + z) gives q - z exactly and one
paired multiply s (q - z): rounded once, as the reference rounds it. bf16 (7-bit mantissa) shifts
the word by 4 and takes the high code from there instead.

Rows of the tile are relabelled so that a thread's rows are consecutive output columns: row
``rho = 16 W b + 16 w + 8 h + r`` (warp w of W, rep b, half h, lane // 4 = r) is column
``J (8 w + r) + 2 b + h`` with J = BLOCK_N / 8W, so a thread's words of one word row are one
16-byte load and its outputs of one token are J consecutive columns (vector stores).

wgmma reads its A registers while it runs, and writing them before the ``wgmma.wait_group`` that
covers it is undefined. The wait's dependencies reach PTX only as a comment, and a loop's instruction
writes the same PTX registers every trip, so with one step a trip step i + 1's words landed in the
registers step i's wgmma was still reading (sm_90 SASS; wrong sums on the H200, 42 of 96 runs). Two
steps a trip, each its own copy of the code, write two register sets in turn: step i + 1 writes the
set whose wgmma (step i - 1) the end of step i waited for. PENDING (a tuned choice, TileConfig.rs)
leaves step i's wgmma running into step i + 1's dequantization (1) or waits for it (0).

TMA ring for x and the words (STAGES slots, STAGES - 2 steps ahead; why that is safe: gluon_pipe's
docstring). Scales and zeros are a few registers a step, loaded from global memory two steps ahead.
Split-K as triton_gemm (fp32 workspace, the tile's last program writes). Handles: 4-bit codes along
K, zeros packed along N (GPTQ), sequential groups that are a multiple of BLOCK_K, N % BLOCK_N == 0,
K % BLOCK_K == 0, contiguous weight tensors, x rows 16-byte aligned. Hopper only.

AutoAWQ gemm words (AWQ, written without a GPU in session 15; triton_gemm.AWQ_RS): a word holds eight columns
of one input, column 8c + [0, 2, 4, 6, 1, 3, 5, 7][p] in nibble p (formats/awq.py), so a thread's register of
inputs 2t, 2t + 1 of a column comes from two words at that column's nibble. The rows keep GPTQ's relabelling,
so a thread's J columns lie in one word column; each thread loads its own words (four lanes share them,
awq_words_layout) and one ``prmt`` takes byte p/2 of both words into bytes 0 and 2, then ``lop3`` with the
low or high nibble's mask, fma by (1, 1) or (1/16, 1/16) minus the zero, multiply by the scale.

POST (tiles of at most triton_gemm.RS_POST_MAX_BLOCK_M tokens; on since session 17): the A tile is q - z
(exact), each step's wgmma writes its own fp32 sums and the rows' scales multiply them into the accumulator
(_post_loop, _ws_post_loop): at 16 tokens, 16 ffma a step instead of 64 paired multiplies, and the 4-warp
warp-specialized 16x128 tile fits its registers (without POST ptxas serializes its wgmmas).

Tried and dropped (session 23, `benchmarks/results/post-lag-session23.diff`): POST with step i's wgmma left running
while step i + 1 is dequantized, on two sums register sets. Correct on the H200 but slower or level everywhere at
M = 16: the second A set doubles the one-tile kernel's registers (80 -> 167 on 16x64x128), and other CTAs already
hide the wgmma wait (NOTES-gemm, twenty-third session).

Stream-K (TileConfig.stream, session 19; w4_rs_stream_kernel, w4_rs_ws_stream_kernel): a 1-D launch of a few
programs an SM, each an even range of the launch's (tile, K step) pairs taken tile by tile, so every SM does the
same number of steps however many tiles there are; a tile cut between programs meets in _store_part's slots
(the K split's epilogue). Correct on the H200 (session 20) but slower than the tuned one-tile launches at
M = 16, 64 and 256 (benchmarks/stream_check.sh, NOTES-gemm.md twentieth session), so no tuned entry uses it.
"""

from __future__ import annotations

import functools

from triton.experimental import gluon
from triton.experimental.gluon import language as gl
from triton.experimental.gluon.language.nvidia.hopper import (fence_async_shared, mbarrier, tma, warpgroup_mma,
                                                             warpgroup_mma_wait)
from triton.experimental.gluon.nvidia.hopper import TensorDescriptor

from .gluon_gemm import _NEG_64_PAIR, _cluster_sums, _cluster_sync, _fence_gpu, _finish, _halves, _magic_z
from .gluon_pipe import _plain, k_range, ring_barriers, ring_barriers_again, tile_origin, x_descriptor

# fp16 (-(1024 + z), -(64 + z)) pairs less their z terms, as signed int32 (_group_operands)
_ZZ_LO_HI: gl.constexpr = gl.constexpr(0xD400E400 - (1 << 32))
_ZZ_LO_LO: gl.constexpr = gl.constexpr(0xE400E400 - (1 << 32))
# fp16: $2 word, $3 prmt selector (byte t in bytes 0 and 2), $4 (-(1024 + z), -(64 + z)), $5 (s, s)
_RS_F16: gl.constexpr = gl.constexpr("\n".join([
    "{", ".reg .b32 v, c;",
    "prmt.b32 v, $2, $2, $3;",
    "lop3.b32 v, v, 0x00F0000F, 0x64006400, 0xEA;",  # (1024 + q_lo, 1024 + 16 q_hi)
    "mov.b32 c, 0x2C003C00;",  # (1, 1/16)
    "fma.rn.f16x2 v, v, c, $4;",  # (q_lo - z, q_hi - z), exact
    "mul.rn.f16x2 v, v, $5;",
    "mov.b32 {$0, $1}, v;", "}"]))
# bf16: $3 selects byte t of the word into byte 0 and byte t of (word >> 4) into byte 2; $4 MAGIC + z
_RS_BF16: gl.constexpr = gl.constexpr("\n".join([
    "{", ".reg .b32 v, u;",
    "shr.u32 u, $2, 4;",
    "prmt.b32 v, $2, u, $3;",
    "lop3.b32 v, v, 0x000F000F, 0x43004300, 0xEA;",  # (128 + q_lo, 128 + q_hi)
    "sub.rn.bf16x2 v, v, $4;",
    "mul.rn.bf16x2 v, v, $5;",
    "mov.b32 {$0, $1}, v;", "}"]))

# AutoAWQ words (a word holds eight columns of one input): $2, $3 the words of inputs 2t and 2t + 1 of the same
# columns, $4 prmt selector (byte p/2 of each into bytes 0 and 2, p the column's nibble), $7 zero operand,
# $8 (s, s). fp16: $5 mask of the nibble's half, $6 its multiplier ((1, 1) low, (1/16, 1/16) high, as _RS_F16)
_RS_AWQ_F16: gl.constexpr = gl.constexpr("\n".join([
    "{", ".reg .b32 v;",
    "prmt.b32 v, $2, $3, $4;",
    "lop3.b32 v, v, $5, 0x64006400, 0xEA;",  # (1024 + q_a, 1024 + q_b), or 16 q for a high nibble
    "fma.rn.f16x2 v, v, $6, $7;",  # (q_a - z, q_b - z), exact
    "mul.rn.f16x2 v, v, $8;",
    "mov.b32 {$0, $1}, v;", "}"]))
# bf16: $5 the nibble's shift (0 or 4), $6 unused
_RS_AWQ_BF16: gl.constexpr = gl.constexpr("\n".join([
    "{", ".reg .b32 v;",
    "prmt.b32 v, $2, $3, $4;",
    "shr.u32 v, v, $5;",
    "lop3.b32 v, v, 0x000F000F, 0x43004300, 0xEA;",  # (128 + q_a, 128 + q_b)
    "sub.rn.bf16x2 v, v, $7;",
    "mul.rn.bf16x2 v, v, $8;",
    "mov.b32 {$0, $1}, v;", "}"]))


# POST (small token tiles): the weights q - z only (exact small integers); the scale multiplies each step's wgmma
# sums in fp32 instead (_step_post), 16 accumulator values a thread where the A tile has 64 registers
def _without_scale(asm: str) -> str:
    return "\n".join(line for line in asm.split("\n") if not line.startswith("mul.rn"))


_RS_F16_POST: gl.constexpr = gl.constexpr(_without_scale(_RS_F16.value))
_RS_BF16_POST: gl.constexpr = gl.constexpr(_without_scale(_RS_BF16.value))
_RS_AWQ_F16_POST: gl.constexpr = gl.constexpr(_without_scale(_RS_AWQ_F16.value))
_RS_AWQ_BF16_POST: gl.constexpr = gl.constexpr(_without_scale(_RS_AWQ_BF16.value))


@functools.lru_cache(maxsize=None)
def words_layout(block_n: int, kw: int, warps: int) -> gl.DistributedLinearLayout:
    """[KW, 8W, J, 4] words: element (kw, rho', j, t) is word row kw of column J rho' + j, for the
    thread of lane 4 (rho' % 8) + t of warp rho' // 8. Registers run over j (one vector load a word
    row) and kw; lanes t hold the same words (each takes its own byte)."""
    J = block_n // (8 * warps)
    reg = [[0, 0, 1 << i, 0] for i in range(J.bit_length() - 1)] + [[1 << i, 0, 0, 0] for i in range(kw.bit_length() - 1)]
    lane = [[0, 0, 0, 1], [0, 0, 0, 2], [0, 1, 0, 0], [0, 2, 0, 0], [0, 4, 0, 0]]
    warp = [[0, 8 << i, 0, 0] for i in range(warps.bit_length() - 1)]
    return gl.DistributedLinearLayout(reg_bases=reg, lane_bases=lane, warp_bases=warp, block_bases=[],
                                      shape=[kw, 8 * warps, J, 4])


@functools.lru_cache(maxsize=None)
def awq_words_layout(block_n: int, kw: int, warps: int) -> gl.DistributedLinearLayout:
    """AWQ words as [KW, 4, 2, BNW, U, J]: element (kw, t, e, c, u, j) is word (input 8 kw + 2 t + e, word column c)
    for thread rho' = U c + u (lane 4 (rho' % 8) + t of warp rho' // 8), J = BLOCK_N / 8W, U = 8 / J. A thread's
    J columns J rho' + j all lie in word column c; the U threads of a word column and the J registers hold the
    same words. With e split off and (c, u) merged into rho', this is words_layout's [KW, 8W, J, 4]: the
    dequantized halves then take GPTQ's path to the A registers."""
    J = block_n // (8 * warps)
    lu = (8 // J).bit_length() - 1
    reg = ([[0, 0, 1, 0, 0, 0]] + [[0, 0, 0, 0, 0, 1 << i] for i in range(J.bit_length() - 1)]
           + [[1 << i, 0, 0, 0, 0, 0] for i in range(kw.bit_length() - 1)])
    rho = [[0, 0, 0, 0, 1 << i, 0] if i < lu else [0, 0, 0, 1 << (i - lu), 0, 0] for i in range(3)]
    lane = [[0, 1, 0, 0, 0, 0], [0, 2, 0, 0, 0, 0]] + rho
    warp = [[0, 0, 0, 1 << (3 + i - lu), 0, 0] for i in range(warps.bit_length() - 1)]
    return gl.DistributedLinearLayout(reg_bases=reg, lane_bases=lane, warp_bases=warp, block_bases=[],
                                      shape=[kw, 4, 2, block_n // 8, 1 << lu, J])


@functools.lru_cache(maxsize=None)
def mma_layout(block_m: int, warps: int) -> gl.NVMMADistributedLayout:
    """wgmma accumulator [BLOCK_N, BLOCK_M]: warps down the weight rows, 16 each, the tokens in one instruction."""
    return gl.NVMMADistributedLayout(version=[3, 0], warps_per_cta=[warps, 1], instr_shape=[16, block_m, 16])


def q_descriptor(w, block_n: int, block_k: int) -> TensorDescriptor:
    """The words [K/8, N] in [BLOCK_K/8, BLOCK_N] boxes (rows as the tensor strides them: a column view's rows
    are the whole layer's, PackedWeight.columns)."""
    K, N = w.in_features, w.out_features
    return TensorDescriptor(w.qweight, [K // 8, N], [w.qweight.stride(0), 1], [block_k // 8, block_n], _plain(32, 2))


def awq_q_descriptor(w, block_n: int, block_k: int) -> TensorDescriptor:
    """AutoAWQ's words [K, N/8] in [BLOCK_K, BLOCK_N/8] boxes (rows as the tensor strides them)."""
    K, N = w.in_features, w.out_features
    return TensorDescriptor(w.qweight, [K, N // 8], [w.qweight.stride(0), 1], [block_k, block_n // 8], _plain(32, 2))


def words_descriptor(w, block_n: int, block_k: int, awq: bool) -> TensorDescriptor:
    return (awq_q_descriptor if awq else q_descriptor)(w, block_n, block_k)


def descriptors(x2, w, block_m: int, block_n: int, block_k: int, awq: bool) -> tuple:
    """A launch's two TMA descriptor arguments: x [M, K] in [BLOCK_M, BLOCK_K] boxes and the weight's words."""
    return x_descriptor(x2, block_m, block_k), words_descriptor(w, block_n, block_k, awq)


@gluon.jit
def _deq(words, sel, zz, ss, XT: gl.constexpr, POST: gl.constexpr = False):
    """The two weights s (q - z) of byte ``sel`` of each word (see the module docstring); POST: q - z."""
    if POST:
        F16: gl.constexpr = _RS_F16_POST
        BF16: gl.constexpr = _RS_BF16_POST
        ss = zz  # (an operand the asm ignores)
    else:
        F16: gl.constexpr = _RS_F16
        BF16: gl.constexpr = _RS_BF16
    if XT == gl.float16:
        return gl.inline_asm_elementwise(asm=F16, constraints="=h,=h,r,r,r,r", args=[words, sel, zz, ss],
                                         dtype=(gl.float16, gl.float16), is_pure=True, pack=1)
    else:
        return gl.inline_asm_elementwise(asm=BF16, constraints="=h,=h,r,r,r,r", args=[words, sel, zz, ss],
                                         dtype=(gl.bfloat16, gl.bfloat16), is_pure=True, pack=1)


@gluon.jit
def _deq_awq(a, b, sel, m1, m2, zz, ss, XT: gl.constexpr, POST: gl.constexpr = False):
    """The weights s (q - z) of inputs 2t, 2t + 1 (words ``a``, ``b``) at each column's nibble (see the asm);
    POST: q - z."""
    if POST:
        F16: gl.constexpr = _RS_AWQ_F16_POST
        BF16: gl.constexpr = _RS_AWQ_BF16_POST
        ss = zz  # (an operand the asm ignores)
    else:
        F16: gl.constexpr = _RS_AWQ_F16
        BF16: gl.constexpr = _RS_AWQ_BF16
    if XT == gl.float16:
        return gl.inline_asm_elementwise(asm=F16, constraints="=h,=h,r,r,r,r,r,r,r",
                                         args=[a, b, sel, m1, m2, zz, ss], dtype=(gl.float16, gl.float16),
                                         is_pure=True, pack=1)
    else:
        return gl.inline_asm_elementwise(asm=BF16, constraints="=h,=h,r,r,r,r,r,r,r",
                                         args=[a, b, sel, m1, m2, zz, ss], dtype=(gl.bfloat16, gl.bfloat16),
                                         is_pure=True, pack=1)


@gluon.jit
def _awq_nibble(n):
    """The nibble holding column n in its AutoAWQ word: column 8c + [0, 2, 4, 6, 1, 3, 5, 7][p] is nibble p."""
    c8 = n % 8
    return (c8 >> 1) + 4 * (c8 & 1)


@gluon.jit
def _group_index(k, group_size):
    """k // group_size through an fp32 reciprocal (3 instructions for the ~12 of an integer division by a runtime
    divisor): (k + 1/2) / group_size is at least 1/(2 group_size) from an integer, and the fp32 error (div.full's
    2 ulp, the product's rounding) is below (k + 1/2) 2^-21.6 / group_size, so the floor is exact for k < 2^20
    (CPU test over every k; triton_gemm._pipe_fits keeps larger K away from this kernel); sm_90a loop 846 -> 813.
    ``k``: a tensor or an int."""
    return ((k * 1.0 + 0.5) * (1.0 / group_size.to(gl.float32))).to(gl.int32)


@gluon.jit
def _group_load(s_ptr, z_ptr, k, group_size, n, ssg, szg, ns):
    """The scales (of columns ``ns``: ``n``, or POST's accumulator rows) and packed zero words (of the columns
    ``n``, a [8W, J] tensor) of the group of input k.
    Issued two steps before their step and converted (_group_operands) one step before: converted in the
    step that loads them, every step waited out a global load's latency (ncu: the long-scoreboard stall on
    the zero's shift was a fifth of the MMA warps' samples, `benchmarks/NOTES-gemm.md`, fifteenth session)."""
    g = _group_index(k, group_size)
    return gl.load(s_ptr + g * ssg + ns), gl.load(z_ptr + g * szg + n // 8)


@gluon.jit
def _group_operands(s, zw, n, zero_offset, XT: gl.constexpr, AWQ: gl.constexpr = False, POST: gl.constexpr = False):
    """The dequantization's zero and scale operands from _group_load's scales and zero words (POST: the scales
    as fp32, for the accumulator rows)."""
    if AWQ:
        p = _awq_nibble(n)
        z = ((zw >> (p * 4)) & 15) + zero_offset
    else:
        z = ((zw >> ((n % 8) * 4)) & 15) + zero_offset
    if XT == gl.float16:
        # -(1024 + z) and -(64 + z) as fp16 bits, by integer arithmetic (0 <= z < 64: zero_offset is 0 or 1):
        # 1024 + z is 0x6400 + z (ulp 1 on [1024, 2048)), 64 + z is 0x5400 + 16 z (ulp 1/16 on [64, 128)), the
        # sign bit makes them negative. Was int -> fp32 -> fp16 conversions, ~10 instructions a column a step
        if AWQ:  # both halves are one column's: its nibble's low (q) or high (16 q) form
            z2 = z * 0x10001
            zz = gl.where((p & 1) == 1, (z2 << 4) + _NEG_64_PAIR, z2 + _ZZ_LO_LO)
        else:
            zz = z * 0x100001 + _ZZ_LO_HI  # (0xE400 + z, 0xD400 + 16 z): no carry between the halves
    else:
        zz = _magic_z(z, XT)
    if POST:
        sv = s.to(gl.float32)
    else:
        sv = _halves(s, XT)
    return zz, sv


@gluon.jit
def _a_tile(q_slot, sel, zz, ss, XT: gl.constexpr, L4: gl.constexpr, DOTA: gl.constexpr,
            BLOCK_N: gl.constexpr, BLOCK_K: gl.constexpr, AWQ: gl.constexpr = False, L6: gl.constexpr = None,
            POST: gl.constexpr = False):
    """The step's A operand [BLOCK_N, BLOCK_K] from its words in shared memory (``zz``, ``ss``: [8W, J];
    ``sel``: _columns'). POST: q - z, ``ss`` unused."""
    KW: gl.constexpr = BLOCK_K // 8
    W: gl.constexpr = gl.num_warps()
    R: gl.constexpr = 8 * W
    J: gl.constexpr = BLOCK_N // R
    zz = _per_column(zz)
    if not POST:  # (POST: ss is the rows' fp32 scales, applied after the wgmma; _deq ignores it)
        ss = _per_column(ss)
    if AWQ:  # [K, N/8] words: a thread's two inputs of a register are two words (awq_words_layout)
        U: gl.constexpr = 8 // J
        words = q_slot.reshape([KW, 4, 2, BLOCK_N // 8]).load(gl.SliceLayout(4, gl.SliceLayout(5, L6)))
        words = gl.expand_dims(gl.expand_dims(words, 4), 5)
        words, _ = gl.broadcast(words, gl.zeros((KW, 4, 2, BLOCK_N // 8, U, J), gl.int32, layout=L6))
        wa, wb = gl.split(gl.permute(words, (0, 3, 4, 5, 1, 2)))  # [kw, c, u, j, t]: inputs 8 kw + 2 t (+ 1)
        wa = gl.reshape(wa, (KW, R, J, 4))  # rho' = U c + u
        wb = gl.reshape(wb, (KW, R, J, 4))
        lo, hi = _deq_awq(wa, wb, sel[0], sel[1], sel[2], zz, ss, XT, POST)
    else:
        words = q_slot.reshape([KW, R, J]).load(gl.SliceLayout(3, L4))
        lo, hi = _deq(gl.expand_dims(words, 3), sel, zz, ss, XT, POST)
    a = gl.join(lo, hi)  # [kw, rho', j, t, e]: input 8 kw + 2 t + e
    a = gl.reshape(a, (KW, W, 8, J // 2, 2, 4, 2))  # rho' = 8 w + r, j = 2 b + h
    a = gl.reshape(gl.permute(a, (3, 1, 4, 2, 0, 5, 6)), (BLOCK_N, BLOCK_K))  # row 16 W b + 16 w + 8 h + r
    return gl.convert_layout(a, DOTA)  # register moves only


@gluon.jit
def _per_column(v):
    """A [8W, J] per-column operand as [1, 8W, J, 1], to meet the step's [KW, 8W, J, 4] words."""
    return gl.expand_dims(gl.expand_dims(v, 0), 3)


@gluon.jit
def _columns(n0, XT: gl.constexpr, L4: gl.constexpr, BLOCK_N: gl.constexpr, AWQ: gl.constexpr = False):
    """The output column of each thread's rows ([8W, J]) and the prmt selector: of each lane's byte ([1, 1, 1, 4]);
    for AWQ words, (selector, mask or shift, multiplier) of each column's nibble ([1, 8W, J, 1] each, see the asm)."""
    R: gl.constexpr = 8 * gl.num_warps()
    J: gl.constexpr = BLOCK_N // R
    SN: gl.constexpr = gl.SliceLayout(0, gl.SliceLayout(3, L4))
    n = n0 + gl.arange(0, R, layout=gl.SliceLayout(1, SN))[:, None] * J + gl.arange(0, J, layout=gl.SliceLayout(0, SN))[None, :]
    if AWQ:
        p = _awq_nibble(n)
        high = (p & 1) == 1
        sel = (p >> 1) | (((p >> 1) + 4) << 8)
        if XT == gl.float16:
            m1 = gl.where(high, 0x00F000F0, 0x000F000F)
            m2 = gl.where(high, 0x2C002C00, 0x3C003C00)  # (1/16, 1/16), (1, 1)
        else:
            m1 = gl.where(high, 4, 0)
            m2 = m1
        sel = (_per_column(sel), _per_column(m1), _per_column(m2))
    else:
        t = gl.arange(0, 4, layout=gl.SliceLayout(0, gl.SliceLayout(0, gl.SliceLayout(0, L4))))
        if XT == gl.float16:
            sel = t | (t << 8)
        else:
            sel = t | ((t + 4) << 8)
        sel = gl.expand_dims(gl.expand_dims(gl.expand_dims(sel, 0), 0), 0)
    return sel, n


@gluon.jit
def _rows_to_columns(acc, BLOCK_M: gl.constexpr, BLOCK_N: gl.constexpr):
    """[16 W b + 16 w + 8 h + r, m] -> [m, J (8 w + r) + 2 b + h] (the relabelling of the module docstring)."""
    W: gl.constexpr = gl.num_warps()
    J: gl.constexpr = BLOCK_N // (8 * W)
    out = gl.reshape(acc, (J // 2, W, 2, 8, BLOCK_M))
    return gl.reshape(gl.permute(out, (4, 1, 3, 0, 2)), (BLOCK_M, BLOCK_N))


# SPLIT of a K split whose programs leave their partial sums in slots of their own (True: gluon_gemm._finish's atomics)
SLOTS: gl.constexpr = gl.constexpr(2)


@gluon.jit
def _store_out(acc, y_ptr, ws_ptr, cnt_ptr, M, N, m0, n0, sym, tile, split_k, BLOCK_M: gl.constexpr,
               BLOCK_N: gl.constexpr, SPLIT: gl.constexpr):
    """The tile's sums into y in output order, or added into the split-K workspace (gluon_gemm._finish)."""
    out = _rows_to_columns(acc, BLOCK_M, BLOCK_N)
    OL: gl.constexpr = out.type.layout
    on = n0 + gl.arange(0, BLOCK_N, layout=gl.SliceLayout(0, OL))
    om = m0 + gl.arange(0, BLOCK_M, layout=gl.SliceLayout(1, OL))
    mask = (om < M)[:, None] & (on < N)[None, :]
    _finish(out, y_ptr + om[:, None] * sym + on[None, :], ws_ptr + om[:, None] * N + on[None, :], mask, cnt_ptr, tile,
            split_k, SPLIT)


@gluon.jit
def _store_tile(acc, y_ptr, ws_ptr, cnt_ptr, M, N, m0, n0, sym, tile, split_k, BLOCK_M: gl.constexpr,
                BLOCK_N: gl.constexpr, SPLIT: gl.constexpr):
    """The tile's sums into y; with a K split, SLOTS: each program stores its partial sums in its own slot of the
    tile's ``split_k`` (_store_part) — gluon_gemm._finish's two atomics an element (a reduction into the
    workspace, an exchange to read it back and clear it) are what a split cost at L2 on large tiles."""
    if SPLIT == SLOTS:
        _store_part(acc, y_ptr, ws_ptr, cnt_ptr, M, N, m0, n0, sym, tile, gl.program_id(2), split_k, split_k, BLOCK_M,
                    BLOCK_N)
    else:
        _store_out(acc, y_ptr, ws_ptr, cnt_ptr, M, N, m0, n0, sym, tile, split_k, BLOCK_M, BLOCK_N, SPLIT)


@gluon.jit
def _store_part(acc, y_ptr, ws_ptr, cnt_ptr, M, N, m0, n0, sym, tile, part, parts, stride, BLOCK_M: gl.constexpr,
                BLOCK_N: gl.constexpr):
    """Part ``part`` of a tile's ``parts`` partial sums: stored with plain stores in the accumulator's layout into
    slot ``part`` of the tile's ``stride`` slots (the workspace is never cleared); the tile's last part to arrive
    adds the other slots to its own sums, in the same order as ever, and writes the tile. Ordering as
    gluon_gemm._finish: every thread fences its stores at GPU scope before the counter moves; the last program's
    loads come after the counter's acquire (one thread's, shared through the CTA barrier of the broadcast: that
    barrier orders the acquire before every thread's loads, as CUTLASS's split-K semaphore relies on, so the
    threads need no fence of their own there) and bypass L1 (.cg). The other slots are read _slot_loads at a time
    (one at a time, each load waited out an L2 round trip before the next was issued). Session 23, M = 16: the last
    program's part of the protocol takes 1.7-1.8 µs of an 18-19 µs launch; these two changes took 0.2 µs of it
    on a 5-way split (19.35 -> 19.14 µs, 14336x4096) and nothing measurable on a 3-way one."""
    SLOT: gl.constexpr = BLOCK_M * BLOCK_N
    AL: gl.constexpr = acc.type.layout
    rows = gl.arange(0, BLOCK_N, layout=gl.SliceLayout(1, AL))
    cols = gl.arange(0, BLOCK_M, layout=gl.SliceLayout(0, AL))
    offs = rows[:, None] * BLOCK_M + cols[None, :]
    slots = ws_ptr + tile * stride * SLOT
    gl.store(slots + part * SLOT + offs, acc)
    _fence_gpu(parts)
    gl.thread_barrier()
    arrived = gl.atomic_add(cnt_ptr + tile, 1, sem="acq_rel")
    if arrived == parts - 1:
        LOADS: gl.constexpr = _slot_loads(SLOT // (32 * gl.num_warps()))
        for j0 in range(1, parts, LOADS):
            for jj in gl.static_range(LOADS):  # independent loads, issued together; the adds keep their order
                k = part + j0 + jj  # the slot (part + j) % parts, without a division by a runtime value
                k -= parts * (k >= parts).to(gl.int32)
                acc += gl.load(slots + k * SLOT + offs, mask=offs * 0 + j0 + jj < parts, other=0.0,
                               cache_modifier=".cg")
        _store_out(acc, y_ptr, ws_ptr, cnt_ptr, M, N, m0, n0, sym, tile, parts, BLOCK_M, BLOCK_N, False)
        gl.atomic_xchg(cnt_ptr + tile, 0, sem="relaxed")


@gluon.constexpr_function
def _slot_loads(values: int) -> int:
    """Slots the last part reads at once with ``values`` sums a thread: as many as keep the loads within ~32
    registers (16x128 on 4 warps: 16 values, two slots at once; four made the stream-K kernel's 16x128 tile spill
    16 B more)."""
    return max(1, min(4, 32 // values))


@gluon.jit
def _first_step(ready, x_ring, q_ring, s_ptr, z_ptr, sel, n, cols, k_begin, last, group_size, zero_offset, ssg, szg,
                BLOCK_M: gl.constexpr, BLOCK_N: gl.constexpr, BLOCK_K: gl.constexpr, L4: gl.constexpr,
                MMA: gl.constexpr, DOTA: gl.constexpr, AWQ: gl.constexpr, L6: gl.constexpr, POST: gl.constexpr,
                base=0):
    """K step 0 of every K loop here, peeled: its wgmma starts with use_acc=False (a zero-initialised
    accumulator makes ptxas serialize the wgmmas: gluon_pipe) and is left running. ``ready``: the ring's
    full barriers; ``cols``: the scales' columns (``n``, or _row_columns' with POST); ``base``: the ring
    position of the step (0 but in the warp-specialized stream-K tile). Returns the wgmma's (pending) sums,
    step 0's scales, step 1's operands and step 2's group values."""
    XT: gl.constexpr = x_ring.dtype
    STAGES: gl.constexpr = x_ring.shape[0]
    s0, z0 = _group_load(s_ptr, z_ptr, k_begin, group_size, n, ssg, szg, cols)
    s1, z1 = _group_load(s_ptr, z_ptr, gl.minimum(k_begin + BLOCK_K, last), group_size, n, ssg, szg, cols)
    zz, ss = _group_operands(s0, z0, n, zero_offset, XT, AWQ, POST)
    mbarrier.wait(ready.index(base % STAGES), (base // STAGES) & 1)
    s2, z2 = _group_load(s_ptr, z_ptr, gl.minimum(k_begin + 2 * BLOCK_K, last), group_size, n, ssg, szg, cols)
    a = _a_tile(q_ring.index(base % STAGES), sel, zz, ss, XT, L4, DOTA, BLOCK_N, BLOCK_K, AWQ, L6, POST)
    acc = gl.zeros((BLOCK_N, BLOCK_M), dtype=gl.float32, layout=MMA)
    acc = warpgroup_mma(a, x_ring.index(base % STAGES).permute((1, 0)), acc, use_acc=False, is_async=True)
    ss0 = ss
    zz, ss = _group_operands(s1, z1, n, zero_offset, XT, AWQ, POST)
    return acc, ss0, zz, ss, s2, z2


@gluon.jit
def _fill(slot, k, bars, x_ring, q_ring, x_desc, q_desc, m0, n0, AWQ: gl.constexpr = False):
    bar = bars.index(slot)
    mbarrier.expect(bar, x_desc.block_type.nbytes + q_desc.block_type.nbytes)
    tma.async_copy_global_to_shared(x_desc, [m0, k], bar, x_ring.index(slot))
    if AWQ:
        tma.async_copy_global_to_shared(q_desc, [k, n0 // 8], bar, q_ring.index(slot))
    else:
        tma.async_copy_global_to_shared(q_desc, [k // 8, n0], bar, q_ring.index(slot))


@gluon.jit
def _step(i, acc, zz, ss, s1, z1, sel, n, bars, x_ring, q_ring, x_desc, q_desc, s_ptr, z_ptr, m0, n0, k_begin, last,
          group_size, zero_offset, ssg, szg, STAGES: gl.constexpr, BLOCK_K: gl.constexpr, BLOCK_N: gl.constexpr,
          L4: gl.constexpr, DOTA: gl.constexpr, PENDING: gl.constexpr, AWQ: gl.constexpr, L6: gl.constexpr):
    """K step i (i >= 1): wait for its ring slot, dequantize its words into A registers (``zz``, ``ss``: its
    group operands), issue its wgmma, refill the slot of step i - 2 and wait for step i - 1's wgmma. Loads
    step i + 2's scales and zero words and converts step i + 1's (``s1``, ``z1``, loaded a step ago)."""
    XT: gl.constexpr = x_ring.dtype
    slot = i % STAGES
    mbarrier.wait(bars.index(slot), (i // STAGES) & 1)
    gl.thread_barrier()  # every warpgroup is past its wait for step i - 2: that slot may be refilled
    s2, z2 = _group_load(s_ptr, z_ptr, gl.minimum(k_begin + (i + 2) * BLOCK_K, last), group_size, n, ssg, szg, n)
    a = _a_tile(q_ring.index(slot), sel, zz, ss, XT, L4, DOTA, BLOCK_N, BLOCK_K, AWQ, L6)
    acc = warpgroup_mma(a, x_ring.index(slot).permute((1, 0)), acc, is_async=True)
    zz, ss = _group_operands(s1, z1, n, zero_offset, XT, AWQ)
    kf = gl.minimum(k_begin + (i + STAGES - 2) * BLOCK_K, last)
    _fill((i + STAGES - 2) % STAGES, kf, bars, x_ring, q_ring, x_desc, q_desc, m0, n0, AWQ)
    acc = warpgroup_mma_wait(PENDING, deps=(acc,))
    return acc, zz, ss, s2, z2


@gluon.jit
def _row_columns(n0, BLOCK_N: gl.constexpr, MMA: gl.constexpr):
    """The output column of each accumulator row (the relabelling of the module docstring), in the rows' layout."""
    return _column_of(gl.arange(0, BLOCK_N, layout=gl.SliceLayout(1, MMA)), n0, BLOCK_N)


@gluon.jit
def _column_of(rho, n0, BLOCK_N: gl.constexpr):
    """The output column of tile row ``rho``: row 16 W b + 16 w + 8 h + r is column n0 + J (8 w + r) + 2 b + h."""
    W: gl.constexpr = gl.num_warps()
    J: gl.constexpr = BLOCK_N // (8 * W)
    return n0 + J * (8 * ((rho // 16) % W) + rho % 8) + 2 * (rho // (16 * W)) + (rho // 8) % 2


@gluon.jit
def _step_post(i, acc, p, zz, ss, s1, z1, sel, n, nr, bars, x_ring, q_ring, x_desc, q_desc, s_ptr, z_ptr, m0, n0,
               k_begin, last, group_size, zero_offset, ssg, szg, STAGES: gl.constexpr, BLOCK_K: gl.constexpr,
               BLOCK_N: gl.constexpr, L4: gl.constexpr, DOTA: gl.constexpr, AWQ: gl.constexpr, L6: gl.constexpr):
    """K step i (i >= 1) as _step with the scale after the wgmma (POST): the A tile is q - z, the wgmma writes the
    step's own sums (``p``, use_acc False), waited for in the step and added to ``acc`` times the rows' scales
    ``ss``. (Leaving the wgmma running into the next step, with its sums added there, made ptxas serialize every
    wgmma of the kernel: C7515 / C7514 on sm_90a, the fold's reads sunk past the next wgmma.)"""
    XT: gl.constexpr = x_ring.dtype
    slot = i % STAGES
    mbarrier.wait(bars.index(slot), (i // STAGES) & 1)
    gl.thread_barrier()  # (as _step)
    s2, z2 = _group_load(s_ptr, z_ptr, gl.minimum(k_begin + (i + 2) * BLOCK_K, last), group_size, n, ssg, szg, nr)
    a = _a_tile(q_ring.index(slot), sel, zz, ss, XT, L4, DOTA, BLOCK_N, BLOCK_K, AWQ, L6, True)
    p = warpgroup_mma(a, x_ring.index(slot).permute((1, 0)), p, use_acc=False, is_async=True)
    zz1, ss1 = _group_operands(s1, z1, n, zero_offset, XT, AWQ, True)
    kf = gl.minimum(k_begin + (i + STAGES - 2) * BLOCK_K, last)
    _fill((i + STAGES - 2) % STAGES, kf, bars, x_ring, q_ring, x_desc, q_desc, m0, n0, AWQ)
    p = warpgroup_mma_wait(0, deps=(p,))
    acc = acc + p * gl.expand_dims(ss, 1)
    return acc, p, zz1, ss1, s2, z2


@gluon.jit
def _post_loop(sel, n, bars, x_ring, q_ring, x_desc, q_desc, s_ptr, z_ptr, m0, n0, k_begin, steps, last, group_size,
               zero_offset, ssg, szg, BLOCK_M: gl.constexpr, BLOCK_N: gl.constexpr, BLOCK_K: gl.constexpr,
               STAGES: gl.constexpr, L4: gl.constexpr, MMA: gl.constexpr, DOTA: gl.constexpr, AWQ: gl.constexpr,
               L6: gl.constexpr):
    """w4_rs_kernel's K loop with the scale after the wgmma (POST, small token tiles: a 16-token tile's
    accumulator is 16 values a thread against 64 A registers a step, so 16 fp32 fma replace 64 paired multiplies;
    sm_90a loop 813 -> 715 instructions a trip, NOTES-gemm sixteenth session). Two steps a trip for the A registers, as
    w4_rs_kernel. Returns the accumulator, every wgmma waited for."""
    nr = _row_columns(n0, BLOCK_N, MMA)
    p, ss0, zz, ss, s1, z1 = _first_step(bars, x_ring, q_ring, s_ptr, z_ptr, sel, n, nr, k_begin, last, group_size,
                                         zero_offset, ssg, szg, BLOCK_M, BLOCK_N, BLOCK_K, L4, MMA, DOTA, AWQ, L6, True)
    _fill(STAGES - 2, gl.minimum(k_begin + (STAGES - 2) * BLOCK_K, last), bars, x_ring, q_ring, x_desc, q_desc, m0, n0,
          AWQ)
    p = warpgroup_mma_wait(0, deps=(p,))
    acc = p * gl.expand_dims(ss0, 1)
    for i in range(1, steps - 1, 2):
        acc, p, zz, ss, s1, z1 = _step_post(i, acc, p, zz, ss, s1, z1, sel, n, nr, bars, x_ring, q_ring, x_desc,
                                            q_desc, s_ptr, z_ptr, m0, n0, k_begin, last, group_size, zero_offset, ssg,
                                            szg, STAGES, BLOCK_K, BLOCK_N, L4, DOTA, AWQ, L6)
        acc, p, zz, ss, s1, z1 = _step_post(i + 1, acc, p, zz, ss, s1, z1, sel, n, nr, bars, x_ring, q_ring, x_desc,
                                            q_desc, s_ptr, z_ptr, m0, n0, k_begin, last, group_size, zero_offset, ssg,
                                            szg, STAGES, BLOCK_K, BLOCK_N, L4, DOTA, AWQ, L6)
    if steps % 2 == 0:  # one step left
        acc, p, zz, ss, s1, z1 = _step_post(steps - 1, acc, p, zz, ss, s1, z1, sel, n, nr, bars, x_ring, q_ring,
                                            x_desc, q_desc, s_ptr, z_ptr, m0, n0, k_begin, last, group_size,
                                            zero_offset, ssg, szg, STAGES, BLOCK_K, BLOCK_N, L4, DOTA, AWQ, L6)
    return acc


@gluon.jit
def _tile_sums(x_ring, q_ring, bars, x_desc, q_desc, s_ptr, z_ptr, m0, n0, k_begin, steps, last, group_size,
               zero_offset, ssg, szg, BLOCK_M: gl.constexpr, BLOCK_N: gl.constexpr, BLOCK_K: gl.constexpr,
               STAGES: gl.constexpr, L4: gl.constexpr, MMA: gl.constexpr, DOTA: gl.constexpr, PENDING: gl.constexpr,
               AWQ: gl.constexpr, L6: gl.constexpr, POST: gl.constexpr):
    """One tile's sums over ``steps`` K steps from ``k_begin``: the ring filled from phase 0 of its barriers, the K
    loop, every wgmma waited for and every refill landed (so the ring may be used again)."""
    for f in gl.static_range(STAGES - 2):
        _fill(f, gl.minimum(k_begin + f * BLOCK_K, last), bars, x_ring, q_ring, x_desc, q_desc, m0, n0, AWQ)

    sel, n = _columns(n0, x_ring.dtype, L4, BLOCK_N, AWQ)
    if POST:
        acc = _post_loop(sel, n, bars, x_ring, q_ring, x_desc, q_desc, s_ptr, z_ptr, m0, n0, k_begin, steps, last,
                         group_size, zero_offset, ssg, szg, BLOCK_M, BLOCK_N, BLOCK_K, STAGES, L4, MMA, DOTA, AWQ, L6)
    else:
        acc, _, zz, ss, s1, z1 = _first_step(bars, x_ring, q_ring, s_ptr, z_ptr, sel, n, n, k_begin, last, group_size,
                                             zero_offset, ssg, szg, BLOCK_M, BLOCK_N, BLOCK_K, L4, MMA, DOTA, AWQ, L6,
                                             False)
        _fill(STAGES - 2, gl.minimum(k_begin + (STAGES - 2) * BLOCK_K, last), bars, x_ring, q_ring, x_desc, q_desc, m0,
              n0, AWQ)
        acc = warpgroup_mma_wait(PENDING, deps=(acc,))  # (with 1: waits for nothing; acc becomes a tensor again)
        # two steps a trip, each its own copy of the code: a static instruction writes the same PTX registers every
        # trip, and step i + 1 must not write the A registers that step i's wgmma (still running) reads
        for i in range(1, steps - 1, 2):
            acc, zz, ss, s1, z1 = _step(i, acc, zz, ss, s1, z1, sel, n, bars, x_ring, q_ring, x_desc, q_desc, s_ptr,
                                        z_ptr, m0, n0, k_begin, last, group_size, zero_offset, ssg, szg, STAGES,
                                        BLOCK_K, BLOCK_N, L4, DOTA, PENDING, AWQ, L6)
            acc, zz, ss, s1, z1 = _step(i + 1, acc, zz, ss, s1, z1, sel, n, bars, x_ring, q_ring, x_desc, q_desc,
                                        s_ptr, z_ptr, m0, n0, k_begin, last, group_size, zero_offset, ssg, szg, STAGES,
                                        BLOCK_K, BLOCK_N, L4, DOTA, PENDING, AWQ, L6)
        if steps % 2 == 0:  # one step left
            acc, zz, ss, s1, z1 = _step(steps - 1, acc, zz, ss, s1, z1, sel, n, bars, x_ring, q_ring, x_desc, q_desc,
                                        s_ptr, z_ptr, m0, n0, k_begin, last, group_size, zero_offset, ssg, szg, STAGES,
                                        BLOCK_K, BLOCK_N, L4, DOTA, PENDING, AWQ, L6)
        acc = warpgroup_mma_wait(0, deps=(acc,))
    # the refills past the last step still land in the ring: wait for them before the program ends
    for f in gl.static_range(STAGES - 2):
        tt = steps + f
        mbarrier.wait(bars.index(tt % STAGES), (tt // STAGES) & 1)
    return acc


@gluon.jit
def _rings(x_desc, q_desc, STAGES: gl.constexpr):
    """The TMA ring of x tiles and words, STAGES slots."""
    x_ring = gl.allocate_shared_memory(x_desc.dtype, [STAGES] + x_desc.block_type.shape, x_desc.layout)
    q_ring = gl.allocate_shared_memory(q_desc.dtype, [STAGES] + q_desc.block_type.shape, q_desc.layout)
    return x_ring, q_ring


@gluon.jit
def w4_rs_kernel(x_desc, q_desc, s_ptr, z_ptr, y_ptr, ws_ptr, cnt_ptr,
                 M, N, K, K_SPLIT, split_k, group_size, zero_offset, ssg, szg, sym,
                 BLOCK_M: gl.constexpr, BLOCK_N: gl.constexpr, BLOCK_K: gl.constexpr, SPLIT: gl.constexpr,
                 STAGES: gl.constexpr, L4: gl.constexpr, MMA: gl.constexpr, PENDING: gl.constexpr,
                 AWQ: gl.constexpr = False, L6: gl.constexpr = None, POST: gl.constexpr = False,
                 CLUSTER: gl.constexpr = 1):
    """``CLUSTER`` > 1 (a launch option beside CONST_NAMES, TileConfig.cluster): the K split runs across the CTAs
    of a thread-block cluster along grid axis 0 and meets in distributed shared memory (_cluster_store)."""
    DOTA: gl.constexpr = gl.DotOperandLayout(operand_index=0, parent=MMA, k_width=2)
    if CLUSTER > 1:
        rank = gl.program_id(0) % CLUSTER
        pid_n = gl.program_id(0) // CLUSTER
        tile, m0, n0 = 0, gl.program_id(1) * BLOCK_M, pid_n * BLOCK_N
    else:
        rank = gl.program_id(2)
        tile, m0, n0 = tile_origin(BLOCK_M, BLOCK_N)
    x_ring, q_ring = _rings(x_desc, q_desc, STAGES)
    bars = ring_barriers(STAGES)
    k_begin, steps, last = k_range(rank, K_SPLIT, K, BLOCK_K)
    acc = _tile_sums(x_ring, q_ring, bars, x_desc, q_desc, s_ptr, z_ptr, m0, n0, k_begin, steps, last, group_size,
                     zero_offset, ssg, szg, BLOCK_M, BLOCK_N, BLOCK_K, STAGES, L4, MMA, DOTA, PENDING, AWQ, L6, POST)
    if CLUSTER > 1:
        _cluster_store(acc, y_ptr, M, N, m0, n0, sym, rank, BLOCK_M, BLOCK_N, CLUSTER)
    else:
        _store_tile(acc, y_ptr, ws_ptr, cnt_ptr, M, N, m0, n0, sym, tile, split_k, BLOCK_M, BLOCK_N, SPLIT)


@gluon.jit
def _cluster_store(acc, y_ptr, M, N, m0, n0, sym, rank, BLOCK_M: gl.constexpr, BLOCK_N: gl.constexpr,
                   CLUSTER: gl.constexpr):
    """A cluster K split's epilogue (triton_gemm._cluster_finish's protocol, written in session 23): each CTA
    stores its partial tile at the start of its shared memory (the ring is done: _tile_sums waited for every
    load), token-major (element m BLOCK_N + row), a cluster barrier orders the stores, each CTA adds its
    1/CLUSTER of the tile over the cluster's CTAs in rank order (the same bits every run) through distributed
    shared memory (gluon_gemm._cluster_sums), and writes it in output order (_column_of); a second cluster barrier
    keeps every CTA's shared memory until the others have read it."""
    AL: gl.constexpr = acc.type.layout
    rows = gl.arange(0, BLOCK_N, layout=gl.SliceLayout(1, AL))
    cols = gl.arange(0, BLOCK_M, layout=gl.SliceLayout(0, AL))
    f, total = _cluster_sums(acc, cols[None, :] * BLOCK_N + rows[:, None], rank, BLOCK_M * BLOCK_N, CLUSTER)
    n = _column_of(f % BLOCK_N, n0, BLOCK_N)
    m = m0 + f // BLOCK_N
    gl.store(y_ptr + m * sym + n, total.to(y_ptr.dtype.element_ty), mask=(m < M) & (n < N))
    _cluster_sync(rank)


@gluon.jit
def _owner(s, total, programs):
    """The stream-K program whose range holds step ``s``: program p's range is [p total / P, (p + 1) total / P)
    (floors), so its owner is the largest p with floor(p total / P) <= s."""
    return ((s + 1) * programs - 1) // total


@gluon.jit
def _stream_range(M, N, K, DP_TILES, BLOCK_M: gl.constexpr, BLOCK_N: gl.constexpr, BLOCK_K: gl.constexpr):
    """This stream-K program's range of the launch's streamed (tile, K step) pairs, [start, end): the steps of the
    tiles after the first DP_TILES (which the kernels run whole first, one a program, round-robin), cut evenly over
    the programs; and the launch's steps a tile, column tiles, streamed steps in all and programs."""
    programs = gl.num_programs(0)
    pid = gl.program_id(0)
    tiles_n = N // BLOCK_N
    T = K // BLOCK_K
    total = (gl.cdiv(M, BLOCK_M) * tiles_n - DP_TILES) * T
    first = DP_TILES * T
    return first + pid * total // programs, first + (pid + 1) * total // programs, T, tiles_n, total, programs


@gluon.jit
def _stream_segment(s, end, T, tiles_n, BLOCK_M: gl.constexpr, BLOCK_N: gl.constexpr):
    """A stream-K range's next piece from step ``s``: its tile, first K step, steps, and the tile's m0 and n0."""
    tile = s // T
    k0 = s - tile * T
    return tile, k0, gl.minimum(T - k0, end - s), (tile // tiles_n) * BLOCK_M, (tile % tiles_n) * BLOCK_N


@gluon.jit
def _stream_store(acc, y_ptr, ws_ptr, cnt_ptr, M, N, m0, n0, sym, tile, steps, T, total, programs, slots_a_tile,
                  DP_TILES, BLOCK_M: gl.constexpr, BLOCK_N: gl.constexpr):
    """A stream-K piece's sums: the tile itself where the piece is the whole tile, else its part through the
    tile's slots (the parts are the programs _owner names for the tile's first and last step, counted from the
    streamed tiles' first step; slots and counters are the streamed tiles' own, from 0)."""
    if steps == T:
        _store_out(acc, y_ptr, ws_ptr, cnt_ptr, M, N, m0, n0, sym, tile, 1, BLOCK_M, BLOCK_N, False)
    else:
        cut = tile - DP_TILES
        first = _owner(cut * T, total, programs)
        _store_part(acc, y_ptr, ws_ptr, cnt_ptr, M, N, m0, n0, sym, cut, gl.program_id(0) - first,
                    _owner(cut * T + T - 1, total, programs) - first + 1, slots_a_tile, BLOCK_M, BLOCK_N)


@gluon.jit
def _stream_piece(x_ring, q_ring, bars, x_desc, q_desc, s_ptr, z_ptr, y_ptr, ws_ptr, cnt_ptr, M, N, s, end, T,
                  tiles_n, total, programs, slots_a_tile, DP_TILES, group_size, zero_offset, ssg, szg, sym,
                  BLOCK_M: gl.constexpr, BLOCK_N: gl.constexpr, BLOCK_K: gl.constexpr, STAGES: gl.constexpr,
                  L4: gl.constexpr, MMA: gl.constexpr, DOTA: gl.constexpr, PENDING: gl.constexpr, AWQ: gl.constexpr,
                  L6: gl.constexpr, POST: gl.constexpr):
    """One piece of a stream-K program's work from step ``s`` (a whole tile or a part of one): its sums, their
    store, the ring made anew (_tile_sums waited for every refill). Returns the piece's steps."""
    tile, k0, steps, m0, n0 = _stream_segment(s, end, T, tiles_n, BLOCK_M, BLOCK_N)
    k_begin = k0 * BLOCK_K
    acc = _tile_sums(x_ring, q_ring, bars, x_desc, q_desc, s_ptr, z_ptr, m0, n0, k_begin, steps,
                     k_begin + (steps - 1) * BLOCK_K, group_size, zero_offset, ssg, szg, BLOCK_M, BLOCK_N, BLOCK_K,
                     STAGES, L4, MMA, DOTA, PENDING, AWQ, L6, POST)
    _stream_store(acc, y_ptr, ws_ptr, cnt_ptr, M, N, m0, n0, sym, tile, steps, T, total, programs, slots_a_tile,
                  DP_TILES, BLOCK_M, BLOCK_N)
    ring_barriers_again(bars, STAGES)
    return steps


@gluon.jit
def w4_rs_stream_kernel(x_desc, q_desc, s_ptr, z_ptr, y_ptr, ws_ptr, cnt_ptr,
                        M, N, K, DP_TILES, split_k, group_size, zero_offset, ssg, szg, sym,
                        BLOCK_M: gl.constexpr, BLOCK_N: gl.constexpr, BLOCK_K: gl.constexpr, SPLIT: gl.constexpr,
                        STAGES: gl.constexpr, L4: gl.constexpr, MMA: gl.constexpr, PENDING: gl.constexpr,
                        AWQ: gl.constexpr = False, L6: gl.constexpr = None, POST: gl.constexpr = False):
    """w4_rs_kernel's tile, stream-K: the launch's (tile, K step) pairs, tile by tile, are cut into one even range
    a program (a 1-D grid of a few programs an SM, stream_programs()), so every SM does the same number of K
    steps whatever the number of tiles. A range that covers a whole tile writes it; the parts of a tile cut
    between programs meet through _store_part's slots (``split_k``: slots a tile, at least the most programs a tile
    can have, stream_slots(); SPLIT unused). Hybrid (TileConfig.stream_tail): the first DP_TILES tiles, a whole
    number of waves, go whole first, tile pid + i programs, and only the rest stream (DP_TILES sits in the other
    kernels' K_SPLIT place: the launch signatures stay one). The ring is used again for each piece: its barriers
    are made anew between pieces (back at phase 0, as _tile_sums expects)."""
    DOTA: gl.constexpr = gl.DotOperandLayout(operand_index=0, parent=MMA, k_width=2)
    s, end, T, tiles_n, total, programs = _stream_range(M, N, K, DP_TILES, BLOCK_M, BLOCK_N, BLOCK_K)
    x_ring, q_ring = _rings(x_desc, q_desc, STAGES)
    bars = ring_barriers(STAGES)
    t = gl.program_id(0)
    while t < DP_TILES:
        _stream_piece(x_ring, q_ring, bars, x_desc, q_desc, s_ptr, z_ptr, y_ptr, ws_ptr, cnt_ptr, M, N, t * T,
                      t * T + T, T, tiles_n, total, programs, split_k, DP_TILES, group_size, zero_offset, ssg, szg,
                      sym, BLOCK_M, BLOCK_N, BLOCK_K, STAGES, L4, MMA, DOTA, PENDING, AWQ, L6, POST)
        t += programs
    while s < end:
        s += _stream_piece(x_ring, q_ring, bars, x_desc, q_desc, s_ptr, z_ptr, y_ptr, ws_ptr, cnt_ptr, M, N, s, end,
                           T, tiles_n, total, programs, split_k, DP_TILES, group_size, zero_offset, ssg, szg, sym,
                           BLOCK_M, BLOCK_N, BLOCK_K, STAGES, L4, MMA, DOTA, PENDING, AWQ, L6, POST)


def stream_programs(tiles: int, steps: int, per_sm: int, sms: int) -> int:
    """Programs of a stream-K launch of ``tiles`` tiles of ``steps`` K steps: ``per_sm`` an SM, at most one a step
    (every range then holds a step, so every program counted in a tile's parts stores one)."""
    return max(1, min(tiles * steps, per_sm * sms))


def stream_whole_tiles(tiles: int, steps: int, programs: int, tail: int) -> int:
    """Tiles a hybrid stream-K launch (TileConfig.stream_tail = ``tail`` > 0) runs whole, one a program, before the
    rest stream: every whole wave of ``programs`` tiles but the last ``tail`` - 1, so the streamed part is the
    last partial wave and ``tail`` - 1 waves before it (the paper's "data-parallel + stream-K"; tail 0: every tile
    streams). Fewer where the streamed part would give a program no step (the ranges must each hold one)."""
    if tail <= 0:
        return 0
    whole = max(0, tiles // programs - tail + 1) * programs
    while whole and 0 < (tiles - whole) * steps < programs:
        whole -= programs
    return whole


def stream_maxnreg(warps: int, per_sm: int, post: bool, block_m: int, block_n: int) -> int | None:
    """The launch budget of w4_rs_stream_kernel at ``per_sm`` programs an SM, or None for ptxas's own count. Left to
    itself ptxas gives the range loop more registers than the one-tile kernel had (16x128 POST: 168 -> 222 a
    thread, two CTAs an SM instead of three), so a POST tile (16-32 tokens) of one or two 16-row repetitions a warp
    takes what lets ``per_sm`` programs fit an SM's 64K registers: at least 128, or 168 with 32 accumulator values
    a thread. Every such tile the sweeps offer compiles at that budget without serialized wgmmas (sm_90a,
    session 19: the sweeps' 288 POST stream compiles, and 32x256 on 8 warps at 168). Session 19 saw no spills
    either, but read only ptxas's LOCAL count; with the stack counted (session 23) several spill at their
    budget: 16x128 and 32x128 on 4 warps at 168 (3 programs an SM; 8-112 B a thread), 16x256 on 8 warps at 128
    (2-3; 120-168 B), 32x256 on 8 warps at 168 (8-112 B). No tuned entry streams (slower in session 20, these
    budgets included), so the rule stands until a sweep times them again. Four repetitions a warp
    (16x256 on 4 warps, x512 on 8) serialize their wgmmas under a cap, and the larger tiles at 168 (64x64,
    256x128), so they keep ptxas's count."""
    if not post or block_n // (16 * warps) > 2:
        return None
    least = 128 if block_m * block_n <= 16 * 32 * warps else 168
    return max(least, min(255, 65536 // (32 * warps * per_sm)) // 8 * 8)


def stream_slots(steps: int, total: int, programs: int) -> int:
    """Slots a tile of a stream-K launch: at least the number of programs whose ranges meet one tile of ``steps``
    steps (every range holds at least total // programs steps, so a tile meets at most ceil(steps / that) + 1)."""
    shortest = total // programs
    return min(programs, -(-steps // shortest) + 1)


CONST_NAMES = ("BLOCK_M", "BLOCK_N", "BLOCK_K", "SPLIT", "STAGES", "L4", "MMA", "PENDING", "AWQ", "L6", "POST")


def split_mode(split: int, slots: bool) -> bool | int:
    """SPLIT of a launch of ``split`` programs along K: False (none), True (gluon_gemm._finish's atomics) or
    SLOTS (_store_tile's slots)."""
    return False if split <= 1 else SLOTS.value if slots else True


def consts(block_m: int, block_n: int, block_k: int, split: bool, stages: int, warps: int, pending: int = 1,
           awq: bool = False, post: bool = False) -> tuple:
    """``pending``: wgmmas left running at the end of a step (1: step i's while step i + 1 is dequantized; 0: none).
    ``awq``: AutoAWQ's words ([K, N/8], awq_q_descriptor) instead of GPTQ's. ``post``: the scales applied to
    each step's wgmma sums in fp32 instead of to the weights (small token tiles; _post_loop; each step's wgmma
    waited for in its step, whatever ``pending``)."""
    return (block_m, block_n, block_k, split, stages, words_layout(block_n, block_k // 8, warps), mma_layout(block_m, warps),
            pending, awq, awq_words_layout(block_n, block_k // 8, warps) if awq else None, post)


def fits(block_m: int, block_n: int, block_k: int, stages: int, warps: int) -> bool:
    """Tiles the layouts cover: 16 weight rows a warp and a whole number of repetitions (BLOCK_N =
    16 W reps, reps 1-4), a wgmma N of 16-256 tokens (16 and 32: M <= 32, written in session 15 without a
    GPU), a K tile of 32-128 inside a group, at most 128 accumulator registers a thread, the ring within an SM."""
    reps = block_n // (16 * warps)
    return (warps in (4, 8) and reps in (1, 2, 4) and block_n == 16 * warps * reps and block_m in (16, 32, 64, 128, 256)
            and block_k in (32, 64, 128) and block_n * block_m <= 128 * 32 * warps and stages >= 3
            and smem_bytes(block_m, block_n, block_k, stages) <= 227 * 1024)


def smem_bytes(block_m: int, block_n: int, block_k: int, stages: int) -> int:
    return stages * (block_m * block_k * 2 + block_k // 8 * block_n * 4 + 8)


# ---- the same tile, warp-specialized (TileConfig.rs == 3; 5-15 % faster on most large tiles, NOTES-gemm) ----
# One load warp refills the ring through empty/ready mbarriers, so the MMA warps pass no CTA barrier in the
# loop: the tile above has five a step (sm_90 PTX), four of them added by Triton's shared-memory barrier pass,
# which does not tell the ring's slots apart. A K split (session 17) reduces through the same workspace as the
# tile above: Triton turns a partition's CTA barrier into a named barrier of its own warps (`bar.sync 0, 128`
# in the 4-warp tile's PTX), so the epilogue's barrier does not wait for the load warp.
WS_LOAD_REGS: gl.constexpr = gl.constexpr(40)


@gluon.jit
def _ws_load(x_desc, q_desc, x_ring, q_ring, ready, empty, m0, n0, k_begin, steps, BLOCK_K: gl.constexpr,
             STAGES: gl.constexpr, AWQ: gl.constexpr, base=0):
    """The load warp: ``steps`` K steps from ``k_begin`` into the ring, step 0 at ring position ``base``."""
    for i in range(steps):
        slot = (base + i) % STAGES
        mbarrier.wait(empty.index(slot), (((base + i) // STAGES) & 1) ^ 1)  # a fresh barrier passes parity 1
        _fill(slot, k_begin + i * BLOCK_K, ready, x_ring, q_ring, x_desc, q_desc, m0, n0, AWQ)


@gluon.jit
def _ws_step(i, acc, zz, ss, s1, z1, sel, n, ready, empty, x_ring, q_ring, s_ptr, z_ptr, k_begin, last, group_size,
             zero_offset, ssg, szg, STAGES: gl.constexpr, BLOCK_K: gl.constexpr, BLOCK_N: gl.constexpr, L4: gl.constexpr,
             DOTA: gl.constexpr, PENDING: gl.constexpr, AWQ: gl.constexpr, L6: gl.constexpr, base=0):
    """K step i (i >= 1) of the MMA warps: as _step, the ring slot released to the load warp once the wgmma
    that read it is done (step i - 1's with PENDING 1, this step's with 0); step 0 at ring position ``base``."""
    XT: gl.constexpr = x_ring.dtype
    slot = (base + i) % STAGES
    mbarrier.wait(ready.index(slot), ((base + i) // STAGES) & 1)
    s2, z2 = _group_load(s_ptr, z_ptr, gl.minimum(k_begin + (i + 2) * BLOCK_K, last), group_size, n, ssg, szg, n)
    a = _a_tile(q_ring.index(slot), sel, zz, ss, XT, L4, DOTA, BLOCK_N, BLOCK_K, AWQ, L6)
    acc = warpgroup_mma(a, x_ring.index(slot).permute((1, 0)), acc, is_async=True)
    zz, ss = _group_operands(s1, z1, n, zero_offset, XT, AWQ)
    acc = warpgroup_mma_wait(PENDING, deps=(acc,))
    if PENDING == 1:
        mbarrier.arrive(empty.index((base + i + STAGES - 1) % STAGES), count=1)
    else:
        mbarrier.arrive(empty.index(slot), count=1)
    return acc, zz, ss, s2, z2


@gluon.jit
def _ws_step_post(i, acc, p, zz, ss, s1, z1, sel, n, nr, ready, empty, x_ring, q_ring, s_ptr, z_ptr, k_begin, last,
                  group_size, zero_offset, ssg, szg, STAGES: gl.constexpr, BLOCK_K: gl.constexpr, BLOCK_N: gl.constexpr,
                  L4: gl.constexpr, DOTA: gl.constexpr, AWQ: gl.constexpr, L6: gl.constexpr, base=0):
    """K step i (i >= 1) of the MMA warps with the scale after the wgmma (POST, as _step_post); the slot goes back
    to the load warp once the step's wgmma is done."""
    XT: gl.constexpr = x_ring.dtype
    slot = (base + i) % STAGES
    mbarrier.wait(ready.index(slot), ((base + i) // STAGES) & 1)
    s2, z2 = _group_load(s_ptr, z_ptr, gl.minimum(k_begin + (i + 2) * BLOCK_K, last), group_size, n, ssg, szg, nr)
    a = _a_tile(q_ring.index(slot), sel, zz, ss, XT, L4, DOTA, BLOCK_N, BLOCK_K, AWQ, L6, True)
    p = warpgroup_mma(a, x_ring.index(slot).permute((1, 0)), p, use_acc=False, is_async=True)
    zz1, ss1 = _group_operands(s1, z1, n, zero_offset, XT, AWQ, True)
    p = warpgroup_mma_wait(0, deps=(p,))
    mbarrier.arrive(empty.index(slot), count=1)
    acc = acc + p * gl.expand_dims(ss, 1)
    return acc, p, zz1, ss1, s2, z2


@gluon.jit
def _ws_post_loop(x_ring, q_ring, ready, empty, s_ptr, z_ptr, sel, n, n0, k_begin, last, group_size, zero_offset, ssg,
                  szg, steps, BLOCK_M: gl.constexpr, BLOCK_N: gl.constexpr, BLOCK_K: gl.constexpr, STAGES: gl.constexpr,
                  L4: gl.constexpr, MMA: gl.constexpr, DOTA: gl.constexpr, AWQ: gl.constexpr, L6: gl.constexpr, base=0):
    """_ws_mma's K loop with the scale after the wgmma (POST, as _post_loop)."""
    nr = _row_columns(n0, BLOCK_N, MMA)
    p, ss0, zz, ss, s1, z1 = _first_step(ready, x_ring, q_ring, s_ptr, z_ptr, sel, n, nr, k_begin, last, group_size,
                                         zero_offset, ssg, szg, BLOCK_M, BLOCK_N, BLOCK_K, L4, MMA, DOTA, AWQ, L6, True,
                                         base)
    p = warpgroup_mma_wait(0, deps=(p,))
    mbarrier.arrive(empty.index(base % STAGES), count=1)
    acc = p * gl.expand_dims(ss0, 1)
    for i in range(1, steps - 1, 2):
        acc, p, zz, ss, s1, z1 = _ws_step_post(i, acc, p, zz, ss, s1, z1, sel, n, nr, ready, empty, x_ring, q_ring,
                                               s_ptr, z_ptr, k_begin, last, group_size, zero_offset, ssg, szg, STAGES,
                                               BLOCK_K, BLOCK_N, L4, DOTA, AWQ, L6, base)
        acc, p, zz, ss, s1, z1 = _ws_step_post(i + 1, acc, p, zz, ss, s1, z1, sel, n, nr, ready, empty, x_ring,
                                               q_ring, s_ptr, z_ptr, k_begin, last, group_size, zero_offset, ssg, szg,
                                               STAGES, BLOCK_K, BLOCK_N, L4, DOTA, AWQ, L6, base)
    if steps % 2 == 0:
        acc, p, zz, ss, s1, z1 = _ws_step_post(steps - 1, acc, p, zz, ss, s1, z1, sel, n, nr, ready, empty, x_ring,
                                               q_ring, s_ptr, z_ptr, k_begin, last, group_size, zero_offset, ssg, szg,
                                               STAGES, BLOCK_K, BLOCK_N, L4, DOTA, AWQ, L6, base)
    return acc


@gluon.jit
def _ws_tile_sums(x_ring, q_ring, ready, empty, s_ptr, z_ptr, k_begin, steps, last, group_size, zero_offset, ssg,
                  szg, n0, BLOCK_M: gl.constexpr, BLOCK_N: gl.constexpr, BLOCK_K: gl.constexpr, STAGES: gl.constexpr,
                  L4: gl.constexpr, MMA: gl.constexpr, PENDING: gl.constexpr, AWQ: gl.constexpr, L6: gl.constexpr,
                  POST: gl.constexpr, base=0):
    """The MMA warps' sums of one tile over ``steps`` K steps from ``k_begin``, step 0 at ring position ``base``;
    every wgmma waited for. Every slot read goes back to the load warp but, with PENDING 1 (not POST), the last
    step's."""
    XT: gl.constexpr = x_ring.dtype
    DOTA: gl.constexpr = gl.DotOperandLayout(operand_index=0, parent=MMA, k_width=2)
    sel, n = _columns(n0, XT, L4, BLOCK_N, AWQ)
    if POST:
        acc = _ws_post_loop(x_ring, q_ring, ready, empty, s_ptr, z_ptr, sel, n, n0, k_begin, last, group_size,
                            zero_offset, ssg, szg, steps, BLOCK_M, BLOCK_N, BLOCK_K, STAGES, L4, MMA, DOTA, AWQ, L6,
                            base)
    else:
        acc, _, zz, ss, s1, z1 = _first_step(ready, x_ring, q_ring, s_ptr, z_ptr, sel, n, n, k_begin, last,
                                             group_size, zero_offset, ssg, szg, BLOCK_M, BLOCK_N, BLOCK_K, L4, MMA, DOTA,
                                             AWQ, L6, False, base)
        acc = warpgroup_mma_wait(PENDING, deps=(acc,))
        if PENDING == 0:
            mbarrier.arrive(empty.index(base % STAGES), count=1)
        # two steps a trip, for the A registers (see w4_rs_kernel)
        for i in range(1, steps - 1, 2):
            acc, zz, ss, s1, z1 = _ws_step(i, acc, zz, ss, s1, z1, sel, n, ready, empty, x_ring, q_ring, s_ptr, z_ptr,
                                           k_begin, last, group_size, zero_offset, ssg, szg, STAGES, BLOCK_K, BLOCK_N,
                                           L4, DOTA, PENDING, AWQ, L6, base)
            acc, zz, ss, s1, z1 = _ws_step(i + 1, acc, zz, ss, s1, z1, sel, n, ready, empty, x_ring, q_ring, s_ptr,
                                           z_ptr, k_begin, last, group_size, zero_offset, ssg, szg, STAGES, BLOCK_K,
                                           BLOCK_N, L4, DOTA, PENDING, AWQ, L6, base)
        if steps % 2 == 0:
            acc, zz, ss, s1, z1 = _ws_step(steps - 1, acc, zz, ss, s1, z1, sel, n, ready, empty, x_ring, q_ring, s_ptr,
                                           z_ptr, k_begin, last, group_size, zero_offset, ssg, szg, STAGES, BLOCK_K,
                                           BLOCK_N, L4, DOTA, PENDING, AWQ, L6, base)
        acc = warpgroup_mma_wait(0, deps=(acc,))
    return acc


@gluon.jit
def _ws_mma(x_ring, q_ring, ready, empty, s_ptr, z_ptr, y_ptr, ws_ptr, cnt_ptr, M, N, k_begin, steps, last, split_k,
            group_size, zero_offset, ssg, szg, sym, m0, n0, tile, BLOCK_M: gl.constexpr, BLOCK_N: gl.constexpr,
            BLOCK_K: gl.constexpr, SPLIT: gl.constexpr, STAGES: gl.constexpr, L4: gl.constexpr, MMA: gl.constexpr,
            PENDING: gl.constexpr, AWQ: gl.constexpr, L6: gl.constexpr, POST: gl.constexpr = False):
    acc = _ws_tile_sums(x_ring, q_ring, ready, empty, s_ptr, z_ptr, k_begin, steps, last, group_size, zero_offset, ssg,
                        szg, n0, BLOCK_M, BLOCK_N, BLOCK_K, STAGES, L4, MMA, PENDING, AWQ, L6, POST)
    # a K split's epilogue: its CTA barrier is this partition's alone (Triton gives a partition's barriers a
    # named barrier of its warps; the load warp never reaches it)
    _store_tile(acc, y_ptr, ws_ptr, cnt_ptr, M, N, m0, n0, sym, tile, split_k, BLOCK_M, BLOCK_N, SPLIT)


@gluon.jit
def _ws_stream_load(x_desc, q_desc, x_ring, q_ring, ready, empty, s, end, T, tiles_n, programs, DP_TILES,
                    BLOCK_M: gl.constexpr, BLOCK_N: gl.constexpr, BLOCK_K: gl.constexpr, STAGES: gl.constexpr,
                    AWQ: gl.constexpr):
    """The load warp of the warp-specialized stream-K tile: the program's whole tiles, then each piece of its
    range in turn, the ring's position carried from piece to piece (the MMA warps count alike)."""
    base = s * 0
    t = gl.program_id(0)
    while t < DP_TILES:
        tile, k0, steps, m0, n0 = _stream_segment(t * T, t * T + T, T, tiles_n, BLOCK_M, BLOCK_N)
        _ws_load(x_desc, q_desc, x_ring, q_ring, ready, empty, m0, n0, 0, T, BLOCK_K, STAGES, AWQ, base)
        base += T
        t += programs
    while s < end:
        tile, k0, steps, m0, n0 = _stream_segment(s, end, T, tiles_n, BLOCK_M, BLOCK_N)
        _ws_load(x_desc, q_desc, x_ring, q_ring, ready, empty, m0, n0, k0 * BLOCK_K, steps, BLOCK_K, STAGES, AWQ, base)
        base += steps
        s += steps


@gluon.jit
def _ws_stream_piece(x_ring, q_ring, ready, empty, s_ptr, z_ptr, y_ptr, ws_ptr, cnt_ptr, M, N, s, end, T, tiles_n,
                     total, programs, slots_a_tile, DP_TILES, group_size, zero_offset, ssg, szg, sym, base,
                     BLOCK_M: gl.constexpr, BLOCK_N: gl.constexpr, BLOCK_K: gl.constexpr, STAGES: gl.constexpr,
                     L4: gl.constexpr, MMA: gl.constexpr, PENDING: gl.constexpr, AWQ: gl.constexpr,
                     L6: gl.constexpr, POST: gl.constexpr):
    """The MMA warps' share of one piece from step ``s`` at ring position ``base``: its sums and their store; with
    PENDING 1 the last step's slot, which _ws_tile_sums keeps, goes back to the load warp here (the next piece's
    loads wait for it). Returns the piece's steps."""
    tile, k0, steps, m0, n0 = _stream_segment(s, end, T, tiles_n, BLOCK_M, BLOCK_N)
    k_begin = k0 * BLOCK_K
    acc = _ws_tile_sums(x_ring, q_ring, ready, empty, s_ptr, z_ptr, k_begin, steps,
                        k_begin + (steps - 1) * BLOCK_K, group_size, zero_offset, ssg, szg, n0, BLOCK_M, BLOCK_N,
                        BLOCK_K, STAGES, L4, MMA, PENDING, AWQ, L6, POST, base)
    if PENDING == 1 and not POST:
        mbarrier.arrive(empty.index((base + steps - 1) % STAGES), count=1)
    _stream_store(acc, y_ptr, ws_ptr, cnt_ptr, M, N, m0, n0, sym, tile, steps, T, total, programs, slots_a_tile,
                  DP_TILES, BLOCK_M, BLOCK_N)
    return steps


@gluon.jit
def _ws_stream_mma(x_ring, q_ring, ready, empty, s_ptr, z_ptr, y_ptr, ws_ptr, cnt_ptr, M, N, s, end, T, tiles_n,
                   total, programs, slots_a_tile, DP_TILES, group_size, zero_offset, ssg, szg, sym,
                   BLOCK_M: gl.constexpr, BLOCK_N: gl.constexpr, BLOCK_K: gl.constexpr, STAGES: gl.constexpr,
                   L4: gl.constexpr, MMA: gl.constexpr, PENDING: gl.constexpr, AWQ: gl.constexpr, L6: gl.constexpr,
                   POST: gl.constexpr):
    """The MMA warps of the warp-specialized stream-K tile: the program's whole tiles, then each piece of its
    range, the ring's position carried from piece to piece."""
    base = s * 0
    t = gl.program_id(0)
    while t < DP_TILES:
        base += _ws_stream_piece(x_ring, q_ring, ready, empty, s_ptr, z_ptr, y_ptr, ws_ptr, cnt_ptr, M, N, t * T,
                                 t * T + T, T, tiles_n, total, programs, slots_a_tile, DP_TILES, group_size,
                                 zero_offset, ssg, szg, sym, base, BLOCK_M, BLOCK_N, BLOCK_K, STAGES, L4, MMA,
                                 PENDING, AWQ, L6, POST)
        t += programs
    while s < end:
        steps = _ws_stream_piece(x_ring, q_ring, ready, empty, s_ptr, z_ptr, y_ptr, ws_ptr, cnt_ptr, M, N, s, end, T,
                                 tiles_n, total, programs, slots_a_tile, DP_TILES, group_size, zero_offset, ssg, szg,
                                 sym, base, BLOCK_M, BLOCK_N, BLOCK_K, STAGES, L4, MMA, PENDING, AWQ, L6, POST)
        base += steps
        s += steps


@gluon.jit
def _ws_barriers(STAGES: gl.constexpr):
    """The warp-specialized ring's barriers: ``ready`` (the TMA unit's arrival) and ``empty`` (the MMA warps'), one
    each a slot, visible to the TMA unit."""
    ready = gl.allocate_shared_memory(gl.int64, [STAGES, 1], mbarrier.MBarrierLayout())
    empty = gl.allocate_shared_memory(gl.int64, [STAGES, 1], mbarrier.MBarrierLayout())
    for b in gl.static_range(STAGES):
        mbarrier.init(ready.index(b), count=1)
        mbarrier.init(empty.index(b), count=1)
    fence_async_shared()
    return ready, empty


@gluon.jit
def w4_rs_ws_kernel(x_desc, q_desc, s_ptr, z_ptr, y_ptr, ws_ptr, cnt_ptr,
                    M, N, K, K_SPLIT, split_k, group_size, zero_offset, ssg, szg, sym,
                    BLOCK_M: gl.constexpr, BLOCK_N: gl.constexpr, BLOCK_K: gl.constexpr, SPLIT: gl.constexpr,
                    STAGES: gl.constexpr, L4: gl.constexpr, MMA: gl.constexpr, PENDING: gl.constexpr,
                    AWQ: gl.constexpr = False, L6: gl.constexpr = None, POST: gl.constexpr = False):
    tile, m0, n0 = tile_origin(BLOCK_M, BLOCK_N)
    x_ring, q_ring = _rings(x_desc, q_desc, STAGES)
    ready, empty = _ws_barriers(STAGES)
    k_begin, steps, last = k_range(gl.program_id(2), K_SPLIT, K, BLOCK_K)
    gl.warp_specialize([
        (_ws_mma, (x_ring, q_ring, ready, empty, s_ptr, z_ptr, y_ptr, ws_ptr, cnt_ptr, M, N, k_begin, steps, last,
                   split_k, group_size, zero_offset, ssg, szg, sym, m0, n0, tile, BLOCK_M, BLOCK_N, BLOCK_K, SPLIT,
                   STAGES, L4, MMA, PENDING, AWQ, L6, POST)),
        (_ws_load, (x_desc, q_desc, x_ring, q_ring, ready, empty, m0, n0, k_begin, steps, BLOCK_K, STAGES, AWQ)),
    ], [1], [WS_LOAD_REGS])


@gluon.jit
def w4_rs_ws_stream_kernel(x_desc, q_desc, s_ptr, z_ptr, y_ptr, ws_ptr, cnt_ptr,
                           M, N, K, DP_TILES, split_k, group_size, zero_offset, ssg, szg, sym,
                           BLOCK_M: gl.constexpr, BLOCK_N: gl.constexpr, BLOCK_K: gl.constexpr, SPLIT: gl.constexpr,
                           STAGES: gl.constexpr, L4: gl.constexpr, MMA: gl.constexpr, PENDING: gl.constexpr,
                           AWQ: gl.constexpr = False, L6: gl.constexpr = None, POST: gl.constexpr = False):
    """w4_rs_ws_kernel launched stream-K (w4_rs_stream_kernel's whole tiles, ranges, parts and slots: ``split_k``
    slots a tile). The load warp and the MMA warps walk the same pieces of the program's work; the ring's barriers
    keep their phases from piece to piece (both sides count the ring's position across pieces), so nothing is
    made anew."""
    start, end, T, tiles_n, total, programs = _stream_range(M, N, K, DP_TILES, BLOCK_M, BLOCK_N, BLOCK_K)
    x_ring, q_ring = _rings(x_desc, q_desc, STAGES)
    ready, empty = _ws_barriers(STAGES)
    gl.warp_specialize([
        (_ws_stream_mma, (x_ring, q_ring, ready, empty, s_ptr, z_ptr, y_ptr, ws_ptr, cnt_ptr, M, N, start, end, T,
                          tiles_n, total, programs, split_k, DP_TILES, group_size, zero_offset, ssg, szg, sym,
                          BLOCK_M, BLOCK_N, BLOCK_K, STAGES, L4, MMA, PENDING, AWQ, L6, POST)),
        (_ws_stream_load, (x_desc, q_desc, x_ring, q_ring, ready, empty, start, end, T, tiles_n, programs, DP_TILES,
                           BLOCK_M, BLOCK_N, BLOCK_K, STAGES, AWQ)),
    ], [1], [WS_LOAD_REGS])


WS_CONST_NAMES = CONST_NAMES


def ws_consts(block_m: int, block_n: int, block_k: int, stages: int, warps: int, pending: int = 1,
              awq: bool = False, post: bool = False, split: bool = False) -> tuple:
    return (block_m, block_n, block_k, split, stages, words_layout(block_n, block_k // 8, warps), mma_layout(block_m, warps),
            pending, awq, awq_words_layout(block_n, block_k // 8, warps) if awq else None, post)


# The least launch budget at which a 4-warp POST tile compiles without spills or serialized wgmmas (sm_90a,
# benchmarks/sass_probe.py, session 17), by (BLOCK_M, BLOCK_N, AWQ words), where that budget fits more CTAs an SM than
# ws_maxnreg's 128 (two): 64 fits four (256 threads each: 4 MMA warps and the load warpgroup), 80 three. A tile takes
# it where the tuned table says so (TileConfig.lean; H200, session 18: 8-10 % slower on GPTQ's M = 16 tiles, 6 %
# faster on AWQ's 16x64 one on 8192x28672). Session 23 counted ptxas's stack spills too (sass_probe had read only
# LOCAL, which stays 0): the 16x128 tiles at 80 spilled 64-72 B (GPTQ) and 48 B (AWQ) a thread and need 96 and 88,
# two CTAs like 128, so they have no lean budget; AWQ's 32x64 spilled 16 B at 72 and takes 80.
LEAN_WS_REGS = {(16, 64, False): 64, (16, 64, True): 64, (32, 64, False): 64, (32, 64, True): 80}


def ws_maxnreg(warps: int, block_m: int, block_n: int, lean: bool = False, awq: bool = False,
               stream: bool = False) -> int:
    """Registers a thread at launch: the MMA warps and the load warp round up to whole warpgroups (8 + 1 -> 12
    warps: 168 a thread); with 4 MMA warps and at most 64 accumulator registers a thread, 128, so two CTAs fit
    an SM (ptxas wants 158 or more at launch for a 128-register accumulator). The MMA warps then take back
    what the load warp gives up (setmaxnreg). ``lean`` (a POST tile): LEAN_WS_REGS where it has the tile.
    ``stream`` (w4_rs_ws_stream_kernel, whose loop over a range's pieces holds a few more values): 4-warp tiles
    of 64 accumulator registers a thread take 168, where 128 made ptxas serialize the wgmmas (C7512 on the 64x128
    and 128x64 tiles, sm_90a; 32 a thread still fit 128)."""
    if lean and warps == 4 and (block_m, block_n, awq) in LEAN_WS_REGS:
        return LEAN_WS_REGS[(block_m, block_n, awq)]
    if stream and warps == 4 and block_m * block_n == 64 * 32 * warps:
        return 168
    return 128 if warps == 4 and block_m * block_n <= 64 * 32 * warps else 168
