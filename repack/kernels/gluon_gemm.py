"""Tensor-core W4A16 tile for 4-bit GPTQ-order layers, written in Gluon so the dequantized weight is
born in the wgmma A-operand registers.

Triton's ``tl.dot`` path (``triton_gemm`` DOT_KTJ) dequantizes each word where it was loaded and
then moves the fp16 tile through shared memory into the A-operand layout (a store, a barrier and
loads per K step; `benchmarks/NOTES-gemm.md`). Here the K order of the tile is permuted instead:
wgmma's A layout gives thread t (lane % 4) the K slots 2t, 2t + 1, 2t + 8, 2t + 9 of every 16, i.e.
slot ``s = 32q + 16c + 8h + 2t + e``; putting input ``32q + 8t + 4c + 2h + e`` in slot s makes a
thread's slots exactly the eight codes of words ``4q + t`` of its rows. So each thread loads its own
words (the explicit layout ``words_layout``), dequantizes them two codes per instruction
(``_PAIRS_F16`` / ``_PAIRS_BF16`` of triton_gemm) and the tile is already the A operand: the layout
conversion compiles to register moves (sm_90 SASS: no shared-memory traffic for the weight). x is
read in the same permuted K order into shared memory as the B operand (x^T), so the sum is the same.

Computes ``y^T[BLOCK_N, BLOCK_M] = W[BLOCK_N, K] x^T`` per program, K split over programs as in
triton_gemm (fp32 workspace, the tile's last program writes; same protocol, same workspace).
Handles: 4-bit codes along K, zeros packed along N (GPTQ), sequential groups that are a multiple of
BLOCK_K, N % BLOCK_N == 0, K % BLOCK_K == 0, fp16/bf16, 4 warps. Everything else keeps DOT_KTJ.
"""

from __future__ import annotations

import functools

from triton.experimental import gluon
from triton.experimental.gluon import language as gl
from triton.experimental.gluon.language.nvidia.hopper import fence_async_shared, warpgroup_mma

from .triton_gemm import _PAIRS_BF16, _PAIRS_F16

NUM_WARPS = 4


