"""How much of a small GEMM's measured time is CPU launch overhead? (do_bench vs CUDA graph)"""

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402
import triton  # noqa: E402

from benchmarks.gemm_common import bench_ms, packed_weight  # noqa: E402
from repack.kernels.triton_gemm import triton_gemm  # noqa: E402
from repack.kernels.tuned import pick_config  # noqa: E402

for K, N in ((4096, 4096), (8192, 28672)):
    w = packed_weight(K, N)
    dense = torch.randn(N, K, device="cuda", dtype=torch.float16)
    for M in (1, 16):
        x = torch.randn(M, K, device="cuda", dtype=torch.float16)
        cfg = pick_config(M, N, K)
        auto = lambda: triton_gemm(x, w)  # noqa: E731
        fixed = lambda: triton_gemm(x, w, cfg)  # noqa: E731
        auto()
        torch.cuda.synchronize()
        t = time.perf_counter()
        for _ in range(200):
            auto()
        cpu_us = (time.perf_counter() - t) / 200 * 1e6
        torch.cuda.synchronize()
        graph = triton.testing.do_bench_cudagraph(auto, rep=50, return_mode="median")
        cublas_graph = triton.testing.do_bench_cudagraph(lambda: torch.nn.functional.linear(x, dense), rep=50,
                                                         return_mode="median")
        print(f"{K}x{N} M={M} {cfg}: do_bench auto {bench_ms(auto):.4f} fixed {bench_ms(fixed):.4f} "
              f"graph {graph:.4f} ms; cuBLAS graph {cublas_graph:.4f}; cpu per call {cpu_us:.1f} us", flush=True)
