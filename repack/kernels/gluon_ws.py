"""Warp-specialized W4A16 tile for 4-bit GPTQ-order layers at M >= 64 (Gluon, Hopper): the
successor of ``gluon_pipe`` once that tile showed where its time goes (`benchmarks/NOTES-gemm.md`,
seventh session): with every warp doing everything, the dequantization and the ``fence.proxy.async``
(a ``MEMBAR.ALL.CTA``) sit on the MMA warps' critical path. Here each job has warps of its own,
and they talk only through mbarriers:

- a load warp TMA-copies each K step's x tile, packed words, scales and zeros into a ring of STAGES
  slots (``ready[s]``), after both consumers released the slot (``empty[s]``, two arrivals);
- the dequantization warps (DQ_WARPS) read a step's words, scales and zeros out of the ring,
  release it, turn them into fp16/bf16 weights (``_PAIRS_*`` PTX, exact) and store them
  K-contiguous into one of WSLOTS weight slots (``wready[w]`` once fenced, after the MMA warps
  released the slot, ``wempty[w]``);
- the default partition (the MMA warpgroups) issues ``y += x_slot @ w_slot^T`` asynchronously,
  waits for the previous wgmma only, releases that one's ring and weight slots, and writes y.

No K split: every program runs the whole K of its tile. Handles what ``gluon_pipe`` handles.
"""

from __future__ import annotations

from triton.experimental import gluon
from triton.experimental.gluon import language as gl
from triton.experimental.gluon.language.nvidia.hopper import fence_async_shared, mbarrier, warpgroup_mma, warpgroup_mma_wait

from .gluon_pipe import _dequant8, _fill, _pairs, mma_layout, smem_bytes, words_layout

WSLOTS = 3  # weight slots in shared memory
DQ_WARPS = 4  # a partition's warps; default; consts(dq_warps=8) gives 8 (two a scheduler, so one's loads hide behind the other's math)
LOAD_REGS: gl.constexpr = gl.constexpr(40)
SKIP = 0  # diagnostics only (results wrong): 1 the dequantization warps store a constant tile (no reads, no math),
# 2 they store nothing either (only the barriers), 3 no fence after the weight stores
# registers a thread at launch: 4 MMA + 1 load + 4 dequantization warps round up to 12 warps (3 warpgroups),
# 384 threads x 168 = 64512 of the SM's 65536; the MMA warpgroup then takes what the workers give back
# (the sm_90 compile probe: setmaxnreg 232 / 128 / 24). 8 MMA warps would need 16 warps x 128, and ptxas
# asked for 154 registers for a 128x256 tile's wgmma: only 4 MMA warps (BLOCK_M * BLOCK_N <= 128 * 128).
MAXNREG = 168


def regs(dq_warps: int) -> tuple[int, int]:
    """(registers a thread at launch, the dequantization warps' own): with 8 dequantization warps the
    launch rounds 13 warps up to 16 (65536 / 512 = 128), and the MMA warpgroup needs ~200 after."""
    return (MAXNREG, 128) if dq_warps == 4 else (128, 104)


