"""Compare the Triton GEMM's kernel paths and tiles on the GPU, per shape and M.

For each (shape, M): the default dispatch, then every candidate (path, tile) below; each checked
against the dequantized reference before it is timed (do_bench median, L2 flushed, and kernel-only
from a CUDA graph). Prints one line per candidate and the best per (shape, M) against cuBLAS fp16.

    python benchmarks/paths_gemm.py [--shapes 4096x4096,8192x28672] [--m 1,16,256] [--budget-s 300]
        [--rank graph|do_bench] [--merge-into repack/kernels/tuned.json]

Candidates are ranked by kernel-only graph time by default: do_bench of a forced path includes the
unplanned launch's host time (40-75 us), which at M = 1 is longer than the kernel. With
--merge-into, a best candidate faster (graph) than the default dispatch replaces that shape's entry
of its M bucket.
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from benchmarks.gemm_common import bench_ms, copies_for, graph_ms, packed_weight, parse_shapes  # noqa: E402
from repack.kernels import triton_gemm as tg  # noqa: E402
from repack.kernels.triton_gemm import DOT_GLUON, DOT_KTJ, DOT_PIPE, DOT_WS, GEMV_H2, GEMV_KJ, triton_gemm  # noqa: E402
from repack.kernels.tuned import TileConfig, bucket, pick_config, split_for  # noqa: E402

SMS = 132


def pipe_candidates(M: int):
    """gluon_pipe's tiles (benchmarks/diag_pipe.py ruled out rings of 3 and deeper than 5, and splits
    at M >= 256): a warpgroup per 64 rows, N tiles of 128/256."""
    if M <= 64:
        for bn, bk, stages in ((128, 64, 4), (128, 64, 6), (256, 64, 4), (128, 128, 4)):
            for target in (0, 264):
                yield DOT_PIPE, True, 64, bn, bk, 4, stages, target
    else:
        for bm, bn, bk, warps, stages in ((256, 128, 64, 8, 4), (256, 128, 64, 8, 5), (128, 256, 64, 8, 4),
                                          (128, 256, 64, 8, 5), (128, 128, 64, 4, 4), (128, 128, 128, 8, 3)):
            yield DOT_PIPE, True, bm, bn, bk, warps, stages, 0


def ws_candidates(M: int):
    """gluon_ws's tiles: one MMA warpgroup, 128x128 or 64x256, rings of 3-6 slots, no split."""
    for bm, bn, bk, stages in ((128, 128, 64, 4), (128, 128, 64, 6), (64, 256, 64, 4), (128, 128, 128, 3), (64, 128, 64, 6)):
        if bm <= 64 or M > 64:
            yield DOT_WS, True, bm, bn, bk, 4, stages, 0


def cluster_candidates(M: int):
    """Tiles whose K split runs inside a thread-block cluster of 2-8 CTAs (TileConfig.cluster), as
    (path, paired, block_m, block_n, block_k, warps, stages, target programs, cluster)."""
    if M <= 4:
        for (bn, warps), cluster in itertools.product([(128, 4), (256, 4), (256, 8), (512, 4), (512, 8), (1024, 8)], [2, 4, 8]):
            yield GEMV_H2, False, 1, bn, 64, warps, 2, 0, cluster
    elif M <= 16:
        for (bn, warps), bk, cluster in itertools.product([(64, 4), (128, 4), (128, 8), (256, 8)], [64, 128], [2, 4, 8]):
            yield DOT_GLUON, True, 16, bn, bk, warps, 1, 0, cluster
    else:
        for (bm, bn, warps), bk, cluster in itertools.product([(64, 64, 4), (64, 128, 4), (64, 128, 8)], [64, 128], [2, 4, 8]):
            yield DOT_KTJ, True, bm, bn, bk, warps, 3, 0, cluster


