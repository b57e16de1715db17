"""Large-M tiles with more warps a CTA (the ncu profile: the default 256x128 tile runs 8 warps, 2 a
scheduler, and stalls on the dequantization's dependency chains): the tuned tile against the same
tile with 16 warps and other stage counts, graph times, outputs checked against the default.

    python benchmarks/diag_warps.py
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.gemm_common import forced_tile_time, layer_with_baselines, warm_clocks  # noqa: E402
from repack.kernels.tuned import TileConfig  # noqa: E402

CASES = [(8192, 28672, 1024), (8192, 28672, 256), (4096, 14336, 1024), (14336, 4096, 256), (4096, 4096, 1024)]
TILES = [(256, 128, 128, 8, 3), (256, 128, 128, 16, 3), (256, 128, 64, 16, 4), (256, 128, 64, 16, 3),
         (128, 256, 64, 8, 4), (128, 256, 128, 8, 3), (256, 128, 64, 8, 4)]


def main() -> None:
    warm_clocks()
    for K, N, M in CASES:
        copies, x, ref, cub, dflt = layer_with_baselines(K, N, M)
        line = f"{K}x{N} M={M}: cuBLAS {cub * 1e3:.1f} us, default {dflt * 1e3:.1f}"
        for bm, bn, bk, warps, stages in TILES:
            cfg = TileConfig(bm, bn, bk, 1, warps, stages)
            line += "," + forced_tile_time(f"{bm}x{bn}x{bk} w{warps} s{stages}", x, copies, ref, cfg)
        print(line, flush=True)


if __name__ == "__main__":
    main()
