"""The practical floor of an M = 1 GEMV on the lent GPU: graph time of a Triton kernel that only streams the
packed weight, zeros and scales of a shape (grid-stride loads, one small store a program, the best of 40 grid and
block sizes), over copies larger than L2 like the GEMM's graph column, beside our M = 1 kernel and cuBLAS fp16.
The GEMM table's "floor" is bytes over the copy bandwidth of 1 GB copies; a 6-40 µs kernel also pays launch,
ramp-up and tail, which this kernel pays too.

    python benchmarks/read_floor.py [--shapes 4096x4096,...]
"""

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402
import triton  # noqa: E402
import triton.language as tl  # noqa: E402

from benchmarks.gemm_common import SHAPES, graph_ms, layer_with_baselines, parse_shapes, warm_clocks  # noqa: E402


@triton.jit
def _read_kernel(a_ptr, n_a, b_ptr, n_b, out_ptr, BLOCK: tl.constexpr):
    pid, programs = tl.program_id(0), tl.num_programs(0)
    offs = tl.arange(0, BLOCK)
    acc = tl.zeros([BLOCK], tl.int32)
    for start in range(pid * BLOCK, n_a, programs * BLOCK):
        acc ^= tl.load(a_ptr + start + offs, mask=start + offs < n_a, other=0)
    for start in range(pid * BLOCK, n_b, programs * BLOCK):
        acc ^= tl.load(b_ptr + start + offs, mask=start + offs < n_b, other=0)
    tl.store(out_ptr + pid * BLOCK + offs, acc)  # kept live so the loads are not dropped


def reader(w, programs: int, block: int, warps: int):
    """A call that reads every byte of ``w``'s packed words, zeros and scales once (the M = 1 GEMV's bytes)."""
    words = torch.cat([w.qweight.view(-1), w.zeros.view(-1)])
    scales = w.scales.contiguous().view(torch.int32).view(-1)
    out = torch.empty(programs * block, dtype=torch.int32, device="cuda")
    return lambda: _read_kernel[(programs,)](words, words.numel(), scales, scales.numel(), out, BLOCK=block,
                                            num_warps=warps)


def best_reader(time_ms) -> tuple[float, int, int, int]:
    """(ms, programs, block, warps) of the fastest of 40 reader launches (1-16 programs an SM, 256-2048 words a
    load), ``time_ms(programs, block, warps)`` timing each."""
    sms = torch.cuda.get_device_properties(0).multi_processor_count
    return min((time_ms(sms * p, b, wp), sms * p, b, wp)
               for p in (1, 2, 4, 8, 16) for b in (256, 512, 1024, 2048) for wp in (4, 8))


def read_time(copies: list, programs: int, block: int, warps: int) -> float:
    return graph_ms([reader(c, programs, block, warps) for c in copies])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--shapes", default=",".join(f"{k}x{n}" for k, n in SHAPES))
    args = ap.parse_args()
    warm_clocks()
    for K, N in parse_shapes(args.shapes):
        copies, x, ref, cub, ours = layer_with_baselines(K, N, 1)
        nbytes = copies[0].qweight.numel() * 4 + copies[0].zeros.numel() * 4 + copies[0].scales.numel() * 2
        ms, programs, block, warps = best_reader(lambda *launch: read_time(copies, *launch))
        print(f"{K}x{N}: {nbytes / 1e6:.1f} MB read in {ms * 1e3:.1f} us ({nbytes / ms / 1e9:.2f} TB/s; "
              f"{programs} programs, {block} words, {warps} warps); ours M=1 {ours * 1e3:.1f} us "
              f"({ms / ours:.2f} of it at the floor); cuBLAS fp16 {cub * 1e3:.1f} us", flush=True)
        torch.cuda.empty_cache()


if __name__ == "__main__":
    main()
