"""Tensor-core W4A16 tile for 4-bit GPTQ-order layers at small M, written in Gluon so the dequantized
weight is born in the MMA's A-operand registers.

Triton's ``tl.dot`` path (``triton_gemm`` DOT_KTJ) dequantizes each word where it was loaded and
then moves the fp16 tile through shared memory into the A-operand layout (a store, a barrier and
loads per K step; `benchmarks/NOTES-gemm.md`). Here the K order of the tile is permuted instead:
the m16n8k16 A layout gives thread t (lane % 4) the K slots 2t, 2t + 1, 2t + 8, 2t + 9 of every 16,
i.e. slot ``s = 32q + 16c + 8h + 2t + e``; putting field ``4e + 2c + h`` of word ``4q + t`` in slot s
makes a thread's slots the eight codes of its own words, and its register pairs (slots 2t, 2t + 1)
the pairs (q_j, q_{j+4}) that one ``lop3`` makes together (:func:`_qz_f16_asm`). So each thread loads its
own words (the explicit layout ``words_layout``), turns each into four registers of (q - z) pairs,
exact in fp16/bf16, and the tile is already the A operand (sm_90 SASS: the lop3 results are the
HMMA's registers, no repacking, no shared memory). The scale is applied to each K step's fp32 sums
per output (a step lies in one group), which skips the rounding of s (q - z) to 16 bits.

x is read 8 inputs a thread (16-byte loads), permuted to the same K order in registers and converted
to the B operand (one shared-memory round trip with barriers). Using ``mma.sync`` rather than wgmma
keeps every operand in registers: wgmma reads B from shared memory, which needs a
``fence.proxy.async`` per step, and ptxas makes that a MEMBAR that waits for the next step's words
prefetched above it (NOTES-gemm, ninth session: 8192x28672 M=16 86 -> 67 us).

Computes ``y^T[BLOCK_N, BLOCK_M] = W[BLOCK_N, K] x^T`` per program, K split over programs as in
triton_gemm (fp32 workspace, the tile's last program writes; same protocol, same workspace).
Handles: 4-bit codes along K, zeros packed along N (GPTQ), sequential groups that are a multiple of
BLOCK_K, N % BLOCK_N == 0, K % BLOCK_K == 0, fp16/bf16, 4 warps. Everything else keeps DOT_KTJ.
"""

from __future__ import annotations

import functools

from triton.experimental import gluon
from triton.experimental.gluon import language as gl
from triton.experimental.gluon.language.nvidia.ampere import mma_v2

from .triton_gemm import CLUSTER_SYNC_ASM, DSMEM_LOAD_ASM, SMEM_STORE_ASM, _pairs_asm

# fp16 (-64, -64) as a signed int32 (_neg_high_z)
_NEG_64_PAIR: gl.constexpr = gl.constexpr(0xD400D400 - (1 << 32))


