"""What do_bench's L2 flush costs a kernel. The flush is a zero_ of 256 MB, so a timed kernel starts right
after a quarter gigabyte of writes, with L2 full of dirty lines. Times ours and cuBLAS three ways: a CUDA graph
over cold weight copies, do_bench (zero_ flush) three times, and do_bench's loop with a read-only flush (an amax
over the same buffer). Session 20 (results/flush-effect-h200-session20.log): do_bench adds 3.5-4.5 us to the
graph time at 4096² (cuBLAS: 5), ~1.5-2 us of it the writes' (the read flush adds less); an L2 evict_first hint on the M = 1
weight loads changed nothing, so it is not the dirty lines' write-back that the reads wait for. The read-flush
loop is gemm_common.flushed_times_ms with an amax for its flush, so it keeps host time out too (the session-20
log predates that: its calls were planned, ~12-25 us of host, well inside the flush). Needs CUDA.

    python benchmarks/flush_effect.py [--m 1,16]
    python benchmarks/flush_effect.py --copies 8 --m 1,16,64 --shapes 4096x4096   (do_bench of each weight copy;
        for the kernel time of each copy without host time see flushed_tiles.py)
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402
import triton  # noqa: E402

from benchmarks.gemm_common import (SHAPES, bench_ms, copies_for, flushed_times_ms, graph_ms, int_option,  # noqa: E402
                                    option, packed_weight, parse_shapes, warm_clocks)
from repack.kernels.triton_gemm import triton_gemm  # noqa: E402


def read_flush_ms(fn, reps: int = 200) -> float:
    """flushed_times_ms's median with an amax over the flush buffer (reads, no writes) instead of its zero_."""
    dtype = triton.runtime.driver.active.get_empty_cache_for_benchmark().dtype
    sink = torch.empty((), dtype=dtype, device="cuda")
    return flushed_times_ms(fn, reps, lambda cache: torch.amax(cache, dim=0, out=sink))[reps // 2]


def main() -> None:
    args = sys.argv[1:]
    ms = int_option(args, "--m", (1, 16))
    shapes = parse_shapes(option(args, "--shapes", "")) if "--shapes" in args else SHAPES
    copies = int(option(args, "--copies", "0"))
    print("us: graph | do_bench x3 | read flush")
    warm_clocks()
    for K, N in shapes:
        ws = [packed_weight(K, N, "gptq") for _ in range(copies_for(K * N // 2))]
        ds = [torch.randn(N, K, device="cuda", dtype=torch.float16) for _ in range(copies_for(K * N * 2))]
        for M in ms:
            x = torch.randn(M, K, device="cuda", dtype=torch.float16)
            if copies:
                for name, fs in (("ours", [lambda w=w: triton_gemm(x, w) for w in ws[:copies]]),
                                 ("cuBLAS", [lambda d=d: torch.nn.functional.linear(x, d) for d in ds[:copies]])):
                    print(f"{K}x{N} M={M} {name:>6} do_bench of each copy: "
                          + " ".join(f"{bench_ms(f) * 1e3:5.1f}" for f in fs), flush=True)
                continue
            for name, f, fs in (("ours", lambda: triton_gemm(x, ws[0]), [lambda w=w: triton_gemm(x, w) for w in ws]),
                                ("cuBLAS", lambda: torch.nn.functional.linear(x, ds[0]),
                                 [lambda d=d: torch.nn.functional.linear(x, d) for d in ds])):
                g = graph_ms(fs)
                b = [bench_ms(f) for _ in range(3)]
                r = read_flush_ms(f)
                print(f"{K}x{N} M={M} {name:>6}: {g * 1e3:6.1f} | " + " ".join(f"{v * 1e3:6.1f}" for v in b)
                      + f" | {r * 1e3:6.1f}", flush=True)
        ws = ds = None
        torch.cuda.empty_cache()


if __name__ == "__main__":
    main()
