"""The practical floor of an M = 1 GEMV on the lent GPU: graph time of a kernel that only reads the packed
weight, scales and zeros of a shape (torch's reductions over them, one launch each, over copies larger than
L2, like the GEMM's graph column), beside cuBLAS fp16 and our M = 1 kernel on the same shapes. The GEMM
table's "floor" is bytes over the copy bandwidth of 1 GB copies; a 6-40 µs kernel also pays launch and ramp.

    python benchmarks/read_floor.py [--shapes 4096x4096,...]
"""

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from benchmarks.gemm_common import SHAPES, graph_ms, layer_with_baselines, warm_clocks  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--shapes", default=",".join(f"{k}x{n}" for k, n in SHAPES))
    args = ap.parse_args()
    warm_clocks()
    for K, N in (tuple(int(v) for v in s.split("x")) for s in args.shapes.split(",")):
        copies, x, ref, cub, ours = layer_with_baselines(K, N, 1)
        # one reduction a tensor: what reading the layer's bytes costs at this size, launches included
        read = graph_ms([lambda c=c: (c.qweight.amax(), c.scales.amax(), c.zeros.amax()) for c in copies])
        one = graph_ms([lambda c=c: c.qweight.amax() for c in copies])
        print(f"{K}x{N}: read all (3 launches) {read * 1e3:.1f} us, qweight only {one * 1e3:.1f} us; "
              f"ours M=1 {ours * 1e3:.1f} us; cuBLAS fp16 {cub * 1e3:.1f} us", flush=True)
        del copies
        torch.cuda.empty_cache()


if __name__ == "__main__":
    main()