@functools.lru_cache(maxsize=None)
def words_layout(block_n: int, kw: int, warps: int = 4) -> gl.DistributedLinearLayout:
    """[BLOCK_N, KW] words: lane bits 0-1 pick the word (t) of a 32-input chunk and lane bits 2-4
    the row; a thread also holds row + 8, the next 32-input chunks (q) and row + 16·warps·i; warps take
    rows 16 apart. The m16n8k16 A operand (16 rows a warp, the warps down N) in word units."""
    reg = [[8, 0]] + [[0, 4 << i] for i in range((kw // 4).bit_length() - 1)]
    reg += [[16 * warps << i, 0] for i in range((block_n // (16 * warps)).bit_length() - 1)]
    return gl.DistributedLinearLayout(reg_bases=reg, lane_bases=[[0, 1], [0, 2], [1, 0], [2, 0], [4, 0]],
                                      warp_bases=[[16 << i, 0] for i in range(warps.bit_length() - 1)], block_bases=[],
                                      shape=[block_n, kw])


@functools.lru_cache(maxsize=None)
def x_layout(warps: int = 4) -> gl.BlockedLayout:
    return gl.BlockedLayout(size_per_thread=[1, 8], threads_per_warp=[2, 16], warps_per_cta=[warps, 1], order=[1, 0])


def warps_for(block_n: int, num_warps: int) -> int:
    """The tile's warps: the tuned count where each warp gets 16 rows or more, else 4."""
    return num_warps if num_warps in (4, 8) and block_n >= 16 * num_warps else 4


@gluon.jit
def _fence_gpu(dep):
    return gl.inline_asm_elementwise("fence.acq_rel.gpu;\n\tmov.u32 $0, 0;", "=r,r", [dep], dtype=gl.int32,
                                     is_pure=False, pack=1)


def _qz_f16_asm() -> str:
    """PTX of :func:`_qz8` for fp16: the eight q - z of a 4-bit GPTQ-order word, exactly.

    ``lop3`` with the mask 0x000F000F makes codes j and j + 4 of ``w >> 4j`` the halves 1024 + q (0x6400
    magic) and one paired subtract of 1024 + z leaves q - z (triton_gemm._dequant8_pairs). The codes at
    bits 4-7 / 20-23 need no shift: 0x00F000F0 gives 1024 + 16 q, and one paired fma by 1/16 minus
    (64 + z) gives q - z (the pairing of FasterTransformer's int4 -> fp16 conversion): one shift a word
    instead of three. bf16's 7-bit mantissa cannot hold 16 q, so its version shifts four times
    (triton_gemm._pairs_asm without the multiply). Halves come out as ($j, $j + 4) = (q_j - z, q_{j+4} - z):
    the kernel's K order pairs them."""
    return "\n".join(["{", ".reg .b32 u, t0, t1, t2, t3, r16;",
                      "mov.b32 r16, 0x2C002C00;",  # (1/16, 1/16)
                      "shr.u32 u, $8, 8;",
                      "lop3.b32 t0, $8, 0x000F000F, 0x64006400, 0xEA;",
                      "lop3.b32 t1, $8, 0x00F000F0, 0x64006400, 0xEA;",
                      "lop3.b32 t2, u, 0x000F000F, 0x64006400, 0xEA;",
                      "lop3.b32 t3, u, 0x00F000F0, 0x64006400, 0xEA;",
                      "sub.f16x2 t0, t0, $9;",
                      "fma.rn.f16x2 t1, t1, r16, $10;",
                      "sub.f16x2 t2, t2, $9;",
                      "fma.rn.f16x2 t3, t3, r16, $10;"]
                     + [f"mov.b32 {{${j}, ${j + 4}}}, t{j};" for j in range(4)] + ["}"])


_QZ_F16: gl.constexpr = gl.constexpr(_qz_f16_asm())
_QZ_BF16: gl.constexpr = gl.constexpr(_pairs_asm(0x4300, "sub.rn.bf16x2", None))


@gluon.jit
def word_asm(words, a, b, ASM_F16: gl.constexpr, ASM_BF16: gl.constexpr, XT: gl.constexpr):
    """Eight 16-bit floats of each word from one of two PTX blocks (outputs $0-$7, inputs word, a, b)."""
    if XT == gl.float16:
        return gl.inline_asm_elementwise(asm=ASM_F16, constraints="=h,=h,=h,=h,=h,=h,=h,=h,r,r,r", args=[words, a, b],
                                         dtype=(gl.float16,) * 8, is_pure=True, pack=1)
    else:
        return gl.inline_asm_elementwise(asm=ASM_BF16, constraints="=h,=h,=h,=h,=h,=h,=h,=h,r,r,r", args=[words, a, b],
                                         dtype=(gl.bfloat16,) * 8, is_pure=True, pack=1)


@gluon.jit
def _qz8(words, zm, zh, XT: gl.constexpr):
    """q - z of the eight codes of each word (:func:`_qz_f16_asm`); ``zm`` holds MAGIC + z and ``zh``
    -(64 + z) (fp16 only) in both 16-bit halves."""
    return word_asm(words, zm, zh, _QZ_F16, _QZ_BF16, XT)


@gluon.jit
def _halves(v, XT: gl.constexpr):
    """A float per output as XT's 16 bits in both halves of an int32."""
    b = v.to(XT).to(gl.int16, bitcast=True).to(gl.int32) & 0xFFFF
    return b | (b << 16)


@gluon.jit
def _neg_high_z(z):
    """-(64 + z) as fp16 bits in both halves, by integer arithmetic (0 <= z < 64): 64 + z is 0x5400 + 16 z
    (ulp 1/16 on [64, 128)) and the sign bit makes it negative; no carry between the halves. (Was int -> fp32 ->
    fp16: sm_90a loop of the 16x128x128 tile 498 -> 485 instructions, 166 registers. An fp32-reciprocal group
    index as gluon_rs's cut 18 more but took 186 registers: two CTAs an SM instead of three, so not here.)"""
    return z * 0x100010 + _NEG_64_PAIR


@gluon.jit
def _magic_z(z, XT: gl.constexpr):
    """MAGIC + z (the 16-bit float whose low mantissa bits are z: fp16 1024 + z, bf16 128 + z) in both
    halves of an int32: what the dequantization PTX subtracts from MAGIC + q."""
    MAGIC: gl.constexpr = 0x6400 if XT == gl.float16 else 0x4300
    zm = MAGIC | z
    return zm | (zm << 16)


@gluon.jit
def _finish(acc, y_ptrs, ws_ptrs, mask, cnt_ptr, tile, split_k, SPLIT: gl.constexpr):
    """Write a tile's result, or add it to the split-K workspace and let the tile's last program
    write the sum (the protocol of triton_gemm._finish, whose comments say why every thread fences)."""
    if not SPLIT:
        gl.store(y_ptrs, acc.to(y_ptrs.dtype.element_ty), mask=mask)
    else:
        gl.atomic_add(ws_ptrs, acc, mask=mask, sem="relaxed")
        _fence_gpu(split_k)
        gl.thread_barrier()
        arrived = gl.atomic_add(cnt_ptr + tile, 1, sem="acq_rel")
        if arrived == split_k - 1:
            _fence_gpu(split_k)
            total = gl.atomic_xchg(ws_ptrs, gl.zeros_like(acc), mask=mask, sem="acquire")
            gl.store(y_ptrs, total.to(y_ptrs.dtype.element_ty), mask=mask)
            gl.atomic_xchg(cnt_ptr + tile, 0, sem="relaxed")


_SMEM_STORE: gl.constexpr = gl.constexpr(SMEM_STORE_ASM)
_DSMEM_LOAD: gl.constexpr = gl.constexpr(DSMEM_LOAD_ASM)
_CLUSTER_SYNC: gl.constexpr = gl.constexpr(CLUSTER_SYNC_ASM)


@gluon.jit
def _cluster_sync(dep):
    return gl.inline_asm_elementwise(_CLUSTER_SYNC, "=r,r", [dep], dtype=gl.int32, is_pure=False, pack=1)


@gluon.jit
def _cluster_sums(acc, e, rank, RC: gl.constexpr, CLUSTER: gl.constexpr):
    """The reduction of triton_gemm._cluster_finish: this CTA's partial sums ``acc`` stored at float offsets ``e``
    of its shared memory, a cluster barrier, then this CTA's 1/CLUSTER of the tile's RC sums added over the
    cluster's CTAs in rank order. Returns their flat indices and the sums (flat layout); the caller stores them and
    ends with _cluster_sync, so that no CTA leaves while another still reads its shared memory."""
    gl.thread_barrier()  # every warp is past the loop's use of shared memory
    gl.inline_asm_elementwise(_SMEM_STORE, "=r,r,f", [e * 4, acc], dtype=gl.int32, is_pure=False, pack=1)
    _cluster_sync(rank)
    SL: gl.constexpr = RC // CLUSTER
    FLAT: gl.constexpr = gl.BlockedLayout([1], [32], [gl.num_warps()], [0])
    f = rank * SL + gl.arange(0, SL, layout=FLAT)
    total = gl.zeros((SL,), dtype=gl.float32, layout=FLAT)
    for j in gl.static_range(CLUSTER):
        total += gl.inline_asm_elementwise(_DSMEM_LOAD, "=f,r,r", [f * 4, f * 0 + j], dtype=gl.float32,
                                           is_pure=False, pack=1)
    return f, total


@gluon.jit
def _cluster_finish(acc, e, y_ptr, rank, n0, m0, N, M, syn, sym, R: gl.constexpr, RC: gl.constexpr,
                    CLUSTER: gl.constexpr):
    """triton_gemm._cluster_finish for this tile (the split-K reduction in distributed shared memory)."""
    f, total = _cluster_sums(acc, e, rank, RC, CLUSTER)
    n = n0 + f % R
    m = m0 + f // R
    gl.store(y_ptr + n * syn + m * sym, total.to(y_ptr.dtype.element_ty), mask=(n < N) & (m < M))
    _cluster_sync(rank)


@gluon.jit
def w4_dot_kernel(x_ptr, qw_ptr, s_ptr, z_ptr, g_ptr, y_ptr, ws_ptr, cnt_ptr,
                  M, N, K, K_SPLIT, split_k, group_size, zero_offset,
                  sxm, sxk, sqa, sqb, ssg, ssn, sza, szb, sym, syn,  # triton_gemm's argument list; the unit
                  BLOCK_M: gl.constexpr, BLOCK_N: gl.constexpr, BLOCK_K: gl.constexpr, SPLIT: gl.constexpr,
                  WL: gl.constexpr, XL: gl.constexpr, CLUSTER: gl.constexpr = 1):
    # strides (sxk, sqb, ssn, szb, syn) are 1 here and g_ptr is unused: the host only sends such layers
    KW: gl.constexpr = BLOCK_K // 8
    MMA: gl.constexpr = gl.NVMMADistributedLayout(version=[2, 0], warps_per_cta=[gl.num_warps(), 1], instr_shape=[16, 8])
    DOTA: gl.constexpr = gl.DotOperandLayout(operand_index=0, parent=MMA, k_width=2)
    DOTB: gl.constexpr = gl.DotOperandLayout(operand_index=1, parent=MMA, k_width=2)
    XT: gl.constexpr = x_ptr.dtype.element_ty
    if CLUSTER > 1:  # the K split runs across the CTAs of a cluster (_cluster_finish)
        pid_n = gl.program_id(0) // CLUSTER
        pid_k = gl.program_id(0) % CLUSTER
    else:
        pid_n = gl.program_id(0)
        pid_k = gl.program_id(2)
    pid_m = gl.program_id(1)
    tile = pid_m * gl.num_programs(0) + pid_n
    offs_n = pid_n * BLOCK_N + gl.arange(0, BLOCK_N, layout=gl.SliceLayout(1, WL))
    offs_kw = gl.arange(0, KW, layout=gl.SliceLayout(0, WL))
    xm = pid_m * BLOCK_M + gl.arange(0, BLOCK_M, layout=gl.SliceLayout(1, XL))
    cols = gl.arange(0, BLOCK_K, layout=gl.SliceLayout(0, XL))
    x_rows = x_ptr + xm[:, None] * sxm
    x_ok = (xm < M)[:, None]
    acc = gl.zeros((BLOCK_N, BLOCK_M), dtype=gl.float32, layout=MMA)
    k_begin = pid_k * K_SPLIT
    k_end = gl.minimum(k_begin + K_SPLIT, K)
    # the next step's words, zeros, scales and inputs are loaded before this step's work (registers double
    # buffered: without it a program waits out every load; the last prefetch re-reads the last tile)
    w_ptrs = qw_ptr + offs_kw[None, :] * sqa + offs_n[:, None]
    s_ptrs = s_ptr + pid_n * BLOCK_N + gl.arange(0, BLOCK_N, layout=gl.SliceLayout(1, MMA))
    words = gl.load(w_ptrs + (k_begin // 8) * sqa)
    zw = gl.load(z_ptr + (k_begin // group_size) * sza + offs_n // 8)
    s = gl.load(s_ptrs + (k_begin // group_size) * ssg)
    x = gl.load(x_rows + (k_begin + cols)[None, :], mask=x_ok, other=0.0)
    for k0 in range(k_begin, k_end, BLOCK_K):
        kn = gl.minimum(k0 + BLOCK_K, k_end - BLOCK_K)
        words_n = gl.load(w_ptrs + (kn // 8) * sqa)
        zw_n = gl.load(z_ptr + (kn // group_size) * sza + offs_n // 8)
        s_n = gl.load(s_ptrs + (kn // group_size) * ssg)
        x_n = gl.load(x_rows + (kn + cols)[None, :], mask=x_ok, other=0.0)
        z = ((zw >> ((offs_n % 8) * 4)) & 15) + zero_offset
        zm = _magic_z(z, XT)
        if XT == gl.float16:
            zh = _neg_high_z(z)
        else:
            zh = zm  # unused by the bf16 PTX
        f0, f1, f2, f3, f4, f5, f6, f7 = _qz8(words, zm[:, None], zh[:, None], XT)
        # (n, kw, e, h, c) with field 4e + 2c + h, kw = 4q + t: slots in (q, c, h, t, e) order
        w = gl.join(gl.join(gl.join(f0, f4), gl.join(f1, f5)), gl.join(gl.join(f2, f6), gl.join(f3, f7)))
        w = gl.reshape(w, (BLOCK_N, BLOCK_K // 32, 4, 2, 2, 2))
        w = gl.reshape(gl.permute(w, (0, 1, 5, 4, 2, 3)), (BLOCK_N, BLOCK_K))
        w = gl.convert_layout(w, DOTA)  # register moves only: see the module docstring
        # input 32q + 8t + 4e + 2c + h -> slot 32q + 16c + 8h + 2t + e, then x^T as the B operand
        xp = gl.permute(gl.reshape(x, (BLOCK_M, BLOCK_K // 32, 4, 2, 2, 2)), (0, 1, 4, 5, 2, 3))
        xb = gl.convert_layout(gl.permute(gl.reshape(xp, (BLOCK_M, BLOCK_K)), (1, 0)), DOTB)
        # a K step lies in one group: its sums times the group's scale of each output
        part = mma_v2(w, xb, gl.zeros((BLOCK_N, BLOCK_M), dtype=gl.float32, layout=MMA))
        acc = acc + part * s.to(gl.float32)[:, None]
        words, zw, s, x = words_n, zw_n, s_n, x_n
    rn = gl.arange(0, BLOCK_N, layout=gl.SliceLayout(1, MMA))
    rm = gl.arange(0, BLOCK_M, layout=gl.SliceLayout(0, MMA))
    if CLUSTER > 1:
        _cluster_finish(acc, rn[:, None] + rm[None, :] * BLOCK_N, y_ptr, pid_k, pid_n * BLOCK_N, pid_m * BLOCK_M, N, M,
                        1, sym, BLOCK_N, BLOCK_N * BLOCK_M, CLUSTER)
    else:
        on = pid_n * BLOCK_N + rn
        om = pid_m * BLOCK_M + rm
        mask = (om < M)[None, :] & (on < N)[:, None]
        _finish(acc, y_ptr + om[None, :] * sym + on[:, None], ws_ptr + om[None, :] * N + on[:, None], mask, cnt_ptr,
                tile, split_k, SPLIT)


CONST_NAMES = ("BLOCK_M", "BLOCK_N", "BLOCK_K", "SPLIT", "WL", "XL", "CLUSTER")


def consts(block_m: int, block_n: int, block_k: int, split: bool, warps: int = 4, cluster: int = 1) -> tuple:
    return (block_m, block_n, block_k, split, words_layout(block_n, block_k // 8, warps), x_layout(warps), cluster)