@functools.lru_cache(maxsize=None)
def words_layout(block_n: int, kw: int) -> gl.DistributedLinearLayout:
    """[BLOCK_N, KW] words: lane bits 0-1 pick the word (t) of a 32-input chunk and lane bits 2-4
    the row; a thread also holds row + 8, the next 32-input chunks (q) and row + 64·i; warps take
    rows 16 and 32 apart. The wgmma A operand (instr 16 rows, 4 warps down M) in word units."""
    reg = [[8, 0]] + [[0, 4 << i] for i in range((kw // 4).bit_length() - 1)]
    reg += [[64 << i, 0] for i in range((block_n // 64).bit_length() - 1)]
    return gl.DistributedLinearLayout(reg_bases=reg, lane_bases=[[0, 1], [0, 2], [1, 0], [2, 0], [4, 0]],
                                      warp_bases=[[16, 0], [32, 0]], block_bases=[], shape=[block_n, kw])


@functools.lru_cache(maxsize=None)
def x_layout() -> gl.BlockedLayout:
    return gl.BlockedLayout(size_per_thread=[1, 2], threads_per_warp=[4, 8], warps_per_cta=[NUM_WARPS, 1], order=[1, 0])


@gluon.jit
def _fence_gpu(dep):
    return gl.inline_asm_elementwise("fence.acq_rel.gpu;\n\tmov.u32 $0, 0;", "=r,r", [dep], dtype=gl.int32,
                                     is_pure=False, pack=1)


@gluon.jit
def _pairs(z, s, XT: gl.constexpr):
    """The operands of :func:`_dequant8` per output: MAGIC + z and the scale in the activation type,
    each in both 16-bit halves of an int32."""
    MAGIC: gl.constexpr = 0x6400 if XT == gl.float16 else 0x4300
    zz = MAGIC | z
    zz = zz | (zz << 16)
    sb = s.to(XT).to(gl.int16, bitcast=True).to(gl.int32) & 0xFFFF
    return zz, sb | (sb << 16)


@gluon.jit
def _dequant8(words, zz, ss, XT: gl.constexpr):
    """The eight weights s * (q - z) of each 4-bit GPTQ-order word in the activation type, two per
    instruction and exact (triton_gemm._dequant8_pairs: the PTX and why it rounds as the reference)."""
    if XT == gl.float16:
        return gl.inline_asm_elementwise(asm=_PAIRS_F16, constraints="=h,=h,=h,=h,=h,=h,=h,=h,r,r,r", args=[words, zz, ss],
                                         dtype=(gl.float16,) * 8, is_pure=True, pack=1)
    else:
        return gl.inline_asm_elementwise(asm=_PAIRS_BF16, constraints="=h,=h,=h,=h,=h,=h,=h,=h,r,r,r", args=[words, zz, ss],
                                         dtype=(gl.bfloat16,) * 8, is_pure=True, pack=1)


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


@gluon.jit
def w4_dot_kernel(x_ptr, qw_ptr, s_ptr, z_ptr, g_ptr, y_ptr, ws_ptr, cnt_ptr,
                  M, N, K, K_SPLIT, split_k, group_size, zero_offset,
                  sxm, sxk, sqa, sqb, ssg, ssn, sza, szb, sym, syn,  # triton_gemm's argument list; the unit
                  BLOCK_M: gl.constexpr, BLOCK_N: gl.constexpr, BLOCK_K: gl.constexpr, SPLIT: gl.constexpr,
                  WL: gl.constexpr, XL: gl.constexpr):
    # strides (sxk, sqb, ssn, szb, syn) are 1 here and g_ptr is unused: the host only sends such layers
    KW: gl.constexpr = BLOCK_K // 8
    MMA: gl.constexpr = gl.NVMMADistributedLayout(version=[3, 0], warps_per_cta=[4, 1], instr_shape=[16, BLOCK_M, 16])
    DOTA: gl.constexpr = gl.DotOperandLayout(operand_index=0, parent=MMA, k_width=2)
    XS: gl.constexpr = gl.NVMMASharedLayout(swizzle_byte_width=128 if BLOCK_K >= 64 else 64, element_bitwidth=16, rank=2)
    XT: gl.constexpr = x_ptr.dtype.element_ty
    pid_n = gl.program_id(0)
    pid_m = gl.program_id(1)
    pid_k = gl.program_id(2)
    tile = pid_m * gl.num_programs(0) + pid_n
    offs_n = pid_n * BLOCK_N + gl.arange(0, BLOCK_N, layout=gl.SliceLayout(1, WL))
    offs_kw = gl.arange(0, KW, layout=gl.SliceLayout(0, WL))
    xm = pid_m * BLOCK_M + gl.arange(0, BLOCK_M, layout=gl.SliceLayout(1, XL))
    sl = gl.arange(0, BLOCK_K, layout=gl.SliceLayout(0, XL))
    perm = 32 * (sl // 32) + 8 * ((sl // 2) % 4) + 4 * ((sl // 16) % 2) + 2 * ((sl // 8) % 2) + sl % 2
    x_rows = x_ptr + xm[:, None] * sxm
    x_ok = (xm < M)[:, None]
    x_smem = gl.allocate_shared_memory(XT, [BLOCK_M, BLOCK_K], XS)
    acc = gl.zeros((BLOCK_N, BLOCK_M), dtype=gl.float32, layout=MMA)
    k_begin = pid_k * K_SPLIT
    k_end = gl.minimum(k_begin + K_SPLIT, K)
    # the next step's words, zeros, scales and inputs are loaded before this step's work (registers double
    # buffered: without it a program waits out every load; the last prefetch re-reads the last tile)
    w_ptrs = qw_ptr + offs_kw[None, :] * sqa + offs_n[:, None]
    words = gl.load(w_ptrs + (k_begin // 8) * sqa)
    zw = gl.load(z_ptr + (k_begin // group_size) * sza + offs_n // 8)
    s = gl.load(s_ptr + (k_begin // group_size) * ssg + offs_n)
    x = gl.load(x_rows + (k_begin + perm)[None, :], mask=x_ok, other=0.0)
    for k0 in range(k_begin, k_end, BLOCK_K):
        kn = gl.minimum(k0 + BLOCK_K, k_end - BLOCK_K)
        words_n = gl.load(w_ptrs + (kn // 8) * sqa)
        zw_n = gl.load(z_ptr + (kn // group_size) * sza + offs_n // 8)
        s_n = gl.load(s_ptr + (kn // group_size) * ssg + offs_n)
        x_n = gl.load(x_rows + (kn + perm)[None, :], mask=x_ok, other=0.0)
        z = ((zw >> ((offs_n % 8) * 4)) & 15) + zero_offset
        zz, ss = _pairs(z, s, XT)
        f0, f1, f2, f3, f4, f5, f6, f7 = _dequant8(words, zz[:, None], ss[:, None], XT)
        # (n, kw, c, h, e) with field 4c + 2h + e, then kw = 4q + t: slots in (q, c, h, t, e) order
        w = gl.join(gl.join(gl.join(f0, f4), gl.join(f2, f6)), gl.join(gl.join(f1, f5), gl.join(f3, f7)))
        w = gl.reshape(w, (BLOCK_N, BLOCK_K // 32, 4, 2, 2, 2))
        w = gl.reshape(gl.permute(w, (0, 1, 3, 4, 2, 5)), (BLOCK_N, BLOCK_K))
        w = gl.convert_layout(w, DOTA)  # register moves only: see the module docstring
        gl.thread_barrier()  # the previous step's wgmma has read x_smem (it is synchronous)
        x_smem.store(x)
        fence_async_shared()
        gl.thread_barrier()
        acc = warpgroup_mma(w, x_smem.permute((1, 0)), acc)
        words, zw, s, x = words_n, zw_n, s_n, x_n
    on = pid_n * BLOCK_N + gl.arange(0, BLOCK_N, layout=gl.SliceLayout(1, MMA))
    om = pid_m * BLOCK_M + gl.arange(0, BLOCK_M, layout=gl.SliceLayout(0, MMA))
    mask = (om < M)[None, :] & (on < N)[:, None]
    _finish(acc, y_ptr + om[None, :] * sym + on[:, None], ws_ptr + om[None, :] * N + on[:, None], mask, cnt_ptr, tile,
            split_k, SPLIT)


CONST_NAMES = ("BLOCK_M", "BLOCK_N", "BLOCK_K", "SPLIT", "WL", "XL")


def consts(block_m: int, block_n: int, block_k: int, split: bool) -> tuple:
    return (block_m, block_n, block_k, split, words_layout(block_n, block_k // 8), x_layout())
