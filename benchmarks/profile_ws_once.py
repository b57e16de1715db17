"""One launch of a W4A16 path (or cuBLAS fp16) on 8192x28672, M=1024, for Nsight Compute:

    ncu --kernel-name regex:w4_ --launch-skip 2 --launch-count 1 --section ... \\
        python benchmarks/profile_ws_once.py [default | ws [SKIP] | cublas]

(`ncu` is on the lent GPU machine at /usr/local/cuda/bin/ncu; results/ncu-*.txt)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from benchmarks.gemm_common import packed_weight  # noqa: E402
from repack.kernels import gluon_ws  # noqa: E402
from repack.kernels.triton_gemm import DOT_WS, triton_gemm  # noqa: E402
from repack.kernels.tuned import TileConfig  # noqa: E402

what = sys.argv[1] if len(sys.argv) > 1 else "default"
x = torch.randn(1024, 8192, device="cuda", dtype=torch.float16)
if what == "cublas":
    d = torch.randn(28672, 8192, device="cuda", dtype=torch.float16)
    run = lambda: torch.nn.functional.linear(x, d)  # noqa: E731
else:
    w = packed_weight(8192, 28672)
    if what == "ws":
        gluon_ws.SKIP = int(sys.argv[2]) if len(sys.argv) > 2 else 0
        cfg = TileConfig(128, 128, 128, 1, 4, 3, ws=True)
        run = lambda: triton_gemm(x, w, cfg, path_override=DOT_WS)  # noqa: E731
    else:
        run = lambda: triton_gemm(x, w)  # noqa: E731
for _ in range(4):
    run()
torch.cuda.synchronize()
