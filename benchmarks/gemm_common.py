"""Shared by the GPU benchmarks: random packed weights of a shape, timing, copy bandwidth."""

from __future__ import annotations

import torch
import triton

from repack.kernels.packed import CODES_ALONG_K, CODES_ALONG_N_AWQ, ZEROS_ALONG_N, ZEROS_ALONG_N_AWQ, PackedWeight

SHAPES = [(4096, 4096), (4096, 14336), (14336, 4096), (8192, 28672)]  # K x N
M_VALUES = (1, 16, 64, 256, 1024)
GROUP = 128


def parse_shapes(text: str) -> list[tuple[int, int]]:
    """"4096x14336,14336x4096" -> [(4096, 14336), (14336, 4096)]: a probe's --shapes, K x N each."""
    return [tuple(int(d) for d in s.split("x")) for s in text.split(",")]


def option(args: list[str], name: str, default: str) -> str:
    """The value after flag ``name`` in a probe's command line, or ``default``."""
    return args[args.index(name) + 1] if name in args else default


def int_option(args: list[str], name: str, default: tuple[int, ...] = ()) -> tuple[int, ...]:
    """The comma-separated integers after flag ``name`` ("--splits 2,3,5" -> (2, 3, 5)), or ``default``."""
    text = option(args, name, "")
    return tuple(int(v) for v in text.split(",")) if text else default


def random_words(*shape: int) -> torch.Tensor:
    # any 32-bit word is eight valid 4-bit codes; random words are realistic for timing
    return torch.randint(-2**31, 2**31 - 1, shape, dtype=torch.int32, device="cuda")


