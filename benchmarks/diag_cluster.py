"""What the cluster split-K epilogue costs at M = 16 (the Gluon tile), graph µs on the lent GPU:

    python benchmarks/diag_cluster.py full | store-only | sync-only | m1 | m64

``full`` is the shipped epilogue (partial sums to shared memory, cluster barrier, sums over the cluster
in distributed shared memory, y store, cluster barrier); ``store-only`` stores each CTA's partial sums
straight to y (wrong results, no barrier: the loop alone); ``sync-only`` keeps both cluster barriers but
reads only the CTA's own partial sums. Each mode is its own process: the epilogue is swapped before the
kernel compiles. The global-memory split of the same tiles is printed beside (``full`` only).
``m1``: the Gluon tile with a cluster split at M = 1 (against the default GEMV); ``m64``: DOT_KTJ cluster
tiles with 2 stages at M = 64 (less shared memory: more CTAs an SM for the clusters to be placed)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from triton.experimental import gluon  # noqa: E402
from triton.experimental.gluon import language as gl  # noqa: E402

from benchmarks.gemm_common import forced_tile_time, layer_with_baselines, warm_clocks  # noqa: E402
from repack.kernels import gluon_gemm as gg  # noqa: E402
from repack.kernels import triton_gemm as tg  # noqa: E402
from repack.kernels.tuned import TileConfig  # noqa: E402

mode = sys.argv[1] if len(sys.argv) > 1 else "full"


@gluon.jit
def _store_only(acc, e, y_ptr, rank, n0, m0, N, M, syn, sym, R: gl.constexpr, RC: gl.constexpr, CLUSTER: gl.constexpr):
    n = n0 + e % R
    m = m0 + e // R
    gl.store(y_ptr + n * syn + m * sym, acc.to(y_ptr.dtype.element_ty), mask=(n < N) & (m < M))


@gluon.jit
def _sync_only(acc, e, y_ptr, rank, n0, m0, N, M, syn, sym, R: gl.constexpr, RC: gl.constexpr, CLUSTER: gl.constexpr):
    gl.thread_barrier()
    gl.inline_asm_elementwise(gg._SMEM_STORE, "=r,r,f", [e * 4, acc], dtype=gl.int32, is_pure=False, pack=1)
    gg._cluster_sync(rank)
    SL: gl.constexpr = RC // CLUSTER
    f = rank * SL + gl.arange(0, SL, layout=gl.BlockedLayout([1], [32], [gl.num_warps()], [0]))
    total = gl.inline_asm_elementwise(gg._DSMEM_LOAD, "=f,r,r", [f * 4, f * 0 + rank], dtype=gl.float32,
                                      is_pure=False, pack=1)
    n = n0 + f % R
    m = m0 + f // R
    gl.store(y_ptr + n * syn + m * sym, total.to(y_ptr.dtype.element_ty), mask=(n < N) & (m < M))
    gg._cluster_sync(rank)


if mode == "store-only":
    gg._cluster_finish = _store_only
elif mode == "sync-only":
    gg._cluster_finish = _sync_only
warm_clocks()
for K, N in ((4096, 4096), (4096, 14336), (14336, 4096), (8192, 28672)):
    if mode in ("m1", "m64"):
        M = 1 if mode == "m1" else 64
        copies, x, ref, cub, dflt = layer_with_baselines(K, N, M)
        line = f"{K}x{N} M={M}: cuBLAS {cub * 1e3:.1f} default {dflt * 1e3:.1f} |"
        if M == 1:
            tiles = [(TileConfig(16, bn, bk, c, w, 1, cluster=c), tg.DOT_GLUON)
                     for bn, bk, w in ((64, 128, 4), (128, 128, 4), (128, 64, 4)) for c in (2, 4, 8)]
        else:
            tiles = [(TileConfig(64, bn, bk, c, w, 2, cluster=c), tg.DOT_KTJ)
                     for bn, bk, w in ((64, 128, 4), (128, 128, 8), (64, 64, 4)) for c in (2, 4, 8)]
        for cfg, path in tiles:
            line += forced_tile_time(f" {cfg.block_n}x{cfg.block_k}w{cfg.num_warps}c{cfg.cluster}", x, copies, ref, cfg,
                                     path, tol=2e-3)
        print(line, flush=True)
        continue
    copies, x, ref, cub, dflt = layer_with_baselines(K, N, 16)
    line = f"{K}x{N} M=16 {mode}: cuBLAS {cub * 1e3:.1f} default {dflt * 1e3:.1f} |"
    for bn, bk, warps in ((128, 128, 4), (128, 128, 8), (64, 128, 4), (256, 64, 8)):
        for cluster in (2, 4, 8):
            cfg = TileConfig(16, bn, bk, cluster, warps, 1, cluster=cluster)
            line += forced_tile_time(f" {bn}x{bk}w{warps}c{cluster}", x, copies, ref, cfg, tg.DOT_GLUON,
                                     tol=2e-3 if mode == "full" else 1e9)
            if mode == "full":
                line += forced_tile_time("/g", x, copies, ref, TileConfig(16, bn, bk, cluster, warps, 1), tg.DOT_GLUON)
    print(line, flush=True)
