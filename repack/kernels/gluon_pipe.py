"""Pipelined tensor-core W4A16 tile for 4-bit GPTQ-order layers at M >= 64, written in Gluon.

The tiles of ``triton_gemm`` (DOT_KTJ) and ``gluon_gemm`` (M <= 16) feed the dequantized weight to
a synchronous wgmma from registers: the tensor cores wait while the next tile is loaded and
dequantized, and from M = 64 up that is most of the time (0.5-0.7x cuBLAS at M >= 256,
`benchmarks/NOTES-gemm.md`). Here every operand of the wgmma is in shared memory, so it runs
asynchronously while the program dequantizes the next K step:

- the x tile [BLOCK_M, BLOCK_K], the packed words [BLOCK_K / 8, BLOCK_N], the group's scales and
  zeros of each K step come by TMA into a ring of STAGES shared-memory slots, STAGES - 2 steps
  ahead, each slot with its mbarrier;
- each step the words come out of their slot into registers, become fp16/bf16 weights two per
  instruction (``_PAIRS_F16`` / ``_PAIRS_BF16`` of triton_gemm: exact, one rounding of s * (q - z))
  and go to one of two weight slots [BLOCK_N, BLOCK_K], K-contiguous (one word = eight
  consecutive inputs = one 16-byte store);
- ``y[BLOCK_M, BLOCK_N] += x_slot @ w_slot^T`` is issued asynchronously and the program waits only
  for the previous step's wgmma (``warpgroup_mma_wait(1)``).

TMA, not cp.async: the weight stores need ``fence.proxy.async`` before the wgmma reads them, and
ptxas makes that fence a ``MEMBAR.ALL.CTA``, which waits for every generic load of the thread still
in flight — cp.async refills included. With cp.async the refills cost 20-30 % of the time of an
8192x28672 M=1024 product on the H200 (`benchmarks/diag_pipe.py`); TMA copies are not generic
loads and are issued by one thread.

Why the ring is read STAGES - 2 steps ahead and two weight slots suffice: a slot may be refilled
only when no warpgroup's wgmma still reads it. Every warpgroup waits for its step i - 1 wgmma at
the end of step i; the barrier that opens step i + 1 therefore guarantees every warpgroup's step
i - 1 is done, so in step i + 1 the slots of step i - 1 are free: the weight slot (i + 1) % 2 and
the ring slot of step i - 1, refilled with step i - 1 + STAGES. (One more step of look-ahead would
overwrite the slot of step i, which the other warpgroup's wgmma may still read.)

Split-K as triton_gemm (fp32 workspace, the tile's last program writes). Handles: 4-bit codes along
K, zeros packed along N (GPTQ), sequential groups that are a multiple of BLOCK_K, N % BLOCK_N == 0,
K % BLOCK_K == 0, contiguous weight tensors, x rows 16-byte aligned. Hopper only.
"""

from __future__ import annotations

import functools

from triton.experimental import gluon
from triton.experimental.gluon import language as gl
from triton.experimental.gluon.language.nvidia.hopper import (fence_async_shared, mbarrier, tma, warpgroup_mma,
                                                             warpgroup_mma_wait)
from triton.experimental.gluon.nvidia.hopper import TensorDescriptor

from .gluon_gemm import _finish, _halves, _magic_z, word_asm
from .triton_gemm import _PAIRS_BF16, _PAIRS_F16

# diagnostics only (benchmarks/diag_pipe.py; results are wrong when set): 1 no fence.proxy.async,
# 2 no ring refills in the loop, 3 neither, 4 the wgmmas alone, 5 the wgmmas and the refills
SKIP = 0


@gluon.jit
def _pairs(z, s, XT: gl.constexpr):
    """The operands of :func:`_dequant8` per output: MAGIC + z (gluon_gemm._magic_z) and the scale in
    the activation type, each in both 16-bit halves of an int32."""
    return _magic_z(z, XT), _halves(s, XT)


@gluon.jit
def _dequant8(words, zz, ss, XT: gl.constexpr):
    """The eight weights s * (q - z) of each 4-bit GPTQ-order word in the activation type, two per
    instruction and exact (triton_gemm._dequant8_pairs: the PTX and why it rounds as the reference)."""
    return word_asm(words, zz, ss, _PAIRS_F16, _PAIRS_BF16, XT)