def candidates(M: int, pipe: bool = False, ws: bool = False, cluster: bool = False):
    """(path, paired dequantization, block_m, block_n, block_k, warps, stages, target programs[, cluster])."""
    if cluster:
        yield from cluster_candidates(M)
    elif ws and M >= 64:
        yield from ws_candidates(M)
    elif pipe and M >= 64:
        yield from pipe_candidates(M)
    elif M <= 4:
        yield from itertools.product([GEMV_H2], [False], [1], [128, 256], [64, 128], [4], [2, 3], [528, 1056, 2112])
        yield from itertools.product([GEMV_H2], [False], [1], [512], [128], [4, 8], [2], [1056, 2112])
        # long programs: no or little K split, deeper pipelines
        yield from itertools.product([GEMV_H2], [False], [1], [64, 128], [64, 128], [4], [3, 4], [0, 264])
    elif M <= 64:
        if M <= 16:  # the Gluon tile: 16 rows of N a warp at least, 8 warps only from 128 wide
            for (bn, warps), bk, target in itertools.product([(64, 4), (128, 4), (128, 8), (256, 8)], [64, 128], [264, 528, 1056]):
                yield DOT_GLUON, True, 16, bn, bk, warps, 1, target
        else:
            yield from itertools.product([DOT_GLUON], [True], [64], [64, 128], [64, 128], [4], [1], [264, 528, 1056])
    else:
        yield from itertools.product([DOT_GLUON], [True], [64, 128], [64, 128], [64, 128], [4], [1], [0, 264])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--shapes", default="4096x4096,8192x28672")
    ap.add_argument("--m", default="1,16,64,256,1024")
    ap.add_argument("--budget-s", type=float, default=300)
    ap.add_argument("--json", default=None)
    ap.add_argument("--rank", choices=("graph", "do_bench"), default="graph")
    ap.add_argument("--merge-into", default=None)
    ap.add_argument("--pipe", action="store_true", help="at M >= 64 try gluon_pipe's tiles (DOT_PIPE) only")
    ap.add_argument("--ws", action="store_true", help="at M >= 64 try gluon_ws's tiles (DOT_WS) only")
    ap.add_argument("--cluster", action="store_true", help="try only tiles whose K split runs in a thread-block cluster")
    ap.add_argument("--no-do-bench", action="store_true", help="time candidates by graph only (faster sweeps)")
    ap.add_argument("--gluon-max-m", type=int, default=None, help="let the Gluon tile take M tiles up to this (triton_gemm.GLUON_MAX_BLOCK_M)")
    args = ap.parse_args()
    if args.gluon_max_m:
        tg.GLUON_MAX_BLOCK_M = args.gluon_max_m
    warm = torch.randn(8192, 8192, device="cuda", dtype=torch.float16)
    t_warm = time.time()
    while time.time() - t_warm < 2:  # bring the clocks up before the first measurement
        warm @ warm
    torch.cuda.synchronize()
    shapes = parse_shapes(args.shapes)
    ms_list = [int(m) for m in args.m.split(",")]
    t0 = time.time()
    rows = []
    for K, N in shapes:
        w = packed_weight(K, N, "gptq")
        copies = [w] + [packed_weight(K, N, "gptq") for _ in range(copies_for(K * N // 2) - 1)]
        dense_copies = [torch.randn(N, K, device="cuda", dtype=torch.float16) for _ in range(copies_for(K * N * 2))]
        for M in ms_list:
            x = torch.randn(M, K, device="cuda", dtype=torch.float16)
            tg.PAIRED_DEQUANT, tg.HALF2_GEMV = False, False
            ref = triton_gemm(x, w).float()  # fp32 arithmetic paths, themselves tested against the reference in tests/
            tg.PAIRED_DEQUANT, tg.HALF2_GEMV = True, True  # the module's defaults, for the default dispatch's times
            cublas = bench_ms(lambda: torch.nn.functional.linear(x, dense_copies[0]))
            cublas_g = graph_ms([lambda d=d: torch.nn.functional.linear(x, d) for d in dense_copies])
            default_ms = bench_ms(lambda: triton_gemm(x, w))
            default_g = graph_ms([lambda c=c: triton_gemm(x, c) for c in copies])
            print(f"{K}x{N} M={M}: cuBLAS {cublas * 1e3:.1f} us (graph {cublas_g * 1e3:.1f}); default {pick_config(M, N, K)} "
                  f"{default_ms * 1e3:.1f} us (graph {default_g * 1e3:.1f})", flush=True)
            if M <= 4:  # the fp32-arithmetic GEMV on the default tile, for comparison with GEMV_H2
                kj_g = graph_ms([lambda c=c: triton_gemm(x, c, pick_config(M, N, K), path_override=GEMV_KJ) for c in copies])
                print(f"  GEMV_KJ (fp32 arithmetic) on the default tile: graph {kj_g * 1e3:.1f} us", flush=True)
            else:  # the tl.dot tile (shared-memory round trip of the weight) on the default tile
                tg.GLUON_DOT = False
                ktj = bench_ms(lambda: triton_gemm(x, w))
                ktj_g = graph_ms([lambda c=c: triton_gemm(x, c) for c in copies])
                tg.GLUON_DOT = True
                print(f"  DOT_KTJ on the default tile: {ktj * 1e3:.1f} us (graph {ktj_g * 1e3:.1f})", flush=True)
            best = None
            for path, paired, bm, bn, bk, warps, stages, target, *more in candidates(M, args.pipe, args.ws, args.cluster):
                tg.PAIRED_DEQUANT = paired
                if time.time() - t0 > args.budget_s:
                    break
                cluster = more[0] if more else 1
                tiles = -(-M // bm) * -(-N // bn)
                split = cluster if cluster > 1 else split_for(tiles, K, bk, target) if target else 1
                cfg = TileConfig(bm, bn, bk, split, warps, stages, path == DOT_PIPE, path == DOT_WS, cluster)
                try:
                    y = triton_gemm(x, w, cfg, path_override=path).float()
                    err = ((y - ref).norm() / ref.norm()).item()
                    if not err < 2e-3:
                        print(f"  path {path} paired={paired} {cfg}: WRONG rel err {err:.2e}", flush=True)
                        continue
                    ms = float("nan") if args.no_do_bench else bench_ms(lambda: triton_gemm(x, w, cfg, path_override=path))
                    g = graph_ms([lambda c=c: triton_gemm(x, c, cfg, path_override=path) for c in copies])
                except Exception as e:  # noqa: BLE001 - a tile that does not compile is reported and skipped
                    print(f"  path {path} paired={paired} {cfg}: {type(e).__name__}: {str(e)[:120]}", flush=True)
                    continue
                print(f"  path {path} paired={paired} {cfg} target {target}: {ms * 1e3:.1f} us (graph {g * 1e3:.1f})  "
                      f"x cuBLAS {cublas / ms:.2f} (graph {cublas_g / g:.2f})", flush=True)
                rank = g if args.rank == "graph" else ms
                if best is None or rank < best[0]:
                    best = (rank, path, cfg, target, paired, ms, g)
            if best:
                _, path, cfg, target, paired, ms, g = best
                r = {"K": K, "N": N, "M": M, "path": path, "paired": paired, "config": cfg.to_dict(), "ms": ms, "graph_ms": g,
                     "target_programs": target, "cublas_ms": cublas, "cublas_graph_ms": cublas_g,
                     "default_ms": default_ms, "default_graph_ms": default_g}
                rows.append(r)
                print(f"BEST {K}x{N} M={M}: path {path} paired={paired} {cfg} {ms * 1e3:.1f} us (graph {g * 1e3:.1f}) "
                      f"x cuBLAS {cublas / ms:.2f} (graph {cublas_g / g:.2f}); default x cuBLAS {cublas / default_ms:.2f}",
                      flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))
    if args.merge_into:
        merge(rows, Path(args.merge_into))


def merge(rows: list[dict], table_file: Path) -> None:
    """Write each best tile into the tuned table where its graph time beats the default's."""
    table = json.loads(table_file.read_text())
    for r in rows:
        if r["graph_ms"] >= r["default_graph_ms"]:
            continue
        entries = table.setdefault(str(bucket(r["M"])), [])
        entry = {"K": r["K"], "N": r["N"], "ms": r["graph_ms"], "target_programs": r["target_programs"], "config": r["config"]}
        entries[:] = [e for e in entries if (e["K"], e["N"]) != (r["K"], r["N"])] + [entry]
        print(f"tuned: bucket {bucket(r['M'])} {r['K']}x{r['N']} <- {r['config']} (graph {r['default_graph_ms'] * 1e3:.1f} -> "
              f"{r['graph_ms'] * 1e3:.1f} us)", flush=True)
    table_file.write_text(json.dumps(table, indent=1) + "\n")


if __name__ == "__main__":
    main()
