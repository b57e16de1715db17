"""GEMV_H2 (M = 1) with its loads through a shared-memory ring (TileConfig.ring), graph µs on the lent GPU,
against the default dispatch: ring depths 2-6, tiles 256-1024 wide, the K split through the global
workspace (about 528 programs) or inside a cluster of 4 / 8. With --wide, the multi-group K step instead
(block_k 512-4096 over g128, tiles 8-128 wide, no split or a cluster of 2 / 4, ring off or 2-4 deep).
Prints every candidate and the best per shape; with --merge-into, a best tile faster than the default
replaces that shape's M = 1 entry.

    python benchmarks/diag_gemv_ring.py [--wide [--quick]] [--ragged] [--shapes 4096x4096,...] [--merge-into repack/kernels/tuned.json]

On shapes no entry was tuned for (Llama-2's 11008x4096 and 4096x11008: 86 groups), the "default" line shows
what the nearest entry gives, with and without --ragged (triton_gemm.RAGGED_WIDE).
"""

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.gemm_common import forced_tile_time, layer_with_baselines, parse_shapes, warm_clocks  # noqa: E402
from benchmarks.paths_gemm import merge  # noqa: E402
from repack.kernels import triton_gemm as tg  # noqa: E402
from repack.kernels.tuned import TileConfig, pick_config, split_for  # noqa: E402

TARGET = 528  # programs the global split aims at (the shipped M = 1 entries' target)


def ring_candidates(K: int, N: int):
    for bn, warps in ((1024, 8), (512, 4), (512, 8), (256, 4)):
        for stages in (2, 3, 4, 6):
            for cluster in (1, 4, 8):
                split = cluster if cluster > 1 else split_for(-(-N // bn), K, 64, TARGET)
                yield TileConfig(1, bn, 64, split, warps, stages, cluster=cluster, ring=True)


WIDE_TILES = ((8, 2), (8, 4), (16, 2), (16, 4), (16, 8), (32, 4), (32, 8), (64, 4), (64, 8), (128, 8))
QUICK_TILES = ((16, 2), (16, 4), (32, 4), (64, 4))  # the tiles that won on the eleventh/twelfth sessions' shapes


def wide_candidates(K: int, N: int, group: int = 128, ragged: bool = False, quick: bool = False):
    for bn, warps in QUICK_TILES if quick else WIDE_TILES:
        for bk in (512, 1024, 2048) if quick else (512, 1024, 2048, 4096):
            words = bn * bk // 8  # int32 words of one step
            if words // (32 * warps) > 64:  # registers: a step's words per thread
                continue
            for cluster in (1, 2) if quick else (1, 2, 4):
                if (K % (cluster * bk) and not ragged) or N % bn or bk % group:
                    continue
                for ring in (3, 4) if quick else (0, 2, 3, 4):
                    if ring * words * 4 > 200 * 1024:
                        continue
                    yield TileConfig(1, bn, bk, cluster, warps, ring or 2, cluster=cluster, ring=ring > 0)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--shapes", default="4096x4096,4096x14336,14336x4096,8192x28672")
    ap.add_argument("--merge-into", default=None)
    ap.add_argument("--wide", action="store_true")
    ap.add_argument("--ragged", action="store_true", help="multi-group steps with a partial last step (RAGGED_WIDE)")
    ap.add_argument("--quick", action="store_true", help="with --wide: only the structures that won before (48 a shape)")
    args = ap.parse_args()
    tg.RAGGED_WIDE = args.ragged
    warm_clocks()
    rows = []
    for K, N in parse_shapes(args.shapes):
        copies, x, ref, cub, dflt = layer_with_baselines(K, N, 1)
        print(f"{K}x{N} M=1: cuBLAS {cub * 1e3:.1f} default {pick_config(1, N, K)} {dflt * 1e3:.1f}", flush=True)
        timed = []
        for cfg in (wide_candidates(K, N, ragged=args.ragged, quick=args.quick) if args.wide else ring_candidates(K, N)):
            text = forced_tile_time("", x, copies, ref, cfg, tg.GEMV_H2, tol=2e-3)
            print(f"  {cfg.block_n}x{cfg.block_k} w{cfg.num_warps} ring {cfg.num_stages if cfg.ring else 0} "
                  f"cluster {cfg.cluster} split {cfg.split_k}:{text}", flush=True)
            if "err" not in text and "failed" not in text:
                timed.append((float(text.split()[0]) * 1e-3, cfg))
        if timed:
            g, cfg = min(timed, key=lambda r: r[0])
            print(f"BEST {K}x{N} M=1: {g * 1e3:.1f} us {cfg} (default {dflt * 1e3:.1f}, cuBLAS {cub * 1e3:.1f})", flush=True)
            rows.append({"K": K, "N": N, "M": 1, "config": cfg.to_dict(), "graph_ms": g, "default_graph_ms": dflt,
                         "target_programs": 0 if cfg.cluster > 1 or args.wide else TARGET})
    if args.merge_into:
        merge(rows, Path(args.merge_into))


if __name__ == "__main__":
    main()
