"""Where does the host time of one triton_gemm call go? (cProfile over 2000 calls)"""

import cProfile
import pstats
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from benchmarks.gemm_common import packed_weight  # noqa: E402
from repack.kernels.triton_gemm import triton_gemm  # noqa: E402

w = packed_weight(4096, 4096)
x = torch.randn(1, 4096, device="cuda", dtype=torch.float16)
for _ in range(10):
    triton_gemm(x, w)
torch.cuda.synchronize()
t = time.perf_counter()
for _ in range(2000):
    triton_gemm(x, w)
print(f"host time per call {(time.perf_counter() - t) / 2000 * 1e6:.1f} us")
torch.cuda.synchronize()
t = time.perf_counter()
for _ in range(2000):
    torch.empty((1, 4096), dtype=torch.float16, device="cuda")
print(f"torch.empty per call {(time.perf_counter() - t) / 2000 * 1e6:.1f} us")
prof = cProfile.Profile()
prof.enable()
for _ in range(2000):
    triton_gemm(x, w)
prof.disable()
torch.cuda.synchronize()
pstats.Stats(prof).sort_stats("tottime").print_stats(18)
