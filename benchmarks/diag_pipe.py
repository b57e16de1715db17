"""Where gluon_pipe's tile loses its time: the same tiles with parts switched off (gluon_pipe.SKIP:
1 no fence.proxy.async, 2 no ring refills in the loop, 3 neither, 4 the wgmmas alone, 5 the wgmmas and
the refills; results are wrong, times only),
kernel-only graph time against cuBLAS fp16 and the DOT_KTJ default.

    python benchmarks/diag_pipe.py [--stages | --ws | --ws-parts]
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.gemm_common import forced_tile_time, graph_ms, layer_with_baselines, warm_clocks  # noqa: E402
from repack.kernels import gluon_pipe  # noqa: E402
from repack.kernels.triton_gemm import DOT_PIPE, triton_gemm  # noqa: E402
from repack.kernels.tuned import TileConfig  # noqa: E402

CASES = [(8192, 28672, 1024, TileConfig(128, 256, 64, 1, 8, 4, True)), (8192, 28672, 1024, TileConfig(256, 128, 64, 1, 8, 4, True)),
         (8192, 28672, 1024, TileConfig(256, 128, 64, 1, 8, 3, True)), (4096, 4096, 256, TileConfig(64, 128, 64, 1, 4, 4, True)),
         (4096, 4096, 256, TileConfig(128, 128, 64, 1, 4, 4, True)), (4096, 4096, 1024, TileConfig(256, 128, 64, 1, 8, 4, True))]
# deeper rings (--stages): do the refills stop costing?
STAGE_CASES = [(8192, 28672, 1024, TileConfig(256, 128, 64, 1, 8, 5, True)), (8192, 28672, 1024, TileConfig(128, 256, 64, 1, 8, 6, True)),
               (8192, 28672, 1024, TileConfig(128, 256, 64, 1, 8, 5, True)), (4096, 4096, 256, TileConfig(64, 128, 64, 1, 4, 8, True)),
               (4096, 4096, 256, TileConfig(64, 128, 64, 2, 4, 8, True)), (4096, 4096, 256, TileConfig(128, 128, 64, 1, 4, 6, True)),
               (4096, 4096, 1024, TileConfig(256, 128, 64, 1, 8, 5, True)), (14336, 4096, 256, TileConfig(64, 128, 64, 2, 4, 8, True))]


def main() -> None:
    warm_clocks()
    if "--ws-parts" in sys.argv:
        return ws_parts()
    if "--ws" in sys.argv:
        return compare_ws()
    stages = "--stages" in sys.argv
    for K, N, M, cfg in STAGE_CASES if stages else CASES:
        copies, x, _, cub, dflt = layer_with_baselines(K, N, M)
        line = f"{K}x{N} M={M} {cfg.block_m}x{cfg.block_n}x{cfg.block_k} w{cfg.num_warps} s{cfg.num_stages}: cuBLAS {cub * 1e3:.1f} us, default {dflt * 1e3:.1f}"
        for dbg in (0, 5) if stages else (0, 1, 2, 3, 4, 5):
            gluon_pipe.SKIP = dbg
            g = graph_ms([lambda c=c: triton_gemm(x, c, cfg, path_override=DOT_PIPE) for c in copies])
            line += f", skip{dbg} {g * 1e3:.1f}"
        gluon_pipe.SKIP = 0
        print(line, flush=True)


WS_CASES = [(8192, 28672, 1024), (8192, 28672, 256), (4096, 4096, 256), (4096, 4096, 1024), (14336, 4096, 256),
            (4096, 14336, 64)]
WS_TILES = [TileConfig(128, 128, 64, 1, 4, 4, ws=True), TileConfig(128, 128, 64, 1, 4, 6, ws=True),
            TileConfig(64, 256, 64, 1, 4, 4, ws=True), TileConfig(128, 128, 128, 1, 4, 3, ws=True)]


def compare_ws() -> None:
    """gluon_ws's tiles against cuBLAS and the default dispatch (graph times), checked first."""
    from repack.kernels.triton_gemm import DOT_WS
    for K, N, M in WS_CASES:
        copies, x, ref, cub, dflt = layer_with_baselines(K, N, M)
        line = f"{K}x{N} M={M}: cuBLAS {cub * 1e3:.1f} us, default {dflt * 1e3:.1f}"
        for cfg in WS_TILES:
            line += "," + forced_tile_time(f"ws {cfg.block_m}x{cfg.block_n}x{cfg.block_k} s{cfg.num_stages}", x, copies, ref,
                                           cfg, DOT_WS, tol=0.0)
        print(line, flush=True)


def ws_parts() -> None:
    """gluon_ws with parts switched off (gluon_ws.SKIP: 1 constant weight tile, 2 no weight stores,
    3 no fence) and with 4 or 8 dequantization warps: where its time goes."""
    from repack.kernels import gluon_ws
    from repack.kernels.triton_gemm import DOT_WS
    for K, N, M in WS_CASES[:3]:
        copies, x, ref, cub, dflt = layer_with_baselines(K, N, M)
        print(f"{K}x{N} M={M}: cuBLAS {cub * 1e3:.1f} us, default {dflt * 1e3:.1f}", flush=True)
        for cfg in (WS_TILES[3], WS_TILES[1]):
            for dqw in (4, 8):
                line = f"  ws {cfg.block_m}x{cfg.block_n}x{cfg.block_k} s{cfg.num_stages} dq{dqw}:"
                for dbg in (0, 1, 2, 3):  # the error shown where results are meant to be right
                    gluon_ws.DQ_WARPS, gluon_ws.SKIP = dqw, dbg
                    line += forced_tile_time(f"skip{dbg}", x, copies, ref, cfg, DOT_WS,
                                             tol=0.0 if dbg in (0, 3) else float("inf"))
                print(line, flush=True)
        gluon_ws.DQ_WARPS, gluon_ws.SKIP = 4, 0


if __name__ == "__main__":
    main()
