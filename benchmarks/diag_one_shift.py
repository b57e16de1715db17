"""Graph time of the default dispatch with the fp16 one-shift dequantization on and off
(triton_gemm.ONE_SHIFT_F16), alternating in one process, M = 64 / 256 / 1024 on the four shapes;
outputs compared bit for bit. Run on the lent GPU: python benchmarks/diag_one_shift.py"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from benchmarks.gemm_common import graph_ms, layer_with_baselines, warm_clocks  # noqa: E402
from repack.kernels import triton_gemm as tg  # noqa: E402

warm_clocks()
print("K x N M | cuBLAS | three shifts (us, 3 runs) | one shift | same bits")
for K, N in ((4096, 4096), (4096, 14336), (14336, 4096), (8192, 28672)):
    for M in (64, 256, 1024):
        copies, x, ref, cub, _ = layer_with_baselines(K, N, M)
        times = {False: [], True: []}
        outs = {}
        for _ in range(3):
            for flag in (False, True):
                tg.ONE_SHIFT_F16 = flag
                outs[flag] = tg.triton_gemm(x, copies[0])
                times[flag].append(graph_ms([lambda c=c: tg.triton_gemm(x, c) for c in copies]) * 1e3)
        same = torch.equal(outs[False], outs[True])
        fmt = lambda v: " ".join(f"{t:.1f}" for t in v)  # noqa: E731
        print(f"{K}x{N} {M} | {cub * 1e3:.1f} | {fmt(times[False])} | {fmt(times[True])} | {same}", flush=True)
tg.ONE_SHIFT_F16 = True
