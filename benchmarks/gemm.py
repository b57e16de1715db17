"""W4A16 GEMM speed on the GPU: our Triton kernel vs cuBLAS fp16 and PyTorch's tinygemm int4.

Shapes K x N (Llama-style), M rows of activations, 4-bit g128. Every number is the median of
``triton.testing.do_bench`` (L2 flushed between runs) in this one process; the floor is the
fewest bytes the W4A16 GEMM must move over the measured device copy bandwidth. "ceil" is the
best "x cuBLAS" any W4A16 kernel could show here: cuBLAS's time over that of a kernel that only
reads the layer's packed weight, zeros and scales, timed the same way (read_floor.reader).

    python benchmarks/gemm.py [--json out.json] [--m 1,16,64,256,1024] [--no-awq-rs] [--rs-post 32]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from benchmarks.gemm_common import (GROUP, M_VALUES, SHAPES, bench_ms, copies_for, copy_bandwidth, graph_ms,  # noqa: E402
                                    packed_bytes, packed_weight)
from benchmarks.read_floor import best_reader, reader  # noqa: E402
from repack.kernels.triton_gemm import triton_gemm  # noqa: E402
from repack.kernels.tuned import pick_config  # noqa: E402


def tinygemm(K: int, N: int):
    """PyTorch's int4 kernel (bf16 activations), or None where this torch lacks it."""
    try:
        w = torch.randint(0, 256, (N, K // 2), dtype=torch.uint8, device="cuda")
        packed = torch._convert_weight_to_int4pack(w, 8)
        sz = (torch.rand(K // GROUP, N, 2, device="cuda") * 0.01).bfloat16()
        def run(x):
            return torch._weight_int4pack_mm(x, packed, GROUP, sz)
        run(torch.randn(1, K, device="cuda", dtype=torch.bfloat16))
        return run
    except Exception as e:  # noqa: BLE001 - report and carry on without it
        print(f"tinygemm unavailable: {type(e).__name__}: {e}", file=sys.stderr)
        return None


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--json", default=None)
    ap.add_argument("--m", default=",".join(map(str, M_VALUES)))
    ap.add_argument("--no-awq-rs", action="store_true",
                    help="AWQ layers at M > 1 on DOT_N instead of the tuned gluon_rs tiles (triton_gemm.AWQ_RS off)")
    ap.add_argument("--awq-field-order", action="store_true",
                    help="AWQ layers on DOT_N through its field-order dequantization (AWQ_DOT_PAIRS off)")
    ap.add_argument("--rs-post", type=int, default=None, metavar="BLOCK_M",
                    help="gluon_rs tiles of at most BLOCK_M tokens scale the wgmma sums (RS_POST_MAX_BLOCK_M)")
    args = ap.parse_args()
    from repack.kernels import triton_gemm as tgm
    tgm.AWQ_DOT_PAIRS = not args.awq_field_order
    tgm.AWQ_RS = not args.no_awq_rs
    if args.rs_post is not None:
        tgm.RS_POST_MAX_BLOCK_M = args.rs_post
    ms_list = [int(m) for m in args.m.split(",")]
    warm = torch.randn(8192, 8192, device="cuda", dtype=torch.float16)
    t_warm = time.time()
    while time.time() - t_warm < 3:  # bring the clocks up: an idle H200 starts at 345 MHz
        warm @ warm
    torch.cuda.synchronize()
    bw = copy_bandwidth()
    print(f"device {torch.cuda.get_device_name()}, copy bandwidth {bw / 1e12:.2f} TB/s (read + write)")
    rows = []
    for K, N in SHAPES:
        gptq, awq = packed_weight(K, N, "gptq"), packed_weight(K, N, "awq")
        dense = torch.randn(N, K, device="cuda", dtype=torch.float16)
        tg = tinygemm(K, N)
        reader_ms = best_reader(lambda *launch: bench_ms(reader(gptq, *launch)))[0]
        # copies for the CUDA-graph timing, together larger than L2
        gptqs = [gptq] + [packed_weight(K, N, "gptq") for _ in range(copies_for(K * N // 2) - 1)]
        denses = [dense] + [torch.randn(N, K, device="cuda", dtype=torch.float16) for _ in range(copies_for(K * N * 2) - 1)]
        for M in ms_list:
            x = torch.randn(M, K, device="cuda", dtype=torch.float16)
            xb = x.bfloat16()
            cfg = pick_config(M, N, K)
            r = {"K": K, "N": N, "M": M, "config": cfg.to_dict(), "gptq_rs": cfg.gptq_rs and cfg.gptq_rs.to_dict(),
                 "floor_ms": packed_bytes(M, K, N) / bw * 1e3, "reader_ms": reader_ms,
                 "ours_ms": bench_ms(lambda: triton_gemm(x, gptq)),
                 "ours_awq_ms": bench_ms(lambda: triton_gemm(x, awq)),
                 "cublas_ms": bench_ms(lambda: torch.nn.functional.linear(x, dense)),
                 "tinygemm_ms": bench_ms(lambda: tg(xb)) if tg else None}
            r["ours_graph_ms"] = graph_ms([lambda w=w: triton_gemm(x, w) for w in gptqs])
            r["cublas_graph_ms"] = graph_ms([lambda d=d: torch.nn.functional.linear(x, d) for d in denses])
            r["vs_cublas"] = r["cublas_ms"] / r["ours_ms"]
            r["ceiling_vs_cublas"] = r["cublas_ms"] / reader_ms
            r["graph_vs_cublas"] = r["cublas_graph_ms"] / r["ours_graph_ms"]
            r["vs_tinygemm"] = r["tinygemm_ms"] / r["ours_ms"] if tg else None
            rows.append(r)
            print(json.dumps(r), file=sys.stderr, flush=True)
        torch.cuda.empty_cache()
    print("do_bench medians (ms, L2 flushed, CPU launch overhead included where it exceeds the flush); "
          "graph: per-call kernel time from a CUDA graph over weight copies larger than L2")
    head = (f"{'K x N':>13} {'M':>5} {'floor':>7} {'ours':>7} {'awq':>7} {'cuBLAS':>7} {'tinygemm':>8} {'x cuBLAS':>8} "
            f"{'ceil':>5} {'x tiny':>7} {'%floor':>6} | {'graph ours':>10} {'cuBLAS':>7} {'x cuBLAS':>8}")
    print(head)
    for r in rows:
        tgm = f"{r['tinygemm_ms']:.4f}" if r["tinygemm_ms"] else "n/a"
        vt = f"{r['vs_tinygemm']:.2f}" if r["vs_tinygemm"] else "n/a"
        print(f"{r['K']:>6}x{r['N']:<6} {r['M']:>5} {r['floor_ms']:>7.4f} {r['ours_ms']:>7.4f} {r['ours_awq_ms']:>7.4f} "
              f"{r['cublas_ms']:>7.4f} {tgm:>8} {r['vs_cublas']:>8.2f} {r['ceiling_vs_cublas']:>5.2f} {vt:>7} {100 * r['floor_ms'] / r['ours_ms']:>5.0f}% | "
              f"{r['ours_graph_ms']:>10.4f} {r['cublas_graph_ms']:>7.4f} {r['graph_vs_cublas']:>8.2f}")
    if args.json:
        Path(args.json).write_text(json.dumps({"bandwidth": bw, "device": torch.cuda.get_device_name(), "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