@gluon.jit
def _dequant_partition(x_desc, q_desc, s_desc, z_desc, x_ring, q_ring, s_ring, z_ring, w_slots,
                       ready, empty, wready, wempty, m0, n0, N, K, group_size, zero_offset,
                       BLOCK_N: gl.constexpr, BLOCK_K: gl.constexpr, STAGES: gl.constexpr, WSLOTS: gl.constexpr,
                       WL: gl.constexpr, ZL: gl.constexpr, DBG: gl.constexpr):
    XT: gl.constexpr = x_ring.dtype
    if DBG == 1 or DBG == 2:  # (diagnostics: no reads and no math)
        wz = gl.zeros((BLOCK_N, BLOCK_K), XT, layout=ZL)
        for i in range(K // BLOCK_K):
            slot = i % STAGES
            mbarrier.wait(ready.index(slot), (i // STAGES) & 1)
            mbarrier.arrive(empty.index(slot), count=1)
            ws = i % WSLOTS
            mbarrier.wait(wempty.index(ws), ((i // WSLOTS) & 1) ^ 1)
            if DBG == 1:
                w_slots.index(ws).store(wz)
                fence_async_shared()
            mbarrier.arrive(wready.index(ws), count=1)
        return
    j = gl.arange(0, 8, layout=gl.SliceLayout(0, gl.SliceLayout(0, WL)))
    for i in range(K // BLOCK_K):
        slot = i % STAGES
        mbarrier.wait(ready.index(slot), (i // STAGES) & 1)
        words = q_ring.index(slot).load(WL)
        s = s_ring.index(slot).load(gl.SliceLayout(0, WL))
        zw = z_ring.index(slot).slice(0, BLOCK_N // 8).load(gl.SliceLayout(1, gl.SliceLayout(0, WL)))
        fence_async_shared()  # these reads, before the load warp's next TMA into the slot
        mbarrier.arrive(empty.index(slot), count=1)
        z = ((zw[:, None] >> (j * 4)[None, :]) & 15) + zero_offset  # [BLOCK_N / 8, 8]: column 8c + j
        zz, ss = _pairs(z, s, XT)
        f0, f1, f2, f3, f4, f5, f6, f7 = _dequant8(words, zz[None, :, :], ss[None, :, :], XT)
        # joins append a minor axis, the first level ending outermost: field 4a + 2b + c at [.., a, b, c]
        w = gl.join(gl.join(gl.join(f0, f4), gl.join(f2, f6)), gl.join(gl.join(f1, f5), gl.join(f3, f7)))
        # [kw, c, j, fields] -> [c, j, kw, fields]: output 8c + j, input 8 kw + field
        w = gl.reshape(gl.permute(w, (1, 2, 0, 3, 4, 5)), (BLOCK_N, BLOCK_K))
        ws = i % WSLOTS
        mbarrier.wait(wempty.index(ws), ((i // WSLOTS) & 1) ^ 1)
        w_slots.index(ws).store(w)
        if DBG != 3:
            fence_async_shared()  # the weight stores, for the wgmma's async proxy
        mbarrier.arrive(wready.index(ws), count=1)


@gluon.jit
def _load_partition(x_desc, q_desc, s_desc, z_desc, x_ring, q_ring, s_ring, z_ring, w_slots,
                    ready, empty, wready, wempty, m0, n0, N, K, group_size, zero_offset,
                    BLOCK_N: gl.constexpr, BLOCK_K: gl.constexpr, STAGES: gl.constexpr, WSLOTS: gl.constexpr,
                    WL: gl.constexpr, ZL: gl.constexpr, DBG: gl.constexpr):
    for i in range(K // BLOCK_K):
        slot = i % STAGES
        mbarrier.wait(empty.index(slot), ((i // STAGES) & 1) ^ 1)  # a fresh barrier passes parity 1
        _fill(slot, i * BLOCK_K, ready, x_ring, q_ring, s_ring, z_ring, x_desc, q_desc, s_desc, z_desc, m0, n0, N,
              group_size)


@gluon.jit
def _mma_step(i, acc, x_ring, w_slots, ready, empty, wready, wempty,
              USE_ACC: gl.constexpr, STAGES: gl.constexpr, WSLOTS: gl.constexpr):
    slot = i % STAGES
    ws = i % WSLOTS
    mbarrier.wait(ready.index(slot), (i // STAGES) & 1)
    mbarrier.wait(wready.index(ws), (i // WSLOTS) & 1)
    acc = warpgroup_mma(x_ring.index(slot), w_slots.index(ws).permute((1, 0)), acc, use_acc=USE_ACC, is_async=True)
    acc = warpgroup_mma_wait(1, deps=(acc,))
    # step i - 1's wgmma is done (every warpgroup: arrive synchronises the partition first)
    mbarrier.arrive(empty.index((i + STAGES - 1) % STAGES), count=1, pred=i > 0)
    mbarrier.arrive(wempty.index((i + WSLOTS - 1) % WSLOTS), count=1, pred=i > 0)
    return acc


@gluon.jit
def _mma_partition(x_ring, w_slots, ready, empty, wready, wempty, y_ptr, M, N, K, sym, m0, n0,
                   BLOCK_M: gl.constexpr, BLOCK_N: gl.constexpr, BLOCK_K: gl.constexpr, STAGES: gl.constexpr,
                   WSLOTS: gl.constexpr, MMA: gl.constexpr):
    # step 0 peeled with use_acc=False (a zero-initialised accumulator makes ptxas serialize the wgmmas)
    acc = gl.zeros((BLOCK_M, BLOCK_N), dtype=gl.float32, layout=MMA)
    acc = _mma_step(0, acc, x_ring, w_slots, ready, empty, wready, wempty, False, STAGES, WSLOTS)
    for i in range(1, K // BLOCK_K):
        acc = _mma_step(i, acc, x_ring, w_slots, ready, empty, wready, wempty, True, STAGES, WSLOTS)
    acc = warpgroup_mma_wait(0, deps=(acc,))
    on = n0 + gl.arange(0, BLOCK_N, layout=gl.SliceLayout(0, MMA))
    om = m0 + gl.arange(0, BLOCK_M, layout=gl.SliceLayout(1, MMA))
    mask = (om < M)[:, None] & (on < N)[None, :]
    gl.store(y_ptr + om[:, None] * sym + on[None, :], acc.to(y_ptr.dtype.element_ty), mask=mask)


@gluon.jit
def w4_ws_kernel(x_desc, q_desc, s_desc, z_desc, y_ptr, M, N, K, group_size, zero_offset, sym,
                 BLOCK_M: gl.constexpr, BLOCK_N: gl.constexpr, BLOCK_K: gl.constexpr, STAGES: gl.constexpr,
                 WSLOTS: gl.constexpr, WL: gl.constexpr, MMA: gl.constexpr, ZL: gl.constexpr, DQW: gl.constexpr,
                 DQ_REGS: gl.constexpr, DBG: gl.constexpr):
    XT: gl.constexpr = x_desc.dtype
    m0 = gl.program_id(1) * BLOCK_M
    n0 = gl.program_id(0) * BLOCK_N
    x_ring = gl.allocate_shared_memory(XT, [STAGES] + x_desc.block_type.shape, x_desc.layout)
    q_ring = gl.allocate_shared_memory(q_desc.dtype, [STAGES] + q_desc.block_type.shape, q_desc.layout)
    s_ring = gl.allocate_shared_memory(s_desc.dtype, [STAGES] + s_desc.block_type.shape, s_desc.layout)
    # a TMA destination is 128-byte aligned: the zeros' slots (16 words at BLOCK_N 128) are padded to 32 words
    z_ring = gl.allocate_shared_memory(z_desc.dtype, [STAGES, 32 if BLOCK_N < 256 else BLOCK_N // 8], z_desc.layout)
    w_slots = gl.allocate_shared_memory(XT, [WSLOTS, BLOCK_N, BLOCK_K], x_desc.layout)
    ready = gl.allocate_shared_memory(gl.int64, [STAGES, 1], mbarrier.MBarrierLayout())
    empty = gl.allocate_shared_memory(gl.int64, [STAGES, 1], mbarrier.MBarrierLayout())
    wready = gl.allocate_shared_memory(gl.int64, [WSLOTS, 1], mbarrier.MBarrierLayout())
    wempty = gl.allocate_shared_memory(gl.int64, [WSLOTS, 1], mbarrier.MBarrierLayout())
    for b in gl.static_range(STAGES):
        mbarrier.init(ready.index(b), count=1)
        mbarrier.init(empty.index(b), count=2)  # the dequantization warps and the MMA warps
    for b in gl.static_range(WSLOTS):
        mbarrier.init(wready.index(b), count=1)
        mbarrier.init(wempty.index(b), count=1)
    fence_async_shared()
    gl.warp_specialize([
        (_mma_partition, (x_ring, w_slots, ready, empty, wready, wempty, y_ptr, M, N, K, sym, m0, n0,
                          BLOCK_M, BLOCK_N, BLOCK_K, STAGES, WSLOTS, MMA)),
        (_load_partition, (x_desc, q_desc, s_desc, z_desc, x_ring, q_ring, s_ring, z_ring, w_slots, ready, empty, wready,
                           wempty, m0, n0, N, K, group_size, zero_offset, BLOCK_N, BLOCK_K, STAGES, WSLOTS, WL, ZL, DBG)),
        (_dequant_partition, (x_desc, q_desc, s_desc, z_desc, x_ring, q_ring, s_ring, z_ring, w_slots, ready, empty, wready,
                              wempty, m0, n0, N, K, group_size, zero_offset, BLOCK_N, BLOCK_K, STAGES, WSLOTS, WL, ZL, DBG)),
    ], [1, DQW], [LOAD_REGS, DQ_REGS])


CONST_NAMES = ("BLOCK_M", "BLOCK_N", "BLOCK_K", "STAGES", "WSLOTS", "WL", "MMA", "ZL", "DQW", "DQ_REGS", "DBG")


def consts(block_m: int, block_n: int, block_k: int, stages: int, warps: int, wslots: int | None = None,
           dq_warps: int | None = None) -> tuple:
    """``warps``: the MMA warps (the kernel's num_warps); the dequantization warps' layout is their own."""
    dq_warps, wslots = dq_warps or DQ_WARPS, wslots or WSLOTS
    zl = gl.BlockedLayout([1, 8], [4, 8], [dq_warps, 1], [1, 0])  # (SKIP 1: the constant tile)
    return (block_m, block_n, block_k, stages, wslots, words_layout(block_n, block_k // 8, dq_warps),
            mma_layout(block_m, block_n, warps), zl, dq_warps, regs(dq_warps)[1], SKIP)


def fits(block_m: int, block_n: int, block_k: int, stages: int, warps: int, wslots: int | None = None,
         dq_warps: int | None = None) -> bool:
    kw, dq_warps, wslots = block_k // 8, dq_warps or DQ_WARPS, wslots or WSLOTS
    return (block_n in (128, 256) and block_k in (32, 64, 128) and block_m in (64, 128) and warps == 4
            and block_m * block_n <= 128 * 128 and kw * block_n // 4 >= 32 * dq_warps
            and stages >= 2 and smem_bytes(block_m, block_n, block_k, stages) + (wslots - 2) * block_n * block_k * 2
            + 2 * wslots * 8 <= 227 * 1024)
