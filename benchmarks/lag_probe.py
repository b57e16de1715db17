"""POST_LAG (TileConfig.lag: each step's wgmma left running into the next step, gluon_rs.POST_LAG) against the same
tiles without it, at small M (needs CUDA; graph times over the layer's copies, every tile checked against the
default dispatch's output first). Written in session 23 without a GPU, for the next session that has one.

    python benchmarks/lag_probe.py [--m 16] [--shapes 4096x14336,14336x4096,8192x28672,4096x4096] [--awq] [--jobs 12]

Each shape runs the tiles TILES names where lag compiles pipelined without spills (tests/test_sass.py), both
gluon_rs kernels (rs 2, rs 3), unsplit and split to about one and two waves as diag_rs.py splits them, and the
table's own tile for the shape; it prints each pair (without / with lag, µs) and the best of each side.
"""

import dataclasses
import math
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from benchmarks.diag_rs import label, precompile  # noqa: E402
from benchmarks.gemm_common import graph_ms, layer_with_baselines, option, warm_clocks  # noqa: E402
from repack.kernels.triton_gemm import DOT_RS, triton_gemm  # noqa: E402
from repack.kernels.tuned import TileConfig, pick_config, split_for  # noqa: E402

# (BLOCK_M, BLOCK_N, BLOCK_K, warps, ring slots): the 16-token POST tiles whose lagged loop keeps its registers
# (the 4-warp 16x128x128 tile spills or serializes with lag: NOTES-gemm.md, twenty-third session)
TILES = [(16, 64, 128, 4, 3), (16, 64, 128, 4, 4), (16, 128, 64, 4, 4), (16, 128, 128, 8, 4)]
SMS = 132


def pairs(M: int, K: int, N: int) -> list[TileConfig]:
    """Each tile of TILES without lag, then with it, on both kernels and the K splits diag_rs.py would try."""
    out = []
    for bm, bn, bk, warps, stages in TILES:
        if N % bn:
            continue
        count = math.ceil(M / bm) * (N // bn)
        splits = [1] + ([split_for(count, K, bk, t) for t in (SMS, 2 * SMS)] if count < SMS else [])
        for split in dict.fromkeys(splits):
            for rs in (2, 3):
                plain = TileConfig(bm, bn, bk, split, warps, stages, rs=rs)
                out += [plain, dataclasses.replace(plain, lag=True)]
    return out


def timed(x: torch.Tensor, copies: list, ref: torch.Tensor, cfg: TileConfig) -> float | None:
    """The tile's graph ms over the copies, or None (printed why) where it fails or is wrong."""
    try:
        y = triton_gemm(x, copies[0], cfg, path_override=DOT_RS).float()
        err = float((y - ref).norm() / ref.norm())
        if not err < 2e-3:
            print(f"  {label(cfg)}: WRONG (rel. error {err:.1e})", flush=True)
            return None
        return graph_ms([lambda c=c: triton_gemm(x, c, cfg, path_override=DOT_RS) for c in copies])
    except Exception as e:  # noqa: BLE001  (a probe reports a tile that fails and goes on)
        print(f"  {label(cfg)}: failed ({type(e).__name__}: {str(e)[:80]})", flush=True)
        return None


def main() -> None:
    args = sys.argv[1:]
    ms = [int(v) for v in option(args, "--m", "16").split(",")]
    shapes = [tuple(int(d) for d in s.split("x"))
              for s in option(args, "--shapes", "4096x14336,14336x4096,8192x28672,4096x4096").split(",")]
    layout = "awq" if "--awq" in args else "gptq"
    jobs = int(option(args, "--jobs", "12"))
    warm_clocks()
    for K, N in shapes:
        for M in ms:
            tiles = pairs(M, K, N)
            picked = pick_config(M, N, K)
            own = (picked.awq_rs if layout == "awq" else None) or picked.gptq_rs
            t0 = time.time()
            precompile(K, N, M, layout, tiles + ([own] if own else []), jobs)
            copies, x, ref, cub, dflt = layer_with_baselines(K, N, M, layout)
            print(f"{K}x{N} M={M} {layout}: cuBLAS {cub * 1e3:.1f} us, default {dflt * 1e3:.1f} "
                  f"({cub / dflt:.2f}x){f', table rs tile {label(own)}' if own else ''} "
                  f"(compiled in {time.time() - t0:.0f} s)", flush=True)
            best = {False: (math.inf, None), True: (math.inf, None)}
            for plain, lagged in zip(tiles[::2], tiles[1::2]):
                a, b = timed(x, copies, ref, plain), timed(x, copies, ref, lagged)
                for cfg, g in ((plain, a), (lagged, b)):
                    if g is not None and g < best[cfg.lag][0]:
                        best[cfg.lag] = (g, cfg)
                if a is not None and b is not None:
                    print(f"  {label(plain)}: {a * 1e3:.1f} -> lag {b * 1e3:.1f} us ({a / b:.3f}x)", flush=True)
            for lag, (g, cfg) in best.items():
                if cfg is not None:
                    print(f"  best {'with' if lag else 'without'} lag: {label(cfg)} {g * 1e3:.1f} us "
                          f"({cub / g:.2f}x cuBLAS, {dflt / g:.3f}x the default)", flush=True)


if __name__ == "__main__":
    main()
