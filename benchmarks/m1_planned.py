"""M = 1 tiles ranked the way benchmarks/gemm.py measures them: do_bench median through a launch plan.

paths_gemm.py ranks forced-path tiles by CUDA-graph time, because do_bench of a forced path pays the
unplanned launch. This script makes each candidate the dispatch's own choice instead (the tuned
table's lookup is replaced), so do_bench times the planned launch exactly as gemm.py does, and prints
tinygemm's do_bench in the same process beside it.

    python benchmarks/m1_planned.py [--shapes 4096x4096] [--budget-s 100]
"""

from __future__ import annotations

import argparse
import itertools
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from benchmarks.gemm import tinygemm  # noqa: E402
from benchmarks.gemm_common import bench_ms, copies_for, graph_ms, packed_weight, parse_shapes  # noqa: E402
from repack.kernels import triton_gemm as tg  # noqa: E402
from repack.kernels.tuned import TileConfig, pick_config, split_for  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--shapes", default="4096x4096,4096x14336,14336x4096")
    ap.add_argument("--budget-s", type=float, default=100, help="per shape")
    ap.add_argument("--bn", default="256,128,512")
    ap.add_argument("--bk", default="64,128")
    ap.add_argument("--warps", default="4,8")
    ap.add_argument("--stages", default="2,3")
    ap.add_argument("--targets", default="264,528,1056,0", help="programs the K split aims at (0: no split)")
    args = ap.parse_args()
    space = [[int(v) for v in getattr(args, a).split(",")] for a in ("bn", "bk", "warps", "stages", "targets")]
    warm = torch.randn(8192, 8192, device="cuda", dtype=torch.float16)
    t_warm = time.time()
    while time.time() - t_warm < 2:
        warm @ warm
    for K, N in parse_shapes(args.shapes):
        w = packed_weight(K, N)
        copies = [w] + [packed_weight(K, N) for _ in range(copies_for(K * N // 2) - 1)]
        x = torch.randn(1, K, device="cuda", dtype=torch.float16)
        ref = tg.triton_gemm(x, w, pick_config(1, N, K), path_override=tg.GEMV_KJ).float()
        tiny = tinygemm(K, N)
        xb = x.bfloat16()  # tinygemm takes bf16 activations only (as in gemm.py)
        tiny_ms = bench_ms(lambda: tiny(xb)) if tiny else float("nan")
        default = pick_config(1, N, K)
        rows = []
        t0 = time.time()
        for bn, bk, warps, stages, target in itertools.product(*space):
            if time.time() - t0 > args.budget_s:
                break
            tiles = -(-N // bn)
            split = split_for(tiles, K, bk, target) if target else 1
            cfg = TileConfig(1, bn, bk, split, warps, stages)
            tg.pick_config = lambda M, N_, K_, cfg=cfg: cfg
            tg._plans.clear()
            try:
                y = tg.triton_gemm(x, w).float()
                if not float((y - ref).norm() / ref.norm()) < 2e-3:
                    print(f"  {cfg}: WRONG", flush=True)
                    continue
                ms = bench_ms(lambda: tg.triton_gemm(x, w))
                g = graph_ms([lambda c=c: tg.triton_gemm(x, c) for c in copies])
            except Exception as e:  # noqa: BLE001 - a tile that does not compile is skipped
                print(f"  {cfg}: {type(e).__name__}: {str(e)[:100]}", flush=True)
                continue
            rows.append((ms, g, cfg))
        tg.pick_config = pick_config
        rows.sort(key=lambda r: r[0])
        print(f"{K}x{N} M=1: tinygemm {tiny_ms * 1e3:.1f} us; default {default}", flush=True)
        for ms, g, cfg in rows[:8]:
            print(f"  {ms * 1e3:6.1f} us (graph {g * 1e3:5.1f})  x tinygemm {tiny_ms / ms:.2f}  {cfg}"
                  f"{'  <- default' if cfg == default else ''}", flush=True)
        dflt = [r for r in rows if r[2] == default]
        if dflt:
            print(f"  default: {dflt[0][0] * 1e3:.1f} us (graph {dflt[0][1] * 1e3:.1f})", flush=True)


if __name__ == "__main__":
    main()
