"""x of the M = 16 Gluon tile straight into the B operand's registers (gluon_gemm.X_DIRECT: one 16-byte
load per 32-input chunk and row, every warp its own copy, no shared memory or barriers in the loop)
against x through a shared-memory layout conversion: graph times, alternated in one process, on the
tuned tile and neighbours; outputs checked against the default.

    python benchmarks/diag_gluon_x.py
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.gemm_common import SHAPES, graph_ms, layer_with_baselines, warm_clocks  # noqa: E402
from repack.kernels import gluon_gemm  # noqa: E402
from repack.kernels.triton_gemm import DOT_GLUON, triton_gemm  # noqa: E402
from repack.kernels.tuned import TileConfig, pick_config  # noqa: E402


def main() -> None:
    warm_clocks()
    for K, N in SHAPES:
        copies, x, ref, cub, _ = layer_with_baselines(K, N, 16)
        t = pick_config(16, N, K)
        tiles = {(t.block_n, t.block_k, t.split_k, t.num_warps), (128, 128, t.split_k, 4), (128, 128, t.split_k, 8),
                 (128, 64, t.split_k, 4), (64, 128, t.split_k, 4)}
        print(f"{K}x{N} M=16: cuBLAS {cub * 1e3:.1f} us, tuned {t.block_n}x{t.block_k} split {t.split_k} w{t.num_warps}", flush=True)
        for bn, bk, split, warps in sorted(tiles):
            cfg = TileConfig(16, bn, bk, split, warps, 1)
            line = f"  {bn}x{bk} split {split} w{warps}:"
            for _ in range(2):
                for direct in (False, True):
                    gluon_gemm.X_DIRECT = direct
                    y = triton_gemm(x, copies[0], cfg, path_override=DOT_GLUON).float()
                    err = float((y - ref).norm() / ref.norm())
                    g = graph_ms([lambda c=c: triton_gemm(x, c, cfg, path_override=DOT_GLUON) for c in copies])
                    line += f" {'direct' if direct else 'smem'} {g * 1e3:6.1f}" + ("" if err < 2e-3 else f" (err {err:.0e})")
            print(line, flush=True)
    gluon_gemm.X_DIRECT = True


if __name__ == "__main__":
    main()
