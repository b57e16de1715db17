"""The Gluon tile (mma.sync, (q - z) in registers) above M = 16: forced tiles of 32 and 64 rows at
M = 64 against the default dispatch (DOT_KTJ) and cuBLAS, graph times, outputs checked against the
default's.

    python benchmarks/diag_gluon_m64.py [M]
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.gemm_common import SHAPES, forced_tile_time, layer_with_baselines, warm_clocks  # noqa: E402
from repack.kernels import triton_gemm as tg  # noqa: E402
from repack.kernels.tuned import TileConfig  # noqa: E402

TILES = [(64, 64, 32), (64, 64, 64), (32, 64, 64), (32, 64, 32), (32, 128, 32), (64, 128, 32)]
SPLITS = (1, 2, 4, 8)


def main() -> None:
    M = int(sys.argv[1]) if len(sys.argv) > 1 else 64
    tg.GLUON_MAX_BLOCK_M = 64
    warm_clocks()
    for K, N in SHAPES:
        copies, x, ref, cub, dflt = layer_with_baselines(K, N, M)
        print(f"{K}x{N} M={M}: cuBLAS {cub * 1e3:.1f} us, default {dflt * 1e3:.1f}", flush=True)
        for bm, bn, bk in TILES:
            line = f"  {bm}x{bn}x{bk}:"
            for split in SPLITS:
                cfg = TileConfig(bm, bn, bk, split, 4, 1)
                line += forced_tile_time(f"s{split}", x, copies, ref, cfg, tg.DOT_GLUON, tol=2e-3)
            print(line, flush=True)


if __name__ == "__main__":
    main()
