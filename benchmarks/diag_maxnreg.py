"""Register caps on the default dispatch's kernels (more CTAs an SM for latency-bound tiles), graph µs:

    python benchmarks/diag_maxnreg.py

For M = 1 / 16 / 64 on the four shapes, the default tile as shipped and with ptxas capped at 168, 128
and 96 registers a thread (``maxnreg``; spills show as slower times, wrong sums are reported)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.gemm_common import graph_ms, layer_with_baselines, warm_clocks  # noqa: E402
from repack.kernels import triton_gemm as tg  # noqa: E402
from repack.kernels.tuned import pick_config  # noqa: E402

_launch = tg._launch
CAP = None


def _capped(grid, args, consts, *rest, **kw):
    if CAP is not None and "maxnreg" not in kw and len(rest) < 7:
        kw["maxnreg"] = CAP
    return _launch(grid, args, consts, *rest, **kw)


tg._launch = _capped
warm_clocks()
for K, N in ((4096, 4096), (4096, 14336), (14336, 4096), (8192, 28672)):
    for M in (1, 16, 64):
        copies, x, ref, cub, dflt = layer_with_baselines(K, N, M)
        line = f"{K}x{N} M={M} {pick_config(M, N, K)}: cuBLAS {cub * 1e3:.1f} default {dflt * 1e3:.1f}"
        for cap in (168, 128, 96):
            CAP = cap
            tg._plans.clear()
            try:
                y = tg.triton_gemm(x, copies[0]).float()
                err = float((y - ref).norm() / ref.norm())
                g = graph_ms([lambda c=c: tg.triton_gemm(x, c) for c in copies])
                line += f" | cap {cap}: {g * 1e3:.1f}" + ("" if err < 2e-3 else f" (err {err:.0e})")
            except Exception as e:  # noqa: BLE001
                line += f" | cap {cap}: {type(e).__name__} {str(e)[:50]}"
        CAP = None
        tg._plans.clear()
        print(line, flush=True)