@functools.lru_cache(maxsize=None)
def words_layout(block_n: int, kw: int, warps: int) -> gl.BlockedLayout:
    """[KW, BLOCK_N / 8, 8] words: a thread holds the words of eight (or, on small tiles, four)
    consecutive columns (one zeros word, one scale vector) in one word row. Lanes run over 8 word
    rows first: the thread's 16-byte weight stores (one column, eight inputs) of the 8 word rows
    land in 8 different 16-byte units of the 128-byte swizzle, 4 stores a warp-wide wavefront."""
    v = 8 if kw * block_n // 8 >= 32 * warps else 4
    tk = min(kw, 8)
    lanes_c = 32 // tk // (8 // v)
    wn = min(warps, block_n // 8 // lanes_c)
    return gl.BlockedLayout(size_per_thread=[1, 1, v], threads_per_warp=[tk, lanes_c, 8 // v], warps_per_cta=[warps // wn, wn, 1],
                            order=[2, 1, 0])


@functools.lru_cache(maxsize=None)
def mma_layout(block_m: int, block_n: int, warps: int) -> gl.NVMMADistributedLayout:
    """wgmma accumulator: warps down M (16 rows each), the whole BLOCK_N in one instruction."""
    return gl.NVMMADistributedLayout(version=[3, 0], warps_per_cta=[warps, 1], instr_shape=[16, min(block_n, 256), 16])


@functools.lru_cache(maxsize=None)
def _plain(bits: int, rank: int) -> gl.NVMMASharedLayout:
    return gl.NVMMASharedLayout(swizzle_byte_width=0, element_bitwidth=bits, rank=rank)


@functools.lru_cache(maxsize=None)
def _x_smem(block_k: int) -> gl.NVMMASharedLayout:
    return gl.NVMMASharedLayout(swizzle_byte_width=128 if block_k >= 64 else 64, element_bitwidth=16, rank=2)


def x_descriptor(x2, block_m: int, block_k: int) -> TensorDescriptor:
    """x [M, K] in [BLOCK_M, BLOCK_K] boxes (rows past M read as zeros)."""
    return TensorDescriptor(x2, list(x2.shape), [x2.stride(0), 1], [block_m, block_k], _x_smem(block_k))


def weight_descriptors(w, block_n: int, block_k: int) -> tuple:
    """The words as [K/8, N/8, 8] in [KW, BLOCK_N/8, 8] boxes (a thread's eight columns are one
    load), the scales [G, N] as rows of 8, [G N/8, 8] in [BLOCK_N/8, 8] boxes, the zeros [G, N/8]
    as [G N/8] in [BLOCK_N/8] boxes: one box each per K step, at (k/8, n0/8, 0), (g N/8 + n0/8, 0),
    g N/8 + n0/8."""
    K, N, G = w.in_features, w.out_features, w.scales.shape[0]
    nc = block_n // 8
    q = TensorDescriptor(w.qweight, [K // 8, N // 8, 8], [N, 8, 1], [block_k // 8, nc, 8], _plain(32, 3))
    s = TensorDescriptor(w.scales, [G * N // 8, 8], [8, 1], [nc, 8], _plain(8 * w.scales.element_size(), 2))
    z = TensorDescriptor(w.zeros, [G * N // 8], [1], [nc], _plain(32, 1))
    return q, s, z


@gluon.jit
def ring_barriers(STAGES: gl.constexpr):
    """A ring's mbarriers, one a slot, initialised for one arrival (the TMA unit's) and visible to it."""
    bars = gl.allocate_shared_memory(gl.int64, [STAGES, 1], mbarrier.MBarrierLayout())
    _init_ring(bars, STAGES)
    return bars


@gluon.jit
def ring_barriers_again(bars, STAGES: gl.constexpr):
    """The ring's barriers made anew, back at phase 0 (gluon_rs's stream-K tile, between the tiles of a range): the
    caller's threads are past their last wait on them and every transfer they count has landed."""
    gl.thread_barrier()
    for b in gl.static_range(STAGES):
        mbarrier.invalidate(bars.index(b))
    _init_ring(bars, STAGES)


@gluon.jit
def _init_ring(bars, STAGES: gl.constexpr):
    for b in gl.static_range(STAGES):
        mbarrier.init(bars.index(b), count=1)
    fence_async_shared()  # the initialised barriers, before the TMA unit signals them
    gl.thread_barrier()


@gluon.jit
def tile_origin(BLOCK_M: gl.constexpr, BLOCK_N: gl.constexpr):
    """A program's output tile on a (column tiles, row tiles, K split) grid: its index (a split-K counter's) and its
    first row and column."""
    pid_n = gl.program_id(0)
    pid_m = gl.program_id(1)
    return pid_m * gl.num_programs(0) + pid_n, pid_m * BLOCK_M, pid_n * BLOCK_N


@gluon.jit
def k_range(pid_k, K_SPLIT, K, BLOCK_K: gl.constexpr):
    """A program's first input, its number of K steps, and the start of the last step (steps past the end
    re-read that tile, never consumed)."""
    k_begin = pid_k * K_SPLIT
    k_end = gl.minimum(k_begin + K_SPLIT, K)
    return k_begin, (k_end - k_begin) // BLOCK_K, k_end - BLOCK_K


@gluon.jit
def _fill(slot, k, bars, x_ring, q_ring, s_ring, z_ring, x_desc, q_desc, s_desc, z_desc, m0, n0, N, group_size):
    """TMA of K step ``k``'s x tile, words, scales and zeros into ring slot ``slot``."""
    bar = bars.index(slot)
    row = (k // group_size) * (N // 8) + n0 // 8
    mbarrier.expect(bar, x_desc.block_type.nbytes + q_desc.block_type.nbytes + s_desc.block_type.nbytes
                    + z_desc.block_type.nbytes)
    tma.async_copy_global_to_shared(x_desc, [m0, k], bar, x_ring.index(slot))
    tma.async_copy_global_to_shared(q_desc, [k // 8, n0 // 8, 0], bar, q_ring.index(slot))
    tma.async_copy_global_to_shared(s_desc, [row, 0], bar, s_ring.index(slot))
    tma.async_copy_global_to_shared(z_desc, [row], bar, z_ring.index(slot).slice(0, z_desc.block_type.shape[0]))


@gluon.jit
def _step(i, acc, bars, x_ring, q_ring, s_ring, z_ring, w_slots, x_desc, q_desc, s_desc, z_desc,
          m0, n0, N, k_begin, last, group_size, zero_offset,
          USE_ACC: gl.constexpr, STAGES: gl.constexpr, BLOCK_K: gl.constexpr, BLOCK_N: gl.constexpr, WL: gl.constexpr,
          DBG: gl.constexpr):
    """K step i: wait for its slot, dequantize its words into a weight slot, issue its wgmma,
    refill the ring and wait for the previous wgmma."""
    XT: gl.constexpr = x_ring.dtype
    slot = i % STAGES
    if DBG < 2 or DBG == 5:
        mbarrier.wait(bars.index(slot), (i // STAGES) & 1)
    gl.thread_barrier()  # every warpgroup is past its wait for step i - 2
    w_slot = w_slots.index(i % 2)
    if DBG < 4:  # (diagnostics: 4 times the wgmmas alone)
        words = q_ring.index(slot).load(WL)
        s = s_ring.index(slot).load(gl.SliceLayout(0, WL))
        zw = z_ring.index(slot).slice(0, BLOCK_N // 8).load(gl.SliceLayout(1, gl.SliceLayout(0, WL)))
        j = gl.arange(0, 8, layout=gl.SliceLayout(0, gl.SliceLayout(0, WL)))
        z = ((zw[:, None] >> (j * 4)[None, :]) & 15) + zero_offset  # [BLOCK_N / 8, 8]: column 8c + j
        zz, ss = _pairs(z, s, XT)
        f0, f1, f2, f3, f4, f5, f6, f7 = _dequant8(words, zz[None, :, :], ss[None, :, :], XT)
        # joins append a minor axis, the first level ending outermost: field 4a + 2b + c at [.., a, b, c]
        w = gl.join(gl.join(gl.join(f0, f4), gl.join(f2, f6)), gl.join(gl.join(f1, f5), gl.join(f3, f7)))
        # [kw, c, j, fields] -> [c, j, kw, fields]: output 8c + j, input 8 kw + field
        w = gl.reshape(gl.permute(w, (1, 2, 0, 3, 4, 5)), (BLOCK_N, BLOCK_K))
        w_slot.store(w)
    if DBG % 2 == 0 and DBG < 4:
        fence_async_shared()  # the weight stores, for the wgmma's async proxy
    gl.thread_barrier()
    acc = warpgroup_mma(x_ring.index(slot), w_slot.permute((1, 0)), acc, use_acc=USE_ACC, is_async=True)
    # the slot of step i - 2 is free (see the module docstring): step i + STAGES - 2 goes there
    if DBG < 2 or DBG == 5:
        kf = gl.minimum(k_begin + (i + STAGES - 2) * BLOCK_K, last)
        _fill((i + STAGES - 2) % STAGES, kf, bars, x_ring, q_ring, s_ring, z_ring, x_desc, q_desc, s_desc, z_desc,
              m0, n0, N, group_size)
    acc = warpgroup_mma_wait(1, deps=(acc,))
    return acc


@gluon.jit
def w4_pipe_kernel(x_desc, q_desc, s_desc, z_desc, y_ptr, ws_ptr, cnt_ptr,
                   M, N, K, K_SPLIT, split_k, group_size, zero_offset, sym,
                   BLOCK_M: gl.constexpr, BLOCK_N: gl.constexpr, BLOCK_K: gl.constexpr, SPLIT: gl.constexpr,
                   STAGES: gl.constexpr, WL: gl.constexpr, MMA: gl.constexpr, DBG: gl.constexpr):
    XT: gl.constexpr = x_desc.dtype
    pid_k = gl.program_id(2)
    tile, m0, n0 = tile_origin(BLOCK_M, BLOCK_N)

    x_ring = gl.allocate_shared_memory(XT, [STAGES] + x_desc.block_type.shape, x_desc.layout)
    q_ring = gl.allocate_shared_memory(q_desc.dtype, [STAGES] + q_desc.block_type.shape, q_desc.layout)
    s_ring = gl.allocate_shared_memory(s_desc.dtype, [STAGES] + s_desc.block_type.shape, s_desc.layout)
    # a TMA destination is 128-byte aligned: the zeros' slots (16 words at BLOCK_N 128) are padded to 32 words
    z_ring = gl.allocate_shared_memory(z_desc.dtype, [STAGES, 32 if BLOCK_N < 256 else BLOCK_N // 8], z_desc.layout)
    w_slots = gl.allocate_shared_memory(XT, [2, BLOCK_N, BLOCK_K], x_desc.layout)
    bars = ring_barriers(STAGES)
    k_begin, steps, last = k_range(pid_k, K_SPLIT, K, BLOCK_K)
    for f in gl.static_range(STAGES - 2):
        _fill(f, gl.minimum(k_begin + f * BLOCK_K, last), bars, x_ring, q_ring, s_ring, z_ring, x_desc, q_desc, s_desc,
              z_desc, m0, n0, N, group_size)
    # step 0 peeled with use_acc=False: a zero-initialised accumulator is a non-wgmma definition of its
    # registers, and ptxas then serializes every wgmma of the loop (warning C7515; sm_90 compile probe)
    acc = gl.zeros((BLOCK_M, BLOCK_N), dtype=gl.float32, layout=MMA)
    acc = _step(0, acc, bars, x_ring, q_ring, s_ring, z_ring, w_slots, x_desc, q_desc, s_desc, z_desc, m0, n0, N,
                k_begin, last, group_size, zero_offset, False, STAGES, BLOCK_K, BLOCK_N, WL, DBG)
    for i in range(1, steps):
        acc = _step(i, acc, bars, x_ring, q_ring, s_ring, z_ring, w_slots, x_desc, q_desc, s_desc, z_desc, m0, n0, N,
                    k_begin, last, group_size, zero_offset, True, STAGES, BLOCK_K, BLOCK_N, WL, DBG)
    acc = warpgroup_mma_wait(0, deps=(acc,))
    # the refills past the last step still land in the ring: wait for them before the program ends
    for f in gl.static_range(STAGES - 2):
        if DBG < 2 or DBG == 5:
            t = steps + f
            mbarrier.wait(bars.index(t % STAGES), (t // STAGES) & 1)
        else:  # (diagnostics without refills: the prologue's copies)
            mbarrier.wait(bars.index(f), 0)

    on = n0 + gl.arange(0, BLOCK_N, layout=gl.SliceLayout(0, MMA))
    om = m0 + gl.arange(0, BLOCK_M, layout=gl.SliceLayout(1, MMA))
    mask = (om < M)[:, None] & (on < N)[None, :]
    _finish(acc, y_ptr + om[:, None] * sym + on[None, :], ws_ptr + om[:, None] * N + on[None, :], mask, cnt_ptr, tile,
            split_k, SPLIT)


CONST_NAMES = ("BLOCK_M", "BLOCK_N", "BLOCK_K", "SPLIT", "STAGES", "WL", "MMA", "DBG")


def consts(block_m: int, block_n: int, block_k: int, split: bool, stages: int, warps: int) -> tuple:
    return (block_m, block_n, block_k, split, stages, words_layout(block_n, block_k // 8, warps),
            mma_layout(block_m, block_n, warps), SKIP)


def fits(block_m: int, block_n: int, block_k: int, stages: int, warps: int) -> bool:
    """Tiles the layouts above cover without repeating work: a warp per 16 rows of M, a whole
    wgmma N (128/256), a K tile of 32-128 inside a group, at least one word row and four columns
    per thread, at most 128 accumulator registers per thread, the rings within an SM."""
    kw = block_k // 8
    return (block_n in (128, 256) and block_k in (32, 64, 128) and block_m in (64, 128, 256) and warps in (4, 8)
            and block_m >= 16 * warps and block_m * block_n <= 128 * 32 * warps and kw * block_n // 4 >= 32 * warps
            and stages >= 3 and smem_bytes(block_m, block_n, block_k, stages) <= 227 * 1024)


def smem_bytes(block_m: int, block_n: int, block_k: int, stages: int) -> int:
    return stages * (block_m * block_k * 2 + block_k // 8 * block_n * 4 + block_n * 4 + 128 + 8) + 2 * block_n * block_k * 2
