"""Host time of one triton_gemm call with and without launch plans (needs CUDA).

    python benchmarks/launch_plans.py
"""

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from benchmarks.gemm_common import packed_weight  # noqa: E402
from repack.kernels import triton_gemm as tg  # noqa: E402


def per_call_us(x, w, calls=2000) -> float:
    for _ in range(10):
        tg.triton_gemm(x, w)
    torch.cuda.synchronize()
    t = time.perf_counter()
    for _ in range(calls):
        tg.triton_gemm(x, w)
    host = (time.perf_counter() - t) / calls * 1e6
    torch.cuda.synchronize()
    return host


planned = tg._planned
for K, N in ((4096, 4096), (14336, 4096), (4096, 14336)):
    w = packed_weight(K, N, "gptq")
    for M in (1, 16):
        x = torch.randn(M, K, device="cuda", dtype=torch.float16)
        tg._planned = lambda *a: None
        without = per_call_us(x, w)
        tg._planned = planned
        with_ = per_call_us(x, w)
        print(f"{K}x{N} M={M}: host time per call {without:6.1f} us without plans, {with_:6.1f} us with", flush=True)
