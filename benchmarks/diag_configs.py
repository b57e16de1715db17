"""Correctness sweep of forced DOT_KTJ tile configs (a GPU check, not a timing): every (block_m,
block_n, block_k, warps, stages) the tuner or a caller could pass, on a GPTQ-order 4096x4096 layer
at M=300, against the 64x64x64 tile the kernel tests check against the oracle.

    python benchmarks/diag_configs.py
"""

from __future__ import annotations

import itertools
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from benchmarks.gemm_common import packed_weight  # noqa: E402
from repack.kernels.triton_gemm import triton_gemm  # noqa: E402
from repack.kernels.tuned import TileConfig  # noqa: E402


def main() -> None:
    K, N, M = 4096, 4096, 300
    w = packed_weight(K, N)
    x = torch.randn(M, K, device="cuda", dtype=torch.float16)
    ref = triton_gemm(x, w, TileConfig(64, 64, 64, 1, 4, 3)).float()
    bad = []
    for bm, bn, bk, warps, stages in itertools.product([64, 128, 256], [64, 128, 256], [64, 128], [4, 8], [3, 4]):
        cfg = TileConfig(bm, bn, bk, 1, warps, stages)
        try:
            y = triton_gemm(x, w, cfg).float()
        except Exception as e:  # noqa: BLE001 -- a sweep: report and go on
            print(f"{bm}x{bn}x{bk} w{warps} s{stages}: {type(e).__name__}", flush=True)
            continue
        err = float((y - ref).norm() / ref.norm())
        if err > 2e-3:
            bad.append((bm, bn, bk, warps, stages, err))
        print(f"{bm}x{bn}x{bk} w{warps} s{stages}: rel err {err:.1e}", flush=True)
    print("WRONG:", bad, flush=True)


if __name__ == "__main__":
    main()
