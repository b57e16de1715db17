"""What each step of the global-memory split-K epilogue costs at M = 1 (GEMV_H2), graph µs:

    python benchmarks/diag_epilogue.py red | red-fence | red-fence-counter | full | slots | load | load-nofence | none

triton_gemm._finish is swapped before the kernel compiles (one mode a process): ``red`` adds the partial
sums into the workspace and stores them to y (no ordering: wrong sums), ``red-fence`` adds every thread's
GPU-scope fence and the barrier, ``red-fence-counter`` the tile counter too (every program stores y),
``full`` is the shipped protocol, ``slots`` stores each program's partial sums with plain stores into a
slot of its own and lets the tile's last program add the slots up (no atomics on the sums; a correct
protocol), ``load`` is the shipped protocol with the last program reading the sums with plain L2 loads and
clearing them with plain stores instead of atomic exchanges (faster, and wrong now and then: the race
test caught it, results/epilogue-load-race-tests-h200.log), ``load-nofence`` the same without that
program's second fence, ``none`` stores the partial sums straight to y."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402
import triton  # noqa: E402
import triton.language as tl  # noqa: E402

from benchmarks.gemm_common import graph_ms, layer_with_baselines, warm_clocks  # noqa: E402
from repack.kernels import triton_gemm as tg  # noqa: E402
from repack.kernels.tuned import TileConfig, pick_config  # noqa: E402

SLOT: tl.constexpr = tl.constexpr(1 << 20)  # floats between two programs' slots (the diag's workspace is large enough)


@triton.jit
def _red_steps(acc, y_ptrs, ws_ptrs, mask, cnt_ptr, tile, split_k, FENCE: tl.constexpr, COUNTER: tl.constexpr):
    """The shipped protocol's first steps (atomics, then every thread's fence, then the tile counter), after
    which every program stores its own partial sums to y."""
    tl.atomic_add(ws_ptrs, acc, mask=mask, sem="relaxed")
    if FENCE:
        tg._fence_gpu(split_k)
        tl.debug_barrier()
    if COUNTER:
        arrived = tl.atomic_add(cnt_ptr + tile, 1, sem="acq_rel")
        acc = acc + arrived * 0
    tl.store(y_ptrs, acc.to(y_ptrs.dtype.element_ty), mask=mask)


@triton.jit
def _red(acc, y_ptrs, ws_ptrs, mask, cnt_ptr, tile, split_k, SPLIT: tl.constexpr):
    _red_steps(acc, y_ptrs, ws_ptrs, mask, cnt_ptr, tile, split_k, False, False)


@triton.jit
def _red_fence(acc, y_ptrs, ws_ptrs, mask, cnt_ptr, tile, split_k, SPLIT: tl.constexpr):
    _red_steps(acc, y_ptrs, ws_ptrs, mask, cnt_ptr, tile, split_k, True, False)


@triton.jit
def _red_fence_counter(acc, y_ptrs, ws_ptrs, mask, cnt_ptr, tile, split_k, SPLIT: tl.constexpr):
    _red_steps(acc, y_ptrs, ws_ptrs, mask, cnt_ptr, tile, split_k, True, True)


@triton.jit
def _none(acc, y_ptrs, ws_ptrs, mask, cnt_ptr, tile, split_k, SPLIT: tl.constexpr):
    tl.store(y_ptrs, acc.to(y_ptrs.dtype.element_ty), mask=mask)


@triton.jit
def _slots(acc, y_ptrs, ws_ptrs, mask, cnt_ptr, tile, split_k, SPLIT: tl.constexpr):
    if not SPLIT:
        tl.store(y_ptrs, acc.to(y_ptrs.dtype.element_ty), mask=mask)
    else:
        tl.store(ws_ptrs + tl.program_id(2) * SLOT, acc, mask=mask)
        tg._fence_gpu(split_k)
        tl.debug_barrier()
        arrived = tl.atomic_add(cnt_ptr + tile, 1, sem="acq_rel")
        if arrived == split_k - 1:
            tg._fence_gpu(split_k)
            total = tl.zeros_like(acc)
            for p in range(0, split_k):
                total += tl.load(ws_ptrs + p * SLOT, mask=mask, other=0.0, cache_modifier=".cg")
            tl.store(y_ptrs, total.to(y_ptrs.dtype.element_ty), mask=mask)
            tl.atomic_xchg(cnt_ptr + tile, 0, sem="relaxed")


@triton.jit
def _load_read_back(acc, y_ptrs, ws_ptrs, mask, cnt_ptr, tile, split_k, SPLIT: tl.constexpr, FENCE: tl.constexpr):
    if not SPLIT:
        tl.store(y_ptrs, acc.to(y_ptrs.dtype.element_ty), mask=mask)
    else:
        tl.atomic_add(ws_ptrs, acc, mask=mask, sem="relaxed")
        tg._fence_gpu(split_k)
        tl.debug_barrier()
        arrived = tl.atomic_add(cnt_ptr + tile, 1, sem="acq_rel")
        if arrived == split_k - 1:
            if FENCE:
                tg._fence_gpu(split_k)
            total = tl.load(ws_ptrs, mask=mask, other=0.0, cache_modifier=".cg")
            tl.store(y_ptrs, total.to(y_ptrs.dtype.element_ty), mask=mask)
            tl.store(ws_ptrs, tl.zeros_like(acc), mask=mask)
            tl.atomic_xchg(cnt_ptr + tile, 0, sem="relaxed")


@triton.jit
def _load(acc, y_ptrs, ws_ptrs, mask, cnt_ptr, tile, split_k, SPLIT: tl.constexpr):
    _load_read_back(acc, y_ptrs, ws_ptrs, mask, cnt_ptr, tile, split_k, SPLIT, True)


@triton.jit
def _load_nofence(acc, y_ptrs, ws_ptrs, mask, cnt_ptr, tile, split_k, SPLIT: tl.constexpr):
    _load_read_back(acc, y_ptrs, ws_ptrs, mask, cnt_ptr, tile, split_k, SPLIT, False)


def main() -> None:
    mode = sys.argv[1] if len(sys.argv) > 1 else "full"
    tg._finish = {"load": _load, "load-nofence": _load_nofence, "red": _red, "red-fence": _red_fence, "red-fence-counter": _red_fence_counter, "none": _none,
                  "slots": _slots, "full": tg._finish}[mode]
    warm_clocks()
    # one workspace for every stream (graph capture runs on its own), with room for 40 slots
    big = (torch.zeros(40 * SLOT.value, dtype=torch.float32, device="cuda"), torch.zeros(1 << 12, dtype=torch.int32, device="cuda"))
    tg._workspace = lambda device, stream, values, tiles: big
    for K, N in ((4096, 4096), (4096, 14336), (14336, 4096), (8192, 28672)):
        copies, x, _, cub, dflt = layer_with_baselines(K, N, 1)
        ref = tg.triton_gemm(x, copies[0], TileConfig(1, 256, 64, 1, 4, 2)).float()  # no split: right in every mode
        tg._plans.clear()
        y = tg.triton_gemm(x, copies[0]).float()
        err = float((y - ref).norm() / ref.norm())
        g = graph_ms([lambda c=c: tg.triton_gemm(x, c) for c in copies])
        print(f"{K}x{N} M=1 {pick_config(1, N, K)} {mode}: {g * 1e3:.1f} us (err {err:.0e}); cuBLAS {cub * 1e3:.1f}", flush=True)


if __name__ == "__main__":
    main()
