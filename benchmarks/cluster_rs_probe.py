"""gluon_rs's K split inside a thread-block cluster (TileConfig.cluster on rs 1/2 tiles: partial sums meet in
distributed shared memory, gluon_rs._cluster_store) against the table's tile and the same tile split through global
slots, at small M (needs CUDA; graph µs, every tile checked against the default dispatch's output first).

    python benchmarks/cluster_rs_probe.py [--m 16] [--shapes 4096x14336,14336x4096,4096x4096]
"""

import dataclasses
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.diag_rs import label  # noqa: E402
from benchmarks.gemm_common import graph_ms, layer_with_baselines, option, parse_shapes, warm_clocks  # noqa: E402
from repack.kernels.triton_gemm import DOT_RS, triton_gemm  # noqa: E402
from repack.kernels.tuned import TileConfig, pick_config  # noqa: E402

TILES = [TileConfig(16, 128, 128, 1, 4, 4, rs=2), TileConfig(16, 64, 128, 1, 4, 3, rs=2),
         TileConfig(16, 64, 128, 1, 4, 4, rs=1), TileConfig(16, 128, 128, 1, 8, 4, rs=2)]


def main() -> None:
    args = sys.argv[1:]
    M = int(option(args, "--m", "16"))
    shapes = parse_shapes(option(args, "--shapes", "4096x14336,14336x4096,4096x4096"))
    warm_clocks()
    for K, N in shapes:
        copies, x, ref, cub, dflt = layer_with_baselines(K, N, M)
        own = pick_config(M, N, K).gptq_rs
        print(f"{K}x{N} M={M}: cuBLAS {cub * 1e3:.2f} us, default {dflt * 1e3:.2f} ({cub / dflt:.2f}x)"
              + (f", table rs tile {label(own)}" if own else ""), flush=True)
        for base in TILES:
            if N % base.block_n:
                continue
            row = []
            for c in (2, 4, 8):
                if K % (c * base.block_k):
                    continue
                for name, cfg in ((f"slots {c}", dataclasses.replace(base, split_k=c)),
                                  (f"cluster {c}", dataclasses.replace(base, split_k=c, cluster=c))):
                    try:
                        y = triton_gemm(x, copies[0], cfg, path_override=DOT_RS).float()
                        err = float((y - ref).norm() / ref.norm())
                        g = graph_ms([lambda c_=c_, cfg=cfg: triton_gemm(x, c_, cfg, path_override=DOT_RS)
                                      for c_ in copies])
                        row.append(f"{name} {g * 1e3:.2f}" + ("" if err < 2e-3 else f" (WRONG {err:.0e})"))
                    except Exception as e:  # noqa: BLE001  (a probe reports a tile that fails and goes on)
                        row.append(f"{name} failed ({type(e).__name__}: {str(e)[:60]})")
            print(f"  {label(base)}: " + ", ".join(row), flush=True)


if __name__ == "__main__":
    main()
