"""AutoAWQ gemm layers at M = 1 (fp16 x): GEMV_NH2 (fp16 pairs) over a few tiles against GEMV_N (fp32) and
cuBLAS fp16, graph µs on the lent GPU; prints the best GEMV_NH2 tile per shape.

    python benchmarks/diag_awq_gemv.py [--shapes 4096x4096,...] [--quick] [--wide]

--wide: K steps of several whole groups (GEMV_NH2's GROUPS branch; RAGGED_WIDE), no split or a cluster of 2,
tiles 16-64 wide — the structure that took GEMV_H2 from 1.5-2.0x to 2.2-2.9x cuBLAS in the graph.
"""

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.gemm_common import (SHAPES, forced_tile_time, layer_with_baselines, parse_shapes,  # noqa: E402
                                     warm_clocks)
from repack.kernels import triton_gemm as tg  # noqa: E402
from repack.kernels.tuned import TileConfig, split_for  # noqa: E402


def candidates(K: int, N: int, quick: bool):
    for bn, warps in ((128, 4), (256, 4), (256, 8), (512, 8)):
        for bk in (64, 128):
            for target in ((264,) if quick else (0, 132, 264, 528)):
                for ring in ((0, 3) if quick else (0, 2, 3)):
                    split = split_for(-(-N // bn), K, bk, target) if target else 1
                    yield TileConfig(1, bn, bk, split, warps, ring or 2, ring=ring > 0)


def wide_candidates(K: int, N: int, group: int = 128):
    for bn, warps in ((16, 2), (32, 4), (64, 4)):
        for bk in (512, 1024, 2048):
            for cluster in (1, 2):
                for ring in (0, 3):
                    if N % bn == 0 and bk % group == 0:
                        yield TileConfig(1, bn, bk, cluster, warps, ring or 2, cluster=cluster, ring=ring > 0)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--shapes", default=",".join(f"{k}x{n}" for k, n in SHAPES))
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--wide", action="store_true")
    args = ap.parse_args()
    warm_clocks()
    for K, N in parse_shapes(args.shapes):
        copies, x, ref, cub, dflt = layer_with_baselines(K, N, 1, "awq")
        old = forced_tile_time("GEMV_N (fp32, default tile)", x, copies, ref,
                               TileConfig(1, tg.M1_OTHER_BLOCK_N, 64, split_for(N // tg.M1_OTHER_BLOCK_N, K, 64, 264), 4, 2),
                               tg.GEMV_N, tol=2e-3)
        print(f"{K}x{N} M=1 awq: cuBLAS {cub * 1e3:.1f}, default {dflt * 1e3:.1f},{old}", flush=True)
        timed = []
        for cfg in wide_candidates(K, N) if args.wide else candidates(K, N, args.quick):
            text = forced_tile_time("", x, copies, ref, cfg, tg.GEMV_NH2, tol=2e-3)
            print(f"  {cfg.block_n}x{cfg.block_k} w{cfg.num_warps} split {cfg.split_k} cluster {cfg.cluster} "
                  f"ring {cfg.num_stages if cfg.ring else 0}:{text}",
                  flush=True)
            if "err" not in text and "failed" not in text:
                timed.append((float(text.split()[0]), cfg))
        if timed:
            us, cfg = min(timed, key=lambda r: r[0])
            print(f"BEST {K}x{N}: {us:.1f} us ({cub * 1e3 / us:.2f}x cuBLAS) {cfg}", flush=True)


if __name__ == "__main__":
    main()