def packed_weight(K: int, N: int, layout: str = "gptq", group: int = GROUP) -> PackedWeight:
    G = K // group
    scales = (torch.rand(G, N, device="cuda") * 0.01 + 0.001).half()
    if layout == "gptq":
        return PackedWeight(CODES_ALONG_K, ZEROS_ALONG_N, 4, K, N, group, random_words(K // 8, N), scales,
                            random_words(G, N // 8), 1, None, "bench/gptq")
    return PackedWeight(CODES_ALONG_N_AWQ, ZEROS_ALONG_N_AWQ, 4, K, N, group, random_words(K, N // 8), scales,
                        random_words(G, N // 8), 0, None, "bench/awq")


def bench_ms(fn, warmup: int = 25, rep: int = 100) -> float:
    for _ in range(3):  # compile, allocate workspaces and fill caches outside the timed region
        fn()
    torch.cuda.synchronize()
    return float(triton.testing.do_bench(fn, warmup=warmup, rep=rep, return_mode="median"))


def copy_bandwidth() -> float:
    """Bytes per second of a device-to-device copy, counting bytes read and written."""
    src = torch.empty(1 << 30, dtype=torch.uint8, device="cuda").random_()
    dst = torch.empty_like(src)
    ms = bench_ms(lambda: dst.copy_(src))
    return 2 * src.numel() / (ms * 1e-3)


def packed_bytes(M: int, K: int, N: int, group: int = GROUP) -> int:
    G = K // group
    return K * N // 2 + G * N * 2 + G * N // 2 + M * K * 2 + M * N * 2


def graph_ms(fns: list) -> float:
    """Kernel time without CPU launch overhead: one CUDA graph runs ``fns`` (each on its own copy
    of the weights, together larger than L2, so every call reads cold memory); median over
    replays, per call."""
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        for f in fns:
            f()
    torch.cuda.current_stream().wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        for f in fns:
            f()
    times = []
    for _ in range(20):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        graph.replay()
        end.record()
        torch.cuda.synchronize()
        times.append(start.elapsed_time(end) / len(fns))
    return sorted(times)[len(times) // 2]


def flushed_times_ms(fn, reps: int = 100, flush=None) -> list[float]:
    """``fn``'s GPU time after do_bench's L2 flush (its own buffer, zero_ before each call), sorted, with no host
    time in it: a sleep kernel holds the GPU while the host queues every (flush, start, call, end), so even a
    forced tile's unplanned launch (~100 us of host, more than the flush's ~70 us of GPU) is timed as the GPU
    runs it. do_bench's conditions on the GPU's side without its host side (session 20: tuning that timed forced
    tiles with do_bench itself timed their host at small shapes). ``flush(cache)`` replaces the zero_ (e.g. a
    read-only pass over the same buffer: benchmarks/flush_effect.py)."""
    cache = triton.runtime.driver.active.get_empty_cache_for_benchmark()
    flush = flush or (lambda c: c.zero_())
    for _ in range(3):
        fn()
    torch.cuda.synchronize()
    starts = [torch.cuda.Event(enable_timing=True) for _ in range(reps)]
    ends = [torch.cuda.Event(enable_timing=True) for _ in range(reps)]
    torch.cuda._sleep(int(reps * 6e5))  # ~300 us of GPU a call queued behind it (at ~2 GHz)
    for s, e in zip(starts, ends):
        flush(cache)
        s.record()
        fn()
        e.record()
    torch.cuda.synchronize()
    return sorted(s.elapsed_time(e) for s, e in zip(starts, ends))


def flushed_ms(fn, reps: int = 100) -> float:
    """The median of flushed_times_ms."""
    return flushed_times_ms(fn, reps)[reps // 2]


def copies_for(nbytes: int, l2_bytes: int = 50 * 2**20) -> int:
    return max(2, min(32, -(-3 * l2_bytes // max(nbytes, 1))))


def warm_clocks(seconds: float = 2.0) -> None:
    """Run cuBLAS until the GPU's clocks are up (an idle H200 starts at 345 MHz)."""
    import time
    a = torch.randn(8192, 8192, device="cuda", dtype=torch.float16)
    t = time.time()
    while time.time() - t < seconds:
        a @ a


def layer_with_baselines(K: int, N: int, M: int, layout: str = "gptq") -> tuple[list, torch.Tensor, torch.Tensor, float, float]:
    """A layer's copies (GPTQ order, or AutoAWQ gemm; enough to defeat L2), x [M, K], the default dispatch's
    output on the first copy (what forced tiles are checked against), and the graph times (ms) of cuBLAS
    fp16 and of the default dispatch on the same shape."""
    from repack.kernels.triton_gemm import triton_gemm
    copies = [packed_weight(K, N, layout) for _ in range(copies_for(K * N // 2))]
    dense = [torch.randn(N, K, device="cuda", dtype=torch.float16) for _ in range(copies_for(K * N * 2))]
    x = torch.randn(M, K, device="cuda", dtype=torch.float16)
    ref = triton_gemm(x, copies[0]).float()
    cub = graph_ms([lambda d=d: torch.nn.functional.linear(x, d) for d in dense])
    dflt = graph_ms([lambda c=c: triton_gemm(x, c) for c in copies])
    return copies, x, ref, cub, dflt


def forced_tile_time(label: str, x: torch.Tensor, copies: list, ref: torch.Tensor, cfg, path: int | None = None,
                     tol: float = 1e-3) -> str:
    """The text " LABEL GRAPH_US" for one forced tile over the layer's copies, its error against ``ref`` added when
    above ``tol``, or why it failed (a diagnostic reports a tile that does not compile and goes on)."""
    from repack.kernels.triton_gemm import triton_gemm
    try:
        y = triton_gemm(x, copies[0], cfg, path_override=path).float()
        err = float((y - ref).norm() / ref.norm())
        g = graph_ms([lambda c=c: triton_gemm(x, c, cfg, path_override=path) for c in copies])
    except Exception as e:  # noqa: BLE001
        return f" {label} failed ({type(e).__name__}: {str(e)[:60]})"
    return f" {label} {g * 1e3:.1f}" + ("" if err < tol else f" (err {err:.0e})")
