"""Host time of a planned triton_gemm call against the do_bench L2 flush it must hide behind (needs CUDA).

do_bench times flush, then fn; when fn's host time exceeds the flush's GPU time, the GPU idles between them and
the median counts host time. The GPU is held by a long sleep kernel while the host launches, so the loop times
the host alone.

    python benchmarks/host_time.py [--profile KxN:M]
"""

import cProfile
import pstats
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402
import triton  # noqa: E402

from benchmarks.gemm_common import M_VALUES, SHAPES, packed_weight  # noqa: E402
from repack.kernels import triton_gemm as tg  # noqa: E402


def host_us(fn, calls: int = 200) -> float:
    for _ in range(5):
        fn()
    torch.cuda.synchronize()
    torch.cuda._sleep(int(3e8))  # ~0.15 s of GPU time: the launches below queue behind it
    t = time.perf_counter()
    for _ in range(calls):
        fn()
    host = (time.perf_counter() - t) / calls * 1e6
    torch.cuda.synchronize()
    return host


def flush_us() -> float:
    cache = triton.runtime.driver.active.get_empty_cache_for_benchmark()
    s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    times = []
    for _ in range(20):
        s.record()
        cache.zero_()
        e.record()
        torch.cuda.synchronize()
        times.append(s.elapsed_time(e) * 1e3)
    return sorted(times)[10]


def main() -> None:
    args = sys.argv[1:]
    print(f"do_bench flush (zero_ of its L2 buffer): {flush_us():.1f} us GPU; "
          f"its host launch {host_us(lambda: triton.runtime.driver.active.get_empty_cache_for_benchmark().zero_()):.1f} us")
    print(f"torch.empty(16, 4096): {host_us(lambda: torch.empty(16, 4096, device='cuda')):.1f} us host")
    for K, N in SHAPES:
        ws = {lay: packed_weight(K, N, lay) for lay in ("gptq", "awq")}
        for M in M_VALUES:
            x = torch.randn(M, K, device="cuda", dtype=torch.float16)
            cells = []
            for lay, w in ws.items():
                path = tg._planned
                cells.append(f"{lay} {host_us(lambda: tg.triton_gemm(x, w)):6.1f}")
                tg._planned = lambda *a: None
                cells.append(f"(unplanned {host_us(lambda: tg.triton_gemm(x, w), 50):6.1f})")
                tg._planned = path
            print(f"{K}x{N} M={M}: host us/call " + " ".join(cells), flush=True)
        del ws
        torch.cuda.empty_cache()
    if "--profile" in args:
        shape, m = args[args.index("--profile") + 1].split(":")
        K, N = (int(d) for d in shape.split("x"))
        for lay in ("gptq", "awq"):
            w = packed_weight(K, N, lay)
            x = torch.randn(int(m), K, device="cuda", dtype=torch.float16)
            host_us(lambda: tg.triton_gemm(x, w))
            torch.cuda._sleep(int(3e8))
            prof = cProfile.Profile()
            prof.enable()
            for _ in range(300):
                tg.triton_gemm(x, w)
            prof.disable()
            torch.cuda.synchronize()
            print(f"== profile {lay} {K}x{N} M={m}, 300 calls")
            pstats.Stats(prof).sort_stats("tottime").print_stats(14)


if __name__ == "__main__":
    main()
