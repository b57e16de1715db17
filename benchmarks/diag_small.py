"""Where the small problems' time goes (M = 1 / 16 / 64), graph µs on the lent GPU:

- ``default``: the dispatch as shipped;
- ``no-epilogue``: the same launch with the split-K epilogue compiled out (each program stores its
  partial sums straight to y: wrong results, timing only) — what the fence, the tile counter and the
  atomic exchange cost;
- ``gluon@M1`` (M = 1 only): the M = 16 mma.sync Gluon tile forced at M = 1 (15 of 16 rows masked),
  to see how far tensor-core arithmetic is from the fp16-pair GEMV there.

    python benchmarks/diag_small.py
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.gemm_common import forced_tile_time, graph_ms, layer_with_baselines, warm_clocks  # noqa: E402
from repack.kernels import triton_gemm as tg  # noqa: E402
from repack.kernels.tuned import TileConfig, pick_config, split_for  # noqa: E402

_launch = tg._launch


def _launch_without_epilogue(grid, args, consts, *rest, **kw):
    names = kw.get("const_names", rest[5] if len(rest) > 5 else tg._CONST_NAMES)
    consts = tuple(False if n == "SPLIT" else c for n, c in zip(names, consts))
    return _launch(grid, args, consts, *rest, **kw)


warm_clocks()
for K, N in ((4096, 4096), (4096, 14336), (14336, 4096), (8192, 28672)):
    for M in (1, 16, 64):
        copies, x, ref, cub, dflt = layer_with_baselines(K, N, M)
        tg._launch = _launch_without_epilogue
        tg._plans.clear()
        bare = graph_ms([lambda c=c: tg.triton_gemm(x, c) for c in copies])
        tg._launch = _launch
        tg._plans.clear()
        line = f"{K}x{N} M={M} {pick_config(M, N, K)}: cuBLAS {cub * 1e3:.1f} default {dflt * 1e3:.1f} no-epilogue {bare * 1e3:.1f}"
        if M == 1:
            for bn, bk, warps in ((64, 128, 4), (128, 128, 4), (128, 64, 4), (256, 64, 8)):
                for target in (264, 528, 1056):
                    split = split_for(-(-N // bn), K, bk, target)
                    line += forced_tile_time(f"| gluon {bn}x{bk} w{warps} s{split}", x, copies, ref,
                                             TileConfig(16, bn, bk, split, warps, 1), tg.DOT_GLUON, tol=2e-3)
        print(line, flush=True)
