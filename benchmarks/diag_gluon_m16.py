"""Where the M = 16 Gluon tile's time goes (gluon_gemm.w4_dot_kernel with the tuned tiles), graph µs:

    python benchmarks/diag_gluon_m16.py full | own-partial | no-dequant | neither

A helper of gluon_gemm is swapped before the kernel compiles (one mode a process: Triton keeps compiled
kernels in memory): ``own-partial`` has every program store its own partial sums to y (the cluster's
barriers and distributed-shared-memory reduction, or the global workspace protocol, left out: wrong sums
where K is split), ``no-dequant`` replaces the (q - z) PTX by register moves of the word (same loads,
same MMAs, no dequantization arithmetic, and no zeros to load: wrong sums), ``neither`` both. What remains in ``neither`` is the
loads, x's conversion to the B operand (a shared-memory round trip a K step), the MMAs and the scale."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from triton.experimental import gluon  # noqa: E402
from triton.experimental.gluon import language as gl  # noqa: E402

from benchmarks.gemm_common import graph_ms, layer_with_baselines, warm_clocks  # noqa: E402
from repack.kernels import gluon_gemm as gg  # noqa: E402
from repack.kernels import triton_gemm as tg  # noqa: E402
from repack.kernels.tuned import TileConfig, pick_config  # noqa: E402

# the word's two halves moved into the eight 16-bit outputs: a data dependency on the load, no arithmetic
_MOVES: gl.constexpr = gl.constexpr("\n".join(f"mov.b32 {{${j}, ${j + 4}}}, $8;" for j in range(4)))


@gluon.jit
def _qz8_moves(words, zm, zh, XT: gl.constexpr):
    return gg.word_asm(words, zm, zh, _MOVES, _MOVES, XT)


@gluon.jit
def _own_partial_cluster(acc, e, y_ptr, rank, n0, m0, N, M, syn, sym, R: gl.constexpr, RC: gl.constexpr,
                         CLUSTER: gl.constexpr):
    n = n0 + e % R
    m = m0 + e // R
    gl.store(y_ptr + n * syn + m * sym, acc.to(y_ptr.dtype.element_ty), mask=(n < N) & (m < M))


@gluon.jit
def _own_partial(acc, y_ptrs, ws_ptrs, mask, cnt_ptr, tile, split_k, SPLIT: gl.constexpr):
    gl.store(y_ptrs, acc.to(y_ptrs.dtype.element_ty), mask=mask)


def main() -> None:
    mode = sys.argv[1] if len(sys.argv) > 1 else "full"
    if mode not in ("full", "own-partial", "no-dequant", "neither"):
        raise SystemExit(f"unknown mode {mode}")
    if mode in ("own-partial", "neither"):
        gg._cluster_finish, gg._finish = _own_partial_cluster, _own_partial
    if mode in ("no-dequant", "neither"):
        gg._qz8 = _qz8_moves
    warm_clocks()
    for K, N in ((4096, 4096), (4096, 14336), (14336, 4096), (8192, 28672)):
        copies, x, _, cub, dflt = layer_with_baselines(K, N, 16)
        ref = tg.triton_gemm(x, copies[0], TileConfig(16, 64, 64, 1, 4, 3), path_override=tg.DOT_KTJ).float()
        tg._plans.clear()
        y = tg.triton_gemm(x, copies[0]).float()
        err = float((y - ref).norm() / ref.norm())
        g = graph_ms([lambda c=c: tg.triton_gemm(x, c) for c in copies])
        print(f"{K}x{N} M=16 {pick_config(16, N, K)} {mode}: {g * 1e3:.1f} us (err {err:.0e}); cuBLAS {cub * 1e3:.1f}",
              flush=True)


if __name__ == "__main__":
    main()
