"""AutoAWQ gemm layers at M > 1: DOT_N (the paired AWQ tensor-core tile) over a few forced tiles against the tile
the dispatch derives from the GPTQ-tuned entry, and cuBLAS fp16; graph µs on the lent GPU, each tile checked
against the dispatch's output. Prints the best tile per (shape, M).

    python benchmarks/diag_awq_dot.py [--shapes 4096x4096,...] [--m 64,256,1024]
"""

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from benchmarks.gemm_common import (SHAPES, forced_tile_time, layer_with_baselines, parse_shapes,  # noqa: E402
                                     warm_clocks)
from repack.kernels import triton_gemm as tg  # noqa: E402
from repack.kernels.tuned import TileConfig, split_for  # noqa: E402

# (block_m, block_n, block_k, warps, stages); DOT_N trims stages to fit shared memory and block_k to the group
LARGE = [(128, 128, 64, 4, 3), (128, 128, 64, 8, 3), (128, 256, 64, 8, 3), (256, 128, 64, 8, 3), (128, 128, 128, 8, 2),
         (64, 256, 64, 4, 3), (256, 128, 128, 8, 2), (128, 64, 128, 4, 3), (64, 128, 128, 4, 3), (128, 64, 64, 4, 4)]
SMALL = [(16, 64, 128, 4, 3), (16, 128, 128, 4, 2), (16, 128, 64, 4, 3), (32, 128, 64, 4, 3), (64, 64, 128, 4, 3),
         (64, 128, 64, 4, 3), (64, 128, 128, 4, 2), (64, 256, 64, 8, 3)]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--shapes", default=",".join(f"{k}x{n}" for k, n in SHAPES))
    ap.add_argument("--m", default="16,64,256,1024")
    args = ap.parse_args()
    warm_clocks()
    for K, N in parse_shapes(args.shapes):
        for M in (int(m) for m in args.m.split(",")):
            copies, x, ref, cub, dflt = layer_with_baselines(K, N, M, "awq")
            print(f"{K}x{N} M={M} awq: cuBLAS {cub * 1e3:.1f}, default {dflt * 1e3:.1f} ({cub / dflt:.2f}x)", flush=True)
            timed = []
            for bm, bn, bk, warps, stages in (SMALL if M <= 64 else LARGE):
                if bm > 2 * M:
                    continue
                for target in ((0, 264) if M <= 64 else (0,)):
                    split = split_for(-(-N // bn) * -(-M // bm), K, bk, target) if target else 1
                    cfg = TileConfig(bm, bn, bk, split, warps, stages)
                    text = forced_tile_time("", x, copies, ref, cfg, tg.DOT_N, tol=2e-3)
                    print(f"  {bm}x{bn}x{bk} w{warps} s{stages} split {split}:{text}", flush=True)
                    if "err" not in text and "failed" not in text:
                        timed.append((float(text.split()[0]), cfg))
            if timed:
                us, cfg = min(timed, key=lambda r: r[0])
                print(f"BEST {K}x{N} M={M}: {us:.1f} us ({cub * 1e3 / us:.2f}x cuBLAS, {dflt * 1e3 / us:.2f}x default) "
                      f"{cfg.block_m}x{cfg.block_n}x{cfg.block_k} w{cfg.num_warps} s{cfg.num_stages} split {cfg.split_k}",
                      flush=True)
            del copies
            torch.cuda.empty_cache()


if __name__ == "__main__":
    main()
