"""How much of an M = 16 launch is fixed cost? The table's tile for a shape (its gluon_rs tile, else its own),
forced onto layers of the same N and growing K (K = BLOCK_K x split x 1..32, up to 16384; graph µs over enough
copies to defeat L2), fitted as t(K) = a + b K, unsplit and with the table's split: ``a`` is what a launch costs
whatever its K (launch, first loads, epilogue, a K split's fixup), ``b`` the steady state, compared with the copy
floor (the weight's bytes at the measured copy bandwidth). cuBLAS fp16 is fitted alike. Needs CUDA.

    python benchmarks/fixed_cost_probe.py [--m 16] [--shapes 4096x14336,14336x4096,8192x28672,4096x4096]
"""

import dataclasses
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from benchmarks.gemm_common import (copies_for, copy_bandwidth, graph_ms, option, packed_weight,  # noqa: E402
                                     parse_shapes, warm_clocks)
from repack.kernels.triton_gemm import DOT_RS, triton_gemm  # noqa: E402
from repack.kernels.tuned import pick_config  # noqa: E402

def fit(xs: list[float], ys: list[float]) -> tuple[float, float]:
    """Least squares a + b x."""
    n = len(xs)
    mx, my = sum(xs) / n, sum(ys) / n
    b = sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sum((x - mx) ** 2 for x in xs)
    return my - b * mx, b


def main() -> None:
    args = sys.argv[1:]
    M = int(option(args, "--m", "16"))
    shapes = parse_shapes(option(args, "--shapes", "4096x14336,14336x4096,8192x28672,4096x4096"))
    warm_clocks()
    bw = copy_bandwidth()  # bytes/s
    print(f"copy bandwidth {bw / 1e12:.2f} TB/s", flush=True)
    for K0, N in shapes:
        picked = pick_config(M, N, K0)
        tile, path = (picked.gptq_rs, DOT_RS) if picked.gptq_rs else (picked, None)  # (None: the tile's own path)
        split = max(tile.split_k, tile.cluster)
        rows = {"unsplit": [], f"split {split}": [], "cuBLAS": []}
        for K in (tile.block_k * split * j for j in (1, 2, 4, 8, 16, 32)):
            if K > 16384:
                break
            copies = [packed_weight(K, N) for _ in range(copies_for(K * N // 2))]
            dense = [torch.randn(N, K, device="cuda", dtype=torch.float16) for _ in range(copies_for(K * N * 2))]
            x = torch.randn(M, K, device="cuda", dtype=torch.float16)
            for name, cfg in (("unsplit", dataclasses.replace(tile, split_k=1, cluster=1)), (f"split {split}", tile)):
                rows[name].append((K, graph_ms([lambda c=c, cfg=cfg: triton_gemm(x, c, cfg, path_override=path)
                                                for c in copies])))
            rows["cuBLAS"].append((K, graph_ms([lambda d=d: torch.nn.functional.linear(x, d) for d in dense])))
            del copies, dense
        floor_per_k = N / 2 / bw * 1e6  # µs per input row of the packed weight
        kind = (f"rs{tile.rs}{' lean' if tile.lean else ''}" if path == DOT_RS
                else f"the entry's own path, cluster {tile.cluster}")
        print(f"{K0}x{N} M={M}: tile {tile.block_m}x{tile.block_n}x{tile.block_k} w{tile.num_warps} "
              f"s{tile.num_stages} {kind}; copy floor {floor_per_k * 1e3:.3f} ns/K", flush=True)
        for name, pts in rows.items():
            if len(pts) < 2:
                continue
            a, b = fit([k for k, _ in pts], [t * 1e3 for _, t in pts])
            floor = floor_per_k * (4 if name == "cuBLAS" else 1)  # fp16 weights: four times the bytes
            print(f"  {name:>9}: fixed {a:6.2f} us + {b * 1e3:6.3f} ns/K ({floor / b:.2f} of its copy floor) | "
                  + ", ".join(f"K={k} {t * 1e3:.1f}" for k, t in pts), flush=True)


if __name__ == "__main__":
    main()
