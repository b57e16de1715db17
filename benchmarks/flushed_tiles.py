"""Kernel time after do_bench's L2 flush with no host time in it, per weight copy and per gluon_rs tile, K splits
through slots and through atomics (needs CUDA). A long sleep kernel holds the GPU while the host queues every
(flush, start, call, end), so even an unplanned launch (a forced tile: ~100 us of host) is timed as the GPU runs
it. Session 20: the 4096² M = 64 do_bench spread over weight copies (16-28 us) is not the kernel's, which takes
17.1-17.3 us on every copy (results/flushed-tiles-h200-session20.log).

    python benchmarks/flushed_tiles.py
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from benchmarks.gemm_common import flushed_times_ms, packed_weight, warm_clocks  # noqa: E402
from repack.kernels import triton_gemm as tg  # noqa: E402
from repack.kernels.tuned import TileConfig  # noqa: E402


def flushed_us(f) -> tuple[float, float, float]:
    """Median, 10th and 90th percentile microseconds of ``f`` after a flush."""
    t = flushed_times_ms(f)
    return t[50] * 1e3, t[10] * 1e3, t[90] * 1e3


warm_clocks()
K = N = 4096
ws = [packed_weight(K, N) for _ in range(8)]
for M in (64, 16):
    x = torch.randn(M, K, device='cuda', dtype=torch.float16)
    cfgs = {"planned": None,
            "32x64 k2 rs3": TileConfig(32, 64, 128, split_k=2, num_warps=4, num_stages=3, rs=3),
            "32x64 k3 rs2": TileConfig(32, 64, 128, split_k=3, num_warps=4, num_stages=4, rs=2),
            "64x64 k2 rs1": TileConfig(64, 64, 128, split_k=2, num_warps=4, num_stages=4, rs=1),
            "16x64 k5 rs1": TileConfig(16, 64, 128, split_k=5, num_warps=4, num_stages=4, rs=1),
            "32x64 k1 rs3": TileConfig(32, 64, 128, split_k=1, num_warps=4, num_stages=4, rs=3)}
    for name, c in cfgs.items():
        for slots in (True, False):
            if not slots and (c is None or c.split_k == 1):
                continue
            tg.RS_SPLIT_SLOTS = slots
            tg._plans.clear()
            cells = []
            for w in ws:
                f = ((lambda w=w: tg.triton_gemm(x, w)) if c is None
                     else (lambda w=w, c=c: tg.triton_gemm(x, w, c, path_override=tg.DOT_RS)))
                med, lo, hi = flushed_us(f)
                cells.append(f"{med:5.1f}({lo:4.1f}-{hi:4.1f})")
            print(f"M={M} {name:>14} {'slots' if slots else 'atomics'}: " + " ".join(cells), flush=True)
    tg.RS_SPLIT_SLOTS = True
